//! The CRL built from the beacon's revocation list, the copy `GET /v1/ca/crl` serves, and the
//! CRL file nodes watch.
//!
//! webpki takes a certificate's status only from a CRL of its own issuer, so "the CRL" is one
//! CRL per issuer this service signs for, in one PEM file: the current issuing CA (org
//! certificates; first, so a reader that takes one CRL takes it), the previous issuing CAs
//! still in service after a rotation, and the orgs that delegated their node CRL. Each lists
//! the whole revocation list: serials are unique across the consortium, and a serial its
//! signer never issued is simply never matched.
//!
//! The beacon records a revocation's height, not its time; a CRL entry is dated when this
//! service first saw it on the beacon (the `ca_revocations` mirror), never later than the
//! CRL's own `thisUpdate`. The CRL number is the beacon height the list was read at, which
//! only grows.
//!
//! The certificate manager builds the CRL when the beacon's list changes (or half its validity
//! has passed) and records it in `ca_crl_state`; the public route serves that copy
//! ([`CachedCrl`], re-read from the table at most every [`CRL_RECHECK`] so a CRL built by
//! another process's manager is served too) and builds one itself only while none was ever
//! recorded.

use crate::MembershipConfig;
use crate::ca::{PkiError, RevocationReason, RevokedEntry};
use crate::chain::RevocationListView;
use crate::store::CrlState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A CRL's validity: nodes should fetch a new one within a day.
pub(crate) const CRL_VALIDITY_MS: i64 = 24 * 3600 * 1000;
/// The CRL file is rewritten at least this often even when nothing changed, so the copy nodes
/// hold never passes its `nextUpdate`.
pub(crate) const CRL_REFRESH_MS: i64 = CRL_VALIDITY_MS / 2;

/// How long the route serves its in-memory copy of the CRL before looking at `ca_crl_state`
/// again (one read by primary key, however many requests arrive).
pub(crate) const CRL_RECHECK: Duration = Duration::from_secs(5);

/// The CRL last built, as the route serves it.
#[derive(Clone, Debug)]
pub(crate) struct CachedCrl {
    pub pem: Arc<str>,
    /// When it was last read from (or written to) `ca_crl_state`.
    pub checked: Instant,
}

impl CachedCrl {
    pub(crate) fn of(state: &CrlState) -> CachedCrl {
        CachedCrl {
            pem: Arc::from(state.pem.as_str()),
            checked: Instant::now(),
        }
    }

    /// Whether it may be served without looking at the table again.
    pub(crate) fn is_recent(&self) -> bool {
        self.checked.elapsed() < CRL_RECHECK
    }
}

/// The RFC 5280 CRLReason code of a reason.
pub(crate) fn reason_code(reason: RevocationReason) -> u32 {
    reason.code()
}

/// The reason a beacon code stands for in a CRL. `removeFromCRL` (8) means nothing in a full
/// CRL and `aACompromise` (10) does not apply to this CA: both are listed as unspecified.
pub(crate) fn reason_of(code: u32) -> RevocationReason {
    RevocationReason::of_code(code)
}

/// Whether a beacon serial fits an X.509 serial (the beacon allows 20 bytes with the top bit
/// set, which DER would pad to 21).
fn fits_x509(serial_hex: &str) -> bool {
    match hex::decode(serial_hex) {
        Ok(b) if !b.is_empty() => b.len() + usize::from(b[0] & 0x80 != 0) <= 20,
        _ => false,
    }
}

/// Names a revocation list's content: which serials, for which reasons.
pub(crate) fn fingerprint(list: &RevocationListView) -> String {
    let mut lines: Vec<String> = list
        .revocations
        .iter()
        .map(|r| format!("{}:{}\n", r.serial.to_ascii_lowercase(), r.reason))
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The CRL PEM for `list` — one CRL per issuer the service signs for (see the module
/// documentation) — this update `now_ms`, next update a day later. `first_seen` dates the
/// entries (serial → ms); an entry missing from it is dated `now_ms`.
pub(crate) fn build(
    config: &MembershipConfig,
    list: &RevocationListView,
    first_seen: &HashMap<String, i64>,
    now_ms: i64,
) -> Result<String, PkiError> {
    let mut entries = Vec::with_capacity(list.revocations.len());
    for r in &list.revocations {
        let serial = r.serial.to_ascii_lowercase();
        if !fits_x509(&serial) {
            tracing::warn!(%serial, "beacon revocation names a serial no X.509 certificate can have; left out of the CRL");
            continue;
        }
        let seen = first_seen.get(&serial).copied().unwrap_or(now_ms);
        entries.push(RevokedEntry {
            revoked_at_ms: seen.clamp(0, now_ms),
            serial_hex: serial,
            reason: reason_of(r.reason),
        });
    }
    let next = now_ms + CRL_VALIDITY_MS;
    let mut crls = vec![config.ca.crl_pem(&entries, list.height, now_ms, next)?];
    for ca in &config.previous_cas {
        crls.push(ca.crl_pem(&entries, list.height, now_ms, next)?);
    }
    for org in &config.delegated_orgs {
        crls.push(org.crl_pem(&entries, list.height, now_ms, next)?);
    }
    Ok(trellis_pki::chain_pem(&crls))
}

/// Replaces `path` with `contents` atomically: a reader sees the old file or the new one,
/// never a part. Written to a temporary file in the same directory, synced, renamed over.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the CRL path names no file"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // Persist the rename itself; not every platform can open a directory, hence best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
