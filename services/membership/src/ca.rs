//! The consortium CA as the membership service holds it, and when it renews.
//!
//! The CA itself lives in [`trellis_pki`]: the service holds the online *issuing CA* (signed
//! by the offline root; `trellis devnet init` writes it as `ca/issuing-ca.pem`, the issuing
//! CA followed by the root, and `ca/issuing-ca-key.pem`), issues org certificates with it and
//! signs its CRL. After a rotation it keeps the previous issuing CAs to sign their CRLs until
//! what they issued has expired. An org certificate's subject public key *is* the org's
//! ed25519 key and the org issues its nodes' certificates under it; orgs that delegate it have
//! this service sign their node CRL too (the beacon's revocation list, like every CRL here).
//!
//! What stays here is the renewal policy: how long org certificates live and when they are
//! renewed and alerted on.

pub use trellis_pki::{
    IssuedCertificate, IssuingCa, OrgCa, PkiError, RevocationReason, RevokedEntry,
};

const DAY_MS: i64 = trellis_pki::DAY_MS;

/// A renewal policy that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid renewal policy: {0}")]
pub struct PolicyError(pub &'static str);

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
    ) -> Result<RenewalPolicy, PolicyError> {
        if alert_before_ms <= 0 {
            return Err(PolicyError("alert_before_ms must be positive"));
        }
        if alert_before_ms > renew_before_ms {
            return Err(PolicyError(
                "alert_before_ms must not exceed renew_before_ms",
            ));
        }
        if renew_before_ms >= validity_ms {
            return Err(PolicyError(
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

    /// 2025-01-01T00:00:00.250Z: deliberately not on a whole second.
    const T0: i64 = 1_735_689_600_250;

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
            assert!(matches!(RenewalPolicy::new(v, r, a), Err(PolicyError(_))));
        }
    }
}
