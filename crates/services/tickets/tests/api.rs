//! The tickets API and the tickets service's event handling, on SQLite (with the in-process
//! bus) and on PostgreSQL (with NATS).

use std::time::Duration;

use bt_contract::Cents;
use bt_contract::events::{
    OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket, ReservationRefusal,
    TicketCreated, TicketRef, TicketReservationRefused, TicketUpdated,
};
use bt_platform::Runtime;
use bt_platform::db::DbOptions;
use bt_test_support::{
    Backend, EventProbe, TestBus, TestClient, TestDb, TestServer, TestUser, backend_tests, bus_for,
    eventually, publish, test_sessions,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct TestApp {
    server: TestServer,
    bus: TestBus,
    files: bt_platform::files::FileStore,
    _runtime: Runtime,
    _db: TestDb,
}

impl TestApp {
    async fn spawn(backend: Backend) -> Self {
        Self::spawn_on(TestDb::new(backend).await).await
    }

    /// The service started on `db`, which may hold an earlier version's data.
    async fn spawn_on(db: TestDb) -> Self {
        let backend = db.backend;
        let bus = TestBus::new(bus_for(backend)).await;
        let runtime = Runtime::new(bus.bus.clone());
        let settings = bt_tickets::Settings::default();
        let files = settings.files.clone();
        let service = bt_tickets::service(
            &db.url,
            &DbOptions::default(),
            test_sessions(),
            settings,
            &runtime,
        )
        .await
        .expect("tickets service starts");
        let server = TestServer::spawn(bt_platform::http::app(vec![service])).await;
        Self {
            server,
            bus,
            files,
            _runtime: runtime,
            _db: db,
        }
    }

    /// The titles of the listing's search for `q`, newest first.
    async fn search(&self, q: &str) -> Vec<String> {
        let res = self
            .anonymous()
            .get(&format!(
                "/api/tickets?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "q={q}: {}", res.text);
        titles(&res.json).into_iter().map(str::to_owned).collect()
    }

    fn anonymous(&self) -> TestClient {
        self.server.client()
    }

    fn as_user(&self, user: &TestUser) -> TestClient {
        user.client(&self.server.url(""))
    }

    /// A ticket listed by `seller`; returns its JSON.
    async fn listed(&self, seller: &TestUser, title: &str, price: Value) -> Value {
        let res = self
            .as_user(seller)
            .post("/api/tickets", &json!({"title": title, "price": price}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        res.json
    }

    async fn ticket(&self, id: &str) -> Value {
        self.anonymous()
            .get(&format!("/api/tickets/{id}"))
            .await
            .json
    }

    /// Publishes `order.created` for `ticket` as the orders service would, and waits until the
    /// ticket is reserved.
    async fn reserve(&self, ticket: &Value, order_id: &str) {
        publish(&self.bus.bus, order_created(ticket, order_id)).await;
        let id = ticket["id"].as_str().unwrap().to_owned();
        eventually(10, "the ticket is reserved", || async {
            self.ticket(&id).await["orderId"] == order_id
        })
        .await;
    }

    /// Order `order_id` (version 1) of `ticket` cancelled; waits until the ticket is free.
    async fn release(&self, ticket: &Value, order_id: &str) {
        let cancelled = OrderCancelled {
            id: order_id.into(),
            version: 1,
            ticket: ticket_ref(ticket),
            reason: None,
        };
        publish(&self.bus.bus, cancelled).await;
        let id = ticket["id"].as_str().unwrap().to_owned();
        eventually(10, "the ticket is free", || async {
            self.ticket(&id).await["orderId"].is_null()
        })
        .await;
    }
}

fn order_created(ticket: &Value, order_id: &str) -> OrderCreated {
    OrderCreated {
        id: order_id.into(),
        version: 0,
        status: OrderStatus::Created,
        user_id: "buyer".into(),
        expires_at: bt_contract::Millis::now(),
        // The terms the buyer saw: the ticket as listed.
        ticket: OrderTicket {
            id: ticket["id"].as_str().unwrap().into(),
            price: serde_json::from_value::<Cents>(ticket["price"].clone()).unwrap(),
            title: Some(ticket["title"].as_str().unwrap().to_owned()),
            version: Some(ticket["version"].as_i64().unwrap()),
            seller_id: None,
            starts_at: None,
        },
    }
}

fn ticket_ref(ticket: &Value) -> TicketRef {
    TicketRef {
        id: ticket["id"].as_str().unwrap().into(),
    }
}

async fn creating_a_ticket_needs_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .anonymous()
        .post("/api/tickets", &json!({"title": "Concert", "price": 10}))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json, json!({"errors": [{"message": "Not authorized"}]}));
}

async fn creating_a_ticket_returns_it_and_publishes_ticket_created(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "ticket.created").await;
    let seller = TestUser::new();

    let ticket = app.listed(&seller, "  Concert  ", json!(20.5)).await;

    let id = ticket["id"].as_str().unwrap();
    assert_eq!(
        ticket,
        json!({"id": id, "title": "Concert", "price": 20.5, "userId": seller.id, "version": 0,
            "orderId": null, "sold": false, "venue": null, "startsAt": null, "faceValue": null,
            "forSale": true, "hasFile": false})
    );
    let event = probe.next::<TicketCreated>(10).await;
    assert_eq!(event.data.0.id, id);
    assert_eq!(event.data.0.price, Cents::new(2050));
    assert_eq!(event.data.0.version, 0);
    assert_eq!(app.ticket(id).await, ticket);
}

async fn prices_are_exact_cents_from_numbers_or_numeric_strings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let cases = [
        (json!(20), json!(20)),
        (json!(0.1), json!(0.1)),
        (json!("25.50"), json!(25.5)),
        (json!(999999.99), json!(999999.99)),
    ];
    for (sent, shown) in cases {
        let ticket = app.listed(&seller, "Exact", sent.clone()).await;
        assert_eq!(ticket["price"], shown, "{sent}");
    }
}

async fn invalid_tickets_are_refused_with_one_error_per_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.as_user(&TestUser::new());
    let title = |m: &str| ("title".to_owned(), m.to_owned());
    let price = |m: &str| ("price".to_owned(), m.to_owned());
    let cases = [
        (
            json!({"title": "", "price": 10}),
            vec![title("Title is required")],
        ),
        (
            json!({"title": "   ", "price": 10}),
            vec![title("Title is required")],
        ),
        (json!({"price": 10}), vec![title("Title is required")]),
        (
            json!({"title": 5, "price": 10}),
            vec![title("Title is required")],
        ),
        (
            json!({"title": "x".repeat(201), "price": 10}),
            vec![title("Title must be at most 200 characters")],
        ),
        // A right-to-left override would show "Gala \u{202E}00.5$" as "Gala $5.00" in
        // receipts and emails, where the title sits beside prices.
        (
            json!({"title": "Gala \u{202E}00.5$", "price": 10}),
            vec![title("Title must not contain text-direction controls")],
        ),
        (
            json!({"title": "Gala", "venue": "Hall \u{2067}A\u{2069}", "price": 10}),
            vec![(
                "venue".to_owned(),
                "Venue must not contain text-direction controls".to_owned(),
            )],
        ),
        (
            json!({"title": "Concert"}),
            vec![price("Price must be greater than 0")],
        ),
        (
            json!({"title": "Concert", "price": -10}),
            vec![price("Price must be greater than 0")],
        ),
        (
            json!({"title": "Concert", "price": 0}),
            vec![price("Price must be greater than 0")],
        ),
        (
            json!({"title": "Concert", "price": "ten"}),
            vec![price("Price must be a number, like 20 or 20.50")],
        ),
        (
            json!({"title": "Concert", "price": 10.005}),
            vec![price("Price must have at most 2 decimal places")],
        ),
        (
            json!({"title": "Concert", "price": 1000000.01}),
            vec![price("Price must be at most 1000000")],
        ),
        (
            json!({}),
            vec![
                title("Title is required"),
                price("Price must be greater than 0"),
            ],
        ),
    ];
    for (body, want) in cases {
        let res = client.post("/api/tickets", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
        assert_eq!(res.field_errors(), want, "{body}");
    }
    let listed = app.anonymous().get("/api/tickets").await;
    assert_eq!(listed.json, json!([]), "nothing was created");
}

async fn bodies_that_are_not_json_objects_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.as_user(&TestUser::new());
    let res = client
        .post_raw("/api/tickets", Some("text/plain"), "title=x")
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = client
        .post_raw("/api/tickets", Some("application/json"), "{\"title\":")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.messages()[0].starts_with("Request body is not valid JSON"),
        "{}",
        res.text
    );
}

async fn showing_an_unknown_ticket_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for id in ["0192f5e4-0000-7000-8000-000000000000", "not-a-uuid"] {
        let res = app.anonymous().get(&format!("/api/tickets/{id}")).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(res.json, json!({"errors": [{"message": "Not Found"}]}));
    }
}

async fn the_listing_shows_tickets_on_sale_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let first = app.listed(&seller, "First", json!(10)).await;
    let second = app.listed(&seller, "Second", json!(10)).await;
    let reserved = app.listed(&seller, "Reserved", json!(10)).await;
    app.reserve(&reserved, "order-1").await;

    let res = app.anonymous().get("/api/tickets").await;

    assert_eq!(res.status, StatusCode::OK);
    let titles: Vec<&str> = res
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Second", "First"]);
    assert_eq!(res.json[1], first);
    assert_eq!(res.json[0], second);
    assert!(res.headers.get("link").is_none(), "no next page");
}

async fn the_listing_searches_titles_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    for title in [
        "Rock Concert",
        "Jazz night",
        "ROCKY horror",
        "100% fun",
        "under_score",
    ] {
        app.listed(&seller, title, json!(5)).await;
    }
    let cases = [
        ("rock", vec!["ROCKY horror", "Rock Concert"]),
        ("JAZZ", vec!["Jazz night"]),
        ("%25", vec!["100% fun"]),
        ("_", vec!["under_score"]),
        ("opera", vec![]),
        (
            "",
            vec![
                "under_score",
                "100% fun",
                "ROCKY horror",
                "Jazz night",
                "Rock Concert",
            ],
        ),
    ];
    for (q, want) in cases {
        let res = app.anonymous().get(&format!("/api/tickets?q={q}")).await;
        assert_eq!(res.status, StatusCode::OK, "{q}");
        let titles: Vec<&str> = res
            .json
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, want, "q={q}");
    }
}

async fn the_listing_pages_with_limit_cursor_and_a_next_link(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    for i in 0..5 {
        app.listed(&seller, &format!("Rock & Show {i}"), json!(5))
            .await;
    }
    app.listed(&seller, "Rock Show", json!(5)).await;
    // A search with a space and an ampersand: the next link must carry it intact.
    let mut path = "/api/tickets?limit=2&q=rock+%26+show".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let res = app.anonymous().get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        pages += 1;
        seen.extend(
            res.json
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned()),
        );
        let Some(link) = res.headers.get("link") else {
            break;
        };
        let link = link.to_str().unwrap();
        assert!(link.ends_with(">; rel=\"next\""), "{link}");
        assert!(
            link.contains("&q=rock+%26+show>"),
            "the search is kept: {link}"
        );
        path = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        [
            "Rock & Show 4",
            "Rock & Show 3",
            "Rock & Show 2",
            "Rock & Show 1",
            "Rock & Show 0"
        ]
    );
}

async fn bad_listing_parameters_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            "limit=0",
            "limit",
            "limit must be a whole number from 1 to 200",
        ),
        (
            "limit=201",
            "limit",
            "limit must be a whole number from 1 to 200",
        ),
        (
            "limit=ten",
            "limit",
            "limit must be a whole number from 1 to 200",
        ),
        ("cursor=nope", "cursor", "cursor is not valid"),
    ];
    for (query, field, message) in cases {
        let res = app.anonymous().get(&format!("/api/tickets?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            res.field_errors(),
            [(field.to_owned(), message.to_owned())],
            "{query}"
        );
    }
}

async fn the_owner_updates_a_ticket_and_its_version_grows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "ticket.updated").await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();

    let res = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "New title", "price": "12.34"}),
        )
        .await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json["title"], "New title");
    assert_eq!(res.json["price"], 12.34);
    assert_eq!(res.json["version"], 1);
    assert_eq!(app.ticket(id).await, res.json);
    let event = probe.next::<TicketUpdated>(10).await;
    assert_eq!(
        (event.data.0.version, event.data.0.title.as_str()),
        (1, "New title")
    );
}

async fn updating_is_refused_to_strangers_unknown_tickets_and_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", json!(10)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let body = json!({"title": "Mine now", "price": 1});

    let anonymous = app.anonymous().put(&path, &body).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let stranger = app.as_user(&TestUser::new()).put(&path, &body).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        stranger.json,
        json!({"errors": [{"message": "Not authorized"}]})
    );
    let unknown = app
        .as_user(&seller)
        .put("/api/tickets/0192f5e4-0000-7000-8000-000000000000", &body)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let invalid = app
        .as_user(&seller)
        .put(&path, &json!({"title": "", "price": 0}))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.field_errors().len(), 2);

    assert_eq!(
        app.ticket(ticket["id"].as_str().unwrap()).await,
        ticket,
        "unchanged"
    );
}

async fn a_reserved_ticket_cannot_be_edited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", json!(10)).await;
    app.reserve(&ticket, "order-1").await;

    let res = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{}", ticket["id"].as_str().unwrap()),
            &json!({"title": "x", "price": 1}),
        )
        .await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json,
        json!({"errors": [{"message": "Cannot edit a reserved ticket"}]})
    );
}

async fn order_created_reserves_and_order_cancelled_releases_the_ticket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "ticket.updated").await;
    let ticket = app.listed(&TestUser::new(), "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();

    app.reserve(&ticket, "order-1").await;
    let reserved = probe.next::<TicketUpdated>(10).await.data.0;
    assert_eq!(
        (
            reserved.version,
            reserved.order_id.as_ref().map(|o| o.as_str())
        ),
        (1, Some("order-1"))
    );

    app.release(&ticket, "order-1").await;
    let released = probe.next::<TicketUpdated>(10).await.data.0;
    assert_eq!((released.version, released.order_id), (2, None));
    assert_eq!(app.ticket(id).await["version"], 2);

    // On sale again: another order can reserve it.
    app.reserve(&ticket, "order-2").await;
    assert_eq!(app.ticket(id).await["version"], 3);
}

async fn a_cancellation_that_overtakes_its_order_waits_for_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();

    publish(
        &app.bus.bus,
        OrderCancelled {
            id: "order-1".into(),
            version: 1,
            ticket: ticket_ref(&ticket),
            reason: None,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.ticket(id).await["version"],
        0,
        "nothing applied before order.created"
    );
    publish(&app.bus.bus, order_created(&ticket, "order-1")).await;

    eventually(20, "reserved then released", || async {
        app.ticket(id).await["version"] == 2
    })
    .await;
    assert!(
        app.ticket(id).await["orderId"].is_null(),
        "the ticket is free at the end"
    );
}

async fn a_new_order_waits_until_the_previous_one_is_released(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    app.reserve(&ticket, "order-1").await;

    // order-2 is created after order-1 was cancelled, but its event arrives first.
    publish(&app.bus.bus, order_created(&ticket, "order-2")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.ticket(id).await["orderId"], "order-1");
    publish(
        &app.bus.bus,
        OrderCancelled {
            id: "order-1".into(),
            version: 1,
            ticket: ticket_ref(&ticket),
            reason: None,
        },
    )
    .await;

    eventually(20, "order-2 holds the ticket", || async {
        app.ticket(id).await["orderId"] == "order-2"
    })
    .await;
    assert_eq!(app.ticket(id).await["version"], 3);
}

/// Publishes `order.completed` for the order of `buyer` that holds `ticket`, as the orders
/// service would after `order_created_by`, and waits until the buyer owns the ticket.
async fn complete(app: &TestApp, ticket: &Value, order_id: &str, buyer: &TestUser, version: i64) {
    publish(
        &app.bus.bus,
        OrderCompleted {
            id: order_id.into(),
            version,
            ticket: ticket_ref(ticket),
            payment_id: None,
            user_id: Some(buyer.id.as_str().into()),
        },
    )
    .await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    eventually(10, "the buyer owns the ticket", || async {
        app.ticket(&id).await["userId"] == buyer.id.as_str()
    })
    .await;
}

fn order_created_by(ticket: &Value, order_id: &str, buyer: &TestUser) -> OrderCreated {
    OrderCreated {
        user_id: buyer.id.as_str().into(),
        ..order_created(ticket, order_id)
    }
}

async fn order_completed_gives_the_ticket_to_its_buyer_off_sale(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let buyer = TestUser::new();
    let ticket = app.listed(&seller, "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    publish(&app.bus.bus, order_created_by(&ticket, "order-1", &buyer)).await;
    eventually(10, "reserved", || async {
        app.ticket(id).await["orderId"] == "order-1"
    })
    .await;
    let mut probe = EventProbe::new(&app.bus.bus, "ticket.updated").await;

    complete(&app, &ticket, "order-1", &buyer, 1).await;
    // A late cancellation of the paid order changes nothing.
    publish(
        &app.bus.bus,
        OrderCancelled {
            id: "order-1".into(),
            version: 2,
            ticket: ticket_ref(&ticket),
            reason: None,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let sold = app.ticket(id).await;
    assert_eq!(
        (
            sold["orderId"].clone(),
            sold["userId"].as_str(),
            sold["forSale"].clone(),
            sold["sold"].clone(),
            sold["version"].as_i64()
        ),
        (
            json!(null),
            Some(buyer.id.as_str()),
            json!(false),
            json!(true),
            Some(2)
        )
    );
    // (The reservation's own event may reach the probe first: the relay publishes after the
    // commit that the test saw.)
    let mut event = probe.next::<TicketUpdated>(10).await;
    if event.data.0.version == 1 {
        event = probe.next::<TicketUpdated>(10).await;
    }
    assert_eq!(event.data.0.version, 2);
    assert_eq!(event.data.0.user_id.as_str(), buyer.id);
    assert!(!event.data.0.for_sale);
    probe.assert_silent(300).await;
    assert_eq!(app.anonymous().get("/api/tickets").await.json, json!([]));
    // The seller cannot edit it any more; it is the buyer's.
    let edit = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "x", "price": 1}),
        )
        .await;
    assert_eq!(edit.status, StatusCode::UNAUTHORIZED);
    let mine = app.as_user(&buyer).get("/api/tickets/mine").await;
    assert_eq!(mine.json, json!([sold]));
    let theirs = app.as_user(&seller).get("/api/tickets/mine").await;
    assert_eq!(theirs.json, json!([]));
}

async fn event_details_are_listed_shown_and_announced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "ticket.created").await;
    let seller = TestUser::new();
    let res = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": "48", "venue": "  Paradiso ",
                "startsAt": "2099-06-12T21:30:00+02:00", "faceValue": 40}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(res.json["venue"], "Paradiso");
    assert_eq!(res.json["startsAt"], "2099-06-12T19:30:00.000Z");
    assert_eq!(res.json["faceValue"], json!(40));
    assert_eq!(res.json["forSale"], json!(true));
    let event = probe.next::<TicketCreated>(10).await;
    assert_eq!(event.data.0.venue.as_deref(), Some("Paradiso"));
    assert_eq!(event.data.0.face_value, Some(Cents::new(4000)));
    assert_eq!(
        event.data.0.starts_at.map(|m| m.to_iso()),
        Some("2099-06-12T19:30:00.000Z".to_owned())
    );
    let id = res.json["id"].as_str().unwrap();
    assert_eq!(app.ticket(id).await, res.json);
    // A client of the first release sends title and price only: the details stay.
    let edited = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Row 6", "price": 45}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert_eq!(
        (
            edited.json["venue"].clone(),
            edited.json["faceValue"].clone()
        ),
        (json!("Paradiso"), json!(40))
    );
    // `null` clears one.
    let cleared = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Row 6", "price": 45, "venue": null}),
        )
        .await;
    assert_eq!(cleared.json["venue"], json!(null));
    assert_eq!(cleared.json["faceValue"], json!(40));
}

async fn a_price_over_the_resale_cap_and_bad_details_are_refused_per_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let over = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": 48.01, "faceValue": "40"}),
        )
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        over.field_errors(),
        [(
            "price".to_owned(),
            "Price must be at most 48.00 (120% of the face value 40.00)".to_owned()
        )]
    );
    let bad = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": 10, "venue": 7,
                "startsAt": "2020-01-01T00:00:00Z", "faceValue": 0, "forSale": "yes"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.field_errors(),
        [
            ("venue".to_owned(), "Venue must be text".to_owned()),
            (
                "startsAt".to_owned(),
                "Event start must be in the future".to_owned()
            ),
            (
                "faceValue".to_owned(),
                "Face value must be greater than 0".to_owned()
            ),
            (
                "forSale".to_owned(),
                "forSale must be true or false".to_owned()
            ),
        ]
    );
    // A blank start is not "no start" (that is `null`): found by schemathesis.
    let blank = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": 10, "startsAt": ""}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.text);
    assert_eq!(blank.field_errors()[0].0, "startsAt");
    let no_zone = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": 10, "startsAt": "2099-01-01T20:00:00"}),
        )
        .await;
    assert_eq!(
        no_zone.field_errors(),
        [(
            "startsAt".to_owned(),
            "Event start must be a date and time with a time zone, e.g. 2026-12-31T20:00:00Z"
                .to_owned()
        )]
    );
}

async fn the_listing_hides_tickets_off_sale_and_events_that_started(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let starting = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Starting", "price": 10, "startsAt": soon}),
        )
        .await;
    assert_eq!(starting.status, StatusCode::CREATED, "{}", starting.text);
    let off = app
        .as_user(&seller)
        .post(
            "/api/tickets",
            &json!({"title": "Kept", "price": 10, "forSale": false}),
        )
        .await;
    assert_eq!(off.json["forSale"], json!(false));
    let later = app.listed(&seller, "Later", json!(10)).await;
    let titles = |res: Value| -> Vec<String> {
        res.as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(app.anonymous().get("/api/tickets").await.json),
        ["Later", "Starting"]
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        titles(app.anonymous().get("/api/tickets").await.json),
        ["Later"]
    );
    // Still shown to its owner and by id.
    assert_eq!(
        titles(app.as_user(&seller).get("/api/tickets/mine").await.json),
        ["Later", "Kept", "Starting"]
    );
    // An order that reaches the tickets service after the start is refused, saying why.
    let mut refusals = EventProbe::new(&app.bus.bus, "ticket.reservation_refused").await;
    publish(&app.bus.bus, order_created(&starting.json, "order-late")).await;
    assert_eq!(
        refusals
            .next::<TicketReservationRefused>(10)
            .await
            .data
            .reason,
        ReservationRefusal::EventStarted
    );
    publish(&app.bus.bus, order_created(&off.json, "order-off")).await;
    assert_eq!(
        refusals
            .next::<TicketReservationRefused>(10)
            .await
            .data
            .reason,
        ReservationRefusal::NotForSale
    );
    // It cannot be put on sale again once its event started.
    let id = starting.json["id"].as_str().unwrap();
    let relist = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Starting", "price": 10, "forSale": true}),
        )
        .await;
    assert_eq!(
        relist.json,
        json!({"errors": [{"message": "This event has already started"}]})
    );
    assert_eq!(later["forSale"], json!(true));
}

async fn a_buyer_relists_within_the_cap_and_the_next_buyer_owns_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, c) = (TestUser::new(), TestUser::new(), TestUser::new());
    let res = app
        .as_user(&a)
        .post(
            "/api/tickets",
            &json!({"title": "Row 5", "price": 40, "faceValue": 40, "venue": "Hall"}),
        )
        .await;
    let ticket = res.json;
    let id = ticket["id"].as_str().unwrap().to_owned();
    app.reserve(&ticket, "order-1").await;
    complete(&app, &ticket, "order-1", &b, 1).await;
    // Reserved for "buyer" by `reserve`, completed with b as the event's buyer: b owns it.
    let path = format!("/api/tickets/{id}");

    let above = app
        .as_user(&b)
        .put(
            &path,
            &json!({"title": "Row 5", "price": 48.5, "forSale": true}),
        )
        .await;
    assert_eq!(
        above.field_errors(),
        [(
            "price".to_owned(),
            "Price must be at most 48.00 (120% of the face value 40.00)".to_owned()
        )]
    );
    let lift = app
        .as_user(&b)
        .put(
            &path,
            &json!({"title": "Row 5", "price": 90, "faceValue": 80, "forSale": true}),
        )
        .await;
    assert_eq!(
        lift.json,
        json!({"errors": [{"message": "The event details cannot be changed once the ticket has been sold"}]})
    );
    let relisted = app
        .as_user(&b)
        .put(
            &path,
            &json!({"title": "Row 5", "price": 48, "forSale": true}),
        )
        .await;
    assert_eq!(relisted.status, StatusCode::OK, "{}", relisted.text);
    assert_eq!(
        (
            relisted.json["forSale"].clone(),
            relisted.json["sold"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(
        app.anonymous().get("/api/tickets").await.json,
        json!([relisted.json])
    );

    let relisted = relisted.json;
    publish(&app.bus.bus, order_created_by(&relisted, "order-2", &c)).await;
    eventually(10, "reserved again", || async {
        app.ticket(&id).await["orderId"] == "order-2"
    })
    .await;
    complete(&app, &relisted, "order-2", &c, 1).await;
    let owned = app.ticket(&id).await;
    assert_eq!(owned["userId"], c.id.as_str());
    assert_eq!(owned["price"], json!(48));
    assert_eq!(owned["venue"], "Hall");
    assert_eq!(
        app.as_user(&b).get("/api/tickets/mine").await.json,
        json!([])
    );
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR ticket";
const PDF: &[u8] = b"%PDF-1.7\n% ticket for row 5\n";

impl TestApp {
    async fn upload(
        &self,
        user: &TestUser,
        id: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> bt_test_support::TestResponse {
        let client = self.as_user(user);
        client
            .send(
                client
                    .http
                    .put(client.url(&format!("/api/tickets/{id}/file")))
                    .header("content-type", content_type)
                    .body(bytes.to_vec()),
            )
            .await
    }

    /// The file as `user` downloads it: status, content type, bytes.
    async fn download(&self, user: &TestUser, id: &str) -> (StatusCode, String, Vec<u8>) {
        let client = self.as_user(user);
        let res = client
            .http
            .get(client.url(&format!("/api/tickets/{id}/file")))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let kind = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, res.bytes().await.unwrap().to_vec())
    }
}

async fn the_owner_uploads_the_file_and_only_the_owner_downloads_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (seller, buyer, stranger) = (TestUser::new(), TestUser::new(), TestUser::new());
    let ticket = app.listed(&seller, "Row 5", json!(10)).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.download(&seller, &id).await.0,
        StatusCode::NOT_FOUND,
        "no file yet"
    );

    // The kind is the bytes', not the header's.
    let res = app.upload(&seller, &id, PNG, "application/pdf").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    assert_eq!(app.ticket(&id).await["hasFile"], json!(true));
    assert_eq!(
        app.ticket(&id).await["version"],
        json!(0),
        "a file is not a change of the listing"
    );
    assert_eq!(
        app.download(&seller, &id).await,
        (StatusCode::OK, "image/png".to_owned(), PNG.to_vec())
    );
    for user in [&buyer, &stranger] {
        assert_eq!(app.download(user, &id).await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        app.upload(&stranger, &id, PDF, "application/pdf")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let anonymous = app
        .anonymous()
        .get(&format!("/api/tickets/{id}/file"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Replaced: the new bytes, the old object gone.
    let res = app.upload(&seller, &id, PDF, "image/png").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    assert_eq!(
        app.download(&seller, &id).await,
        (StatusCode::OK, "application/pdf".to_owned(), PDF.to_vec())
    );
    let old = bt_platform::files::FileKey::for_ticket(&id.as_str().into(), PNG).unwrap();
    assert_eq!(app.files.get(&old).await.unwrap(), None);

    // Sold: the buyer gets exactly those bytes; the seller no longer.
    publish(&app.bus.bus, order_created_by(&ticket, "order-1", &buyer)).await;
    eventually(10, "reserved", || async {
        app.ticket(&id).await["orderId"] == "order-1"
    })
    .await;
    assert_eq!(
        app.upload(&seller, &id, PNG, "image/png").await.json,
        json!({"errors": [{"message": "Cannot replace the file of a reserved ticket"}]})
    );
    complete(&app, &ticket, "order-1", &buyer, 1).await;
    assert_eq!(
        app.download(&buyer, &id).await,
        (StatusCode::OK, "application/pdf".to_owned(), PDF.to_vec())
    );
    assert_eq!(app.download(&seller, &id).await.0, StatusCode::NOT_FOUND);
}

/// The tickets `user` sold and has not sent the file of (`GET /api/tickets/undelivered`), by id.
async fn undelivered(app: &TestApp, user: &TestUser) -> Vec<String> {
    let res = app.as_user(user).get("/api/tickets/undelivered").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let list = res.json.as_array().expect("a list").clone();
    list.iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_seller_who_sold_a_ticket_without_its_file_sends_it_to_the_buyer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (seller, buyer, stranger) = (TestUser::new(), TestUser::new(), TestUser::new());
    let ticket = app.listed(&seller, "Row 7", json!(10)).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    let other = app.listed(&stranger, "Row 8", json!(10)).await;
    assert_eq!(undelivered(&app, &seller).await, Vec::<String>::new());

    publish(&app.bus.bus, order_created_by(&ticket, "order-1", &buyer)).await;
    eventually(10, "reserved", || async {
        app.ticket(&id).await["orderId"] == "order-1"
    })
    .await;
    complete(&app, &ticket, "order-1", &buyer, 1).await;
    // Sold with no file: the buyer waits for it, and only its seller has it to send.
    assert_eq!(app.download(&buyer, &id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(undelivered(&app, &seller).await, vec![id.clone()]);
    for user in [&buyer, &stranger] {
        assert_eq!(undelivered(&app, user).await, Vec::<String>::new());
    }
    assert_eq!(
        app.upload(&stranger, &id, PNG, "image/png").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.upload(&seller, other["id"].as_str().unwrap(), PNG, "image/png")
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "a ticket someone else lists"
    );

    let res = app.upload(&seller, &id, PDF, "application/pdf").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    assert_eq!(
        app.download(&buyer, &id).await,
        (StatusCode::OK, "application/pdf".to_owned(), PDF.to_vec())
    );
    // Sent: the seller cannot read it back nor replace the buyer's file.
    assert_eq!(app.download(&seller, &id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.upload(&seller, &id, PNG, "image/png").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(undelivered(&app, &seller).await, Vec::<String>::new());
    assert_eq!(
        app.anonymous().get("/api/tickets/undelivered").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn files_that_are_not_tickets_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Row 5", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    let text = app
        .upload(
            &seller,
            id,
            b"just some text, renamed to .pdf",
            "application/pdf",
        )
        .await;
    assert_eq!(
        (text.status, text.json.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "The file must be a PDF, PNG or JPEG"}]})
        )
    );
    let empty = app.upload(&seller, id, b"", "application/pdf").await;
    assert_eq!(
        empty.json,
        json!({"errors": [{"message": "The file is empty"}]})
    );
    let mut big = PDF.to_vec();
    big.resize(5 * 1024 * 1024 + 1, b'x');
    let res = app.upload(&seller, id, &big, "application/pdf").await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json,
        json!({"errors": [{"message": "The file must be at most 5 MB"}]})
    );
    big.truncate(5 * 1024 * 1024);
    let res = app.upload(&seller, id, &big, "application/pdf").await;
    assert_eq!(
        res.status,
        StatusCode::NO_CONTENT,
        "exactly 5 MB is fine: {}",
        res.text
    );
    let jpeg = app
        .upload(&seller, id, b"\xff\xd8\xff\xe0 JFIF", "text/plain")
        .await;
    assert_eq!(jpeg.status, StatusCode::NO_CONTENT);
    assert_eq!(app.download(&seller, id).await.1, "image/jpeg");
    let unknown = app
        .upload(
            &seller,
            "01a224ab-c7ce-730e-a634-c7ae93cbbbf4",
            PNG,
            "image/png",
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn a_redelivered_order_event_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    let envelope = publish(&app.bus.bus, order_created(&ticket, "order-1")).await;
    eventually(10, "reserved", || async {
        app.ticket(id).await["version"] == 1
    })
    .await;

    // The same event again (same id, a new message), then the same order again (new id).
    app.bus
        .bus
        .publish(&bt_platform::bus::OutgoingMessage {
            id: "redelivery".into(),
            subject: "order.created".into(),
            payload: serde_json::to_string(&envelope).unwrap(),
            request_id: None,
        })
        .await
        .unwrap();
    publish(&app.bus.bus, order_created(&ticket, "order-1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(app.ticket(id).await["version"], 1);
}

async fn a_seller_sees_all_their_tickets_in_every_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let on_sale = app.listed(&seller, "On sale", json!(10)).await;
    let reserved = app.listed(&seller, "Reserved", json!(10)).await;
    app.listed(&TestUser::new(), "Someone else's", json!(10))
        .await;
    app.reserve(&reserved, "order-1").await;

    let res = app.as_user(&seller).get("/api/tickets/mine").await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let got: Vec<(&str, bool)> = res
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["title"].as_str().unwrap(), t["orderId"].is_null()))
        .collect();
    assert_eq!(got, [("Reserved", false), ("On sale", true)]);
    assert_eq!(res.json[1], on_sale);
    assert_eq!(
        app.anonymous().get("/api/tickets/mine").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn an_order_placed_before_the_sellers_edit_reached_it_is_refused_not_reserved(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let mut refused = EventProbe::new(&app.bus.bus, "ticket.reservation_refused").await;
    let mut updated = EventProbe::new(&app.bus.bus, "ticket.updated").await;
    let seller = TestUser::new();
    let listed = app.listed(&seller, "Row A", json!(10)).await;
    let id = listed["id"].as_str().unwrap();
    // The buyer's order was placed on the listed terms; the seller's edit reached this service
    // first.
    let edit = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Row Z (obstructed)", "price": 99}),
        )
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.text);
    assert_eq!(updated.next::<TicketUpdated>(10).await.data.0.version, 1);

    publish(&app.bus.bus, order_created(&listed, "order-on-old-terms")).await;

    let event = refused.next::<TicketReservationRefused>(10).await;
    assert_eq!(
        event.data,
        TicketReservationRefused {
            order_id: "order-on-old-terms".into(),
            ticket_id: id.into(),
            reason: ReservationRefusal::TicketChanged,
        }
    );
    updated.assert_silent(300).await;
    let ticket = app.ticket(id).await;
    assert_eq!(
        (&ticket["orderId"], &ticket["price"], &ticket["version"]),
        (&Value::Null, &json!(99), &json!(1)),
        "still on sale, at the seller's new terms"
    );

    // An order placed on the current terms reserves it.
    let current = app.ticket(id).await;
    app.reserve(&current, "order-on-new-terms").await;
    let reserved = updated.next::<TicketUpdated>(10).await.data.0;
    assert_eq!(reserved.order_id, Some("order-on-new-terms".into()));
    refused.assert_silent(300).await;
}

/// `GET` of `path` with `If-None-Match: etag`.
async fn revalidate(app: &TestApp, path: &str, etag: &str) -> bt_test_support::TestResponse {
    let client = app.anonymous();
    client
        .send(
            client
                .http
                .get(client.url(path))
                .header("if-none-match", etag),
        )
        .await
}

fn etag(res: &bt_test_support::TestResponse) -> String {
    res.headers["etag"].to_str().unwrap().to_owned()
}

fn titles(listing: &Value) -> Vec<&str> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect()
}

async fn the_listing_is_revalidated_with_its_etag_and_changes_with_every_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let first = app.listed(&seller, "First", json!(10)).await;
    let listing = app.anonymous().get("/api/tickets").await;
    assert_eq!(titles(&listing.json), ["First"]);
    assert_eq!(
        listing.headers["cache-control"],
        "public, max-age=0, s-maxage=1"
    );
    let first_tag = etag(&listing);
    for tag in [
        first_tag.clone(),
        format!("W/{first_tag}"),
        format!("\"x\", {first_tag}"),
    ] {
        let unchanged = revalidate(&app, "/api/tickets", &tag).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{tag}");
        assert_eq!(unchanged.text, "");
        assert_eq!(etag(&unchanged), first_tag);
    }

    // A new ticket is in the next answer, under a new tag.
    app.listed(&seller, "Second", json!(10)).await;
    let changed = revalidate(&app, "/api/tickets", &first_tag).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(titles(&changed.json), ["Second", "First"]);
    let second_tag = etag(&changed);
    assert_ne!(second_tag, first_tag);

    // A reservation (an event) takes the ticket out at once.
    app.reserve(&first, "order-1").await;
    let reserved = revalidate(&app, "/api/tickets", &second_tag).await;
    assert_eq!(reserved.status, StatusCode::OK);
    assert_eq!(titles(&reserved.json), ["Second"]);

    // An edit, and taking a ticket off sale, likewise.
    let id = app.anonymous().get("/api/tickets").await.json[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let edited = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Second, row 2", "price": 10}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert_eq!(
        titles(&app.anonymous().get("/api/tickets").await.json),
        ["Second, row 2"]
    );
    app.as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Second, row 2", "price": 10, "forSale": false}),
        )
        .await;
    assert_eq!(app.anonymous().get("/api/tickets").await.json, json!([]));

    // Searches and pages are answered from the database, without a tag.
    let search = app.anonymous().get("/api/tickets?q=first").await;
    assert_eq!(search.status, StatusCode::OK);
    assert!(search.headers.get("etag").is_none());
}

async fn a_ticket_is_revalidated_with_its_etag_and_changes_with_every_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Row 5", json!(10)).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    let path = format!("/api/tickets/{id}");
    let shown = app.anonymous().get(&path).await;
    assert_eq!(shown.json, ticket);
    let tag = etag(&shown);
    assert_eq!(
        shown.headers["cache-control"],
        "public, max-age=0, s-maxage=1"
    );
    let unchanged = revalidate(&app, &path, &tag).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.text, "");

    // The file: `hasFile` at once.
    let res = app.upload(&seller, &id, PNG, "image/png").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    let with_file = revalidate(&app, &path, &tag).await;
    assert_eq!(with_file.status, StatusCode::OK);
    assert_eq!(with_file.json["hasFile"], json!(true));

    // An edit.
    let edited = app
        .as_user(&seller)
        .put(&path, &json!({"title": "Row 6", "price": 12}))
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    let shown = revalidate(&app, &path, &etag(&with_file)).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json, edited.json);

    // A reservation (an event).
    app.reserve(&edited.json, "order-1").await;
    assert_eq!(app.ticket(&id).await["orderId"], "order-1");
    // Unknown tickets are still 404, and not remembered as such.
    let unknown = app.anonymous().get("/api/tickets/no-such-ticket").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// Two replicas of the tickets service on one PostgreSQL database and one NATS stream, as in
/// `serve`: a change made on one reaches the other's snapshots through its event.
#[tokio::test]
async fn a_change_made_by_another_replica_reaches_the_listing() {
    let db = TestDb::new(Backend::Postgres).await;
    let bus = TestBus::new(bus_for(Backend::Postgres)).await;
    let mut replicas = Vec::new();
    let mut runtimes = Vec::new();
    for _ in 0..2 {
        let runtime = Runtime::new(bus.bus.clone());
        let service = bt_tickets::service(
            &db.url,
            &DbOptions::default(),
            test_sessions(),
            bt_tickets::Settings::default(),
            &runtime,
        )
        .await
        .expect("tickets service starts");
        replicas.push(TestServer::spawn(bt_platform::http::app(vec![service])).await);
        runtimes.push(runtime);
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    let seller = TestUser::new();
    assert_eq!(b.client().get("/api/tickets").await.json, json!([]));

    let listed = seller
        .client(&a.url(""))
        .post("/api/tickets", &json!({"title": "Elsewhere", "price": 10}))
        .await;
    assert_eq!(listed.status, StatusCode::CREATED, "{}", listed.text);
    // On the replica that made it, at once.
    assert_eq!(
        titles(&a.client().get("/api/tickets").await.json),
        ["Elsewhere"]
    );
    // On the other, as soon as the event arrives (and within MAX_STALENESS in any case).
    eventually(10, "the other replica lists the new ticket", || async {
        b.client()
            .get("/api/tickets")
            .await
            .json
            .as_array()
            .map(Vec::len)
            == Some(1)
    })
    .await;
    let id = listed.json["id"].as_str().unwrap();
    let edited = seller
        .client(&a.url(""))
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "Moved", "price": 10}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    eventually(10, "the other replica shows the edit", || async {
        b.client().get(&format!("/api/tickets/{id}")).await.json["title"] == "Moved"
    })
    .await;
}

/// The search ignores case beyond ASCII, on SQLite as on PostgreSQL (whose `LOWER` differ):
/// titles and searches are folded alike in Rust, as ticket alerts fold them.
async fn the_listing_searches_accented_titles_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    for title in ["ÉTÉ À PARIS", "ÖL", "Straße", "Rock Concert"] {
        app.listed(&seller, title, json!(5)).await;
    }
    let cases: [(&str, &[&str]); 9] = [
        ("été", &["ÉTÉ À PARIS"]),
        ("à paris", &["ÉTÉ À PARIS"]),
        ("Été à Paris", &["ÉTÉ À PARIS"]),
        ("öl", &["ÖL"]),
        ("ÖL", &["ÖL"]),
        ("STRAẞE", &["Straße"]),
        ("rock", &["Rock Concert"]),
        ("opéra", &[]),
        // An unaccented search is not an accented one.
        ("ete", &[]),
    ];
    for (q, want) in cases {
        assert_eq!(app.search(q).await, want, "q={q}");
    }
}

/// An edit folds the new title, and so does every other write of the ticket (a reservation
/// and its release by the event handlers).
async fn an_edited_title_is_found_by_its_new_words_and_not_its_old_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "CONCERT D'ÉTÉ", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    assert_eq!(app.search("d'été").await, ["CONCERT D'ÉTÉ"]);

    let res = app
        .as_user(&seller)
        .put(
            &format!("/api/tickets/{id}"),
            &json!({"title": "SOIRÉE D'HIVER", "price": 10}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    assert_eq!(app.search("soirée d'hiver").await, ["SOIRÉE D'HIVER"]);
    assert_eq!(app.search("été").await, Vec::<String>::new());
    assert_eq!(app.search("concert").await, Vec::<String>::new());
    // Reserved (off the listing), then released by the event handlers: found as before.
    app.reserve(&res.json, "order-1").await;
    assert_eq!(app.search("soirée").await, Vec::<String>::new());
    app.release(&ticket, "order-1").await;
    assert_eq!(app.search("SOIRÉE").await, ["SOIRÉE D'HIVER"]);
}

/// The first `n` migrations of the tickets service.
fn first_migrations(n: usize) -> bt_platform::Migrations {
    bt_test_support::first_migrations(&bt_tickets::MIGRATIONS, n)
}

async fn unfolded_titles(db: &bt_platform::Db) -> i64 {
    bt_platform::on_db!(db, |pool| sqlx::query_scalar(
        "SELECT COUNT(*) FROM tickets WHERE title_folded IS NULL"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

/// Tickets listed before titles were folded (`title_folded` NULL after migration 0003) are
/// folded when the service starts, in batches, and found by the search from then on.
async fn tickets_listed_before_titles_were_folded_are_found_once_the_service_starts(
    backend: Backend,
) {
    let test_db = TestDb::new(backend).await;
    let db = bt_platform::Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&first_migrations(2)).await.unwrap();
    // More tickets than one batch, written by the previous version.
    let earlier = bt_tickets::FOLD_BATCH + 1;
    let rows: Vec<String> = (0..earlier)
        .map(|n| {
            let title = if n == 0 {
                "FÊTE DE LA MUSIQUE"
            } else {
                "Filler"
            };
            format!("('00000000-0000-7000-8000-{n:012}', '{title}', 500, 'seller', 0, 1, 1)")
        })
        .collect();
    let insert = format!(
        "INSERT INTO tickets (id, title, price, user_id, version, created_at, updated_at) VALUES {}",
        rows.join(", ")
    );
    bt_platform::on_db!(&db, |pool| sqlx::raw_sql(&insert)
        .execute(pool)
        .await
        .map(drop))
    .unwrap();
    db.migrate(&bt_tickets::MIGRATIONS).await.unwrap();
    // Not folded yet: the search does not see them.
    assert_eq!(unfolded_titles(&db).await, earlier);
    let unseen =
        bt_tickets::store::list_on_sale(&db, Some("fête"), None, 10, bt_contract::Millis::now())
            .await
            .unwrap();
    assert!(unseen.is_empty(), "{unseen:?}");

    let app = TestApp::spawn_on(test_db).await;

    assert_eq!(unfolded_titles(&db).await, 0);
    assert_eq!(app.search("fête").await, ["FÊTE DE LA MUSIQUE"]);
    assert_eq!(app.search("de la musique").await, ["FÊTE DE LA MUSIQUE"]);
}

backend_tests!(
    the_listing_searches_accented_titles_case_insensitively,
    an_edited_title_is_found_by_its_new_words_and_not_its_old_ones,
    tickets_listed_before_titles_were_folded_are_found_once_the_service_starts,
    the_listing_is_revalidated_with_its_etag_and_changes_with_every_write,
    a_ticket_is_revalidated_with_its_etag_and_changes_with_every_write,
    an_order_placed_before_the_sellers_edit_reached_it_is_refused_not_reserved,
    a_seller_sees_all_their_tickets_in_every_state,
    creating_a_ticket_needs_a_session,
    creating_a_ticket_returns_it_and_publishes_ticket_created,
    prices_are_exact_cents_from_numbers_or_numeric_strings,
    invalid_tickets_are_refused_with_one_error_per_field,
    bodies_that_are_not_json_objects_are_refused,
    showing_an_unknown_ticket_is_404,
    the_listing_shows_tickets_on_sale_newest_first,
    the_listing_searches_titles_case_insensitively,
    the_listing_pages_with_limit_cursor_and_a_next_link,
    bad_listing_parameters_are_400,
    the_owner_updates_a_ticket_and_its_version_grows,
    updating_is_refused_to_strangers_unknown_tickets_and_bad_input,
    a_reserved_ticket_cannot_be_edited,
    order_created_reserves_and_order_cancelled_releases_the_ticket,
    a_cancellation_that_overtakes_its_order_waits_for_it,
    a_new_order_waits_until_the_previous_one_is_released,
    order_completed_gives_the_ticket_to_its_buyer_off_sale,
    event_details_are_listed_shown_and_announced,
    a_price_over_the_resale_cap_and_bad_details_are_refused_per_field,
    the_listing_hides_tickets_off_sale_and_events_that_started,
    a_buyer_relists_within_the_cap_and_the_next_buyer_owns_it,
    the_owner_uploads_the_file_and_only_the_owner_downloads_it,
    a_seller_who_sold_a_ticket_without_its_file_sends_it_to_the_buyer,
    files_that_are_not_tickets_are_refused,
    a_redelivered_order_event_changes_nothing,
);
