//! The client API's errors: RFC 9457 problems (`application/problem+json`), the constructors the
//! route modules (`api`) and the proof bundles (`proofs`) share, and `read_state`,
//! which answers a failed store read as one.

use crate::chain::{ChainShared, StateAt};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use trellis_ledger::app::ReadError;
use utoipa::ToSchema;

/// An RFC 9457 problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://trellis.dev/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after_s: None,
        }
    }
    pub fn field(mut self, f: &str) -> Problem {
        self.field = Some(f.to_string());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after_s;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// An internal error: logged here, answered as a bare 500 that does not leak it.
pub(crate) fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "internal error");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

pub(crate) fn not_yet_provable() -> Problem {
    let mut p = Problem::new(
        StatusCode::CONFLICT,
        "not-yet-provable",
        "the anchor is committed but no certified state root covers it yet; retry shortly",
    )
    .field("digest");
    p.retry_after_s = Some(1);
    p
}

pub(crate) fn no_anchor() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown-anchor",
        "no anchor with this digest",
    )
    .field("digest")
}

/// Runs `read` over the state of the latest executed block, and gives its answer with that
/// block's height. A read the store failed makes it a 500: never an answer of "absent".
pub(crate) fn read_state<T>(
    chain: &ChainShared,
    read: impl FnOnce(&StateAt<'_>) -> Result<T, ReadError>,
) -> Result<(T, u64), Problem> {
    let state = chain.state();
    let out = read(&state).map_err(read_problem)?;
    Ok((out, state.version))
}

/// An application read's refusal as a problem.
pub(crate) fn read_problem(e: ReadError) -> Problem {
    match e {
        ReadError::BadParam { field, reason } => Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("{field} {reason}"),
        )
        .field(field),
        ReadError::NotFound {
            kind,
            field,
            detail,
        } => Problem::new(StatusCode::NOT_FOUND, kind, detail).field(field),
        ReadError::State(e) => internal(e),
    }
}
