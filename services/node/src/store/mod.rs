//! The node's durable store: committed blocks, their certificates, the transaction index, state
//! roots, epoch-change proofs, the consensus core's safety data, pending blocks, and the state
//! tree's nodes — one fjall database per node directory.
//!
//! # Durability
//!
//! One database means one journal: a write made durable with `PersistMode::SyncAll` makes every
//! earlier write durable too. [`NodeStore::commit`] writes everything a committed height needs
//! (block, certificate, tx index, root, epoch change, head record, pending-block deletions) as
//! ONE atomic batch synced before it returns, so after a crash a height is either fully there or
//! not at all. The state tree is written behind, in batches of its own (see "Write-behind tree").
//! [`NodeStore::put_safety`] syncs too; pending blocks and pruning are not synced by themselves
//! (the next sync covers them).
//!
//! # Layout
//!
//! Every record is the caller's opaque bytes, except the state tree's, which this module
//! encodes (see `codec.rs` and `records.rs`). Heights and epochs are big-endian so that ranges
//! iterate in order.
//!
//! | keyspace      | key                                   | value                            |
//! |---------------|---------------------------------------|----------------------------------|
//! | `blocks`      | height                                | block bytes                      |
//! | `block_ids`   | block id (32)                         | height                           |
//! | `pending`     | height ‖ block id                     | block bytes                      |
//! | `certs`       | height                                | certificate bytes                |
//! | `txs`         | tx hash (32)                          | caller's location/outcome record |
//! | `roots`       | height                                | state root (32)                  |
//! | `epochs`      | epoch                                 | proof that ended the epoch       |
//! | `meta`        | `format` `head` `safety` `last` `tree`| format, bytes, bytes, heights    |
//! |               | `pruned`                              | the last prune's `keep_from`     |
//! | `jmt_nodes`   | node key (version ‖ nibble path)      | node                             |
//! | `jmt_values`  | key hash (32) ‖ version               | 0 (deleted) or 1 ‖ value bytes   |
//! | `jmt_stale`   | flush version                         | the nodes it made stale (below)  |
//!
//! A flush's stale record lists, per node: a tag (0 not a leaf, 1 a leaf, 2 not known), the
//! node key's length (1) and bytes, and for a leaf its key hash (32). One record per flush
//! rather than one per node: fewer store writes, and pruning learns which nodes were leaves
//! without reading them. Older stores kept one entry per node (`stale-since version ‖ node
//! key` → empty); pruning reads both.
//!
//! # Write-behind tree
//!
//! A block's tree update rewrites every node on the path to each key it touches, and the
//! upper levels are rewritten by nearly every block: written per block, tree nodes were over
//! half of the bytes a commit wrote, most of them stale a block later (written behind, a node
//! writes about 42 % fewer bytes per transaction). So the updates of the
//! latest versions stay in memory, and every `tree_flush_every` versions one batch writes what
//! the latest of them needs: the window's nodes that are still live, each key's newest value
//! (a deletion only of a key the store holds a value of), and the record of the stored nodes
//! the window made stale (keyed by the flush version); `meta/tree` then names that version. A
//! commit stays atomic and synced for everything else, so a crash loses no committed block;
//! what it loses is the tree above `meta/tree`, which the chain rebuilds by executing the
//! committed blocks above it again ([`NodeStore::replay_tree`]; execution is deterministic and
//! each replayed root is checked against the stored one).
//!
//! The flush batch is written on a thread of its own, beside the commits after it (memory
//! keeps its versions until the next flush is done, so nothing waits for it), and not synced
//! by itself: a later commit's sync covers it. A crash may lose the flush in progress too, so
//! a restart replays up to about `2.5 × tree_flush_every` blocks (with a phase, the first flush
//! after a restart comes half a period to a period and a half after it). That includes the
//! first flush, of the genesis state: a store with committed blocks and no tree at all is
//! rebuilt from version 0 ([`NodeStore::replay_tree`] takes it first). The next flush waits
//! for it, and its failure fails that commit (before it writes anything). A node also sets a
//! flush phase ([`NodeStore::set_tree_flush_phase`]) so that validators flush at different
//! heights: the flush still takes CPU and disk time, and a chain whose validators all flush at
//! once slows on all of them.
//!
//! A flush writes at most up to the state the chain's latest certified head commits to
//! ([`NodeStore::set_tree_flush_limit`]), a few versions behind the latest: proofs are made
//! against that state, and after a restart, clean or a crash, it is then at or above the last
//! flush, so the replay brings it back and a proof works at once.
//!
//! Readable versions: every version from the flush before the last finished one on (memory
//! holds the updates since then), and the flushed versions themselves until pruning. Memory
//! lets versions go under an exclusive lock that every tree read holds shared
//! ([`ConsistentReads`](crate::state_tree::ConsistentReads)): a read that found its version
//! held answers from it alone, never from half of one, or from the store's history, which keeps
//! only each window's newest value.
//!
//! # Files
//!
//! - `node_store.rs`: [`NodeStore`]: opening, the commit, the blocks and records it reads back,
//!   the replay of the tree, and when the tree flushes.
//! - `flush.rs`: a tree flush: what it writes, on a thread of its own.
//! - `memory.rs`: the tree in memory: the unflushed updates and the cache of decoded nodes.
//! - `reads.rs`: reads of the tree: the walk to a value, and jmt's `TreeReader`.
//! - `prune.rs`: pruning of old tree versions.
//! - `records.rs`: the layout's keys and records, other than tree nodes.
//! - `codec.rs`: tree nodes and their keys as stored (and why that codec rather than borsh).
//! - `error.rs`: [`StoreError`] and the format version.

mod codec;
mod error;
mod flush;
mod memory;
mod node_store;
mod prune;
mod reads;
mod records;

pub use error::StoreError;
pub use node_store::{CommitBatch, NodeStore, TREE_FLUSH_EVERY};
