//! The orders API, route by route and error by error, and the orders service's event handling,
//! on SQLite (with the in-process bus) and on PostgreSQL (with NATS).

mod common;

use std::time::Duration;

use bt_contract::events::{
    CancelReason, ExpirationComplete, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus,
    PaymentCreated, PaymentRefunded, ReservationRefusal, TicketData, TicketReservationRefused,
    TicketUpdated,
};
use bt_contract::{Cents, Millis, OrderId, PaymentId, SessionKeys, UserId};
use bt_orders::domain::{Order, Reservation};
use bt_platform::db::DbOptions;
use bt_platform::on_db;
use bt_test_support::{Backend, EventProbe, TestClient, TestUser, backend_tests, publish};
use common::{TestApp, WINDOW};
use reqwest::StatusCode;
use serde_json::{Value, json};

const UNKNOWN_ID: &str = "0192f5e4-0000-7000-8000-000000000000";

fn not_authorized() -> Value {
    json!({"errors": [{"message": "Not authorized"}]})
}

fn error(message: &str) -> Value {
    json!({"errors": [{"message": message}]})
}

fn id_of(json: &Value) -> String {
    json["id"].as_str().expect("an id").to_owned()
}

/// A payment of 10.00 (the price of the tests' tickets) for an order, as payments announces it.
fn payment_for(order_id: &str) -> PaymentCreated {
    PaymentCreated {
        id: PaymentId::generate(),
        order_id: order_id.into(),
        stripe_id: "pi_test".into(),
        amount: Some(Cents::new(1000)),
    }
}

fn expiry_of(order_id: &str) -> ExpirationComplete {
    ExpirationComplete {
        order_id: order_id.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

async fn every_route_needs_a_valid_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let order = app.ordered(&TestUser::new(), &ticket.id).await;
    let order_path = format!("/api/orders/{}", id_of(&order));
    let forged = SessionKeys::new(
        b"another-key-that-is-32-bytes-long!!",
        Duration::from_secs(60),
        false,
    )
    .issue("someone", "x@test.com")
    .unwrap()
    .0;
    let clients = [
        ("no session", app.anonymous()),
        (
            "a token signed with another key",
            bt_test_support::TestClient::with_bearer(&app.base(), &forged),
        ),
        (
            "garbage token",
            bt_test_support::TestClient::with_bearer(&app.base(), "garbage"),
        ),
    ];

    for (who, client) in clients {
        let responses = [
            (
                "POST /api/orders",
                client
                    .post("/api/orders", &json!({"ticketId": ticket.id}))
                    .await,
            ),
            ("GET /api/orders", client.get("/api/orders").await),
            ("GET /api/orders/:id", client.get(&order_path).await),
            ("DELETE /api/orders/:id", client.delete(&order_path).await),
        ];
        for (route, res) in responses {
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{who}: {route}");
            assert_eq!(res.json, not_authorized(), "{who}: {route}");
        }
    }
    assert_eq!(
        app.stored_order(&id_of(&order)).await,
        ("created".to_owned(), 0),
        "nothing changed"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
}

// ---------------------------------------------------------------------------------------------
// POST /api/orders

async fn an_order_without_a_valid_ticket_id_is_refused_with_a_field_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let buyer = TestUser::new();
    let client = app.as_user(&buyer);
    let cases = [
        ("no ticketId", json!({})),
        ("null", json!({"ticketId": null})),
        ("empty", json!({"ticketId": ""})),
        ("only spaces", json!({"ticketId": "   "})),
        ("a number", json!({"ticketId": 42})),
        ("a boolean", json!({"ticketId": true})),
        ("an array", json!({"ticketId": ["abc"]})),
        ("an object", json!({"ticketId": {"id": "abc"}})),
        ("too long", json!({"ticketId": "x".repeat(101)})),
    ];
    for (case, body) in cases {
        let res = client.post("/api/orders", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{case}: {}", res.text);
        assert_eq!(
            res.json,
            json!({"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}),
            "{case}"
        );
    }
    assert_eq!(client.get("/api/orders").await.json, json!([]));
}

async fn ordering_a_ticket_the_replica_does_not_hold_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let buyer = TestUser::new();
    for id in [UNKNOWN_ID, "not-a-uuid"] {
        let res = app
            .as_user(&buyer)
            .post("/api/orders", &json!({"ticketId": id}))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}: {}", res.text);
        assert_eq!(res.json, error("Not Found"), "{id}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
}

async fn a_seller_cannot_buy_their_own_ticket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;

    let res = app
        .as_user(&seller)
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("You cannot buy your own ticket"));
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    // Anyone else may.
    app.ordered(&TestUser::new(), &ticket.id).await;
}

async fn creating_an_order_returns_201_and_the_order_with_its_ticket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 2050).await;
    let buyer = TestUser::new();

    let before = chrono::Utc::now().timestamp_millis();
    let res = app
        .as_user(&buyer)
        .post(
            "/api/orders",
            &json!({"ticketId": format!(" {} ", ticket.id)}),
        )
        .await;
    let after = chrono::Utc::now().timestamp_millis();

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let id = id_of(&res.json);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let expires_at = res.json["expiresAt"].as_str().unwrap().to_owned();
    assert_eq!(
        res.json,
        json!({
            "id": id,
            "userId": buyer.id,
            "status": "created",
            "expiresAt": expires_at,
            "version": 0,
            "ticket": {"id": ticket.id, "title": "Concert", "price": 20.5, "version": 0},
            "payment": null,
            "cancelReason": null,
        })
    );
    assert_expires_in(&expires_at, before, after, WINDOW);
    let shown = app.as_user(&buyer).get(&format!("/api/orders/{id}")).await;
    assert_eq!(shown.json, res.json, "stored as returned");
}

/// `expiresAt` is ISO-8601 UTC with milliseconds, `window` after the moment of the request.
fn assert_expires_in(expires_at: &str, before_ms: i64, after_ms: i64, window: Duration) {
    assert!(
        expires_at.len() == "2026-11-25T09:15:00.000Z".len() && expires_at.ends_with('Z'),
        "ISO-8601 UTC with milliseconds: {expires_at}"
    );
    let at = chrono::DateTime::parse_from_rfc3339(expires_at)
        .unwrap_or_else(|e| panic!("{expires_at}: {e}"))
        .timestamp_millis();
    let window = i64::try_from(window.as_millis()).unwrap();
    assert!(
        (before_ms + window..=after_ms + window).contains(&at),
        "{expires_at} is not {window} ms after the request ({before_ms}..={after_ms})"
    );
}

async fn the_payment_window_is_configurable(backend: Backend) {
    let window = Duration::from_secs(60);
    let app = TestApp::spawn_with(backend, window, &DbOptions::default()).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;

    let before = chrono::Utc::now().timestamp_millis();
    let order = app.ordered(&TestUser::new(), &ticket.id).await;
    let after = chrono::Utc::now().timestamp_millis();

    assert_expires_in(order["expiresAt"].as_str().unwrap(), before, after, window);
}

async fn creating_an_order_publishes_order_created_with_the_contract_data(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.created").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 2050).await;
    let buyer = TestUser::new();

    let order = app.ordered(&buyer, &ticket.id).await;

    let event = probe.next::<OrderCreated>(10).await;
    assert_eq!(event.kind, "order.created");
    // The event's time as the API answered it: both in the contract's format, which always
    // has milliseconds (chrono's own serialization drops `.000`, which made this test fail
    // once in a thousand runs, when the expiry fell on a whole second).
    let expires_text = order["expiresAt"].as_str().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> = expires_text.parse().unwrap();
    assert_eq!(
        serde_json::to_value(&event.data).unwrap(),
        json!({
            "id": id_of(&order),
            "version": 0,
            "status": "created",
            "userId": buyer.id,
            "expiresAt": expires_text,
            "ticket": {"id": ticket.id, "price": 20.5, "title": "Concert", "version": 0,
                "sellerId": ticket.user_id},
        })
    );
    assert_eq!(event.data.status, OrderStatus::Created);
    assert_eq!(event.data.expires_at.to_datetime(), expires_at);
    probe.assert_silent(300).await;
}

async fn a_reserved_ticket_cannot_be_ordered_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.created").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let first = TestUser::new();
    let order = app.ordered(&first, &ticket.id).await;
    probe.next::<OrderCreated>(10).await;

    let second = TestUser::new();
    for (who, buyer) in [("another buyer", &second), ("the same buyer", &first)] {
        let res = app
            .as_user(buyer)
            .post("/api/orders", &json!({"ticketId": ticket.id}))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{who}: {}", res.text);
        assert_eq!(res.json, error("Ticket is already reserved"), "{who}");
    }

    assert_eq!(
        app.as_user(&second).get("/api/orders").await.json,
        json!([])
    );
    let mine = app.as_user(&first).get("/api/orders").await.json;
    assert_eq!(mine, json!([order]));
    probe.assert_silent(300).await;
}

async fn a_ticket_is_free_to_order_again_once_its_order_is_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let first = TestUser::new();
    let order = app.ordered(&first, &ticket.id).await;
    let cancelled = app
        .as_user(&first)
        .delete(&format!("/api/orders/{}", id_of(&order)))
        .await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);

    let second = app.ordered(&TestUser::new(), &ticket.id).await;

    assert_ne!(id_of(&second), id_of(&order));
    assert_eq!(second["status"], "created");
    // The new order holds the ticket now, also against its first buyer.
    let res = app
        .as_user(&first)
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.json, error("Ticket is already reserved"));
}

/// A buyer who is too late is refused with a read: while another transaction holds the
/// database's write lock (an on-sale rush of winners), the refusal still comes, and nothing is
/// written. (Before, every late buyer queued for the writer, only to be refused by the unique
/// index; on SQLite they waited out the busy timeout.)
async fn a_buyer_too_late_is_refused_without_waiting_for_the_writer(backend: Backend) {
    // Memory trusted for a minute: the lock below may take a while to get on a busy machine,
    // and past the trust the late buyer would go to the writer this test holds up.
    let app = TestApp::spawn_trusting(
        backend,
        WINDOW,
        &DbOptions::default(),
        Duration::from_secs(60),
    )
    .await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    app.ordered(&TestUser::new(), &ticket.id).await;
    let late = app.as_user(&TestUser::new());

    let refusal = match &app.store {
        bt_platform::Db::Sqlite(pool, _) => {
            let mut writer = pool.acquire().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *writer)
                .await
                .unwrap();
            let res = late_order(&late, ticket.id.as_str()).await;
            sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();
            res
        }
        bt_platform::Db::Postgres(pool) => {
            let mut writer = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE orders IN EXCLUSIVE MODE")
                .execute(&mut *writer)
                .await
                .unwrap();
            let res = late_order(&late, ticket.id.as_str()).await;
            writer.rollback().await.unwrap();
            res
        }
    };

    assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{}", refusal.text);
    assert_eq!(refusal.json, error("Ticket is already reserved"));
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
}

/// A late buyer's order, given up after 30 s (the writer holds its lock until it returns).
async fn late_order(client: &TestClient, ticket_id: &str) -> bt_test_support::TestResponse {
    tokio::time::timeout(
        Duration::from_secs(30),
        client.post("/api/orders", &json!({"ticketId": ticket_id})),
    )
    .await
    .expect("the refusal does not wait for the database's writer")
}

async fn bodies_that_are_not_json_objects_are_refused_in_the_error_format(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let client = app.as_user(&TestUser::new());
    let good = format!(r#"{{"ticketId":"{}"}}"#, ticket.id);
    let big = format!(
        r#"{{"ticketId":"{}","pad":"{}"}}"#,
        ticket.id,
        "x".repeat(100_000)
    );
    let cases: [(Option<&str>, String, u16, &str); 6] = [
        (
            Some("text/plain"),
            good.clone(),
            415,
            "Content-Type must be application/json",
        ),
        (
            None,
            good.clone(),
            415,
            "Content-Type must be application/json",
        ),
        (
            Some("application/json"),
            r#"{"ticketId": "#.into(),
            400,
            "Request body is not valid JSON",
        ),
        (
            Some("application/json"),
            String::new(),
            400,
            "Request body must be a JSON object",
        ),
        (
            Some("application/json"),
            format!(r#"["{}"]"#, ticket.id),
            400,
            "Request body must be a JSON object",
        ),
        (
            Some("application/json"),
            big,
            413,
            "Request body is too large",
        ),
    ];
    for (content_type, body, status, message) in cases {
        let res = client
            .post_raw("/api/orders", content_type, body.clone())
            .await;
        let case = format!("{content_type:?} {:.40}", body);
        assert_eq!(res.status.as_u16(), status, "{case}: {}", res.text);
        let messages = res.messages();
        assert_eq!(messages.len(), 1, "{case}: {}", res.text);
        assert!(messages[0].starts_with(message), "{case}: {messages:?}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0);
    // The same body, well formed, is accepted.
    let res = client
        .post_raw("/api/orders", Some("application/json"), good)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
}

// ---------------------------------------------------------------------------------------------
// GET /api/orders, GET /api/orders/:id

async fn the_list_shows_only_the_callers_orders_newest_first_each_with_its_ticket(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let first = app.listed(&seller, "First", 1000).await;
    let second = app.listed(&seller, "Second", 2550).await;
    let theirs = app.listed(&seller, "Theirs", 500).await;
    let (buyer, other) = (TestUser::new(), TestUser::new());
    let older = app.ordered(&buyer, &first.id).await;
    let newer = app.ordered(&buyer, &second.id).await;
    let other_order = app.ordered(&other, &theirs.id).await;
    let cancel = app
        .as_user(&buyer)
        .delete(&format!("/api/orders/{}", id_of(&older)))
        .await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);

    let res = app.as_user(&buyer).get("/api/orders").await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let mut cancelled = older.clone();
    cancelled["status"] = json!("cancelled");
    cancelled["version"] = json!(1);
    cancelled["cancelReason"] = json!("buyer");
    assert_eq!(res.json, json!([newer, cancelled]));
    assert_eq!(res.json[0]["ticket"]["title"], "Second");
    assert_eq!(res.json[0]["ticket"]["price"], 25.5);
    let theirs_listed = app.as_user(&other).get("/api/orders").await;
    assert_eq!(theirs_listed.json, json!([other_order]));
    let nobody = app.as_user(&TestUser::new()).get("/api/orders").await;
    assert_eq!(nobody.status, StatusCode::OK);
    assert_eq!(nobody.json, json!([]));
    // The seller bought nothing: their tickets' orders are not theirs.
    assert_eq!(
        app.as_user(&seller).get("/api/orders").await.json,
        json!([])
    );
}

async fn showing_an_order_is_for_its_buyer_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let path = format!("/api/orders/{}", id_of(&order));

    let own = app.as_user(&buyer).get(&path).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.json, order);

    for (who, user) in [("a stranger", TestUser::new()), ("the seller", seller)] {
        let res = app.as_user(&user).get(&path).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{who}");
        assert_eq!(res.json, not_authorized(), "{who}");
    }
    for id in [UNKNOWN_ID, "not-a-uuid"] {
        let res = app.as_user(&buyer).get(&format!("/api/orders/{id}")).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(res.json, error("Not Found"), "{id}");
    }
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/orders/:id

async fn cancelling_an_order_returns_204_and_publishes_order_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let path = format!("/api/orders/{}", id_of(&order));

    let res = app.as_user(&buyer).delete(&path).await;

    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    assert_eq!(res.text, "");
    let shown = app.as_user(&buyer).get(&path).await.json;
    assert_eq!(
        (&shown["status"], &shown["version"]),
        (&json!("cancelled"), &json!(1))
    );
    assert_eq!(shown["ticket"], order["ticket"]);
    let event = probe.next::<OrderCancelled>(10).await;
    assert_eq!(
        serde_json::to_value(&event.data).unwrap(),
        json!({"id": id_of(&order), "version": 1, "ticket": {"id": ticket.id}, "reason": "buyer"})
    );
    assert_eq!(shown["cancelReason"], "buyer");
}

async fn cancelling_is_refused_to_others_and_for_unknown_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let path = format!("/api/orders/{}", id_of(&order));

    for (who, user) in [("a stranger", TestUser::new()), ("the seller", seller)] {
        let res = app.as_user(&user).delete(&path).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{who}");
        assert_eq!(res.json, not_authorized(), "{who}");
    }
    for id in [UNKNOWN_ID, "not-a-uuid"] {
        let res = app
            .as_user(&buyer)
            .delete(&format!("/api/orders/{id}"))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(res.json, error("Not Found"), "{id}");
    }

    assert_eq!(
        app.stored_order(&id_of(&order)).await,
        ("created".to_owned(), 0)
    );
    probe.assert_silent(300).await;
}

async fn a_completed_order_cannot_be_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);
    app.confirm(&ticket, &id).await;
    publish(&app.bus.bus, payment_for(&id)).await;
    app.wait_for_status(&id, "complete").await;

    let res = app
        .as_user(&buyer)
        .delete(&format!("/api/orders/{id}"))
        .await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Cannot cancel a completed order"));
    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
    probe.assert_silent(300).await;
}

async fn cancelling_twice_is_204_both_times_with_one_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);
    let path = format!("/api/orders/{id}");

    let first = app.as_user(&buyer).delete(&path).await;
    let second = app.as_user(&buyer).delete(&path).await;

    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text);
    assert_eq!(second.status, StatusCode::NO_CONTENT, "{}", second.text);
    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
    assert_eq!(probe.next::<OrderCancelled>(10).await.data.version, 1);
    probe.assert_silent(500).await;
}

// ---------------------------------------------------------------------------------------------
// Other routes of the service

async fn other_methods_and_paths_answer_in_the_error_format(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.as_user(&TestUser::new());
    let wrong_method = client
        .put(&format!("/api/orders/{UNKNOWN_ID}"), &json!({}))
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json, error("Method Not Allowed"));
    let missing = client.get(&format!("/api/orders/{UNKNOWN_ID}/more")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json, error("Not Found"));
}

async fn health_and_readiness_cover_the_database_and_the_bus(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.anonymous();
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let bus = match backend {
        Backend::Sqlite => "event bus (local)",
        Backend::Postgres => "event bus (NATS)",
    };
    assert_eq!(ready.json["checks"], json!(["orders database", bus]));
}

// ---------------------------------------------------------------------------------------------
// Events: the tickets replica

/// Records every committed state of the replicated tickets (insert and update) in
/// `ticket_history`, in commit order, so a test sees every version the replica went through —
/// also one that was held only for a moment. Test-only instrumentation of the service's database.
async fn record_ticket_history(app: &TestApp) {
    let statements: &[&str] = match app.store.backend() {
        Backend::Sqlite => &[
            "CREATE TABLE ticket_history (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, version BIGINT NOT NULL, title TEXT NOT NULL)",
            "CREATE TRIGGER ticket_history_insert AFTER INSERT ON tickets BEGIN INSERT INTO ticket_history (id, version, title) VALUES (NEW.id, NEW.version, NEW.title); END",
            "CREATE TRIGGER ticket_history_update AFTER UPDATE ON tickets BEGIN INSERT INTO ticket_history (id, version, title) VALUES (NEW.id, NEW.version, NEW.title); END",
        ],
        Backend::Postgres => &[
            "CREATE TABLE ticket_history (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL, version BIGINT NOT NULL, title TEXT NOT NULL)",
            "CREATE FUNCTION record_ticket_history() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ticket_history (id, version, title) VALUES (NEW.id, NEW.version, NEW.title); RETURN NEW; END $$",
            "CREATE TRIGGER ticket_history AFTER INSERT OR UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION record_ticket_history()",
        ],
    };
    for sql in statements {
        on_db!(&app.store, |pool| sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .map(drop))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn ticket_history(app: &TestApp, id: impl AsRef<str>) -> Vec<(i64, String)> {
    let id = id.as_ref();
    on_db!(&app.store, |pool| sqlx::query_as::<_, (i64, String)>(
        "SELECT version, title FROM ticket_history WHERE id = $1 ORDER BY seq"
    )
    .bind(id)
    .fetch_all(pool)
    .await)
    .unwrap()
}

fn version_of(ticket: &TicketData, version: i64, title: &str, cents: i64) -> TicketUpdated {
    TicketUpdated(TicketData {
        version,
        title: title.to_owned(),
        price: bt_contract::Cents::new(cents),
        ..ticket.clone()
    })
}

async fn ticket_updates_delivered_out_of_order_are_applied_in_version_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    record_ticket_history(&app).await;
    let ticket = app.listed(&TestUser::new(), "Version 0", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let path = format!("/api/orders/{}", id_of(&order));
    let shown_ticket = || async { app.as_user(&buyer).get(&path).await.json["ticket"].clone() };

    // Version 2 arrives first: it must wait, retried, for version 1 — never applied early.
    publish(&app.bus.bus, version_of(&ticket, 2, "Version 2", 3000)).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            app.ticket_version(&ticket.id).await,
            Some(0),
            "v2 not applied early"
        );
    }
    assert_eq!(
        shown_ticket().await,
        json!({"id": ticket.id, "title": "Version 0", "price": 10, "version": 0})
    );

    // Version 1 arrives: both apply, 1 then 2.
    publish(&app.bus.bus, version_of(&ticket, 1, "Version 1", 2000)).await;
    app.wait_for_ticket_version(&ticket.id, 2).await;

    assert_eq!(
        ticket_history(&app, &ticket.id).await,
        [
            (0, "Version 0".to_owned()),
            (1, "Version 1".to_owned()),
            (2, "Version 2".to_owned())
        ]
    );
    // The order keeps the terms it was placed on: what the buyer saw is what the buyer pays.
    assert_eq!(
        shown_ticket().await,
        json!({"id": ticket.id, "title": "Version 0", "price": 10, "version": 0})
    );

    // A stale version (a new event carrying version 1 again) is skipped.
    let stale = publish(&app.bus.bus, version_of(&ticket, 1, "Stale", 1)).await;
    app.wait_processed(&stale).await;
    assert_eq!(app.ticket_version(&ticket.id).await, Some(2));
    assert_eq!(ticket_history(&app, &ticket.id).await.len(), 3);
    assert_eq!(shown_ticket().await["title"], "Version 0");
}

async fn a_ticket_update_that_overtakes_the_ticket_creation_waits_for_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    record_ticket_history(&app).await;
    let seller = TestUser::new();
    let ticket = common::ticket_data(&seller, "Version 0", 1000);
    let buyer = app.as_user(&TestUser::new());

    // ticket.updated (version 1) arrives before ticket.created (version 0).
    publish(&app.bus.bus, version_of(&ticket, 1, "Version 1", 2000)).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            app.ticket_version(&ticket.id).await,
            None,
            "v1 not applied early"
        );
    }
    // A ticket listed a moment ago that has not reached the replica: a retryable 503 after a
    // bounded wait, never a 404.
    let started = std::time::Instant::now();
    let res = buyer
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(res.headers["retry-after"], "1");
    assert!(
        res.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("This ticket is not known here yet"),
        "{}",
        res.text
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");

    publish(
        &app.bus.bus,
        bt_contract::events::TicketCreated(ticket.clone()),
    )
    .await;
    app.wait_for_ticket_version(&ticket.id, 1).await;

    assert_eq!(
        ticket_history(&app, &ticket.id).await,
        [(0, "Version 0".to_owned()), (1, "Version 1".to_owned())]
    );
    let res = buyer
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(
        res.json["ticket"],
        json!({"id": ticket.id, "title": "Version 1", "price": 20, "version": 1})
    );
}

// ---------------------------------------------------------------------------------------------
// Events: expiry and payment

async fn expiration_cancels_a_created_order_and_publishes_order_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);

    publish(&app.bus.bus, expiry_of(&id)).await;

    let event = probe.next::<OrderCancelled>(10).await;
    assert_eq!(
        serde_json::to_value(&event.data).unwrap(),
        json!({"id": id, "version": 1, "ticket": {"id": ticket.id}, "reason": "expired"})
    );
    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
    let shown = app.as_user(&buyer).get(&format!("/api/orders/{id}")).await;
    assert_eq!(shown.json["status"], "cancelled");
    assert_eq!(shown.json["cancelReason"], "expired");
    // The ticket is free again.
    app.ordered(&TestUser::new(), &ticket.id).await;
}

async fn expiration_leaves_a_completed_order_complete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let order = app.ordered(&TestUser::new(), &ticket.id).await;
    let id = id_of(&order);
    app.confirm(&ticket, &id).await;
    publish(&app.bus.bus, payment_for(&id)).await;
    app.wait_for_status(&id, "complete").await;

    let expiry = publish(&app.bus.bus, expiry_of(&id)).await;
    app.wait_processed(&expiry).await;

    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
    probe.assert_silent(300).await;
}

async fn a_sold_ticket_is_off_sale_until_its_buyer_lists_it_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);
    app.confirm(&ticket, &id).await;
    publish(&app.bus.bus, payment_for(&id)).await;
    app.wait_for_status(&id, "complete").await;
    let third = TestUser::new();

    // Sold as soon as the payment completes the order, before the tickets service's
    // `ticket.updated` says so: its new owner and everyone else are refused at once.
    for (who, refusal) in [
        (&buyer, "You cannot buy your own ticket"),
        (&third, "This ticket is not for sale"),
    ] {
        let res = app
            .as_user(who)
            .post("/api/orders", &json!({"ticketId": ticket.id}))
            .await;
        assert_eq!(res.json, error(refusal));
    }
    // The tickets service gives it to the buyer, off sale.
    let owned = app.owned_by(&ticket, &buyer, None).await;
    let res = app
        .as_user(&third)
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.json, error("This ticket is not for sale"));
    // Its new owner cannot buy it; its old one can, once it is listed again.
    let relisted = app.owned_by(&owned, &buyer, Some(1150)).await;
    let res = app
        .as_user(&buyer)
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.json, error("You cannot buy your own ticket"));
    let again = app.ordered(&seller, &ticket.id).await;
    assert_eq!(again["ticket"]["price"], json!(11.5));
    assert_ne!(id_of(&again), id);
    let res = app
        .as_user(&third)
        .post("/api/orders", &json!({"ticketId": relisted.id}))
        .await;
    assert_eq!(res.json, error("Ticket is already reserved"));
}

async fn a_ticket_whose_event_started_cannot_be_ordered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    ticket.version += 1;
    ticket.starts_at = Some(bt_contract::Millis::now().plus(std::time::Duration::from_millis(400)));
    publish(&app.bus.bus, TicketUpdated(ticket.clone())).await;
    app.wait_for_ticket_version(&ticket.id, ticket.version)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let res = app
        .as_user(&TestUser::new())
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(res.status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(res.json, error("This event has already started"));
}

async fn expiration_of_an_order_the_buyer_cancelled_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);
    app.as_user(&buyer)
        .delete(&format!("/api/orders/{id}"))
        .await;
    assert_eq!(probe.next::<OrderCancelled>(10).await.data.version, 1);

    let expiry = publish(&app.bus.bus, expiry_of(&id)).await;
    app.wait_processed(&expiry).await;

    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
    probe.assert_silent(300).await;
}

async fn payment_completes_the_order_and_publishes_order_completed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.completed").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let order = app.ordered(&buyer, &ticket.id).await;
    let id = id_of(&order);
    app.confirm(&ticket, &id).await;

    let payment = payment_for(&id);
    publish(&app.bus.bus, payment.clone()).await;

    let event = probe.next::<OrderCompleted>(10).await;
    assert_eq!(event.kind, "order.completed");
    assert_eq!(
        serde_json::to_value(&event.data).unwrap(),
        json!({"id": id, "version": 1, "ticket": {"id": ticket.id}, "paymentId": payment.id,
            "userId": buyer.id})
    );
    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
    let shown = app.as_user(&buyer).get(&format!("/api/orders/{id}")).await;
    assert_eq!(
        (&shown.json["status"], &shown.json["version"]),
        (&json!("complete"), &json!(1))
    );
    assert_eq!(
        shown.json["payment"],
        json!({"id": payment.id, "amount": 10, "status": "succeeded", "refunded": 0})
    );
}

async fn a_redelivered_or_repeated_payment_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.completed").await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;
    let order = app.ordered(&TestUser::new(), &ticket.id).await;
    let id = id_of(&order);
    app.confirm(&ticket, &id).await;
    let payment = publish(&app.bus.bus, payment_for(&id)).await;
    assert_eq!(probe.next::<OrderCompleted>(10).await.data.id, id.as_str());

    // The same event again (same event id, a new bus message), then a second payment event
    // for the same order; then, as a marker, the payment of another order. The consumer takes
    // a subject's events one after the other, so once the marker is applied the two before it
    // were handled.
    app.redeliver(&payment).await;
    let repeated = publish(&app.bus.bus, payment_for(&id)).await;
    let other_ticket = app.listed(&seller, "Other", 1000).await;
    let other = id_of(&app.ordered(&TestUser::new(), &other_ticket.id).await);
    app.confirm(&other_ticket, &other).await;
    publish(&app.bus.bus, payment_for(&other)).await;
    let marker = probe.next::<OrderCompleted>(10).await;

    assert_eq!(
        marker.data.id,
        other.as_str(),
        "no second order.completed for {id}"
    );
    assert!(app.processed(&repeated).await);
    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
    probe.assert_silent(300).await;
}

async fn a_payment_for_a_cancelled_order_leaves_it_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.completed").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let id = id_of(&app.ordered(&buyer, &ticket.id).await);
    app.as_user(&buyer)
        .delete(&format!("/api/orders/{id}"))
        .await;

    let payment = publish(&app.bus.bus, payment_for(&id)).await;
    app.wait_processed(&payment).await;

    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
    probe.assert_silent(300).await;
}

/// An order of a 10.00 ticket, confirmed and completed by its payment (`completed` sees its
/// `order.completed`): the buyer, the order's id and the payment.
async fn paid_order(
    app: &TestApp,
    completed: &mut EventProbe,
) -> (TestUser, String, PaymentCreated) {
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let id = id_of(&app.ordered(&buyer, &ticket.id).await);
    app.confirm(&ticket, &id).await;
    let payment = payment_for(&id);
    publish(&app.bus.bus, payment.clone()).await;
    completed.next::<OrderCompleted>(10).await;
    (buyer, id, payment)
}

/// Order `id` as its buyer is shown it.
async fn shown_to(app: &TestApp, buyer: &TestUser, id: &str) -> Value {
    app.as_user(buyer)
        .get(&format!("/api/orders/{id}"))
        .await
        .json
}

/// `refunded` of a 10.00 payment given back so far, as payments announces it.
fn refund_of(payment: &PaymentCreated, refunded: i64) -> PaymentRefunded {
    PaymentRefunded {
        id: payment.id.clone(),
        order_id: payment.order_id.clone(),
        user_id: "buyer".into(),
        title: Some("Concert".into()),
        price: Cents::new(1000),
        refunded: Cents::new(refunded),
        amount: Cents::new(refunded),
        seller_id: None,
        seller_amount: None,
    }
}

async fn the_order_shows_money_given_back_in_part_then_in_full(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut completed = EventProbe::new(&app.bus.bus, "order.completed").await;
    let mut cancelled = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let (buyer, id, payment) = paid_order(&app, &mut completed).await;

    // 2.50 back, then an older total (1.00) delivered late, then 4.00 in all.
    for (total, expected) in [(250, json!(2.5)), (100, json!(2.5)), (400, json!(4))] {
        let refund = publish(&app.bus.bus, refund_of(&payment, total)).await;
        app.wait_processed(&refund).await;
        let order = shown_to(&app, &buyer, &id).await;
        assert_eq!(
            order["payment"],
            json!({"id": payment.id, "amount": 10, "status": "succeeded", "refunded": expected}),
            "after {total}"
        );
        assert_eq!(
            (&order["status"], &order["version"]),
            (&json!("complete"), &json!(1)),
            "the order stays complete, at its version"
        );
    }
    // All of it.
    let refund = publish(&app.bus.bus, refund_of(&payment, 1000)).await;
    app.wait_processed(&refund).await;
    assert_eq!(
        shown_to(&app, &buyer, &id).await["payment"],
        json!({"id": payment.id, "amount": 10, "status": "refunded", "refunded": 10})
    );
    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
    // A refund is not an order event.
    completed.assert_silent(300).await;
    cancelled.assert_silent(0).await;
}

async fn a_late_payment_given_back_shows_on_the_cancelled_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let id = id_of(&app.ordered(&buyer, &ticket.id).await);
    app.as_user(&buyer)
        .delete(&format!("/api/orders/{id}"))
        .await;

    // A charge that landed after the order ended, which the order never heard of (the
    // payments service took it and gave it back).
    let late = payment_for(&id);
    let refund = publish(&app.bus.bus, refund_of(&late, 1000)).await;
    app.wait_processed(&refund).await;

    let order = shown_to(&app, &buyer, &id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(
        order["payment"],
        json!({"id": late.id, "amount": 10, "status": "refunded", "refunded": 10})
    );
    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
}

async fn a_second_charge_given_back_does_not_replace_the_orders_payment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut completed = EventProbe::new(&app.bus.bus, "order.completed").await;
    let (buyer, id, payment) = paid_order(&app, &mut completed).await;

    let second = payment_for(&id);
    let refund = publish(&app.bus.bus, refund_of(&second, 1000)).await;
    app.wait_processed(&refund).await;

    let order = shown_to(&app, &buyer, &id).await;
    assert_eq!(
        order["payment"],
        json!({"id": payment.id, "amount": 10, "status": "succeeded", "refunded": 0})
    );
}

// ---------------------------------------------------------------------------------------------
// Races: what the buyer sees is what the buyer pays, and nothing is 404 for being fresh

async fn a_ticket_listed_a_moment_ago_can_be_ordered_as_soon_as_it_arrives(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ticket = common::ticket_data(&TestUser::new(), "Fresh", 1000);
    // The buyer orders before the tickets service's event has reached the replica.
    let bus = app.bus.bus.clone();
    let listing = ticket.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&bus, bt_contract::events::TicketCreated(listing)).await;
    });

    let res = app
        .as_user(&TestUser::new())
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(res.json["ticket"]["title"], "Fresh");
    late.await.unwrap();
}

async fn a_payment_before_the_reservation_is_confirmed_completes_the_order_at_confirmation(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.completed").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let buyer = TestUser::new();
    let id = id_of(&app.ordered(&buyer, &ticket.id).await);

    let payment = payment_for(&id);
    let paid = publish(&app.bus.bus, payment.clone()).await;
    app.wait_processed(&paid).await;
    probe.assert_silent(300).await;
    let waiting = app
        .as_user(&buyer)
        .get(&format!("/api/orders/{id}"))
        .await
        .json;
    assert_eq!(
        waiting["status"], "created",
        "not complete before the confirmation"
    );
    assert_eq!(
        waiting["payment"],
        json!({"id": payment.id, "amount": 10, "status": "authorized", "refunded": 0})
    );

    app.confirm(&ticket, &id).await;

    let completed = probe.next::<OrderCompleted>(10).await;
    assert_eq!(completed.data.payment_id, Some(payment.id));
    assert_eq!(app.stored_order(&id).await, ("complete".to_owned(), 1));
}

async fn a_refused_reservation_cancels_the_order_saying_why_and_its_waiting_payment_is_void(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let mut cancelled = EventProbe::new(&app.bus.bus, "order.cancelled").await;
    let mut completed = EventProbe::new(&app.bus.bus, "order.completed").await;
    let ticket = app.listed(&TestUser::new(), "Row A", 1000).await;
    let buyer = TestUser::new();
    let id = id_of(&app.ordered(&buyer, &ticket.id).await);
    let paid = publish(&app.bus.bus, payment_for(&id)).await;
    app.wait_processed(&paid).await;

    // The seller's edit reached the tickets service first: it refuses the reservation.
    publish(
        &app.bus.bus,
        TicketReservationRefused {
            order_id: id.as_str().into(),
            ticket_id: ticket.id.clone(),
            reason: ReservationRefusal::TicketChanged,
        },
    )
    .await;

    let event = cancelled.next::<OrderCancelled>(10).await;
    assert_eq!(event.data.reason, Some(CancelReason::TicketChanged));
    let shown = app
        .as_user(&buyer)
        .get(&format!("/api/orders/{id}"))
        .await
        .json;
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["cancelReason"], "ticket_changed");
    assert_eq!(shown["payment"]["status"], "voided");
    // A confirmation that comes after it changes nothing; the ticket is free again.
    app.confirm_without_waiting(&ticket, &id).await;
    completed.assert_silent(500).await;
    assert_eq!(app.stored_order(&id).await, ("cancelled".to_owned(), 1));
    app.ordered(&TestUser::new(), &ticket.id).await;
}

async fn a_payment_of_another_amount_never_completes_the_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "order.completed").await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let id = id_of(&app.ordered(&TestUser::new(), &ticket.id).await);
    app.confirm(&ticket, &id).await;

    let mut payment = payment_for(&id);
    payment.amount = Some(Cents::new(99));
    let paid = publish(&app.bus.bus, payment).await;
    app.wait_processed(&paid).await;

    probe.assert_silent(300).await;
    assert_eq!(app.stored_order(&id).await, ("created".to_owned(), 0));
}

async fn a_ticket_taken_on_another_replica_is_refused_by_the_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (other, _runtime) = app.replica().await;
    let x = app.listed(&TestUser::new(), "X", 1000).await;
    let y = app.listed(&TestUser::new(), "Y", 1000).await;
    let first = TestUser::new()
        .client(&other.url(""))
        .post("/api/orders", &json!({"ticketId": x.id}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    // This replica never saw that order: its writer finds the ticket taken, and the order for
    // the other ticket written with it is stored.
    let (late, buyer) = (TestUser::new(), TestUser::new());
    let late = app.as_user(&late);
    let buyer = app.as_user(&buyer);
    let (for_x, for_y) = (json!({"ticketId": x.id}), json!({"ticketId": y.id}));
    let (lost, won) = tokio::join!(
        late.post("/api/orders", &for_x),
        buyer.post("/api/orders", &for_y),
    );
    assert_eq!(lost.status, StatusCode::BAD_REQUEST, "{}", lost.text);
    assert_eq!(lost.json, error("Ticket is already reserved"));
    assert_eq!(won.status, StatusCode::CREATED, "{}", won.text);
    // Now remembered: refused again without a write.
    let again = late.post("/api/orders", &json!({"ticketId": x.id})).await;
    assert_eq!(again.json, error("Ticket is already reserved"));
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 2);
    // One `order.created` staged per order stored, none for the lost one.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE subject = 'order.created'")
            .await,
        2
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM outbox o JOIN orders r ON o.payload LIKE '%' || r.id || '%' \
             WHERE o.subject = 'order.created'"
        )
        .await,
        2
    );
}

/// Another replica's order of `ticket` (from a buyer this replica has never seen), not yet
/// written: for the tests where another transaction holds it.
async fn their_order(app: &TestApp, ticket: &TicketData) -> Order {
    let listed = bt_orders::store::find_ticket(&app.store, &ticket.id)
        .await
        .unwrap()
        .expect("the replica holds the ticket");
    Order::place(
        OrderId::generate(),
        UserId::new(TestUser::new().id),
        &listed,
        Millis::now(),
        WINDOW,
    )
    .unwrap()
    .0
}

/// The answer to `buyer`'s order of `ticket`, failing as soon as the order waits for another
/// transaction of the database (PostgreSQL's `pg_locks`: a lock not granted), before it ends.
async fn ordered_without_waiting(
    app: &TestApp,
    buyer: &TestClient,
    ticket: &TicketData,
) -> bt_test_support::TestResponse {
    let for_ticket = json!({"ticketId": ticket.id});
    let purchase = buyer.post("/api/orders", &for_ticket);
    tokio::pin!(purchase);
    loop {
        tokio::select! {
            answer = &mut purchase => return answer,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let waiting = app
                    .count(
                        "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                         WHERE NOT l.granted AND a.datname = current_database()",
                    )
                    .await;
                assert_eq!(waiting, 0, "the buyer's order waits for another transaction");
            }
        }
    }
}

/// `buyer`, refused `ticket` a moment ago while it looked taken, gets it on a retry (once this
/// replica stops trusting its memory, `reservations::TRUST`), and it is the ticket's one open
/// order.
async fn gets_it_on_a_retry(app: &TestApp, buyer: &TestClient, ticket: &TicketData) {
    bt_test_support::eventually(10, "the buyer gets the ticket on a retry", || async {
        buyer
            .post("/api/orders", &json!({"ticketId": ticket.id}))
            .await
            .status
            == StatusCode::CREATED
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'created'")
            .await,
        1
    );
}

/// Another replica applied the payment that sold a ticket (its replica row says so, from that
/// commit on), while this replica still holds the copy it read when the ticket was on sale (in
/// `serve` a copy is trusted for at most `TRUST`). The writer's statement reads the row: the
/// order is refused, instead of being placed and then cancelled as "not for sale".
#[tokio::test]
async fn an_order_on_a_copy_of_a_ticket_sold_through_another_replica_is_refused_by_the_database() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    // This replica reads the ticket on sale and keeps its copy: an order, cancelled here.
    let first = TestUser::new();
    let id = id_of(&app.ordered(&first, &ticket.id).await);
    let cancelled = app
        .as_user(&first)
        .delete(&format!("/api/orders/{id}"))
        .await;
    assert_eq!(
        cancelled.status,
        StatusCode::NO_CONTENT,
        "{}",
        cancelled.text
    );
    // Another replica completes an order for it.
    let mut elsewhere = app.store.begin().await.unwrap();
    bt_orders::store::sell_ticket_in(&mut elsewhere, &ticket.id, &UserId::new("its-buyer"))
        .await
        .unwrap();
    elsewhere.commit().await.unwrap();

    let res = app
        .as_user(&TestUser::new())
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Ticket is already reserved"));
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1);
}

/// PostgreSQL only: two replicas share its database there (`serve`). On SQLite one process is the
/// only writer (`up`), so no other replica's transaction can be open.
///
/// Another replica's group writer has inserted an order for the ticket and not yet committed.
/// Inserting an order for the same ticket would wait on the unique index until that
/// transaction ends, holding up every buyer of this replica's batch; in a rush that is the
/// losers waiting on the database. The buyer is refused at once instead, and a transaction
/// that fails after all only makes them retry.
#[tokio::test]
async fn a_ticket_another_replica_is_writing_is_refused_without_waiting_for_its_transaction() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let theirs = their_order(&app, &ticket).await;
    let mut other_writer = app.store.begin().await.unwrap();
    let stored = bt_orders::store::insert_orders_if_free(&mut other_writer, &[&theirs])
        .await
        .unwrap();
    assert_eq!(stored, vec![theirs.id.clone()]);

    // Act: a buyer of the same ticket on this replica, while that transaction is open.
    let buyer = app.as_user(&TestUser::new());
    let refused = ordered_without_waiting(&app, &buyer, &ticket).await;

    // Assert: refused as a buyer too late is, with the other transaction still open.
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.json, error("Ticket is already reserved"));
    // That transaction fails after all: the ticket is free, and the buyer gets it on a retry.
    other_writer.rollback().await.unwrap();
    gets_it_on_a_retry(&app, &buyer, &ticket).await;
}

/// PostgreSQL only, as above. The ticket has an open order, written by another replica, and a
/// transaction is changing that order (as the consumer does when the reservation is
/// confirmed, in a rush's cascade of events). An insert for the ticket would wait on the unique
/// index for that change to end; the buyer is refused at once instead.
#[tokio::test]
async fn a_ticket_whose_open_order_is_being_changed_is_refused_without_waiting() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let mut theirs = their_order(&app, &ticket).await;
    let mut other_writer = app.store.begin().await.unwrap();
    bt_orders::store::insert_orders_if_free(&mut other_writer, &[&theirs])
        .await
        .unwrap();
    other_writer.commit().await.unwrap();
    let mut change = app.store.begin().await.unwrap();
    bt_orders::store::lock_order(&mut change, &theirs.id)
        .await
        .unwrap()
        .expect("their order is stored");
    theirs.reservation = Reservation::Confirmed;
    assert!(
        bt_orders::store::save_order(&mut change, &theirs, theirs.version)
            .await
            .unwrap()
    );

    // Act: a buyer of the same ticket on this replica, while that change is not committed.
    let buyer = app.as_user(&TestUser::new());
    let refused = ordered_without_waiting(&app, &buyer, &ticket).await;

    // Assert
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.json, error("Ticket is already reserved"));
    change.commit().await.unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'created'")
            .await,
        1
    );
}

async fn a_ticket_cancelled_on_another_replica_can_be_ordered_again_after_a_moment(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (other, _runtime) = app.replica().await;
    let ticket = app.listed(&TestUser::new(), "Concert", 1000).await;
    let holder = TestUser::new();
    let order = holder
        .client(&other.url(""))
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
    let buyer = app.as_user(&TestUser::new());
    let refused = buyer
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(refused.json, error("Ticket is already reserved"));

    // Cancelled on the other replica: this one remembers the ticket as taken for at most
    // `reservations::TRUST`, so the buyer gets it on a retry.
    let cancelled = holder
        .client(&other.url(""))
        .delete(&format!("/api/orders/{}", id_of(&order.json)))
        .await;
    assert_eq!(
        cancelled.status,
        StatusCode::NO_CONTENT,
        "{}",
        cancelled.text
    );
    gets_it_on_a_retry(&app, &buyer, &ticket).await;
}

async fn an_edit_of_the_ticket_reaches_the_next_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let ticket = app.listed(&seller, "Concert", 1000).await;
    // The seller's own attempt reads the ticket (and keeps it in memory).
    let own = app
        .as_user(&seller)
        .post("/api/orders", &json!({"ticketId": ticket.id}))
        .await;
    assert_eq!(own.json, error("You cannot buy your own ticket"));

    let edited = TicketData {
        version: 1,
        price: Cents::new(2550),
        title: "Concert, row 1".into(),
        ..ticket.clone()
    };
    publish(&app.bus.bus, TicketUpdated(edited)).await;
    app.wait_for_ticket_version(&ticket.id, 1).await;
    let order = app.ordered(&TestUser::new(), &ticket.id).await;
    assert_eq!(order["ticket"]["price"], json!(25.5));
    assert_eq!(order["ticket"]["title"], "Concert, row 1");
}

/// The group writer stages each order's `order.created` with the request id of the request
/// that placed it, whichever batch it is written in.
async fn each_order_created_carries_the_request_id_of_its_purchase(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = TestUser::new();
    let tickets = [
        app.listed(&seller, "First", 1000).await,
        app.listed(&seller, "Second", 2000).await,
        app.listed(&seller, "Third", 3000).await,
    ];
    let purchases = tickets.iter().enumerate().map(|(n, ticket)| {
        let buyer = app.as_user(&TestUser::new());
        let id = ticket.id.clone();
        async move {
            let res = buyer
                .send(
                    buyer
                        .http
                        .post(buyer.url("/api/orders"))
                        .header("x-request-id", format!("purchase-{n}"))
                        .json(&json!({ "ticketId": id })),
                )
                .await;
            assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
            res.json["id"].as_str().unwrap().to_owned()
        }
    });
    let placed = futures::future::join_all(purchases).await;
    for (n, order_id) in placed.iter().enumerate() {
        let staged = app
            .count(&format!(
                "SELECT COUNT(*) FROM outbox WHERE subject = 'order.created' \
                 AND request_id = 'purchase-{n}' AND payload LIKE '%{order_id}%'"
            ))
            .await;
        assert_eq!(staged, 1, "order {order_id} of purchase-{n}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE subject = 'order.created'")
            .await,
        3
    );
}

backend_tests!(
    each_order_created_carries_the_request_id_of_its_purchase,
    a_buyer_too_late_is_refused_without_waiting_for_the_writer,
    a_ticket_taken_on_another_replica_is_refused_by_the_database,
    a_ticket_cancelled_on_another_replica_can_be_ordered_again_after_a_moment,
    an_edit_of_the_ticket_reaches_the_next_order,
    a_ticket_listed_a_moment_ago_can_be_ordered_as_soon_as_it_arrives,
    a_payment_before_the_reservation_is_confirmed_completes_the_order_at_confirmation,
    a_refused_reservation_cancels_the_order_saying_why_and_its_waiting_payment_is_void,
    a_payment_of_another_amount_never_completes_the_order,
    every_route_needs_a_valid_session,
    an_order_without_a_valid_ticket_id_is_refused_with_a_field_error,
    ordering_a_ticket_the_replica_does_not_hold_is_404,
    a_seller_cannot_buy_their_own_ticket,
    creating_an_order_returns_201_and_the_order_with_its_ticket,
    the_payment_window_is_configurable,
    creating_an_order_publishes_order_created_with_the_contract_data,
    a_reserved_ticket_cannot_be_ordered_again,
    a_ticket_is_free_to_order_again_once_its_order_is_cancelled,
    bodies_that_are_not_json_objects_are_refused_in_the_error_format,
    the_list_shows_only_the_callers_orders_newest_first_each_with_its_ticket,
    showing_an_order_is_for_its_buyer_only,
    cancelling_an_order_returns_204_and_publishes_order_cancelled,
    cancelling_is_refused_to_others_and_for_unknown_orders,
    a_completed_order_cannot_be_cancelled,
    cancelling_twice_is_204_both_times_with_one_event,
    other_methods_and_paths_answer_in_the_error_format,
    health_and_readiness_cover_the_database_and_the_bus,
    ticket_updates_delivered_out_of_order_are_applied_in_version_order,
    a_ticket_update_that_overtakes_the_ticket_creation_waits_for_it,
    expiration_cancels_a_created_order_and_publishes_order_cancelled,
    expiration_leaves_a_completed_order_complete,
    a_sold_ticket_is_off_sale_until_its_buyer_lists_it_again,
    a_ticket_whose_event_started_cannot_be_ordered,
    expiration_of_an_order_the_buyer_cancelled_changes_nothing,
    payment_completes_the_order_and_publishes_order_completed,
    a_redelivered_or_repeated_payment_changes_nothing,
    a_payment_for_a_cancelled_order_leaves_it_cancelled,
    the_order_shows_money_given_back_in_part_then_in_full,
    a_late_payment_given_back_shows_on_the_cancelled_order,
    a_second_charge_given_back_does_not_replace_the_orders_payment,
);
