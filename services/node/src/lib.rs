//! # trellis-node
//!
//! The IO around the consensus core: today only the transaction pool. Network (mTLS), block
//! store, state tree, client API and chain hosting follow (see `ARCHITECTURE.md`).

#![forbid(unsafe_code)]

pub mod mempool;
