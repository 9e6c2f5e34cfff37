//! The Stripe provider against a local server that speaks Stripe's wire format
//! ([`MockStripe`]: form-encoded requests with a Bearer key and an `Idempotency-Key`, JSON
//! answers and errors, replayed answers for a repeated key, `409` while a key is in flight),
//! and the service with it: authorise, capture or release, refund, webhooks.

mod common;

use bt_contract::Cents;
use bt_contract::events::{CancelReason, OrderStatus, PaymentCreated};
use bt_payments::domain::{Answer, ChargeState};
use bt_payments::provider::{ChargeRequest, Provider, ProviderError, Stripe};
use bt_test_support::stripe::{
    DOWN, FLAKY, HELD, MockStripe, PROCESSING, SECRET_KEY, SLOW, THREE_D_SECURE,
};
use bt_test_support::{Backend, EventProbe, TestUser, backend_tests, eventually};
use chrono::Utc;
use common::{TestApp, error, payment_intent, sign, stripe_event, stripe_provider};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

fn request(token: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        amount: Cents::new(2050),
        currency: "usd".into(),
        token: token.into(),
        idempotency_key: key.into(),
        order_id: "order-1".into(),
        attempt: 1,
    }
}

fn authorized(id: &str) -> Result<Answer, ProviderError> {
    Ok(Answer::Authorized {
        provider_id: id.into(),
    })
}

// ---- The Stripe provider against the mock ----

#[tokio::test]
async fn an_authorisation_is_a_payment_intent_confirmed_with_manual_capture_in_stripes_wire_format()
{
    let mock = MockStripe::start().await;

    let answer = stripe_provider(&mock)
        .authorize(&request("tok_visa", "order-1-1"))
        .await;

    assert_eq!(answer, authorized("pi_mock_1"));
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
        ("capture_method", "manual"),
        ("payment_method_data[type]", "card"),
        ("payment_method_data[card][token]", "tok_visa"),
        ("metadata[order_id]", "order-1"),
        ("metadata[attempt]", "1"),
    ] {
        assert_eq!(sent.param(name), Some(value), "{name}");
    }
    let intents = mock.intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(
        (
            intents[0].amount,
            intents[0].currency.as_str(),
            intents[0].status.as_str()
        ),
        (2050, "usd", "requires_capture"),
        "held, not taken"
    );
}

#[tokio::test]
async fn the_currency_is_sent_in_stripes_lower_case() {
    let mock = MockStripe::start().await;
    let mut eur = request("tok_visa", "order-1-1");
    eur.currency = "EUR".into();

    let answer = stripe_provider(&mock).authorize(&eur).await;

    assert_eq!(answer, authorized("pi_mock_1"));
    assert_eq!(mock.requests()[0].param("currency"), Some("eur"));
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_declined_card_is_a_decline_with_stripes_message() {
    let mock = MockStripe::start().await;

    let answer = stripe_provider(&mock)
        .authorize(&request("tok_chargeDeclined", "order-1-1"))
        .await;

    assert_eq!(
        answer,
        Ok(Answer::Declined {
            message: "Your card was declined.".into()
        })
    );
    assert!(mock.intents().is_empty());
    assert_eq!(
        mock.requests().len(),
        1,
        "a decline is final, never retried"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_idempotency_key_and_authorises_once() {
    let mock = MockStripe::start().await;

    let answer = stripe_provider(&mock)
        .authorize(&request(FLAKY, "order-1-1"))
        .await;

    assert_eq!(answer, authorized("pi_mock_1"));
    let keys: Vec<String> = mock
        .requests()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, ["order-1-1", "order-1-1"], "retried once, same key");
    assert_eq!(mock.intents().len(), 1, "held once");
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn asking_again_with_the_same_key_replays_the_answer() {
    let mock = MockStripe::start().await;
    let provider = stripe_provider(&mock);

    let first = provider.authorize(&request("tok_visa", "order-1-1")).await;
    let again = provider.authorize(&request("tok_visa", "order-1-1")).await;

    assert_eq!(first, again);
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(mock.intents().len(), 1);
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_replay_while_the_first_request_is_in_flight_gets_the_same_answer() {
    let mock = MockStripe::start().await;
    let provider = stripe_provider(&mock);
    let first = tokio::spawn({
        let provider = provider.clone();
        async move { provider.authorize(&request(HELD, "order-1-1")).await }
    });
    eventually(10, "Stripe holds the first request", || async {
        !mock.requests().is_empty()
    })
    .await;

    // Stripe answers 409 while the key is in flight; the client retries with the same key.
    let replay = tokio::spawn({
        let provider = provider.clone();
        async move { provider.authorize(&request(HELD, "order-1-1")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    mock.release();

    assert_eq!(first.await.unwrap(), authorized("pi_mock_1"));
    let replayed = replay.await.unwrap();
    assert!(
        replayed == authorized("pi_mock_1")
            || matches!(replayed, Err(ProviderError::Unavailable(_))),
        "the same answer, or not yet: {replayed:?}"
    );
    assert_eq!(mock.intents().len(), 1, "one hold");
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn an_outage_is_unavailable_after_a_bounded_number_of_retries() {
    let mock = MockStripe::start().await;

    let answer = stripe_provider(&mock)
        .authorize(&request(DOWN, "order-1-1"))
        .await;

    assert!(
        matches!(answer, Err(ProviderError::Unavailable(_))),
        "{answer:?}"
    );
    let requests = mock.requests();
    assert!(
        (2..=5).contains(&requests.len()),
        "retried, but not forever: {} requests",
        requests.len()
    );
    assert!(requests.iter().all(|r| r.idempotency_key == "order-1-1"));
    assert!(mock.intents().is_empty());
}

#[tokio::test]
async fn an_unknown_token_is_invalid_with_stripes_message() {
    let mock = MockStripe::start().await;

    let answer = stripe_provider(&mock)
        .authorize(&request("tok_nope", "order-1-1"))
        .await;

    assert_eq!(
        answer,
        Err(ProviderError::Invalid("No such token: 'tok_nope'".into()))
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_wrong_api_key_is_an_outage_not_a_decline() {
    let mock = MockStripe::start().await;
    let provider = Provider::Stripe(Stripe::new(&mock.base, SecretString::from("sk_test_wrong")));
    assert_ne!(SECRET_KEY, "sk_test_wrong");

    let answer = provider.authorize(&request("tok_visa", "order-1-1")).await;

    assert!(
        matches!(answer, Err(ProviderError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(mock.intents().is_empty());
}

#[tokio::test]
async fn payment_intents_still_processing_or_needing_authentication_are_not_authorised() {
    let mock = MockStripe::start().await;
    let provider = stripe_provider(&mock);

    let processing = provider.authorize(&request(PROCESSING, "order-1-1")).await;
    let three_d_secure = provider
        .authorize(&request(THREE_D_SECURE, "order-2-1"))
        .await;

    assert_eq!(
        processing,
        Ok(Answer::Processing {
            provider_id: "pi_mock_1".into()
        })
    );
    assert!(
        matches!(&three_d_secure, Ok(Answer::Declined { message }) if message.contains("authentication")),
        "{three_d_secure:?}"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_hold_is_captured_once_and_then_can_only_be_refunded() {
    let mock = MockStripe::start().await;
    let provider = stripe_provider(&mock);
    provider
        .authorize(&request("tok_visa", "order-1-1"))
        .await
        .unwrap();

    assert_eq!(provider.capture("pi_mock_1").await, Ok(()));
    assert_eq!(provider.capture("pi_mock_1").await, Ok(()), "idempotent");
    assert_eq!(mock.intents()[0].status, "succeeded");
    // Releasing a captured hold is refused: the money must be refunded instead.
    assert!(matches!(
        provider.void("pi_mock_1").await,
        Err(ProviderError::Invalid(_))
    ));
    assert_eq!(provider.refund("pi_mock_1").await, Ok(()));
    assert_eq!(provider.refund("pi_mock_1").await, Ok(()), "idempotent");
    assert_eq!(mock.refunds(), ["pi_mock_1"]);
    let captures: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/payment_intents/pi_mock_1/capture")
        .collect();
    assert_eq!(captures.len(), 2);
    assert_eq!(captures[0].idempotency_key, "capture-pi_mock_1");
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn a_released_hold_is_never_captured() {
    let mock = MockStripe::start().await;
    let provider = stripe_provider(&mock);
    provider
        .authorize(&request("tok_visa", "order-1-1"))
        .await
        .unwrap();

    assert_eq!(provider.void("pi_mock_1").await, Ok(()));
    assert_eq!(provider.void("pi_mock_1").await, Ok(()), "idempotent");
    assert_eq!(mock.intents()[0].status, "canceled");
    assert!(matches!(
        provider.capture("pi_mock_1").await,
        Err(ProviderError::Invalid(_))
    ));
    assert!(mock.captured().is_empty());
    mock.assert_wire_format_kept();
}

#[tokio::test]
async fn refunding_an_unknown_payment_intent_fails() {
    let mock = MockStripe::start().await;

    let outcome = stripe_provider(&mock).refund("pi_nope").await;

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
    let mut app = TestApp::spawn(backend, stripe_provider(&mock)).await;
    app.orders_complete_paid_orders().await;
    (app, mock)
}

/// The service without anyone completing orders: the test plays the orders service.
async fn spawn_alone(backend: Backend) -> (TestApp, MockStripe) {
    let mock = MockStripe::start().await;
    let app = TestApp::spawn(backend, stripe_provider(&mock)).await;
    (app, mock)
}

async fn paying_through_stripe_holds_then_captures_the_order_price_in_cents(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let requests = mock.requests();
    assert_eq!(requests[0].param("amount"), Some("2050"));
    assert_eq!(requests[0].param("currency"), Some("usd"));
    assert_eq!(
        requests[0].param("metadata[order_id]"),
        Some(order.as_str())
    );
    assert_eq!(requests[0].idempotency_key, format!("{order}-1"));
    let event = probe.next::<PaymentCreated>(10).await;
    assert_eq!(event.data.stripe_id, "pi_mock_1");
    assert_eq!(event.data.amount, Some(Cents::new(2050)));
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    let captured = mock.captured();
    assert_eq!(captured.len(), 1);
    assert_eq!(
        (captured[0].amount, captured[0].order_id.as_str()),
        (2050, order.as_str())
    );
    let charge = &app.charges(&order).await[0];
    assert_eq!(charge.id, res.json["id"].as_str().unwrap());
    assert_eq!(charge.provider_id.as_deref(), Some("pi_mock_1"));
    mock.assert_wire_format_kept();
}

async fn the_configured_currency_is_charged(backend: Backend) {
    let mock = MockStripe::start().await;
    let mut settings = common::settings(stripe_provider(&mock));
    settings.currency = "eur".into();
    let mut app = TestApp::with_settings(backend, settings).await;
    app.orders_complete_paid_orders().await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 999).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(mock.requests()[0].param("currency"), Some("eur"));
    assert_eq!(mock.requests()[0].param("amount"), Some("999"));
    assert_eq!(app.charges(&order).await[0].currency, "eur");
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
        .filter(|r| r.path == "/v1/payment_intents")
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, [format!("{order}-1"), format!("{order}-2")]);
    assert_eq!(mock.intents().len(), 1);
    mock.assert_wire_format_kept();
}

async fn concurrent_pay_requests_reach_stripe_once_and_agree(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // Stripe takes its time: every request arrives while the first authorisation is in flight.
    let responses = futures::future::join_all((0..10).map(|_| app.pay(&buyer, &order, SLOW))).await;

    let paid = responses
        .iter()
        .find(|r| r.status == StatusCode::CREATED)
        .unwrap_or_else(|| panic!("{responses:#?}"));
    for res in &responses {
        assert!(
            res.json == paid.json || res.json == error("Order is already paid"),
            "{}",
            res.text
        );
    }
    let creates = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .count();
    assert_eq!(creates, 1, "one request reached Stripe");
    assert_eq!(mock.intents().len(), 1);
    assert_eq!(app.charges(&order).await.len(), 1);
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(300).await;
}

async fn a_stripe_outage_is_a_503_and_the_same_attempt_goes_through_once_stripe_is_back(
    backend: Backend,
) {
    let (app, mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    mock.set_down(true);

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(
        res.json,
        error("The payment provider is unavailable; please try again")
    );
    assert_eq!(app.charge_states(&order).await, [ChargeState::Started]);

    // Stripe comes back: the same attempt (same key) goes through, by the buyer's next
    // request or by the service on its own — one charge either way.
    mock.set_down(false);
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert!(
        again.status == StatusCode::CREATED || again.json == error("Order is already paid"),
        "{}",
        again.text
    );
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    assert_eq!(mock.captured().len(), 1);
    assert!(
        mock.requests()
            .iter()
            .filter(|r| r.path == "/v1/payment_intents")
            .all(|r| r.idempotency_key == format!("{order}-1"))
    );
}

async fn an_authorisation_that_lands_after_the_order_was_cancelled_is_released(backend: Backend) {
    let (app, mock) = spawn_alone(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // Stripe holds the request while the order expires.
    let paying = tokio::spawn({
        let client = app.as_user(&buyer);
        let body = json!({"token": HELD, "orderId": order});
        async move { client.post("/api/payments", &body).await }
    });
    eventually(10, "Stripe received the request", || async {
        !mock.requests().is_empty()
    })
    .await;
    app.cancel(&order, 1, CancelReason::Expired).await;
    mock.release();
    let res = paying.await.unwrap();

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(
        res.json,
        error("The order expired before the payment completed; nothing was charged")
    );
    app.wait_charge_states(&order, &[ChargeState::Voided]).await;
    assert_eq!(
        mock.intents()[0].status,
        "canceled",
        "the hold was released"
    );
    assert!(mock.captured().is_empty());
    probe.assert_silent(300).await;
    mock.assert_wire_format_kept();
}

async fn a_capture_stripe_refuses_for_good_is_recorded_for_a_person(backend: Backend) {
    let (app, mock) = spawn_alone(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let paying = tokio::spawn({
        let client = app.as_user(&buyer);
        let body = json!({"token": "tok_visa", "orderId": order});
        async move { client.post("/api/payments", &body).await }
    });
    eventually(10, "the card is authorised", || async {
        app.charge_states(&order).await == [ChargeState::Authorized]
    })
    .await;
    let id = app.charges(&order).await[0].id.clone();
    // The hold was cancelled at Stripe (e.g. in the dashboard) before the order completed.
    mock.set_status("pi_mock_1", "canceled");
    app.complete(&order, 1, id.as_str()).await;

    let res = paying.await.unwrap();
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "the order is complete: {}",
        res.text
    );
    app.wait_charge_states(&order, &[ChargeState::CaptureFailed])
        .await;
    assert!(mock.captured().is_empty());
}

// ---- Webhooks ----

async fn a_processing_payment_is_completed_by_its_webhook(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    let id = pending.json["id"].as_str().unwrap().to_owned();
    assert_eq!(pending.json, json!({"id": id, "status": "processing"}));
    assert_eq!(app.charge_states(&order).await, [ChargeState::Started]);
    probe.assert_silent(300).await;

    // Stripe finishes it and says so.
    mock.set_status("pi_mock_1", "requires_capture");
    let event = stripe_event(
        "evt_processed",
        "payment_intent.amount_capturable_updated",
        payment_intent("pi_mock_1", &order, 1, 1000, "requires_capture"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let published = probe.next::<PaymentCreated>(10).await;
    assert_eq!(published.data.id, id.as_str());
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    assert_eq!(mock.captured().len(), 1);
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.json, error("Order is already paid"));
}

async fn a_payment_failed_webhook_frees_the_attempt(backend: Backend) {
    let (app, mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);

    let mut failed = payment_intent("pi_mock_1", &order, 1, 1000, "requires_payment_method");
    failed["last_payment_error"] =
        json!({"type": "card_error", "message": "Your card was declined."});
    let event = stripe_event("evt_failed", "payment_intent.payment_failed", failed);
    let res = app.signed_webhook(&event).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(app.charge_states(&order).await, [ChargeState::Declined]);

    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let keys: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, [format!("{order}-1"), format!("{order}-2")]);
}

async fn a_webhook_authorisation_for_a_cancelled_order_is_released_at_stripe(backend: Backend) {
    let (app, mock) = spawn_alone(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let pending = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text);
    app.cancel(&order, 1, CancelReason::Buyer).await;

    mock.set_status("pi_mock_1", "requires_capture");
    let event = stripe_event(
        "evt_too_late",
        "payment_intent.amount_capturable_updated",
        payment_intent("pi_mock_1", &order, 1, 1000, "requires_capture"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.wait_charge_states(&order, &[ChargeState::Voided]).await;
    assert_eq!(mock.intents()[0].status, "canceled");
    assert!(mock.captured().is_empty());
    probe.assert_silent(300).await;
    mock.assert_wire_format_kept();
}

async fn a_charge_stripe_reports_that_the_service_never_started_follows_the_rules(
    backend: Backend,
) {
    let (app, mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;
    let event = stripe_event(
        "evt_1",
        "payment_intent.succeeded",
        payment_intent("pi_from_elsewhere", &order, 9, 2050, "succeeded"),
    );

    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let published = probe.next::<PaymentCreated>(10).await;
    assert_eq!(published.data.stripe_id, "pi_from_elsewhere");
    eventually(10, "the order is complete with it", || async {
        app.replica(&order).await.unwrap().status == OrderStatus::Complete
    })
    .await;
    let charges = app.charges(&order).await;
    assert_eq!(charges.len(), 1);
    assert_eq!(
        (
            charges[0].provider_id.as_deref(),
            charges[0].amount,
            charges[0].state
        ),
        (
            Some("pi_from_elsewhere"),
            Cents::new(2050),
            ChargeState::Succeeded
        )
    );
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.json, error("Order is already paid"));
    assert!(mock.requests().is_empty(), "never charged twice");
}

/// An event that records a charge for `order` (a capture the service did not start).
fn captured_elsewhere(event_id: &str, order: &str) -> String {
    stripe_event(
        event_id,
        "payment_intent.succeeded",
        payment_intent(&format!("pi_{event_id}"), order, 9, 1000, "succeeded"),
    )
}

async fn the_same_webhook_event_is_handled_once(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = captured_elsewhere("evt_twice", &order);

    let first = app.signed_webhook(&event).await;
    let second = app.signed_webhook(&event).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json, json!({"received": true}));
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json, json!({"received": true, "duplicate": true}));
    assert_eq!(app.charges(&order).await.len(), 1);
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(500).await;
}

async fn a_tampered_webhook_body_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = captured_elsewhere("evt_tampered", &order);
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
    assert!(app.charges(&order).await.is_empty());
    // Refused events are not remembered: the genuine one is still handled.
    let res = app.webhook(&event, Some(&header)).await;
    assert_eq!(res.json, json!({"received": true}), "{}", res.text);
    assert_eq!(app.charges(&order).await.len(), 1);
}

async fn a_webhook_signed_longer_ago_than_the_tolerance_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = captured_elsewhere("evt_old", &order);
    let now = Utc::now().timestamp();

    let replayed = app.webhook(&event, Some(&sign(&event, now - 301))).await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        replayed.text
    );
    assert_eq!(replayed.json, error("Invalid signature"));
    assert!(app.charges(&order).await.is_empty());

    let recent = app.webhook(&event, Some(&sign(&event, now - 240))).await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text);
    assert_eq!(app.charges(&order).await.len(), 1);
}

async fn a_webhook_without_a_valid_signature_header_is_refused(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let event = captured_elsewhere("evt_unsigned", &order);

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
    assert!(app.charges(&order).await.is_empty());
}

async fn the_signature_is_verified_on_the_raw_body(backend: Backend) {
    let (app, _mock) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    // Stripe's own layout: pretty-printed, keys in its order. Re-serialising it would break
    // the signature.
    let object = payment_intent("pi_pretty", &order, 9, 1000, "succeeded");
    let event = format!(
        "{{\n  \"id\": \"evt_pretty\",\n  \"object\": \"event\",\n  \"type\": \"payment_intent.succeeded\",\n  \"data\": {{\n    \"object\": {}\n  }}\n}}",
        serde_json::to_string_pretty(&object).unwrap()
    );

    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(app.charges(&order).await.len(), 1);
}

backend_tests!(
    paying_through_stripe_holds_then_captures_the_order_price_in_cents,
    the_configured_currency_is_charged,
    a_stripe_decline_is_a_400_and_the_next_card_is_a_new_attempt,
    concurrent_pay_requests_reach_stripe_once_and_agree,
    a_stripe_outage_is_a_503_and_the_same_attempt_goes_through_once_stripe_is_back,
    an_authorisation_that_lands_after_the_order_was_cancelled_is_released,
    a_capture_stripe_refuses_for_good_is_recorded_for_a_person,
    a_processing_payment_is_completed_by_its_webhook,
    a_payment_failed_webhook_frees_the_attempt,
    a_webhook_authorisation_for_a_cancelled_order_is_released_at_stripe,
    a_charge_stripe_reports_that_the_service_never_started_follows_the_rules,
    the_same_webhook_event_is_handled_once,
    a_tampered_webhook_body_is_refused,
    a_webhook_signed_longer_ago_than_the_tolerance_is_refused,
    a_webhook_without_a_valid_signature_header_is_refused,
    the_signature_is_verified_on_the_raw_body,
);
