-- The client_ids of messages retention forgot, kept CLIENT_ID_MEMORY (a
-- day) after the forget: a resend of one is acked as the original, not
-- stored a second time.
CREATE TABLE forgotten_client_ids (
    room         text COLLATE "C" NOT NULL,
    sender       text NOT NULL,
    client_id    text NOT NULL,
    seq          bigint NOT NULL,
    id           bigint NOT NULL,
    sent_ms      bigint NOT NULL,
    forgotten_ms bigint NOT NULL,
    PRIMARY KEY (room, sender, client_id)
);

-- For forgetting them in turn.
CREATE INDEX forgotten_client_ids_age ON forgotten_client_ids (forgotten_ms);
