//! API tokens: how callers get the JWTs every Trellis service accepts.
//!
//! * By chain key: `POST /v1/auth/challenge` hands out a random single-use challenge; the
//!   caller signs `"trellis/auth-challenge/v1" ‖ challenge` (the 32 raw challenge bytes) with
//!   its ed25519 account key and trades it at `POST /v1/auth/token`. The role comes from the
//!   account on the beacon: a member's key acts as `enterprise_admin` of its org, an operator,
//!   regulator or bank account as that role; a removed member's key (role `unspecified`) is
//!   refused.
//! * By API key: operators make keys for any role; an enterprise admin makes
//!   `enterprise_member` keys for its own org. A key is shown once; only its SHA-256 is stored.
//!   Keys expire (90 days by default, at most a year) and can be revoked (`DELETE
//!   /v1/auth/api-keys/{id}`); `GET /v1/auth/api-keys` lists them (metadata only). A key of an
//!   enterprise role logs in only while its org is an active member on the beacon.
//!
//! `POST /v1/auth/keys/rotate` (operators) starts signing with a new key; `GET
//! /.well-known/jwks.json` publishes the keys that verify.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::str::FromStr;
use trellis_consensus::crypto;
use trellis_servicekit::db::now_ms;
use trellis_servicekit::{ApiResult, Caller, JsonBody, Problem, Role};
use trellis_types::{OrgId, Signature};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::chain;
use crate::domain::OrgPublicKey;
use crate::util;

/// Domain separator of signed login challenges.
pub const CHALLENGE_DOMAIN: &[u8] = b"trellis/auth-challenge/v1";
/// How long a challenge may be used, in seconds.
pub const CHALLENGE_TTL_S: u64 = 300;
/// Prefix of API keys, so a leaked one is recognisable in a secret scanner.
const API_KEY_PREFIX: &str = "trk_";
/// Longest API key label, in characters.
const MAX_LABEL_CHARS: usize = 100;
/// Longest value accepted as an API key.
const MAX_API_KEY_CHARS: usize = 200;
/// Lifetime of an API key when the request names none, in days.
pub const DEFAULT_API_KEY_DAYS: u32 = 90;
/// Longest lifetime of an API key, in days.
pub const MAX_API_KEY_DAYS: u32 = 365;
/// Most API keys one list answer holds.
const MAX_KEY_LIST: u32 = 500;
const DAY_MS: i64 = 86_400_000;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/token", post(token))
        .route("/v1/auth/api-keys", post(create_api_key).get(list_api_keys))
        .route("/v1/auth/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/auth/keys/rotate", post(rotate))
        .route("/.well-known/jwks.json", get(jwks))
}

/// A request for a login challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The account's ed25519 public key, 64 hex characters.
    pub public_key: String,
}

/// A login challenge: sign `"trellis/auth-challenge/v1" ‖ challenge` (the raw 32 bytes) and
/// send it to `POST /v1/auth/token` before it expires. It works once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeResponse {
    /// 32 random bytes, hex.
    pub challenge: String,
    /// Seconds it stays valid.
    pub expires_in_s: u64,
}

/// A token request: either `api_key`, or `public_key`, `challenge` and `signature`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// An API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The account's ed25519 public key (hex).
    #[serde(default)]
    pub public_key: Option<String>,
    /// A challenge from `POST /v1/auth/challenge` for that key (hex).
    #[serde(default)]
    pub challenge: Option<String>,
    /// Ed25519 signature (hex, 64 bytes) of `"trellis/auth-challenge/v1" ‖ challenge`.
    #[serde(default)]
    pub signature: Option<String>,
}

/// An access token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT (EdDSA).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The role it grants.
    pub role: Role,
    /// The organisation it acts for.
    pub org: Option<String>,
}

/// A request for an API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// The role the key grants (`operator`, `enterprise_admin`, `enterprise_member`,
    /// `regulator`, `bank`).
    pub role: String,
    /// The organisation it acts for: required for enterprise roles; an enterprise admin may
    /// only name its own (the default).
    #[serde(default)]
    pub org: Option<String>,
    /// What the key is for, 1 to 100 characters.
    #[schema(max_length = 100)]
    pub label: String,
    /// Days until the key expires, 1 to 365 (default 90).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365, default = 90)]
    pub expires_in_days: Option<u32>,
}

/// A new API key. `api_key` is shown only here.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The key's id.
    pub id: String,
    /// The key itself; only its SHA-256 is stored.
    pub api_key: String,
    /// The role it grants.
    pub role: Role,
    /// The organisation it acts for.
    pub org: Option<String>,
    /// Its label.
    pub label: String,
    /// When it expires, unix milliseconds.
    pub expires_ms: i64,
}

/// An API key's metadata (never the key itself).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyInfo {
    /// The key's id.
    pub id: String,
    /// The role it grants.
    pub role: Role,
    /// The organisation it acts for.
    pub org: Option<String>,
    /// Its label.
    pub label: String,
    /// Who made it (the token subject).
    pub created_by: String,
    /// Made at, unix milliseconds.
    pub created_ms: i64,
    /// Expires at, unix milliseconds.
    pub expires_ms: i64,
    /// Revoked at, unix milliseconds.
    pub revoked_ms: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Whether it can log in now: neither expired nor revoked (an enterprise key also needs
    /// its org to be an active member).
    pub active: bool,
}

/// API keys, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    /// The keys' metadata.
    pub api_keys: Vec<ApiKeyInfo>,
}

/// `GET /v1/auth/api-keys` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApiKeyQuery {
    /// Only keys of this organisation. An enterprise admin sees its own organisation's keys
    /// only (naming another is a 403).
    pub org: Option<String>,
    /// At most this many (1 to 500, default 100), newest first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The key that signs from now on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedKey {
    /// Its key id (`kid`).
    pub kid: String,
}

/// A single-use login challenge for an account key, valid for five minutes.
#[utoipa::path(post, path = "/v1/auth/challenge", tag = "auth",
    request_body = ChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 400, body = Problem)))]
async fn challenge(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<ChallengeRequest>,
) -> ApiResult<Json<ChallengeResponse>> {
    let key = OrgPublicKey::parse(&req.public_key, "public_key").map_err(util::field_problem)?;
    let challenge = hex::encode(util::random_bytes::<32>()?);
    let now = now_ms();
    let db = st.inner.db.pool();
    sqlx::query("DELETE FROM identity_auth_challenges WHERE expires_ms < $1")
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO identity_auth_challenges (challenge, public_key, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&challenge)
    .bind(key.to_hex())
    .bind(now)
    .bind(now + (CHALLENGE_TTL_S * 1000) as i64)
    .execute(db)
    .await?;
    Ok(Json(ChallengeResponse {
        challenge,
        expires_in_s: CHALLENGE_TTL_S,
    }))
}

fn required<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str, Problem> {
    v.as_deref()
        .ok_or_else(|| Problem::bad_request(field, format!("`{field}` is required")))
}

/// Trade an API key, or a signed challenge, for an access token.
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = Problem),
        (status = 401, body = Problem, description = "Unknown, expired or revoked API key; bad signature; unknown, used or expired challenge"),
        (status = 403, body = Problem, description = "The account holds no role (a removed member), or an enterprise API key's org is not an active member"),
        (status = 503, body = Problem, description = "The node cannot be reached")))]
async fn token(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let (sub, role, org) = match &req.api_key {
        Some(api_key) => {
            if req.public_key.is_some() || req.challenge.is_some() || req.signature.is_some() {
                return Err(Problem::bad_request(
                    "api_key",
                    "give either `api_key` or `public_key`, `challenge` and `signature`",
                ));
            }
            api_key_login(&st, api_key).await?
        }
        None => key_login(&st, &req).await?,
    };
    let (access_token, exp) = st.inner.tokens.issue(&sub, role, org.as_deref()).await?;
    let now_s = u64::try_from(now_ms() / 1000).unwrap_or(0);
    tracing::info!(sub = %sub, role = %role, "access token issued");
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: exp.saturating_sub(now_s),
        role,
        org,
    }))
}

type Grant = (String, Role, Option<String>);

async fn api_key_login(st: &AppState, api_key: &str) -> Result<Grant, Problem> {
    if api_key.is_empty() || api_key.chars().count() > MAX_API_KEY_CHARS {
        return Err(Problem::bad_request(
            "api_key",
            format!("must be 1 to {MAX_API_KEY_CHARS} characters"),
        ));
    }
    let row = sqlx::query(
        "SELECT id, role, org, expires_ms, revoked_ms FROM identity_api_keys \
         WHERE key_sha256 = $1",
    )
    .bind(util::sha256_hex(api_key.as_bytes()))
    .fetch_optional(st.inner.db.pool())
    .await?
    .ok_or_else(|| Problem::unauthorized("unknown API key"))?;
    let id: String = row.try_get("id")?;
    let expires_ms: i64 = row.try_get("expires_ms")?;
    let revoked_ms: Option<i64> = row.try_get("revoked_ms")?;
    if revoked_ms.is_some() {
        tracing::info!(key = %id, "login with a revoked API key refused");
        return Err(Problem::unauthorized("this API key has been revoked"));
    }
    if expires_ms <= now_ms() {
        tracing::info!(key = %id, "login with an expired API key refused");
        return Err(Problem::unauthorized("this API key has expired"));
    }
    let role: String = row.try_get("role")?;
    let role = Role::from_str(&role).map_err(Problem::internal)?;
    let org: Option<String> = row.try_get("org")?;
    if matches!(role, Role::EnterpriseAdmin | Role::EnterpriseMember) {
        // An enterprise key acts for its org only while the org is a member: a removed (or
        // never admitted) org's keys stop working with it.
        let org = org
            .as_deref()
            .ok_or_else(|| Problem::internal("enterprise API key without an org"))?;
        let status = chain::member_status(&st.inner.node, org)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read the membership from the node");
                node_unavailable()
            })?;
        if status.as_deref() != Some("active") {
            tracing::info!(key = %id, %org, "API key of an org that is not an active member refused");
            return Err(Problem::forbidden(
                "the organisation of this API key is not an active member",
            ));
        }
    }
    Ok((format!("api-key:{id}"), role, org))
}

fn node_unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "node-unavailable",
        "the chain cannot be read right now; try again",
    )
}

async fn key_login(st: &AppState, req: &TokenRequest) -> Result<Grant, Problem> {
    let key = OrgPublicKey::parse(required(&req.public_key, "public_key")?, "public_key")
        .map_err(util::field_problem)?;
    let challenge_hex = required(&req.challenge, "challenge")?
        .trim()
        .to_ascii_lowercase();
    let mut challenge = [0u8; 32];
    hex::decode_to_slice(&challenge_hex, &mut challenge)
        .map_err(|_| Problem::bad_request("challenge", "must be 64 hex characters"))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(
        required(&req.signature, "signature")?.trim(),
        &mut signature,
    )
    .map_err(|_| Problem::bad_request("signature", "must be 128 hex characters (64 bytes)"))?;
    let mut message = CHALLENGE_DOMAIN.to_vec();
    message.extend_from_slice(&challenge);
    crypto::verify(&key.public_key(), &Signature(signature), &message).map_err(|_| {
        Problem::unauthorized("the signature does not verify for this key and challenge")
    })?;
    // Single use: whoever deletes it has it.
    let row = sqlx::query(
        "DELETE FROM identity_auth_challenges WHERE challenge = $1 AND public_key = $2 \
         RETURNING expires_ms",
    )
    .bind(&challenge_hex)
    .bind(key.to_hex())
    .fetch_optional(st.inner.db.pool())
    .await?
    .ok_or_else(|| Problem::unauthorized("unknown or already used challenge"))?;
    let expires_ms: i64 = row.try_get(0)?;
    if expires_ms < now_ms() {
        return Err(Problem::unauthorized("the challenge has expired"));
    }
    let account = chain::account(&st.inner.node, &key.to_hex())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot read the account from the node");
            node_unavailable()
        })?
        .ok_or_else(|| Problem::unauthorized("this key is not an account on the chain"))?;
    let (role, org) = match account.role.as_str() {
        "member" if !account.org.is_empty() => (Role::EnterpriseAdmin, Some(account.org)),
        "operator" => (Role::Operator, none_if_empty(account.org)),
        "regulator" => (Role::Regulator, none_if_empty(account.org)),
        "bank" => (Role::Bank, none_if_empty(account.org)),
        _ => {
            return Err(Problem::forbidden(
                "this account holds no role on the chain (a removed member?)",
            ));
        }
    };
    Ok((key.to_hex(), role, org))
}

fn none_if_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Make an API key, valid for `expires_in_days` (default 90, at most 365). Operators: any role
/// and org. Enterprise admins: `enterprise_member` keys for their own org.
#[utoipa::path(post, path = "/v1/auth/api-keys", tag = "auth",
    request_body = ApiKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ApiKeyCreated),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn create_api_key(
    State(st): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<ApiKeyRequest>,
) -> ApiResult<Response> {
    caller.require(&[Role::Operator, Role::EnterpriseAdmin])?;
    let role = Role::from_str(req.role.trim()).map_err(|_| {
        Problem::bad_request(
            "role",
            "must be operator, enterprise_admin, enterprise_member, regulator or bank",
        )
    })?;
    let org = req
        .org
        .as_deref()
        .map(|o| OrgId::parse(o.trim(), "org").map(|o| o.as_str().to_string()))
        .transpose()
        .map_err(|_| {
            Problem::bad_request("org", "must be 1 to 64 characters of A-Z a-z 0-9 . _ -")
        })?;
    let label = util::short_text(&req.label, "label", MAX_LABEL_CHARS)?;
    let days = req.expires_in_days.unwrap_or(DEFAULT_API_KEY_DAYS);
    if !(1..=MAX_API_KEY_DAYS).contains(&days) {
        return Err(Problem::bad_request(
            "expires_in_days",
            format!("must be 1 to {MAX_API_KEY_DAYS}"),
        ));
    }
    let org = if caller.role == Role::EnterpriseAdmin {
        if role != Role::EnterpriseMember {
            return Err(Problem::forbidden(
                "an enterprise admin makes enterprise_member keys only",
            ));
        }
        let own = own_org(&caller)?;
        if org.as_ref().is_some_and(|o| *o != own) {
            return Err(Problem::forbidden(
                "an enterprise admin makes keys for its own organisation only",
            ));
        }
        Some(own)
    } else {
        if matches!(role, Role::EnterpriseAdmin | Role::EnterpriseMember) && org.is_none() {
            return Err(Problem::bad_request(
                "org",
                "an enterprise role needs the organisation it acts for",
            ));
        }
        org
    };
    let id = util::random_id()?;
    let api_key = format!(
        "{API_KEY_PREFIX}{}",
        hex::encode(util::random_bytes::<32>()?)
    );
    let now = now_ms();
    let expires_ms = now + i64::from(days) * DAY_MS;
    sqlx::query(
        "INSERT INTO identity_api_keys (id, key_sha256, role, org, label, created_by, \
         created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(util::sha256_hex(api_key.as_bytes()))
    .bind(role.as_str())
    .bind(org.as_deref())
    .bind(&label)
    .bind(&caller.sub)
    .bind(now)
    .bind(expires_ms)
    .execute(st.inner.db.pool())
    .await?;
    tracing::info!(key = %id, role = %role, creator = %caller.sub, days, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            id,
            api_key,
            role,
            org,
            label,
            expires_ms,
        }),
    )
        .into_response())
}

/// The columns [`api_key_info`] reads.
macro_rules! api_key_columns {
    () => {
        "id, role, org, label, created_by, created_ms, expires_ms, revoked_ms, revoked_by"
    };
}

fn api_key_info(row: &AnyRow, now: i64) -> Result<ApiKeyInfo, Problem> {
    let role: String = row.try_get("role")?;
    let expires_ms: i64 = row.try_get("expires_ms")?;
    let revoked_ms: Option<i64> = row.try_get("revoked_ms")?;
    Ok(ApiKeyInfo {
        id: row.try_get("id")?,
        role: Role::from_str(&role).map_err(Problem::internal)?,
        org: row.try_get("org")?,
        label: row.try_get("label")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms,
        revoked_ms,
        revoked_by: row.try_get("revoked_by")?,
        active: revoked_ms.is_none() && expires_ms > now,
    })
}

/// The organisation an enterprise admin acts for (403 when its token names none).
fn own_org(caller: &Caller) -> Result<String, Problem> {
    caller
        .org
        .clone()
        .ok_or_else(|| Problem::forbidden("the caller acts for no organisation"))
}

/// API keys, newest first: their metadata, never the keys. Operators: every key (or one
/// org's). Enterprise admins: their own org's.
#[utoipa::path(get, path = "/v1/auth/api-keys", tag = "auth",
    params(ApiKeyQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApiKeyList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_api_keys(
    State(st): State<AppState>,
    caller: Caller,
    query: Result<Query<ApiKeyQuery>, QueryRejection>,
) -> ApiResult<Json<ApiKeyList>> {
    caller.require(&[Role::Operator, Role::EnterpriseAdmin])?;
    let Query(q) = query.map_err(|r| util::rejection_problem(r.status(), &r.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_KEY_LIST).contains(&limit) {
        return Err(Problem::bad_request(
            "limit",
            format!("must be 1 to {MAX_KEY_LIST}"),
        ));
    }
    let asked = q.org.as_deref().map(str::trim);
    let org = if caller.role == Role::EnterpriseAdmin {
        let own = own_org(&caller)?;
        if asked.is_some_and(|o| o != own) {
            return Err(Problem::forbidden(
                "an enterprise admin lists its own organisation's keys only",
            ));
        }
        Some(own)
    } else {
        asked.map(str::to_string)
    };
    let db = st.inner.db.pool();
    let rows = match &org {
        Some(org) => {
            sqlx::query(concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM identity_api_keys WHERE org = $1 ORDER BY created_ms DESC, id LIMIT $2"
            ))
            .bind(org)
            .bind(i64::from(limit))
            .fetch_all(db)
            .await?
        }
        None => {
            sqlx::query(concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM identity_api_keys ORDER BY created_ms DESC, id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(db)
            .await?
        }
    };
    let now = now_ms();
    let api_keys = rows
        .iter()
        .map(|r| api_key_info(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(ApiKeyList { api_keys }))
}

/// Revoke an API key: it logs in no more (access tokens it already got run out within their
/// lifetime). Operators: any key. Enterprise admins: their own org's. Revoking a revoked key
/// changes nothing.
#[utoipa::path(delete, path = "/v1/auth/api-keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "API key id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApiKeyInfo, description = "The key, revoked"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_api_key(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyInfo>> {
    caller.require(&[Role::Operator, Role::EnterpriseAdmin])?;
    let unknown = || Problem::not_found("unknown-api-key", "no API key with this id");
    let db = st.inner.db.pool();
    let org: Option<String> = sqlx::query("SELECT org FROM identity_api_keys WHERE id = $1")
        .bind(&id)
        .fetch_optional(db)
        .await?
        .ok_or_else(unknown)?
        .try_get("org")?;
    if caller.role == Role::EnterpriseAdmin && org.as_deref() != Some(own_org(&caller)?.as_str()) {
        return Err(Problem::forbidden(
            "an enterprise admin revokes its own organisation's keys only",
        ));
    }
    let done = sqlx::query(
        "UPDATE identity_api_keys SET revoked_ms = $1, revoked_by = $2 \
         WHERE id = $3 AND revoked_ms IS NULL",
    )
    .bind(now_ms())
    .bind(&caller.sub)
    .bind(&id)
    .execute(db)
    .await?;
    if done.rows_affected() == 1 {
        tracing::info!(key = %id, revoker = %caller.sub, "API key revoked");
    }
    let row = sqlx::query(concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM identity_api_keys WHERE id = $1"
    ))
    .bind(&id)
    .fetch_optional(db)
    .await?
    .ok_or_else(unknown)?;
    Ok(Json(api_key_info(&row, now_ms())?))
}

/// Start signing tokens with a new key. Tokens signed by the old key stay valid until they
/// expire. Operators only.
#[utoipa::path(post, path = "/v1/auth/keys/rotate", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, body = RotatedKey), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn rotate(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<RotatedKey>> {
    caller.require(&[Role::Operator])?;
    let kid = st.inner.tokens.rotate().await?;
    tracing::info!(%kid, operator = %caller.sub, "JWT signing key rotated");
    Ok(Json(RotatedKey { kid }))
}

/// The public keys that verify access tokens (RFC 7517, Ed25519 in RFC 8037 form).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, body = Object, description = "JSON Web Key Set")))]
async fn jwks(State(st): State<AppState>) -> Response {
    let mut resp = Json(st.inner.tokens.jwks().await).into_response();
    // Short: verifiers refetch anyway when they meet an unknown kid after a rotation.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}

/// The OpenAPI paths of this module.
#[derive(OpenApi)]
#[openapi(
    paths(
        challenge,
        token,
        create_api_key,
        list_api_keys,
        revoke_api_key,
        rotate,
        jwks
    ),
    components(schemas(
        ChallengeRequest,
        ChallengeResponse,
        TokenRequest,
        TokenResponse,
        ApiKeyRequest,
        ApiKeyCreated,
        ApiKeyInfo,
        ApiKeyList,
        RotatedKey
    ))
)]
pub struct AuthDoc;
