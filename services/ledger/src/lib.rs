//! # trellis-ledger
//!
//! Deterministic applications: transactions in, state writes and receipts out. No IO, no
//! clock, no hash-map iteration: the same state and transactions give the same result on every
//! validator. The node stores the writes in its authenticated state tree.

#![forbid(unsafe_code)]

pub mod beacon;
pub mod state;
