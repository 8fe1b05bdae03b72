-- tenant_state v1: one row per store, written in the same transaction as the store's events.
-- {table} is the generation's table name (tenant_state when live).
CREATE TABLE IF NOT EXISTS {table} (
    store_id            text PRIMARY KEY,
    name                text,
    time_zone           text NOT NULL,
    plan_id             text,
    tier                text,
    -- Statuses as of the last write; reads derive them again from `state` and now.
    subscription_status text NOT NULL,
    internal_status     text NOT NULL,
    trial_ends_at       timestamptz,
    grace_ends_at       timestamptz,
    maintenance_ends_at timestamptz,
    -- The next time-driven transition: what the deadline worker sweeps.
    next_deadline       timestamptz,
    subscription_id     text,
    version             bigint NOT NULL,
    -- The folded domain state (facts only), so reads can derive statuses and usage at any now.
    state               jsonb NOT NULL,
    -- Usage per action in its current period, with the limit and what remains, under the catalog
    -- of `catalog_fingerprint`: what a rule change makes stale.
    usage               jsonb NOT NULL,
    catalog_fingerprint text NOT NULL,
    updated_at          timestamptz NOT NULL
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS {table}_next_deadline ON {table} (next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS {table}_by_status ON {table} (internal_status, store_id);
