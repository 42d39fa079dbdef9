//! The shared parts of the Trellis HTTP services that keep their state in PostgreSQL or SQLite:
//! RFC 9457 problem+json errors and a JSON extractor that answers with them ([`problem`]), one
//! database handle over both backends with embedded migrations and idempotency keys ([`db`],
//! [`idempotency`]), sealing of secrets at rest ([`seal`]), API roles and EdDSA JWTs with the
//! [`Caller`] extractor ([`auth`]), and a client of a node's HTTP API ([`node`]).

#![forbid(unsafe_code)]

pub mod auth;
pub mod db;
pub mod idempotency;
pub mod node;
pub mod problem;
pub mod seal;
#[doc(hidden)]
pub mod testing;

pub use auth::{AuthError, Caller, Claims, Role, TokenConfig, TokenService};
pub use db::{Backend, Db, DbError, now_ms};
pub use idempotency::{IdemError, Idempotency, sha256_hex};
pub use node::{NodeClient, NodeError, TxOutcome};
pub use problem::{ApiResult, JsonBody, Problem};
pub use seal::{Keyring, SealError};
