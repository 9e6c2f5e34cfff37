//! The notifications service: tells people what happened — a receipt to the buyer, "your ticket
//! sold" to the seller, an expired reservation, a declined card — in the app and by email, and
//! keeps ticket alerts: a saved search whose new matches on sale are announced to every
//! subscriber, in the order they subscribed.
//!
//! - [`domain`]: alerts and when a ticket starts to match one, the wording of each notice, the
//!   retry schedule of emails; pure.
//! - [`store`]: the SQL of the replicas (`users`, `tickets`, `orders`), `alerts`,
//!   `notifications` and the email outbox `emails`.
//! - [`events`]: what each event does (in the transaction that records it in the inbox, so a
//!   redelivery adds nothing): keep the replicas, write the notification and queue the email.
//! - [`mailer`]: the worker that sends queued emails through SMTP (`SMTP_URL`) or writes them
//!   to a directory (`up` without `SMTP_URL`), with leases, retries and backoff.
//! - [`retention`]: old notifications (180 days) and sent or failed emails (30 days) are
//!   deleted in batches, hourly; a pending email never is.
//! - [`handlers`]: the routes under `/api/notifications` and `/api/alerts`.

pub mod domain;
pub mod events;
pub mod handlers;
pub mod mailer;
pub mod retention;
pub mod store;

use std::sync::Arc;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_contract::events::{
    OrderCancelled, OrderCompleted, OrderCreated, PaymentDeclined, PaymentRefunded, SaleCredited,
    TicketCreated, TicketUpdated, UserCreated,
};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Check, Db, Migrations, Runtime, Service, StartError};
use tokio::sync::Notify;

pub use domain::Limits;
pub use mailer::{MailConfigError, Mailer};

/// The migrations of the notifications database.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    postgres: sqlx::migrate!("./migrations/postgres"),
};

/// What an operator configures in the notifications service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sessions: SessionKeys,
    /// Where emails go and whom they are from (`SMTP_URL`, `MAIL_FROM`).
    pub mailer: Mailer,
    /// The address people reach the site at, for the links in emails (`PUBLIC_URL`).
    pub public_url: String,
    /// The currency amounts are shown in (`CURRENCY`, as payments charges).
    pub currency: String,
    pub limits: Limits,
    /// `ALERT_HOLD_SECONDS`: how long the first subscriber in line of a ticket alert holds a
    /// ticket that just went on sale before the others are told (zero: no hold).
    pub alert_hold: std::time::Duration,
}

/// Shared state of the handlers.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub sessions: SessionKeys,
    pub limits: Limits,
}

/// Opens the notifications database, starts its consumers and email worker on `runtime`, and
/// returns the service.
pub async fn service(
    database_url: &str,
    db_options: &DbOptions,
    settings: Settings,
    runtime: &Runtime,
) -> Result<Service, StartError> {
    let db = Db::open(database_url, db_options, &MIGRATIONS).await?;
    // It publishes the holds of ticket alerts (`ticket.held`).
    let outbox = Outbox::new(db.clone());
    outbox.spawn_relay(runtime, "notifications");
    let wake = Arc::new(Notify::new());
    let handlers = events::Handlers::new(
        events::Context {
            wording: domain::Wording {
                currency: settings.currency.clone(),
            },
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            limits: settings.limits,
            hold: settings.alert_hold,
        },
        outbox.clone(),
    );
    Consumers::new("notifications", db.clone(), outbox)
        .notify_on_commit(wake.clone())
        .on::<UserCreated>(handlers.clone())
        .on::<TicketCreated>(handlers.clone())
        .on::<TicketUpdated>(handlers.clone())
        .on::<OrderCreated>(handlers.clone())
        .on::<OrderCompleted>(handlers.clone())
        .on::<OrderCancelled>(handlers.clone())
        .on::<PaymentDeclined>(handlers.clone())
        .on::<SaleCredited>(handlers.clone())
        .on::<PaymentRefunded>(handlers)
        .start(runtime)
        .await?;
    mailer::spawn(db.clone(), Arc::new(settings.mailer), wake, runtime);
    retention::spawn(db.clone(), runtime);
    let state = AppState {
        db: db.clone(),
        sessions: settings.sessions,
        limits: settings.limits,
    };
    Ok(Service {
        name: "notifications",
        router: handlers::router(state),
        // The mail server is not a readiness check: while it is down, emails wait in the
        // outbox and everything else works.
        checks: vec![
            Check::database("notifications database", db),
            runtime.readiness(),
        ],
    })
}
