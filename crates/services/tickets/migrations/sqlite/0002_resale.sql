-- Resale (second wave). The event's details (venue, start in ms since the epoch, face value in
-- cents); whether the owner offers the ticket for sale; the buyer of the order that holds it
-- (who becomes the owner when that order completes); how many times it was sold (its details
-- are fixed after the first sale); its file (an object-store key, content-addressed, and the
-- kind decided by the file's signature).
ALTER TABLE tickets ADD COLUMN venue TEXT;
ALTER TABLE tickets ADD COLUMN starts_at BIGINT;
ALTER TABLE tickets ADD COLUMN face_value BIGINT CHECK (face_value > 0);
ALTER TABLE tickets ADD COLUMN for_sale BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE tickets ADD COLUMN reserved_for TEXT;
ALTER TABLE tickets ADD COLUMN sales BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN file_key TEXT;
ALTER TABLE tickets ADD COLUMN file_kind TEXT CHECK (file_kind IN ('pdf', 'png', 'jpeg'));
ALTER TABLE tickets ADD COLUMN file_size BIGINT;
-- Tickets sold by the first release stay sold to their order (their buyer is not known here).
UPDATE tickets SET for_sale = FALSE, sales = 1 WHERE sold_at IS NOT NULL;

-- The public listing: free tickets on sale, newest first.
DROP INDEX tickets_on_sale;
CREATE INDEX tickets_on_sale ON tickets (id) WHERE order_id IS NULL AND for_sale;
