//! Seller payouts on SQLite (in-process bus) and PostgreSQL (NATS): the credit written with the
//! capture of a completed order's charge, when it becomes available, the payout worker (with
//! the development provider and with Stripe Connect against [`MockStripe`]), refunds, `GET
//! /api/payouts`, onboarding, and the ledger's invariant. The orders service's part —
//! completing an order with its payment — is played by the test harness.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bt_contract::events::{CancelReason, Event, OrderStatus, PaymentRefunded};
use bt_contract::{Cents, Millis, UserId};
use bt_payments::domain::ChargeState;
use bt_payments::ledger::{
    AccountStatus, Balance, Credit, CreditStatus, EntryKind, FeePercent, Totals,
};
use bt_payments::provider::{Development, Provider, TransferRequest};
use bt_payments::store;
use bt_test_support::stripe::{MockStripe, PROCESSING};
use bt_test_support::{Backend, EventProbe, TestUser, backend_tests, eventually};
use common::{PUBLIC_URL, TestApp, stripe_event, stripe_provider};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HOUR: Duration = Duration::from_secs(3600);

/// The service with the development provider, orders completed by their payments.
async fn spawn_dev(backend: Backend) -> (TestApp, Development) {
    let dev = Development::default();
    let mut app = TestApp::spawn(backend, Provider::Development(dev.clone())).await;
    app.orders_complete_paid_orders().await;
    (app, dev)
}

/// The service with Stripe (the mock), orders completed by their payments.
async fn spawn_stripe(backend: Backend) -> (TestApp, MockStripe) {
    let mock = MockStripe::start().await;
    let mut app = TestApp::spawn(backend, stripe_provider(&mock)).await;
    app.orders_complete_paid_orders().await;
    (app, mock)
}

fn started_an_hour_ago() -> Option<Millis> {
    Some(Millis::now().minus(HOUR))
}

fn cents(value: &Value) -> i64 {
    Cents::parse_decimal(&value.to_string())
        .unwrap_or_else(|e| panic!("{value} is no amount: {e}"))
        .get()
}

/// A signed `charge.refunded` event for the whole of the order's captured charge.
async fn refund_at_the_provider(app: &TestApp, order: &str) -> StatusCode {
    let charge = app.charges(order).await.remove(0);
    report_refund(
        app,
        order,
        charge.amount.get(),
        &format!("evt_refund_{order}"),
    )
    .await
}

/// A signed `charge.refunded` event `event` saying that `refunded` cents of the order's
/// captured charge are refunded so far (Stripe sends one per refund, with the running total).
async fn report_refund(app: &TestApp, order: &str, refunded: i64, event: &str) -> StatusCode {
    let charge = app.charges(order).await.remove(0);
    let intent = charge
        .provider_id
        .expect("a captured charge has a provider id");
    let body = stripe_event(
        event,
        "charge.refunded",
        json!({
            "id": format!("ch_for_{intent}"),
            "object": "charge",
            "amount": charge.amount.get(),
            "amount_refunded": refunded,
            "refunded": refunded >= charge.amount.get(),
            "payment_intent": intent,
        }),
    );
    app.signed_webhook(&body).await.status
}

/// A new order of `price_cents` by a new buyer of a new seller (no start), as the orders
/// service announces it: the order's id and the buyer.
async fn new_sale(app: &TestApp, price_cents: i64) -> (String, TestUser) {
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = uuid::Uuid::now_v7().to_string();
    app.publish_order(common::sale_created(
        &order,
        &buyer.id,
        Some(&seller.id),
        price_cents,
        None,
    ))
    .await;
    (order, buyer)
}

/// A new order of `price_cents` (a seller on record, no start), whose first charge Stripe
/// captured at once (an automatic capture) and said so by webhook, before any orders service
/// completed the order. Answers the order's id.
async fn captured_by_stripe(app: &TestApp, mock: &MockStripe, price_cents: i64) -> String {
    let (order, buyer) = new_sale(app, price_cents).await;
    let processing = app.pay(&buyer, &order, PROCESSING).await;
    assert_eq!(
        processing.status,
        StatusCode::ACCEPTED,
        "{}",
        processing.text
    );
    mock.set_status("pi_mock_1", "succeeded");
    let event = stripe_event(
        "evt_captured",
        "payment_intent.succeeded",
        common::payment_intent("pi_mock_1", &order, 1, price_cents, "succeeded"),
    );
    assert_eq!(app.signed_webhook(&event).await.status, StatusCode::OK);
    order
}

/// What an order's entries say, oldest first: (kind, gross, fee, amount, status).
async fn ledger_of(app: &TestApp, order: &str) -> Vec<(EntryKind, i64, i64, i64, CreditStatus)> {
    app.credits(order)
        .await
        .iter()
        .map(|e| (e.kind, e.gross.get(), e.fee.get(), e.amount.get(), e.status))
        .collect()
}

async fn onboard_dev(app: &TestApp, seller: &TestUser) {
    let res = app.onboard(seller).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json, json!({"url": "/payouts"}));
}

/// A sale of `price_cents` by `seller` (who can be paid) whose event started an hour ago,
/// paid out to the seller by a round of the worker. Answers the order's id.
async fn paid_out_sale(
    app: &TestApp,
    buyer: &TestUser,
    seller: &TestUser,
    price_cents: i64,
) -> String {
    let order = app
        .sell(buyer, Some(seller), price_cents, started_an_hour_ago())
        .await;
    app.payout_round(Millis::now()).await;
    wait_credit(app, &order, CreditStatus::Paid).await;
    order
}

/// A `GET /api/payouts` answer's `[pending, available, paid]`.
fn balance(json: &Value) -> [&Value; 3] {
    [&json["pending"], &json["available"], &json["paid"]]
}

/// Waits until the credit of `order` is `status`.
async fn wait_credit(app: &TestApp, order: &str, status: CreditStatus) -> Credit {
    eventually(
        15,
        &format!("the credit of {order} is {status}"),
        || async {
            app.credits(order)
                .await
                .first()
                .is_some_and(|c| c.status == status)
        },
    )
    .await;
    app.credit(order).await
}

// ---- The credit ----

async fn a_sale_credits_its_seller_the_price_less_the_fee_to_the_cent(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    // (price, fee, credit) in cents, at the default 5 %, rounded half-up.
    let cases = [
        (1, 0, 1),                            // 0.01: the fee is 0.05 cent → 0
        (5, 0, 5),                            // 0.05: 0.25 cent → 0
        (10, 1, 9),                           // 0.10: 0.5 cent → 1
        (1999, 100, 1899),                    // 19.99: 99.95 cents → 100
        (100_000_000, 5_000_000, 95_000_000), // 1,000,000.00
    ];
    for (price, fee, amount) in cases {
        let order = app.sell(&buyer, Some(&seller), price, None).await;

        // Written with the capture: the charge is succeeded, so the credit is there.
        let entries = app.credits(&order).await;
        assert_eq!(entries.len(), 1, "one credit for {price}");
        let credit = &entries[0];
        assert_eq!(
            (credit.gross.get(), credit.fee.get(), credit.amount.get()),
            (price, fee, amount),
            "price {price}"
        );
        assert_eq!(credit.gross.get(), credit.amount.get() + credit.fee.get());
        assert_eq!(credit.seller_id, seller.id.as_str());
        assert_eq!(credit.kind, EntryKind::Credit);
        assert_eq!(credit.payment_id, app.charges(&order).await[0].id);
        assert_eq!(
            credit.title.as_deref(),
            Some(format!("Ticket of {order}").as_str())
        );
    }
    let res = app.payouts_of(&seller).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let entries = res.json["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), cases.len());
    // Newest first, in currency units like `price`.
    for (entry, (price, fee, amount)) in entries.iter().zip(cases.iter().rev()) {
        assert_eq!(
            (
                cents(&entry["price"]),
                cents(&entry["fee"]),
                cents(&entry["amount"])
            ),
            (*price, *fee, *amount)
        );
    }
    assert_eq!(entries[0]["price"], json!(1_000_000));
    assert_eq!(entries[0]["amount"], json!(950_000));
    assert_eq!(entries[1]["price"], json!(19.99));
    assert_eq!(entries[1]["fee"], json!(1));
    assert_eq!(entries[1]["amount"], json!(18.99));
    assert_eq!(entries[4]["price"], json!(0.01));
    assert_eq!(entries[4]["fee"], json!(0));
    let total: i64 = cases.iter().map(|c| c.2).sum();
    assert_eq!(
        cents(&res.json["pending"]),
        total,
        "no start: pending for the delay"
    );
}

async fn the_fee_percentage_is_configurable(backend: Backend) {
    let dev = Development::default();
    let mut settings = common::settings(Provider::Development(dev));
    settings.payouts.rules.fee = FeePercent::new(12).unwrap();
    let mut app = TestApp::with_settings(backend, settings).await;
    app.orders_complete_paid_orders().await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());

    let order = app.sell(&buyer, Some(&seller), 1999, None).await;

    let credit = app.credit(&order).await;
    // 12 % of 19.99 = 2.3988 → 2.40.
    assert_eq!(
        (credit.fee, credit.amount),
        (Cents::new(240), Cents::new(1759))
    );
}

async fn a_sale_without_a_seller_on_record_earns_no_credit(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let buyer = TestUser::new();

    let order = app.sell(&buyer, None, 2000, None).await;

    assert!(app.credits(&order).await.is_empty());
    assert_eq!(app.charge_states(&order).await, [ChargeState::Succeeded]);
    app.payout_round(Millis::now().plus(1000 * HOUR)).await;
    assert!(dev.transfers().is_empty());
}

// ---- When a credit becomes available ----

async fn a_credit_becomes_available_when_the_event_starts(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;
    let starts = Millis::now().plus(2 * HOUR);

    let order = app.sell(&buyer, Some(&seller), 2000, Some(starts)).await;

    let credit = app.credit(&order).await;
    assert_eq!(
        (credit.status, credit.available_at),
        (CreditStatus::Pending, starts)
    );
    app.payout_round(starts.minus(Duration::from_secs(1))).await;
    assert_eq!(app.credit(&order).await.status, CreditStatus::Pending);
    assert!(dev.transfers().is_empty(), "nothing before the start");

    app.payout_round(starts).await;

    let paid = app.credit(&order).await;
    assert_eq!(paid.status, CreditStatus::Paid);
    assert_eq!(dev.transfers().len(), 1);

    // An event that started already: available at the sale.
    let before = Millis::now();
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    let credit = app.credit(&order).await;
    assert!(
        matches!(
            credit.status,
            CreditStatus::Available | CreditStatus::Transferring | CreditStatus::Paid
        ),
        "{credit:?}"
    );
    assert!(credit.available_at >= before && credit.available_at <= Millis::now());
}

async fn without_a_start_a_credit_becomes_available_payout_delay_hours_after_the_sale(
    backend: Backend,
) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;

    let before = Millis::now();
    let order = app.sell(&buyer, Some(&seller), 2000, None).await;
    let after = Millis::now();

    let credit = app.credit(&order).await;
    assert_eq!(credit.status, CreditStatus::Pending);
    assert!(
        credit.available_at >= before.plus(48 * HOUR)
            && credit.available_at <= after.plus(48 * HOUR),
        "48 hours after the capture: {credit:?}"
    );
    app.payout_round(before.plus(47 * HOUR)).await;
    assert_eq!(app.credit(&order).await.status, CreditStatus::Pending);
    assert!(dev.transfers().is_empty());

    app.payout_round(after.plus(48 * HOUR)).await;

    assert_eq!(app.credit(&order).await.status, CreditStatus::Paid);
    assert_eq!(dev.transfers().len(), 1);
}

async fn the_payout_delay_is_configurable(backend: Backend) {
    let dev = Development::default();
    let mut settings = common::settings(Provider::Development(dev));
    settings.payouts.rules.delay = Duration::from_secs(0);
    let mut app = TestApp::with_settings(backend, settings).await;
    app.orders_complete_paid_orders().await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());

    let order = app.sell(&buyer, Some(&seller), 2000, None).await;

    assert_ne!(app.credit(&order).await.status, CreditStatus::Pending);
}

// ---- The payout worker, development provider ----

async fn the_worker_pays_an_available_credit_once_to_the_sellers_account(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;

    let order = app
        .sell(&buyer, Some(&seller), 1999, started_an_hour_ago())
        .await;
    app.payout_round(Millis::now()).await;
    app.payout_round(Millis::now()).await;

    let credit = wait_credit(&app, &order, CreditStatus::Paid).await;
    let transfers = dev.transfers();
    assert_eq!(transfers.len(), 1, "{transfers:?}");
    let transfer = &transfers[0];
    assert!(transfer.id.starts_with("tr_dev_"), "{}", transfer.id);
    assert_eq!(credit.transfer_id.as_deref(), Some(transfer.id.as_str()));
    assert!(credit.paid_at.is_some());
    let account = store::account(&app.db, &UserId::new(&seller.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        transfer.request,
        TransferRequest {
            amount: Cents::new(1899),
            currency: "usd".into(),
            destination: account.provider_account_id.clone(),
            transfer_group: order.clone(),
            idempotency_key: format!("{}-1", credit.id),
        }
    );
    assert!(account.provider_account_id.starts_with("acct_dev_"));
}

async fn the_service_pays_available_credits_by_itself(backend: Backend) {
    let dev = Development::default();
    let mut settings = common::settings(Provider::Development(dev.clone()));
    settings.payouts.interval = Duration::from_millis(200);
    let mut app = TestApp::with_settings(backend, settings).await;
    app.orders_complete_paid_orders().await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;

    onboard_dev(&app, &seller).await;

    wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(dev.transfers().len(), 1);
}

async fn workers_racing_pay_each_credit_once(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let buyer = TestUser::new();
    let sellers = [TestUser::new(), TestUser::new()];
    let mut orders = Vec::new();
    for i in 0..6 {
        let seller = &sellers[i % 2];
        orders.push(
            app.sell(&buyer, Some(seller), 1000 + i as i64, started_an_hour_ago())
                .await,
        );
    }
    for seller in &sellers {
        onboard_dev(&app, seller).await;
    }

    // Three workers at once (besides the service's own).
    let now = Millis::now();
    let rounds = (0..3).map(|_| app.payouts.round(now));
    for result in futures::future::join_all(rounds).await {
        result.expect("a round");
    }

    for order in &orders {
        wait_credit(&app, order, CreditStatus::Paid).await;
    }
    let transfers = dev.transfers();
    assert_eq!(
        transfers.len(),
        orders.len(),
        "one transfer per credit: {transfers:#?}"
    );
    assert_eq!(
        dev.transfer_requests(),
        orders.len(),
        "each transfer was asked for once: every credit was claimed by one worker"
    );
    let keys: BTreeSet<&str> = transfers
        .iter()
        .map(|t| t.request.idempotency_key.as_str())
        .collect();
    assert_eq!(keys.len(), orders.len());
    let sent: i64 = transfers.iter().map(|t| t.request.amount.get()).sum();
    let mut owed = 0;
    for order in &orders {
        owed += app.credit(order).await.amount.get();
    }
    assert_eq!(sent, owed);
}

async fn a_seller_without_a_payout_account_is_paid_once_they_have_one(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;

    app.payout_round(Millis::now()).await;

    assert_eq!(app.credit(&order).await.status, CreditStatus::Available);
    assert!(dev.transfers().is_empty());
    let res = app.payouts_of(&seller).await;
    assert_eq!(res.json["account"], json!({"status": "none"}));
    assert_eq!(res.json["available"], json!(19));

    onboard_dev(&app, &seller).await;
    app.payout_round(Millis::now()).await;

    wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(dev.transfers().len(), 1);
    let res = app.payouts_of(&seller).await;
    assert_eq!(res.json["account"], json!({"status": "enabled"}));
    assert_eq!(balance(&res.json), [&json!(0), &json!(0), &json!(19)]);
}

// ---- Refunds ----

async fn a_refund_before_the_payout_reverses_the_credit(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;
    let order = app
        .sell(&buyer, Some(&seller), 2000, Some(Millis::now().plus(HOUR)))
        .await;

    assert_eq!(refund_at_the_provider(&app, &order).await, StatusCode::OK);

    app.wait_charge_states(&order, &[ChargeState::Refunded])
        .await;
    let entries = app.credits(&order).await;
    assert_eq!(entries.len(), 1, "no new entry: {entries:?}");
    assert_eq!(entries[0].status, CreditStatus::Reversed);
    app.payout_round(Millis::now().plus(2 * HOUR)).await;
    assert!(
        dev.transfers().is_empty(),
        "a reversed credit is never paid"
    );
    let res = app.payouts_of(&seller).await;
    assert_eq!(balance(&res.json), [&json!(0), &json!(0), &json!(0)]);
    assert_eq!(res.json["entries"][0]["status"], "reversed");
    // The same event again changes nothing.
    assert_eq!(refund_at_the_provider(&app, &order).await, StatusCode::OK);
    assert_eq!(app.credits(&order).await, entries);
}

async fn a_refund_after_the_payout_is_owed_back_from_later_payouts(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;
    let first = paid_out_sale(&app, &buyer, &seller, 2000).await;

    assert_eq!(refund_at_the_provider(&app, &first).await, StatusCode::OK);

    app.wait_charge_states(&first, &[ChargeState::Refunded])
        .await;
    let entries = app.credits(&first).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (credit, owed) = (&entries[0], &entries[1]);
    assert_eq!(
        credit.status,
        CreditStatus::Paid,
        "what was paid stays paid"
    );
    assert_eq!(owed.kind, EntryKind::Reversal);
    assert_eq!(
        (owed.gross, owed.fee, owed.amount, owed.status),
        (
            Cents::new(-2000),
            Cents::new(-100),
            Cents::new(-1900),
            CreditStatus::Available
        )
    );
    let res = app.payouts_of(&seller).await;
    assert_eq!(res.json["available"], json!(-19), "the seller owes it back");
    assert_eq!(res.json["paid"], json!(19));

    // A smaller sale does not cover the debt: nothing is sent.
    let second = app
        .sell(&buyer, Some(&seller), 1000, started_an_hour_ago())
        .await;
    app.payout_round(Millis::now()).await;
    assert_eq!(dev.transfers().len(), 1);
    assert_eq!(app.credit(&second).await.status, CreditStatus::Available);
    assert_eq!(app.payouts_of(&seller).await.json["available"], json!(-9.5));

    // A third one does: one transfer of the net total.
    let third = app
        .sell(&buyer, Some(&seller), 3000, started_an_hour_ago())
        .await;
    app.payout_round(Millis::now()).await;

    wait_credit(&app, &third, CreditStatus::Paid).await;
    let transfers = dev.transfers();
    assert_eq!(transfers.len(), 2, "{transfers:#?}");
    assert_eq!(transfers[1].request.amount, Cents::new(950 + 2850 - 1900));
    assert_eq!(app.credit(&second).await.status, CreditStatus::Paid);
    assert_eq!(
        app.credits(&first).await[1].status,
        CreditStatus::Paid,
        "netted"
    );
    let res = app.payouts_of(&seller).await;
    assert_eq!(balance(&res.json), [&json!(0), &json!(0), &json!(38)]);
    let sent: i64 = transfers.iter().map(|t| t.request.amount.get()).sum();
    assert_eq!(sent, 3800, "the two sales that stand, less the fees");
}

async fn a_paid_order_refunded_through_the_service_reverses_its_credit(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, Some(Millis::now().plus(HOUR)))
        .await;
    let version = app.replica(&order).await.unwrap().version;

    // A cancellation of the complete order (not something the orders service does, but the
    // replica applies it): the charge is refunded by the settlement worker.
    app.cancel(&order, version + 1, CancelReason::Buyer).await;

    assert_eq!(app.credit(&order).await.status, CreditStatus::Reversed);
    app.wait_charge_states(&order, &[ChargeState::Refunded])
        .await;
    assert_eq!(app.credits(&order).await.len(), 1);
}

// ---- GET /api/payouts ----

async fn payouts_need_a_session(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    for res in [
        app.anonymous().get("/api/payouts").await,
        app.anonymous()
            .post("/api/payouts/account", &json!({}))
            .await,
    ] {
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text);
        assert_eq!(res.json, common::error("Not authorized"));
    }
}

async fn a_seller_sees_their_own_payouts_and_nobody_elses(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let (buyer, seller, other) = (TestUser::new(), TestUser::new(), TestUser::new());
    let starts = Millis::now().plus(HOUR);
    let pending = app.sell(&buyer, Some(&seller), 2050, Some(starts)).await;
    let available = app
        .sell(&buyer, Some(&seller), 1000, started_an_hour_ago())
        .await;
    let theirs = app
        .sell(&buyer, Some(&other), 7000, started_an_hour_ago())
        .await;

    let res = app.payouts_of(&seller).await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let credit = app.credit(&pending).await;
    let second = app.credit(&available).await;
    assert_eq!(
        res.json,
        json!({
            "pending": 19.47,
            "available": 9.5,
            "paid": 0,
            "totals": {"price": 30.5, "fee": 1.53, "amount": 28.97, "reversed": 0},
            "entries": [
                {
                    "id": second.id, "kind": "credit", "orderId": available,
                    "ticketId": format!("ticket-of-{available}"),
                    "title": format!("Ticket of {available}"),
                    "price": 10, "fee": 0.5, "amount": 9.5, "status": "available",
                    "availableAt": second.available_at.to_iso(), "paidAt": null,
                    "createdAt": second.created_at.to_iso(),
                },
                {
                    "id": credit.id, "kind": "credit", "orderId": pending,
                    "ticketId": format!("ticket-of-{pending}"),
                    "title": format!("Ticket of {pending}"),
                    "price": 20.5, "fee": 1.03, "amount": 19.47, "status": "pending",
                    "availableAt": starts.to_iso(), "paidAt": null,
                    "createdAt": credit.created_at.to_iso(),
                },
            ],
            "next": null,
            "account": {"status": "none"},
        })
    );
    let res = app.payouts_of(&other).await;
    let ids: Vec<&str> = res.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [theirs.as_str()]);
    assert_eq!(res.json["available"], json!(66.5));
    let res = app.payouts_of(&buyer).await;
    assert_eq!(
        res.json,
        json!({
            "pending": 0, "available": 0, "paid": 0,
            "totals": {"price": 0, "fee": 0, "amount": 0, "reversed": 0},
            "entries": [], "next": null, "account": {"status": "none"},
        })
    );
}

// ---- The ledger's invariant ----

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn every_cent_of_every_sale_is_accounted_for(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let buyer = TestUser::new();
    let sellers = [TestUser::new(), TestUser::new(), TestUser::new()];
    for seller in &sellers[..2] {
        onboard_dev(&app, seller).await;
    }
    // (order, seller, price, refunded so far) in cents.
    let mut sales: Vec<(String, usize, i64, i64)> = Vec::new();
    for i in 0..24 {
        let seller = rng.below(3) as usize;
        let price = match rng.below(4) {
            0 => 1 + rng.below(99) as i64,
            1 => 1999,
            _ => 100 + rng.below(500_000) as i64,
        };
        let starts = match rng.below(3) {
            0 => None,
            1 => started_an_hour_ago(),
            _ => Some(Millis::now().plus(HOUR * (1 + rng.below(5) as u32))),
        };
        let order = app
            .sell(&buyer, Some(&sellers[seller]), price, starts)
            .await;
        sales.push((order, seller, price, 0));
        if rng.below(3) == 0 {
            app.payout_round(Millis::now()).await;
        }
        // Refund an earlier sale now and then, in full or in part (again and again): before
        // or after its payout.
        if i % 3 == 2 {
            let pick = rng.below(sales.len() as u64) as usize;
            let (order, _, price, refunded) = sales[pick].clone();
            if refunded < price {
                let total = if rng.below(3) == 0 || price - refunded < 2 {
                    price
                } else {
                    refunded + 1 + rng.below((price - refunded - 1) as u64) as i64
                };
                let event = format!("evt_{order}_{total}");
                assert_eq!(
                    report_refund(&app, &order, total, &event).await,
                    StatusCode::OK
                );
                let charge = app.charges(&order).await.remove(0);
                if total == price {
                    assert_eq!(charge.state, ChargeState::Refunded);
                } else {
                    assert_eq!(charge.amount_refunded, Cents::new(total));
                }
                sales[pick].3 = total;
            }
        }
    }
    app.payout_round(Millis::now()).await;
    eventually(15, "no transfer is in flight", || async {
        store::all_credits(&app.db)
            .await
            .unwrap()
            .iter()
            .all(|e| e.status != CreditStatus::Transferring)
    })
    .await;

    // Every entry: gross = amount + fee; over everything, Σ gross = Σ credit + Σ fee.
    let entries = store::all_credits(&app.db).await.unwrap();
    for entry in &entries {
        assert_eq!(
            entry.gross.get(),
            entry.amount.get() + entry.fee.get(),
            "{entry:?}"
        );
    }
    let sum = |f: fn(&Credit) -> i64| entries.iter().map(f).sum::<i64>();
    assert_eq!(
        sum(|e| e.gross.get()),
        sum(|e| e.amount.get()) + sum(|e| e.fee.get())
    );

    // What stands (entries not reversed) is exactly what the buyers did not get back: of each
    // sale, the price less its refunds, and the fee less the same share of it (half-up).
    let fee = FeePercent::DEFAULT;
    let kept = |sale: &(String, usize, i64, i64)| -> (i64, i64) {
        let (price, refunded) = (sale.2, sale.3);
        let sale_fee = fee.fee_of(Cents::new(price)).get();
        let fee_back = (2 * sale_fee * refunded + price) / (2 * price);
        (price - refunded, sale_fee - fee_back)
    };
    let standing: Vec<&Credit> = entries
        .iter()
        .filter(|e| e.status != CreditStatus::Reversed)
        .collect();
    let kept_gross: i64 = sales.iter().map(|s| kept(s).0).sum();
    assert_eq!(
        standing.iter().map(|e| e.gross.get()).sum::<i64>(),
        kept_gross
    );
    let kept_fees: i64 = sales.iter().map(|s| kept(s).1).sum();
    assert_eq!(standing.iter().map(|e| e.fee.get()).sum::<i64>(), kept_fees);
    assert!(
        sales.iter().any(|s| s.3 > 0 && s.3 < s.2) && sales.iter().any(|s| s.3 == s.2),
        "the run refunds in part and in full: {sales:?}"
    );

    // Each seller's balance is their part of the sales that stand, and what was transferred
    // to them is what `paid` says.
    let mut sent: BTreeMap<String, i64> = BTreeMap::new();
    for transfer in dev.transfers() {
        *sent.entry(transfer.request.destination).or_default() += transfer.request.amount.get();
    }
    for (index, seller) in sellers.iter().enumerate() {
        let res = app.payouts_of(seller).await;
        assert_eq!(res.status, StatusCode::OK);
        let part: i64 = sales
            .iter()
            .filter(|s| s.1 == index)
            .map(|s| {
                let (gross, fee) = kept(s);
                gross - fee
            })
            .sum();
        let (pending, available, paid) = (
            cents(&res.json["pending"]),
            cents(&res.json["available"]),
            cents(&res.json["paid"]),
        );
        assert_eq!(
            pending + available + paid,
            part,
            "seller {index}: {}",
            res.json
        );
        let account = store::account(&app.db, &UserId::new(&seller.id))
            .await
            .unwrap();
        let transferred = account
            .map(|a| sent.get(&a.provider_account_id).copied().unwrap_or(0))
            .unwrap_or(0);
        assert_eq!(paid, transferred, "seller {index}");
        if index == 2 {
            assert_eq!(paid, 0, "no account, no payout");
        }

        // The sums the database makes are the ledger's own, over every entry; the pages,
        // followed to the end, are every entry once, newest first.
        let mine: Vec<Credit> = entries
            .iter()
            .filter(|e| e.seller_id.as_str() == seller.id)
            .cloned()
            .collect();
        let balance = Balance::of(&mine, Millis::now());
        assert_eq!(
            (pending, available, paid),
            (
                balance.pending.get(),
                balance.available.get(),
                balance.paid.get()
            ),
            "seller {index}"
        );
        let totals = Totals::of(&mine);
        assert_eq!(
            (
                cents(&res.json["totals"]["price"]),
                cents(&res.json["totals"]["fee"]),
                cents(&res.json["totals"]["amount"]),
                res.json["totals"]["reversed"].as_i64().unwrap(),
            ),
            (
                totals.price.get(),
                totals.fee.get(),
                totals.amount.get(),
                totals.reversed
            ),
            "seller {index}: {}",
            res.json
        );
        let mut newest_first = mine.clone();
        newest_first.sort_by(|a, b| b.id.cmp(&a.id));
        let paged = every_page(&app, seller, 3).await;
        assert_eq!(
            paged,
            newest_first
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>(),
            "seller {index}"
        );
    }
    assert!(
        entries.iter().any(|e| e.status == CreditStatus::Reversed),
        "the ledger has reversed entries (the totals leave them out)"
    );
}

/// The ids of every entry of `seller`'s payouts, following `next` from page to page of
/// `limit`; checks that each page but the last is full and that the sums are the same on
/// every page.
async fn every_page(app: &TestApp, seller: &TestUser, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/api/payouts?limit={limit}");
    let mut first: Option<Value> = None;
    loop {
        let res = app.as_user(seller).get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.text);
        let sums = json!([
            res.json["pending"],
            res.json["available"],
            res.json["paid"],
            res.json["totals"]
        ]);
        assert_eq!(first.get_or_insert_with(|| sums.clone()), &sums, "{path}");
        let page = res.json["entries"].as_array().unwrap();
        ids.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match res.json["next"].as_str() {
            Some(next) => {
                assert_eq!(page.len(), limit, "{path}: a page before the last is full");
                assert_eq!(page.last().unwrap()["id"], json!(next), "{path}");
                path = format!("/api/payouts?limit={limit}&before={next}");
            }
            None => {
                assert!(page.len() <= limit, "{path}");
                return ids;
            }
        }
    }
}

/// A page at a time: `limit` and `before` (the previous page's `next`), checked.
async fn payouts_are_paged_newest_first_and_sums_cover_every_entry(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let (buyer, seller, other) = (TestUser::new(), TestUser::new(), TestUser::new());
    let mut orders = Vec::new();
    for n in 0..7 {
        orders.push(
            app.sell(&buyer, Some(&seller), 1000 + n, started_an_hour_ago())
                .await,
        );
    }
    let theirs = app
        .sell(&buyer, Some(&other), 500, started_an_hour_ago())
        .await;

    let all = app.payouts_of(&seller).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["entries"].as_array().unwrap().len(), 7);
    assert_eq!(all.json["next"], Value::Null);
    let ids: Vec<String> = all.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let mut by_order = Vec::new();
    for order in orders.iter().rev() {
        by_order.push(app.credit(order).await.id);
    }
    assert_eq!(ids, by_order, "newest first");

    assert_eq!(every_page(&app, &seller, 3).await, ids);
    assert_eq!(every_page(&app, &seller, 7).await, ids);
    assert_eq!(every_page(&app, &seller, 1).await, ids);
    let page = app
        .as_user(&seller)
        .get(&format!("/api/payouts?limit=3&before={}", ids[6]))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.json["entries"], json!([]));
    assert_eq!(page.json["next"], Value::Null);
    assert_eq!(page.json["available"], all.json["available"]);
    let sums = &all.json["totals"];
    assert_eq!(cents(&sums["price"]), (1000..1007).sum::<i64>());
    assert_eq!(
        cents(&sums["price"]),
        cents(&sums["fee"]) + cents(&sums["amount"])
    );
    assert_eq!(cents(&sums["amount"]), cents(&all.json["available"]));

    // Any id marks where a page starts, the seller's own or not: someone else's entry only
    // says when it was made (its id does), and the page holds the caller's entries only.
    let their_entry = app.credit(&theirs).await.id;
    let page = app
        .as_user(&seller)
        .get(&format!("/api/payouts?before={their_entry}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.json["entries"].as_array().unwrap().len(), 7);
    let page = app
        .as_user(&seller)
        .get("/api/payouts?before=00000000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(page.json["entries"], json!([]), "{}", page.text);
    assert_eq!(page.json["totals"], all.json["totals"]);

    // Refused, with the parameter named: a page size out of range, a cursor that is no id.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("before=yesterday", "before"),
        ("before=", "before"),
    ] {
        let res = app
            .as_user(&seller)
            .get(&format!("/api/payouts?{query}"))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.text);
        assert_eq!(
            res.field_errors()
                .iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>(),
            [field],
            "{query}: {}",
            res.text
        );
    }
    let res = app.as_user(&seller).get("/api/payouts?limit=100").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
}

/// A statement is read as of one instant: while sales land, the page, the balance and the
/// totals it shows always agree (they were three separate reads, so a sale written between
/// them was in the totals but not on the page).
async fn a_statement_is_read_as_of_one_instant_while_sales_land(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 1000, started_an_hour_ago())
        .await;
    let template = app.credit(&order).await;
    // More sales of the seller, written as the ledger writes them, each in a transaction of
    // its own, as fast as the database takes them; all fit on one page of 100.
    const SALES: i64 = 80;
    let db = app.db.clone();
    let writer = tokio::spawn(async move {
        for n in 0..SALES {
            let credit = Credit {
                id: uuid::Uuid::now_v7().to_string(),
                order_id: bt_contract::OrderId::generate(),
                gross: Cents::new(2000 + n),
                fee: Cents::new(200),
                amount: Cents::new(1800 + n),
                ..template.clone()
            };
            let mut tx = db.begin().await.unwrap();
            assert!(store::insert_credit(&mut tx, &credit).await.unwrap());
            tx.commit().await.unwrap();
        }
    });
    let seller_id = UserId::new(&seller.id);
    let page = bt_payments::payouts::PageRequest {
        limit: 100,
        before: None,
    };
    let mut statements = 0;
    loop {
        let done = writer.is_finished();
        let statement = app
            .payouts
            .statement(&seller_id, &page, Millis::now())
            .await
            .unwrap();
        assert_eq!(statement.next, None);
        let on_page = Totals::of(&statement.entries);
        assert_eq!(
            statement.totals, on_page,
            "after {statements} statements: the totals are those of the entries shown"
        );
        assert_eq!(
            statement.balance,
            Balance::of(&statement.entries, Millis::now()),
            "after {statements} statements: the balance is that of the entries shown"
        );
        statements += 1;
        if done {
            break;
        }
    }
    writer.await.unwrap();
    let last = app
        .payouts
        .statement(&seller_id, &page, Millis::now())
        .await
        .unwrap();
    assert_eq!(last.entries.len() as i64, SALES + 1);
}

// ---- Stripe Connect ----

async fn onboarding_creates_one_express_account_per_seller_and_answers_stripes_link(
    backend: Backend,
) {
    let (app, mock) = spawn_stripe(backend).await;
    let seller = TestUser::new();

    let first = app.onboard(&seller).await;
    let second = app.onboard(&seller).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let accounts = mock.accounts();
    assert_eq!(accounts.len(), 1, "one account per seller");
    assert_eq!(accounts[0].user_id, seller.id);
    let links = mock.account_links();
    assert_eq!(links.len(), 2, "a fresh link each time");
    assert_eq!(first.json, json!({"url": links[0].url}));
    assert_eq!(second.json, json!({"url": links[1].url}));
    for link in &links {
        assert_eq!(link.account, accounts[0].id);
        assert_eq!(
            link.return_url,
            format!("{PUBLIC_URL}/payouts?onboarding=done")
        );
        assert_eq!(
            link.refresh_url,
            format!("{PUBLIC_URL}/payouts?onboarding=refresh")
        );
    }
    let created = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/accounts")
        .unwrap();
    assert_eq!(created.idempotency_key, format!("account-{}", seller.id));
    assert_eq!(created.param("type"), Some("express"));
    assert_eq!(
        created.param("capabilities[transfers][requested]"),
        Some("true")
    );
    mock.assert_wire_format_kept();
    assert_eq!(
        app.payouts_of(&seller).await.json["account"],
        json!({"status": "onboarding"})
    );
    // Another seller, another account.
    app.onboard(&TestUser::new()).await;
    assert_eq!(mock.accounts().len(), 2);
}

async fn onboarding_with_stripe_needs_the_public_url(backend: Backend) {
    let mock = MockStripe::start().await;
    let mut settings = common::settings(stripe_provider(&mock));
    settings.payouts.public_url = None;
    let app = TestApp::with_settings(backend, settings).await;

    let res = app.onboard(&TestUser::new()).await;

    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert!(res.text.contains("PUBLIC_URL"), "{}", res.text);
}

async fn a_stripe_seller_is_paid_once_stripe_says_the_account_can_receive_transfers(
    backend: Backend,
) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 1999, started_an_hour_ago())
        .await;
    app.onboard(&seller).await;
    let account = mock.accounts()[0].id.clone();

    app.payout_round(Millis::now()).await;
    assert!(mock.transfers().is_empty(), "onboarding unfinished");

    // Stripe verifies the account; the cached answer is asked again after a while.
    mock.complete_onboarding(&account);
    app.payout_round(Millis::now()).await;
    assert!(
        mock.transfers().is_empty(),
        "the answer is cached for a minute"
    );
    app.payout_round(Millis::now().plus(Duration::from_secs(61)))
        .await;

    let credit = wait_credit(&app, &order, CreditStatus::Paid).await;
    let transfers = mock.transfers();
    assert_eq!(transfers.len(), 1);
    let transfer = &transfers[0];
    assert_eq!(
        (
            transfer.amount,
            transfer.currency.as_str(),
            transfer.destination.as_str()
        ),
        (1899, "usd", account.as_str())
    );
    assert_eq!(transfer.transfer_group.as_deref(), Some(order.as_str()));
    assert_eq!(transfer.idempotency_key, format!("{}-1", credit.id));
    assert_eq!(credit.transfer_id.as_deref(), Some(transfer.id.as_str()));
    let asked = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/v1/accounts/{account}"))
        .count();
    assert_eq!(asked, 1, "asked once the cache was old");
    assert_eq!(
        app.payouts_of(&seller).await.json["account"],
        json!({"status": "enabled"})
    );
    mock.assert_wire_format_kept();
}

async fn the_account_updated_webhook_makes_an_account_usable_at_once(backend: Backend) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    app.onboard(&seller).await;
    let account = mock.accounts()[0].id.clone();

    let object = mock.complete_onboarding(&account);
    let res = app
        .signed_webhook(&stripe_event("evt_acct_1", "account.updated", object))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.payout_round(Millis::now()).await;

    wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(mock.transfers().len(), 1);
    let stored = store::account(&app.db, &UserId::new(&seller.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, AccountStatus::Enabled);
}

/// Onboards `seller` at the mock and lets Stripe enable the account (through the webhook).
async fn enabled_stripe_account(app: &TestApp, mock: &MockStripe, seller: &TestUser) -> String {
    app.onboard(seller).await;
    let account = mock
        .accounts()
        .into_iter()
        .find(|a| a.user_id == seller.id)
        .unwrap()
        .id;
    let object = mock.complete_onboarding(&account);
    let res = app
        .signed_webhook(&stripe_event(
            &format!("evt_{account}"),
            "account.updated",
            object,
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    account
}

async fn a_crash_after_stripe_made_the_transfer_is_replayed_with_the_same_key(backend: Backend) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    // No account yet, so that no worker pays it before the test claims it.
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    let credit = app.credit(&order).await;
    assert_eq!(credit.status, CreditStatus::Available);
    let key = format!("{}-1", credit.id);
    // A worker claimed it (its lease long gone) and Stripe made the transfer, but the worker
    // died before recording it.
    let now = Millis::now();
    let claimed = credit
        .clone()
        .claim(&key, now.minus(Duration::from_secs(1)), now)
        .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    assert!(
        store::save_credit(&mut tx, &claimed, CreditStatus::Available)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let account = enabled_stripe_account(&app, &mock, &seller).await;
    let first = stripe_provider(&mock)
        .transfer(&TransferRequest {
            amount: credit.amount,
            currency: "usd".into(),
            destination: account.clone(),
            transfer_group: order.clone(),
            idempotency_key: key.clone(),
        })
        .await
        .expect("the dead worker's transfer");

    app.payout_round(Millis::now()).await;

    let paid = wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(
        paid.transfer_id.as_deref(),
        Some(first.as_str()),
        "the same transfer"
    );
    assert_eq!(mock.transfers().len(), 1, "made once");
    let sent: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/transfers")
        .map(|r| r.idempotency_key)
        .collect();
    assert!(
        sent.len() >= 2 && sent.iter().all(|k| *k == key),
        "{sent:?}"
    );
    mock.assert_wire_format_kept();
}

async fn a_stripe_outage_during_a_transfer_is_replayed_with_the_same_key(backend: Backend) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    mock.set_down(true);
    // The account is enabled (by the webhook, while Stripe's API is down).
    let account = mock_account_for(&app, &mock, &seller).await;
    let object = mock.complete_onboarding(&account);
    app.signed_webhook(&stripe_event("evt_up", "account.updated", object))
        .await;

    // Claimed, asked, no answer: the claim stays, with its key.
    let _ = app.payouts.round(Millis::now()).await;
    eventually(15, "the transfer is claimed", || async {
        app.credit(&order).await.status == CreditStatus::Transferring
    })
    .await;
    let claimed = app.credit(&order).await;
    assert!(mock.transfers().is_empty());
    mock.set_down(false);
    eventually(20, "the transfer is replayed", || async {
        let _ = app.payouts.round(Millis::now()).await;
        app.credit(&order).await.status == CreditStatus::Paid
    })
    .await;

    let paid = wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(mock.transfers().len(), 1);
    assert_eq!(paid.transfer_key, claimed.transfer_key, "the same key");
    assert_eq!(
        mock.transfers()[0].idempotency_key,
        format!("{}-1", paid.id)
    );
}

/// Onboards `seller` (Stripe up) and answers the account's id.
async fn mock_account_for(app: &TestApp, mock: &MockStripe, seller: &TestUser) -> String {
    mock.set_down(false);
    let res = app.onboard(seller).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    mock.set_down(true);
    mock.accounts()
        .into_iter()
        .find(|a| a.user_id == seller.id)
        .unwrap()
        .id
}

async fn a_transfer_stripe_refuses_is_tried_again_with_a_new_key_once_the_account_can_receive(
    backend: Backend,
) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    app.onboard(&seller).await;
    let account = mock.accounts()[0].id.clone();
    // Our cache says enabled; Stripe knows better (the capability was taken away).
    store::set_account_status(&app.db, &account, AccountStatus::Enabled, Millis::now())
        .await
        .unwrap();

    app.payout_round(Millis::now()).await;

    let credit = app.credit(&order).await;
    assert_eq!(credit.status, CreditStatus::Available, "{credit:?}");
    assert!(
        credit
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("capabilities")),
        "{credit:?}"
    );
    assert!(mock.transfers().is_empty());
    let stored = store::account(&app.db, &UserId::new(&seller.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.status,
        AccountStatus::Onboarding,
        "asked Stripe again"
    );

    mock.complete_onboarding(&account);
    app.payout_round(Millis::now().plus(Duration::from_secs(61)))
        .await;

    let paid = wait_credit(&app, &order, CreditStatus::Paid).await;
    assert_eq!(mock.transfers().len(), 1);
    // A new key for the attempt that succeeded, after at least the one refused above. (The
    // service's own worker may also have tried, and been refused, between the test's rounds:
    // each refused attempt used a key of its own, numbered before this one.)
    assert!(paid.transfer_attempts >= 2, "{paid:?}");
    assert_eq!(
        mock.transfers()[0].idempotency_key,
        format!("{}-{}", paid.id, paid.transfer_attempts)
    );
    assert_eq!(paid.failure, None);
}

async fn a_charge_refunded_in_stripes_dashboard_after_the_payout_is_owed_back(backend: Backend) {
    let (app, mock) = spawn_stripe(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    enabled_stripe_account(&app, &mock, &seller).await;
    let order = paid_out_sale(&app, &buyer, &seller, 2000).await;

    assert_eq!(refund_at_the_provider(&app, &order).await, StatusCode::OK);

    let entries = app.credits(&order).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].amount, Cents::new(-1900));
    let res = app.payouts_of(&seller).await;
    assert_eq!(
        (&res.json["available"], &res.json["paid"]),
        (&json!(-19), &json!(19))
    );
    assert_eq!(
        app.replica(&order).await.unwrap().status,
        OrderStatus::Complete
    );
    // Nothing more is sent while the seller owes.
    app.payout_round(Millis::now()).await;
    assert_eq!(mock.transfers().len(), 1);
}

async fn a_charge_captured_before_its_order_completed_credits_the_seller_when_it_does(
    backend: Backend,
) {
    let (app, mock) = spawn_stripe(backend).await;
    let order = captured_by_stripe(&app, &mock, 1999).await;
    app.wait_status(&order, OrderStatus::Complete, 1).await;

    let credit = app.credit(&order).await;
    assert_eq!(app.charge_states(&order).await, [ChargeState::Succeeded]);
    assert_eq!(
        (credit.gross, credit.fee, credit.amount, credit.status),
        (
            Cents::new(1999),
            Cents::new(100),
            Cents::new(1899),
            CreditStatus::Pending
        )
    );
}

async fn a_partial_refund_before_the_order_completes_is_taken_from_the_credit_it_earns(
    backend: Backend,
) {
    // No orders service completing paid orders: the test completes the order itself, later.
    let mock = MockStripe::start().await;
    let app = TestApp::spawn(backend, stripe_provider(&mock)).await;
    let order = captured_by_stripe(&app, &mock, 2000).await;
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;

    // Refunded in part while the order is not complete yet: no credit to take it from.
    assert_eq!(
        report_refund(&app, &order, 400, "evt_early").await,
        StatusCode::OK
    );
    assert!(app.credits(&order).await.is_empty());
    assert_eq!(
        app.charges(&order).await[0].amount_refunded,
        Cents::new(400)
    );

    let payment = app.charges(&order).await[0].id.to_string();
    app.complete(&order, 1, &payment).await;

    assert_eq!(
        ledger_of(&app, &order).await,
        [
            (EntryKind::Credit, 2000, 100, 1900, CreditStatus::Pending),
            (EntryKind::Reversal, -400, -20, -380, CreditStatus::Pending)
        ]
    );
}

async fn a_partial_refund_reported_before_the_capture_is_recorded_is_taken_from_the_credit(
    backend: Backend,
) {
    // No orders service completing paid orders: the test completes the order itself.
    let mock = MockStripe::start().await;
    let app = TestApp::spawn(backend, stripe_provider(&mock)).await;
    let mut refunds = EventProbe::new(&app.bus.bus, PaymentRefunded::SUBJECT).await;
    let (order, buyer) = new_sale(&app, 2000).await;
    // Authorised; the answer does not wait for the order to complete (202).
    let res = app.pay(&buyer, &order, "tok_visa").await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    app.wait_charge_states(&order, &[ChargeState::Authorized])
        .await;
    // Stripe is unreachable when the order completes: the capture waits, `capturing`.
    mock.set_down(true);
    let payment = app.charges(&order).await[0].id.to_string();
    app.complete(&order, 1, &payment).await;
    app.wait_charge_states(&order, &[ChargeState::Capturing])
        .await;

    // Stripe captured it all the same, and part of it is refunded in the dashboard; its
    // webhook comes before the service has recorded the capture.
    assert_eq!(
        report_refund(&app, &order, 600, "evt_early_part").await,
        StatusCode::OK
    );
    let charge = app.charges(&order).await.remove(0);
    assert_eq!(
        (charge.state, charge.amount_refunded),
        (ChargeState::Capturing, Cents::new(600))
    );
    assert!(app.credits(&order).await.is_empty(), "not captured yet");

    mock.set_down(false);
    app.wait_charge_states(&order, &[ChargeState::Succeeded])
        .await;
    assert_eq!(
        ledger_of(&app, &order).await,
        [
            (EntryKind::Credit, 2000, 100, 1900, CreditStatus::Pending),
            (EntryKind::Reversal, -600, -30, -570, CreditStatus::Pending)
        ]
    );
    let told = refunds.next::<PaymentRefunded>(15).await.data;
    assert_eq!(
        (told.refunded, told.amount),
        (Cents::new(600), Cents::new(600))
    );
    refunds.assert_silent(300).await;
}

async fn a_charge_read_before_a_partial_refund_is_never_saved_over_it(backend: Backend) {
    let (app, _) = spawn_dev(backend).await;
    let now = Millis::now();
    let capturing = bt_payments::domain::Charge {
        id: bt_contract::PaymentId::generate(),
        order_id: uuid::Uuid::now_v7().to_string().into(),
        attempt: 1,
        state: ChargeState::Capturing,
        amount: Cents::new(2000),
        currency: "usd".into(),
        token: None,
        provider_id: Some("pi_race".into()),
        failure: None,
        lease_until: now,
        amount_refunded: Cents::new(0),
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.db.begin().await.unwrap();
    assert!(store::insert_charge(&mut tx, &capturing).await.unwrap());
    tx.commit().await.unwrap();
    // The settlement worker read it (nothing refunded) and is capturing it at the provider...
    let stale = capturing.clone();
    // ...when a partial refund is recorded.
    let part = capturing.refunded_in_part(Cents::new(600), now).unwrap();
    let mut tx = app.db.begin().await.unwrap();
    assert!(
        store::save_charge(&mut tx, &part, ChargeState::Capturing)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    // The worker's capture, from what it read, is not written over the refund...
    let mut tx = app.db.begin().await.unwrap();
    let captured = stale.settled(now).unwrap();
    assert!(
        !store::save_charge(&mut tx, &captured, ChargeState::Capturing)
            .await
            .unwrap()
    );
    tx.rollback().await.unwrap();
    let order = part.order_id.to_string();
    assert_eq!(
        app.charges(&order).await[0].amount_refunded,
        Cents::new(600)
    );
    // ...and read again, it is.
    let fresh = app.charges(&order).await.remove(0).settled(now).unwrap();
    let mut tx = app.db.begin().await.unwrap();
    assert!(
        store::save_charge(&mut tx, &fresh, ChargeState::Capturing)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let saved = app.charges(&order).await.remove(0);
    assert_eq!(
        (saved.state, saved.amount_refunded),
        (ChargeState::Succeeded, Cents::new(600))
    );
}

async fn partial_refunds_before_the_payout_reduce_the_credit_and_a_full_refund_cancels_it(
    backend: Backend,
) {
    use CreditStatus::{Pending, Reversed};
    use EntryKind::{Credit as Sale, Reversal as Back};
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;
    let order = app
        .sell(&buyer, Some(&seller), 2000, Some(Millis::now().plus(HOUR)))
        .await;

    // 5.00 of 20.00 given back in Stripe's dashboard: the seller's 19.00 loses 4.75, the fee
    // 0.25, both held until the event starts like the credit itself.
    assert_eq!(
        report_refund(&app, &order, 500, "evt_p1").await,
        StatusCode::OK
    );

    let charge = app.charges(&order).await.remove(0);
    assert_eq!(
        (charge.state, charge.amount_refunded),
        (ChargeState::Succeeded, Cents::new(500))
    );
    assert_eq!(
        ledger_of(&app, &order).await,
        [
            (Sale, 2000, 100, 1900, Pending),
            (Back, -500, -25, -475, Pending)
        ]
    );
    let res = app.payouts_of(&seller).await;
    assert_eq!(balance(&res.json), [&json!(14.25), &json!(0), &json!(0)]);
    assert_eq!(res.json["entries"][0]["kind"], "reversal");
    assert_eq!(res.json["entries"][0]["amount"], json!(-4.75));

    // The same report under another event id, and an older one: nothing more.
    assert_eq!(
        report_refund(&app, &order, 500, "evt_p1_again").await,
        StatusCode::OK
    );
    assert_eq!(
        report_refund(&app, &order, 300, "evt_p0").await,
        StatusCode::OK
    );
    assert_eq!(app.credits(&order).await.len(), 2);

    // 8.00 in all: the 3.00 since.
    assert_eq!(
        report_refund(&app, &order, 800, "evt_p2").await,
        StatusCode::OK
    );
    assert_eq!(
        ledger_of(&app, &order).await[2],
        (Back, -300, -15, -285, Pending)
    );
    assert_eq!(app.payouts_of(&seller).await.json["pending"], json!(11.4));

    // Then all of it: nothing was paid out, so the credit and both reversals are cancelled.
    assert_eq!(
        report_refund(&app, &order, 2000, "evt_all").await,
        StatusCode::OK
    );
    app.wait_charge_states(&order, &[ChargeState::Refunded])
        .await;
    assert_eq!(
        ledger_of(&app, &order).await,
        [
            (Sale, 2000, 100, 1900, Reversed),
            (Back, -500, -25, -475, Reversed),
            (Back, -300, -15, -285, Reversed)
        ]
    );
    app.payout_round(Millis::now().plus(2 * HOUR)).await;
    assert!(dev.transfers().is_empty(), "nothing is paid for it");
    let res = app.payouts_of(&seller).await;
    assert_eq!(balance(&res.json), [&json!(0), &json!(0), &json!(0)]);
    assert_eq!(res.json["totals"]["reversed"], json!(3));
}

async fn a_partial_refund_before_the_payout_is_netted_in_its_transfer(backend: Backend) {
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    let order = app
        .sell(&buyer, Some(&seller), 2000, started_an_hour_ago())
        .await;
    assert_eq!(
        report_refund(&app, &order, 500, "evt_part").await,
        StatusCode::OK
    );
    assert_eq!(
        app.credits(&order).await[1].status,
        CreditStatus::Available,
        "available with its credit"
    );

    onboard_dev(&app, &seller).await;
    app.payout_round(Millis::now()).await;

    eventually(15, "the sale is paid out", || async {
        app.credits(&order)
            .await
            .iter()
            .all(|e| e.status == CreditStatus::Paid)
    })
    .await;
    let transfers = dev.transfers();
    assert_eq!(transfers.len(), 1, "{transfers:#?}");
    assert_eq!(transfers[0].request.amount, Cents::new(1900 - 475));
    let res = app.payouts_of(&seller).await;
    assert_eq!(
        (&res.json["available"], &res.json["paid"]),
        (&json!(0), &json!(14.25))
    );
}

async fn partial_refunds_after_the_payout_are_owed_back_up_to_the_whole_sale(backend: Backend) {
    use CreditStatus::{Available, Paid};
    use EntryKind::{Credit as Sale, Reversal as Back};
    let (app, dev) = spawn_dev(backend).await;
    let (buyer, seller) = (TestUser::new(), TestUser::new());
    onboard_dev(&app, &seller).await;
    let order = paid_out_sale(&app, &buyer, &seller, 1999).await;
    let mut refunds = EventProbe::new(&app.bus.bus, PaymentRefunded::SUBJECT).await;

    assert_eq!(
        report_refund(&app, &order, 1000, "evt_half").await,
        StatusCode::OK
    );
    assert_eq!(
        ledger_of(&app, &order).await,
        [
            (Sale, 1999, 100, 1899, Paid),
            // 100 × 1000 / 1999 = 50.03 cents of fee.
            (Back, -1000, -50, -950, Available)
        ]
    );
    assert_eq!(app.payouts_of(&seller).await.json["available"], json!(-9.5));

    assert_eq!(refund_at_the_provider(&app, &order).await, StatusCode::OK);
    app.wait_charge_states(&order, &[ChargeState::Refunded])
        .await;
    assert_eq!(
        ledger_of(&app, &order).await[2],
        (Back, -999, -50, -949, Available),
        "the rest"
    );
    let res = app.payouts_of(&seller).await;
    assert_eq!(
        (&res.json["available"], &res.json["paid"]),
        (&json!(-18.99), &json!(18.99))
    );
    assert_eq!(
        (
            &res.json["totals"]["price"],
            &res.json["totals"]["fee"],
            &res.json["totals"]["amount"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "every cent given back"
    );
    app.payout_round(Millis::now()).await;
    assert_eq!(
        dev.transfers().len(),
        1,
        "nothing is sent while the seller owes"
    );

    // The buyer is told of each refund: what it gave back, and the total so far.
    let told = |e: PaymentRefunded| {
        (
            (e.order_id.into_string(), e.user_id.into_string(), e.title),
            (e.price.get(), e.refunded.get(), e.amount.get()),
            (
                e.seller_id.map(UserId::into_string),
                e.seller_amount.map(Cents::get),
            ),
        )
    };
    let who = (
        order.clone(),
        buyer.id.clone(),
        Some(format!("Ticket of {order}")),
    );
    let seller_id = Some(seller.id.clone());
    // 1000 of 1999: the seller's 1899 loses 950 (the fee 50); then the rest, 949.
    assert_eq!(
        told(refunds.next::<PaymentRefunded>(15).await.data),
        (
            who.clone(),
            (1999, 1000, 1000),
            (seller_id.clone(), Some(950))
        )
    );
    assert_eq!(
        told(refunds.next::<PaymentRefunded>(15).await.data),
        (who, (1999, 1999, 999), (seller_id, Some(949)))
    );
    refunds.assert_silent(300).await;
}

backend_tests!(
    a_sale_credits_its_seller_the_price_less_the_fee_to_the_cent,
    the_fee_percentage_is_configurable,
    a_sale_without_a_seller_on_record_earns_no_credit,
    a_credit_becomes_available_when_the_event_starts,
    without_a_start_a_credit_becomes_available_payout_delay_hours_after_the_sale,
    the_payout_delay_is_configurable,
    the_worker_pays_an_available_credit_once_to_the_sellers_account,
    the_service_pays_available_credits_by_itself,
    workers_racing_pay_each_credit_once,
    a_seller_without_a_payout_account_is_paid_once_they_have_one,
    a_refund_before_the_payout_reverses_the_credit,
    a_refund_after_the_payout_is_owed_back_from_later_payouts,
    a_paid_order_refunded_through_the_service_reverses_its_credit,
    payouts_need_a_session,
    a_seller_sees_their_own_payouts_and_nobody_elses,
    payouts_are_paged_newest_first_and_sums_cover_every_entry,
    a_statement_is_read_as_of_one_instant_while_sales_land,
    every_cent_of_every_sale_is_accounted_for,
    onboarding_creates_one_express_account_per_seller_and_answers_stripes_link,
    onboarding_with_stripe_needs_the_public_url,
    a_stripe_seller_is_paid_once_stripe_says_the_account_can_receive_transfers,
    the_account_updated_webhook_makes_an_account_usable_at_once,
    a_crash_after_stripe_made_the_transfer_is_replayed_with_the_same_key,
    a_stripe_outage_during_a_transfer_is_replayed_with_the_same_key,
    a_transfer_stripe_refuses_is_tried_again_with_a_new_key_once_the_account_can_receive,
    a_charge_refunded_in_stripes_dashboard_after_the_payout_is_owed_back,
    a_charge_captured_before_its_order_completed_credits_the_seller_when_it_does,
    partial_refunds_before_the_payout_reduce_the_credit_and_a_full_refund_cancels_it,
    a_partial_refund_before_the_payout_is_netted_in_its_transfer,
    a_partial_refund_before_the_order_completes_is_taken_from_the_credit_it_earns,
    a_partial_refund_reported_before_the_capture_is_recorded_is_taken_from_the_credit,
    a_charge_read_before_a_partial_refund_is_never_saved_over_it,
    partial_refunds_after_the_payout_are_owed_back_up_to_the_whole_sale,
);

// ---- The Stripe Connect client against the mock ----

#[tokio::test]
async fn the_stripe_client_creates_an_account_reads_it_and_transfers_once_per_key() {
    let mock = MockStripe::start().await;
    let stripe = stripe_provider(&mock);

    let account = stripe.create_account(&UserId::new("u1")).await.unwrap();
    assert_eq!(account.status, AccountStatus::Onboarding);
    assert_eq!(
        stripe.create_account(&UserId::new("u1")).await.unwrap(),
        account,
        "replayed"
    );
    assert_eq!(mock.accounts().len(), 1);
    let link = stripe
        .account_link(&account.id, "https://x.test/r", "https://x.test/d")
        .await
        .unwrap();
    assert!(link.is_some_and(|l| l.starts_with("https://connect.stripe.com/")));

    mock.complete_onboarding(&account.id);
    assert_eq!(
        stripe.account(&account.id).await.unwrap().status,
        AccountStatus::Enabled
    );
    let request = TransferRequest {
        amount: Cents::new(1899),
        currency: "USD".into(),
        destination: account.id.clone(),
        transfer_group: "o1".into(),
        idempotency_key: "c1-1".into(),
    };
    let id = stripe.transfer(&request).await.unwrap();
    assert_eq!(
        stripe.transfer(&request).await.unwrap(),
        id,
        "the same transfer"
    );
    assert_eq!(mock.transfers().len(), 1);
    let sent = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/transfers")
        .unwrap();
    for (name, value) in [
        ("amount", "1899"),
        ("currency", "usd"),
        ("destination", account.id.as_str()),
        ("transfer_group", "o1"),
    ] {
        assert_eq!(sent.param(name), Some(value), "{name}");
    }
    assert!(
        stripe.account("acct_nope").await.is_err(),
        "an unknown account is an error"
    );
    mock.assert_wire_format_kept();
}
