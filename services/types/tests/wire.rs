//! The wire format: round trips of real values, errors that name the bad field, a pinned
//! encoding, and decoding that never panics and only accepts canonical bytes.

mod common;

use common::*;
use prost::Message as _;
use trellis_consensus::types::payload_digest;
use trellis_consensus::{
    Block, BlockHeader, Digest, EpochState, Message, Proposal, QuorumCert, SafetyData,
    StateCommitment, SyncChunk, TimeoutMsg, Vote,
};
use trellis_types::wire::{self, NetMessage, WireError};
use trellis_types::{BeaconAction, Tag, Transaction, pb};

fn vote(w: &World) -> Vote {
    let block = &w.epoch1[1];
    let vote_data = block.vote_data();
    Vote {
        vote_data,
        author: 2,
        signature: w.new[2].sign(&Vote::signing_bytes(CHAIN, &vote_data)),
    }
}

fn proposal(w: &World) -> Proposal {
    let block = w.epoch0[1].clone();
    Proposal {
        signature: proposal_signature(&block, &w.old[2]),
        tc: Some(timeout_cert(0, 1, &w.old, &[0, 2, 3])),
        block,
    }
}

fn safety(w: &World) -> SafetyData {
    SafetyData {
        epoch: 1,
        last_voted_round: 7,
        locked_round: 5,
        last_proposed_round: 6,
        last_vote: Some(vote(w)),
        last_timeout: Some(timeout_vote(1, 7, 5, &w.new[1])),
        high_qc: Some(w.epoch1_qcs[3].clone()),
        high_tc: Some(timeout_cert(1, 6, &w.new, &[1, 2, 3])),
    }
}

fn chunk(w: &World) -> SyncChunk {
    SyncChunk {
        blocks: w.epoch0.iter().chain(&w.epoch1).cloned().collect(),
        epoch_changes: vec![w.epoch_change.clone()],
        commit_qc: Some(w.epoch1_qcs[4].clone()),
    }
}

fn messages(w: &World) -> Vec<NetMessage> {
    let tx = Transaction::sign(
        CHAIN,
        &w.old[0],
        3,
        BeaconAction::Anchor {
            digest: Digest([9; 32]),
            tag: Tag::parse("invoice").expect("tag"),
        },
    );
    let consensus = vec![
        Message::Proposal(Box::new(proposal(w))),
        Message::Proposal(Box::new(Proposal {
            tc: None,
            ..proposal(w)
        })),
        Message::Vote(vote(w)),
        Message::Timeout(Box::new(TimeoutMsg {
            vote: timeout_vote(1, 5, 3, &w.new[0]),
            high_qc: w.epoch1_qcs[3].clone(),
            last_tc: Some(timeout_cert(1, 4, &w.new, &[0, 1, 2, 3])),
        })),
        Message::Timeout(Box::new(TimeoutMsg {
            vote: timeout_vote(0, 1, 0, &w.old[0]),
            high_qc: w.genesis.root_qc(),
            last_tc: None,
        })),
        Message::BlockRequest {
            epoch: 1,
            block_id: w.epoch1[2].id(),
            count: u32::MAX,
        },
        Message::BlockResponse {
            epoch: 1,
            blocks: w.epoch1.iter().rev().cloned().collect(),
        },
        Message::BlockResponse {
            epoch: 0,
            blocks: vec![],
        },
    ];
    let mut all: Vec<NetMessage> = consensus.into_iter().map(NetMessage::Consensus).collect();
    all.extend([
        NetMessage::Txs(vec![]),
        NetMessage::Txs(vec![tx.encoded().to_vec(), vec![], vec![0xff; 3]]),
        NetMessage::SyncRequest {
            epoch: u64::MAX,
            from_height: 0,
            max_blocks: u32::MAX,
        },
        NetMessage::SyncRequest {
            epoch: 0,
            from_height: 17,
            max_blocks: 0,
        },
        NetMessage::SyncResponse(chunk(w)),
        NetMessage::SyncResponse(SyncChunk::default()),
    ]);
    all
}

#[test]
fn every_message_round_trips() {
    let w = World::new();
    for m in messages(&w) {
        let bytes = wire::encode(&m);
        assert_eq!(wire::decode(&bytes), Ok(m.clone()), "{m:?}");
    }
}

#[test]
fn stored_forms_round_trip() {
    let w = World::new();
    for b in w.epoch0.iter().chain(&w.epoch1) {
        assert_eq!(wire::decode_block(&wire::encode_block(b)).as_ref(), Ok(b));
        let h = &b.header;
        assert_eq!(wire::decode_header(&wire::encode_header(h)).as_ref(), Ok(h));
    }
    for qc in w.epoch0_qcs.iter().chain(&w.epoch1_qcs) {
        assert_eq!(wire::decode_qc(&wire::encode_qc(qc)).as_ref(), Ok(qc));
    }
    let ec = &w.epoch_change;
    assert_eq!(
        wire::decode_epoch_change(&wire::encode_epoch_change(ec)).as_ref(),
        Ok(ec)
    );
    for s in [safety(&w), SafetyData::new(3), SafetyData::default()] {
        assert_eq!(wire::decode_safety(&wire::encode_safety(&s)), Ok(s));
    }
    for (digest, _) in &w.anchored {
        let proof = w.smt.prove(&trellis_types::anchor_state_key(digest));
        let back = wire::decode_state_proof(&wire::encode_state_proof(&proof));
        assert_eq!(back, Ok(proof));
    }
}

/// A fixed block (next committee, signed parent certificate, payload) in its stored form.
/// Changing this hash means every stored block and every peer's decoder changes: bump the
/// schema instead.
#[test]
fn block_encoding_is_pinned() {
    let signers: Vec<_> = (1..=4).map(signer).collect();
    let genesis = EpochState::genesis(CHAIN, committee(&signers), 1_000);
    let header = |parent: &QuorumCert, round: u64, payload: &[u8], next| BlockHeader {
        chain_id: "trellis-pinned".into(),
        epoch: 0,
        round,
        height: parent.vote_data.height + 1,
        parent_id: parent.block_id(),
        qc_digest: parent.vote_data.digest(),
        author: 3,
        timestamp_ms: 1_700_000_000_000 + round,
        payload_digest: payload_digest(payload),
        state: StateCommitment {
            height: round - 1,
            root: Digest([0x5a; 32]),
        },
        next_committee: next,
    };
    let root = genesis.root_qc();
    let parent = Block::new(header(&root, 1, b"tx", None), root, b"tx".to_vec());
    let qc = certify(&parent, &signers, &[0, 1, 3]);
    let next = Some(committee(&signers[1..]));
    let block = Block::new(header(&qc, 2, b"txs", next), qc, b"txs".to_vec());
    block.check_well_formed().expect("well formed");
    assert_eq!(
        Digest::of(&wire::encode_block(&block)).to_hex(),
        "6c3131e0b0aa3e73bd12c9d750caeed937c511c6a1e6c62409f88bddfa623d2f"
    );
}

fn proposal_proto(w: &World) -> pb::NetMessage {
    let bytes = wire::encode(&NetMessage::Consensus(Message::Proposal(Box::new(
        proposal(w),
    ))));
    pb::NetMessage::decode(bytes.as_slice()).expect("valid protobuf")
}

fn block_of(m: &mut pb::NetMessage) -> &mut pb::Block {
    use pb::consensus_message::Kind as C;
    use pb::net_message::Kind as N;
    match &mut m.kind {
        Some(N::Consensus(pb::ConsensusMessage {
            kind: Some(C::Proposal(p)),
        })) => p.block.as_mut().expect("block"),
        _ => unreachable!("a proposal"),
    }
}

fn field_error(m: &pb::NetMessage) -> String {
    match wire::decode(&m.encode_to_vec()) {
        Err(WireError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn errors_name_the_bad_field() {
    let w = World::new();
    let prefix = "consensus.proposal.block";

    let mut m = proposal_proto(&w);
    block_of(&mut m)
        .header
        .as_mut()
        .expect("header")
        .parent_id
        .pop();
    assert_eq!(field_error(&m), format!("{prefix}.header.parent_id"));

    let mut m = proposal_proto(&w);
    block_of(&mut m).header.as_mut().expect("header").author = u64::from(u32::MAX) + 1;
    assert_eq!(field_error(&m), format!("{prefix}.header.author"));

    let mut m = proposal_proto(&w);
    let header = block_of(&mut m).header.as_mut().expect("header");
    let members = &mut header.next_committee.as_mut().expect("committee").members;
    members[1] = members[0].clone();
    assert_eq!(
        field_error(&m),
        format!("{prefix}.header.next_committee.members")
    );

    let mut m = proposal_proto(&w);
    block_of(&mut m).qc.as_mut().expect("qc").signatures[2].push(0);
    assert_eq!(field_error(&m), format!("{prefix}.qc.signatures[2]"));

    let mut m = proposal_proto(&w);
    block_of(&mut m).header.as_mut().expect("header").state = None;
    assert_eq!(field_error(&m), format!("{prefix}.header.state"));

    let mut chunk =
        pb::NetMessage::decode(wire::encode(&NetMessage::SyncResponse(chunk(&w))).as_slice())
            .expect("valid protobuf");
    if let Some(pb::net_message::Kind::SyncResponse(c)) = &mut chunk.kind {
        c.epoch_changes[0].suffix[0].qc_digest = vec![1; 33];
    }
    assert_eq!(
        field_error(&chunk),
        "sync_response.epoch_changes[0].suffix[0].qc_digest"
    );

    assert_eq!(field_error(&pb::NetMessage { kind: None }), "kind");
}

#[test]
fn non_canonical_encodings_are_refused() {
    let w = World::new();
    let bytes = wire::encode_block(&w.epoch0[1]);
    // An unknown field appended.
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0x78, 0x01]);
    assert_eq!(wire::decode_block(&extra), Err(WireError::NonCanonical));
    // A zero-valued field written out explicitly (proto3 omits it).
    let mut header = pb::BlockHeader::decode(wire::encode_header(&w.epoch0[1].header).as_slice())
        .expect("valid protobuf");
    header.epoch = 0;
    let mut explicit = header.encode_to_vec();
    explicit.extend_from_slice(&[0x10, 0x00]);
    assert_eq!(wire::decode_header(&explicit), Err(WireError::NonCanonical));
    // A bool that is neither 0 nor 1.
    let qc = wire::encode_qc(&w.epoch0_qcs[2]);
    let mut vd = pb::QuorumCert::decode(qc.as_slice()).expect("valid protobuf");
    vd.vote_data.as_mut().expect("vote data").ends_epoch = true;
    let mut b = vd.encode_to_vec();
    let pos = b
        .windows(2)
        .rposition(|w| w == [0x38, 0x01])
        .expect("ends_epoch");
    b[pos + 1] = 0x02;
    assert_eq!(wire::decode_qc(&b), Err(WireError::NonCanonical));
}

/// xorshift64*: a tiny deterministic generator, no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs every decoder; whatever is accepted must be the canonical encoding of what came out.
fn decode_all(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    let mut check = |ok: Option<Vec<u8>>| {
        if let Some(again) = ok {
            assert_eq!(again, bytes, "accepted a non-canonical encoding");
            accepted += 1;
        }
    };
    check(wire::decode(bytes).ok().map(|m| wire::encode(&m)));
    check(
        wire::decode_block(bytes)
            .ok()
            .map(|v| wire::encode_block(&v)),
    );
    check(
        wire::decode_header(bytes)
            .ok()
            .map(|v| wire::encode_header(&v)),
    );
    check(wire::decode_qc(bytes).ok().map(|v| wire::encode_qc(&v)));
    check(
        wire::decode_epoch_change(bytes)
            .ok()
            .map(|v| wire::encode_epoch_change(&v)),
    );
    check(
        wire::decode_safety(bytes)
            .ok()
            .map(|v| wire::encode_safety(&v)),
    );
    check(
        wire::decode_state_proof(bytes)
            .ok()
            .map(|v| wire::encode_state_proof(&v)),
    );
    accepted
}

const ROUNDS: usize = 30_000;

#[test]
fn decoding_is_total_on_random_and_mutated_bytes() {
    let w = World::new();
    let mut corpus: Vec<Vec<u8>> = messages(&w).iter().map(wire::encode).collect();
    corpus.push(wire::encode_safety(&safety(&w)));
    corpus.push(wire::encode_epoch_change(&w.epoch_change));
    corpus.push(wire::encode_header(&w.epoch0[1].header));
    corpus.push(wire::encode_state_proof(
        &w.smt
            .prove(&trellis_types::anchor_state_key(&w.anchored[0].0)),
    ));
    let seed = 0x5eed_u64;
    let mut rng = Rng(seed);
    let mut accepted = 0;
    for round in 0..ROUNDS {
        let base = &corpus[rng.below(corpus.len())];
        let mut b = base.clone();
        match round % 6 {
            0 => b = (0..rng.below(400)).map(|_| rng.next() as u8).collect(),
            1 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            2 => b.truncate(rng.below(b.len())),
            3 => {
                let i = rng.below(b.len());
                let junk: Vec<u8> = (0..=rng.below(12)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, junk);
            }
            4 => {
                // Length and varint bytes at their extremes.
                let i = rng.below(b.len());
                b[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
            }
            _ => {
                let i = rng.below(b.len());
                let j = rng.below(b.len());
                let (lo, hi) = (i.min(j), i.max(j));
                b.drain(lo..hi);
            }
        }
        accepted += decode_all(&b);
    }
    for b in &corpus {
        assert!(decode_all(b) >= 1, "the corpus itself decodes");
    }
    // Mutations that stay valid (a flipped signature bit, a changed height) are accepted and
    // checked canonical above; most are refused.
    eprintln!("{accepted} of {ROUNDS} mutations accepted");
    assert!(accepted < ROUNDS / 2, "seed {seed:#x}: {accepted} accepted");
}

#[test]
fn frames_name_their_chain() {
    let msg = NetMessage::Txs(vec![vec![1, 2, 3]]);
    let frame = trellis_types::wire::encode_frame("scf", &msg);
    assert_eq!(&frame[..5], &[0, 3, b's', b'c', b'f']);
    let (chain, body) = trellis_types::wire::split_frame(&frame).expect("splits");
    assert_eq!(chain, "scf");
    assert!(matches!(
        trellis_types::wire::decode(body),
        Ok(NetMessage::Txs(t)) if t == vec![vec![1, 2, 3]]
    ));
    // Missing, empty, truncated or non-UTF-8 chain ids are errors, not panics.
    for bad in [
        vec![],
        vec![0],
        vec![0, 0, 1],
        vec![0, 4, b's', b'c'],
        vec![0, 1, 0xff, 1],
    ] {
        assert!(trellis_types::wire::split_frame(&bad).is_err(), "{bad:?}");
    }
}
