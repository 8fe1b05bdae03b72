-- Stripe's webhook events: an inbox that stores each event once (unique on Stripe's id), then
-- applies it asynchronously, and the newest state applied for each subscription.

CREATE TABLE stripe_events (
    -- The order events were received in: the listing's cursor.
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text NOT NULL UNIQUE,
    event_type      text NOT NULL,
    -- When Stripe created the event: the order of what happened, not of delivery.
    created_at      timestamptz NOT NULL,
    livemode        boolean NOT NULL,
    -- The raw body as verified.
    payload         text NOT NULL,
    received_at     timestamptz NOT NULL,
    -- How many times Stripe delivered it (a redelivery changes nothing else).
    deliveries      integer NOT NULL DEFAULT 1,
    -- received, applied, ignored, stale, parked or failed.
    status          text NOT NULL,
    -- What applying it did, why it was parked or ignored, or the last error.
    detail          text,
    store_id        text,
    subscription_id text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    applied_at      timestamptz
);
CREATE INDEX stripe_events_due ON stripe_events (next_attempt_at, created_at) WHERE status IN ('received', 'failed');
CREATE INDEX stripe_events_by_status ON stripe_events (status, seq);
-- Retention deletes settled events by age (docs/operations.md).
CREATE INDEX stripe_events_by_age ON stripe_events (received_at);

CREATE TABLE stripe_subscriptions (
    subscription_id text PRIMARY KEY,
    store_id        text NOT NULL,
    customer_id     text,
    plan_id         text,
    -- The price it was applied with: an invoice names its price by id only, so a price the
    -- catalog maps by lookup key is known again by id here.
    price_id        text,
    -- The newest event applied to it (the watermark) and the state it said.
    status          text NOT NULL,
    event_id        text NOT NULL,
    event_created   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX stripe_subscriptions_by_customer ON stripe_subscriptions (customer_id);
