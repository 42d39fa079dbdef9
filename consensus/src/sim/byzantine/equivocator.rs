//! An equivocating leader. In each round it leads it sends conflicting proposals:
//!
//! * either a sibling — the same parent, another payload — to everyone next to the real one, so
//!   every replica is asked to vote twice in one round;
//! * or a fork — a block on the certificate its parent carried, i.e. skipping the newest
//!   certified block — to just enough replicas to form a quorum with its own vote, while the
//!   others get the real proposal (which commits the block the fork abandons).
//!
//! Correct safety rules refuse the second proposal of a round and the fork; without them the
//! fork commits a block conflicting with one already committed elsewhere.

use super::Ctx;
use crate::types::payload_digest;
use crate::{Block, Effect, Message, Proposal};

pub struct Equivocator;

impl Equivocator {
    fn sibling(ctx: &mut Ctx<'_>, p: &Proposal) -> Proposal {
        let mut header = p.block.header.clone();
        let mut payload = b"tx:equivocation:".to_vec();
        payload.extend_from_slice(&ctx.rng.bytes32());
        if p.block.payload.is_empty() {
            payload.clear();
            header.timestamp_ms += 1;
        }
        header.payload_digest = payload_digest(&payload);
        let signature = ctx.sign_proposal(&header);
        Proposal {
            block: Block::new(header, p.block.qc.clone(), payload),
            tc: p.tc.clone(),
            signature,
        }
    }

    fn fork(ctx: &mut Ctx<'_>, p: &Proposal) -> Option<Proposal> {
        let parent = ctx.replica.block(&p.block.parent_id())?;
        let stale = parent.qc.clone();
        if stale.epoch() != p.block.epoch() {
            return None;
        }
        let mut header = p.block.header.clone();
        header.height = stale.vote_data.height + 1;
        header.parent_id = stale.block_id();
        header.qc_digest = stale.vote_data.digest();
        header.payload_digest = payload_digest(&[]);
        header.next_committee = None;
        let signature = ctx.sign_proposal(&header);
        Some(Proposal {
            block: Block::new(header, stale, Vec::new()),
            tc: p.tc.clone(),
            signature,
        })
    }
}

impl super::Behaviour for Equivocator {
    fn outgoing(&mut self, ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        let mut out = Vec::new();
        for e in effects {
            let Effect::Broadcast {
                message: Message::Proposal(p),
            } = &e
            else {
                out.push(e);
                continue;
            };
            let mut peers = ctx.peers();
            ctx.rng.shuffle(&mut peers);
            let fork = if ctx.rng.chance(500) {
                Self::fork(ctx, p)
            } else {
                None
            };
            match fork {
                Some(fork) => {
                    let quorum = ctx.replica.epoch_state().committee.quorum();
                    let split = (quorum - 1).min(peers.len());
                    if let (Some(vote), Some(to)) =
                        (ctx.sign_vote(&fork.block), ctx.next_leader(fork.block.round()))
                    {
                        out.push(Effect::Send {
                            to,
                            message: Message::Vote(vote),
                        });
                    }
                    for (i, to) in peers.into_iter().enumerate() {
                        let message = if i < split {
                            Message::Proposal(Box::new(fork.clone()))
                        } else {
                            Message::Proposal(p.clone())
                        };
                        out.push(Effect::Send { to, message });
                    }
                }
                None => {
                    let sibling = Self::sibling(ctx, p);
                    for to in peers {
                        let (first, second) = if ctx.rng.chance(500) {
                            (p.clone(), Box::new(sibling.clone()))
                        } else {
                            (Box::new(sibling.clone()), p.clone())
                        };
                        out.push(Effect::Send {
                            to,
                            message: Message::Proposal(first),
                        });
                        out.push(Effect::Send {
                            to,
                            message: Message::Proposal(second),
                        });
                    }
                }
            }
        }
        out
    }
}
