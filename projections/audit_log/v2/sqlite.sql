-- audit_log v2: one row per event, its queryable columns only. {table} is the generation's
-- table name (audit_log when live). Times are microseconds since the Unix epoch.
-- (v1 also stored a summary for people; it is derived from the event when read. A v1 table
-- loses that column at start: see schema.rs.)
CREATE TABLE IF NOT EXISTS {table} (
    audit_seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    actor           TEXT NOT NULL,
    recorded_at_us  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_by_store ON {table} (store_id, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_type ON {table} (event_type, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_correlation ON {table} (correlation_id, audit_seq);
CREATE INDEX IF NOT EXISTS {table}_by_time ON {table} (recorded_at_us, audit_seq);
