//! An org as a CA: with its org certificate and its own ed25519 key it issues its nodes' TLS
//! certificates and signs the CRL that revokes them.
//!
//! A node certificate: end entity, a fresh ECDSA P-256 key, EKU serverAuth + clientAuth
//! (every node both dials and accepts), SANs for its DNS names and IPs plus the validator URI
//! `trellis:validator:<hex>`, and a serial the org chooses (random by default; CRLs revoke by
//! serial, so serials must not repeat across the consortium).

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SanType,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use trellis_consensus::PublicKey;

use crate::PkiError;
use crate::cacert::{CaCore, set_validity};
use crate::crl::RevokedEntry;
use crate::identity::validator_uri;
use crate::serial::Serial;
use crate::time::validity;

/// PKCS#8 v1 header of an ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// What a node certificate says.
#[derive(Clone, Debug)]
pub struct NodeCertRequest {
    /// The validator's consensus key, named in the URI SAN.
    pub validator: PublicKey,
    pub serial: Serial,
    /// DNS names and IPs the node answers on.
    pub hosts: Vec<String>,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

/// A node's TLS certificate, the chain it presents, and its private key.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The node certificate alone, PEM.
    pub cert_pem: String,
    /// The node certificate followed by the org certificate and the CAs above it up to (not
    /// including) the root: what the node presents in a TLS handshake.
    pub chain_pem: String,
    /// The node's P-256 key, PKCS#8 PEM.
    pub key_pem: String,
    pub serial: Serial,
}

// Why manual Debug: private keys must never reach logs.
impl fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("serial", &self.serial)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// An org's certificate (with the issuing CA above it) and its signing key.
pub struct OrgCa {
    core: CaCore,
    org: String,
}

// Why manual Debug: the signing key must never reach logs.
impl fmt::Debug for OrgCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgCa")
            .field("org", &self.org)
            .field("not_after_ms", &self.core.not_after_ms)
            .finish_non_exhaustive()
    }
}

impl OrgCa {
    /// Loads an org from its org certificate — optionally followed by the issuing CA (and the
    /// root) above it — and the 32-byte seed of its ed25519 org key (as in its key file).
    /// Refuses a certificate that is not an org certificate (a CA of path length 0 naming an
    /// org) or does not certify this key.
    pub fn from_seed(cert_pem: &str, org_seed: [u8; 32]) -> Result<OrgCa, PkiError> {
        let mut pkcs8 = Vec::with_capacity(48);
        pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
        pkcs8.extend_from_slice(&org_seed);
        let key =
            KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)
                .map_err(|e| PkiError::BadKey(e.to_string()))?;
        let core = CaCore::load(cert_pem, key)?;
        if core.path_len != Some(0) {
            return Err(PkiError::BadCaCertificate(
                "an org certificate is a CA of path length 0".into(),
            ));
        }
        let org = crate::identity::org_identity(&core.cert_der)
            .ok_or_else(|| PkiError::BadCaCertificate("names no org".into()))?;
        Ok(OrgCa { core, org })
    }

    /// The org this certificate names.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The org certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.core.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.core.cert_der
    }

    /// The org certificate followed by the CAs above it, without the (self-signed) root.
    pub fn chain_pem(&self) -> String {
        let mut blocks = vec![self.core.cert_pem.clone()];
        blocks.extend(
            self.core
                .intermediates_above()
                .into_iter()
                .map(crate::cacert::to_pem),
        );
        crate::chain_pem(&blocks)
    }

    /// Issues a node certificate (see the module documentation). It may not outlive the org
    /// certificate.
    pub fn issue_node_certificate(
        &self,
        req: &NodeCertRequest,
    ) -> Result<NodeCertificate, PkiError> {
        let (not_before, not_after) = validity(req.not_before_ms, req.not_after_ms)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let short = hex::encode(&req.validator.0[..4]);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("trellis validator {short}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.org.as_str());
        for host in &req.hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.as_str()
                        .try_into()
                        .map_err(|_| PkiError::InvalidHost(host.clone()))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params
            .subject_alt_names
            .push(SanType::URI(validator_uri(&req.validator).try_into()?));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(req.serial.to_rcgen());
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, not_before, not_after);
        let cert = self.core.sign(params, not_after, &key)?;
        let cert_pem = cert.pem();
        Ok(NodeCertificate {
            chain_pem: crate::chain_pem(&[cert_pem.clone(), self.chain_pem()]),
            cert_pem,
            key_pem: key.serialize_pem(),
            serial: req.serial.clone(),
        })
    }

    /// The org's CRL (revoked node certificates), PEM. Same rules as
    /// [`crate::IssuingCa::crl_pem`].
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

    /// The org certificate's expiry, unix milliseconds.
    pub fn not_after_ms(&self) -> i64 {
        self.core.not_after_ms
    }
}
