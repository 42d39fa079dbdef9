//! The beacon as this service sees it through a node's client API: the registry views (the
//! JSON shapes of `services/node/src/registry.rs` and `api.rs`, mirrored here because services
//! do not depend on the node crate), typed reads, and submitting a signed transaction and
//! learning its fate with the beacon's stable rejection code.

use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use trellis_servicekit::{NodeClient, NodeError, Problem, TxOutcome};
use utoipa::ToSchema;

/// A member org on the beacon (`GET /v1/members/{org}` of the node).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub org: String,
    /// `active` or `removed`.
    pub status: String,
    /// The org's account keys (hex). An admitted org has exactly one, its org key.
    pub keys: Vec<String>,
    pub admitted_height: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_height: Option<u64>,
    /// The proposal that admitted (or removed) it; absent for genesis members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
}

impl MemberView {
    /// Whether the org is an active member.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// The key the org certificate certifies: the org's first account key (the org key of an
    /// admitted org; the first member account of a genesis org).
    pub fn org_key(&self) -> Option<[u8; 32]> {
        let first = self.keys.first()?;
        hex::decode(first).ok()?.try_into().ok()
    }
}

/// `GET /v1/members` of the node.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MemberList {
    /// The executed height the answer was read at.
    pub height: u64,
    pub members: Vec<MemberView>,
}

/// A governance proposal with its votes (`GET /v1/governance/proposals/{id}` of the node).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ProposalView {
    pub id: u64,
    /// `admit_member`, `remove_member` or `set_parameter`.
    pub kind: String,
    /// The org admitted or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The org key to admit (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The proposer's account key (hex).
    pub proposer: String,
    /// `open`, `passed`, `rejected` or `expired`.
    pub status: String,
    pub created_height: u64,
    /// The last height whose block may still carry a vote.
    pub expires_height: u64,
    /// Active members at the last vote (at opening before any vote).
    pub electorate: u64,
    pub approval_num: u32,
    pub approval_den: u32,
    /// Yes-votes needed to pass.
    pub needed: u64,
    /// Orgs that voted yes.
    pub yes: Vec<String>,
    /// Orgs that voted no.
    pub no: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_height: Option<u64>,
}

/// `GET /v1/governance/proposals` of the node: newest first.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProposalList {
    pub height: u64,
    pub proposals: Vec<ProposalView>,
}

/// One entry of the beacon's certificate revocation list.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct RevocationView {
    /// Certificate serial (hex, big-endian, no leading zero byte).
    pub serial: String,
    /// RFC 5280 CRLReason code.
    pub reason: u32,
    pub height: u64,
    /// The revoking operator account (hex).
    pub revoker: String,
}

/// `GET /v1/revocations` of the node: every revoked serial, sorted.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RevocationListView {
    pub height: u64,
    pub revocations: Vec<RevocationView>,
}

/// `GET /v1/accounts/{key}` of the node.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct AccountView {
    pub org: String,
    /// `member`, `operator`, `regulator` or `bank`.
    pub role: String,
    #[allow(dead_code)] // part of the shape; nonces are read with `NodeClient::next_nonce`
    pub next_nonce: u64,
}

/// `GET /v1/transactions/{hash}` of the node.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct TxStatusView {
    /// `pending`, `committed` or `rejected`.
    pub status: String,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The beacon's stable rejection code (`already-voted`, `bad-nonce`, ...).
    #[serde(default)]
    pub reason_code: Option<String>,
    /// The proposal the transaction opened or voted on.
    #[serde(default)]
    pub proposal_id: Option<u64>,
}

/// How the beacon decided a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Committed {
        height: u64,
        proposal_id: Option<u64>,
    },
    Rejected {
        /// The beacon's rejection code (`Rejection::code`); empty if the node gave none.
        code: String,
        reason: String,
    },
}

/// `GET {path}` as `T`; `None` on 404.
pub(crate) async fn get<T: DeserializeOwned>(
    node: &NodeClient,
    path: &str,
) -> Result<Option<T>, NodeError> {
    match node.get_json(path).await? {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| NodeError::BadResponse(format!("{path}: {e}"))),
    }
}

/// `GET {path}` as `T`, where a 404 is itself a bad answer (lists always exist).
pub(crate) async fn get_required<T: DeserializeOwned>(
    node: &NodeClient,
    path: &str,
) -> Result<T, NodeError> {
    get(node, path)
        .await?
        .ok_or_else(|| NodeError::BadResponse(format!("{path}: not found")))
}

/// One page of the node's `GET /v1/members`.
#[derive(Deserialize)]
struct MemberPage {
    height: u64,
    members: Vec<MemberView>,
    #[serde(default)]
    next: Option<String>,
}

/// Every member org, page after page (org ids are URL-safe: `A-Z a-z 0-9 . _ -`). The answer's
/// height is the last page's.
pub(crate) async fn members(node: &NodeClient) -> Result<MemberList, NodeError> {
    let mut list = MemberList {
        height: 0,
        members: Vec::new(),
    };
    let mut path = "/v1/members?limit=1000".to_string();
    loop {
        let page: MemberPage = get_required(node, &path).await?;
        list.height = page.height;
        list.members.extend(page.members);
        match page.next {
            Some(after) => path = format!("/v1/members?limit=1000&after={after}"),
            None => return Ok(list),
        }
    }
}

pub(crate) async fn revocations(node: &NodeClient) -> Result<RevocationListView, NodeError> {
    get_required(node, "/v1/revocations").await
}

pub(crate) async fn proposal(
    node: &NodeClient,
    id: u64,
) -> Result<Option<ProposalView>, NodeError> {
    get(node, &format!("/v1/governance/proposals/{id}")).await
}

pub(crate) async fn account(
    node: &NodeClient,
    key_hex: &str,
) -> Result<Option<AccountView>, NodeError> {
    get(node, &format!("/v1/accounts/{key_hex}")).await
}

pub(crate) async fn tx_status(
    node: &NodeClient,
    hash: &str,
) -> Result<Option<TxStatusView>, NodeError> {
    get(node, &format!("/v1/transactions/{hash}")).await
}

/// Waits for `hash` to be decided (up to `timeout`) and reads the decision's details: the
/// rejection code and the proposal id, which [`NodeClient::wait`] does not report.
pub(crate) async fn decide(
    node: &NodeClient,
    hash: &str,
    timeout: Duration,
) -> Result<Fate, NodeError> {
    let outcome = node.wait(hash, timeout).await?;
    let status = tx_status(node, hash).await?;
    Ok(match outcome {
        TxOutcome::Committed { height } => Fate::Committed {
            height,
            proposal_id: status.and_then(|s| s.proposal_id),
        },
        TxOutcome::Rejected { reason } => Fate::Rejected {
            code: status.and_then(|s| s.reason_code).unwrap_or_default(),
            reason,
        },
    })
}

/// A node failure as the answer to an API caller: an unreachable node is a 503, a transaction
/// not decided in time a 504 naming its hash (it may still commit); anything else is ours.
pub(crate) fn node_problem(e: NodeError) -> Problem {
    match e {
        NodeError::Unreachable(err) => {
            tracing::warn!(error = %err, "chain node unreachable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node-unavailable",
                "the chain node cannot be reached; retry later",
            )
        }
        NodeError::Timeout { hash, waited } => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "chain-timeout",
            format!(
                "transaction {hash} was submitted but not decided within {} s; \
                 it may still commit: look it up by its hash",
                waited.as_secs()
            ),
        ),
        other => Problem::internal(other),
    }
}

/// The node's pool refusing a relayed transaction, as the answer to the caller who signed it.
pub(crate) fn admission_problem(e: NodeError) -> Problem {
    match e {
        NodeError::Rejected { kind, detail, .. } => {
            let status = match kind.as_str() {
                "nonce-used" | "nonce-too-far-ahead" => StatusCode::CONFLICT,
                "bad-signature" | "malformed-transaction" | "wrong-chain" | "tx-too-large" => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                "unknown-account" => StatusCode::FORBIDDEN,
                "pool-full" => StatusCode::SERVICE_UNAVAILABLE,
                _ => {
                    return Problem::internal(format!(
                        "node refused a transaction: {kind}: {detail}"
                    ));
                }
            };
            Problem::new(status, &kind, detail).with_field("tx")
        }
        other => node_problem(other),
    }
}
