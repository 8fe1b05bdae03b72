-- Which generation of each read model is live, what catalog and log position it reflects.
CREATE TABLE read_models (
    name                TEXT PRIMARY KEY,
    generation          INTEGER NOT NULL,
    catalog_fingerprint TEXT NOT NULL,
    built_at_us         INTEGER NOT NULL
);
