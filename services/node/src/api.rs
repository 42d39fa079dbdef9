//! The node's client API (axum), one set of routes per hosted chain under
//! `/v1/chains/{chain_id}/...`: submit transactions, read their fate, blocks, anchors with their
//! proof bundle, status, and the chain application's own read routes (the node mounts them
//! without knowing the application). The beacon's are also served under `/v1/...`, where they
//! always were. Node-wide: the chain list, health, readiness, metrics and the OpenAPI document.
//! Every error is an RFC 9457 [`Problem`] (`application/problem+json`).

use crate::chain::{ChainShared, TxLocation, lock, now_ms};
use crate::mempool::{Admitted, Rejected};
use crate::problem::{Problem, internal, read_state};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use trellis_ledger::app::{Access, ReadArgs};
use trellis_types::wire::{self, NetMessage};
use trellis_types::{Digest, TxError};
use utoipa::{OpenApi, ToSchema};

fn rejection_problem(r: &Rejected, field: &str) -> Problem {
    let (status, kind) = match r {
        Rejected::Invalid(TxError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "tx-too-large")
        }
        Rejected::Invalid(TxError::BadSignature) => (StatusCode::BAD_REQUEST, "bad-signature"),
        Rejected::Invalid(_) => (StatusCode::BAD_REQUEST, "malformed-transaction"),
        Rejected::WrongChain { .. } => (StatusCode::BAD_REQUEST, "wrong-chain"),
        Rejected::UnknownAccount => (StatusCode::FORBIDDEN, "unknown-account"),
        Rejected::NonceUsed { .. } | Rejected::NonceTaken(_) => {
            (StatusCode::CONFLICT, "nonce-used")
        }
        Rejected::NonceTooFarAhead { .. } => (StatusCode::CONFLICT, "nonce-too-far-ahead"),
        Rejected::Full => (StatusCode::SERVICE_UNAVAILABLE, "pool-full"),
        Rejected::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "chain-unavailable"),
    };
    let mut p = Problem::new(status, kind, r.to_string()).field(field);
    if r.is_retryable() {
        p.retry_after_s = Some(1);
    }
    p
}

struct ApiState {
    /// Every hosted chain by id.
    chains: BTreeMap<String, Arc<ChainShared>>,
    /// The chain the `/v1/...` routes serve.
    beacon: Arc<ChainShared>,
    node_name: String,
}

type St = State<Arc<ApiState>>;

/// The chain a request is for: `{chain_id}` in the path, else the beacon (the `/v1/...` routes).
struct OnChain(Arc<ChainShared>);

impl FromRequestParts<Arc<ApiState>> for OnChain {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<ApiState>) -> Result<OnChain, Problem> {
        let params = Path::<BTreeMap<String, String>>::from_request_parts(parts, st)
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        let chain = match params.get("chain_id") {
            None => st.beacon.clone(),
            Some(id) => st.chains.get(id).cloned().ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown-chain",
                    "this node hosts no chain with this id",
                )
                .field("chain_id")
            })?,
        };
        // Submissions prove themselves (a signed transaction of a registered account); reads
        // of a chain that is not public need a request signed by an account it accepts.
        if !chain.app.public() && parts.method != axum::http::Method::POST {
            check_reader(&chain, parts)?;
        }
        Ok(OnChain(chain))
    }
}

/// 401 unless the request is signed by an account (`trellis_types::request`), 403 unless the
/// chain's application lets that account read.
fn check_reader(chain: &ChainShared, parts: &Parts) -> Result<(), Problem> {
    use trellis_types::request::{self, RequestAuthError};
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let header = |name: &'static str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let account = request::verify_request(header, parts.method.as_str(), path, b"", now_ms())
        .map_err(|e| {
            let field = match e {
                RequestAuthError::Missing(h) | RequestAuthError::Malformed(h) => h,
                RequestAuthError::Stale => request::TIME_HEADER,
                RequestAuthError::BadSignature => request::SIGNATURE_HEADER,
            };
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("this chain answers its members only: {e}"),
            )
            .field(field)
        })?;
    let state = chain.state();
    match chain.app.may_read(&state, &account) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not-a-member",
            "the signing account is not an account of one of this chain's member orgs",
        )
        .field(request::ACCOUNT_HEADER)),
        Err(e) => Err(internal(e)),
    }
}

/// Path parameters by name; a malformed path is a problem, not a plain-text rejection.
struct Params(BTreeMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }
}

impl FromRequestParts<Arc<ApiState>> for Params {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<ApiState>) -> Result<Params, Problem> {
        Path::<BTreeMap<String, String>>::from_request_parts(parts, st)
            .await
            .map(|Path(p)| Params(p))
            .map_err(|e| {
                Problem::new(StatusCode::BAD_REQUEST, "bad-path", e.body_text()).field("path")
            })
    }
}

/// The client API of a node hosting `chains`; `beacon` (one of them) is also served under
/// `/v1/...`.
pub fn router(
    chains: Vec<Arc<ChainShared>>,
    beacon: Arc<ChainShared>,
    node_name: String,
) -> Router {
    let chains = chains
        .into_iter()
        .map(|c| (c.chain_id.clone(), c))
        .collect();
    let state = Arc::new(ApiState {
        chains,
        beacon,
        node_name,
    });
    let mut router = Router::new();
    for prefix in ["/v1", "/v1/chains/{chain_id}"] {
        router = router
            .route(&format!("{prefix}/transactions"), post(submit))
            .route(&format!("{prefix}/transactions/{{hash}}"), get(tx_status))
            .route(&format!("{prefix}/blocks/latest"), get(latest_block))
            .route(&format!("{prefix}/blocks/{{height}}"), get(block_at))
            .route(&format!("{prefix}/anchors/{{digest}}"), get(anchor))
            .route(&format!("{prefix}/status"), get(status))
            .route(
                &format!("{prefix}/proofs/{{namespace}}/{{*id}}"),
                get(state_proof),
            )
            .route(&format!("{prefix}/{{*path}}"), get(app_read));
    }
    router
        .route("/v1/chains", get(chains_list))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(state)
}

async fn openapi_json(State(st): St) -> Json<utoipa::openapi::OpenApi> {
    let apps: Vec<(&str, &dyn trellis_ledger::app::Application)> = st
        .chains
        .values()
        .map(|c| (c.chain_id.as_str(), &*c.app))
        .collect();
    Json(openapi(&apps, st.beacon.chain_id.as_str()))
}

/// The node API's OpenAPI document: the routes every chain has, under `/v1/chains/{chain_id}`
/// and (for the beacon) `/v1`, and each hosted application's read routes.
pub fn openapi(
    apps: &[(&str, &dyn trellis_ledger::app::Application)],
    beacon: &str,
) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{Parameter, ParameterIn};
    let mut doc = ApiDoc::openapi();
    let chain_param = || {
        let mut p = Parameter::new("chain_id");
        p.parameter_in = ParameterIn::Path;
        p.description = Some("A chain this node hosts (`GET /v1/chains`)".into());
        p
    };
    // The generic routes are written under `/v1`; each is also served per chain.
    let generic: Vec<(String, utoipa::openapi::PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/") && *p != "/v1/chains")
        .map(|(p, item)| (p.clone(), item.clone()))
        .collect();
    for (path, mut item) in generic {
        let per_chain = path.replacen("/v1", "/v1/chains/{chain_id}", 1);
        item.parameters
            .get_or_insert_with(Vec::new)
            .push(utoipa::openapi::RefOr::T(chain_param()));
        doc.paths.paths.insert(per_chain, item);
    }
    let mut seen_kinds = std::collections::BTreeSet::new();
    for (chain_id, app) in apps {
        let app_doc = app.openapi();
        let legacy = *chain_id == beacon;
        // One copy per application kind: the paths are the same for every chain of a kind.
        if !seen_kinds.insert(app.kind()) && !legacy {
            continue;
        }
        for (path, item) in &app_doc.paths.paths {
            let mut per_chain = item.clone();
            per_chain
                .parameters
                .get_or_insert_with(Vec::new)
                .push(utoipa::openapi::RefOr::T(chain_param()));
            doc.paths
                .paths
                .insert(format!("/v1/chains/{{chain_id}}{path}"), per_chain);
            if legacy {
                doc.paths.paths.insert(format!("/v1{path}"), item.clone());
            }
        }
        if let Some(components) = app_doc.components {
            let mine = doc.components.get_or_insert_with(Default::default);
            mine.schemas.extend(components.schemas);
        }
    }
    doc
}

/// A chain application's read route: the path after the chain's prefix, matched against the
/// application's patterns.
async fn app_read(
    State(_st): St,
    OnChain(chain): OnChain,
    params: Params,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Problem> {
    let rest = format!("/{}", params.get("path"));
    let no_route = || Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route");
    let (route, captures) = chain
        .app
        .routes()
        .iter()
        .find_map(|r| match_route(r.path, &rest).map(|c| (*r, c)))
        .ok_or_else(no_route)?;
    if route.access == Access::Members && chain.app.public() {
        // A public chain's members-only route: its caller was not checked (`OnChain` checks
        // the callers of chains that are not public).
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "members-only",
            "this route answers only callers of the chain's member orgs",
        ));
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-query", e.to_string()).field("query")
    })?;
    let mut args = ReadArgs {
        path: captures,
        query: BTreeMap::new(),
        height: 0,
    };
    for (k, v) in query {
        if args.query.insert(k.clone(), v).is_some() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-query",
                format!("`{k}` is given twice"),
            )
            .field(&k));
        }
    }
    let chain2 = chain.clone();
    let (value, _) = tokio::task::spawn_blocking(move || {
        read_state(&chain2, |view| {
            args.height = view.version;
            chain2.app.read(route.path, &args, view)
        })
    })
    .await
    .map_err(internal)??;
    Ok(Json(value))
}

/// The captures of `path` under `pattern` (`/members/{org}`), if it matches. A capture is one
/// non-empty segment.
fn match_route(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let mut captures = BTreeMap::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(captures),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    if g.is_empty() {
                        return None;
                    }
                    captures.insert(name.to_string(), g.to_string());
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChainSummary {
    pub chain_id: String,
    /// The application: `beacon` or `shard`.
    pub application: String,
    pub committed_height: u64,
    /// Why the chain stopped on this node, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChainList {
    /// The chain served under `/v1/...`.
    pub beacon: String,
    pub chains: Vec<ChainSummary>,
}

/// The chains this node hosts.
#[utoipa::path(get, path = "/v1/chains", responses((status = 200, body = ChainList)))]
async fn chains_list(State(st): St) -> Json<ChainList> {
    Json(ChainList {
        beacon: st.beacon.chain_id.clone(),
        chains: st
            .chains
            .values()
            .map(|c| ChainSummary {
                chain_id: c.chain_id.clone(),
                application: c.app.kind().to_string(),
                committed_height: c.executed.load(Ordering::Acquire),
                halted: c.halted().map(str::to_string),
            })
            .collect(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// One signed transaction, hex of its protobuf `SignedTransaction` bytes.
    #[serde(default)]
    pub tx: Option<String>,
    /// A batch of signed transactions (hex); at most 10,000.
    #[serde(default)]
    pub txs: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub hash: String,
    /// `pending` for a new transaction, `duplicate` when the pool already held it.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAccepted {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

const MAX_BATCH: usize = 10_000;

fn batch_size_problem() -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "malformed-body",
        format!("a batch holds 1 to {MAX_BATCH} transactions"),
    )
    .field("txs")
    .into_response()
}

/// The content-type parameter value that marks a protobuf body as a batch.
pub const BATCH_PROTO: &str = "proto=trellis.v1.SignedTransactionBatch";

/// Submit signed transactions: a protobuf body (`application/x-protobuf`: one
/// `SignedTransaction`, or with `; proto=trellis.v1.SignedTransactionBatch` a batch of at most
/// 10,000, answered as a JSON batch is) or JSON with `tx` or `txs` (hex).
#[utoipa::path(post, path = "/v1/transactions", request_body = SubmitRequest,
    responses((status = 202, body = Accepted), (status = 200, body = BatchAccepted),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 503, body = Problem)))]
async fn submit(OnChain(chain): OnChain, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (raw, single) = if content_type.starts_with("application/x-protobuf") {
        if !content_type.contains(BATCH_PROTO) {
            (vec![body.to_vec()], true)
        } else {
            // The bulk path (the bench's, a gateway's): no hex, no JSON to parse.
            let batch =
                match <trellis_types::pb::SignedTransactionBatch as prost::Message>::decode(body) {
                    Ok(b) => b,
                    Err(e) => {
                        return Problem::new(
                            StatusCode::BAD_REQUEST,
                            "malformed-body",
                            e.to_string(),
                        )
                        .field("body")
                        .into_response();
                    }
                };
            if batch.txs.is_empty() || batch.txs.len() > MAX_BATCH {
                return batch_size_problem();
            }
            (batch.txs, false)
        }
    } else {
        let req: SubmitRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return Problem::new(StatusCode::BAD_REQUEST, "malformed-body", e.to_string())
                    .field("body")
                    .into_response();
            }
        };
        match (req.tx, req.txs) {
            (Some(tx), None) => match hex::decode(tx.trim()) {
                Ok(b) => (vec![b], true),
                Err(_) => {
                    return Problem::new(StatusCode::BAD_REQUEST, "malformed-body", "not hex")
                        .field("tx")
                        .into_response();
                }
            },
            (None, Some(txs)) => {
                if txs.is_empty() || txs.len() > MAX_BATCH {
                    return batch_size_problem();
                }
                let mut raw = Vec::with_capacity(txs.len());
                for (i, t) in txs.iter().enumerate() {
                    match hex::decode(t) {
                        Ok(b) => raw.push(b),
                        Err(_) => {
                            return Problem::new(
                                StatusCode::BAD_REQUEST,
                                "malformed-body",
                                "not hex",
                            )
                            .field(&format!("txs[{i}]"))
                            .into_response();
                        }
                    }
                }
                (raw, false)
            }
            _ => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-body",
                    "give exactly one of `tx` and `txs`",
                )
                .field("tx")
                .into_response();
            }
        }
    };
    let raw = Arc::new(raw);
    let raw2 = raw.clone();
    let admitting = chain.clone();
    let Ok(results) = tokio::task::spawn_blocking(move || admitting.admit(&raw2)).await else {
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "admission failed",
        )
        .into_response();
    };
    // Gossip what is new so whoever leads next has it.
    let fresh: Vec<Vec<u8>> = results
        .iter()
        .zip(raw.iter())
        .filter(|(r, _)| matches!(r, Ok((_, Admitted::Added))))
        .map(|(_, b)| b.clone())
        .collect();
    if !fresh.is_empty() {
        chain.net.broadcast(&NetMessage::Txs(fresh));
    }
    let status_of = |a: &Admitted| match a {
        Admitted::Added => "pending",
        Admitted::Duplicate => "duplicate",
    };
    if single {
        return match &results[0] {
            Ok((hash, a)) => (
                StatusCode::ACCEPTED,
                Json(Accepted {
                    hash: hash.to_hex(),
                    status: status_of(a).into(),
                }),
            )
                .into_response(),
            Err(r) => rejection_problem(r, "tx").into_response(),
        };
    }
    if results.iter().all(|r| matches!(r, Err(Rejected::Full))) {
        return rejection_problem(&Rejected::Full, "txs").into_response();
    }
    let items: Vec<BatchItem> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok((hash, a)) => BatchItem {
                hash: Some(hash.to_hex()),
                status: Some(status_of(a).into()),
                error: None,
            },
            Err(e) => BatchItem {
                hash: None,
                status: None,
                error: Some(rejection_problem(e, &format!("txs[{i}]"))),
            },
        })
        .collect();
    let accepted = items.iter().filter(|i| i.error.is_none()).count();
    (
        StatusCode::OK,
        Json(BatchAccepted {
            accepted,
            rejected: items.len() - accepted,
            results: items,
        }),
    )
        .into_response()
}

fn parse_digest(s: &str, field: &str) -> Result<Digest, Problem> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Digest)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-path",
                "expected 32 bytes of hex",
            )
            .field(field)
        })
}

#[derive(Serialize, ToSchema)]
pub struct TxStatus {
    pub hash: String,
    /// `pending`, `committed` or `rejected`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rejection's stable code (`bad-nonce`, `already-voted`, `proposal-expired`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// What the application reported of an applied transaction, by name: `proposal_id` (the
    /// beacon proposal it opened or voted on), ...
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub facts: BTreeMap<String, u64>,
}

/// Where a transaction is: pending in this node's pool, committed at a height, or rejected by
/// execution with the reason.
#[utoipa::path(get, path = "/v1/transactions/{hash}", params(("hash" = String, Path)),
    responses((status = 200, body = TxStatus), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn tx_status(OnChain(chain): OnChain, p: Params) -> Result<Json<TxStatus>, Problem> {
    let d = parse_digest(p.get("hash"), "hash")?;
    if let Some(bytes) = chain.store.tx(&d.0).map_err(internal)? {
        let loc: TxLocation = serde_json::from_slice(&bytes).map_err(internal)?;
        return Ok(Json(TxStatus {
            hash: d.to_hex(),
            status: if loc.rejected.is_some() {
                "rejected"
            } else {
                "committed"
            }
            .into(),
            height: Some(loc.height),
            reason: loc.rejected,
            reason_code: loc.rejected_code,
            facts: loc.facts,
        }));
    }
    if lock(&chain.mempool).contains(&d) {
        return Ok(Json(TxStatus {
            hash: d.to_hex(),
            status: "pending".into(),
            height: None,
            reason: None,
            reason_code: None,
            facts: BTreeMap::new(),
        }));
    }
    Err(Problem::new(
        StatusCode::NOT_FOUND,
        "unknown-transaction",
        "this node has not seen it",
    )
    .field("hash"))
}

#[derive(Serialize, ToSchema)]
pub struct BlockView {
    pub height: u64,
    pub id: String,
    pub epoch: u64,
    pub round: u64,
    pub parent_id: String,
    pub timestamp_ms: u64,
    pub author: u32,
    pub payload_digest: String,
    pub state_height: u64,
    pub state_root: String,
    pub tx_count: usize,
    /// Hex protobuf of the header, for offline checking.
    pub header: String,
    /// Hex protobuf of the certificate that committed this block (or a descendant).
    pub certificate: String,
    pub certificate_signers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hashes: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct BlockQuery {
    #[serde(default)]
    txs: bool,
}

fn block_view(chain: &ChainShared, height: u64, with_txs: bool) -> Result<BlockView, Problem> {
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-block",
            "no committed block at this height",
        )
        .field("height")
    };
    if height == 0 || height > chain.executed.load(Ordering::Acquire) {
        return Err(not_found());
    }
    let bytes = chain
        .store
        .block(height)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let block = wire::decode_block(&bytes).map_err(internal)?;
    let cert_bytes = chain
        .store
        .cert(height)
        .map_err(internal)?
        .unwrap_or_default();
    let cert = wire::decode_qc(&cert_bytes).map_err(internal)?;
    let txs = crate::payload::decode(&block.payload, usize::MAX).unwrap_or_default();
    let h = &block.header;
    Ok(BlockView {
        height,
        id: block.id().to_hex(),
        epoch: h.epoch,
        round: h.round,
        parent_id: h.parent_id.to_hex(),
        timestamp_ms: h.timestamp_ms,
        author: h.author,
        payload_digest: h.payload_digest.to_hex(),
        state_height: h.state.height,
        state_root: h.state.root.to_hex(),
        tx_count: txs.len(),
        header: hex::encode(wire::encode_header(h)),
        certificate: hex::encode(&cert_bytes),
        certificate_signers: cert.signers.count(),
        tx_hashes: with_txs.then(|| {
            txs.iter()
                .filter_map(|r| trellis_types::Transaction::decode(r, usize::MAX).ok())
                .map(|t| t.hash().to_hex())
                .collect()
        }),
    })
}

/// What a state key holds at the chain's certified state, with the proofs that check it
/// offline against the chain's genesis: format `trellis.state-bundle/v1`
/// (`trellis_types::state_bundle`). The application names the keys: `anchor/{digest}`,
/// `account/{key}`, `member/{org}`, `proposal/{id}`, `committee/{chain}` on the beacon;
/// `record/{collection}/{key}`, `anchor/{digest}`, `account/{key}` on a shard. A key that holds
/// nothing is answered too, with the proof of its absence (`value` null).
#[utoipa::path(get, path = "/v1/proofs/{namespace}/{id}",
    params(("namespace" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the state bundle"), (status = 400, body = Problem),
        (status = 409, body = Problem), (status = 500, body = Problem)))]
async fn state_proof(OnChain(chain): OnChain, p: Params) -> Result<Response, Problem> {
    let key = chain
        .app
        .proof_key(p.get("namespace"), p.get("id"))
        .map_err(crate::problem::read_problem)?;
    let bundle = tokio::task::spawn_blocking(move || crate::proofs::state_bundle(&chain, &key))
        .await
        .map_err(internal)??;
    Ok(Json(bundle.to_json()).into_response())
}

/// The latest committed block's header and certificate.
#[utoipa::path(get, path = "/v1/blocks/latest", responses((status = 200, body = BlockView), (status = 404, body = Problem)))]
async fn latest_block(
    OnChain(chain): OnChain,
    Query(q): Query<BlockQuery>,
) -> Result<Json<BlockView>, Problem> {
    let h = chain.executed.load(Ordering::Acquire);
    block_view(&chain, h, q.txs).map(Json)
}

/// A committed block's header and certificate; `?txs=true` adds the transaction hashes.
#[utoipa::path(get, path = "/v1/blocks/{height}", params(("height" = u64, Path)),
    responses((status = 200, body = BlockView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn block_at(
    OnChain(chain): OnChain,
    p: Params,
    Query(q): Query<BlockQuery>,
) -> Result<Json<BlockView>, Problem> {
    let height: u64 = p.get("height").parse().map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-path", "height is a number").field("height")
    })?;
    block_view(&chain, height, q.txs).map(Json)
}

/// The anchor proof bundle, format `trellis.anchor-bundle/v2`, specified byte for byte in
/// docs/proof-format.md. Binary parts are lowercase hex of their canonical protobuf encodings
/// (`trellis.v1`); a verifier refuses unknown fields and uppercase hex.
// Documents the 200 answer only: the node serves `AnchorBundle::to_json`, and a test checks the
// two have the same fields.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(as = AnchorBundle)]
pub struct AnchorBundleSchema {
    /// `trellis.anchor-bundle/v2`; a verifier refuses any other value.
    #[schema(
        pattern = "^trellis\\.anchor-bundle/v2$",
        example = "trellis.anchor-bundle/v2"
    )]
    format: String,
    chain_id: String,
    /// The anchored digest, 32 bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    digest: String,
    record: AnchorRecordSchema,
    /// The state the first header commits to.
    state: StateSchema,
    /// `StateProof`: the record under `anchor/` ‖ digest, against `state.root`.
    #[schema(pattern = "^([0-9a-f]{2})+$")]
    state_proof: String,
    /// The genesis file's digest, which the state holds under `chain/genesis`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    genesis_digest: String,
    /// `StateProof` of `chain/genesis` → `genesis_digest` against `state.root`.
    #[schema(pattern = "^([0-9a-f]{2})+$")]
    genesis_proof: String,
    /// `BlockHeader`s, each the parent of the next; the first commits to `state`.
    headers: Vec<String>,
    /// `QuorumCert` that commits the last header (2-chain rule).
    commit_qc: String,
    /// `EpochChangeProof`s from epoch 0 to the certificate's epoch, one per epoch.
    epoch_changes: Vec<String>,
}

/// The anchor record as the ledger stores it.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(as = AnchorRecord)]
pub struct AnchorRecordSchema {
    /// The anchoring account's key, 32 bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sender: String,
    tag: String,
    /// The anchoring transaction's hash, 32 bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    tx_hash: String,
}

/// A state commitment: the tree's root after executing the chain up to `height`.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(as = StateCommitment)]
pub struct StateSchema {
    height: u64,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    root: String,
}

/// An anchor and the proof bundle that lets anyone check it offline against the genesis file.
#[utoipa::path(get, path = "/v1/anchors/{digest}", params(("digest" = String, Path)),
    responses((status = 200, description = "the anchor's proof bundle, which holds its record", body = AnchorBundleSchema), (status = 400, body = Problem), (status = 500, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn anchor(OnChain(chain): OnChain, p: Params) -> Result<Response, Problem> {
    let d = parse_digest(p.get("digest"), "digest")?;
    let bundle = tokio::task::spawn_blocking(move || crate::proofs::anchor_bundle(&chain, &d))
        .await
        .map_err(internal)??;
    Ok(Json(bundle.to_json()).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub node: String,
    pub chain_id: String,
    /// The application: `beacon` or `shard`.
    pub application: String,
    pub epoch: u64,
    /// The current epoch's committee (hex consensus keys).
    pub committee: Vec<String>,
    /// Why the chain stopped on this node, if it has: it then commits nothing until the node
    /// restarts, and `/readyz` says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    pub round: u64,
    pub committed_height: u64,
    pub head_hash: String,
    pub state_height: u64,
    pub state_root: String,
    pub peers: Vec<String>,
    pub mempool_size: usize,
    pub mempool_bytes: usize,
}

/// Chain id, epoch, round, committed height, head hash, state root, connected peers, pool size.
#[utoipa::path(get, path = "/v1/status", responses((status = 200, body = StatusView)))]
async fn status(State(st): St, OnChain(chain): OnChain) -> Json<StatusView> {
    let s = chain.status_snapshot();
    let (size, bytes) = {
        let pool = lock(&chain.mempool);
        (pool.len(), pool.bytes())
    };
    Json(StatusView {
        node: st.node_name.clone(),
        chain_id: s.chain_id,
        application: s.application,
        epoch: s.epoch,
        committee: s.committee,
        halted: chain.halted().map(str::to_string),
        round: s.round,
        committed_height: s.committed_height,
        head_hash: s.head_hash,
        state_height: s.state_height,
        state_root: s.state_root,
        peers: chain
            .net
            .connected_peers()
            .iter()
            .map(|k| hex::encode(k.0))
            .collect(),
        mempool_size: size,
        mempool_bytes: bytes,
    })
}

/// Ready when every hosted chain is: not stopped, and, if this node is in the chain's current
/// committee, connected to enough of that committee to reach a quorum with itself.
async fn ready(State(st): St) -> Response {
    let mut unready = Vec::new();
    for chain in st.chains.values() {
        if let Some(reason) = chain.halted() {
            unready.push(format!("chain `{}` stopped: {reason}", chain.chain_id));
            continue;
        }
        let committee = chain.status_snapshot().committee;
        let connected: std::collections::BTreeSet<String> = chain
            .net
            .connected_peers()
            .iter()
            .map(|k| hex::encode(k.0))
            .collect();
        let me = hex::encode(chain.net.me().0);
        if !committee.contains(&me) {
            continue;
        }
        let reachable = committee
            .iter()
            .filter(|k| **k == me || connected.contains(*k))
            .count();
        let quorum = trellis_consensus::Committee::quorum_of(committee.len());
        if reachable < quorum {
            unready.push(format!(
                "chain `{}`: connected to {reachable} of the {quorum} validators a quorum needs",
                chain.chain_id
            ));
        }
    }
    if unready.is_empty() {
        "ready".into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            unready.join("; "),
        )
        .into_response()
    }
}

/// Prometheus text: each hosted chain's counters and gauges labelled `chain`, the network's
/// and the process's without a label.
async fn metrics(State(st): St) -> Response {
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut samples: BTreeMap<(&'static str, &'static str), Vec<(String, u64)>> = BTreeMap::new();
    for chain in st.chains.values() {
        let m = &chain.metrics;
        let s = chain.status_snapshot();
        let (pool_len, pool_bytes) = {
            let pool = lock(&chain.mempool);
            (pool.len(), pool.bytes())
        };
        let label = format!("{{chain=\"{}\"}}", chain.chain_id.replace(['\\', '"'], "_"));
        let per_chain = [
            (
                "counter",
                "trellis_chain_blocks_committed_total",
                ld(&m.blocks_committed),
            ),
            (
                "counter",
                "trellis_chain_txs_committed_total",
                ld(&m.txs_committed),
            ),
            (
                "counter",
                "trellis_chain_txs_failed_total",
                ld(&m.txs_failed),
            ),
            (
                "counter",
                "trellis_mempool_txs_admitted_total",
                ld(&m.txs_admitted),
            ),
            (
                "counter",
                "trellis_mempool_txs_rejected_total",
                ld(&m.txs_rejected),
            ),
            (
                "counter",
                "trellis_chain_commit_duration_microseconds_total",
                ld(&m.commit_micros_total),
            ),
            (
                "counter",
                "trellis_net_malformed_frames_total",
                ld(&m.malformed_frames),
            ),
            (
                "counter",
                "trellis_net_dropped_frames_total",
                ld(&m.dropped_frames),
            ),
            (
                "counter",
                "trellis_net_refused_frames_total",
                ld(&chain.net.refused_frames),
            ),
            (
                "counter",
                "trellis_chain_sync_served_total",
                ld(&m.sync_served),
            ),
            (
                "gauge",
                "trellis_chain_committed_height",
                s.committed_height,
            ),
            ("gauge", "trellis_chain_epoch", s.epoch),
            ("gauge", "trellis_chain_round", s.round),
            (
                "gauge",
                "trellis_chain_halted",
                u64::from(chain.halted().is_some()),
            ),
            ("gauge", "trellis_mempool_txs", pool_len as u64),
            ("gauge", "trellis_mempool_bytes", pool_bytes as u64),
        ];
        for (kind, name, v) in per_chain {
            samples
                .entry((name, kind))
                .or_default()
                .push((format!("{name}{label}"), v));
        }
    }
    let net = st.beacon.net.network().stats();
    let node_wide = [
        ("counter", "trellis_net_frames_in_total", net.frames_in),
        ("counter", "trellis_net_frames_out_total", net.frames_out),
        ("counter", "trellis_net_bytes_in_total", net.bytes_in),
        ("counter", "trellis_net_bytes_out_total", net.bytes_out),
        (
            "counter",
            "trellis_net_oversized_frames_total",
            net.oversized_frames,
        ),
        (
            "counter",
            "trellis_net_handshake_failures_total",
            net.handshake_failures,
        ),
        (
            "counter",
            "trellis_net_refused_peers_total",
            net.refused_peers,
        ),
        (
            "counter",
            "trellis_net_dropped_outbound_total",
            net.dropped_outbound,
        ),
        (
            "gauge",
            "trellis_net_peers_connected",
            st.beacon.net.network().connected_peers().len() as u64,
        ),
        ("gauge", PROCESS_ID_METRIC, u64::from(std::process::id())),
    ];
    let cpu = process_cpu_micros().map(|v| ("counter", PROCESS_CPU_METRIC, v));
    for (kind, name, v) in node_wide.into_iter().chain(cpu) {
        samples
            .entry((name, kind))
            .or_default()
            .push((name.to_string(), v));
    }
    let mut out = String::new();
    for ((name, kind), lines) in samples {
        out.push_str(&format!("# TYPE {name} {kind}\n"));
        for (sample, v) in lines {
            out.push_str(&format!("{sample} {v}\n"));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The CPU time the node's process has used, user and system, all threads (exited ones too).
/// `trellis bench` reads it from every node before and after the load for the CPU cost of a
/// committed transaction.
pub const PROCESS_CPU_METRIC: &str = "trellis_process_cpu_microseconds_total";

/// The node's process id: the validators of one `trellis devnet` share a process, and so its
/// CPU time, which a sum over nodes must count once.
pub const PROCESS_ID_METRIC: &str = "trellis_process_id";

fn process_cpu_micros() -> Option<u64> {
    cpu_micros_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The value of the sample `name` in Prometheus text exposition; `name` includes its labels as
/// written (`trellis_chain_committed_height{chain="beacon"}`).
pub fn metric_value(exposition: &str, name: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let (sample, value) = line.split_once(' ')?;
        (sample == name).then(|| value.trim().parse().ok())?
    })
}

/// User plus system time from a `/proc/<pid>/stat` line (fields 14 and 15, in clock ticks).
/// `None` when the line does not parse (or where there is no procfs).
pub fn cpu_micros_of_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from its last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Field 3 (the state) comes first, so fields 14 and 15 are the 12th and 13th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Ticks of USER_HZ, which Linux fixes at 100 per second for user space.
    utime.checked_add(stime)?.checked_mul(10_000)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Trellis node client API", version = "1"),
    paths(
        submit,
        tx_status,
        latest_block,
        block_at,
        anchor,
        state_proof,
        status,
        chains_list
    ),
    components(schemas(
        Problem,
        ChainList,
        ChainSummary,
        SubmitRequest,
        Accepted,
        BatchAccepted,
        BatchItem,
        TxStatus,
        BlockView,
        StatusView,
        AnchorBundleSchema,
        AnchorRecordSchema,
        StateSchema
    ))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (trellis (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(cpu_micros_of_stat(stat), Some(325 * 10_000));
        assert_eq!(cpu_micros_of_stat("4242 (trellis) S 1 2"), None);
        assert_eq!(cpu_micros_of_stat("no name here"), None);
    }

    #[test]
    fn a_metric_is_found_by_its_whole_name() {
        let text = "# TYPE a_total counter\na_total 7\n# TYPE a counter\na 3\n";
        assert_eq!(metric_value(text, "a"), Some(3));
        assert_eq!(metric_value(text, "a_total"), Some(7));
        assert_eq!(metric_value(text, "b"), None);
    }
}
