-- The catalog as ledger data: every version of the rules any node may decide under, published
-- with `planledger catalog publish` (or taken once from the file of the first node to start on
-- an empty database). Nodes decide under the newest version whose effective time has come and
-- pick up a new one without a restart. Versions are never changed or deleted: a rule change is
-- a new version, and the log's events name the fingerprint they were decided under.

CREATE TABLE catalog_versions (
    version          integer PRIMARY KEY CHECK (version > 0),
    fingerprint      text NOT NULL,
    -- The catalog's TOML as published, and the name of the file it came from.
    source           text NOT NULL,
    source_name      text NOT NULL,
    author           text NOT NULL,
    reason           text,
    effective_at_us  integer NOT NULL,
    published_at_us  integer NOT NULL
);

CREATE TRIGGER catalog_versions_no_update
    BEFORE UPDATE ON catalog_versions
    BEGIN SELECT RAISE(ABORT, 'catalog_versions is append-only: UPDATE is not allowed'); END;

CREATE TRIGGER catalog_versions_no_delete
    BEFORE DELETE ON catalog_versions
    BEGIN SELECT RAISE(ABORT, 'catalog_versions is append-only: DELETE is not allowed'); END;
