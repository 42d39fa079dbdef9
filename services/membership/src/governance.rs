//! Governance routes: read the beacon's proposals and members, and relay proposals and votes
//! that member admins (or operators) signed themselves.
//!
//! The service never signs governance transactions and does not re-implement the beacon's
//! rules (who may vote, thresholds, expiry): it checks the caller, the shape of the
//! transaction and that its sender acts for the caller's org, submits it, waits for the
//! block that decides it, and answers with the beacon's decision. Beacon rejections map to:
//!
//! | `reason_code` | status |
//! |---|---|
//! | `role-not-allowed`, `not-a-member`, `unknown-account` | 403 |
//! | `already-member`, `key-in-use`, `proposal-open`, `last-member`, `no-attestation`, `unknown-member` | 409 (the chain's state conflicts; retrying later may succeed) |
//! | `bad-parameter` | 422, field `tx` (the value can never pass) |
//! | `already-voted`, `proposal-expired`, `proposal-closed`, `bad-nonce` | 409 |
//! | `unknown-proposal` | 404 |
//!
//! The problem's `type` ends in the beacon's code, so clients can tell the cases apart.

use crate::MembershipService;
use crate::ca::CertState;
use crate::chain::{self, Fate, MemberView, ProposalList, ProposalView};
use crate::store;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use trellis_servicekit::{ApiResult, Caller, JsonBody, Problem, Role, now_ms};
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{BeaconAction, Transaction};
use utoipa::{IntoParams, ToSchema};

pub(crate) fn router() -> Router<MembershipService> {
    Router::new()
        .route(
            "/v1/governance/proposals",
            get(list_proposals).post(submit_proposal),
        )
        .route("/v1/governance/proposals/{id}", get(get_proposal))
        .route("/v1/governance/proposals/{id}/votes", post(submit_vote))
        .route("/v1/members", get(list_members))
}

/// A transaction signed by the caller's own chain account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedTx {
    /// Hex of the protobuf `SignedTransaction` bytes.
    #[schema(max_length = 131072)]
    pub tx: String,
}

/// A signed transaction, parsed once: decoded, for this chain, signature verified.
/// A signed beacon transaction with its parsed action.
struct RelayedTx(Transaction, BeaconAction);

impl RelayedTx {
    fn parse(hex_tx: &str, chain_id: &str) -> Result<RelayedTx, Problem> {
        let bytes = hex::decode(hex_tx.trim())
            .map_err(|_| Problem::bad_request("tx", "not hex of a signed transaction"))?;
        let tx = Transaction::decode(&bytes, DEFAULT_MAX_TX_BYTES)
            .map_err(|e| Problem::bad_request("tx", format!("not a signed transaction: {e}")))?;
        if tx.chain_id() != chain_id {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong-chain",
                format!("the transaction is for chain `{}`", tx.chain_id()),
            )
            .with_field("tx"));
        }
        let action = BeaconAction::decode(tx.action())
            .map_err(|e| Problem::bad_request("tx", format!("not a beacon transaction: {e}")))?;
        tx.verify_signature().map_err(|_| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-signature",
                "the transaction's signature does not verify",
            )
            .with_field("tx")
        })?;
        Ok(RelayedTx(tx, action))
    }
}

/// 403 unless the transaction's sender is a chain account the caller may relay for: an
/// account of the caller's org (enterprise admins), or an operator account (operators).
async fn check_sender(svc: &MembershipService, caller: &Caller, tx: &Transaction) -> ApiResult<()> {
    let key = hex::encode(tx.sender().0);
    let account = chain::account(&svc.inner.node, &key)
        .await
        .map_err(chain::node_problem)?
        .ok_or_else(|| Problem::forbidden("the transaction's sender is not a chain account"))?;
    let allowed = match caller.role {
        Role::Operator => account.role == "operator",
        Role::EnterpriseAdmin => caller.org.as_deref() == Some(account.org.as_str()),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "the transaction's sender is not an account of the caller's organisation",
        ))
    }
}

/// Submits and waits; `Ok` with the committed proposal id, or the beacon's rejection mapped.
async fn relay(svc: &MembershipService, tx: &Transaction) -> ApiResult<Option<u64>> {
    let node = &svc.inner.node;
    let hash = node
        .submit(tx.encoded())
        .await
        .map_err(chain::admission_problem)?;
    match chain::decide(node, &hash, svc.inner.config.chain_wait)
        .await
        .map_err(chain::node_problem)?
    {
        Fate::Committed { proposal_id, .. } => Ok(proposal_id),
        Fate::Rejected { code, reason } => Err(rejection_problem(&code, &reason)),
    }
}

/// A beacon rejection of a relayed governance transaction (see the module table).
fn rejection_problem(code: &str, reason: &str) -> Problem {
    let status = match code {
        "role-not-allowed" | "not-a-member" | "unknown-account" => StatusCode::FORBIDDEN,
        "already-member" | "key-in-use" | "proposal-open" | "last-member" | "no-attestation"
        | "unknown-member" | "already-voted" | "proposal-expired" | "proposal-closed"
        | "bad-nonce" => StatusCode::CONFLICT,
        "bad-parameter" => {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, reason).with_field("tx");
        }
        "unknown-proposal" => StatusCode::NOT_FOUND,
        _ => {
            return Problem::internal(format!(
                "beacon rejected a relayed transaction: {code}: {reason}"
            ));
        }
    };
    Problem::new(status, code, reason)
}

/// The proposal a committed transaction opened or voted on, as the node shows it now.
async fn proposal_after(svc: &MembershipService, id: Option<u64>) -> ApiResult<ProposalView> {
    let id = id.ok_or_else(|| Problem::internal("committed governance tx without proposal id"))?;
    chain::proposal(&svc.inner.node, id)
        .await
        .map_err(chain::node_problem)?
        .ok_or_else(|| Problem::internal(format!("proposal {id} committed but not found")))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProposalQuery {
    /// Only proposals with this status: `open`, `passed`, `rejected` or `expired`.
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// Governance proposals on the beacon, newest first. Any authenticated role.
#[utoipa::path(get, path = "/v1/governance/proposals", tag = "governance", params(ProposalQuery),
    responses((status = 200, body = ProposalList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn list_proposals(
    State(svc): State<MembershipService>,
    _caller: Caller,
    Query(q): Query<ProposalQuery>,
) -> ApiResult<Json<ProposalList>> {
    let mut path = "/v1/governance/proposals?".to_string();
    if let Some(status) = &q.status {
        if !["open", "passed", "rejected", "expired"].contains(&status.as_str()) {
            return Err(Problem::bad_request(
                "status",
                "status must be open, passed, rejected or expired",
            ));
        }
        path.push_str(&format!("status={status}&"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    path.push_str(&format!("limit={limit}"));
    let list = chain::get_required(&svc.inner.node, &path)
        .await
        .map_err(chain::node_problem)?;
    Ok(Json(list))
}

/// Parses a proposal number from the path.
fn proposal_id(raw: &str) -> ApiResult<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Problem::bad_request("id", "expected a proposal number"))
}

/// One proposal with its votes. Any authenticated role.
#[utoipa::path(get, path = "/v1/governance/proposals/{id}", tag = "governance",
    params(("id" = u64, Path, description = "Proposal number")),
    responses((status = 200, body = ProposalView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn get_proposal(
    State(svc): State<MembershipService>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ProposalView>> {
    let id = proposal_id(&id)?;
    chain::proposal(&svc.inner.node, id)
        .await
        .map_err(chain::node_problem)?
        .map(Json)
        .ok_or_else(|| Problem::not_found("unknown-proposal", "no such proposal").with_field("id"))
}

/// Relays a signed `Propose` transaction (admit or remove a member, change a parameter) and
/// waits for its block. Roles `enterprise_admin` (sender: an account of the caller's org) and
/// `operator` (sender: an operator account).
#[utoipa::path(post, path = "/v1/governance/proposals", tag = "governance", request_body = SignedTx,
    responses((status = 201, body = ProposalView, description = "The proposal as opened"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem),
        (status = 504, body = Problem)))]
pub(crate) async fn submit_proposal(
    State(svc): State<MembershipService>,
    caller: Caller,
    JsonBody(body): JsonBody<SignedTx>,
) -> ApiResult<(StatusCode, Json<ProposalView>)> {
    caller.require(&[Role::EnterpriseAdmin, Role::Operator])?;
    let RelayedTx(tx, action) = RelayedTx::parse(&body.tx, &svc.inner.config.chain_id)?;
    if !matches!(action, BeaconAction::Propose(_)) {
        return Err(Problem::unprocessable(
            "tx",
            "the transaction does not open a proposal",
        ));
    }
    check_sender(&svc, &caller, &tx).await?;
    let id = relay(&svc, &tx).await?;
    let view = proposal_after(&svc, id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Relays a signed `Vote` on proposal `id` and waits for its block. Role `enterprise_admin`;
/// the sender must be an account of the caller's org. A refused vote changes nothing.
#[utoipa::path(post, path = "/v1/governance/proposals/{id}/votes", tag = "governance",
    params(("id" = u64, Path, description = "Proposal number")), request_body = SignedTx,
    responses((status = 200, body = ProposalView, description = "The proposal after the vote"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem), (status = 504, body = Problem)))]
pub(crate) async fn submit_vote(
    State(svc): State<MembershipService>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SignedTx>,
) -> ApiResult<Json<ProposalView>> {
    caller.require(&[Role::EnterpriseAdmin])?;
    let id = proposal_id(&id)?;
    let RelayedTx(tx, action) = RelayedTx::parse(&body.tx, &svc.inner.config.chain_id)?;
    match action {
        BeaconAction::Vote { proposal_id, .. } if proposal_id == id => {}
        BeaconAction::Vote { proposal_id, .. } => {
            return Err(Problem::unprocessable(
                "tx",
                format!("the transaction votes on proposal {proposal_id}, not {id}"),
            ));
        }
        _ => {
            return Err(Problem::unprocessable(
                "tx",
                "the transaction is not a vote",
            ));
        }
    }
    check_sender(&svc, &caller, &tx).await?;
    precheck_vote(&svc, &caller, id).await?;
    let voted_on = relay(&svc, &tx).await?;
    Ok(Json(proposal_after(&svc, voted_on.or(Some(id))).await?))
}

/// Refuses a vote the beacon would refuse as things stand (unknown, decided or expired
/// proposal; the org already voted) before it is submitted, so such a vote never reaches the
/// chain, not even to consume the sender's nonce. The beacon still decides: a vote that races
/// past this check is refused there with the same code.
async fn precheck_vote(svc: &MembershipService, caller: &Caller, id: u64) -> ApiResult<()> {
    let proposal = chain::proposal(&svc.inner.node, id)
        .await
        .map_err(chain::node_problem)?
        .ok_or_else(|| {
            rejection_problem("unknown-proposal", &format!("proposal {id} does not exist"))
        })?;
    match proposal.status.as_str() {
        "open" => {}
        "expired" => {
            return Err(rejection_problem(
                "proposal-expired",
                &format!(
                    "proposal {id} expired at height {}",
                    proposal.expires_height
                ),
            ));
        }
        _ => {
            return Err(rejection_problem(
                "proposal-closed",
                &format!("proposal {id} is already decided"),
            ));
        }
    }
    if let Some(org) = &caller.org
        && proposal.yes.iter().chain(&proposal.no).any(|o| o == org)
    {
        return Err(rejection_problem(
            "already-voted",
            &format!("org {org} already voted on this proposal"),
        ));
    }
    Ok(())
}

/// An org's current certificate, as listed with the members.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct MemberCertificate {
    /// Serial (hex).
    pub serial: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// `fresh`, `renewal_due`, `alert` or `expired`, now.
    #[schema(value_type = String)]
    pub state: CertState,
}

/// A member org on the beacon with its current org certificate, if it has one.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    pub org: String,
    /// `active` or `removed`.
    pub status: String,
    /// The org's account keys (hex); the first is the one its certificate certifies.
    pub keys: Vec<String>,
    pub admitted_height: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
    pub certificate: Option<MemberCertificate>,
}

/// `GET /v1/members`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MembersResponse {
    /// The beacon height the member list was read at.
    pub height: u64,
    pub members: Vec<MemberEntry>,
}

/// Every org that was ever a member, with its status and current certificate. Any
/// authenticated role.
#[utoipa::path(get, path = "/v1/members", tag = "governance",
    responses((status = 200, body = MembersResponse), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub(crate) async fn list_members(
    State(svc): State<MembershipService>,
    _caller: Caller,
) -> ApiResult<Json<MembersResponse>> {
    let list = chain::members(&svc.inner.node)
        .await
        .map_err(chain::node_problem)?;
    let mut current: HashMap<String, store::CertRow> = store::active_certificates(&svc.inner.db)
        .await?
        .into_iter()
        .map(|c| (c.org.clone(), c))
        .collect();
    let now = now_ms();
    let policy = svc.inner.config.policy;
    let members = list
        .members
        .into_iter()
        .map(|m: MemberView| {
            let certificate = current.remove(&m.org).map(|c| MemberCertificate {
                state: policy.state(c.not_after_ms, now),
                serial: c.serial_hex,
                not_before_ms: c.not_before_ms,
                not_after_ms: c.not_after_ms,
            });
            MemberEntry {
                org: m.org,
                status: m.status,
                keys: m.keys,
                admitted_height: m.admitted_height,
                removed_height: m.removed_height,
                proposal_id: m.proposal_id,
                certificate,
            }
        })
        .collect();
    Ok(Json(MembersResponse {
        height: list.height,
        members,
    }))
}
