-- The buyer is told when money is given back (`payment.refunded`): a new kind of notification.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN ('order_receipt',
    'ticket_sold', 'reservation_expired', 'order_cancelled', 'payment_declined', 'ticket_alert',
    'payment_refunded'));
