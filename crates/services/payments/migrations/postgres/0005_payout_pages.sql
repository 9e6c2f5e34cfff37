-- A seller's entries are shown a page at a time, newest first by id (UUID v7: the order they
-- were made in), `GET /api/payouts?before=<id>`: each page is a range of this index.
CREATE INDEX seller_credits_of_seller_by_id ON seller_credits (seller_id, id);
-- It replaces the index by creation time, which only the whole-ledger read used.
DROP INDEX seller_credits_of_seller;
