//! The offline root CA: self-signed, path length 2 (an issuing CA and an org may follow it),
//! an ECDSA P-256 key that signs only issuing CAs and the root CRL. Load it where the key
//! lives (an operator's offline machine, `trellis devnet init`); running services and nodes
//! only ever get [`RootCa::cert_pem`].

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

use crate::PkiError;
use crate::cacert::{CaCore, parse, set_validity};
use crate::crl::RevokedEntry;
use crate::issuing::IssuingCa;
use crate::serial::Serial;
use crate::time::validity;

/// Path length of the root: an issuing CA and an org certificate may follow it.
pub const ROOT_PATH_LEN: u8 = 2;
/// Path length of an issuing CA: an org certificate may follow it.
pub const ISSUING_PATH_LEN: u8 = 1;

/// The consortium's root CA: its certificate and signing key.
pub struct RootCa {
    core: CaCore,
}

// Why manual Debug: the signing key must never reach logs.
impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("not_after_ms", &self.core.not_after_ms)
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A new root named `name`, valid `[not_before_ms, not_after_ms]` (cut to whole seconds),
    /// with a fresh P-256 key (export it with [`RootCa::key_pem`] to keep it offline).
    pub fn generate(name: &str, not_before_ms: i64, not_after_ms: i64) -> Result<RootCa, PkiError> {
        let (not_before, not_after) = validity(not_before_ms, not_after_ms)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(name, ROOT_PATH_LEN)?;
        set_validity(&mut params, not_before, not_after);
        let cert = params.self_signed(&key)?;
        RootCa::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads the root from its certificate and PKCS#8 key, both PEM. Refuses a certificate
    /// that is not a self-signed CA allowing the two levels below it, and a key that does not
    /// belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let core = CaCore::load(cert_pem, key)?;
        let cert = parse(&core.cert_der)?;
        if cert.subject().as_raw() != cert.issuer().as_raw() || cert.verify_signature(None).is_err()
        {
            return Err(PkiError::BadCaCertificate(
                "a root certificate must be self-signed".into(),
            ));
        }
        if core.path_len.is_some_and(|n| n < u32::from(ROOT_PATH_LEN)) {
            return Err(PkiError::BadCaCertificate(
                "the root's path length leaves no room for an issuing CA and an org".into(),
            ));
        }
        if !core.above.is_empty() {
            return Err(PkiError::BadCaCertificate(
                "a root certificate comes alone".into(),
            ));
        }
        Ok(RootCa { core })
    }

    /// The root certificate, PEM: the trust anchor every node and service pins.
    pub fn cert_pem(&self) -> &str {
        &self.core.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.core.cert_der
    }

    /// The root's private key, PKCS#8 PEM, to store offline.
    pub fn key_pem(&self) -> String {
        self.core.issuer.key().serialize_pem()
    }

    /// Issues an issuing CA named `name` (path length 1, fresh P-256 key, random serial),
    /// valid `[not_before_ms, not_after_ms]`, not beyond the root. Give every issuing CA of a
    /// rotation its own name (e.g. with a generation number): CRLs are found by issuer name.
    pub fn issue_issuing_ca(
        &self,
        name: &str,
        not_before_ms: i64,
        not_after_ms: i64,
    ) -> Result<IssuingCa, PkiError> {
        let (not_before, not_after) = validity(not_before_ms, not_after_ms)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(name, ISSUING_PATH_LEN)?;
        params.serial_number = Some(Serial::random()?.to_rcgen());
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, not_before, not_after);
        let cert = self.core.sign(params, not_after, &key)?;
        let chain = crate::chain_pem(&[cert.pem().as_str(), self.cert_pem()]);
        IssuingCa::from_pem(&chain, &key.serialize_pem())
    }

    /// The root's CRL (revoked issuing CAs), PEM. See [`IssuingCa::crl_pem`] for the rules.
    pub fn crl_pem(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update_ms: i64,
        next_update_ms: i64,
    ) -> Result<String, PkiError> {
        self.core
            .crl_pem(revoked, crl_number, this_update_ms, next_update_ms)
    }
}

/// Subject CN = `name`, CA with `path_len`, key usage keyCertSign + cRLSign.
fn ca_params(name: &str, path_len: u8) -> Result<CertificateParams, PkiError> {
    if name.trim().is_empty() {
        return Err(PkiError::BadCaCertificate("a CA needs a name".into()));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}
