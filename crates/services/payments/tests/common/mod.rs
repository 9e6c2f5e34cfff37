//! The harness of the payments tests: the service on a fresh database and bus, its orders
//! replica fed by publishing order events as the orders service would, and signed webhooks.

#![allow(dead_code)]

use bt_contract::Cents;
use bt_contract::events::{
    OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket, TicketRef,
};
use bt_payments::Settings;
use bt_payments::provider::Provider;
use bt_payments::store::{self, Payment};
use bt_platform::db::DbOptions;
use bt_platform::{Db, Runtime};
use bt_test_support::{
    Backend, TestBus, TestClient, TestDb, TestResponse, TestServer, TestUser, bus_for, eventually,
    publish, test_sessions,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The webhook endpoint secret the service is started with.
pub const WEBHOOK_SECRET: &str = "whsec_test";

/// The settings of the service under test, with `provider`.
pub fn settings(provider: Provider) -> Settings {
    Settings {
        sessions: test_sessions(),
        provider,
        currency: "usd".into(),
        webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
        webhook_tolerance_secs: 300,
    }
}

/// The payments service on its own database and bus, served on a loopback port.
pub struct TestApp {
    pub server: TestServer,
    pub bus: TestBus,
    /// A handle of the test's own on the service's database.
    pub db: Db,
    pub runtime: Runtime,
    _test_db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend, provider: Provider) -> Self {
        Self::with_settings(backend, settings(provider)).await
    }

    pub async fn with_settings(backend: Backend, settings: Settings) -> Self {
        let test_db = TestDb::new(backend).await;
        let bus = TestBus::new(bus_for(backend)).await;
        let runtime = Runtime::new(bus.bus.clone());
        let service = bt_payments::service(&test_db.url, &DbOptions::default(), settings, &runtime)
            .await
            .expect("payments service starts");
        let server = TestServer::spawn(bt_platform::http::app(vec![service])).await;
        let db = Db::connect(&test_db.url, &DbOptions::default())
            .await
            .expect("a second handle on the payments database");
        Self {
            server,
            bus,
            db,
            runtime,
            _test_db: test_db,
        }
    }

    pub fn anonymous(&self) -> TestClient {
        self.server.client()
    }

    pub fn as_user(&self, user: &TestUser) -> TestClient {
        user.client(&self.server.url(""))
    }

    /// `POST /api/payments` as `user`.
    pub async fn pay(&self, user: &TestUser, order_id: &str, token: &str) -> TestResponse {
        self.as_user(user)
            .post(
                "/api/payments",
                &json!({"token": token, "orderId": order_id}),
            )
            .await
    }

    /// The order as the payments replica holds it.
    pub async fn replica(&self, id: &str) -> Option<store::Order> {
        store::order(&self.db, id).await.expect("read the replica")
    }

    /// Publishes `order.created` as the orders service would, and waits until the replica
    /// holds the order.
    pub async fn publish_order(&self, created: OrderCreated) {
        let id = created.id.clone();
        publish(&self.bus.bus, created).await;
        eventually(10, "the payments replica holds the order", || async {
            self.replica(&id).await.is_some()
        })
        .await;
    }

    /// A fresh order of `buyer` for a ticket of `price_cents`, open for 15 minutes, known to
    /// the replica; returns its id.
    pub async fn order_for(&self, buyer: &TestUser, price_cents: i64) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.publish_order(order_created(
            &id,
            &buyer.id,
            price_cents,
            Utc::now() + chrono::Duration::minutes(15),
        ))
        .await;
        id
    }

    /// Publishes `order.cancelled` (version `version`) and waits until the replica has it.
    pub async fn cancel(&self, id: &str, version: i64) {
        publish(
            &self.bus.bus,
            OrderCancelled {
                id: id.to_owned(),
                version,
                ticket: ticket_of(id),
            },
        )
        .await;
        self.wait_status(id, "cancelled", version).await;
    }

    /// Publishes `order.completed` (version `version`) and waits until the replica has it.
    pub async fn complete(&self, id: &str, version: i64) {
        publish(
            &self.bus.bus,
            OrderCompleted {
                id: id.to_owned(),
                version,
                ticket: ticket_of(id),
            },
        )
        .await;
        self.wait_status(id, "complete", version).await;
    }

    pub async fn wait_status(&self, id: &str, status: &str, version: i64) {
        eventually(
            15,
            &format!("the replica holds the order {status} at version {version}"),
            || async {
                self.replica(id)
                    .await
                    .is_some_and(|o| o.status == status && o.version == version)
            },
        )
        .await;
    }

    /// Every payment row of an order.
    pub async fn payments(&self, order_id: &str) -> Vec<Payment> {
        store::payments_of(&self.db, order_id)
            .await
            .expect("read payments")
    }

    /// Waits until the order's only payment has `status`.
    pub async fn wait_payment_status(&self, order_id: &str, status: &str) {
        eventually(20, &format!("the payment is {status}"), || async {
            let payments = self.payments(order_id).await;
            payments.len() == 1 && payments[0].status == status
        })
        .await;
    }

    /// `POST /api/payments/webhook` with `body` and, when given, a `Stripe-Signature` header.
    pub async fn webhook(&self, body: &str, signature: Option<&str>) -> TestResponse {
        let client = self.anonymous();
        let mut request = client
            .http
            .post(client.url("/api/payments/webhook"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        client.send(request).await
    }

    /// A webhook signed with the endpoint secret, now.
    pub async fn signed_webhook(&self, body: &str) -> TestResponse {
        let header = sign(body, Utc::now().timestamp());
        self.webhook(body, Some(&header)).await
    }
}

/// A `Stripe-Signature` header for `body` with the endpoint secret, at `timestamp`.
pub fn sign(body: &str, timestamp: i64) -> String {
    bt_payments::webhook::sign(body.as_bytes(), WEBHOOK_SECRET.as_bytes(), timestamp)
}

/// `order.created` data, version 0, as the orders service publishes it.
pub fn order_created(
    id: &str,
    user_id: &str,
    price_cents: i64,
    expires_at: DateTime<Utc>,
) -> OrderCreated {
    OrderCreated {
        id: id.to_owned(),
        version: 0,
        status: OrderStatus::Created,
        user_id: user_id.to_owned(),
        expires_at,
        ticket: OrderTicket {
            id: format!("ticket-of-{id}"),
            price: Cents::new(price_cents),
        },
    }
}

fn ticket_of(order_id: &str) -> TicketRef {
    TicketRef {
        id: format!("ticket-of-{order_id}"),
    }
}

/// A Stripe event (`{id, object: "event", type, data: {object}}`) as Stripe posts it.
pub fn stripe_event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": Utc::now().timestamp(),
        "livemode": false,
        "type": kind,
        "data": {"object": object},
    })
    .to_string()
}

/// A PaymentIntent as Stripe sends it in webhooks (metadata values are strings).
pub fn payment_intent(id: &str, order_id: &str, attempt: i64, amount: i64, status: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "currency": "usd",
        "status": status,
        "metadata": {"order_id": order_id, "attempt": attempt.to_string()},
    })
}

/// The body of an error response with one message and no field.
pub fn error(message: &str) -> Value {
    json!({"errors": [{"message": message}]})
}
