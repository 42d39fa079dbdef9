//! Application state as ordered key → bytes, the shape the node's Merkle tree authenticates.
//!
//! Keys are namespaced: `acct/` ‖ 32-byte account key, `anchor/` ‖ 32-byte digest (that layout
//! is [`trellis_types::anchor_state_key`], shared with offline verifiers of anchor bundles).
//! Values are canonical protobuf records (`trellis.v1` `Account`, `AnchorRecord`).

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
}
