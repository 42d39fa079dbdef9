//! Mempool admission and block filling with real signed transactions.

use std::collections::BTreeMap;
use trellis_ledger::state::StateError;
use trellis_node::mempool::{Accounts, Admitted, Mempool, MempoolConfig, Rejected};
use trellis_types::{BeaconAction, Digest, PublicKey, Signer, Tag, Transaction, TxError};

const CHAIN: &str = "trellis-beacon-test";

struct Registry(BTreeMap<PublicKey, u64>);

impl Accounts for Registry {
    fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError> {
        Ok(self.0.get(account).copied())
    }
}

fn signer(i: u8) -> Signer {
    Signer::from_seed([i; 32])
}

fn tx(i: u8, nonce: u64) -> Vec<u8> {
    tx_tagged(i, nonce, "t")
}

fn tx_tagged(i: u8, nonce: u64, tag: &str) -> Vec<u8> {
    let action = BeaconAction::Anchor {
        digest: Digest([nonce as u8; 32]),
        tag: Tag::parse(tag).expect("valid tag"),
    };
    Transaction::sign(CHAIN, &signer(i), nonce, action)
        .encoded()
        .to_vec()
}

fn registry(accounts: &[u8]) -> Registry {
    Registry(
        accounts
            .iter()
            .map(|i| (signer(*i).public_key(), 0))
            .collect(),
    )
}

#[test]
fn admission_checks_each_rule() {
    let accounts = registry(&[1, 2]);
    let mut pool = Mempool::new(
        CHAIN,
        MempoolConfig {
            max_tx_bytes: 1_000,
            ..MempoolConfig::default()
        },
    );
    let mut bad_sig = tx(1, 1);
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 1; // last byte of the signature
    let other_chain = Transaction::sign(
        "other",
        &signer(1),
        0,
        BeaconAction::Anchor {
            digest: Digest([0; 32]),
            tag: Tag::default(),
        },
    )
    .encoded()
    .to_vec();
    let results = pool.admit(
        &[
            tx(1, 0),
            tx(1, 0),
            bad_sig,
            tx(9, 0),
            other_chain,
            vec![0xff; 3],
            vec![0u8; 2_000],
            tx_tagged(1, 0, "same nonce, other content"),
        ],
        &accounts,
    );
    assert_eq!(results[0], Ok(Admitted::Added));
    assert_eq!(results[1], Ok(Admitted::Duplicate));
    assert_eq!(results[2], Err(Rejected::Invalid(TxError::BadSignature)));
    assert_eq!(results[3], Err(Rejected::UnknownAccount));
    assert!(matches!(results[4], Err(Rejected::WrongChain { .. })));
    assert!(matches!(
        results[5],
        Err(Rejected::Invalid(TxError::Malformed(_)))
    ));
    assert!(matches!(
        results[6],
        Err(Rejected::Invalid(TxError::TooLarge { .. }))
    ));
    assert_eq!(results[7], Err(Rejected::NonceTaken(0)));
    assert_eq!(pool.len(), 1);

    // Replay after commit: the account's next nonce moved past it.
    let mut accounts = accounts;
    accounts.0.insert(signer(1).public_key(), 1);
    pool.prune(&accounts);
    assert!(pool.is_empty());
    assert_eq!(pool.bytes(), 0);
    assert_eq!(
        pool.admit(&[tx(1, 0)], &accounts)[0],
        Err(Rejected::NonceUsed { got: 0, next: 1 })
    );
    let far = pool.admit(&[tx(1, 5_000)], &accounts);
    assert!(matches!(far[0], Err(Rejected::NonceTooFarAhead { .. })));
}

#[test]
fn a_full_pool_refuses_instead_of_growing() {
    let accounts = registry(&[1]);
    let one = tx(1, 0).len();
    let mut pool = Mempool::new(
        CHAIN,
        MempoolConfig {
            max_txs: 3,
            ..MempoolConfig::default()
        },
    );
    let results = pool.admit(&(0..5).map(|n| tx(1, n)).collect::<Vec<_>>(), &accounts);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(results[3].as_ref().is_err_and(Rejected::is_retryable));
    assert_eq!(pool.len(), 3);

    let mut pool = Mempool::new(
        CHAIN,
        MempoolConfig {
            max_bytes: one * 2,
            ..MempoolConfig::default()
        },
    );
    let results = pool.admit(&(0..3).map(|n| tx(1, n)).collect::<Vec<_>>(), &accounts);
    assert_eq!(results[2], Err(Rejected::Full));
    assert!(pool.bytes() <= one * 2);
}

#[test]
fn blocks_take_accounts_in_turn_in_nonce_order_within_limits() {
    let accounts = registry(&[1, 2, 3]);
    let mut pool = Mempool::new(CHAIN, MempoolConfig::default());
    let mut raw = Vec::new();
    for n in 0..4 {
        raw.push(tx(1, n));
        raw.push(tx(2, n));
    }
    raw.push(tx(3, 1)); // account 3 lacks nonce 0: nothing of it is ready
    assert!(pool.admit(&raw, &accounts).iter().all(Result::is_ok));

    let block = pool.next_block(&accounts, 100, usize::MAX);
    assert_eq!(block.len(), 8);
    for account in [1u8, 2] {
        let nonces: Vec<u64> = block
            .iter()
            .filter(|t| t.sender() == signer(account).public_key())
            .map(|t| t.nonce())
            .collect();
        assert_eq!(nonces, vec![0, 1, 2, 3]);
    }
    // Accounts alternate, so a small block is fair.
    let small = pool.next_block(&accounts, 4, usize::MAX);
    let senders: Vec<_> = small.iter().map(|t| t.sender()).collect();
    assert_eq!(
        senders
            .iter()
            .filter(|s| **s == signer(1).public_key())
            .count(),
        2
    );
    // Byte limit: exactly the first three fit.
    let three: usize = block[..3].iter().map(|t| t.encoded().len()).sum();
    assert_eq!(pool.next_block(&accounts, 100, three).len(), 3);
    // Once account 3's nonce 0 commits elsewhere, its nonce 1 is ready.
    let mut accounts = accounts;
    accounts.0.insert(signer(3).public_key(), 1);
    assert!(
        pool.next_block(&accounts, 100, usize::MAX)
            .iter()
            .any(|t| t.sender() == signer(3).public_key())
    );
}

#[test]
fn one_bad_signature_does_not_sink_the_batch() {
    let accounts = registry(&[1, 2, 3, 4]);
    let mut pool = Mempool::new(CHAIN, MempoolConfig::default());
    let mut raw: Vec<Vec<u8>> = (1..=4).map(|i| tx(i, 0)).collect();
    let last = raw[2].len() - 1;
    raw[2][last] ^= 0x40;
    let results = pool.admit(&raw, &accounts);
    assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
    assert_eq!(results[2], Err(Rejected::Invalid(TxError::BadSignature)));
}

/// A proposer could pair a pooled body with other signature bytes: same hash, and only the
/// pool's own bytes count as verified.
#[test]
fn only_the_pooled_bytes_count_as_verified() {
    let accounts = registry(&[1]);
    let mut pool = Mempool::new(CHAIN, MempoolConfig::default());
    let good = tx(1, 0);
    assert_eq!(
        pool.admit(std::slice::from_ref(&good), &accounts)[0],
        Ok(Admitted::Added)
    );
    let pooled = Transaction::decode(&good, usize::MAX).expect("decodes");
    assert!(pool.holds_verified(&pooled));
    // The pool's own copy, as a block taken from the pool carries it.
    let own = pool.get(&pooled.hash()).expect("pooled").clone();
    assert!(pool.holds_verified(&own));

    let mut forged = good;
    let last = forged.len() - 1; // a byte of the signature, the last field
    forged[last] ^= 0x01;
    let forged = Transaction::decode(&forged, usize::MAX).expect("still canonical");
    assert_eq!(forged.hash(), pooled.hash());
    assert!(pool.contains(&forged.hash()));
    assert!(!pool.holds_verified(&forged));
    assert_eq!(forged.verify_signature(), Err(TxError::BadSignature));

    let elsewhere = Transaction::decode(&tx(1, 1), usize::MAX).expect("decodes");
    assert!(!pool.holds_verified(&elsewhere));
}
