-- Resale (second wave): the tickets replica learns each ticket's event start and whether its
-- owner offers it for sale; a ticket is held by at most one *open* order (a completed order no
-- longer holds it: its buyer owns it and may sell it again); orders can be cancelled because
-- the ticket went off sale or its event started before the reservation was confirmed.
ALTER TABLE tickets ADD COLUMN starts_at BIGINT;
ALTER TABLE tickets ADD COLUMN for_sale BOOLEAN NOT NULL DEFAULT TRUE;
-- Tickets sold before this release stay sold: they are off sale.
UPDATE tickets SET for_sale = FALSE
WHERE id IN (SELECT ticket_id FROM orders WHERE status = 'complete');

-- SQLite cannot change a CHECK constraint: the table is rebuilt with the wider one.
CREATE TABLE orders_v3 (
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
    cancel_reason  TEXT   CHECK (cancel_reason IN ('buyer', 'expired', 'ticket_changed', 'not_for_sale', 'event_started')),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CHECK ((payment_id IS NULL) = (payment_amount IS NULL))
);
INSERT INTO orders_v3 SELECT id, user_id, ticket_id, status, expires_at, version, ticket_title,
    ticket_price, ticket_version, reservation, payment_id, payment_amount, cancel_reason,
    created_at, updated_at FROM orders;
DROP TABLE orders;
ALTER TABLE orders_v3 RENAME TO orders;

CREATE UNIQUE INDEX orders_one_open_per_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment');
CREATE INDEX orders_by_user ON orders (user_id, id);
