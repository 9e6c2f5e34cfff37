-- The orders service's replica of tickets (from ticket.created / ticket.updated, applied in
-- version order) and its orders. Money in cents, timestamps in ms since the Unix epoch (UTC).
CREATE TABLE tickets (
    id      TEXT   PRIMARY KEY NOT NULL,
    title   TEXT   NOT NULL,
    price   BIGINT NOT NULL,
    user_id TEXT   NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE orders (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    ticket_id  TEXT   NOT NULL REFERENCES tickets (id),
    status     TEXT   NOT NULL CHECK (status IN ('created', 'cancelled', 'awaiting:payment', 'complete')),
    expires_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- No oversell, by construction: at most one active order per ticket.
CREATE UNIQUE INDEX orders_one_active_per_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment', 'complete');
CREATE INDEX orders_by_user ON orders (user_id, id);
