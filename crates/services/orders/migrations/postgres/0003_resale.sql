-- Resale (second wave): the tickets replica learns each ticket's event start and whether its
-- owner offers it for sale; a ticket is held by at most one *open* order (a completed order no
-- longer holds it: its buyer owns it and may sell it again); orders can be cancelled because
-- the ticket went off sale or its event started before the reservation was confirmed.
ALTER TABLE tickets
    ADD COLUMN starts_at BIGINT,
    ADD COLUMN for_sale  BOOLEAN NOT NULL DEFAULT TRUE;
-- Tickets sold before this release stay sold: they are off sale.
UPDATE tickets SET for_sale = FALSE
WHERE id IN (SELECT ticket_id FROM orders WHERE status = 'complete');

ALTER TABLE orders
    DROP CONSTRAINT orders_cancel_reason_check,
    ADD CONSTRAINT orders_cancel_reason_check CHECK (cancel_reason IN
        ('buyer', 'expired', 'ticket_changed', 'not_for_sale', 'event_started'));

DROP INDEX orders_one_active_per_ticket;
CREATE UNIQUE INDEX orders_one_open_per_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'awaiting:payment');
