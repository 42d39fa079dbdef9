//! What every CA of the hierarchy shares: loading its certificate (and the chain above it)
//! with its key, checking that they belong together and may sign, and issuing under it.

use rcgen::{CertificateParams, Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use crate::PkiError;
use crate::crl::{self, RevokedEntry};
use crate::time::x509_time;

/// The certificates in a PEM text, DER, in order. Refuses any block that is not a
/// certificate and a text without one.
pub(crate) fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::BadPem(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            return Err(PkiError::BadPem(format!(
                "expected a CERTIFICATE block, found {}",
                block.label
            )));
        }
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err(PkiError::BadPem("no CERTIFICATE block".into()));
    }
    Ok(out)
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))
}

/// A DER certificate as PEM (LF line endings, as rcgen writes them).
pub(crate) fn to_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

/// A CA's path length constraint as its certificate states it: `None` for a certificate that
/// is not a CA, `Some(None)` for an unconstrained CA.
pub(crate) fn ca_path_len(cert: &X509Certificate<'_>) -> Result<Option<Option<u32>>, PkiError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(bc
        .filter(|bc| bc.value.ca)
        .map(|bc| bc.value.path_len_constraint))
}

/// A loaded CA: its signing identity and certificate, and the certificates above it that came
/// with it (nearest first, e.g. the root after an issuing CA).
pub(crate) struct CaCore {
    pub issuer: Issuer<'static, KeyPair>,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub not_after_ms: i64,
    pub path_len: Option<u32>,
    pub above: Vec<Vec<u8>>,
}

impl CaCore {
    /// Loads a CA from its certificate (optionally followed by the chain above it, each
    /// certificate signed by the next) and its key. Refuses a certificate that is not a CA
    /// or cannot sign certificates and CRLs, and a key that does not belong to it (everything
    /// it signed would fail verification).
    pub fn load(chain_pem: &str, key: KeyPair) -> Result<CaCore, PkiError> {
        let ders = pem_certificates(chain_pem)?;
        let cert = parse(&ders[0]).map_err(|e| PkiError::BadCaCertificate(e.to_string()))?;
        let path_len = match ca_path_len(&cert)? {
            Some(p) => p,
            None => {
                return Err(PkiError::BadCaCertificate(
                    "basic constraints do not mark it as a CA".into(),
                ));
            }
        };
        let usage = cert
            .key_usage()
            .map_err(|e| PkiError::BadCaCertificate(e.to_string()))?;
        if let Some(ku) = usage
            && !(ku.value.key_cert_sign() && ku.value.crl_sign())
        {
            return Err(PkiError::BadCaCertificate(
                "key usage does not allow signing certificates and CRLs".into(),
            ));
        }
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(PkiError::BadKey(
                "the key does not match the CA certificate's public key".into(),
            ));
        }
        check_chain(&ders)?;
        let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ders[0].as_slice()), key)
            .map_err(|e| PkiError::BadCaCertificate(e.to_string()))?;
        let mut ders = ders.into_iter();
        let cert_der = ders.next().unwrap_or_default();
        Ok(CaCore {
            issuer,
            cert_pem: to_pem(&cert_der),
            cert_der,
            not_after_ms,
            path_len,
            above: ders.collect(),
        })
    }

    /// Signs `params` for `subject_key` (whose validity the caller set). Refuses a
    /// certificate that would outlive this CA's: a chain verifier would reject it after the CA
    /// expires anyway; refusing now makes the operator renew the CA rather than find out later.
    pub fn sign(
        &self,
        params: CertificateParams,
        not_after_ms: i64,
        subject_key: &impl PublicKeyData,
    ) -> Result<rcgen::Certificate, PkiError> {
        if not_after_ms > self.not_after_ms {
            return Err(PkiError::InvalidTime(
                "the certificate would outlive the CA certificate",
            ));
        }
        Ok(params.signed_by(subject_key, &self.issuer)?)
    }

    pub fn crl_pem(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update_ms: i64,
        next_update_ms: i64,
    ) -> Result<String, PkiError> {
        crl::sign(
            &self.issuer,
            revoked,
            crl_number,
            this_update_ms,
            next_update_ms,
        )
    }

    /// The DER certificates above this CA that are not self-signed (what a peer needs sent
    /// besides its trust anchor).
    pub fn intermediates_above(&self) -> Vec<&[u8]> {
        self.above
            .iter()
            .filter(|d| parse(d).is_ok_and(|c| c.subject().as_raw() != c.issuer().as_raw()))
            .map(Vec::as_slice)
            .collect()
    }
}

/// Each certificate of `ders` after the first must be a CA that signed the one before it.
pub(crate) fn check_chain(ders: &[Vec<u8>]) -> Result<(), PkiError> {
    for pair in ders.windows(2) {
        let child = parse(&pair[0])?;
        let parent = parse(&pair[1])?;
        if ca_path_len(&parent)?.is_none() {
            return Err(PkiError::BadCaCertificate(
                "a certificate in the chain above is not a CA".into(),
            ));
        }
        if child.issuer().as_raw() != parent.subject().as_raw()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(PkiError::BadCaCertificate(
                "the chain above is not in order: a certificate is not signed by the next".into(),
            ));
        }
    }
    Ok(())
}

/// Sets a certificate's validity (already cut to whole seconds).
pub(crate) fn set_validity(params: &mut CertificateParams, not_before_ms: i64, not_after_ms: i64) {
    params.not_before = x509_time(not_before_ms);
    params.not_after = x509_time(not_after_ms);
}
