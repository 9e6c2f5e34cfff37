-- Retention (src/retention.rs): old notifications, and old emails that are no longer pending,
-- are found by their age.
CREATE INDEX notifications_created ON notifications (created_at);
CREATE INDEX emails_done_created ON emails (created_at) WHERE status <> 'pending';
