//! # trellis-types
//!
//! The types a Trellis chain and its offline verifier share: the transaction envelope and each
//! application's actions ([`actions`], [`shard_actions`]) with their canonical
//! wire encoding (protobuf, `proto/trellis/v1`), account signatures and their batch
//! verification, proofs of state against a state root, the node-to-node wire format
//! ([`wire`]), the genesis file ([`genesis`]), the anchor proof bundle with its offline
//! verification ([`bundle`]) and the certified chain of headers both it and a shard's view of
//! the beacon rest on ([`certified`]). No IO: everything here is a pure function of its input.
//!
//! Consensus-level types (blocks, certificates, epoch-change proofs) come from
//! [`trellis_consensus`] and are re-exported where this crate uses them.

#![forbid(unsafe_code)]

pub mod actions;
pub mod bundle;
pub mod certified;
pub mod genesis;
pub mod request;
pub mod shard_actions;
pub mod state_bundle;
pub mod state_proof;
pub mod tx;
pub mod wire;

/// Generated protobuf messages. Prefer the parsed domain types and the codecs of [`tx`] and
/// [`wire`].
// Generated oneofs hold messages inline; they are short-lived decode targets.
#[allow(clippy::large_enum_variant)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trellis.v1.rs"));
}

pub use actions::{BeaconAction, EncodeAction, OrgId, ProposalKind, Tag};
pub use bundle::{AnchorBundle, BrokenLink, BundleError, GenesisTrust, Verdict, anchor_state_key};
pub use certified::{CertifiedState, certified_state};
pub use genesis::{
    ChainParams, Genesis, GenesisAccountEntry, GenesisError, GenesisShard, GenesisValidator,
};
pub use shard_actions::{Collection, ProvenValue, RecordKey, ShardAction};
pub use state_proof::{ProofError, StateProof};
pub use trellis_consensus::{Digest, PublicKey, Signature, Signer};
pub use tx::{Transaction, TxError};
pub use wire::{NetMessage, WireError};
