//! A tree flush (see "Write-behind tree" in the store's doc): the batch that writes what the
//! store needs to read the tree at a version and on, written on a thread of its own beside the
//! commits after it.

use super::codec::{encode_node, encode_node_key};
use super::error::{StoreError, corrupt};
use super::memory::{TreeMemory, lock_memory};
use super::records::{META_TREE, encode_value, stale_record, stored_value, value_key};
use fjall::{Database, Keyspace, OwnedWriteBatch, PersistMode};
use jmt::storage::{NodeKey, TreeUpdateBatch};
use jmt::{KeyHash, Version};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

/// A tree flush written on its own thread (see "Write-behind tree").
pub(super) struct Flushing {
    pub(super) at: Version,
    pub(super) thread: JoinHandle<Result<(), StoreError>>,
}

impl Flushing {
    pub(super) fn finish(self) -> Result<(), StoreError> {
        let at = self.at;
        self.thread.join().unwrap_or_else(|_| {
            Err(corrupt(
                format!("tree flush at version {at}"),
                "its thread panicked",
            ))
        })
    }
}

/// A tree flush (see "Write-behind tree"): what it writes, and clones of the store's handles
/// to write it with, so that it can run on a thread of its own.
pub(super) struct FlushJob {
    pub(super) db: Database,
    pub(super) nodes: Keyspace,
    pub(super) values: Keyspace,
    pub(super) stale: Keyspace,
    pub(super) meta: Keyspace,
    pub(super) memory: Arc<Mutex<TreeMemory>>,
    pub(super) reads: Arc<RwLock<()>>,
    /// The updates above the last flush up to `at`, oldest first.
    pub(super) window: Vec<Arc<TreeUpdateBatch>>,
    /// The last flush: the window's versions are above it.
    pub(super) below: Option<Version>,
    pub(super) at: Version,
}

impl FlushJob {
    /// Writes, as one batch, what the store needs to read the tree at `at` and on: the
    /// window's nodes still live at `at`, each key's newest value among them, the record of
    /// the stored nodes the window made stale, and `meta/tree`. Then memory drops what only
    /// versions before the previous flush needed.
    pub(super) fn write(self, durability: Option<PersistMode>) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        let above = |version: Version| self.below.is_none_or(|b| version > b);
        let stale = || self.window.iter().flat_map(|u| &u.stale_node_index_batch);
        // Made and made stale within the window: no version from `at` on reads them.
        let transient: FxHashSet<&NodeKey> = stale()
            .map(|s| &s.node_key)
            .filter(|k| above(k.version()))
            .collect();
        let mut batch =
            OwnedWriteBatch::with_capacity(self.db.clone(), 1024).durability(durability);
        let mut nodes = 0usize;
        for (key, node) in self.window.iter().flat_map(|u| u.node_batch.nodes()) {
            if transient.contains(key) {
                continue;
            }
            let encoded = encode_node(node).map_err(|e| StoreError::InvalidCommit {
                height: self.at,
                reason: format!("cannot encode tree node {key:?}: {e}"),
            })?;
            batch.insert(&self.nodes, encode_node_key(key), encoded);
            nodes += 1;
        }
        // Reads from `at` on need only each key's newest value (the window is oldest first).
        let mut newest: FxHashMap<KeyHash, (Version, Option<&[u8]>)> = FxHashMap::default();
        for ((v, kh), value) in self.window.iter().flat_map(|u| u.node_batch.values()) {
            newest.insert(*kh, (*v, value.as_deref()));
        }
        // In key order, as the memtable takes them fastest (see `NodeStore::commit`).
        let mut newest: Vec<_> = newest.into_iter().collect();
        newest.sort_unstable_by_key(|(kh, _)| *kh);
        let mut values = 0usize;
        for (kh, (v, value)) in newest {
            // A deletion of a key the store does not hold (made and deleted within the
            // window) would read the same without a marker, and a marker would never go: a
            // prune clears a key's history through its stale leaves, and this key's leaf
            // never reached the store.
            if value.is_none() && !self.holds_value_before(&kh)? {
                continue;
            }
            batch.insert(&self.values, value_key(&kh, v), encode_value(value));
            values += 1;
        }
        let record = stale_record(
            &lock_memory(&self.memory),
            stale().filter(|s| !above(s.node_key.version())),
        );
        if !record.is_empty() {
            batch.insert(&self.stale, self.at.to_be_bytes(), record);
        }
        batch.insert(&self.meta, META_TREE, self.at.to_be_bytes());
        let staged = began.elapsed();
        batch.commit()?;
        // Freed after the lock: a window's nodes are tens of thousands of allocations.
        let released = {
            // After the reads in progress: each may be walking a version let go here.
            let _no_reads = self.reads.write().unwrap_or_else(PoisonError::into_inner);
            lock_memory(&self.memory).flushed(self.at)
        };
        drop(released);
        tracing::debug!(
            at = self.at,
            nodes,
            values,
            staged_micros = staged.as_micros() as u64,
            micros = began.elapsed().as_micros() as u64,
            "tree flushed"
        );
        Ok(())
    }

    /// Whether the store, all written by flushes up to `below`, holds a value of the key
    /// (its newest record is not a deletion).
    fn holds_value_before(&self, kh: &KeyHash) -> Result<bool, StoreError> {
        match self.below {
            Some(below) => Ok(stored_value(&self.values, kh, below)?.is_some()),
            None => Ok(false),
        }
    }
}
