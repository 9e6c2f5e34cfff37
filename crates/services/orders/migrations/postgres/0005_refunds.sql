-- Money of the order's payment given back to the buyer so far, in cents (`payment.refunded`:
-- a refund in full or in part). 0 without a payment or a refund.
ALTER TABLE orders ADD COLUMN payment_refunded BIGINT NOT NULL DEFAULT 0;
