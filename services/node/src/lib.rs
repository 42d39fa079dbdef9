//! # trellis-node
//!
//! The IO around the consensus core: today the transaction pool and the state tree (on an
//! in-memory node store). Network (mTLS), block
//! store, state tree, client API and chain hosting follow (see `ARCHITECTURE.md`).

#![forbid(unsafe_code)]

pub mod mempool;
pub mod state_tree;
