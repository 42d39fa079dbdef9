//! The certificate manager: one pass ([`MembershipService::reconcile_certificates`]) makes the
//! CA's records agree with the beacon.
//!
//! 1. Read the member list and the revocation list; mirror the revocations (certificates on
//!    the list become `revoked`).
//! 2. Every active member gets a current certificate for its org key: issued when it has none
//!    (or its current one certifies another key), renewed — a new one issued, the old one
//!    `superseded` — once the renewal policy says `RenewalDue` or worse.
//! 3. Every removed member's certificates that are neither revoked nor expired are revoked on
//!    the beacon: a `RevokeCertificate` (reason 5, cessation of operation) signed by the CA
//!    operator key; so are an active org's certificates of a key it no longer holds (reason
//!    4, superseded — an org re-admitted with a new key). Expired certificates are left out:
//!    every verifier refuses them already, and so are serials with a submission in flight
//!    (pending or committed, the operator's own through `POST /v1/ca/revocations` included;
//!    checked again under the nonce lock, so the route and the manager never both sign one).
//!    Each signed transaction is stored before it is submitted; a later pass (or a restarted
//!    process) looks it up by hash and resubmits the very same bytes when the node does not
//!    know it, so nothing is signed twice. Nonces are `max(node's next nonce, last used + 1)`,
//!    where a nonce is used by a pending or committed submission and by a rejected one the
//!    beacon refused past its nonce check (it consumes the nonce of a refused action too).
//!    `already-revoked` counts as done. The node executes an account's transactions in nonce
//!    order only, so a pending submission above the node's next nonce with none of ours in
//!    between (the one below was dropped, or another process held the nonce and its
//!    transaction vanished) would wait forever: it is signed again at the node's next nonce
//!    and the stranded row marked `replaced`.
//! 4. Re-read the revocation list when something was decided, and rebuild the CRL when the
//!    list changed (or half its validity has passed): recorded in `ca_crl_state`, served by
//!    `GET /v1/ca/crl`, and written to the CRL file (also when the file is missing).
//! 5. Set the gauges.
//!
//! Passes never overlap within a process. Running several managers on one database is safe
//! for certificates (one current certificate per org is a database constraint) but they
//! would race for the operator key's nonces: run one.

use crate::ca::CertState;
use crate::chain::{self, Fate, RevocationListView};
use crate::crl;
use crate::store::{self, CertRow, CrlState};
use crate::{CertificateEvent, MembershipService, ReconcileReport};
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use trellis_servicekit::{NodeError, now_ms};
use trellis_types::{BeaconAction, Transaction};

/// RFC 5280 `cessationOfOperation`: the org left the consortium.
const CESSATION_OF_OPERATION: u32 = 5;
/// RFC 5280 `superseded`: the org now holds another key.
const SUPERSEDED: u32 = 4;

/// Why signing or submitting a revocation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RevokeError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the CA operator key {0} is not an account on the beacon")]
    UnknownOperator(String),
    #[error("the beacon rejected the revocation ({code}): {reason}")]
    Rejected { code: String, reason: String },
    /// Transaction hash of the pending submission revoking the same serial.
    #[error("a revocation of this serial is pending already (transaction {0})")]
    InFlight(String),
}

impl MembershipService {
    fn operator_hex(&self) -> String {
        hex::encode(self.inner.config.ca_operator.public_key().0)
    }

    /// Signs a revocation of `serial` with the next free nonce of the CA operator key, stores
    /// it, and submits it. Returns its hash. Refused with [`RevokeError::InFlight`] when a
    /// submission revoking the serial is pending already (checked under the nonce lock, so two
    /// callers never both sign one). A submission the node refuses is recorded as `dropped`
    /// (its nonce stays free); one that could not reach the node stays `pending` and is
    /// resubmitted by the next pass. When the node says the nonce is taken (another process
    /// signing with the same key has a transaction pending), the next nonces are tried, a few
    /// at most.
    pub(crate) async fn submit_revocation(
        &self,
        serial: &[u8],
        reason: u32,
    ) -> Result<String, RevokeError> {
        const NONCE_ATTEMPTS: u64 = 4;
        let inner = &self.inner;
        let signer_hex = self.operator_hex();
        let _nonces = inner.nonce_lock.lock().await;
        if let Some(hash) =
            store::pending_submission_for(&inner.db, &signer_hex, &hex::encode(serial)).await?
        {
            return Err(RevokeError::InFlight(hash));
        }
        let node_next = inner
            .node
            .next_nonce(&signer_hex)
            .await?
            .ok_or_else(|| RevokeError::UnknownOperator(signer_hex.clone()))?;
        let last = store::last_used_nonce(&inner.db, &signer_hex).await?;
        let first = node_next.max(last.map_or(0, |n| n + 1));
        let mut attempt = 0;
        loop {
            let nonce = first + attempt;
            match self.sign_and_submit(serial, reason, nonce).await {
                Err(RevokeError::Node(NodeError::Rejected { kind, .. }))
                    if kind == "nonce-used" && attempt + 1 < NONCE_ATTEMPTS =>
                {
                    attempt += 1;
                    tracing::debug!(nonce, "CA operator nonce taken; trying the next");
                }
                done => return done,
            }
        }
    }

    /// Signs a revocation of `serial` at `nonce`, stores it as pending and submits it; a
    /// submission the node refuses is recorded as `dropped`. The caller holds the nonce lock.
    async fn sign_and_submit(
        &self,
        serial: &[u8],
        reason: u32,
        nonce: u64,
    ) -> Result<String, RevokeError> {
        let inner = &self.inner;
        let tx = Transaction::sign(
            &inner.config.chain_id,
            &inner.config.ca_operator,
            nonce,
            BeaconAction::RevokeCertificate {
                serial: serial.to_vec(),
                reason,
            },
        );
        let hash = tx.hash().to_hex();
        store::insert_submission(
            &inner.db,
            &hash,
            &hex::encode(serial),
            reason,
            &self.operator_hex(),
            nonce,
            tx.encoded(),
            now_ms(),
        )
        .await?;
        match inner.node.submit(tx.encoded()).await {
            Ok(_) => Ok(hash),
            Err(NodeError::Rejected {
                status,
                kind,
                detail,
            }) => {
                store::decide_submission(&inner.db, &hash, "dropped", Some(&kind), now_ms())
                    .await?;
                Err(RevokeError::Node(NodeError::Rejected {
                    status,
                    kind,
                    detail,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records how the beacon decided a submission; `true` when the serial is now revoked.
    async fn record_fate(&self, hash: &str, fate: &Fate) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        match fate {
            Fate::Committed { .. } => {
                store::decide_submission(&self.inner.db, hash, "committed", None, now).await?;
                Ok(true)
            }
            Fate::Rejected { code, .. } => {
                store::decide_submission(&self.inner.db, hash, "rejected", Some(code), now).await?;
                Ok(code == "already-revoked")
            }
        }
    }

    /// Revokes `serial` on the beacon and waits for the block: `(tx hash, height)`.
    pub(crate) async fn revoke_and_wait(
        &self,
        serial: &[u8],
        reason: u32,
    ) -> Result<(String, u64), RevokeError> {
        let hash = self.submit_revocation(serial, reason).await?;
        let fate = chain::decide(&self.inner.node, &hash, self.inner.config.chain_wait).await?;
        self.record_fate(&hash, &fate).await?;
        match fate {
            Fate::Committed { height, .. } => Ok((hash, height)),
            Fate::Rejected { code, reason } => Err(RevokeError::Rejected { code, reason }),
        }
    }

    /// Settles submissions left pending by earlier passes, requests or processes: decided
    /// ones are recorded, ones the node does not know are resubmitted byte for byte, and ones
    /// stranded behind a nonce gap are signed again ([`Self::fill_nonce_gaps`]). Returns the
    /// hashes still undecided, with their serials.
    async fn settle_pending(&self) -> anyhow::Result<Vec<(String, String)>> {
        let inner = &self.inner;
        let _nonces = inner.nonce_lock.lock().await;
        let mut waiting = Vec::new();
        for s in store::pending_submissions(&inner.db, &self.operator_hex()).await? {
            match chain::tx_status(&inner.node, &s.tx_hash).await? {
                Some(st) if st.status == "committed" => {
                    let fate = Fate::Committed {
                        height: st.height.unwrap_or(0),
                        proposal_id: None,
                    };
                    self.record_fate(&s.tx_hash, &fate).await?;
                }
                Some(st) if st.status == "rejected" => {
                    let fate = Fate::Rejected {
                        code: st.reason_code.unwrap_or_default(),
                        reason: st.reason.unwrap_or_default(),
                    };
                    self.record_fate(&s.tx_hash, &fate).await?;
                }
                Some(_) => waiting.push(s),
                None => match inner.node.submit(&s.tx_bytes).await {
                    Ok(_) => waiting.push(s),
                    Err(NodeError::Rejected { kind, .. }) => {
                        tracing::warn!(tx = %s.tx_hash, %kind, "stored revocation refused on resubmission; its serial will be signed again");
                        store::decide_submission(
                            &inner.db,
                            &s.tx_hash,
                            "dropped",
                            Some(&kind),
                            now_ms(),
                        )
                        .await?;
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
        self.fill_nonce_gaps(&mut waiting).await?;
        Ok(waiting
            .into_iter()
            .map(|s| (s.tx_hash, s.serial_hex))
            .collect())
    }

    /// Re-signs pending submissions stranded behind a nonce gap. The node executes the
    /// operator key's transactions in nonce order from its next nonce, so a submission above
    /// that nonce with none of ours at the nonces below (the one there was dropped, or another
    /// process held the nonce and its transaction vanished) would never execute. Going up
    /// `waiting` (oldest nonce first), the lowest one past a gap is signed again at the first
    /// nonce of the gap (the node's next nonce, then each following one), as the identity
    /// outbox does, and its old row marked `replaced` (should its old bytes still execute,
    /// the beacon refuses them as `already-revoked`). When the node refuses the new signing
    /// (`nonce-used`: another process's transaction does hold that nonce, so nothing is
    /// stranded yet) the rest is left for the next pass. The caller holds the nonce lock.
    async fn fill_nonce_gaps(&self, waiting: &mut [store::Submission]) -> anyhow::Result<()> {
        let inner = &self.inner;
        let Some(next) = inner.node.next_nonce(&self.operator_hex()).await? else {
            // Not an account (any more): nothing of it executes; submissions say why.
            return Ok(());
        };
        let mut expected = next;
        for s in waiting.iter_mut() {
            if s.nonce < expected {
                // Behind the account already (the beacon refuses it soon), or a second
                // submission at a nonce another one covers.
                continue;
            }
            if s.nonce == expected {
                expected += 1;
                continue;
            }
            let serial = hex::decode(&s.serial_hex).context("stored serial is not hex")?;
            match self.sign_and_submit(&serial, s.reason, expected).await {
                Ok(hash) => {
                    store::decide_submission(
                        &inner.db,
                        &s.tx_hash,
                        "replaced",
                        Some("nonce-gap"),
                        now_ms(),
                    )
                    .await?;
                    tracing::info!(serial = %s.serial_hex, stranded = %s.tx_hash, old_nonce = s.nonce,
                        tx = %hash, nonce = expected, "revocation stranded behind a nonce gap; signed again");
                    s.tx_hash = hash;
                    s.nonce = expected;
                    expected += 1;
                }
                Err(RevokeError::Node(NodeError::Rejected { kind, .. })) => {
                    tracing::debug!(serial = %s.serial_hex, nonce = expected, %kind,
                        "cannot fill the operator key's nonce gap yet");
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Records the org certificates issued outside this service
    /// ([`crate::MembershipConfig::org_certificates`]). Refuses one that none of its issuing
    /// CAs issued: a certificate it cannot revoke must not look managed.
    pub(crate) async fn adopt_org_certificates(&self, now_ms: i64) -> anyhow::Result<()> {
        let config = &self.inner.config;
        for pem in &config.org_certificates {
            let info = std::iter::once(&config.ca)
                .chain(&config.previous_cas)
                .find_map(|ca| ca.read_org_certificate(pem).ok())
                .context("an org certificate to adopt was not issued by one of this service's issuing CAs")?;
            let adopted = store::adopt_certificate(
                &self.inner.db,
                &info.org,
                &hex::encode(info.public_key),
                &info.issued,
                now_ms,
            )
            .await?;
            if adopted {
                tracing::info!(org = %info.org, serial = %info.issued.serial_hex, "org certificate adopted");
            }
        }
        Ok(())
    }

    /// One pass of the certificate manager at `now_ms` (see the module documentation). The
    /// background task calls it every poll interval with the clock; tests drive `now_ms`.
    /// Fails only when the node or the database cannot be read; per-org problems (a
    /// certificate the CA refuses, a revocation the node refuses) are listed in
    /// [`ReconcileReport::failures`] (the manager task logs them when they change) and
    /// retried by the next pass.
    pub async fn reconcile_certificates(&self, now_ms: i64) -> anyhow::Result<ReconcileReport> {
        let inner = &self.inner;
        let _pass = inner.pass_lock.lock().await;
        let mut report = ReconcileReport::default();

        let members = chain::members(&inner.node)
            .await
            .context("reading the beacon's member list")?;
        report.height = members.height;
        let mut list = chain::revocations(&inner.node)
            .await
            .context("reading the beacon's revocation list")?;
        store::mirror_revocations(&inner.db, &list, now_ms)
            .await
            .context("mirroring the revocation list")?;

        // Issue and renew.
        let mut current: HashMap<String, CertRow> = store::active_certificates(&inner.db)
            .await?
            .into_iter()
            .map(|c| (c.org.clone(), c))
            .collect();
        let (mut expiring, mut expired) = (0u64, 0u64);
        for member in members.members.iter().filter(|m| m.is_active()) {
            let state = self
                .ensure_current(member, current.remove(&member.org), now_ms, &mut report)
                .await?;
            match state {
                Some(CertState::Alert) => expiring += 1,
                Some(CertState::Expired) => expired += 1,
                _ => {}
            }
        }

        // Revoke what removed members still hold, and certificates of keys orgs gave up.
        let mut waiting = self
            .settle_pending()
            .await
            .context("settling revocations")?;
        let revoked: HashSet<String> = list
            .revocations
            .iter()
            .map(|r| r.serial.to_ascii_lowercase())
            .collect();
        let in_flight = store::serials_in_flight(&inner.db, &self.operator_hex()).await?;
        'members: for member in &members.members {
            // A removed org loses every certificate (cessation of operation); an active org
            // those of a key it no longer holds (re-admitted with a new key: superseded).
            let (keep, reason) = if member.is_active() {
                (member.org_key().map(hex::encode), SUPERSEDED)
            } else {
                (None, CESSATION_OF_OPERATION)
            };
            if member.is_active() && keep.is_none() {
                continue;
            }
            for cert in store::live_unrevoked_certificates(&inner.db, &member.org, now_ms).await? {
                if keep.as_ref() == Some(&cert.public_key_hex)
                    || revoked.contains(&cert.serial_hex)
                    || in_flight.contains(&cert.serial_hex)
                {
                    continue;
                }
                let serial = hex::decode(&cert.serial_hex).context("stored serial is not hex")?;
                match self.submit_revocation(&serial, reason).await {
                    Ok(hash) => {
                        report.revocations_submitted.push(CertificateEvent {
                            org: member.org.clone(),
                            serial: cert.serial_hex.clone(),
                        });
                        waiting.push((hash, cert.serial_hex.clone()));
                    }
                    Err(RevokeError::InFlight(hash)) => {
                        // The operator revoked it through the API meanwhile.
                        tracing::debug!(serial = %cert.serial_hex, tx = %hash, "revocation already in flight");
                    }
                    Err(e @ (RevokeError::UnknownOperator(_) | RevokeError::Node(_))) => {
                        tracing::debug!(org = %member.org, serial = %cert.serial_hex, error = %e, "cannot revoke a certificate");
                        report
                            .failures
                            .push(format!("revoke {} of {}: {e}", cert.serial_hex, member.org));
                        // The operator key or the node is the problem: the next serial would
                        // fail the same way.
                        break 'members;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let decided = self.await_revocations(&waiting, &mut report).await?;
        if decided {
            list = chain::revocations(&inner.node)
                .await
                .context("re-reading the beacon's revocation list")?;
        }
        let first_seen = store::mirror_revocations(&inner.db, &list, now_ms).await?;

        // The CRL: served by the route and written to the file.
        report.crl_entries = list.revocations.len();
        (report.crl_built, report.crl_written) =
            self.refresh_crl(&list, &first_seen, now_ms).await?;

        let m = &inner.metrics;
        m.expiring.store(expiring, Ordering::Relaxed);
        m.expired.store(expired, Ordering::Relaxed);
        m.crl_entries
            .store(list.revocations.len() as u64, Ordering::Relaxed);
        report.expiring = expiring;
        report.expired = expired;
        Ok(report)
    }

    /// Makes sure an active member has a current certificate for its org key. Returns the
    /// state of its current certificate after the pass (`None`: it has none).
    async fn ensure_current(
        &self,
        member: &chain::MemberView,
        current: Option<CertRow>,
        now_ms: i64,
        report: &mut ReconcileReport,
    ) -> anyhow::Result<Option<CertState>> {
        let inner = &self.inner;
        let policy = inner.config.policy;
        let org = &member.org;
        let Some(key) = member.org_key() else {
            report
                .failures
                .push(format!("{org}: the beacon lists no usable org key"));
            return Ok(None);
        };
        let key_hex = hex::encode(key);
        let renewal = match &current {
            None => false,
            Some(c) if c.public_key_hex != key_hex => false,
            Some(c) if policy.state(c.not_after_ms, now_ms) == CertState::Fresh => {
                return Ok(Some(CertState::Fresh));
            }
            Some(_) => true,
        };
        let state_before = current
            .as_ref()
            .filter(|c| c.public_key_hex == key_hex)
            .map(|c| policy.state(c.not_after_ms, now_ms));
        let issued =
            match inner
                .config
                .ca
                .issue_org_certificate(org, key, now_ms, policy.validity_ms())
            {
                Ok(issued) => issued,
                Err(e) => {
                    tracing::debug!(%org, error = %e, "cannot issue an org certificate");
                    report.failures.push(format!("{org}: {e}"));
                    return Ok(state_before);
                }
            };
        let replaces = current.as_ref().map(|c| c.serial_hex.as_str());
        if !store::record_issued(&inner.db, org, &key_hex, &issued, now_ms, replaces).await? {
            // Another manager changed this org's certificate meanwhile; the next pass sees it.
            return Ok(state_before);
        }
        inner.metrics.issued.fetch_add(1, Ordering::Relaxed);
        let event = CertificateEvent {
            org: org.clone(),
            serial: issued.serial_hex.clone(),
        };
        if renewal {
            inner.metrics.renewed.fetch_add(1, Ordering::Relaxed);
            report.renewed.push(event);
        } else {
            report.issued.push(event);
        }
        if let Some(old) = current {
            report.superseded.push(CertificateEvent {
                org: org.clone(),
                serial: old.serial_hex,
            });
        }
        tracing::info!(%org, serial = %issued.serial_hex, renewal, "org certificate issued");
        Ok(Some(policy.state(issued.not_after_ms, now_ms)))
    }

    /// Waits (up to the chain wait in all) for the revocations in flight. Returns whether any
    /// was decided.
    async fn await_revocations(
        &self,
        waiting: &[(String, String)],
        report: &mut ReconcileReport,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + self.inner.config.chain_wait;
        let mut decided = false;
        for (hash, serial) in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            match chain::decide(&self.inner.node, hash, left).await {
                Ok(fate) => {
                    decided = true;
                    if self.record_fate(hash, &fate).await? {
                        report.revocations_confirmed.push(serial.clone());
                    } else if let Fate::Rejected { code, reason } = &fate {
                        tracing::debug!(%serial, %code, %reason, "beacon rejected a revocation; the next pass signs it again");
                        report
                            .failures
                            .push(format!("revoke {serial}: rejected ({code}): {reason}"));
                    }
                }
                Err(NodeError::Timeout { .. }) => {
                    // Still pending: the next pass settles it.
                }
                Err(e) => {
                    tracing::warn!(%serial, error = %e, "cannot learn a revocation's fate yet");
                }
            }
        }
        Ok(decided)
    }

    /// Rebuilds the CRL when the revocation list changed since the last one was built, half
    /// its validity has passed, or none was built yet, and records it (`ca_crl_state`, and the
    /// copy `GET /v1/ca/crl` serves). Writes the CRL file when the CRL was rebuilt, or the file
    /// is missing or was last written elsewhere. Returns whether it built and whether it wrote.
    async fn refresh_crl(
        &self,
        list: &RevocationListView,
        first_seen: &HashMap<String, i64>,
        now_ms: i64,
    ) -> anyhow::Result<(bool, bool)> {
        let inner = &self.inner;
        let fingerprint = crl::fingerprint(list);
        let last = store::crl_state(&inner.db).await?.filter(|s| {
            s.fingerprint == fingerprint && now_ms.saturating_sub(s.built_ms) < crl::CRL_REFRESH_MS
        });
        let built = last.is_none();
        let mut state = match last {
            Some(state) => state,
            None => CrlState {
                pem: crl::build(&inner.config, list, first_seen, now_ms)
                    .context("building the CRL")?,
                fingerprint,
                crl_number: list.height,
                entries: list.revocations.len(),
                built_ms: now_ms,
                path: None,
                written_ms: None,
            },
        };
        let mut written = false;
        if let Some(path) = inner.config.crl_path.clone() {
            let shown = path.display().to_string();
            let on_file = !built
                && state.path.as_deref() == Some(shown.as_str())
                && tokio::fs::try_exists(&path).await.unwrap_or(false);
            if !on_file {
                let pem = state.pem.clone();
                tokio::task::spawn_blocking(move || crl::write_atomically(&path, pem.as_bytes()))
                    .await
                    .context("CRL writer task")?
                    .with_context(|| format!("writing the CRL to {shown}"))?;
                tracing::info!(path = %shown, entries = state.entries, height = state.crl_number, "CRL written");
                state.path = Some(shown);
                state.written_ms = Some(now_ms);
                written = true;
            }
        }
        if built || written {
            store::set_crl_state(&inner.db, &state, true).await?;
        }
        if built {
            tracing::info!(
                entries = state.entries,
                height = state.crl_number,
                "CRL built"
            );
        }
        *inner.crl_cache.lock().await = Some(crl::CachedCrl::of(&state));
        Ok((built, written))
    }
}
