-- Ticket alerts' holds (`ticket.held`): the first subscriber in line may order the ticket alone
-- until held_until, as long as the ticket is still at held_version (any change ends the hold).
ALTER TABLE tickets ADD COLUMN held_for TEXT;
ALTER TABLE tickets ADD COLUMN held_version BIGINT;
ALTER TABLE tickets ADD COLUMN held_until BIGINT;
