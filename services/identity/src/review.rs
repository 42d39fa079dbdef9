//! The real-name review's decision. An operator approves or rejects a pending application. On
//! approval the service draws a random salt, commits to the verified identity
//! ([`commitment`]), and in one database transaction marks the application `approved` and
//! queues the attestation and the admission proposal for the chain ([`crate::outbox`]). Only
//! the commitment and the org key ever go on chain.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use trellis_servicekit::db::now_ms;
use trellis_servicekit::{ApiResult, Caller, JsonBody, Problem, Role};
use trellis_types::Digest;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::applications::{ApplicationView, Audience, application_view};
use crate::outbox;
use crate::store::{self, ApplicationRow, PersonalData, Status};
use crate::util;

/// Domain separator of identity commitments.
pub const COMMITMENT_DOMAIN: &[u8] = b"trellis/identity/v1";
/// Longest rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How often a decision request looks whether the chain work is done.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The identity facts an attestation commits to, as verified by the reviewer.
#[derive(Clone, Copy)]
pub struct IdentityFacts<'a> {
    /// Unified social credit code.
    pub credit_code: &'a str,
    /// Registered legal name.
    pub legal_name: &'a str,
    /// Legal representative's name.
    pub representative_name: &'a str,
    /// Legal representative's resident identity number.
    pub representative_id_number: &'a str,
}

impl std::fmt::Debug for IdentityFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityFacts")
            .field("credit_code", &self.credit_code)
            .field("legal_name", &self.legal_name)
            .finish_non_exhaustive()
    }
}

/// The salted commitment to a verified identity that goes on chain:
///
/// `SHA-256("trellis/identity/v1" ‖ salt ‖ field(credit code) ‖ field(legal name) ‖
/// field(representative name) ‖ field(representative ID number))`
///
/// where `field(s)` is the UTF-8 byte length of `s` as a 4-byte big-endian integer followed by
/// those bytes. Whoever is given the salt and the facts (a regulator, through a disclosure) can
/// recompute it; without the salt the commitment reveals nothing.
pub fn commitment(salt: &[u8; 32], facts: &IdentityFacts<'_>) -> Digest {
    let mut h = Sha256::new();
    h.update(COMMITMENT_DOMAIN);
    h.update(salt);
    for field in [
        facts.credit_code,
        facts.legal_name,
        facts.representative_name,
        facts.representative_id_number,
    ] {
        // Fields are bounded far below 4 GiB by the domain types.
        h.update((field.len() as u32).to_be_bytes());
        h.update(field.as_bytes());
    }
    Digest(h.finalize().into())
}

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/onboarding/applications/{id}/decision", post(decide))
}

/// An operator's decision on a pending application.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `true` to approve, `false` to reject.
    pub approve: bool,
    /// Why the application is rejected, 1 to 500 characters; required when rejecting, refused
    /// when approving.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Decide a pending application. Operators only. A rejection answers 200 at once. An approval
/// queues the attestation and the admission proposal and waits for the chain: 200 once the
/// proposal is open (or the chain refused, status `chain_failed`), 202 with status `approved`
/// if the chain is slower; the work continues in the background either way.
#[utoipa::path(post, path = "/v1/onboarding/applications/{id}/decision", tag = "onboarding",
    params(("id" = String, Path, description = "Application id")),
    request_body = DecisionRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApplicationView, description = "Decided (and on chain, when approved)"),
        (status = 202, body = ApplicationView, description = "Approved; the chain has not taken it yet"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The application is not pending")))]
async fn decide(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<DecisionRequest>,
) -> ApiResult<Response> {
    caller.require(&[Role::Operator])?;
    let reason = match (req.approve, &req.reason) {
        (false, None) => {
            return Err(Problem::bad_request("reason", "a rejection needs a reason"));
        }
        (false, Some(r)) => Some(util::short_text(r, "reason", MAX_REASON_CHARS)?),
        (true, Some(_)) => {
            return Err(Problem::bad_request(
                "reason",
                "only a rejection carries a reason",
            ));
        }
        (true, None) => None,
    };
    let row = ApplicationRow::load(&st.inner.db, &id)
        .await?
        .ok_or_else(|| Problem::not_found("unknown-application", "no application with this id"))?;
    if row.status != Status::Pending {
        return Err(not_pending(row.status));
    }
    match reason {
        Some(reason) => reject(&st, &caller, &row, &reason).await,
        None => approve(&st, &caller, &row).await,
    }
}

fn not_pending(status: Status) -> Problem {
    Problem::conflict(
        "not-pending",
        format!(
            "only pending applications can be decided; this one is {}",
            status.as_str()
        ),
    )
}

async fn reject(
    st: &AppState,
    caller: &Caller,
    row: &ApplicationRow,
    reason: &str,
) -> ApiResult<Response> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE identity_applications SET status = 'rejected', rejection_reason = $1, \
         decided_ms = $2, decided_by = $3, updated_ms = $2 WHERE id = $4 AND status = 'pending'",
    )
    .bind(reason)
    .bind(now)
    .bind(&caller.sub)
    .bind(&row.id)
    .execute(st.inner.db.pool())
    .await?;
    if done.rows_affected() == 0 {
        // Decided by someone else meanwhile.
        let status = ApplicationRow::load(&st.inner.db, &row.id)
            .await?
            .map_or(Status::Pending, |r| r.status);
        return Err(not_pending(status));
    }
    tracing::info!(application = %row.id, operator = %caller.sub, "application rejected");
    let row = reload(st, &row.id).await?;
    let view = application_view(st, &row, Audience::Operator, false).await?;
    Ok((StatusCode::OK, Json(view)).into_response())
}

async fn approve(st: &AppState, caller: &Caller, row: &ApplicationRow) -> ApiResult<Response> {
    let cfg = &st.inner.config;
    let pii = PersonalData::open(&cfg.pii, &row.id, &row.sealed_pii)?;
    let salt = util::random_bytes::<32>()?;
    let digest = commitment(
        &salt,
        &IdentityFacts {
            credit_code: &row.credit_code,
            legal_name: &row.legal_name,
            representative_name: &pii.representative_name,
            representative_id_number: &pii.representative_id_number,
        },
    );
    drop(pii);
    let sealed_salt = cfg
        .pii
        .seal(&salt, &store::salt_aad(&row.id))
        .map_err(Problem::internal)?;
    // Read before the transaction (no network inside it). When the node cannot be reached the
    // counter alone decides; the worker re-allocates if the chain disagrees.
    let node_next = outbox::node_next_nonce(&st.inner.node, &cfg.verifier).await;

    let mut tx = st.inner.db.begin_write().await?;
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE identity_applications SET status = 'approved', sealed_salt = $1, \
         commitment = $2, attestation_level = $3, decided_ms = $4, decided_by = $5, \
         updated_ms = $4 WHERE id = $6 AND status = 'pending'",
    )
    .bind(sealed_salt)
    .bind(digest.to_hex())
    .bind(i64::from(cfg.attestation_level))
    .bind(now)
    .bind(&caller.sub)
    .bind(&row.id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        let status = ApplicationRow::load(&st.inner.db, &row.id)
            .await?
            .map_or(Status::Pending, |r| r.status);
        return Err(not_pending(status));
    }
    // An application stored before weak keys were refused may hold one: the chain would refuse
    // the admission, so the approval is refused, naming the field (the reviewer rejects it).
    let org_key = match crate::domain::OrgPublicKey::parse(&row.org_public_key, "org_public_key") {
        Ok(k) => k,
        Err(e) => {
            tx.rollback().await?;
            return Err(Problem::unprocessable(e.field, e.reason));
        }
    };
    let org = trellis_types::OrgId::parse(&row.credit_code, "org").map_err(Problem::internal)?;
    outbox::enqueue_admission(
        &mut tx,
        st.inner.db.backend(),
        &outbox::Admission {
            application_id: &row.id,
            chain_id: &cfg.chain_id,
            verifier: &cfg.verifier,
            org_key: org_key.public_key(),
            commitment: digest,
            level: cfg.attestation_level,
            org: &org,
        },
        node_next,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(application = %row.id, operator = %caller.sub, "application approved; chain work queued");
    st.inner.nudge.notify_one();

    // Wait for the worker to carry the proposal onto the chain.
    let deadline = tokio::time::Instant::now() + cfg.chain_wait;
    let mut current = reload(st, &row.id).await?;
    while !matches!(current.status, Status::Proposed | Status::ChainFailed)
        && tokio::time::Instant::now() + POLL_EVERY <= deadline
    {
        tokio::time::sleep(POLL_EVERY).await;
        current = reload(st, &row.id).await?;
    }
    let settled = matches!(current.status, Status::Proposed | Status::ChainFailed);
    let view = application_view(st, &current, Audience::Operator, settled).await?;
    let code = if settled {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(view)).into_response())
}

async fn reload(st: &AppState, id: &str) -> Result<ApplicationRow, Problem> {
    ApplicationRow::load(&st.inner.db, id)
        .await?
        .ok_or_else(|| Problem::internal("application vanished"))
}

/// The OpenAPI paths of this module.
#[derive(OpenApi)]
#[openapi(paths(decide), components(schemas(DecisionRequest)))]
pub struct ReviewDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the commitment encoding: a change here changes every attestation.
    #[test]
    fn commitment_vector() {
        let facts = IdentityFacts {
            credit_code: "91350100M000100Y43",
            legal_name: "厦门某某供应链有限公司",
            representative_name: "张三",
            representative_id_number: "11010519491231002X",
        };
        let salt = [7u8; 32];
        // Recomputed independently of `commitment` (and checked with Python's hashlib).
        let mut bytes = b"trellis/identity/v1".to_vec();
        bytes.extend_from_slice(&salt);
        for f in [
            "91350100M000100Y43",
            "厦门某某供应链有限公司",
            "张三",
            "11010519491231002X",
        ] {
            bytes.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
            bytes.extend_from_slice(f.as_bytes());
        }
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        let got = commitment(&salt, &facts);
        assert_eq!(got.0, expected);
        assert_eq!(
            got.to_hex(),
            "d69b8c51549c8f05aad775df5da055b008a7a19c10ab6c9f5781d2b63dd99fae"
        );
        // Length prefixes keep field boundaries: moving a character across changes the hash.
        let shifted = IdentityFacts {
            legal_name: "厦门某某供应链有限公司张",
            representative_name: "三",
            ..facts
        };
        assert_ne!(commitment(&salt, &shifted), got);
        assert_ne!(commitment(&[8u8; 32], &facts), got);
    }
}
