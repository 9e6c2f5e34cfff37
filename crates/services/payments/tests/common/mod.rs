//! The harness of the payments tests: the service on a fresh database and bus, its orders
//! replica fed by publishing order events as the orders service would, and signed webhooks.

#![allow(dead_code)]

use bt_contract::events::{
    CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    PaymentCreated, TicketRef,
};
use std::sync::Arc;

use bt_contract::{Cents, Millis, OrderId, PaymentId, UserId};
use bt_payments::Settings;
use bt_payments::domain::{Charge, ChargeState, PayableOrder};
use bt_payments::ledger::Credit;
use bt_payments::payouts::{PayoutSettings, Payouts};
use bt_payments::provider::{Provider, Stripe};
use bt_payments::store;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Runtime};
use bt_test_support::stripe::{MockStripe, SECRET_KEY};
use bt_test_support::{
    Backend, EventProbe, TestBus, TestClient, TestDb, TestResponse, TestServer, TestUser, bus_for,
    eventually, publish, test_sessions,
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
        payouts: PayoutSettings {
            public_url: Some(PUBLIC_URL.into()),
            ..PayoutSettings::default()
        },
    }
}

/// The public address the service under test is told it has.
pub const PUBLIC_URL: &str = "https://buyticket.test";

/// The Stripe provider against a local mock of Stripe.
pub fn stripe_provider(mock: &MockStripe) -> Provider {
    Provider::Stripe(Stripe::new(&mock.base, SecretString::from(SECRET_KEY)))
}

/// The payments service on its own database and bus, served on a loopback port.
pub struct TestApp {
    pub server: TestServer,
    pub bus: TestBus,
    /// A handle of the test's own on the service's database.
    pub db: Db,
    pub runtime: Runtime,
    /// A payouts core of the test's own on the service's database and provider: the test runs
    /// payout rounds with it (as another replica's worker would), at the time it chooses.
    pub payouts: Payouts,
    orders: Option<tokio::task::JoinHandle<()>>,
    _test_db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(orders) = self.orders.take() {
            orders.abort();
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend, provider: Provider) -> Self {
        Self::with_settings(backend, settings(provider)).await
    }

    pub async fn with_settings(backend: Backend, settings: Settings) -> Self {
        let payout_settings = settings.payouts.clone();
        let provider = settings.provider.clone();
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
        let payouts = Payouts {
            db: db.clone(),
            provider,
            settings: payout_settings,
            wake: Arc::default(),
        };
        Self {
            server,
            bus,
            db,
            runtime,
            payouts,
            orders: None,
            _test_db: test_db,
        }
    }

    /// Plays the orders service's part for every `payment.created` from now on: completes the
    /// order with the payment when the order is still open, as the orders service does once
    /// its reservation is confirmed.
    pub async fn orders_complete_paid_orders(&mut self) {
        let mut probe = EventProbe::new(&self.bus.bus, "payment.created").await;
        let bus = self.bus.bus.clone();
        let db = self.db.clone();
        self.orders = Some(tokio::spawn(async move {
            loop {
                let paid = probe.next::<PaymentCreated>(24 * 3600).await.data;
                let Some(order) = store::order(&db, &paid.order_id).await.expect("replica") else {
                    continue;
                };
                if order.status == OrderStatus::Created {
                    publish(
                        &bus,
                        OrderCompleted {
                            id: paid.order_id.clone(),
                            version: order.version + 1,
                            ticket: ticket_of(paid.order_id.as_str()),
                            payment_id: Some(paid.id),
                            user_id: Some(order.user_id.clone()),
                        },
                    )
                    .await;
                }
            }
        }));
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
    pub async fn replica(&self, id: &str) -> Option<PayableOrder> {
        store::order(&self.db, &OrderId::new(id))
            .await
            .expect("read the replica")
    }

    /// Publishes `order.created` as the orders service would, and waits until the replica
    /// holds the order.
    pub async fn publish_order(&self, created: OrderCreated) {
        let id = created.id.clone();
        publish(&self.bus.bus, created).await;
        eventually(10, "the payments replica holds the order", || async {
            self.replica(id.as_str()).await.is_some()
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
    pub async fn cancel(&self, id: &str, version: i64, reason: CancelReason) {
        publish(
            &self.bus.bus,
            OrderCancelled {
                id: id.into(),
                version,
                ticket: ticket_of(id),
                reason: Some(reason),
            },
        )
        .await;
        self.wait_status(id, OrderStatus::Cancelled, version).await;
    }

    /// Publishes `order.completed` (version `version`) by `payment` and waits until the replica
    /// has it.
    pub async fn complete(&self, id: &str, version: i64, payment: &str) {
        publish(
            &self.bus.bus,
            OrderCompleted {
                id: id.into(),
                version,
                ticket: ticket_of(id),
                payment_id: Some(PaymentId::new(payment)),
                user_id: None,
            },
        )
        .await;
        self.wait_status(id, OrderStatus::Complete, version).await;
    }

    pub async fn wait_status(&self, id: &str, status: OrderStatus, version: i64) {
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

    /// Publishes a sale of `seller` to `buyer` whose event starts at `starts_at`, pays it with
    /// `tok_visa` (the orders service's part must be played: `orders_complete_paid_orders`),
    /// and waits until the payment is captured; returns the order id.
    pub async fn sell(
        &self,
        buyer: &TestUser,
        seller: Option<&TestUser>,
        price_cents: i64,
        starts_at: Option<Millis>,
    ) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.publish_order(sale_created(
            &id,
            &buyer.id,
            seller.map(|s| s.id.as_str()),
            price_cents,
            starts_at,
        ))
        .await;
        let res = self.pay(buyer, &id, "tok_visa").await;
        assert_eq!(res.status, reqwest::StatusCode::CREATED, "{}", res.text);
        self.wait_charge_states(&id, &[ChargeState::Succeeded])
            .await;
        id
    }

    /// The ledger entries of an order (its credit, and its reversal if any).
    pub async fn credits(&self, order_id: &str) -> Vec<Credit> {
        store::credits_of_order(&self.db, &OrderId::new(order_id))
            .await
            .expect("read credits")
    }

    /// The credit of an order; panics without one.
    pub async fn credit(&self, order_id: &str) -> Credit {
        self.credits(order_id)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no credit for order {order_id}"))
    }

    /// One payout round as of `now` (as a replica's worker would run it).
    pub async fn payout_round(&self, now: Millis) {
        self.payouts.round(now).await.expect("a payout round");
    }

    /// `GET /api/payouts` as `user`.
    pub async fn payouts_of(&self, user: &TestUser) -> TestResponse {
        self.as_user(user).get("/api/payouts").await
    }

    /// `POST /api/payouts/account` as `user`.
    pub async fn onboard(&self, user: &TestUser) -> TestResponse {
        self.as_user(user)
            .post("/api/payouts/account", &serde_json::json!({}))
            .await
    }

    /// Every charge of an order, oldest first.
    pub async fn charges(&self, order_id: &str) -> Vec<Charge> {
        store::charges_of(&self.db, &OrderId::new(order_id))
            .await
            .expect("read charges")
    }

    /// The states of an order's charges, oldest first.
    pub async fn charge_states(&self, order_id: &str) -> Vec<ChargeState> {
        self.charges(order_id)
            .await
            .into_iter()
            .map(|c| c.state)
            .collect()
    }

    /// Waits until the order's charges are in `states` (oldest first).
    pub async fn wait_charge_states(&self, order_id: &str, states: &[ChargeState]) {
        eventually(20, &format!("the charges are {states:?}"), || async {
            self.charge_states(order_id).await == states
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

    /// Stores a started charge of `order` as a process that died with its provider call in
    /// flight would leave it: token kept, lease run out.
    pub async fn abandoned_charge(&self, order_id: &str, token: &str, price_cents: i64) -> Charge {
        self.abandoned_charge_aged(
            order_id,
            token,
            price_cents,
            std::time::Duration::from_secs(30),
        )
        .await
    }

    /// The same, sent `age` ago.
    pub async fn abandoned_charge_aged(
        &self,
        order_id: &str,
        token: &str,
        price_cents: i64,
        age: std::time::Duration,
    ) -> Charge {
        let now = Millis::now();
        let charge = Charge {
            id: PaymentId::generate(),
            order_id: order_id.into(),
            attempt: 1,
            state: ChargeState::Started,
            amount: Cents::new(price_cents),
            currency: "usd".into(),
            token: Some(token.into()),
            provider_id: None,
            failure: None,
            lease_until: now.minus(std::time::Duration::from_secs(1)),
            amount_refunded: Cents::new(0),
            created_at: now.minus(age),
            updated_at: now.minus(age),
        };
        let mut tx = self.db.begin().await.unwrap();
        assert!(store::insert_charge(&mut tx, &charge).await.unwrap());
        tx.commit().await.unwrap();
        charge
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
        id: id.into(),
        version: 0,
        status: OrderStatus::Created,
        user_id: user_id.into(),
        expires_at: expires_at.into(),
        ticket: OrderTicket {
            id: format!("ticket-of-{id}").into(),
            price: Cents::new(price_cents),
            title: Some("A ticket".into()),
            version: Some(0),
            seller_id: None,
            starts_at: None,
        },
    }
}

/// `order.created` of an order of `buyer` for a ticket of `seller` (none: an order placed
/// before sellers were recorded) whose event starts at `starts_at`.
pub fn sale_created(
    id: &str,
    buyer: &str,
    seller: Option<&str>,
    price_cents: i64,
    starts_at: Option<Millis>,
) -> OrderCreated {
    let mut created = order_created(
        id,
        buyer,
        price_cents,
        Utc::now() + chrono::Duration::minutes(15),
    );
    created.ticket.title = Some(format!("Ticket of {id}"));
    created.ticket.seller_id = seller.map(UserId::from);
    created.ticket.starts_at = starts_at;
    created
}

fn ticket_of(order_id: &str) -> TicketRef {
    TicketRef {
        id: format!("ticket-of-{order_id}").into(),
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
