//! Pruning: deleting the tree nodes and value history that only versions below a point need.

use super::codec::{decode_node, decode_node_key};
use super::error::{StoreError, corrupt};
use super::node_store::NodeStore;
use super::records::{META_PRUNED, StaleKind, decode_stale_record, value_key};
use jmt::storage::Node;
use std::collections::BTreeSet;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

impl NodeStore {
    /// Deletes the JMT nodes that became stale at or before `keep_from` (every version from
    /// `keep_from` on stays readable) and the value history those versions no longer need;
    /// from then on every version below `keep_from` (at most the flushed version) reads as
    /// gone, across restarts. Returns the number of nodes deleted. Not synced by itself (the
    /// next sync covers it; a crash before it only leaves garbage that the next prune
    /// deletes). May run beside commits (see `Inner::pruner`).
    pub fn prune_state(&self, keep_from: u64) -> Result<usize, StoreError> {
        let _pruner = self
            .inner
            .pruner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = &self.inner;
        // Never above the flushed version: a restart rebuilds the tree from it, and the next
        // version is prepared from the latest.
        let floor = keep_from.min(self.tree_memory().recent.flushed.unwrap_or(0));
        if floor > s.pruned_below.load(Ordering::Acquire) {
            // First: a read of a version about to lose nodes ends before, or finds it gone.
            let _no_reads = s.reads.write().unwrap_or_else(PoisonError::into_inner);
            s.pruned_below.store(floor, Ordering::Release);
        }
        let mut batch = s.db.batch();
        let mut pruned = 0;
        let mut leaf_keys = BTreeSet::new();
        let mut evicted = Vec::new();
        let stale = match keep_from.checked_add(1) {
            Some(end) => s.stale.range(..end.to_be_bytes()),
            None => s.stale.iter(),
        };
        for g in stale {
            let (key, record) = g.into_inner()?;
            let entries = if key.len() == 8 {
                decode_stale_record(&record, &key)?
            } else {
                // One entry per node, as stores of the first layout wrote them.
                let node_key = key.get(8..).ok_or_else(|| {
                    corrupt("stale-node index key", format!("{} bytes", key.len()))
                })?;
                vec![(node_key.to_vec(), StaleKind::Unknown)]
            };
            for (node_key, kind) in entries {
                match kind {
                    StaleKind::Leaf(kh) => {
                        leaf_keys.insert(kh);
                    }
                    StaleKind::Inner => {}
                    StaleKind::Unknown => match s.nodes.get(&node_key)? {
                        Some(bytes) => {
                            if let Node::Leaf(leaf) = decode_node(&bytes, &node_key)? {
                                leaf_keys.insert(leaf.key_hash());
                            }
                        }
                        None => continue,
                    },
                }
                batch.remove(&s.nodes, node_key.as_slice());
                evicted.push(decode_node_key(&node_key)?);
                pruned += 1;
            }
            batch.remove(&s.stale, key);
        }
        // For each key whose leaf was replaced: reads at `keep_from` or later need at most the
        // newest value written at or before `keep_from` (and not even that if it is a deletion).
        for kh in leaf_keys {
            let mut history = Vec::new();
            for g in s
                .values
                .range(value_key(&kh, 0)..=value_key(&kh, keep_from))
            {
                let (k, v) = g.into_inner()?;
                history.push((k, v.first() == Some(&1)));
            }
            let keep = match history.last() {
                Some((k, true)) => Some(k.clone()),
                _ => None,
            };
            for (k, _) in history {
                if Some(&k) != keep.as_ref() {
                    batch.remove(&s.values, k);
                }
            }
        }
        batch.insert(
            &s.meta,
            META_PRUNED,
            s.pruned_below.load(Ordering::Acquire).to_be_bytes(),
        );
        batch.commit()?;
        // A pruned version must read as gone, from the cache too. (Memory's recent updates are
        // all of versions far above what a prune deletes.)
        let mut memory = self.tree_memory();
        for key in &evicted {
            memory.cache.remove(key);
        }
        Ok(pruned)
    }
}
