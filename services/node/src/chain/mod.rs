//! One chain hosted by a node: the consensus replica, the chain's application (any
//! [`trellis_ledger::app::Application`]), the pool, the durable store and the state tree, wired
//! together by a single driver task.
//!
//! The driver owns the replica and carries out its effects in order: messages go to the
//! network, safety data and blocks to the store (safety data fsynced before the replica may
//! sign anything that depends on it), commits are executed and written in one atomic, fsynced
//! batch. Readers (the client API, peers' sync requests) never wait for the driver: they read
//! the store and the shared [`ChainShared`] snapshot.
//!
//! **What a header's state commitment means here.** `header.state = (h, root)` says: the JMT
//! root after executing every committed block up to height `h` (version `h` of the tree;
//! version 0 is the genesis state). A proposer puts the last height it has executed; a validator
//! checks the root against its own execution of that height, waiting for it if it has not
//! executed that far yet.
//!
//! # Files
//!
//! - `shared.rs`: the state shared by the driver, the API and the dispatcher ([`ChainShared`]),
//!   its status and metrics, and admission to the pool with the account nonces it checks.
//! - `driver.rs`: the [`Driver`] task: its events, proposals and their pacing, verdicts on
//!   proposed blocks, and the commit of a block; [`dispatch`] of inbound frames.
//! - `execution.rs`: reads of committed state ([`StateAt`]), the transaction index record
//!   ([`TxLocation`]), and the replay of committed blocks into the state tree after a restart.
//! - `sync.rs`: the committed blocks served to a peer that is behind ([`ChainShared::sync_chunk`]).
//! - `genesis.rs`: the genesis epoch and state ([`genesis_epoch`]), and the head record a
//!   restart recovers the committed head from.
//! - `link.rs`: the chain's side of the node's peer connections ([`ChainLink`]: frames name the
//!   chain, only its peers take part) and the router of inbound frames ([`route_inbound`]).
//! - `relay.rs`: the relay of certified updates from the beacon into the chains that follow it
//!   ([`relay_certified_updates`]).
//! - `error.rs`: [`ChainError`].

mod driver;
mod error;
mod execution;
mod genesis;
mod link;
mod relay;
mod shared;
mod sync;

pub use driver::{Driver, DriverEvent, dispatch, now_ms};
pub use error::ChainError;
pub use execution::{StateAt, TxLocation};
pub use genesis::genesis_epoch;
pub use link::{ChainLink, Route, route_inbound};
pub use relay::relay_certified_updates;
pub(crate) use shared::lock;
pub use shared::{ChainConfig, ChainMetrics, ChainShared, ChainStatus};
