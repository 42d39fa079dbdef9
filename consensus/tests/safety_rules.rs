//! The safety rules, one test per rule, run as a suite against every backend of the
//! `SafetyRules` interface (today: in-process keys).

use trellis_consensus::sim::testkit::{CHAIN, Keys};
use trellis_consensus::{
    Block, LocalSafetyRules, QuorumCert, SafetyData, SafetyError, SafetyRules,
};

/// A backend under test: built from persisted data for validator 0 of `Keys::new(4)`.
trait Backend: SafetyRules + Sized {
    fn open(keys: &Keys, data: SafetyData) -> Self;
}

impl Backend for LocalSafetyRules {
    fn open(keys: &Keys, data: SafetyData) -> Self {
        LocalSafetyRules::new(keys.signers[0].clone(), data)
    }
}

/// A certified chain: blocks of rounds 1..=n on genesis, each certified by validators 0..3.
fn chain(keys: &Keys, n: u64) -> (Vec<Block>, Vec<QuorumCert>) {
    let mut qcs = vec![keys.genesis.root_qc()];
    let mut blocks = Vec::new();
    for r in 1..=n {
        let b = keys.block(
            qcs.last().unwrap_or(&keys.genesis.root_qc()),
            r,
            (r % 4) as usize,
            b"p",
        );
        qcs.push(keys.qc(&b, &[0, 1, 2]));
        blocks.push(b);
    }
    (blocks, qcs)
}

fn one_vote_per_round<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(0));
    let (_, qcs) = chain(&keys, 2);
    let a = keys.block(&qcs[2], 3, 3, b"a");
    let b = keys.block(&qcs[2], 3, 3, b"b");
    let va = s.vote(CHAIN, 0, &a, None).expect("first vote in round 3");
    assert!(matches!(
        s.vote(CHAIN, 0, &b, None),
        Err(SafetyError::OldRound { .. })
    ));
    // Re-asked for the same block: the stored vote, byte for byte.
    assert_eq!(s.vote(CHAIN, 0, &a, None), Ok(va));
    // Earlier rounds are refused too.
    let old = keys.block(&qcs[1], 2, 2, b"old");
    assert!(s.vote(CHAIN, 0, &old, None).is_err());
}

fn must_extend_previous_round_or_tc<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(0));
    let (_, qcs) = chain(&keys, 3);
    // Round 5 on a certificate of round 3 without a timeout certificate: refused.
    let skip = keys.block(&qcs[3], 5, 1, b"x");
    assert_eq!(
        s.vote(CHAIN, 0, &skip, None),
        Err(SafetyError::NotExtending)
    );
    // With a TC of round 4 whose highest reported certificate is round 3: accepted.
    let tc = keys.tc(0, 4, &[(0, 3), (1, 2), (2, 3)]);
    assert!(s.vote(CHAIN, 0, &skip, Some(&tc)).is_ok());
    // A TC reporting a higher certificate than the block extends: refused.
    let mut s = B::open(&keys, SafetyData::new(0));
    let low = keys.block(&qcs[2], 5, 1, b"y");
    assert_eq!(
        s.vote(CHAIN, 0, &low, Some(&tc)),
        Err(SafetyError::NotExtending)
    );
    // A TC of another round does not justify the block.
    let tc3 = keys.tc(0, 3, &[(0, 2), (1, 2), (2, 2)]);
    assert_eq!(
        s.vote(CHAIN, 0, &skip, Some(&tc3)),
        Err(SafetyError::NotExtending)
    );
}

fn never_below_the_lock<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(0));
    let (blocks, qcs) = chain(&keys, 4);
    // Voting on round 4 (certificate of round 3) locks round 3.
    s.vote(CHAIN, 0, &blocks[3], None).expect("vote round 4");
    assert_eq!(s.data().locked_round, 3);
    // A TC-justified block of round 6 on the certificate of round 2 is below the lock, even
    // though the TC's reports are no higher.
    let tc = keys.tc(0, 5, &[(1, 2), (2, 2), (3, 2)]);
    let fork = keys.block(&qcs[2], 6, 2, b"fork");
    assert!(matches!(
        s.vote(CHAIN, 0, &fork, Some(&tc)),
        Err(SafetyError::BelowLock {
            qc_round: 2,
            locked: 3
        })
    ));
}

fn timeouts<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(0));
    let (blocks, qcs) = chain(&keys, 4);
    s.vote(CHAIN, 0, &blocks[3], None).expect("vote round 4");
    // Round 4 is justified by the certificate of round 3; a timeout there is allowed even after
    // the vote, and re-asking returns the stored timeout.
    let t = s
        .sign_timeout(CHAIN, 0, 4, &qcs[3], None)
        .expect("timeout round 4");
    assert_eq!(s.sign_timeout(CHAIN, 0, 4, &qcs[3], None), Ok(t.clone()));
    // No vote in a round this replica timed out of.
    let late = keys.block(&qcs[3], 4, 0, b"late");
    assert!(s.vote(CHAIN, 0, &late, None).is_err());
    // Earlier rounds, unjustified rounds and certificates below the lock are refused.
    assert!(s.sign_timeout(CHAIN, 0, 3, &qcs[2], None).is_err());
    assert_eq!(
        s.sign_timeout(CHAIN, 0, 7, &qcs[4], None),
        Err(SafetyError::UnjustifiedTimeout { round: 7 })
    );
    let mut s = B::open(&keys, SafetyData::new(0));
    s.vote(CHAIN, 0, &blocks[3], None).expect("vote round 4");
    assert!(matches!(
        s.sign_timeout(
            CHAIN,
            0,
            5,
            &qcs[2],
            Some(&keys.tc(0, 4, &[(1, 2), (2, 2), (3, 2)]))
        ),
        Err(SafetyError::BelowLock { .. })
    ));
    // With a higher certificate the same round is signed again, reporting it.
    let mut s = B::open(&keys, SafetyData::new(0));
    let tc = keys.tc(0, 4, &[(1, 2), (2, 2), (3, 2)]);
    let first = s
        .sign_timeout(CHAIN, 0, 5, &qcs[2], Some(&tc))
        .expect("timeout");
    let again = s
        .sign_timeout(CHAIN, 0, 5, &qcs[4], None)
        .expect("re-signed");
    assert_eq!((first.high_qc_round, again.high_qc_round), (2, 4));
}

fn one_proposal_per_round<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(0));
    let (_, qcs) = chain(&keys, 1);
    let a = keys.block(&qcs[1], 2, 0, b"a");
    let b = keys.block(&qcs[1], 2, 0, b"b");
    assert!(s.sign_proposal(CHAIN, &a.header).is_ok());
    assert_eq!(
        s.sign_proposal(CHAIN, &b.header),
        Err(SafetyError::AlreadyProposed(2))
    );
}

fn epochs<B: Backend>() {
    let keys = Keys::new(4);
    let mut s = B::open(&keys, SafetyData::new(1));
    let (blocks, _) = chain(&keys, 1);
    // A block of epoch 0 while the rules are in epoch 1.
    assert!(matches!(
        s.vote(CHAIN, 0, &blocks[0], None),
        Err(SafetyError::WrongEpoch { got: 0, want: 1 })
    ));
    assert!(s.start_epoch(0).is_err());
    s.start_epoch(2).expect("forward");
    assert_eq!(s.data(), &SafetyData::new(2));
}

fn restart_from_persisted_state<B: Backend>() {
    let keys = Keys::new(4);
    let (_, qcs) = chain(&keys, 2);
    let a = keys.block(&qcs[2], 3, 3, b"a");
    let b = keys.block(&qcs[2], 3, 3, b"b");
    let mut s = B::open(&keys, SafetyData::new(0));
    let va = s.vote(CHAIN, 0, &a, None).expect("vote");
    let persisted = s.data().clone();
    drop(s);
    // Every crash-restart from what was persisted: the same vote again, never another.
    for _ in 0..3 {
        let mut s = B::open(&keys, persisted.clone());
        assert!(s.vote(CHAIN, 0, &b, None).is_err());
        assert_eq!(s.vote(CHAIN, 0, &a, None), Ok(va.clone()));
    }
}

macro_rules! suite {
    ($backend:ty, $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                super::$name::<$backend>();
            }
        )*
    };
}

mod local {
    suite!(
        trellis_consensus::LocalSafetyRules,
        one_vote_per_round,
        must_extend_previous_round_or_tc,
        never_below_the_lock,
        timeouts,
        one_proposal_per_round,
        epochs,
        restart_from_persisted_state
    );
}
