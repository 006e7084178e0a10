-- Accounts and login sessions shared by the servers of a cluster: the
-- PostgreSQL counterpart of chat.db's `users` and `sessions`. Dates the
-- servers compare (issue, expiry) are unix milliseconds, as their clocks give
-- them (server/src/clock.rs).

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Names are unique ignoring letter case, as in chat.db. The index, not a
-- lookup before the insert, is what settles two servers registering one name
-- at once.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

-- Only the SHA-256 of a token is stored: a copy of the table opens no session.
-- `seq` orders a user's sessions by issue, the order the per-user cap ends
-- them in; the servers' clocks need not agree for it.
CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, seq);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
