-- The hash chain (docs/audit-chain.md): every event carries the SHA-256 of its canonical form
-- chained to the event before it in its stream, and every stream row the hash of its last
-- event, which an append checks as it checks the version. The events written before this
-- migration are hashed by the step planledger-store runs right after it, in the same
-- transaction; the append-only trigger is off for that step only (0016 turns it on again).
ALTER TABLE ledger_events ADD COLUMN hash bytea;
ALTER TABLE ledger_streams ADD COLUMN head bytea;
ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_or_delete;
