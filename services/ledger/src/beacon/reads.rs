//! The beacon's read routes: member orgs, accounts, identity attestations, governance
//! parameters and proposals, certificate revocations, committees. Everything served here is
//! public beacon state (org ids, keys, hashes and salted commitments); services read the chain
//! through these, never through a node's store.

use super::app::read_committee;
use super::{
    proposal_standing, read_account, read_attestation, read_governance, read_last_proposal_id,
    read_member, read_member_index, read_proposal, read_revocations,
};
use crate::app::{Access, ReadArgs, ReadError, ReadRoute, hex32};
use crate::state::StateView;
use serde::{Deserialize, Serialize};
use trellis_types::PublicKey;
use trellis_types::pb::{self, MemberStatus};
use utoipa::{OpenApi, ToSchema};

pub(super) const ROUTES: &[ReadRoute] = &[
    ReadRoute {
        path: "/members",
        access: Access::Public,
    },
    ReadRoute {
        path: "/members/{org}",
        access: Access::Public,
    },
    ReadRoute {
        path: "/accounts/{key}",
        access: Access::Public,
    },
    ReadRoute {
        path: "/attestations/{key}",
        access: Access::Public,
    },
    ReadRoute {
        path: "/governance/params",
        access: Access::Public,
    },
    ReadRoute {
        path: "/governance/proposals",
        access: Access::Public,
    },
    ReadRoute {
        path: "/governance/proposals/{id}",
        access: Access::Public,
    },
    ReadRoute {
        path: "/revocations",
        access: Access::Public,
    },
    ReadRoute {
        path: "/committees/{chain}",
        access: Access::Public,
    },
];

pub(super) fn read(
    route: &str,
    args: &ReadArgs,
    view: &dyn StateView,
) -> Result<serde_json::Value, ReadError> {
    fn json(v: impl Serialize) -> Result<serde_json::Value, ReadError> {
        // Plain structs of strings and numbers: serialisation cannot fail.
        Ok(serde_json::to_value(v).unwrap_or_default())
    }
    match route {
        "/members" => json(members(view, args)?),
        "/members/{org}" => json(member(view, args)?),
        "/accounts/{key}" => json(account(view, args)?),
        "/attestations/{key}" => json(attestation(view, args)?),
        "/governance/params" => json(params(view, args)?),
        "/governance/proposals" => json(proposals(view, args)?),
        "/governance/proposals/{id}" => json(proposal(view, args)?),
        "/revocations" => json(revocations(view, args)?),
        "/committees/{chain}" => json(committee(view, args)?),
        _ => Err(ReadError::NotFound {
            kind: "not-found",
            field: "path",
            detail: "no such route",
        }),
    }
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
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Every org that was ever a member, with its status, in org id order; paginated.
#[utoipa::path(get, path = "/members",
    params(("after" = Option<String>, Query, description = "Org ids after this one"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, body = MemberList), (status = 400, description = "bad query")))]
fn members(view: &dyn StateView, args: &ReadArgs) -> Result<MemberList, ReadError> {
    let limit = args.limit(100, 1000)?;
    let after = args.query("after");
    let index = read_member_index(view)?;
    let mut members = Vec::new();
    let mut next = None;
    for org in index
        .orgs
        .iter()
        .filter(|o| after.is_none_or(|a| o.as_str() > a))
    {
        if members.len() == limit {
            next = members.last().map(|m: &MemberView| m.org.clone());
            break;
        }
        let m = read_member(view, org)?.ok_or_else(|| {
            crate::state::StateError::Corrupt(crate::state::StateKey::member(org).to_string())
        })?;
        members.push(member_view(&m));
    }
    Ok(MemberList {
        height: args.height,
        members,
        next,
    })
}

/// One member org.
#[utoipa::path(get, path = "/members/{org}", params(("org" = String, Path)),
    responses((status = 200, body = MemberView), (status = 404, description = "no such member org")))]
fn member(view: &dyn StateView, args: &ReadArgs) -> Result<MemberView, ReadError> {
    let org = args.path("org")?;
    read_member(view, org)?
        .map(|m| member_view(&m))
        .ok_or(ReadError::NotFound {
            kind: "unknown-member",
            field: "org",
            detail: "no such member org",
        })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub public_key: String,
    pub org: String,
    /// `member`, `operator`, `regulator`, `bank`, or `unspecified` for an account whose org was
    /// removed.
    pub role: String,
    pub next_nonce: u64,
}

/// Renders an account record (the layout every application shares).
pub fn account_view(key: &PublicKey, acct: &pb::Account) -> AccountView {
    AccountView {
        public_key: hex::encode(key.0),
        org: acct.org.clone(),
        role: format!("{:?}", acct.role()).to_lowercase(),
        next_nonce: acct.next_nonce,
    }
}

/// A registered account as of the last executed block: its org, role and next nonce.
#[utoipa::path(get, path = "/accounts/{key}", params(("key" = String, Path, pattern = "^[0-9a-fA-F]{64}$")),
    responses((status = 200, body = AccountView), (status = 400, description = "not a key"),
        (status = 404, description = "no such account")))]
pub(crate) fn account(view: &dyn StateView, args: &ReadArgs) -> Result<AccountView, ReadError> {
    let key = PublicKey(hex32(args.path("key")?, "key")?);
    read_account(view, &key)?
        .map(|a| account_view(&key, &a))
        .ok_or(ReadError::NotFound {
            kind: "unknown-account",
            field: "key",
            detail: "no such account",
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
#[utoipa::path(get, path = "/attestations/{key}", params(("key" = String, Path, pattern = "^[0-9a-fA-F]{64}$")),
    responses((status = 200, body = AttestationView), (status = 400, description = "not a key"),
        (status = 404, description = "no attestation for this key")))]
fn attestation(view: &dyn StateView, args: &ReadArgs) -> Result<AttestationView, ReadError> {
    let key = PublicKey(hex32(args.path("key")?, "key")?);
    let a = read_attestation(view, &key)?.ok_or(ReadError::NotFound {
        kind: "no-attestation",
        field: "key",
        detail: "no attestation for this key",
    })?;
    Ok(AttestationView {
        subject_key: hex::encode(key.0),
        commitment: hex::encode(&a.commitment),
        level: a.level,
        verifier: hex::encode(&a.verifier),
        height: a.height,
        tx_hash: hex::encode(&a.tx_hash),
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
#[utoipa::path(get, path = "/governance/params",
    responses((status = 200, body = GovernanceParamsView)))]
fn params(view: &dyn StateView, _args: &ReadArgs) -> Result<GovernanceParamsView, ReadError> {
    let mut active = 0;
    for org in &read_member_index(view)?.orgs {
        if read_member(view, org)?.is_some_and(|m| m.status() == MemberStatus::Active) {
            active += 1;
        }
    }
    let g = read_governance(view)?;
    Ok(GovernanceParamsView {
        approval_num: g.approval_num,
        approval_den: g.approval_den,
        proposal_ttl_blocks: g.proposal_ttl_blocks,
        active_members: active,
    })
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

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProposalList {
    pub height: u64,
    pub proposals: Vec<ProposalView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// Governance proposals, newest first; paginated.
#[utoipa::path(get, path = "/governance/proposals",
    params(("status" = Option<String>, Query, description = "Only proposals with this status: open, passed, rejected or expired"),
        ("before" = Option<u64>, Query, description = "Only proposals with a smaller id", minimum = 1),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, body = ProposalList), (status = 400, description = "bad query")))]
fn proposals(view: &dyn StateView, args: &ReadArgs) -> Result<ProposalList, ReadError> {
    let status = args.query("status");
    if let Some(s) = status
        && !["open", "passed", "rejected", "expired"].contains(&s)
    {
        return Err(ReadError::BadParam {
            field: "status",
            reason: "must be open, passed, rejected or expired".into(),
        });
    }
    let limit = args.limit(100, 1000)?;
    let last = read_last_proposal_id(view)?;
    let mut id = match args.query("before") {
        None => last,
        Some(b) => match b.parse::<u64>() {
            Ok(b) if b >= 1 => (b - 1).min(last),
            _ => {
                return Err(ReadError::BadParam {
                    field: "before",
                    reason: "must be a positive integer".into(),
                });
            }
        },
    };
    let mut proposals = Vec::new();
    while id > 0 && proposals.len() < limit {
        if let Some(p) = read_proposal(view, id)? {
            let v = proposal_view(&p, args.height);
            if status.is_none_or(|s| s == v.status) {
                proposals.push(v);
            }
        }
        id -= 1;
    }
    Ok(ProposalList {
        height: args.height,
        next: (id > 0 && proposals.len() == limit).then(|| id + 1),
        proposals,
    })
}

/// One governance proposal with its votes.
#[utoipa::path(get, path = "/governance/proposals/{id}", params(("id" = u64, Path, minimum = 1)),
    responses((status = 200, body = ProposalView), (status = 400, description = "not a proposal number"),
        (status = 404, description = "no such proposal")))]
fn proposal(view: &dyn StateView, args: &ReadArgs) -> Result<ProposalView, ReadError> {
    let id: u64 = args.path("id")?.parse().map_err(|_| ReadError::BadParam {
        field: "id",
        reason: "must be a proposal number".into(),
    })?;
    read_proposal(view, id)?
        .map(|p| proposal_view(&p, args.height))
        .ok_or(ReadError::NotFound {
            kind: "unknown-proposal",
            field: "id",
            detail: "no such proposal",
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
#[utoipa::path(get, path = "/revocations",
    responses((status = 200, body = RevocationListView)))]
fn revocations(view: &dyn StateView, args: &ReadArgs) -> Result<RevocationListView, ReadError> {
    let list = read_revocations(view)?;
    Ok(RevocationListView {
        height: args.height,
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
    })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct CommitteeView {
    pub chain_id: String,
    /// Consensus keys (hex), in committee order.
    pub members: Vec<String>,
    pub height: u64,
}

/// The committee the beacon decided for a chain: each of the chain's epochs that ends names it
/// for the next.
#[utoipa::path(get, path = "/committees/{chain}", params(("chain" = String, Path)),
    responses((status = 200, body = CommitteeView), (status = 404, description = "no such chain")))]
fn committee(view: &dyn StateView, args: &ReadArgs) -> Result<CommitteeView, ReadError> {
    let chain = args.path("chain")?;
    let c = read_committee(view, chain)?.ok_or(ReadError::NotFound {
        kind: "unknown-chain",
        field: "chain",
        detail: "no committee decided for this chain",
    })?;
    Ok(CommitteeView {
        chain_id: chain.to_string(),
        members: c.members().iter().map(|k| hex::encode(k.0)).collect(),
        height: args.height,
    })
}

#[derive(OpenApi)]
#[openapi(
    paths(
        members,
        member,
        account,
        attestation,
        params,
        proposals,
        proposal,
        revocations,
        committee
    ),
    components(schemas(
        MemberView,
        MemberList,
        AccountView,
        AttestationView,
        GovernanceParamsView,
        ProposalView,
        ProposalList,
        RevocationView,
        RevocationListView,
        CommitteeView
    ))
)]
struct BeaconReads;

pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    BeaconReads::openapi()
}
