//! The store itself ([`NodeStore`]): opening (and the format check), the commit of a height,
//! the records read back, the replay of the tree after a restart, and the scheduling of the
//! tree's flushes (see "Write-behind tree" in the store's doc).

use super::error::{FORMAT, StoreError, corrupt};
use super::flush::{FlushJob, Flushing};
use super::memory::{NodeCache, Recent, TreeMemory, lock_memory};
use super::records::{
    META_FORMAT, META_HEAD, META_LAST, META_PRUNED, META_SAFETY, META_TREE, be_u64, pending_key,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use jmt::Version;
use jmt::storage::{NibblePath, Node, NodeKey, TreeUpdateBatch};
use rustc_hash::FxHashMap;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

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

pub(super) struct Inner {
    pub(super) path: PathBuf,
    pub(super) db: Database,
    pub(super) blocks: Keyspace,
    pub(super) block_ids: Keyspace,
    pub(super) pending: Keyspace,
    pub(super) certs: Keyspace,
    pub(super) txs: Keyspace,
    pub(super) roots: Keyspace,
    pub(super) epochs: Keyspace,
    pub(super) meta: Keyspace,
    pub(super) nodes: Keyspace,
    pub(super) values: Keyspace,
    pub(super) stale: Keyspace,
    /// Serialises the commits (check-then-write).
    pub(super) writer: Mutex<()>,
    /// Set by [`NodeStore::fail_commits`]: every later commit fails as a broken disk would.
    pub(super) failing: std::sync::atomic::AtomicBool,
    /// Serialises the prunes. Apart from the commits: a prune only deletes what versions
    /// before `keep_from` alone needed, and a commit only writes a newer version.
    pub(super) pruner: Mutex<()>,
    /// Versions between tree flushes.
    pub(super) tree_flush_every: u64,
    /// Where in each `tree_flush_every` heights this store flushes (see
    /// [`NodeStore::set_tree_flush_phase`]); 0 flushes `tree_flush_every` after the last flush.
    pub(super) tree_flush_phase: AtomicU64,
    /// The unflushed tree updates and the node cache. Changed by commits, replays and flushes
    /// (all under `writer`, or started under it) and, for the cache, by reads.
    pub(super) tree_memory: Arc<Mutex<TreeMemory>>,
    /// Held shared by each read of the tree, exclusively while memory lets versions go: a
    /// version a read finds held stays held until the read ends (see [`ConsistentReads`]).
    pub(super) reads: Arc<RwLock<()>>,
    /// Versions below this one read as gone: the last prune's `keep_from`. The prune deletes
    /// by the stale records of the flushes up to it, so a flushed version just below it kept
    /// its root and would read as present, though values it needs may be deleted.
    pub(super) pruned_below: AtomicU64,
    /// The tree flush being written on a thread of its own, if any. Started and finished under
    /// `writer`; at most one at a time.
    pub(super) flushing: Mutex<Option<Flushing>>,
    /// The highest version a flush due at a commit or replay may write (see
    /// [`NodeStore::set_tree_flush_limit`]); `u64::MAX` when unset.
    pub(super) flush_limit: AtomicU64,
    /// The height the last flush a commit or replay started was due at (`u64::MAX`: none since
    /// the store opened). Under a flush limit that flush wrote a lower version; the next one is
    /// due counted from this height, so that flushes stay `tree_flush_every` heights apart.
    pub(super) last_flush_due: AtomicU64,
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

/// The node's durable store. Cheap to clone: clones share one open database, so the driver and
/// the API's reader threads can each hold one.
#[derive(Clone)]
pub struct NodeStore {
    pub(super) inner: Arc<Inner>,
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
            failing: std::sync::atomic::AtomicBool::new(false),
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
    /// Makes every later commit fail, as a disk that stopped taking writes would: how tests
    /// show that a chain whose store fails stops alone (a real disk cannot fail on demand).
    pub fn fail_commits(&self) {
        self.inner.failing.store(true, Ordering::Release);
    }

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
        if self.inner.failing.load(Ordering::Acquire) {
            return Err(StoreError::Injected);
        }
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

    pub(super) fn tree_memory(&self) -> std::sync::MutexGuard<'_, TreeMemory> {
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
