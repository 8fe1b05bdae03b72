-- Stripe's webhook events: an inbox that stores each event once (unique on Stripe's id), then
-- applies it asynchronously, and the newest state applied for each subscription. Times are
-- microseconds since the Unix epoch.

CREATE TABLE stripe_events (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT NOT NULL UNIQUE,
    event_type         TEXT NOT NULL,
    created_at_us      INTEGER NOT NULL,
    livemode           INTEGER NOT NULL,
    payload            TEXT NOT NULL,
    received_at_us     INTEGER NOT NULL,
    deliveries         INTEGER NOT NULL DEFAULT 1,
    status             TEXT NOT NULL,
    detail             TEXT,
    store_id           TEXT,
    subscription_id    TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_us INTEGER,
    applied_at_us      INTEGER
);
CREATE INDEX stripe_events_due ON stripe_events (next_attempt_at_us, created_at_us) WHERE status IN ('received', 'failed');
CREATE INDEX stripe_events_by_status ON stripe_events (status, seq);
-- Retention deletes settled events by age (docs/operations.md).
CREATE INDEX stripe_events_by_age ON stripe_events (received_at_us);

CREATE TABLE stripe_subscriptions (
    subscription_id  TEXT PRIMARY KEY,
    store_id         TEXT NOT NULL,
    customer_id      TEXT,
    plan_id          TEXT,
    price_id         TEXT,
    status           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_created_us INTEGER NOT NULL,
    updated_at_us    INTEGER NOT NULL
);
CREATE INDEX stripe_subscriptions_by_customer ON stripe_subscriptions (customer_id);
