-- Which generation of each read model is live, what catalog and log position it reflects.
CREATE TABLE read_models (
    name                text PRIMARY KEY,
    generation          integer NOT NULL,
    catalog_fingerprint text NOT NULL,
    built_at            timestamptz NOT NULL
);
