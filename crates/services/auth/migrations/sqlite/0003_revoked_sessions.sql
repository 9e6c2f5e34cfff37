-- Sessions signed out before they expired (their tokens are refused). Kept until the token
-- would have expired anyway (expires_at, seconds since the epoch), then swept out. Each
-- revocation is also published as `session.revoked` (through the outbox) so that every other
-- process refuses the token too.
CREATE TABLE revoked_sessions (
    sid        TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at);
