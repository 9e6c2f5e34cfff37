-- The event tables every service database has (owned by bt-platform; versions 900001+ so they
-- never collide with a service's own migrations).
-- outbox: events written in the same transaction as the change they announce; the relay
-- publishes pending rows in seq order and stamps sent_at.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    subject    TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    request_id TEXT,
    created_at BIGINT  NOT NULL,
    sent_at    BIGINT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- inbox: (consumer, event id) of every event a handler applied, written in the handler's
-- transaction, so a redelivered event changes nothing.
CREATE TABLE inbox (
    consumer     TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
