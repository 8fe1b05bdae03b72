-- audit_log v2: one row per event, its queryable columns only. {table} is the generation's
-- table name (audit_log when live); rebuilds build a new generation beside the live one.
-- (v1 also stored a summary for people; it is derived from the event when read, so a rebuild
-- is one INSERT ... SELECT in the database and a change of wording needs no rebuild. A v1
-- table keeps its column, nullable, until it is next rebuilt: see schema.rs.)
CREATE TABLE IF NOT EXISTS {table} (
    audit_seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id        text NOT NULL,
    version         bigint NOT NULL,
    global_position bigint NOT NULL,
    event_type      text NOT NULL,
    correlation_id  text NOT NULL,
    actor           text NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_by_store ON {table} (store_id, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_type ON {table} (event_type, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_correlation ON {table} (correlation_id, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_time ON {table} (recorded_at, audit_seq);
