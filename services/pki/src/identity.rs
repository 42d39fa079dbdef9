//! Who a certificate names: the validator behind a node certificate and the org behind an
//! org certificate, read from their URI subject-alternative names.
//!
//! A node certificate binds its TLS key to the validator's ed25519 consensus key through the
//! URI SAN `trellis:validator:<64 lowercase hex>`, so the network layer can tell *which
//! validator* sits behind a TLS connection without a second handshake.

use trellis_consensus::PublicKey;
use x509_parser::extensions::GeneralName;

/// Prefix of the URI SAN that carries a validator's consensus key.
pub const VALIDATOR_URI_PREFIX: &str = "trellis:validator:";

/// Prefix of the URI SAN that names the org a certificate belongs to.
pub const ORG_URI_PREFIX: &str = "trellis:org:";

/// The URI SAN naming `validator`.
pub fn validator_uri(validator: &PublicKey) -> String {
    format!("{VALIDATOR_URI_PREFIX}{}", hex::encode(validator.0))
}

/// The URIs a certificate (DER) names after `prefix`.
fn uris_after(cert_der: &[u8], prefix: &str) -> Option<Vec<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => uri.strip_prefix(prefix).map(str::to_string),
                _ => None,
            })
            .collect(),
    )
}

/// The validator key a certificate (DER) names in its `trellis:validator:` URI SAN, if it
/// names exactly one in canonical form. Does not verify the certificate: call it only on
/// a chain the TLS verifier accepted.
pub fn validator_identity(cert_der: &[u8]) -> Option<PublicKey> {
    let found = uris_after(cert_der, VALIDATOR_URI_PREFIX)?;
    let [hex_key] = found.as_slice() else {
        return None; // none, or two identities in one certificate: ambiguous, trust neither
    };
    // Why strict: one canonical spelling per key, so two certificates can never name the
    // same validator in different ways.
    if hex_key.len() != 64
        || !hex_key
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).ok()?;
    Some(PublicKey(key))
}

/// The org a certificate (DER) names in its `trellis:org:` URI SAN, if exactly one.
pub fn org_identity(cert_der: &[u8]) -> Option<String> {
    let found = uris_after(cert_der, ORG_URI_PREFIX)?;
    match found.as_slice() {
        [org] if !org.is_empty() => Some(org.clone()),
        _ => None,
    }
}
