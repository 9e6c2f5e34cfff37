//! Notifications and ticket alerts in the web client, against a fake API that records what it
//! is sent: the bell's unread count in the header (one call per page, none when signed out,
//! the page rendered without it when the notifications service fails or hangs), the
//! notifications page (unread ones marked in words, links only to this site, paging with
//! `before`, mark all / one as read), the alerts page (create with the price as typed, the
//! API's field errors next to their fields in the form's words, delete), "Alert me" on a search without results
//! (signed in: the form; signed out: sign in, then back to the search), CSRF on every form
//! and `no-store` on the private pages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bt_test_support::{TestResponse, TestUser};
use serde::Deserialize;
use serde_json::{Value, json};

mod common;
use common::location;

/// A call the fake API received: method, path with its query, JSON body.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: String,
    body: Value,
}

/// How the fake notifications service behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Health {
    #[default]
    Up,
    /// Answers 500.
    Failing,
    /// Answers after 5 s.
    Hanging,
}

#[derive(Default)]
struct Fake {
    notifications: Vec<Value>,
    alerts: Vec<Value>,
    health: Health,
    calls: Vec<Call>,
}

type Shared = Arc<Mutex<Fake>>;

fn errors(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"message": message, "field": field}]})),
    )
        .into_response()
}

fn record(fake: &Shared, method: &'static str, path: String, body: &[u8]) {
    fake.lock().unwrap().calls.push(Call {
        method,
        path,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
}

/// The session the client forwarded, as the API would check it.
fn signed_in(headers: &HeaderMap) -> bool {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("session="))
}

/// A notification as the notifications service shows it; `n` orders them (higher: newer).
fn notification(n: usize, read: bool, link: Option<&str>) -> Value {
    json!({"id": format!("n{n:02}"), "kind": "ticket_alert", "title": format!("On sale now: Show {n}"),
        "body": format!("A ticket for your alert “show” is on sale: Show {n}."), "link": link,
        "createdAt": "2030-01-01T10:00:00.000Z", "read": read})
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    before: Option<String>,
}

async fn list_notifications(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
    uri: axum::http::Uri,
) -> Response {
    let health = fake.lock().unwrap().health;
    record(&fake, "GET", uri.to_string(), b"");
    match health {
        Health::Up => {}
        Health::Failing => return errors(StatusCode::INTERNAL_SERVER_ERROR, None, "Boom"),
        Health::Hanging => tokio::time::sleep(Duration::from_secs(5)).await,
    }
    if !signed_in(&headers) {
        return errors(StatusCode::UNAUTHORIZED, None, "Not authorized");
    }
    let fake = fake.lock().unwrap();
    let unread = fake
        .notifications
        .iter()
        .filter(|n| n["read"] == false)
        .count();
    // Newest first: the list is kept oldest first.
    let newest_first = fake.notifications.iter().rev();
    let page: Vec<Value> = match &query.before {
        Some(before) => newest_first
            .skip_while(|n| n["id"] != before.as_str())
            .skip(1)
            .take(query.limit.unwrap_or(20))
            .cloned()
            .collect(),
        None => newest_first
            .take(query.limit.unwrap_or(20))
            .cloned()
            .collect(),
    };
    Json(json!({"notifications": page, "unread": unread})).into_response()
}

async fn read_notifications(State(fake): State<Shared>, body: Bytes) -> Response {
    record(&fake, "POST", "/api/notifications/read".into(), &body);
    let input: Value = serde_json::from_slice(&body).unwrap();
    let mut fake = fake.lock().unwrap();
    for n in &mut fake.notifications {
        let named = match input["ids"].as_array() {
            Some(ids) => ids.contains(&n["id"]),
            None => true,
        };
        if named {
            n["read"] = json!(true);
        }
    }
    let unread = fake
        .notifications
        .iter()
        .filter(|n| n["read"] == false)
        .count();
    Json(json!({"unread": unread})).into_response()
}

async fn list_alerts(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if !signed_in(&headers) {
        return errors(StatusCode::UNAUTHORIZED, None, "Not authorized");
    }
    let fake = fake.lock().unwrap();
    Json(fake.alerts.iter().rev().cloned().collect::<Vec<_>>()).into_response()
}

/// `POST /api/alerts` with the notifications service's rules and words, roughly: `q` not blank
/// and at most 200 characters, `maxPrice` a number over 0, one alert per search.
async fn create_alert(State(fake): State<Shared>, body: Bytes) -> Response {
    record(&fake, "POST", "/api/alerts".into(), &body);
    let input: Value = serde_json::from_slice(&body).unwrap();
    let q = input["q"].as_str().unwrap_or_default().trim().to_owned();
    if q.is_empty() {
        return errors(StatusCode::BAD_REQUEST, Some("q"), "q must be provided");
    }
    if q.chars().count() > 200 {
        return errors(
            StatusCode::BAD_REQUEST,
            Some("q"),
            "q must be at most 200 characters",
        );
    }
    let max_price = match &input["maxPrice"] {
        Value::Null => Value::Null,
        Value::String(text) => match text.parse::<f64>() {
            Ok(price) if price <= 0.0 => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    Some("maxPrice"),
                    "maxPrice must be greater than 0",
                );
            }
            Ok(price) => json!(price),
            Err(_) => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    Some("maxPrice"),
                    "maxPrice must be a number, e.g. 40 or 39.50",
                );
            }
        },
        other => panic!("the price goes as typed: {other}"),
    };
    let mut fake = fake.lock().unwrap();
    if fake.alerts.iter().any(|a| a["q"] == q.as_str()) {
        return errors(
            StatusCode::BAD_REQUEST,
            None,
            "You already have an alert for this search",
        );
    }
    let alert = json!({"id": format!("a{}", fake.alerts.len() + 1), "q": q, "maxPrice": max_price,
        "createdAt": "2030-01-01T10:00:00.000Z"});
    fake.alerts.push(alert.clone());
    (StatusCode::CREATED, Json(alert)).into_response()
}

async fn delete_alert(State(fake): State<Shared>, Path(id): Path<String>) -> Response {
    record(&fake, "DELETE", format!("/api/alerts/{id}"), b"");
    let mut fake = fake.lock().unwrap();
    let before = fake.alerts.len();
    fake.alerts.retain(|a| a["id"] != id.as_str());
    if fake.alerts.len() < before {
        StatusCode::NO_CONTENT.into_response()
    } else {
        errors(StatusCode::NOT_FOUND, None, "Not Found")
    }
}

/// The listing: nothing on sale.
async fn tickets() -> Response {
    Json(json!([])).into_response()
}

fn fake_api(fake: Shared) -> Router {
    Router::new()
        .route("/api/tickets", get(tickets))
        .route("/api/notifications", get(list_notifications))
        .route("/api/notifications/read", post(read_notifications))
        .route("/api/alerts", get(list_alerts).post(create_alert))
        .route("/api/alerts/{id}", delete(delete_alert))
        .with_state(fake)
}

/// The web client in front of the fake API, and a browser of it (signed in or not).
struct Browser {
    web: common::Browser,
    fake: Shared,
}

impl Browser {
    async fn new(signed_in: bool) -> Self {
        let fake = Shared::default();
        let user = TestUser::new();
        let web = common::Browser::new(fake_api(fake.clone()), signed_in.then_some(&user)).await;
        Self { web, fake }
    }

    fn with(&self, change: impl FnOnce(&mut Fake)) {
        change(&mut self.fake.lock().unwrap());
    }

    /// The calls made since the last look, forgotten.
    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.fake.lock().unwrap().calls)
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.web.get(path).await
    }

    /// A form post, with the CSRF field unless `csrf` is false.
    async fn post(&self, path: &str, fields: &[(&str, &str)], csrf: bool) -> TestResponse {
        self.web.post(path, fields, csrf).await
    }
}

/// The calls as `METHOD path`.
fn names(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

#[tokio::test]
async fn the_header_shows_the_unread_count_from_one_call_per_page() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.notifications = (1..=4).map(|n| notification(n, n == 1, None)).collect();
    });

    let home = browser.get("/").await;

    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.text.contains(
            r#"<a class="bell" href="/notifications" id="bell" aria-label="Notifications, 3 unread">"#
        ),
        "{}",
        home.text
    );
    assert!(
        home.text
            .contains(r#"<span class="badge" id="bell-badge" aria-hidden="true">3</span>"#)
    );
    assert!(home.text.contains(r#"<a href="/alerts">Ticket alerts</a>"#));
    assert_eq!(
        names(&browser.take_calls()),
        ["GET /api/notifications?limit=1"],
        "one call for the bell"
    );

    browser.with(|f| {
        for n in &mut f.notifications {
            n["read"] = json!(true);
        }
    });
    let all_read = browser.get("/alerts").await;
    assert!(
        all_read
            .text
            .contains(r#"id="bell" aria-label="Notifications">"#)
    );
    assert!(!all_read.text.contains("bell-badge"), "no badge at 0");

    browser.with(|f| {
        f.notifications = (1..=120).map(|n| notification(n, false, None)).collect();
    });
    let many = browser.get("/").await;
    assert!(
        many.text
            .contains(r#"aria-label="Notifications, 120 unread""#)
    );
    assert!(many.text.contains(r#"aria-hidden="true">99+</span>"#));

    let signed_out = Browser::new(false).await;
    let page = signed_out.get("/").await;
    assert!(!page.text.contains(r#"id="bell""#));
    assert!(!page.text.contains(r#"href="/alerts""#));
    assert!(
        signed_out.take_calls().is_empty(),
        "no call when signed out"
    );
}

#[tokio::test]
async fn pages_render_without_the_count_when_the_notifications_service_fails_or_hangs() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.notifications = vec![notification(1, false, None)];
        f.health = Health::Failing;
    });

    let failing = browser.get("/?q=opera").await;

    assert_eq!(failing.status, StatusCode::OK, "{}", failing.text);
    assert!(
        failing
            .text
            .contains(r#"id="bell" aria-label="Notifications">"#)
    );
    assert!(!failing.text.contains("bell-badge"));
    assert!(
        failing.text.contains(r#"id="alert-me""#),
        "the page itself is whole"
    );

    browser.with(|f| f.health = Health::Hanging);
    let started = Instant::now();
    let hanging = browser.get("/alerts").await;
    assert_eq!(hanging.status, StatusCode::OK, "{}", hanging.text);
    assert!(!hanging.text.contains("bell-badge"));
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "the bell waits at most 2 s, not for the hanging service: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_notifications_page_marks_unread_ones_in_words_links_only_here_and_pages_back() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.notifications = (1..=25)
            .map(|n| notification(n, n <= 20, Some(&format!("/tickets/t{n}"))))
            .collect();
        f.notifications[24]["link"] = json!("https://evil.test/phish");
        f.notifications[23]["link"] = json!("javascript:alert(1)");
    });

    let first = browser.get("/notifications").await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        names(&browser.take_calls()),
        ["GET /api/notifications?limit=20"],
        "the page's own list gives the bell its count"
    );
    let html = &first.text;
    assert!(html.contains(r#"aria-label="Notifications, 5 unread""#));
    assert!(html.contains(r#"id="unread-summary">5 unread notifications.</p>"#));
    assert!(html.contains(r#"<li class="item notification unread" id="notification-n23">"#));
    assert!(html.contains(
        r#"<span class="new-label">New<span class="visually-hidden">:</span></span> <a href="/tickets/t23">On sale now: Show 23</a>"#
    ));
    assert!(html.contains(r#"<li class="item notification" id="notification-n20">"#));
    assert!(
        html.contains(r#"id="notification-n25-title"><span class="new-label">New<span class="visually-hidden">:</span></span> On sale now: Show 25</p>"#),
        "a link elsewhere is not followed"
    );
    assert!(!html.contains("evil.test") && !html.contains("javascript:"));
    assert!(html.contains(r#"id="mark-all-read""#));
    assert!(html.contains(r#"href="/notifications?before=n06" rel="next" id="older""#));
    assert!(html.contains("Ticket alert · <time datetime=\"2030-01-01T10:00:00Z\" data-local>"));

    let older = browser.get("/notifications?before=n06").await;
    assert!(older.text.contains(r#"id="notification-n05""#));
    assert!(older.text.contains(r#"id="notification-n01""#));
    assert!(!older.text.contains(r#"id="older""#), "not a full page");
    assert_eq!(
        names(&browser.take_calls()),
        ["GET /api/notifications?limit=20&before=n06"]
    );
    assert_eq!(
        browser.get("/notifications?before=../alerts").await.status,
        StatusCode::NOT_FOUND
    );

    browser.with(|f| f.notifications.clear());
    let empty = browser.get("/notifications").await;
    assert!(
        empty
            .text
            .contains(r#"id="no-notifications">No notifications yet."#)
    );
    assert!(!empty.text.contains(r#"id="mark-all-read""#));
}

#[tokio::test]
async fn mark_all_as_read_posts_an_empty_object_and_comes_back_with_a_notice() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.notifications = (1..=3).map(|n| notification(n, false, None)).collect();
    });

    let refused = browser.post("/notifications/read", &[], false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(browser.take_calls().is_empty(), "nothing sent without CSRF");

    let one = browser
        .post("/notifications/read", &[("id", "n02")], true)
        .await;
    assert_eq!(one.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&one), "/notifications#notification-n02");
    let calls = browser.take_calls();
    assert_eq!(names(&calls), ["POST /api/notifications/read"]);
    assert_eq!(calls[0].body, json!({"ids": ["n02"]}));

    let all = browser.post("/notifications/read", &[], true).await;

    assert_eq!(all.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&all), "/notifications");
    let calls = browser.take_calls();
    assert_eq!(
        names(&calls),
        ["POST /api/notifications/read"],
        "no bell call for a redirect"
    );
    assert_eq!(calls[0].body, json!({}));
    let after = browser.get(location(&all)).await;
    assert!(after.text.contains("All notifications are marked as read."));
    assert!(
        after
            .text
            .contains(r#"id="bell" aria-label="Notifications">"#)
    );
    assert!(!after.text.contains("bell-badge"));
    assert!(after.text.contains("You are all caught up."));

    let signed_out = Browser::new(false).await;
    let page = signed_out.get("/notifications").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/auth/signin?next=/notifications");
}

#[tokio::test]
async fn a_search_without_results_offers_an_alert_that_is_created_and_listed() {
    let browser = Browser::new(true).await;

    let search = browser.get("/?q=opera").await;

    assert!(search.text.contains(r#"<form method="post" action="/alerts" class="alert-offer-form" novalidate id="alert-offer-form">"#));
    assert!(
        search
            .text
            .contains(r#"<input type="hidden" name="q" value="opera">"#)
    );
    assert!(search.text.contains(r#"<label for="alert-max-price">"#));
    assert!(
        search
            .text
            .contains(r#"aria-describedby="alert-max-price-hint""#)
    );
    assert!(
        search
            .text
            .contains("Alert me when a ticket for “opera” is listed")
    );
    assert!(
        !browser.get("/").await.text.contains("alert-me"),
        "no offer without a search"
    );
    browser.take_calls();

    let created = browser
        .post("/alerts", &[("q", "opera"), ("maxPrice", " 39.50 ")], true)
        .await;

    assert_eq!(created.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&created), "/alerts");
    let calls = browser.take_calls();
    assert_eq!(names(&calls), ["POST /api/alerts"]);
    assert_eq!(calls[0].body, json!({"q": "opera", "maxPrice": "39.50"}));
    let alerts = browser.get(location(&created)).await;
    assert_eq!(alerts.status, StatusCode::OK);
    assert_eq!(alerts.headers[header::CACHE_CONTROL], "no-store");
    assert!(alerts.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(
        alerts
            .text
            .contains("Alert set: we will let you know when a ticket for “opera” is listed.")
    );
    assert!(alerts.text.contains(r#"<li class="item" id="alert-a1">"#));
    assert!(
        alerts
            .text
            .contains(r#"<span class="alert-price">up to $39.50</span>"#)
    );
    assert!(
        alerts
            .text
            .contains(r#"<a href="/?q=opera">See tickets</a>"#)
    );
    assert!(
        alerts
            .text
            .contains(r#"<form method="post" action="/alerts/a1/delete" class="inline">"#)
    );

    browser.take_calls();
    let any_price = browser.post("/alerts", &[("q", "Opera Gala")], true).await;
    assert_eq!(any_price.status, StatusCode::SEE_OTHER);
    let calls = browser.take_calls();
    assert_eq!(names(&calls), ["POST /api/alerts"]);
    assert_eq!(calls[0].body, json!({"q": "Opera Gala"}), "no price: any");
    let alerts = browser.get("/alerts").await;
    assert!(alerts.text.contains("“Opera Gala”"));
    assert!(
        alerts
            .text
            .contains(r#"<span class="alert-price">any price</span>"#)
    );
}

#[tokio::test]
async fn the_apis_refusals_of_an_alert_are_shown_next_to_its_fields() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.alerts = vec![json!({"id": "a1", "q": "opera", "maxPrice": null,
            "createdAt": "2030-01-01T10:00:00.000Z"})];
    });

    let bad_price = browser
        .post("/alerts", &[("q", "jazz"), ("maxPrice", "cheap")], true)
        .await;

    assert_eq!(location(&bad_price), "/alerts");
    assert!(
        browser.take_calls().is_empty(),
        "a price the client cannot read is not sent"
    );
    let bad_price = browser.web.follow(&bad_price).await;
    let html = &bad_price.text;
    assert!(html.contains(r#"<div class="field invalid">"#));
    assert!(html.contains(r#"aria-describedby="maxPrice-hint maxPrice-error""#));
    assert!(html.contains(r#"aria-invalid="true""#));
    assert!(html.contains(
        r#"<p class="field-error" id="maxPrice-error">Maximum price must be a number, like 20 or 20.50</p>"#
    ));
    assert!(
        html.contains(r#"value="jazz""#) && html.contains(r#"value="cheap""#),
        "as typed"
    );
    assert!(html.contains(r#"id="alert-a1""#), "the list is still there");

    let blank = browser.post("/alerts", &[("q", "  ")], true).await;
    let blank = browser.web.follow(&blank).await;
    assert!(
        blank
            .text
            .contains(r#"<p class="field-error" id="q-error">Search must be provided</p>"#),
        "{}",
        blank.text
    );
    assert!(blank.text.contains(r#"aria-describedby="q-hint q-error""#));

    let twice = browser.post("/alerts", &[("q", "opera")], true).await;
    let twice = browser.web.follow(&twice).await;
    assert!(twice.text.contains(
        r#"<div class="banner error" role="alert" id="page-error">You already have an alert for this search</div>"#
    ));

    browser.take_calls();
    let refused = browser.post("/alerts", &[("q", "jazz")], false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(browser.take_calls().is_empty(), "nothing sent without CSRF");
}

#[tokio::test]
async fn the_apis_refusals_of_an_alert_name_the_fields_as_the_form_labels_them() {
    let browser = Browser::new(true).await;
    let long = "x".repeat(300);
    // (what was typed, the field, the message next to it)
    let cases = [
        (
            [("q", ""), ("maxPrice", "")],
            "q-error",
            "Search must be provided",
        ),
        (
            [("q", long.as_str()), ("maxPrice", "")],
            "q-error",
            "Search must be at most 200 characters",
        ),
        (
            [("q", "opera"), ("maxPrice", "0")],
            "maxPrice-error",
            "Maximum price must be greater than 0",
        ),
    ];
    for (fields, id, message) in cases {
        let refused = browser.post("/alerts", &fields, true).await;
        let page = browser.web.follow(&refused).await;

        assert_eq!(
            common::element(&page.text, id),
            Some(message),
            "{fields:?}: {}",
            page.text
        );
    }
}

#[tokio::test]
async fn deleting_an_alert_sends_delete_and_confirms() {
    let browser = Browser::new(true).await;
    browser.with(|f| {
        f.alerts = vec![json!({"id": "a1", "q": "opera", "maxPrice": 50,
            "createdAt": "2030-01-01T10:00:00.000Z"})];
    });

    let refused = browser.post("/alerts/a1/delete", &[], false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(browser.take_calls().is_empty());

    let deleted = browser.post("/alerts/a1/delete", &[], true).await;

    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&deleted), "/alerts");
    assert_eq!(names(&browser.take_calls()), ["DELETE /api/alerts/a1"]);
    let page = browser.get(location(&deleted)).await;
    assert!(
        page.text
            .contains("Alert deleted: you will get no more notices from it.")
    );
    assert!(page.text.contains(r#"id="no-alerts""#));

    let again = browser.post("/alerts/a1/delete", &[], true).await;
    let again = browser.web.follow(&again).await;
    assert!(again.text.contains("This alert no longer exists."));
}

#[tokio::test]
async fn signed_out_alert_me_leads_to_sign_in_and_back_to_the_search() {
    let browser = Browser::new(false).await;

    let search = browser.get("/?q=opera+gala").await;

    assert!(search.text.contains(
        r#"<a class="button" id="alert-me" href="/auth/signin?next=/%3Fq%3Dopera%2Bgala">Alert me when a ticket for “opera gala” is listed</a>"#
    ), "{}", search.text);
    assert!(!search.text.contains(r#"action="/alerts""#));
    let sign_in = browser.get("/auth/signin?next=/%3Fq%3Dopera%2Bgala").await;
    assert!(
        sign_in
            .text
            .contains(r#"<input type="hidden" name="next" value="/?q=opera+gala">"#),
        "{}",
        sign_in.text
    );

    let post = browser.post("/alerts", &[("q", "opera gala")], true).await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&post), "/auth/signin?next=/%3Fq%3Dopera%2Bgala");
    let page = browser.get("/alerts").await;
    assert_eq!(location(&page), "/auth/signin?next=/alerts");
    assert!(browser.take_calls().is_empty(), "nothing asked of the API");
}
