-- Durable expiry timers, one per order. Timestamps in ms since the Unix epoch (UTC).
-- state 'pending': fires at fire_at (publishes expiration.complete, then the row is deleted).
-- state 'done': the order was cancelled or completed (possibly before its order.created arrived);
-- the row keeps a late order.created from scheduling a timer. Done rows are purged after a week.
CREATE TABLE timers (
    order_id   TEXT   PRIMARY KEY NOT NULL,
    fire_at    BIGINT NOT NULL,
    state      TEXT   NOT NULL CHECK (state IN ('pending', 'done')),
    updated_at BIGINT NOT NULL
);
CREATE INDEX timers_due ON timers (fire_at) WHERE state = 'pending';
