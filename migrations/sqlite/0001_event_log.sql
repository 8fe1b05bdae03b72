-- The event log: streams with an optimistic version, append-only events,
-- idempotency keys, consumer checkpoints and state snapshots.
-- Never edit this file once applied: add a new migration instead.
-- Times are microseconds since the Unix epoch (UTC), so they sort and compare exactly.

CREATE TABLE ledger_streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL CHECK (version >= 1)
);

CREATE TABLE ledger_events (
    -- SQLite has one writer at a time, so commit order is rowid order: no gaps to guard.
    global_position     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT NOT NULL UNIQUE,
    stream_id           TEXT NOT NULL,
    version             INTEGER NOT NULL CHECK (version >= 1),
    event_type          TEXT NOT NULL,
    schema_version      INTEGER NOT NULL CHECK (schema_version >= 1),
    data                TEXT NOT NULL CHECK (json_valid(data)),
    correlation_id      TEXT NOT NULL,
    causation_id        TEXT,
    idempotency_key     TEXT,
    actor               TEXT NOT NULL,
    catalog_fingerprint TEXT NOT NULL,
    recorded_at_us      INTEGER NOT NULL,
    CONSTRAINT ledger_events_stream_version UNIQUE (stream_id, version)
);

CREATE TABLE ledger_idempotency_keys (
    stream_id       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    first_version   INTEGER NOT NULL,
    last_version    INTEGER NOT NULL,
    PRIMARY KEY (stream_id, idempotency_key)
);

CREATE TABLE ledger_checkpoints (
    consumer       TEXT PRIMARY KEY,
    transaction_id INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    updated_at_us  INTEGER NOT NULL
);

CREATE TABLE ledger_snapshots (
    stream_id            TEXT PRIMARY KEY,
    version              INTEGER NOT NULL CHECK (version >= 1),
    state                TEXT NOT NULL CHECK (json_valid(state)),
    state_schema_version INTEGER NOT NULL,
    taken_at_us          INTEGER NOT NULL
);

CREATE TRIGGER ledger_events_no_update
    BEFORE UPDATE ON ledger_events
    BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER ledger_events_no_delete
    BEFORE DELETE ON ledger_events
    BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: DELETE is not allowed'); END;
