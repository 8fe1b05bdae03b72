-- tenant_state v1: one row per store, written in the same transaction as the store's events.
-- {table} is the generation's table name (tenant_state when live).
-- Times are microseconds since the Unix epoch (UTC).
CREATE TABLE IF NOT EXISTS {table} (
    store_id               TEXT PRIMARY KEY,
    name                   TEXT,
    time_zone              TEXT NOT NULL,
    plan_id                TEXT,
    tier                   TEXT,
    subscription_status    TEXT NOT NULL,
    internal_status        TEXT NOT NULL,
    trial_ends_at_us       INTEGER,
    grace_ends_at_us       INTEGER,
    maintenance_ends_at_us INTEGER,
    next_deadline_us       INTEGER,
    subscription_id        TEXT,
    version                INTEGER NOT NULL,
    state                  TEXT NOT NULL,
    usage                  TEXT NOT NULL,
    catalog_fingerprint    TEXT NOT NULL,
    updated_at_us          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_next_deadline ON {table} (next_deadline_us) WHERE next_deadline_us IS NOT NULL;
CREATE INDEX IF NOT EXISTS {table}_by_status ON {table} (internal_status, store_id);
