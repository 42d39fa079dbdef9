//! A validator that, next to every message it sends, sends forgeries: flipped signature bytes,
//! messages claiming another member as author, certificates with a corrupted signature or a
//! malformed signer bitmap, and blocks nobody asked for. All must be dropped and counted.

use super::{Behaviour, Ctx};
use crate::{Effect, Message};

pub struct Forger;

fn flip(sig: &mut crate::Signature, at: usize) {
    sig.0[at % 64] ^= 0x01;
}

impl Behaviour for Forger {
    fn outgoing(&mut self, ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        let mut out = Vec::new();
        let n = ctx.replica.epoch_state().committee.size() as u32;
        for e in effects {
            let message = match &e {
                Effect::Send { message, .. } | Effect::Broadcast { message } => message.clone(),
                _ => {
                    out.push(e);
                    continue;
                }
            };
            let at = ctx.rng.next_u64() as usize;
            let other = (ctx.rng.next_u64() % n as u64) as u32;
            let forged = match message {
                Message::Vote(mut v) => {
                    if ctx.rng.chance(500) {
                        flip(&mut v.signature, at);
                    } else {
                        v.author = other; // impersonation, signed with our own key
                    }
                    Message::Vote(v)
                }
                Message::Proposal(mut p) => {
                    match ctx.rng.range(0, 2) {
                        0 => flip(&mut p.signature, at),
                        1 => match p.block.qc.signatures.first_mut() {
                            Some(s) => flip(s, at),
                            None => p.block.header.author = other,
                        },
                        _ => p.block.header.author = other,
                    }
                    Message::Proposal(p)
                }
                Message::Timeout(mut t) => {
                    if ctx.rng.chance(500) {
                        flip(&mut t.vote.signature, at);
                    } else {
                        t.high_qc.signers.0.push(0xff);
                    }
                    Message::Timeout(t)
                }
                Message::BlockResponse { epoch, mut blocks } => {
                    for b in &mut blocks {
                        b.payload.push(0);
                    }
                    Message::BlockResponse { epoch, blocks }
                }
                other => other,
            };
            out.push(Effect::Broadcast { message: forged });
            out.push(e);
        }
        out
    }
}
