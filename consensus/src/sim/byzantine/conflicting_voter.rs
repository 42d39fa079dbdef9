//! A validator that votes for every proposal it receives, ignoring its lock and the round it
//! already voted in: it signs votes for conflicting blocks.

use super::{Behaviour, Ctx};
use crate::{Effect, Message, PublicKey};

pub struct ConflictingVoter;

impl Behaviour for ConflictingVoter {
    fn incoming(&mut self, ctx: &mut Ctx<'_>, _from: PublicKey, msg: &Message) -> Vec<Effect> {
        let Message::Proposal(p) = msg else {
            return Vec::new();
        };
        if p.block.epoch() != ctx.replica.epoch() {
            return Vec::new();
        }
        let (Some(vote), Some(to)) = (ctx.sign_vote(&p.block), ctx.next_leader(p.block.round()))
        else {
            return Vec::new();
        };
        vec![Effect::Send {
            to,
            message: Message::Vote(vote),
        }]
    }

    fn outgoing(&mut self, _ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        effects
    }
}
