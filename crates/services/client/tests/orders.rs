//! The order pages and the pay form against a fake API: how the client reads the API's order
//! JSON and its answers to `POST /api/payments` (201, 202, 400, 503 with `Retry-After`).

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::resources::{Order, OrderPayment, OrderPaymentStatus, OrderTicket};
use bt_contract::{Cents, Millis};
use bt_platform::rate_limit::TrustedProxies;
use bt_test_support::{TestResponse, TestServer, TestUser, test_sessions};
use serde_json::{Value, json};

const CSRF: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

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

/// The web client in front of `api`, and a signed-in browser of it.
struct Browser {
    _api: TestServer,
    _client: TestServer,
    base: String,
    http: reqwest::Client,
    cookies: String,
}

impl Browser {
    async fn new(api: Router) -> Self {
        let api = TestServer::spawn(api).await;
        let client = TestServer::spawn(bt_client::router(bt_client::Settings {
            api_base: api.url(""),
            sessions: test_sessions(),
            stripe_publishable_key: None,
            currency: "usd".into(),
            cookie_secure: false,
            trusted_proxies: TrustedProxies::loopback(),
        }))
        .await;
        let user = TestUser::new();
        Self {
            base: client.url(""),
            _api: api,
            _client: client,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: format!("session={}; csrf={CSRF}", user.token),
        }
    }

    async fn get(&self, path: &str) -> TestResponse {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookies);
        bt_test_support::TestClient::try_send(request)
            .await
            .unwrap()
    }

    /// Submits the order page's pay form with the succeeding test card.
    async fn pay(&self, order_id: &str) -> TestResponse {
        let request = self
            .http
            .post(format!("{}/orders/{order_id}/pay", self.base))
            .header(header::COOKIE, &self.cookies)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("_csrf={CSRF}&token=tok_visa"));
        bt_test_support::TestClient::try_send(request)
            .await
            .unwrap()
    }
}

/// A fake API whose order is `order` and whose `POST /api/payments` answers `payments`.
fn api(order: Value, payments: fn() -> Response) -> Router {
    let one = order.clone();
    Router::new()
        .route(
            "/api/orders",
            get(move || async move { Json(json!([order])) }),
        )
        .route("/api/orders/{id}", get(move || async move { Json(one) }))
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

#[tokio::test]
async fn a_payment_still_being_decided_shows_the_order_confirming() {
    let browser = Browser::new(api(
        serde_json::to_value(order(OrderStatus::Created)).unwrap(),
        || {
            (
                StatusCode::ACCEPTED,
                Json(json!({"id": "p1", "status": "processing"})),
            )
                .into_response()
        },
    ))
    .await;

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
        page.text
            .contains("Payment submitted, confirming your order…")
    );
    assert!(!page.text.contains(r#"id="pay-form""#));
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

    let page = browser.pay("o1").await;

    assert_eq!(page.status, StatusCode::BAD_REQUEST);
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

    let page = browser.pay("o1").await;

    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(page.headers[header::RETRY_AFTER], "1");
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

    let request = browser
        .http
        .post(format!("{}/tickets/t1/purchase", browser.base))
        .header(header::COOKIE, &browser.cookies)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("_csrf={CSRF}"));
    let page = bt_test_support::TestClient::try_send(request)
        .await
        .unwrap();

    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.text
    );
    assert_eq!(page.headers[header::RETRY_AFTER], "1");
    assert!(!is_outage_page(&page), "{}", page.text);
    assert!(
        page.text.contains(
            "This ticket was listed moments ago and cannot be bought yet. Please try again in a few seconds."
        ),
        "{}",
        page.text
    );
}
