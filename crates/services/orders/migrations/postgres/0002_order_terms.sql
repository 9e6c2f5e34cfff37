-- Orders keep the ticket's title, price and version as they were when the order was placed (what
-- the buyer sees and pays), whether the tickets service has confirmed the reservation, the
-- payment the order knows of, and why it was cancelled. Existing orders take their terms from the
-- replica and count as confirmed (the tickets service of earlier versions reserved
-- unconditionally).
ALTER TABLE orders
    ADD COLUMN ticket_title   TEXT,
    ADD COLUMN ticket_price   BIGINT,
    ADD COLUMN ticket_version BIGINT,
    ADD COLUMN reservation    TEXT NOT NULL DEFAULT 'confirmed'
        CHECK (reservation IN ('pending', 'confirmed')),
    ADD COLUMN payment_id     TEXT,
    ADD COLUMN payment_amount BIGINT,
    ADD COLUMN cancel_reason  TEXT CHECK (cancel_reason IN ('buyer', 'expired', 'ticket_changed')),
    ADD CONSTRAINT orders_payment_whole CHECK ((payment_id IS NULL) = (payment_amount IS NULL));

UPDATE orders o
SET ticket_title = t.title, ticket_price = t.price, ticket_version = t.version
FROM tickets t
WHERE t.id = o.ticket_id;

ALTER TABLE orders
    ALTER COLUMN ticket_title SET NOT NULL,
    ALTER COLUMN ticket_price SET NOT NULL,
    ALTER COLUMN ticket_version SET NOT NULL,
    ALTER COLUMN reservation DROP DEFAULT;
