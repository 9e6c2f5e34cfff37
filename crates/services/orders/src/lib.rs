//! The orders service: reserve a ticket by creating an order, list and show one's orders,
//! cancel (ARCHITECTURE §3, §5).
//!
//! - [`domain`]: the order and its lifecycle as pure transitions (`Order::apply(command)` →
//!   the changed order and its event, or a refusal), tested without a database.
//! - [`lifecycle`]: lock, transition, store + stage the event — the one way an order changes,
//!   used by the HTTP handlers and the event handlers alike.
//! - [`store`]: the SQL of `orders` and the `tickets` replica. The partial unique index
//!   `orders_one_open_per_ticket` makes a second open order (created or awaiting payment) for
//!   one ticket impossible; its violation becomes `400 Ticket is already reserved` in exactly
//!   one place ([`reservations`], through [`store::insert_orders_if_free`]). A completed order
//!   no longer holds its ticket: the buyer owns it and may sell it again; until they do the
//!   replica says it is not for sale.
//! - [`reservations`]: how a rush is decided: buyers of a ticket known to be taken are refused
//!   from memory, and the orders that pass are written by one writer, many per transaction.
//! - [`handlers`]: the routes under `/api/orders`.
//! - [`events`]: the tickets replica (`ticket.created` / `ticket.updated`, in version order),
//!   the tickets service's answer on a reservation, expiry (`expiration.complete`) and payment
//!   (`payment.created`), and money given back (`payment.refunded`).

pub mod domain;
pub mod events;
pub mod handlers;
pub mod lifecycle;
pub mod reservations;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use bt_contract::SessionKeys;
use bt_contract::events::{
    Event, ExpirationComplete, PaymentCreated, PaymentRefunded, TicketCreated, TicketHeld,
    TicketReservationRefused, TicketUpdated,
};
use bt_platform::bus::{Consumers, Outbox};
use bt_platform::db::DbOptions;
use bt_platform::{Arrivals, Check, Db, Migrations, Runtime, Service, StartError};

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
    /// How long a memory of a taken ticket is trusted without the database
    /// ([`reservations::TRUST`] unless a test needs another bound).
    pub taken_trust: Duration,
}

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
    pub expiration: Duration,
    /// Requests for a ticket that has not reached the replica yet wait here for it.
    pub arrivals: Arrivals,
    /// Taken tickets in memory and the group writer of new orders.
    pub reservations: reservations::Reservations,
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
    // With NATS, other replicas apply some of the tickets events (see `reservations`).
    let shared = matches!(runtime.bus, bt_platform::bus::Bus::Nats(_));
    let reservations =
        reservations::Reservations::start(db.clone(), outbox.clone(), shared, settings.taken_trust)
            .await?;
    let replica = reservations.clone();
    let handlers = events::Handlers {
        outbox: outbox.clone(),
        reservations: reservations.clone(),
    };
    let arrivals = Arrivals::default();
    Consumers::new("orders", db.clone(), outbox.clone())
        .announce_to(arrivals.clone())
        .observe(Arc::new(move |applied| {
            // The events that change the replica, keyed by the ticket (not
            // `ticket.reservation_refused`, which is about an order).
            if [
                TicketCreated::SUBJECT,
                TicketUpdated::SUBJECT,
                TicketHeld::SUBJECT,
            ]
            .contains(&applied.subject)
            {
                replica.replica_changed(applied.key);
            }
        }))
        .on::<TicketCreated>(handlers.clone())
        .on::<TicketUpdated>(handlers.clone())
        .on::<TicketHeld>(handlers.clone())
        .on::<TicketReservationRefused>(handlers.clone())
        .on::<ExpirationComplete>(handlers.clone())
        .on::<PaymentCreated>(handlers.clone())
        .on::<PaymentRefunded>(handlers)
        .start(runtime)
        .await?;
    let state = AppState(Arc::new(Shared {
        db: db.clone(),
        outbox,
        sessions: settings.sessions,
        expiration: settings.expiration,
        arrivals,
        reservations,
    }));
    Ok(Service {
        name: "orders",
        router: handlers::router(state),
        checks: vec![Check::database("orders database", db), runtime.readiness()],
    })
}
