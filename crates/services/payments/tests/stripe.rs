//! The Stripe provider against a local server that speaks Stripe's wire format (form-encoded
//! requests with a Bearer key and an `Idempotency-Key`, JSON answers and errors, replayed
//! answers for a repeated key), and Stripe webhooks through the service.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bt_contract::Cents;
use bt_contract::events::PaymentCreated;
use bt_payments::provider::{Charge, ChargeOutcome, Provider, ProviderError, Stripe};
use bt_test_support::{Backend, EventProbe, TestUser, backend_tests, eventually};
use chrono::Utc;
use common::{TestApp, error, payment_intent, sign, stripe_event};
use secrecy::SecretString;
use serde_json::{Value, json};

const SECRET_KEY: &str = "sk_test_123";

/// Tokens the mock answers specially (besides Stripe's `tok_visa`, `tok_chargeDeclined`).
const FLAKY: &str = "tok_flaky"; // 500 on the first request of a key, then as tok_visa
const DOWN: &str = "tok_down"; // always 500
const PROCESSING: &str = "tok_processing"; // 200 with status "processing"
const THREE_D_SECURE: &str = "tok_threeDSecure2Required"; // 200 with status "requires_action"
const HELD: &str = "tok_held"; // answered as tok_visa once the test releases it
const SLOW: &str = "tok_slow"; // answered as tok_visa after 300 ms

/// One request the mock received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    idempotency_key: String,
    form: Form,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A PaymentIntent the mock created (a distinct charge).
#[derive(Debug, Clone)]
struct MockCharge {
    id: String,
    amount: i64,
    currency: String,
    order_id: String,
    status: &'static str,
}

type Form = Vec<(String, String)>;

/// An answer kept for its idempotency key, with the parameters the key was first used with.
#[derive(Debug, Clone)]
struct StoredReply {
    form: Form,
    status: StatusCode,
    body: Value,
}

#[derive(Debug, Default)]
struct Ledger {
    requests: Vec<Seen>,
    /// What the client did wrong on the wire; every test expects none.
    violations: Vec<String>,
    /// The stored answer of each idempotency key, with the parameters it was first used with.
    replies: HashMap<String, StoredReply>,
    failed_once: HashSet<String>,
    charges: Vec<MockCharge>,
    refunds: Vec<String>,
}

/// A local Stripe API on 127.0.0.1:0.
#[derive(Clone)]
struct MockStripe {
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    /// Holds `tok_held` charges until the test adds a permit.
    gate: Arc<tokio::sync::Semaphore>,
}

type Reply = (StatusCode, Json<Value>);

impl MockStripe {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut mock = Self {
            base: String::new(),
            ledger: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        mock.base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/payment_intents", post(payment_intents))
            .route("/v1/refunds", post(refunds))
            .with_state(mock.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    fn provider(&self) -> Provider {
        self.provider_with_key(SECRET_KEY)
    }

    fn provider_with_key(&self, key: &str) -> Provider {
        Provider::Stripe(Stripe::new(&self.base, SecretString::from(key)))
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    fn requests(&self) -> Vec<Seen> {
        self.ledger().requests.clone()
    }

    fn charges(&self) -> Vec<MockCharge> {
        self.ledger().charges.clone()
    }

    fn refunds(&self) -> Vec<String> {
        self.ledger().refunds.clone()
    }

    fn assert_wire_format_kept(&self) {
        let violations = self.ledger().violations.clone();
        assert!(
            violations.is_empty(),
            "Stripe wire format broken: {violations:#?}"
        );
    }

    /// Lets one held charge through.
    fn release(&self) {
        self.gate.add_permits(1);
    }
}

fn stripe_error(status: StatusCode, error: Value) -> Reply {
    (status, Json(json!({"error": error})))
}

/// Checks what every Stripe request must carry; returns the idempotency key and the form.
fn check_request(
    mock: &MockStripe,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Form), Reply> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut ledger = mock.ledger();
    let content_type = header("content-type");
    if content_type != "application/x-www-form-urlencoded" {
        ledger
            .violations
            .push(format!("{path}: Content-Type {content_type:?}"));
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "message": "Invalid request: expected a form-encoded body"}),
        ));
    }
    let authorization = header("authorization");
    let Some(key) = authorization.strip_prefix("Bearer ") else {
        ledger
            .violations
            .push(format!("{path}: Authorization {authorization:?}"));
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "You did not provide an API key."}),
        ));
    };
    if key != SECRET_KEY {
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}),
        ));
    }
    let idempotency_key = header("idempotency-key");
    if idempotency_key.trim().is_empty() {
        ledger
            .violations
            .push(format!("{path}: no Idempotency-Key"));
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "message": "This test server requires an Idempotency-Key"}),
        ));
    }
    let text = std::str::from_utf8(body).unwrap_or_default();
    let form: Form = reqwest::Url::parse(&format!("http://form/?{text}"))
        .expect("a form body")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    ledger.requests.push(Seen {
        path: path.to_owned(),
        idempotency_key: idempotency_key.clone(),
        form: form.clone(),
    });
    Ok((idempotency_key, form))
}

/// Stripe's answer to a repeated idempotency key: the stored answer, or an error when the
/// parameters differ.
fn replay(mock: &MockStripe, key: &str, form: &[(String, String)]) -> Option<Reply> {
    let mut ledger = mock.ledger();
    let stored = ledger.replies.get(key)?.clone();
    if stored.form != form {
        ledger.violations.push(format!(
            "idempotency key {key} reused with other parameters"
        ));
        return Some(stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}),
        ));
    }
    Some((stored.status, Json(stored.body)))
}

fn store_reply(mock: &MockStripe, key: &str, form: Form, reply: Reply) -> Reply {
    let (status, Json(body)) = reply;
    mock.ledger().replies.insert(
        key.to_owned(),
        StoredReply {
            form,
            status,
            body: body.clone(),
        },
    );
    (status, Json(body))
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn payment_intents(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let (key, form) = match check_request(&mock, "/v1/payment_intents", &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay(&mock, &key, &form) {
        return reply;
    }
    let amount = param(&form, "amount").and_then(|a| a.parse::<i64>().ok());
    let currency = param(&form, "currency").unwrap_or_default().to_owned();
    let token = param(&form, "payment_method_data[card][token]")
        .unwrap_or_default()
        .to_owned();
    let order_id = param(&form, "metadata[order_id]")
        .unwrap_or_default()
        .to_owned();
    let mut missing = Vec::new();
    if amount.is_none_or(|a| a <= 0) {
        missing.push("amount (a positive integer of cents)");
    }
    if currency.len() != 3 || currency.to_lowercase() != currency {
        missing.push("currency (a lower-case ISO code)");
    }
    if param(&form, "confirm") != Some("true") {
        missing.push("confirm=true");
    }
    if param(&form, "payment_method_data[type]") != Some("card") || token.is_empty() {
        missing.push("payment_method_data[type]=card and payment_method_data[card][token]");
    }
    if order_id.is_empty() || param(&form, "metadata[attempt]").is_none() {
        missing.push("metadata[order_id] and metadata[attempt]");
    }
    if !missing.is_empty() {
        mock.ledger()
            .violations
            .push(format!("payment_intents without {missing:?}"));
        return stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "code": "parameter_missing", "message": format!("Missing {missing:?}")}),
        );
    }
    let amount = amount.unwrap_or_default();

    if token == DOWN || (token == FLAKY && mock.ledger().failed_once.insert(key.clone())) {
        // Failed before executing: nothing is stored for the key, a retry runs afresh.
        return stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "api_error", "message": "An unknown error occurred"}),
        );
    }
    if token == HELD {
        mock.gate.acquire().await.unwrap().forget();
    }
    if token == SLOW {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let intent = |mock: &MockStripe, status: &'static str| {
        let mut ledger = mock.ledger();
        let id = format!("pi_mock_{}", ledger.charges.len() + 1);
        ledger.charges.push(MockCharge {
            id: id.clone(),
            amount,
            currency: currency.clone(),
            order_id: order_id.clone(),
            status,
        });
        json!({
            "id": id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": if status == "succeeded" { amount } else { 0 },
            "currency": currency,
            "status": status,
            "latest_charge": format!("ch_for_{id}"),
            "metadata": {
                "order_id": order_id,
                "attempt": param(&form, "metadata[attempt]"),
            },
        })
    };
    let reply = match token.as_str() {
        "tok_visa" | FLAKY | HELD | SLOW => (StatusCode::OK, Json(intent(&mock, "succeeded"))),
        PROCESSING => (StatusCode::OK, Json(intent(&mock, "processing"))),
        THREE_D_SECURE => (StatusCode::OK, Json(intent(&mock, "requires_action"))),
        "tok_chargeDeclined" => stripe_error(
            StatusCode::PAYMENT_REQUIRED,
            json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "param": "",
            }),
        ),
        other => stripe_error(
            StatusCode::BAD_REQUEST,
            json!({
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "payment_method_data[card][token]",
                "message": format!("No such token: '{other}'"),
            }),
        ),
    };
    store_reply(&mock, &key, form, reply)
}

async fn refunds(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let (key, form) = match check_request(&mock, "/v1/refunds", &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay(&mock, &key, &form) {
        return reply;
    }
    let intent = param(&form, "payment_intent")
        .unwrap_or_default()
        .to_owned();
    let reply = {
        let mut ledger = mock.ledger();
        let known = ledger.charges.iter().find(|c| c.id == intent).cloned();
        match known {
            None => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payment_intent: '{intent}'")}),
            ),
            Some(_) if ledger.refunds.contains(&intent) => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "charge_already_refunded", "message": format!("Charge ch_for_{intent} has already been refunded.")}),
            ),
            Some(charge) => {
                ledger.refunds.push(intent.clone());
                (
                    StatusCode::OK,
                    Json(json!({
                        "id": format!("re_{}", ledger.refunds.len()),
                        "object": "refund",
                        "amount": charge.amount,
                        "currency": charge.currency,
                        "payment_intent": intent,
                        "status": "succeeded",
                    })),
                )
            }
        }
    };
    store_reply(&mock, &key, form, reply)
}

fn charge(token: &str, key: &str) -> Charge {
    Charge {
        amount: Cents::new(2050),
        currency: "usd".into(),
        token: token.into(),
        idempotency_key: key.into(),
        order_id: "order-1".into(),
        attempt: 1,
    }
}

// ---- The Stripe provider against the mock ----

#[tokio::test]
async fn a_charge_is_a_payment_intent_created_and_confirmed_in_stripes_wire_format() {
    let mock = MockStripe::start().await;

    let outcome = mock
        .provider()
        .charge(&charge("tok_visa", "order-1-1"))
        .await;

    assert_eq!(
        outcome,
        Ok(ChargeOutcome::Succeeded {
            provider_id: "pi_mock_1".into()
        })
    );
    mock.assert_wire_format_kept();
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/payment_intents");
    assert_eq!(sent.idempotency_key, "order-1-1");
    for (name, value) in [
        ("amount", "2050"),
        ("currency", "usd"),
        ("confirm", "true"),
        ("payment_method_data[type]", "card"),
        ("payment_method_data[card][token]", "tok_visa"),
        ("metadata[order_id]", "order-1"),
        ("metadata[attempt]", "1"),
    ] {
        assert_eq!(sent.param(name), Some(value), "{name}");
    }
    let charges = mock.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(
        (charges[0].amount, charges[0].currency.as_str()),
        (2050, "usd")
    );
}

#[tokio::test]
async fn the_currency_is_sent_in_stripes_lower_case() {
    let mock = MockStripe::start().await;
    let mut eur = charge("tok_visa", "order-1-1");
    eur.currency = "EUR".into();

    let outcome = mock.provider().charge(&eur).await;

    assert!(
        matches!(outcome, Ok(ChargeOutcome::Succeeded { .. })),
        "{outcome:?}"
    );
    assert_eq!(mock.requests()[0].param("currency"), Some("eur"));
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_declined_card_is_a_decline_with_stripes_message() {
    let mock = MockStripe::start().await;

    let outcome = mock
        .provider()
        .charge(&charge("tok_chargeDeclined", "order-1-1"))
        .await;

    assert_eq!(
        outcome,
        Ok(ChargeOutcome::Declined {
            message: "Your card was declined.".into()
        })
    );
    assert!(mock.charges().is_empty());
    assert_eq!(
        mock.requests().len(),
        1,
        "a decline is final, never retried"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_idempotency_key_and_charges_once() {
    let mock = MockStripe::start().await;

    let outcome = mock.provider().charge(&charge(FLAKY, "order-1-1")).await;

    assert_eq!(
        outcome,
        Ok(ChargeOutcome::Succeeded {
            provider_id: "pi_mock_1".into()
        })
    );
    let keys: Vec<String> = mock
        .requests()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, ["order-1-1", "order-1-1"], "retried once, same key");
    assert_eq!(mock.charges().len(), 1, "charged once");
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn charging_again_with_the_same_key_replays_the_charge() {
    let mock = MockStripe::start().await;
    let provider = mock.provider();

    let first = provider.charge(&charge("tok_visa", "order-1-1")).await;
    let again = provider.charge(&charge("tok_visa", "order-1-1")).await;

    assert_eq!(first, again);
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(mock.charges().len(), 1);
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn an_outage_is_unavailable_after_a_bounded_number_of_retries() {
    let mock = MockStripe::start().await;

    let outcome = mock.provider().charge(&charge(DOWN, "order-1-1")).await;

    assert!(
        matches!(outcome, Err(ProviderError::Unavailable(_))),
        "{outcome:?}"
    );
    let requests = mock.requests();
    assert!(
        (2..=5).contains(&requests.len()),
        "retried, but not forever: {} requests",
        requests.len()
    );
    assert!(requests.iter().all(|r| r.idempotency_key == "order-1-1"));
    assert!(mock.charges().is_empty());
}

#[tokio::test]
async fn an_unknown_token_is_invalid_with_stripes_message() {
    let mock = MockStripe::start().await;

    let outcome = mock
        .provider()
        .charge(&charge("tok_nope", "order-1-1"))
        .await;

    assert_eq!(
        outcome,
        Err(ProviderError::Invalid("No such token: 'tok_nope'".into()))
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_wrong_api_key_is_an_outage_not_a_decline() {
    let mock = MockStripe::start().await;

    let outcome = mock
        .provider_with_key("sk_test_wrong")
        .charge(&charge("tok_visa", "order-1-1"))
        .await;

    assert!(
        matches!(outcome, Err(ProviderError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(mock.charges().is_empty());
}

#[tokio::test]
async fn payment_intents_still_processing_or_needing_authentication_are_not_paid() {
    let mock = MockStripe::start().await;
    let provider = mock.provider();

    let processing = provider.charge(&charge(PROCESSING, "order-1-1")).await;
    let three_d_secure = provider.charge(&charge(THREE_D_SECURE, "order-2-1")).await;

    assert_eq!(
        processing,
        Ok(ChargeOutcome::Pending {
            provider_id: "pi_mock_1".into()
        })
    );
    assert!(
        matches!(&three_d_secure, Ok(ChargeOutcome::Declined { message }) if message.contains("authentication")),
        "{three_d_secure:?}"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_refund_gives_back_the_payment_intent_once() {
    let mock = MockStripe::start().await;
    let provider = mock.provider();
    provider
        .charge(&charge("tok_visa", "order-1-1"))
        .await
        .unwrap();

    assert_eq!(provider.refund("pi_mock_1").await, Ok(()));
    assert_eq!(provider.refund("pi_mock_1").await, Ok(()), "idempotent");

    assert_eq!(mock.refunds(), ["pi_mock_1"]);
    let refund_requests: Vec<Seen> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/refunds")
        .collect();
    assert_eq!(refund_requests.len(), 2);
    assert_eq!(
        refund_requests[0].param("payment_intent"),
        Some("pi_mock_1")
    );
    assert_eq!(
        refund_requests[0].idempotency_key, refund_requests[1].idempotency_key,
        "one refund, one key"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn refunding_an_unknown_payment_intent_fails() {
    let mock = MockStripe::start().await;

    let outcome = mock.provider().refund("pi_nope").await;

    assert_eq!(
        outcome,
        Err(ProviderError::Invalid(
            "No such payment_intent: 'pi_nope'".into()
        ))
    );
}

// ---- The service with the Stripe provider ----

async fn spawn(backend: Backend) -> (TestApp, MockStripe) {
    let mock = MockStripe::start().await;
    let app = TestApp::spawn(backend, mock.provider()).await;
    (app, mock)
}

async fn paying_through_stripe_charges_the_order_price_in_cents(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    mock.assert_wire_format_kept();
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].param("amount"), Some("2050"));
    assert_eq!(requests[0].param("currency"), Some("usd"));
    assert_eq!(
        requests[0].param("metadata[order_id]"),
        Some(order.as_str())
    );
    assert_eq!(requests[0].idempotency_key, format!("{order}-1"));
    let charges = mock.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].order_id, order);
    let payments = app.payments(&order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].provider_id, charges[0].id);
    assert_eq!(payments[0].amount, 2050);
    let event = probe.next::<PaymentCreated>(10).await;
    assert_eq!(
        event.data,
        PaymentCreated {
            id: res.json["id"].as_str().unwrap().to_owned(),
            order_id: order,
            stripe_id: charges[0].id.clone(),
        }
    );
}

async fn the_configured_currency_is_charged(backend: Backend) {
    let mock = MockStripe::start().await;
    let mut settings = common::settings(mock.provider());
    settings.currency = "eur".into();
    let app = TestApp::with_settings(backend, settings).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 999).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(mock.requests()[0].param("currency"), Some("eur"));
    assert_eq!(mock.requests()[0].param("amount"), Some("999"));
    assert_eq!(app.payments(&order).await[0].currency, "eur");
}

async fn a_stripe_decline_is_a_400_and_the_next_card_is_a_new_attempt(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let declined = app.pay(&buyer, &order, "tok_chargeDeclined").await;
    assert_eq!(
        declined.status,
        StatusCode::BAD_REQUEST,
        "{}",
        declined.text
    );
    assert_eq!(declined.json, error("Your card was declined."));

    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let keys: Vec<String> = mock
        .requests()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, [format!("{order}-1"), format!("{order}-2")]);
    assert_eq!(mock.charges().len(), 1);
    mock.assert_wire_format_kept();
}

async fn ten_concurrent_pay_requests_charge_stripe_once(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // Stripe takes its time: every request arrives while the first charge is in flight.
    let responses = futures::future::join_all((0..10).map(|_| app.pay(&buyer, &order, SLOW))).await;

    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{responses:#?}"
    );
    for res in responses.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(
            res.json,
            error("A payment for this order is already in progress"),
            "{}",
            res.text
        );
    }
    assert_eq!(mock.requests().len(), 1, "one request reached Stripe");
    assert_eq!(mock.charges().len(), 1);
    assert_eq!(app.payments(&order).await.len(), 1);
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(300).await;
}

async fn a_stripe_outage_is_a_503_and_leaves_the_order_payable(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let res = app.pay(&buyer, &order, DOWN).await;

    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(
        res.json,
        error("The payment provider is unavailable; please try again")
    );
    assert!(app.payments(&order).await.is_empty());
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(mock.charges().len(), 1);
}

async fn a_charge_that_lands_after_the_order_was_cancelled_is_refunded(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // Stripe holds the charge while the order expires.
    let paying = tokio::spawn({
        let client = app.as_user(&buyer);
        let body = json!({"token": HELD, "orderId": order});
        async move { client.post("/api/payments", &body).await }
    });
    eventually(10, "Stripe received the charge", || async {
        !mock.requests().is_empty()
    })
    .await;
    app.cancel(&order, 1).await;
    mock.release();
    let res = paying.await.unwrap();

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(
        res.json,
        error("The order was cancelled before the payment completed; the charge is being refunded")
    );
    app.wait_payment_status(&order, "refunded").await;
    assert_eq!(mock.refunds(), ["pi_mock_1"]);
    probe.assert_silent(300).await;
    mock.assert_wire_format_kept();
}

// ---- Webhooks ----

async fn a_signed_payment_intent_succeeded_webhook_records_the_payment(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;
    let event = stripe_event(
        "evt_1",
        "payment_intent.succeeded",
        payment_intent("pi_from_webhook", &order, 1, 2050, "succeeded"),
    );

    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let payments = app.payments(&order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (
            payments[0].provider_id.as_str(),
            payments[0].amount,
            payments[0].status.as_str()
        ),
        ("pi_from_webhook", 2050, "succeeded")
    );
    let published = probe.next::<PaymentCreated>(10).await;
    assert_eq!(
        published.data,
        PaymentCreated {
            id: payments[0].id.clone(),
            order_id: order.clone(),
            stripe_id: "pi_from_webhook".into(),
        }
    );
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.json, error("Order is already paid"));
    assert!(mock.requests().is_empty(), "never charged twice");
}

async fn the_same_webhook_event_is_handled_once(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = stripe_event(
        "evt_twice",
        "payment_intent.succeeded",
        payment_intent("pi_twice", &order, 1, 1000, "succeeded"),
    );

    let first = app.signed_webhook(&event).await;
    let second = app.signed_webhook(&event).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json, json!({"received": true}));
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json, json!({"received": true, "duplicate": true}));
    assert_eq!(app.payments(&order).await.len(), 1);
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(500).await;
}

async fn a_tampered_webhook_body_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = stripe_event(
        "evt_tampered",
        "payment_intent.succeeded",
        payment_intent("pi_tampered", &order, 1, 1000, "succeeded"),
    );
    let header = sign(&event, Utc::now().timestamp());
    let tampered = event.replace("\"amount\":1000", "\"amount\":1");
    assert_ne!(tampered, event);
    let other_secret = bt_payments::webhook::sign(
        event.as_bytes(),
        b"whsec_someone_else",
        Utc::now().timestamp(),
    );

    for (body, header) in [(&tampered, &header), (&event, &other_secret)] {
        let res = app.webhook(body, Some(header)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
        assert_eq!(res.json, error("Invalid signature"));
    }
    assert!(app.payments(&order).await.is_empty());
    // Refused events are not remembered: the genuine one is still handled.
    let res = app.webhook(&event, Some(&header)).await;
    assert_eq!(res.json, json!({"received": true}), "{}", res.text);
    assert_eq!(app.payments(&order).await.len(), 1);
}

async fn a_webhook_signed_longer_ago_than_the_tolerance_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = stripe_event(
        "evt_old",
        "payment_intent.succeeded",
        payment_intent("pi_old", &order, 1, 1000, "succeeded"),
    );
    let now = Utc::now().timestamp();

    let replayed = app.webhook(&event, Some(&sign(&event, now - 301))).await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        replayed.text
    );
    assert_eq!(replayed.json, error("Invalid signature"));
    assert!(app.payments(&order).await.is_empty());

    let recent = app.webhook(&event, Some(&sign(&event, now - 240))).await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text);
    assert_eq!(app.payments(&order).await.len(), 1);
}

async fn a_webhook_without_a_valid_signature_header_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = stripe_event(
        "evt_unsigned",
        "payment_intent.succeeded",
        payment_intent("pi_unsigned", &order, 1, 1000, "succeeded"),
    );

    for header in [None, Some(""), Some("t=abc,v1=00"), Some("v1=deadbeef")] {
        let res = app.webhook(&event, header).await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{header:?}: {}",
            res.text
        );
        assert_eq!(res.json, error("Invalid signature"), "{header:?}");
    }
    assert!(app.payments(&order).await.is_empty());
}

async fn the_signature_is_verified_on_the_raw_body(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    // Stripe's own layout: pretty-printed, keys in its order. Re-serialising it would break
    // the signature.
    let object = payment_intent("pi_pretty", &order, 1, 1000, "succeeded");
    let event = format!(
        "{{\n  \"id\": \"evt_pretty\",\n  \"object\": \"event\",\n  \"type\": \"payment_intent.succeeded\",\n  \"data\": {{\n    \"object\": {}\n  }}\n}}",
        serde_json::to_string_pretty(&object).unwrap()
    );

    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(app.payments(&order).await.len(), 1);
}

async fn a_processing_payment_is_completed_by_its_webhook(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    let busy = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(
        busy.json,
        error("A payment for this order is already in progress")
    );
    assert!(app.payments(&order).await.is_empty());
    assert_eq!(mock.charges()[0].status, "processing");
    probe.assert_silent(300).await;

    let event = stripe_event(
        "evt_processed",
        "payment_intent.succeeded",
        payment_intent("pi_mock_1", &order, 1, 1000, "succeeded"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let published = probe.next::<PaymentCreated>(10).await;
    assert_eq!(published.data.stripe_id, "pi_mock_1");
    assert_eq!(app.payments(&order).await.len(), 1);
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.json, error("Order is already paid"));
    assert_eq!(mock.charges().len(), 1);
}

async fn a_payment_failed_webhook_frees_the_attempt(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    let busy = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(
        busy.json,
        error("A payment for this order is already in progress")
    );

    let mut failed = payment_intent("pi_mock_1", &order, 1, 1000, "requires_payment_method");
    failed["last_payment_error"] =
        json!({"type": "card_error", "message": "Your card was declined."});
    let event = stripe_event("evt_failed", "payment_intent.payment_failed", failed);
    let res = app.signed_webhook(&event).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(mock.requests()[1].idempotency_key, format!("{order}-2"));
    assert_eq!(app.payments(&order).await.len(), 1);
}

async fn a_webhook_charge_for_a_cancelled_order_is_refunded_at_stripe(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    app.cancel(&order, 1).await;

    let event = stripe_event(
        "evt_too_late",
        "payment_intent.succeeded",
        payment_intent("pi_mock_1", &order, 1, 1000, "succeeded"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.wait_payment_status(&order, "refunded").await;
    assert_eq!(mock.refunds(), ["pi_mock_1"]);
    probe.assert_silent(300).await;
    mock.assert_wire_format_kept();
}

backend_tests!(
    paying_through_stripe_charges_the_order_price_in_cents,
    the_configured_currency_is_charged,
    a_stripe_decline_is_a_400_and_the_next_card_is_a_new_attempt,
    ten_concurrent_pay_requests_charge_stripe_once,
    a_stripe_outage_is_a_503_and_leaves_the_order_payable,
    a_charge_that_lands_after_the_order_was_cancelled_is_refunded,
    a_signed_payment_intent_succeeded_webhook_records_the_payment,
    the_same_webhook_event_is_handled_once,
    a_tampered_webhook_body_is_refused,
    a_webhook_signed_longer_ago_than_the_tolerance_is_refused,
    a_webhook_without_a_valid_signature_header_is_refused,
    the_signature_is_verified_on_the_raw_body,
    a_processing_payment_is_completed_by_its_webhook,
    a_payment_failed_webhook_frees_the_attempt,
    a_webhook_charge_for_a_cancelled_order_is_refunded_at_stripe,
);
