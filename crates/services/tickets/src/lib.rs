//! The tickets service: list, show, create and update tickets (ARCHITECTURE §3); a ticket
//! reserved by an order cannot be edited.
//!
//! - [`domain`]: [`Title`](domain::Title), [`Price`](domain::Price) and the event details,
//!   parsed once at the edge, the resale cap, and the ticket's changes as pure transitions
//!   (list, edit or relist, reserve at the order's terms or refuse, release, sell to the buyer).
//! - [`store`]: the SQL of the `tickets` and `order_versions` tables.
//! - [`handlers`]: the routes under `/api/tickets`.
//! - [`events`]: what the service does on `order.created` (reserve, or refuse with
//!   `ticket.reservation_refused` when the order was placed on other terms), `order.cancelled`
//!   (release) and `order.completed` (sold: the buyer owns it); every change publishes
//!   `ticket.updated`.

pub mod domain;
pub mod events;
pub mod handlers;
pub mod store;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::files::FileStore;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};

/// The migrations of the tickets database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub outbox: Outbox,
    pub sessions: SessionKeys,
    pub settings: Settings,
}

/// What an operator configures in the tickets service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `RESALE_PRICE_CAP_PERCENT`: how far above its face value a ticket may be sold.
    pub resale_cap: domain::ResaleCap,
    /// Where ticket files are kept: `<data-dir>/files` in `up`, `FILE_STORE_URL` in `serve`.
    pub files: FileStore,
}

impl Default for Settings {
    /// The default cap, files in memory (for tests).
    fn default() -> Self {
        Self {
            resale_cap: domain::ResaleCap::default(),
            files: FileStore::memory(),
        }
    }
}

/// Opens the tickets database, starts its outbox relay and event consumers on `runtime`, and
/// returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    sessions: SessionKeys,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "tickets");
    let handlers = events::Handlers {
        outbox: outbox.clone(),
    };
    Consumers::new("tickets", db.clone(), outbox.clone())
        .on::<bt_contract::events::OrderCreated>(handlers.clone())
        .on::<bt_contract::events::OrderCancelled>(handlers.clone())
        .on::<bt_contract::events::OrderCompleted>(handlers)
        .start(runtime)
        .await?;
    let state = AppState {
        db: db.clone(),
        outbox,
        sessions,
        settings,
    };
    Ok(Service {
        name: "tickets",
        router: handlers::router(state),
        // The file store is not a readiness check: while it is down, file requests answer 503
        // and everything else keeps working.
        checks: vec![Check::database("tickets database", db), runtime.readiness()],
    })
}
