//! One chain hosted by a node: the consensus replica, the beacon application, the pool, the
//! durable store and the state tree, wired together by a single driver task.
//!
//! The driver owns the replica and carries out its effects in order: messages go to the
//! network, safety data and blocks to the store (safety data fsynced before the replica may
//! sign anything that depends on it), commits are executed and written in one atomic, fsynced
//! batch. Readers (the client API, peers' sync requests) never wait for the driver: they read
//! the store and the shared [`ChainShared`] snapshot.
//!
//! **What a header's state commitment means here.** `header.state = (h, root)` says: the JMT
//! root after executing every committed block up to height `h` (version `h` of the tree;
//! version 0 is the genesis state). A proposer puts the last height it has executed; a validator
//! checks the root against its own execution of that height, waiting for it if it has not
//! executed that far yet.

use crate::certified::certified_state_height;
use crate::mempool::{Accounts, Admitted, Mempool, MempoolConfig, Rejected};
use crate::net::{Inbound, Network};
use crate::payload;
use crate::state_tree::StateTree;
use crate::store::{CommitBatch, NodeStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use trellis_consensus::{
    Block, BlockId, CommittedHead, Committee, Effect, EpochChangeProof, EpochState, Height, Input,
    Message, QuorumCert, Recovery, Replica, ReplicaConfig, Round, SafetyData, StateCommitment,
    SyncChunk,
};
use trellis_ledger::beacon::{BeaconGenesis, GenesisAccount, Governance, execute_block_checked};
use trellis_ledger::state::{StateKey, StateView, WriteSet};
use trellis_types::genesis::Genesis;
use trellis_types::wire::{self, NetMessage};
use trellis_types::{Digest, PublicKey, Signer, Transaction};

/// State tree versions kept readable below the executed height (proofs use recent heads).
const KEEP_VERSIONS: u64 = 1_024;
const PRUNE_EVERY: u64 = 256;

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

/// Where a transaction ended up, as kept in the store's transaction index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
    /// `None` when applied; the rejection reason otherwise.
    pub rejected: Option<String>,
    /// The rejection's stable code (`trellis_ledger::beacon::Rejection::code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_code: Option<String>,
    /// The governance proposal the transaction opened or voted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
}

/// What the store's head record holds: enough to rebuild [`Recovery`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct HeadRecord {
    chain_id: String,
    epoch: u64,
    committee: Vec<String>,
    root_id: String,
    root_height: u64,
    root_timestamp_ms: u64,
    root_state_height: u64,
    root_state_root: String,
    committed_id: String,
    committed_round: u64,
    committed_height: u64,
    committed_timestamp_ms: u64,
    committed_state_height: u64,
    committed_state_root: String,
}

fn digest_hex(d: &Digest) -> String {
    hex::encode(d.0)
}

fn parse_digest(s: &str) -> Result<Digest, ChainError> {
    let bytes = hex::decode(s).map_err(|_| ChainError::Corrupt("head record digest"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ChainError::Corrupt("head record digest length"))?;
    Ok(Digest(arr))
}

impl HeadRecord {
    fn new(state: &EpochState, head: &CommittedHead) -> HeadRecord {
        HeadRecord {
            chain_id: state.chain_id.clone(),
            epoch: state.epoch,
            committee: state
                .committee
                .members()
                .iter()
                .map(|k| hex::encode(k.0))
                .collect(),
            root_id: digest_hex(&state.root_id),
            root_height: state.root_height,
            root_timestamp_ms: state.root_timestamp_ms,
            root_state_height: state.root_state.height,
            root_state_root: digest_hex(&state.root_state.root),
            committed_id: digest_hex(&head.id),
            committed_round: head.round,
            committed_height: head.height,
            committed_timestamp_ms: head.timestamp_ms,
            committed_state_height: head.state.height,
            committed_state_root: digest_hex(&head.state.root),
        }
    }

    fn parts(&self) -> Result<(EpochState, CommittedHead), ChainError> {
        let mut members = Vec::new();
        for k in &self.committee {
            members.push(PublicKey(parse_digest(k)?.0));
        }
        let committee =
            Committee::new(members).map_err(|_| ChainError::Corrupt("head record committee"))?;
        let state = EpochState {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch,
            committee,
            root_id: parse_digest(&self.root_id)?,
            root_height: self.root_height,
            root_timestamp_ms: self.root_timestamp_ms,
            root_state: StateCommitment {
                height: self.root_state_height,
                root: parse_digest(&self.root_state_root)?,
            },
        };
        let head = CommittedHead {
            id: parse_digest(&self.committed_id)?,
            round: self.committed_round,
            height: self.committed_height,
            timestamp_ms: self.committed_timestamp_ms,
            state: StateCommitment {
                height: self.committed_state_height,
                root: parse_digest(&self.committed_state_root)?,
            },
        };
        Ok((state, head))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("state tree: {0}")]
    Tree(#[from] crate::state_tree::StateTreeError),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("corrupt {0} in the store")]
    Corrupt(&'static str),
    #[error("consensus recovery: {0}")]
    Recovery(String),
}

/// A snapshot of the chain for the API and metrics, refreshed by the driver.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChainStatus {
    pub chain_id: String,
    pub epoch: u64,
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
    pub sync_served: AtomicU64,
}

/// State shared between the driver, the API handlers and the network dispatcher.
pub struct ChainShared {
    pub chain_id: String,
    pub genesis: EpochState,
    pub params: trellis_types::genesis::ChainParams,
    pub store: NodeStore,
    pub mempool: Mutex<Mempool>,
    pub status: RwLock<ChainStatus>,
    pub metrics: ChainMetrics,
    pub net: Network,
    /// The committed height, for waiters (`watch` so a slow waiter only sees the latest).
    pub committed: watch::Sender<Height>,
    /// Wakes a leader waiting for transactions.
    pub txs_arrived: Notify,
    /// Latest executed height: reads of state use this version.
    pub executed: AtomicU64,
    /// Next nonces of accounts as of the latest executed block, kept current by the driver from
    /// each block's writes. Admission reads it instead of the store: the store's value history
    /// makes each account read a reverse range scan.
    nonces: RwLock<BTreeMap<PublicKey, u64>>,
    pub sync_batch: u32,
}

/// Reads committed state at one version of the tree. The ledger's `StateView` has no error
/// path, so a read the store fails is answered as absent and remembered; whoever acts on what
/// was read calls [`StateAt::finish`] first. A failed read must never pass for an absent key:
/// executed as one, it would commit a state root that the other validators do not have.
pub struct StateAt<'a> {
    store: &'a NodeStore,
    pub version: u64,
    failed: OnceLock<StoreError>,
}

impl<'a> StateAt<'a> {
    pub fn new(store: &'a NodeStore, version: u64) -> StateAt<'a> {
        StateAt {
            store,
            version,
            failed: OnceLock::new(),
        }
    }

    /// The first read that failed, if any: then nothing read here is to be trusted.
    pub fn finish(self) -> Result<(), StoreError> {
        self.failed.into_inner().map_or(Ok(()), Err)
    }
}

impl StateView for StateAt<'_> {
    fn get(&self, key: &StateKey) -> Option<Vec<u8>> {
        match self.store.value_at(
            self.version,
            trellis_types::state_proof::key_hash(key.as_bytes()),
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, version = self.version, "state read failed");
                // Only the first is kept; it is the one `finish` reports.
                let _ = self.failed.set(e);
                None
            }
        }
    }
}

impl Accounts for StateAt<'_> {
    fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        trellis_ledger::beacon::read_account(self, account).map(|a| a.next_nonce)
    }
}

impl Accounts for ChainShared {
    fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        ChainShared::next_nonce(self, account)
    }
}

/// Account nonces read once per admitted batch.
struct KnownAccounts(BTreeMap<PublicKey, Option<u64>>);

impl Accounts for KnownAccounts {
    fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        self.0.get(account).copied().flatten()
    }
}

/// Committed nonces advanced past transactions already in uncommitted ancestor blocks.
struct PendingAccounts<'a> {
    base: &'a ChainShared,
    next: BTreeMap<PublicKey, u64>,
}

impl Accounts for PendingAccounts<'_> {
    fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        let committed = self.base.next_nonce(account)?;
        Some(
            self.next
                .get(account)
                .copied()
                .map_or(committed, |n| n.max(committed)),
        )
    }
}

impl ChainShared {
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
    pub fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        let cached = match self.nonces.read() {
            Ok(n) => n.get(account).copied(),
            Err(p) => p.into_inner().get(account).copied(),
        };
        if cached.is_some() {
            return cached;
        }
        let nonce = self.state().next_nonce(account)?;
        match self.nonces.write() {
            Ok(mut n) => n.entry(*account).or_insert(nonce),
            Err(p) => p.into_inner().entry(*account).or_insert(nonce),
        };
        Some(nonce)
    }

    fn note_account_writes(&self, writes: &WriteSet) {
        let mut cache = match self.nonces.write() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        for (key, value) in writes {
            let Some(rest) = key.as_bytes().strip_prefix(b"acct/") else {
                continue;
            };
            let Ok(bytes) = <[u8; 32]>::try_from(rest) else {
                continue;
            };
            let account = value
                .as_deref()
                .and_then(|v| <trellis_types::pb::Account as prost::Message>::decode(v).ok());
            match account {
                Some(a) => cache.insert(PublicKey(bytes), a.next_nonce),
                None => cache.remove(&PublicKey(bytes)),
            };
        }
    }

    /// Admission of a batch of signed transactions (API or gossip). Signatures are verified
    /// outside the pool's lock, batched. Returns one result per input.
    pub fn admit(&self, raw: &[Vec<u8>]) -> Vec<Result<(Digest, Admitted), Rejected>> {
        // Decoding (with its hashing) and the account reads happen outside the pool's lock, so
        // admissions on several threads and the driver do not queue behind each other.
        let decoder = lock(&self.mempool).decoder();
        let decoded: Vec<Result<Transaction, Rejected>> =
            raw.iter().map(|b| decoder.decode(b)).collect();
        let mut nonces: BTreeMap<PublicKey, Option<u64>> = BTreeMap::new();
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

    /// Committed blocks above `from_height` for a peer that is behind, ending at a block whose
    /// stored certificate commits exactly it (or that ends an epoch, whose proof is included).
    pub fn sync_chunk(&self, from_height: Height, max_blocks: u32) -> Option<SyncChunk> {
        let head = self.executed.load(Ordering::Acquire);
        if from_height >= head {
            return None;
        }
        let last = head.min(from_height + u64::from(max_blocks.clamp(1, self.sync_batch)));
        let mut blocks = Vec::new();
        for h in from_height + 1..=last {
            let bytes = self.store.block(h).ok()??;
            blocks.push(wire::decode_block(&bytes).ok()?);
        }
        // Trim to a block the chunk can prove committed.
        while let Some(b) = blocks.last() {
            if b.ends_epoch() {
                break;
            }
            let cert = self
                .store
                .cert(b.height())
                .ok()
                .flatten()
                .and_then(|c| wire::decode_qc(&c).ok());
            if cert.as_ref().and_then(|c| c.vote_data.commits()) == Some(b.id()) {
                break;
            }
            blocks.pop();
        }
        let last_block = blocks.last()?;
        let mut epoch_changes = Vec::new();
        for b in &blocks {
            if b.ends_epoch() {
                let bytes = self.store.epoch_change(b.epoch()).ok()??;
                epoch_changes.push(wire::decode_epoch_change(&bytes).ok()?);
            }
        }
        let commit_qc = if last_block.ends_epoch() {
            None
        } else {
            let bytes = self.store.cert(last_block.height()).ok()??;
            Some(wire::decode_qc(&bytes).ok()?)
        };
        Some(SyncChunk {
            blocks,
            epoch_changes,
            commit_qc,
        })
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the pool lock leaves a consistent pool (every mutation is one map
    // operation), so poisoning carries no information here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Genesis accounts as the beacon application sees them.
pub fn beacon_genesis(genesis: &Genesis) -> Result<BeaconGenesis, ChainError> {
    let accounts = genesis
        .parse_accounts()
        .map_err(|e| ChainError::Genesis(e.to_string()))?
        .into_iter()
        .map(|(key, org, role)| GenesisAccount { key, org, role })
        .collect();
    let p = &genesis.params;
    Ok(BeaconGenesis {
        chain_id: genesis.chain_id.clone(),
        accounts,
        governance: Governance {
            approval_num: p.approval_num,
            approval_den: p.approval_den,
            proposal_ttl_blocks: p.proposal_ttl_blocks,
        },
    })
}

/// The genesis epoch, whose root commits to the genesis state root (version 0).
pub fn genesis_epoch(genesis: &Genesis) -> Result<(EpochState, WriteSet), ChainError> {
    let writes = beacon_genesis(genesis)?
        .write_set()
        .map_err(|e| ChainError::Genesis(e.to_string()))?;
    let mut tree = StateTree::new(crate::state_tree::MemoryTreeStore::default());
    let root = tree.apply(0, &writes)?;
    let committee = genesis
        .committee()
        .map_err(|e| ChainError::Genesis(e.to_string()))?;
    let state = EpochState::genesis_with_state(
        &genesis.chain_id,
        committee,
        genesis.genesis_time_ms,
        StateCommitment { height: 0, root },
    );
    Ok((state, writes))
}

/// A block's transactions, decoded once; shared with the pool where it holds them.
type BlockTxs = Arc<Vec<Arc<Transaction>>>;

struct InflightBlock {
    height: Height,
    parent: BlockId,
    nonces: Vec<(PublicKey, u64)>,
    /// When this node first stored it: pacing of the proposal on top of it.
    arrived: Instant,
}

/// Events for the driver.
pub enum DriverEvent {
    Consensus { from: PublicKey, message: Message },
    Sync(SyncChunk),
    Shutdown,
}

pub struct Driver {
    shared: Arc<ChainShared>,
    replica: Replica,
    tree: StateTree<NodeStore>,
    executed: Height,
    timer: Option<(Round, Instant)>,
    awaiting_payload: Option<(Round, BlockId, Instant)>,
    deferred_verdicts: Vec<Block>,
    inflight: BTreeMap<BlockId, InflightBlock>,
    decoded: BTreeMap<BlockId, Option<BlockTxs>>,
    /// Set while a prune of old tree versions runs on its own thread.
    pruning: Arc<AtomicBool>,
    epoch_length: Option<u64>,
    max_block_txs: usize,
    max_block_bytes: usize,
    empty_block_delay: Duration,
    min_block_interval: Duration,
}

impl Driver {
    /// Opens the chain from its store, initialising it from genesis on first start.
    pub fn open(
        genesis: &Genesis,
        signer: Signer,
        config: &ChainConfig,
        store: NodeStore,
        net: Network,
    ) -> Result<(Driver, Arc<ChainShared>), ChainError> {
        let (genesis_state, genesis_writes) = genesis_epoch(genesis)?;
        if store.head()?.is_none() {
            let tree = StateTree::new(store.clone());
            let (root, batch) = tree.prepare(0, &genesis_writes)?;
            let head = CommittedHead::of_root(&genesis_state);
            let record = HeadRecord::new(&genesis_state, &head);
            store.commit(CommitBatch {
                height: 0,
                block_id: genesis_state.root_id.0,
                block: Vec::new(),
                cert: Vec::new(),
                state_root: root.0,
                tree: batch,
                txs: Vec::new(),
                epoch_change: None,
                head: serde_json::to_vec(&record).map_err(|_| ChainError::Corrupt("head"))?,
            })?;
        }
        let head_bytes = store.head()?.ok_or(ChainError::Corrupt("head record"))?;
        let record: HeadRecord =
            serde_json::from_slice(&head_bytes).map_err(|_| ChainError::Corrupt("head record"))?;
        let (epoch_state, committed) = record.parts()?;
        if epoch_state.chain_id != genesis.chain_id {
            return Err(ChainError::Genesis(format!(
                "the store holds chain `{}`, genesis is `{}`",
                epoch_state.chain_id, genesis.chain_id
            )));
        }
        let safety = match store.safety()? {
            Some(bytes) => {
                wire::decode_safety(&bytes).map_err(|_| ChainError::Corrupt("safety data"))?
            }
            None => SafetyData::new(epoch_state.epoch),
        };
        let mut blocks = Vec::new();
        for bytes in store.pending_blocks()? {
            if let Ok(b) = wire::decode_block(&bytes) {
                blocks.push(b);
            }
        }
        // The replay's flushes stay at or below the state proofs are made against.
        match certified_state_height(&store, committed.height) {
            Ok(Some(proven)) => store.set_tree_flush_limit(proven),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no certified head to keep flushes under"),
        }
        replay_tree(&genesis.chain_id, &store, &genesis_writes)?;
        let executed = committed.height;
        let replica = Replica::new(
            config.replica.clone(),
            signer,
            Recovery {
                epoch_state,
                committed,
                safety,
                blocks,
            },
        )
        .map_err(|e| ChainError::Recovery(e.to_string()))?;
        let tree = StateTree::resume(store.clone(), executed);
        let (committed_tx, _) = watch::channel(executed);
        let shared = Arc::new(ChainShared {
            chain_id: genesis.chain_id.clone(),
            genesis: genesis_state,
            params: genesis.params.clone(),
            mempool: Mutex::new(Mempool::new(&genesis.chain_id, config.mempool.clone())),
            status: RwLock::new(ChainStatus::default()),
            metrics: ChainMetrics::default(),
            net,
            committed: committed_tx,
            txs_arrived: Notify::new(),
            executed: AtomicU64::new(executed),
            nonces: RwLock::new(BTreeMap::new()),
            sync_batch: config.sync_batch,
            store,
        });
        let driver = Driver {
            shared: shared.clone(),
            replica,
            tree,
            executed,
            timer: None,
            awaiting_payload: None,
            deferred_verdicts: Vec::new(),
            inflight: BTreeMap::new(),
            decoded: BTreeMap::new(),
            pruning: Arc::new(AtomicBool::new(false)),
            epoch_length: genesis.params.epoch_length_blocks,
            max_block_txs: genesis.params.max_block_txs as usize,
            max_block_bytes: genesis.params.max_block_bytes as usize,
            empty_block_delay: Duration::from_millis(config.empty_block_delay_ms),
            min_block_interval: Duration::from_millis(config.min_block_interval_ms),
        };
        driver.publish_status();
        Ok((driver, shared))
    }

    /// Runs until [`DriverEvent::Shutdown`] or the event channel closes.
    pub async fn run(mut self, mut events: mpsc::Receiver<DriverEvent>) {
        self.step(Input::Start);
        loop {
            let timer_at = self.timer.map(|(_, at)| at);
            let payload_at = self.awaiting_payload.map(|(_, _, at)| at);
            tokio::select! {
                ev = events.recv() => match ev {
                    None | Some(DriverEvent::Shutdown) => {
                        // Up to the state the certified head commits to, which proofs right
                        // after the restart use; the start replays the few blocks above it.
                        let proven = certified_state_height(&self.shared.store, self.executed);
                        let up_to = match proven {
                            Ok(proven) => proven.unwrap_or(self.executed),
                            Err(e) => {
                                tracing::warn!(error = %e, "no certified head to flush up to");
                                self.executed
                            }
                        };
                        if let Err(e) = self.shared.store.flush_tree_up_to(up_to) {
                            tracing::warn!(error = %e, "state tree flush at shutdown failed");
                        }
                        break;
                    }
                    Some(DriverEvent::Consensus { from, message }) => {
                        self.step(Input::Message { from, message });
                    }
                    Some(DriverEvent::Sync(chunk)) => self.step(Input::Sync(chunk)),
                },
                _ = sleep_until(timer_at) => {
                    if let Some((round, _)) = self.timer.take() {
                        self.step(Input::Timer { round });
                    }
                }
                _ = sleep_until(payload_at) => self.answer_payload(true),
                _ = self.shared.txs_arrived.notified(), if self.awaiting_payload.is_some() => {
                    self.answer_payload(false)
                }
            }
        }
    }

    fn step(&mut self, input: Input) {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            let effects = self.replica.handle(now_ms(), input);
            let mut follow = self.apply(effects);
            follow.reverse();
            queue.extend(follow);
        }
        self.publish_status();
    }

    /// Carries out effects in order; returns inputs they produce right away.
    fn apply(&mut self, effects: Vec<Effect>) -> Vec<Input> {
        let mut inputs = Vec::new();
        let mut iter = effects.into_iter().peekable();
        while let Some(effect) = iter.next() {
            match effect {
                Effect::Send { to, message } => {
                    let frame = wire::encode(&NetMessage::Consensus(message));
                    self.shared.net.send(&to, frame.into());
                }
                Effect::Broadcast { message } => {
                    let frame = wire::encode(&NetMessage::Consensus(message));
                    self.shared.net.broadcast(frame.into());
                }
                Effect::PersistBlock { block } => {
                    self.note_inflight(&block);
                    if let Err(e) = self.shared.store.put_pending_block(
                        block.id().0,
                        block.height(),
                        &wire::encode_block(&block),
                    ) {
                        tracing::error!(error = %e, "could not store a block");
                    }
                }
                Effect::PersistSafety { seq, data } => {
                    match self.shared.store.put_safety(&wire::encode_safety(&data)) {
                        Ok(()) => inputs.push(Input::SafetyPersisted { seq }),
                        // Without the acknowledgement the replica signs nothing more: safe.
                        Err(e) => tracing::error!(error = %e, "could not persist safety data"),
                    }
                }
                Effect::SetTimer { round, after_ms } => {
                    self.timer = Some((round, Instant::now() + Duration::from_millis(after_ms)));
                }
                Effect::RequestPayload {
                    round, parent_id, ..
                } => {
                    let at = Instant::now() + self.empty_block_delay;
                    self.awaiting_payload = Some((round, parent_id, at));
                    if !self.candidate_txs(parent_id, 1).is_empty() {
                        // Deferred to the select loop so that a burst of arrivals batches up.
                        let ready = self.pacing(parent_id).max(Instant::now());
                        self.awaiting_payload = Some((round, parent_id, ready.min(at)));
                    }
                }
                Effect::ValidatePayload { block } => {
                    if let Some(valid) = self.verdict(&block) {
                        inputs.push(Input::PayloadVerdict {
                            block_id: block.id(),
                            valid,
                        });
                    } else {
                        self.deferred_verdicts.push(block);
                    }
                }
                Effect::Commit { block, cert } => {
                    let epoch_change = if block.ends_epoch() {
                        match iter.peek() {
                            Some(Effect::EpochChange { .. }) => match iter.next() {
                                Some(Effect::EpochChange { proof, next }) => Some((proof, next)),
                                _ => None,
                            },
                            _ => None,
                        }
                    } else {
                        None
                    };
                    if let Err(e) = self.commit(&block, &cert, epoch_change) {
                        // The store refused the commit: carrying on would fork from disk.
                        tracing::error!(error = %e, height = block.height(), "commit failed; stopping");
                        std::process::exit(70);
                    }
                    inputs.extend(self.release_verdicts());
                }
                Effect::EpochChange { .. } => {}
                Effect::StateSync {
                    peer,
                    epoch,
                    from_height,
                } => {
                    let frame = wire::encode(&NetMessage::SyncRequest {
                        epoch,
                        from_height,
                        max_blocks: self.shared.sync_batch,
                    });
                    self.shared.net.send(&peer, frame.into());
                }
            }
        }
        inputs
    }

    /// Decodes a block's transactions once, for the verdict, the proposer's nonce tracking and
    /// execution. `None` when the payload breaks the chain's limits. A transaction this node's
    /// pool holds (nearly all of them: gossip runs ahead of proposals) is taken from the pool
    /// when its bytes are the same, instead of being decoded again.
    fn decode_payload(&self, block: &Block) -> Option<BlockTxs> {
        let raw = payload::decode(&block.payload, self.max_block_txs).ok()?;
        let max_tx = self.shared.params.max_tx_bytes as usize;
        let bytes: usize = raw.iter().map(|r| r.len()).sum();
        if bytes > self.max_block_bytes {
            return None;
        }
        // Hashed before the pool is locked: admission waits on that lock.
        let hashes: Vec<Option<Digest>> = raw.iter().map(|r| Transaction::peek_hash(r)).collect();
        let pooled: Vec<Option<Arc<Transaction>>> = {
            let pool = lock(&self.shared.mempool);
            raw.iter()
                .zip(&hashes)
                .map(|(r, hash)| {
                    let tx = pool.get_exact(hash.as_ref()?, r)?;
                    (r.len() <= max_tx).then(|| tx.clone())
                })
                .collect()
        };
        let mut txs = Vec::with_capacity(raw.len());
        for (r, tx) in raw.iter().zip(pooled) {
            match tx {
                Some(tx) => txs.push(tx),
                None => txs.push(Arc::new(Transaction::decode(r, max_tx).ok()?)),
            }
        }
        Some(Arc::new(txs))
    }

    fn note_inflight(&mut self, block: &Block) {
        let decoded = self.decode_payload(block);
        self.decoded.insert(block.id(), decoded.clone());
        let Some(txs) = decoded else {
            return;
        };
        let nonces = txs.iter().map(|tx| (tx.sender(), tx.nonce())).collect();
        self.inflight.insert(
            block.id(),
            InflightBlock {
                height: block.height(),
                parent: block.parent_id(),
                nonces,
                arrived: Instant::now(),
            },
        );
    }

    /// The earliest time to propose on top of `parent_id` (see `ChainConfig::min_block_interval_ms`).
    fn pacing(&self, parent_id: BlockId) -> Instant {
        match self.inflight.get(&parent_id) {
            Some(parent) => parent.arrived + self.min_block_interval,
            None => Instant::now(),
        }
    }

    /// Pool transactions that may follow the uncommitted ancestors of `parent_id`.
    fn candidate_txs(&self, parent_id: BlockId, max_txs: usize) -> Vec<Arc<Transaction>> {
        let mut next: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut id = parent_id;
        while let Some(b) = self.inflight.get(&id) {
            for (sender, nonce) in &b.nonces {
                let n = next.entry(*sender).or_insert(0);
                *n = (*n).max(nonce + 1);
            }
            id = b.parent;
        }
        let accounts = PendingAccounts {
            base: &self.shared,
            next,
        };
        lock(&self.shared.mempool).next_block(&accounts, max_txs, self.max_block_bytes)
    }

    fn answer_payload(&mut self, deadline_passed: bool) {
        let Some((round, parent_id, at)) = self.awaiting_payload else {
            return;
        };
        let now = Instant::now();
        if !deadline_passed && now < at {
            // Before the pacing time only a full block goes out; the pool's size stands in for
            // the candidates (cheaper, and it is never smaller).
            let ready = self.pacing(parent_id);
            let pooled = lock(&self.shared.mempool).len();
            if now < ready && pooled < self.max_block_txs {
                if pooled > 0 {
                    self.awaiting_payload = Some((round, parent_id, ready.min(at)));
                }
                return;
            }
        }
        let txs = self.candidate_txs(parent_id, self.max_block_txs);
        if txs.is_empty() && !deadline_passed && now < at {
            return;
        }
        self.awaiting_payload = None;
        let raw: Vec<&[u8]> = txs.iter().map(|t| t.encoded()).collect();
        let state = StateCommitment {
            height: self.executed,
            root: self
                .tree
                .root(self.executed)
                .unwrap_or(self.shared.genesis.root_state.root),
        };
        let next_committee = self.next_committee();
        self.step(Input::Payload {
            round,
            payload: if raw.is_empty() {
                Vec::new()
            } else {
                payload::encode(&raw)
            },
            next_committee,
            state,
        });
    }

    /// The committee the block at the current proposal height must name, if it ends the epoch.
    /// Rotation by accreditation comes later: for now an epoch re-elects its committee.
    fn next_committee(&self) -> Option<Committee> {
        let length = self.epoch_length?;
        let state = self.replica.epoch_state();
        let height = self.replica.high_qc().vote_data.height + 1;
        (height >= state.root_height + length).then(|| state.committee.clone())
    }

    /// `None` while this node has not yet executed the height the block's state refers to.
    fn verdict(&self, block: &Block) -> Option<bool> {
        let state = block.header.state;
        if state.height > self.executed {
            return None;
        }
        let root = if state.height == 0 {
            Some(self.shared.genesis.root_state.root)
        } else {
            self.shared
                .store
                .state_root(state.height)
                .ok()
                .flatten()
                .map(Digest)
        };
        if root != Some(state.root) {
            return Some(false);
        }
        let expected_next = {
            let epoch = self.replica.epoch_state();
            self.epoch_length.and_then(|len| {
                (block.height() >= epoch.root_height + len).then(|| epoch.committee.clone())
            })
        };
        if block.header.next_committee != expected_next {
            return Some(false);
        }
        let decoded = match self.decoded.get(&block.id()) {
            Some(d) => d.is_some(),
            None => self.decode_payload(block).is_some(),
        };
        Some(decoded)
    }

    fn release_verdicts(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        let waiting = std::mem::take(&mut self.deferred_verdicts);
        for block in waiting {
            match self.verdict(&block) {
                Some(valid) => inputs.push(Input::PayloadVerdict {
                    block_id: block.id(),
                    valid,
                }),
                None => self.deferred_verdicts.push(block),
            }
        }
        inputs
    }

    fn commit(
        &mut self,
        block: &Block,
        cert: &QuorumCert,
        epoch_change: Option<(EpochChangeProof, EpochState)>,
    ) -> Result<(), ChainError> {
        let started = std::time::Instant::now();
        let height = block.height();
        let txs: BlockTxs = match self.decoded.remove(&block.id()).flatten() {
            Some(txs) => txs,
            None => Arc::new(committed_txs(block).into_iter().map(Arc::new).collect()),
        };
        // Signatures this node verified at admission are not verified again (see
        // `execute_block_checked`); the pool lock is held only to look them up.
        let known: Vec<bool> = {
            let pool = lock(&self.shared.mempool);
            txs.iter().map(|t| pool.holds_verified(t)).collect()
        };
        let view = StateAt::new(&self.shared.store, self.executed);
        let outcome =
            execute_block_checked(&self.shared.chain_id, height, &view, &txs, |i| known[i]);
        view.finish()?;
        let (root, batch) = self.tree.prepare(height, &outcome.writes)?;
        let mut failed = 0u64;
        let index: Vec<([u8; 32], Vec<u8>)> = outcome
            .receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rejected = r.outcome.as_ref().err();
                failed += rejected.is_some() as u64;
                let loc = TxLocation {
                    height,
                    index: i as u32,
                    rejected: rejected.map(|e| e.to_string()),
                    rejected_code: rejected.map(|e| e.code().to_string()),
                    proposal_id: r.outcome.as_ref().ok().and_then(|a| a.proposal_id),
                };
                (r.tx_hash.0, serde_json::to_vec(&loc).unwrap_or_default())
            })
            .collect();
        let (state, head) = match &epoch_change {
            Some((_, next)) => (next.clone(), CommittedHead::of_root(next)),
            None => (
                self.replica.epoch_state().clone(),
                CommittedHead::of_block(block),
            ),
        };
        let record = HeadRecord::new(&state, &head);
        // A certified head: proofs are made against the state it commits to, so the tree is
        // flushed no further (see `NodeStore::set_tree_flush_limit`).
        let certified = match &epoch_change {
            Some(_) => block.ends_epoch(),
            None => !block.ends_epoch() && cert.vote_data.commits() == Some(block.id()),
        };
        if certified {
            self.shared
                .store
                .set_tree_flush_limit(block.header.state.height);
        }
        self.shared.store.commit(CommitBatch {
            height,
            block_id: block.id().0,
            block: wire::encode_block(block),
            cert: wire::encode_qc(cert),
            state_root: root.0,
            tree: batch,
            txs: index,
            epoch_change: epoch_change
                .as_ref()
                .map(|(proof, _)| (block.epoch(), wire::encode_epoch_change(proof))),
            head: serde_json::to_vec(&record).map_err(|_| ChainError::Corrupt("head"))?,
        })?;
        self.tree.committed(height);
        self.shared.note_account_writes(&outcome.writes);
        self.executed = height;
        self.shared.executed.store(height, Ordering::Release);
        {
            let mut pool = lock(&self.shared.mempool);
            pool.remove(txs.iter().map(|t| t.hash()));
            pool.prune(&*self.shared);
        }
        self.inflight.retain(|_, b| b.height > height);
        let inflight = &self.inflight;
        self.decoded.retain(|id, _| inflight.contains_key(id));
        // Old tree versions are only needed for proofs against recent heads. Pruning deletes
        // hundreds of thousands of records: on its own thread, so that commits (and with them
        // latency) do not wait for it. One at a time; a skipped round is covered by the next.
        if height.is_multiple_of(PRUNE_EVERY)
            && height > KEEP_VERSIONS
            && !self.pruning.swap(true, Ordering::AcqRel)
        {
            let store = self.shared.store.clone();
            let pruning = self.pruning.clone();
            let keep_from = height - KEEP_VERSIONS;
            let spawned = std::thread::Builder::new()
                .name("trellis-prune".into())
                .spawn(move || {
                    if let Err(e) = store.prune_state(keep_from) {
                        tracing::warn!(error = %e, "state pruning failed");
                    }
                    pruning.store(false, Ordering::Release);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "state pruning could not start");
                self.pruning.store(false, Ordering::Release);
            }
        }
        let m = &self.shared.metrics;
        m.blocks_committed.fetch_add(1, Ordering::Relaxed);
        m.txs_committed
            .fetch_add(txs.len() as u64 - failed, Ordering::Relaxed);
        m.txs_failed.fetch_add(failed, Ordering::Relaxed);
        let took = started.elapsed();
        m.commit_micros_total
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        tracing::debug!(
            height,
            txs = txs.len(),
            micros = took.as_micros() as u64,
            "committed"
        );
        self.shared.committed.send_replace(height);
        Ok(())
    }

    fn publish_status(&self) {
        let state = self.replica.epoch_state();
        let head = self.replica.committed_head();
        let status = ChainStatus {
            chain_id: self.shared.chain_id.clone(),
            epoch: state.epoch,
            round: self.replica.round(),
            committed_height: self.executed,
            head_hash: digest_hex(&head.id),
            state_height: self.executed,
            state_root: self
                .tree
                .root(self.executed)
                .map(|d| digest_hex(&d))
                .unwrap_or_default(),
        };
        match self.shared.status.write() {
            Ok(mut s) => *s = status,
            Err(p) => *p.into_inner() = status,
        }
    }
}

/// A committed block's transactions as execution takes them. Validators checked the payload
/// before voting; a payload that still fails to decode executes as empty, the same on every
/// node.
fn committed_txs(block: &Block) -> Vec<Transaction> {
    payload::decode(&block.payload, usize::MAX)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Transaction::decode(r, usize::MAX).ok())
        .collect()
}

/// Rebuilds the state tree above its last flush (after a crash; see the store's "Write-behind
/// tree") by executing the committed blocks there again. Execution is deterministic, and the
/// store checks each rebuilt root against the committed one. A crash before the first flush
/// (of the genesis state) landed leaves no tree at all: it is rebuilt from the genesis writes.
fn replay_tree(
    chain_id: &str,
    store: &NodeStore,
    genesis_writes: &WriteSet,
) -> Result<(), ChainError> {
    let Some(last) = store.last_committed_height()? else {
        return Ok(());
    };
    let mut at = match store.tree_version() {
        Some(at) => at,
        None => {
            let (_, batch) = StateTree::new(store.clone()).prepare(0, genesis_writes)?;
            store.replay_tree(0, batch)?;
            tracing::info!("genesis state tree rebuilt");
            0
        }
    };
    let from = at;
    while at < last {
        let height = at + 1;
        let bytes = store
            .block(height)?
            .ok_or(ChainError::Corrupt("committed block"))?;
        let block =
            wire::decode_block(&bytes).map_err(|_| ChainError::Corrupt("committed block"))?;
        let txs = committed_txs(&block);
        let view = StateAt::new(store, at);
        // Nothing was admitted in this process: every signature is checked.
        let outcome = execute_block_checked(chain_id, height, &view, &txs, |_| false);
        view.finish()?;
        let (_, batch) = StateTree::resume(store.clone(), at).prepare(height, &outcome.writes)?;
        store.replay_tree(height, batch)?;
        at = height;
    }
    if last > from {
        tracing::info!(from, to = last, "state tree rebuilt from committed blocks");
    }
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Routes inbound frames: consensus and sync answers to the driver, transactions to the pool,
/// sync requests answered here from the store so the driver never waits on a slow peer.
pub async fn dispatch(
    shared: Arc<ChainShared>,
    mut inbound: mpsc::Receiver<Inbound>,
    driver: mpsc::Sender<DriverEvent>,
) {
    while let Some(Inbound { from, frame }) = inbound.recv().await {
        let msg = match wire::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                shared
                    .metrics
                    .malformed_frames
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "malformed frame dropped");
                continue;
            }
        };
        match msg {
            NetMessage::Consensus(message) => {
                if driver
                    .send(DriverEvent::Consensus { from, message })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            NetMessage::SyncResponse(chunk) => {
                if driver.send(DriverEvent::Sync(chunk)).await.is_err() {
                    break;
                }
            }
            NetMessage::Txs(txs) => {
                let shared = shared.clone();
                // Signature checks run on the blocking pool, off the network path.
                tokio::task::spawn_blocking(move || shared.admit(&txs));
            }
            NetMessage::SyncRequest {
                from_height,
                max_blocks,
                ..
            } => {
                let shared2 = shared.clone();
                let chunk = tokio::task::spawn_blocking(move || {
                    shared2.sync_chunk(from_height, max_blocks)
                })
                .await
                .ok()
                .flatten();
                if let Some(chunk) = chunk {
                    shared.metrics.sync_served.fetch_add(1, Ordering::Relaxed);
                    let frame = wire::encode(&NetMessage::SyncResponse(chunk));
                    shared.net.send(&from, frame.into());
                }
            }
        }
    }
}
