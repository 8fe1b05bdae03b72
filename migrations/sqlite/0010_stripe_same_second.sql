-- Stripe's times are whole seconds, so events of one subscription can share one. To order
-- them, the applier chains them by the status each moved from, starting at the status the
-- subscription had before that second (base_status), and reads the second's events of the
-- subscription back (the index). See docs/decisions.md.
ALTER TABLE stripe_subscriptions ADD COLUMN base_status text;
CREATE INDEX stripe_events_by_subscription ON stripe_events (subscription_id, created_at_us);
