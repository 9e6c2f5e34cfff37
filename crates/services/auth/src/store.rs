//! The SQL of the auth service, one named function per statement.

use bt_platform::{Db, Tx, on_db, on_tx, write_on_db};

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

/// The canonical email form of this release (`users.email_form`, see migration 0002).
pub const EMAIL_FORM: i16 = 2;

const INSERT_USER: &str = "INSERT INTO users \
     (id, email, password_hash, created_at, email_form, announced_at) \
     VALUES ($1, $2, $3, $4, 2, $4)";
const LEGACY_EMAILS: &str =
    "SELECT id, email FROM users WHERE email_form < 2 AND id > $1 ORDER BY id LIMIT $2";
const SET_EMAIL_FORM: &str = "UPDATE users SET email = $2, email_form = $3 WHERE id = $1";
const USER_BY_EMAIL: &str = "SELECT id, email, password_hash FROM users WHERE email = $1";

/// Inserts a user, recorded as announced at `created_at`: the caller stages its `user.created`
/// in `tx`. A taken email is a unique violation.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_user(tx: &mut Tx, user: &User, created_at: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_USER)
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(created_at)
        .execute(conn)
        .await
        .map(drop))
}

/// The user with this (normalised) email.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn user_by_email(db: &Db, email: &str) -> sqlx::Result<Option<User>> {
    on_db!(db, |pool| sqlx::query_as::<_, User>(USER_BY_EMAIL)
        .bind(email)
        .fetch_optional(pool)
        .await)
}

/// Up to `limit` users after id `after` whose email is stored in an older form:
/// `(id, email)`, by id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn legacy_emails(
    db: &Db,
    after: &str,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    on_db!(db, |pool| sqlx::query_as(LEGACY_EMAILS)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Stores `email` in `form` for user `id`; a taken email is a unique violation.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_email_form(db: &Db, id: &str, email: &str, form: i16) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(SET_EMAIL_FORM)
        .bind(id)
        .bind(email)
        .bind(form)
        .execute(pool)
        .await
        .map(drop))
}

// The outer `announced_at IS NULL` is re-checked on the row's latest version when PostgreSQL
// waited for another transaction's lock on it: a user is claimed by one transaction only.
const CLAIM_UNANNOUNCED_SQLITE: &str = "UPDATE users SET announced_at = $1 \
     WHERE announced_at IS NULL AND id IN (SELECT id FROM users \
     WHERE announced_at IS NULL AND email_form = 2 ORDER BY id LIMIT $2) RETURNING id, email";
const CLAIM_UNANNOUNCED_POSTGRES: &str = "UPDATE users SET announced_at = $1 \
     WHERE announced_at IS NULL AND id IN (SELECT id FROM users \
     WHERE announced_at IS NULL AND email_form = 2 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING id, email";

/// Marks as announced at `now_millis`, inside `tx`, up to `limit` users (the lowest ids) whose
/// `user.created` was never staged and whose email is in the canonical form; returns them,
/// `(id, email)` by id, for the caller to stage their events in `tx`. Rows another
/// transaction is claiming are skipped on PostgreSQL (SQLite runs one writer at a time).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn claim_unannounced_users(
    tx: &mut Tx,
    now_millis: i64,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    let sql = match tx {
        Tx::Sqlite(..) => CLAIM_UNANNOUNCED_SQLITE,
        Tx::Postgres(_) => CLAIM_UNANNOUNCED_POSTGRES,
    };
    let mut users: Vec<(String, String)> = on_tx!(tx, |conn| sqlx::query_as(sql)
        .bind(now_millis)
        .bind(limit)
        .fetch_all(conn)
        .await)?;
    // RETURNING lists rows in no promised order.
    users.sort_unstable();
    Ok(users)
}

const REVOKE: &str = "INSERT INTO revoked_sessions (sid, user_id, expires_at, revoked_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (sid) DO NOTHING";
const REVOKED_UNTIL: &str = "SELECT sid, expires_at FROM revoked_sessions WHERE expires_at >= $1";
const SWEEP_REVOKED: &str = "DELETE FROM revoked_sessions WHERE expires_at < $1";

/// Records that session `sid` of `user_id` is revoked; true when it was not already.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke_session(
    tx: &mut Tx,
    sid: &str,
    user_id: &str,
    expires_at: i64,
    now_millis: i64,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(REVOKE)
        .bind(sid)
        .bind(user_id)
        .bind(expires_at)
        .bind(now_millis)
        .execute(conn)
        .await
        .map(|done| done.rows_affected() == 1))
}

/// The revoked sessions that expire at `now_secs` or later: `(sid, expires_at)`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoked_sessions(db: &Db, now_secs: i64) -> sqlx::Result<Vec<(String, i64)>> {
    on_db!(db, |pool| sqlx::query_as(REVOKED_UNTIL)
        .bind(now_secs)
        .fetch_all(pool)
        .await)
}

/// Deletes the revocations of sessions that expired before `now_secs`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sweep_revoked_sessions(db: &Db, now_secs: i64) -> sqlx::Result<u64> {
    write_on_db!(db, |pool| sqlx::query(SWEEP_REVOKED)
        .bind(now_secs)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
}
