-- One-time invites of `--invite-only` (`chat-server admin invite`): kept as
-- the SHA-256 of the token, as sessions are; times in unix milliseconds. A
-- registration deletes its invite in the transaction that creates the
-- account, so of two servers given one invite at once, one registers.
CREATE TABLE invites (
    token_hash BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
