//! The one error shape of every Trellis HTTP service: an RFC 9457 `application/problem+json`
//! body, the helpers that build it, and [`JsonBody`], a JSON extractor whose every rejection is
//! such a problem naming the request field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Prefix of every problem `type`; the last path segment is the problem's kind.
pub const PROBLEM_BASE: &str = "https://trellis.dev/problems/";

/// The result of a handler: a value or a problem.
pub type ApiResult<T> = Result<T, Problem>;

/// An RFC 9457 problem, answered as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `https://trellis.dev/problems/<kind>`.
    #[serde(rename = "type")]
    #[schema(example = "https://trellis.dev/problems/bad-request")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The request field at fault as a JSON path, e.g. `legal_representative.id_number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem of the given status and kind (`kind` becomes the last segment of `type`).
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{PROBLEM_BASE}{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    /// The kind: the last path segment of `type`.
    pub fn kind_name(&self) -> &str {
        self.kind.rsplit('/').next().unwrap_or(&self.kind)
    }

    /// 400 `bad-request` about one field.
    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail).with_field(field)
    }

    /// 401 `unauthorized`; the response also carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404 of the given kind (e.g. `unknown-application`).
    pub fn not_found(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, kind, detail)
    }

    /// 409 of the given kind (e.g. `already-registered`).
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, kind, detail)
    }

    /// 422 `unprocessable` about one field: well-formed but not acceptable.
    pub fn unprocessable(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", detail).with_field(field)
    }

    /// A bare 500. The error is logged here and never sent: internals stay on the server.
    pub fn internal(err: impl fmt::Display) -> Problem {
        tracing::error!(error = %err, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server logged it",
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind_name(), self.detail)?;
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Serializing strings and numbers cannot fail; an empty body is still a valid answer.
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 says which scheme would work.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Problem {
        Problem::internal(e)
    }
}

impl From<crate::db::DbError> for Problem {
    fn from(e: crate::db::DbError) -> Problem {
        Problem::internal(e)
    }
}

impl From<crate::seal::SealError> for Problem {
    /// Sealed data that does not open is a server fault (lost key, corrupted row).
    fn from(e: crate::seal::SealError) -> Problem {
        Problem::internal(e)
    }
}

/// A JSON request body parsed into `T`. Unlike axum's `Json`, every rejection (content type,
/// syntax, wrong type, missing or unknown field, body too large) is a problem+json, with `field`
/// naming the offending field when it can be told.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            // Keep the rejection's own status: a body over the limit is a 413, not a 400.
            Problem::new(r.status(), "malformed-body", r.body_text())
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body into `T`, or a 400 `malformed-body` problem whose `field` is the JSON
/// path of the offending field when serde's error locates one.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Syntax first, so a broken document is reported as such and not as a type mismatch.
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            format!("not valid JSON: {e}"),
        ));
    }
    // Deserializing from the bytes (not from the Value) keeps serde_json's line and column,
    // from which the path of the field at fault is recovered.
    serde_json::from_slice::<T>(bytes).map_err(|e| {
        let field = error_field(bytes, &e);
        let msg = e.to_string();
        // Drop serde_json's " at line 1 column 42": the field says where, for people.
        let detail = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        let mut p = Problem::new(StatusCode::BAD_REQUEST, "malformed-body", detail);
        p.field = field;
        p
    })
}

/// The JSON path of the field a data error is about.
fn error_field(bytes: &[u8], e: &serde_json::Error) -> Option<String> {
    let offset = byte_offset(bytes, e.line(), e.column())?;
    let stack = path_at(bytes, offset);
    let msg = e.to_string();
    if let Some(missing) = backticked(&msg, "missing field `") {
        // serde_json reports a missing field just after the closing brace of its object, so
        // the path there is the object's own. Should it report at the brace instead, the
        // object is still open and its last key is a sibling, not the missing field.
        let mut stack = stack;
        let closed = bytes[..offset]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'}');
        if !closed && let Some(Seg::Key(k)) = stack.last_mut() {
            k.clear();
        }
        let parent = render(&stack);
        return Some(if parent.is_empty() {
            missing.to_string()
        } else {
            format!("{parent}.{missing}")
        });
    }
    let path = render(&stack);
    if path.is_empty() {
        // A field named in the message is the best we have (e.g. an error raised at the top).
        backticked(&msg, "unknown field `").map(str::to_string)
    } else {
        Some(path)
    }
}

/// The text between `prefix` and the next backtick.
fn backticked<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let start = msg.find(prefix)? + prefix.len();
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

/// serde_json's (1-based line, column of the last byte read) as the index of the next byte.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut line_start = 0;
    for _ in 1..line {
        line_start += bytes[line_start..].iter().position(|&b| b == b'\n')? + 1;
    }
    Some((line_start + column).min(bytes.len()))
}

#[derive(Debug)]
enum Seg {
    /// Inside an object: the key whose value is being read (empty before the first key).
    Key(String),
    /// Inside an array: the element index.
    Index(usize),
}

/// The containers open at `offset` in a syntactically valid JSON document.
fn path_at(bytes: &[u8], offset: usize) -> Vec<Seg> {
    let end = offset.min(bytes.len());
    let mut stack: Vec<Seg> = Vec::new();
    // Inside an object, true while the next string is a key.
    let mut expect_key = false;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => {
                stack.push(Seg::Key(String::new()));
                expect_key = true;
            }
            b'[' => {
                stack.push(Seg::Index(0));
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Seg::Index(n)) => *n += 1,
                Some(Seg::Key(_)) => expect_key = true,
                None => {}
            },
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    // Skip the escaped byte; escapes never hide a quote otherwise.
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    let raw = &bytes[start..j.min(bytes.len())];
                    // Keys with escapes are rare; decode them properly when present.
                    let key = serde_json::from_slice::<String>(&bytes[i..(j + 1).min(bytes.len())])
                        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
                    if let Some(Seg::Key(k)) = stack.last_mut() {
                        *k = key;
                    }
                    expect_key = false;
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    stack
}

fn render(stack: &[Seg]) -> String {
    let mut out = String::new();
    for seg in stack {
        match seg {
            Seg::Key(k) if k.is_empty() => {}
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Person {
        name: String,
        id_number: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Application {
        contact: String,
        legal_representative: Person,
        #[serde(default)]
        shares: Vec<u32>,
        #[serde(default)]
        witnesses: Vec<Person>,
    }

    fn field_of(json: &str) -> (Option<String>, String) {
        let p = parse_json::<Application>(json.as_bytes()).unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.kind_name(), "malformed-body");
        (p.field, p.detail)
    }

    #[test]
    fn missing_top_level_field() {
        let (f, d) = field_of(r#"{"legal_representative": {"name": "a", "id_number": "1"}}"#);
        assert_eq!(f.as_deref(), Some("contact"));
        assert_eq!(d, "missing field `contact`");
    }

    #[test]
    fn missing_nested_field() {
        let (f, _) = field_of(
            r#"{"contact": "x",
                "legal_representative": {"name": "a"}}"#,
        );
        assert_eq!(f.as_deref(), Some("legal_representative.id_number"));
    }

    #[test]
    fn missing_field_in_an_array_element_and_empty_object() {
        let (f, _) = field_of(
            r#"{"contact": "x", "legal_representative": {"name": "a", "id_number": "1"},
                "witnesses": [{"name": "b", "id_number": "2"}, {"name": "c"} ]}"#,
        );
        assert_eq!(f.as_deref(), Some("witnesses[1].id_number"));
        let (f, _) = field_of(r#"{"contact": "x", "legal_representative": {}}"#);
        assert_eq!(f.as_deref(), Some("legal_representative.name"));
    }

    #[test]
    fn wrong_type_nested_and_in_array() {
        let (f, d) =
            field_of(r#"{"contact": "x", "legal_representative": {"name": "a", "id_number": 7}}"#);
        assert_eq!(f.as_deref(), Some("legal_representative.id_number"));
        assert!(d.starts_with("invalid type"), "{d}");
        let (f, _) = field_of(
            r#"{"contact": "x", "shares": [1, 2, "three"],
                "legal_representative": {"name": "a", "id_number": "1"}}"#,
        );
        assert_eq!(f.as_deref(), Some("shares[2]"));
    }

    #[test]
    fn unknown_field() {
        let (f, _) = field_of(
            r#"{"contact": "x", "legal_representative": {"name": "a", "id_number": "1", "age\u0021": 3}}"#,
        );
        assert_eq!(f.as_deref(), Some("legal_representative.age!"));
        let (f, _) = field_of(r#"{"extra": 1}"#);
        assert_eq!(f.as_deref(), Some("extra"));
    }

    #[test]
    fn syntax_error_and_wrong_root() {
        let (f, d) = field_of(r#"{"contact": "#);
        assert_eq!(f, None);
        assert!(d.starts_with("not valid JSON"), "{d}");
        let (f, _) = field_of("[]");
        assert_eq!(f, None);
    }

    #[test]
    fn strings_with_brackets_do_not_confuse_the_path() {
        let (f, _) = field_of(
            r#"{"contact": "{[\"},", "legal_representative": {"name": "]}", "id_number": false}}"#,
        );
        assert_eq!(f.as_deref(), Some("legal_representative.id_number"));
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some(&HeaderValue::from_static("application/json"))));
        assert!(is_json(Some(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        ))));
        assert!(is_json(Some(&HeaderValue::from_static(
            "application/merge-patch+json"
        ))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }
}
