-- Sessions logged out in the last half minute (`POST /api/logout`), so that
-- every node closes the session's sockets, not only the node that took the
-- logout: nodes read this table every second. `ended_at` is the database's
-- clock (unix milliseconds), so nodes' clocks need not agree.
CREATE TABLE ended_sessions (
    token_hash BYTEA PRIMARY KEY,
    ended_at   BIGINT NOT NULL
);
CREATE INDEX ended_sessions_by_time ON ended_sessions (ended_at);
