-- Snapshots record the fingerprint of the fold that made them (planledger_domain's
-- fold_fingerprint: the fold's version and a hash of what it does), not a number bumped by hand.
-- The old column stays, defaulting to 0, so that a node not yet upgraded neither fails on this
-- table nor trusts a snapshot a newer fold made (it expects its own version, never 0); the new
-- column defaults to '', which no fold's fingerprint is, so the reverse holds too.
ALTER TABLE ledger_snapshots ALTER COLUMN state_schema_version SET DEFAULT 0;
ALTER TABLE ledger_snapshots ADD COLUMN fold_fingerprint text NOT NULL DEFAULT '';
