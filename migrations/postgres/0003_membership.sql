-- membership: the consortium CA's org certificates, its mirror of the beacon's revocation
-- list, the revocation transactions it submitted, and the state of the CRL file it writes.
-- Times are unix milliseconds, heights and nonces BIGINT (sqlx's Any driver carries i64).

-- Every org certificate the CA issued. `status`: active (the org's current certificate),
-- superseded (replaced by a renewal or a new org key), revoked (on the beacon's list).
CREATE TABLE ca_certificates (
    serial_hex      TEXT NOT NULL PRIMARY KEY,
    org             TEXT NOT NULL,
    public_key_hex  TEXT NOT NULL,
    pem             TEXT NOT NULL,
    sha256_hex      TEXT NOT NULL,
    not_before_ms   BIGINT NOT NULL,
    not_after_ms    BIGINT NOT NULL,
    issued_ms       BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    superseded_by   TEXT NULL,
    superseded_ms   BIGINT NULL,
    revoked_reason  BIGINT NULL,
    revoked_height  BIGINT NULL
);
CREATE INDEX ca_certificates_org ON ca_certificates (org, issued_ms);
-- At most one current certificate per org, even with two managers racing.
CREATE UNIQUE INDEX ca_certificates_one_active ON ca_certificates (org) WHERE status = 'active';

-- The beacon's revocation list as last seen (`GET /v1/revocations`): serials of any
-- certificate of the CA (org and node certificates). `first_seen_ms` dates the CRL entry.
CREATE TABLE ca_revocations (
    serial_hex     TEXT NOT NULL PRIMARY KEY,
    reason         BIGINT NOT NULL,
    height         BIGINT NOT NULL,
    revoker_hex    TEXT NOT NULL,
    first_seen_ms  BIGINT NOT NULL
);

-- RevokeCertificate transactions signed with the CA operator key, kept so a restart neither
-- re-signs them with new nonces nor forgets them. `state`: pending (submitted, undecided),
-- committed, rejected (by the beacon; `reason_code` says why), dropped (refused by the node's
-- pool; its nonce was never used).
CREATE TABLE ca_revocation_submissions (
    tx_hash       TEXT NOT NULL PRIMARY KEY,
    serial_hex    TEXT NOT NULL,
    reason        BIGINT NOT NULL,
    signer_hex    TEXT NOT NULL,
    nonce         BIGINT NOT NULL,
    tx_bytes      BYTEA NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'rejected', 'dropped')),
    reason_code   TEXT NULL,
    submitted_ms  BIGINT NOT NULL,
    decided_ms    BIGINT NULL
);
CREATE INDEX ca_revocation_submissions_serial ON ca_revocation_submissions (serial_hex);
CREATE INDEX ca_revocation_submissions_signer ON ca_revocation_submissions (signer_hex, state);

-- The CRL file last written: which revocation list it holds (fingerprint) and when.
CREATE TABLE ca_crl_state (
    id           BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    fingerprint  TEXT NOT NULL,
    crl_number   BIGINT NOT NULL,
    entries      BIGINT NOT NULL,
    path         TEXT NOT NULL,
    written_ms   BIGINT NOT NULL
);
