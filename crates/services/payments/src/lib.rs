//! The payments service: charge an order through a payment provider, record the payment and
//! announce it (`payment.created`), so that orders completes the order (ARCHITECTURE §6).
//!
//! - [`provider`]: the provider interface — [`Stripe`](provider::Stripe) (PaymentIntents
//!   created and confirmed server-side, `Idempotency-Key` per attempt, safe retries) and the
//!   [`Development`](provider::Development) provider (Stripe's test tokens, no network).
//! - [`charging`]: recording a successful charge exactly once per order, and refunding charges
//!   that land on cancelled or already-paid orders.
//! - [`webhook`]: `Stripe-Signature` verification.
//! - [`store`]: the SQL: the orders replica, attempts (the partial unique index
//!   `payment_attempts_one_open_per_order` collapses concurrent pay requests into one charge),
//!   payments, handled webhook events.
//! - [`handlers`]: `POST /api/payments` and `POST /api/payments/webhook`.
//! - [`events`]: the orders replica (`order.created`, `order.cancelled`, `order.completed`).

pub mod charging;
pub mod events;
pub mod handlers;
pub mod provider;
pub mod store;
pub mod webhook;

use std::sync::Arc;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_contract::events::{OrderCancelled, OrderCompleted, OrderCreated};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::provider::Provider;

/// The migrations of the payments database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// What the payments service needs besides its database.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sessions: SessionKeys,
    pub provider: Provider,
    /// ISO currency code of every charge (`PAYMENT_CURRENCY`, default `usd`).
    pub currency: String,
    /// `STRIPE_WEBHOOK_SECRET`; webhooks are refused without it.
    pub webhook_secret: Option<SecretString>,
    /// How old a webhook signature may be, in seconds (default 300).
    pub webhook_tolerance_secs: i64,
}

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub outbox: Outbox,
    pub sessions: SessionKeys,
    pub provider: Provider,
    pub currency: String,
    pub webhook_secret: Option<SecretString>,
    pub webhook_tolerance_secs: i64,
    pub refunds: Arc<Notify>,
}

/// Opens the payments database, starts its relay, consumers and refund worker on `runtime`.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "payments");
    let refunds = Arc::new(Notify::new());
    let handlers = events::Handlers {
        refunds: refunds.clone(),
    };
    Consumers::new("payments", db.clone(), outbox.clone())
        .notify_on_commit(refunds.clone())
        .on::<OrderCreated>(handlers.clone())
        .on::<OrderCancelled>(handlers.clone())
        .on::<OrderCompleted>(handlers)
        .start(runtime)
        .await?;
    charging::spawn_refunds(
        db.clone(),
        settings.provider.clone(),
        refunds.clone(),
        runtime,
    );
    tracing::info!(provider = settings.provider.name(), currency = %settings.currency, "payments ready");
    let state = AppState {
        db: db.clone(),
        outbox,
        sessions: settings.sessions,
        provider: settings.provider,
        currency: settings.currency,
        webhook_secret: settings.webhook_secret,
        webhook_tolerance_secs: settings.webhook_tolerance_secs,
        refunds,
    };
    Ok(Service {
        name: "payments",
        router: handlers::router(state),
        checks: vec![
            Check::database("payments database", db),
            runtime.bus.readiness(),
        ],
    })
}
