-- The room log of chat-rooms (PgLog), shared by every node of a cluster.
-- Applied by PgLog::open with its own migrations table, _chat_log_migrations,
-- so the server's migrator can share the database.

-- Facts about this store: 'epoch' names its history (made once, by the
-- first node to open the database).
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per room: the row whose lock serialises every append to the room
-- across the nodes, and the newest seq ever given (never lowered, so a seq is
-- never reused even after retention removed its message). COLLATE "C": rooms
-- are listed in byte order, as SQLite does.
CREATE TABLE rooms (
    name             text COLLATE "C" PRIMARY KEY,
    last_seq         bigint NOT NULL,
    -- When its newest message was sent, in ms since the Unix epoch.
    last_activity_ms bigint
);

CREATE TABLE messages (
    room      text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    id        bigint GENERATED ALWAYS AS IDENTITY,
    sender    text NOT NULL,
    client_id text,
    -- UTF-8 bytes rather than text: a text column cannot hold U+0000, and a
    -- message is stored exactly as sent.
    text      bytea NOT NULL,
    -- When it was sent, in ms since the Unix epoch.
    sent_ms   bigint NOT NULL,
    PRIMARY KEY (room, seq)
);

-- A resend with the same client_id finds the first message instead of
-- storing a second one.
CREATE UNIQUE INDEX messages_client_id
    ON messages (room, sender, client_id) WHERE client_id IS NOT NULL;

-- For retention by age.
CREATE INDEX messages_age ON messages (sent_ms);
