-- The catalog as ledger data: every version of the rules any node may decide under, published
-- with `planledger catalog publish` (or taken once from the file of the first node to start on
-- an empty database). Nodes decide under the newest version whose effective time has come and
-- pick up a new one without a restart. Versions are never changed or deleted: a rule change is
-- a new version, and the log's events name the fingerprint they were decided under.

CREATE TABLE catalog_versions (
    version       bigint PRIMARY KEY CHECK (version > 0),
    fingerprint   text NOT NULL,
    -- The catalog's TOML as published, and the name of the file it came from.
    source        text NOT NULL,
    source_name   text NOT NULL,
    author        text NOT NULL,
    reason        text,
    effective_at  timestamptz NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);

-- Refuses any change of a row of the table it guards: for append-only tables from here on
-- (ledger_events keeps the function of its own it was created with).
CREATE FUNCTION ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER catalog_versions_no_update_or_delete
    BEFORE UPDATE OR DELETE ON catalog_versions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE TRIGGER catalog_versions_no_truncate
    BEFORE TRUNCATE ON catalog_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
