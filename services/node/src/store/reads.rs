//! Reads of the state tree from the store: the walk down a version's nodes to a value
//! ([`NodeStore::value_at`]), the nodes and values jmt reads (`TreeReader`), and the lock that
//! keeps a read's version readable while it runs (`ConsistentReads`).

use super::codec::{decode_node, decode_node_key, encode_node_key};
use super::error::{StoreError, corrupt};
use super::node_store::NodeStore;
use super::records::stored_value;
use crate::state_tree::ConsistentReads;
use jmt::storage::{LeafNode, NibblePath, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

/// Where one step of [`NodeStore::value_at`]'s walk leads.
enum Step {
    Absent,
    Present,
    /// Into the child at the next nibble, written at this version.
    Descend(Version),
}

impl NodeStore {
    /// Runs `f` on a tree node: from the cache without copying it, else from the store (and
    /// then cached). `None` when the node is not stored.
    fn with_node<T>(&self, key: &NodeKey, f: impl Fn(&Node) -> T) -> Result<Option<T>, StoreError> {
        // Only a version's own root has an empty path: the children of later roots do not.
        if key.nibble_path().is_empty()
            && key.version() < self.inner.pruned_below.load(Ordering::Acquire)
        {
            return Ok(None);
        }
        if let Some(out) = self.tree_memory().with(key, &f) {
            return Ok(Some(out));
        }
        let encoded = encode_node_key(key);
        let Some(bytes) = self.inner.nodes.get(&encoded)? else {
            return Ok(None);
        };
        let node = decode_node(&bytes, &encoded)?;
        let out = f(&node);
        self.tree_memory().cache.insert(key.clone(), node);
        Ok(Some(out))
    }

    /// The value of `key_hash` in the tree at `version`, found by walking down from that
    /// version's root. A key the tree does not hold is answered from its (mostly cached) nodes;
    /// only a present key reads the value history. jmt's own `get` range-scans the value
    /// history even for absent keys, and execution asks for absent keys all the time (is this
    /// digest anchored yet?). A version without a root (pruned, or not written) is an error
    /// rather than an answer from another version.
    pub fn value_at(
        &self,
        version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        self.reading(|| self.walk_to_value(version, key_hash))
    }

    fn walk_to_value(
        &self,
        version: Version,
        key_hash: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        let nibbles: Vec<u8> = key_hash.0.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
        let mut depth = 0;
        let mut key = NodeKey::new(version, NibblePath::from_iter(std::iter::empty()));
        loop {
            let step = self.with_node(&key, |node| match node {
                Node::Null => Step::Absent,
                Node::Leaf(leaf) if leaf.key_hash() == key_hash => Step::Present,
                Node::Leaf(_) => Step::Absent,
                Node::Internal(internal) => {
                    match nibbles.get(depth).and_then(|n| internal.child((*n).into())) {
                        Some(child) => Step::Descend(child.version),
                        None => Step::Absent,
                    }
                }
            })?;
            match step {
                None if depth == 0 => return Err(StoreError::NoSuchVersion(version)),
                None => {
                    return Err(corrupt(
                        format!("tree node {}", hex::encode(encode_node_key(&key))),
                        "missing below its parent",
                    ));
                }
                Some(Step::Absent) => return Ok(None),
                Some(Step::Present) => {
                    return self.get_value_option(version, key_hash).map_err(|e| {
                        corrupt(format!("value at version {version}"), e.to_string())
                    });
                }
                Some(Step::Descend(child_version)) => {
                    depth += 1;
                    let path = nibbles[..depth].iter().map(|n| (*n).into()).collect();
                    key = NodeKey::new(child_version, path);
                }
            }
        }
    }
}

impl ConsistentReads for NodeStore {
    fn reading<T>(&self, read: impl FnOnce() -> T) -> T {
        // Reads never take it twice: a writer waiting between would block the second.
        let _held = self
            .inner
            .reads
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        read()
    }
}

impl TreeReader for NodeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.with_node(node_key, Node::clone)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        // Memory holds every value of the versions it holds; an older one is in the store.
        let remembered = self
            .tree_memory()
            .recent
            .value(max_version, key_hash)
            .map(|value| value.cloned());
        if let Some(value) = remembered {
            return Ok(value);
        }
        Ok(stored_value(&self.inner.values, &key_hash, max_version)?)
    }

    /// A full scan; only restoring a tree from chunks uses it.
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let mut best: Option<(NodeKey, LeafNode)> = None;
        for g in self.inner.nodes.iter() {
            let (k, v) = g.into_inner().map_err(StoreError::from)?;
            if let Node::Leaf(leaf) = decode_node(&v, &k)?
                && best
                    .as_ref()
                    .is_none_or(|(_, b)| leaf.key_hash() > b.key_hash())
            {
                best = Some((decode_node_key(&k)?, leaf));
            }
        }
        Ok(best)
    }
}
