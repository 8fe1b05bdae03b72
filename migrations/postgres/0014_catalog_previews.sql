-- What a catalog preview needs of the commands the ledger refused: a refused consumption's
-- action and amount (the journal kept its code only), so that a preview can tell which
-- refusals a draft would lift. Null for other commands and for rows written before.
ALTER TABLE command_journal ADD COLUMN action text;
ALTER TABLE command_journal ADD COLUMN amount bigint;

-- Every preview of a draft catalog, so that publishing can require one of the same rules made
-- since the newest version (`planledger catalog publish --require-preview`). Append-only.
CREATE TABLE catalog_previews (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint   text NOT NULL,
    -- The ledger's newest catalog version when the preview was made.
    head_version  bigint NOT NULL,
    would_refuse  bigint NOT NULL,
    would_allow   bigint NOT NULL,
    plans_missing bigint NOT NULL,
    author        text NOT NULL,
    previewed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX catalog_previews_by_fingerprint ON catalog_previews (fingerprint, id);

CREATE TRIGGER catalog_previews_no_update_or_delete
    BEFORE UPDATE OR DELETE ON catalog_previews
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
