//! Proofs that a state key holds a value (or nothing) under a state root.
//!
//! The state is a Jellyfish Merkle tree (SHA-256) over `SHA-256(key) → value`; a leaf commits
//! to `SHA-256(value)`. A proof is the leaf and the sibling hashes up to the root, so checking it
//! needs the root, the key and the value bytes — nothing else.

use crate::Digest;
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("state proof does not verify: {0}")]
pub struct ProofError(String);

/// A Merkle proof of one key in the state tree.
#[derive(Clone, Debug, PartialEq)]
pub struct StateProof(pub SparseMerkleProof<Sha256>);

/// The tree's key for a state key.
pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Sha256>(key)
}

impl StateProof {
    /// Checks that under `root`, `key` holds `value` (`None`: holds nothing).
    pub fn verify(
        &self,
        root: &Digest,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ProofError> {
        self.0
            .verify(RootHash(root.0), key_hash(key), value)
            .map_err(|e| ProofError(e.to_string()))
    }
}
