//! The node's durable store: committed blocks, their certificates, the transaction index, state
//! roots, epoch-change proofs, the consensus core's safety data, pending blocks, and the state
//! tree's nodes — one fjall database per node directory.
//!
//! # Durability
//!
//! One database means one journal: a write made durable with `PersistMode::SyncAll` makes every
//! earlier write durable too. [`NodeStore::commit`] writes everything a committed height needs
//! (block, certificate, tx index, root, epoch change, head record, pending-block deletions) as
//! ONE atomic batch synced before it returns, so after a crash a height is either fully there or
//! not at all. The state tree is written behind, in batches of its own (see "Write-behind tree").
//! [`NodeStore::put_safety`] syncs too; pending blocks and pruning are not synced by themselves
//! (the next sync covers them).
//!
//! # Layout
//!
//! Every record is the caller's opaque bytes, except the state tree's, which this module
//! encodes (see `encode_node_key` / `encode_node`). Heights and epochs are big-endian so that
//! ranges iterate in order.
//!
//! | keyspace      | key                                   | value                            |
//! |---------------|---------------------------------------|----------------------------------|
//! | `blocks`      | height                                | block bytes                      |
//! | `block_ids`   | block id (32)                         | height                           |
//! | `pending`     | height ‖ block id                     | block bytes                      |
//! | `certs`       | height                                | certificate bytes                |
//! | `txs`         | tx hash (32)                          | caller's location/outcome record |
//! | `roots`       | height                                | state root (32)                  |
//! | `epochs`      | epoch                                 | proof that ended the epoch       |
//! | `meta`        | `format` `head` `safety` `last` `tree`| format, bytes, bytes, heights    |
//! |               | `pruned`                              | the last prune's `keep_from`     |
//! | `jmt_nodes`   | node key (version ‖ nibble path)      | node                             |
//! | `jmt_values`  | key hash (32) ‖ version               | 0 (deleted) or 1 ‖ value bytes   |
//! | `jmt_stale`   | flush version                         | the nodes it made stale (below)  |
//!
//! A flush's stale record lists, per node: a tag (0 not a leaf, 1 a leaf, 2 not known), the
//! node key's length (1) and bytes, and for a leaf its key hash (32). One record per flush
//! rather than one per node: fewer store writes, and pruning learns which nodes were leaves
//! without reading them. Older stores kept one entry per node (`stale-since version ‖ node
//! key` → empty); pruning reads both.
//!
//! # Write-behind tree
//!
//! A block's tree update rewrites every node on the path to each key it touches, and the
//! upper levels are rewritten by nearly every block: written per block, tree nodes were over
//! half of the bytes a commit wrote, most of them stale a block later (written behind, a node
//! writes about 42 % fewer bytes per transaction). So the updates of the
//! latest versions stay in memory, and every `tree_flush_every` versions one batch writes what
//! the latest of them needs: the window's nodes that are still live, each key's newest value
//! (a deletion only of a key the store holds a value of), and the record of the stored nodes
//! the window made stale (keyed by the flush version); `meta/tree` then names that version. A
//! commit stays atomic and synced for everything else, so a crash loses no committed block;
//! what it loses is the tree above `meta/tree`, which the chain rebuilds by executing the
//! committed blocks above it again ([`NodeStore::replay_tree`]; execution is deterministic and
//! each replayed root is checked against the stored one).
//!
//! The flush batch is written on a thread of its own, beside the commits after it (memory
//! keeps its versions until the next flush is done, so nothing waits for it), and not synced
//! by itself: a later commit's sync covers it. A crash may lose the flush in progress too, so
//! a restart replays up to about `2.5 × tree_flush_every` blocks (with a phase, the first flush
//! after a restart comes half a period to a period and a half after it). That includes the
//! first flush, of the genesis state: a store with committed blocks and no tree at all is
//! rebuilt from version 0 ([`NodeStore::replay_tree`] takes it first). The next flush waits
//! for it, and its failure fails that commit (before it writes anything). A node also sets a
//! flush phase ([`NodeStore::set_tree_flush_phase`]) so that validators flush at different
//! heights: the flush still takes CPU and disk time, and a chain whose validators all flush at
//! once slows on all of them.
//!
//! A flush writes at most up to the state the chain's latest certified head commits to
//! ([`NodeStore::set_tree_flush_limit`]), a few versions behind the latest: proofs are made
//! against that state, and after a restart, clean or a crash, it is then at or above the last
//! flush, so the replay brings it back and a proof works at once.
//!
//! Readable versions: every version from the flush before the last finished one on (memory
//! holds the updates since then), and the flushed versions themselves until pruning. Memory
//! lets versions go under an exclusive lock that every tree read holds shared
//! ([`ConsistentReads`]): a read that found its version held answers from it alone, never from
//! half of one, or from the store's history, which keeps only each window's newest value.

use crate::state_tree::ConsistentReads;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use jmt::storage::{
    LeafNode, NibblePath, Node, NodeKey, StaleNodeIndex, TreeReader, TreeUpdateBatch,
};
use jmt::{KeyHash, OwnedValue, Version};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

/// The layout version written in `meta/format`. Format 1 wrote the tree with every commit and
/// had no `meta/tree`; it opens as format 2 with its tree flushed at the last committed height.
const FORMAT: u8 = 2;

const META_FORMAT: &[u8] = b"format";
const META_HEAD: &[u8] = b"head";
const META_SAFETY: &[u8] = b"safety";
const META_LAST: &[u8] = b"last";
const META_TREE: &[u8] = b"tree";
/// The `keep_from` of the last prune: versions below it read as gone.
const META_PRUNED: &[u8] = b"pruned";

/// Versions between tree flushes (see "Write-behind tree"): long enough that the upper levels
/// are written once per window rather than per block, short enough that a restart replays
/// only a few blocks and memory holds at most about three times this many versions' updates.
pub const TREE_FLUSH_EVERY: u64 = 16;

/// Memtable size per keyspace. fjall's default (64 MiB) grows a node by several hundred MiB
/// under load before the first flush, every page of it faulted in, and a deeper skiplist makes
/// each insert slower; flushes of 16 MiB are still few (a few per second at full load).
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// The hash of jmt's empty (null) node.
const PLACEHOLDER_HASH: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Storage(#[from] fjall::Error),
    #[error("commit of height {height} does not follow the last committed height {last}")]
    OutOfOrder { height: u64, last: u64 },
    #[error("commit of height {height} is inconsistent: {reason}")]
    InvalidCommit { height: u64, reason: String },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// The state tree does not hold this version: pruned, let go from memory between flushes
    /// (see "Write-behind tree"), or not written yet.
    #[error("no state at version {0}")]
    NoSuchVersion(u64),
    #[error("store format {found} is not supported (this build reads format {FORMAT})")]
    UnknownFormat { found: u8 },
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

/// What one committed height writes; see [`NodeStore::commit`].
#[derive(Debug)]
pub struct CommitBatch {
    pub height: u64,
    pub block_id: [u8; 32],
    pub block: Vec<u8>,
    pub cert: Vec<u8>,
    /// The root `tree` produces at version `height`.
    pub state_root: [u8; 32],
    /// From `StateTree::prepare(height, ..)`.
    pub tree: TreeUpdateBatch,
    /// Tx hash → the caller's location/outcome record.
    pub txs: Vec<([u8; 32], Vec<u8>)>,
    /// `(epoch, proof that ended epoch)`, when this block ends one.
    pub epoch_change: Option<(u64, Vec<u8>)>,
    /// The caller's head record, returned by [`NodeStore::head`].
    pub head: Vec<u8>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    blocks: Keyspace,
    block_ids: Keyspace,
    pending: Keyspace,
    certs: Keyspace,
    txs: Keyspace,
    roots: Keyspace,
    epochs: Keyspace,
    meta: Keyspace,
    nodes: Keyspace,
    values: Keyspace,
    stale: Keyspace,
    /// Serialises the commits (check-then-write).
    writer: Mutex<()>,
    /// Serialises the prunes. Apart from the commits: a prune only deletes what versions
    /// before `keep_from` alone needed, and a commit only writes a newer version.
    pruner: Mutex<()>,
    /// Versions between tree flushes.
    tree_flush_every: u64,
    /// Where in each `tree_flush_every` heights this store flushes (see
    /// [`NodeStore::set_tree_flush_phase`]); 0 flushes `tree_flush_every` after the last flush.
    tree_flush_phase: AtomicU64,
    /// The unflushed tree updates and the node cache. Changed by commits, replays and flushes
    /// (all under `writer`, or started under it) and, for the cache, by reads.
    tree_memory: Arc<Mutex<TreeMemory>>,
    /// Held shared by each read of the tree, exclusively while memory lets versions go: a
    /// version a read finds held stays held until the read ends (see [`ConsistentReads`]).
    reads: Arc<RwLock<()>>,
    /// Versions below this one read as gone: the last prune's `keep_from`. The prune deletes
    /// by the stale records of the flushes up to it, so a flushed version just below it kept
    /// its root and would read as present, though values it needs may be deleted.
    pruned_below: AtomicU64,
    /// The tree flush being written on a thread of its own, if any. Started and finished under
    /// `writer`; at most one at a time.
    flushing: Mutex<Option<Flushing>>,
    /// The highest version a flush due at a commit or replay may write (see
    /// [`NodeStore::set_tree_flush_limit`]); `u64::MAX` when unset.
    flush_limit: AtomicU64,
    /// The height the last flush a commit or replay started was due at (`u64::MAX`: none since
    /// the store opened). Under a flush limit that flush wrote a lower version; the next one is
    /// due counted from this height, so that flushes stay `tree_flush_every` heights apart.
    last_flush_due: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The flush thread writes through handles of this database: it ends before the store.
        let flushing = self
            .flushing
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(flushing) = flushing.take()
            && let Err(e) = flushing.finish()
        {
            tracing::warn!(error = %e, "tree flush failed while the store closed");
        }
    }
}

/// A tree flush written on its own thread (see "Write-behind tree").
struct Flushing {
    at: Version,
    thread: JoinHandle<Result<(), StoreError>>,
}

impl Flushing {
    fn finish(self) -> Result<(), StoreError> {
        let at = self.at;
        self.thread.join().unwrap_or_else(|_| {
            Err(corrupt(
                format!("tree flush at version {at}"),
                "its thread panicked",
            ))
        })
    }
}

struct TreeMemory {
    recent: Recent,
    cache: NodeCache,
}

/// The tree updates of the versions above the last flush, and of the window before it, which
/// reads of its versions still need (see "Write-behind tree"). Kept as jmt produced them: a
/// node is found by its version, so taking an update in copies nothing.
struct Recent {
    /// The tree's latest version (committed or replayed); `None` before genesis.
    latest: Option<Version>,
    /// The highest version whose tree the store holds in full; `None` before genesis.
    flushed: Option<Version>,
    /// The updates held, by version (shared with a flush thread while it writes them).
    updates: BTreeMap<Version, Arc<TreeUpdateBatch>>,
    /// Per key, the versions held that wrote it, ascending.
    writes: FxHashMap<KeyHash, Vec<Version>>,
}

impl Recent {
    fn node(&self, key: &NodeKey) -> Option<&Node> {
        self.updates.get(&key.version())?.node_batch.get_node(key)
    }

    /// The newest value of `kh` held at or below `max_version` (`Some(None)`: deleted).
    fn value(&self, max_version: Version, kh: KeyHash) -> Option<Option<&OwnedValue>> {
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
    fn unflushed(&self, at: Version) -> Vec<Arc<TreeUpdateBatch>> {
        let from = self.flushed.map_or(0, |f| f.saturating_add(1));
        self.updates
            .range(from..=at)
            .map(|(_, u)| u.clone())
            .collect()
    }
}

impl TreeMemory {
    /// Takes in a committed (or replayed) version's update.
    fn record(&mut self, version: Version, tree: Arc<TreeUpdateBatch>) {
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
    fn flushed(&mut self, version: Version) -> BTreeMap<Version, Arc<TreeUpdateBatch>> {
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
    fn with<T>(&mut self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
        match self.recent.node(key) {
            Some(node) => Some(f(node)),
            None => self.cache.with(key, f),
        }
    }

    fn peek<T>(&self, key: &NodeKey, f: impl FnOnce(&Node) -> T) -> Option<T> {
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
struct NodeCache {
    young: FxHashMap<NodeKey, Node>,
    old: FxHashMap<NodeKey, Node>,
    generation: usize,
}

/// Nodes per cache generation (two generations; an internal node is about 1 KiB in memory).
const NODE_CACHE_GENERATION: usize = 64 * 1024;

impl NodeCache {
    fn new() -> NodeCache {
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

    fn remove(&mut self, key: &NodeKey) {
        self.young.remove(key);
        self.old.remove(key);
    }

    fn insert(&mut self, key: NodeKey, node: Node) {
        if self.young.len() >= self.generation && !self.young.contains_key(&key) {
            self.old.clear();
            std::mem::swap(&mut self.young, &mut self.old);
        }
        self.young.insert(key, node);
    }
}

/// The node's durable store. Cheap to clone: clones share one open database, so the driver and
/// the API's reader threads can each hold one.
#[derive(Clone)]
pub struct NodeStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl NodeStore {
    /// Opens (creating if needed) the store in `dir`. Recovers from the journal after a crash:
    /// every commit that returned is there, nothing of a commit that did not.
    pub fn open(dir: &Path) -> Result<NodeStore, StoreError> {
        NodeStore::open_with(dir, TREE_FLUSH_EVERY)
    }

    /// Staggers this store's tree flushes: they fall on heights `h` with
    /// `(h + phase) % tree_flush_every == 0`. A flush writes what `tree_flush_every` blocks
    /// left in memory: even on its own thread it takes a core for a while, and validators that
    /// flush at the same heights (on shared cores, or disks) slow together, while with flushes
    /// spread over the committee a quorum of the others goes on at speed. Takes effect from the
    /// next flush.
    pub fn set_tree_flush_phase(&self, phase: u64) {
        self.inner
            .tree_flush_phase
            .store(phase % self.inner.tree_flush_every, Ordering::Relaxed);
    }

    /// Keeps the flushes that commits and replays start at or below `version`: the state the
    /// chain's latest certified head commits to, which proofs are made against. After a
    /// restart, clean or not, only the versions from the last flush on are readable (the store
    /// keeps only each flush's newest values), so a flush past that state would leave the head
    /// unprovable until a newer one commits. A head more than four flush periods behind is not
    /// waited for: memory stays bounded. Unset, a flush writes up to the height it is due at.
    pub fn set_tree_flush_limit(&self, version: Version) {
        self.inner.flush_limit.store(version, Ordering::Relaxed);
    }

    /// The version the commit (or replay) of `height` flushes the tree up to, if any, the last
    /// flush being at `flushed`.
    fn flush_at(&self, flushed: Option<Version>, height: u64) -> Option<Version> {
        let due_from = match self.inner.last_flush_due.load(Ordering::Relaxed) {
            u64::MAX => flushed,
            due => flushed.max(Some(due)),
        };
        if !self.flush_due(due_from, height) {
            return None;
        }
        let limit = self.inner.flush_limit.load(Ordering::Relaxed);
        let at = if height.saturating_sub(limit) > 4 * self.inner.tree_flush_every {
            height
        } else {
            height.min(limit)
        };
        // Nothing above the last flush to write yet.
        (flushed.is_none_or(|f| at > f)).then_some(at)
    }

    /// Whether the commit of `height` flushes the tree, the last flush being at `flushed`.
    fn flush_due(&self, flushed: Option<Version>, height: u64) -> bool {
        let every = self.inner.tree_flush_every;
        let phase = self.inner.tree_flush_phase.load(Ordering::Relaxed);
        let Some(f) = flushed else {
            return true;
        };
        let gap = height.saturating_sub(f);
        if phase == 0 {
            return gap >= every;
        }
        // On the phase, but never twice within half a period (after a restart) and never more
        // than two periods apart.
        (gap >= every.div_ceil(2) && (height + phase).is_multiple_of(every)) || gap >= 2 * every
    }

    /// [`open`](Self::open) with the tree flushed every `tree_flush_every` versions (at least
    /// 1: every commit).
    pub fn open_with(dir: &Path, tree_flush_every: u64) -> Result<NodeStore, StoreError> {
        let db = Database::builder(dir).open()?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
        };
        let inner = Inner {
            path: dir.to_path_buf(),
            blocks: ks("blocks")?,
            block_ids: ks("block_ids")?,
            pending: ks("pending")?,
            certs: ks("certs")?,
            txs: ks("txs")?,
            roots: ks("roots")?,
            epochs: ks("epochs")?,
            meta: ks("meta")?,
            nodes: ks("jmt_nodes")?,
            values: ks("jmt_values")?,
            stale: ks("jmt_stale")?,
            db,
            writer: Mutex::new(()),
            pruner: Mutex::new(()),
            tree_flush_every: tree_flush_every.max(1),
            tree_flush_phase: AtomicU64::new(0),
            flushing: Mutex::new(None),
            flush_limit: AtomicU64::new(u64::MAX),
            last_flush_due: AtomicU64::new(u64::MAX),
            reads: Arc::default(),
            pruned_below: AtomicU64::new(0),
            tree_memory: Arc::new(Mutex::new(TreeMemory {
                recent: Recent {
                    latest: None,
                    flushed: None,
                    updates: BTreeMap::new(),
                    writes: FxHashMap::default(),
                },
                cache: NodeCache::new(),
            })),
        };
        let last = match inner.meta.get(META_LAST)? {
            None => None,
            Some(v) => Some(be_u64(&v, || "last committed height".into())?),
        };
        match inner.meta.get(META_FORMAT)? {
            None => {
                let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&inner.meta, META_FORMAT, [FORMAT]);
                batch.commit()?;
            }
            Some(v) if v.as_ref() == [FORMAT] => {}
            Some(v) if v.as_ref() == [1] => {
                // Format 1 wrote the whole tree with every commit.
                let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
                if let Some(last) = last {
                    batch.insert(&inner.meta, META_TREE, last.to_be_bytes());
                }
                batch.insert(&inner.meta, META_FORMAT, [FORMAT]);
                batch.commit()?;
            }
            Some(v) => match v.as_ref() {
                [found] => return Err(StoreError::UnknownFormat { found: *found }),
                _ => return Err(corrupt("format marker", format!("{} bytes", v.len()))),
            },
        }
        let flushed = match inner.meta.get(META_TREE)? {
            None => None,
            Some(v) => Some(be_u64(&v, || "flushed tree version".into())?),
        };
        if flushed > last {
            return Err(corrupt(
                "flushed tree version",
                format!("{flushed:?} is above the last committed height {last:?}"),
            ));
        }
        if let Some(v) = inner.meta.get(META_PRUNED)? {
            let pruned_below = be_u64(&v, || "pruned tree version".into())?;
            let floor = pruned_below.min(flushed.unwrap_or(0));
            inner.pruned_below.store(floor, Ordering::Release);
        }
        {
            let mut memory = inner
                .tree_memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            memory.recent.flushed = flushed;
            memory.recent.latest = flushed;
        }
        Ok(NodeStore {
            inner: Arc::new(inner),
        })
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded state is on disk; a panicked writer left nothing half-done in memory.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get(ks: &Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(ks.get(key)?.map(|v| v.to_vec()))
    }

    /// Safety data of the consensus core (opaque bytes). Durable (SyncAll) before returning.
    pub fn put_safety(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let mut batch = self.inner.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.inner.meta, META_SAFETY, bytes);
        batch.commit()?;
        Ok(())
    }

    pub fn safety(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.meta, META_SAFETY)
    }

    /// A block that entered the block tree, not yet committed. Not synced by itself (the next
    /// sync covers it).
    pub fn put_pending_block(
        &self,
        id: [u8; 32],
        height: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.pending.insert(pending_key(height, &id), bytes)?;
        Ok(())
    }

    /// The pending blocks, by ascending height.
    pub fn pending_blocks(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner
            .pending
            .iter()
            .map(|g| Ok(g.value()?.to_vec()))
            .collect()
    }

    /// Atomically (one batch) and durably (SyncAll): the committed block, its certificate, the
    /// tx index entries, the state root at this height, an optional epoch-change proof, the new
    /// head record, and deletion of pending blocks at or below `height`. The tree update joins
    /// the tree in memory, and when a flush is due it starts on a thread of its own (see
    /// "Write-behind tree").
    ///
    /// Refused, writing nothing: a height that is not the last committed height + 1
    /// ([`StoreError::OutOfOrder`]; the first commit may be any height), a tree update that is
    /// not for version `height` or whose root node does not hash to `state_root`, and a commit
    /// before the tree has been replayed up to the last committed height
    /// ([`StoreError::InvalidCommit`]).
    pub fn commit(&self, c: CommitBatch) -> Result<(), StoreError> {
        let _writer = self.write_lock();
        let last = self.last_committed_height()?;
        if let Some(last) = last
            && last.checked_add(1) != Some(c.height)
        {
            return Err(StoreError::OutOfOrder {
                height: c.height,
                last,
            });
        }
        check_tree_update(c.height, &c.state_root, &c.tree)?;
        let tree_latest = self.tree_memory().recent.latest;
        if tree_latest != last {
            return Err(StoreError::InvalidCommit {
                height: c.height,
                reason: format!(
                    "the state tree is at version {tree_latest:?}, behind the last committed \
                     height {last:?}: replay it first"
                ),
            });
        }

        let s = &self.inner;
        let h = c.height.to_be_bytes();
        let mut batch = OwnedWriteBatch::with_capacity(s.db.clone(), 9 + c.txs.len())
            .durability(Some(PersistMode::SyncAll));
        batch.insert(&s.blocks, h, c.block);
        batch.insert(&s.block_ids, c.block_id, h);
        batch.insert(&s.certs, h, c.cert);
        batch.insert(&s.roots, h, c.state_root);
        // In key order (stable: a repeated hash keeps its last record): a batch reaches the
        // memtable's skiplist in its own order, and consecutive sorted keys search down the
        // same cached towers, where random ones missed the cache at nearly every level.
        let mut txs = c.txs;
        txs.sort_by_key(|(hash, _)| *hash);
        for (hash, record) in txs {
            batch.insert(&s.txs, hash, record);
        }
        if let Some((epoch, proof)) = c.epoch_change {
            batch.insert(&s.epochs, epoch.to_be_bytes(), proof);
        }
        batch.insert(&s.meta, META_HEAD, c.head);
        batch.insert(&s.meta, META_LAST, h);
        for g in s.pending.range(..=pending_key(c.height, &[0xff; 32])) {
            batch.remove(&s.pending, g.key()?);
        }
        self.write_tree(c.height, c.tree, Some(batch))
    }

    /// Takes a replayed tree update for `height` into the tree (see "Write-behind tree"): the
    /// block at `height` is committed, and the tree is at `height - 1` (or, for height 0, holds
    /// nothing: a crash came before the genesis flush landed). Refused, writing
    /// nothing, when either is not so or the update's root is not the stored state root.
    pub fn replay_tree(&self, height: u64, tree: TreeUpdateBatch) -> Result<(), StoreError> {
        let _writer = self.write_lock();
        let invalid = |reason: String| StoreError::InvalidCommit { height, reason };
        let latest = self.tree_memory().recent.latest;
        // Version 0 too: a crash before the genesis flush landed leaves no tree at all.
        if latest.map_or(Some(0), |v| v.checked_add(1)) != Some(height) {
            return Err(invalid(format!("the state tree is at version {latest:?}")));
        }
        let root = self
            .state_root(height)?
            .ok_or_else(|| invalid("the height is not committed".into()))?;
        check_tree_update(height, &root, &tree)
            .map_err(|_| invalid("the replayed tree's root is not the committed root".into()))?;
        self.write_tree(height, tree, None)
    }

    /// Writes the tree's unflushed versions, if any: the next start then replays nothing.
    /// Waits for a flush in progress first.
    pub fn flush_tree(&self) -> Result<(), StoreError> {
        self.flush_tree_up_to(Version::MAX)
    }

    /// Writes the tree's unflushed versions up to `version` (at most the latest), synced. A
    /// clean shutdown flushes up to the state its latest certified head commits to, a few
    /// versions back: proofs right after the restart are made against that version, and the
    /// start rebuilds the versions above it in memory by replaying their blocks, so every one
    /// from it on is readable (flushed at the latest, the ones before would be gone).
    pub fn flush_tree_up_to(&self, version: Version) -> Result<(), StoreError> {
        let _writer = self.write_lock();
        self.finish_flush()?;
        let job = {
            let memory = self.tree_memory();
            let Some(latest) = memory.recent.latest else {
                return Ok(());
            };
            let at = version.min(latest);
            if memory.recent.flushed.is_some_and(|f| f >= at) {
                return Ok(());
            }
            self.flush_job(&memory, at)
        };
        job.write(Some(PersistMode::SyncAll))
    }

    /// Waits for the tree flush in progress, if any; its failure is this call's. Afterwards
    /// the readable versions are exactly those "Write-behind tree" names for the last flush.
    pub fn finish_tree_flush(&self) -> Result<(), StoreError> {
        let _writer = self.write_lock();
        self.finish_flush()
    }

    /// The tree's latest version: after a restart, the flushed one until the blocks above it
    /// are replayed.
    pub fn tree_version(&self) -> Option<Version> {
        self.tree_memory().recent.latest
    }

    fn flushing(&self) -> std::sync::MutexGuard<'_, Option<Flushing>> {
        // Only ever holds a finished or running thread's handle.
        self.inner
            .flushing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the flush in progress, if any; its failure is this call's.
    fn finish_flush(&self) -> Result<(), StoreError> {
        let flushing = self.flushing().take();
        flushing.map_or(Ok(()), Flushing::finish)
    }

    /// Commits `batch` (a commit's writes), takes the update into memory and, when a flush is
    /// due at `height`, starts it on a thread of its own: a flush writes what
    /// `tree_flush_every` blocks left in memory, and as part of a commit it made that commit
    /// the slowest by far. Memory keeps the versions it writes until the flush after it is
    /// done, so reads never wait for it. The caller holds the writer lock: only commits,
    /// replays and flushes change `recent`.
    fn write_tree(
        &self,
        height: u64,
        tree: TreeUpdateBatch,
        batch: Option<OwnedWriteBatch>,
    ) -> Result<(), StoreError> {
        let started = self.flushing().as_ref().map(|f| f.at);
        let flush = self.flush_at(started.or(self.tree_memory().recent.flushed), height);
        if flush.is_some() {
            // Before anything of this commit is written: a failed flush fails the commit.
            self.finish_flush()?;
        }
        if let Some(batch) = batch {
            batch.commit()?;
        }
        let mut memory = self.tree_memory();
        memory.record(height, Arc::new(tree));
        let Some(at) = flush else {
            return Ok(());
        };
        self.inner.last_flush_due.store(height, Ordering::Relaxed);
        let job = self.flush_job(&memory, at);
        drop(memory);
        let spawned = std::thread::Builder::new()
            .name("trellis-tree-flush".into())
            .spawn(move || job.write(None));
        match spawned {
            Ok(thread) => {
                *self.flushing() = Some(Flushing { at, thread });
                Ok(())
            }
            // Out of threads: the commit's own thread writes the flush. The commit's batch is
            // durable by now, so a failure here is reported for a commit that did land.
            Err(_) => {
                let job = self.flush_job(&self.tree_memory(), at);
                job.write(None)
            }
        }
    }

    /// The flush of the tree at `at`: the updates above the last flush up to `at`.
    fn flush_job(&self, memory: &TreeMemory, at: Version) -> FlushJob {
        let s = &self.inner;
        FlushJob {
            db: s.db.clone(),
            nodes: s.nodes.clone(),
            values: s.values.clone(),
            stale: s.stale.clone(),
            meta: s.meta.clone(),
            memory: s.tree_memory.clone(),
            reads: s.reads.clone(),
            window: memory.recent.unflushed(at),
            below: memory.recent.flushed,
            at,
        }
    }

    fn tree_memory(&self) -> std::sync::MutexGuard<'_, TreeMemory> {
        lock_memory(&self.inner.tree_memory)
    }

    /// The height of the last commit, if any.
    pub fn last_committed_height(&self) -> Result<Option<u64>, StoreError> {
        match self.inner.meta.get(META_LAST)? {
            None => Ok(None),
            Some(v) => Ok(Some(be_u64(&v, || "last committed height".into())?)),
        }
    }

    /// The head record bytes of the last commit.
    pub fn head(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.meta, META_HEAD)
    }

    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.blocks, &height.to_be_bytes())
    }

    pub fn cert(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.certs, &height.to_be_bytes())
    }

    /// The height of a committed block.
    pub fn height_of(&self, id: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        match self.inner.block_ids.get(id)? {
            None => Ok(None),
            Some(v) => Ok(Some(be_u64(&v, || {
                format!("height of block {}", hex::encode(id))
            })?)),
        }
    }

    /// The caller's record for a committed transaction.
    pub fn tx(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.txs, hash)
    }

    pub fn state_root(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        match self.inner.roots.get(height.to_be_bytes())? {
            None => Ok(None),
            Some(v) => match <[u8; 32]>::try_from(v.as_ref()) {
                Ok(root) => Ok(Some(root)),
                Err(_) => Err(corrupt(
                    format!("state root at height {height}"),
                    format!("{} bytes, expected 32", v.len()),
                )),
            },
        }
    }

    /// The proof that ended `epoch`.
    pub fn epoch_change(&self, epoch: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get(&self.inner.epochs, &epoch.to_be_bytes())
    }

    /// Every stored epoch-change proof, by ascending epoch.
    pub fn epoch_changes(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner
            .epochs
            .iter()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok((be_u64(&k, || "epoch-change key".into())?, v.to_vec()))
            })
            .collect()
    }

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

/// A tree flush (see "Write-behind tree"): what it writes, and clones of the store's handles
/// to write it with, so that it can run on a thread of its own.
struct FlushJob {
    db: Database,
    nodes: Keyspace,
    values: Keyspace,
    stale: Keyspace,
    meta: Keyspace,
    memory: Arc<Mutex<TreeMemory>>,
    reads: Arc<RwLock<()>>,
    /// The updates above the last flush up to `at`, oldest first.
    window: Vec<Arc<TreeUpdateBatch>>,
    /// The last flush: the window's versions are above it.
    below: Option<Version>,
    at: Version,
}

impl FlushJob {
    /// Writes, as one batch, what the store needs to read the tree at `at` and on: the
    /// window's nodes still live at `at`, each key's newest value among them, the record of
    /// the stored nodes the window made stale, and `meta/tree`. Then memory drops what only
    /// versions before the previous flush needed.
    fn write(self, durability: Option<PersistMode>) -> Result<(), StoreError> {
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

/// The newest value of `kh` the store's history holds at or below `max_version` (`None`:
/// never written, or deleted).
fn stored_value(
    values: &Keyspace,
    kh: &KeyHash,
    max_version: Version,
) -> Result<Option<OwnedValue>, StoreError> {
    match values
        .range(value_key(kh, 0)..=value_key(kh, max_version))
        .next_back()
    {
        None => Ok(None),
        Some(g) => {
            let (k, v) = g.into_inner()?;
            decode_value(&v, &k)
        }
    }
}

fn lock_memory(memory: &Mutex<TreeMemory>) -> std::sync::MutexGuard<'_, TreeMemory> {
    // A panic mid-update leaves at worst a missing cache entry: every change to `recent`
    // happens after the store write it mirrors.
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// A flush's stale record (see the module doc). Whether a node is a leaf comes from memory,
/// which holds nearly all of them (the updates just read them); the rest are marked not
/// known, for the prune to read.
fn stale_record<'a>(
    memory: &TreeMemory,
    stale: impl Iterator<Item = &'a StaleNodeIndex>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for s in stale {
        let key = encode_node_key(&s.node_key);
        let leaf = memory.peek(&s.node_key, |node| match node {
            Node::Leaf(leaf) => Some(leaf.key_hash()),
            _ => None,
        });
        out.push(match leaf {
            Some(None) => STALE_INNER,
            Some(Some(_)) => STALE_LEAF,
            None => STALE_UNKNOWN,
        });
        // A node key is at most 8 + 1 + 32 bytes.
        out.push(key.len() as u8);
        out.extend_from_slice(&key);
        if let Some(Some(kh)) = leaf {
            out.extend_from_slice(&kh.0);
        }
    }
    out
}

/// Refuses a tree update that is not for version `height` or whose root is not `state_root`.
fn check_tree_update(
    height: u64,
    state_root: &[u8; 32],
    tree: &TreeUpdateBatch,
) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidCommit { height, reason };
    let nodes = tree.node_batch.nodes();
    if let Some(k) = nodes.keys().find(|k| k.version() != height) {
        return Err(invalid(format!("tree node at version {}", k.version())));
    }
    if let Some((v, _)) = tree.node_batch.values().keys().find(|(v, _)| *v != height) {
        return Err(invalid(format!("tree value at version {v}")));
    }
    if let Some(s) = tree
        .stale_node_index_batch
        .iter()
        .find(|s| s.stale_since_version != height)
    {
        return Err(invalid(format!(
            "node stale since version {}",
            s.stale_since_version
        )));
    }
    let root_key = NodeKey::new(height, NibblePath::from_iter(std::iter::empty()));
    let root = nodes
        .get(&root_key)
        .ok_or_else(|| invalid("the tree update has no root node".into()))?;
    if node_hash(root) != *state_root {
        return Err(invalid(
            "the tree's root does not hash to state_root".into(),
        ));
    }
    Ok(())
}

fn node_hash(node: &Node) -> [u8; 32] {
    match node {
        Node::Null => PLACEHOLDER_HASH,
        Node::Internal(n) => n.hash::<Sha256>(),
        Node::Leaf(n) => n.hash::<Sha256>(),
    }
}

fn be_u64(bytes: &[u8], what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => Ok(u64::from_be_bytes(b)),
        Err(_) => Err(corrupt(
            what(),
            format!("{} bytes, expected 8", bytes.len()),
        )),
    }
}

fn pending_key(height: u64, id: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(id);
    k
}

fn value_key(kh: &KeyHash, version: Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&kh.0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

const STALE_INNER: u8 = 0;
const STALE_LEAF: u8 = 1;
const STALE_UNKNOWN: u8 = 2;

/// A node in a stale record: an internal (or null) node, a leaf with its key hash, or not
/// known (the prune reads it).
enum StaleKind {
    Inner,
    Leaf(KeyHash),
    Unknown,
}

/// The entries of a version's stale record (see the module doc): encoded node key and kind.
fn decode_stale_record(record: &[u8], key: &[u8]) -> Result<Vec<(Vec<u8>, StaleKind)>, StoreError> {
    let bad = |detail: &str| corrupt(format!("stale record {}", hex::encode(key)), detail);
    let mut rest = record;
    let mut out = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        let (&len, tail) = tail.split_first().ok_or_else(|| bad("truncated"))?;
        let (node_key, tail) = tail
            .split_at_checked(usize::from(len))
            .ok_or_else(|| bad("truncated"))?;
        rest = tail;
        let kind = match tag {
            STALE_INNER => StaleKind::Inner,
            STALE_UNKNOWN => StaleKind::Unknown,
            STALE_LEAF => {
                let (kh, tail) = rest
                    .split_first_chunk::<32>()
                    .ok_or_else(|| bad("truncated"))?;
                rest = tail;
                StaleKind::Leaf(KeyHash(*kh))
            }
            _ => return Err(bad("unknown tag")),
        };
        out.push((node_key.to_vec(), kind));
    }
    Ok(out)
}

fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

fn decode_value(bytes: &[u8], key: &[u8]) -> Result<Option<OwnedValue>, StoreError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, v)) => Ok(Some(v.to_vec())),
        _ => Err(corrupt(
            format!("tree value {}", hex::encode(key)),
            "bad tag",
        )),
    }
}

/// `version (8, big-endian) ‖ nibble count (1) ‖ nibbles packed two per byte, high first`.
fn encode_node_key(key: &NodeKey) -> Vec<u8> {
    let path = key.nibble_path();
    let n = path.num_nibbles();
    let mut out = Vec::with_capacity(9 + n.div_ceil(2));
    out.extend_from_slice(&key.version().to_be_bytes());
    // A path has at most 64 nibbles (32-byte key hashes).
    out.push(n as u8);
    let mut nibbles = path.nibbles().map(u8::from);
    while let Some(hi) = nibbles.next() {
        out.push(hi << 4 | nibbles.next().unwrap_or(0));
    }
    out
}

fn decode_node_key(bytes: &[u8]) -> Result<NodeKey, StoreError> {
    let bad = |detail: &str| corrupt(format!("tree node key {}", hex::encode(bytes)), detail);
    let (version, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("too short"))?;
    let (&n, packed) = rest.split_first().ok_or_else(|| bad("too short"))?;
    let n = usize::from(n);
    if n > 64 {
        return Err(bad("more than 64 nibbles"));
    }
    if packed.len() != n.div_ceil(2) {
        return Err(bad("nibble count does not match its bytes"));
    }
    if n % 2 == 1 && packed.last().is_some_and(|b| b & 0x0f != 0) {
        return Err(bad("odd path with a non-zero pad nibble"));
    }
    let path: NibblePath = packed
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .take(n)
        .map(Into::into)
        .collect();
    Ok(NodeKey::new(u64::from_be_bytes(*version), path))
}

/// A node: jmt's serde shape of [`Node`] in [`codec`]'s compact encoding. On read the bytes are
/// first decoded as [`shape::NodeShape`] and checked (child counts, leaf counts, a non-leaf
/// only child), so a corrupt node is an error here instead of a panic inside jmt.
fn encode_node(node: &Node) -> Result<Vec<u8>, codec::Error> {
    codec::to_bytes(node)
}

fn decode_node(bytes: &[u8], key: &[u8]) -> Result<Node, StoreError> {
    let bad = |detail: String| corrupt(format!("tree node {}", hex::encode(key)), detail);
    let shape: shape::NodeShape = codec::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
    shape.check().map_err(|e| bad(e.into()))?;
    codec::from_bytes(bytes).map_err(|e| bad(e.to_string()))
}

/// A mirror of jmt 0.12's serde shape of [`Node`] (same variants and fields in the same order;
/// `usize` travels as `u64`), to check a stored node before jmt sees it.
mod shape {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum NodeShape {
        Null,
        Internal(InternalShape),
        Leaf(#[allow(dead_code)] LeafShape),
    }

    #[derive(Deserialize)]
    pub struct InternalShape {
        children: ChildrenShape,
        leaf_count: u64,
    }

    #[derive(Deserialize)]
    pub struct ChildrenShape {
        children: Box<[Option<ChildShape>; 16]>,
        num_children: u64,
    }

    #[derive(Deserialize)]
    pub struct ChildShape {
        _hash: [u8; 32],
        _version: u64,
        node_type: NodeTypeShape,
    }

    #[derive(Deserialize)]
    pub enum NodeTypeShape {
        Leaf,
        Internal { leaf_count: u64 },
    }

    #[derive(Deserialize)]
    pub struct LeafShape {
        _key_hash: [u8; 32],
        _value_hash: [u8; 32],
    }

    impl NodeShape {
        /// The invariants jmt's constructors keep and its readers rely on.
        pub fn check(&self) -> Result<(), &'static str> {
            let NodeShape::Internal(node) = self else {
                return Ok(());
            };
            let children: Vec<&ChildShape> = node.children.children.iter().flatten().collect();
            if children.len() as u64 != node.children.num_children {
                return Err("child count does not match its children");
            }
            match children.as_slice() {
                [] => return Err("internal node without children"),
                [only] if matches!(only.node_type, NodeTypeShape::Leaf) => {
                    return Err("internal node whose only child is a leaf");
                }
                _ => {}
            }
            let mut total: u64 = 0;
            for child in children {
                let count = match child.node_type {
                    NodeTypeShape::Leaf => 1,
                    NodeTypeShape::Internal { leaf_count } if leaf_count >= 2 => leaf_count,
                    NodeTypeShape::Internal { .. } => {
                        return Err("internal child with fewer than two leaves");
                    }
                };
                total = total.checked_add(count).ok_or("leaf count overflows")?;
            }
            if total != node.leaf_count || usize::try_from(total).is_err() {
                return Err("leaf count does not match its children");
            }
            Ok(())
        }
    }
}

/// A compact, non-self-describing serde encoding (in the manner of bincode) for the tree's
/// node types: integers fixed-width big-endian, `bool`/option tags and enum variant indexes one
/// byte, sequences and byte strings prefixed by a `u64` length, structs and tuples as their
/// fields in order with no names. Decoding consumes every byte or fails.
mod codec {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
    use serde::ser::{self, Serialize};

    #[derive(Debug)]
    pub struct Error(String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl ser::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    impl de::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    fn unsupported<T>(what: &str) -> Result<T, Error> {
        Err(Error(format!("{what} is not supported by the tree codec")))
    }

    pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        let mut encoder = Encoder(Vec::new());
        value.serialize(&mut encoder)?;
        Ok(encoder.0)
    }

    pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
        let mut decoder = Decoder(bytes);
        let value = T::deserialize(&mut decoder)?;
        if decoder.0.is_empty() {
            Ok(value)
        } else {
            Err(Error(format!("{} trailing bytes", decoder.0.len())))
        }
    }

    struct Encoder(Vec<u8>);

    impl Encoder {
        fn variant(&mut self, index: u32) -> Result<(), Error> {
            let index = u8::try_from(index).map_err(|_| Error("variant index > 255".into()))?;
            self.0.push(index);
            Ok(())
        }
    }

    impl ser::Serializer for &mut Encoder {
        type Ok = ();
        type Error = Error;
        type SerializeSeq = Self;
        type SerializeTuple = Self;
        type SerializeTupleStruct = Self;
        type SerializeTupleVariant = Self;
        type SerializeMap = ser::Impossible<(), Error>;
        type SerializeStruct = Self;
        type SerializeStructVariant = Self;

        fn serialize_bool(self, v: bool) -> Result<(), Error> {
            self.0.push(u8::from(v));
            Ok(())
        }
        fn serialize_u8(self, v: u8) -> Result<(), Error> {
            self.0.push(v);
            Ok(())
        }
        fn serialize_u16(self, v: u16) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_u32(self, v: u32) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_u64(self, v: u64) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_i8(self, _: i8) -> Result<(), Error> {
            unsupported("i8")
        }
        fn serialize_i16(self, _: i16) -> Result<(), Error> {
            unsupported("i16")
        }
        fn serialize_i32(self, _: i32) -> Result<(), Error> {
            unsupported("i32")
        }
        fn serialize_i64(self, _: i64) -> Result<(), Error> {
            unsupported("i64")
        }
        fn serialize_f32(self, _: f32) -> Result<(), Error> {
            unsupported("f32")
        }
        fn serialize_f64(self, _: f64) -> Result<(), Error> {
            unsupported("f64")
        }
        fn serialize_char(self, _: char) -> Result<(), Error> {
            unsupported("char")
        }
        fn serialize_str(self, _: &str) -> Result<(), Error> {
            unsupported("str")
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
            self.serialize_u64(v.len() as u64)?;
            self.0.extend_from_slice(v);
            Ok(())
        }
        fn serialize_none(self) -> Result<(), Error> {
            self.0.push(0);
            Ok(())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
            self.0.push(1);
            value.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
        ) -> Result<(), Error> {
            self.variant(index)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            self.variant(index)?;
            value.serialize(self)
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Self, Error> {
            let len = len.ok_or_else(|| Error("sequence of unknown length".into()))?;
            self.serialize_u64(len as u64)?;
            Ok(self)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, Error> {
            self.variant(index)?;
            Ok(self)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
            unsupported("map")
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, Error> {
            self.variant(index)?;
            Ok(self)
        }
    }

    macro_rules! compound {
        ($($trait:ident :: $method:ident),*) => {$(
            impl ser::$trait for &mut Encoder {
                type Ok = ();
                type Error = Error;
                fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
                    value.serialize(&mut **self)
                }
                fn end(self) -> Result<(), Error> {
                    Ok(())
                }
            }
        )*};
    }
    compound!(
        SerializeSeq::serialize_element,
        SerializeTuple::serialize_element,
        SerializeTupleStruct::serialize_field,
        SerializeTupleVariant::serialize_field
    );

    impl ser::SerializeStruct for &mut Encoder {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl ser::SerializeStructVariant for &mut Encoder {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }

    struct Decoder<'de>(&'de [u8]);

    impl<'de> Decoder<'de> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
            let (head, rest) = self
                .0
                .split_first_chunk::<N>()
                .ok_or_else(|| Error("unexpected end".into()))?;
            self.0 = rest;
            Ok(*head)
        }
        fn byte(&mut self) -> Result<u8, Error> {
            Ok(self.take::<1>()?[0])
        }
        fn len(&mut self) -> Result<usize, Error> {
            let len = u64::from_be_bytes(self.take::<8>()?);
            // Every element takes at least one byte in the node types, so a longer length is
            // corrupt (and would otherwise allocate or loop without bound).
            usize::try_from(len)
                .ok()
                .filter(|len| *len <= self.0.len())
                .ok_or_else(|| Error(format!("length {len} exceeds the input")))
        }
    }

    impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            unsupported("self-describing decoding")
        }
        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                b => Err(Error(format!("bool byte {b}"))),
            }
        }
        fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u8(self.byte()?)
        }
        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u16(u16::from_be_bytes(self.take()?))
        }
        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u32(u32::from_be_bytes(self.take()?))
        }
        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u64(u64::from_be_bytes(self.take()?))
        }
        fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            let (bytes, rest) = self.0.split_at(len);
            self.0 = rest;
            visitor.visit_borrowed_bytes(bytes)
        }
        fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_bytes(visitor)
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_none(),
                1 => visitor.visit_some(self),
                b => Err(Error(format!("option tag {b}"))),
            }
        }
        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: fields.len(),
            })
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_enum(self)
        }

        serde::forward_to_deserialize_any! {
            i8 i16 i32 i64 i128 u128 f32 f64 char str string map identifier ignored_any
        }
    }

    struct Fields<'a, 'de> {
        de: &'a mut Decoder<'de>,
        left: usize,
    }

    impl<'de> de::SeqAccess<'de> for Fields<'_, 'de> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            seed.deserialize(&mut *self.de).map(Some)
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.left)
        }
    }

    impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
        type Error = Error;
        type Variant = Self;

        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
            let index = u32::from(self.byte()?);
            let value = seed.deserialize(index.into_deserializer())?;
            Ok((value, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            Ok(())
        }
        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
            seed.deserialize(self)
        }
        fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: fields.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_tree::{MemoryTreeStore, StateTree};
    use sha2::Digest as _;
    use trellis_ledger::state::{StateKey, WriteSet};
    use trellis_types::Digest;

    /// Every node and node key of a small tree's history: a null root, leaves, internal nodes
    /// with one to sixteen children, odd and even paths.
    fn sample() -> Vec<(NodeKey, Node)> {
        let mut tree = StateTree::in_memory();
        let mut out = Vec::new();
        let mut step = |tree: &mut StateTree<MemoryTreeStore>, version, writes: WriteSet| {
            let (_, batch) = tree.prepare(version, &writes).expect("prepare");
            out.extend(batch.node_batch.nodes().clone());
            tree.reader_mut().apply_batch(batch);
            tree.committed(version);
        };
        step(&mut tree, 0, WriteSet::new());
        for v in 1..=3u8 {
            let writes = (0..40u8)
                .map(|i| {
                    let key = StateKey::anchor(&Digest([i; 32]));
                    let value = (i % 7 != v).then(|| vec![v, i]);
                    (key, value)
                })
                .collect();
            step(&mut tree, u64::from(v), writes);
        }
        out
    }

    #[test]
    fn tree_records_round_trip_and_their_encoding_is_pinned() {
        let mut all = sha2::Sha256::new();
        let sample = sample();
        assert!(sample.iter().any(|(_, n)| matches!(n, Node::Null)));
        assert!(
            sample
                .iter()
                .any(|(k, _)| k.nibble_path().num_nibbles() % 2 == 1)
        );
        for (key, node) in &sample {
            let k = encode_node_key(key);
            let n = encode_node(node).expect("encode");
            assert_eq!(&decode_node_key(&k).expect("key"), key);
            assert_eq!(&decode_node(&n, &k).expect("node"), node);
            all.update((k.len() as u32).to_be_bytes());
            all.update(&k);
            all.update((n.len() as u32).to_be_bytes());
            all.update(&n);
        }
        // Changing this is changing the on-disk format: bump FORMAT and migrate.
        assert_eq!(hex::encode(all.finalize()), PINNED);
    }

    const PINNED: &str = "8213abade6d33024eeb46845b69edd0b5d5f3dd7686ead0602b8ea68a8fabb68";

    #[test]
    fn damaged_tree_records_are_errors_not_panics() {
        for (key, node) in sample().iter().step_by(3) {
            for bytes in [encode_node_key(key), encode_node(node).expect("encode")] {
                for cut in 0..bytes.len() {
                    let _ = decode_node(&bytes[..cut], b"k");
                    let _ = decode_node_key(&bytes[..cut]);
                }
                for i in 0..bytes.len() {
                    for flip in [0x01, 0x10, 0x80, 0xff] {
                        let mut damaged = bytes.clone();
                        damaged[i] ^= flip;
                        let _ = decode_node(&damaged, b"k");
                        let _ = decode_node_key(&damaged);
                    }
                }
            }
        }
        assert!(decode_node(&[], b"k").is_err());
        assert!(decode_node(&[9], b"k").is_err());
        assert!(decode_node(&[0, 0], b"k").is_err(), "trailing bytes");
        assert!(decode_node_key(&[0; 9]).is_ok(), "a root key");
        assert!(decode_node_key(&[0; 10]).is_err(), "a stray path byte");
    }
}
