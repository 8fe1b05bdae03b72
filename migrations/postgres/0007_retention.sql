-- Retention of the bookkeeping beside the log: stored answers, the ledger's own idempotency keys
-- and the command journal are deleted by age, in small batches, by a background job (see
-- docs/operations.md). Each needs its age indexed so that a batch is a range scan, not a pass
-- over the table. Events are never deleted; nothing here touches ledger_events.
--
-- A key's age is the time of the event that recorded it (written by the append); rows from
-- before this migration take the migration's time, so they are kept a full period from now.
ALTER TABLE ledger_idempotency_keys ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX ledger_idempotency_keys_by_age ON ledger_idempotency_keys (created_at);
CREATE INDEX idempotent_answers_by_age ON idempotent_answers (created_at);
CREATE INDEX command_journal_by_age ON command_journal (recorded_at);
