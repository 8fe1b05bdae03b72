-- Notifications out: the endpoints registered to receive them and the outbox of deliveries,
-- written by the notification projector from the log (one row per endpoint and notification,
-- unique on both, so projecting an event again never sends twice), and every attempt made.
-- Times are microseconds since the Unix epoch, as on SQLite, so one query serves both.

CREATE TABLE webhook_endpoints (
    id               text PRIMARY KEY,
    url              text NOT NULL,
    description      text,
    -- The notification kinds it receives, comma-separated.
    kinds            text NOT NULL,
    -- For `ledger.event`: the raw event types it receives, comma-separated; NULL: every type.
    event_types      text,
    -- Standard Webhooks' `whsec_` secret, shown once when the endpoint is created.
    secret           text NOT NULL,
    enabled          boolean NOT NULL,
    disabled_reason  text,
    -- Since when every attempt to it has failed; NULL while it answers.
    failing_since_us bigint,
    created_at_us    bigint NOT NULL,
    updated_at_us    bigint NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                  text NOT NULL UNIQUE,
    endpoint_id         text NOT NULL REFERENCES webhook_endpoints (id),
    -- The notification's deterministic id: the `webhook-id` header.
    notification_id     text NOT NULL,
    kind                text NOT NULL,
    store_id            text NOT NULL,
    body                text NOT NULL,
    due_at_us           bigint NOT NULL,
    -- For a warning, the deadline the store must still face when it is sent.
    deadline_us         bigint,
    -- pending, delivered, skipped or failed.
    status              text NOT NULL,
    attempts            bigint NOT NULL DEFAULT 0,
    next_attempt_at_us  bigint NOT NULL,
    first_attempt_at_us bigint,
    last_status_code    bigint,
    last_error          text,
    settled_at_us       bigint,
    created_at_us       bigint NOT NULL,
    UNIQUE (endpoint_id, notification_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_us) WHERE status = 'pending';
-- Deliveries of one store to one endpoint go in order: the earliest pending one goes first.
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (endpoint_id, store_id, due_at_us, seq)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, seq);

CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL,
    attempt     bigint NOT NULL,
    at_us       bigint NOT NULL,
    -- The receiver's status code; NULL when none came (refused, timed out).
    status_code bigint,
    latency_ms  bigint NOT NULL,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);
