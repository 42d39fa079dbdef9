//! Verifying chains the way nodes do: rustls' webpki verifiers over the root as the only
//! trust anchor and the loaded CRLs, with the revocation policy of this hierarchy.
//!
//! # Revocation policy
//!
//! - Revocation is checked for every certificate of the chain, not just the end entity
//!   (rustls' default; `only_check_end_entity_revocation` is *not* used): revoking an org
//!   certificate cuts every node issued under it, revoking an issuing CA every org under it.
//! - A node certificate whose org published no CRL has unknown status and is accepted
//!   (`allow_unknown_revocation_status`): an org that has not (yet) published a CRL must not
//!   lock its nodes out, and with rustls' strict default every new org would have to get its
//!   CRL to every node before its first node could join.
//! - That allowance would also let a CA certificate through whose issuer's CRL is missing —
//!   a removed member's org certificate, say, on a node that lacks the issuing CA's CRL. So
//!   every CA certificate a peer presents must have a CRL of its issuer loaded (checked
//!   after webpki accepted the chain); otherwise the chain is refused as
//!   `UnknownRevocationStatus`.
//! - With no CRL loaded at all, nothing is checked for revocation (a test network).
//! - CRL expiry (`nextUpdate`) is not enforced (rustls' default): a node keeps the CRLs it
//!   has until newer ones arrive, rather than refusing everyone when a CRL goes stale.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use trellis_consensus::PublicKey;

use crate::PkiError;

/// Why a chain was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A certificate of the chain is on its issuer's CRL.
    Revoked,
    /// A CA certificate of the chain has no CRL of its issuer loaded.
    UnknownRevocationStatus,
    /// The chain does not lead to the trust anchor.
    UnknownIssuer,
    /// A certificate of the chain is expired or not yet valid.
    Expired,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate names no validator (or more than one).
    NoValidator,
    /// Anything else webpki refused (e.g. a path length or CA flag violation), as it says it.
    Other(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Revoked => f.write_str("a certificate of the chain is revoked"),
            Refusal::UnknownRevocationStatus => {
                f.write_str("no CRL of a CA certificate's issuer is loaded")
            }
            Refusal::UnknownIssuer => f.write_str("the chain does not lead to the root"),
            Refusal::Expired => f.write_str("a certificate is expired or not yet valid"),
            Refusal::BadSignature => f.write_str("a signature does not verify"),
            Refusal::NoValidator => f.write_str("the certificate names no single validator"),
            Refusal::Other(s) => f.write_str(s),
        }
    }
}

impl Refusal {
    fn of(e: &rustls::Error) -> Refusal {
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Revoked => Refusal::Revoked,
                CertificateError::UnknownRevocationStatus => Refusal::UnknownRevocationStatus,
                CertificateError::UnknownIssuer => Refusal::UnknownIssuer,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Refusal::Expired,
                CertificateError::BadSignature => Refusal::BadSignature,
                other => Refusal::Other(format!("{other:?}")),
            },
            other => Refusal::Other(other.to_string()),
        }
    }
}

/// The raw issuer names of `crls`.
fn crl_issuers(crls: &[CertificateRevocationListDer<'_>]) -> Result<Vec<Vec<u8>>, PkiError> {
    crls.iter()
        .map(|c| {
            x509_parser::parse_x509_crl(c.as_ref())
                .map(|(_, crl)| crl.issuer().as_raw().to_vec())
                .map_err(|e| PkiError::Verifier(format!("CRL: {e}")))
        })
        .collect()
}

/// The CA-level part of the policy: every CA certificate presented has a CRL of its issuer.
#[derive(Debug, Clone)]
struct CaStatusKnown {
    crl_issuers: Vec<Vec<u8>>,
}

impl CaStatusKnown {
    fn check(&self, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if self.crl_issuers.is_empty() {
            return Ok(());
        }
        for der in intermediates {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            let issuer = cert.issuer().as_raw();
            if !self.crl_issuers.iter().any(|i| i.as_slice() == issuer) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownRevocationStatus,
                ));
            }
        }
        Ok(())
    }
}

/// A client-certificate verifier with this hierarchy's revocation policy.
#[derive(Debug)]
struct PolicyClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    policy: CaStatusKnown,
}

impl ClientCertVerifier for PolicyClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.policy.check(intermediates)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server-certificate verifier with this hierarchy's revocation policy.
#[derive(Debug)]
struct PolicyServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    policy: CaStatusKnown,
}

impl ServerCertVerifier for PolicyServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.policy.check(intermediates)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The verifier a node uses for the client certificates of peers that dial it: webpki over
/// `roots` and `crls` with this hierarchy's revocation policy (see the module documentation).
pub fn client_verifier(
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let policy = CaStatusKnown {
        crl_issuers: crl_issuers(&crls)?,
    };
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    Ok(Arc::new(PolicyClientVerifier { inner, policy }))
}

/// The verifier a node uses for the server certificates of peers it dials (same policy as
/// [`client_verifier`]).
pub fn server_verifier(
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, PkiError> {
    let policy = CaStatusKnown {
        crl_issuers: crl_issuers(&crls)?,
    };
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    Ok(Arc::new(PolicyServerVerifier { inner, policy }))
}

/// Every certificate in a PEM text.
pub fn certificates_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::BadPem("no certificate".into()));
    }
    Ok(certs)
}

/// Every CRL in the PEM texts; a text holding none is refused (an operator's empty or
/// mangled file must not silently lift revocations).
pub fn crls_from_pem<S: AsRef<str>>(
    pems: &[S],
) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let mut crls = Vec::new();
    for pem in pems {
        let before = crls.len();
        for crl in CertificateRevocationListDer::pem_slice_iter(pem.as_ref().as_bytes()) {
            crls.push(crl.map_err(|e| PkiError::BadPem(format!("CRL: {e}")))?);
        }
        if crls.len() == before {
            return Err(PkiError::BadPem("CRL file holds no CRL".into()));
        }
    }
    Ok(crls)
}

/// Checks a node's chain (`chain_pem`: node certificate first, then the certificates above
/// it) as a peer would when the node dials it — webpki against the root(s) in `roots_pem`
/// and the CRLs in `crl_pems`, with this hierarchy's revocation policy — at `at_ms`, and
/// returns the validator it names.
pub fn verify_node_chain<S: AsRef<str>>(
    roots_pem: &str,
    chain_pem: &str,
    crl_pems: &[S],
    at_ms: i64,
) -> Result<PublicKey, PkiError> {
    let mut roots = RootCertStore::empty();
    for root in certificates_from_pem(roots_pem)? {
        roots
            .add(root)
            .map_err(|e| PkiError::Verifier(format!("root: {e}")))?;
    }
    let crls = crls_from_pem(crl_pems)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = client_verifier(Arc::new(roots), crls, provider)?;
    let chain = certificates_from_pem(chain_pem)?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or(PkiError::BadPem("no certificate".into()))?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_millis(at_ms.unsigned_abs()));
    verifier
        .verify_client_cert(leaf, rest, at)
        .map_err(|e| PkiError::Refused(Refusal::of(&e)))?;
    crate::identity::validator_identity(leaf).ok_or(PkiError::Refused(Refusal::NoValidator))
}
