//! The state one chain shares between its driver, the API handlers and the network dispatcher
//! ([`ChainShared`]): the store, the pool, the status and metrics, and the account nonces that
//! admission checks transactions against.

use super::execution::StateAt;
use super::link::ChainLink;
use crate::mempool::{Accounts, Admitted, Mempool, MempoolConfig, Rejected};
use crate::store::NodeStore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::{Notify, watch};
use trellis_consensus::{EpochState, Height, ReplicaConfig};
use trellis_ledger::app::Application;
use trellis_ledger::state::{StateError, WriteSet};
use trellis_types::{Digest, PublicKey, Transaction};

/// Tunables of a hosted chain.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub replica: ReplicaConfig,
    pub mempool: MempoolConfig,
    /// How long a leader with an empty pool waits for transactions before proposing an empty
    /// block (which still carries the latest state commitment).
    pub empty_block_delay_ms: u64,
    /// Least time between a block's arrival and a proposal on top of it, unless the pool holds
    /// a full block (see `Tuning::min_block_interval_ms`).
    pub min_block_interval_ms: u64,
    /// Blocks most served in one sync response.
    pub sync_batch: u32,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            replica: ReplicaConfig::default(),
            mempool: MempoolConfig::default(),
            empty_block_delay_ms: 200,
            min_block_interval_ms: 0,
            sync_batch: 64,
        }
    }
}

/// A snapshot of the chain for the API and metrics, refreshed by the driver.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChainStatus {
    pub chain_id: String,
    /// The application: `beacon` or `shard`.
    pub application: String,
    pub epoch: u64,
    /// The committee of the current epoch (hex consensus keys), as the replica follows it.
    pub committee: Vec<String>,
    pub round: u64,
    pub committed_height: u64,
    pub head_hash: String,
    pub state_height: u64,
    pub state_root: String,
}

/// Counters exported at `/metrics`.
#[derive(Default)]
pub struct ChainMetrics {
    pub txs_admitted: AtomicU64,
    pub txs_rejected: AtomicU64,
    pub txs_committed: AtomicU64,
    pub txs_failed: AtomicU64,
    pub blocks_committed: AtomicU64,
    pub commit_micros_total: AtomicU64,
    pub malformed_frames: AtomicU64,
    /// Frames for this chain dropped because its dispatcher was full or gone.
    pub dropped_frames: AtomicU64,
    pub sync_served: AtomicU64,
}

/// State shared between the driver, the API handlers and the network dispatcher.
pub struct ChainShared {
    pub chain_id: String,
    pub app: Arc<dyn Application>,
    pub genesis: EpochState,
    pub params: trellis_types::genesis::ChainParams,
    pub store: NodeStore,
    pub mempool: Mutex<Mempool>,
    pub status: RwLock<ChainStatus>,
    pub metrics: ChainMetrics,
    pub net: ChainLink,
    /// The committed height, for waiters (`watch` so a slow waiter only sees the latest).
    pub committed: watch::Sender<Height>,
    /// Wakes a leader waiting for transactions.
    pub txs_arrived: Notify,
    /// Latest executed height: reads of state use this version.
    pub executed: AtomicU64,
    /// Next nonces of accounts as of the latest executed block, kept current by the driver from
    /// each block's writes. Admission reads it instead of the store: the store's value history
    /// makes each account read a reverse range scan.
    pub(super) nonces: RwLock<BTreeMap<PublicKey, u64>>,
    pub sync_batch: u32,
    /// Why the chain stopped, once it has: a fault it cannot go on from (a store that fails, a
    /// commit refused). The driver ends, the chain reports unready; the node's other chains
    /// carry on.
    halted: OnceLock<String>,
}

impl Accounts for ChainShared {
    fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError> {
        ChainShared::next_nonce(self, account)
    }
}

/// Account nonces read once per admitted batch.
struct KnownAccounts(BTreeMap<PublicKey, Result<Option<u64>, StateError>>);

impl Accounts for KnownAccounts {
    fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError> {
        self.0.get(account).cloned().unwrap_or(Ok(None))
    }
}

/// Committed nonces advanced past transactions already in uncommitted ancestor blocks.
pub(super) struct PendingAccounts<'a> {
    pub(super) base: &'a ChainShared,
    pub(super) next: BTreeMap<PublicKey, u64>,
}

impl Accounts for PendingAccounts<'_> {
    fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError> {
        let committed = match self.base.next_nonce(account) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(None),
            Err(e) => {
                // The proposal goes out without this account; the chain stops on the fault.
                self.base
                    .halt(format!("state read failed while filling a block: {e}"));
                return Err(e);
            }
        };
        Ok(Some(
            self.next
                .get(account)
                .copied()
                .map_or(committed, |n| n.max(committed)),
        ))
    }
}

impl ChainShared {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        app: Arc<dyn Application>,
        genesis: EpochState,
        params: trellis_types::genesis::ChainParams,
        store: NodeStore,
        mempool: Mempool,
        net: ChainLink,
        executed: Height,
        sync_batch: u32,
    ) -> ChainShared {
        let (committed, _) = watch::channel(executed);
        ChainShared {
            chain_id: genesis.chain_id.clone(),
            app,
            genesis,
            params,
            store,
            mempool: Mutex::new(mempool),
            status: RwLock::new(ChainStatus::default()),
            metrics: ChainMetrics::default(),
            net,
            committed,
            txs_arrived: Notify::new(),
            executed: AtomicU64::new(executed),
            nonces: RwLock::new(BTreeMap::new()),
            sync_batch,
            halted: OnceLock::new(),
        }
    }

    /// Stops the chain for good (until the node restarts): logged once, reported by the status,
    /// `/readyz` and the metrics.
    pub fn halt(&self, reason: String) {
        if self.halted.set(reason.clone()).is_ok() {
            tracing::error!(chain = %self.chain_id, %reason, "chain stopped");
            self.txs_arrived.notify_one();
        }
    }

    /// Why the chain stopped, if it has.
    pub fn halted(&self) -> Option<&str> {
        self.halted.get().map(String::as_str)
    }

    pub fn state(&self) -> StateAt<'_> {
        StateAt::new(&self.store, self.executed.load(Ordering::Acquire))
    }

    pub fn status_snapshot(&self) -> ChainStatus {
        match self.status.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// An account's next nonce as of the latest executed block (`None`: not registered).
    pub fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError> {
        let cached = match self.nonces.read() {
            Ok(n) => n.get(account).copied(),
            Err(p) => p.into_inner().get(account).copied(),
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(nonce) = self.app.next_nonce(&self.state(), account)? else {
            return Ok(None);
        };
        match self.nonces.write() {
            Ok(mut n) => n.entry(*account).or_insert(nonce),
            Err(p) => p.into_inner().entry(*account).or_insert(nonce),
        };
        Ok(Some(nonce))
    }

    pub(super) fn note_account_writes(&self, writes: &WriteSet) {
        let changes = self.app.nonce_changes(writes);
        let mut cache = match self.nonces.write() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        for (account, nonce) in changes {
            // A cache: an entry removed is read again from the store when next needed.
            match nonce {
                Some(n) => cache.insert(account, n),
                None => cache.remove(&account),
            };
        }
    }

    /// Admission of a batch of signed transactions (API or gossip). Signatures are verified
    /// outside the pool's lock, batched. Returns one result per input.
    pub fn admit(&self, raw: &[Vec<u8>]) -> Vec<Result<(Digest, Admitted), Rejected>> {
        if self.halted().is_some() {
            // A stopped chain commits nothing: accepting would promise what it cannot keep.
            return raw.iter().map(|_| Err(Rejected::Unavailable)).collect();
        }
        // Decoding (with its hashing) and the account reads happen outside the pool's lock, so
        // admissions on several threads and the driver do not queue behind each other.
        let decoder = lock(&self.mempool).decoder();
        let decoded: Vec<Result<Transaction, Rejected>> =
            raw.iter().map(|b| decoder.decode(b)).collect();
        let mut nonces: BTreeMap<PublicKey, Result<Option<u64>, StateError>> = BTreeMap::new();
        for tx in decoded.iter().flatten() {
            nonces
                .entry(tx.sender())
                .or_insert_with(|| self.next_nonce(&tx.sender()));
        }
        let accounts = KnownAccounts(nonces);
        let mut results: Vec<Result<(Digest, Admitted), Rejected>> = Vec::with_capacity(raw.len());
        let mut fresh = Vec::new();
        {
            let pool = lock(&self.mempool);
            for d in decoded {
                match d.and_then(|tx| pool.screen(&tx, &accounts).map(|new| (tx, new))) {
                    Ok((tx, true)) => {
                        results.push(Ok((tx.hash(), Admitted::Added)));
                        fresh.push((results.len() - 1, tx));
                    }
                    Ok((tx, false)) => results.push(Ok((tx.hash(), Admitted::Duplicate))),
                    Err(e) => results.push(Err(e)),
                }
            }
        }
        let verdicts = Transaction::verify_batch(fresh.iter().map(|(_, t)| t));
        let mut added = 0u64;
        {
            let mut pool = lock(&self.mempool);
            for ((slot, tx), verdict) in fresh.into_iter().zip(verdicts) {
                let hash = tx.hash();
                results[slot] = match verdict {
                    Err(e) => Err(e.into()),
                    Ok(()) => pool.insert_verified(tx).map(|a| (hash, a)),
                };
                if matches!(results[slot], Ok((_, Admitted::Added))) {
                    added += 1;
                }
            }
        }
        let rejected = results.iter().filter(|r| r.is_err()).count() as u64;
        self.metrics
            .txs_admitted
            .fetch_add(added, Ordering::Relaxed);
        self.metrics
            .txs_rejected
            .fetch_add(rejected, Ordering::Relaxed);
        if added > 0 {
            self.txs_arrived.notify_one();
        }
        results
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the pool lock leaves a consistent pool (every mutation is one map
    // operation), so poisoning carries no information here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
