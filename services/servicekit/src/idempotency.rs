//! Idempotency keys: a client that retries a POST with the same `Idempotency-Key` gets the
//! first answer again instead of a second effect. Keys live per scope (e.g. a route and
//! caller), remember the hash of the request they came with, and a reuse with a different
//! request is refused ([`IdemError::Mismatch`], answered 422).

use crate::db::{Db, now_ms};
use crate::problem::Problem;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use sqlx::Row;

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
        let row = sqlx::query(
            "SELECT request_sha256, status, response_body FROM idempotency_keys \
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(db.pool())
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
        .execute(db.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok((status, response_body.to_string()));
        }
        match Self::lookup(db, scope, key, request_sha256).await? {
            Some(existing) => Ok(existing),
            // Deleted between the two statements (a cleanup job); ours was not stored either.
            None => Ok((status, response_body.to_string())),
        }
    }

    /// Deletes keys created before `before_ms`; returns how many. Run it now and then: keys
    /// only need to outlive the clients' retry window.
    pub async fn purge_before(db: &Db, before_ms: i64) -> Result<u64, IdemError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_ms < $1")
            .bind(before_ms)
            .execute(db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
