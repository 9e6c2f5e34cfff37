-- Partial refunds (docs/ARCHITECTURE.md "Payouts"). Money in cents.

-- How much of a captured charge the provider reports refunded so far (Stripe's
-- `amount_refunded`, from `charge.refunded`), while the charge is still `succeeded`: a partial
-- refund. A `refunded` charge is refunded in full whatever this says.
ALTER TABLE charges ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0
    CHECK (amount_refunded >= 0);

-- A sale may now have several reversals (one per partial refund, and the rest at the full
-- refund); it still has one credit. SQLite cannot drop a table constraint: the ledger is
-- copied into a table without UNIQUE (order_id, kind), which then takes its name and indexes.
CREATE TABLE seller_credits_0006 (
    id                TEXT   PRIMARY KEY NOT NULL,
    seller_id         TEXT   NOT NULL,
    order_id          TEXT   NOT NULL,
    kind              TEXT   NOT NULL CHECK (kind IN ('credit', 'reversal')),
    payment_id        TEXT   NOT NULL,
    ticket_id         TEXT,
    title             TEXT,
    gross             BIGINT NOT NULL,
    fee               BIGINT NOT NULL,
    amount            BIGINT NOT NULL,
    currency          TEXT   NOT NULL,
    status            TEXT   NOT NULL CHECK (status IN ('pending', 'available', 'transferring',
                          'paid', 'reversed')),
    available_at      BIGINT NOT NULL,
    transfer_key      TEXT,
    transfer_attempts BIGINT NOT NULL,
    transfer_id       TEXT,
    -- Until when the worker that claimed a 'transferring' batch is presumed to be on it.
    lease_until       BIGINT NOT NULL,
    failure           TEXT,
    paid_at           BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK (gross = amount + fee)
);
INSERT INTO seller_credits_0006 (id, seller_id, order_id, kind, payment_id, ticket_id, title,
    gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts,
    transfer_id, lease_until, failure, paid_at, created_at, updated_at)
SELECT id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount,
    currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until,
    failure, paid_at, created_at, updated_at
FROM seller_credits;
DROP TABLE seller_credits;
ALTER TABLE seller_credits_0006 RENAME TO seller_credits;
CREATE INDEX seller_credits_open ON seller_credits (status, available_at)
    WHERE status IN ('pending', 'available', 'transferring');
CREATE INDEX seller_credits_by_transfer ON seller_credits (transfer_key)
    WHERE transfer_key IS NOT NULL;
CREATE INDEX seller_credits_of_seller_by_id ON seller_credits (seller_id, id);
CREATE UNIQUE INDEX seller_credits_one_credit_per_order ON seller_credits (order_id)
    WHERE kind = 'credit';
-- A sale's reversals, read with its credit when a refund is applied.
CREATE INDEX seller_credits_reversals_of_order ON seller_credits (order_id)
    WHERE kind = 'reversal';
