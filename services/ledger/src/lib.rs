//! # trellis-ledger
//!
//! Deterministic applications behind one interface ([`app::Application`]): transactions in,
//! state writes and receipts out. No IO, no clock, no hash-map iteration: the same state and
//! transactions give the same result on every validator. The node stores the writes in its
//! authenticated state tree, and mounts each application's read routes without knowing it.

#![forbid(unsafe_code)]

pub mod app;
pub mod beacon;
pub mod shard;
pub mod state;
