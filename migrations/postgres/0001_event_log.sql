-- The event log: streams with an optimistic version, append-only events,
-- idempotency keys, consumer checkpoints and state snapshots.
-- Never edit this file once applied: add a new migration instead.

CREATE TABLE ledger_streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 1)
);

CREATE TABLE ledger_events (
    -- Assigned before commit, so it alone is not a safe reading order: see transaction_id.
    global_position     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction. Readers order by (transaction_id, global_position)
    -- and read only transactions older than the oldest one still running.
    transaction_id      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id            uuid NOT NULL UNIQUE,
    stream_id           text NOT NULL,
    version             bigint NOT NULL CHECK (version >= 1),
    event_type          text NOT NULL,
    schema_version      integer NOT NULL CHECK (schema_version >= 1),
    data                jsonb NOT NULL,
    correlation_id      text NOT NULL,
    causation_id        text,
    idempotency_key     text,
    actor               text NOT NULL,
    catalog_fingerprint text NOT NULL,
    recorded_at         timestamptz NOT NULL,
    -- Stands behind the version check: two writers can never both write version N.
    CONSTRAINT ledger_events_stream_version UNIQUE (stream_id, version)
);

CREATE INDEX ledger_events_global_order ON ledger_events (transaction_id, global_position);

-- One row per (stream, key): the versions first written under that key.
CREATE TABLE ledger_idempotency_keys (
    stream_id       text NOT NULL,
    idempotency_key text NOT NULL,
    first_version   bigint NOT NULL,
    last_version    bigint NOT NULL,
    PRIMARY KEY (stream_id, idempotency_key)
);

CREATE TABLE ledger_checkpoints (
    consumer       text PRIMARY KEY,
    transaction_id bigint NOT NULL,
    position       bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_snapshots (
    stream_id            text PRIMARY KEY,
    version              bigint NOT NULL CHECK (version >= 1),
    state                jsonb NOT NULL,
    state_schema_version integer NOT NULL,
    taken_at             timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ledger_events_are_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER ledger_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_are_immutable();

CREATE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_are_immutable();
