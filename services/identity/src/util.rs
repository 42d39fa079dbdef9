//! Small helpers shared by the route modules: randomness, hashing, constant-time comparison,
//! today's date for ID checks, request-body reading with a bound, and the mapping of
//! extractor rejections and database errors to problems.

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use trellis_servicekit::Problem;
use trellis_servicekit::db::now_ms;

use crate::domain::DomainError;

/// The header an applicant proves itself with.
pub(crate) const APPLICATION_TOKEN_HEADER: &str = "X-Application-Token";

/// `n` random bytes from the system generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Problem> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Problem::internal("system random generator"))?;
    Ok(b)
}

/// 16 random bytes as 32 hex characters: row ids.
pub(crate) fn random_id() -> Result<String, Problem> {
    Ok(hex::encode(random_bytes::<16>()?))
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Whether `s` is `len` lower- or upper-case hex characters.
pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Today's date (year, month, day) in China Standard Time (UTC+8), the calendar of resident
/// identity numbers.
pub(crate) fn today_cst() -> (i32, u32, u32) {
    let days = (now_ms() + 8 * 3600 * 1000).div_euclid(86_400_000);
    civil_from_days(days)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// A field that did not parse, as a 400 naming it. The reason never quotes personal data
/// (the domain types see to that).
pub(crate) fn field_problem(e: DomainError) -> Problem {
    Problem::bad_request(e.field, e.reason)
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// An extractor rejection (query string, path) as a 400 naming the field when its message
/// says which one.
pub(crate) fn rejection_problem(status: StatusCode, text: &str) -> Problem {
    let mut p = Problem::new(
        if status.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            status
        },
        "bad-request",
        text.to_string(),
    );
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(start) = text.find(prefix) {
            let rest = &text[start + prefix.len()..];
            if let Some(end) = rest.find('`') {
                p.field = Some(rest[..end].to_string());
            }
        }
    }
    p
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
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

/// 413 `payload-too-large` for a body over `max` bytes.
pub(crate) fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the body is larger than the limit of {max} bytes"),
    )
}

/// Reads a whole request body, refusing (413) as soon as it passes `max` bytes; a declared
/// `Content-Length` over the bound is refused before anything is read.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Bytes, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut body = body;
    let mut out: Vec<u8> = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(too_large(max));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// The value of a header as text, if present and visible ASCII.
pub(crate) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Free text typed by a person (a label, a reason): trimmed, 1 to `max` characters, no control
/// characters.
pub(crate) fn short_text(s: &str, field: &str, max: usize) -> Result<String, Problem> {
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 || n > max {
        return Err(Problem::bad_request(
            field,
            format!("must be 1 to {max} characters, got {n}"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_254), (2025, 6, 15));
    }

    #[test]
    fn rejection_fields() {
        let p = rejection_problem(
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string: missing field `sha256`",
        );
        assert_eq!(p.field.as_deref(), Some("sha256"));
        assert_eq!(p.status, 400);
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
