//! Byzantine validators as named actors, one behaviour per file. Each runs an honest replica
//! underneath (so it keeps up with the chain) and distorts what goes in or comes out of it.

mod conflicting_voter;
mod double_voter;
mod equivocator;
mod forger;
mod silent;
mod stale_epoch_replay;
mod twins;

use super::rng::SimRng;
use super::scenario::ByzantineKind;
use crate::crypto::{MessageKind, Signer, signing_bytes};
use crate::{
    Block, BlockHeader, Digest, Effect, Message, PublicKey, Replica, Round, Signature, Vote,
};

/// What a behaviour may look at and use.
pub struct Ctx<'a> {
    pub signer: &'a Signer,
    pub replica: &'a Replica,
    pub rng: &'a mut SimRng,
}

impl Ctx<'_> {
    pub fn chain_id(&self) -> &str {
        &self.replica.epoch_state().chain_id
    }

    pub fn my_index(&self) -> Option<u32> {
        self.replica
            .epoch_state()
            .committee
            .index_of(&self.signer.public_key())
    }

    /// A vote for `block` with this node's key, whatever the safety rules would say.
    pub fn sign_vote(&self, block: &Block) -> Option<Vote> {
        let vote_data = block.vote_data();
        let signature = self
            .signer
            .sign(&Vote::signing_bytes(self.chain_id(), &vote_data));
        Some(Vote {
            vote_data,
            author: self.my_index()?,
            signature,
        })
    }

    pub fn sign_proposal(&self, header: &BlockHeader) -> Signature {
        self.signer.sign(&signing_bytes(
            self.chain_id(),
            MessageKind::Proposal,
            header.epoch,
            header.round,
            &header.id(),
            &Digest::ZERO,
        ))
    }

    /// The validator a vote for a block of `round` goes to.
    pub fn next_leader(&self, round: Round) -> Option<PublicKey> {
        let committee = &self.replica.epoch_state().committee;
        committee.member(self.replica.leader(round + 1)).copied()
    }

    /// Every other member of the current committee.
    pub fn peers(&self) -> Vec<PublicKey> {
        let me = self.signer.public_key();
        self.replica
            .epoch_state()
            .committee
            .members()
            .iter()
            .copied()
            .filter(|k| *k != me)
            .collect()
    }
}

pub trait Behaviour {
    /// Sees every message delivered to the node before its replica does; may add effects.
    fn incoming(&mut self, _ctx: &mut Ctx<'_>, _from: PublicKey, _msg: &Message) -> Vec<Effect> {
        Vec::new()
    }
    /// Rewrites what the node's replica wants done.
    fn outgoing(&mut self, ctx: &mut Ctx<'_>, effects: Vec<Effect>) -> Vec<Effect>;
}

pub fn make(kind: ByzantineKind) -> Box<dyn Behaviour> {
    match kind {
        ByzantineKind::Equivocator => Box::new(equivocator::Equivocator::default()),
        ByzantineKind::DoubleVoter => Box::new(double_voter::DoubleVoter),
        ByzantineKind::ConflictingVoter => Box::new(conflicting_voter::ConflictingVoter),
        ByzantineKind::Forger => Box::new(forger::Forger),
        ByzantineKind::StaleEpochReplay => {
            Box::new(stale_epoch_replay::StaleEpochReplay::default())
        }
        ByzantineKind::Silent => Box::new(silent::Silent),
        ByzantineKind::Twins => Box::new(twins::Twin),
    }
}
