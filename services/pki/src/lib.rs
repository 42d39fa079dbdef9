//! The consortium's certificate hierarchy: who may issue what, the certificate profiles, the
//! revocation lists, and how a chain is verified. Pure certificate logic (rcgen, x509-parser,
//! webpki through rustls); no IO, no clock reads except [`now_ms`] for callers that want one.
//!
//! ```text
//! root CA            self-signed, path length 2, ECDSA P-256. Offline: its key signs only
//!  │                 issuing CAs and the root CRL; nodes and services get its certificate
//!  │                 as their one trust anchor, never its key.
//!  └ issuing CA      path length 1, ECDSA P-256, held by the membership service. Issues org
//!     │              certificates and signs the CRL of what it issued. Rotated by having the
//!     │              root issue a new one under a new name ([`RootCa::issue_issuing_ca`]).
//!     └ org          CA, path length 0, the org's own ed25519 key (the one admitted on the
//!        │           beacon); CN = O = the org id (its unified social credit code), URI SAN
//!        │           `trellis:org:<org>`. Signs its nodes' certificates and their CRL.
//!        └ node      end entity, ECDSA P-256, serverAuth + clientAuth, URI SAN
//!                    `trellis:validator:<hex consensus key>` plus its host names and IPs.
//! ```
//!
//! # Revocation
//!
//! webpki takes a certificate's status from a CRL of the *same issuer* (matched by name,
//! checked with the issuer's key; indirect CRLs are not supported), so every CA level signs
//! its own CRL: the root one for issuing CAs, each issuing CA one for org certificates, each
//! org one for its nodes. The beacon's revocation list is the one record of revoked serials;
//! every CRL built from it lists all of its serials ([`crl`]), so a serial revoked on the
//! beacon is revoked whichever CA issued it. Issued serials must therefore be unique across
//! the consortium: CAs use 128 random bits ([`Serial::random`]).
//!
//! Verification ([`verify`]) checks revocation along the whole chain, so revoking an org
//! certificate cuts every node issued under it. A CA certificate's status must be *known* (a
//! CRL of its issuer is loaded), or the chain is refused: a missing issuing-CA CRL must not
//! quietly re-admit a removed member. A node certificate's status may be unknown — its org
//! published no CRL yet — and it is then accepted: one org's missing CRL must not lock its
//! nodes (or, with a stricter setting, everyone's) out. With no CRL loaded at all, nothing is
//! checked for revocation.
//!
//! Two CAs in service at once must have different subject names (webpki picks a CRL by
//! issuer name, so two issuing CAs sharing a name would shadow each other's CRLs).

#![forbid(unsafe_code)]

mod cacert;
pub mod crl;
mod identity;
mod issuing;
mod org;
mod root;
mod serial;
mod time;
pub mod verify;

pub use crl::{RevocationReason, RevokedEntry};
pub use identity::{
    ORG_URI_PREFIX, VALIDATOR_URI_PREFIX, org_identity, validator_identity, validator_uri,
};
pub use issuing::{IssuedCertificate, IssuingCa, OrgCertificateInfo};
pub use org::{NodeCertRequest, NodeCertificate, OrgCa};
pub use root::{ISSUING_PATH_LEN, ROOT_PATH_LEN, RootCa};
pub use serial::Serial;
pub use time::{DAY_MS, MAX_X509_TIME_MS, now_ms};

/// Errors of loading CA material, issuing certificates and CRLs, and verifying chains.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("bad PEM: {0}")]
    BadPem(String),
    #[error("bad CA certificate: {0}")]
    BadCaCertificate(String),
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    #[error("bad CA key: {0}")]
    BadKey(String),
    #[error("invalid org id: {0}")]
    InvalidOrg(String),
    #[error("invalid org public key: {0}")]
    InvalidOrgKey(&'static str),
    #[error("invalid serial `{serial}`: {reason}")]
    InvalidSerial {
        serial: String,
        reason: &'static str,
    },
    #[error("invalid time: {0}")]
    InvalidTime(&'static str),
    #[error("invalid host name {0:?} for a certificate")]
    InvalidHost(String),
    #[error("system randomness unavailable")]
    Random,
    #[error("certificate generation failed: {0}")]
    Rcgen(String),
    #[error("verifier: {0}")]
    Verifier(String),
    #[error("chain refused: {0}")]
    Refused(verify::Refusal),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> PkiError {
        PkiError::Rcgen(e.to_string())
    }
}

/// Joins PEM blocks into one chain file, one block after another.
pub fn chain_pem<S: AsRef<str>>(blocks: &[S]) -> String {
    let mut out = String::new();
    for b in blocks {
        let b = b.as_ref().trim_end();
        if b.is_empty() {
            continue;
        }
        out.push_str(b);
        out.push('\n');
    }
    out
}
