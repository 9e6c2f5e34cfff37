//! The auth service: sign up, sign in, sign out and the current user (ARCHITECTURE §3, §7).
//!
//! - [`domain`]: [`Email`](domain::Email) and [`Password`](domain::Password), parsed once at the
//!   edge, and argon2id hashing.
//! - [`hashing`]: password hashing on the blocking pool, a bounded number at a time.
//! - [`store`]: the SQL of the `users` and `revoked_sessions` tables.
//! - [`handlers`]: the four routes under `/api/users`; signing out revokes the session (kept
//!   in `revoked_sessions`, published as `session.revoked`).
//! - [`announce`]: publishes, once, `user.created` for the users who signed up before sign-up
//!   published it.
//!
//! [`service`] opens the database, applies the migrations and returns the mountable
//! [`Service`](bt_platform::Service).

pub mod announce;
pub mod domain;
pub mod handlers;
pub mod hashing;
pub mod store;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_platform::bus::Outbox;
use bt_platform::db::DbOptions;
use bt_platform::rate_limit::RateLimiter;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};

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
    pub outbox: Outbox,
}

/// Opens the auth database at `database_url`, migrates it, loads the revoked sessions into
/// the session keys, starts the outbox relay and the `user.created` backfill on `runtime` and
/// returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    if let Err(err) = canonicalise_stored_emails(&db).await {
        // The accounts keep working under their old spelling; the next start retries.
        tracing::error!(%err, "cannot bring stored emails to the canonical form");
    }
    load_revoked_sessions(&db, &settings.sessions).await?;
    spawn_revocation_sweeper(db.clone(), runtime);
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "auth");
    // After the emails are canonical: the events carry the canonical form.
    announce::spawn(db.clone(), outbox.clone(), runtime);
    Ok(service_on(db, settings, outbox))
}

/// Puts the revoked sessions that have not expired into `sessions`, so that their tokens stay
/// refused after a restart.
pub async fn load_revoked_sessions(db: &Db, sessions: &SessionKeys) -> sqlx::Result<usize> {
    let now = chrono::Utc::now().timestamp();
    let revoked = store::revoked_sessions(db, now).await?;
    for (sid, expires_at) in &revoked {
        sessions.revoke(sid, *expires_at);
    }
    Ok(revoked.len())
}

/// Deletes, hourly, the revocations of sessions that have expired anyway.
fn spawn_revocation_sweeper(db: Db, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let now = chrono::Utc::now().timestamp();
            match store::sweep_revoked_sessions(&db, now).await {
                Ok(0) => {}
                Ok(swept) => tracing::debug!(swept, "expired revocations swept"),
                Err(err) => tracing::warn!(%err, "cannot sweep expired revocations"),
            }
        }
    });
}

/// What [`canonicalise_stored_emails`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Canonicalised {
    /// Rows now in the canonical form.
    pub rewritten: usize,
    /// Rows left as they were: the address is not valid any more, or its canonical form is
    /// another account's (each is logged at WARN with what to do).
    pub left: usize,
}

/// Brings emails stored by an earlier release (trimmed and lower-cased only) to the canonical
/// form of [`domain::Email`], so that look-alike spellings are one account for them too.
/// Idempotent; only rows still in the old form are read.
pub async fn canonicalise_stored_emails(db: &Db) -> sqlx::Result<Canonicalised> {
    let mut done = Canonicalised::default();
    let mut after = String::new();
    loop {
        let rows = store::legacy_emails(db, &after, 500).await?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = last.clone();
        for (id, stored) in rows {
            let Ok(email) = domain::Email::parse(Some(stored.clone())) else {
                tracing::warn!(
                    user = %id,
                    "a stored email is not valid under the current rules (invisible or \
                     IDNA-refused characters): the account cannot sign in until an operator \
                     corrects users.email and sets email_form = 2"
                );
                done.left += 1;
                continue;
            };
            match store::set_email_form(db, &id, email.as_str(), store::EMAIL_FORM).await {
                Ok(()) => done.rewritten += 1,
                Err(err) if bt_platform::db::is_unique_violation(&err) => {
                    tracing::warn!(
                        user = %id,
                        "a stored email is the canonical spelling of another account's: both \
                         stay as they are; an operator merges or renames one, then sets \
                         email_form = 2"
                    );
                    done.left += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
    if done != Canonicalised::default() {
        tracing::info!(
            rewritten = done.rewritten,
            left = done.left,
            "stored emails brought to the canonical form"
        );
    }
    Ok(done)
}

/// The service on an already opened and migrated database.
pub fn service_on(db: Db, settings: Settings, outbox: Outbox) -> Service {
    let state = AppState {
        db: db.clone(),
        sessions: settings.sessions,
        rate_limit: settings.rate_limit,
        hasher: hashing::Hasher::for_this_machine(HASHING_MEMORY_BUDGET),
        outbox,
    };
    Service {
        name: "auth",
        router: handlers::router(state),
        checks: vec![Check::database("auth database", db)],
    }
}
