-- Every event is hashed now (0014's step): from here on a hash is required.
CREATE TRIGGER ledger_events_no_update
    BEFORE UPDATE ON ledger_events
    BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER ledger_events_hash_required
    BEFORE INSERT ON ledger_events
    WHEN NEW.hash IS NULL OR length(NEW.hash) <> 32
    BEGIN SELECT RAISE(ABORT, 'ledger_events.hash is required: every event is chained'); END;

-- Signed digests (see the PostgreSQL migration 0016).
CREATE TABLE ledger_digests (
    digest_id      INTEGER PRIMARY KEY,
    created_at_us  INTEGER NOT NULL,
    streams        INTEGER NOT NULL,
    root           BLOB NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    signature      BLOB NOT NULL,
    heads          BLOB NOT NULL
);

CREATE TRIGGER ledger_digests_no_update
    BEFORE UPDATE ON ledger_digests
    BEGIN SELECT RAISE(ABORT, 'ledger_digests is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER ledger_digests_no_delete
    BEFORE DELETE ON ledger_digests
    BEGIN SELECT RAISE(ABORT, 'ledger_digests is append-only: DELETE is not allowed'); END;
