//! Building blocks for tests and benchmarks: real keys, real blocks and real certificates, and
//! [`LocalNet`], an instant in-process network of replicas.

use crate::certificate::{SignerBitmap, TimeoutCert, TimeoutVote};
use crate::crypto::{MessageKind, Signer, signing_bytes};
use crate::types::{Committee, Digest, Epoch, PublicKey, Round, payload_digest};
use crate::{
    Block, BlockHeader, Effect, EpochState, Input, Message, Proposal, QuorumCert, Recovery,
    Replica, ReplicaConfig, Vote,
};
use std::collections::VecDeque;

pub const CHAIN: &str = "trellis-test";

/// `n` validators with keys derived from their index, and the genesis epoch they form.
pub struct Keys {
    pub signers: Vec<Signer>,
    pub committee: Committee,
    pub genesis: EpochState,
}

impl Keys {
    pub fn new(n: usize) -> Keys {
        Self::with_seed(n, 0)
    }

    pub fn with_seed(n: usize, seed: u8) -> Keys {
        let signers: Vec<Signer> = (0..n)
            .map(|i| {
                let mut s = [seed; 32];
                s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                Signer::from_seed(s)
            })
            .collect();
        let committee = Committee::new(signers.iter().map(Signer::public_key).collect())
            .unwrap_or_else(|_| unreachable!("distinct seeds give distinct keys"));
        let genesis = EpochState::genesis(CHAIN, committee.clone(), 0);
        Keys {
            signers,
            committee,
            genesis,
        }
    }

    pub fn key(&self, i: usize) -> PublicKey {
        self.signers[i].public_key()
    }

    /// A block of `round` on `parent`, authored by validator `author`.
    pub fn block(&self, parent: &QuorumCert, round: Round, author: usize, payload: &[u8]) -> Block {
        self.block_with(parent, round, author, payload, None)
    }

    pub fn block_with(
        &self,
        parent: &QuorumCert,
        round: Round,
        author: usize,
        payload: &[u8],
        next_committee: Option<Committee>,
    ) -> Block {
        let header = BlockHeader {
            chain_id: CHAIN.into(),
            epoch: parent.epoch(),
            round,
            height: parent.vote_data.height + 1,
            parent_id: parent.block_id(),
            qc_digest: parent.vote_data.digest(),
            author: author as u32,
            timestamp_ms: round.saturating_mul(10).saturating_add(1),
            payload_digest: payload_digest(payload),
            state: Default::default(),
            next_committee,
        };
        Block::new(header, parent.clone(), payload.to_vec())
    }

    pub fn vote(&self, block: &Block, i: usize) -> Vote {
        let vote_data = block.vote_data();
        Vote {
            vote_data,
            author: i as u32,
            signature: self.signers[i].sign(&Vote::signing_bytes(CHAIN, &vote_data)),
        }
    }

    /// A certificate on `block` signed by `who`.
    pub fn qc(&self, block: &Block, who: &[usize]) -> QuorumCert {
        let mut signers = SignerBitmap::new(self.committee.size());
        let mut who = who.to_vec();
        who.sort_unstable();
        let signatures = who
            .iter()
            .map(|i| {
                signers.set(*i as u32);
                self.vote(block, *i).signature
            })
            .collect();
        QuorumCert {
            vote_data: block.vote_data(),
            signers,
            signatures,
        }
    }

    /// A timeout certificate for `round`: `(validator, its highest certified round)` pairs.
    pub fn tc(&self, epoch: Epoch, round: Round, reports: &[(usize, Round)]) -> TimeoutCert {
        let mut reports = reports.to_vec();
        reports.sort_unstable();
        let mut signers = SignerBitmap::new(self.committee.size());
        let mut high_qc_rounds = Vec::new();
        let mut signatures = Vec::new();
        for (i, hqc) in reports {
            signers.set(i as u32);
            high_qc_rounds.push(hqc);
            signatures
                .push(self.signers[i].sign(&TimeoutVote::signing_bytes(CHAIN, epoch, round, hqc)));
        }
        TimeoutCert {
            epoch,
            round,
            signers,
            high_qc_rounds,
            signatures,
        }
    }

    /// A proposal of `block` signed by its author.
    pub fn proposal(&self, block: Block, tc: Option<TimeoutCert>) -> Proposal {
        let h = &block.header;
        let signature = self.signers[h.author as usize].sign(&signing_bytes(
            CHAIN,
            MessageKind::Proposal,
            h.epoch,
            h.round,
            &block.id(),
            &Digest::ZERO,
        ));
        Proposal {
            block,
            tc,
            signature,
        }
    }
}

/// Replicas wired through an instant, lossless, in-order network: persistence is acknowledged
/// at once, payloads are `payload_size` bytes, every verdict is valid. Timers fire only when
/// the network is idle (nothing else can happen).
pub struct LocalNet {
    pub keys: Keys,
    pub replicas: Vec<Replica>,
    queue: VecDeque<(usize, Input)>,
    timers: Vec<Option<Round>>,
    pub committed: Vec<u64>,
    payload_size: usize,
    now: u64,
}

impl LocalNet {
    pub fn new(n: usize, payload_size: usize) -> LocalNet {
        let keys = Keys::new(n);
        let replicas = keys
            .signers
            .iter()
            .map(|s| {
                Replica::new(
                    ReplicaConfig::default(),
                    s.clone(),
                    Recovery::genesis(keys.genesis.clone()),
                )
                .expect("genesis recovery is consistent")
            })
            .collect();
        let mut net = LocalNet {
            keys,
            replicas,
            queue: VecDeque::new(),
            timers: vec![None; n],
            committed: vec![0; n],
            payload_size,
            now: 1,
        };
        for i in 0..n {
            net.queue.push_back((i, Input::Start));
        }
        net
    }

    /// Runs until replica 0 has committed `blocks` more blocks (or the network stalls).
    pub fn run(&mut self, blocks: u64) -> u64 {
        let target = self.committed[0] + blocks;
        let mut idle_rounds = 0;
        while self.committed[0] < target {
            let Some((i, input)) = self.queue.pop_front() else {
                // Idle: fire the pending timers.
                idle_rounds += 1;
                if idle_rounds > 100 {
                    break;
                }
                for i in 0..self.replicas.len() {
                    if let Some(round) = self.timers[i].take() {
                        self.queue.push_back((i, Input::Timer { round }));
                    }
                }
                continue;
            };
            self.now += 1;
            let effects = self.replicas[i].handle(self.now, input);
            self.apply(i, effects);
        }
        self.committed[0]
    }

    fn apply(&mut self, i: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { to, message } => self.send(i, to, message),
                Effect::Broadcast { message } => {
                    let members = self.replicas[i].epoch_state().committee.members().to_vec();
                    for to in members {
                        if to != self.replicas[i].public_key() {
                            self.send(i, to, message.clone());
                        }
                    }
                }
                Effect::PersistSafety { seq, .. } => {
                    self.queue.push_front((i, Input::SafetyPersisted { seq }))
                }
                Effect::SetTimer { round, .. } => self.timers[i] = Some(round),
                Effect::RequestPayload { round, .. } => self.queue.push_back((
                    i,
                    Input::Payload {
                        round,
                        payload: vec![0xab; self.payload_size],
                        next_committee: None,
                        state: Default::default(),
                    },
                )),
                Effect::ValidatePayload { block } => self.queue.push_back((
                    i,
                    Input::PayloadVerdict {
                        block_id: block.id(),
                        valid: true,
                    },
                )),
                Effect::Commit { .. } => self.committed[i] += 1,
                Effect::PersistBlock { .. }
                | Effect::EpochChange { .. }
                | Effect::StateSync { .. } => {}
                Effect::Halt { reason } => panic!("replica {i} halted: {reason}"),
            }
        }
    }

    fn send(&mut self, from: usize, to: PublicKey, message: Message) {
        let sender = self.replicas[from].public_key();
        if let Some(j) = self.replicas.iter().position(|r| r.public_key() == to) {
            self.queue.push_back((
                j,
                Input::Message {
                    from: sender,
                    message,
                },
            ));
        }
    }
}
