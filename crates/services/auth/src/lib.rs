//! The auth service: sign up, sign in, sign out and the current user (ARCHITECTURE §3, §7).
//!
//! - [`domain`]: [`Email`](domain::Email) and [`Password`](domain::Password), parsed once at the
//!   edge, and argon2id hashing.
//! - [`store`]: the SQL of the `users` table.
//! - [`handlers`]: the four routes under `/api/users`.
//!
//! [`service`] opens the database, applies the migrations and returns the mountable
//! [`Service`](bt_platform::Service).

pub mod domain;
pub mod handlers;
pub mod store;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_platform::db::{DbOptions, OpenError};
use bt_platform::rate_limit::RateLimiter;
use bt_platform::{Check, Db, Migrations, Service};

/// The migrations of the auth database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// What the auth service needs besides its database.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sessions: SessionKeys,
    /// Sign-in and sign-up attempts per client address.
    pub rate_limit: RateLimiter,
}

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub sessions: SessionKeys,
    pub rate_limit: RateLimiter,
}

/// Opens the auth database at `database_url`, migrates it and returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
) -> Result<Service, OpenError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    Ok(service_on(db, settings))
}

/// The service on an already opened and migrated database.
pub fn service_on(db: Db, settings: Settings) -> Service {
    let state = AppState {
        db: db.clone(),
        sessions: settings.sessions,
        rate_limit: settings.rate_limit,
    };
    Service {
        name: "auth",
        router: handlers::router(state),
        checks: vec![Check::database("auth database", db)],
    }
}
