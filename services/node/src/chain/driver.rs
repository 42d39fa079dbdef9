//! The driver: the one task that owns a chain's replica and carries out its effects in order
//! (messages out, blocks and safety data to the store, proposals with their pacing, verdicts on
//! proposed blocks, and the commit of each committed block: execution, the state tree, one
//! atomic store batch, the pool), fed by [`DriverEvent`]s that [`dispatch`] routes from the
//! network.

use super::error::ChainError;
use super::execution::{StateAt, TxLocation, committed_txs, replay_tree};
use super::genesis::{HeadRecord, digest_hex, genesis_epoch};
use super::link::ChainLink;
use super::shared::{ChainConfig, ChainShared, ChainStatus, PendingAccounts, lock};
use crate::certified::certified_state_height;
use crate::mempool::Mempool;
use crate::net::Inbound;
use crate::payload;
use crate::state_tree::StateTree;
use crate::store::{CommitBatch, NodeStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;
use trellis_consensus::{
    Block, BlockId, CommittedHead, Committee, Effect, EpochChangeProof, EpochState, Height, Input,
    Message, QuorumCert, Recovery, Replica, Round, SafetyData, StateCommitment, SyncChunk,
};
use trellis_ledger::app::{Application, BlockInput};
use trellis_types::wire::{self, NetMessage};
use trellis_types::{Digest, PublicKey, Signer, Transaction};

/// State tree versions kept readable below the executed height (proofs use recent heads).
const KEEP_VERSIONS: u64 = 1_024;
/// Heights between prunes of the tree versions below that.
const PRUNE_EVERY: u64 = 256;

/// Milliseconds since the Unix epoch by the wall clock (0 when it reads earlier): the time the
/// replica is driven with.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        app: Arc<dyn Application>,
        signer: Signer,
        config: &ChainConfig,
        store: NodeStore,
        net: ChainLink,
    ) -> Result<(Driver, Arc<ChainShared>), ChainError> {
        let (genesis_state, genesis_writes, params) = genesis_epoch(&*app)?;
        let chain_id = genesis_state.chain_id.clone();
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
        if epoch_state.chain_id != chain_id {
            return Err(ChainError::Genesis(format!(
                "the store holds chain `{}`, genesis is `{}`",
                epoch_state.chain_id, chain_id
            )));
        }
        // Same chain id is not the same genesis: a file with other accounts, roles or
        // parameters (or a store made before the genesis digest was part of the state) gives
        // another genesis root, and this node would diverge from its peers from block 1 on.
        let stored = store.state_root(0)?;
        if stored != Some(genesis_state.root_state.root.0) {
            return Err(ChainError::Genesis(format!(
                "the store was made from another genesis (its genesis state root is {}, this \
                 genesis file's is {}): another genesis file, or a store of a version before \
                 proof bundles v2; move the data directory aside to start this chain afresh",
                stored.map_or_else(|| "missing".to_string(), hex::encode),
                genesis_state.root_state.root
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
            // Only blocks this node stored itself: one that does not decode is damage.
            let b = wire::decode_block(&bytes).map_err(|_| ChainError::Corrupt("pending block"))?;
            blocks.push(b);
        }
        // The replay's flushes stay at or below the state proofs are made against.
        match certified_state_height(&store, committed.height) {
            Ok(Some(proven)) => store.set_tree_flush_limit(proven),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no certified head to keep flushes under"),
        }
        replay_tree(&*app, &store, &genesis_writes)?;
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
        let check = {
            let app = app.clone();
            Arc::new(move |action: &[u8]| app.check_action(action))
        };
        let mempool = Mempool::new(&chain_id, config.mempool.clone()).with_action_check(check);
        let epoch_length = params.epoch_length_blocks;
        let max_block_txs = params.max_block_txs as usize;
        let max_block_bytes = params.max_block_bytes as usize;
        let shared = Arc::new(ChainShared::new(
            app,
            genesis_state,
            params,
            store,
            mempool,
            net,
            executed,
            config.sync_batch,
        ));
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
            epoch_length,
            max_block_txs,
            max_block_bytes,
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
            if let Some(reason) = self.shared.halted() {
                tracing::error!(chain = %self.shared.chain_id, %reason, "driver stopped");
                self.publish_status();
                break;
            }
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
                    self.shared.net.send(&to, &NetMessage::Consensus(message));
                }
                Effect::Broadcast { message } => {
                    self.shared.net.broadcast(&NetMessage::Consensus(message));
                }
                Effect::PersistBlock { block } => {
                    self.note_inflight(&block);
                    if let Err(e) = self.shared.store.put_pending_block(
                        block.id().0,
                        block.height(),
                        &wire::encode_block(&block),
                    ) {
                        self.shared.halt(format!("could not store a block: {e}"));
                        return inputs;
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
                    let verdict = match self.verdict(&block) {
                        Ok(v) => v,
                        Err(e) => {
                            self.shared
                                .halt(format!("cannot judge a proposed block: {e}"));
                            return inputs;
                        }
                    };
                    if let Some(valid) = verdict {
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
                        // Carrying on would fork from disk: this chain stops, the node's other
                        // chains do not.
                        self.shared
                            .halt(format!("commit of height {} failed: {e}", block.height()));
                        return inputs;
                    }
                    inputs.extend(self.release_verdicts());
                }
                Effect::EpochChange { .. } => {}
                Effect::Halt { reason } => {
                    self.shared.halt(reason);
                    return inputs;
                }
                Effect::StateSync {
                    peer,
                    epoch,
                    from_height,
                } => {
                    let request = NetMessage::SyncRequest {
                        epoch,
                        from_height,
                        max_blocks: self.shared.sync_batch,
                    };
                    self.shared.net.send(&peer, &request);
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
                // The pool admitted it: its action passed the application's check.
                Some(tx) => txs.push(tx),
                None => {
                    let tx = Transaction::decode(r, max_tx).ok()?;
                    self.shared.app.check_action(tx.action()).ok()?;
                    txs.push(Arc::new(tx));
                }
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
        // The proposal extends the highest certified block.
        let height = self.replica.high_qc().vote_data.height + 1;
        let next_committee = match self.next_committee(height, self.executed) {
            Ok(c) => c,
            Err(e) => {
                self.shared
                    .halt(format!("cannot read the next committee: {e}"));
                return;
            }
        };
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

    /// The committee a block at `height` must name, if it ends the epoch: what the application
    /// says (the beacon decides every chain's committee) as of the state at `state_height`, the
    /// one the block commits to, so that proposer and validators ask the same state. `None`: the
    /// epoch goes on (not long enough yet, or the next committee is not decided).
    fn next_committee(
        &self,
        height: Height,
        state_height: Height,
    ) -> Result<Option<Committee>, ChainError> {
        let Some(length) = self.epoch_length else {
            return Ok(None);
        };
        let epoch = self.replica.epoch_state();
        if height < epoch.root_height + length {
            return Ok(None);
        }
        let view = StateAt::new(&self.shared.store, state_height);
        Ok(self.shared.app.next_committee(&view, epoch)?)
    }

    /// `Ok(None)` while this node has not yet executed the height the block's state refers to;
    /// an error when the store cannot say.
    fn verdict(&self, block: &Block) -> Result<Option<bool>, ChainError> {
        let state = block.header.state;
        if state.height > self.executed {
            return Ok(None);
        }
        let root = if state.height == 0 {
            Some(self.shared.genesis.root_state.root)
        } else {
            self.shared.store.state_root(state.height)?.map(Digest)
        };
        if root != Some(state.root) {
            return Ok(Some(false));
        }
        let expected_next = self.next_committee(block.height(), state.height)?;
        if block.header.next_committee != expected_next {
            return Ok(Some(false));
        }
        let decoded = match self.decoded.get(&block.id()) {
            Some(d) => d.is_some(),
            None => self.decode_payload(block).is_some(),
        };
        Ok(Some(decoded))
    }

    fn release_verdicts(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        let waiting = std::mem::take(&mut self.deferred_verdicts);
        for block in waiting {
            match self.verdict(&block) {
                Ok(Some(valid)) => inputs.push(Input::PayloadVerdict {
                    block_id: block.id(),
                    valid,
                }),
                Ok(None) => self.deferred_verdicts.push(block),
                Err(e) => {
                    self.shared
                        .halt(format!("cannot judge a proposed block: {e}"));
                    break;
                }
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
        // `BlockInput::verified`); the pool lock is held only to look them up.
        let known: Vec<bool> = {
            let pool = lock(&self.shared.mempool);
            txs.iter().map(|t| pool.holds_verified(t)).collect()
        };
        let view = StateAt::new(&self.shared.store, self.executed);
        let outcome = self.shared.app.execute(
            BlockInput {
                height,
                txs: &txs,
                verified: &known,
            },
            &view,
        )?;
        let (root, batch) = self.tree.prepare(height, &outcome.writes)?;
        let mut failed = 0u64;
        let mut index: Vec<([u8; 32], Vec<u8>)> = Vec::with_capacity(outcome.receipts.len());
        for (i, r) in outcome.receipts.iter().enumerate() {
            failed += r.outcome.is_err() as u64;
            let loc = TxLocation::of(height, i as u32, r);
            let bytes = serde_json::to_vec(&loc).map_err(|_| ChainError::Corrupt("tx index"))?;
            index.push((r.tx_hash.0, bytes));
        }
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
            application: self.shared.app.kind().to_string(),
            epoch: state.epoch,
            committee: state
                .committee
                .members()
                .iter()
                .map(|k| hex::encode(k.0))
                .collect(),
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
                .await;
                let chunk = match chunk {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(e)) => {
                        shared.halt(format!("cannot read committed blocks for a peer: {e}"));
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sync read task failed");
                        None
                    }
                };
                if let Some(chunk) = chunk {
                    shared.metrics.sync_served.fetch_add(1, Ordering::Relaxed);
                    shared.net.send(&from, &NetMessage::SyncResponse(chunk));
                }
            }
        }
    }
}
