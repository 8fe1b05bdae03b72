-- One rebuild of a read model at a time across every process: the claim of whoever builds it. A
-- claim is renewed while its rebuild runs and lapses when it is not (the process died); the swap
-- renews it in its own transaction, so a rebuild that lost its claim cannot swap.
CREATE TABLE rebuild_claims (
    model         TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    claimed_at_us INTEGER NOT NULL,
    renewed_at_us INTEGER NOT NULL
);
