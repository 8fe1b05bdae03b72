-- Every event is hashed now (0015's step): from here on a hash is required, so a writer that
-- does not chain (a binary older than the chain, during a rolling deploy) is refused rather
-- than leaving a hole in a stream's chain.
ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_no_update_or_delete;
ALTER TABLE ledger_events ALTER COLUMN hash SET NOT NULL;
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_hash_is_sha256 CHECK (octet_length(hash) = 32);
ALTER TABLE ledger_streams ALTER COLUMN head SET NOT NULL;
ALTER TABLE ledger_streams ADD CONSTRAINT ledger_streams_head_is_sha256 CHECK (octet_length(head) = 32);

-- Signed digests: a Merkle tree over every stream's head, its root signed with the ledger's
-- Ed25519 key. `heads` holds the tree's leaves (stream, version, head; streams by id) so that
-- a proof for one store can be made later, and `planledger verify --digest` can name the
-- stream whose chain no longer matches. Append-only, like the log.
CREATE TABLE ledger_digests (
    digest_id   bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    streams     bigint NOT NULL,
    root        bytea NOT NULL,
    key_id      text NOT NULL,
    public_key  bytea NOT NULL,
    signature   bytea NOT NULL,
    heads       bytea NOT NULL
);

CREATE TRIGGER ledger_digests_no_update_or_delete
    BEFORE UPDATE OR DELETE ON ledger_digests
    FOR EACH ROW EXECUTE FUNCTION ledger_events_are_immutable();
