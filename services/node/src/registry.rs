//! Read endpoints over the beacon registry: member orgs, identity attestations, governance
//! parameters and proposals, certificate revocations. Services (membership, identity, the
//! consortium CA) read the chain through these, never through the store. Everything served
//! here is already public beacon state: org ids, keys, hashes and salted commitments.

use crate::chain::ChainShared;
use crate::problem::{Problem, read_state};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use trellis_ledger::beacon::{
    proposal_standing, read_attestation, read_governance, read_last_proposal_id, read_member,
    read_member_index, read_proposal, read_revocations,
};
use trellis_types::PublicKey;
use trellis_types::pb::{self, MemberStatus};
use utoipa::{OpenApi, ToSchema};

type St = State<Arc<ChainShared>>;

pub fn router(chain: Arc<ChainShared>) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/members/{org}", get(member))
        .route("/v1/attestations/{key}", get(attestation))
        .route("/v1/governance/params", get(params))
        .route("/v1/governance/proposals", get(proposals))
        .route("/v1/governance/proposals/{id}", get(proposal))
        .route("/v1/revocations", get(revocations))
        .with_state(chain)
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub org: String,
    /// `active` or `removed`.
    pub status: String,
    /// The org's account keys (hex).
    pub keys: Vec<String>,
    pub admitted_height: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_height: Option<u64>,
    /// The proposal that admitted (or removed) it; absent for genesis members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
}

fn member_view(m: &pb::Member) -> MemberView {
    MemberView {
        org: m.org.clone(),
        status: match m.status() {
            MemberStatus::Active => "active",
            _ => "removed",
        }
        .into(),
        keys: m.keys.iter().map(hex::encode).collect(),
        admitted_height: m.admitted_height,
        removed_height: (m.removed_height > 0).then_some(m.removed_height),
        proposal_id: (m.proposal_id > 0).then_some(m.proposal_id),
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct MemberList {
    /// The executed height the answer was read at.
    pub height: u64,
    pub members: Vec<MemberView>,
}

/// Every org that was ever a member, with its status.
#[utoipa::path(get, path = "/v1/members", responses((status = 200, body = MemberList)))]
async fn members(State(chain): St) -> Result<Json<MemberList>, Problem> {
    let (members, height) = read_state(&chain, |state| {
        read_member_index(state)
            .orgs
            .iter()
            .filter_map(|o| read_member(state, o))
            .map(|m| member_view(&m))
            .collect()
    })?;
    Ok(Json(MemberList { height, members }))
}

/// One member org.
#[utoipa::path(get, path = "/v1/members/{org}", params(("org" = String, Path)),
    responses((status = 200, body = MemberView), (status = 404, body = Problem)))]
async fn member(State(chain): St, Path(org): Path<String>) -> Result<Json<MemberView>, Problem> {
    read_state(&chain, |state| read_member(state, &org))?
        .0
        .map(|m| Json(member_view(&m)))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-member",
                "no such member org",
            )
            .field("org")
        })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct AttestationView {
    pub subject_key: String,
    /// Salted SHA-256 commitment to the verified identity (hex).
    pub commitment: String,
    pub level: u32,
    /// The verifier's account key (hex).
    pub verifier: String,
    pub height: u64,
    pub tx_hash: String,
}

/// The identity attestation recorded for an org key.
#[utoipa::path(get, path = "/v1/attestations/{key}", params(("key" = String, Path)),
    responses((status = 200, body = AttestationView), (status = 404, body = Problem)))]
async fn attestation(
    State(chain): St,
    Path(key): Path<String>,
) -> Result<Json<AttestationView>, Problem> {
    let k = parse_key(&key)?;
    let (a, _) = read_state(&chain, |state| read_attestation(state, &k))?;
    let a = a.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-attestation",
            "no attestation for this key",
        )
        .field("key")
    })?;
    Ok(Json(AttestationView {
        subject_key: key.to_lowercase(),
        commitment: hex::encode(&a.commitment),
        level: a.level,
        verifier: hex::encode(&a.verifier),
        height: a.height,
        tx_hash: hex::encode(&a.tx_hash),
    }))
}

fn parse_key(s: &str) -> Result<PublicKey, Problem> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PublicKey)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-path",
                "expected 32 bytes of hex",
            )
            .field("key")
        })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct GovernanceParamsView {
    pub approval_num: u32,
    pub approval_den: u32,
    pub proposal_ttl_blocks: u64,
    /// Members active now.
    pub active_members: u64,
}

/// Governance parameters in force.
#[utoipa::path(get, path = "/v1/governance/params",
    responses((status = 200, body = GovernanceParamsView)))]
async fn params(State(chain): St) -> Result<Json<GovernanceParamsView>, Problem> {
    let ((g, active), _) = read_state(&chain, |state| {
        let active = read_member_index(state)
            .orgs
            .iter()
            .filter_map(|o| read_member(state, o))
            .filter(|m| m.status() == MemberStatus::Active)
            .count() as u64;
        (read_governance(state), active)
    })?;
    Ok(Json(GovernanceParamsView {
        approval_num: g.approval_num,
        approval_den: g.approval_den,
        proposal_ttl_blocks: g.proposal_ttl_blocks,
        active_members: active,
    }))
}

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
    pub yes: Vec<String>,
    pub no: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_height: Option<u64>,
}

fn proposal_view(p: &pb::GovernanceProposal, executed: u64) -> ProposalView {
    use pb::governance_proposal::Kind;
    let (kind, org, org_key, parameter, value) = match &p.kind {
        Some(Kind::AdmitMember(a)) => (
            "admit_member",
            Some(a.org.clone()),
            Some(hex::encode(&a.org_key)),
            None,
            None,
        ),
        Some(Kind::RemoveMember(r)) => ("remove_member", Some(r.org.clone()), None, None, None),
        Some(Kind::SetParameter(s)) => (
            "set_parameter",
            None,
            None,
            Some(s.name.clone()),
            Some(s.value.clone()),
        ),
        None => ("unknown", None, None, None, None),
    };
    let (num, den) = (
        u128::from(p.approval_num),
        u128::from(p.approval_den.max(1)),
    );
    let needed = (num * u128::from(p.electorate)).div_ceil(den) as u64;
    ProposalView {
        id: p.id,
        kind: kind.into(),
        org,
        org_key,
        parameter,
        value,
        proposer: hex::encode(&p.proposer),
        // The next block is the first that could still carry a vote.
        status: proposal_standing(p, executed + 1).into(),
        created_height: p.created_height,
        expires_height: p.expires_height,
        electorate: p.electorate,
        approval_num: p.approval_num,
        approval_den: p.approval_den,
        needed,
        yes: p.yes.clone(),
        no: p.no.clone(),
        decided_height: (p.decided_height > 0).then_some(p.decided_height),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ProposalQuery {
    /// Only proposals with this status.
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProposalList {
    pub height: u64,
    pub proposals: Vec<ProposalView>,
}

/// Governance proposals, newest first.
#[utoipa::path(get, path = "/v1/governance/proposals", params(ProposalQuery),
    responses((status = 200, body = ProposalList), (status = 400, body = Problem)))]
async fn proposals(
    State(chain): St,
    Query(q): Query<ProposalQuery>,
) -> Result<Json<ProposalList>, Problem> {
    if let Some(s) = &q.status
        && !["open", "passed", "rejected", "expired"].contains(&s.as_str())
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "status must be open, passed, rejected or expired",
        )
        .field("status"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (proposals, height) = read_state(&chain, |state| {
        let mut out = Vec::new();
        let mut id = read_last_proposal_id(state);
        while id > 0 && out.len() < limit {
            if let Some(p) = read_proposal(state, id) {
                let view = proposal_view(&p, state.version);
                if q.status.as_deref().is_none_or(|s| s == view.status) {
                    out.push(view);
                }
            }
            id -= 1;
        }
        out
    })?;
    Ok(Json(ProposalList { height, proposals }))
}

/// One governance proposal with its votes.
#[utoipa::path(get, path = "/v1/governance/proposals/{id}", params(("id" = u64, Path)),
    responses((status = 200, body = ProposalView), (status = 404, body = Problem)))]
async fn proposal(State(chain): St, Path(id): Path<String>) -> Result<Json<ProposalView>, Problem> {
    let id: u64 = id.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-path",
            "expected a proposal number",
        )
        .field("id")
    })?;
    let (found, height) = read_state(&chain, |state| read_proposal(state, id))?;
    found
        .map(|p| Json(proposal_view(&p, height)))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-proposal",
                "no such proposal",
            )
            .field("id")
        })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct RevocationView {
    /// Certificate serial (hex, big-endian).
    pub serial: String,
    /// RFC 5280 CRLReason code.
    pub reason: u32,
    pub height: u64,
    pub revoker: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RevocationListView {
    pub height: u64,
    pub revocations: Vec<RevocationView>,
}

/// Every certificate revoked on the beacon, sorted by serial.
#[utoipa::path(get, path = "/v1/revocations",
    responses((status = 200, body = RevocationListView)))]
async fn revocations(State(chain): St) -> Result<Json<RevocationListView>, Problem> {
    let (list, height) = read_state(&chain, |state| read_revocations(state))?;
    Ok(Json(RevocationListView {
        height,
        revocations: list
            .entries
            .iter()
            .map(|e| RevocationView {
                serial: hex::encode(&e.serial),
                reason: e.reason,
                height: e.height,
                revoker: hex::encode(&e.revoker),
            })
            .collect(),
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(members, member, attestation, params, proposals, proposal, revocations),
    components(schemas(
        MemberView,
        MemberList,
        AttestationView,
        GovernanceParamsView,
        ProposalView,
        ProposalList,
        RevocationView,
        RevocationListView
    ))
)]
pub struct RegistryDoc;
