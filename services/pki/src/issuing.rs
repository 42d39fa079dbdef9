//! The online issuing CA, held by the membership service: it certifies an admitted member's
//! org key in an org certificate and signs the CRL of what it issued.
//!
//! An org certificate's subject public key *is* the org's ed25519 key (the one admitted on
//! chain), so whoever holds the certificate can check org signatures against it directly, and
//! the org signs its nodes' certificates with that key. CN = O = the org id, URI SAN
//! `trellis:org:<org>`; a CA of path length 0 (it issues node certificates, never another CA).

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use trellis_consensus::crypto::{self, CryptoError};
use trellis_consensus::{PublicKey, Signature};
use trellis_types::OrgId;

use crate::PkiError;
use crate::cacert::{CaCore, parse, pem_certificates, set_validity, to_pem};
use crate::crl::RevokedEntry;
use crate::identity::ORG_URI_PREFIX;
use crate::serial::Serial;
use crate::time::{end_of, validity};

/// DER of the SubjectPublicKeyInfo header for an ed25519 key (RFC 8410): SEQUENCE {
/// AlgorithmIdentifier { id-Ed25519 }, BIT STRING (0 unused bits) }; the 32 key bytes follow.
pub(crate) const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A certificate a CA issued, with what the membership service records about it.
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

impl IssuedCertificate {
    fn of(der: Vec<u8>, serial: &Serial, not_before_ms: i64, not_after_ms: i64) -> Self {
        IssuedCertificate {
            serial_hex: serial.to_hex(),
            pem: to_pem(&der),
            sha256_hex: hex::encode(Sha256::digest(&der)),
            der,
            not_before_ms,
            not_after_ms,
        }
    }
}

/// An org certificate read back from its PEM: who it names and what it certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgCertificateInfo {
    pub org: String,
    pub public_key: [u8; 32],
    pub issued: IssuedCertificate,
}

/// An issuing CA: its certificate, the root above it when known, and its signing key.
pub struct IssuingCa {
    core: CaCore,
}

// Why manual Debug: the signing key must never reach logs.
impl fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuingCa")
            .field("not_after_ms", &self.core.not_after_ms)
            .finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// Loads the issuing CA from its certificate — optionally followed by the root that
    /// signed it, as `trellis devnet init` writes it — and its PKCS#8 private key, both PEM.
    /// Refuses a certificate that is not a CA, cannot sign certificates and CRLs, or leaves
    /// no room for org certificates below it; a key that does not belong to it; and a
    /// following certificate that did not sign it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<IssuingCa, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let core = CaCore::load(cert_pem, key)?;
        if core.path_len == Some(0) {
            return Err(PkiError::BadCaCertificate(
                "path length 0 leaves no room for org certificates".into(),
            ));
        }
        Ok(IssuingCa { core })
    }

    /// This CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.core.cert_pem
    }

    /// This CA's certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.core.cert_der
    }

    /// The root above it, PEM, when it was loaded with its chain.
    pub fn root_pem(&self) -> Option<String> {
        self.core.above.last().map(|d| to_pem(d))
    }

    /// This CA's certificate followed by the root (when known): the file to load it from.
    pub fn chain_pem(&self) -> String {
        let mut blocks = vec![self.core.cert_pem.clone()];
        blocks.extend(self.core.above.iter().map(|d| to_pem(d)));
        crate::chain_pem(&blocks)
    }

    /// The private key, PKCS#8 PEM, for the membership service's key file.
    pub fn key_pem(&self) -> String {
        self.core.issuer.key().serialize_pem()
    }

    /// Issues the org certificate of `org` for its raw ed25519 `org_public_key`, valid from
    /// `not_before_ms` for `validity_ms` (both cut to whole seconds, as X.509 counts time).
    /// The certificate carries CN = O = `org`, the URI SAN `trellis:org:<org>`, basic
    /// constraints CA with path length 0, key usage digitalSignature + keyCertSign + cRLSign,
    /// EKU clientAuth + serverAuth (what the nodes under it are used for), and a random
    /// 16-byte positive serial. It may not outlive the CA certificate.
    pub fn issue_org_certificate(
        &self,
        org: &str,
        org_public_key: [u8; 32],
        not_before_ms: i64,
        validity_ms: i64,
    ) -> Result<IssuedCertificate, PkiError> {
        let org = OrgId::parse(org, "org").map_err(|e| PkiError::InvalidOrg(e.to_string()))?;
        check_org_key(org_public_key)?;
        let not_after_ms = end_of(not_before_ms, validity_ms)?;
        let (not_before, not_after) = validity(not_before_ms, not_after_ms)?;

        let mut spki_der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
        spki_der.extend_from_slice(&ED25519_SPKI_PREFIX);
        spki_der.extend_from_slice(&org_public_key);
        let spki = SubjectPublicKeyInfo::from_der(&spki_der)?;

        let serial = Serial::random()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, org.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
        params.subject_alt_names = vec![SanType::URI(format!("{ORG_URI_PREFIX}{org}").try_into()?)];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.serial_number = Some(serial.to_rcgen());
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, not_before, not_after);

        let cert = self.core.sign(params, not_after, &spki)?;
        Ok(IssuedCertificate::of(
            cert.der().to_vec(),
            &serial,
            not_before,
            not_after,
        ))
    }

    /// Reads an org certificate this CA issued (its first PEM block): refuses one it did not
    /// sign or that does not have the org profile.
    pub fn read_org_certificate(&self, pem: &str) -> Result<OrgCertificateInfo, PkiError> {
        let ders = pem_certificates(pem)?;
        let der = ders[0].clone();
        let cert = parse(&der)?;
        let own = parse(&self.core.cert_der)?;
        if cert.issuer().as_raw() != own.subject().as_raw()
            || cert.verify_signature(Some(own.public_key())).is_err()
        {
            return Err(PkiError::BadCertificate(
                "not an org certificate of this issuing CA".into(),
            ));
        }
        if crate::cacert::ca_path_len(&cert)? != Some(Some(0)) {
            return Err(PkiError::BadCertificate(
                "an org certificate is a CA of path length 0".into(),
            ));
        }
        let org = crate::identity::org_identity(&der)
            .ok_or_else(|| PkiError::BadCertificate("names no org".into()))?;
        let raw = cert.public_key().raw;
        if raw.len() != 44 || raw[..12] != ED25519_SPKI_PREFIX {
            return Err(PkiError::BadCertificate(
                "an org certificate certifies an ed25519 key".into(),
            ));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&raw[12..]);
        let serial = Serial::from_der_bytes(cert.raw_serial())?;
        let not_before_ms = cert.validity().not_before.timestamp().saturating_mul(1000);
        let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
        Ok(OrgCertificateInfo {
            org,
            public_key,
            issued: IssuedCertificate::of(der, &serial, not_before_ms, not_after_ms),
        })
    }

    /// This CA's CRL listing `revoked`, as PEM. `crl_number` must grow with every CRL the CA
    /// issues; times are cut to whole seconds. Refuses duplicate serials and revocations
    /// dated after `this_update_ms`.
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

    /// The path length its certificate states (`None`: unconstrained).
    pub fn path_len(&self) -> Option<u32> {
        self.core.path_len
    }
}

/// Refuses org keys that are not ed25519 points or have small order. trellis-consensus has
/// no "is this a point" check, so `crypto::verify` is probed with an all-zero signature: a
/// key that does not decompress fails with `BadKey`; the zero signature (R of order 4,
/// s = 0) verifies under the cofactored ZIP-215 equation exactly when the key has small
/// order, and a small-order key would let anyone forge the org's signatures.
pub(crate) fn check_org_key(key: [u8; 32]) -> Result<(), PkiError> {
    let probe = crypto::verify(
        &PublicKey(key),
        &Signature([0u8; 64]),
        b"trellis/membership/org-key-probe",
    );
    match probe {
        Err(CryptoError::BadSignature) => Ok(()),
        Err(CryptoError::BadKey) => Err(PkiError::InvalidOrgKey("not an ed25519 curve point")),
        Ok(()) => Err(PkiError::InvalidOrgKey("small-order ed25519 point")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::RevocationReason;
    use crate::root::RootCa;
    use crate::time::DAY_MS;
    use std::collections::HashSet;
    use trellis_consensus::Signer;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    /// 2025-01-01T00:00:00.250Z: deliberately not on a whole second.
    const T0: i64 = 1_735_689_600_250;
    /// 2024-01-01 and 2034-01-01.
    const Y2024: i64 = 1_704_067_200_000;
    const Y2034: i64 = 2_019_686_400_000;

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

    /// Issuing CA files made the way `trellis devnet init` makes them: chain (issuing CA +
    /// root) and key, valid 2024 to 2034.
    fn devnet_ca_files() -> (String, String) {
        let root = RootCa::generate("trellis devnet root CA", Y2024, Y2034).expect("root");
        let ca = root
            .issue_issuing_ca("trellis devnet issuing CA 1", Y2024, Y2034)
            .expect("issuing CA");
        (ca.chain_pem(), ca.key_pem())
    }

    fn test_ca() -> IssuingCa {
        let (cert, key) = devnet_ca_files();
        IssuingCa::from_pem(&cert, &key).expect("CA loads")
    }

    #[test]
    fn issued_certificate_has_the_org_profile() {
        let (cert_pem, key_pem) = devnet_ca_files();
        let ca = IssuingCa::from_pem(&cert_pem, &key_pem).expect("CA loads");
        let key = org_key(1);
        let validity = 90 * DAY_MS;
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
        let other = test_ca();
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

        // Extensions: an org certificate is a CA that may issue end entities only (its
        // nodes' certificates), and is used for TLS client and server authentication.
        let bc = cert.basic_constraints().expect("ok").expect("present");
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        assert!(cert.is_ca());
        let ku = cert.key_usage().expect("ok").expect("present");
        assert!(ku.value.digital_signature());
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        let eku = cert.extended_key_usage().expect("ok").expect("present");
        assert!(eku.value.client_auth && eku.value.server_auth);
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);

        // Serial: 16 bytes, positive, as reported.
        assert_eq!(cert.raw_serial().len(), 16);
        assert!(cert.raw_serial()[0] & 0x80 == 0);
        assert_eq!(hex::encode(cert.raw_serial()), issued.serial_hex);

        // Read back as this CA's org certificate.
        let info = ca.read_org_certificate(&issued.pem).expect("reads back");
        assert_eq!(info.org, "acme-bank");
        assert_eq!(info.public_key, key);
        assert_eq!(info.issued, issued);
        assert!(other.read_org_certificate(&issued.pem).is_err());
    }

    #[test]
    fn serials_differ_between_issues() {
        let ca = test_ca();
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
        let ca = test_ca();
        let key = org_key(3);
        for org in ["", "acme bank", "ac/me", "銀行"] {
            assert!(matches!(
                ca.issue_org_certificate(org, key, T0, DAY_MS),
                Err(PkiError::InvalidOrg(_))
            ));
        }
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2; // y = 2 is not on the curve
        let mut identity = [0u8; 32];
        identity[0] = 1; // small order
        for bad in [off_curve, identity] {
            assert!(matches!(
                ca.issue_org_certificate("acme", bad, T0, DAY_MS),
                Err(PkiError::InvalidOrgKey(_))
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
                    Err(PkiError::InvalidTime(_))
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
            IssuingCa::from_pem(&cert_pem, &other_key),
            Err(PkiError::BadKey(_))
        ));
        assert!(matches!(
            IssuingCa::from_pem(&cert_pem, "not a key"),
            Err(PkiError::BadKey(_))
        ));
        assert!(matches!(
            IssuingCa::from_pem("garbage", &key_pem),
            Err(PkiError::BadPem(_))
        ));
        assert!(matches!(
            IssuingCa::from_pem(&key_pem, &key_pem),
            Err(PkiError::BadPem(_))
        ));
        assert!(IssuingCa::from_pem(&other_cert, &other_key).is_ok());

        // The root that follows must be the one that signed it.
        let own = pem_certificates(&cert_pem).expect("chain");
        let foreign = pem_certificates(&other_cert).expect("chain");
        let mixed = crate::chain_pem(&[to_pem(&own[0]), to_pem(&foreign[1])]);
        assert!(matches!(
            IssuingCa::from_pem(&mixed, &key_pem),
            Err(PkiError::BadCaCertificate(_))
        ));
        // Alone (without its root) it loads too.
        assert!(IssuingCa::from_pem(&to_pem(&own[0]), &key_pem).is_ok());

        // An end-entity certificate cannot act as the CA.
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["leaf.example".to_string()]).expect("p");
        params.is_ca = IsCa::ExplicitNoCa;
        let leaf = params.self_signed(&leaf_key).expect("leaf");
        assert!(matches!(
            IssuingCa::from_pem(&leaf.pem(), &leaf_key.serialize_pem()),
            Err(PkiError::BadCaCertificate(_))
        ));
        // Nor can a CA of path length 0 (it could not issue org certificates that issue).
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let flat = params.self_signed(&leaf_key).expect("flat CA");
        assert!(matches!(
            IssuingCa::from_pem(&flat.pem(), &leaf_key.serialize_pem()),
            Err(PkiError::BadCaCertificate(_))
        ));
    }

    #[test]
    fn crl_lists_exactly_the_revoked_serials() {
        let ca = test_ca();
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
        let ca = test_ca();
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
                matches!(crl(&[entry(bad, T0)]), Err(PkiError::InvalidSerial { .. })),
                "{bad:?}"
            );
        }
        assert!(crl(&[entry(&"7f".repeat(20), T0)]).is_ok());
        // The same serial spelled two ways is still a duplicate.
        assert!(matches!(
            crl(&[entry("01ab", T0), entry("0001AB", T0)]),
            Err(PkiError::InvalidSerial { .. })
        ));
        assert!(matches!(
            crl(&[entry("01ab", T0 + 1000)]),
            Err(PkiError::InvalidTime(_))
        ));
        assert!(matches!(
            ca.crl_pem(&[], 1, T0, T0 + 500),
            Err(PkiError::InvalidTime(_))
        ));
        assert!(matches!(
            ca.crl_pem(&[], 1, T0, T0 - DAY_MS),
            Err(PkiError::InvalidTime(_))
        ));
    }
}
