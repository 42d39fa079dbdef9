//! The service's tables (migration `0003_membership.sql`): issued org certificates, the
//! mirror of the beacon's revocation list, the revocation transactions the CA operator signed,
//! and the CRL last built (and where it was written). Plain SQL over [`Db`], `$n`
//! placeholders, both backends.

use crate::ca::IssuedCertificate;
use crate::chain::RevocationListView;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::{HashMap, HashSet};
use trellis_servicekit::Db;

/// Certificate columns in the order [`CertRow::from_row`] reads them.
macro_rules! cert_columns {
    () => {
        "serial_hex, org, public_key_hex, pem, sha256_hex, not_before_ms, not_after_ms, \
         issued_ms, status, superseded_by, revoked_reason, revoked_height"
    };
}

/// One row of `ca_certificates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertRow {
    pub serial_hex: String,
    pub org: String,
    pub public_key_hex: String,
    pub pem: String,
    pub sha256_hex: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    pub issued_ms: i64,
    /// `active`, `superseded` or `revoked`.
    pub status: String,
    pub superseded_by: Option<String>,
    pub revoked_reason: Option<i64>,
    pub revoked_height: Option<i64>,
}

impl CertRow {
    fn from_row(row: &AnyRow) -> Result<CertRow, sqlx::Error> {
        Ok(CertRow {
            serial_hex: row.try_get(0)?,
            org: row.try_get(1)?,
            public_key_hex: row.try_get(2)?,
            pem: row.try_get(3)?,
            sha256_hex: row.try_get(4)?,
            not_before_ms: row.try_get(5)?,
            not_after_ms: row.try_get(6)?,
            issued_ms: row.try_get(7)?,
            status: row.try_get(8)?,
            superseded_by: row.try_get(9)?,
            revoked_reason: row.try_get(10)?,
            revoked_height: row.try_get(11)?,
        })
    }
}

fn rows(rows: Vec<AnyRow>) -> Result<Vec<CertRow>, sqlx::Error> {
    rows.iter().map(CertRow::from_row).collect()
}

/// Every org's current certificate.
pub(crate) async fn active_certificates(db: &Db) -> Result<Vec<CertRow>, sqlx::Error> {
    let found = sqlx::query(concat!(
        "SELECT ",
        cert_columns!(),
        " FROM ca_certificates WHERE status = 'active' ORDER BY org"
    ))
    .fetch_all(db.pool())
    .await?;
    rows(found)
}

/// Certificates, newest first, of one org or of all.
pub(crate) async fn certificates(
    db: &Db,
    org: Option<&str>,
    limit: i64,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let found = match org {
        Some(org) => {
            sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM ca_certificates WHERE org = $1 \
                  ORDER BY issued_ms DESC, serial_hex LIMIT $2"
            ))
            .bind(org)
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            sqlx::query(concat!(
                "SELECT ",
                cert_columns!(),
                " FROM ca_certificates ORDER BY issued_ms DESC, serial_hex LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
    };
    rows(found)
}

pub(crate) async fn certificate(db: &Db, serial_hex: &str) -> Result<Option<CertRow>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT ",
        cert_columns!(),
        " FROM ca_certificates WHERE serial_hex = $1"
    ))
    .bind(serial_hex)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(CertRow::from_row).transpose()
}

/// Certificates of `org` that still need revoking when it leaves: not revoked and not yet
/// expired at `now_ms` (an expired certificate is refused by every verifier already).
pub(crate) async fn live_unrevoked_certificates(
    db: &Db,
    org: &str,
    now_ms: i64,
) -> Result<Vec<CertRow>, sqlx::Error> {
    let found = sqlx::query(concat!(
        "SELECT ",
        cert_columns!(),
        " FROM ca_certificates WHERE org = $1 AND status <> 'revoked' AND not_after_ms > $2 \
          ORDER BY issued_ms, serial_hex"
    ))
    .bind(org)
    .bind(now_ms)
    .fetch_all(db.pool())
    .await?;
    rows(found)
}

/// Records `issued` as the current certificate of `org`, superseding `replaces` (which must
/// still be current). Returns false, changing nothing, when another manager got there first.
pub(crate) async fn record_issued(
    db: &Db,
    org: &str,
    public_key_hex: &str,
    issued: &IssuedCertificate,
    now_ms: i64,
    replaces: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    if let Some(old) = replaces {
        let done = sqlx::query(
            "UPDATE ca_certificates SET status = 'superseded', superseded_by = $1, \
             superseded_ms = $2 WHERE serial_hex = $3 AND status = 'active'",
        )
        .bind(&issued.serial_hex)
        .bind(now_ms)
        .bind(old)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO ca_certificates (serial_hex, org, public_key_hex, pem, sha256_hex, \
         not_before_ms, not_after_ms, issued_ms, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active')",
    )
    .bind(&issued.serial_hex)
    .bind(org)
    .bind(public_key_hex)
    .bind(&issued.pem)
    .bind(&issued.sha256_hex)
    .bind(issued.not_before_ms)
    .bind(issued.not_after_ms)
    .bind(now_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            tx.commit().await?;
            Ok(true)
        }
        // The one-active-per-org index: a concurrent manager issued for this org.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            tx.rollback().await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Records an org certificate issued outside this service (see
/// [`crate::MembershipConfig::org_certificates`]) unless its serial is known already: as the
/// org's current certificate when it has none, else as `superseded` (still revoked when the
/// member is removed). Returns whether it was recorded.
pub(crate) async fn adopt_certificate(
    db: &Db,
    org: &str,
    public_key_hex: &str,
    issued: &IssuedCertificate,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    for _ in 0..2 {
        let mut tx = db.begin_write().await?;
        let known = sqlx::query("SELECT COUNT(*) FROM ca_certificates WHERE serial_hex = $1")
            .bind(&issued.serial_hex)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
        if known > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let active = sqlx::query(
            "SELECT COUNT(*) FROM ca_certificates WHERE org = $1 AND status = 'active'",
        )
        .bind(org)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>(0)?;
        let status = if active > 0 { "superseded" } else { "active" };
        let inserted = sqlx::query(
            "INSERT INTO ca_certificates (serial_hex, org, public_key_hex, pem, sha256_hex, \
             not_before_ms, not_after_ms, issued_ms, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&issued.serial_hex)
        .bind(org)
        .bind(public_key_hex)
        .bind(&issued.pem)
        .bind(&issued.sha256_hex)
        .bind(issued.not_before_ms)
        .bind(issued.not_after_ms)
        .bind(now_ms)
        .bind(status)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                return Ok(true);
            }
            // A manager issued the org's current certificate meanwhile: look again.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => tx.rollback().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Mirrors the beacon's revocation list: records serials not seen before (dated `now_ms`) and
/// marks the certificates they name revoked. Returns when each listed serial was first seen.
pub(crate) async fn mirror_revocations(
    db: &Db,
    list: &RevocationListView,
    now_ms: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let known = sqlx::query("SELECT serial_hex, first_seen_ms FROM ca_revocations")
        .fetch_all(db.pool())
        .await?;
    let mut seen: HashMap<String, i64> = HashMap::with_capacity(known.len());
    for row in known {
        seen.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let fresh: Vec<_> = list
        .revocations
        .iter()
        .filter(|r| !seen.contains_key(&r.serial.to_ascii_lowercase()))
        .collect();
    if !fresh.is_empty() {
        let mut tx = db.begin_write().await?;
        for r in &fresh {
            let serial = r.serial.to_ascii_lowercase();
            let height = i64::try_from(r.height).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO ca_revocations (serial_hex, reason, height, revoker_hex, first_seen_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial_hex) DO NOTHING",
            )
            .bind(&serial)
            .bind(i64::from(r.reason))
            .bind(height)
            .bind(r.revoker.to_ascii_lowercase())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE ca_certificates SET status = 'revoked', revoked_reason = $1, \
                 revoked_height = $2 WHERE serial_hex = $3 AND status <> 'revoked'",
            )
            .bind(i64::from(r.reason))
            .bind(height)
            .bind(&serial)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // A concurrent writer may have dated a serial first; its date wins.
        let dated = sqlx::query("SELECT serial_hex, first_seen_ms FROM ca_revocations")
            .fetch_all(db.pool())
            .await?;
        for row in dated {
            seen.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(seen)
}

/// One row of `ca_revocation_submissions`.
#[derive(Clone, Debug)]
pub(crate) struct Submission {
    pub tx_hash: String,
    pub serial_hex: String,
    /// RFC 5280 reason code.
    pub reason: u32,
    pub nonce: u64,
    pub tx_bytes: Vec<u8>,
}

/// Records a signed revocation before it is submitted. The same bytes signed again (same
/// nonce, serial and reason after an earlier attempt was dropped) make the row pending again.
#[allow(clippy::too_many_arguments)] // one column each
pub(crate) async fn insert_submission(
    db: &Db,
    tx_hash: &str,
    serial_hex: &str,
    reason: u32,
    signer_hex: &str,
    nonce: u64,
    tx_bytes: &[u8],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ca_revocation_submissions (tx_hash, serial_hex, reason, signer_hex, nonce, \
         tx_bytes, state, submitted_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) \
         ON CONFLICT (tx_hash) DO UPDATE SET state = 'pending', reason_code = NULL, \
         decided_ms = NULL, submitted_ms = excluded.submitted_ms",
    )
    .bind(tx_hash)
    .bind(serial_hex)
    .bind(i64::from(reason))
    .bind(signer_hex)
    .bind(i64::try_from(nonce).unwrap_or(i64::MAX))
    .bind(tx_bytes)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records how a submission ended (`committed`, `rejected`, `dropped` or `replaced`).
pub(crate) async fn decide_submission(
    db: &Db,
    tx_hash: &str,
    state: &str,
    reason_code: Option<&str>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ca_revocation_submissions SET state = $1, reason_code = $2, decided_ms = $3 \
         WHERE tx_hash = $4",
    )
    .bind(state)
    .bind(reason_code)
    .bind(now_ms)
    .bind(tx_hash)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Submissions by `signer_hex` not decided yet, oldest nonce first.
pub(crate) async fn pending_submissions(
    db: &Db,
    signer_hex: &str,
) -> Result<Vec<Submission>, sqlx::Error> {
    let found = sqlx::query(
        "SELECT tx_hash, serial_hex, reason, nonce, tx_bytes FROM ca_revocation_submissions \
         WHERE signer_hex = $1 AND state = 'pending' ORDER BY nonce, tx_hash",
    )
    .bind(signer_hex)
    .fetch_all(db.pool())
    .await?;
    found
        .iter()
        .map(|row| {
            let reason: i64 = row.try_get(2)?;
            let nonce: i64 = row.try_get(3)?;
            let corrupt = |what: &str| sqlx::Error::Decode(format!("negative {what}").into());
            Ok(Submission {
                tx_hash: row.try_get(0)?,
                serial_hex: row.try_get(1)?,
                reason: u32::try_from(reason).map_err(|_| corrupt("reason"))?,
                nonce: u64::try_from(nonce).map_err(|_| corrupt("nonce"))?,
                tx_bytes: row.try_get(4)?,
            })
        })
        .collect()
}

/// The hash of a pending submission by `signer_hex` revoking `serial_hex`, if there is one.
/// (Another signer's — an operator key since replaced — is never settled by this service, so
/// it does not hold the serial up.)
pub(crate) async fn pending_submission_for(
    db: &Db,
    signer_hex: &str,
    serial_hex: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tx_hash FROM ca_revocation_submissions WHERE signer_hex = $1 \
         AND serial_hex = $2 AND state = 'pending' ORDER BY submitted_ms DESC, tx_hash LIMIT 1",
    )
    .bind(signer_hex)
    .bind(serial_hex)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// The highest nonce of `signer_hex` that a transaction may still hold or did take: pending
/// and committed submissions, and rejected ones refused past the beacon's nonce check (the
/// beacon consumes the nonce of a refused action; only a transaction refused for its chain,
/// signature, account or nonce leaves it unused). A dropped submission never reached the
/// chain; a replaced one was signed again at a lower nonce, and its own nonce is left to
/// whatever the node assigns it next (counting it would recreate the gap it was replaced for).
pub(crate) async fn last_used_nonce(db: &Db, signer_hex: &str) -> Result<Option<u64>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT MAX(nonce) FROM ca_revocation_submissions \
         WHERE signer_hex = $1 AND (state IN ('pending', 'committed') OR (state = 'rejected' \
         AND reason_code NOT IN ('', 'wrong-chain', 'bad-signature', 'unknown-account', \
         'bad-nonce')))",
    )
    .bind(signer_hex)
    .fetch_one(db.pool())
    .await?;
    let max: Option<i64> = row.try_get(0)?;
    Ok(max.and_then(|n| u64::try_from(n).ok()))
}

/// Serials with a revocation committed, or pending by `signer_hex` (no need to sign another;
/// as in [`pending_submission_for`], another signer's pending one is never settled).
pub(crate) async fn serials_in_flight(
    db: &Db,
    signer_hex: &str,
) -> Result<HashSet<String>, sqlx::Error> {
    let found = sqlx::query(
        "SELECT DISTINCT serial_hex FROM ca_revocation_submissions \
         WHERE state = 'committed' OR (state = 'pending' AND signer_hex = $1)",
    )
    .bind(signer_hex)
    .fetch_all(db.pool())
    .await?;
    found.iter().map(|r| r.try_get(0)).collect()
}

/// The CRL last built (`ca_crl_state`), and where it was last written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CrlState {
    /// The revocation list it holds ([`crate::crl::fingerprint`]).
    pub fingerprint: String,
    /// The beacon height of that list.
    pub crl_number: u64,
    pub entries: usize,
    pub pem: String,
    pub built_ms: i64,
    /// The CRL file last written with it, and when (`None` while none was).
    pub path: Option<String>,
    pub written_ms: Option<i64>,
}

pub(crate) async fn crl_state(db: &Db) -> Result<Option<CrlState>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT fingerprint, crl_number, entries, pem, built_ms, path, written_ms \
         FROM ca_crl_state WHERE id = 1",
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        let crl_number: i64 = r.try_get(1)?;
        let entries: i64 = r.try_get(2)?;
        Ok(CrlState {
            fingerprint: r.try_get(0)?,
            crl_number: u64::try_from(crl_number).unwrap_or(0),
            entries: usize::try_from(entries).unwrap_or(0),
            pem: r.try_get(3)?,
            built_ms: r.try_get(4)?,
            path: r.try_get(5)?,
            written_ms: r.try_get(6)?,
        })
    })
    .transpose()
}

/// Records `state` as the CRL last built. `replace: false` writes it only when no CRL was
/// recorded yet (the route's first build never overwrites the manager's). Returns whether it
/// was written.
pub(crate) async fn set_crl_state(
    db: &Db,
    state: &CrlState,
    replace: bool,
) -> Result<bool, sqlx::Error> {
    let sql = if replace {
        "INSERT INTO ca_crl_state (id, fingerprint, crl_number, entries, pem, built_ms, path, \
         written_ms) VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
         fingerprint = excluded.fingerprint, crl_number = excluded.crl_number, \
         entries = excluded.entries, pem = excluded.pem, built_ms = excluded.built_ms, \
         path = excluded.path, written_ms = excluded.written_ms"
    } else {
        "INSERT INTO ca_crl_state (id, fingerprint, crl_number, entries, pem, built_ms, path, \
         written_ms) VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
    };
    let done = sqlx::query(sql)
        .bind(&state.fingerprint)
        .bind(i64::try_from(state.crl_number).unwrap_or(i64::MAX))
        .bind(i64::try_from(state.entries).unwrap_or(i64::MAX))
        .bind(&state.pem)
        .bind(state.built_ms)
        .bind(state.path.as_deref())
        .bind(state.written_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}
