//! A validator that records what it receives and, once the chain has moved to a later epoch,
//! replays old-epoch messages to everyone. Signatures are genuine; the epoch is stale.

use super::{Behaviour, Ctx};
use crate::{Effect, Message, PublicKey};

#[derive(Default)]
pub struct StaleEpochReplay {
    recorded: Vec<Message>,
}

const KEEP: usize = 400;

impl Behaviour for StaleEpochReplay {
    fn incoming(&mut self, ctx: &mut Ctx<'_>, _from: PublicKey, msg: &Message) -> Vec<Effect> {
        if self.recorded.len() < KEEP {
            self.recorded.push(msg.clone());
        } else {
            let i = (ctx.rng.next_u64() % KEEP as u64) as usize;
            self.recorded[i] = msg.clone();
        }
        Vec::new()
    }

    fn outgoing(&mut self, ctx: &mut Ctx<'_>, mut effects: Vec<Effect>) -> Vec<Effect> {
        // Piggyback on the replica's own broadcasts (proposals, timeouts) so replays cannot feed
        // on each other.
        if !effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast { .. }))
        {
            return effects;
        }
        let epoch = ctx.replica.epoch();
        let stale: Vec<&Message> = self.recorded.iter().filter(|m| m.epoch() < epoch).collect();
        if let Some(m) = ctx.rng.pick(&stale) {
            effects.push(Effect::Broadcast {
                message: (*m).clone(),
            });
        }
        effects
    }
}
