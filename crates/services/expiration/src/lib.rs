//! The expiration service: a durable timer per order that publishes `expiration.complete` when
//! the order's payment window closes (ARCHITECTURE §4, §5).
//!
//! - [`store`]: the `timers` table.
//! - [`events`]: `order.created` schedules a timer; `order.cancelled` / `order.completed` drop it.
//! - [`scheduler`]: sleeps until the earliest due timer (woken when a new one is scheduled),
//!   then claims due timers, publishes `expiration.complete` through the outbox and deletes them
//!   in one transaction. Replicas never fire one timer twice: on PostgreSQL due rows are claimed
//!   with `FOR UPDATE SKIP LOCKED`; on SQLite `BEGIN IMMEDIATE` serialises writers.
//!
//! The service has no public routes: only `/healthz`, `/readyz` and `/metrics`.

pub mod events;
pub mod scheduler;
pub mod store;

use std::sync::Arc;

use axum::Router;
use bt_contract::events::{OrderCancelled, OrderCompleted, OrderCreated};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};
use tokio::sync::Notify;

/// The migrations of the expiration database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// Opens the expiration database and starts its relay, consumers and scheduler on `runtime`.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "expiration");
    let wake = Arc::new(Notify::new());
    let handlers = events::Handlers;
    Consumers::new("expiration", db.clone(), outbox.clone())
        .notify_on_commit(wake.clone())
        .on::<OrderCreated>(handlers.clone())
        .on::<OrderCancelled>(handlers.clone())
        .on::<OrderCompleted>(handlers)
        .start(runtime)
        .await?;
    scheduler::spawn(db.clone(), outbox, wake, runtime);
    Ok(Service {
        name: "expiration",
        router: Router::new(),
        checks: vec![
            Check::database("expiration database", db),
            runtime.readiness(),
        ],
    })
}
