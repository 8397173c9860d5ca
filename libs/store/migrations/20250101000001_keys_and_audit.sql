-- The common subset of SQLite and PostgreSQL: BIGINT and TEXT only, times in
-- unix milliseconds, hashes in lower-case hex.

-- API keys. The secret itself is never stored, only its SHA-256.
-- `updated_at` is strictly increasing across all writers (every write holds
-- the store's write lock), so key caches can poll for `updated_at > last seen`.
CREATE TABLE api_keys (
    id          TEXT   NOT NULL PRIMARY KEY,
    secret_hash TEXT   NOT NULL,
    principal   TEXT   NOT NULL,
    scopes      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX api_keys_updated_at ON api_keys (updated_at);

-- The audit trail, a hash chain: `hash` covers the row's fields and
-- `prev_hash`, which is the previous row's `hash`. `seq` is assigned under the
-- write lock as last seq + 1, so gaps mean deleted rows.
CREATE TABLE audit_events (
    seq         BIGINT NOT NULL PRIMARY KEY,
    event_id    TEXT   NOT NULL UNIQUE,
    occurred_at BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    target      TEXT   NOT NULL,
    outcome     TEXT   NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    reason      TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);
