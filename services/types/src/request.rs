//! Signed API requests: how a caller proves to a node which account it speaks for, where a
//! chain's routes answer only its members (a shard's records, even as commitments, are not
//! public). The caller signs the method, the path with its query, the time and the body's
//! SHA-256 with an account key; the node checks the signature, the time window and that the
//! chain's application counts the account as a member.
//!
//! Headers: `x-trellis-account` (hex key), `x-trellis-time` (ms since the Unix epoch),
//! `x-trellis-signature` (hex ed25519 signature over [`request_signing_bytes`], ZIP-215).

use trellis_consensus::types::Encoder;
use trellis_consensus::{Digest, PublicKey, Signature, Signer, crypto};

pub const ACCOUNT_HEADER: &str = "x-trellis-account";
pub const TIME_HEADER: &str = "x-trellis-time";
pub const SIGNATURE_HEADER: &str = "x-trellis-signature";

/// How far a request's time may be from the node's clock, either way.
pub const MAX_SKEW_MS: u64 = 60_000;

/// The bytes a request signature covers.
pub fn request_signing_bytes(
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut e = Encoder::new("trellis/api-request/v1");
    e.bytes(method.as_bytes())
        .bytes(path_and_query.as_bytes())
        .u64(time_ms)
        .digest(&Digest::of(body));
    e.finish()
}

/// The three headers of a request signed by `signer`.
pub fn sign_request(
    signer: &Signer,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let sig = signer.sign(&request_signing_bytes(
        method,
        path_and_query,
        time_ms,
        body,
    ));
    [
        (ACCOUNT_HEADER, hex::encode(signer.public_key().0)),
        (TIME_HEADER, time_ms.to_string()),
        (SIGNATURE_HEADER, hex::encode(sig.0)),
    ]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestAuthError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    #[error("the request time is more than a minute from the node's clock")]
    Stale,
    #[error("the request signature does not verify")]
    BadSignature,
}

/// Checks a signed request; returns the account it speaks for. `header(name)` reads a header.
pub fn verify_request<'a>(
    header: impl Fn(&'static str) -> Option<&'a str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<PublicKey, RequestAuthError> {
    let get = |name| header(name).ok_or(RequestAuthError::Missing(name));
    let account: [u8; 32] = hex::decode(get(ACCOUNT_HEADER)?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(RequestAuthError::Malformed(ACCOUNT_HEADER))?;
    let time: u64 = get(TIME_HEADER)?
        .parse()
        .map_err(|_| RequestAuthError::Malformed(TIME_HEADER))?;
    let sig: [u8; 64] = hex::decode(get(SIGNATURE_HEADER)?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(RequestAuthError::Malformed(SIGNATURE_HEADER))?;
    if time.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(RequestAuthError::Stale);
    }
    let account = PublicKey(account);
    crypto::verify(
        &account,
        &Signature(sig),
        &request_signing_bytes(method, path_and_query, time, body),
    )
    .map_err(|_| RequestAuthError::BadSignature)?;
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_and_nothing_else_does() {
        let signer = Signer::from_seed([3; 32]);
        let headers = sign_request(&signer, "GET", "/v1/chains/scf/status", 1_000_000, b"");
        let find = |hs: &[(&'static str, String); 3]| {
            let hs = hs.clone();
            move |name: &'static str| hs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        };
        let check = |hs: &[(&'static str, String); 3], path: &str, now: u64| {
            let f = find(hs);
            let owned: Vec<(&'static str, Option<String>)> =
                [ACCOUNT_HEADER, TIME_HEADER, SIGNATURE_HEADER]
                    .iter()
                    .map(|n| (*n, f(n)))
                    .collect();
            verify_request(
                |n| {
                    owned
                        .iter()
                        .find(|(k, _)| *k == n)
                        .and_then(|(_, v)| v.as_deref())
                },
                "GET",
                path,
                b"",
                now,
            )
        };
        assert_eq!(
            check(&headers, "/v1/chains/scf/status", 1_000_500),
            Ok(signer.public_key())
        );
        assert_eq!(
            check(&headers, "/v1/chains/evidence/status", 1_000_500),
            Err(RequestAuthError::BadSignature)
        );
        assert_eq!(
            check(
                &headers,
                "/v1/chains/scf/status",
                1_000_000 + MAX_SKEW_MS + 1
            ),
            Err(RequestAuthError::Stale)
        );
        let mut forged = headers.clone();
        forged[0].1 = hex::encode(Signer::from_seed([4; 32]).public_key().0);
        assert_eq!(
            check(&forged, "/v1/chains/scf/status", 1_000_500),
            Err(RequestAuthError::BadSignature)
        );
        let mut cut = headers.clone();
        cut[2].1.truncate(10);
        assert_eq!(
            check(&cut, "/v1/chains/scf/status", 1_000_500),
            Err(RequestAuthError::Malformed(SIGNATURE_HEADER))
        );
    }
}
