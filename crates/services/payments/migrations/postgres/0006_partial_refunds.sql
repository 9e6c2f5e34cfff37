-- Partial refunds (docs/ARCHITECTURE.md "Payouts"). Money in cents.

-- How much of a captured charge the provider reports refunded so far (Stripe's
-- `amount_refunded`, from `charge.refunded`), while the charge is still `succeeded`: a partial
-- refund. A `refunded` charge is refunded in full whatever this says.
ALTER TABLE charges ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0
    CHECK (amount_refunded >= 0);

-- A sale may now have several reversals (one per partial refund, and the rest at the full
-- refund); it still has one credit.
ALTER TABLE seller_credits DROP CONSTRAINT seller_credits_order_id_kind_key;
CREATE UNIQUE INDEX seller_credits_one_credit_per_order ON seller_credits (order_id)
    WHERE kind = 'credit';
-- A sale's reversals, read (and locked) with its credit when a refund is applied.
CREATE INDEX seller_credits_reversals_of_order ON seller_credits (order_id)
    WHERE kind = 'reversal';
