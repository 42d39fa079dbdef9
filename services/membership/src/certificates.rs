//! Consortium CA routes: org certificates (who may read what), revocations signed by the CA
//! operator key, the CRL and the CA certificate, and the CA's metrics.
//!
//! Who sees certificates: operators everything; enterprise admins and members their own
//! org's (403 for another org); regulators and banks the metadata of every certificate
//! (serial, org, validity, status) but not the certificate itself. The CRL, the CA
//! certificate and the metrics (counts only) are public.

use crate::MembershipService;
use crate::ca::{CertState, RevocationReason};
use crate::chain;
use crate::crl;
use crate::manager::RevokeError;
use crate::store::{self, CertRow, CrlState};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use trellis_servicekit::{ApiResult, Caller, JsonBody, Problem, Role, now_ms};
use trellis_types::OrgId;
use trellis_types::actions::MAX_SERIAL_BYTES;
use utoipa::{IntoParams, ToSchema};

pub(crate) fn router() -> Router<MembershipService> {
    Router::new()
        .route("/v1/ca/certificates", get(list_certificates))
        .route("/v1/ca/certificates/{serial}", get(get_certificate))
        .route("/v1/ca/revocations", post(revoke))
        .route("/v1/ca/crl", get(crl_pem))
        .route("/v1/ca/ca.pem", get(ca_pem))
        .route("/v1/ca/chain.pem", get(chain_pem))
        .route("/v1/ca/metrics", get(metrics))
}

/// What a caller may see of certificates.
enum Sight {
    /// Every certificate, in full.
    All,
    /// The certificates of one org, in full.
    Org(String),
    /// Every certificate's metadata.
    Metadata,
}

fn sight(caller: &Caller) -> ApiResult<Sight> {
    match caller.role {
        Role::Operator => Ok(Sight::All),
        Role::EnterpriseAdmin | Role::EnterpriseMember => caller
            .org
            .clone()
            .map(Sight::Org)
            .ok_or_else(|| Problem::forbidden("the caller's token names no organisation")),
        Role::Regulator | Role::Bank => Ok(Sight::Metadata),
    }
}

/// An org certificate the CA issued. Regulators and banks see the first five fields only.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct CertificateView {
    /// Serial (lower-case hex, as on the beacon's revocation list and in the CRL).
    pub serial: String,
    pub org: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// `active` (the org's current certificate), `superseded` or `revoked`.
    pub status: String,
    /// The certified org key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// SHA-256 of the DER (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_ms: Option<i64>,
    /// Where it stands in its life now: `fresh`, `renewal_due`, `alert` or `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub state: Option<CertState>,
    /// The certificate that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// RFC 5280 reason code of its revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<u32>,
    /// Beacon height of its revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_height: Option<u64>,
    /// The certificate, PEM (single-certificate reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
}

impl CertificateView {
    fn metadata(c: &CertRow) -> CertificateView {
        CertificateView {
            serial: c.serial_hex.clone(),
            org: c.org.clone(),
            not_before_ms: c.not_before_ms,
            not_after_ms: c.not_after_ms,
            status: c.status.clone(),
            public_key: None,
            sha256: None,
            issued_ms: None,
            state: None,
            superseded_by: None,
            revocation_reason: None,
            revoked_height: None,
            pem: None,
        }
    }

    fn full(c: &CertRow, svc: &MembershipService, now: i64) -> CertificateView {
        CertificateView {
            public_key: Some(c.public_key_hex.clone()),
            sha256: Some(c.sha256_hex.clone()),
            issued_ms: Some(c.issued_ms),
            state: Some(svc.inner.config.policy.state(c.not_after_ms, now)),
            superseded_by: c.superseded_by.clone(),
            revocation_reason: c.revoked_reason.and_then(|r| u32::try_from(r).ok()),
            revoked_height: c.revoked_height.and_then(|h| u64::try_from(h).ok()),
            ..CertificateView::metadata(c)
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CertificateQuery {
    /// Only this org's certificates (enterprise callers: their own org only).
    org: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /v1/ca/certificates`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CertificateList {
    pub certificates: Vec<CertificateView>,
}

/// Org certificates, newest first.
#[utoipa::path(get, path = "/v1/ca/certificates", tag = "ca", params(CertificateQuery),
    responses((status = 200, body = CertificateList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn list_certificates(
    State(svc): State<MembershipService>,
    caller: Caller,
    Query(q): Query<CertificateQuery>,
) -> ApiResult<Json<CertificateList>> {
    let sight = sight(&caller)?;
    let asked = match &q.org {
        Some(org) => Some(
            OrgId::parse(org, "org")
                .map_err(|e| Problem::bad_request("org", e.to_string()))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let org = match (&sight, asked) {
        (Sight::Org(own), Some(asked)) if *own != asked => {
            return Err(Problem::forbidden(
                "the caller may only read its own organisation's certificates",
            ));
        }
        (Sight::Org(own), _) => Some(own.clone()),
        (_, asked) => asked,
    };
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 1000));
    let rows = store::certificates(&svc.inner.db, org.as_deref(), limit).await?;
    let now = now_ms();
    let certificates = rows
        .iter()
        .map(|c| match sight {
            Sight::Metadata => CertificateView::metadata(c),
            _ => CertificateView::full(c, &svc, now),
        })
        .collect();
    Ok(Json(CertificateList { certificates }))
}

/// A certificate serial from a request: hex, either case, leading zero bytes ignored, at
/// most 20 significant bytes. Held as the beacon writes it: minimal big-endian bytes.
struct Serial(Vec<u8>);

impl Serial {
    fn parse(raw: &str, field: &str) -> ApiResult<Serial> {
        let bytes = hex::decode(raw.trim())
            .map_err(|_| Problem::bad_request(field, "a serial is an even number of hex digits"))?;
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let minimal = bytes[start..].to_vec();
        if minimal.is_empty() || minimal.len() > MAX_SERIAL_BYTES {
            return Err(Problem::unprocessable(
                field,
                "a serial is 1 to 20 bytes and not zero",
            ));
        }
        Ok(Serial(minimal))
    }

    fn hex(&self) -> String {
        hex::encode(&self.0)
    }
}

/// One certificate with its PEM (regulators and banks: metadata only).
#[utoipa::path(get, path = "/v1/ca/certificates/{serial}", tag = "ca",
    params(("serial" = String, Path, description = "Serial (hex)")),
    responses((status = 200, body = CertificateView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_certificate(
    State(svc): State<MembershipService>,
    caller: Caller,
    Path(serial): Path<String>,
) -> ApiResult<Json<CertificateView>> {
    let sight = sight(&caller)?;
    let serial = Serial::parse(&serial, "serial")?;
    let cert = store::certificate(&svc.inner.db, &serial.hex())
        .await?
        .ok_or_else(|| {
            Problem::not_found(
                "unknown-certificate",
                "the CA issued no org certificate with this serial",
            )
            .with_field("serial")
        })?;
    let view = match sight {
        Sight::Metadata => CertificateView::metadata(&cert),
        Sight::Org(own) if own != cert.org => {
            return Err(Problem::forbidden(
                "the caller may only read its own organisation's certificates",
            ));
        }
        Sight::All | Sight::Org(_) => CertificateView {
            pem: Some(cert.pem.clone()),
            ..CertificateView::full(&cert, &svc, now_ms())
        },
    };
    Ok(Json(view))
}

/// `POST /v1/ca/revocations`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// Serial of any certificate of the consortium CA (org or node certificate), hex.
    #[schema(max_length = 42)]
    pub serial: String,
    /// `unspecified`, `key_compromise`, `ca_compromise`, `affiliation_changed`, `superseded`,
    /// `cessation_of_operation`, `certificate_hold` or `privilege_withdrawn`.
    #[schema(value_type = String)]
    pub reason: RevocationReason,
}

/// A revocation committed on the beacon.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RevocationReceipt {
    /// Serial (minimal lower-case hex, as on the beacon).
    pub serial: String,
    #[schema(value_type = String)]
    pub reason: RevocationReason,
    /// RFC 5280 CRLReason code.
    pub reason_code: u32,
    /// Beacon height of the block that revoked it.
    pub height: u64,
    pub tx_hash: String,
}

/// Revokes a certificate: signs `RevokeCertificate` with the CA operator key, submits it and
/// waits for its block. Operators only. A serial whose revocation is pending already (the
/// certificate manager's or an earlier request's, perhaps one that timed out) is refused with
/// 409 `revocation-in-flight` naming that transaction: nothing new is signed.
#[utoipa::path(post, path = "/v1/ca/revocations", tag = "ca", request_body = RevocationRequest,
    responses((status = 201, body = RevocationReceipt), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem,
            description = "already revoked (`already-revoked`), or a revocation of the serial is pending (`revocation-in-flight`)"),
        (status = 422, body = Problem), (status = 503, body = Problem), (status = 504, body = Problem)))]
pub(crate) async fn revoke(
    State(svc): State<MembershipService>,
    caller: Caller,
    JsonBody(body): JsonBody<RevocationRequest>,
) -> ApiResult<(StatusCode, Json<RevocationReceipt>)> {
    caller.require(&[Role::Operator])?;
    let serial = Serial::parse(&body.serial, "serial")?;
    let code = crl::reason_code(body.reason);
    let done = svc.revoke_and_wait(&serial.0, code).await;
    match done {
        Ok((tx_hash, height)) => {
            tracing::info!(serial = %serial.hex(), reason = code, by = %caller.sub, "certificate revoked");
            Ok((
                StatusCode::CREATED,
                Json(RevocationReceipt {
                    serial: serial.hex(),
                    reason: body.reason,
                    reason_code: code,
                    height,
                    tx_hash,
                }),
            ))
        }
        Err(RevokeError::Rejected { code, reason }) if code == "already-revoked" => {
            Err(Problem::conflict("already-revoked", reason).with_field("serial"))
        }
        Err(RevokeError::InFlight(tx_hash)) => Err(Problem::conflict(
            "revocation-in-flight",
            format!(
                "a revocation of this serial is pending already (transaction {tx_hash}); \
                 look it up by its hash or retry once it is decided"
            ),
        )
        .with_field("serial")),
        Err(RevokeError::Node(e)) => Err(chain::node_problem(e)),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// The CA's CRL: every serial on the beacon's revocation list, signed by the CA; CRL number =
/// the beacon height of the list, next update a day after it was built. Public. Serves the
/// CRL the certificate manager last built (it rebuilds it when the beacon's list changes);
/// only while none was ever built does the route build one, once.
#[utoipa::path(get, path = "/v1/ca/crl", tag = "ca",
    responses((status = 200, content_type = "application/x-pem-file", body = String),
        (status = 503, body = Problem)))]
pub(crate) async fn crl_pem(State(svc): State<MembershipService>) -> ApiResult<Response> {
    let pem = served_crl(&svc).await?;
    Ok(pem_response(pem.to_string()))
}

/// The CRL to serve: the in-memory copy while it is recent; else the one recorded in
/// `ca_crl_state` (perhaps by another process's manager); else, only while no CRL was ever
/// recorded, one built here and recorded (unless a manager recorded one meanwhile). The cache
/// lock makes concurrent requests wait for that one read or build.
async fn served_crl(svc: &MembershipService) -> ApiResult<Arc<str>> {
    let inner = &svc.inner;
    let mut cache = inner.crl_cache.lock().await;
    if let Some(c) = cache.as_ref().filter(|c| c.is_recent()) {
        return Ok(c.pem.clone());
    }
    match store::crl_state(&inner.db).await {
        Ok(Some(state)) => {
            let fresh = crl::CachedCrl::of(&state);
            let pem = fresh.pem.clone();
            *cache = Some(fresh);
            return Ok(pem);
        }
        Ok(None) => {}
        Err(e) => {
            // Serve the copy held (it stays valid for a day after it was built) and look
            // again after the recheck interval, not on every request.
            if let Some(c) = cache.as_mut() {
                tracing::warn!(error = %e, "cannot re-read the CRL; serving the copy held");
                c.checked = tokio::time::Instant::now();
                return Ok(c.pem.clone());
            }
            return Err(e.into());
        }
    }
    let list = chain::revocations(&inner.node)
        .await
        .map_err(chain::node_problem)?;
    let now = now_ms();
    let first_seen = store::mirror_revocations(&inner.db, &list, now).await?;
    let pem = crl::build(&inner.config, &list, &first_seen, now).map_err(Problem::internal)?;
    let mut state = CrlState {
        fingerprint: crl::fingerprint(&list),
        crl_number: list.height,
        entries: list.revocations.len(),
        pem,
        built_ms: now,
        path: None,
        written_ms: None,
    };
    if !store::set_crl_state(&inner.db, &state, false).await? {
        // The manager recorded one meanwhile: serve that.
        if let Some(recorded) = store::crl_state(&inner.db).await? {
            state = recorded;
        }
    }
    let fresh = crl::CachedCrl::of(&state);
    let pem = fresh.pem.clone();
    *cache = Some(fresh);
    Ok(pem)
}

/// The consortium root certificate: the trust anchor of org and node certificates (the
/// issuing CA's certificate when the service was given its CA without the root). Public.
#[utoipa::path(get, path = "/v1/ca/ca.pem", tag = "ca",
    responses((status = 200, content_type = "application/x-pem-file", body = String)))]
pub(crate) async fn ca_pem(State(svc): State<MembershipService>) -> Response {
    let ca = &svc.inner.config.ca;
    pem_response(ca.root_pem().unwrap_or_else(|| ca.cert_pem().to_string()))
}

/// The current issuing CA's certificate followed by the root: what an org appends to its own
/// certificate to build its nodes' chains. Public.
#[utoipa::path(get, path = "/v1/ca/chain.pem", tag = "ca",
    responses((status = 200, content_type = "application/x-pem-file", body = String)))]
pub(crate) async fn chain_pem(State(svc): State<MembershipService>) -> Response {
    pem_response(svc.inner.config.ca.chain_pem())
}

fn pem_response(pem: String) -> Response {
    let mut resp = pem.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    resp
}

/// The CA's Prometheus metrics (counts only). Public, for scrapers.
#[utoipa::path(get, path = "/v1/ca/metrics", tag = "ca",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(svc): State<MembershipService>) -> Response {
    let mut resp = svc.inner.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
