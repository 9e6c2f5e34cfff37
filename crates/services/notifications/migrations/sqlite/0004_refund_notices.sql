-- The buyer is told when money is given back (`payment.refunded`): a new kind of notification.
-- SQLite cannot change a CHECK constraint: the notifications are copied into a table with the
-- new one, which then takes the old one's name and indexes.
CREATE TABLE notifications_0004 (
    id         TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('order_receipt', 'ticket_sold', 'reservation_expired', 'order_cancelled', 'payment_declined', 'ticket_alert', 'payment_refunded')),
    title      TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    link       TEXT,
    event_id   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    visible_at BIGINT NOT NULL,
    read_at    BIGINT,
    UNIQUE (event_id, user_id, kind)
);
INSERT INTO notifications_0004 (id, user_id, kind, title, body, link, event_id, created_at,
    visible_at, read_at)
SELECT id, user_id, kind, title, body, link, event_id, created_at, visible_at, read_at
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_0004 RENAME TO notifications;
CREATE INDEX notifications_of_user ON notifications (user_id, id);
CREATE INDEX notifications_unread ON notifications (user_id, visible_at) WHERE read_at IS NULL;
CREATE INDEX notifications_created ON notifications (created_at);
