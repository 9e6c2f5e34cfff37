-- Charges: one row per attempt to pay an order, authorised first and captured only once the
-- orders service completed the order with it (or released when it did not). They replace
-- payment_attempts + payments, whose rows are carried over: attempts keep their numbers (so the
-- idempotency key '<order id>-<attempt>' of a new attempt is never an old one), payments keep
-- their ids. Money in cents, timestamps in ms since the Unix epoch (UTC).
CREATE TABLE charges (
    id          TEXT   PRIMARY KEY NOT NULL,
    order_id    TEXT   NOT NULL,
    attempt     BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('started', 'declined', 'authorized', 'capturing',
                    'succeeded', 'capture_failed', 'voiding', 'voided', 'refunding', 'refunded')),
    amount      BIGINT NOT NULL,
    currency    TEXT   NOT NULL,
    -- The card token, kept only while 'started', to replay the same request after a crash.
    token       TEXT,
    provider_id TEXT   UNIQUE,
    failure     TEXT,
    -- Until when the process that sent a 'started' charge is presumed to be working on it.
    lease_until BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (order_id, attempt)
);
-- At most one charge per order holds (or may hold) money: concurrent pay requests collapse
-- into one charge; a declined or released one frees the order.
CREATE UNIQUE INDEX charges_one_active_per_order ON charges (order_id)
    WHERE state IN ('started', 'authorized', 'capturing', 'succeeded', 'capture_failed');
CREATE INDEX charges_to_settle ON charges (updated_at)
    WHERE state IN ('capturing', 'voiding', 'refunding');
CREATE INDEX charges_started ON charges (lease_until) WHERE state = 'started';

INSERT INTO charges (id, order_id, attempt, state, amount, currency, token, provider_id, failure,
                     lease_until, created_at, updated_at)
SELECT COALESCE(p.id, 'attempt-' || a.order_id || '-' || a.attempt),
       a.order_id,
       a.attempt,
       CASE p.status WHEN 'succeeded' THEN 'succeeded' WHEN 'refund_pending' THEN 'refunding'
                     WHEN 'refunded' THEN 'refunded' ELSE 'declined' END,
       COALESCE(p.amount, o.price, 0),
       COALESCE(p.currency, 'usd'),
       NULL,
       COALESCE(p.provider_id, a.provider_id),
       CASE WHEN p.id IS NULL THEN COALESCE(a.failure,
           'outcome unknown at the upgrade; a webhook records a charge if one happened') END,
       0,
       a.created_at,
       a.updated_at
FROM payment_attempts a
LEFT JOIN payments p ON p.provider_id = a.provider_id
LEFT JOIN orders o ON o.id = a.order_id;

INSERT INTO charges (id, order_id, attempt, state, amount, currency, token, provider_id, failure,
                     lease_until, created_at, updated_at)
SELECT p.id,
       p.order_id,
       COALESCE((SELECT MAX(a.attempt) FROM payment_attempts a WHERE a.order_id = p.order_id), 0)
           + ROW_NUMBER() OVER (PARTITION BY p.order_id ORDER BY p.created_at, p.id),
       CASE p.status WHEN 'succeeded' THEN 'succeeded' WHEN 'refund_pending' THEN 'refunding'
                     ELSE 'refunded' END,
       p.amount,
       p.currency,
       NULL,
       p.provider_id,
       NULL,
       0,
       p.created_at,
       p.updated_at
FROM payments p
WHERE NOT EXISTS (SELECT 1 FROM payment_attempts a WHERE a.provider_id = p.provider_id);

DROP TABLE payment_attempts;
DROP TABLE payments;

-- The replica of orders learns why an order was cancelled and which charge completed it.
ALTER TABLE orders ADD COLUMN cancel_reason TEXT, ADD COLUMN completed_by TEXT;
UPDATE orders SET completed_by = (SELECT c.id FROM charges c WHERE c.order_id = orders.id
                                   AND c.state = 'succeeded')
WHERE status = 'complete';
-- Orders replicated before expires_at was kept are long past any payment window.
UPDATE orders SET expires_at = 0 WHERE expires_at IS NULL;
ALTER TABLE orders ALTER COLUMN expires_at SET NOT NULL;
