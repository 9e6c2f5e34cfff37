-- When the order expires (ms since the Unix epoch, UTC), so that an order past its window is
-- refused even before its cancellation arrives. NULL for orders replicated before this column.
ALTER TABLE orders ADD COLUMN expires_at BIGINT;
