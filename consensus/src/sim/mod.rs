//! Deterministic simulator (feature `sim`): the second driver of the replica, after the node.
//!
//! A run is a discrete-event simulation fixed by `(scenario, seed)`: a seeded network with
//! latency and jitter, loss, duplication, reordering, partitions that heal, crash-restart from
//! persisted state (losing what was not persisted), clock skew, epoch changes every few dozen
//! blocks with rotating committees, and up to `f` Byzantine validators running one named
//! behaviour each. The [`invariants`] checker watches every commit and every message an honest
//! node sends; after the run, liveness is checked (at least 10 commits after the network heals).

pub mod byzantine;
pub mod invariants;
pub mod rng;
pub mod scenario;
pub mod testkit;

use crate::crypto::Signer;
use crate::replica::CommittedHead;
use crate::safety::PlantedBug;
use crate::types::{Committee, Digest, Epoch, PublicKey, Round};
use crate::{
    Block, BlockId, Effect, EpochChangeProof, EpochState, Input, Message, QuorumCert, Recovery,
    Replica, ReplicaConfig, SafetyData, SyncChunk,
};
use byzantine::{Behaviour, Ctx};
use invariants::Checker;
use rng::SimRng;
use scenario::{ByzantineKind, Scenario, Setup};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Commits required after the network heals.
pub const LIVENESS_COMMITS: u64 = 10;
const CHAIN_ID: &str = "trellis-sim";

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: &'static str,
    pub seed: u64,
    pub committee_size: usize,
    pub byzantine: usize,
    /// Height of the longest committed chain among honest nodes.
    pub commits: u64,
    pub epochs: u64,
    pub violations: Vec<String>,
    pub fingerprint: Digest,
    pub dropped: u64,
    /// Dropped peer input by reason, summed over nodes.
    pub drop_reasons: std::collections::BTreeMap<&'static str, u64>,
    /// Per node, a one-line summary of its final state.
    pub nodes: Vec<String>,
}

enum Event {
    Deliver {
        to: usize,
        from: PublicKey,
        message: Message,
    },
    Timer {
        node: usize,
        incarnation: u64,
        generation: u64,
        round: Round,
    },
    /// The disk write lands; the acknowledgement follows as a separate event.
    PersistWrite {
        node: usize,
        incarnation: u64,
        seq: u64,
        data: Box<SafetyData>,
    },
    PersistAck {
        node: usize,
        incarnation: u64,
        seq: u64,
    },
    App {
        node: usize,
        incarnation: u64,
        input: Input,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Partition {
        groups: Vec<u8>,
    },
    Heal,
}

/// What survives a crash: written synchronously at commit (like an fsynced store) or when a
/// persist event lands.
struct Disk {
    safety: SafetyData,
    epoch_state: EpochState,
    ledger: Vec<(Block, QuorumCert)>,
    proofs: Vec<EpochChangeProof>,
    blocks: std::collections::BTreeMap<BlockId, Block>,
}

struct SimNode {
    signer: Signer,
    honest: bool,
    behaviour: Option<Box<dyn Behaviour>>,
    replica: Option<Replica>,
    incarnation: u64,
    timer_generation: u64,
    skew_ms: i64,
    disk: Disk,
}

pub struct Simulation {
    scenario: Scenario,
    setup: Setup,
    rng: SimRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: std::collections::BTreeMap<u64, Event>,
    nodes: Vec<SimNode>,
    byzantine_keys: Vec<PublicKey>,
    honest_keys: Vec<PublicKey>,
    partition: Option<Vec<u8>>,
    checker: Checker,
    config: ReplicaConfig,
    planted: Option<PlantedBug>,
    height_at_heal: Option<u64>,
    /// `TRELLIS_SIM_TRACE=1` prints every input to stderr, `=2` also every effect.
    trace: u8,
}

impl Simulation {
    pub fn new(scenario: &Scenario, seed: u64, planted: Option<PlantedBug>) -> Simulation {
        let mut rng = SimRng::new(seed ^ fnv(scenario.name));
        let setup = Setup::new(scenario, &mut rng);
        let honest_count = setup.committee_size - setup.byzantine + setup.spare_honest;
        let make_signer = |rng: &mut SimRng| Signer::from_seed(rng.bytes32());
        let byzantine_signers: Vec<Signer> = (0..setup.byzantine)
            .map(|_| make_signer(&mut rng))
            .collect();
        let honest_signers: Vec<Signer> =
            (0..honest_count).map(|_| make_signer(&mut rng)).collect();
        let byzantine_keys: Vec<PublicKey> =
            byzantine_signers.iter().map(Signer::public_key).collect();
        let honest_keys: Vec<PublicKey> = honest_signers.iter().map(Signer::public_key).collect();

        let config = ReplicaConfig {
            base_timeout_ms: setup.base_timeout_ms,
            max_timeout_ms: setup.base_timeout_ms * 8,
            ..ReplicaConfig::default()
        };
        let mut sim = Simulation {
            scenario: *scenario,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: std::collections::BTreeMap::new(),
            nodes: Vec::new(),
            byzantine_keys,
            honest_keys,
            partition: None,
            checker: Checker::new(CHAIN_ID, Digest::ZERO, 0, BTreeSet::new()),
            config,
            planted,
            height_at_heal: None,
            trace: match std::env::var("TRELLIS_SIM_TRACE").as_deref() {
                Ok("2") => 2,
                Ok(_) => 1,
                Err(_) => 0,
            },
            setup,
        };
        let genesis = EpochState::genesis(CHAIN_ID, sim.committee_for(0), 0);
        let twins = scenario.byzantine == Some(ByzantineKind::Twins);
        let mut nodes = Vec::new();
        for s in byzantine_signers {
            let copies = if twins { 2 } else { 1 };
            for _ in 0..copies {
                nodes.push((s.clone(), false));
            }
        }
        for s in honest_signers {
            nodes.push((s, true));
        }
        for (signer, honest) in nodes {
            let skew =
                sim.rng.range(0, 2 * scenario.clock_skew_ms) as i64 - scenario.clock_skew_ms as i64;
            let behaviour = match (honest, scenario.byzantine) {
                (false, Some(kind)) => Some(byzantine::make(kind)),
                _ => None,
            };
            sim.nodes.push(SimNode {
                signer,
                honest,
                behaviour,
                replica: None,
                incarnation: 0,
                timer_generation: 0,
                skew_ms: skew,
                disk: Disk {
                    safety: SafetyData::new(0),
                    epoch_state: genesis.clone(),
                    ledger: Vec::new(),
                    proofs: Vec::new(),
                    blocks: std::collections::BTreeMap::new(),
                },
            });
        }
        let honest: BTreeSet<PublicKey> = sim.honest_keys.iter().copied().collect();
        sim.checker = Checker::new(CHAIN_ID, genesis.root_id, sim.nodes.len(), honest);
        for e in 0..256 {
            let members = sim.committee_for(e).members().to_vec();
            sim.checker.set_committee(e, members);
        }
        sim.schedule_faults();
        sim
    }

    /// The committee of `epoch`: the Byzantine validators plus a window of honest ones that
    /// slides by one each epoch, so honest validators leave and rejoin committees.
    pub fn committee_for(&self, epoch: Epoch) -> Committee {
        let honest_seats = self.setup.committee_size - self.setup.byzantine;
        let pool = self.honest_keys.len();
        let mut members = self.byzantine_keys.clone();
        for i in 0..honest_seats {
            members.push(self.honest_keys[(epoch as usize + i) % pool]);
        }
        // Committee::new only fails on duplicates or emptiness, which this schedule rules out.
        Committee::new(members).unwrap_or_else(|_| unreachable!("schedule yields distinct keys"))
    }

    fn schedule_faults(&mut self) {
        let heal = self.setup.heal_at_ms;
        if self.scenario.partitions {
            let mut t = self.rng.range(500, 2_000);
            while t + 500 < heal {
                let len = self.rng.range(400, 2_500).min(heal - t);
                let groups: Vec<u8> = (0..self.nodes.len())
                    .map(|_| self.rng.range(0, 1) as u8)
                    .collect();
                self.push(t, Event::Partition { groups });
                self.push(t + len, Event::Heal);
                t += len + self.rng.range(500, 2_500);
            }
        }
        if self.scenario.crashes {
            let mut t = self.rng.range(500, 2_000);
            while t + 300 < heal {
                let node = self.rng.range(0, self.nodes.len() as u64 - 1) as usize;
                let down = self.rng.range(200, 2_500).min(heal - t);
                self.push(t, Event::Crash { node });
                self.push(t + down, Event::Restart { node });
                t += down + self.rng.range(300, 2_000);
            }
        }
        self.push(heal, Event::Heal);
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn local_time(&self, node: usize) -> u64 {
        (self.now as i64 + self.nodes[node].skew_ms).max(0) as u64
    }

    fn faults_active(&self) -> bool {
        self.now < self.setup.heal_at_ms
    }

    /// Runs to the end and checks the invariants.
    pub fn run(mut self) -> RunReport {
        for i in 0..self.nodes.len() {
            self.boot(i);
        }
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > self.setup.end_ms {
                break;
            }
            self.now = at;
            if self.height_at_heal.is_none() && at >= self.setup.heal_at_ms {
                self.height_at_heal = Some(self.checker.highest_committed());
            }
            if let Some(event) = self.events.remove(&seq) {
                self.step(event);
            }
        }
        self.finish()
    }

    fn finish(mut self) -> RunReport {
        let end_height = self.checker.highest_committed();
        let healed = self.height_at_heal.unwrap_or(0);
        if end_height < healed + LIVENESS_COMMITS {
            let msg = format!(
                "liveness: {} commits after the network healed (at height {healed}), {LIVENESS_COMMITS} required",
                end_height - healed
            );
            self.checker.violations.push(msg);
        }
        let mut epochs = 0;
        let mut dropped = 0;
        let mut drop_reasons = std::collections::BTreeMap::new();
        let mut nodes = Vec::new();
        for n in &self.nodes {
            if let Some(r) = &n.replica {
                epochs = epochs.max(r.epoch());
                dropped += r.stats().dropped.values().sum::<u64>();
                for (k, v) in &r.stats().dropped {
                    *drop_reasons.entry(*k).or_insert(0) += v;
                }
            }
            nodes.push(match &n.replica {
                None => format!("{:?} down", n.signer.public_key()),
                Some(r) => format!(
                    "{:?} honest={} epoch={} round={} height={} hqc={} voted={} locked={} timeouts={} refusals={} member={}",
                    n.signer.public_key(),
                    n.honest,
                    r.epoch(),
                    r.round(),
                    r.committed_height(),
                    r.high_qc().round(),
                    r.safety_data().last_voted_round,
                    r.safety_data().locked_round,
                    r.stats().timeouts,
                    r.stats().safety_refusals,
                    r.is_member(),
                ),
            });
        }
        RunReport {
            scenario: self.scenario.name,
            seed: 0,
            committee_size: self.setup.committee_size,
            byzantine: self.setup.byzantine,
            commits: end_height,
            epochs,
            fingerprint: Digest(self.checker.fingerprint()),
            violations: self.checker.violations,
            dropped,
            drop_reasons,
            nodes,
        }
    }

    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let state = node.disk.epoch_state.clone();
        let committed = match node.disk.ledger.last() {
            Some((b, _)) if b.epoch() == state.epoch && !b.ends_epoch() => {
                CommittedHead::of_block(b)
            }
            _ => CommittedHead::of_root(&state),
        };
        let recovery = Recovery {
            epoch_state: state,
            committed,
            safety: node.disk.safety.clone(),
            blocks: node.disk.blocks.values().cloned().collect(),
        };
        let mut replica = match Replica::new(self.config.clone(), node.signer.clone(), recovery) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("node {i} cannot restart from its disk: {e}");
                self.checker.violations.push(msg);
                return;
            }
        };
        if node.honest {
            replica.safety_mut().plant(self.planted);
        }
        let height = replica.committed_height();
        node.replica = Some(replica);
        node.incarnation += 1;
        if node.honest {
            self.checker.on_restart(i, height);
        }
        self.input(i, Input::Start);
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { to, from, message } => {
                if self.nodes[to].replica.is_none() {
                    return;
                }
                let extra = self.with_behaviour(to, |b, ctx| b.incoming(ctx, from, &message));
                self.apply(to, extra);
                self.input(to, Input::Message { from, message });
            }
            Event::Timer {
                node,
                incarnation,
                generation,
                round,
            } => {
                let n = &self.nodes[node];
                if n.incarnation == incarnation && n.timer_generation == generation {
                    self.input(node, Input::Timer { round });
                }
            }
            Event::PersistWrite {
                node,
                incarnation,
                seq,
                data,
            } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].replica.is_none()
                {
                    return;
                }
                self.nodes[node].disk.safety = *data;
                let ack_at = self.now + self.rng.range(0, 1);
                self.push(
                    ack_at,
                    Event::PersistAck {
                        node,
                        incarnation,
                        seq,
                    },
                );
            }
            Event::PersistAck {
                node,
                incarnation,
                seq,
            } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, Input::SafetyPersisted { seq });
                }
            }
            Event::App {
                node,
                incarnation,
                input,
            } => {
                if self.nodes[node].incarnation == incarnation {
                    self.input(node, input);
                }
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[node];
                if n.replica.take().is_some() {
                    n.incarnation += 1;
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].replica.is_none() {
                    self.boot(node);
                }
            }
            Event::Partition { groups } => self.partition = Some(groups),
            Event::Heal => self.partition = None,
        }
    }

    fn with_behaviour<T: Default>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn Behaviour, &mut Ctx<'_>) -> T,
    ) -> T {
        let node = &mut self.nodes[i];
        let (Some(behaviour), Some(replica)) = (node.behaviour.as_mut(), node.replica.as_ref())
        else {
            return T::default();
        };
        let mut ctx = Ctx {
            signer: &node.signer,
            replica,
            rng: &mut self.rng,
        };
        f(behaviour.as_mut(), &mut ctx)
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.local_time(i);
        if self.trace > 0 {
            let desc = match &input {
                Input::Message { from, message } => match message {
                    Message::Timeout(t) => format!(
                        "timeout r{} hqc{} from {from:?}",
                        t.vote.round, t.vote.high_qc_round
                    ),
                    Message::Proposal(p) => format!(
                        "proposal r{} h{} tc={} from {from:?}",
                        p.block.round(),
                        p.block.height(),
                        p.tc.is_some()
                    ),
                    Message::Vote(v) => format!("vote r{} from {from:?}", v.vote_data.round),
                    m => format!("{} e{} from {from:?}", m.kind(), m.epoch()),
                },
                other => format!("{other:?}").chars().take(80).collect(),
            };
            if let Some(r) = &self.nodes[i].replica {
                eprintln!(
                    "t={} node={i} e{} r{} h{} <- {desc}",
                    self.now,
                    r.epoch(),
                    r.round(),
                    r.committed_height()
                );
            }
        }
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let effects = replica.handle(now, input);
        if self.trace > 1 {
            for e in &effects {
                let d: String = format!("{e:?}").chars().take(100).collect();
                eprintln!("    node={i} -> {d}");
            }
        }
        let effects = if self.nodes[i].behaviour.is_some() {
            self.with_behaviour(i, |b, ctx| b.outgoing(ctx, effects))
        } else {
            effects
        };
        self.apply(i, effects);
    }

    fn apply(&mut self, i: usize, effects: Vec<Effect>) {
        let incarnation = self.nodes[i].incarnation;
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    self.observe_sent(i, &message);
                    self.send(i, to, message);
                }
                Effect::Broadcast { message } => {
                    self.observe_sent(i, &message);
                    let Some(r) = &self.nodes[i].replica else {
                        continue;
                    };
                    let members = r.epoch_state().committee.members().to_vec();
                    for to in members {
                        self.send(i, to, message.clone());
                    }
                }
                Effect::PersistSafety { seq, data } => {
                    let at = self.now + self.rng.range(0, 2);
                    self.push(
                        at,
                        Event::PersistWrite {
                            node: i,
                            incarnation,
                            seq,
                            data: Box::new(data),
                        },
                    );
                }
                Effect::SetTimer { round, after_ms } => {
                    let n = &mut self.nodes[i];
                    n.timer_generation += 1;
                    let generation = n.timer_generation;
                    self.push(
                        self.now + after_ms,
                        Event::Timer {
                            node: i,
                            incarnation,
                            generation,
                            round,
                        },
                    );
                }
                Effect::RequestPayload {
                    epoch,
                    round,
                    height,
                    ..
                } => {
                    let input = self.make_payload(i, epoch, round, height);
                    self.app_reply(i, incarnation, input);
                }
                Effect::ValidatePayload { block } => {
                    let valid = self.payload_valid(i, &block);
                    let input = Input::PayloadVerdict {
                        block_id: block.id(),
                        valid,
                    };
                    self.app_reply(i, incarnation, input);
                }
                Effect::PersistBlock { block } => {
                    self.nodes[i].disk.blocks.insert(block.id(), block);
                }
                Effect::Commit { block, cert } => {
                    if self.nodes[i].honest {
                        self.checker.on_commit(i, &block, &cert);
                    }
                    let h = block.height();
                    let disk = &mut self.nodes[i].disk;
                    disk.blocks.retain(|_, b| b.height() > h);
                    disk.ledger.push((block, cert));
                }
                Effect::EpochChange { proof, next } => {
                    let disk = &mut self.nodes[i].disk;
                    disk.epoch_state = next;
                    disk.proofs.push(proof);
                }
                Effect::StateSync {
                    peer, from_height, ..
                } => self.state_sync(i, peer, from_height),
                Effect::Halt { reason } => self
                    .checker
                    .violations
                    .push(format!("node {i} halted: {reason}")),
            }
        }
    }

    /// The simulated application answers one millisecond later.
    fn app_reply(&mut self, node: usize, incarnation: u64, input: Input) {
        let at = self.now + 1;
        self.push(
            at,
            Event::App {
                node,
                incarnation,
                input,
            },
        );
    }

    fn observe_sent(&mut self, i: usize, message: &Message) {
        if self.nodes[i].honest {
            let key = self.nodes[i].signer.public_key();
            self.checker.on_sent(key, message);
        }
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition.as_ref().is_some_and(|g| g[a] != g[b])
    }

    fn send(&mut self, from: usize, to: PublicKey, message: Message) {
        let from_key = self.nodes[from].signer.public_key();
        let targets: Vec<usize> = (0..self.nodes.len())
            .filter(|j| *j != from && self.nodes[*j].signer.public_key() == to)
            .collect();
        for j in targets {
            let copies = if !self.faults_active() {
                1
            } else if self.partitioned(from, j) || self.rng.chance(self.scenario.loss) {
                0
            } else if self.rng.chance(self.scenario.duplication) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.latency();
                self.push(
                    at,
                    Event::Deliver {
                        to: j,
                        from: from_key,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    /// Latency with jitter; jitter reorders messages.
    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.setup.latency_ms;
        self.rng.range(lo, hi)
    }

    fn make_payload(&mut self, i: usize, epoch: Epoch, round: Round, height: u64) -> Input {
        let Some(r) = &self.nodes[i].replica else {
            return Input::Start;
        };
        let state = r.epoch_state();
        let next_committee = (height >= state.root_height + self.setup.epoch_length)
            .then(|| self.committee_for(epoch + 1));
        let payload =
            format!("tx:{i}:{epoch}:{round}:{height}:{}", self.rng.next_u64()).into_bytes();
        Input::Payload {
            round,
            payload,
            next_committee,
            state: Default::default(),
        }
    }

    /// The simulated application: payloads are `tx:` records, and an epoch may end only at its
    /// scheduled length, naming the scheduled committee.
    fn payload_valid(&self, i: usize, block: &Block) -> bool {
        let Some(r) = &self.nodes[i].replica else {
            return false;
        };
        let state = r.epoch_state();
        if !block.payload.starts_with(b"tx:") && !block.payload.is_empty() {
            return false;
        }
        match &block.header.next_committee {
            None => true,
            Some(c) => {
                block.height() >= state.root_height + self.setup.epoch_length
                    && *c == self.committee_for(state.epoch + 1)
            }
        }
    }

    /// Serves a state-sync request from `peer`'s durable ledger, over the (faulty) network.
    fn state_sync(&mut self, i: usize, peer: PublicKey, from_height: u64) {
        let source = (0..self.nodes.len()).find(|j| {
            *j != i
                && self.nodes[*j].signer.public_key() == peer
                && self.nodes[*j].replica.is_some()
        });
        let Some(j) = source else { return };
        if self.faults_active() && (self.partitioned(i, j) || self.rng.chance(self.scenario.loss)) {
            return;
        }
        let disk = &self.nodes[j].disk;
        let blocks: Vec<&(Block, QuorumCert)> = disk
            .ledger
            .iter()
            .filter(|(b, _)| b.height() > from_height)
            .collect();
        let Some((last, last_cert)) = blocks.last().map(|(b, c)| (b, c)) else {
            return;
        };
        let ending: BTreeSet<BlockId> = blocks
            .iter()
            .filter(|(b, _)| b.ends_epoch())
            .map(|(b, _)| b.id())
            .collect();
        let chunk = SyncChunk {
            epoch_changes: disk
                .proofs
                .iter()
                .filter(|p| ending.contains(&p.ending.id()))
                .cloned()
                .collect(),
            commit_qc: (!last.ends_epoch()).then(|| last_cert.clone()),
            blocks: blocks.iter().map(|(b, _)| b.clone()).collect(),
        };
        let at = self.now + 2 * self.latency();
        let incarnation = self.nodes[i].incarnation;
        self.push(
            at,
            Event::App {
                node: i,
                incarnation,
                input: Input::Sync(chunk),
            },
        );
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, seed: u64, planted: Option<PlantedBug>) -> RunReport {
    let mut report = Simulation::new(scenario, seed, planted).run();
    report.seed = seed;
    report
}

/// Runs `seeds` seeds of every given scenario on `threads` threads; reports come back in
/// (scenario, seed) order whatever the scheduling.
pub fn run_many(
    scenarios: &[&'static Scenario],
    seeds: impl Iterator<Item = u64> + Clone,
    planted: Option<PlantedBug>,
    threads: usize,
) -> Vec<RunReport> {
    let jobs: Vec<(&'static Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| seeds.clone().map(move |seed| (*s, seed)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((scenario, seed)) = jobs.get(k) else {
                        break;
                    };
                    let report = run(scenario, *seed, planted);
                    if let Ok(mut r) = results.lock() {
                        r.push((k, report));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, r)| r).collect()
}

pub use scenario::SCENARIOS;
