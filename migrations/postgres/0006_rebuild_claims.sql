-- One rebuild of a read model at a time across every node: the claim of whoever builds it. A
-- claim is renewed while its rebuild runs and lapses when it is not (the node died); the swap
-- renews it in its own transaction, so a rebuild that lost its claim cannot swap.
CREATE TABLE rebuild_claims (
    model      text PRIMARY KEY,
    holder     text NOT NULL,
    claimed_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL
);
