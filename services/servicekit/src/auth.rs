//! Who may call the services: API [`Role`]s, the JWTs that carry them ([`TokenService`]), and
//! the [`Caller`] extractor that turns `Authorization: Bearer <jwt>` into a verified caller.
//!
//! Tokens are EdDSA (Ed25519) JWTs. Signing keys live in the `jwt_signing_keys` table, their
//! private halves sealed with the service [`Keyring`], so every process on the same database
//! signs and verifies with the same keys. The newest key that is not retired signs; a retired
//! key still verifies for one token lifetime (so tokens it signed run out naturally) and is
//! then neither accepted nor published.

use crate::db::{Db, now_ms};
use crate::problem::Problem;
use crate::seal::{Keyring, SealError};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_S: u64 = 10;
/// How long a process trusts its cached key list before reading the table again, so it picks
/// up rotations and retirements made by other processes.
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// What a caller may do. Serialized in `snake_case` (`enterprise_admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the consortium: onboarding, membership, keys.
    Operator,
    /// Administers one member enterprise.
    EnterpriseAdmin,
    /// Acts for one member enterprise.
    EnterpriseMember,
    /// Reads and audits.
    Regulator,
    /// A bank member.
    Bank,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::EnterpriseAdmin,
        Role::EnterpriseMember,
        Role::Regulator,
        Role::Bank,
    ];

    /// The `snake_case` name, as in tokens and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::EnterpriseAdmin => "enterprise_admin",
            Role::EnterpriseMember => "enterprise_member",
            Role::Regulator => "regulator",
            Role::Bank => "bank",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(64).collect()))
    }
}

/// The claims of a Trellis API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, pinned by [`TokenConfig::issuer`].
    pub iss: String,
    /// Audience, pinned by [`TokenConfig::audience`].
    pub aud: String,
    /// Subject: the account (user or API client) id.
    pub sub: String,
    /// What the subject may do.
    pub role: Role,
    /// The member organisation the subject acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds.
    pub exp: u64,
    /// Token id (random hex), for audit logs.
    pub jti: String,
}

/// Why issuing or verifying a token failed. The client-side variants answer 401; none of them
/// carries the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing `Authorization: Bearer <token>` header")]
    MissingToken,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    /// Not a well-formed JWT, or its claims are not ours.
    #[error("the bearer token is not a well-formed Trellis token")]
    Malformed,
    /// Signed with anything but EdDSA (including `none` and HMAC).
    #[error("the token's algorithm is not accepted (EdDSA only)")]
    UnsupportedAlgorithm,
    /// No `kid` in the header.
    #[error("the token names no signing key (kid)")]
    MissingKeyId,
    /// The `kid` is not a key we accept (never known, or retired too long ago).
    #[error("the token is signed by an unknown or retired key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// `aud` is not ours.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// `iss` is not ours.
    #[error("the token comes from another issuer")]
    WrongIssuer,
    /// A required claim is absent.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    /// The database failed.
    #[error("signing keys: database: {0}")]
    Db(#[from] sqlx::Error),
    /// A sealed private key does not open with the keyring.
    #[error("signing keys: {0}")]
    Seal(#[from] SealError),
    /// Key generation or signing failed.
    #[error("signing keys: {0}")]
    Crypto(String),
}

impl AuthError {
    /// True when the caller is at fault (401); false for server faults (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            AuthError::Db(_) | AuthError::Seal(_) | AuthError::Crypto(_)
        )
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Problem {
        if e.is_client_error() {
            Problem::unauthorized(e.to_string())
        } else {
            Problem::internal(e)
        }
    }
}

/// Issuer, audience and token lifetime of a [`TokenService`].
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `iss` of issued tokens, the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, the only one accepted.
    pub audience: String,
    /// Lifetime of issued tokens; also how long a retired key keeps verifying.
    pub ttl: Duration,
}

impl Default for TokenConfig {
    fn default() -> TokenConfig {
        TokenConfig {
            issuer: "trellis".into(),
            audience: "trellis-api".into(),
            ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// One row of `jwt_signing_keys`, with its public half ready to verify.
struct VerifyKey {
    kid: String,
    public_key: Vec<u8>,
    created_ms: i64,
    retired_ms: Option<i64>,
    decoding: DecodingKey,
}

struct KeyCache {
    loaded_at: Instant,
    /// Newest first.
    keys: Vec<VerifyKey>,
    /// The newest key that is not retired, with its opened private half.
    signer: Option<(String, EncodingKey)>,
}

struct Inner {
    db: Db,
    keyring: Keyring,
    config: TokenConfig,
    cache: RwLock<Arc<KeyCache>>,
    /// One reload at a time; the others use the result.
    reload: tokio::sync::Mutex<()>,
}

/// Issues and verifies API tokens with keys shared through the database. Cheap to clone.
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Loads the signing keys, creating the first one when the table has none that signs.
    pub async fn new(
        db: Db,
        keyring: Keyring,
        config: TokenConfig,
    ) -> Result<TokenService, AuthError> {
        let svc = TokenService {
            inner: Arc::new(Inner {
                db,
                keyring,
                config,
                cache: RwLock::new(Arc::new(KeyCache {
                    loaded_at: Instant::now(),
                    keys: Vec::new(),
                    signer: None,
                })),
                reload: tokio::sync::Mutex::new(()),
            }),
        };
        svc.reload().await?;
        Ok(svc)
    }

    /// The issuer, audience and lifetime in force.
    pub fn config(&self) -> &TokenConfig {
        &self.inner.config
    }

    /// Issues a token for `sub` acting as `role` (for `org`), valid for the configured ttl.
    /// Returns the token and its `exp` (unix seconds).
    pub async fn issue(
        &self,
        sub: &str,
        role: Role,
        org: Option<&str>,
    ) -> Result<(String, u64), AuthError> {
        let iat = unix_s();
        let exp = iat + self.inner.config.ttl.as_secs().max(1);
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| AuthError::Crypto("random".into()))?;
        let claims = Claims {
            iss: self.inner.config.issuer.clone(),
            aud: self.inner.config.audience.clone(),
            sub: sub.to_string(),
            role,
            org: org.map(str::to_string),
            iat,
            exp,
            jti: hex::encode(jti),
        };
        Ok((self.issue_with(&claims).await?, exp))
    }

    /// Signs `claims` exactly as given with the current key, without any check. For tests
    /// and tools that need unusual tokens (expired, another audience); services use
    /// [`TokenService::issue`].
    pub async fn issue_with(&self, claims: &Claims) -> Result<String, AuthError> {
        let cache = self.fresh_cache().await;
        let cache = if cache.signer.is_some() {
            cache
        } else {
            // Every key was retired (perhaps by another process): reloading makes a new one.
            self.reload().await?
        };
        let (kid, key) = cache
            .signer
            .as_ref()
            .ok_or_else(|| AuthError::Crypto("no signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| AuthError::Crypto(e.to_string()))
    }

    /// Verifies a token: EdDSA only, a `kid` among the accepted keys, our issuer and
    /// audience, not expired (beyond [`LEEWAY_S`]).
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // Pinned before any key is looked at: `none`, HMAC with a public key as secret and
        // other algorithm confusions never reach a verifier.
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let now = now_ms();
        let mut cache = self.fresh_cache().await;
        if self.accepted(&cache, &kid, now).is_none() && self.known_in_db(&kid).await? {
            // Rotated by another process since our last read.
            cache = self.reload().await?;
        }
        let key = self
            .accepted(&cache, &kid, now)
            .ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_S;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_audience(&[&self.inner.config.audience]);
        validation.set_issuer(&[&self.inner.config.issuer]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.into_kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => AuthError::UnsupportedAlgorithm,
                ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c),
                _ => AuthError::Malformed,
            },
        )?;
        Ok(data.claims)
    }

    /// Makes a new signing key, which signs from now on; the old ones keep verifying.
    /// Returns the new key id.
    pub async fn rotate(&self) -> Result<String, AuthError> {
        let newest = self.fresh_cache().await.keys.first().map(|k| k.created_ms);
        // Strictly newer than any key, so "newest signs" is unambiguous even within one ms.
        let created = newest.map_or(now_ms(), |n| now_ms().max(n + 1));
        let kid = self.insert_key(created).await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Retires a key: it stops signing now and stops verifying one token lifetime later.
    /// Retiring the key that signs hands signing to the next newest (or a new key).
    pub async fn retire(&self, kid: &str) -> Result<(), AuthError> {
        let done = sqlx::query(
            "UPDATE jwt_signing_keys SET retired_ms = $1 WHERE kid = $2 AND retired_ms IS NULL",
        )
        .bind(now_ms())
        .bind(kid)
        .execute(self.inner.db.pool())
        .await?;
        if done.rows_affected() == 0 && !self.known_in_db(kid).await? {
            return Err(AuthError::UnknownKey);
        }
        self.reload().await?;
        Ok(())
    }

    /// The id of the key that signs now.
    pub async fn signing_kid(&self) -> Option<String> {
        self.fresh_cache()
            .await
            .signer
            .as_ref()
            .map(|(kid, _)| kid.clone())
    }

    /// The accepted public keys as an RFC 7517 key set in RFC 8037 form (`OKP`/`Ed25519`),
    /// for `GET /.well-known/jwks.json`.
    pub async fn jwks(&self) -> serde_json::Value {
        let cache = self.fresh_cache().await;
        let now = now_ms();
        let keys: Vec<serde_json::Value> = cache
            .keys
            .iter()
            .filter(|k| self.is_accepted(k, now))
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&k.public_key),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    fn is_accepted(&self, key: &VerifyKey, now: i64) -> bool {
        let ttl_ms = i64::try_from(self.inner.config.ttl.as_millis()).unwrap_or(i64::MAX);
        key.retired_ms
            .is_none_or(|retired| now < retired.saturating_add(ttl_ms))
    }

    fn accepted<'c>(&self, cache: &'c KeyCache, kid: &str, now: i64) -> Option<&'c VerifyKey> {
        cache
            .keys
            .iter()
            .find(|k| k.kid == kid && self.is_accepted(k, now))
    }

    /// Whether the table holds `kid`. Only well-formed ids reach the database, so made-up
    /// ones cost nothing; a real lookup is one primary-key probe.
    async fn known_in_db(&self, kid: &str) -> Result<bool, AuthError> {
        if kid.len() != 16 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let row = sqlx::query("SELECT kid FROM jwt_signing_keys WHERE kid = $1")
            .bind(kid)
            .fetch_optional(self.inner.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// The cached keys, read again first when older than [`REFRESH_EVERY`]. A failed read
    /// keeps the old list (logged): a database hiccup should not stop verification.
    async fn fresh_cache(&self) -> Arc<KeyCache> {
        let cache = self.cached();
        if cache.loaded_at.elapsed() < REFRESH_EVERY {
            return cache;
        }
        match self.reload().await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh JWT signing keys; using cached ones");
                cache
            }
        }
    }

    fn cached(&self) -> Arc<KeyCache> {
        // A poisoned lock only means a reader panicked; the Arc inside is still whole.
        match self.inner.cache.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the key table, creating a signing key when none signs.
    async fn reload(&self) -> Result<Arc<KeyCache>, AuthError> {
        let started = Instant::now();
        let _guard = self.inner.reload.lock().await;
        let current = self.cached();
        if current.loaded_at > started && current.signer.is_some() {
            // Another task reloaded while we waited.
            return Ok(current);
        }
        let mut fresh = self.load().await?;
        if fresh.signer.is_none() {
            self.insert_key(now_ms()).await?;
            fresh = self.load().await?;
        }
        let fresh = Arc::new(fresh);
        match self.inner.cache.write() {
            Ok(mut g) => *g = fresh.clone(),
            Err(p) => *p.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    async fn load(&self) -> Result<KeyCache, AuthError> {
        // Stamped before the query: a cache stamped after some instant saw every change
        // committed before it (reload relies on that).
        let loaded_at = Instant::now();
        let rows = sqlx::query(
            "SELECT kid, sealed_private_key, public_key, created_ms, retired_ms \
             FROM jwt_signing_keys ORDER BY created_ms DESC, kid DESC",
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        let mut signer = None;
        for row in rows {
            let kid: String = row.try_get(0)?;
            let public_key: Vec<u8> = row.try_get(2)?;
            let retired_ms: Option<i64> = row.try_get(4)?;
            if signer.is_none() && retired_ms.is_none() {
                let sealed: Vec<u8> = row.try_get(1)?;
                let pkcs8 = self.inner.keyring.open(&sealed, &key_aad(&kid))?;
                // A key whose halves disagree would issue tokens nobody can verify.
                let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| AuthError::Crypto(format!("signing key {kid}: {e}")))?;
                if pair.public_key().as_ref() != public_key.as_slice() {
                    return Err(AuthError::Crypto(format!(
                        "signing key {kid}: private and public halves differ"
                    )));
                }
                signer = Some((kid.clone(), EncodingKey::from_ed_der(&pkcs8)));
            }
            keys.push(VerifyKey {
                decoding: DecodingKey::from_ed_der(&public_key),
                kid,
                public_key,
                created_ms: row.try_get(3)?,
                retired_ms,
            });
        }
        Ok(KeyCache {
            loaded_at,
            keys,
            signer,
        })
    }

    /// Generates an Ed25519 key pair and stores it, private half sealed. Returns its kid.
    async fn insert_key(&self, created_ms: i64) -> Result<String, AuthError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuthError::Crypto("cannot generate an Ed25519 key".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| AuthError::Crypto(format!("generated key does not parse: {e}")))?;
        let public_key = pair.public_key().as_ref().to_vec();
        let kid = key_id(&public_key);
        let sealed = self.inner.keyring.seal(pkcs8.as_ref(), &key_aad(&kid))?;
        sqlx::query(
            "INSERT INTO jwt_signing_keys (kid, sealed_private_key, public_key, created_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&kid)
        .bind(sealed)
        .bind(public_key)
        .bind(created_ms)
        .execute(self.inner.db.pool())
        .await?;
        tracing::info!(%kid, "created JWT signing key");
        Ok(kid)
    }
}

/// The key id of a public key: the first 16 hex characters of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    let mut kid = hex::encode(Sha256::digest(public_key));
    kid.truncate(16);
    kid
}

/// Binds a sealed private key to its row: copied under another kid, it does not open.
fn key_aad(kid: &str) -> Vec<u8> {
    format!("trellis/jwt_signing_keys/{kid}").into_bytes()
}

fn unix_s() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

/// The verified caller of a request, from `Authorization: Bearer <jwt>`. Any failure answers
/// 401 problem+json saying what was wrong (never echoing the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account id (`sub`).
    pub sub: String,
    /// The role the token grants.
    pub role: Role,
    /// The organisation the caller acts for.
    pub org: Option<String>,
}

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Problem::forbidden(format!(
            "this needs role {}; the caller is {}",
            names.join(" or "),
            self.role
        )))
    }

    /// 403 unless the caller acts for `org`. Operators act for every organisation.
    pub fn require_org(&self, org: &str) -> Result<(), Problem> {
        if self.role == Role::Operator || self.org.as_deref() == Some(org) {
            return Ok(());
        }
        Err(Problem::forbidden(
            "the caller does not act for this organisation",
        ))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    TokenService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, Problem> {
        let token = bearer_token(parts)?;
        let tokens = TokenService::from_ref(state);
        let claims = tokens.verify(token).await?;
        Ok(Caller {
            sub: claims.sub,
            role: claims.role,
            org: claims.org,
        })
    }
}

/// `Option<Caller>`: `None` without an `Authorization` header, for endpoints that also serve
/// anonymous callers; a header that is present must still hold a valid token (401 otherwise).
impl<S> OptionalFromRequestParts<S> for Caller
where
    TokenService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Caller>, Problem> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(None);
        }
        <Caller as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}
