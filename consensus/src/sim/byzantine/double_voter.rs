//! A validator that signs a second vote in every round it votes in, for a block that does not
//! exist, and sends both to the next leader.

use super::{Behaviour, Ctx};
use crate::types::Digest;
use crate::{Effect, Message, Vote};

pub struct DoubleVoter;

impl Behaviour for DoubleVoter {
    fn outgoing(&mut self, ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        let mut out = Vec::new();
        for e in effects {
            if let Effect::Send {
                to,
                message: Message::Vote(v),
            } = &e
            {
                let mut data = v.vote_data;
                data.block_id = Digest(ctx.rng.bytes32());
                let signature = ctx.signer.sign(&Vote::signing_bytes(ctx.chain_id(), &data));
                let second = Vote {
                    vote_data: data,
                    author: v.author,
                    signature,
                };
                let to = *to;
                // Either order: the leader may see the fake vote first.
                if ctx.rng.chance(500) {
                    out.push(Effect::Send {
                        to,
                        message: Message::Vote(second),
                    });
                    out.push(e);
                } else {
                    out.push(e);
                    out.push(Effect::Send {
                        to,
                        message: Message::Vote(second),
                    });
                }
            } else {
                out.push(e);
            }
        }
        out
    }
}
