-- The command service's durable bookkeeping beside the log.

CREATE TABLE idempotent_answers (
    store_id      TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    body          TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (store_id, key)
);

CREATE TABLE command_journal (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    error_code      TEXT,
    correlation_id  TEXT NOT NULL,
    actor           TEXT NOT NULL,
    idempotency_key TEXT,
    duration_us     INTEGER NOT NULL,
    recorded_at_us  INTEGER NOT NULL
);
CREATE INDEX command_journal_by_store ON command_journal (store_id, id);
CREATE INDEX command_journal_by_correlation ON command_journal (correlation_id);
