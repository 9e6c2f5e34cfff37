//! The auth service: sign up, sign in, sign out and the current user (ARCHITECTURE §3, §7).
//!
//! - [`domain`]: [`Email`](domain::Email) and [`Password`](domain::Password), parsed once at the
//!   edge, and argon2id hashing.
//! - [`hashing`]: password hashing on the blocking pool, a bounded number at a time.
//! - [`store`]: the SQL of the `users` table.
//! - [`handlers`]: the four routes under `/api/users`.
//!
//! [`service`] opens the database, applies the migrations and returns the mountable
//! [`Service`](bt_platform::Service).

pub mod domain;
pub mod handlers;
pub mod hashing;
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

/// The memory password hashing may take at one time (argon2id takes 19 MiB per hash): the
/// hashes running at once are the cores, or fewer when this says so.
pub const HASHING_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub sessions: SessionKeys,
    pub rate_limit: RateLimiter,
    pub hasher: hashing::Hasher,
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
        hasher: hashing::Hasher::for_this_machine(HASHING_MEMORY_BUDGET),
    };
    Service {
        name: "auth",
        router: handlers::router(state),
        checks: vec![Check::database("auth database", db)],
    }
}
