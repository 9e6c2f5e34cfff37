-- Which canonical form an email is stored in: 1 = trimmed and lower-cased (the first
-- release), 2 = NFKC, lower-cased, IDNA domain (auth::domain::Email). At start the service
-- rewrites form-1 rows to form 2; a row whose new form is another account's stays at 1 and is
-- reported until an operator resolves it.
ALTER TABLE users ADD COLUMN email_form SMALLINT NOT NULL DEFAULT 1;
