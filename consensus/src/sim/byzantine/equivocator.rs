//! An equivocating leader. In each round it leads it does one of two things:
//!
//! * **Sibling**: next to the real proposal it sends everyone a second block with the same
//!   parent and another payload, so every replica is asked to vote twice in one round.
//! * **Fork**: when its proposal's certificate commits a block `B` (the 2-chain rule), it shows
//!   that proposal to a few replicas only (they commit `B`), joins the others' timeout of the
//!   previous round with a timeout of its own, and once their timeout certificate exists it
//!   proposes to them a block that extends the certificate *below* `B`, abandoning it.
//!
//! Correct safety rules refuse the second block of a round (rule 2) and the fork (rules 3 and 4:
//! it extends neither the previous round nor the highest certificate reported in the timeout
//! certificate, and sits below the lock). With those rules broken, the fork commits a block
//! that conflicts with `B`, and the agreement check fires.

use super::Ctx;
use crate::certificate::{SignerBitmap, TimeoutCert, TimeoutVote};
use crate::types::payload_digest;
use crate::{
    Block, BlockHeader, Effect, Message, Proposal, PublicKey, QuorumCert, Round, Signature,
    TimeoutMsg, ValidatorIndex,
};
use std::collections::BTreeMap;

struct PendingFork {
    round: Round,
    header: BlockHeader,
    stale: QuorumCert,
    real: Proposal,
    shown: Vec<PublicKey>,
    targets: Vec<PublicKey>,
    timeouts: BTreeMap<ValidatorIndex, (Round, Signature)>,
}

#[derive(Default)]
pub struct Equivocator {
    pending: Option<PendingFork>,
    /// Our replica's timeouts up to this round are withheld: they would carry the certificate
    /// that commits `B` to the victims. (Its vote in the attacked round is withheld too.)
    quiet_through: Option<(crate::Epoch, Round)>,
}

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

    /// Starts the fork attack; returns the effects, or `None` when this proposal commits nothing.
    fn start_fork(&mut self, ctx: &mut Ctx<'_>, p: &Proposal) -> Option<Vec<Effect>> {
        p.block.qc.vote_data.commits()?;
        let me = ctx.my_index()?;
        let parent = ctx.replica.block(&p.block.parent_id())?;
        let committed = ctx.replica.block(&parent.parent_id())?;
        let stale = committed.qc.clone();
        let reported = parent.qc.clone();
        let round = p.block.round();
        if stale.epoch() != p.block.epoch() || reported.round() + 1 >= round {
            return None;
        }
        let mut peers = ctx.peers();
        ctx.rng.shuffle(&mut peers);
        let quorum = ctx.replica.epoch_state().committee.quorum();
        let split = quorum - 1;
        if peers.len() <= split {
            return None;
        }
        // The real proposal is held back until the fork goes out: shown earlier, its receivers'
        // next timeout would carry its certificate (which commits `B`) to the victims.
        let shown = peers.split_off(split);
        let mut out = Vec::new();
        // Our own timeout of the previous round, to complete the others' timeout certificate.
        let epoch = p.block.epoch();
        let signature = ctx.signer.sign(&TimeoutVote::signing_bytes(
            ctx.chain_id(),
            epoch,
            round - 1,
            reported.round(),
        ));
        let vote = TimeoutVote {
            epoch,
            round: round - 1,
            high_qc_round: reported.round(),
            author: me,
            signature,
        };
        let mut timeouts = BTreeMap::new();
        timeouts.insert(me, (reported.round(), signature));
        for to in peers.iter().chain(&shown) {
            out.push(Effect::Send {
                to: *to,
                message: Message::Timeout(Box::new(TimeoutMsg {
                    vote: vote.clone(),
                    high_qc: reported.clone(),
                    last_tc: None,
                })),
            });
        }
        self.quiet_through = Some((epoch, round));
        self.pending = Some(PendingFork {
            round,
            header: p.block.header.clone(),
            stale,
            real: p.clone(),
            shown,
            targets: peers,
            timeouts,
        });
        Some(out)
    }

    /// Collects the victims' timeouts; with a quorum, proposes the fork.
    fn on_timeout(&mut self, ctx: &mut Ctx<'_>, t: &TimeoutMsg) -> Vec<Effect> {
        let Some(pending) = self.pending.as_mut() else {
            return Vec::new();
        };
        if t.vote.epoch != pending.header.epoch || t.vote.round + 1 != pending.round {
            return Vec::new();
        }
        pending
            .timeouts
            .insert(t.vote.author, (t.vote.high_qc_round, t.vote.signature));
        let committee = &ctx.replica.epoch_state().committee;
        if pending.timeouts.len() < committee.quorum() {
            return Vec::new();
        }
        let Some(pending) = self.pending.take() else {
            return Vec::new();
        };
        let mut signers = SignerBitmap::new(committee.size());
        let mut high_qc_rounds = Vec::new();
        let mut signatures = Vec::new();
        for (i, (hqc, sig)) in &pending.timeouts {
            signers.set(*i);
            high_qc_rounds.push(*hqc);
            signatures.push(*sig);
        }
        let tc = TimeoutCert {
            epoch: pending.header.epoch,
            round: pending.round - 1,
            signers,
            high_qc_rounds,
            signatures,
        };
        let mut header = pending.header.clone();
        header.height = pending.stale.vote_data.height + 1;
        header.parent_id = pending.stale.block_id();
        header.qc_digest = pending.stale.vote_data.digest();
        header.payload_digest = payload_digest(&[]);
        header.next_committee = None;
        let signature = ctx.sign_proposal(&header);
        let fork = Proposal {
            block: Block::new(header, pending.stale, Vec::new()),
            tc: Some(tc),
            signature,
        };
        let mut out = Vec::new();
        if let (Some(vote), Some(to)) = (ctx.sign_vote(&fork.block), ctx.next_leader(pending.round))
        {
            out.push(Effect::Send {
                to,
                message: Message::Vote(vote),
            });
        }
        for to in pending.targets {
            out.push(Effect::Send {
                to,
                message: Message::Proposal(Box::new(fork.clone())),
            });
        }
        for to in pending.shown {
            out.push(Effect::Send {
                to,
                message: Message::Proposal(Box::new(pending.real.clone())),
            });
        }
        out
    }
}

impl super::Behaviour for Equivocator {
    fn incoming(&mut self, ctx: &mut Ctx<'_>, _from: PublicKey, msg: &Message) -> Vec<Effect> {
        match msg {
            Message::Timeout(t) => self.on_timeout(ctx, t),
            _ => Vec::new(),
        }
    }

    fn outgoing(&mut self, ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect> {
        if self.pending.as_ref().is_some_and(|p| {
            ctx.replica.epoch() != p.header.epoch || ctx.replica.round() > p.round + 1
        }) {
            self.pending = None; // the attack window passed
        }
        let mut out = Vec::new();
        for e in effects {
            // While the victims gather their timeout certificate, our own replica's timeout of
            // the attacked round would let them give up on it before the fork arrives.
            if let Effect::Broadcast {
                message: Message::Timeout(t),
            } = &e
                && self
                    .quiet_through
                    .is_some_and(|(epoch, round)| t.vote.epoch == epoch && t.vote.round <= round)
            {
                continue;
            }
            // Likewise its vote for the real proposal: our vote belongs to the fork.
            if let Effect::Send {
                message: Message::Vote(v),
                ..
            } = &e
                && self.pending.as_ref().is_some_and(|p| {
                    v.vote_data.epoch == p.header.epoch && v.vote_data.round == p.round
                })
            {
                continue;
            }
            let Effect::Broadcast {
                message: Message::Proposal(p),
            } = &e
            else {
                out.push(e);
                continue;
            };
            if ctx.rng.chance(500)
                && let Some(effects) = self.start_fork(ctx, p)
            {
                out.extend(effects);
                continue;
            }
            let sibling = Self::sibling(ctx, p);
            for to in ctx.peers() {
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
        out
    }
}
