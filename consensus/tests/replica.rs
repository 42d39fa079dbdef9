//! The replica driven by hand: commits over an instant network, the persistence gate, peer
//! input that must be dropped (and counted) without effect, epoch change and its proof.

use trellis_consensus::certificate::SignerBitmap;
use trellis_consensus::sim::testkit::{CHAIN, Keys, LocalNet};
use trellis_consensus::{
    Effect, Input, Message, PublicKey, Recovery, Replica, ReplicaConfig, SafetyData, Signature,
};

fn replica(keys: &Keys, i: usize) -> Replica {
    Replica::new(
        ReplicaConfig::default(),
        keys.signers[i].clone(),
        Recovery::genesis(keys.genesis.clone()),
    )
    .expect("genesis recovery")
}

fn msg(from: PublicKey, message: Message) -> Input {
    Input::Message { from, message }
}

fn sent_votes(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Send {
                    message: Message::Vote(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn four_replicas_commit_in_order_on_an_instant_network() {
    let mut net = LocalNet::new(4, 64);
    assert_eq!(net.run(50), 50);
    for (i, r) in net.replicas.iter().enumerate() {
        assert!(
            r.committed_height() >= 49,
            "replica {i} at {}",
            r.committed_height()
        );
        assert_eq!(
            r.stats().dropped.values().sum::<u64>(),
            0,
            "replica {i} dropped input"
        );
    }
}

#[test]
fn a_vote_leaves_only_after_its_safety_data_is_persisted() {
    let keys = Keys::new(4);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    // Leader of round 1 is validator (0 + 1) % 4 = 1; the block has no payload, so no verdict.
    let b1 = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let effects = r.handle(
        2,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(b1, None))),
        ),
    );
    let seq = effects
        .iter()
        .find_map(|e| match e {
            Effect::PersistSafety { seq, data } => {
                assert_eq!(data.last_voted_round, 1);
                Some(*seq)
            }
            _ => None,
        })
        .expect("persist request");
    assert_eq!(sent_votes(&effects), 0, "vote left before persistence");
    let effects = r.handle(3, Input::SafetyPersisted { seq });
    assert_eq!(sent_votes(&effects), 1);
}

#[test]
fn a_restarted_replica_never_votes_for_a_conflicting_block() {
    let keys = Keys::new(4);
    let a = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let mut b = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    b.header.timestamp_ms += 1;
    let b = trellis_consensus::Block::new(b.header.clone(), b.qc.clone(), Vec::new());
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let effects = r.handle(
        2,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(a, None))),
        ),
    );
    let persisted: SafetyData = effects
        .iter()
        .find_map(|e| match e {
            Effect::PersistSafety { data, .. } => Some(data.clone()),
            _ => None,
        })
        .expect("persist request");
    // Crash after persisting; restart and show it the conflicting block of the same round.
    let mut recovery = Recovery::genesis(keys.genesis.clone());
    recovery.safety = persisted;
    let mut r = Replica::new(ReplicaConfig::default(), keys.signers[0].clone(), recovery)
        .expect("consistent recovery");
    r.handle(10, Input::Start);
    let effects = r.handle(
        11,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(b, None))),
        ),
    );
    assert_eq!(sent_votes(&effects), 0);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::PersistSafety { .. }))
    );
    assert_eq!(r.stats().safety_refusals, 1);
}

#[test]
fn bad_peer_input_is_dropped_and_counted() {
    let keys = Keys::new(4);
    let outsider = Keys::with_seed(4, 9);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let root = keys.genesis.root_qc();
    let good = keys.block(&root, 1, 1, b"");

    // Bad signature.
    let mut p = keys.proposal(good.clone(), None);
    p.signature = Signature([7; 64]);
    r.handle(2, msg(keys.key(1), Message::Proposal(Box::new(p))));
    // Wrong leader for round 1 (validator 2 signs its own block).
    let wrong = keys.block(&root, 1, 2, b"");
    r.handle(
        3,
        msg(
            keys.key(2),
            Message::Proposal(Box::new(keys.proposal(wrong, None))),
        ),
    );
    // Tampered payload: the header no longer matches.
    let mut tampered = keys.proposal(good.clone(), None);
    tampered.block.payload = b"tampered".to_vec();
    r.handle(4, msg(keys.key(1), Message::Proposal(Box::new(tampered))));
    // A certificate with a malformed signer bitmap, inside a block of round 2.
    let mut bad_qc = keys.qc(&good, &[0, 1, 2]);
    bad_qc.signers = SignerBitmap(vec![0xff, 0xff]);
    let b2 = keys.block(&bad_qc, 2, 2, b"");
    r.handle(
        5,
        msg(
            keys.key(2),
            Message::Proposal(Box::new(keys.proposal(b2, None))),
        ),
    );
    // A vote signed by a key outside the committee, claiming a member's index.
    let mut v = outsider.vote(&good, 3);
    v.author = 3;
    r.handle(6, msg(outsider.key(3), Message::Vote(v)));
    // A certificate with too few signers.
    let thin = keys.qc(&good, &[1, 2]);
    let b2 = keys.block(&thin, 2, 2, b"");
    r.handle(
        7,
        msg(
            keys.key(2),
            Message::Proposal(Box::new(keys.proposal(b2, None))),
        ),
    );
    // Blocks nobody asked for.
    r.handle(
        8,
        msg(
            keys.key(1),
            Message::BlockResponse {
                epoch: 0,
                blocks: vec![good.clone()],
            },
        ),
    );

    let dropped = &r.stats().dropped;
    for reason in [
        "bad_signature",
        "wrong_leader",
        "malformed",
        "bad_certificate",
        "unrequested_block",
    ] {
        assert!(
            dropped.get(reason).is_some_and(|n| *n >= 1),
            "no drop for {reason}: {dropped:?}"
        );
    }
    assert_eq!(r.safety_data().last_voted_round, 0, "voted on bad input");
    assert_eq!(r.committed_height(), 0);

    // The genuine proposal still gets a vote.
    let effects = r.handle(
        9,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(good, None))),
        ),
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::PersistSafety { .. }))
    );
}

#[test]
fn committing_the_epoch_ending_block_changes_committee_with_a_verifiable_proof() {
    let keys = Keys::new(4);
    let next = Keys::with_seed(4, 3);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let root = keys.genesis.root_qc();
    // Round 1 ends the epoch; rounds 2 and 3 are empty suffix blocks.
    let b1 = keys.block_with(&root, 1, 1, b"end", Some(next.committee.clone()));
    let q1 = keys.qc(&b1, &[0, 1, 2]);
    let b2 = keys.block(&q1, 2, 2, b"");
    let q2 = keys.qc(&b2, &[1, 2, 3]);
    let b3 = keys.block(&q2, 3, 3, b"");
    let mut effects = Vec::new();
    for (author, b) in [(1, b1.clone()), (2, b2), (3, b3)] {
        effects.extend(r.handle(
            2,
            msg(
                keys.key(author),
                Message::Proposal(Box::new(keys.proposal(b, None))),
            ),
        ));
    }
    let commits: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Commit { block, .. } => Some(block.id()),
            _ => None,
        })
        .collect();
    assert_eq!(commits, vec![b1.id()]);
    let (proof, state) = effects
        .iter()
        .find_map(|e| match e {
            Effect::EpochChange { proof, next } => Some((proof.clone(), next.clone())),
            _ => None,
        })
        .expect("epoch change");
    assert_eq!(r.epoch(), 1);
    assert!(!r.is_member());
    assert_eq!(state.committee, next.committee);
    assert_eq!(state.root_id, b1.id());

    // The proof verifies offline against the old committee ...
    let named = proof
        .verify(CHAIN, 0, &keys.committee)
        .expect("valid proof");
    assert_eq!(named, &next.committee);
    // ... and not against another committee, another epoch, or with a flipped byte.
    assert!(proof.verify(CHAIN, 0, &next.committee).is_err());
    assert!(proof.verify(CHAIN, 1, &keys.committee).is_err());
    let mut forged = proof.clone();
    forged.commit_qc.signatures[0].0[5] ^= 1;
    assert!(forged.verify(CHAIN, 0, &keys.committee).is_err());
    let mut forged = proof.clone();
    forged.ending.timestamp_ms += 1;
    assert!(forged.verify(CHAIN, 0, &keys.committee).is_err());

    // Messages of the old epoch are now stale.
    let stale_before = r.stats().dropped.get("stale_epoch").copied().unwrap_or(0);
    let late = keys.block(&root, 1, 1, b"late");
    r.handle(
        3,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(late, None))),
        ),
    );
    assert_eq!(
        r.stats().dropped.get("stale_epoch"),
        Some(&(stale_before + 1))
    );
}

#[test]
fn absurd_numbers_and_floods_from_a_byzantine_member_are_bounded() {
    let keys = Keys::new(4);
    let mut r = replica(&keys, 2); // leader of round 2: receives votes for round 1
    r.handle(1, Input::Start);
    let root = keys.genesis.root_qc();
    // A vote and a timeout with the largest possible round: dropped, no overflow.
    let b = keys.block(&root, u64::MAX, 1, b"");
    r.handle(2, msg(keys.key(1), Message::Vote(keys.vote(&b, 1))));
    let mut huge = keys.block(&root, 1, 1, b"");
    huge.header.height = u64::MAX;
    let huge = trellis_consensus::Block::new(huge.header.clone(), huge.qc.clone(), Vec::new());
    r.handle(
        3,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(huge, None))),
        ),
    );
    assert_eq!(r.stats().dropped.get("out_of_range"), Some(&2));
    // Votes for rounds far ahead (that this replica would lead next) are not kept.
    for round in (0..10).map(|k| 5_001 + 4 * k) {
        let b = keys.block(&root, round, 1, b"");
        r.handle(4, msg(keys.key(1), Message::Vote(keys.vote(&b, 1))));
    }
    assert_eq!(r.stats().dropped.get("too_far_ahead"), Some(&10));
    // A leader signing many blocks for its round gets only a few into the tree.
    for i in 0..20u8 {
        let b = keys.block(&root, 1, 1, &[b't', b'x', i]);
        r.handle(
            5,
            msg(
                keys.key(1),
                Message::Proposal(Box::new(keys.proposal(b, None))),
            ),
        );
    }
    let kept = 20
        - r.stats()
            .dropped
            .get("too_many_proposals")
            .copied()
            .unwrap_or(0);
    assert_eq!(
        kept,
        ReplicaConfig::default().max_proposals_per_round as u64
    );
}

fn persisted_vote_round(effects: &[Effect]) -> Option<u64> {
    effects.iter().find_map(|e| match e {
        Effect::PersistSafety { data, .. } => Some(data.last_voted_round),
        _ => None,
    })
}

#[test]
fn fetched_blocks_with_forged_certificates_are_refused() {
    let keys = Keys::new(4);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let b1 = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let q1 = keys.qc(&b1, &[1, 2, 3]);
    let b2 = keys.block(&q1, 2, 2, b"");
    let q2 = keys.qc(&b2, &[1, 2, 3]);
    let b3 = keys.block(&q2, 3, 3, b"");
    // Only the proposal of round 3 arrives: the replica asks its sender for the ancestors.
    let effects = r.handle(
        2,
        msg(
            keys.key(3),
            Message::Proposal(Box::new(keys.proposal(b3, None))),
        ),
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Send {
            message: Message::BlockRequest { .. },
            ..
        }
    )));
    // The answer keeps b2's header (so its id still matches) but forges its certificate.
    let mut forged = b2.clone();
    forged.qc.signatures[0].0[0] ^= 1;
    let effects = r.handle(
        3,
        msg(
            keys.key(3),
            Message::BlockResponse {
                epoch: 0,
                blocks: vec![forged, b1.clone()],
            },
        ),
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Commit { .. })));
    assert_eq!(r.stats().dropped.get("bad_certificate"), Some(&1));
    // At the round timeout the replica asks again; the genuine blocks are accepted and b1
    // commits with a certificate that verifies.
    let effects = r.handle(4, Input::Timer { round: r.round() });
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Send {
            message: Message::BlockRequest { .. },
            ..
        }
    )));
    let effects = r.handle(
        6,
        msg(
            keys.key(3),
            Message::BlockResponse {
                epoch: 0,
                blocks: vec![b2, b1.clone()],
            },
        ),
    );
    let cert = effects
        .iter()
        .find_map(|e| match e {
            Effect::Commit { block, cert } if block.id() == b1.id() => Some(cert.clone()),
            _ => None,
        })
        .expect("b1 committed");
    assert!(cert.verify(CHAIN, &keys.committee).is_ok());
}

#[test]
fn proposals_signed_for_future_rounds_do_not_enter_the_tree() {
    let keys = Keys::new(4);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    // Validator 1 leads rounds 5, 9, 13, ...; without a certificate of the previous round no
    // replica is in those rounds.
    for k in 0..50 {
        let b = keys.block(&keys.genesis.root_qc(), 5 + 4 * k, 1, b"");
        let effects = r.handle(
            2,
            msg(
                keys.key(1),
                Message::Proposal(Box::new(keys.proposal(b, None))),
            ),
        );
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::PersistBlock { .. }))
        );
    }
    assert_eq!(r.stats().dropped.get("future_round"), Some(&50));
}

#[test]
fn copies_of_a_proposal_waiting_for_its_parent_do_not_cost_the_vote() {
    let keys = Keys::new(4);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let b1 = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let b2 = keys.block(&keys.qc(&b1, &[1, 2, 3]), 2, 2, b"");
    for t in 2..6 {
        r.handle(
            t,
            msg(
                keys.key(2),
                Message::Proposal(Box::new(keys.proposal(b2.clone(), None))),
            ),
        );
    }
    let effects = r.handle(
        7,
        msg(
            keys.key(2),
            Message::BlockResponse {
                epoch: 0,
                blocks: vec![b1],
            },
        ),
    );
    assert_eq!(
        persisted_vote_round(&effects),
        Some(2),
        "no vote for the round-2 proposal"
    );
}

#[test]
fn a_restarted_replica_can_vote_for_a_block_it_restored_from_disk() {
    let keys = Keys::new(4);
    let b1 = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let mut recovery = Recovery::genesis(keys.genesis.clone());
    recovery.blocks = vec![b1.clone()];
    let mut r = Replica::new(ReplicaConfig::default(), keys.signers[0].clone(), recovery)
        .expect("consistent recovery");
    r.handle(1, Input::Start);
    let effects = r.handle(
        2,
        msg(
            keys.key(1),
            Message::Proposal(Box::new(keys.proposal(b1, None))),
        ),
    );
    assert_eq!(persisted_vote_round(&effects), Some(1));
}

#[test]
fn a_peer_claiming_a_later_epoch_gets_only_its_share_of_state_sync_requests() {
    let keys = Keys::new(4);
    let attacker = Keys::with_seed(4, 7);
    let mut r = replica(&keys, 0);
    r.handle(1, Input::Start);
    let b = keys.block(&keys.genesis.root_qc(), 1, 1, b"");
    let mut peers = Vec::new();
    let mut now = 10;
    for _ in 0..40 {
        // The attacker floods claims of a far epoch; an honest peer is really one epoch ahead.
        for _ in 0..20 {
            let mut v = attacker.vote(&b, 0);
            v.vote_data.epoch = 1 << 40;
            r.handle(now, msg(attacker.key(0), Message::Vote(v)));
        }
        let mut v = keys.vote(&b, 1);
        v.vote_data.epoch = 1;
        r.handle(now, msg(keys.key(1), Message::Vote(v)));
        now += 5_000;
        for e in r.handle(now, Input::Timer { round: r.round() }) {
            if let Effect::StateSync { peer, .. } = e {
                peers.push(peer);
            }
        }
    }
    let honest = peers.iter().filter(|p| **p == keys.key(1)).count();
    assert!(
        honest * 3 >= peers.len(),
        "honest peer asked {honest} of {} times",
        peers.len()
    );
}
