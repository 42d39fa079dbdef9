//! The beacon application: genesis, anchors, receipts for every rejection, determinism.

use trellis_ledger::beacon::{
    Applied, BeaconGenesis, GenesisAccount, GenesisError, Rejection, execute_block, read_account,
    read_anchor,
};
use trellis_ledger::state::MemoryState;
use trellis_types::pb::Role;
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{BeaconAction, Digest, Signer, Tag, Transaction};

const CHAIN: &str = "trellis-beacon-test";

fn signer(i: u8) -> Signer {
    Signer::from_seed([i; 32])
}

fn genesis() -> BeaconGenesis {
    let account = |i: u8, org: &str, role| GenesisAccount {
        key: signer(i).public_key(),
        org: org.into(),
        role,
    };
    BeaconGenesis {
        chain_id: CHAIN.into(),
        nodes: vec![],
        shards: vec![],
        committee: vec![signer(200).public_key()],
        accounts: vec![
            account(1, "org-a", Role::Member),
            account(2, "org-b", Role::Member),
            account(3, "org-c", Role::Member),
            account(4, "regulator", Role::Regulator),
        ],
        governance: Default::default(),
    }
}

fn state() -> MemoryState {
    let mut s = MemoryState::default();
    s.apply(&genesis().write_set().expect("valid genesis"));
    s
}

fn anchor(i: u8, nonce: u64, digest: u8) -> Transaction {
    let action = BeaconAction::Anchor {
        digest: Digest([digest; 32]),
        tag: Tag::parse("contract-7").expect("tag"),
    };
    Transaction::sign(CHAIN, &signer(i), nonce, action)
}

#[test]
fn genesis_is_checked() {
    let mut g = genesis();
    g.accounts.push(g.accounts[0].clone());
    assert!(matches!(
        g.write_set(),
        Err(GenesisError::DuplicateAccount(_))
    ));
    let mut g = genesis();
    g.accounts[1].role = Role::Unspecified;
    assert!(matches!(g.write_set(), Err(GenesisError::NoRole(_))));
    let mut g = genesis();
    g.chain_id.clear();
    assert_eq!(g.write_set(), Err(GenesisError::NoChainId));
}

#[test]
fn a_member_anchors_a_digest() {
    let mut s = state();
    let tx = anchor(1, 0, 0xaa);
    let out = execute_block(CHAIN, 1, &s, std::slice::from_ref(&tx)).expect("state reads");
    assert_eq!(out.receipts[0].outcome, Ok(Applied::default()));
    assert_eq!(out.receipts[0].tx_hash, tx.hash());
    s.apply(&out.writes);
    let record = read_anchor(&s, &Digest([0xaa; 32]))
        .expect("state reads")
        .expect("anchored");
    assert_eq!(record.sender, signer(1).public_key().0.to_vec());
    assert_eq!(record.tag, "contract-7");
    assert_eq!(record.tx_hash, tx.hash().0.to_vec());
    assert_eq!(
        read_account(&s, &signer(1).public_key())
            .expect("state reads")
            .map(|a| a.next_nonce),
        Some(1)
    );
}

#[test]
fn every_rejection_has_a_receipt_and_writes_nothing_but_a_consumed_nonce() {
    let s = state();
    let mut tampered = anchor(2, 0, 0x02).encoded().to_vec();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    let tampered = Transaction::decode(&tampered, DEFAULT_MAX_TX_BYTES).expect("well-formed");
    let other_chain = Transaction::sign(
        "other-chain",
        &signer(1),
        0,
        BeaconAction::Anchor {
            digest: Digest([5; 32]),
            tag: Tag::default(),
        },
    );
    let txs = vec![
        anchor(1, 0, 0x01), // applied
        anchor(1, 0, 0x09), // replay of nonce 0 within the block
        anchor(1, 5, 0x0a), // nonce gap
        anchor(9, 0, 0x0b), // unknown account
        anchor(4, 0, 0x0c), // a regulator may not anchor
        anchor(3, 0, 0x01), // digest already anchored (earlier in this block)
        tampered,           // bad signature
        other_chain,        // wrong chain
        anchor(1, 1, 0x0d), // applied: next nonce in order
    ];
    let out = execute_block(CHAIN, 1, &s, &txs).expect("state reads");
    let outcomes: Vec<_> = out.receipts.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            Ok(Applied::default()),
            Err(Rejection::BadNonce {
                expected: 1,
                got: 0
            }),
            Err(Rejection::BadNonce {
                expected: 1,
                got: 5
            }),
            Err(Rejection::UnknownAccount),
            Err(Rejection::RoleMayNotAnchor(Role::Regulator)),
            Err(Rejection::AlreadyAnchored),
            Err(Rejection::BadSignature),
            Err(Rejection::WrongChain),
            Ok(Applied::default()),
        ]
    );
    // The two applied anchors, and the nonces of accounts 1, 3 (refused: digest taken) and 4
    // (refused: a regulator): past the signature and nonce checks a nonce is consumed, so the
    // refused bytes can never be replayed. Nothing else was written.
    assert_eq!(out.writes.len(), 5);
    let mut after = s.clone();
    after.apply(&out.writes);
    assert!(
        read_anchor(&after, &Digest([0x0c; 32]))
            .expect("state reads")
            .is_none()
    );
    assert_eq!(
        read_account(&after, &signer(3).public_key())
            .expect("state reads")
            .map(|a| a.next_nonce),
        Some(1)
    );
    assert_eq!(
        read_account(&after, &signer(4).public_key())
            .expect("state reads")
            .map(|a| a.next_nonce),
        Some(1)
    );
    assert_eq!(
        read_account(&after, &signer(1).public_key())
            .expect("state reads")
            .map(|a| a.next_nonce),
        Some(2)
    );
}

#[test]
fn a_committed_transaction_cannot_be_replayed() {
    let mut s = state();
    let tx = anchor(1, 0, 0x33);
    let out = execute_block(CHAIN, 1, &s, std::slice::from_ref(&tx)).expect("state reads");
    s.apply(&out.writes);
    let again = execute_block(CHAIN, 1, &s, std::slice::from_ref(&tx)).expect("state reads");
    assert_eq!(
        again.receipts[0].outcome,
        Err(Rejection::BadNonce {
            expected: 1,
            got: 0
        })
    );
    assert!(again.writes.is_empty());
}

#[test]
fn execution_is_deterministic() {
    let s = state();
    let txs: Vec<Transaction> = (0..30)
        .map(|k| anchor(1 + (k % 3), u64::from(k / 3), k))
        .collect();
    let a = execute_block(CHAIN, 1, &s, &txs).expect("state reads");
    let b = execute_block(CHAIN, 1, &s.clone(), &txs).expect("state reads");
    assert_eq!(a, b);
    assert!(a.receipts.iter().all(|r| r.outcome.is_ok()));
}
