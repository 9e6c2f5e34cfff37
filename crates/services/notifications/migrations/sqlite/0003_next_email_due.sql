-- When the next pending email is due (src/store.rs, `next_email_due`): its retry time or, if
-- later, the end of its lease. The worker asks after every email it queues or tries; while the
-- mail server is down the pending emails pile up, and without this index each answer read
-- every one of them. (SQLite's max() of two values is PostgreSQL's GREATEST.)
CREATE INDEX emails_next_due ON emails (max(lease_until, next_attempt_at)) WHERE status = 'pending';
