//! Invariant checks run over every simulated execution.
//!
//! Written independently of the production code on purpose: quorum arithmetic, signer bitmaps
//! and the signed byte strings are re-derived here from the protocol description rather than
//! through the replica's predicates, so a bug there cannot hide itself.

use crate::types::{Block, BlockId, Epoch, Height, PublicKey, Round};
use crate::{Message, QuorumCert, VoteData};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default, Clone)]
struct NodeLog {
    height: Height,
    last: Option<BlockId>,
}

pub struct Checker {
    chain_id: String,
    genesis: BlockId,
    committees: BTreeMap<Epoch, Vec<PublicKey>>,
    honest: BTreeSet<PublicKey>,
    nodes: Vec<NodeLog>,
    canonical: BTreeMap<Height, BlockId>,
    votes: BTreeMap<(PublicKey, Epoch, Round), BlockId>,
    good_certs: BTreeSet<[u8; 32]>,
    pub violations: Vec<String>,
    pub deliveries: u64,
}

fn put_len_prefixed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}

/// The protocol's vote bytes, built from the specification.
fn vote_message(chain_id: &str, v: &VoteData) -> Vec<u8> {
    let mut d = Sha256::new();
    put_len_prefixed(&mut d, b"trellis/vote-data/v1");
    for x in [v.epoch, v.round, v.height] {
        d.update(x.to_be_bytes());
    }
    d.update(v.block_id.0);
    d.update(v.parent_id.0);
    d.update(v.parent_round.to_be_bytes());
    d.update([v.ends_epoch as u8]);
    let vote_digest: [u8; 32] = d.finalize().into();

    let mut m = Vec::new();
    m.extend_from_slice(&(b"trellis/consensus/signing/v1".len() as u32).to_be_bytes());
    m.extend_from_slice(b"trellis/consensus/signing/v1");
    m.push(2); // kind: vote
    m.extend_from_slice(&(chain_id.len() as u32).to_be_bytes());
    m.extend_from_slice(chain_id.as_bytes());
    m.extend_from_slice(&v.epoch.to_be_bytes());
    m.extend_from_slice(&v.round.to_be_bytes());
    m.extend_from_slice(&v.block_id.0);
    m.extend_from_slice(&vote_digest);
    m
}

impl Checker {
    pub fn new(
        chain_id: &str,
        genesis: BlockId,
        nodes: usize,
        honest: BTreeSet<PublicKey>,
    ) -> Checker {
        Checker {
            chain_id: chain_id.to_string(),
            genesis,
            committees: BTreeMap::new(),
            honest,
            nodes: vec![
                NodeLog {
                    height: 0,
                    last: None,
                };
                nodes
            ],
            canonical: BTreeMap::new(),
            votes: BTreeMap::new(),
            good_certs: BTreeSet::new(),
            violations: Vec::new(),
            deliveries: 0,
        }
    }

    /// The committee the scenario scheduled for `epoch` (from the schedule, not from blocks).
    pub fn set_committee(&mut self, epoch: Epoch, members: Vec<PublicKey>) {
        self.committees.insert(epoch, members);
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }

    /// Every certificate: at least `2f + 1` distinct signers of its own epoch's committee, each
    /// signature valid for exactly the certified vote data.
    pub fn check_certificate(&mut self, context: &str, qc: &QuorumCert) {
        if qc.vote_data.round == 0 {
            return; // an epoch root: carries no signatures by construction
        }
        let mut key = Sha256::new();
        key.update(vote_message(&self.chain_id, &qc.vote_data));
        key.update(&qc.signers.0);
        for s in &qc.signatures {
            key.update(s.0);
        }
        let key: [u8; 32] = key.finalize().into();
        if self.good_certs.contains(&key) {
            return;
        }
        let epoch = qc.vote_data.epoch;
        let Some(committee) = self.committees.get(&epoch).cloned() else {
            self.violation(format!(
                "{context}: certificate of unscheduled epoch {epoch}"
            ));
            return;
        };
        let n = committee.len();
        let f = (n - 1) / 3;
        let needed = 2 * f + 1;
        let mut signers = Vec::new();
        for (byte_index, byte) in qc.signers.0.iter().enumerate() {
            for bit in 0..8 {
                if byte >> bit & 1 == 1 {
                    signers.push(byte_index * 8 + bit);
                }
            }
        }
        if signers.iter().any(|i| *i >= n) || signers.len() != qc.signatures.len() {
            self.violation(format!(
                "{context}: malformed certificate for epoch {epoch}"
            ));
            return;
        }
        if signers.len() < needed {
            self.violation(format!(
                "{context}: certificate with {} signers, {needed} needed",
                signers.len()
            ));
            return;
        }
        let msg = vote_message(&self.chain_id, &qc.vote_data);
        for (i, sig) in signers.iter().zip(&qc.signatures) {
            let ok = ed25519_zebra::VerificationKey::try_from(committee[*i].0)
                .map(|vk| {
                    vk.verify(&ed25519_zebra::Signature::from_bytes(&sig.0), &msg)
                        .is_ok()
                })
                .unwrap_or(false);
            if !ok {
                self.violation(format!("{context}: bad signature in certificate"));
                return;
            }
            let signer = committee[*i];
            self.record_vote(signer, &qc.vote_data);
        }
        self.good_certs.insert(key);
    }

    fn record_vote(&mut self, signer: PublicKey, v: &VoteData) {
        if !self.honest.contains(&signer) {
            return;
        }
        let slot = (signer, v.epoch, v.round);
        match self.votes.get(&slot) {
            Some(prev) if *prev != v.block_id => {
                let msg = format!(
                    "honest double vote by {signer:?} in epoch {} round {}",
                    v.epoch, v.round
                );
                self.violation(msg);
            }
            Some(_) => {}
            None => {
                self.votes.insert(slot, v.block_id);
            }
        }
    }

    /// A message an honest node put on the network.
    pub fn on_sent(&mut self, from: PublicKey, message: &Message) {
        match message {
            Message::Vote(v) => self.record_vote(from, &v.vote_data),
            Message::Proposal(p) => self.check_certificate("proposal", &p.block.qc),
            Message::Timeout(t) => self.check_certificate("timeout", &t.high_qc),
            _ => {}
        }
    }

    /// A block an honest node delivered as committed.
    pub fn on_commit(&mut self, node: usize, block: &Block, cert: &QuorumCert) {
        self.deliveries += 1;
        let log = self.nodes[node].clone();
        let expected_parent = log.last.unwrap_or(self.genesis);
        if block.height() != log.height + 1 {
            self.violation(format!(
                "node {node} delivered height {} after {} (gap, repeat or rollback)",
                block.height(),
                log.height
            ));
            return;
        }
        if block.parent_id() != expected_parent {
            self.violation(format!(
                "node {node}: committed chain is not linked at height {}",
                block.height()
            ));
        }
        match self.canonical.get(&block.height()) {
            Some(id) if *id != block.id() => {
                let msg = format!(
                    "agreement: two blocks committed at height {} ({:?} vs {:?})",
                    block.height(),
                    id,
                    block.id()
                );
                self.violation(msg);
            }
            Some(_) => {}
            None => {
                self.canonical.insert(block.height(), block.id());
            }
        }
        self.check_certificate("commit certificate", cert);
        self.check_certificate("block certificate", &block.qc);
        if cert.vote_data.parent_round + 1 != cert.vote_data.round {
            self.violation(format!(
                "commit certificate at height {} is not a 2-chain",
                block.height()
            ));
        }
        self.nodes[node] = NodeLog {
            height: block.height(),
            last: Some(block.id()),
        };
    }

    /// After a restart the node must resume at or above what it had committed.
    pub fn on_restart(&mut self, node: usize, resumed_height: Height) {
        if resumed_height < self.nodes[node].height {
            self.violation(format!(
                "node {node} rolled back from {} to {resumed_height} across restart",
                self.nodes[node].height
            ));
        }
    }

    pub fn highest_committed(&self) -> Height {
        self.canonical.keys().next_back().copied().unwrap_or(0)
    }

    pub fn node_height(&self, node: usize) -> Height {
        self.nodes[node].height
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (height, id) in &self.canonical {
            h.update(height.to_be_bytes());
            h.update(id.0);
        }
        for n in &self.nodes {
            h.update(n.height.to_be_bytes());
        }
        h.update((self.violations.len() as u64).to_be_bytes());
        h.finalize().into()
    }
}
