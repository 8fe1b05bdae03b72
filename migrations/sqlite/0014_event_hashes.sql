-- The hash chain (docs/audit-chain.md): every event carries the SHA-256 of its canonical form
-- chained to the event before it in its stream, and every stream row the hash of its last
-- event. The events written before this migration are hashed by the step planledger-store runs
-- right after it, in the same transaction; the append-only trigger is dropped for that step
-- only (0015 makes it again).
ALTER TABLE ledger_events ADD COLUMN hash BLOB;
ALTER TABLE ledger_streams ADD COLUMN head BLOB;
DROP TRIGGER ledger_events_no_update;
