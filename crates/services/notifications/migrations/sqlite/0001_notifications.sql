-- The notifications service. Timestamps are ms since the Unix epoch (UTC); ids are UUID v7
-- text, so ordering by id is ordering by creation.

-- Who is who: a replica of the auth service's users (`user.created`), to address emails.
CREATE TABLE users (
    id         TEXT   PRIMARY KEY NOT NULL,
    email      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Tickets as the tickets service announces them (`ticket.created` / `ticket.updated`, applied in
-- version order): an alert fires when a ticket starts to match it.
CREATE TABLE tickets (
    id        TEXT    PRIMARY KEY NOT NULL,
    version   BIGINT  NOT NULL,
    title     TEXT    NOT NULL,
    price     BIGINT  NOT NULL,
    user_id   TEXT    NOT NULL,
    order_id  TEXT,
    for_sale  BOOLEAN NOT NULL,
    starts_at BIGINT,
    venue     TEXT
);

-- Orders as placed (`order.created`): who bought what at which price, for receipts and notices.
CREATE TABLE orders (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    ticket_id  TEXT   NOT NULL,
    title      TEXT,
    price      BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Ticket alerts: a user's saved search. Served in id order (the order they were created in).
CREATE TABLE alerts (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    q          TEXT   NOT NULL,
    q_lower    TEXT   NOT NULL,
    max_price  BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX alerts_of_user ON alerts (user_id, id);
-- One alert per search and price limit per user.
CREATE UNIQUE INDEX alerts_one_per_search ON alerts (user_id, q_lower, COALESCE(max_price, -1));

-- In-app notifications. One per (event, user, kind): a redelivered event adds nothing. A
-- notification is shown from visible_at (later than created_at for the subscribers behind the
-- first in line while a ticket alert's hold lasts).
CREATE TABLE notifications (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('order_receipt', 'ticket_sold', 'reservation_expired', 'order_cancelled', 'payment_declined', 'ticket_alert')),
    title      TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    link       TEXT,
    event_id   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    visible_at BIGINT NOT NULL,
    read_at    BIGINT,
    UNIQUE (event_id, user_id, kind)
);
CREATE INDEX notifications_of_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id, visible_at) WHERE read_at IS NULL;

-- The email outbox: one row per (event, recipient, kind), written in the transaction that
-- handles the event; a worker sends due rows under a lease (several replicas never send one
-- row at once), retrying with backoff while the mail server is unreachable.
-- status 'pending' (to send at next_attempt_at), 'sent', 'failed' (refused for good).
CREATE TABLE emails (
    id              TEXT    PRIMARY KEY NOT NULL,
    user_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT  NOT NULL,
    last_error      TEXT,
    sent_to         TEXT,
    created_at      BIGINT  NOT NULL,
    sent_at         BIGINT,
    UNIQUE (event_id, user_id, kind)
);
CREATE INDEX emails_due ON emails (next_attempt_at) WHERE status = 'pending';
-- Alert emails a user received lately (the hourly limit).
CREATE INDEX emails_of_user ON emails (user_id, kind, created_at);
