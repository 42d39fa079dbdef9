//! The consortium CA as the membership service uses it: it certifies an admitted member's
//! org key in an X.509 certificate, publishes CRLs of withdrawn certificates, and tells when
//! a certificate is due for renewal.
//!
//! An org certificate's subject public key *is* the org's ed25519 key (the one admitted on
//! chain), so whoever holds the certificate can check org signatures against it directly;
//! the URI SAN `trellis:org:<org>` names the org. The CA itself is the one `trellis devnet
//! init` writes as `ca/ca.pem` and `ca/ca-key.pem` (an ECDSA P-256 key), the same CA that
//! signs node TLS certificates.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use trellis_consensus::crypto::{self, CryptoError};
use trellis_consensus::{PublicKey, Signature};
use trellis_types::OrgId;

/// Prefix of the URI SAN that names the org a certificate belongs to.
pub const ORG_URI_PREFIX: &str = "trellis:org:";

/// DER of the SubjectPublicKeyInfo header for an ed25519 key (RFC 8410): SEQUENCE {
/// AlgorithmIdentifier { id-Ed25519 }, BIT STRING (0 unused bits) }; the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The latest instant X.509 can express (9999-12-31T23:59:59Z), in milliseconds.
const MAX_X509_TIME_MS: i64 = 253_402_300_799_000;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Errors of loading the CA, issuing certificates and CRLs.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("bad PEM: {0}")]
    BadPem(String),
    #[error("bad CA certificate: {0}")]
    BadCaCertificate(String),
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
    #[error("invalid renewal policy: {0}")]
    InvalidPolicy(&'static str),
    #[error("system randomness unavailable")]
    Random,
    #[error("certificate generation failed: {0}")]
    Rcgen(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> CaError {
        CaError::Rcgen(e.to_string())
    }
}

/// A certificate the CA issued, with what the membership service records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Lower-case hex of the serial's DER integer bytes (the name a CRL revokes it by).
    pub serial_hex: String,
    pub pem: String,
    pub der: Vec<u8>,
    /// Validity as written in the certificate: whole seconds, in milliseconds.
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// SHA-256 of `der`, lower-case hex.
    pub sha256_hex: String,
}

/// Why a certificate was revoked (RFC 5280 §5.3.1). `RemoveFromCrl` and `AaCompromise` are
/// left out: this CA issues full CRLs and no attribute certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// The CRL entry's reason code; `None` for `Unspecified`, because RFC 5280 asks for the
    /// extension to be absent rather than say "unspecified".
    fn reason_code(self) -> Option<rcgen::RevocationReason> {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some(R::KeyCompromise),
            RevocationReason::CaCompromise => Some(R::CaCompromise),
            RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
            RevocationReason::Superseded => Some(R::Superseded),
            RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
            RevocationReason::CertificateHold => Some(R::CertificateHold),
            RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
        }
    }
}

/// One revoked certificate in a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// As in [`IssuedCertificate::serial_hex`]; either case is accepted.
    pub serial_hex: String,
    pub revoked_at_ms: i64,
    pub reason: RevocationReason,
}

/// The consortium certificate authority: its certificate and signing key.
pub struct ConsortiumCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after_ms: i64,
}

// Why manual Debug: the signing key must never reach logs.
impl fmt::Debug for ConsortiumCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsortiumCa")
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

impl ConsortiumCa {
    /// Loads the CA from its certificate and PKCS#8 private key, both PEM. Refuses a
    /// certificate that is not a CA or cannot sign certificates and CRLs, and a key that does
    /// not belong to the certificate (everything it signed would fail verification).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ConsortiumCa, CaError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| CaError::BadPem(e.to_string()))?;
        if pem.label != "CERTIFICATE" {
            return Err(CaError::BadPem(format!(
                "expected a CERTIFICATE block, found {}",
                pem.label
            )));
        }
        let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| CaError::BadCaCertificate(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| CaError::BadCaCertificate(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::BadCaCertificate(
                "basic constraints do not mark it as a CA".into(),
            ));
        }
        let usage = cert
            .key_usage()
            .map_err(|e| CaError::BadCaCertificate(e.to_string()))?;
        if let Some(ku) = usage
            && !(ku.value.key_cert_sign() && ku.value.crl_sign())
        {
            return Err(CaError::BadCaCertificate(
                "key usage does not allow signing certificates and CRLs".into(),
            ));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadKey(e.to_string()))?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(CaError::BadKey(
                "the key does not match the CA certificate's public key".into(),
            ));
        }
        let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| CaError::BadCaCertificate(e.to_string()))?;
        Ok(ConsortiumCa {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_der: pem.contents,
            not_after_ms,
        })
    }

    /// A fresh self-signed CA named `name`, valid for ten years from an hour ago, with a new
    /// P-256 key that is never exported. For tests and throw-away setups; a consortium loads
    /// its CA with [`ConsortiumCa::from_pem`].
    pub fn generate(name: &str) -> Result<ConsortiumCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CaError::InvalidTime("system clock is before 1970"))?
            .as_millis() as i64;
        let not_before = whole_seconds(now_ms - 3600 * 1000)?;
        let not_after = whole_seconds(now_ms + 3650 * DAY_MS)?;
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
        let cert = params.self_signed(&key)?;
        Ok(ConsortiumCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            not_after_ms: not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM (what members pin as their trust anchor).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues the org certificate of `org` for its raw ed25519 `org_public_key`, valid from
    /// `not_before_ms` for `validity_ms` (both cut to whole seconds, as X.509 counts time).
    /// The certificate carries CN = O = `org`, the URI SAN `trellis:org:<org>`, key usage
    /// digitalSignature, EKU clientAuth + serverAuth, basic constraints CA:false, and a random
    /// 16-byte positive serial. It may not outlive the CA certificate.
    pub fn issue_org_certificate(
        &self,
        org: &str,
        org_public_key: [u8; 32],
        not_before_ms: i64,
        validity_ms: i64,
    ) -> Result<IssuedCertificate, CaError> {
        let org = OrgId::parse(org, "org").map_err(|e| CaError::InvalidOrg(e.to_string()))?;
        check_org_key(org_public_key)?;
        if validity_ms <= 0 {
            return Err(CaError::InvalidTime("validity must be positive"));
        }
        let not_after_ms = not_before_ms
            .checked_add(validity_ms)
            .ok_or(CaError::InvalidTime("not_after is out of range"))?;
        let not_before = whole_seconds(not_before_ms)?;
        let not_after = whole_seconds(not_after_ms)?;
        if not_after <= not_before {
            return Err(CaError::InvalidTime(
                "validity is shorter than one whole second",
            ));
        }
        if not_after > self.not_after_ms {
            // A chain verifier would reject the certificate after the CA expires anyway;
            // refusing now makes the operator renew the CA rather than find out later.
            return Err(CaError::InvalidTime(
                "the certificate would outlive the CA certificate",
            ));
        }

        let mut spki_der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
        spki_der.extend_from_slice(&ED25519_SPKI_PREFIX);
        spki_der.extend_from_slice(&org_public_key);
        let spki = SubjectPublicKeyInfo::from_der(&spki_der)?;

        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, org.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
        params.subject_alt_names = vec![SanType::URI(format!("{ORG_URI_PREFIX}{org}").try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);

        let cert = params.signed_by(&spki, &self.issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            serial_hex: hex::encode(serial),
            pem: cert.pem(),
            sha256_hex: hex::encode(Sha256::digest(&der)),
            der,
            not_before_ms: not_before,
            not_after_ms: not_after,
        })
    }

    /// A CRL listing `revoked`, as PEM. `crl_number` must grow with every CRL the CA issues;
    /// times are cut to whole seconds. Refuses duplicate serials and revocations dated after
    /// `this_update_ms`.
    pub fn crl_pem(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update_ms: i64,
        next_update_ms: i64,
    ) -> Result<String, CaError> {
        let this_update = whole_seconds(this_update_ms)?;
        let next_update = whole_seconds(next_update_ms)?;
        if next_update <= this_update {
            return Err(CaError::InvalidTime(
                "next_update must be at least one second after this_update",
            ));
        }
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let mut seen = HashSet::new();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for entry in revoked {
            let serial = parse_serial(&entry.serial_hex)?;
            if !seen.insert(serial.clone()) {
                return Err(CaError::InvalidSerial {
                    serial: entry.serial_hex.clone(),
                    reason: "listed twice",
                });
            }
            let revoked_at = whole_seconds(entry.revoked_at_ms)?;
            if revoked_at > this_update {
                return Err(CaError::InvalidTime(
                    "a revocation is dated after the CRL's this_update",
                ));
            }
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: epoch + since_epoch(revoked_at),
                reason_code: entry.reason.reason_code(),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: epoch + since_epoch(this_update),
            next_update: epoch + since_epoch(next_update),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// Refuses org keys that are not ed25519 points or have small order. trellis-consensus has
/// no "is this a point" check, so `crypto::verify` is probed with an all-zero signature: a
/// key that does not decompress fails with `BadKey`; the zero signature (R of order 4,
/// s = 0) verifies under the cofactored ZIP-215 equation exactly when the key has small
/// order, and a small-order key would let anyone forge the org's signatures.
fn check_org_key(key: [u8; 32]) -> Result<(), CaError> {
    let probe = crypto::verify(
        &PublicKey(key),
        &Signature([0u8; 64]),
        b"trellis/membership/org-key-probe",
    );
    match probe {
        Err(CryptoError::BadSignature) => Ok(()),
        Err(CryptoError::BadKey) => Err(CaError::InvalidOrgKey("not an ed25519 curve point")),
        Ok(()) => Err(CaError::InvalidOrgKey("small-order ed25519 point")),
    }
}

/// 16 random bytes with the top bit clear (a positive DER integer needs no padding byte) and
/// a non-zero first byte (DER would drop a leading zero), so the serial's encoding is exactly
/// these 16 bytes and `serial_hex` matches what parsers report.
fn random_serial() -> Result<[u8; 16], CaError> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CaError::Random)?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

/// The serial a CRL entry names, as minimal big-endian bytes.
fn parse_serial(serial_hex: &str) -> Result<Vec<u8>, CaError> {
    let invalid = |reason| CaError::InvalidSerial {
        serial: serial_hex.to_string(),
        reason,
    };
    let bytes = hex::decode(serial_hex).map_err(|_| invalid("not an even number of hex digits"))?;
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let minimal = &bytes[start..];
    if minimal.is_empty() {
        return Err(invalid("serial numbers must be positive"));
    }
    // RFC 5280 §4.1.2.2: at most 20 octets, counting the 0x00 that a set top bit needs.
    let encoded_len = minimal.len() + usize::from(minimal[0] & 0x80 != 0);
    if encoded_len > 20 {
        return Err(invalid("longer than 20 octets"));
    }
    Ok(minimal.to_vec())
}

/// `ms` cut to whole seconds (still in milliseconds), if X.509 can express it.
fn whole_seconds(ms: i64) -> Result<i64, CaError> {
    if !(0..=MAX_X509_TIME_MS).contains(&ms) {
        return Err(CaError::InvalidTime(
            "time must lie between 1970 and the end of 9999",
        ));
    }
    Ok(ms - ms % 1000)
}

/// Time since the Unix epoch of a checked, non-negative `ms`. Why a `Duration`: rcgen takes
/// `time::OffsetDateTime`, which this crate cannot name without depending on `time`, and
/// `rcgen::date_time_ymd(1970, 1, 1) + since_epoch(ms)` builds one without naming it.
fn since_epoch(ms: i64) -> Duration {
    Duration::from_millis(ms.unsigned_abs())
}

/// Where a certificate stands in its life, for the renewal job and alerting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// Nothing to do.
    Fresh,
    /// Within the renewal window: issue a successor.
    RenewalDue,
    /// Close to expiry and still not renewed: a person should look.
    Alert,
    /// Past `not_after`.
    Expired,
}

/// When org certificates are renewed: issued for `validity_ms`, renewed once fewer than
/// `renew_before_ms` remain, alerted on once fewer than `alert_before_ms` remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalPolicy {
    validity_ms: i64,
    renew_before_ms: i64,
    alert_before_ms: i64,
}

impl Default for RenewalPolicy {
    /// 90 days of validity, renewal 30 days and alert 14 days before expiry.
    fn default() -> RenewalPolicy {
        RenewalPolicy {
            validity_ms: 90 * DAY_MS,
            renew_before_ms: 30 * DAY_MS,
            alert_before_ms: 14 * DAY_MS,
        }
    }
}

impl RenewalPolicy {
    /// Requires `0 < alert_before_ms <= renew_before_ms < validity_ms`, so a fresh
    /// certificate is never already due and the alert only fires after renewal had its chance.
    pub fn new(
        validity_ms: i64,
        renew_before_ms: i64,
        alert_before_ms: i64,
    ) -> Result<RenewalPolicy, CaError> {
        if alert_before_ms <= 0 {
            return Err(CaError::InvalidPolicy("alert_before_ms must be positive"));
        }
        if alert_before_ms > renew_before_ms {
            return Err(CaError::InvalidPolicy(
                "alert_before_ms must not exceed renew_before_ms",
            ));
        }
        if renew_before_ms >= validity_ms {
            return Err(CaError::InvalidPolicy(
                "renew_before_ms must be shorter than validity_ms",
            ));
        }
        Ok(RenewalPolicy {
            validity_ms,
            renew_before_ms,
            alert_before_ms,
        })
    }

    pub fn validity_ms(&self) -> i64 {
        self.validity_ms
    }

    pub fn renew_before_ms(&self) -> i64 {
        self.renew_before_ms
    }

    pub fn alert_before_ms(&self) -> i64 {
        self.alert_before_ms
    }

    /// The state of a certificate expiring at `not_after_ms`, seen at `now_ms`. Each window
    /// includes its start: exactly `renew_before_ms` left is `RenewalDue`, exactly
    /// `alert_before_ms` left is `Alert`, and `now_ms == not_after_ms` is already `Expired`
    /// (a renewal job should never count on a certificate's last instant).
    pub fn state(&self, not_after_ms: i64, now_ms: i64) -> CertState {
        // i128: no overflow for any pair of i64 instants.
        let left = i128::from(not_after_ms) - i128::from(now_ms);
        if left <= 0 {
            CertState::Expired
        } else if left <= i128::from(self.alert_before_ms) {
            CertState::Alert
        } else if left <= i128::from(self.renew_before_ms) {
            CertState::RenewalDue
        } else {
            CertState::Fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_consensus::Signer;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    /// 2025-01-01T00:00:00.250Z: deliberately not on a whole second.
    const T0: i64 = 1_735_689_600_250;

    fn org_key(seed: u8) -> [u8; 32] {
        Signer::from_seed([seed; 32]).public_key().0
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("PEM parses")
            .1
            .contents
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der)
            .expect("certificate parses")
            .1
    }

    /// CA PEM files made the way `trellis devnet init` makes them (services/node/src/pki.rs).
    fn devnet_ca_files() -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "trellis devnet CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2034, 1, 1);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn issued_certificate_has_the_org_profile() {
        let (cert_pem, key_pem) = devnet_ca_files();
        let ca = ConsortiumCa::from_pem(&cert_pem, &key_pem).expect("CA loads");
        let key = org_key(1);
        let validity = RenewalPolicy::default().validity_ms();
        let issued = ca
            .issue_org_certificate("acme-bank", key, T0, validity)
            .expect("issued");

        assert_eq!(pem_der(&issued.pem), issued.der);
        assert_eq!(issued.sha256_hex, hex::encode(Sha256::digest(&issued.der)));
        let ca_der = pem_der(&cert_pem);
        assert_eq!(ca.cert_der(), ca_der.as_slice());
        let ca_cert = parse(&ca_der);
        let cert = parse(&issued.der);

        // Chain: issuer name and signature.
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        let other = ConsortiumCa::generate("someone else").expect("CA");
        let other_cert_der = other.cert_der().to_vec();
        assert!(
            cert.verify_signature(Some(parse(&other_cert_der).public_key()))
                .is_err()
        );

        // Subject key is the org key itself.
        let spki = cert.public_key();
        assert_eq!(spki.subject_public_key.data.as_ref(), key.as_slice());
        assert_eq!(&spki.raw[..12], ED25519_SPKI_PREFIX.as_slice());
        assert_eq!(&spki.raw[12..], key.as_slice());

        // Validity, to the second.
        assert_eq!(issued.not_before_ms, T0 - 250);
        assert_eq!(issued.not_after_ms, T0 - 250 + validity);
        assert_eq!(
            cert.validity().not_before.timestamp() * 1000,
            issued.not_before_ms
        );
        assert_eq!(
            cert.validity().not_after.timestamp() * 1000,
            issued.not_after_ms
        );

        // Names.
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        let o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        assert_eq!(cn, ["acme-bank"]);
        assert_eq!(o, ["acme-bank"]);
        let san = cert.subject_alternative_name().expect("ok").expect("SAN");
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("trellis:org:acme-bank")]
        );

        // Extensions.
        let bc = cert.basic_constraints().expect("ok").expect("present");
        assert!(!bc.value.ca);
        assert!(!cert.is_ca());
        let ku = cert.key_usage().expect("ok").expect("present");
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign());
        let eku = cert.extended_key_usage().expect("ok").expect("present");
        assert!(eku.value.client_auth && eku.value.server_auth);
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);

        // Serial: 16 bytes, positive, as reported.
        assert_eq!(cert.raw_serial().len(), 16);
        assert!(cert.raw_serial()[0] & 0x80 == 0);
        assert_eq!(hex::encode(cert.raw_serial()), issued.serial_hex);
    }

    #[test]
    fn serials_differ_between_issues() {
        let ca = ConsortiumCa::generate("test CA").expect("CA");
        let mut serials = HashSet::new();
        for _ in 0..32 {
            let issued = ca
                .issue_org_certificate("acme", org_key(2), T0, DAY_MS)
                .expect("issued");
            assert_eq!(issued.serial_hex.len(), 32);
            assert!(serials.insert(issued.serial_hex));
        }
    }

    #[test]
    fn issuance_refusals() {
        let ca = ConsortiumCa::generate("test CA").expect("CA");
        let key = org_key(3);
        for org in ["", "acme bank", "ac/me", "銀行"] {
            assert!(matches!(
                ca.issue_org_certificate(org, key, T0, DAY_MS),
                Err(CaError::InvalidOrg(_))
            ));
        }
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2; // y = 2 is not on the curve
        let mut identity = [0u8; 32];
        identity[0] = 1; // small order
        for bad in [off_curve, identity] {
            assert!(matches!(
                ca.issue_org_certificate("acme", bad, T0, DAY_MS),
                Err(CaError::InvalidOrgKey(_))
            ));
        }
        for (nb, validity) in [
            (T0, 0),
            (T0, -1),
            (T0, 500), // collapses to nothing at second precision
            (-1, DAY_MS),
            (i64::MAX - 10, DAY_MS),
            (T0, 20 * 365 * DAY_MS), // outlives the ten-year CA
        ] {
            assert!(
                matches!(
                    ca.issue_org_certificate("acme", key, nb, validity),
                    Err(CaError::InvalidTime(_))
                ),
                "{nb} {validity}"
            );
        }
    }

    #[test]
    fn from_pem_refusals() {
        let (cert_pem, key_pem) = devnet_ca_files();
        let (other_cert, other_key) = devnet_ca_files();
        assert!(matches!(
            ConsortiumCa::from_pem(&cert_pem, &other_key),
            Err(CaError::BadKey(_))
        ));
        assert!(matches!(
            ConsortiumCa::from_pem(&cert_pem, "not a key"),
            Err(CaError::BadKey(_))
        ));
        assert!(matches!(
            ConsortiumCa::from_pem("garbage", &key_pem),
            Err(CaError::BadPem(_))
        ));
        assert!(matches!(
            ConsortiumCa::from_pem(&key_pem, &key_pem),
            Err(CaError::BadPem(_))
        ));
        assert!(ConsortiumCa::from_pem(&other_cert, &other_key).is_ok());

        // An end-entity certificate cannot act as the CA.
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["leaf.example".to_string()]).expect("p");
        params.is_ca = IsCa::ExplicitNoCa;
        let leaf = params.self_signed(&leaf_key).expect("leaf");
        assert!(matches!(
            ConsortiumCa::from_pem(&leaf.pem(), &leaf_key.serialize_pem()),
            Err(CaError::BadCaCertificate(_))
        ));
    }

    #[test]
    fn crl_lists_exactly_the_revoked_serials() {
        let ca = ConsortiumCa::generate("test CA").expect("CA");
        let a = ca
            .issue_org_certificate("org-a", org_key(4), T0, DAY_MS)
            .expect("a");
        let b = ca
            .issue_org_certificate("org-b", org_key(5), T0, DAY_MS)
            .expect("b");
        let c = ca
            .issue_org_certificate("org-c", org_key(6), T0, DAY_MS)
            .expect("c");
        let revoked = vec![
            RevokedEntry {
                serial_hex: a.serial_hex.clone(),
                revoked_at_ms: T0 + 1000,
                reason: RevocationReason::KeyCompromise,
            },
            RevokedEntry {
                serial_hex: b.serial_hex.to_uppercase(),
                revoked_at_ms: T0 + 2000,
                reason: RevocationReason::Unspecified,
            },
            RevokedEntry {
                serial_hex: c.serial_hex.clone(),
                revoked_at_ms: T0 + 3000,
                reason: RevocationReason::CessationOfOperation,
            },
        ];
        let this_update = T0 + 10_000;
        let pem = ca
            .crl_pem(&revoked, 7, this_update, this_update + 7 * DAY_MS)
            .expect("CRL");
        let der = pem_der(&pem);
        let (_, crl) = x509_parser::parse_x509_crl(&der).expect("CRL parses");

        let ca_cert_der = ca.cert_der().to_vec();
        let ca_cert = parse(&ca_cert_der);
        crl.verify_signature(ca_cert.public_key())
            .expect("signed by the CA");
        assert_eq!(crl.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()),
            Some("7".to_string())
        );
        assert_eq!(crl.last_update().timestamp() * 1000, T0 + 10_000 - 250);
        assert_eq!(
            crl.next_update().map(|t| t.timestamp() * 1000),
            Some(T0 - 250 + 10_000 + 7 * DAY_MS)
        );

        let listed: Vec<(String, Option<u8>, i64)> = crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    hex::encode(r.raw_serial()),
                    r.reason_code().map(|(_, code)| code.0),
                    r.revocation_date.timestamp() * 1000,
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![
                (a.serial_hex.clone(), Some(1), T0 - 250 + 1000),
                (b.serial_hex.clone(), None, T0 - 250 + 2000),
                (c.serial_hex.clone(), Some(5), T0 - 250 + 3000),
            ]
        );

        // An empty CRL is valid too.
        let empty = ca
            .crl_pem(&[], 8, this_update, this_update + DAY_MS)
            .expect("empty CRL");
        let der = pem_der(&empty);
        let (_, crl) = x509_parser::parse_x509_crl(&der).expect("parses");
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
    }

    #[test]
    fn crl_refusals() {
        let ca = ConsortiumCa::generate("test CA").expect("CA");
        let entry = |serial: &str, at: i64| RevokedEntry {
            serial_hex: serial.to_string(),
            revoked_at_ms: at,
            reason: RevocationReason::Superseded,
        };
        let crl = |entries: &[RevokedEntry]| ca.crl_pem(entries, 1, T0, T0 + DAY_MS);

        assert!(crl(&[entry("01ab", T0)]).is_ok());
        for bad in [
            "",
            "0",
            "00",
            "0000",
            "xyz1",
            "abc",
            &"7f".repeat(21),
            &"80".repeat(20),
        ] {
            assert!(
                matches!(crl(&[entry(bad, T0)]), Err(CaError::InvalidSerial { .. })),
                "{bad:?}"
            );
        }
        assert!(crl(&[entry(&"7f".repeat(20), T0)]).is_ok());
        // The same serial spelled two ways is still a duplicate.
        assert!(matches!(
            crl(&[entry("01ab", T0), entry("0001AB", T0)]),
            Err(CaError::InvalidSerial { .. })
        ));
        assert!(matches!(
            crl(&[entry("01ab", T0 + 1000)]),
            Err(CaError::InvalidTime(_))
        ));
        assert!(matches!(
            ca.crl_pem(&[], 1, T0, T0 + 500),
            Err(CaError::InvalidTime(_))
        ));
        assert!(matches!(
            ca.crl_pem(&[], 1, T0, T0 - DAY_MS),
            Err(CaError::InvalidTime(_))
        ));
    }

    #[test]
    fn renewal_policy_boundaries() {
        let p = RenewalPolicy::default();
        assert_eq!(p.validity_ms(), 90 * DAY_MS);
        assert_eq!(p.renew_before_ms(), 30 * DAY_MS);
        assert_eq!(p.alert_before_ms(), 14 * DAY_MS);

        let not_after = T0 + p.validity_ms();
        let at_left = |left: i64| p.state(not_after, not_after - left);
        assert_eq!(at_left(90 * DAY_MS), CertState::Fresh);
        assert_eq!(at_left(30 * DAY_MS + 1), CertState::Fresh);
        assert_eq!(at_left(30 * DAY_MS), CertState::RenewalDue);
        assert_eq!(at_left(14 * DAY_MS + 1), CertState::RenewalDue);
        assert_eq!(at_left(14 * DAY_MS), CertState::Alert);
        assert_eq!(at_left(1), CertState::Alert);
        assert_eq!(at_left(0), CertState::Expired);
        assert_eq!(at_left(-DAY_MS), CertState::Expired);
        assert_eq!(p.state(i64::MAX, i64::MIN), CertState::Fresh);
        assert_eq!(p.state(i64::MIN, i64::MAX), CertState::Expired);

        assert!(RenewalPolicy::new(90 * DAY_MS, 30 * DAY_MS, 30 * DAY_MS).is_ok());
        for (v, r, a) in [
            (90 * DAY_MS, 30 * DAY_MS, 0),
            (90 * DAY_MS, 14 * DAY_MS, 30 * DAY_MS),
            (30 * DAY_MS, 30 * DAY_MS, 14 * DAY_MS),
        ] {
            assert!(matches!(
                RenewalPolicy::new(v, r, a),
                Err(CaError::InvalidPolicy(_))
            ));
        }
    }
}
