-- Retention of the bookkeeping beside the log: stored answers, the ledger's own idempotency keys
-- and the command journal are deleted by age, in small batches, by a background job (see
-- docs/operations.md). Each needs its age indexed so that a batch is a range scan, not a pass
-- over the table. Events are never deleted; nothing here touches ledger_events.
--
-- A key's age is the time of the event that recorded it (written by the append). SQLite cannot
-- add a column whose default is an expression, so rows from before this migration are given
-- the migration's time here: they are kept a full period from now.
ALTER TABLE ledger_idempotency_keys ADD COLUMN created_at_us INTEGER NOT NULL DEFAULT 0;
UPDATE ledger_idempotency_keys SET created_at_us = CAST(strftime('%s', 'now') AS INTEGER) * 1000000;
CREATE INDEX ledger_idempotency_keys_by_age ON ledger_idempotency_keys (created_at_us);
CREATE INDEX idempotent_answers_by_age ON idempotent_answers (created_at_us);
CREATE INDEX command_journal_by_age ON command_journal (recorded_at_us);
