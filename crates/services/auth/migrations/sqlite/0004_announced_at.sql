-- When the user's `user.created` event was staged in the outbox (milliseconds since the Unix
-- epoch). Sign-up sets it in the transaction that stages the event; NULL marks a user who
-- signed up before auth published `user.created`, whom the service announces at start (one
-- batch per transaction, each user once) once their email is in the canonical form. The partial
-- index keeps that look-up cheap when (as almost always) nobody is left.
ALTER TABLE users ADD COLUMN announced_at BIGINT;
CREATE INDEX users_unannounced ON users (id) WHERE announced_at IS NULL;
