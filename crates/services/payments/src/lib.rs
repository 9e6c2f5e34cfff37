//! The payments service: pay an order through a payment provider, so that the orders service
//! completes it (ARCHITECTURE §6, and `docs/ARCHITECTURE.md` "Payments").
//!
//! - [`domain`]: the orders replica and the [`Charge`](domain::Charge) — one attempt to pay an
//!   order — with its lifecycle as pure transitions: authorised first, captured only once the
//!   orders service completed the order with it, released otherwise.
//! - [`provider`]: the provider interface — [`Stripe`](provider::Stripe) (PaymentIntents with
//!   manual capture, `Idempotency-Key` per attempt, safe retries) and the
//!   [`Development`](provider::Development) provider (Stripe's test tokens, no network).
//! - [`charging`]: [`Payments`](charging::Payments), which sends a charge to the provider (or
//!   replays it after a crash) and records the answer.
//! - [`paying`]: `POST /api/payments` — start, join or replay the order's charge, then wait for
//!   the order's decision: 201 only when the order is complete.
//! - [`settlement`]: the worker that captures, releases and refunds at the provider, and replays
//!   charges abandoned by a process that died.
//! - [`webhook`]: `Stripe-Signature` verification, PaymentIntent events, refunds made at
//!   Stripe (`charge.refunded`) and sellers' connected accounts (`account.updated`).
//! - [`ledger`]: the sellers' ledger as pure rules — the fee and split of a sale, when its
//!   credit becomes available, a credit's life, which entries one transfer pays, balances.
//! - [`payouts`]: credits written with the captures (and reversed with the refunds) of
//!   completed orders, sellers' payout accounts, and the payout worker.
//! - [`store`]: the SQL: the orders replica, charges (the partial unique index
//!   `charges_one_active_per_order` allows one charge holding money per order), handled
//!   webhook events, the ledger (`seller_credits`) and `payout_accounts`.
//! - [`handlers`]: `POST /api/payments`, `POST /api/payments/webhook`, `GET /api/payouts` and
//!   `POST /api/payouts/account`.
//! - [`events`]: the orders replica (`order.created`, `order.cancelled`, `order.completed`) and
//!   what the order's decision means for its charges.

pub mod charging;
pub mod domain;
pub mod events;
pub mod handlers;
pub mod ledger;
pub mod paying;
pub mod payouts;
pub mod provider;
pub mod settlement;
pub mod store;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_contract::events::{OrderCancelled, OrderCompleted, OrderCreated};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Arrivals, Check, Db, Migrations, Runtime, Service, StartError};
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::charging::Payments;
use crate::payouts::{Ledger, PayoutSettings, Payouts};
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
    /// Sellers' credits and payouts (`SELLER_FEE_PERCENT`, `PAYOUT_DELAY_HOURS`,
    /// `PAYOUT_INTERVAL_SECONDS`, `PUBLIC_URL`).
    pub payouts: PayoutSettings,
}

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub payments: Payments,
    pub payouts: Payouts,
    pub sessions: SessionKeys,
    pub webhook_secret: Option<SecretString>,
    pub webhook_tolerance_secs: i64,
}

/// How long a charge stays leased to the process that sent it without a renewal (renewed every
/// third of it while the provider call lasts): a charge left by a process that died is replayed
/// within about this long.
pub const CHARGE_LEASE: Duration = Duration::from_secs(6);

/// Opens the payments database, starts its relay, consumers, settlement worker and payout
/// worker on `runtime`.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "payments");
    let settle = Arc::new(Notify::new());
    let arrivals = Arrivals::default();
    let ledger = Ledger {
        rules: settings.payouts.rules,
        wake: Arc::new(Notify::new()),
        outbox: outbox.clone(),
    };
    let handlers = events::Handlers {
        settle: settle.clone(),
        ledger: ledger.clone(),
    };
    Consumers::new("payments", db.clone(), outbox.clone())
        .announce_to(arrivals.clone())
        .on::<OrderCreated>(handlers.clone())
        .on::<OrderCancelled>(handlers.clone())
        .on::<OrderCompleted>(handlers)
        .start(runtime)
        .await?;
    let payouts = Payouts {
        db: db.clone(),
        provider: settings.provider.clone(),
        settings: settings.payouts,
        wake: ledger.wake.clone(),
    };
    let payments = Payments {
        db: db.clone(),
        outbox,
        provider: settings.provider,
        currency: settings.currency,
        arrivals,
        settle,
        lease: CHARGE_LEASE,
        ledger,
    };
    settlement::spawn(payments.clone(), runtime);
    payouts::spawn(payouts.clone(), runtime);
    tracing::info!(provider = payments.provider.name(), currency = %payments.currency, fee_percent = payouts.settings.rules.fee.get(), "payments ready");
    let state = AppState {
        payments,
        payouts,
        sessions: settings.sessions,
        webhook_secret: settings.webhook_secret,
        webhook_tolerance_secs: settings.webhook_tolerance_secs,
    };
    Ok(Service {
        name: "payments",
        router: handlers::router(state),
        checks: vec![
            Check::database("payments database", db),
            runtime.readiness(),
        ],
    })
}
