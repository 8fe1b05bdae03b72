-- What a catalog preview needs of the commands the ledger refused: a refused consumption's
-- action and amount (the journal kept its code only), so that a preview can tell which
-- refusals a draft would lift. Null for other commands and for rows written before.
ALTER TABLE command_journal ADD COLUMN action TEXT;
ALTER TABLE command_journal ADD COLUMN amount INTEGER;

-- Every preview of a draft catalog, so that publishing can require one of the same rules made
-- since the newest version (`planledger catalog publish --require-preview`). Append-only.
CREATE TABLE catalog_previews (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     TEXT NOT NULL,
    head_version    INTEGER NOT NULL,
    would_refuse    INTEGER NOT NULL,
    would_allow     INTEGER NOT NULL,
    plans_missing   INTEGER NOT NULL,
    author          TEXT NOT NULL,
    previewed_at_us INTEGER NOT NULL
);
CREATE INDEX catalog_previews_by_fingerprint ON catalog_previews (fingerprint, id);

CREATE TRIGGER catalog_previews_no_update
    BEFORE UPDATE ON catalog_previews
    BEGIN SELECT RAISE(ABORT, 'catalog_previews is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER catalog_previews_no_delete
    BEFORE DELETE ON catalog_previews
    BEGIN SELECT RAISE(ABORT, 'catalog_previews is append-only: DELETE is not allowed'); END;
