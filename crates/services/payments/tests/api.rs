//! The payments API with the development provider, and the orders replica behind it, on
//! SQLite (with the in-process bus) and on PostgreSQL (with NATS). The orders service's part —
//! completing an order with a payment — is played by the test where a test needs it.

mod common;

use std::time::{Duration, Instant};

use bt_contract::events::{
    CancelReason, Event, OrderCancelled, OrderStatus, PaymentCreated, PaymentRefunded,
};
use bt_contract::{Cents, PaymentId};
use bt_payments::domain::ChargeState;
use bt_payments::provider::{DevStatus, Development, Provider};
use bt_test_support::{Backend, EventProbe, TestUser, backend_tests, eventually, publish};
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

/// The same, with the orders service's part played: a payment completes its open order.
async fn spawn_with_orders(backend: Backend) -> (TestApp, Development) {
    let (mut app, dev) = spawn(backend).await;
    app.orders_complete_paid_orders().await;
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
    assert!(app.charges(&order).await.is_empty());
}

async fn paying_an_unknown_order_is_404(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();

    for id in ["0192f5e4-0000-7000-8000-000000000000", "not-an-order"] {
        let started = Instant::now();
        let res = app.pay(&buyer, id, "tok_visa").await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}: {}", res.text);
        assert_eq!(res.json, error("Not Found"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "an old or foreign id is not waited for"
        );
    }
    assert!(dev.charges().is_empty());
}

async fn paying_an_order_placed_a_moment_ago_waits_for_it_instead_of_404(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
    let buyer = TestUser::new();
    let order = uuid::Uuid::now_v7().to_string();
    // The buyer pays before `order.created` has reached the payments service.
    let bus = app.bus.bus.clone();
    let created = order_created(
        &order,
        &buyer.id,
        1000,
        Utc::now() + chrono::Duration::minutes(15),
    );
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&bus, created).await;
    });

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(dev.charges().len(), 1);
    late.await.unwrap();
}

async fn paying_an_order_that_never_arrives_is_a_retryable_503_not_a_404(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let fresh = uuid::Uuid::now_v7().to_string();

    let started = Instant::now();
    let res = app.pay(&buyer, &fresh, "tok_visa").await;

    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(res.headers["retry-after"], "1");
    assert_eq!(
        res.json,
        error("This order is not known here yet (it was created a moment ago); please try again")
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "bounded wait: {waited:?}"
    );
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
    assert!(app.charges(&order).await.is_empty());
}

async fn a_payment_is_authorised_announced_and_captured_once_the_order_is_complete_with_it(
    backend: Backend,
) {
    let (app, dev) = spawn_with_orders(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 2050).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let id = res.json["id"].as_str().expect("a payment id").to_owned();
    assert_eq!(res.json, json!({"id": id}));
    // 201 means the order is complete with this payment.
    let replica = app.replica(&order).await.unwrap();
    assert_eq!(replica.status, OrderStatus::Complete);
    assert_eq!(replica.completed_by, Some(PaymentId::new(&id)));

    let event = probe.next::<PaymentCreated>(10).await;
    let charges = dev.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(
        event.data,
        PaymentCreated {
            id: PaymentId::new(&id),
            order_id: order.as_str().into(),
            stripe_id: charges[0].provider_id.clone(),
            amount: Some(Cents::new(2050)),
        }
    );
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    let charge = &app.charges(&order).await[0];
    assert_eq!(charge.id, id.as_str());
    assert_eq!(
        (charge.amount, charge.currency.as_str()),
        (Cents::new(2050), "usd")
    );
    assert_eq!(charge.token, None, "the card token is not kept");
    let charges = dev.charges();
    assert_eq!(charges[0].amount, Cents::new(2050));
    assert_eq!(charges[0].status, DevStatus::Captured);
    probe.assert_silent(300).await;
}

async fn a_paid_order_cannot_be_paid_again(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let first = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    let again = app.pay(&buyer, &order, "tok_mastercard").await;

    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
    assert_eq!(again.json, error("Order is already paid"));
    assert_eq!(dev.charges().len(), 1, "charged once");
    assert_eq!(app.charges(&order).await.len(), 1);
}

async fn a_cancelled_order_cannot_be_paid(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    app.cancel(&order, 1, CancelReason::Buyer).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Cannot pay for a cancelled order"));
    assert!(dev.charges().is_empty());
    assert!(app.charges(&order).await.is_empty());
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
    assert!(app.charges(&order).await.is_empty());
}

async fn a_declined_card_leaves_the_order_payable_for_another_card(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
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
    assert_eq!(app.charge_states(&order).await, [ChargeState::Declined]);
    probe.assert_silent(300).await;

    // A second attempt is a new charge (a new idempotency key): the development provider,
    // idempotent like Stripe, would otherwise replay the decline.
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(dev.charges().len(), 1, "two attempts, one charge");
    let event = probe.next::<PaymentCreated>(10).await;
    assert_eq!(event.data.id, paid.json["id"].as_str().unwrap());
    let charges = app.charges(&order).await;
    assert_eq!(
        charges.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
}

async fn an_unknown_token_is_refused_with_the_providers_message(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
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

async fn concurrent_pay_requests_for_one_order_make_one_charge_and_agree(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1500).await;

    let responses =
        futures::future::join_all((0..10).map(|_| app.pay(&buyer, &order, "tok_visa"))).await;

    // Every request answers the one payment, or that the order is paid.
    let first_paid = responses
        .iter()
        .find(|r| r.status == StatusCode::CREATED)
        .unwrap_or_else(|| panic!("one payment: {responses:#?}"));
    for res in &responses {
        if res.status == StatusCode::CREATED {
            assert_eq!(res.json, first_paid.json, "the same payment");
        } else {
            assert_eq!(res.json, error("Order is already paid"), "{}", res.text);
        }
    }
    assert_eq!(dev.charges().len(), 1, "one charge at the provider");
    assert_eq!(app.charges(&order).await.len(), 1, "one charge row");
    probe.next::<PaymentCreated>(10).await;
    probe.assert_silent(500).await;
}

async fn a_cancellation_that_wins_over_an_authorised_payment_releases_the_hold(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // The card is authorised; before the orders service completes the order, it cancels it
    // (the buyer's cancel, or expiry, came first there).
    let paying = tokio::spawn({
        let client = app.as_user(&buyer);
        let order = order.clone();
        async move {
            client
                .post(
                    "/api/payments",
                    &json!({"token": "tok_visa", "orderId": order}),
                )
                .await
        }
    });
    probe.next::<PaymentCreated>(10).await;
    app.cancel(&order, 1, CancelReason::Buyer).await;
    let res = paying.await.unwrap();

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(
        res.json,
        error("The order was cancelled before the payment completed; nothing was charged")
    );
    app.wait_charge_states(&order, &[ChargeState::Voided]).await;
    assert_eq!(dev.charges()[0].status, DevStatus::Voided, "no money taken");
}

async fn a_payment_that_lost_to_another_is_released(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let paying = tokio::spawn({
        let client = app.as_user(&buyer);
        let order = order.clone();
        async move {
            client
                .post(
                    "/api/payments",
                    &json!({"token": "tok_visa", "orderId": order}),
                )
                .await
        }
    });
    probe.next::<PaymentCreated>(10).await;

    // The orders service completed the order with another payment (e.g. one recorded by a
    // webhook of an earlier attempt).
    app.complete(&order, 1, "another-payment").await;
    let res = paying.await.unwrap();

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Order is already paid"));
    app.wait_charge_states(&order, &[ChargeState::Voided]).await;
    assert_eq!(dev.charges()[0].status, DevStatus::Voided);
}

async fn a_charge_left_behind_by_a_dead_process_is_replayed_and_completes_the_order(
    backend: Backend,
) {
    let (app, dev) = spawn_with_orders(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // A process sent this charge and died before recording the answer.
    let abandoned = app.abandoned_charge(&order, "tok_visa", 1000).await;

    // The settlement worker replays it (same idempotency key) without anyone asking.
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    assert_eq!(app.charges(&order).await[0].id, abandoned.id);
    assert_eq!(dev.charges().len(), 1);
    assert_eq!(dev.charges()[0].status, DevStatus::Captured);
    let replica = app.replica(&order).await.unwrap();
    assert_eq!(replica.completed_by, Some(abandoned.id.clone()));
    // The buyer's next pay request learns the outcome instead of being blocked.
    let res = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(res.json, error("Order is already paid"));
}

async fn a_pay_request_replays_an_abandoned_charge_instead_of_waiting_for_it(backend: Backend) {
    let (app, dev) = spawn_with_orders(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    let abandoned = app.abandoned_charge(&order, "tok_visa", 1000).await;

    let res = app.pay(&buyer, &order, "tok_visa").await;

    // Either this request replayed it, or the worker did first: the answer is the same payment.
    if res.status == StatusCode::CREATED {
        assert_eq!(res.json, json!({"id": abandoned.id}));
    } else {
        assert_eq!(res.json, error("Order is already paid"), "{}", res.text);
    }
    assert_eq!(dev.charges().len(), 1, "one charge");
    eventually(10, "the order is complete", || async {
        app.replica(&order).await.unwrap().status == OrderStatus::Complete
    })
    .await;
}

async fn a_charge_abandoned_longer_than_the_providers_memory_is_closed_not_replayed(
    backend: Backend,
) {
    let (app, dev) = spawn_with_orders(backend).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;

    // Stripe forgets idempotency keys after a day: a replay then could be a second charge.
    app.abandoned_charge_aged(&order, "tok_visa", 1000, Duration::from_secs(2 * 24 * 3600))
        .await;

    app.wait_charge_states(&order, &[ChargeState::Declined])
        .await;
    assert!(dev.charges().is_empty(), "not sent again");
    let paid = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(
        dev.charges().len(),
        1,
        "the order is payable with a new attempt"
    );
}

async fn the_replica_applies_order_events_in_version_order(backend: Backend) {
    let (app, dev) = spawn(backend).await;
    let buyer = TestUser::new();
    let order = uuid::Uuid::now_v7().to_string();

    // The cancellation overtakes the creation: it waits for it instead of being lost.
    publish(
        &app.bus.bus,
        OrderCancelled {
            id: order.as_str().into(),
            version: 1,
            ticket: bt_contract::events::TicketRef {
                id: format!("ticket-of-{order}").into(),
            },
            reason: Some(CancelReason::Expired),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
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

    app.wait_status(&order, OrderStatus::Cancelled, 1).await;
    let replica = app.replica(&order).await.unwrap();
    assert_eq!(
        (replica.user_id.as_str(), replica.price),
        (buyer.id.as_str(), Cents::new(1000))
    );
    assert_eq!(replica.cancel_reason, Some(CancelReason::Expired));
    let res = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(res.json, error("Cannot pay for an expired order"));
    assert!(dev.charges().is_empty());
}

async fn a_captured_charge_reported_by_webhook_for_a_cancelled_order_is_refunded(backend: Backend) {
    let (app, _dev) = spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "payment.created").await;
    let mut refunds = EventProbe::new(&app.bus.bus, PaymentRefunded::SUBJECT).await;
    let buyer = TestUser::new();
    let order = app.order_for(&buyer, 1000).await;
    app.cancel(&order, 1, CancelReason::Expired).await;

    // A charge taken at the provider for this order, unknown to the service (e.g. made before
    // this version), reported after the order expired.
    let event = stripe_event(
        "evt_late",
        "payment_intent.succeeded",
        payment_intent("pi_dev_unknown", &order, 7, 1000, "succeeded"),
    );
    let res = app.signed_webhook(&event).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.wait_charge_states(&order, &[ChargeState::Refunded])
        .await;
    probe.assert_silent(300).await;
    // The buyer is told once the money is back.
    let refunded = refunds.next::<PaymentRefunded>(15).await.data;
    assert_eq!(
        (
            refunded.order_id.as_str(),
            refunded.user_id.as_str(),
            refunded.price,
            refunded.refunded,
            refunded.amount
        ),
        (
            order.as_str(),
            buyer.id.as_str(),
            Cents::new(1000),
            Cents::new(1000),
            Cents::new(1000)
        )
    );
    assert!(refunded.in_full());
    assert_eq!(
        (refunded.seller_id, refunded.seller_amount),
        (None, None),
        "no sale, no seller to take it from"
    );
    assert_eq!(
        refunded.id,
        app.charges(&order).await[0].id,
        "names the charge refunded"
    );
    refunds.assert_silent(300).await;
}

backend_tests!(
    paying_needs_a_session,
    invalid_payments_are_refused_with_one_error_per_field,
    paying_an_unknown_order_is_404,
    paying_an_order_placed_a_moment_ago_waits_for_it_instead_of_404,
    paying_an_order_that_never_arrives_is_a_retryable_503_not_a_404,
    paying_someone_elses_order_is_401,
    a_payment_is_authorised_announced_and_captured_once_the_order_is_complete_with_it,
    a_paid_order_cannot_be_paid_again,
    a_cancelled_order_cannot_be_paid,
    an_order_past_its_expiry_cannot_be_paid_before_its_cancellation_arrives,
    a_declined_card_leaves_the_order_payable_for_another_card,
    an_unknown_token_is_refused_with_the_providers_message,
    concurrent_pay_requests_for_one_order_make_one_charge_and_agree,
    a_cancellation_that_wins_over_an_authorised_payment_releases_the_hold,
    a_payment_that_lost_to_another_is_released,
    a_charge_left_behind_by_a_dead_process_is_replayed_and_completes_the_order,
    a_pay_request_replays_an_abandoned_charge_instead_of_waiting_for_it,
    a_charge_abandoned_longer_than_the_providers_memory_is_closed_not_replayed,
    the_replica_applies_order_events_in_version_order,
    a_captured_charge_reported_by_webhook_for_a_cancelled_order_is_refunded,
);
