//! # trellis-consensus
//!
//! The BFT ordering core of every Trellis chain: a HotStuff-family protocol with the 2-chain
//! commit rule (as in Jolteon and HotStuff-2), epochs with committee changes, and nothing but
//! pure state transitions. No tokio, sockets, files, threads or clock reads live here; the node
//! and the deterministic simulator are its only drivers.
//!
//! ## Driving it
//!
//! A [`Replica`] is fed [`Input`]s with the driver's current time and answers with [`Effect`]s,
//! which the driver carries out in order: send or broadcast a [`Message`], persist
//! [`SafetyData`] (and acknowledge with [`Input::SafetyPersisted`]), arm a round timer (answered
//! with [`Input::Timer`]), ask the application for a payload ([`Input::Payload`]) or a verdict on
//! one ([`Input::PayloadVerdict`]), deliver committed blocks, switch epochs, or state-sync
//! ([`Input::Sync`]).
//!
//! ## Message flow (one round)
//!
//! 1. The leader of round `r` (round-robin within the epoch's committee, behind the
//!    [`LeaderElection`] trait) proposes a block extending the highest quorum certificate (QC)
//!    it knows. If that QC is not of round `r - 1`, the proposal carries the timeout
//!    certificate (TC) of round `r - 1`.
//! 2. Replicas check the proposal (leader, signature, certificates, parent, timestamp,
//!    payload verdict) and send a vote to the leader of round `r + 1`.
//! 3. That leader aggregates `2f + 1` votes into a QC for the block, moves to round `r + 1`
//!    and proposes on top of it: the QC travels inside the next block (linear happy path).
//! 4. If a round's timer expires, a replica broadcasts a timeout vote carrying its highest QC
//!    (and highest TC). `2f + 1` timeout votes form a TC that moves everyone to the next
//!    round; `f + 1` of them make a replica join the timeout early. Consecutive timeouts back
//!    the timer off by 1.5x up to a cap; a round that advances through a QC resets it.
//! 5. A replica that sees a block whose parent it lacks asks the sender for the missing
//!    ancestors by block id. One that sees a certificate far above its committed height, or a
//!    message of a later epoch, asks the driver to state-sync.
//!
//! ## Commit rule (2-chain)
//!
//! A block `B` of round `r` is committed when its direct child — the block of round `r + 1`
//! whose parent is `B` — is certified. Votes sign the block and its parent with their rounds
//! ([`VoteData`]), so that QC alone proves the commit of `B` and of all of `B`'s ancestors.
//! Committed blocks are delivered in height order, exactly once, each with the certificate that
//! committed it.
//!
//! ## Safety rules
//!
//! All signing goes through [`SafetyRules`]; its rules are listed in the [`safety`] module:
//! one vote per round, extend a certificate of the previous round or the highest certificate
//! in the TC of the previous round, never below the lock, time out only in justified rounds,
//! and persist before any signed message leaves. The replica holds votes, timeouts and
//! proposals back until the driver acknowledges persistence, so a crash at any point, followed
//! by a restart from persisted state ([`Recovery`]), cannot produce a conflicting vote.
//!
//! ## Epoch change
//!
//! A committee is fixed within an epoch. The application may mark the block it proposes as
//! ending the epoch by naming the next committee ([`Input::Payload::next_committee`]). Blocks
//! certified after it carry no payload; they only serve to commit it. When the ending block
//! commits, the replica emits [`Effect::EpochChange`] with an [`EpochChangeProof`] — the
//! ending header, the suffix headers and the certificate of the old committee committing them —
//! and starts the next epoch at round 1 from the ending block as its root. Messages of earlier
//! epochs are dropped; messages of later epochs are buffered for one epoch and otherwise trigger
//! state sync. Starting from the genesis committee, a chain of proofs lets anyone learn every
//! later committee offline.
//!
//! ## Signatures
//!
//! Ed25519 with ZIP-215 verification ([`crypto`]), signing bytes separated by domain, kind,
//! chain id, epoch, round and block id. Certificates are a signer bitmap plus signatures and
//! are batch-verified. Invalid or unauthorised peer input is dropped and counted in
//! [`Stats::dropped`]; nothing here panics on peer input.

#![forbid(unsafe_code)]

pub mod certificate;
pub mod crypto;
pub mod message;
pub mod replica;
pub mod safety;
#[cfg(feature = "sim")]
pub mod sim;
pub mod types;

pub use certificate::{
    CertError, EpochChangeProof, QuorumCert, SignerBitmap, TimeoutCert, TimeoutVote, Vote,
};
pub use crypto::Signer;
pub use message::{EpochState, Message, Proposal, TimeoutMsg};
pub use replica::{
    CommittedHead, Effect, Input, Recovery, Replica, ReplicaConfig, Stats, SyncChunk,
};
pub use safety::{LocalSafetyRules, SafetyData, SafetyError, SafetyRules};
pub use types::{
    Block, BlockHeader, BlockId, Committee, CommitteeError, Digest, Epoch, Height, PublicKey,
    Round, Signature, StateCommitment, ValidatorIndex, VoteData,
};

/// Chooses the leader of each round. Round-robin today; a reputation-aware election can
/// replace it without touching the replica.
pub trait LeaderElection {
    fn leader(&self, epoch: Epoch, round: Round, committee: &Committee) -> ValidatorIndex;
}

/// Leader of round `r` in epoch `e` is member `(e + r) mod n`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobin;

impl LeaderElection for RoundRobin {
    fn leader(&self, epoch: Epoch, round: Round, committee: &Committee) -> ValidatorIndex {
        (epoch.wrapping_add(round) % committee.size() as u64) as ValidatorIndex
    }
}
