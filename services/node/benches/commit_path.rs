//! The commit path of one validator, without consensus or network: blocks of signed anchors
//! from 32 accounts are executed against the store's state, the state tree is updated and the
//! block is committed to a fjall store in a temporary directory (synced, as a node does).
//! Prints the time per transaction of each step, and what taking a received block's
//! transactions costs: decoding each, or finding the pool's copy by the body's hash. Run with
//! `cargo bench -p trellis-node --bench commit_path [-- BLOCKS TXS_PER_BLOCK]`.

use std::time::{Duration, Instant};
use trellis_ledger::beacon::{BeaconGenesis, GenesisAccount, execute_block_checked};
use trellis_ledger::state::WriteSet;
use trellis_node::chain::StateAt;
use trellis_node::state_tree::StateTree;
use trellis_node::store::{CommitBatch, NodeStore};
use trellis_types::pb::Role;
use trellis_types::{BeaconAction, Digest, Signer, Tag, Transaction};

/// As in the `trellis` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAIN: &str = "trellis-bench";
const ACCOUNTS: u64 = 32;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let blocks = args.first().copied().unwrap_or(300);
    // A multiple of the accounts: each sends the same number per block.
    let per_block = args.get(1).copied().unwrap_or(512) / ACCOUNTS * ACCOUNTS;
    let signers: Vec<Signer> = (0..ACCOUNTS)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            Signer::from_seed(seed)
        })
        .collect();
    let genesis = BeaconGenesis {
        chain_id: CHAIN.into(),
        nodes: vec![],
        shards: vec![],
        committee: vec![Signer::from_seed([0xee; 32]).public_key()],
        accounts: signers
            .iter()
            .enumerate()
            .map(|(i, s)| GenesisAccount {
                key: s.public_key(),
                org: format!("org-{}", i % 3 + 1),
                role: Role::Member,
            })
            .collect(),
        governance: Default::default(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let flush_every = std::env::var("FLUSH_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(trellis_node::store::TREE_FLUSH_EVERY);
    let store = NodeStore::open_with(dir.path(), flush_every).expect("open");
    let mut tree = StateTree::new(store.clone());
    let (mut execute, mut prepare, mut write) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let writes = genesis.write_set().expect("genesis");
    commit(&store, &mut tree, 0, &writes, &[], &mut prepare, &mut write);
    let tag = Tag::parse(&"b".repeat(64)).expect("tag");
    let mut nonce = 0u64;
    let mut digests = 0u64;
    let (mut execute_w, mut prepare_w, mut write_w) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let warmup = blocks / 5;
    for height in 1..=blocks {
        let txs: Vec<Transaction> = (0..per_block)
            .map(|i| {
                digests += 1;
                let signer = &signers[(i % ACCOUNTS) as usize];
                let tx_nonce = nonce + i / ACCOUNTS;
                let action = BeaconAction::Anchor {
                    digest: Digest::of(&digests.to_be_bytes()),
                    tag: tag.clone(),
                };
                Transaction::sign(CHAIN, signer, tx_nonce, action)
            })
            .collect();
        nonce += per_block / ACCOUNTS;
        let t = Instant::now();
        let view = StateAt::new(&store, height - 1);
        let outcome =
            execute_block_checked(CHAIN, height, &view, &txs, |_| true).expect("the state reads");
        execute += t.elapsed();
        if let Some(r) = outcome.receipts.iter().find(|r| r.outcome.is_err()) {
            panic!("height {height}: {:?}", r.outcome);
        }
        commit(
            &store,
            &mut tree,
            height,
            &outcome.writes,
            &txs,
            &mut prepare,
            &mut write,
        );
        if height == warmup {
            (execute_w, prepare_w, write_w) = (execute, prepare, write);
        }
    }
    intake(&signers, &tag, per_block);
    let txs = ((blocks - warmup) * per_block) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / txs;
    let (e, p, w) = (
        us(execute - execute_w),
        us(prepare - prepare_w),
        us(write - write_w),
    );
    println!(
        "commit path, {blocks} blocks of {per_block} anchors (first {warmup} not counted): \
         execute {e:.2} µs/tx, tree {p:.2} µs/tx, store {w:.2} µs/tx, total {:.2} µs/tx",
        e + p + w
    );
}

fn commit(
    store: &NodeStore,
    tree: &mut StateTree<NodeStore>,
    height: u64,
    writes: &WriteSet,
    txs: &[Transaction],
    prepare: &mut Duration,
    write: &mut Duration,
) {
    let t = Instant::now();
    let (root, batch) = tree.prepare(height, writes).expect("prepare");
    *prepare += t.elapsed();
    let t = Instant::now();
    let block: Vec<u8> = txs.iter().flat_map(|tx| tx.encoded().to_vec()).collect();
    store
        .commit(CommitBatch {
            height,
            block_id: Digest::of(&height.to_be_bytes()).0,
            block,
            cert: vec![0xce; 300],
            state_root: root.0,
            tree: batch,
            txs: txs
                .iter()
                .enumerate()
                .map(|(i, tx)| {
                    let record = format!("{{\"height\":{height},\"index\":{i}}}");
                    (tx.hash().0, record.into_bytes())
                })
                .collect(),
            epoch_change: None,
            head: vec![0x4e; 400],
        })
        .expect("commit");
    tree.committed(height);
    *write += t.elapsed();
}

/// A received block's transactions: decoded one by one, or found in a pool that holds them.
fn intake(signers: &[Signer], tag: &Tag, per_block: u64) {
    let txs: Vec<Transaction> = (0..per_block)
        .map(|i| {
            let action = BeaconAction::Anchor {
                digest: Digest::of(&(u64::MAX - i).to_be_bytes()),
                tag: tag.clone(),
            };
            Transaction::sign(CHAIN, &signers[(i % ACCOUNTS) as usize], i, action)
        })
        .collect();
    let pool: std::collections::BTreeMap<Digest, std::sync::Arc<Transaction>> = txs
        .iter()
        .map(|tx| (tx.hash(), std::sync::Arc::new(tx.clone())))
        .collect();
    let raw: Vec<&[u8]> = txs.iter().map(|tx| tx.encoded()).collect();
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &raw {
            std::hint::black_box(Transaction::decode(r, 64 * 1024).expect("decode"));
        }
    }
    let decode = t.elapsed();
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &raw {
            let found = Transaction::peek_hash(r)
                .and_then(|h| pool.get(&h))
                .filter(|tx| tx.encoded() == *r)
                .cloned();
            std::hint::black_box(found.expect("pooled"));
        }
    }
    let pooled = t.elapsed();
    let n = (rounds * raw.len()) as f64;
    println!(
        "block intake: decode {:.2} µs/tx, from the pool {:.2} µs/tx",
        decode.as_secs_f64() * 1e6 / n,
        pooled.as_secs_f64() * 1e6 / n
    );
}
