//! The authenticated application state: a Jellyfish Merkle tree (SHA-256), one version per
//! committed height.
//!
//! What a state root commits to: every key the application wrote (`trellis_ledger::state`
//! namespaces), as leaves `SHA-256(key) → SHA-256(value)`, after applying all blocks up to and
//! including that height's block. Values are canonical protobuf records.
//!
//! The tree's nodes live in a [`MemoryTreeStore`] for now; the on-disk (fjall) store of the
//! node follows the same shape (nodes by key, values by (key, version), stale-node index).

use jmt::storage::{LeafNode, Node, NodeKey, StaleNodeIndex, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use trellis_ledger::state::{StateKey, WriteSet};
use trellis_types::state_proof::key_hash;
use trellis_types::{Digest, StateProof};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateTreeError {
    #[error("version {got} does not follow the latest version {latest:?}")]
    VersionOrder {
        got: Version,
        latest: Option<Version>,
    },
    #[error("no state at version {0}")]
    NoSuchVersion(Version),
    #[error("state tree: {0}")]
    Tree(String),
}

fn tree_err(e: impl std::fmt::Display) -> StateTreeError {
    StateTreeError::Tree(e.to_string())
}

/// Tree nodes and value history in memory, ordered for determinism.
#[derive(Default)]
pub struct MemoryTreeStore {
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<OwnedValue>>,
    stale: BTreeSet<StaleNodeIndex>,
}

impl TreeReader for MemoryTreeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .values
            .range((key_hash, 0)..=(key_hash, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(self
            .nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Leaf(leaf) => Some((k.clone(), leaf.clone())),
                _ => None,
            })
            .max_by_key(|(_, leaf)| leaf.key_hash()))
    }
}

impl MemoryTreeStore {
    fn apply(&mut self, batch: TreeUpdateBatch) {
        for (key, node) in batch.node_batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in batch.node_batch.values() {
            self.values.insert((*key_hash, *version), value.clone());
        }
        self.stale.extend(batch.stale_node_index_batch);
    }
}

/// The state tree of one chain.
#[derive(Default)]
pub struct StateTree {
    store: MemoryTreeStore,
    latest: Option<Version>,
}

impl StateTree {
    pub fn new() -> StateTree {
        StateTree::default()
    }

    pub fn latest_version(&self) -> Option<Version> {
        self.latest
    }

    /// Applies a block's writes as `version` (the block height) and returns the new root.
    pub fn apply(&mut self, version: Version, writes: &WriteSet) -> Result<Digest, StateTreeError> {
        if self.latest.is_some_and(|l| version <= l) {
            return Err(StateTreeError::VersionOrder {
                got: version,
                latest: self.latest,
            });
        }
        let value_set: Vec<(KeyHash, Option<OwnedValue>)> = writes
            .iter()
            .map(|(k, v)| (key_hash(k.as_bytes()), v.clone()))
            .collect();
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&self.store);
        let (root, batch) = tree.put_value_set(value_set, version).map_err(tree_err)?;
        self.store.apply(batch);
        self.latest = Some(version);
        Ok(Digest(root.0))
    }

    pub fn root(&self, version: Version) -> Result<Digest, StateTreeError> {
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&self.store);
        match tree.get_root_hash_option(version).map_err(tree_err)? {
            Some(root) => Ok(Digest(root.0)),
            None => Err(StateTreeError::NoSuchVersion(version)),
        }
    }

    pub fn get(&self, key: &StateKey, version: Version) -> Result<Option<Vec<u8>>, StateTreeError> {
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&self.store);
        tree.get(key_hash(key.as_bytes()), version)
            .map_err(tree_err)
    }

    /// The value of `key` at `version` with its proof against that version's root.
    pub fn get_with_proof(
        &self,
        key: &StateKey,
        version: Version,
    ) -> Result<(Option<Vec<u8>>, StateProof), StateTreeError> {
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&self.store);
        let (value, proof) = tree
            .get_with_proof(key_hash(key.as_bytes()), version)
            .map_err(tree_err)?;
        Ok((value, StateProof(proof)))
    }

    /// Drops nodes only versions before `keep_from` needed; `keep_from` and later stay readable.
    pub fn prune(&mut self, keep_from: Version) {
        let stale: Vec<StaleNodeIndex> = self
            .store
            .stale
            .iter()
            .take_while(|s| s.stale_since_version <= keep_from)
            .cloned()
            .collect();
        for s in stale {
            self.store.nodes.remove(&s.node_key);
            self.store.stale.remove(&s);
        }
    }

    /// Tree nodes held (for pruning checks and metrics).
    pub fn node_count(&self) -> usize {
        self.store.nodes.len()
    }
}
