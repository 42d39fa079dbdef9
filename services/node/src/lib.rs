//! # trellis-node
//!
//! The IO around the consensus core: peer-to-peer transport over mutual TLS ([`net`], with the
//! certificate hierarchy of [`trellis_pki`]), the transaction pool ([`mempool`]), the durable
//! store on fjall ([`store`]) with the Jellyfish Merkle state tree ([`state_tree`]), the driver that runs a
//! chain's replica and application ([`chain`]), the client API ([`api`], one set of routes per hosted chain, each
//! chain's application mounting its own read routes) with its errors ([`problem`]), proof bundles
//! ([`proofs`], against the certified head found in `certified`), and the assembly of a node from its configuration ([`node`]).

#![forbid(unsafe_code)]

pub mod api;
mod certified;
pub mod chain;
pub mod mempool;
pub mod net;
pub mod node;
pub mod payload;
pub mod problem;
pub mod proofs;
pub mod state_tree;
pub mod store;
