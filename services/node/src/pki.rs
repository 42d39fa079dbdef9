//! The consortium PKI: one self-signed consortium CA issues a TLS certificate to every
//! validator node, and a CRL lists the serials it has withdrawn.
//!
//! A node certificate binds the TLS key (ECDSA P-256) to the validator's ed25519 consensus
//! key through a URI subject-alternative name `trellis:validator:<64 lowercase hex>`, so
//! the network layer can tell *which validator* sits behind a TLS connection without a
//! second handshake. `trellis devnet init` uses this module; operators of a real consortium
//! may use any CA that issues the same profile.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use trellis_consensus::PublicKey;
use x509_parser::extensions::GeneralName;

/// Prefix of the URI SAN that carries a validator's consensus key.
pub const VALIDATOR_URI_PREFIX: &str = "trellis:validator:";

/// How long an issued CRL claims to be current. Expired CRLs are not enforced by the
/// verifier (rustls' default); the field is informational for other tools.
const CRL_NEXT_UPDATE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Certificates start one hour in the past so small clock skew between members does not
/// make a fresh certificate "not yet valid".
const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors of certificate and CRL issuance.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid host name {0:?} for a certificate")]
    InvalidHost(String),
    #[error("serial numbers must be positive")]
    ZeroSerial,
    #[error("invalid validity period: {0}")]
    Validity(&'static str),
}

/// The consortium CA's certificate and private key, both PEM.
#[derive(Clone)]
pub struct CaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A node's TLS certificate and private key, both PEM.
#[derive(Clone)]
pub struct CertMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

// Why manual Debug: private keys must never reach logs.
impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaMaterial")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertMaterial")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The consortium certificate authority.
pub struct ConsortiumCa;

impl ConsortiumCa {
    /// A new self-signed CA named `name`, valid for `validity_days` from now. It may only
    /// sign end-entity certificates (path length 0) and CRLs.
    pub fn generate(name: &str, validity_days: u32) -> Result<CaMaterial, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        set_validity(&mut params, now - BACKDATE, now + days(validity_days))?;
        let cert = params.self_signed(&key)?;
        Ok(CaMaterial {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The URI SAN naming `validator`.
pub fn validator_uri(validator: &PublicKey) -> String {
    format!("{VALIDATOR_URI_PREFIX}{}", hex::encode(validator.0))
}

/// Issues a node certificate valid for `validity_days` from now (see
/// [`issue_node_cert_with_validity`]).
pub fn issue_node_cert(
    ca: &CaMaterial,
    validator: &PublicKey,
    serial: u64,
    hosts: &[String],
    validity_days: u32,
) -> Result<CertMaterial, PkiError> {
    let now = SystemTime::now();
    issue_node_cert_with_validity(
        ca,
        validator,
        serial,
        hosts,
        now - BACKDATE,
        now + days(validity_days),
    )
}

/// Issues an end-entity certificate for `validator` signed by `ca`: SANs for every DNS
/// name or IP in `hosts` plus the validator URI, EKU serverAuth + clientAuth (every node
/// both dials and accepts), a fresh P-256 key, and the given `serial` (which a CRL names to
/// revoke it).
pub fn issue_node_cert_with_validity(
    ca: &CaMaterial,
    validator: &PublicKey,
    serial: u64,
    hosts: &[String],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertMaterial, PkiError> {
    if serial == 0 {
        return Err(PkiError::ZeroSerial);
    }
    let issuer = ca_issuer(ca)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let short = hex::encode(&validator.0[..4]);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("trellis validator {short}"));
    for host in hosts {
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
        .push(SanType::URI(validator_uri(validator).try_into()?));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(SerialNumber::from(serial));
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, not_before, not_after)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A CRL signed by `ca` revoking `revoked_serials`, as PEM. `crl_number` must grow with
/// every CRL the CA issues.
pub fn issue_crl(
    ca: &CaMaterial,
    crl_number: u64,
    revoked_serials: &[u64],
) -> Result<String, PkiError> {
    let issuer = ca_issuer(ca)?;
    let now = SystemTime::now();
    let this_update = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(now)?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update: this_update + CRL_NEXT_UPDATE,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs: revoked_serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: this_update,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

/// The validator key a certificate (DER) names in its `trellis:validator:` URI SAN, if it
/// names exactly one in canonical form. Does not verify the certificate: call it only on
/// a chain the TLS verifier accepted.
pub fn validator_identity(cert_der: &[u8]) -> Option<PublicKey> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(hex_key) = uri.strip_prefix(VALIDATOR_URI_PREFIX) else {
            continue;
        };
        // Why strict: one canonical spelling per key, so two certificates can never name
        // the same validator in different ways.
        if hex_key.len() != 64
            || !hex_key
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut key).ok()?;
        if found.is_some() {
            return None; // two identities in one certificate: ambiguous, trust neither
        }
        found = Some(PublicKey(key));
    }
    found
}

fn ca_issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 3600)
}

fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(), PkiError> {
    if not_after <= not_before {
        return Err(PkiError::Validity(
            "not_after must be later than not_before",
        ));
    }
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before)?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after)?;
    Ok(())
}

/// Time since the Unix epoch. Why: rcgen takes `time::OffsetDateTime`, which this crate
/// cannot name without depending on `time`; `rcgen::date_time_ymd(1970, 1, 1) + since_epoch(t)`
/// builds one without naming it.
fn since_epoch(t: SystemTime) -> Result<Duration, PkiError> {
    t.duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Validity("time before 1970"))
}
