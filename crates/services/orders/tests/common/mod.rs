//! The orders service spun up for a test: its HTTP server, its bus and a second handle on its
//! database, with helpers to list tickets into its replica (as the tickets service would) and
//! to read what it stored.
//!
//! Shared by `api.rs` and `concurrency.rs`; each uses only some of the helpers.
#![allow(dead_code)]

use std::time::Duration;

use bt_contract::Cents;
use bt_contract::events::{Envelope, Event, TicketCreated, TicketData, TicketUpdated};
use bt_contract::{OrderId, TicketId, UserId};
use bt_orders::Settings;
use bt_orders::domain::{Order, Reservation};
use bt_orders::reservations::TRUST;
use bt_platform::bus::OutgoingMessage;
use bt_platform::bus::consumer::durable_name;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Runtime, on_db};
use bt_test_support::{
    Backend, TestBus, TestClient, TestDb, TestServer, TestUser, bus_for, eventually, publish,
    test_sessions,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The default payment window (`ORDER_EXPIRATION_SECONDS`).
pub const WINDOW: Duration = Duration::from_secs(900);

pub struct TestApp {
    pub server: TestServer,
    pub bus: TestBus,
    /// A second handle on the service's database, for reading what the service stored.
    pub store: Db,
    _runtime: Runtime,
    // Last, so that it is dropped (and a PostgreSQL database removed) after everything else.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, WINDOW, &DbOptions::default()).await
    }

    pub async fn spawn_with(
        backend: Backend,
        expiration: Duration,
        db_options: &DbOptions,
    ) -> Self {
        Self::spawn_trusting(backend, expiration, db_options, TRUST).await
    }

    /// The service trusting its memory of a taken ticket for `taken_trust`.
    pub async fn spawn_trusting(
        backend: Backend,
        expiration: Duration,
        db_options: &DbOptions,
        taken_trust: Duration,
    ) -> Self {
        let db = TestDb::new(backend).await;
        let bus = TestBus::new(bus_for(backend)).await;
        let runtime = Runtime::new(bus.bus.clone());
        let settings = Settings {
            sessions: test_sessions(),
            expiration,
            taken_trust,
        };
        let service = bt_orders::service(&db.url, db_options, settings, &runtime)
            .await
            .expect("orders service starts");
        let server = TestServer::spawn(bt_platform::http::app(vec![service])).await;
        let store = Db::connect(&db.url, &DbOptions::default())
            .await
            .expect("second database handle");
        Self {
            server,
            bus,
            store,
            _runtime: runtime,
            db,
        }
    }

    /// Another replica of the service: the same database and bus, a server of its own (keep
    /// the runtime while it is used).
    pub async fn replica(&self) -> (TestServer, Runtime) {
        let runtime = Runtime::new(self.bus.bus.clone());
        let settings = Settings {
            sessions: test_sessions(),
            expiration: WINDOW,
            taken_trust: TRUST,
        };
        let service = bt_orders::service(&self.db.url, &DbOptions::default(), settings, &runtime)
            .await
            .expect("a second orders replica starts");
        (
            TestServer::spawn(bt_platform::http::app(vec![service])).await,
            runtime,
        )
    }

    pub fn base(&self) -> String {
        self.server.url("")
    }

    pub fn anonymous(&self) -> TestClient {
        self.server.client()
    }

    pub fn as_user(&self, user: &TestUser) -> TestClient {
        user.client(&self.base())
    }

    /// Lists a ticket of `seller` as the tickets service would (`ticket.created`, version 0)
    /// and waits until the orders replica holds it.
    pub async fn listed(&self, seller: &TestUser, title: &str, cents: i64) -> TicketData {
        let ticket = ticket_data(seller, title, cents);
        publish(&self.bus.bus, TicketCreated(ticket.clone())).await;
        self.wait_for_ticket_version(&ticket.id, 0).await;
        ticket
    }

    /// Waits until the replica holds `version` of the ticket.
    pub async fn wait_for_ticket_version(&self, id: impl AsRef<str>, version: i64) {
        let id = id.as_ref();
        eventually(
            20,
            &format!("the replica holds version {version} of ticket {id}"),
            || async { self.ticket_version(id).await == Some(version) },
        )
        .await;
    }

    /// The version of the ticket the replica holds, if any.
    pub async fn ticket_version(&self, id: impl AsRef<str>) -> Option<i64> {
        bt_orders::store::find_ticket(&self.store, &TicketId::new(id.as_ref()))
            .await
            .expect("read the replica")
            .map(|t| t.version)
    }

    /// `buyer` orders `ticket_id`; asserts 201 and returns the order JSON.
    pub async fn ordered(&self, buyer: &TestUser, ticket_id: impl AsRef<str>) -> Value {
        let res = self
            .as_user(buyer)
            .post("/api/orders", &json!({"ticketId": ticket_id.as_ref()}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        res.json
    }

    /// `(status, version)` of an order, read from the database.
    pub async fn stored_order(&self, id: impl AsRef<str>) -> (String, i64) {
        let order = self.order(id).await;
        (order.status.as_str().to_owned(), order.version)
    }

    /// The order as stored.
    pub async fn order(&self, id: impl AsRef<str>) -> Order {
        let id = id.as_ref();
        bt_orders::store::find_order(&self.store, &OrderId::new(id))
            .await
            .expect("read the order")
            .unwrap_or_else(|| panic!("order {id} is stored"))
    }

    /// Publishes the tickets service's reservation of `ticket` (as listed, version 0 unless it
    /// was updated since) for order `order_id`, and waits until the order counts as confirmed.
    pub async fn confirm(&self, ticket: &TicketData, order_id: &str) {
        self.confirm_without_waiting(ticket, order_id).await;
        eventually(20, "the reservation is confirmed", || async {
            self.order(order_id).await.reservation == Reservation::Confirmed
        })
        .await;
    }

    /// Publishes the tickets service's reservation of `ticket` for `order_id` and waits until
    /// the replica applied it (whatever it meant for the order).
    pub async fn confirm_without_waiting(&self, ticket: &TicketData, order_id: &str) {
        let mut reserved = ticket.clone();
        reserved.version = self
            .ticket_version(&ticket.id)
            .await
            .expect("the replica holds the ticket")
            + 1;
        reserved.order_id = Some(OrderId::new(order_id));
        publish(&self.bus.bus, TicketUpdated(reserved.clone())).await;
        self.wait_for_ticket_version(&ticket.id, reserved.version)
            .await;
    }

    /// Publishes the tickets service's change of `ticket` after the order completed: the buyer
    /// owns it, off sale (or on sale again at `relist_cents`, as its new owner lists it), and
    /// waits until the replica applied it. Answers the ticket as the replica holds it.
    pub async fn owned_by(
        &self,
        ticket: &TicketData,
        buyer: &TestUser,
        relist_cents: Option<i64>,
    ) -> TicketData {
        let mut owned = ticket.clone();
        owned.version = self
            .ticket_version(&ticket.id)
            .await
            .expect("the replica holds the ticket")
            + 1;
        owned.order_id = None;
        owned.user_id = UserId::new(buyer.id.clone());
        owned.for_sale = relist_cents.is_some();
        if let Some(cents) = relist_cents {
            owned.price = Cents::new(cents);
        }
        publish(&self.bus.bus, TicketUpdated(owned.clone())).await;
        self.wait_for_ticket_version(&ticket.id, owned.version)
            .await;
        owned
    }

    /// Waits until the order has `status` in the database.
    pub async fn wait_for_status(&self, id: impl AsRef<str>, status: &str) {
        let id = id.as_ref();
        eventually(20, &format!("order {id} is {status}"), || async {
            self.stored_order(id).await.0 == status
        })
        .await;
    }

    /// True once the orders service's consumer of `E` has committed the event with this id
    /// (its inbox row is written in the handler's transaction).
    pub async fn processed<E: Event>(&self, envelope: &Envelope<E>) -> bool {
        let consumer = durable_name("orders", E::SUBJECT);
        let count = on_db!(&self.store, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM inbox WHERE consumer = $1 AND event_id = $2"
        )
        .bind(&consumer)
        .bind(envelope.id.to_string())
        .fetch_one(pool)
        .await)
        .expect("read the inbox");
        count == 1
    }

    /// Waits until the orders service has committed the event.
    pub async fn wait_processed<E: Event>(&self, envelope: &Envelope<E>) {
        eventually(
            20,
            &format!(
                "the orders service processed {} {}",
                E::SUBJECT,
                envelope.id
            ),
            || async { self.processed(envelope).await },
        )
        .await;
    }

    /// Delivers an event that was published already once more: the same envelope (same event
    /// id) as a new bus message, as a redelivery after a lost acknowledgement would.
    pub async fn redeliver<E: Event>(&self, envelope: &Envelope<E>) {
        self.bus
            .bus
            .publish(&OutgoingMessage {
                id: uuid::Uuid::now_v7().to_string(),
                subject: E::SUBJECT.to_owned(),
                payload: serde_json::to_string(envelope).expect("json"),
                request_id: None,
            })
            .await
            .expect("publish");
    }

    /// One number from the orders database (`SELECT COUNT(*) ...`).
    pub async fn count(&self, sql: &str) -> i64 {
        on_db!(&self.store, |pool| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A ticket of `seller` at version 0 with a fresh id.
pub fn ticket_data(seller: &TestUser, title: &str, cents: i64) -> TicketData {
    TicketData {
        id: TicketId::generate(),
        version: 0,
        title: title.to_owned(),
        price: Cents::new(cents),
        user_id: UserId::new(&seller.id),
        order_id: None,
        venue: None,
        starts_at: None,
        face_value: None,
        for_sale: true,
    }
}
