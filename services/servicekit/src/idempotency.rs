//! Idempotency keys: a client that retries a POST with the same `Idempotency-Key` gets the
//! first answer again instead of a second effect. Keys live per scope (e.g. a route and
//! caller), remember the hash of the request they came with, and a reuse with a different
//! request is refused ([`IdemError::Mismatch`], answered 422).

use crate::db::{Db, now_ms};
use crate::problem::Problem;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Executor, Row};

/// Why an idempotency lookup or store failed.
#[derive(Debug, thiserror::Error)]
pub enum IdemError {
    /// The key was used before with a different request.
    #[error("this idempotency key was used with a different request")]
    Mismatch,
    /// A stored status is not an HTTP status.
    #[error("stored idempotent response has an invalid status {0}")]
    Corrupt(i64),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<IdemError> for Problem {
    fn from(e: IdemError) -> Problem {
        match e {
            IdemError::Mismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was already used with a different request",
            ),
            other => Problem::internal(other),
        }
    }
}

/// Lower-case hex SHA-256 of a request, the form [`Idempotency`] compares.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Stored answers of idempotent requests (table `idempotency_keys`).
pub struct Idempotency;

impl Idempotency {
    /// The answer stored for `key` in `scope`, if any: `(status, body)`. A key stored with
    /// another request hash is [`IdemError::Mismatch`].
    pub async fn lookup(
        db: &Db,
        scope: &str,
        key: &str,
        request_sha256: &str,
    ) -> Result<Option<(u16, String)>, IdemError> {
        lookup_with(db.pool(), scope, key, request_sha256).await
    }

    /// Stores the answer to `key` in `scope`, and returns the answer that stands: when two
    /// requests race on one key the first stored wins, and the loser gets the winner's answer
    /// (or [`IdemError::Mismatch`] if the winner came with a different request).
    pub async fn store(
        db: &Db,
        scope: &str,
        key: &str,
        request_sha256: &str,
        status: u16,
        response_body: &str,
    ) -> Result<(u16, String), IdemError> {
        if insert(db.pool(), scope, key, request_sha256, status, response_body).await? {
            return Ok((status, response_body.to_string()));
        }
        match Self::lookup(db, scope, key, request_sha256).await? {
            Some(existing) => Ok(existing),
            // Deleted between the two statements (a cleanup job); ours was not stored either.
            None => Ok((status, response_body.to_string())),
        }
    }

    /// [`Idempotency::store`] on `conn`, typically inside the caller's transaction (pass
    /// `&mut *tx`), so the answer is stored if and only if the effect it reports commits.
    /// Returns the answer that stands: ours when it was stored, else the one already stored
    /// for the key (or [`IdemError::Mismatch`] if that one came with a different request); a
    /// caller that does not get its own answer back should roll back its effect and answer with
    /// the stored one.
    ///
    /// On PostgreSQL a concurrent, uncommitted store of the same key makes this wait until
    /// that transaction ends, so the standing answer is always one that committed.
    pub async fn store_in(
        conn: &mut AnyConnection,
        scope: &str,
        key: &str,
        request_sha256: &str,
        status: u16,
        response_body: &str,
    ) -> Result<(u16, String), IdemError> {
        // A key deleted between the insert and the lookup (a purge) is tried once more.
        for _ in 0..2 {
            if insert(
                &mut *conn,
                scope,
                key,
                request_sha256,
                status,
                response_body,
            )
            .await?
            {
                return Ok((status, response_body.to_string()));
            }
            if let Some(existing) = lookup_with(&mut *conn, scope, key, request_sha256).await? {
                return Ok(existing);
            }
        }
        Err(IdemError::Db(sqlx::Error::Protocol(
            "idempotency key kept disappearing while being stored".into(),
        )))
    }

    /// Deletes keys created before `before_ms`, in every scope; returns how many. Run it now
    /// and then: keys only need to outlive the clients' retry window. A service sharing the
    /// database with others should rather purge its own scopes
    /// ([`Idempotency::purge_scope_before`]).
    pub async fn purge_before(db: &Db, before_ms: i64) -> Result<u64, IdemError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_ms < $1")
            .bind(before_ms)
            .execute(db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes the keys of `scope` created before `before_ms`; returns how many. Keys of
    /// other scopes are left alone.
    pub async fn purge_scope_before(
        db: &Db,
        scope: &str,
        before_ms: i64,
    ) -> Result<u64, IdemError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND created_ms < $2")
            .bind(scope)
            .bind(before_ms)
            .execute(db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

/// Inserts the key unless it exists; true when this call stored it.
async fn insert<'e, E: Executor<'e, Database = Any>>(
    e: E,
    scope: &str,
    key: &str,
    request_sha256: &str,
    status: u16,
    response_body: &str,
) -> Result<bool, IdemError> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys \
         (scope, key, request_sha256, status, response_body, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_sha256)
    .bind(i32::from(status))
    .bind(response_body)
    .bind(now_ms())
    .execute(e)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The stored answer of `key` in `scope`, checked against the request hash.
async fn lookup_with<'e, E: Executor<'e, Database = Any>>(
    e: E,
    scope: &str,
    key: &str,
    request_sha256: &str,
) -> Result<Option<(u16, String)>, IdemError> {
    let row = sqlx::query(
        "SELECT request_sha256, status, response_body FROM idempotency_keys \
         WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(e)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let stored_hash: String = row.try_get(0)?;
    if stored_hash != request_sha256 {
        return Err(IdemError::Mismatch);
    }
    let status: i64 = row.try_get(1)?;
    let status = u16::try_from(status).map_err(|_| IdemError::Corrupt(status))?;
    Ok(Some((status, row.try_get(2)?)))
}
