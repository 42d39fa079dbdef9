//! The consortium CA's Prometheus metrics: counters of this process's issuances and renewals,
//! and gauges set by each pass of the certificate manager.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The CA's metrics. Counters count since the process started (Prometheus handles resets);
/// gauges hold what the last certificate-manager pass saw.
#[derive(Debug, Default)]
pub(crate) struct CaMetrics {
    /// Certificates issued, renewals included.
    pub issued: AtomicU64,
    /// Certificates issued to renew one that was due.
    pub renewed: AtomicU64,
    /// Current certificates in the alert window: renewal was due and did not happen.
    pub expiring: AtomicU64,
    /// Current certificates of active members that are past `not_after`.
    pub expired: AtomicU64,
    /// Entries in the beacon's revocation list (and so in the CRL).
    pub crl_entries: AtomicU64,
}

impl CaMetrics {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        metric(
            "trellis_ca_certificates_expiring",
            "gauge",
            "Current org certificates in the alert window that were not renewed.",
            &self.expiring,
        );
        metric(
            "trellis_ca_certificates_expired",
            "gauge",
            "Current org certificates of active members that have expired.",
            &self.expired,
        );
        metric(
            "trellis_ca_certificates_issued_total",
            "counter",
            "Org certificates issued by this process, renewals included.",
            &self.issued,
        );
        metric(
            "trellis_ca_certificates_renewed_total",
            "counter",
            "Org certificates issued by this process to renew one that was due.",
            &self.renewed,
        );
        metric(
            "trellis_ca_crl_entries",
            "gauge",
            "Revoked certificate serials on the beacon, as published in the CRL.",
            &self.crl_entries,
        );
        out
    }
}
