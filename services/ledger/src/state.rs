//! Application state as ordered key → bytes, the shape the node's Merkle tree authenticates.
//!
//! Keys are namespaced; values are canonical protobuf records of `trellis.v1`:
//!
//! | key | record |
//! |---|---|
//! | `acct/` ‖ 32-byte account key | `Account` |
//! | `anchor/` ‖ 32-byte digest ([`trellis_types::anchor_state_key`], shared with offline verifiers) | `AnchorRecord` |
//! | `member/` ‖ org id | `Member` |
//! | `members` | `MemberIndex` (every org ever admitted, sorted) |
//! | `attestation/` ‖ 32-byte org key | `Attestation` |
//! | `params/governance` | `GovernanceParams` |
//! | `proposal/` ‖ 8-byte big-endian id | `GovernanceProposal` |
//! | `proposals/last` | `ProposalCounter` |
//! | `proposal-open/` ‖ org id | `ProposalCounter` holding the id of the org's open proposal |
//! | `revocations` | `RevocationList` (sorted by serial) |
//! | `chain/genesis` ([`trellis_types::genesis::GENESIS_STATE_KEY`]) | the 32-byte genesis digest, written by the node at genesis and never again |

use std::collections::BTreeMap;
use trellis_types::{Digest, PublicKey};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKey(Vec<u8>);

impl StateKey {
    pub fn account(key: &PublicKey) -> StateKey {
        StateKey([b"acct/".as_slice(), &key.0].concat())
    }
    pub fn anchor(digest: &Digest) -> StateKey {
        StateKey(trellis_types::anchor_state_key(digest))
    }
    pub fn member(org: &str) -> StateKey {
        StateKey([b"member/".as_slice(), org.as_bytes()].concat())
    }
    pub fn member_index() -> StateKey {
        StateKey(b"members".to_vec())
    }
    pub fn attestation(key: &PublicKey) -> StateKey {
        StateKey([b"attestation/".as_slice(), &key.0].concat())
    }
    pub fn governance_params() -> StateKey {
        StateKey(b"params/governance".to_vec())
    }
    pub fn proposal(id: u64) -> StateKey {
        StateKey([b"proposal/".as_slice(), &id.to_be_bytes()].concat())
    }
    pub fn proposal_counter() -> StateKey {
        StateKey(b"proposals/last".to_vec())
    }
    pub fn open_proposal(org: &str) -> StateKey {
        StateKey([b"proposal-open/".as_slice(), org.as_bytes()].concat())
    }
    /// Written once, by the node, into the genesis state; no transaction writes under `chain/`.
    pub fn genesis_digest() -> StateKey {
        StateKey(trellis_types::genesis::GENESIS_STATE_KEY.to_vec())
    }
    pub fn revocations() -> StateKey {
        StateKey(b"revocations".to_vec())
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Read access to committed state.
pub trait StateView {
    fn get(&self, key: &StateKey) -> Option<Vec<u8>>;
}

/// Writes of a block, in key order; `None` deletes.
pub type WriteSet = BTreeMap<StateKey, Option<Vec<u8>>>;

/// Plain in-memory state, for genesis, tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState(pub BTreeMap<StateKey, Vec<u8>>);

impl StateView for MemoryState {
    fn get(&self, key: &StateKey) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }
}

impl MemoryState {
    pub fn apply(&mut self, writes: &WriteSet) {
        for (k, v) in writes {
            match v {
                Some(v) => self.0.insert(k.clone(), v.clone()),
                None => self.0.remove(k),
            };
        }
    }
}

/// Committed state with a block's pending writes on top: reads see earlier transactions of the
/// same block.
pub(crate) struct Overlay<'a, V: StateView> {
    base: &'a V,
    pub(crate) writes: WriteSet,
}

impl<V: StateView> StateView for Overlay<'_, V> {
    fn get(&self, key: &StateKey) -> Option<Vec<u8>> {
        Overlay::get(self, key)
    }
}

impl<'a, V: StateView> Overlay<'a, V> {
    pub(crate) fn new(base: &'a V) -> Self {
        Overlay {
            base,
            writes: WriteSet::new(),
        }
    }
    pub(crate) fn get(&self, key: &StateKey) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key),
        }
    }
    pub(crate) fn put(&mut self, key: StateKey, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }
    pub(crate) fn delete(&mut self, key: StateKey) {
        self.writes.insert(key, None);
    }
}
