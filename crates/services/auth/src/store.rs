//! The SQL of the auth service, one named function per statement.

use bt_platform::{Db, on_db};

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

/// The canonical email form of this release (`users.email_form`, see migration 0002).
pub const EMAIL_FORM: i16 = 2;

const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash, created_at, email_form) \
     VALUES ($1, $2, $3, $4, 2)";
const LEGACY_EMAILS: &str =
    "SELECT id, email FROM users WHERE email_form < 2 AND id > $1 ORDER BY id LIMIT $2";
const SET_EMAIL_FORM: &str = "UPDATE users SET email = $2, email_form = $3 WHERE id = $1";
const USER_BY_EMAIL: &str = "SELECT id, email, password_hash FROM users WHERE email = $1";

/// Inserts a user; a taken email is a unique violation.
#[tracing::instrument(skip_all)]
pub async fn insert_user(db: &Db, user: &User, created_at: i64) -> sqlx::Result<()> {
    on_db!(db, |pool| sqlx::query(INSERT_USER)
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(created_at)
        .execute(pool)
        .await
        .map(drop))
}

/// The user with this (normalised) email.
#[tracing::instrument(skip_all)]
pub async fn user_by_email(db: &Db, email: &str) -> sqlx::Result<Option<User>> {
    on_db!(db, |pool| sqlx::query_as::<_, User>(USER_BY_EMAIL)
        .bind(email)
        .fetch_optional(pool)
        .await)
}

/// Up to `limit` users after id `after` whose email is stored in an older form:
/// `(id, email)`, by id.
#[tracing::instrument(skip_all)]
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
#[tracing::instrument(skip_all)]
pub async fn set_email_form(db: &Db, id: &str, email: &str, form: i16) -> sqlx::Result<()> {
    on_db!(db, |pool| sqlx::query(SET_EMAIL_FORM)
        .bind(id)
        .bind(email)
        .bind(form)
        .execute(pool)
        .await
        .map(drop))
}
