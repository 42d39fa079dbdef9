//! The state tree over real ledger writes: deterministic roots, inclusion and exclusion proofs
//! that verify offline, tampering caught, history readable until pruned.

use trellis_ledger::beacon::execute_block;
use trellis_ledger::state::{MemoryState, StateKey};
use trellis_node::state_tree::{MemoryTreeStore, StateTree, StateTreeError};
use trellis_types::{Digest, Transaction};

mod common;
use common::{CHAIN, anchor, genesis, signer};

/// Genesis at version 0, then `blocks` blocks of three anchors each.
fn chain(blocks: u8) -> (StateTree<MemoryTreeStore>, Vec<Digest>) {
    let mut tree = StateTree::in_memory();
    let mut view = MemoryState::default();
    let writes = genesis().write_set().expect("genesis");
    let mut roots = vec![tree.apply(0, &writes).expect("genesis root")];
    view.apply(&writes);
    for h in 1..=blocks {
        let txs: Vec<Transaction> = (1..=3)
            .map(|i| anchor(i, u64::from(h - 1), h * 10 + i))
            .collect();
        let out = execute_block(CHAIN, 1, &view, &txs).expect("the state reads");
        assert!(out.receipts.iter().all(|r| r.outcome.is_ok()));
        roots.push(tree.apply(u64::from(h), &out.writes).expect("root"));
        view.apply(&out.writes);
    }
    (tree, roots)
}

#[test]
fn the_same_writes_give_the_same_roots() {
    let (_, a) = chain(5);
    let (_, b) = chain(5);
    assert_eq!(a, b);
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert_eq!(distinct.len(), a.len(), "every block changed the root");
}

#[test]
fn an_anchor_is_proven_against_the_root_and_tampering_is_caught() {
    let (tree, roots) = chain(4);
    let key = StateKey::anchor(&Digest([22; 32])); // block 2, account 2
    let (value, proof) = tree.get_with_proof(4, &key).expect("read");
    let value = value.expect("anchored");
    proof
        .verify(&roots[4], key.as_bytes(), Some(&value))
        .expect("valid proof");

    let mut tampered = value.clone();
    tampered[3] ^= 1;
    assert!(
        proof
            .verify(&roots[4], key.as_bytes(), Some(&tampered))
            .is_err()
    );
    assert!(
        proof
            .verify(&roots[3], key.as_bytes(), Some(&value))
            .is_err()
    );
    let other = StateKey::anchor(&Digest([23; 32]));
    assert!(
        proof
            .verify(&roots[4], other.as_bytes(), Some(&value))
            .is_err()
    );
    assert!(proof.verify(&roots[4], key.as_bytes(), None).is_err());
}

#[test]
fn absence_is_proven_too_and_history_is_readable() {
    let (tree, roots) = chain(4);
    let key = StateKey::anchor(&Digest([42; 32])); // anchored in block 4
    let (before, proof) = tree.get_with_proof(3, &key).expect("read");
    assert_eq!(before, None);
    proof
        .verify(&roots[3], key.as_bytes(), None)
        .expect("exclusion proof");
    let (after, proof) = tree.get_with_proof(4, &key).expect("read");
    proof
        .verify(&roots[4], key.as_bytes(), after.as_deref())
        .expect("inclusion proof");
    assert!(after.is_some());
}

#[test]
fn versions_only_go_forward_and_pruning_keeps_the_latest() {
    let (mut tree, roots) = chain(6);
    assert!(matches!(
        tree.apply(6, &Default::default()),
        Err(StateTreeError::VersionOrder { .. })
    ));
    assert!(matches!(
        tree.apply(8, &Default::default()),
        Err(StateTreeError::VersionOrder { .. })
    ));
    let before = tree.node_count();
    let pruned = tree.prune(6);
    assert!(pruned > 0, "stale nodes were not pruned");
    assert_eq!(tree.node_count(), before - pruned);
    assert_eq!(tree.prune(6), 0);
    assert!(matches!(
        tree.root(3),
        Err(StateTreeError::NoSuchVersion(3))
    ));
    assert_eq!(tree.root(6).expect("latest root"), roots[6]);
    let key = StateKey::account(&signer(1).public_key());
    let (value, proof) = tree.get_with_proof(6, &key).expect("read latest");
    proof
        .verify(&roots[6], key.as_bytes(), value.as_deref())
        .expect("still provable");
}

#[test]
fn prepare_writes_nothing_until_the_batch_is_applied() {
    let (mut tree, roots) = chain(2);
    let writes = trellis_ledger::state::WriteSet::from([(
        StateKey::anchor(&Digest([99; 32])),
        Some(b"record".to_vec()),
    )]);
    let (root, batch) = tree.prepare(3, &writes).expect("prepare");
    let (again, _) = tree.prepare(3, &writes).expect("prepare again");
    assert_eq!(root, again, "preparing is repeatable");
    assert_ne!(root, roots[2]);
    assert!(matches!(
        tree.root(3),
        Err(StateTreeError::NoSuchVersion(3))
    ));
    assert_eq!(tree.latest_version(), Some(2));

    tree.reader_mut().apply_batch(batch);
    tree.committed(3);
    assert_eq!(tree.root(3).expect("root"), root);
    assert_eq!(
        tree.get(3, &StateKey::anchor(&Digest([99; 32])))
            .expect("read"),
        Some(b"record".to_vec())
    );
}

#[test]
fn a_block_without_writes_still_gets_a_version_with_the_same_root() {
    let (mut tree, roots) = chain(2);
    let root = tree.apply(3, &Default::default()).expect("empty block");
    assert_eq!(root, roots[2]);
    assert_eq!(tree.root(3).expect("root"), roots[2]);
    let key = StateKey::anchor(&Digest([21; 32]));
    let (value, proof) = tree.get_with_proof(3, &key).expect("read");
    proof
        .verify(&root, key.as_bytes(), value.as_deref())
        .expect("provable at the empty block's height");
    assert!(value.is_some());
    let root = tree.apply(4, &Default::default()).expect("another");
    assert_eq!(root, roots[2]);
    // An empty genesis is the empty tree's root.
    let mut empty = StateTree::in_memory();
    let root = empty.apply(0, &Default::default()).expect("empty genesis");
    assert_eq!(empty.root(0).expect("root"), root);
}

/// `prepare` inserts a block's writes in one jmt batch when it has no deletions. The root must
/// be the one key-by-key insertion gives, over many versions of overlapping keys, with a
/// deletion in between (which takes the key-by-key path), and proofs must verify against it.
#[test]
fn batched_insertion_gives_the_roots_of_key_by_key_insertion() {
    use trellis_ledger::state::WriteSet;
    let mut tree = StateTree::in_memory();
    let mut reference = MemoryTreeStore::default();
    let key = |i: u32| StateKey::anchor(&Digest::of(&i.to_be_bytes()));
    let mut seed = 7u64;
    let mut next = || {
        // xorshift: a fixed, varied sequence of keys and values.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for version in 0..40u64 {
        let mut writes = WriteSet::new();
        let count = 1 + next() % 300;
        for _ in 0..count {
            let k = (next() % 2_000) as u32;
            writes.insert(key(k), Some(next().to_be_bytes().to_vec()));
        }
        if version % 9 == 5 {
            writes.insert(key((next() % 2_000) as u32), None);
        }
        let root = tree.apply(version, &writes).expect("prepared root");
        let value_set: Vec<(jmt::KeyHash, Option<Vec<u8>>)> = writes
            .iter()
            .map(|(k, v)| {
                (
                    trellis_types::state_proof::key_hash(k.as_bytes()),
                    v.clone(),
                )
            })
            .collect();
        let (want, batch) = jmt::JellyfishMerkleTree::<_, sha2::Sha256>::new(&reference)
            .put_value_set(value_set, version)
            .expect("reference root");
        reference.apply_batch(batch);
        assert_eq!(root.0, want.0, "root of version {version}");
        let probe = writes.keys().next().expect("a key");
        let (value, proof) = tree.get_with_proof(version, probe).expect("proof");
        assert!(
            proof
                .verify(&root, probe.as_bytes(), value.as_deref())
                .is_ok()
        );
    }
}
