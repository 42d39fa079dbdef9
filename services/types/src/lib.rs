//! # trellis-types
//!
//! The types a Trellis chain and its offline verifier share: transactions and their canonical
//! wire encoding (protobuf, `proto/trellis/v1`), account signatures and their batch
//! verification, and proofs of state against a state root. No IO: everything here is a pure
//! function of its input.
//!
//! Consensus-level types (blocks, certificates, epoch-change proofs) come from
//! [`trellis_consensus`] and are re-exported where this crate uses them.

#![forbid(unsafe_code)]

pub mod state_proof;
pub mod tx;

/// Generated protobuf messages. Prefer the parsed domain types in [`tx`].
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trellis.v1.rs"));
}

pub use state_proof::{ProofError, StateProof};
pub use trellis_consensus::{Digest, PublicKey, Signature, Signer};
pub use tx::{Action, Tag, Transaction, TxError};
