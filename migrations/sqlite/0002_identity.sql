-- identity: onboarding applications (personal data sealed with the service keyring, never in
-- plain text), their documents, the chain outbox with the verifier's nonce counter and the
-- worker lease, login challenges and API keys. Times are unix milliseconds (BIGINT), as in
-- 0001, so the same queries run on PostgreSQL and SQLite.

CREATE TABLE identity_applications (
    id                TEXT NOT NULL PRIMARY KEY,
    -- pending | approved | attested | proposed | rejected | chain_failed
    status            TEXT NOT NULL,
    -- Business registry data, stored plain.
    legal_name        TEXT NOT NULL,
    credit_code       TEXT NOT NULL,
    org_public_key    TEXT NOT NULL,
    -- Legal representative (name, ID number) and contact (email, phone): AES-256-GCM sealed,
    -- associated data = the application id.
    sealed_pii        BLOB NOT NULL,
    -- SHA-256 (hex) of the applicant's secret token; the token itself is never stored.
    token_sha256      TEXT NOT NULL,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    decided_ms        BIGINT NULL,
    decided_by        TEXT NULL,
    rejection_reason  TEXT NULL,
    -- Set on approval: the commitment's salt (sealed) and the commitment (hex).
    sealed_salt       BLOB NULL,
    commitment        TEXT NULL,
    attestation_level BIGINT NULL,
    attestation_tx    TEXT NULL,
    proposal_tx       TEXT NULL,
    proposal_id       BIGINT NULL,
    -- The beacon's rejection code when status is chain_failed.
    chain_error       TEXT NULL
);

-- One live application per credit code and per org key: a rejected one, or one whose chain
-- step failed for good (chain_failed), no longer blocks a new application.
CREATE UNIQUE INDEX identity_applications_live_credit_code
    ON identity_applications (credit_code) WHERE status NOT IN ('rejected', 'chain_failed');
CREATE UNIQUE INDEX identity_applications_live_org_key
    ON identity_applications (org_public_key) WHERE status NOT IN ('rejected', 'chain_failed');
CREATE INDEX identity_applications_by_status ON identity_applications (status, created_ms);

CREATE TABLE identity_documents (
    id             TEXT NOT NULL PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES identity_applications (id),
    -- File name and content, sealed (file names can carry personal data too).
    sealed_name    BLOB NOT NULL,
    sealed_content BLOB NOT NULL,
    content_type   TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL
);
CREATE INDEX identity_documents_by_application ON identity_documents (application_id, created_ms);

-- Chain work, submitted strictly in `seq` order by one worker at a time.
CREATE TABLE identity_outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL REFERENCES identity_applications (id),
    -- attest | propose
    kind           TEXT NOT NULL,
    -- The verifier account (hex public key) that signs, and the nonce allocated to the row.
    signer         TEXT NOT NULL,
    nonce          BIGINT NOT NULL,
    -- Hash (hex) of the transaction as last signed.
    tx_hash        TEXT NOT NULL,
    -- Action parameters: the org key (subject / org_key), commitment and level, org id.
    org_key        TEXT NOT NULL,
    commitment     TEXT NULL,
    level          BIGINT NULL,
    org            TEXT NULL,
    -- pending | done | failed | cancelled
    state          TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    last_error     TEXT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE INDEX identity_outbox_pending ON identity_outbox (state, seq);

-- The next nonce to allocate per signing account (the last allocated + 1).
CREATE TABLE identity_signer_nonces (
    signer     TEXT NOT NULL PRIMARY KEY,
    next_nonce BIGINT NOT NULL
);

-- Which process runs the outbox worker, until when.
CREATE TABLE identity_worker_lease (
    name       TEXT NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Login challenges: single use, short-lived.
CREATE TABLE identity_auth_challenges (
    challenge  TEXT NOT NULL PRIMARY KEY,
    public_key TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX identity_auth_challenges_expiry ON identity_auth_challenges (expires_ms);

-- API keys: only the SHA-256 (hex) of the key is stored. A key logs in until `expires_ms`
-- (set at creation, at most a year ahead) unless revoked; an enterprise key only while its org
-- is an active member on the beacon.
CREATE TABLE identity_api_keys (
    id         TEXT NOT NULL PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    org        TEXT NULL,
    label      TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT NULL,
    revoked_by TEXT NULL
);
CREATE INDEX identity_api_keys_by_org ON identity_api_keys (org, created_ms);
