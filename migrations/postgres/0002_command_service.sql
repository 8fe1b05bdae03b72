-- The command service's durable bookkeeping beside the log.

-- The first answer to a request sent with an Idempotency-Key, stored in the same transaction
-- as the events it appended, and replayed for a retry with the same body.
CREATE TABLE idempotent_answers (
    store_id     text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer NOT NULL,
    body         jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (store_id, key)
);

-- Every command, accepted or refused, written in batches off the hot path.
CREATE TABLE command_journal (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id        text NOT NULL,
    kind            text NOT NULL,
    outcome         text NOT NULL,
    error_code      text,
    correlation_id  text NOT NULL,
    actor           text NOT NULL,
    idempotency_key text,
    duration_us     bigint NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX command_journal_by_store ON command_journal (store_id, id);
CREATE INDEX command_journal_by_correlation ON command_journal (correlation_id);
