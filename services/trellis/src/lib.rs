//! The `trellis` binary's subcommands as a library, so end-to-end tests drive the same code:
//! [`devnet`] (files and in-process consortium), [`services`] (`serve`: identity and membership
//! on one address), [`client`] (the client API over HTTP), [`bench`](mod@bench) and [`local`]
//! (key files, secrets and ports on this machine).

#![forbid(unsafe_code)]

pub mod apps;
pub mod bench;
pub mod client;
pub mod devnet;
pub mod governance_cli;
pub mod local;
pub mod services;
