//! Certificate revocation lists: what an entry says, and signing one as any CA of the
//! hierarchy (root, issuing CA, org). Every CA builds its CRL from the same revoked serials
//! (the beacon's list); only the signer differs.

use std::collections::HashSet;

use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevokedCertParams};

use crate::PkiError;
use crate::serial::Serial;
use crate::time::{whole_seconds, x509_time};

/// Why a certificate was revoked (RFC 5280 §5.3.1). `RemoveFromCrl` and `AaCompromise` are
/// left out: these CAs issue full CRLs and no attribute certificates.
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
    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u32 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// The reason a code stands for. `removeFromCRL` (8) means nothing in a full CRL and
    /// `aACompromise` (10) does not apply here: both (and unknown codes) are unspecified.
    pub fn of_code(code: u32) -> RevocationReason {
        match code {
            1 => RevocationReason::KeyCompromise,
            2 => RevocationReason::CaCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            6 => RevocationReason::CertificateHold,
            9 => RevocationReason::PrivilegeWithdrawn,
            _ => RevocationReason::Unspecified,
        }
    }

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
    /// The serial in hex, either case (leading zero bytes ignored).
    pub serial_hex: String,
    pub revoked_at_ms: i64,
    pub reason: RevocationReason,
}

/// A CRL signed by `issuer` listing `revoked`, as PEM. `crl_number` must grow with every CRL
/// the CA issues; times are cut to whole seconds. Refuses duplicate serials (however spelled)
/// and revocations dated after `this_update_ms`.
pub(crate) fn sign(
    issuer: &Issuer<'_, KeyPair>,
    revoked: &[RevokedEntry],
    crl_number: u64,
    this_update_ms: i64,
    next_update_ms: i64,
) -> Result<String, PkiError> {
    let this_update = whole_seconds(this_update_ms)?;
    let next_update = whole_seconds(next_update_ms)?;
    if next_update <= this_update {
        return Err(PkiError::InvalidTime(
            "next_update must be at least one second after this_update",
        ));
    }
    let mut seen = HashSet::new();
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for entry in revoked {
        let serial = Serial::parse_hex(&entry.serial_hex)?;
        if !seen.insert(serial.clone()) {
            return Err(PkiError::InvalidSerial {
                serial: entry.serial_hex.clone(),
                reason: "listed twice",
            });
        }
        let revoked_at = whole_seconds(entry.revoked_at_ms)?;
        if revoked_at > this_update {
            return Err(PkiError::InvalidTime(
                "a revocation is dated after the CRL's this_update",
            ));
        }
        revoked_certs.push(RevokedCertParams {
            serial_number: serial.to_rcgen(),
            revocation_time: x509_time(revoked_at),
            reason_code: entry.reason.reason_code(),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: x509_time(this_update),
        next_update: x509_time(next_update),
        crl_number: rcgen::SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.pem()?)
}
