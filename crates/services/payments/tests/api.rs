//! The payments API with the development provider, and the orders replica behind it, on
//! SQLite (with the in-process bus) and on PostgreSQL (with NATS).

mod common;

use std::sync::Arc;

use bt_contract::Cents;
use bt_contract::events::{OrderCancelled, PaymentCreated};
use bt_payments::charging::{self, Recorded};
use bt_payments::provider::{Charge, ChargeOutcome, Development, Provider};
use bt_payments::store;
use bt_platform::bus::Outbox;
use bt_test_support::{Backend, EventProbe, TestUser, backend_tests, publish};
use chrono::Utc;
use common::{TestApp, error, order_created, payment_intent, stripe_event};
use reqwest::StatusCode;
use serde_json::json;

/// The service with a development provider the test can inspect.
async fn spawn(backend: Backend) -> (TestApp, Development) {
    let dev = Development::default();
    let app = TestApp::spawn(backend, Provider::Development(dev.clone())).await;
    (app, dev)
}

async fn paying_needs_a_session(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let res = app
        .anonymous()
        .post(
            "/api/payments",
            &json!({"token": "tok_visa", "orderId": order}),
        )
        .await;

    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text);
    assert_eq!(res.json, error("Not authorized"));
    assert!(dev.charges().is_empty());
}

async fn invalid_payments_are_refused_with_one_error_per_field(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let client = app.as_user(&buyer);
    let token = || ("token".to_owned(), "Token must be provided".to_owned());
    let order_id = || ("orderId".to_owned(), "OrderId must be provided".to_owned());
    let cases = [
        (json!({"orderId": order}), vec![token()]),
        (json!({"token": "", "orderId": order}), vec![token()]),
        (json!({"token": "   ", "orderId": order}), vec![token()]),
        (json!({"token": 42, "orderId": order}), vec![token()]),
        (json!({"token": "tok_visa"}), vec![order_id()]),
        (
            json!({"token": "tok_visa", "orderId": ""}),
            vec![order_id()],
        ),
        (
            json!({"token": "tok_visa", "orderId": null}),
            vec![order_id()],
        ),
        (json!({}), vec![token(), order_id()]),
        (
            json!({"token": "", "orderId": " "}),
            vec![token(), order_id()],
        ),
    ];
    for (body, want) in cases {
        let res = client.post("/api/payments", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
        assert_eq!(res.field_errors(), want, "{body}");
    }
    assert!(dev.charges().is_empty(), "nothing was charged");
    assert!(app.payments(&order).await.is_empty());
}

async fn paying_an_unknown_order_is_404(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();

    let res = app
        .pay(&buyer, "0192f5e4-0000-7000-8000-000000000000", "tok_visa")
        .await;

    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text);
    assert_eq!(res.json, error("Not Found"));
    assert!(dev.charges().is_empty());
}

async fn paying_someone_elses_order_is_401(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let res = app.pay(&TestUser::new(), &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text);
    assert_eq!(res.json, error("Not authorized"));
    assert!(dev.charges().is_empty());
    assert!(app.payments(&order).await.is_empty());
}

async fn paying_with_a_good_card_records_one_payment_and_publishes_payment_created(
    backend: Backend,
) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let id = res.json["id"].as_str().expect("a payment id").to_owned();
    assert_eq!(res.json, json!({"id": id}));
    let charges = dev.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].amount, Cents::new(2050));
    assert_eq!(charges[0].order_id, order);
    assert!(!charges[0].refunded);

    let payments = app.payments(&order).await;
    assert_eq!(payments.len(), 1);
    let payment = &payments[0];
    assert_eq!(payment.id, id);
    assert_eq!(payment.provider_id, charges[0].provider_id);
    assert_eq!((payment.amount, payment.currency.as_str()), (2050, "usd"));
    assert_eq!(payment.status, "succeeded");

    let event = probe.next::<PaymentCreated>(10).await;
    assert_eq!(
        event.data,
        PaymentCreated {
            id,
            order_id: order,
            stripe_id: charges[0].provider_id.clone(),
        }
    );
    probe.assert_silent(300).await;
}

async fn a_paid_order_cannot_be_paid_again(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let first = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    // Before the orders service has completed the order, and after.
    let again = app.pay(&buyer, &order, "tok_mastercard").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
    assert_eq!(again.json, error("Order is already paid"));
    app.complete(&order, 1).await;
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
    assert_eq!(again.json, error("Order is already paid"));

    assert_eq!(dev.charges().len(), 1, "charged once");
    assert_eq!(app.payments(&order).await.len(), 1);
}

async fn a_cancelled_order_cannot_be_paid(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    app.cancel(&order, 1).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Cannot pay for a cancelled order"));
    assert!(dev.charges().is_empty());
    assert!(app.payments(&order).await.is_empty());
}

async fn an_order_past_its_expiry_cannot_be_paid_before_its_cancellation_arrives(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = uuid::Uuid::now_v7().to_string();
    let expired = Utc::now() - chrono::Duration::seconds(1);
    app.publish_order(order_created(&order, &buyer.id, 1000, expired))
        .await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Cannot pay for an expired order"));
    assert!(
        dev.charges().is_empty(),
        "an expired order is never charged"
    );
    assert!(app.payments(&order).await.is_empty());
}

async fn a_declined_card_leaves_the_order_payable_for_another_card(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
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
    assert!(app.payments(&order).await.is_empty());
    probe.assert_silent(300).await;

    // A second attempt is a new charge (a new idempotency key): the development provider,
    // idempotent like Stripe, would otherwise replay the decline.
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(dev.charges().len(), 1, "two attempts, one charge");
    assert_eq!(app.payments(&order).await.len(), 1);
    let event = probe.next::<PaymentCreated>(10).await;
    assert_eq!(event.data.id, paid.json["id"].as_str().unwrap());
}

async fn an_unknown_token_is_refused_with_the_providers_message(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    let res = app.pay(&buyer, &order, "tok_nonsense").await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("No such token: 'tok_nonsense'"));
    assert!(dev.charges().is_empty());
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(
        paid.status,
        StatusCode::CREATED,
        "the order stays payable: {}",
        paid.text
    );
}

async fn ten_concurrent_pay_requests_for_one_order_charge_it_once(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1500).await;

    let responses =
        futures::future::join_all((0..10).map(|_| app.pay(&buyer, &order, "tok_visa"))).await;

    let created: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "exactly one payment: {responses:#?}");
    for res in responses.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
        let message = res.messages().join("");
        assert!(
            message == "A payment for this order is already in progress"
                || message == "Order is already paid",
            "{}",
            res.text
        );
    }
    assert_eq!(dev.charges().len(), 1, "one charge at the provider");
    let payments = app.payments(&order).await;
    assert_eq!(payments.len(), 1, "one payment row");
    assert_eq!(payments[0].id, created[0].json["id"].as_str().unwrap());
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(500).await;
}

async fn a_paid_order_cancelled_afterwards_is_refunded(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert!(!dev.charges()[0].refunded);

    // Expiry won the race with the payment at the orders service.
    app.cancel(&order, 1).await;

    app.wait_payment_status(&order, "refunded").await;
    let charges = dev.charges();
    assert_eq!(charges.len(), 1);
    assert!(charges[0].refunded, "the charge was given back");
    let again = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(again.json, error("Cannot pay for a cancelled order"));
}

async fn a_refund_that_keeps_failing_does_not_hold_up_the_others(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();

    // A charge the provider will never refund (it does not know it) lands on a cancelled order.
    let stuck = app.order_for(&buyer, 1000).await;
    app.cancel(&stuck, 1).await;
    let event = stripe_event(
        "evt_stuck",
        "payment_intent.succeeded",
        payment_intent("pi_unknown_to_the_provider", &stuck, 1, 1000, "succeeded"),
    );
    let res = app.signed_webhook(&event).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.wait_payment_status(&stuck, "refund_pending").await;

    // Another paid order is cancelled afterwards: its refund still goes through.
    let order = app.order_for(&buyer, 1000).await;
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    app.cancel(&order, 1).await;

    app.wait_payment_status(&order, "refunded").await;
    assert!(dev.charges()[0].refunded);
    assert_eq!(app.payments(&stuck).await[0].status, "refund_pending");
}

async fn a_charge_recorded_while_a_cancellation_commits_is_refunded(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let provider = Provider::Development(dev.clone());
    let charged = provider
        .charge(&Charge {
            amount: Cents::new(1000),
            currency: "usd".into(),
            token: "tok_visa".into(),
            idempotency_key: format!("{order}-1"),
            order_id: order.clone(),
            attempt: 1,
        })
        .await;
    let Ok(ChargeOutcome::Succeeded { provider_id }) = charged else {
        panic!("{charged:?}")
    };

    // The replica's cancellation is written but not committed yet when the charge is recorded.
    let mut cancelling = app.db.begin().await.unwrap();
    assert!(
        store::update_order(&mut cancelling, &order, "cancelled", 1)
            .await
            .unwrap()
    );
    let recording = tokio::spawn({
        let db = app.db.clone();
        let order = order.clone();
        async move {
            let outbox = Outbox::new(db.clone());
            let wake = Arc::new(tokio::sync::Notify::new());
            charging::record_success(&db, &outbox, &wake, &order, None, &provider_id, 1000, "usd")
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cancelling.commit().await.unwrap();

    let recorded = recording.await.unwrap().expect("recorded");
    assert!(
        matches!(recorded, Recorded::Refunding(_)),
        "a charge for a cancelled order is refunded, not kept: {recorded:?}"
    );
    let payments = app.payments(&order).await;
    assert_eq!(payments.len(), 1);
    assert_ne!(payments[0].status, "succeeded");
}

async fn the_replica_applies_order_events_in_version_order(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = uuid::Uuid::now_v7().to_string();

    // The cancellation overtakes the creation: it waits for it instead of being lost.
    publish(
        &app.bus.bus,
        OrderCancelled {
            id: order.clone(),
            version: 1,
            ticket: bt_contract::events::TicketRef {
                id: format!("ticket-of-{order}"),
            },
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        app.replica(&order).await.is_none(),
        "version 1 is not applied before 0"
    );
    publish(
        &app.bus.bus,
        order_created(
            &order,
            &buyer.id,
            1000,
            Utc::now() + chrono::Duration::minutes(15),
        ),
    )
    .await;

    app.wait_status(&order, "cancelled", 1).await;
    let replica = app.replica(&order).await.unwrap();
    assert_eq!(
        (replica.user_id.as_str(), replica.price),
        (buyer.id.as_str(), 1000)
    );
    let res = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(res.json, error("Cannot pay for a cancelled order"));
    assert!(dev.charges().is_empty());
}

async fn a_charge_for_a_cancelled_order_reported_by_webhook_is_refunded(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    // The charge happened at the provider (the pay request's answer was lost) ...
    let charged = Provider::Development(dev.clone())
        .charge(&Charge {
            amount: Cents::new(1000),
            currency: "usd".into(),
            token: "tok_visa".into(),
            idempotency_key: format!("{order}-1"),
            order_id: order.clone(),
            attempt: 1,
        })
        .await;
    let Ok(ChargeOutcome::Succeeded { provider_id }) = charged else {
        panic!("{charged:?}")
    };
    // ... and the order expired before its webhook arrived.
    app.cancel(&order, 1).await;

    let event = stripe_event(
        "evt_late",
        "payment_intent.succeeded",
        payment_intent(&provider_id, &order, 1, 1000, "succeeded"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.wait_payment_status(&order, "refunded").await;
    assert!(dev.charges()[0].refunded);
    probe.assert_silent(300).await;
}

backend_tests!(
    paying_needs_a_session,
    invalid_payments_are_refused_with_one_error_per_field,
    paying_an_unknown_order_is_404,
    paying_someone_elses_order_is_401,
    paying_with_a_good_card_records_one_payment_and_publishes_payment_created,
    a_paid_order_cannot_be_paid_again,
    a_cancelled_order_cannot_be_paid,
    an_order_past_its_expiry_cannot_be_paid_before_its_cancellation_arrives,
    a_declined_card_leaves_the_order_payable_for_another_card,
    an_unknown_token_is_refused_with_the_providers_message,
    ten_concurrent_pay_requests_for_one_order_charge_it_once,
    a_paid_order_cancelled_afterwards_is_refunded,
    a_refund_that_keeps_failing_does_not_hold_up_the_others,
    a_charge_recorded_while_a_cancellation_commits_is_refunded,
    the_replica_applies_order_events_in_version_order,
    a_charge_for_a_cancelled_order_reported_by_webhook_is_refunded,
);
