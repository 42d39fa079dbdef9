//! Onboarding applications: an enterprise applies without an account (and gets a secret
//! application token), uploads its documents, and follows its application; operators list and
//! read applications with the personal data a real-name review needs, and fetch documents.
//!
//! Who sees what: the applicant (by `X-Application-Token`) sees its own application without
//! the representative's ID number; an operator (bearer JWT) sees everything, decrypted.
//! Regulators, banks and enterprise accounts are refused (403) on every route here: personal
//! data never reaches them.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::time::Duration;
use trellis_servicekit::db::now_ms;
use trellis_servicekit::problem::parse_json;
use trellis_servicekit::{ApiResult, Caller, Db, Idempotency, Problem, Role};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::chain;
use crate::domain::{CreditCode, Email, LegalName, OrgPublicKey, PersonName, Phone, ResidentId};
use crate::store::{self, ApplicationRow, DocumentMeta, PersonalData, Status, application_columns};
use crate::util::{self, APPLICATION_TOKEN_HEADER};

/// Idempotency scope of application submissions.
const SUBMIT_SCOPE: &str = "identity/onboarding/applications";
/// Every idempotency scope of this service: the ones [`spawn_answer_purge`] purges.
const SCOPES: &[&str] = &[SUBMIT_SCOPE];
/// How long a stored answer is kept: the clients' retry window. The answer holds the
/// applicant's token (sealed), so it is not kept for longer than a retry needs.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often stored answers older than [`IDEMPOTENCY_TTL`] are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Most documents one application may hold.
pub const MAX_DOCUMENTS: i64 = 20;
/// Longest document file name, in characters.
const MAX_DOCUMENT_NAME_CHARS: usize = 255;
/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Most applications one list answer holds.
const MAX_LIST: u32 = 500;
/// Bound on the node reads behind one application view.
const CHAIN_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/onboarding/applications",
            post(submit_application).get(list_applications),
        )
        .route("/v1/onboarding/applications/{id}", get(get_application))
        .route(
            "/v1/onboarding/applications/{id}/documents",
            post(upload_document),
        )
        .route(
            "/v1/onboarding/applications/{id}/documents/{doc_id}",
            get(download_document),
        )
}

// ---------------------------------------------------------------------------------------------
// Request and answer shapes
// ---------------------------------------------------------------------------------------------

/// An onboarding application. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// The enterprise's registered name, 1 to 200 characters.
    #[schema(example = "厦门某某供应链有限公司", max_length = 200)]
    pub legal_name: String,
    /// Unified social credit code (GB 32100-2015), 18 characters with a check character.
    #[schema(example = "91350100M000100Y43", min_length = 18, max_length = 18)]
    pub unified_social_credit_code: String,
    /// The legal representative, whose identity the review checks.
    pub legal_representative: RepresentativeRequest,
    /// Who to contact about the application.
    pub contact: ContactRequest,
    /// The org's ed25519 public key, 64 hex characters: the key admitted on chain.
    #[schema(min_length = 64, max_length = 64)]
    pub org_public_key: String,
}

/// The legal representative.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepresentativeRequest {
    /// Full name, 1 to 64 characters.
    #[schema(max_length = 64)]
    pub name: String,
    /// PRC resident identity number, 18 characters (ISO 7064 MOD 11-2 check character).
    #[schema(min_length = 18, max_length = 18)]
    pub id_number: String,
}

/// The applicant's contact.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// E-mail address.
    #[schema(max_length = 254)]
    pub email: String,
    /// Phone number: optional `+`, 5 to 20 digits, spaces or hyphens.
    pub phone: String,
}

/// An application as received, every field parsed.
struct Applicant {
    legal_name: LegalName,
    credit_code: CreditCode,
    representative_name: PersonName,
    representative_id: ResidentId,
    email: Email,
    phone: Phone,
    org_key: OrgPublicKey,
}

impl ApplicationRequest {
    fn parse(&self) -> Result<Applicant, Problem> {
        let f = util::field_problem;
        Ok(Applicant {
            legal_name: LegalName::parse(&self.legal_name, "legal_name").map_err(f)?,
            credit_code: CreditCode::parse(
                &self.unified_social_credit_code,
                "unified_social_credit_code",
            )
            .map_err(f)?,
            representative_name: PersonName::parse(
                &self.legal_representative.name,
                "legal_representative.name",
            )
            .map_err(f)?,
            representative_id: ResidentId::parse(
                &self.legal_representative.id_number,
                "legal_representative.id_number",
                util::today_cst(),
            )
            .map_err(f)?,
            email: Email::parse(&self.contact.email, "contact.email").map_err(f)?,
            phone: Phone::parse(&self.contact.phone, "contact.phone").map_err(f)?,
            org_key: OrgPublicKey::parse(&self.org_public_key, "org_public_key").map_err(f)?,
        })
    }
}

/// The answer to a new application. `token` is shown only here: keep it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmittedApplication {
    /// The application id.
    pub id: String,
    /// Always `pending`.
    pub status: Status,
    /// The secret to send as `X-Application-Token` to follow the application and upload
    /// documents. Only its SHA-256 is stored.
    pub token: String,
}

/// The legal representative as shown: the ID number to operators only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RepresentativeView {
    /// Full name.
    pub name: String,
    /// Resident identity number (operators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
}

/// The contact as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    /// E-mail address.
    pub email: String,
    /// Phone number.
    pub phone: String,
}

/// An application as the applicant or an operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplicationView {
    /// The application id.
    pub id: String,
    /// Where the application stands.
    pub status: Status,
    /// The enterprise's registered name.
    pub legal_name: String,
    /// Its unified social credit code.
    pub unified_social_credit_code: String,
    /// The org id it is (to be) admitted under on the beacon: the credit code.
    pub org: String,
    /// The org key (hex).
    pub org_public_key: String,
    /// The legal representative.
    pub legal_representative: RepresentativeView,
    /// The contact.
    pub contact: ContactView,
    /// Received at, unix milliseconds.
    pub created_ms: i64,
    /// Last changed at, unix milliseconds.
    pub updated_ms: i64,
    /// Decided at, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<i64>,
    /// Who decided (operators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why the application was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// The salted commitment to the verified identity that went on chain (hex, operators
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commitment: Option<String>,
    /// Hash of the committed attestation transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_tx: Option<String>,
    /// Hash of the committed proposal transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal_tx: Option<String>,
    /// The beacon governance proposal to admit the org.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
    /// The proposal's status on the beacon (`open`, `passed`, `rejected`, `expired`), read
    /// from the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal_status: Option<String>,
    /// Whether the org is now an active member holding the org key, read from the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_active: Option<bool>,
    /// The beacon's rejection code when status is `chain_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_error: Option<String>,
    /// Uploaded documents (metadata).
    pub documents: Vec<DocumentMeta>,
}

/// Applications for review.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationList {
    /// Oldest first.
    pub applications: Vec<ApplicationView>,
}

/// `GET /v1/onboarding/applications` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only applications in this status.
    #[param(value_type = Option<Status>)]
    pub status: Option<String>,
    /// At most this many (1 to 500, default 100), oldest first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `POST .../documents` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DocumentQuery {
    /// The file name, 1 to 255 characters, no path separators.
    pub name: String,
    /// SHA-256 of the body, 64 hex characters.
    pub sha256: String,
}

/// A stored document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadedDocument {
    /// The document id.
    pub document_id: String,
    /// The file name.
    pub name: String,
    /// SHA-256 of the content (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

// ---------------------------------------------------------------------------------------------
// Who is asking
// ---------------------------------------------------------------------------------------------

/// The credential of a request on an application.
pub(crate) enum Credential {
    /// A verified operator JWT.
    Operator(Caller),
    /// An application token, not yet matched against an application.
    ApplicantToken(String),
}

/// An operator JWT (any other role: 403), else an `X-Application-Token`, else 401.
pub(crate) fn credential(
    caller: Option<Caller>,
    headers: &HeaderMap,
) -> Result<Credential, Problem> {
    if let Some(caller) = caller {
        caller.require(&[Role::Operator])?;
        return Ok(Credential::Operator(caller));
    }
    match util::header_text(headers, APPLICATION_TOKEN_HEADER) {
        Some(token) if !token.is_empty() => Ok(Credential::ApplicantToken(token.to_string())),
        _ => Err(Problem::unauthorized(format!(
            "needs an operator's `Authorization: Bearer <token>` or the application's \
             `{APPLICATION_TOKEN_HEADER}`"
        ))),
    }
}

/// Whether `token` is the application's token (compared as SHA-256 hashes, in constant time).
fn token_matches(row: &ApplicationRow, token: &str) -> bool {
    util::ct_eq(
        util::sha256_hex(token.as_bytes()).as_bytes(),
        row.token_sha256.as_bytes(),
    )
}

fn token_refused() -> Problem {
    Problem::forbidden("the application token does not open this application")
}

fn unknown_application() -> Problem {
    Problem::not_found("unknown-application", "no application with this id")
}

/// Loads the application the credential opens: operators any (404 when unknown), the
/// applicant only its own (403 otherwise, also when the id is unknown).
pub(crate) async fn open_application(
    st: &AppState,
    cred: &Credential,
    id: &str,
) -> Result<ApplicationRow, Problem> {
    let row = ApplicationRow::load(&st.inner.db, id).await?;
    match (cred, row) {
        (Credential::Operator(_), Some(row)) => Ok(row),
        (Credential::Operator(_), None) => Err(unknown_application()),
        (Credential::ApplicantToken(t), Some(row)) if token_matches(&row, t) => Ok(row),
        (Credential::ApplicantToken(_), _) => Err(token_refused()),
    }
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/// Who a view is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Applicant,
    Operator,
}

/// The view of `row` for `audience`, with its documents; `with_chain` also reads the proposal's
/// status and the membership from the node (best effort: a slow or absent node leaves them
/// out).
pub(crate) async fn application_view(
    st: &AppState,
    row: &ApplicationRow,
    audience: Audience,
    with_chain: bool,
) -> Result<ApplicationView, Problem> {
    let keyring = &st.inner.config.pii;
    let pii = PersonalData::open(keyring, &row.id, &row.sealed_pii)?;
    let documents = store::documents(&st.inner.db, keyring, &row.id).await?;
    let operator = audience == Audience::Operator;
    let proposal_id = row.proposal_id.and_then(|p| u64::try_from(p).ok());
    let (proposal_status, member_active) = match proposal_id {
        Some(pid) if with_chain => chain_view(st, pid, &row.credit_code, &row.org_public_key).await,
        _ => (None, None),
    };
    Ok(ApplicationView {
        id: row.id.clone(),
        status: row.status,
        legal_name: row.legal_name.clone(),
        unified_social_credit_code: row.credit_code.clone(),
        org: row.credit_code.clone(),
        org_public_key: row.org_public_key.clone(),
        legal_representative: RepresentativeView {
            name: pii.representative_name,
            id_number: operator.then_some(pii.representative_id_number),
        },
        contact: ContactView {
            email: pii.email,
            phone: pii.phone,
        },
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
        decided_ms: row.decided_ms,
        decided_by: if operator {
            row.decided_by.clone()
        } else {
            None
        },
        rejection_reason: row.rejection_reason.clone(),
        commitment: if operator {
            row.commitment.clone()
        } else {
            None
        },
        attestation_tx: row.attestation_tx.clone(),
        proposal_tx: row.proposal_tx.clone(),
        proposal_id,
        proposal_status,
        member_active,
        chain_error: row.chain_error.clone(),
        documents,
    })
}

async fn chain_view(
    st: &AppState,
    proposal_id: u64,
    org: &str,
    org_key: &str,
) -> (Option<String>, Option<bool>) {
    let node = &st.inner.node;
    let reads = async {
        let status = chain::proposal_status(node, proposal_id).await?;
        let member = chain::member_active(node, org, org_key).await?;
        Ok::<_, trellis_servicekit::NodeError>((status, member))
    };
    match tokio::time::timeout(CHAIN_READ_TIMEOUT, reads).await {
        Ok(Ok((status, member))) => (status, Some(member)),
        Ok(Err(e)) => {
            tracing::warn!(proposal_id, error = %e, "cannot read the proposal from the node");
            (None, None)
        }
        Err(_) => {
            tracing::warn!(proposal_id, "the node did not answer in time");
            (None, None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Submitting
// ---------------------------------------------------------------------------------------------

/// Associated data of a sealed idempotent answer.
fn replay_aad(key: &str) -> Vec<u8> {
    format!("{SUBMIT_SCOPE}/{key}").into_bytes()
}

/// The stored form of an answer: sealed, because it holds the application token.
fn seal_answer(st: &AppState, key: &str, body: &str) -> Result<String, Problem> {
    let sealed = st
        .inner
        .config
        .pii
        .seal(body.as_bytes(), &replay_aad(key))
        .map_err(Problem::internal)?;
    Ok(format!("sealed:{}", BASE64.encode(sealed)))
}

fn replay(st: &AppState, key: &str, status: u16, stored: &str) -> Result<Response, Problem> {
    let sealed = stored
        .strip_prefix("sealed:")
        .and_then(|b| BASE64.decode(b).ok())
        .ok_or_else(|| Problem::internal("stored idempotent answer is not sealed"))?;
    let body = st
        .inner
        .config
        .pii
        .open(&sealed, &replay_aad(key))
        .map_err(Problem::internal)?;
    let status = StatusCode::from_u16(status).map_err(Problem::internal)?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("Idempotency-Key") else {
        return Ok(None);
    };
    let ok = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()));
    match ok {
        Some(k) => Ok(Some(k.to_string())),
        None => Err(Problem::bad_request(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

/// The conflict, if a live application (not `rejected` or `chain_failed`) holds the credit
/// code or the org key: a 409.
async fn find_duplicate(st: &AppState, a: &Applicant) -> Result<Option<Problem>, Problem> {
    let db = st.inner.db.pool();
    let by_code = sqlx::query(
        "SELECT 1 FROM identity_applications \
         WHERE credit_code = $1 AND status NOT IN ('rejected', 'chain_failed')",
    )
    .bind(a.credit_code.as_str())
    .fetch_optional(db)
    .await?;
    if by_code.is_some() {
        let p = Problem::conflict(
            "duplicate-application",
            "an application for this unified social credit code is already under way",
        )
        .with_field("unified_social_credit_code");
        return Ok(Some(p));
    }
    let by_key = sqlx::query(
        "SELECT 1 FROM identity_applications \
         WHERE org_public_key = $1 AND status NOT IN ('rejected', 'chain_failed')",
    )
    .bind(a.org_key.to_hex())
    .fetch_optional(db)
    .await?;
    if by_key.is_some() {
        let p = Problem::conflict(
            "org-key-in-use",
            "this org key belongs to another application under way",
        )
        .with_field("org_public_key");
        return Ok(Some(p));
    }
    Ok(None)
}

/// After a conflict: when the request carries an `Idempotency-Key`, the conflicting
/// application may be this very request's, sent twice at once (or sent again after it was
/// rejected). Its answer was stored in the same transaction as the application, so it is
/// there now if it is ever going to be: replay it. Otherwise the conflict stands.
async fn replay_or(
    st: &AppState,
    key: Option<&str>,
    request_hash: &str,
    conflict: Problem,
) -> ApiResult<Response> {
    let Some(key) = key else {
        return Err(conflict);
    };
    match Idempotency::lookup(&st.inner.db, SUBMIT_SCOPE, key, request_hash).await? {
        Some((status, stored)) => replay(st, key, status, &stored),
        None => Err(conflict),
    }
}

/// Apply to join the consortium. No account needed; the answer's `token` opens the
/// application afterwards. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/onboarding/applications", tag = "onboarding",
    request_body = ApplicationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry key: the same key and body give the same answer")),
    responses(
        (status = 201, body = SubmittedApplication),
        (status = 400, body = Problem, description = "A field does not parse; `field` names it"),
        (status = 409, body = Problem, description = "A live application holds the credit code or org key"),
        (status = 413, body = Problem),
        (status = 422, body = Problem, description = "The Idempotency-Key was used with another body")))]
async fn submit_application(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if !util::is_json(&headers) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "expected a JSON body with `Content-Type: application/json`",
        ));
    }
    let bytes = body.map_err(|r| Problem::new(r.status(), "malformed-body", r.body_text()))?;
    let request: ApplicationRequest = parse_json(&bytes)?;
    let key = idempotency_key(&headers)?;
    // The request as a canonical document (sorted keys, no spacing), so a retry that spells
    // the same JSON differently is still the same request.
    let canonical: serde_json::Value = serde_json::from_slice(&bytes).map_err(Problem::internal)?;
    let request_hash =
        util::sha256_hex(&serde_json::to_vec(&canonical).map_err(Problem::internal)?);
    if let Some(key) = &key
        && let Some((status, stored)) =
            Idempotency::lookup(&st.inner.db, SUBMIT_SCOPE, key, &request_hash).await?
    {
        return replay(&st, key, status, &stored);
    }
    let applicant = request.parse()?;
    if let Some(conflict) = find_duplicate(&st, &applicant).await? {
        return replay_or(&st, key.as_deref(), &request_hash, conflict).await;
    }

    let id = util::random_id()?;
    let token = hex::encode(util::random_bytes::<32>()?);
    let pii = PersonalData {
        representative_name: applicant.representative_name.as_str().to_string(),
        representative_id_number: applicant.representative_id.expose_secret().to_string(),
        email: applicant.email.as_str().to_string(),
        phone: applicant.phone.as_str().to_string(),
    };
    let sealed_pii = pii.seal(&st.inner.config.pii, &id)?;
    let answer = SubmittedApplication {
        id,
        status: Status::Pending,
        token,
    };
    let body = serde_json::to_string(&answer).map_err(Problem::internal)?;
    let sealed_answer = key
        .as_deref()
        .map(|key| seal_answer(&st, key, &body))
        .transpose()?;

    // The application and the stored answer (which alone still holds the token) commit
    // together or not at all: a crash in between can neither lose the token nor leave an
    // application that blocks the retry.
    let now = now_ms();
    let mut tx = st.inner.db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO identity_applications (id, status, legal_name, credit_code, \
         org_public_key, sealed_pii, token_sha256, created_ms, updated_ms) \
         VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&answer.id)
    .bind(applicant.legal_name.as_str())
    .bind(applicant.credit_code.as_str())
    .bind(applicant.org_key.to_hex())
    .bind(sealed_pii)
    .bind(util::sha256_hex(answer.token.as_bytes()))
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        drop(tx);
        if !util::is_unique_violation(&e) {
            return Err(Problem::internal(e));
        }
        // A concurrent request won.
        let conflict = find_duplicate(&st, &applicant).await?.unwrap_or_else(|| {
            Problem::conflict(
                "duplicate-application",
                "an application for this enterprise is already under way",
            )
            .with_field("unified_social_credit_code")
        });
        return replay_or(&st, key.as_deref(), &request_hash, conflict).await;
    }
    if let (Some(key), Some(sealed)) = (&key, &sealed_answer) {
        let standing =
            Idempotency::store_in(&mut tx, SUBMIT_SCOPE, key, &request_hash, 201, sealed).await?;
        // Sealing is randomised, so only our own stored answer equals `sealed`.
        if standing.1 != *sealed {
            // Another request stored an answer under this key first (the same request: its
            // answer stands, and this application is not made).
            drop(tx);
            return replay(&st, key, standing.0, &standing.1);
        }
    }
    tx.commit().await?;
    tracing::info!(application = %answer.id, "onboarding application received");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Deletes this service's stored idempotent answers older than [`IDEMPOTENCY_TTL`] (other
/// services' scopes are left alone); returns how many.
pub(crate) async fn purge_answers(db: &Db) -> Result<u64, trellis_servicekit::IdemError> {
    let before = now_ms() - IDEMPOTENCY_TTL.as_millis() as i64;
    let mut purged = 0;
    for scope in SCOPES {
        purged += Idempotency::purge_scope_before(db, scope, before).await?;
    }
    Ok(purged)
}

/// Runs [`purge_answers`] now and then every [`PURGE_EVERY`], until the runtime shuts down.
pub(crate) fn spawn_answer_purge(db: Db) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match purge_answers(&db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotent answers purged"),
                Err(e) => tracing::warn!(error = %e, "cannot purge expired idempotent answers"),
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// An application: to its applicant (`X-Application-Token`, without the ID number) or to an
/// operator (everything). With the admission proposal's status and the membership read from
/// the node.
#[utoipa::path(get, path = "/v1/onboarding/applications/{id}", tag = "onboarding",
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = []), ("application_token" = [])),
    responses(
        (status = 200, body = ApplicationView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_application(
    State(st): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ApplicationView>> {
    let cred = credential(caller, &headers)?;
    let row = open_application(&st, &cred, &id).await?;
    let audience = match &cred {
        Credential::Operator(caller) => {
            // Who read whose personal data: the audit trail of the review.
            tracing::info!(application = %row.id, operator = %caller.sub, "application read");
            Audience::Operator
        }
        Credential::ApplicantToken(_) => Audience::Applicant,
    };
    Ok(Json(application_view(&st, &row, audience, true).await?))
}

/// Applications for review, oldest first, with the personal data the reviewer needs.
/// Operators only.
#[utoipa::path(get, path = "/v1/onboarding/applications", tag = "onboarding",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApplicationList),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_applications(
    State(st): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<ApplicationList>> {
    caller.require(&[Role::Operator])?;
    let Query(q) = query.map_err(|r| util::rejection_problem(r.status(), &r.body_text()))?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                Problem::bad_request(
                    "status",
                    "must be one of pending, approved, attested, proposed, rejected, chain_failed",
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::bad_request(
            "limit",
            format!("must be 1 to {MAX_LIST}"),
        ));
    }
    let rows = match status {
        Some(s) => {
            sqlx::query(concat!(
                "SELECT ",
                application_columns!(),
                " FROM identity_applications WHERE status = $1 ORDER BY created_ms, id LIMIT $2"
            ))
            .bind(s.as_str())
            .bind(i64::from(limit))
            .fetch_all(st.inner.db.pool())
            .await?
        }
        None => {
            sqlx::query(concat!(
                "SELECT ",
                application_columns!(),
                " FROM identity_applications ORDER BY created_ms, id LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(st.inner.db.pool())
            .await?
        }
    };
    let mut applications = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = ApplicationRow::from_row(row)?;
        applications.push(application_view(&st, &row, Audience::Operator, false).await?);
    }
    Ok(Json(ApplicationList { applications }))
}

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

fn document_name(s: &str) -> Result<String, Problem> {
    let name = util::short_text(s, "name", MAX_DOCUMENT_NAME_CHARS)?;
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(Problem::bad_request(
            "name",
            "must be a file name, without path separators",
        ));
    }
    Ok(name)
}

fn content_type_of(headers: &HeaderMap) -> String {
    util::header_text(headers, header::CONTENT_TYPE.as_str())
        .map(str::trim)
        .filter(|ct| {
            !ct.is_empty() && ct.len() <= 127 && ct.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Upload a document (the raw file as the body, any content type) to a pending application.
/// Applicant token only. The body's SHA-256 must equal `sha256`.
#[utoipa::path(post, path = "/v1/onboarding/applications/{id}/documents", tag = "onboarding",
    params(("id" = String, Path, description = "Application id"), DocumentQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file"),
    security(("application_token" = [])),
    responses(
        (status = 201, body = UploadedDocument),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "The application is decided, or holds the most documents allowed"),
        (status = 413, body = Problem),
        (status = 422, body = Problem, description = "The body's SHA-256 is not `sha256`")))]
async fn upload_document(
    State(st): State<AppState>,
    caller: Option<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DocumentQuery>, QueryRejection>,
    body: Body,
) -> ApiResult<Response> {
    let cred = credential(caller, &headers)?;
    if matches!(cred, Credential::Operator(_)) {
        return Err(Problem::forbidden(
            "documents are uploaded by the applicant, with its application token",
        ));
    }
    let row = open_application(&st, &cred, &id).await?;
    let Query(q) = query.map_err(|r| util::rejection_problem(r.status(), &r.body_text()))?;
    let name = document_name(&q.name)?;
    let expected = q.sha256.trim().to_ascii_lowercase();
    if !util::is_hex(&expected, 64) {
        return Err(Problem::bad_request(
            "sha256",
            "must be 64 hex characters (SHA-256)",
        ));
    }
    if row.status != Status::Pending {
        return Err(Problem::conflict(
            "application-decided",
            "documents can only be added while the application is pending",
        ));
    }
    let count: i64 =
        sqlx::query("SELECT COUNT(*) FROM identity_documents WHERE application_id = $1")
            .bind(&row.id)
            .fetch_one(st.inner.db.pool())
            .await?
            .try_get(0)?;
    if count >= MAX_DOCUMENTS {
        return Err(Problem::conflict(
            "too-many-documents",
            format!("an application holds at most {MAX_DOCUMENTS} documents"),
        ));
    }
    let content = util::read_body(&headers, body, st.inner.config.max_document_bytes).await?;
    if content.is_empty() {
        return Err(Problem::bad_request("body", "the document is empty"));
    }
    let actual = util::sha256_hex(&content);
    if !util::ct_eq(actual.as_bytes(), expected.as_bytes()) {
        return Err(Problem::unprocessable(
            "sha256",
            "the body's SHA-256 is not the one given in `sha256`",
        ));
    }
    let doc_id = util::random_id()?;
    let keyring = &st.inner.config.pii;
    let sealed_name = keyring
        .seal(
            name.as_bytes(),
            &store::document_aad(&row.id, &doc_id, "name"),
        )
        .map_err(Problem::internal)?;
    let sealed_content = keyring
        .seal(&content, &store::document_aad(&row.id, &doc_id, "content"))
        .map_err(Problem::internal)?;
    let size = content.len() as u64;
    sqlx::query(
        "INSERT INTO identity_documents (id, application_id, sealed_name, sealed_content, \
         content_type, sha256, size, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&doc_id)
    .bind(&row.id)
    .bind(sealed_name)
    .bind(sealed_content)
    .bind(content_type_of(&headers))
    .bind(&actual)
    .bind(i64::try_from(size).map_err(Problem::internal)?)
    .bind(now_ms())
    .execute(st.inner.db.pool())
    .await?;
    tracing::info!(application = %row.id, document = %doc_id, size, "document stored");
    Ok((
        StatusCode::CREATED,
        Json(UploadedDocument {
            document_id: doc_id,
            name,
            sha256: actual,
            size,
        }),
    )
        .into_response())
}

/// `filename*` of a Content-Disposition header (RFC 6266 / RFC 8187): UTF-8, percent-encoded.
fn disposition(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// A document's content, as uploaded. Operators only.
#[utoipa::path(get, path = "/v1/onboarding/applications/{id}/documents/{doc_id}", tag = "onboarding",
    params(("id" = String, Path, description = "Application id"), ("doc_id" = String, Path, description = "Document id")),
    security(("bearer" = [])),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The file"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn download_document(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, doc_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(&[Role::Operator])?;
    let row = sqlx::query(
        "SELECT sealed_name, sealed_content, content_type FROM identity_documents \
         WHERE id = $1 AND application_id = $2",
    )
    .bind(&doc_id)
    .bind(&id)
    .fetch_optional(st.inner.db.pool())
    .await?
    .ok_or_else(|| {
        Problem::not_found("unknown-document", "no such document on this application")
    })?;
    let keyring = &st.inner.config.pii;
    let sealed_name: Vec<u8> = row.try_get("sealed_name")?;
    let sealed_content: Vec<u8> = row.try_get("sealed_content")?;
    let content_type: String = row.try_get("content_type")?;
    let name = keyring
        .open(&sealed_name, &store::document_aad(&id, &doc_id, "name"))
        .map_err(Problem::internal)?;
    let content = keyring
        .open(
            &sealed_content,
            &store::document_aad(&id, &doc_id, "content"),
        )
        .map_err(Problem::internal)?;
    let name = String::from_utf8_lossy(&name);
    tracing::info!(application = %id, document = %doc_id, operator = %caller.sub, "document read");
    let mut resp = (StatusCode::OK, content).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition(&name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The OpenAPI paths of this module.
#[derive(OpenApi)]
#[openapi(
    paths(
        submit_application,
        get_application,
        list_applications,
        upload_document,
        download_document
    ),
    components(schemas(
        ApplicationRequest,
        RepresentativeRequest,
        ContactRequest,
        SubmittedApplication,
        ApplicationView,
        RepresentativeView,
        ContactView,
        ApplicationList,
        UploadedDocument,
        DocumentMeta,
        Status
    ))
)]
pub struct ApplicationsDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_percent_encoded() {
        assert_eq!(
            disposition("营业执照.pdf"),
            "attachment; filename*=UTF-8''%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7.pdf"
        );
        assert_eq!(
            disposition("a b\".pdf"),
            "attachment; filename*=UTF-8''a%20b%22.pdf"
        );
    }

    #[test]
    fn document_names() {
        assert!(document_name("licence.pdf").is_ok());
        assert_eq!(
            document_name("../x").unwrap_err().field.as_deref(),
            Some("name")
        );
        assert!(document_name("a\nb").is_err());
        assert!(document_name("").is_err());
        assert!(document_name(&"a".repeat(256)).is_err());
    }
}
