//! The SQL of the auth service, one named function per statement.

use bt_platform::{Db, on_db};

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

const INSERT_USER: &str =
    "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)";
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
