-- Orders keep the ticket's title, price and version as they were when the order was placed (what
-- the buyer sees and pays), whether the tickets service has confirmed the reservation, the
-- payment the order knows of, and why it was cancelled. SQLite cannot add NOT NULL columns to a
-- table with rows, so the table is rebuilt; existing orders take their terms from the replica
-- and count as confirmed (the tickets service of earlier versions reserved unconditionally).
CREATE TABLE orders_v2 (
    id             TEXT   PRIMARY KEY NOT NULL,
    user_id        TEXT   NOT NULL,
    ticket_id      TEXT   NOT NULL REFERENCES tickets (id),
    status         TEXT   NOT NULL CHECK (status IN ('created', 'cancelled', 'awaiting:payment', 'complete')),
    expires_at     BIGINT NOT NULL,
    version        BIGINT NOT NULL,
    ticket_title   TEXT   NOT NULL,
    ticket_price   BIGINT NOT NULL,
    ticket_version BIGINT NOT NULL,
    reservation    TEXT   NOT NULL CHECK (reservation IN ('pending', 'confirmed')),
    payment_id     TEXT,
    payment_amount BIGINT,
    cancel_reason  TEXT   CHECK (cancel_reason IN ('buyer', 'expired', 'ticket_changed')),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CHECK ((payment_id IS NULL) = (payment_amount IS NULL))
);

INSERT INTO orders_v2 (id, user_id, ticket_id, status, expires_at, version, ticket_title,
                       ticket_price, ticket_version, reservation, created_at, updated_at)
SELECT o.id, o.user_id, o.ticket_id, o.status, o.expires_at, o.version, t.title, t.price,
       t.version, 'confirmed', o.created_at, o.updated_at
FROM orders o JOIN tickets t ON t.id = o.ticket_id;

DROP TABLE orders;
ALTER TABLE orders_v2 RENAME TO orders;

-- No oversell, by construction: at most one active order per ticket.
CREATE UNIQUE INDEX orders_one_active_per_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment', 'complete');
CREATE INDEX orders_by_user ON orders (user_id, id);
