-- Who sold a ticket last: the owner before its last sale (`tickets::domain::Ticket::sell`).
-- A ticket sold without its file waits for that seller to upload it (the buyer cannot: only
-- the seller has it), and `GET /api/tickets/undelivered` lists a seller's such tickets from
-- the index below. Tickets sold before this column have none: their sellers are not known
-- here.
ALTER TABLE tickets ADD COLUMN sold_by TEXT;
CREATE INDEX tickets_undelivered ON tickets (sold_by) WHERE sold_by IS NOT NULL AND file_key IS NULL;
