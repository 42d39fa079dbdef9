-- servicekit: JWT signing keys (private keys sealed with the service keyring) and
-- idempotency keys of POST requests. Times are unix milliseconds (BIGINT) so the same
-- queries run on PostgreSQL and SQLite through sqlx's Any driver.

CREATE TABLE jwt_signing_keys (
    kid                TEXT NOT NULL PRIMARY KEY,
    sealed_private_key BYTEA NOT NULL,
    public_key         BYTEA NOT NULL,
    created_ms         BIGINT NOT NULL,
    retired_ms         BIGINT NULL
);

CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status         INTEGER NOT NULL,
    response_body  TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
