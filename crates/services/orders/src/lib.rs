//! The orders service: reserve a ticket by creating an order, list and show one's orders,
//! cancel (ARCHITECTURE §3, §5).
//!
//! - [`domain`]: orders and the order JSON.
//! - [`store`]: the SQL of `orders` and the `tickets` replica. The partial unique index
//!   `orders_one_active_per_ticket` makes a second active order for one ticket impossible; its
//!   violation becomes `400 Ticket is already reserved` in exactly one place
//!   ([`store::insert_order`]).
//! - [`handlers`]: the routes under `/api/orders`.
//! - [`events`]: the tickets replica (`ticket.created` / `ticket.updated`, in version order),
//!   expiry (`expiration.complete`) and payment (`payment.created`).

pub mod domain;
pub mod events;
pub mod handlers;
pub mod store;

use std::time::Duration;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_contract::events::{ExpirationComplete, PaymentCreated, TicketCreated, TicketUpdated};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};

/// The migrations of the orders database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// What the orders service needs besides its database.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sessions: SessionKeys,
    /// How long an order reserves its ticket (`ORDER_EXPIRATION_SECONDS`, default 900).
    pub expiration: Duration,
}

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub outbox: Outbox,
    pub sessions: SessionKeys,
    pub expiration: Duration,
}

/// Opens the orders database, starts its relay and consumers on `runtime`, returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "orders");
    let handlers = events::Handlers {
        outbox: outbox.clone(),
    };
    Consumers::new("orders", db.clone(), outbox.clone())
        .on::<TicketCreated>(handlers.clone())
        .on::<TicketUpdated>(handlers.clone())
        .on::<ExpirationComplete>(handlers.clone())
        .on::<PaymentCreated>(handlers)
        .start(runtime)
        .await?;
    let state = AppState {
        db: db.clone(),
        outbox,
        sessions: settings.sessions,
        expiration: settings.expiration,
    };
    Ok(Service {
        name: "orders",
        router: handlers::router(state),
        checks: vec![
            Check::database("orders database", db),
            runtime.bus.readiness(),
        ],
    })
}
