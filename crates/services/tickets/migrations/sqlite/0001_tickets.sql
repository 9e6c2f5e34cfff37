-- Tickets for sale. Money in cents, timestamps in ms since the Unix epoch (UTC).
-- order_id: the order that reserves the ticket (NULL when on sale); sold_at: set when that order
-- was paid (the ticket stays off the market). version: +1 on every change, for replicas.
CREATE TABLE tickets (
    id         TEXT   PRIMARY KEY NOT NULL,
    title      TEXT   NOT NULL,
    price      BIGINT NOT NULL CHECK (price > 0),
    user_id    TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    order_id   TEXT,
    sold_at    BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The public listing: tickets on sale, newest first (ids are UUID v7, so id order is time order).
CREATE INDEX tickets_on_sale ON tickets (id) WHERE order_id IS NULL;
CREATE INDEX tickets_by_user ON tickets (user_id, id);

-- The latest version seen of each order that touched a ticket, so that order events are applied
-- in order (order.cancelled never before its order.created).
CREATE TABLE order_versions (
    order_id TEXT   PRIMARY KEY NOT NULL,
    version  BIGINT NOT NULL
);
