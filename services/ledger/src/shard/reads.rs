//! The shard's read routes: records (latest version and history), the shard's member orgs and
//! its trust in the beacon, accounts. Members only: even commitments of a shard's records are
//! its members' business. Anchors are served by the node (`/anchors/...`) for every chain.

use super::{
    read_beacon_trust, read_membership, read_next_committee, read_record, read_record_version,
};
use crate::app::{Access, ReadArgs, ReadError, ReadRoute, hex32};
use crate::beacon::{AccountView, account_view, read_account};
use crate::state::{StateError, StateKey, StateView};
use serde::{Deserialize, Serialize};
use trellis_types::pb::{self, ShardStatus};
use trellis_types::{Collection, PublicKey, RecordKey};
use utoipa::{OpenApi, ToSchema};

pub(super) const ROUTES: &[ReadRoute] = &[
    ReadRoute {
        path: "/records/{collection}/{key}",
        access: Access::Members,
    },
    ReadRoute {
        path: "/records/{collection}/{key}/versions",
        access: Access::Members,
    },
    ReadRoute {
        path: "/members",
        access: Access::Members,
    },
    ReadRoute {
        path: "/accounts/{key}",
        access: Access::Members,
    },
];

pub(super) fn read(
    shard_id: &str,
    route: &str,
    args: &ReadArgs,
    view: &dyn StateView,
) -> Result<serde_json::Value, ReadError> {
    fn json(v: impl Serialize) -> Result<serde_json::Value, ReadError> {
        // Plain structs of strings and numbers: serialisation cannot fail.
        Ok(serde_json::to_value(v).unwrap_or_default())
    }
    match route {
        "/records/{collection}/{key}" => json(record(view, args)?),
        "/records/{collection}/{key}/versions" => json(versions(view, args)?),
        "/members" => json(members(shard_id, view, args)?),
        "/accounts/{key}" => json(account(view, args)?),
        _ => Err(ReadError::NotFound {
            kind: "not-found",
            field: "path",
            detail: "no such route",
        }),
    }
}

/// A record's collection and key from a path (`field` names both in errors of a proof id).
pub(super) fn record_path(
    collection: &str,
    key: &str,
    field: Option<&'static str>,
) -> Result<(Collection, RecordKey), ReadError> {
    let collection =
        Collection::parse(collection, "collection").map_err(|_| ReadError::BadParam {
            field: field.unwrap_or("collection"),
            reason: "collection must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
        })?;
    let key = RecordKey::parse(key, "key").map_err(|_| ReadError::BadParam {
        field: field.unwrap_or("key"),
        reason: "key must be 1 to 128 bytes without control characters".into(),
    })?;
    Ok((collection, key))
}

fn path_record(args: &ReadArgs) -> Result<(Collection, RecordKey), ReadError> {
    record_path(args.path("collection")?, args.path("key")?, None)
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    pub collection: String,
    pub key: String,
    /// The org that first wrote the key; only its accounts write later versions.
    pub owner_org: String,
    /// From 1.
    pub version: u64,
    /// SHA-256(salt ‖ payload), hex.
    pub commitment: String,
    pub schema: String,
    /// The payload's ciphertext (hex); absent when the payload stays in the owner's data pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// The account that wrote this version (hex).
    pub sender: String,
    /// The shard height that wrote it.
    pub height: u64,
    pub tx_hash: String,
}

fn record_view(collection: &Collection, key: &RecordKey, r: &pb::RecordVersion) -> RecordView {
    RecordView {
        collection: collection.as_str().to_string(),
        key: key.as_str().to_string(),
        owner_org: r.owner_org.clone(),
        version: r.version,
        commitment: hex::encode(&r.commitment),
        schema: r.schema.clone(),
        ciphertext: r.ciphertext.as_ref().map(hex::encode),
        sender: hex::encode(&r.sender),
        height: r.height,
        tx_hash: hex::encode(&r.tx_hash),
    }
}

fn no_record() -> ReadError {
    ReadError::NotFound {
        kind: "unknown-record",
        field: "key",
        detail: "no such record",
    }
}

/// A record's latest version.
#[utoipa::path(get, path = "/records/{collection}/{key}",
    params(("collection" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("key" = String, Path, description = "1 to 128 bytes of UTF-8 without control characters")),
    responses((status = 200, body = RecordView), (status = 400, description = "not a collection or key"),
        (status = 404, description = "no such record")))]
fn record(view: &dyn StateView, args: &ReadArgs) -> Result<RecordView, ReadError> {
    let (collection, key) = path_record(args)?;
    read_record(view, collection.as_str(), key.as_str())?
        .map(|r| record_view(&collection, &key, &r))
        .ok_or_else(no_record)
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RecordVersionList {
    /// The executed height the answer was read at.
    pub height: u64,
    pub versions: Vec<RecordView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// Every version of a record, oldest first; paginated.
#[utoipa::path(get, path = "/records/{collection}/{key}/versions",
    params(("collection" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("key" = String, Path, description = "1 to 128 bytes of UTF-8 without control characters"),
        ("after" = Option<u64>, Query, description = "Versions after this one"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)", minimum = 1, maximum = 1000)),
    responses((status = 200, body = RecordVersionList), (status = 400, description = "bad path or query"),
        (status = 404, description = "no such record")))]
fn versions(view: &dyn StateView, args: &ReadArgs) -> Result<RecordVersionList, ReadError> {
    let (collection, key) = path_record(args)?;
    let limit = args.limit(100, 1000)?;
    let after = match args.query("after") {
        None => 0,
        Some(a) => a.parse::<u64>().map_err(|_| ReadError::BadParam {
            field: "after",
            reason: "must be a version number".into(),
        })?,
    };
    let latest = read_record(view, collection.as_str(), key.as_str())?.ok_or_else(no_record)?;
    let mut versions = Vec::new();
    let mut v = after;
    while v < latest.version && versions.len() < limit {
        v += 1;
        let r =
            read_record_version(view, collection.as_str(), key.as_str(), v)?.ok_or_else(|| {
                StateError::Corrupt(
                    StateKey::record_version(collection.as_str(), key.as_str(), v).to_string(),
                )
            })?;
        versions.push(record_view(&collection, &key, &r));
    }
    Ok(RecordVersionList {
        height: args.height,
        versions,
        next: (v < latest.version).then_some(v),
    })
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ShardOrgView {
    pub org: String,
    /// The org's account keys that may write (hex).
    pub keys: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct BeaconTrustView {
    pub beacon_chain_id: String,
    /// The beacon epoch whose committee the shard trusts.
    pub epoch: u64,
    /// That committee's consensus keys (hex), in order.
    pub committee: Vec<String>,
    /// The beacon state height of the last applied certified update (or of the shard's
    /// creation).
    pub applied_state_height: u64,
    /// The shard height that applied it (0: genesis).
    pub applied_height: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ShardMembersView {
    pub height: u64,
    pub shard_id: String,
    /// `active` or `closed`.
    pub status: String,
    pub members: Vec<ShardOrgView>,
    pub beacon: BeaconTrustView,
    /// The shard's next committee as the beacon decided it (hex keys, in order).
    pub next_committee: Vec<String>,
}

fn corrupt(key: StateKey) -> ReadError {
    StateError::Corrupt(key.to_string()).into()
}

/// The shard's member orgs, its status, its trust in the beacon and its next committee.
#[utoipa::path(get, path = "/members",
    responses((status = 200, body = ShardMembersView)))]
fn members(
    shard_id: &str,
    view: &dyn StateView,
    args: &ReadArgs,
) -> Result<ShardMembersView, ReadError> {
    // All three are written at genesis and never deleted.
    let membership = read_membership(view)?.ok_or_else(|| corrupt(StateKey::shard_members()))?;
    let trust = read_beacon_trust(view)?.ok_or_else(|| corrupt(StateKey::beacon_trust()))?;
    let next = read_next_committee(view)?.ok_or_else(|| corrupt(StateKey::next_committee()))?;
    Ok(ShardMembersView {
        height: args.height,
        shard_id: shard_id.to_string(),
        status: match membership.status() {
            ShardStatus::Active => "active",
            _ => "closed",
        }
        .into(),
        members: membership
            .orgs
            .iter()
            .map(|o| ShardOrgView {
                org: o.org.clone(),
                keys: o.keys.iter().map(hex::encode).collect(),
            })
            .collect(),
        beacon: BeaconTrustView {
            beacon_chain_id: trust.beacon_chain_id,
            epoch: trust.epoch,
            committee: trust.committee.iter().map(hex::encode).collect(),
            applied_state_height: trust.applied_state_height,
            applied_height: trust.applied_height,
        },
        next_committee: next.members().iter().map(|k| hex::encode(k.0)).collect(),
    })
}

/// A registered account as of the last executed block: its org, role (`member`, or
/// `unspecified` once its org left the shard or the consortium) and next nonce.
#[utoipa::path(get, path = "/accounts/{key}", params(("key" = String, Path, pattern = "^[0-9a-fA-F]{64}$")),
    responses((status = 200, body = AccountView), (status = 400, description = "not a key"),
        (status = 404, description = "no such account")))]
fn account(view: &dyn StateView, args: &ReadArgs) -> Result<AccountView, ReadError> {
    let key = PublicKey(hex32(args.path("key")?, "key")?);
    read_account(view, &key)?
        .map(|a| account_view(&key, &a))
        .ok_or(ReadError::NotFound {
            kind: "unknown-account",
            field: "key",
            detail: "no such account",
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(record, versions, members, account),
    components(schemas(
        RecordView,
        RecordVersionList,
        ShardOrgView,
        BeaconTrustView,
        ShardMembersView,
        AccountView
    ))
)]
struct ShardReads;

pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    ShardReads::openapi()
}
