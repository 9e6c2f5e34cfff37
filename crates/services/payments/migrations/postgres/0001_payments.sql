-- The payments service's replica of orders, its payment attempts and payments, and the Stripe
-- webhook events it has handled. Money in cents, timestamps in ms since the Unix epoch (UTC).
CREATE TABLE orders (
    id      TEXT   PRIMARY KEY NOT NULL,
    user_id TEXT   NOT NULL,
    price   BIGINT NOT NULL,
    status  TEXT   NOT NULL,
    version BIGINT NOT NULL
);

-- One row per try to charge an order. At most one attempt per order is in flight or has
-- succeeded (the partial unique index): concurrent pay requests collapse into one charge, and
-- a declined attempt frees the order for another card. The provider idempotency key is
-- '<order id>-<attempt>'.
CREATE TABLE payment_attempts (
    order_id    TEXT   NOT NULL,
    attempt     BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('in_flight', 'succeeded', 'failed')),
    provider_id TEXT,
    failure     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (order_id, attempt)
);
CREATE UNIQUE INDEX payment_attempts_one_open_per_order ON payment_attempts (order_id)
    WHERE state IN ('in_flight', 'succeeded');

-- Money received. 'refund_pending' / 'refunded': a charge for an order that was cancelled
-- meanwhile (or a second charge), given back.
CREATE TABLE payments (
    id          TEXT   PRIMARY KEY NOT NULL,
    order_id    TEXT   NOT NULL,
    provider_id TEXT   NOT NULL UNIQUE,
    amount      BIGINT NOT NULL,
    currency    TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('succeeded', 'refund_pending', 'refunded')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX payments_one_per_order ON payments (order_id) WHERE status = 'succeeded';
CREATE INDEX payments_refund_pending ON payments (status) WHERE status = 'refund_pending';

CREATE TABLE webhook_events (
    id          TEXT   PRIMARY KEY NOT NULL,
    type        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);
