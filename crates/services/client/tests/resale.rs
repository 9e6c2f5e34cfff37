//! After the sale, in the web client against a fake API that records what it is sent: the sell
//! and edit forms with the event's details and a file (multipart, the start converted to UTC,
//! the file forwarded as raw bytes), the API's field errors next to their fields (the price cap
//! included), "My tickets" (download, sell again, on/off sale), the download passed on with its
//! headers, the order page's download link, the payouts page and its setup button, and CSRF on
//! every new form.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bt_contract::Cents;
use bt_contract::events::OrderStatus;
use bt_contract::resources::{Order, OrderTicket};
use bt_test_support::{TestResponse, TestUser};
use serde_json::{Value, json};

mod common;
use common::location;

/// A ticket file: a small PDF.
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

/// The cap message of a $40.00 face value, as the tickets service words it.
const CAP: &str = "Price must be at most 48.00 (120% of the face value 40.00)";

/// A call the fake API received: method, path, body.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: String,
    body: Vec<u8>,
    content_type: Option<String>,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The fake API's data and what it saw.
#[derive(Default)]
struct Fake {
    user: String,
    tickets: BTreeMap<String, Value>,
    files: BTreeMap<String, Vec<u8>>,
    /// `GET /api/payouts` without `before`: the newest entries.
    payouts: Value,
    /// `GET /api/payouts?before=<key>`: the entries older than `key`; any other `before` is
    /// refused (400 on `before`), as the payments service refuses one that is not the caller's.
    older_payouts: BTreeMap<String, Value>,
    /// The query of each `GET /api/payouts`, as it was sent.
    payout_queries: Vec<Option<String>>,
    account_url: String,
    calls: Vec<Call>,
    /// The tickets the user sold last (their buyer owns them): `GET /api/tickets/undelivered`
    /// answers those still without a file.
    sold_by_user: BTreeSet<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn errors(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"message": message, "field": field}]})),
    )
        .into_response()
}

fn cents(v: &Value) -> Option<i64> {
    serde_json::from_value::<Cents>(v.clone())
        .ok()
        .map(Cents::get)
}

/// A ticket of `user` as the API shows it.
fn ticket(id: &str, user: &str, price: f64) -> Value {
    json!({"id": id, "title": format!("Show {id}"), "price": price, "userId": user, "version": 0,
        "orderId": null, "sold": false, "venue": null, "startsAt": null, "faceValue": null,
        "forSale": true, "hasFile": false})
}

/// The refusal of a price over the tickets service's cap (120%), or of no price.
fn cap_refusal(price: &Value, face_value: &Value) -> Option<Response> {
    match (cents(price), cents(face_value)) {
        (None, _) => Some(errors(
            StatusCode::BAD_REQUEST,
            Some("price"),
            "Price must be greater than 0",
        )),
        (Some(p), Some(f)) if p * 100 > f * 120 => {
            Some(errors(StatusCode::BAD_REQUEST, Some("price"), CAP))
        }
        _ => None,
    }
}

fn record(fake: &Shared, method: &'static str, path: String, headers: &HeaderMap, body: &[u8]) {
    fake.lock().unwrap().calls.push(Call {
        method,
        path,
        body: body.to_vec(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

async fn create(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(&fake, "POST", "/api/tickets".into(), &headers, &body);
    let input: Value = serde_json::from_slice(&body).unwrap();
    if let Some(refusal) = cap_refusal(&input["price"], &input["faceValue"]) {
        return refusal;
    }
    let mut fake = fake.lock().unwrap();
    let id = format!("new{}", fake.tickets.len());
    let mut t = ticket(&id, &fake.user.clone(), 0.0);
    t["title"] = input["title"].clone();
    t["price"] = json!(cents(&input["price"]).unwrap() as f64 / 100.0);
    t["venue"] = input.get("venue").cloned().unwrap_or(Value::Null);
    t["startsAt"] = input.get("startsAt").cloned().unwrap_or(Value::Null);
    t["faceValue"] = input
        .get("faceValue")
        .and_then(cents)
        .map_or(Value::Null, |c| json!(c as f64 / 100.0));
    fake.tickets.insert(id, t.clone());
    (StatusCode::CREATED, Json(t)).into_response()
}

async fn show(State(fake): State<Shared>, Path(id): Path<String>) -> Response {
    match fake.lock().unwrap().tickets.get(&id) {
        Some(t) => Json(t.clone()).into_response(),
        None => errors(StatusCode::NOT_FOUND, None, "Not Found"),
    }
}

async fn update(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&fake, "PUT", format!("/api/tickets/{id}"), &headers, &body);
    let input: Value = serde_json::from_slice(&body).unwrap();
    let mut fake = fake.lock().unwrap();
    let Some(t) = fake.tickets.get_mut(&id) else {
        return errors(StatusCode::NOT_FOUND, None, "Not Found");
    };
    if let Some(refusal) = cap_refusal(&input["price"], &t["faceValue"]) {
        return refusal;
    }
    t["title"] = input["title"].clone();
    t["price"] = json!(cents(&input["price"]).unwrap() as f64 / 100.0);
    if let Some(for_sale) = input["forSale"].as_bool() {
        t["forSale"] = json!(for_sale);
        if for_sale {
            t["sold"] = json!(false);
        }
    }
    Json(t.clone()).into_response()
}

async fn upload(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(
        &fake,
        "PUT",
        format!("/api/tickets/{id}/file"),
        &headers,
        &body,
    );
    if body.windows(6).any(|w| w == b"REFUSE") {
        return errors(
            StatusCode::BAD_REQUEST,
            None,
            "Cannot replace the file of a reserved ticket",
        );
    }
    let mut fake = fake.lock().unwrap();
    fake.files.insert(id.clone(), body.to_vec());
    if let Some(t) = fake.tickets.get_mut(&id) {
        t["hasFile"] = json!(true);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn download(State(fake): State<Shared>, Path(id): Path<String>) -> Response {
    match fake.lock().unwrap().files.get(&id) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"ticket-{id}.pdf\""),
                ),
                (header::CACHE_CONTROL, "private, no-store".to_owned()),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => errors(StatusCode::NOT_FOUND, None, "Not Found"),
    }
}

async fn mine(State(fake): State<Shared>) -> Response {
    let fake = fake.lock().unwrap();
    let user = fake.user.clone();
    let tickets: Vec<Value> = fake
        .tickets
        .values()
        .filter(|t| t["userId"] == user.as_str())
        .cloned()
        .collect();
    Json(tickets).into_response()
}

async fn undelivered(State(fake): State<Shared>) -> Response {
    let fake = fake.lock().unwrap();
    let tickets: Vec<Value> = fake
        .sold_by_user
        .iter()
        .filter_map(|id| fake.tickets.get(id))
        .filter(|t| t["hasFile"] == false)
        .cloned()
        .collect();
    Json(tickets).into_response()
}

/// The listing: every ticket on sale.
async fn list(State(fake): State<Shared>) -> Response {
    let tickets: Vec<Value> = fake
        .lock()
        .unwrap()
        .tickets
        .values()
        .filter(|t| t["forSale"] == true && t["sold"] == false)
        .cloned()
        .collect();
    Json(tickets).into_response()
}

async fn payouts(
    State(fake): State<Shared>,
    RawQuery(raw): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.payout_queries.push(raw);
    let page = match query.get("before") {
        None => Some(fake.payouts.clone()),
        Some(before) => fake.older_payouts.get(before).cloned(),
    };
    match page {
        Some(page) => Json(page).into_response(),
        None => errors(
            StatusCode::BAD_REQUEST,
            Some("before"),
            "before must be the id of one of your entries",
        ),
    }
}

async fn account(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(
        &fake,
        "POST",
        "/api/payouts/account".into(),
        &headers,
        &body,
    );
    let url = fake.lock().unwrap().account_url.clone();
    Json(json!({"url": url})).into_response()
}

/// A completed order of the user for ticket `b1`.
async fn completed_order(State(fake): State<Shared>) -> Response {
    let user = fake.lock().unwrap().user.clone();
    let order = Order {
        id: "o1".into(),
        user_id: user.into(),
        status: OrderStatus::Complete,
        expires_at: bt_contract::Millis::now(),
        version: 2,
        ticket: OrderTicket {
            id: "b1".into(),
            title: "Show b1".into(),
            price: Cents::new(4000),
            version: 0,
        },
        payment: None,
        cancel_reason: None,
    };
    Json(order).into_response()
}

fn fake_api(fake: Shared) -> Router {
    Router::new()
        .route("/api/tickets", post(create).get(list))
        .route("/api/tickets/mine", get(mine))
        .route("/api/tickets/undelivered", get(undelivered))
        .route("/api/tickets/{id}", get(show).put(update))
        .route("/api/tickets/{id}/file", put(upload).get(download))
        .route("/api/payouts", get(payouts))
        .route("/api/payouts/account", post(account))
        .route("/api/orders/{id}", get(completed_order))
        .with_state(fake)
}

/// The web client in front of the fake API, and a signed-in browser of it.
struct Browser {
    web: common::Browser,
    user: String,
    fake: Shared,
}

impl Browser {
    async fn new() -> Self {
        let user = TestUser::new();
        let fake = Arc::new(Mutex::new(Fake {
            user: user.id.clone(),
            payouts: json!({"pending": 0, "available": 0, "paid": 0,
                "totals": {"price": 0, "fee": 0, "amount": 0, "reversed": 0},
                "entries": [], "next": null, "account": {"status": "none"}}),
            account_url: "/payouts".into(),
            ..Fake::default()
        }));
        let web = common::Browser::new(fake_api(fake.clone()), Some(&user)).await;
        Self {
            web,
            user: user.id,
            fake,
        }
    }

    /// Puts a ticket of the signed-in user into the fake API.
    fn own(&self, id: &str, change: impl FnOnce(&mut Value)) {
        let mut t = ticket(id, &self.user, 20.5);
        change(&mut t);
        self.fake.lock().unwrap().tickets.insert(id.into(), t);
    }

    fn calls(&self) -> Vec<Call> {
        self.fake.lock().unwrap().calls.clone()
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.web.get(path).await
    }

    /// A plain form post with the CSRF field.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        self.web.post(path, fields, true).await
    }

    /// A `multipart/form-data` post as a browser builds it, with the CSRF field unless
    /// `csrf` is false, and a `file` part (file name, bytes) when given.
    async fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
        csrf: bool,
    ) -> TestResponse {
        self.web.post_multipart(path, fields, file, csrf).await
    }

    /// The page a form post's redirect leads to.
    async fn follow(&self, response: &TestResponse) -> TestResponse {
        self.web.follow(response).await
    }
}

/// The calls that change something (everything but GET).
fn changes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

const DETAILS: [(&str, &str); 5] = [
    ("title", "Row 5, seat 12"),
    ("price", "45"),
    ("venue", "Paradiso, Amsterdam"),
    ("startsAt", "2030-06-12T19:30"),
    ("faceValue", "40"),
];

#[tokio::test]
async fn a_ticket_sold_without_its_file_is_sent_to_its_buyer_from_my_tickets() {
    let browser = Browser::new().await;
    let mut sold = ticket("s1", "the-buyer", 30.0);
    sold["sold"] = json!(true);
    sold["forSale"] = json!(false);
    {
        let mut fake = browser.fake.lock().unwrap();
        fake.tickets.insert("s1".into(), sold);
        fake.tickets
            .insert("x1".into(), ticket("x1", "someone-else", 10.0));
        fake.sold_by_user.insert("s1".into());
    }

    let page = browser.get("/tickets/mine").await;
    for part in [
        r#"id="undelivered-heading">Sold: your buyer is waiting for the file</h2>"#,
        r#"<a class="item-title" href="/tickets/s1">Show s1</a>"#,
        r#"href="/tickets/s1/file" id="send-s1">Upload the file</a>"#,
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    let form = browser.get("/tickets/s1/file").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(
        form.text
            .contains("Your buyer has paid and can download it as soon as it is uploaded."),
        "{}",
        form.text
    );

    let sent = browser
        .post_multipart("/tickets/s1/file", &[], Some(("ticket.pdf", PDF)), true)
        .await;
    assert_eq!(location(&sent), "/tickets/mine");
    assert_eq!(changes(&browser.calls()), ["PUT /api/tickets/s1/file"]);
    let after = browser.follow(&sent).await;
    assert!(
        after
            .text
            .contains("The ticket file is sent: your buyer can download it now."),
        "{}",
        after.text
    );
    assert!(
        !after.text.contains("undelivered-heading"),
        "{}",
        after.text
    );

    // A ticket the user neither owns nor sold is not theirs to send.
    assert_eq!(
        browser.get("/tickets/x1/file").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_sell_form_asks_for_the_event_details_and_the_file() {
    let browser = Browser::new().await;

    let page = browser.get("/tickets/new").await;

    assert_eq!(page.status, StatusCode::OK);
    for part in [
        r#"enctype="multipart/form-data""#,
        r#"name="_csrf" value="00112233"#,
        r#"id="venue" name="venue" type="text""#,
        r#"id="startsAt" name="startsAt" type="datetime-local""#,
        r#"<input type="hidden" name="tzOffset" value="" data-tz-offset-for="startsAt">"#,
        "Times are in UTC (with JavaScript on, in your own time zone).",
        r#"id="faceValue" name="faceValue""#,
        r#"id="file" name="file" type="file""#,
        "PDF, PNG or JPEG, up to 5 MB.",
        // The currency the price is in, and what the seller receives of it.
        r#"<label for="price">Price <span class="hint-inline">(USD)</span></label>"#,
        r#"<span class="money-symbol" aria-hidden="true">$</span>"#,
        "When it sells you receive the price less the marketplace's 5% fee",
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    assert!(!page.text.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn a_listing_is_created_with_its_start_in_utc_then_its_file_is_uploaded() {
    let browser = Browser::new().await;
    let mut fields = DETAILS.to_vec();
    fields.push(("tzOffset", "120"));

    let created = browser
        .post_multipart("/tickets/new", &fields, Some(("ticket.pdf", PDF)), true)
        .await;

    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    assert_eq!(location(&created), "/tickets/new0");
    let calls = browser.calls();
    assert_eq!(
        changes(&calls),
        ["POST /api/tickets", "PUT /api/tickets/new0/file"]
    );
    assert_eq!(
        calls[0].json(),
        json!({"title": "Row 5, seat 12", "price": "45", "venue": "Paradiso, Amsterdam",
            "startsAt": "2030-06-12T17:30:00Z", "faceValue": "40"}),
        "19:30 at UTC+2 is 17:30 UTC"
    );
    assert_eq!(calls[1].body, PDF, "the file's exact bytes");
    assert_eq!(
        calls[1].content_type.as_deref(),
        Some("application/octet-stream")
    );
    let page = browser.get("/tickets/new0").await;
    for part in [
        r#"<li class="venue">Paradiso, Amsterdam</li>"#,
        r#"<time datetime="2030-06-12T17:30:00Z" data-local>Wed 12 Jun 2030, 17:30 UTC</time>"#,
        r#"<li class="face-value">face value $40.00</li>"#,
        "This is your listing.",
        r#"id="file-state">Its file is uploaded"#,
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    let home = browser.get("/").await;
    let card = section(&home.text, r#"<li class="card">"#, "</a>");
    for part in [
        "Paradiso, Amsterdam",
        r#"<time datetime="2030-06-12T17:30:00Z" data-local>"#,
        "face value $40.00",
        "$45.00",
    ] {
        assert!(card.contains(part), "{part}: {card}");
    }
}

#[tokio::test]
async fn without_the_browsers_offset_the_start_is_read_as_utc_and_no_file_is_no_upload() {
    let browser = Browser::new().await;

    let created = browser
        .post_multipart("/tickets/new", &DETAILS, None, true)
        .await;

    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let calls = browser.calls();
    assert_eq!(changes(&calls), ["POST /api/tickets"]);
    assert_eq!(calls[0].json()["startsAt"], "2030-06-12T19:30:00Z");
}

#[tokio::test]
async fn the_price_cap_message_is_shown_next_to_the_price_and_the_form_keeps_what_was_typed() {
    let browser = Browser::new().await;
    let mut fields = DETAILS.to_vec();
    fields[1] = ("price", "48.01");

    let page = browser
        .post_multipart("/tickets/new", &fields, Some(("ticket.pdf", PDF)), true)
        .await;

    let page = browser.follow(&page).await;
    assert!(
        page.text.contains(&format!(
            r#"<p class="field-error" id="price-error">{CAP}</p>"#
        )),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"value="48.01""#));
    assert!(page.text.contains(r#"value="Paradiso, Amsterdam""#));
    assert!(
        page.text.contains(r#"value="2030-06-12T19:30""#),
        "the start as typed, without data-utc"
    );
    assert!(!page.text.contains("data-utc"));
    assert!(
        page.text.contains(
            r#"role="alert" id="page-error">Please correct the fields marked below.</div>"#
        ),
        "a summary announces the errors; the field says which"
    );
    let price_input = &page.text[page.text.find(r#"<input id="price""#).unwrap()..];
    let price_input = &price_input[..price_input.find('>').unwrap()];
    assert!(
        price_input.contains("autofocus"),
        "the invalid field takes the focus: {price_input}"
    );
    assert_eq!(page.text.matches("autofocus").count(), 1);
    assert_eq!(
        changes(&browser.calls()),
        ["POST /api/tickets"],
        "no file upload for a ticket that was not listed"
    );
}

#[tokio::test]
async fn what_the_client_can_check_is_shown_next_to_its_field_before_anything_is_listed() {
    let browser = Browser::new().await;
    let cases: [(&str, &[u8], &str, &str); 5] = [
        (
            "2030-06-12T19:30",
            b"GIF89a....",
            "file-error",
            "The file must be a PDF, PNG or JPEG",
        ),
        ("2030-06-12T19:30", b"", "file-error", "The file is empty"),
        (
            "next friday",
            PDF,
            "startsAt-error",
            "Enter the date and time the event starts, e.g. 2027-06-12 19:30",
        ),
        (
            "0000-06-12T19:30",
            PDF,
            "startsAt-error",
            "Event start must be in the future",
        ),
        (
            "10000-06-12T19:30",
            PDF,
            "startsAt-error",
            "Event start must be in the year 9999 or earlier",
        ),
    ];
    for (starts_at, file, id, message) in cases {
        let mut fields = DETAILS.to_vec();
        fields[3] = ("startsAt", starts_at);

        let page = browser
            .post_multipart("/tickets/new", &fields, Some(("ticket.pdf", file)), true)
            .await;

        let page = browser.follow(&page).await;
        assert!(
            page.text.contains(&format!(
                r#"<p class="field-error" id="{id}">{message}</p>"#
            )),
            "{message}: {}",
            page.text
        );
    }
    // A blank title and prices typed as people do, each with a message of its own; the file
    // is asked for again (a browser never refills a file field).
    let mut fields = DETAILS.to_vec();
    fields[0] = ("title", "  ");
    fields[1] = ("price", "20,50");
    fields[4] = ("faceValue", "forty");
    let page = browser
        .post_multipart("/tickets/new", &fields, Some(("ticket.pdf", PDF)), true)
        .await;
    let page = browser.follow(&page).await;
    for (id, message) in [
        ("title-error", "Title is required"),
        ("price-error", "Price uses a point for cents, like 20.50"),
        (
            "faceValue-error",
            "Face value must be a number, like 20 or 20.50",
        ),
        (
            "file-error",
            "Please choose the file again: it is not kept when the form has errors.",
        ),
    ] {
        assert!(
            page.text.contains(&format!(
                r#"<p class="field-error" id="{id}">{message}</p>"#
            )),
            "{message}: {}",
            page.text
        );
    }
    assert!(page.text.contains(r#"value="20,50""#), "as typed");
    assert!(browser.calls().is_empty(), "nothing was sent to the API");
}

#[tokio::test]
async fn a_price_in_another_currency_is_refused_and_one_in_the_sites_is_read() {
    // The site is in US dollars.
    let browser = Browser::new().await;
    my_tickets(&browser);
    let mut fields = DETAILS.to_vec();
    fields[1] = ("price", "20 EUR");
    fields[4] = ("faceValue", "£40");

    let page = browser
        .post_multipart("/tickets/new", &fields, None, true)
        .await;

    let page = browser.follow(&page).await;
    for (id, message) in [
        (
            "price-error",
            "Prices are in USD: enter the price in USD, like 20 or 20.50",
        ),
        (
            "faceValue-error",
            "Prices are in USD: enter the face value in USD, like 20 or 20.50",
        ),
    ] {
        assert_eq!(
            common::element(&page.text, id),
            Some(message),
            "{}",
            page.text
        );
    }
    let again = browser.post("/tickets/b1/sell", &[("price", "€45")]).await;
    let again = browser.follow(&again).await;
    assert_eq!(
        common::element(&again.text, "sell-price-b1-error"),
        Some("Prices are in USD: enter the price in USD, like 20 or 20.50"),
        "{}",
        again.text
    );
    assert!(browser.calls().is_empty(), "nothing was sent to the API");

    fields[1] = ("price", "45 USD");
    fields[4] = ("faceValue", "$40");
    let listed = browser
        .post_multipart("/tickets/new", &fields, None, true)
        .await;
    assert_eq!(listed.status, StatusCode::SEE_OTHER, "{}", listed.text);
    let sent = browser.calls()[0].json();
    assert_eq!(
        (&sent["price"], &sent["faceValue"]),
        (&json!("45"), &json!("40"))
    );
}

#[tokio::test]
async fn the_ticket_page_offers_sell_it_again_only_before_the_event_starts() {
    let browser = Browser::new().await;
    for (id, starts_at) in [
        ("b1", "2030-06-12T17:30:00.000Z"),
        ("b2", "2020-06-12T17:30:00.000Z"),
    ] {
        browser.own(id, |t| {
            t["sold"] = json!(true);
            t["forSale"] = json!(false);
            t["startsAt"] = json!(starts_at);
        });
    }

    let before = browser.get("/tickets/b1").await;
    let after = browser.get("/tickets/b2").await;

    assert!(
        before
            .text
            .contains(r#"href="/tickets/mine#ticket-b1" id="sell-again">Sell it again</a>"#),
        "{}",
        before.text
    );
    assert!(!after.text.contains("sell-again"), "{}", after.text);
    assert_eq!(
        common::element(&after.text, "cannot-sell"),
        Some("The event has started: this ticket can no longer be sold."),
        "{}",
        after.text
    );
    // As "My tickets" says.
    let mine = browser.get("/tickets/mine").await;
    assert!(
        mine.text
            .contains("The event has started: this ticket can no longer be sold.")
    );
}

#[tokio::test]
async fn a_post_that_is_not_a_form_gets_the_sites_error_page_in_words() {
    let browser = Browser::new().await;
    my_tickets(&browser);
    let http = reqwest::Client::new();
    for path in ["/tickets/b1/sell", "/tickets/new", "/tickets/l1/edit"] {
        for content_type in ["application/json", "text/plain"] {
            let request = http
                .post(format!("{}{path}", browser.web.base))
                .header(header::CONTENT_TYPE, content_type)
                .body(format!("price=40&_csrf={}", common::CSRF));

            let page = browser.web.send(request).await;

            assert_eq!(
                page.status,
                StatusCode::BAD_REQUEST,
                "{path} {content_type}"
            );
            assert!(
                page.text.contains(r#"<main id="main" class="container">"#)
                    && page.text.contains("<h1>This form could not be read</h1>"),
                "{path} {content_type}: {}",
                page.text
            );
            assert!(
                page.text.contains(
                    "It did not arrive as a form of this site. Go back, reload the page and send it again."
                ),
                "{path} {content_type}: {}",
                page.text
            );
            assert!(
                !page.text.contains("Content-Type") && !page.text.contains("urlencoded"),
                "{path} {content_type}: {}",
                page.text
            );
        }
    }
    assert!(
        browser.calls().is_empty(),
        "{:?}",
        changes(&browser.calls())
    );
}

#[tokio::test]
async fn a_file_refused_after_listing_leads_to_the_upload_form_with_the_reason() {
    let browser = Browser::new().await;

    let page = browser
        .post_multipart(
            "/tickets/new",
            &DETAILS,
            Some(("ticket.pdf", b"%PDF-1.7 REFUSE")),
            true,
        )
        .await;

    let page = browser.follow(&page).await;
    assert!(page.text.contains(
        r#"id="page-error">Your ticket is listed, but its file was not saved. Please upload it again.</div>"#
    ), "{}", page.text);
    assert!(page.text.contains(
        r#"<p class="field-error" id="file-error">Cannot replace the file of a reserved ticket</p>"#
    ));
    assert!(page.text.contains(r#"action="/tickets/new0/file""#));
}

#[tokio::test]
async fn an_edit_sends_only_what_changed_and_replaces_the_file() {
    let browser = Browser::new().await;
    browser.own("l1", |t| {
        t["venue"] = json!("Paradiso");
        t["startsAt"] = json!("2030-06-12T17:30:00.000Z");
        t["faceValue"] = json!(40);
        t["price"] = json!(40);
    });
    let form = browser.get("/tickets/l1/edit").await;
    assert!(
        form.text
            .contains(r#"type="datetime-local" value="2030-06-12T17:30""#)
            && form.text.contains(r#"data-utc="2030-06-12T17:30""#),
        "the start in UTC, for the script to show in local time: {}",
        form.text
    );

    let saved = browser
        .post_multipart(
            "/tickets/l1/edit",
            &[
                ("title", "Show l1"),
                ("price", "44"),
                ("venue", "Paradiso"),
                ("startsAt", "2030-06-12T19:30"),
                ("tzOffset", "120"),
                ("faceValue", "40.00"),
            ],
            Some(("new.pdf", PDF)),
            true,
        )
        .await;

    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(location(&saved), "/tickets/l1");
    let calls = browser.calls();
    assert_eq!(
        changes(&calls),
        ["PUT /api/tickets/l1", "PUT /api/tickets/l1/file"]
    );
    assert_eq!(
        calls[0].json(),
        json!({"title": "Show l1", "price": "44"}),
        "unchanged details are left out (kept)"
    );
    let capped = browser
        .post_multipart(
            "/tickets/l1/edit",
            &[("title", "Show l1"), ("price", "50"), ("venue", "")],
            None,
            true,
        )
        .await;
    let capped = browser.follow(&capped).await;
    assert!(
        capped
            .text
            .contains(&format!(r#"id="price-error">{CAP}</p>"#))
    );
    assert_eq!(
        browser.calls()[2].json(),
        json!({"title": "Show l1", "price": "50", "venue": null, "startsAt": null, "faceValue": null}),
        "emptied details are cleared"
    );
}

/// A bought ticket (`b1`, with its file, face value $40), one on sale (`l1`), one off sale
/// (`l2`) and one reserved (`r1`), all the user's.
fn my_tickets(browser: &Browser) {
    browser.own("b1", |t| {
        t["sold"] = json!(true);
        t["forSale"] = json!(false);
        t["hasFile"] = json!(true);
        t["faceValue"] = json!(40);
        t["price"] = json!(40);
        t["venue"] = json!("Paradiso");
    });
    browser
        .fake
        .lock()
        .unwrap()
        .files
        .insert("b1".into(), PDF.to_vec());
    browser.own("l1", |_| {});
    browser.own("l2", |t| t["forSale"] = json!(false));
    browser.own("r1", |t| t["orderId"] = json!("o9"));
}

/// The part of `html` between `from` and the next `until`.
fn section<'a>(html: &'a str, from: &str, until: &str) -> &'a str {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(until).unwrap_or(rest.len())]
}

#[tokio::test]
async fn my_tickets_offers_download_and_sell_again_for_bought_tickets_and_changes_for_listings() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let page = browser.get("/tickets/mine").await;

    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let bought = section(&page.text, r#"id="owned""#, "</section>");
    for part in [
        r#"<a class="button" href="/tickets/b1/download" id="download-b1">Download</a>"#,
        r#"<form method="post" action="/tickets/b1/sell""#,
        r#"<input type="hidden" name="_csrf" value="00112233"#,
        r#"id="sell-price-b1" name="price""#,
        "face value $40.00",
        "Bought",
    ] {
        assert!(bought.contains(part), "{part}: {bought}");
    }
    let listings = section(&page.text, r#"id="listings""#, "</section>");
    for part in [
        r#"href="/tickets/l1/edit""#,
        r#"href="/tickets/l1/file""#,
        r#"id="off-sale-l1">Take off sale</button>"#,
        r#"id="on-sale-l2">Put on sale</button>"#,
        "Reserved by a buyer",
    ] {
        assert!(listings.contains(part), "{part}: {listings}");
    }
    assert!(!listings.contains("/tickets/r1/edit"), "reserved: no edit");
    assert!(!listings.contains("b1"), "a bought ticket is not a listing");
    assert!(
        page.text
            .contains(r#"<a href="/tickets/mine">My tickets</a>"#)
            && page.text.contains(r#"<a href="/payouts">Payouts</a>"#),
        "both pages are in the navigation"
    );
    let old = browser.get("/listings").await;
    assert_eq!(old.status, StatusCode::OK, "the old address of My listings");
    assert!(old.text.contains(r#"id="off-sale-l1""#));
}

#[tokio::test]
async fn selling_again_above_the_cap_shows_the_message_next_to_the_price_and_within_it_lists_it() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let above = browser
        .post("/tickets/b1/sell", &[("price", "48.01")])
        .await;

    let above = browser.follow(&above).await;
    assert!(
        above.text.contains(&format!(
            r#"<p class="field-error" id="sell-price-b1-error">{CAP}</p>"#
        )),
        "{}",
        above.text
    );
    assert!(above.text.contains(r#"required value="48.01""#));
    assert!(
        above
            .text
            .contains(r#"aria-describedby="sell-price-b1-error""#)
    );

    let within = browser.post("/tickets/b1/sell", &[("price", "48")]).await;

    assert_eq!(within.status, StatusCode::SEE_OTHER, "{}", within.text);
    assert_eq!(location(&within), "/tickets/mine#ticket-b1");
    let calls = browser.calls();
    assert_eq!(
        calls[1].json(),
        json!({"title": "Show b1", "price": "48", "forSale": true})
    );
    let page = browser.get("/tickets/mine?done=listed").await;
    assert!(page.text.contains("Your ticket is on sale again."));
    let listings = section(&page.text, r#"id="listings""#, "</section>");
    assert!(listings.contains("Show b1") && listings.contains("$48.00"));
}

#[tokio::test]
async fn a_listing_is_taken_off_sale_and_put_back_at_its_price() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let off = browser
        .post("/tickets/l1/sale", &[("forSale", "false")])
        .await;
    let on = browser
        .post("/tickets/l2/sale", &[("forSale", "true")])
        .await;

    assert_eq!(location(&off), "/tickets/mine#ticket-l1");
    assert_eq!(location(&on), "/tickets/mine#ticket-l2");
    let calls = browser.calls();
    assert_eq!(
        calls[0].json(),
        json!({"title": "Show l1", "price": "20.50", "forSale": false})
    );
    assert_eq!(
        calls[1].json(),
        json!({"title": "Show l2", "price": "20.50", "forSale": true})
    );
}

#[tokio::test]
async fn the_download_is_the_apis_file_with_its_headers() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let file = browser.get("/tickets/b1/download").await;

    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.text.as_bytes(), PDF);
    let header = |name: &str| {
        file.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(
        header("content-disposition").as_deref(),
        Some("attachment; filename=\"ticket-b1.pdf\"")
    );
    assert_eq!(
        header("cache-control").as_deref(),
        Some("private, no-store")
    );
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(
        header("content-security-policy").is_some_and(|csp| csp.contains("default-src 'self'"))
    );
    assert!(
        file.set_cookies().is_empty(),
        "no CSRF cookie on a file: {:?}",
        file.set_cookies()
    );

    // No file (not uploaded), or not the owner's: an HTML page that says why.
    browser.fake.lock().unwrap().tickets.insert(
        "other".into(),
        json!({"id": "other", "title": "Theirs", "price": 10, "userId": "someone-else", "version": 0,
            "orderId": null, "sold": false, "venue": null, "startsAt": null, "faceValue": null,
            "forSale": true, "hasFile": true}),
    );
    for (id, message) in [
        (
            "l1",
            "The seller has not uploaded this ticket&#39;s file yet.",
        ),
        (
            "other",
            "Only the ticket&#39;s current owner can download its file.",
        ),
    ] {
        let refused = browser.get(&format!("/tickets/{id}/download")).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{id}");
        assert!(
            refused.text.contains(message) && refused.text.contains("<!doctype html>"),
            "{id}: {}",
            refused.text
        );
    }
}

#[tokio::test]
async fn a_paid_orders_page_offers_the_download_once_the_file_is_there() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let with_file = browser.get("/orders/o1").await;
    browser.fake.lock().unwrap().tickets.get_mut("b1").unwrap()["hasFile"] = json!(false);
    let without_file = browser.get("/orders/o1").await;

    assert!(
        with_file.text.contains(
            r#"<a class="button" href="/tickets/b1/download" id="download">Download ticket</a>"#
        ),
        "{}",
        with_file.text
    );
    assert!(!without_file.text.contains("/tickets/b1/download"));
    assert!(
        without_file
            .text
            .contains("The seller has not uploaded the ticket's file yet"),
        "{}",
        without_file.text
    );
}

/// A credit of the payouts page's API reply.
fn payout_entry(id: &str, price: f64, fee: f64, amount: f64, status: &str) -> Value {
    json!({"id": id, "kind": "credit", "orderId": format!("o-{id}"), "ticketId": format!("t-{id}"),
        "title": format!("Show {id}"), "price": price, "fee": fee, "amount": amount,
        "status": status, "availableAt": "2030-06-12T17:30:00.000Z",
        "paidAt": if status == "paid" { json!("2030-06-13T08:00:00.000Z") } else { Value::Null },
        "createdAt": "2030-01-01T00:00:00.000Z"})
}

/// A page of `GET /api/payouts`: the same balance and totals of every entry on every page
/// ($120.00, $6.00, $114.00, one reversed), `entries`, and `next`.
fn payouts_reply(entries: Vec<Value>, next: Option<&str>) -> Value {
    json!({
        "pending": 38, "available": 0, "paid": 45.6,
        "totals": {"price": 120, "fee": 6, "amount": 114, "reversed": 1},
        "entries": entries,
        "next": next,
        "account": {"status": "none"},
    })
}

/// The footer of the payouts table with the totals above, under `label`.
fn payouts_total_row(label: &str) -> String {
    format!(
        r#"<th scope="row">{label}</th><td class="num" data-label="Price">$120.00</td><td class="num" data-label="Fee">$6.00</td><td class="num" data-label="Amount">$114.00</td><td colspan="3"><span class="note">without the reversed ones</span></td>"#
    )
}

/// The `href` of the link with `id`, if the page has one.
fn link_of<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let at = html.find(&format!(r#"id="{id}""#))?;
    let tag = &html[html[..at].rfind("<a ")?..at];
    let href = tag.split_once(r#"href=""#)?.1;
    href.split_once('"').map(|(href, _)| href)
}

#[tokio::test]
async fn the_payouts_page_shows_the_balance_its_entries_and_the_totals_of_every_entry() {
    let browser = Browser::new().await;
    // The totals count an entry that is on no page here (reversed, left out of them): a page
    // that summed its own entries would show $88.00, $4.40, $83.60 and no note.
    browser.fake.lock().unwrap().payouts = payouts_reply(
        vec![
            payout_entry("a", 40.0, 2.0, 38.0, "pending"),
            payout_entry("b", 48.0, 2.4, 45.6, "paid"),
        ],
        None,
    );

    let page = browser.get("/payouts").await;

    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for part in [
        r#"id="balance-pending">$38.00<"#,
        r#"id="balance-available">$0.00<"#,
        r#"id="balance-paid">$45.60<"#,
        r#"<th scope="row" data-label="Ticket"><a href="/tickets/t-a">Show a</a></th>
      <td class="num" data-label="Price">$40.00</td>
      <td class="num" data-label="Fee">$2.00</td>
      <td class="num" data-label="Amount">$38.00</td>
      <td data-label="Status"><span class="state pending">Pending</span></td>"#,
        r#"<td class="num" data-label="Fee">$2.40</td>"#,
        r#"<span class="state paid">Paid</span>"#,
        r#"<time datetime="2030-06-13T08:00:00Z" data-local>Thu 13 Jun 2030, 08:00 UTC</time>"#,
        &payouts_total_row("Total"),
        r#"<button type="submit" id="setup-payouts">Set up payouts</button>"#,
    ] {
        assert!(page.text.contains(part), "{part}: {}", page.text);
    }
    // One page holds every entry: no link to other pages.
    for id in ["older-payouts", "newest-payouts"] {
        assert_eq!(link_of(&page.text, id), None, "{id}: {}", page.text);
    }
    assert!(!page.text.contains("?before="), "{}", page.text);
    assert_eq!(browser.fake.lock().unwrap().payout_queries, [None]);
}

#[tokio::test]
async fn older_payout_entries_are_a_link_away_and_that_page_asks_the_api_for_them() {
    // A UUID as the payments service answers, and an id that must be encoded on its way into
    // the link and back to the API.
    let cases = [
        (
            "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            "/payouts?before=0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            "before=0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
        ),
        (
            "0193 x&y/z",
            "/payouts?before=0193%20x%26y%2Fz",
            "before=0193+x%26y%2Fz",
        ),
    ];
    for (next, link, query) in cases {
        let browser = Browser::new().await;
        {
            let mut fake = browser.fake.lock().unwrap();
            fake.payouts = payouts_reply(
                vec![
                    payout_entry("a", 40.0, 2.0, 38.0, "pending"),
                    payout_entry("b", 48.0, 2.4, 45.6, "paid"),
                ],
                Some(next),
            );
            fake.older_payouts.insert(
                next.to_owned(),
                payouts_reply(vec![payout_entry("c", 10.0, 0.5, 9.5, "reversed")], None),
            );
        }

        let newest = browser.get("/payouts").await;
        assert_eq!(newest.status, StatusCode::OK, "{next}: {}", newest.text);
        assert_eq!(link_of(&newest.text, "older-payouts"), Some(link), "{next}");
        assert!(
            newest.text.contains(&format!(
                r#"href="{link}" rel="next" id="older-payouts">Older entries</a>"#
            )),
            "{next}: {}",
            newest.text
        );
        assert_eq!(link_of(&newest.text, "newest-payouts"), None, "{next}");
        let older = browser.get(link).await;

        assert_eq!(older.status, StatusCode::OK, "{next}: {}", older.text);
        assert_eq!(
            browser.fake.lock().unwrap().payout_queries,
            [None, Some(query.to_owned())],
            "{next}"
        );
        for part in [
            r#"<th scope="row" data-label="Ticket"><a href="/tickets/t-c">Show c</a></th>"#,
            r#"<span class="state cancelled">Reversed</span>"#,
            r#"href="/payouts" id="newest-payouts">Newest entries</a>"#,
            r#"id="balance-paid">$45.60<"#,
            &payouts_total_row("Total of all sales"),
        ] {
            assert!(older.text.contains(part), "{next}: {part}: {}", older.text);
        }
        assert!(!older.text.contains("Show a"), "{next}: {}", older.text);
        // The last page: nothing older.
        assert_eq!(link_of(&older.text, "older-payouts"), None, "{next}");
    }
}

#[tokio::test]
async fn a_payouts_page_the_api_does_not_know_is_not_found_and_an_empty_before_is_the_newest() {
    let browser = Browser::new().await;

    let unknown = browser.get("/payouts?before=not-an-entry").await;
    let empty = browser.get("/payouts?before=").await;

    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(
        unknown.text.contains("There is nothing at this address."),
        "{}",
        unknown.text
    );
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert!(empty.text.contains("No sales yet."), "{}", empty.text);
    assert_eq!(
        browser.fake.lock().unwrap().payout_queries,
        [Some("before=not-an-entry".to_owned()), None]
    );
}

#[tokio::test]
async fn set_up_payouts_leads_only_to_this_site_or_stripe_connect() {
    let browser = Browser::new().await;
    let cases = [
        ("/payouts", Some("/payouts")),
        (
            "https://connect.stripe.com/setup/e/acct_1/AbC",
            Some("https://connect.stripe.com/setup/e/acct_1/AbC"),
        ),
        ("https://evil.test/onboarding", None),
        ("//evil.test", None),
    ];
    for (url, followed) in cases {
        browser.fake.lock().unwrap().account_url = url.to_owned();

        let response = browser.post("/payouts/account", &[]).await;

        match followed {
            Some(to) => {
                assert_eq!(response.status, StatusCode::SEE_OTHER, "{url}");
                assert_eq!(location(&response), to);
            }
            None => {
                assert_eq!(response.status, StatusCode::BAD_GATEWAY, "{url}");
                assert!(response.headers.get(header::LOCATION).is_none());
                assert!(
                    response
                        .text
                        .contains("We could not open the payout setup page.")
                );
            }
        }
    }
}

#[tokio::test]
async fn every_form_is_refused_without_its_csrf_token() {
    let browser = Browser::new().await;
    my_tickets(&browser);
    // Every form the client's router takes (`Posted` and `PostedMultipart` check the token
    // before any handler runs).
    let plain = [
        "/auth/signup",
        "/auth/signin",
        "/auth/signout",
        "/tickets/l1/purchase",
        "/tickets/b1/sell",
        "/tickets/l1/sale",
        "/orders/o1/pay",
        "/orders/o1/cancel",
        "/payouts/account",
        "/notifications/read",
        "/alerts",
        "/alerts/a1/delete",
    ];
    let multipart = ["/tickets/new", "/tickets/l1/edit", "/tickets/l1/file"];
    let mut responses = Vec::new();
    for path in plain {
        let response = browser
            .web
            .post(path, &[("price", "30"), ("forSale", "true")], false)
            .await;
        responses.push((path, response));
    }
    for path in multipart {
        responses.push((
            path,
            browser
                .post_multipart(path, &DETAILS, Some(("t.pdf", PDF)), false)
                .await,
        ));
    }

    for (path, response) in responses {
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            response.text.contains("This form has expired"),
            "{path}: {}",
            response.text
        );
    }
    assert!(
        browser.calls().is_empty(),
        "the API was asked nothing: {:?}",
        changes(&browser.calls())
    );
}

#[tokio::test]
async fn a_file_is_uploaded_from_its_own_form_and_a_missing_one_is_asked_for() {
    let browser = Browser::new().await;
    my_tickets(&browser);

    let form = browser.get("/tickets/l1/file").await;
    let missing = browser
        .post_multipart("/tickets/l1/file", &[], None, true)
        .await;
    let missing = browser.follow(&missing).await;
    let uploaded = browser
        .post_multipart(
            "/tickets/l1/file",
            &[],
            Some(("t.png", b"\x89PNG\r\n\x1a\nrest")),
            true,
        )
        .await;

    assert!(form.text.contains(r#"enctype="multipart/form-data""#));
    assert!(
        missing
            .text
            .contains(r#"id="file-error">Choose a file to upload</p>"#)
    );
    assert_eq!(uploaded.status, StatusCode::SEE_OTHER, "{}", uploaded.text);
    assert_eq!(location(&uploaded), "/tickets/l1");
    assert_eq!(changes(&browser.calls()), ["PUT /api/tickets/l1/file"]);
}

#[tokio::test]
async fn a_file_over_5_mb_is_refused_with_a_page_that_says_so() {
    let browser = Browser::new().await;
    let mut just_over = b"%PDF-".to_vec();
    just_over.resize(bt_platform::files::MAX_FILE_BYTES + 1, b' ');
    let mut far_over = b"%PDF-".to_vec();
    far_over.resize(7 * 1024 * 1024, b' ');

    let form = browser
        .post_multipart(
            "/tickets/new",
            &DETAILS,
            Some(("big.pdf", &just_over)),
            true,
        )
        .await;
    let page = browser
        .post_multipart(
            "/tickets/new",
            &DETAILS,
            Some(("huge.pdf", &far_over)),
            true,
        )
        .await;

    let form = browser.follow(&form).await;
    assert!(
        form.text
            .contains(r#"id="file-error">The file must be at most 5 MB</p>"#),
        "a file a little over the limit: the form says so next to the field"
    );
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.text.contains("the file must be at most 5 MB"));
    assert!(page.text.starts_with("<!doctype html>"));
    assert!(browser.calls().is_empty(), "nothing was listed");
}
