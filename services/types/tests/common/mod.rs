//! Shared fixtures: deterministic keys, a small certified chain across one epoch change, and a
//! hand-built Jellyfish Merkle tree whose proofs jmt itself verifies.
//!
//! The tree is built by hand because jmt's `TreeReader` returns `anyhow::Result` and this crate
//! has no `anyhow`: the leaves, internal nodes and placeholder use jmt's hashing, and every proof
//! is checked by jmt's own verifier, so a mistake here fails the tests instead of hiding.

#![allow(dead_code)]

pub mod vectors;

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use trellis_consensus::crypto::{MessageKind, signing_bytes};
use trellis_consensus::types::payload_digest;
use trellis_consensus::{
    Block, BlockHeader, Committee, EpochChangeProof, EpochState, QuorumCert, SignerBitmap,
    StateCommitment, TimeoutCert, TimeoutVote, Vote, VoteData,
};
use trellis_types::genesis::{GENESIS_STATE_KEY, GenesisAccountEntry, GenesisValidator};
use trellis_types::state_proof::key_hash;
use trellis_types::{ChainParams, Genesis};
use trellis_types::{Digest, Signer, StateProof};

pub const CHAIN: &str = "trellis-test";

pub fn signer(seed: u8) -> Signer {
    Signer::from_seed([seed; 32])
}

pub fn committee(signers: &[Signer]) -> Committee {
    Committee::new(signers.iter().map(Signer::public_key).collect()).expect("distinct keys")
}

/// A certificate over `block` signed by the members of `signers` at `indices` (ascending).
pub fn certify(block: &Block, signers: &[Signer], indices: &[u32]) -> QuorumCert {
    sign_vote_data(&block.header.chain_id, block.vote_data(), signers, indices)
}

/// A certificate over `vote_data` of `chain_id` by `signers` at `indices` (ascending).
pub fn sign_vote_data(
    chain_id: &str,
    vote_data: VoteData,
    signers: &[Signer],
    indices: &[u32],
) -> QuorumCert {
    let msg = Vote::signing_bytes(chain_id, &vote_data);
    let mut bitmap = SignerBitmap::new(signers.len());
    let mut signatures = Vec::new();
    for &i in indices {
        bitmap.set(i);
        signatures.push(signers[i as usize].sign(&msg));
    }
    QuorumCert {
        vote_data,
        signers: bitmap,
        signatures,
    }
}

/// The child of the block `parent` certifies, checked well formed.
pub fn child(
    parent: &QuorumCert,
    round: u64,
    state: StateCommitment,
    payload: &[u8],
    next_committee: Option<Committee>,
) -> Block {
    let vd = &parent.vote_data;
    let header = BlockHeader {
        chain_id: CHAIN.into(),
        epoch: vd.epoch,
        round,
        height: vd.height + 1,
        parent_id: vd.block_id,
        qc_digest: vd.digest(),
        author: (round % 4) as u32,
        timestamp_ms: 1_000 + round * 500 + vd.epoch * 100_000,
        payload_digest: payload_digest(payload),
        state,
        next_committee,
    };
    let block = Block::new(header, parent.clone(), payload.to_vec());
    block.check_well_formed().expect("well-formed block");
    block
}

pub fn timeout_cert(epoch: u64, round: u64, signers: &[Signer], indices: &[u32]) -> TimeoutCert {
    let mut bitmap = SignerBitmap::new(signers.len());
    let (mut high_qc_rounds, mut signatures) = (Vec::new(), Vec::new());
    for &i in indices {
        let hqc = round.saturating_sub(1 + u64::from(i));
        bitmap.set(i);
        high_qc_rounds.push(hqc);
        signatures
            .push(signers[i as usize].sign(&TimeoutVote::signing_bytes(CHAIN, epoch, round, hqc)));
    }
    TimeoutCert {
        epoch,
        round,
        signers: bitmap,
        high_qc_rounds,
        signatures,
    }
}

pub fn timeout_vote(epoch: u64, round: u64, high_qc_round: u64, signer: &Signer) -> TimeoutVote {
    TimeoutVote {
        epoch,
        round,
        high_qc_round,
        author: 1,
        signature: signer.sign(&TimeoutVote::signing_bytes(
            CHAIN,
            epoch,
            round,
            high_qc_round,
        )),
    }
}

pub fn proposal_signature(block: &Block, signer: &Signer) -> trellis_types::Signature {
    signer.sign(&signing_bytes(
        CHAIN,
        MessageKind::Proposal,
        block.epoch(),
        block.round(),
        &block.id(),
        &Digest::ZERO,
    ))
}

/// A JMT-compatible sparse Merkle tree over `key hash → value hash` (leaf-compressed binary
/// tree, bits from the most significant).
#[derive(Default)]
pub struct Smt(BTreeMap<[u8; 32], [u8; 32]>);

enum Node {
    Null,
    Internal([u8; 32], [u8; 32]),
    Leaf([u8; 32], [u8; 32]),
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn bit(k: &[u8; 32], depth: usize) -> bool {
    k[depth / 8] & (0x80 >> (depth % 8)) != 0
}

impl Node {
    fn hash(&self) -> [u8; 32] {
        match self {
            Node::Null => *b"SPARSE_MERKLE_PLACEHOLDER_HASH__",
            Node::Internal(l, r) => sha(&[b"JMT::IntrnalNode", l, r]),
            Node::Leaf(k, v) => sha(&[b"JMT::LeafNode", k, v]),
        }
    }
    fn borsh(&self, out: &mut Vec<u8>) {
        let (tag, a, b) = match self {
            Node::Null => return out.push(0),
            Node::Internal(l, r) => (1, l, r),
            Node::Leaf(k, v) => (2, k, v),
        };
        out.push(tag);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }
}

impl Smt {
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.0.insert(key_hash(key).0, sha(&[value]));
    }

    fn subtree(leaves: &[([u8; 32], [u8; 32])], depth: usize) -> Node {
        match leaves {
            [] => Node::Null,
            [(k, v)] => Node::Leaf(*k, *v),
            _ => {
                let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                let (l, r) = leaves.split_at(split);
                Node::Internal(
                    Self::subtree(l, depth + 1).hash(),
                    Self::subtree(r, depth + 1).hash(),
                )
            }
        }
    }

    fn leaves(&self) -> Vec<([u8; 32], [u8; 32])> {
        self.0.iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn root(&self) -> Digest {
        Digest(Self::subtree(&self.leaves(), 0).hash())
    }

    /// Inclusion proof of `key` (which must be in the tree), as jmt's borsh bytes.
    pub fn prove(&self, key: &[u8]) -> StateProof {
        let k = key_hash(key).0;
        let v = self.0[&k];
        let mut set = self.leaves();
        let mut siblings = Vec::new();
        let mut depth = 0;
        while set.len() > 1 {
            let split = set.partition_point(|(kk, _)| !bit(kk, depth));
            let (l, r) = set.split_at(split);
            let (mine, other) = if bit(&k, depth) { (r, l) } else { (l, r) };
            siblings.push(Self::subtree(other, depth + 1));
            set = mine.to_vec();
            depth += 1;
        }
        let mut bytes = vec![1];
        bytes.extend_from_slice(&k);
        bytes.extend_from_slice(&v);
        bytes.extend_from_slice(&(siblings.len() as u32).to_le_bytes());
        for s in siblings.iter().rev() {
            s.borsh(&mut bytes);
        }
        StateProof(borsh::from_slice(&bytes).expect("jmt proof layout"))
    }
}

/// The genesis file of [`World`]: validators 1..=4, three member accounts.
pub fn genesis_file(old: &[Signer]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_000,
        validators: old
            .iter()
            .enumerate()
            .map(|(i, s)| GenesisValidator {
                name: format!("validator-{}", i + 1),
                consensus_key: hex::encode(s.public_key().0),
                org: None,
            })
            .collect(),
        accounts: (1..=3u8)
            .map(|a| GenesisAccountEntry {
                name: format!("member-{a}"),
                org: format!("org-{a}"),
                role: "member".into(),
                public_key: hex::encode(signer(0x40 + a).public_key().0),
            })
            .collect(),
        shards: Vec::new(),
        params: ChainParams::default(),
    }
}

/// A two-epoch chain: epoch 0 (validators 1..=4) ends at block `ending`, handing over to epoch 1
/// (validators 3..=6), whose first blocks commit to a state holding a few anchors.
pub struct World {
    /// The genesis file, and the epoch it starts (whose root commits to the genesis state).
    pub genesis_file: Genesis,
    pub genesis: EpochState,
    pub old: Vec<Signer>,
    pub new: Vec<Signer>,
    pub epoch0: Vec<Block>,
    pub epoch0_qcs: Vec<QuorumCert>,
    pub epoch_change: EpochChangeProof,
    pub epoch1: Vec<Block>,
    pub epoch1_qcs: Vec<QuorumCert>,
    pub smt: Smt,
    pub anchored: Vec<(Digest, trellis_types::pb::AnchorRecord)>,
}

impl World {
    pub fn new() -> World {
        use prost::Message as _;
        let old: Vec<Signer> = (1..=4).map(signer).collect();
        let new: Vec<Signer> = (3..=6).map(signer).collect();
        let genesis_file = genesis_file(&old);
        genesis_file.validate().expect("a valid genesis");
        let mut smt = Smt::default();
        for a in 1..=3u8 {
            let key = signer(0x40 + a).public_key();
            smt.insert(&[b"acct/".as_slice(), &key.0].concat(), b"account");
        }
        let genesis_digest = genesis_file.digest().expect("a valid genesis");
        smt.insert(GENESIS_STATE_KEY, &genesis_digest.0);
        let genesis_state = StateCommitment {
            height: 0,
            root: smt.root(),
        };
        let genesis = genesis_file
            .epoch_state(genesis_state)
            .expect("a valid genesis");
        let mut anchored = Vec::new();
        for i in 0..5u8 {
            let digest = Digest([0xd0 + i; 32]);
            let record = trellis_types::pb::AnchorRecord {
                sender: vec![i; 32],
                tag: format!("invoice-2026-{i:04}"),
                tx_hash: vec![0x70 + i; 32],
            };
            smt.insert(
                &trellis_types::anchor_state_key(&digest),
                &record.encode_to_vec(),
            );
            anchored.push((digest, record));
        }
        let state = StateCommitment {
            height: 1,
            root: smt.root(),
        };
        let quorum = [0, 1, 3];
        // Epoch 0: b1, b2 (ends the epoch), b3 (suffix), b4 (its certificate commits b3).
        let mut epoch0 = Vec::new();
        let mut epoch0_qcs = vec![genesis.root_qc()];
        for round in 1..=4 {
            let next = (round == 2).then(|| committee(&new));
            let s = if round == 1 { genesis_state } else { state };
            // Blocks after the ending one carry no payload.
            let payload: &[u8] = if round <= 2 { b"payload" } else { b"" };
            let b = child(&epoch0_qcs[epoch0_qcs.len() - 1], round, s, payload, next);
            epoch0_qcs.push(certify(&b, &old, &quorum));
            epoch0.push(b);
        }
        let epoch_change = EpochChangeProof {
            ending: epoch0[1].header.clone(),
            suffix: vec![epoch0[2].header.clone()],
            commit_qc: epoch0_qcs[4].clone(),
        };
        let next = genesis.next(&epoch0[1].header).expect("ending block");
        let mut epoch1 = Vec::new();
        let mut epoch1_qcs = vec![next.root_qc()];
        for round in 1..=4 {
            let b = child(&epoch1_qcs[epoch1_qcs.len() - 1], round, state, b"", None);
            epoch1_qcs.push(certify(&b, &new, &[0, 2, 3]));
            epoch1.push(b);
        }
        World {
            genesis_file,
            genesis,
            old,
            new,
            epoch0,
            epoch0_qcs,
            epoch_change,
            epoch1,
            epoch1_qcs,
            smt,
            anchored,
        }
    }

    /// Proof bundle for anchor `i`: headers epoch1[0..=2], committed by the certificate of
    /// epoch1[3].
    pub fn bundle(&self, i: usize) -> trellis_types::AnchorBundle {
        let (digest, record) = self.anchored[i].clone();
        let headers: Vec<BlockHeader> = self.epoch1[..3].iter().map(|b| b.header.clone()).collect();
        trellis_types::AnchorBundle {
            chain_id: CHAIN.into(),
            digest,
            state_proof: self.smt.prove(&trellis_types::anchor_state_key(&digest)),
            genesis_digest: self.genesis_file.digest().expect("a valid genesis"),
            genesis_proof: self.smt.prove(GENESIS_STATE_KEY),
            record,
            state: headers[0].state,
            headers,
            commit_qc: self.epoch1_qcs[4].clone(),
            epoch_changes: vec![self.epoch_change.clone()],
        }
    }
}

impl World {
    /// Headers built by hand, each `(epoch, round, height)` the parent of the next, from epoch 1's
    /// root, all committing to the anchors' state; and a certificate by epoch 1's committee that
    /// commits the last under the 2-chain rule. This is what a quorum could sign whether or not
    /// the heights and rounds follow the rules, so a verifier must check them itself.
    pub fn hand_chain(&self, spec: &[(u64, u64, u64)]) -> (Vec<BlockHeader>, QuorumCert) {
        let state = self.epoch1[0].header.state;
        let mut parent = self.epoch1[0].header.parent_id;
        let mut headers = Vec::new();
        for &(epoch, round, height) in spec {
            let header = BlockHeader {
                chain_id: CHAIN.into(),
                epoch,
                round,
                height,
                parent_id: parent,
                qc_digest: Digest::of(&parent.0),
                author: (round % 4) as u32,
                timestamp_ms: 200_000 + round * 500,
                payload_digest: payload_digest(b""),
                state,
                next_committee: None,
            };
            parent = header.id();
            headers.push(header);
        }
        let last = headers.last().expect("a non-empty spec");
        let vote_data = VoteData {
            epoch: last.epoch,
            round: last.round + 1,
            height: last.height + 1,
            block_id: Digest::of(b"the certified child"),
            parent_id: last.id(),
            parent_round: last.round,
            ends_epoch: false,
        };
        (headers, self.sign(vote_data, &self.new, &[0, 2, 3]))
    }

    /// The bytes every signature of `bundle`'s commit certificate signs.
    pub fn commit_message(&self, bundle: &trellis_types::AnchorBundle) -> Vec<u8> {
        Vote::signing_bytes(CHAIN, &bundle.commit_qc.vote_data)
    }

    /// A certificate over `vote_data` by `signers` at `indices` (ascending).
    pub fn sign(&self, vote_data: VoteData, signers: &[Signer], indices: &[u32]) -> QuorumCert {
        sign_vote_data(CHAIN, vote_data, signers, indices)
    }

    /// Bundle `i` with its headers and certificate replaced by [`World::hand_chain`]'s.
    pub fn hand_bundle(&self, i: usize, spec: &[(u64, u64, u64)]) -> trellis_types::AnchorBundle {
        let (headers, commit_qc) = self.hand_chain(spec);
        trellis_types::AnchorBundle {
            headers,
            commit_qc,
            ..self.bundle(i)
        }
    }
}
