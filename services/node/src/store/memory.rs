//! The state tree in memory (see "Write-behind tree" in the store's doc): the updates of the
//! versions not yet flushed, and of the window before them, which reads still need; and the
//! cache of tree nodes most recently read from the store, decoded.

use jmt::storage::{Node, NodeKey, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

pub(super) struct TreeMemory {
    pub(super) recent: Recent,
    pub(super) cache: NodeCache,
}

/// The tree updates of the versions above the last flush, and of the window before it, which
/// reads of its versions still need (see "Write-behind tree"). Kept as jmt produced them: a
/// node is found by its version, so taking an update in copies nothing.
pub(super) struct Recent {
    /// The tree's latest version (committed or replayed); `None` before genesis.
    pub(super) latest: Option<Version>,
    /// The highest version whose tree the store holds in full; `None` before genesis.
    pub(super) flushed: Option<Version>,
    /// The updates held, by version (shared with a flush thread while it writes them).
    pub(super) updates: BTreeMap<Version, Arc<TreeUpdateBatch>>,
    /// Per key, the versions held that wrote it, ascending.
    pub(super) writes: FxHashMap<KeyHash, Vec<Version>>,
}

impl Recent {
    fn node(&self, key: &NodeKey) -> Option<&Node> {
        self.updates.get(&key.version())?.node_batch.get_node(key)
    }

    /// The newest value of `kh` held at or below `max_version` (`Some(None)`: deleted).
    pub(super) fn value(&self, max_version: Version, kh: KeyHash) -> Option<Option<&OwnedValue>> {
        let version = *self
            .writes
            .get(&kh)?
            .iter()
            .rev()
            .find(|v| **v <= max_version)?;
        let values = self.updates.get(&version)?.node_batch.values();
        values.get(&(version, kh)).map(Option::as_ref)
    }

    /// The updates above the last flush up to `at`, oldest first.
    pub(super) fn unflushed(&self, at: Version) -> Vec<Arc<TreeUpdateBatch>> {
        let from = self.flushed.map_or(0, |f| f.saturating_add(1));
        self.updates
            .range(from..=at)
            .map(|(_, u)| u.clone())
            .collect()
    }
}

impl TreeMemory {
    /// Takes in a committed (or replayed) version's update.
    pub(super) fn record(&mut self, version: Version, tree: Arc<TreeUpdateBatch>) {
        let r = &mut self.recent;
        for (v, kh) in tree.node_batch.values().keys() {
            r.writes.entry(*kh).or_default().push(*v);
        }
        r.updates.insert(version, tree);
        r.latest = Some(version);
    }

    /// The tree up to `version` is in the store: what only versions before the previous flush
    /// needed is let go, and returned for the caller to free after the lock.
    #[must_use]
    pub(super) fn flushed(&mut self, version: Version) -> BTreeMap<Version, Arc<TreeUpdateBatch>> {
        let r = &mut self.recent;
        let Some(before) = r.flushed.replace(version) else {
            return BTreeMap::new();
        };
        let kept = r.updates.split_off(&before.saturating_add(1));
        r.writes.retain(|_, versions| {
            versions.retain(|v| *v > before);
            !versions.is_empty()
        });
        std::mem::replace(&mut r.updates, kept)
    }

    /// Runs `f` on a tree node held in memory.
    pub(super) fn with<T>(&mut self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
        match self.recent.node(key) {
            Some(node) => Some(f(node)),
            None => self.cache.with(key, f),
        }
    }

    pub(super) fn peek<T>(&self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
        match self.recent.node(key) {
            Some(node) => Some(f(node)),
            None => self.cache.peek(key, f),
        }
    }
}

/// Tree nodes most recently read from the store, decoded (the latest versions' nodes are in
/// [`Recent`]). A block's tree update reads the current node on every touched path; without
/// the cache each older one is a store lookup and a decode. Node keys carry their version and
/// a node never changes once written, so a cached node is always the stored one; pruning
/// evicts what it deletes. Two generations approximate LRU at O(1): lookups promote from the
/// old one, and when the young one fills, it becomes the old one. Keys are hashed with FxHash:
/// they are not chosen by peers (a node key is a version and a path of a SHA-256 key hash),
/// and SipHash was a tenth of the cache's cost.
pub(super) struct NodeCache {
    young: FxHashMap<NodeKey, Node>,
    old: FxHashMap<NodeKey, Node>,
    generation: usize,
}

/// Nodes per cache generation (two generations; an internal node is about 1 KiB in memory).
const NODE_CACHE_GENERATION: usize = 64 * 1024;

impl NodeCache {
    pub(super) fn new() -> NodeCache {
        let generation = NODE_CACHE_GENERATION;
        // Both sized up front and reused: growing a generation rehashed every node in it
        // several times, and a fresh table per generation was fresh memory to fault in.
        let table = || FxHashMap::with_capacity_and_hasher(generation, Default::default());
        NodeCache {
            young: table(),
            old: table(),
            generation,
        }
    }

    /// Runs `f` on a cached node, promoting it from the old generation.
    fn with<T>(&mut self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
        if let Some(node) = self.young.get(key) {
            return Some(f(node));
        }
        let (key, node) = self.old.remove_entry(key)?;
        let found = f(&node);
        self.insert(key, node);
        Some(found)
    }

    /// Runs `f` on a cached node without promoting it.
    fn peek<T>(&self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
        self.young.get(key).or_else(|| self.old.get(key)).map(f)
    }

    pub(super) fn remove(&mut self, key: &NodeKey) {
        self.young.remove(key);
        self.old.remove(key);
    }

    pub(super) fn insert(&mut self, key: NodeKey, node: Node) {
        if self.young.len() >= self.generation && !self.young.contains_key(&key) {
            self.old.clear();
            std::mem::swap(&mut self.young, &mut self.old);
        }
        self.young.insert(key, node);
    }
}

pub(super) fn lock_memory(memory: &Mutex<TreeMemory>) -> std::sync::MutexGuard<'_, TreeMemory> {
    // A panic mid-update leaves at worst a missing cache entry: every change to `recent`
    // happens after the store write it mirrors.
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}
