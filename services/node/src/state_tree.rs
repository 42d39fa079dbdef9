//! The authenticated application state: a Jellyfish Merkle tree (SHA-256), one version per
//! committed height.
//!
//! # What a state root commits to
//!
//! The root at version `h` commits to the application state after applying every block up to
//! and including the block at height `h` (version = committed height; genesis is version 0).
//! Each leaf maps a jmt [`KeyHash`] — `SHA-256(state key bytes)`, the `trellis_ledger::state`
//! namespaces — to the value bytes the ledger wrote (canonical protobuf records). A leaf node
//! hashes `SHA-256(value)`, so a [`StateProof`] is checked with the root, the key and the value
//! bytes (see `trellis_types::state_proof`). A height whose block changed nothing still gets a
//! version: jmt copies the previous root node to the new version, so the root is carried
//! forward unchanged.
//!
//! # Compute, then write
//!
//! [`StateTree::prepare`] computes a block's new root and the tree nodes to write
//! ([`TreeUpdateBatch`]) without writing anything: the node's block commit writes that batch
//! together with the block in one atomic store batch (the node store's `commit`), then calls
//! [`StateTree::committed`]. The tree reads its nodes through any [`TreeReader`] that keeps its
//! reads consistent ([`ConsistentReads`]): the node's durable store (`NodeStore`, which depends on
//! this module, not this module on it), or the [`MemoryTreeStore`] here (tests, tools), whose
//! [`StateTree::apply`] does prepare + write + committed in one call.

use jmt::storage::{
    LeafNode, NibblePath, Node, NodeKey, StaleNodeIndex, TreeReader, TreeUpdateBatch,
};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use trellis_ledger::state::{StateKey, WriteSet};
use trellis_types::state_proof::key_hash;
use trellis_types::{Digest, StateProof};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateTreeError {
    /// Versions are consecutive: the first is 0, each next one is `latest + 1`.
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

/// Runs a jmt operation, turning a panic into an error. jmt 0.12 `unwrap`s some reader errors
/// (a child node that is corrupt or missing while building a proof's siblings), so corrupt or
/// pruned data would otherwise bring down the thread serving the read. The panic message (which
/// names the node) becomes the error; the default panic hook still logs it.
fn guarded<T>(op: impl FnOnce() -> Result<T, StateTreeError>) -> Result<T, StateTreeError> {
    // Unwind safety: jmt works on its own local caches; a reader only reads.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(StateTreeError::Tree(format!(
            "tree data is corrupt or missing: {msg}"
        )))
    })
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
    /// Writes a batch from [`StateTree::prepare`]: new nodes, new values, stale-node records.
    pub fn apply_batch(&mut self, batch: TreeUpdateBatch) {
        for (key, node) in batch.node_batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in batch.node_batch.values() {
            self.values.insert((*key_hash, *version), value.clone());
        }
        self.stale.extend(batch.stale_node_index_batch);
    }

    /// Deletes the nodes that became stale at or before `keep_from` (every version from
    /// `keep_from` on stays readable) and the value history those versions no longer need.
    /// Returns the number of nodes deleted.
    pub fn prune(&mut self, keep_from: Version) -> usize {
        let stale: Vec<StaleNodeIndex> = self
            .stale
            .iter()
            .take_while(|s| s.stale_since_version <= keep_from)
            .cloned()
            .collect();
        let mut pruned = 0;
        let mut leaf_keys = BTreeSet::new();
        for s in stale {
            if let Some(node) = self.nodes.remove(&s.node_key) {
                pruned += 1;
                if let Node::Leaf(leaf) = node {
                    leaf_keys.insert(leaf.key_hash());
                }
            }
            self.stale.remove(&s);
        }
        // For each key whose leaf was replaced: reads at `keep_from` or later need at most the
        // newest value written at or before `keep_from` (and not even that if it is a deletion).
        for kh in leaf_keys {
            let history: Vec<(Version, bool)> = self
                .values
                .range((kh, 0)..=(kh, keep_from))
                .map(|((_, v), value)| (*v, value.is_some()))
                .collect();
            let keep = match history.last() {
                Some((v, true)) => Some(*v),
                _ => None,
            };
            for (v, _) in history {
                if Some(v) != keep {
                    self.values.remove(&(kh, v));
                }
            }
        }
        pruned
    }

    /// Tree nodes held (for pruning checks and metrics).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// A tree store whose older versions may go while a read walks them (the node store lets
/// versions go from memory between flushes, on a thread of its own). A read of an old version
/// runs inside `reading`: every version readable when it begins stays readable until it ends,
/// so the read answers from that version alone or finds it gone at the root; it never sees
/// half of one, or an older value for a newer one.
pub trait ConsistentReads: TreeReader {
    fn reading<T>(&self, read: impl FnOnce() -> T) -> T {
        read()
    }
}

/// Nothing goes from memory but by `prune`, which takes the tree mutably.
impl ConsistentReads for MemoryTreeStore {}

/// The state tree of one chain, reading its nodes through `R`.
pub struct StateTree<R: ConsistentReads> {
    reader: R,
    latest: Option<Version>,
}

impl<R: ConsistentReads> StateTree<R> {
    /// An empty tree over `reader`: the first version to prepare is 0.
    pub fn new(reader: R) -> StateTree<R> {
        StateTree {
            reader,
            latest: None,
        }
    }

    /// The tree over `reader` whose latest written version is `latest` (after a restart: the
    /// last committed height).
    pub fn resume(reader: R, latest: Version) -> StateTree<R> {
        StateTree {
            reader,
            latest: Some(latest),
        }
    }

    pub fn latest_version(&self) -> Option<Version> {
        self.latest
    }

    pub fn reader(&self) -> &R {
        &self.reader
    }

    /// The reader, to write a prepared batch into (`MemoryTreeStore::apply_batch`).
    pub fn reader_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    fn jmt(&self) -> JellyfishMerkleTree<'_, R, Sha256> {
        JellyfishMerkleTree::new(&self.reader)
    }

    /// Computes the root after applying a block's writes as `version` (the block height), and
    /// the tree update to write; writes nothing. `version` must be `latest + 1` (0 for an empty
    /// tree). An empty write set still yields the new version, with the previous root.
    pub fn prepare(
        &self,
        version: Version,
        writes: &WriteSet,
    ) -> Result<(Digest, TreeUpdateBatch), StateTreeError> {
        let expected = match self.latest {
            None => Some(0),
            Some(latest) => latest.checked_add(1),
        };
        if expected != Some(version) {
            return Err(StateTreeError::VersionOrder {
                got: version,
                latest: self.latest,
            });
        }
        // jmt's batch insertion rebuilds each touched node once per block, where inserting key
        // by key rehashes the whole path for every key. It takes no deletions and no empty set;
        // both paths give the same root (the tree's shape depends only on its keys).
        let inserts: Option<Vec<(KeyHash, OwnedValue)>> = writes
            .iter()
            .map(|(k, v)| v.clone().map(|v| (key_hash(k.as_bytes()), v)))
            .collect();
        let value_set = || -> Vec<(KeyHash, Option<OwnedValue>)> {
            writes
                .iter()
                .map(|(k, v)| (key_hash(k.as_bytes()), v.clone()))
                .collect()
        };
        let (root, mut batch) = guarded(|| match inserts {
            Some(inserts) if !inserts.is_empty() => self
                .jmt()
                .batch_put_value_sets(vec![inserts], None, version)
                .map_err(tree_err)
                .and_then(|(roots, batch)| match roots.as_slice() {
                    [root] => Ok((*root, batch)),
                    _ => Err(tree_err("one value set gave several roots")),
                }),
            _ => self
                .jmt()
                .put_value_set(value_set(), version)
                .map_err(tree_err),
        })?;
        // For a version that changes nothing, jmt copies the root to the new version and, unlike
        // every other update, leaves the root before it live. Marked stale here like any
        // replaced root: otherwise a flush writes that root without the children that later
        // versions replaced, and once memory lets its version go it reads as present but
        // incomplete instead of gone.
        if let Some(previous) = version.checked_sub(1) {
            batch.stale_node_index_batch.insert(StaleNodeIndex {
                stale_since_version: version,
                node_key: NodeKey::new(previous, NibblePath::from_iter(std::iter::empty())),
            });
        }
        Ok((Digest(root.0), batch))
    }

    /// Records that the batch prepared for `version` has been written to the reader's store.
    pub fn committed(&mut self, version: Version) {
        self.latest = Some(version);
    }

    pub fn root(&self, version: Version) -> Result<Digest, StateTreeError> {
        self.reader.reading(|| self.root_read(version))
    }

    /// [`root`](Self::root) inside a read already running in `reading` (which does not nest).
    fn root_read(&self, version: Version) -> Result<Digest, StateTreeError> {
        match guarded(|| self.jmt().get_root_hash_option(version).map_err(tree_err))? {
            Some(root) => Ok(Digest(root.0)),
            None => Err(StateTreeError::NoSuchVersion(version)),
        }
    }

    /// A read that failed: `NoSuchVersion` when the version has no root; the reader's error
    /// when the root cannot be read (jmt reports any failure there as a missing root); the
    /// read's error otherwise.
    fn read_err(&self, version: Version, e: anyhow::Error) -> StateTreeError {
        match self.jmt().get_root_hash_option(version) {
            Ok(None) => StateTreeError::NoSuchVersion(version),
            Ok(Some(_)) => tree_err(e),
            Err(root_err) => tree_err(root_err),
        }
    }

    /// The value of `key` at `version`. jmt answers this from the value history alone, so the
    /// version's root is looked up first: a version that does not exist (not yet written, or
    /// pruned) is `NoSuchVersion` rather than a silently older or newer answer.
    pub fn get(&self, version: Version, key: &StateKey) -> Result<Option<Vec<u8>>, StateTreeError> {
        self.reader.reading(|| {
            self.root_read(version)?;
            guarded(|| {
                self.jmt()
                    .get(key_hash(key.as_bytes()), version)
                    .map_err(tree_err)
            })
        })
    }

    /// The value of `key` at `version` with its proof against that version's root.
    pub fn get_with_proof(
        &self,
        version: Version,
        key: &StateKey,
    ) -> Result<(Option<Vec<u8>>, StateProof), StateTreeError> {
        let (value, proof) = self.reader.reading(|| {
            guarded(|| {
                self.jmt()
                    .get_with_proof(key_hash(key.as_bytes()), version)
                    .map_err(|e| self.read_err(version, e))
            })
        })?;
        Ok((value, StateProof(proof)))
    }
}

impl StateTree<MemoryTreeStore> {
    /// An empty tree in memory.
    pub fn in_memory() -> StateTree<MemoryTreeStore> {
        StateTree::new(MemoryTreeStore::default())
    }

    /// [`prepare`](Self::prepare), write the batch, [`committed`](Self::committed): applies a
    /// block's writes as `version` and returns the new root.
    pub fn apply(&mut self, version: Version, writes: &WriteSet) -> Result<Digest, StateTreeError> {
        let (root, batch) = self.prepare(version, writes)?;
        self.reader.apply_batch(batch);
        self.committed(version);
        Ok(root)
    }

    /// See [`MemoryTreeStore::prune`].
    pub fn prune(&mut self, keep_from: Version) -> usize {
        self.reader.prune(keep_from)
    }

    /// Tree nodes held (for pruning checks and metrics).
    pub fn node_count(&self) -> usize {
        self.reader.node_count()
    }
}

impl Default for StateTree<MemoryTreeStore> {
    fn default() -> Self {
        StateTree::in_memory()
    }
}
