-- membership: the consortium CA's org certificates, its mirror of the beacon's revocation
-- list, the revocation transactions it submitted, and the CRL it last built (served by
-- `GET /v1/ca/crl` and written to the CRL file).
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
-- committed, rejected (by the beacon; `reason_code` says why; past the nonce check the
-- beacon consumes the nonce even so), dropped (refused by the node's pool; its nonce was
-- never used), replaced (stuck behind a nonce gap nothing else would fill, so signed again
-- at the node's next nonce by the row that replaced it; its own bytes may still execute,
-- and are then refused as `already-revoked`).
CREATE TABLE ca_revocation_submissions (
    tx_hash       TEXT NOT NULL PRIMARY KEY,
    serial_hex    TEXT NOT NULL,
    reason        BIGINT NOT NULL,
    signer_hex    TEXT NOT NULL,
    nonce         BIGINT NOT NULL,
    tx_bytes      BLOB NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('pending', 'committed', 'rejected', 'dropped', 'replaced')),
    reason_code   TEXT NULL,
    submitted_ms  BIGINT NOT NULL,
    decided_ms    BIGINT NULL
);
CREATE INDEX ca_revocation_submissions_serial ON ca_revocation_submissions (serial_hex);
CREATE INDEX ca_revocation_submissions_signer ON ca_revocation_submissions (signer_hex, state);

-- The CRL last built: the PEM `GET /v1/ca/crl` serves (the route never signs one while
-- this row exists), which revocation list it holds (fingerprint), its CRL number (the beacon
-- height of that list) and when it was built; and where and when it was last written to the
-- CRL file (NULL while none was written).
CREATE TABLE ca_crl_state (
    id           BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    fingerprint  TEXT NOT NULL,
    crl_number   BIGINT NOT NULL,
    entries      BIGINT NOT NULL,
    pem          TEXT NOT NULL,
    built_ms     BIGINT NOT NULL,
    path         TEXT NULL,
    written_ms   BIGINT NULL
);
