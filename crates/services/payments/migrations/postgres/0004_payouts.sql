-- Seller payouts (docs/ARCHITECTURE.md "Payouts"). Money in cents, timestamps in ms since the
-- Unix epoch (UTC).

-- The replica of orders keeps what order.created tells about the ticket since this release:
-- the ticket, its title, its seller (who is credited when the order is paid) and when its
-- event starts (when the credit becomes available). NULL for orders replicated before.
ALTER TABLE orders ADD COLUMN ticket_id TEXT, ADD COLUMN title TEXT, ADD COLUMN seller_id TEXT,
    ADD COLUMN starts_at BIGINT;

-- The sellers' ledger. A 'credit' is written in the transaction that records the capture of
-- the charge that completed the order (one per order); a 'reversal' (negative amounts) when a
-- paid-out credit's charge is refunded (one per order). gross = amount + fee on every row.
-- A batch of entries paid by one transfer shares its transfer_key (the provider idempotency
-- key, '<credit id>-<attempt>'), which is written before the provider is called.
CREATE TABLE seller_credits (
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
    UNIQUE (order_id, kind),
    CHECK (gross = amount + fee)
);
CREATE INDEX seller_credits_of_seller ON seller_credits (seller_id, created_at);
CREATE INDEX seller_credits_open ON seller_credits (status, available_at)
    WHERE status IN ('pending', 'available', 'transferring');
CREATE INDEX seller_credits_by_transfer ON seller_credits (transfer_key)
    WHERE transfer_key IS NOT NULL;

-- Where a seller is paid: a connected account at the provider, created once per seller. Its
-- status is the provider's answer, cached (checked by the payout worker, and updated by the
-- account.updated webhook).
CREATE TABLE payout_accounts (
    user_id             TEXT   PRIMARY KEY NOT NULL,
    provider_account_id TEXT   NOT NULL UNIQUE,
    status              TEXT   NOT NULL CHECK (status IN ('onboarding', 'restricted', 'enabled')),
    checked_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
