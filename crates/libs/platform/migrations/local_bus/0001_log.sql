-- The durable event log of the embedded default's in-process bus (one SQLite file).
-- events: every published event once (id de-duplicates, like Nats-Msg-Id).
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    subject      TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    request_id   TEXT,
    published_at BIGINT  NOT NULL
);
CREATE INDEX events_subject_seq ON events (subject, seq);

-- consumers: durable consumers, each with one subject and the last event handed out.
CREATE TABLE consumers (
    name    TEXT    PRIMARY KEY NOT NULL,
    subject TEXT    NOT NULL,
    cursor  INTEGER NOT NULL
);

-- pending: handed out and not acknowledged yet; redelivered when due_at passes.
CREATE TABLE pending (
    consumer  TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    due_at    BIGINT  NOT NULL,
    PRIMARY KEY (consumer, seq)
);
CREATE INDEX pending_due ON pending (consumer, due_at);
