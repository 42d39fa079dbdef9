//! The replica: a pure state machine, `handle(now, input) -> effects`.
//!
//! It owns the block tree above the last committed block, the pacemaker, vote and timeout
//! aggregation, the commit rule, fetching of missing ancestors and the epoch change. It never
//! blocks and never does IO: everything it wants done comes back as an [`Effect`], and every
//! answer comes in as an [`Input`].

use crate::certificate::{QuorumCert, SignerBitmap, TimeoutCert, TimeoutVote, Vote};
use crate::crypto::{self, MessageKind, signing_bytes};
use crate::message::{EpochState, Message, Proposal, TimeoutMsg, round_after};
use crate::safety::{LocalSafetyRules, SafetyData, SafetyError, SafetyRules};
use crate::types::{
    Block, BlockHeader, BlockId, Committee, Digest, Epoch, Height, PublicKey, Round, Signature,
    StateCommitment, ValidatorIndex, VoteData, payload_digest,
};
use crate::{EpochChangeProof, LeaderElection, RoundRobin};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Tunables of a replica. Defaults suit a LAN deployment.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Round timeout with no consecutive timeouts.
    pub base_timeout_ms: u64,
    /// Cap of the backed-off timeout.
    pub max_timeout_ms: u64,
    /// A certificate this many heights above the committed height asks the driver to state-sync
    /// instead of fetching blocks one request at a time.
    pub sync_gap: u64,
    /// Most blocks asked for or served in one block request.
    pub max_fetch: u32,
    /// How far ahead of the local clock a block timestamp may be.
    pub max_clock_drift_ms: u64,
    /// Committed blocks kept in memory to serve peers' fetches.
    pub recent_blocks: usize,
    /// Proposals buffered while their ancestors are fetched, and future-epoch messages buffered
    /// until the epoch change commits locally.
    pub max_buffered: usize,
    /// Votes and timeout votes for rounds further ahead than this are not kept: a replica that
    /// far behind state-syncs instead, and a Byzantine sender cannot fill memory with them.
    pub max_rounds_ahead: u64,
    /// Proposals accepted into the block tree per round. Honest leaders send one; a few more let
    /// equivocation be seen without letting a Byzantine leader flood the tree.
    pub max_proposals_per_round: u32,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            base_timeout_ms: 1_000,
            max_timeout_ms: 8_000,
            sync_gap: 32,
            max_fetch: 64,
            max_clock_drift_ms: 10_000,
            recent_blocks: 128,
            max_buffered: 256,
            max_rounds_ahead: 1_000,
            max_proposals_per_round: 3,
        }
    }
}

/// The last committed block, from which a replica (re)starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommittedHead {
    pub id: BlockId,
    pub round: Round,
    pub height: Height,
    pub timestamp_ms: u64,
    /// The application state the block's header commits to.
    pub state: StateCommitment,
}

impl CommittedHead {
    pub fn of_root(state: &EpochState) -> CommittedHead {
        CommittedHead {
            id: state.root_id,
            round: 0,
            height: state.root_height,
            timestamp_ms: state.root_timestamp_ms,
            state: state.root_state,
        }
    }
    pub fn of_block(b: &Block) -> CommittedHead {
        CommittedHead {
            id: b.id(),
            round: b.round(),
            height: b.height(),
            timestamp_ms: b.header.timestamp_ms,
            state: b.header.state,
        }
    }
}

/// Everything a replica restarts from; the driver rebuilds it from durable storage.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// The current epoch. If the last committed block ended an epoch, this is the next one.
    pub epoch_state: EpochState,
    /// Last committed block of the current epoch, or the epoch root.
    pub committed: CommittedHead,
    /// The safety data last acknowledged as persisted.
    pub safety: SafetyData,
    /// Blocks above the committed head that were persisted ([`Effect::PersistBlock`]), in any
    /// order. Without them a validator restarting could not propose on the certificates it
    /// holds; blocks that do not link to the committed head are ignored.
    pub blocks: Vec<Block>,
}

impl Recovery {
    pub fn genesis(state: EpochState) -> Recovery {
        Recovery {
            committed: CommittedHead::of_root(&state),
            safety: SafetyData::new(state.epoch),
            epoch_state: state,
            blocks: Vec::new(),
        }
    }
}

/// A verified run of committed blocks handed in by the driver after a state-sync request.
#[derive(Clone, Debug, Default)]
pub struct SyncChunk {
    /// Committed blocks, ascending, starting right above the replica's committed height.
    pub blocks: Vec<Block>,
    /// One proof for every epoch-ending block among `blocks`, in order.
    pub epoch_changes: Vec<EpochChangeProof>,
    /// Commits the last block unless that block ended an epoch.
    pub commit_qc: Option<QuorumCert>,
}

#[derive(Clone, Debug)]
pub enum Input {
    /// Begin (or resume) participation: arms the round timer, proposes if leading.
    Start,
    Message {
        from: PublicKey,
        message: Message,
    },
    /// A timer set with [`Effect::SetTimer`] expired.
    Timer {
        round: Round,
    },
    /// The application's answer to [`Effect::RequestPayload`].
    Payload {
        round: Round,
        payload: Vec<u8>,
        /// Ends the epoch, naming the next committee.
        next_committee: Option<Committee>,
        /// The application state the block's header commits to.
        state: StateCommitment,
    },
    /// The application's answer to [`Effect::ValidatePayload`].
    PayloadVerdict {
        block_id: BlockId,
        valid: bool,
    },
    /// Safety data of [`Effect::PersistSafety`] with this `seq` (and all earlier) is durable.
    SafetyPersisted {
        seq: u64,
    },
    /// Committed blocks fetched after [`Effect::StateSync`].
    Sync(SyncChunk),
}

#[derive(Clone, Debug)]
pub enum Effect {
    Send {
        to: PublicKey,
        message: Message,
    },
    /// To every member of the current committee except this replica.
    Broadcast {
        message: Message,
    },
    /// Store a block that entered the block tree, so a restart can restore it
    /// ([`Recovery::blocks`]). Blocks at or below the committed height may be deleted.
    PersistBlock {
        block: Block,
    },
    /// Make `data` durable, then answer [`Input::SafetyPersisted`] with `seq`.
    PersistSafety {
        seq: u64,
        data: SafetyData,
    },
    /// Answer [`Input::Timer`] after `after_ms`. A later timer replaces an earlier one.
    SetTimer {
        round: Round,
        after_ms: u64,
    },
    /// This replica leads `round`: ask the application for a payload extending `parent_id`.
    RequestPayload {
        epoch: Epoch,
        round: Round,
        height: Height,
        parent_id: BlockId,
    },
    /// Ask the application whether `block`'s payload (and next committee, if any) is valid.
    ValidatePayload {
        block: Block,
    },
    /// `block` is committed; `cert` is the certificate that committed it (it commits `block` or
    /// a descendant of it). Emitted in height order, exactly once per height.
    Commit {
        block: Block,
        cert: QuorumCert,
    },
    /// The epoch ended with `proof`; the replica now works in `next`.
    EpochChange {
        proof: EpochChangeProof,
        next: EpochState,
    },
    /// This replica is far behind: fetch committed blocks above `from_height` (with epoch-change
    /// proofs) from `peer`, which claims to know epoch `epoch`, and answer with [`Input::Sync`].
    StateSync {
        peer: PublicKey,
        epoch: Epoch,
        from_height: Height,
    },
    /// The replica cannot go on (its safety rules refuse the epoch the chain entered: they hold
    /// a later one). It signs nothing more; the host stops the chain and reports why.
    Halt {
        reason: String,
    },
}

/// Counters for metrics. `dropped` is keyed by reason.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub dropped: BTreeMap<&'static str, u64>,
    pub proposals: u64,
    pub votes: u64,
    pub timeouts: u64,
    pub qcs_formed: u64,
    pub tcs_formed: u64,
    pub committed_blocks: u64,
    pub sync_requests: u64,
    pub safety_refusals: u64,
}

enum Held {
    Effect(Box<Effect>),
    OwnVote(Vote),
    OwnTimeout(Box<TimeoutMsg>),
}

/// A block waiting for its parent: a proposal (which may earn a vote) or a fetched ancestor.
enum Orphan {
    Proposal(Box<Proposal>),
    Fetched(Box<Block>),
}

impl Orphan {
    fn height(&self) -> Height {
        match self {
            Orphan::Proposal(p) => p.block.height(),
            Orphan::Fetched(b) => b.height(),
        }
    }
}

#[derive(Default)]
struct RoundVotes {
    by_author: BTreeMap<ValidatorIndex, Digest>,
    by_data: BTreeMap<Digest, (VoteData, BTreeMap<ValidatorIndex, Signature>)>,
    formed: bool,
}

/// One chain's consensus replica.
pub struct Replica<S: SafetyRules = LocalSafetyRules, L: LeaderElection = RoundRobin> {
    config: ReplicaConfig,
    safety: S,
    election: L,
    key: PublicKey,
    epoch_state: EpochState,
    me: Option<ValidatorIndex>,
    now: u64,

    root: CommittedHead,
    blocks: BTreeMap<BlockId, Block>,
    recent: VecDeque<Block>,
    high_qc: QuorumCert,
    high_commit_qc: Option<QuorumCert>,
    high_tc: Option<TimeoutCert>,
    verified: BTreeSet<Digest>,
    verified_order: VecDeque<Digest>,

    round: Round,
    consecutive_timeouts: u32,
    proposed_round: Round,
    awaiting_payload: Option<Round>,
    votes: BTreeMap<Round, RoundVotes>,
    timeouts: BTreeMap<Round, BTreeMap<ValidatorIndex, (Round, Signature)>>,
    proposal_tcs: BTreeMap<BlockId, Option<TimeoutCert>>,
    awaiting_verdict: BTreeSet<BlockId>,
    voted: BTreeSet<BlockId>,
    proposals_per_round: BTreeMap<Round, BTreeSet<BlockId>>,
    orphans: BTreeMap<BlockId, Vec<(PublicKey, Orphan)>>,
    orphan_count: usize,
    requested: BTreeSet<BlockId>,
    future: Vec<(PublicKey, Message)>,
    /// Local time of the last state-sync request: at most one per base timeout, whoever asks.
    sync_requested: Option<u64>,
    /// Rotates state-sync requests across peers that claim to be ahead.
    sync_attempts: usize,
    in_sync: bool,

    persist_seq: u64,
    persisted_seq: u64,
    last_persist_request: SafetyData,
    held: Vec<(u64, Held)>,

    out: Vec<Effect>,
    stats: Stats,
}

impl Replica<LocalSafetyRules, RoundRobin> {
    /// A replica with in-process safety rules and round-robin leaders.
    pub fn new(
        config: ReplicaConfig,
        signer: crypto::Signer,
        recovery: Recovery,
    ) -> Result<Self, SafetyError> {
        let safety = LocalSafetyRules::new(signer, recovery.safety.clone());
        Replica::with_parts(config, safety, RoundRobin, recovery)
    }
}

impl<S: SafetyRules, L: LeaderElection> Replica<S, L> {
    /// Fails if the safety data belongs to a later epoch than `recovery.epoch_state`: such a
    /// replica could never sign, so the driver's recovery data is inconsistent.
    pub fn with_parts(
        config: ReplicaConfig,
        mut safety: S,
        election: L,
        recovery: Recovery,
    ) -> Result<Self, SafetyError> {
        let Recovery {
            epoch_state,
            committed,
            safety: persisted,
            blocks,
        } = recovery;
        // A later epoch than the persisted safety data: start it (the old data is obsolete).
        safety.start_epoch(epoch_state.epoch)?;
        let key = safety.public_key();
        let root_qc = epoch_state.root_qc();
        let data = safety.data().clone();
        let high_qc = data
            .high_qc
            .clone()
            .filter(|q| q.epoch() == epoch_state.epoch && q.round() > 0)
            .unwrap_or(root_qc);
        let high_tc = data
            .high_tc
            .clone()
            .filter(|t| t.epoch == epoch_state.epoch);
        let mut r = Replica {
            me: epoch_state.committee.index_of(&key),
            config,
            safety,
            election,
            key,
            now: 0,
            root: committed,
            blocks: BTreeMap::new(),
            recent: VecDeque::new(),
            high_commit_qc: None,
            high_qc,
            high_tc,
            verified: BTreeSet::new(),
            verified_order: VecDeque::new(),
            round: 0,
            consecutive_timeouts: 0,
            proposed_round: data.last_proposed_round,
            awaiting_payload: None,
            votes: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            proposal_tcs: BTreeMap::new(),
            awaiting_verdict: BTreeSet::new(),
            voted: BTreeSet::new(),
            proposals_per_round: BTreeMap::new(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            requested: BTreeSet::new(),
            future: Vec::new(),
            sync_requested: None,
            sync_attempts: 0,
            in_sync: false,
            persist_seq: 0,
            persisted_seq: 0,
            last_persist_request: persisted,
            held: Vec::new(),
            out: Vec::new(),
            stats: Stats::default(),
            epoch_state,
        };
        r.restore_blocks(blocks);
        r.round = round_after(&r.high_qc, r.high_tc.as_ref());
        r.out.clear();
        Ok(r)
    }

    /// Re-inserts persisted blocks (parents first) that link to the committed head.
    fn restore_blocks(&mut self, mut blocks: Vec<Block>) {
        blocks.sort_by_key(|b| (b.height(), b.round()));
        for b in blocks {
            let parent_known =
                b.parent_id() == self.root.id || self.blocks.contains_key(&b.parent_id());
            if b.epoch() != self.epoch()
                || b.height() <= self.root.height
                || b.check_well_formed().is_err()
                || !parent_known
            {
                continue;
            }
            let qc = b.qc.clone();
            self.blocks.insert(b.id(), b);
            self.note_certificate(&qc);
        }
    }

    /// Raises the highest (and highest committing) certificate. Certificates of another epoch
    /// are ignored: a caller may hold one across a re-entrant epoch change.
    fn note_certificate(&mut self, qc: &QuorumCert) {
        if qc.epoch() != self.epoch() {
            return;
        }
        if qc.round() > self.high_qc.round() {
            self.high_qc = qc.clone();
        }
        if qc.vote_data.commits().is_some()
            && self
                .high_commit_qc
                .as_ref()
                .is_none_or(|c| qc.round() > c.round())
        {
            self.high_commit_qc = Some(qc.clone());
        }
    }

    // ----- accessors -------------------------------------------------------------------------

    pub fn epoch(&self) -> Epoch {
        self.epoch_state.epoch
    }
    pub fn epoch_state(&self) -> &EpochState {
        &self.epoch_state
    }
    pub fn round(&self) -> Round {
        self.round
    }
    pub fn committed_height(&self) -> Height {
        self.root.height
    }
    pub fn committed_head(&self) -> CommittedHead {
        self.root
    }
    pub fn high_qc(&self) -> &QuorumCert {
        &self.high_qc
    }
    pub fn public_key(&self) -> PublicKey {
        self.key
    }
    pub fn is_member(&self) -> bool {
        self.me.is_some()
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn safety_data(&self) -> &SafetyData {
        self.safety.data()
    }
    /// Mutable access for planting bugs in simulator runs.
    #[cfg(feature = "sim")]
    pub fn safety_mut(&mut self) -> &mut S {
        &mut self.safety
    }
    /// A block known to this replica (uncommitted or recently committed).
    pub fn block(&self, id: &BlockId) -> Option<&Block> {
        self.blocks
            .get(id)
            .or_else(|| self.recent.iter().rev().find(|b| b.id() == *id))
    }
    pub fn leader(&self, round: Round) -> ValidatorIndex {
        self.election
            .leader(self.epoch_state.epoch, round, &self.epoch_state.committee)
    }

    // ----- entry point -----------------------------------------------------------------------

    /// Feeds one input at local time `now_ms` and returns the effects, in the order they must be
    /// carried out.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        self.now = self.now.max(now_ms);
        match input {
            Input::Start => self.start_round(),
            Input::Message { from, message } => self.on_message(from, message),
            Input::Timer { round } => self.on_timer(round),
            Input::Payload {
                round,
                payload,
                next_committee,
                state,
            } => self.on_payload(round, payload, next_committee, state),
            Input::PayloadVerdict { block_id, valid } => self.on_verdict(block_id, valid),
            Input::SafetyPersisted { seq } => self.on_persisted(seq),
            Input::Sync(chunk) => self.on_sync(chunk),
        }
        std::mem::take(&mut self.out)
    }

    fn drop_msg(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }

    // ----- persistence gate (safety rule 7) --------------------------------------------------

    /// Requests persistence if the safety data changed; returns the sequence number a message
    /// signed now must wait for.
    fn persist_if_changed(&mut self) -> u64 {
        if *self.safety.data() != self.last_persist_request {
            self.persist_seq += 1;
            self.last_persist_request = self.safety.data().clone();
            self.out.push(Effect::PersistSafety {
                seq: self.persist_seq,
                data: self.last_persist_request.clone(),
            });
        }
        self.persist_seq
    }

    fn hold(&mut self, seq: u64, item: Held) {
        if seq <= self.persisted_seq {
            self.release(item);
        } else {
            self.held.push((seq, item));
        }
    }

    fn release(&mut self, item: Held) {
        match item {
            Held::Effect(e) => self.out.push(*e),
            Held::OwnVote(v) => self.on_vote(v, true),
            Held::OwnTimeout(t) => self.on_timeout_msg(self.key, t, true),
        }
    }

    fn on_persisted(&mut self, seq: u64) {
        if seq <= self.persisted_seq || seq > self.persist_seq {
            return;
        }
        self.persisted_seq = seq;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(s, _)| *s <= seq);
        self.held = waiting;
        for (_, item) in ready {
            self.release(item);
        }
    }

    // ----- certificates ----------------------------------------------------------------------

    fn verify_qc(&mut self, qc: &QuorumCert) -> bool {
        if qc.epoch() != self.epoch_state.epoch {
            return false;
        }
        if qc.is_root() {
            return qc.vote_data == self.epoch_state.root_vote_data()
                && qc.signatures.is_empty()
                && qc.signers.0.is_empty();
        }
        let key = qc.cache_key();
        if self.verified.contains(&key) {
            return true;
        }
        if qc
            .verify(&self.epoch_state.chain_id, &self.epoch_state.committee)
            .is_err()
        {
            return false;
        }
        self.remember_verified(key);
        true
    }

    fn verify_tc(&mut self, tc: &TimeoutCert) -> bool {
        if tc.epoch != self.epoch_state.epoch {
            return false;
        }
        let mut e = crate::types::Encoder::new("trellis/tc-cache/v1");
        e.u64(tc.round).bytes(&tc.signers.0);
        for (s, r) in tc.signatures.iter().zip(&tc.high_qc_rounds) {
            e.fixed(&s.0).u64(*r);
        }
        let key = e.hash();
        if self.verified.contains(&key) {
            return true;
        }
        if tc
            .verify(&self.epoch_state.chain_id, &self.epoch_state.committee)
            .is_err()
        {
            return false;
        }
        self.remember_verified(key);
        true
    }

    fn remember_verified(&mut self, key: Digest) {
        const CACHE: usize = 1024;
        if self.verified.insert(key) {
            self.verified_order.push_back(key);
            if self.verified_order.len() > CACHE
                && let Some(old) = self.verified_order.pop_front()
            {
                self.verified.remove(&old);
            }
        }
    }

    /// Learns from verified certificates: highest QC/TC, the commit rule, round advancement.
    fn process_certificates(&mut self, from: PublicKey, qc: &QuorumCert, tc: Option<&TimeoutCert>) {
        if qc.epoch() != self.epoch() {
            return;
        }
        self.note_certificate(qc);
        if let Some(tc) = tc
            && tc.epoch == self.epoch()
            && self.high_tc.as_ref().is_none_or(|h| tc.round > h.round)
        {
            self.high_tc = Some(tc.clone());
        }
        if qc.vote_data.height > self.root.height + self.config.sync_gap {
            self.request_sync(from, self.epoch());
        }
        self.try_commit(Some(from));
        let next = round_after(&self.high_qc, self.high_tc.as_ref());
        let via_qc = self.high_qc.round() + 1 == next;
        self.advance_round(next, via_qc);
    }

    fn request_sync(&mut self, peer: PublicKey, epoch: Epoch) {
        if peer == self.key {
            return;
        }
        // Rate-limited whatever the claimed target, so a peer claiming a far-future epoch or
        // height cannot keep requests to others from going out; the next request (after a
        // base timeout) rotates to another peer.
        if self
            .sync_requested
            .is_some_and(|at| self.now < at + self.config.base_timeout_ms)
        {
            return;
        }
        self.sync_requested = Some(self.now);
        self.stats.sync_requests += 1;
        self.out.push(Effect::StateSync {
            peer,
            epoch,
            from_height: self.root.height,
        });
    }

    // ----- pacemaker -------------------------------------------------------------------------

    fn timeout_duration(&self) -> u64 {
        let mut d = self.config.base_timeout_ms;
        for _ in 0..self.consecutive_timeouts.min(16) {
            d = d.saturating_mul(3) / 2;
        }
        d.min(self.config.max_timeout_ms.max(self.config.base_timeout_ms))
    }

    fn start_round(&mut self) {
        if self.me.is_some() {
            self.out.push(Effect::SetTimer {
                round: self.round,
                after_ms: self.timeout_duration(),
            });
        }
        self.try_propose();
        self.vote_for_current_round();
    }

    fn advance_round(&mut self, next: Round, via_qc: bool) {
        if next <= self.round {
            return;
        }
        if via_qc {
            self.consecutive_timeouts = 0;
        }
        self.round = next;
        self.awaiting_payload = None;
        let keep_from = next.saturating_sub(1);
        self.votes = self.votes.split_off(&keep_from);
        self.timeouts = self.timeouts.split_off(&keep_from);
        self.start_round();
    }

    fn on_timer(&mut self, round: Round) {
        if round != self.round || self.me.is_none() {
            return;
        }
        self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
        // Give fetches another chance: they may have gone to a faulty peer.
        self.requested.clear();
        self.refetch_orphan_parents();
        self.sync_from_ahead();
        self.local_timeout();
        self.out.push(Effect::SetTimer {
            round: self.round,
            after_ms: self.timeout_duration(),
        });
    }

    /// Asks one of the peers whose messages show a later epoch for a state sync, a different
    /// one each time (a lying peer gets a share of the requests, not all of them).
    fn sync_from_ahead(&mut self) {
        let ahead: BTreeSet<PublicKey> = self.future.iter().map(|(k, _)| *k).collect();
        if ahead.is_empty() {
            return;
        }
        let pick = self.sync_attempts % ahead.len();
        if let Some(peer) = ahead.into_iter().nth(pick) {
            let before = self.stats.sync_requests;
            self.request_sync(peer, self.epoch() + 1);
            if self.stats.sync_requests > before {
                self.sync_attempts += 1;
            }
        }
    }

    fn local_timeout(&mut self) {
        let Some(me) = self.me else { return };
        let round = self.round;
        let signed = self.safety.sign_timeout(
            &self.epoch_state.chain_id,
            me,
            round,
            &self.high_qc,
            self.high_tc.as_ref(),
        );
        let vote = match signed {
            Ok(v) => v,
            Err(_) => {
                self.stats.safety_refusals += 1;
                return;
            }
        };
        // A stored timeout may report an older certificate than ours; send the one it signed.
        let high_qc = if vote.high_qc_round == self.high_qc.round() {
            self.high_qc.clone()
        } else {
            match self
                .safety
                .data()
                .high_qc
                .clone()
                .filter(|q| q.round() == vote.high_qc_round)
            {
                Some(q) => q,
                None => {
                    self.stats.safety_refusals += 1;
                    return;
                }
            }
        };
        self.stats.timeouts += 1;
        let msg = Box::new(TimeoutMsg {
            vote,
            high_qc,
            last_tc: self.high_tc.clone(),
        });
        let seq = self.persist_if_changed();
        self.hold(
            seq,
            Held::Effect(Box::new(Effect::Broadcast {
                message: Message::Timeout(msg.clone()),
            })),
        );
        self.hold(seq, Held::OwnTimeout(msg));
    }

    // ----- messages --------------------------------------------------------------------------

    fn on_message(&mut self, from: PublicKey, message: Message) {
        if !numbers_in_range(&message) {
            // No honest value comes near: refusing them keeps every `+ 1` below from wrapping.
            self.drop_msg("out_of_range");
            return;
        }
        let epoch = message.epoch();
        if let Message::BlockRequest {
            block_id, count, ..
        } = &message
        {
            // Served whatever the epoch: a lagging peer fetches what it missed.
            self.serve_blocks(from, *block_id, *count);
            return;
        }
        if epoch < self.epoch() {
            self.drop_msg("stale_epoch");
            return;
        }
        if epoch > self.epoch() {
            // Kept (bounded, per sender) both to replay after our own epoch change and to know
            // whom to ask for a state sync. Nothing here is authenticated yet: the committee of
            // a later epoch is unknown until its epoch-change proof is verified.
            self.drop_msg("future_epoch");
            let from_sender = self.future.iter().filter(|(k, _)| *k == from).count();
            if self.future.len() < self.config.max_buffered && from_sender < FUTURE_PER_SENDER {
                self.future.push((from, message));
            }
            self.sync_from_ahead();
            return;
        }
        match message {
            Message::Proposal(p) => self.on_proposal(from, p),
            Message::Vote(v) => self.on_vote(v, false),
            Message::Timeout(t) => self.on_timeout_msg(from, t, false),
            Message::BlockResponse { blocks, .. } => self.on_blocks(from, blocks),
            Message::BlockRequest { .. } => {}
        }
    }

    fn on_proposal(&mut self, from: PublicKey, p: Box<Proposal>) {
        let b = &p.block;
        let Some(author) = self.epoch_state.committee.member(b.header.author).copied() else {
            self.drop_msg("not_member");
            return;
        };
        if b.header.chain_id != self.epoch_state.chain_id || b.check_well_formed().is_err() {
            self.drop_msg("malformed");
            return;
        }
        if self.leader(b.round()) != b.header.author {
            self.drop_msg("wrong_leader");
            return;
        }
        if let Some(tc) = &p.tc
            && (tc.round + 1 != b.round() || tc.epoch != b.epoch())
        {
            self.drop_msg("malformed");
            return;
        }
        let msg = signing_bytes(
            &self.epoch_state.chain_id,
            MessageKind::Proposal,
            b.epoch(),
            b.round(),
            &b.id(),
            &Digest::ZERO,
        );
        if crypto::verify(&author, &p.signature, &msg).is_err() {
            self.drop_msg("bad_signature");
            return;
        }
        if !self.verify_qc(&b.qc) || p.tc.as_ref().is_some_and(|tc| !self.verify_tc(tc)) {
            self.drop_msg("bad_certificate");
            return;
        }
        self.stats.proposals += 1;
        let (qc, tc) = (b.qc.clone(), p.tc.clone());
        self.process_certificates(from, &qc, tc.as_ref());
        let (round, id) = (p.block.round(), p.block.id());
        // Its own certificates have moved an honest replica to its round, so a later round is
        // a leader signing ahead, which would only fill the tree.
        if round > self.round {
            self.drop_msg("future_round");
            return;
        }
        let seen = self.proposals_per_round.entry(round).or_default();
        if seen.contains(&id) {
            self.drop_msg("duplicate");
            return;
        }
        if seen.len() >= self.config.max_proposals_per_round as usize {
            self.drop_msg("too_many_proposals");
            return;
        }
        seen.insert(id);
        self.insert_proposal(from, p);
    }

    /// Inserts a proposal's block if its parent is known, otherwise buffers it and fetches.
    fn insert_proposal(&mut self, from: PublicKey, p: Box<Proposal>) {
        let b = &p.block;
        if b.epoch() != self.epoch() {
            self.drop_msg("stale_epoch"); // its own certificate just ended the epoch
            return;
        }
        if b.height() <= self.root.height {
            self.drop_msg("below_commit");
            return;
        }
        if self.blocks.contains_key(&b.id()) {
            // Restored from disk after a restart: the proposal makes it votable.
            let id = b.id();
            if let std::collections::btree_map::Entry::Vacant(e) = self.proposal_tcs.entry(id) {
                e.insert(p.tc.clone());
                self.vote_for_current_round();
            } else {
                self.drop_msg("duplicate");
            }
            return;
        }
        let parent = b.parent_id();
        if parent != self.root.id && !self.blocks.contains_key(&parent) {
            if self.orphan_count >= self.config.max_buffered {
                self.drop_msg("buffer_full");
                return;
            }
            let gap = b.height() - self.root.height;
            self.orphan_count += 1;
            self.orphans
                .entry(parent)
                .or_default()
                .push((from, Orphan::Proposal(p)));
            self.fetch(from, parent, gap);
            return;
        }
        let id = p.block.id();
        let tc = p.tc.clone();
        if self.insert_block(p.block) {
            self.proposal_tcs.insert(id, tc);
            self.vote_for_current_round();
        }
    }

    /// Checks a block against its (known) parent and adds it to the tree.
    fn insert_block(&mut self, b: Block) -> bool {
        if b.epoch() != self.epoch() {
            return false;
        }
        let parent = if b.parent_id() == self.root.id {
            self.root
        } else if let Some(p) = self.blocks.get(&b.parent_id()) {
            CommittedHead::of_block(p)
        } else {
            return false;
        };
        if b.header.timestamp_ms <= parent.timestamp_ms
            || b.header.timestamp_ms > self.now + self.config.max_clock_drift_ms
        {
            self.drop_msg("bad_timestamp");
            return false;
        }
        if self.ancestor_ends_epoch(b.parent_id())
            && (!b.payload.is_empty() || b.ends_epoch() || parent.state != b.header.state)
        {
            // Blocks after the epoch-ending one carry nothing: they only certify its commit.
            self.drop_msg("payload_after_epoch_end");
            return false;
        }
        if b.height() <= self.root.height || self.blocks.contains_key(&b.id()) {
            return false;
        }
        let id = b.id();
        let epoch = b.epoch();
        let qc = b.qc.clone();
        self.out.push(Effect::PersistBlock { block: b.clone() });
        self.blocks.insert(id, b);
        self.requested.remove(&id);
        // Certificates inside fetched blocks are as good as those in proposals.
        self.note_certificate(&qc);
        self.try_commit(None);
        if self.epoch() != epoch {
            return false; // this block's commit ended the epoch
        }
        // Children waiting for this block (they may commit and end the epoch too).
        if let Some(waiting) = self.orphans.remove(&id) {
            self.orphan_count -= waiting.len();
            for (from, orphan) in waiting {
                if self.epoch() != epoch {
                    break;
                }
                match orphan {
                    Orphan::Proposal(p) => self.insert_proposal(from, p),
                    Orphan::Fetched(b) => {
                        self.insert_block(*b);
                    }
                }
            }
        }
        if self.epoch() != epoch {
            return false;
        }
        self.try_propose();
        true
    }

    fn ancestor_ends_epoch(&self, mut id: BlockId) -> bool {
        while let Some(b) = self.blocks.get(&id) {
            if b.ends_epoch() {
                return true;
            }
            id = b.parent_id();
        }
        false
    }

    /// Asks again for the parents buffered blocks are waiting on (the last answer may have been
    /// lost or bad), each from a sender of a block waiting on it.
    fn refetch_orphan_parents(&mut self) {
        let wanted: Vec<(BlockId, PublicKey, u64)> = self
            .orphans
            .iter()
            .filter(|(parent, _)| !self.blocks.contains_key(*parent))
            .filter_map(|(parent, waiting)| {
                let pick = self.consecutive_timeouts as usize % waiting.len().max(1);
                waiting
                    .get(pick)
                    .map(|(from, o)| (*parent, *from, o.height().saturating_sub(self.root.height)))
            })
            .collect();
        for (parent, from, gap) in wanted {
            self.fetch(from, parent, gap);
        }
    }

    fn fetch(&mut self, from: PublicKey, id: BlockId, gap: u64) {
        if from == self.key || !self.requested.insert(id) {
            return;
        }
        let count = gap.clamp(1, self.config.max_fetch as u64) as u32;
        self.out.push(Effect::Send {
            to: from,
            message: Message::BlockRequest {
                epoch: self.epoch(),
                block_id: id,
                count,
            },
        });
    }

    fn serve_blocks(&mut self, from: PublicKey, id: BlockId, count: u32) {
        let mut blocks = Vec::new();
        let mut next = id;
        while blocks.len() < count.min(self.config.max_fetch) as usize {
            match self.block(&next) {
                Some(b) => {
                    next = b.parent_id();
                    blocks.push(b.clone());
                }
                None => break,
            }
        }
        if blocks.is_empty() {
            self.drop_msg("unknown_block_requested");
            return;
        }
        // Labelled with the blocks' epoch, which is the requester's.
        let epoch = blocks[0].epoch();
        self.out.push(Effect::Send {
            to: from,
            message: Message::BlockResponse { epoch, blocks },
        });
    }

    fn on_blocks(&mut self, from: PublicKey, blocks: Vec<Block>) {
        // Only blocks we asked for, linked by hash from the requested id, are accepted: the id
        // came from a verified certificate, so the hash chain authenticates every block.
        let Some(first) = blocks.first() else { return };
        if !self.requested.contains(&first.id()) {
            self.drop_msg("unrequested_block");
            return;
        }
        let mut expected = first.id();
        let mut chain = Vec::new();
        for b in blocks {
            if b.id() != expected
                || b.check_well_formed().is_err()
                || b.header.chain_id != self.epoch_state.chain_id
                || b.epoch() != self.epoch()
            {
                self.drop_msg("malformed");
                break;
            }
            // The id does not cover the certificate's signatures: check them, or a forged
            // certificate could become a commit certificate.
            if !self.verify_qc(&b.qc) {
                self.drop_msg("bad_certificate");
                break;
            }
            if b.id() == self.root.id || self.blocks.contains_key(&b.id()) {
                break;
            }
            expected = b.parent_id();
            let known = expected == self.root.id || self.blocks.contains_key(&expected);
            chain.push(b);
            if known {
                break;
            }
        }
        let Some(oldest) = chain.last() else { return };
        let linked =
            oldest.parent_id() == self.root.id || self.blocks.contains_key(&oldest.parent_id());
        if !linked {
            if oldest.height() <= self.root.height + 1 {
                self.drop_msg("unlinked_blocks");
                return;
            }
            let (pid, gap) = (oldest.parent_id(), oldest.height() - self.root.height);
            if self.orphan_count + chain.len() > self.config.max_buffered {
                self.drop_msg("buffer_full");
                return;
            }
            for b in chain {
                self.orphan_count += 1;
                self.orphans
                    .entry(b.parent_id())
                    .or_default()
                    .push((from, Orphan::Fetched(Box::new(b))));
            }
            self.fetch(from, pid, gap);
            return;
        }
        for b in chain.into_iter().rev() {
            if !self.insert_block(b) {
                break;
            }
        }
        self.vote_for_current_round();
    }

    // ----- voting ----------------------------------------------------------------------------

    /// Votes for the current round's block if it is in the tree and not yet voted on.
    fn vote_for_current_round(&mut self) {
        if self.me.is_none() {
            return;
        }
        let round = self.round;
        // Every proposal of the round is put to the safety rules, which refuse all but the first
        // (so a planted bug in them is not masked here).
        let candidates: Vec<BlockId> = self
            .blocks
            .values()
            .filter(|b| b.round() == round && self.proposal_tcs.contains_key(&b.id()))
            .map(|b| b.id())
            .filter(|id| !self.voted.contains(id) && !self.awaiting_verdict.contains(id))
            .collect();
        for id in candidates {
            let Some(b) = self.blocks.get(&id) else {
                continue;
            };
            // An empty block that repeats its parent's state has nothing for the application
            // to check.
            let parent_state = if b.parent_id() == self.root.id {
                Some(self.root.state)
            } else {
                self.blocks.get(&b.parent_id()).map(|p| p.header.state)
            };
            let same_state = parent_state == Some(b.header.state);
            if b.payload.is_empty() && !b.ends_epoch() && same_state {
                self.vote(id);
            } else {
                self.awaiting_verdict.insert(id);
                let block = b.clone();
                self.out.push(Effect::ValidatePayload { block });
            }
        }
    }

    fn on_verdict(&mut self, block_id: BlockId, valid: bool) {
        if !self.awaiting_verdict.remove(&block_id) {
            return;
        }
        if !valid {
            self.drop_msg("invalid_payload");
            return;
        }
        if self
            .blocks
            .get(&block_id)
            .is_some_and(|b| b.round() == self.round)
        {
            self.vote(block_id);
        }
    }

    fn vote(&mut self, id: BlockId) {
        let Some(me) = self.me else { return };
        let Some(block) = self.blocks.get(&id) else {
            return;
        };
        if !self.voted.insert(id) {
            return;
        }
        let tc = self.proposal_tcs.get(&id).cloned().flatten();
        let vote = match self
            .safety
            .vote(&self.epoch_state.chain_id, me, block, tc.as_ref())
        {
            Ok(v) => v,
            Err(_) => {
                self.stats.safety_refusals += 1;
                return;
            }
        };
        self.stats.votes += 1;
        let seq = self.persist_if_changed();
        let next_leader = self.leader(vote.vote_data.round + 1);
        if next_leader == me {
            self.hold(seq, Held::OwnVote(vote));
        } else if let Some(to) = self.epoch_state.committee.member(next_leader).copied() {
            self.hold(
                seq,
                Held::Effect(Box::new(Effect::Send {
                    to,
                    message: Message::Vote(vote),
                })),
            );
        }
    }

    fn on_vote(&mut self, v: Vote, own: bool) {
        let d = v.vote_data;
        if d.epoch != self.epoch() {
            return; // our own vote, released after the epoch changed
        }
        let Some(author) = self.epoch_state.committee.member(v.author).copied() else {
            self.drop_msg("not_member");
            return;
        };
        if Some(self.leader(d.round + 1)) != self.me {
            self.drop_msg("not_next_leader");
            return;
        }
        if d.round + 1 < self.round {
            self.drop_msg("old_round");
            return;
        }
        if d.round > self.round + self.config.max_rounds_ahead {
            self.drop_msg("too_far_ahead");
            return;
        }
        let digest = d.digest();
        let entry = self.votes.entry(d.round).or_default();
        if entry.formed {
            return;
        }
        if let Some(prev) = entry.by_author.get(&v.author) {
            let reason = if *prev == digest {
                "duplicate"
            } else {
                "equivocation"
            };
            self.drop_msg(reason);
            return;
        }
        if !own {
            let msg = Vote::signing_bytes(&self.epoch_state.chain_id, &d);
            if crypto::verify(&author, &v.signature, &msg).is_err() {
                self.drop_msg("bad_signature");
                return;
            }
        }
        let quorum = self.epoch_state.committee.quorum();
        let size = self.epoch_state.committee.size();
        let entry = self.votes.entry(d.round).or_default();
        entry.by_author.insert(v.author, digest);
        let (_, sigs) = entry
            .by_data
            .entry(digest)
            .or_insert_with(|| (d, BTreeMap::new()));
        sigs.insert(v.author, v.signature);
        if sigs.len() < quorum {
            return;
        }
        let mut signers = SignerBitmap::new(size);
        let mut signatures = Vec::with_capacity(sigs.len());
        for (i, s) in sigs.iter() {
            signers.set(*i);
            signatures.push(*s);
        }
        entry.formed = true;
        let qc = QuorumCert {
            vote_data: d,
            signers,
            signatures,
        };
        self.stats.qcs_formed += 1;
        self.remember_verified(qc.cache_key());
        self.process_certificates(self.key, &qc, None);
    }

    fn on_timeout_msg(&mut self, from: PublicKey, t: Box<TimeoutMsg>, own: bool) {
        let v = &t.vote;
        if v.epoch != self.epoch() {
            return; // our own timeout, released after the epoch changed
        }
        let Some(author) = self.epoch_state.committee.member(v.author).copied() else {
            self.drop_msg("not_member");
            return;
        };
        if v.high_qc_round != t.high_qc.round() || v.high_qc_round >= v.round {
            self.drop_msg("malformed");
            return;
        }
        if !own {
            let msg = TimeoutVote::signing_bytes(
                &self.epoch_state.chain_id,
                v.epoch,
                v.round,
                v.high_qc_round,
            );
            if crypto::verify(&author, &v.signature, &msg).is_err() {
                self.drop_msg("bad_signature");
                return;
            }
        }
        if !self.verify_qc(&t.high_qc) || t.last_tc.as_ref().is_some_and(|tc| !self.verify_tc(tc)) {
            self.drop_msg("bad_certificate");
            return;
        }
        self.process_certificates(from, &t.high_qc, t.last_tc.as_ref());
        let round = v.round;
        if round < self.round || v.epoch != self.epoch() {
            return;
        }
        if round > self.round + self.config.max_rounds_ahead {
            self.drop_msg("too_far_ahead");
            return;
        }
        let set = self.timeouts.entry(round).or_default();
        // A sender may re-sign its timeout for the round with a higher certificate.
        if set
            .get(&v.author)
            .is_some_and(|(hqc, _)| *hqc >= v.high_qc_round)
        {
            self.drop_msg("duplicate");
            return;
        }
        set.insert(v.author, (v.high_qc_round, v.signature));
        let count = set.len();
        let f = self.epoch_state.committee.max_faulty();
        let timed_out_here = self
            .safety
            .data()
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.round == round);
        // f + 1 timeouts include an honest one: join it rather than wait for our own timer.
        if count > f && round == self.round && !timed_out_here {
            self.local_timeout();
        }
        let Some(set) = self.timeouts.get(&round) else {
            return;
        };
        if set.len() < self.epoch_state.committee.quorum()
            || self.high_tc.as_ref().is_some_and(|t| t.round >= round)
        {
            return;
        }
        let mut signers = SignerBitmap::new(self.epoch_state.committee.size());
        let mut high_qc_rounds = Vec::new();
        let mut signatures = Vec::new();
        for (i, (hqc, s)) in set {
            signers.set(*i);
            high_qc_rounds.push(*hqc);
            signatures.push(*s);
        }
        let tc = TimeoutCert {
            epoch: self.epoch(),
            round,
            signers,
            high_qc_rounds,
            signatures,
        };
        self.stats.tcs_formed += 1;
        let qc = self.high_qc.clone();
        self.process_certificates(self.key, &qc, Some(&tc));
    }

    // ----- proposing -------------------------------------------------------------------------

    fn parent_for_proposal(&self) -> Option<CommittedHead> {
        let id = self.high_qc.block_id();
        if id == self.root.id {
            Some(self.root)
        } else {
            self.blocks.get(&id).map(CommittedHead::of_block)
        }
    }

    fn tc_for_proposal(&self) -> Result<Option<TimeoutCert>, ()> {
        if self.high_qc.round() + 1 == self.round {
            return Ok(None);
        }
        match &self.high_tc {
            Some(tc) if tc.round + 1 == self.round => Ok(Some(tc.clone())),
            _ => Err(()),
        }
    }

    fn try_propose(&mut self) {
        let Some(me) = self.me else { return };
        let round = self.round;
        if self.leader(round) != me
            || self.proposed_round >= round
            || self.awaiting_payload == Some(round)
        {
            return;
        }
        if self.tc_for_proposal().is_err() {
            return;
        }
        let Some(parent) = self.parent_for_proposal() else {
            // Fetch the certified block from one of its signers, a different one each round in
            // case one is faulty.
            let signers: Vec<ValidatorIndex> = self
                .high_qc
                .signers
                .indices()
                .filter(|i| Some(*i) != self.me)
                .collect();
            let signer = signers
                .get((round as usize) % signers.len().max(1))
                .and_then(|i| self.epoch_state.committee.member(*i).copied());
            if let Some(peer) = signer {
                let gap = self
                    .high_qc
                    .vote_data
                    .height
                    .saturating_sub(self.root.height);
                self.fetch(peer, self.high_qc.block_id(), gap);
            }
            return;
        };
        if self.ancestor_ends_epoch(parent.id) {
            self.propose(Vec::new(), None, StateCommitment::default());
        } else {
            self.awaiting_payload = Some(round);
            self.out.push(Effect::RequestPayload {
                epoch: self.epoch(),
                round,
                height: parent.height + 1,
                parent_id: parent.id,
            });
        }
    }

    fn on_payload(
        &mut self,
        round: Round,
        payload: Vec<u8>,
        next: Option<Committee>,
        state: StateCommitment,
    ) {
        if round != self.round || self.awaiting_payload != Some(round) {
            return;
        }
        self.awaiting_payload = None;
        self.propose(payload, next, state);
    }

    fn propose(
        &mut self,
        mut payload: Vec<u8>,
        mut next_committee: Option<Committee>,
        mut state: StateCommitment,
    ) {
        let Some(me) = self.me else { return };
        let Ok(tc) = self.tc_for_proposal() else {
            return;
        };
        let Some(parent) = self.parent_for_proposal() else {
            return;
        };
        if self.ancestor_ends_epoch(parent.id) {
            payload.clear();
            next_committee = None;
            // Blocks after the epoch-ending one repeat its state: nothing executes in them.
            state = parent.state;
        }
        let header = BlockHeader {
            chain_id: self.epoch_state.chain_id.clone(),
            epoch: self.epoch(),
            round: self.round,
            height: parent.height + 1,
            parent_id: parent.id,
            qc_digest: self.high_qc.vote_data.digest(),
            author: me,
            timestamp_ms: self.now.max(parent.timestamp_ms + 1),
            payload_digest: payload_digest(&payload),
            state,
            next_committee,
        };
        let signature = match self
            .safety
            .sign_proposal(&self.epoch_state.chain_id, &header)
        {
            Ok(s) => s,
            Err(_) => {
                self.stats.safety_refusals += 1;
                return;
            }
        };
        self.proposed_round = self.round;
        let block = Block::new(header, self.high_qc.clone(), payload);
        let proposal = Box::new(Proposal {
            block,
            tc,
            signature,
        });
        let seq = self.persist_if_changed();
        self.hold(
            seq,
            Held::Effect(Box::new(Effect::Broadcast {
                message: Message::Proposal(proposal.clone()),
            })),
        );
        let id = proposal.block.id();
        let tc = proposal.tc.clone();
        if self.insert_block(proposal.block.clone()) {
            self.proposal_tcs.insert(id, tc);
            self.vote_for_current_round();
        }
    }

    // ----- commit and epoch change -----------------------------------------------------------

    fn try_commit(&mut self, from: Option<PublicKey>) {
        let Some(qc) = self.high_commit_qc.clone() else {
            return;
        };
        let Some(target) = qc.vote_data.commits() else {
            return;
        };
        if qc.vote_data.height <= self.root.height + 1 {
            return;
        }
        // Collect the chain root..=target.
        let mut chain = Vec::new();
        let mut id = target;
        while id != self.root.id {
            match self.blocks.get(&id) {
                Some(b) => {
                    chain.push(b.id());
                    id = b.parent_id();
                }
                None => {
                    if let Some(peer) = from {
                        let gap = qc.vote_data.height.saturating_sub(self.root.height);
                        self.fetch(peer, id, gap);
                    }
                    return;
                }
            }
        }
        chain.reverse();
        for (i, id) in chain.iter().enumerate() {
            let Some(block) = self.blocks.get(id).cloned() else {
                return;
            };
            self.commit_block(block.clone(), qc.clone());
            if let Some(next) = self.epoch_state.next(&block.header) {
                let suffix = chain[i + 1..]
                    .iter()
                    .filter_map(|s| self.blocks.get(s).map(|b| b.header.clone()))
                    .collect();
                let proof = EpochChangeProof {
                    ending: block.header.clone(),
                    suffix,
                    commit_qc: qc,
                };
                self.enter_epoch(proof, next);
                return;
            }
        }
        self.prune();
    }

    fn commit_block(&mut self, block: Block, cert: QuorumCert) {
        self.root = CommittedHead::of_block(&block);
        self.stats.committed_blocks += 1;
        self.recent.push_back(block.clone());
        while self.recent.len() > self.config.recent_blocks {
            self.recent.pop_front();
        }
        self.out.push(Effect::Commit { block, cert });
    }

    fn prune(&mut self) {
        let h = self.root.height;
        self.blocks.retain(|_, b| b.height() > h);
        let blocks = &self.blocks;
        self.proposal_tcs.retain(|id, _| blocks.contains_key(id));
        self.awaiting_verdict.retain(|id| blocks.contains_key(id));
        self.voted.retain(|id| blocks.contains_key(id));
        self.proposals_per_round = self.proposals_per_round.split_off(&self.root.round);
        self.orphans.retain(|_, v| {
            v.retain(|(_, o)| o.height() > h);
            !v.is_empty()
        });
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
    }

    fn enter_epoch(&mut self, proof: EpochChangeProof, next: EpochState) {
        self.out.push(Effect::EpochChange {
            proof,
            next: next.clone(),
        });
        if let Err(e) = self.safety.start_epoch(next.epoch) {
            // Safe as it is (the rules refuse to sign in an older epoch), but never silent.
            self.out.push(Effect::Halt {
                reason: format!("safety rules refuse epoch {}: {e}", next.epoch),
            });
        }
        self.persist_if_changed();
        self.me = next.committee.index_of(&self.key);
        self.root = CommittedHead::of_root(&next);
        self.high_qc = next.root_qc();
        self.epoch_state = next;
        self.high_commit_qc = None;
        self.high_tc = None;
        self.blocks.clear();
        self.proposal_tcs.clear();
        self.awaiting_verdict.clear();
        self.voted.clear();
        self.proposals_per_round.clear();
        self.orphans.clear();
        self.orphan_count = 0;
        self.requested.clear();
        self.votes.clear();
        self.timeouts.clear();
        self.verified.clear();
        self.verified_order.clear();
        self.awaiting_payload = None;
        self.proposed_round = 0;
        self.consecutive_timeouts = 0;
        self.sync_requested = None;
        self.round = 0;
        self.advance_round(1, true);
        if !self.in_sync {
            self.replay_future();
        }
    }

    /// Replays what arrived early from the new epoch; later epochs wait for sync.
    fn replay_future(&mut self) {
        let future = std::mem::take(&mut self.future);
        for (from, m) in future {
            if m.epoch() == self.epoch() {
                self.on_message(from, m);
            } else if m.epoch() > self.epoch() {
                self.future.push((from, m));
            }
        }
    }

    // ----- state sync ------------------------------------------------------------------------

    fn on_sync(&mut self, chunk: SyncChunk) {
        match self.check_sync(&chunk) {
            Ok(()) => {}
            Err(reason) => {
                self.drop_msg(reason);
                self.sync_requested = None;
                return;
            }
        }
        let SyncChunk {
            blocks,
            epoch_changes,
            commit_qc,
        } = chunk;
        // Each block's certificate: the proof of the epoch it belongs to if that epoch ended
        // within the chunk, the chunk's final certificate otherwise.
        let mut proofs = epoch_changes;
        let mut certs = Vec::with_capacity(blocks.len());
        let final_qc = commit_qc.clone();
        let mut current = commit_qc;
        for b in blocks.iter().rev() {
            if b.ends_epoch() {
                current = proofs
                    .iter()
                    .rev()
                    .find(|p| p.ending.id() == b.id())
                    .map(|p| p.commit_qc.clone());
            }
            certs.push(current.clone());
        }
        certs.reverse();
        self.in_sync = true;
        for (b, cert) in blocks.into_iter().zip(certs) {
            let Some(cert) = cert else { break }; // unreachable: check_sync saw every certificate
            if b.ends_epoch() {
                let Some(next) = self.epoch_state.next(&b.header) else {
                    break;
                };
                let Some(pos) = proofs.iter().position(|p| p.ending.id() == b.id()) else {
                    break;
                };
                let proof = proofs.remove(pos);
                self.commit_block(b, cert);
                self.enter_epoch(proof, next);
            } else {
                self.commit_block(b, cert);
            }
        }
        // Unless the chunk ended an epoch, its final certificate is the highest we know of.
        if let Some(qc) = final_qc.filter(|q| q.epoch() == self.epoch()) {
            self.prune();
            self.sync_requested = None;
            if qc.round() > self.high_qc.round() {
                self.high_qc = qc;
            }
            let next = round_after(&self.high_qc, self.high_tc.as_ref());
            self.advance_round(next, true);
            self.try_commit(None);
        }
        self.in_sync = false;
        self.replay_future();
    }

    /// Verifies a sync chunk without changing state: blocks hash-linked from the committed head,
    /// every epoch change proven by the committee it hands over from, the last block committed.
    fn check_sync(&self, chunk: &SyncChunk) -> Result<(), &'static str> {
        let mut state = self.epoch_state.clone();
        let mut parent = self.root.id;
        let mut height = self.root.height;
        let mut proofs = chunk.epoch_changes.iter();
        let mut last_ended = false;
        if chunk.blocks.is_empty() {
            return Err("sync_empty");
        }
        for b in &chunk.blocks {
            if b.check_well_formed().is_err()
                || b.parent_id() != parent
                || height.checked_add(1) != Some(b.height())
                || b.epoch() != state.epoch
                || b.header.chain_id != state.chain_id
            {
                return Err("sync_unlinked");
            }
            parent = b.id();
            height = b.height();
            last_ended = false;
            if b.ends_epoch() {
                let proof = proofs.next().ok_or("sync_missing_epoch_proof")?;
                if proof.ending.id() != b.id() {
                    return Err("sync_bad_epoch_proof");
                }
                proof
                    .verify(&state.chain_id, state.epoch, &state.committee)
                    .map_err(|_| "sync_bad_epoch_proof")?;
                state = state.next(&b.header).ok_or("sync_bad_epoch_proof")?;
                parent = state.root_id;
                last_ended = true;
            }
        }
        if last_ended {
            return Ok(());
        }
        let qc = chunk.commit_qc.as_ref().ok_or("sync_missing_commit")?;
        if qc.vote_data.commits() != Some(parent) || qc.epoch() != state.epoch {
            return Err("sync_bad_commit");
        }
        qc.verify(&state.chain_id, &state.committee)
            .map_err(|_| "sync_bad_commit")
    }
}

/// Future-epoch messages kept per sender.
const FUTURE_PER_SENDER: usize = 16;

/// Rounds, heights and timestamps honest peers produce stay far below this.
const NUMBER_LIMIT: u64 = 1 << 62;

fn numbers_in_range(message: &Message) -> bool {
    fn vote_data_ok(v: &VoteData) -> bool {
        [v.epoch, v.round, v.height, v.parent_round]
            .iter()
            .all(|n| *n < NUMBER_LIMIT)
    }
    fn tc_ok(tc: &TimeoutCert) -> bool {
        tc.epoch < NUMBER_LIMIT && tc.round < NUMBER_LIMIT
    }
    fn block_ok(b: &Block) -> bool {
        let h = &b.header;
        [h.epoch, h.round, h.height, h.timestamp_ms]
            .iter()
            .all(|n| *n < NUMBER_LIMIT)
            && vote_data_ok(&b.qc.vote_data)
    }
    match message {
        Message::Proposal(p) => block_ok(&p.block) && p.tc.as_ref().is_none_or(tc_ok),
        Message::Vote(v) => vote_data_ok(&v.vote_data),
        Message::Timeout(t) => {
            t.vote.epoch < NUMBER_LIMIT
                && t.vote.round < NUMBER_LIMIT
                && vote_data_ok(&t.high_qc.vote_data)
                && t.last_tc.as_ref().is_none_or(tc_ok)
        }
        Message::BlockRequest { epoch, .. } => *epoch < NUMBER_LIMIT,
        Message::BlockResponse { epoch, blocks } => {
            *epoch < NUMBER_LIMIT && blocks.iter().all(block_ok)
        }
    }
}
