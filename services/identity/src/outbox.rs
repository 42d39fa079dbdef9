//! The chain outbox: transactions the service owes the beacon, kept in the database so a
//! restart loses nothing and repeats nothing.
//!
//! An approval queues two rows in the same database transaction that marks the application
//! `approved`: an `AttestIdentity` (subject = org key, the salted commitment, the level) and a
//! `Propose(AdmitMember)` (org = credit code, org key), both signed by the verifier account,
//! with nonces allocated from `identity_signer_nonces` (the larger of the node's next nonce
//! and the last allocated + 1).
//!
//! One worker at a time (a lease row in `identity_worker_lease`, renewed by a heartbeat)
//! carries the rows to the node strictly in order, one row in flight:
//!
//! 1. It reads the verifier's next nonce from the node. A row whose nonce is below it was
//!    either committed already (found by its hash: its outcome is recorded; this is the restart
//!    case) or lost its nonce to another transaction; a row above it would leave a gap that
//!    nothing fills. Both get the node's next nonce and are signed again.
//! 2. A row whose nonce is the next one is signed and submitted. Signing is deterministic
//!    (ed25519), so a resubmission after a restart is byte for byte the same transaction: the
//!    node ignores it as a duplicate, or it has committed already (step 1).
//! 3. It waits for the outcome. Committed: the application records the attestation hash
//!    (`attested`) or the proposal id (`proposed`). Rejected with `bad-nonce`: the nonce is
//!    re-allocated and the row signed again. Any other rejection (and a submission the node
//!    refuses for good) marks the application `chain_failed` with the code and cancels its
//!    remaining rows. Such a rejection still consumed the row's nonce on the beacon (only the
//!    signature and nonce checks leave it unused), while the cancelled rows' nonces stay
//!    unused: the next row is then ahead of the account and gets its next nonce (step 1).
//!
//! Because a row is only ever submitted with the account's next nonce, an older signing of it
//! can never execute later: its nonce is behind the account by then.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use trellis_servicekit::db::{Backend, Db, now_ms};
use trellis_servicekit::{NodeClient, NodeError, Problem};
use trellis_types::{BeaconAction, Digest, OrgId, ProposalKind, PublicKey, Signer};

use crate::chain::{self, TxState};

/// The lease row's name.
const LEASE: &str = "outbox";
/// A lease not renewed for this long is free for another process.
const LEASE_TTL_MS: i64 = 15_000;
/// How often the holder renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// How often an idle worker looks for work queued by another process.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Backoff after a failed pass (node unreachable, database error), doubling up to the max.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bound on one call to the node, so one hung call cannot outlast the lease.
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one submission is watched before the worker checks the nonce again (and
/// resubmits: a node that restarted may have lost its pool).
const WATCH: Duration = Duration::from_secs(5);
/// How often a submitted transaction's status is read.
const POLL: Duration = Duration::from_millis(150);
/// Rounds on one row in one pass before the worker backs off.
const MAX_ROUNDS: u32 = 40;

/// What a row asks the chain for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Attest,
    Propose,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Attest => "attest",
            Kind::Propose => "propose",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "attest" => Some(Kind::Attest),
            "propose" => Some(Kind::Propose),
            _ => None,
        }
    }
}

/// The chain work of one approval.
pub(crate) struct Admission<'a> {
    pub(crate) application_id: &'a str,
    pub(crate) chain_id: &'a str,
    pub(crate) verifier: &'a Signer,
    pub(crate) org_key: PublicKey,
    pub(crate) commitment: Digest,
    pub(crate) level: u32,
    pub(crate) org: &'a OrgId,
}

/// The verifier's next nonce on the node, `None` when the node cannot tell (unreachable, or
/// the account is not registered: the worker reports that).
pub(crate) async fn node_next_nonce(node: &NodeClient, verifier: &Signer) -> Option<u64> {
    let key = hex::encode(verifier.public_key().0);
    match tokio::time::timeout(NODE_CALL_TIMEOUT, node.next_nonce(&key)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the verifier's nonce; using the local counter");
            None
        }
        Err(_) => {
            tracing::warn!(
                "the node did not answer for the verifier's nonce; using the local counter"
            );
            None
        }
    }
}

/// Allocates `count` consecutive nonces for `signer`, the first being the larger of `floor`
/// and the last allocated + 1. Runs inside the caller's write transaction: PostgreSQL locks the
/// counter row, SQLite holds the write lock from `BEGIN IMMEDIATE`.
async fn allocate(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    signer: &str,
    floor: u64,
    count: u64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO identity_signer_nonces (signer, next_nonce) VALUES ($1, 0) \
         ON CONFLICT (signer) DO NOTHING",
    )
    .bind(signer)
    .execute(&mut **tx)
    .await?;
    let select = match backend {
        Backend::Postgres => {
            "SELECT next_nonce FROM identity_signer_nonces WHERE signer = $1 FOR UPDATE"
        }
        Backend::Sqlite => "SELECT next_nonce FROM identity_signer_nonces WHERE signer = $1",
    };
    let stored: i64 = sqlx::query(select)
        .bind(signer)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    let first = floor.max(u64::try_from(stored).unwrap_or(0));
    sqlx::query("UPDATE identity_signer_nonces SET next_nonce = $1 WHERE signer = $2")
        .bind(to_i64(first + count))
        .bind(signer)
        .execute(&mut **tx)
        .await?;
    Ok(first)
}

/// Raises the stored counter of `signer` to at least `next`.
async fn raise_counter(
    tx: &mut Transaction<'static, Any>,
    signer: &str,
    next: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO identity_signer_nonces (signer, next_nonce) VALUES ($1, $2) \
         ON CONFLICT (signer) DO UPDATE SET next_nonce = excluded.next_nonce \
         WHERE identity_signer_nonces.next_nonce < excluded.next_nonce",
    )
    .bind(signer)
    .bind(to_i64(next))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Queues the attestation and the admission proposal of an approval, inside the caller's
/// transaction (the one that sets the application `approved`).
pub(crate) async fn enqueue_admission(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    a: &Admission<'_>,
    node_next: Option<u64>,
) -> Result<(), Problem> {
    let signer = hex::encode(a.verifier.public_key().0);
    let first = allocate(tx, backend, &signer, node_next.unwrap_or(0), 2).await?;
    let now = now_ms();
    for (kind, nonce) in [(Kind::Attest, first), (Kind::Propose, first + 1)] {
        let row = OutboxRow {
            seq: 0,
            application_id: a.application_id.to_string(),
            kind,
            signer: signer.clone(),
            nonce,
            tx_hash: String::new(),
            org_key: hex::encode(a.org_key.0),
            commitment: (kind == Kind::Attest).then(|| a.commitment.to_hex()),
            level: (kind == Kind::Attest).then_some(i64::from(a.level)),
            org: (kind == Kind::Propose).then(|| a.org.as_str().to_string()),
        };
        let signed = row
            .sign(a.chain_id, a.verifier)
            .map_err(Problem::internal)?;
        sqlx::query(
            "INSERT INTO identity_outbox (application_id, kind, signer, nonce, tx_hash, org_key, \
             commitment, level, org, state, attempts, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10)",
        )
        .bind(&row.application_id)
        .bind(kind.as_str())
        .bind(&row.signer)
        .bind(to_i64(nonce))
        .bind(signed.hash().to_hex())
        .bind(&row.org_key)
        .bind(row.commitment.as_deref())
        .bind(row.level)
        .bind(row.org.as_deref())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// One pending row of `identity_outbox`.
#[derive(Debug, Clone)]
struct OutboxRow {
    seq: i64,
    application_id: String,
    kind: Kind,
    signer: String,
    nonce: u64,
    tx_hash: String,
    org_key: String,
    commitment: Option<String>,
    level: Option<i64>,
    org: Option<String>,
}

impl OutboxRow {
    fn from_row(row: &AnyRow) -> Result<OutboxRow, WorkerError> {
        let kind: String = row.try_get("kind")?;
        let nonce: i64 = row.try_get("nonce")?;
        Ok(OutboxRow {
            seq: row.try_get("seq")?,
            application_id: row.try_get("application_id")?,
            kind: Kind::parse(&kind)
                .ok_or_else(|| WorkerError::Corrupt(format!("kind `{kind}`")))?,
            signer: row.try_get("signer")?,
            nonce: u64::try_from(nonce)
                .map_err(|_| WorkerError::Corrupt("negative nonce".into()))?,
            tx_hash: row.try_get("tx_hash")?,
            org_key: row.try_get("org_key")?,
            commitment: row.try_get("commitment")?,
            level: row.try_get("level")?,
            org: row.try_get("org")?,
        })
    }

    /// The action the row asks for.
    fn action(&self) -> Result<BeaconAction, String> {
        let org_key = hex32(&self.org_key)
            .map(PublicKey)
            .ok_or("org key is not 32 bytes of hex")?;
        Ok(match self.kind {
            Kind::Attest => BeaconAction::AttestIdentity {
                subject: org_key,
                commitment: self
                    .commitment
                    .as_deref()
                    .and_then(hex32)
                    .map(Digest)
                    .ok_or("commitment is not 32 bytes of hex")?,
                level: self
                    .level
                    .and_then(|l| u32::try_from(l).ok())
                    .ok_or("level is missing")?,
            },
            Kind::Propose => BeaconAction::Propose(ProposalKind::AdmitMember {
                org: OrgId::parse(self.org.as_deref().unwrap_or(""), "org")
                    .map_err(|e| e.to_string())?,
                org_key,
            }),
        })
    }

    fn sign(
        &self,
        chain_id: &str,
        verifier: &Signer,
    ) -> Result<trellis_types::Transaction, String> {
        Ok(trellis_types::Transaction::sign(
            chain_id,
            verifier,
            self.nonce,
            self.action()?,
        ))
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Why a pass of the worker stopped early. None of them carries personal data: rows hold
/// keys, hashes and ids only.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("node: {0}")]
    Node(#[from] NodeError),
    #[error("the node did not answer within {0:?}")]
    NodeTimeout(Duration),
    #[error("another process took the outbox lease")]
    LeaseLost,
    #[error("corrupt outbox row: {0}")]
    Corrupt(String),
    #[error("row {0} made no progress in {MAX_ROUNDS} rounds")]
    Stuck(i64),
}

/// Carries the outbox to the chain. See the module documentation.
pub(crate) struct Worker {
    db: Db,
    node: NodeClient,
    chain_id: String,
    verifier: Signer,
    verifier_hex: String,
    nudge: Arc<Notify>,
    /// This process's name on the lease.
    holder: String,
}

impl Worker {
    pub(crate) fn new(
        db: Db,
        node: NodeClient,
        chain_id: String,
        verifier: Signer,
        nudge: Arc<Notify>,
    ) -> Worker {
        let mut holder = [0u8; 16];
        // Without randomness two processes could share a name; fall back to the time.
        if aws_lc_rs::rand::fill(&mut holder).is_err() {
            holder[..8].copy_from_slice(&now_ms().to_be_bytes());
        }
        Worker {
            db,
            node,
            chain_id,
            verifier_hex: hex::encode(verifier.public_key().0),
            verifier,
            nudge,
            holder: hex::encode(holder),
        }
    }

    /// Runs the worker on the current tokio runtime until the runtime shuts down.
    pub(crate) fn spawn(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let pause = match self.pass().await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    IDLE_POLL
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "outbox pass stopped");
                    let b = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    b
                }
            };
            tokio::select! {
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Works the outbox until it is empty, if this process gets the lease.
    async fn pass(&self) -> Result<(), WorkerError> {
        if self.next_pending().await?.is_none() || !self.take_lease().await? {
            return Ok(());
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.db.clone(),
            self.holder.clone(),
            lost.clone(),
        ));
        let result = async {
            while let Some(row) = self.next_pending().await? {
                self.process(row, &lost).await?;
            }
            Ok(())
        }
        .await;
        heartbeat.abort();
        if let Err(e) = sqlx::query(
            "UPDATE identity_worker_lease SET expires_ms = 0 WHERE name = $1 AND holder = $2",
        )
        .bind(LEASE)
        .bind(&self.holder)
        .execute(self.db.pool())
        .await
        {
            tracing::warn!(error = %e, "cannot release the outbox lease");
        }
        result
    }

    async fn take_lease(&self) -> Result<bool, sqlx::Error> {
        take_lease(&self.db, &self.holder).await
    }

    async fn next_pending(&self) -> Result<Option<OutboxRow>, WorkerError> {
        let row = sqlx::query(
            "SELECT seq, application_id, kind, signer, nonce, tx_hash, org_key, commitment, \
             level, org FROM identity_outbox WHERE state = 'pending' ORDER BY seq LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(OutboxRow::from_row).transpose()
    }

    async fn node_call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<T, WorkerError> {
        match tokio::time::timeout(NODE_CALL_TIMEOUT, call).await {
            Ok(r) => r.map_err(WorkerError::Node),
            Err(_) => Err(WorkerError::NodeTimeout(NODE_CALL_TIMEOUT)),
        }
    }

    /// Carries one row until its outcome is recorded.
    async fn process(&self, mut row: OutboxRow, lost: &AtomicBool) -> Result<(), WorkerError> {
        let action_ok = row.action();
        if let Err(why) = action_ok {
            tracing::error!(seq = row.seq, why, "outbox row cannot be signed");
            return self.fail(&row, "corrupt-outbox-row").await;
        }
        for round in 0..MAX_ROUNDS {
            if lost.load(Ordering::Acquire) {
                return Err(WorkerError::LeaseLost);
            }
            if round > 0 {
                tokio::time::sleep(POLL).await;
            }
            // The row as this process signs it now (another verifier key or chain id than at
            // queueing time means new bytes).
            let tx = row
                .sign(&self.chain_id, &self.verifier)
                .map_err(WorkerError::Corrupt)?;
            if row.signer != self.verifier_hex || tx.hash().to_hex() != row.tx_hash {
                let next = self
                    .node_call(self.node.next_nonce(&self.verifier_hex))
                    .await?
                    .unwrap_or(0);
                row = self.reassign(row, next).await?;
                continue;
            }
            let Some(next) = self
                .node_call(self.node.next_nonce(&self.verifier_hex))
                .await?
            else {
                tracing::error!(verifier = %self.verifier_hex, "the verifier is not an account on the chain");
                return self.fail(&row, "unknown-account").await;
            };
            if row.nonce < next {
                // Committed already (a restart), or the nonce went to another transaction.
                match self
                    .node_call(chain::tx_state(&self.node, &row.tx_hash))
                    .await?
                {
                    Some(s) if s.status == "committed" || s.status == "rejected" => {
                        match self.settle(row, s).await? {
                            None => return Ok(()),
                            Some(r) => row = r,
                        }
                    }
                    _ => row = self.reassign(row, next).await?,
                }
                continue;
            }
            if row.nonce > next {
                // Nothing will fill the gap: every earlier row is settled.
                row = self.reassign(row, next).await?;
                continue;
            }
            if lost.load(Ordering::Acquire) {
                return Err(WorkerError::LeaseLost);
            }
            self.count_attempt(&row).await?;
            match self.node_call(self.node.submit(tx.encoded())).await {
                Ok(_) => {
                    tracing::info!(application = %row.application_id, kind = row.kind.as_str(),
                        tx = %row.tx_hash, nonce = row.nonce, "submitted to the chain");
                }
                Err(WorkerError::Node(NodeError::Rejected { status, kind, .. })) => {
                    if kind == "nonce-used" || kind == "nonce-too-far-ahead" {
                        continue;
                    }
                    if (400..500).contains(&status) && status != 429 {
                        tracing::warn!(application = %row.application_id, kind = row.kind.as_str(),
                            code = %kind, "the node refused the transaction");
                        return self.fail(&row, &kind).await;
                    }
                    return Err(WorkerError::Node(NodeError::BadResponse(format!(
                        "submission refused with {status} {kind}"
                    ))));
                }
                Err(e) => return Err(e),
            }
            // Watch it for a while; then look at the nonce again (and resubmit if need be).
            let until = tokio::time::Instant::now() + WATCH;
            loop {
                if let Some(s) = self
                    .node_call(chain::tx_state(&self.node, &row.tx_hash))
                    .await?
                    && (s.status == "committed" || s.status == "rejected")
                {
                    match self.settle(row.clone(), s).await? {
                        None => return Ok(()),
                        Some(r) => {
                            row = r;
                            break;
                        }
                    }
                }
                if tokio::time::Instant::now() + POLL > until {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Err(WorkerError::Stuck(row.seq))
    }

    /// Records a decided transaction. Returns the row to go on with (re-allocated after a
    /// `bad-nonce`), or `None` when the row is settled.
    async fn settle(&self, row: OutboxRow, s: TxState) -> Result<Option<OutboxRow>, WorkerError> {
        if s.status == "committed" {
            self.committed(&row, s.proposal_id).await?;
            return Ok(None);
        }
        let code = s.reason_code.unwrap_or_else(|| "rejected".to_string());
        if code == "bad-nonce" {
            let next = self
                .node_call(self.node.next_nonce(&self.verifier_hex))
                .await?
                .unwrap_or(row.nonce + 1);
            return Ok(Some(self.reassign(row, next).await?));
        }
        tracing::warn!(application = %row.application_id, kind = row.kind.as_str(), tx = %row.tx_hash,
            code = %code, reason = s.reason.as_deref().unwrap_or(""), "the beacon rejected the transaction");
        self.fail(&row, &code).await?;
        Ok(None)
    }

    async fn committed(
        &self,
        row: &OutboxRow,
        proposal_id: Option<u64>,
    ) -> Result<(), WorkerError> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        match row.kind {
            Kind::Attest => {
                sqlx::query(
                    "UPDATE identity_applications SET attestation_tx = $1, updated_ms = $2, \
                     status = CASE WHEN status = 'approved' THEN 'attested' ELSE status END \
                     WHERE id = $3",
                )
                .bind(&row.tx_hash)
                .bind(now)
                .bind(&row.application_id)
                .execute(&mut *tx)
                .await?;
            }
            Kind::Propose => {
                sqlx::query(
                    "UPDATE identity_applications SET proposal_tx = $1, proposal_id = $2, \
                     updated_ms = $3, status = CASE WHEN status IN ('approved', 'attested') \
                     THEN 'proposed' ELSE status END WHERE id = $4",
                )
                .bind(&row.tx_hash)
                .bind(proposal_id.map(to_i64))
                .bind(now)
                .bind(&row.application_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("UPDATE identity_outbox SET state = 'done', updated_ms = $1 WHERE seq = $2")
            .bind(now)
            .bind(row.seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(application = %row.application_id, kind = row.kind.as_str(), tx = %row.tx_hash,
            proposal_id, "committed on the beacon");
        Ok(())
    }

    /// Marks the row failed, cancels the application's other rows and the application
    /// `chain_failed` with `code`.
    async fn fail(&self, row: &OutboxRow, code: &str) -> Result<(), WorkerError> {
        let code: String = code.chars().take(64).collect();
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE identity_outbox SET state = 'failed', last_error = $1, updated_ms = $2 \
             WHERE seq = $3",
        )
        .bind(&code)
        .bind(now)
        .bind(row.seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE identity_outbox SET state = 'cancelled', updated_ms = $1 \
             WHERE application_id = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(&row.application_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE identity_applications SET status = 'chain_failed', chain_error = $1, \
             updated_ms = $2 WHERE id = $3 AND status IN ('approved', 'attested')",
        )
        .bind(&code)
        .bind(now)
        .bind(&row.application_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(application = %row.application_id, kind = row.kind.as_str(), code = %code,
            "chain work failed");
        Ok(())
    }

    /// Gives the row the nonce `next` (the account's next on the node), signs it again with
    /// this process's verifier, and raises the counter past it.
    async fn reassign(&self, mut row: OutboxRow, next: u64) -> Result<OutboxRow, WorkerError> {
        row.signer = self.verifier_hex.clone();
        row.nonce = next;
        let tx = row
            .sign(&self.chain_id, &self.verifier)
            .map_err(WorkerError::Corrupt)?;
        row.tx_hash = tx.hash().to_hex();
        let mut db_tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE identity_outbox SET signer = $1, nonce = $2, tx_hash = $3, updated_ms = $4 \
             WHERE seq = $5",
        )
        .bind(&row.signer)
        .bind(to_i64(row.nonce))
        .bind(&row.tx_hash)
        .bind(now_ms())
        .bind(row.seq)
        .execute(&mut *db_tx)
        .await?;
        raise_counter(&mut db_tx, &row.signer, next + 1).await?;
        db_tx.commit().await?;
        tracing::info!(application = %row.application_id, kind = row.kind.as_str(), nonce = next,
            tx = %row.tx_hash, "re-allocated the nonce");
        Ok(row)
    }

    async fn count_attempt(&self, row: &OutboxRow) -> Result<(), WorkerError> {
        sqlx::query(
            "UPDATE identity_outbox SET attempts = attempts + 1, updated_ms = $1 WHERE seq = $2",
        )
        .bind(now_ms())
        .bind(row.seq)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// Takes (or renews) the outbox lease for `holder`; false while another holder's is live.
async fn take_lease(db: &Db, holder: &str) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO identity_worker_lease (name, holder, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_ms = excluded.expires_ms \
         WHERE identity_worker_lease.holder = excluded.holder \
         OR identity_worker_lease.expires_ms < $4",
    )
    .bind(LEASE)
    .bind(holder)
    .bind(now + LEASE_TTL_MS)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Renews the lease every [`HEARTBEAT`]; sets `lost` when another holder has it, or when
/// renewals have failed for half the lease's lifetime (it may lapse before the next one).
async fn heartbeat(db: Db, holder: String, lost: Arc<AtomicBool>) {
    let mut renewed = tokio::time::Instant::now();
    let give_up = Duration::from_millis((LEASE_TTL_MS / 2) as u64);
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        match take_lease(&db, &holder).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => {
                lost.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the outbox lease");
                if renewed.elapsed() > give_up {
                    lost.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}
