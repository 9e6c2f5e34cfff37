//! The order pages and the pay form against a fake API: how the client reads the API's order
//! JSON and its answers to `POST /api/payments` (201, 202, 400, 503 with `Retry-After`), and
//! how a buyer holding a reservation finds their order from the ticket.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::resources::{Order, OrderPayment, OrderPaymentStatus, OrderTicket};
use bt_contract::{Cents, Millis};
use bt_test_support::{TestResponse, TestUser};
use serde_json::{Value, json};

mod common;
use common::location;

/// An order of a $20.50 ticket whose window ends in ten minutes.
fn order(status: OrderStatus) -> Order {
    Order {
        id: "o1".into(),
        user_id: "u1".into(),
        status,
        expires_at: Millis::now().plus(std::time::Duration::from_secs(600)),
        version: 0,
        ticket: OrderTicket {
            id: "t1".into(),
            title: "Show".into(),
            price: Cents::new(2050),
            version: 0,
        },
        payment: None,
        cancel_reason: None,
    }
}

fn errors(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"errors": [{"message": message}]}))).into_response()
}

/// A signed-in browser of the client in front of `api`.
struct Browser(common::Browser);

impl Browser {
    async fn new(api: Router) -> Self {
        Self(common::Browser::new(api, Some(&TestUser::new())).await)
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.0.get(path).await
    }

    /// Submits the order page's pay form with the succeeding test card.
    async fn pay(&self, order_id: &str) -> TestResponse {
        self.0
            .post(
                &format!("/orders/{order_id}/pay"),
                &[("token", "tok_visa")],
                true,
            )
            .await
    }
}

/// A fake API whose order is `order` and whose `POST /api/payments` answers `payments`.
/// `DELETE /api/orders/{id}` does what the orders service does: an open order is cancelled by
/// the buyer, a cancelled one stays as it is (204 both), a complete one is refused.
fn api(order: Value, payments: fn() -> Response) -> Router {
    let order = Arc::new(Mutex::new(order));
    let (list, one, cancel) = (order.clone(), order.clone(), order);
    Router::new()
        .route(
            "/api/orders",
            get(move || async move { Json(json!([*list.lock().unwrap()])) }),
        )
        .route(
            "/api/orders/{id}",
            get(move || async move { Json(one.lock().unwrap().clone()) }).delete(
                move || async move {
                    let mut order = cancel.lock().unwrap();
                    match order["status"].as_str() {
                        Some("complete") => {
                            errors(StatusCode::BAD_REQUEST, "Cannot cancel a completed order")
                        }
                        Some("cancelled") => StatusCode::NO_CONTENT.into_response(),
                        _ => {
                            order["status"] = json!("cancelled");
                            order["cancelReason"] = json!("buyer");
                            StatusCode::NO_CONTENT.into_response()
                        }
                    }
                },
            ),
        )
        .route("/api/payments", post(move || async move { payments() }))
}

fn no_payment_expected() -> Response {
    errors(StatusCode::BAD_REQUEST, "the test did not expect a payment")
}

fn is_outage_page(page: &TestResponse) -> bool {
    page.status == StatusCode::SERVICE_UNAVAILABLE
        && page
            .text
            .contains("BuyTicket could not complete this request")
}

#[tokio::test]
async fn an_order_reply_that_does_not_parse_is_an_api_failure_not_a_default() {
    let mut unknown_status = serde_json::to_value(order(OrderStatus::Created)).unwrap();
    unknown_status["status"] = json!("shipped");
    let mut no_window = serde_json::to_value(order(OrderStatus::Created)).unwrap();
    no_window.as_object_mut().unwrap().remove("expiresAt");
    for bad in [unknown_status, no_window] {
        let browser = Browser::new(api(bad.clone(), no_payment_expected)).await;

        let order_page = browser.get("/orders/o1").await;
        let orders_page = browser.get("/orders").await;

        assert!(is_outage_page(&order_page), "{bad}: {}", order_page.text);
        assert!(is_outage_page(&orders_page), "{bad}: {}", orders_page.text);
    }
}

#[tokio::test]
async fn the_order_and_the_orders_list_show_the_payment_and_the_cancel_reason() {
    let mut cancelled = order(OrderStatus::Cancelled);
    cancelled.cancel_reason = Some(CancelReason::TicketChanged);
    cancelled.payment = Some(OrderPayment {
        id: "p1".into(),
        amount: Cents::new(2050),
        status: OrderPaymentStatus::Voided,
        refunded: Cents::new(0),
    });
    let browser = Browser::new(api(
        serde_json::to_value(cancelled).unwrap(),
        no_payment_expected,
    ))
    .await;

    let order_page = browser.get("/orders/o1").await;
    let orders_page = browser.get("/orders").await;

    for page in [&order_page, &orders_page] {
        assert_eq!(page.status, StatusCode::OK);
        let text = page.text.replace("&#39;", "'");
        assert!(
            text.contains("Card hold released — nothing was charged"),
            "{text}"
        );
        assert!(
            text.contains("The seller changed this ticket's title or price before your reservation was confirmed, so the order was cancelled. Nothing was charged."),
            "{text}"
        );
    }
}

/// The order as the API shows it while its card is authorised and the order is being
/// completed: open, with a payment `authorized`.
fn authorised() -> Order {
    let mut order = order(OrderStatus::Created);
    order.payment = Some(OrderPayment {
        id: "p1".into(),
        amount: Cents::new(2050),
        status: OrderPaymentStatus::Authorized,
        refunded: Cents::new(0),
    });
    order
}

fn processing() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": "p1", "status": "processing"})),
    )
        .into_response()
}

#[tokio::test]
async fn a_payment_still_being_decided_shows_the_order_confirming() {
    let browser = Browser::new(api(serde_json::to_value(authorised()).unwrap(), processing)).await;

    let paid = browser.pay("o1").await;
    assert_eq!(paid.status, StatusCode::SEE_OTHER);
    assert_eq!(paid.headers[header::LOCATION], "/orders/o1?paid=1");
    let page = browser.get("/orders/o1?paid=1").await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text
            .contains(r#"<meta http-equiv="refresh" content="2">"#)
    );
    assert!(
        page.text.contains("Card authorised, confirming…"),
        "{}",
        page.text
    );
    assert!(!page.text.contains(r#"id="pay-form""#));
    assert!(!page.text.contains(r#"id="cancel""#));
}

#[tokio::test]
async fn a_payment_that_did_not_go_through_leaves_the_order_payable_despite_paid_in_the_address() {
    // The API answered 202 (the provider was slow), then the card was declined: the order is
    // open and has no payment. `?paid=1` in the address must not hide the pay form for good.
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        processing,
    ))
    .await;
    let paid = browser.pay("o1").await;
    assert_eq!(location(&paid), "/orders/o1?paid=1");

    let page = browser.get("/orders/o1?paid=1").await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.text.contains(r#"http-equiv="refresh""#),
        "{}",
        page.text
    );
    assert!(!page.text.contains("confirming"), "{}", page.text);
    assert_eq!(
        common::element(&page.text, "payment-not-through"),
        Some(
            "No payment has gone through for this order. If your card was declined, nothing was charged: you can pay again below (an order is never charged twice)."
        ),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"id="pay-form""#), "can pay again");
    assert!(page.text.contains(r#"id="cancel""#), "can cancel");
    assert!(page.text.contains(r#"id="countdown""#));
    // Without `?paid=1` (the buyer never submitted a payment here) the page says nothing of it.
    let plain = browser.get("/orders/o1").await;
    assert!(!plain.text.contains("payment-not-through"));
    assert!(plain.text.contains(r#"id="pay-form""#));
}

#[tokio::test]
async fn a_refused_payment_shows_the_api_message_in_the_banner() {
    let mut expired = order(OrderStatus::Cancelled);
    expired.cancel_reason = Some(CancelReason::Expired);
    let browser = Browser::new(api(serde_json::to_value(expired).unwrap(), || {
        errors(
            StatusCode::BAD_REQUEST,
            "The order expired before the payment completed; nothing was charged",
        )
    }))
    .await;

    let refused = browser.pay("o1").await;
    assert_eq!(location(&refused), "/orders/o1");
    let page = browser.0.follow(&refused).await;

    assert!(
        page.text.contains(r#"<div class="banner error" role="alert" id="page-error">The order expired before the payment completed; nothing was charged</div>"#),
        "{}",
        page.text
    );
    assert!(page.text.contains("This order expired before it was paid."));
}

#[tokio::test]
async fn a_payment_for_an_order_not_yet_known_asks_to_try_again_in_a_moment() {
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        || {
            let mut response = errors(
                StatusCode::SERVICE_UNAVAILABLE,
                "This order is not known here yet (it was created a moment ago); please try again",
            );
            response.headers_mut().insert(header::RETRY_AFTER, 1.into());
            response
        },
    ))
    .await;

    let later = browser.pay("o1").await;
    assert_eq!(location(&later), "/orders/o1");
    assert_eq!(later.headers[header::RETRY_AFTER], "1");
    let page = browser.0.follow(&later).await;
    assert!(!is_outage_page(&page), "{}", page.text);
    assert!(
        page.text.contains(r#"id="page-error">We could not take your payment just yet. Please try again in a moment.</div>"#),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(r#"id="pay-form""#),
        "the order can be paid again"
    );
}

#[tokio::test]
async fn an_api_outage_during_payment_is_the_outage_page() {
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        || errors(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable"),
    ))
    .await;

    let page = browser.pay("o1").await;

    assert!(is_outage_page(&page), "{}", page.text);
}

#[tokio::test]
async fn buying_a_ticket_listed_a_moment_ago_asks_to_try_again_in_a_moment() {
    let ticket = json!({"id": "t1", "title": "Show", "price": 20.5, "userId": "seller", "version": 0, "orderId": null, "sold": false,
        "venue": null, "startsAt": null, "faceValue": null, "forSale": true, "hasFile": false});
    let api = Router::new()
        .route(
            "/api/tickets/{id}",
            get(move || {
                let ticket = ticket.clone();
                async move { Json(ticket) }
            }),
        )
        .route(
            "/api/orders",
            post(|| async {
                let mut response = errors(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This ticket is not known here yet (it was created a moment ago); please try again",
                );
                response.headers_mut().insert(header::RETRY_AFTER, 1.into());
                response
            }),
        );
    let browser = Browser::new(api).await;

    let later = browser.0.post("/tickets/t1/purchase", &[], true).await;
    assert_eq!(location(&later), "/tickets/t1", "{}", later.text);
    assert_eq!(later.headers[header::RETRY_AFTER], "1");
    let page = browser.0.follow(&later).await;
    assert!(!is_outage_page(&page), "{}", page.text);
    assert!(
        page.text.contains(
            "This ticket was listed moments ago and cannot be bought yet. Please try again in a few seconds."
        ),
        "{}",
        page.text
    );
}

fn on_sale_ticket() -> Value {
    json!({"id": "t1", "title": "Show", "price": 1250.5, "userId": "seller", "version": 0,
        "orderId": null, "sold": false, "venue": null, "startsAt": null, "faceValue": null,
        "forSale": true, "hasFile": false})
}

#[tokio::test]
async fn a_refusal_is_shown_once_on_the_page_the_form_leads_back_to() {
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        || errors(StatusCode::BAD_REQUEST, "Your card was declined"),
    ))
    .await;

    let refused = browser.pay("o1").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(browser.0.cookie("flash").is_some());
    let page = browser.0.follow(&refused).await;
    assert!(
        page.text
            .contains(r#"id="page-error">Your card was declined</div>"#),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"id="pay-form""#), "can pay again");
    // Shown, then forgotten: a reload shows the order without it.
    assert_eq!(browser.0.cookie("flash"), None);
    let reload = browser.get("/orders/o1").await;
    assert_eq!(reload.status, StatusCode::OK);
    assert!(!reload.text.contains("Your card was declined"));
}

#[tokio::test]
async fn a_form_address_opened_with_get_shows_a_page_never_json() {
    let ticket = on_sale_ticket();
    let api = api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        no_payment_expected,
    )
    .route(
        "/api/tickets/{id}",
        get(move || {
            let ticket = ticket.clone();
            async move { Json(ticket) }
        }),
    );
    let browser = Browser::new(api).await;

    for (path, to) in [
        ("/orders/o1/pay", "/orders/o1"),
        ("/tickets/t1/purchase", "/tickets/t1"),
        ("/tickets/t1/sell", "/tickets/mine"),
        ("/tickets/t1/sale", "/tickets/mine"),
        ("/payouts/account", "/payouts"),
        ("/notifications/read", "/notifications"),
        ("/alerts/a1/delete", "/alerts"),
    ] {
        let response = browser.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), to, "{path}");
    }
    for path in ["/orders/o1/cancel", "/auth/signout"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(page.text.contains(r#"<form method="post""#), "{path}");
    }
    // Another method on a page's address: a page, not the API's JSON error.
    let request = reqwest::Client::new().put(format!("{}/orders/o1", browser.0.base));
    let page = browser.0.send(request).await;
    assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!page.text.contains("\"errors\""), "{}", page.text);
}

#[tokio::test]
async fn cancelling_a_reservation_asks_first_then_confirms() {
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        no_payment_expected,
    ))
    .await;

    let order_page = browser.get("/orders/o1").await;
    // "Cancel" is a link to a question, not a one-click form beside "Pay".
    assert!(
        order_page
            .text
            .contains(r#"<a class="button secondary" href="/orders/o1/cancel" id="cancel">"#),
        "{}",
        order_page.text
    );
    assert!(!order_page.text.contains(r#"action="/orders/o1/cancel""#));
    let question = browser.get("/orders/o1/cancel").await;
    assert!(
        question.text.contains("Cancel your reservation of “Show”?"),
        "{}",
        question.text
    );
    assert!(question.text.contains(r#"action="/orders/o1/cancel""#));
    assert!(
        question
            .text
            .contains(r#"href="/orders/o1" id="back">Keep it and pay</a>"#)
    );

    let cancelled = browser.0.post("/orders/o1/cancel", &[], true).await;
    assert_eq!(location(&cancelled), "/orders/o1");
    let page = browser.0.follow(&cancelled).await;
    assert!(
        page.text.contains(r#"id="page-notice">Your reservation is cancelled and the ticket is back on sale. Nothing was charged.</div>"#),
        "{}",
        page.text
    );
    assert_eq!(
        common::element(&page.text, "order-status"),
        Some("Cancelled")
    );
    assert!(page.text.contains("You cancelled this order."));
}

#[tokio::test]
async fn the_ticket_page_says_what_purchase_does_and_the_price_in_all() {
    let ticket = on_sale_ticket();
    let api = Router::new().route(
        "/api/tickets/{id}",
        get(move || {
            let ticket = ticket.clone();
            async move { Json(ticket) }
        }),
    );
    let browser = Browser::new(api.clone()).await;

    let page = browser.get("/tickets/t1").await;
    assert!(
        page.text.contains(
            r#"You pay <strong>$1,250.50</strong> in all: no fees are added at checkout."#
        ),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("Purchase reserves the ticket for you for 15 minutes."),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("Purchase — reserve for 15 minutes</button>")
    );

    // Signed out: sign in or sign up, and back to this ticket either way.
    let visitor = common::Browser::new(api, None).await;
    let page = visitor.get("/tickets/t1").await;
    assert!(
        page.text
            .contains(r#"href="/auth/signin?next=/tickets/t1" id="sign-in-to-buy""#)
    );
    assert!(
        page.text
            .contains(r#"href="/auth/signup?next=/tickets/t1" id="sign-up-to-buy""#)
    );
    let sign_in = visitor.get("/auth/signin?next=/tickets/t1").await;
    assert!(
        sign_in.text.contains(
            r#"<a href="/auth/signup?next=/tickets/t1" id="other-auth">Create an account</a>"#
        ),
        "{}",
        sign_in.text
    );
    let sign_up = visitor.get("/auth/signup?next=/tickets/t1").await;
    assert!(
        sign_up
            .text
            .contains(r#"<a href="/auth/signin?next=/tickets/t1" id="other-auth">Sign in</a>"#)
    );
}

#[tokio::test]
async fn my_orders_shows_when_each_was_placed_and_the_time_left_to_pay() {
    let mut awaiting = order(OrderStatus::Created);
    awaiting.id = uuid::Uuid::now_v7().to_string().into();
    let id = awaiting.id.to_string();
    let browser = Browser::new(api(
        serde_json::to_value(awaiting).unwrap(),
        no_payment_expected,
    ))
    .await;

    let page = browser.get("/orders").await;

    let today = chrono::Utc::now().format("%-d %b %Y").to_string();
    assert!(page.text.contains(&today), "{}", page.text);
    assert!(
        page.text
            .contains(r#"data-label="Placed"><time datetime=""#)
    );
    assert!(page.text.contains("9 minutes left"), "{}", page.text);
    assert!(
        page.text.contains(&format!(
            r#"<a class="button small" href="/orders/{id}" id="pay-now-{id}">Pay now</a>"#
        )),
        "{}",
        page.text
    );
    // On a phone each row is a card: every cell says which column it is.
    for label in ["Price", "Placed", "Status", "Details"] {
        assert!(
            page.text.contains(&format!(r#"data-label="{label}""#)),
            "{label}"
        );
    }
}

#[tokio::test]
async fn with_two_minutes_left_the_order_page_warns() {
    let mut closing = order(OrderStatus::Created);
    closing.expires_at = Millis::now().plus(std::time::Duration::from_secs(90));
    let browser = Browser::new(api(
        serde_json::to_value(closing).unwrap(),
        no_payment_expected,
    ))
    .await;

    let page = browser.get("/orders/o1").await;

    assert!(
        page.text.contains(r#"class="countdown urgent""#),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(">Less than 2 minutes left: pay now to keep this ticket.</p>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("1 minute left"));
    let calm = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        no_payment_expected,
    ))
    .await
    .get("/orders/o1")
    .await;
    assert!(!calm.text.contains("countdown urgent"));
    assert!(calm.text.contains(r#"id="time-warning" role="status""#));
    assert!(!calm.text.contains(">Less than 2 minutes left"));
}

/// The number in `attribute="..."` of the page, if any.
fn attribute_number(html: &str, attribute: &str) -> Option<i64> {
    let start = html.find(&format!(r#"{attribute}=""#))? + attribute.len() + 2;
    let end = start + html[start..].find('"')?;
    html[start..end].parse().ok()
}

#[tokio::test]
async fn the_countdown_starts_from_the_seconds_left_by_the_servers_clock() {
    // The order's window ends 300 s from now by this machine's (the server's) clock.
    let mut order = order(OrderStatus::Created);
    order.expires_at = Millis::now().plus(std::time::Duration::from_secs(300));
    let browser = Browser::new(api(
        serde_json::to_value(order).unwrap(),
        no_payment_expected,
    ))
    .await;

    let order_page = browser.get("/orders/o1").await;
    let orders_page = browser.get("/orders").await;

    for page in [&order_page, &orders_page] {
        let left = attribute_number(&page.text, "data-seconds-left");
        assert!(
            left.is_some_and(|left| (290..=300).contains(&left)),
            "{left:?}: {}",
            page.text
        );
        // Without the script, the words say it.
        assert!(page.text.contains("4 minutes left"), "{}", page.text);
    }
    assert!(
        order_page
            .text
            .contains(r#"data-warn-id="time-warning" id="countdown">4 minutes left</span>"#),
        "{}",
        order_page.text
    );
    // The script counts down from that number on the browser's monotonic clock; the browser's
    // wall clock (which may be minutes off) is not read for the time left.
    let script = browser.get("/assets/app.js").await.text;
    assert!(!script.contains("Date.now()"), "{script}");
    assert!(script.contains("performance.now()"));
    assert!(script.contains(r#"getAttribute("data-seconds-left")"#));
}

#[tokio::test]
async fn cancelling_an_order_that_ended_meanwhile_says_how_it_ended_not_that_it_was_cancelled() {
    // The confirm page was opened in time; by the "Yes", the order had ended another way. The
    // API answers the cancel 204 all the same (cancelling a cancelled order changes nothing).
    for (reason, status, why) in [
        (
            CancelReason::Expired,
            "Expired",
            "This order expired before it was paid.",
        ),
        (
            CancelReason::NotForSale,
            "Cancelled",
            "The seller took this ticket off sale before your reservation was confirmed",
        ),
    ] {
        let mut ended = order(OrderStatus::Cancelled);
        ended.cancel_reason = Some(reason);
        let browser = Browser::new(api(
            serde_json::to_value(ended).unwrap(),
            no_payment_expected,
        ))
        .await;

        let cancelled = browser.0.post("/orders/o1/cancel", &[], true).await;
        assert_eq!(location(&cancelled), "/orders/o1", "{reason:?}");
        let page = browser.0.follow(&cancelled).await;

        assert!(
            !page.text.contains("Your reservation is cancelled"),
            "{reason:?}: {}",
            page.text
        );
        assert!(!page.text.contains(r#"id="page-notice""#), "{reason:?}");
        assert_eq!(
            common::element(&page.text, "page-error"),
            Some("This reservation had already ended, so there was nothing to cancel."),
            "{reason:?}: {}",
            page.text
        );
        assert_eq!(
            common::element(&page.text, "order-status"),
            Some(status),
            "{reason:?}"
        );
        assert!(page.text.contains(why), "{reason:?}: {}", page.text);
    }
}

/// What the fake API of [`reservation_api`] holds: the ticket `t1`, the caller's orders, and
/// how many times the client listed them.
struct Held {
    ticket: Value,
    orders: Vec<Value>,
    order_lists: usize,
}

type SharedHeld = Arc<Mutex<Held>>;

/// A fake API of the ticket `t1` and the caller's orders (`GET /api/orders`, counted, and each
/// by its id), whose `POST /api/orders` refuses as the orders service does when an open order holds the ticket.
fn reservation_api(held: &SharedHeld) -> Router {
    Router::new()
        .route(
            "/api/tickets/{id}",
            get(|State(held): State<SharedHeld>| async move {
                Json(held.lock().unwrap().ticket.clone())
            }),
        )
        .route(
            "/api/orders",
            get(|State(held): State<SharedHeld>| async move {
                let mut held = held.lock().unwrap();
                held.order_lists += 1;
                Json(json!(held.orders))
            })
            .post(|| async { errors(StatusCode::BAD_REQUEST, "Ticket is already reserved") }),
        )
        .route(
            "/api/orders/{id}",
            get(
                |State(held): State<SharedHeld>, Path(id): Path<String>| async move {
                    let held = held.lock().unwrap();
                    match held.orders.iter().find(|o| o["id"] == id.as_str()) {
                        Some(order) => Json(order.clone()).into_response(),
                        None => errors(StatusCode::NOT_FOUND, "Not Found"),
                    }
                },
            ),
        )
        .with_state(held.clone())
}

/// `t1` held by the order `o1`.
fn reserved_ticket() -> Value {
    let mut ticket = on_sale_ticket();
    ticket["orderId"] = json!("o1");
    ticket
}

/// A signed-in browser of the client in front of [`reservation_api`] holding `ticket`, and the
/// caller's `orders`.
async fn holding(ticket: Value, orders: Vec<Order>) -> (Browser, SharedHeld) {
    let held = Arc::new(Mutex::new(Held {
        ticket,
        orders: orders
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect(),
        order_lists: 0,
    }));
    (Browser::new(reservation_api(&held)).await, held)
}

#[tokio::test]
async fn the_buyer_holding_a_reservation_is_led_from_the_ticket_to_their_order() {
    let (browser, _) = holding(reserved_ticket(), vec![order(OrderStatus::Created)]).await;

    let page = browser.get("/tickets/t1").await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(
            r#"<a class="button" href="/orders/o1" id="your-order">Your reservation — pay now</a>"#
        ),
        "{}",
        page.text
    );
    assert_eq!(
        common::element(&page.text, "reserved-for-you"),
        Some("Reserved for you: 9 minutes left to pay."),
        "{}",
        page.text
    );
    assert!(!page.text.contains("not available"), "{}", page.text);

    // Purchase again (from a page opened before): their order, not the refusal.
    let again = browser.0.post("/tickets/t1/purchase", &[], true).await;
    assert_eq!(location(&again), "/orders/o1", "{}", again.text);
    let order_page = browser.0.follow(&again).await;
    assert_eq!(
        common::element(&order_page.text, "page-notice"),
        Some(
            "This ticket is already reserved for you. Pay before the time runs out to make it yours."
        ),
        "{}",
        order_page.text
    );
    assert!(!order_page.text.contains("Ticket is already reserved"));
}

#[tokio::test]
async fn a_buyer_whose_payment_is_being_confirmed_is_led_to_their_order() {
    let (browser, _) = holding(reserved_ticket(), vec![authorised()]).await;

    let page = browser.get("/tickets/t1").await;

    assert_eq!(
        common::element(&page.text, "reserved-for-you"),
        Some("Reserved for you: your payment is being confirmed."),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(r#"href="/orders/o1" id="your-order">See your order</a>"#),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn someone_elses_reservation_is_not_available_and_purchase_is_refused() {
    // The caller's orders: one of another ticket, and one of this ticket that ended.
    let mut other_ticket = order(OrderStatus::Created);
    other_ticket.id = "o2".into();
    other_ticket.ticket.id = "t2".into();
    let mut ended = order(OrderStatus::Cancelled);
    ended.id = "o3".into();
    ended.cancel_reason = Some(CancelReason::Expired);
    let (browser, held) = holding(reserved_ticket(), vec![other_ticket, ended]).await;

    let page = browser.get("/tickets/t1").await;
    assert!(
        page.text
            .contains("This ticket is not available right now."),
        "{}",
        page.text
    );
    assert!(!page.text.contains("your-order"), "{}", page.text);
    assert_eq!(held.lock().unwrap().order_lists, 1);

    let refused = browser.0.post("/tickets/t1/purchase", &[], true).await;
    assert_eq!(location(&refused), "/tickets/t1", "{}", refused.text);
    let page = browser.0.follow(&refused).await;
    assert_eq!(
        common::element(&page.text, "page-error"),
        Some("Ticket is already reserved"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn the_orders_are_read_only_for_a_reserved_ticket_and_a_signed_in_visitor() {
    // On sale: nothing to look up.
    let (browser, held) = holding(on_sale_ticket(), vec![order(OrderStatus::Created)]).await;
    let page = browser.get("/tickets/t1").await;
    assert!(page.text.contains(r#"id="purchase""#), "{}", page.text);
    assert_eq!(held.lock().unwrap().order_lists, 0, "on sale");

    // Signed out: no orders to read.
    let held = Arc::new(Mutex::new(Held {
        ticket: reserved_ticket(),
        orders: vec![],
        order_lists: 0,
    }));
    let visitor = common::Browser::new(reservation_api(&held), None).await;
    let page = visitor.get("/tickets/t1").await;
    assert!(
        page.text
            .contains("This ticket is not available right now.")
    );
    assert_eq!(held.lock().unwrap().order_lists, 0, "signed out");
}
