//! The tickets service: list, show, create and update tickets (ARCHITECTURE §3); a ticket
//! reserved by an order cannot be edited.
//!
//! - [`domain`]: [`Title`](domain::Title), [`Price`](domain::Price) and the event details,
//!   parsed once at the edge, the resale cap, and the ticket's changes as pure transitions
//!   (list, edit or relist, reserve at the order's terms or refuse, release, sell to the buyer).
//! - [`store`]: the SQL of the `tickets` and `order_versions` tables; the search compares
//!   `title_folded`, the title folded in Rust when written (`bt_contract::search::fold`), and
//!   [`fold_titles`] fills it in at start for tickets written before it existed.
//! - [`handlers`]: the routes under `/api/tickets`.
//! - [`snapshots`]: the default listing and single tickets kept as serialized responses,
//!   current until the next commit (or another replica's event), with `ETag` / 304.
//! - [`events`]: what the service does on `order.created` (reserve, or refuse with
//!   `ticket.reservation_refused` when the order was placed on other terms), `order.cancelled`
//!   (release) and `order.completed` (sold: the buyer owns it); every change publishes
//!   `ticket.updated`.

pub mod domain;
pub mod events;
pub mod handlers;
pub mod snapshots;
pub mod store;

use std::sync::Arc;

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

/// Shared state of the handlers: one `Arc`, so that a request clones one counter, not one
/// per field (measured in a rush: the clone and drop of the fields were 3% of the orders
/// path).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    pub db: Db,
    pub outbox: Outbox,
    pub sessions: SessionKeys,
    pub settings: Settings,
    pub snapshots: snapshots::Snapshots,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for SessionKeys {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
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

/// Tickets whose titles [`fold_titles`] folds per statement.
pub const FOLD_BATCH: i64 = 500;

/// Folds the titles of the tickets written before `title_folded` existed (migration 0003), in
/// batches of [`FOLD_BATCH`] along the ids, until none is left. Run at start, before the service
/// answers searches; with several replicas each runs it, and a row is folded by whoever gets
/// there first (the same text either way).
pub async fn fold_titles(db: &Db) -> sqlx::Result<()> {
    let (mut after, mut folded) = (String::new(), 0);
    while let Some((last, n)) = store::fold_unfolded_titles(db, &after, FOLD_BATCH).await? {
        after = last;
        folded += n;
    }
    if folded > 0 {
        tracing::info!(
            tickets = folded,
            "titles of earlier tickets folded for the search"
        );
    }
    Ok(())
}

/// Opens the tickets database, folds the titles it has not folded yet ([`fold_titles`]),
/// starts its outbox relay and event consumers on `runtime`, and returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    sessions: SessionKeys,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    fold_titles(&db).await?;
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
    // With NATS, other replicas may write the same database: their changes come as events.
    let shared = matches!(runtime.bus, bt_platform::bus::Bus::Nats(_));
    let snapshots = snapshots::Snapshots::new(outbox.clone(), shared);
    snapshots.follow(runtime).await?;
    let state = AppState(Arc::new(Shared {
        db: db.clone(),
        outbox,
        sessions,
        settings,
        snapshots,
    }));
    Ok(Service {
        name: "tickets",
        router: handlers::router(state),
        // The file store is not a readiness check: while it is down, file requests answer 503
        // and everything else keeps working.
        checks: vec![Check::database("tickets database", db), runtime.readiness()],
    })
}
