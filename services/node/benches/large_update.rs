//! One block that writes 2,000 state keys (a large block of new anchors, or of changed
//! records), prepared in the state tree and committed to a fjall store with `SyncAll`, as a
//! node commits: into an empty tree, over 2,000 existing leaves, and changing 2,000 of 4,000.
//! The tree is flushed with every commit here, so the time includes writing the tree nodes.
//! Run with `cargo bench -p trellis-node --bench large_update`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jmt::storage::TreeUpdateBatch;
use trellis_ledger::state::{StateKey, WriteSet};
use trellis_node::state_tree::StateTree;
use trellis_node::store::{CommitBatch, NodeStore};
use trellis_types::Digest;

const LEAVES: u32 = 2_000;

/// `LEAVES` anchors of key set `set`, each with a 96-byte value marked `mark`.
fn writes(set: u64, mark: u8) -> WriteSet {
    (0..LEAVES)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d[4..12].copy_from_slice(&set.to_be_bytes());
            (StateKey::anchor(&Digest(d)), Some(vec![mark; 96]))
        })
        .collect()
}

fn batch(height: u64, state_root: [u8; 32], tree: TreeUpdateBatch) -> CommitBatch {
    CommitBatch {
        height,
        block_id: [height as u8; 32],
        // About what a block of 2,000 anchors weighs.
        block: vec![0; 200_000],
        cert: vec![1; 200],
        state_root,
        tree,
        txs: (0..LEAVES)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_be_bytes());
                k[4..12].copy_from_slice(&height.to_be_bytes());
                (k, vec![2; 40])
            })
            .collect(),
        epoch_change: None,
        head: vec![3; 100],
    }
}

/// A store in a fresh directory with the blocks of `before` committed, heights from 0.
fn store_with(before: &[WriteSet]) -> (tempfile::TempDir, NodeStore, StateTree<NodeStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = NodeStore::open_with(dir.path(), 1).expect("open");
    let mut tree = StateTree::new(store.clone());
    for (h, w) in before.iter().enumerate() {
        let h = h as u64;
        let (root, update) = tree.prepare(h, w).expect("prepare");
        store.commit(batch(h, root.0, update)).expect("commit");
        tree.committed(h);
    }
    (dir, store, tree)
}

fn large_update(c: &mut Criterion) {
    let cases = [
        ("2000 new leaves, empty tree", vec![], writes(0, 0)),
        (
            "2000 new leaves over 2000",
            vec![writes(0, 0)],
            writes(1, 1),
        ),
        (
            "2000 changed leaves of 4000",
            vec![writes(0, 0), writes(1, 1)],
            writes(0, 2),
        ),
    ];
    let mut group = c.benchmark_group("large_update");
    group.sample_size(20);
    for (label, before, update) in cases {
        group.bench_function(label, |b| {
            b.iter_batched(
                || store_with(&before),
                |(dir, store, mut tree)| {
                    let h = before.len() as u64;
                    let (root, update) = tree.prepare(h, &update).expect("prepare");
                    store.commit(batch(h, root.0, update)).expect("commit");
                    tree.committed(h);
                    // Dropped with the store after the measured part.
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, large_update);
criterion_main!(benches);
