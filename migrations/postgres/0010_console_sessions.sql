-- The admin console's sessions: an admin or reader token exchanged for a cookie at login.
-- The cookie's value is never stored, only its SHA-256, so the table cannot be used to sign in;
-- each session also names the token it was made from (its name and the SHA-256 of its secret),
-- so that a token taken out of PLANLEDGER_TOKENS or given a new secret ends its sessions.
-- Times are microseconds since the Unix epoch on both backends, so one statement serves both.

CREATE TABLE console_sessions (
    id_hash       text PRIMARY KEY,
    principal     text NOT NULL,
    token_digest  text NOT NULL,
    -- The synchronizer token every form of the session carries.
    csrf          text NOT NULL,
    created_at_us bigint NOT NULL,
    expires_at_us bigint NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at_us);
