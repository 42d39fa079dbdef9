//! The one interface every chain's application implements, and the node drives: the node is
//! generic over it and imports no particular application (the binary picks one per chain).
//!
//! An application is pure: the same state and the same block give the same write set and
//! receipts on every validator. It never reads a clock, a file or the network, and a read its
//! [`StateView`] fails stops the block's execution ([`StateError`]) instead of passing for an
//! absent key.

use crate::state::{StateError, StateKey, StateView, WriteSet, decode_at};
use std::collections::BTreeMap;
use std::sync::Arc;
use trellis_consensus::{Committee, EpochState};
use trellis_types::genesis::ChainParams;
use trellis_types::{Digest, PublicKey, Transaction, TxError, pb};

/// What a chain starts from.
#[derive(Clone, Debug)]
pub struct ChainGenesis {
    pub chain_id: String,
    pub committee: Committee,
    pub genesis_time_ms: u64,
    pub params: ChainParams,
    /// The digest of what the chain was made from (the beacon's genesis file; for a shard, its
    /// creation record). The node writes it under `chain/genesis` at version 0, binding every
    /// later state root, and so every proof, to it.
    pub digest: Digest,
    /// The application's initial state.
    pub writes: WriteSet,
}

/// Why a chain's genesis could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GenesisError(pub String);

/// A block as execution takes it.
pub struct BlockInput<'a> {
    pub height: u64,
    pub txs: &'a [Arc<Transaction>],
    /// `verified[i]`: this node already verified `txs[i]`'s signature (at admission).
    /// Verification is a pure function of the transaction (ZIP-215): skipping it changes no
    /// outcome, it only saves the work. Shorter than `txs` means "not verified" for the rest.
    pub verified: &'a [bool],
}

/// Why a transaction was not applied, in the form every application shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A stable, machine-readable name (clients map it to their errors).
    pub code: &'static str,
    pub reason: String,
}

/// What an applied transaction did beyond raising its sender's nonce: named numbers
/// (`proposal_id`, a record's `version`) that clients read from its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub facts: Vec<(&'static str, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxReceipt {
    pub tx_hash: Digest,
    pub outcome: Result<Applied, Refusal>,
}

/// A block's effect: the writes, in key order, and one receipt per transaction, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutedBlock {
    pub writes: WriteSet,
    pub receipts: Vec<TxReceipt>,
}

/// What a chain takes in from the beacon by certified updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconFollow {
    pub beacon_chain_id: String,
    /// The beacon epoch whose committee the chain trusts now.
    pub trusted_epoch: u64,
    /// The beacon state height of the last update applied.
    pub applied_state_height: u64,
    /// The beacon state keys an update should carry, as of the beacon state given.
    pub keys: Vec<StateKey>,
}

/// Who may call a read route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the beacon's public registry.
    Public,
    /// Callers of the chain's member orgs only: a shard's records, even as commitments.
    Members,
}

/// One of an application's read routes, as the node mounts it: under
/// `/v1/chains/{chain_id}` (and, for the beacon, also under `/v1`).
#[derive(Clone, Copy, Debug)]
pub struct ReadRoute {
    /// Relative path, segments with `{name}` captures: `/members/{org}`.
    pub path: &'static str,
    pub access: Access,
}

/// The arguments of a read: path captures by name, and the query string's pairs.
#[derive(Clone, Debug, Default)]
pub struct ReadArgs {
    pub path: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    /// The executed height the state is read at.
    pub height: u64,
}

impl ReadArgs {
    /// A path capture; the route's pattern guarantees it is there.
    pub fn path(&self, name: &'static str) -> Result<&str, ReadError> {
        self.path
            .get(name)
            .map(String::as_str)
            .ok_or(ReadError::BadParam {
                field: name,
                reason: "is missing".into(),
            })
    }

    /// A query parameter, if given.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// `limit` of a paginated route: `default` when absent, 1 to `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ReadError> {
        match self.query("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ReadError::BadParam {
                    field: "limit",
                    reason: format!("must be an integer from 1 to {max}"),
                }),
            },
        }
    }
}

/// Why a read has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{field} {reason}")]
    BadParam { field: &'static str, reason: String },
    #[error("{detail}")]
    NotFound {
        /// The problem type (`unknown-member`, ...).
        kind: &'static str,
        field: &'static str,
        detail: &'static str,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A deterministic chain application.
pub trait Application: Send + Sync + 'static {
    /// `beacon` or `shard`.
    fn kind(&self) -> &'static str;

    fn chain_id(&self) -> &str;

    /// The chain's genesis: committee, parameters and initial state.
    fn genesis(&self) -> Result<ChainGenesis, GenesisError>;

    /// Checks an action's bytes for this application: canonical encoding and field shapes,
    /// naming the offending field. Admission refuses what fails here; execution refuses it too.
    fn check_action(&self, action: &[u8]) -> Result<(), TxError>;

    /// Executes a block's transactions in order on top of `view`, the state after the block's
    /// parent. Each transaction gets a receipt; a refused one changes nothing but, once its
    /// signature, sender and nonce are good, consumes its nonce.
    fn execute(
        &self,
        block: BlockInput<'_>,
        view: &dyn StateView,
    ) -> Result<ExecutedBlock, StateError>;

    /// An account's next nonce (`None`: no such account), for admission.
    fn next_nonce(
        &self,
        view: &dyn StateView,
        account: &PublicKey,
    ) -> Result<Option<u64>, StateError> {
        Ok(decode_at::<pb::Account>(view, &StateKey::account(account))?.map(|a| a.next_nonce))
    }

    /// The accounts whose nonce a write set changes, with their new next nonce (`None`:
    /// deleted), so that the node's admission cache follows execution.
    fn nonce_changes(&self, writes: &WriteSet) -> Vec<(PublicKey, Option<u64>)> {
        account_nonce_changes(writes)
    }

    /// The committee the block ending `ending` names for the next epoch; `None` while it is not
    /// decided yet (the epoch then goes on). The beacon decides every chain's committee; a
    /// shard holds the beacon's decision, carried in by a certified update.
    fn next_committee(
        &self,
        view: &dyn StateView,
        ending: &EpochState,
    ) -> Result<Option<Committee>, StateError>;

    /// Whether anyone may read the chain (the beacon's registry); otherwise only callers that
    /// prove they speak for an account [`Application::may_read`] accepts (a shard's members).
    fn public(&self) -> bool {
        false
    }

    /// Whether `account` may read a chain that is not public: a registered account of a
    /// member org (the account layout both applications share, role `member`).
    fn may_read(&self, view: &dyn StateView, account: &PublicKey) -> Result<bool, StateError> {
        Ok(decode_at::<pb::Account>(view, &StateKey::account(account))?
            .is_some_and(|a| a.role() == pb::Role::Member))
    }

    /// What the chain follows of the beacon (`None`: nothing, as for the beacon itself), given
    /// its own state and the beacon's certified state. A relay carries those keys' values in.
    fn beacon_follow(
        &self,
        _own: &dyn StateView,
        _beacon: &dyn StateView,
    ) -> Result<Option<BeaconFollow>, StateError> {
        Ok(None)
    }

    /// The action bytes of a certified update carrying `values` (proven against the state the
    /// first of `headers` commits to); `None` where the chain takes no updates.
    fn certified_update_action(
        &self,
        _headers: Vec<trellis_consensus::BlockHeader>,
        _commit_qc: trellis_consensus::QuorumCert,
        _epoch_changes: Vec<trellis_consensus::EpochChangeProof>,
        _values: Vec<trellis_types::ProvenValue>,
    ) -> Option<Vec<u8>> {
        None
    }

    /// The read routes the node mounts for this chain.
    fn routes(&self) -> &'static [ReadRoute];

    /// Answers the read route whose pattern is `route` (one of [`Application::routes`]) as JSON.
    fn read(
        &self,
        route: &str,
        args: &ReadArgs,
        view: &dyn StateView,
    ) -> Result<serde_json::Value, ReadError>;

    /// The OpenAPI description of the read routes, paths relative to the chain's root.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The state key a proof may be asked for under `namespace`/`id` (`anchor`/digest hex...).
    fn proof_key(&self, namespace: &str, id: &str) -> Result<StateKey, ReadError>;
}

/// Nonce changes in the account layout both applications share (`acct/` ‖ key → `Account`).
pub fn account_nonce_changes(writes: &WriteSet) -> Vec<(PublicKey, Option<u64>)> {
    let mut out = Vec::new();
    for (key, value) in writes {
        let Some(rest) = key.as_bytes().strip_prefix(b"acct/") else {
            continue;
        };
        let Ok(bytes) = <[u8; 32]>::try_from(rest) else {
            continue;
        };
        let nonce = value
            .as_deref()
            .and_then(|v| <pb::Account as prost::Message>::decode(v).ok())
            .map(|a| a.next_nonce);
        out.push((PublicKey(bytes), nonce));
    }
    out
}

/// Parses 32 bytes of hex in a path or query parameter.
pub fn hex32(s: &str, field: &'static str) -> Result<[u8; 32], ReadError> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(ReadError::BadParam {
            field,
            reason: "must be 32 bytes of hex".into(),
        })
}
