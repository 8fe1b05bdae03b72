-- Snapshots record the fingerprint of the fold that made them (planledger_domain's
-- fold_fingerprint: the fold's version and a hash of what it does), not a number bumped by hand.
-- SQLite cannot add a default to an existing column: the table is remade (snapshots are a cache
-- of the log, so the old ones are dropped), the old column kept for a node not yet upgraded
-- (0: never a version it trusts); '' is no fold's fingerprint.
DROP TABLE ledger_snapshots;
CREATE TABLE ledger_snapshots (
    stream_id            TEXT PRIMARY KEY,
    version              INTEGER NOT NULL CHECK (version >= 1),
    state                TEXT NOT NULL CHECK (json_valid(state)),
    state_schema_version INTEGER NOT NULL DEFAULT 0,
    taken_at_us          INTEGER NOT NULL,
    fold_fingerprint     TEXT NOT NULL DEFAULT ''
);
