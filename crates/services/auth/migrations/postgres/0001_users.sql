-- Users of the marketplace. Emails are stored trimmed and lower-cased, so UNIQUE is
-- case-insensitive. Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);
