//! The notifications service against real databases, buses and a real SMTP server: each
//! behaviour on SQLite with the in-process bus and on PostgreSQL with NATS JetStream.

use std::time::Duration;

use bt_contract::events::{
    CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    PaymentDeclined, PaymentRefunded, SaleCredited, TicketCreated, TicketData, TicketRef,
    TicketUpdated, UserCreated,
};
use bt_contract::resources::{Alert, NotificationKind, NotificationList};
use bt_contract::{Cents, Millis, OrderId, TicketId, UserId};
use bt_notifications::domain::EmailStatus;
use bt_notifications::store::OutgoingEmail;
use bt_notifications::{Limits, Mailer, Settings};
use bt_platform::db::DbOptions;
use bt_platform::{Db, Runtime};
use bt_test_support::smtp::{ReceivedMessage, SmtpServer};
use bt_test_support::{
    Backend, TestBus, TestClient, TestDb, TestServer, TestUser, backend_tests, bus_for, eventually,
    publish, test_sessions,
};
use reqwest::StatusCode;
use serde_json::json;

const SITE: &str = "https://buyticket.test";
const MAIL_WAIT: Duration = Duration::from_secs(20);

struct TestApp {
    server: TestServer,
    bus: TestBus,
    store: Db,
    smtp: SmtpServer,
    _runtime: Runtime,
    db: TestDb,
}

impl TestApp {
    async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Limits::default()).await
    }

    async fn spawn_with(backend: Backend, limits: Limits) -> Self {
        Self::spawn_with_hold(backend, limits, Duration::ZERO).await
    }

    async fn spawn_with_hold(backend: Backend, limits: Limits, alert_hold: Duration) -> Self {
        let smtp = SmtpServer::start();
        let db = TestDb::new(backend).await;
        let bus = TestBus::new(bus_for(backend)).await;
        let runtime = Runtime::new(bus.bus.clone());
        let settings = Settings {
            sessions: test_sessions(),
            mailer: Mailer::smtp(&smtp.url(), "BuyTicket <no-reply@buyticket.test>").unwrap(),
            public_url: format!("{SITE}/"),
            currency: "usd".into(),
            limits,
            alert_hold,
        };
        let service = bt_notifications::service(&db.url, &DbOptions::default(), settings, &runtime)
            .await
            .expect("notifications service starts");
        let server = TestServer::spawn(bt_platform::http::app(vec![service])).await;
        let store = Db::connect(&db.url, &DbOptions::default())
            .await
            .expect("second database handle");
        Self {
            server,
            bus,
            store,
            smtp,
            _runtime: runtime,
            db,
        }
    }

    /// Another replica of the service on the same database and bus (its consumers share the
    /// first one's durable consumers; both email workers send from the one outbox).
    async fn replica(&self) -> (Runtime, bt_platform::Service) {
        let runtime = Runtime::new(self.bus.bus.clone());
        let settings = Settings {
            sessions: test_sessions(),
            mailer: Mailer::smtp(&self.smtp.url(), "BuyTicket <no-reply@buyticket.test>").unwrap(),
            public_url: SITE.into(),
            currency: "usd".into(),
            limits: Limits::default(),
            alert_hold: Duration::ZERO,
        };
        let service =
            bt_notifications::service(&self.db.url, &DbOptions::default(), settings, &runtime)
                .await
                .expect("a second replica starts");
        (runtime, service)
    }

    fn as_user(&self, user: &TestUser) -> TestClient {
        user.client(&self.server.url(""))
    }

    /// A user auth has announced (`user.created`).
    async fn user(&self) -> TestUser {
        let user = TestUser::new();
        publish(
            &self.bus.bus,
            UserCreated {
                id: UserId::new(&user.id),
                email: user.email.clone(),
            },
        )
        .await;
        // ... and that this service has heard of: an email to an address it does not know yet
        // waits for it (`an_email_waits_for_its_recipients_address`), which would reorder the
        // mail of tests that read it in order.
        let id = user.id.clone();
        eventually(10, "the service knows the user's address", || async {
            let known: i64 = bt_platform::on_db!(&self.store, |pool| sqlx::query_scalar(
                "SELECT count(*) FROM users WHERE id = $1"
            )
            .bind(&id)
            .fetch_one(pool)
            .await)
            .unwrap();
            known == 1
        })
        .await;
        user
    }

    async fn alert(&self, user: &TestUser, body: serde_json::Value) -> Alert {
        let res = self.as_user(user).post("/api/alerts", &body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        serde_json::from_value(res.json).expect("an alert")
    }

    async fn notifications(&self, user: &TestUser) -> NotificationList {
        let res = self.as_user(user).get("/api/notifications").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        serde_json::from_value(res.json).expect("a notification list")
    }

    /// Waits until `user` has `count` notifications and returns them.
    async fn wait_notified(&self, user: &TestUser, count: usize) -> NotificationList {
        eventually(
            15,
            &format!("{} has {count} notifications", user.email),
            || async { self.notifications(user).await.notifications.len() >= count },
        )
        .await;
        self.notifications(user).await
    }

    /// The emails received so far to `user`.
    fn mail_to(&self, user: &TestUser) -> Vec<ReceivedMessage> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|m| m.rcpt_tos.contains(&user.email))
            .collect()
    }
}

fn ticket(seller: &TestUser, title: &str, cents: i64) -> TicketData {
    TicketData {
        id: TicketId::generate(),
        version: 0,
        title: title.into(),
        price: Cents::new(cents),
        user_id: UserId::new(&seller.id),
        order_id: None,
        venue: None,
        starts_at: None,
        face_value: None,
        for_sale: true,
    }
}

fn order_created(buyer: &TestUser, seller: &TestUser, ticket: &TicketData) -> OrderCreated {
    OrderCreated {
        id: OrderId::generate(),
        version: 0,
        status: OrderStatus::Created,
        user_id: UserId::new(&buyer.id),
        expires_at: Millis::now().plus(Duration::from_secs(900)),
        ticket: OrderTicket {
            id: ticket.id.clone(),
            price: ticket.price,
            title: Some(ticket.title.clone()),
            version: Some(ticket.version),
            seller_id: Some(UserId::new(&seller.id)),
            starts_at: None,
        },
    }
}

async fn alerts_are_set_listed_and_deleted_by_their_owner_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let fan = app.user().await;
    let other = app.user().await;
    let first = app
        .alert(&fan, json!({"q": "  Opera ", "maxPrice": 40}))
        .await;
    assert_eq!(first.q, "Opera", "trimmed");
    assert_eq!(first.max_price, Some(Cents::new(4000)));
    let second = app
        .alert(&fan, json!({"q": "jazz", "maxPrice": null}))
        .await;
    assert_eq!(second.max_price, None);
    let third = app
        .alert(&fan, json!({"q": "opera", "maxPrice": "35.50"}))
        .await;
    assert_eq!(third.max_price, Some(Cents::new(3550)));

    let res = app.as_user(&fan).get("/api/alerts").await;
    assert_eq!(res.status, StatusCode::OK);
    let listed: Vec<Alert> = serde_json::from_value(res.json).unwrap();
    assert_eq!(
        listed.iter().map(|a| &a.id).collect::<Vec<_>>(),
        [&third.id, &second.id, &first.id],
        "newest first"
    );
    let res = app.as_user(&other).get("/api/alerts").await;
    assert_eq!(res.json, json!([]));

    let path = format!("/api/alerts/{}", first.id.as_str());
    assert_eq!(
        app.as_user(&other).delete(&path).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.server.client().delete(&path).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.as_user(&fan).delete(&path).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.as_user(&fan).delete(&path).await.status,
        StatusCode::NOT_FOUND
    );
    let res = app.as_user(&fan).get("/api/alerts").await;
    assert_eq!(res.json.as_array().unwrap().len(), 2);
    assert_eq!(
        app.server.client().get("/api/alerts").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn alerts_are_validated_and_limited_per_user(backend: Backend) {
    let limits = Limits {
        alerts_per_user: 2,
        ..Limits::default()
    };
    let app = TestApp::spawn_with(backend, limits).await;
    let fan = app.user().await;
    let client = app.as_user(&fan);
    let cases = [
        (json!({}), "q", "q must be provided"),
        (json!({"q": "   "}), "q", "q must be provided"),
        (json!({"q": 5}), "q", "q must be text"),
        (
            json!({"q": "x".repeat(201)}),
            "q",
            "q must be at most 200 characters",
        ),
        (
            json!({"q": "a\u{7}b"}),
            "q",
            "q must not contain control characters",
        ),
        (
            json!({"q": "opera", "maxPrice": 0}),
            "maxPrice",
            "maxPrice must be greater than 0",
        ),
        (
            json!({"q": "opera", "maxPrice": "abc"}),
            "maxPrice",
            "maxPrice must be a number, e.g. 40 or 39.50",
        ),
        (
            json!({"q": "opera", "maxPrice": 1.005}),
            "maxPrice",
            "maxPrice must have at most 2 decimal places",
        ),
    ];
    for (body, field, message) in cases {
        let res = client.post("/api/alerts", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
        assert_eq!(
            res.field_errors(),
            vec![(field.to_owned(), message.to_owned())],
            "{body}"
        );
    }
    let res = client
        .post_raw("/api/alerts", Some("application/json"), "[1]")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    app.alert(&fan, json!({"q": "opera"})).await;
    let res = client.post("/api/alerts", &json!({"q": "OPERA "})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.messages(),
        ["You already have an alert for this search"]
    );
    app.alert(&fan, json!({"q": "opera", "maxPrice": 20})).await;
    let res = client.post("/api/alerts", &json!({"q": "jazz"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.messages(),
        ["You can have at most 2 alerts; delete one first"]
    );
    // Another user has their own allowance.
    let other = app.user().await;
    app.alert(&other, json!({"q": "jazz"})).await;
}

async fn a_listing_tells_every_matching_subscriber_in_the_order_they_subscribed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let first = app.user().await;
    let too_cheap = app.user().await;
    let second = app.user().await;
    let elsewhere = app.user().await;
    app.alert(&first, json!({"q": "opera", "maxPrice": 30}))
        .await;
    app.alert(&too_cheap, json!({"q": "opera", "maxPrice": 20}))
        .await;
    app.alert(&second, json!({"q": "GALA"})).await;
    app.alert(&elsewhere, json!({"q": "jazz"})).await;
    // A second alert of the same fan that matches too: still one notice, one email.
    app.alert(&second, json!({"q": "opera"})).await;
    // Nobody is told about their own listing.
    app.alert(&seller, json!({"q": "opera"})).await;

    let listed = ticket(&seller, "Opera Gala", 2500);
    publish(&app.bus.bus, TicketCreated(listed.clone())).await;

    for fan in [&first, &second] {
        let list = app.wait_notified(fan, 1).await;
        assert_eq!(list.unread, 1);
        let notice = &list.notifications[0];
        assert_eq!(notice.kind, NotificationKind::TicketAlert);
        assert_eq!(notice.title, "On sale now: Opera Gala");
        assert_eq!(notice.link, Some(format!("/tickets/{}", listed.id)));
        assert!(!notice.read);
    }
    let mail = app.smtp.wait_for(2, MAIL_WAIT).await;
    let order: Vec<&str> = mail.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(
        order,
        [first.email.as_str(), second.email.as_str()],
        "oldest alert first"
    );
    let message = &mail[0];
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("On sale now: Opera Gala")
    );
    assert_eq!(
        message.header("From").as_deref(),
        Some("BuyTicket <no-reply@buyticket.test>")
    );
    let body = message.text_body();
    assert!(
        body.contains("your alert \"opera\" (up to $30.00)"),
        "{body}"
    );
    assert!(
        body.contains(&format!("{SITE}/tickets/{}", listed.id)),
        "{body}"
    );
    assert!(body.contains(&format!("{SITE}/alerts")), "{body}");

    // Nobody else, even after a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for nobody in [&too_cheap, &elsewhere, &seller] {
        assert!(app.notifications(nobody).await.notifications.is_empty());
    }
    assert_eq!(app.notifications(&second).await.notifications.len(), 1);
    assert_eq!(app.smtp.messages().len(), 2);
}

async fn a_ticket_back_on_sale_is_announced_again_and_edits_are_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let fan = app.user().await;
    app.alert(&fan, json!({"q": "opera", "maxPrice": 30})).await;
    let mut listed = ticket(&seller, "Opera Gala", 4000);
    publish(&app.bus.bus, TicketCreated(listed.clone())).await;
    // Too expensive; then cheaper: it starts to match.
    listed.version = 1;
    listed.price = Cents::new(3000);
    publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
    app.wait_notified(&fan, 1).await;
    // An edit of a ticket that matches already, then a reservation: nothing new.
    listed.version = 2;
    listed.venue = Some("Royal Opera House".into());
    publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
    listed.version = 3;
    listed.order_id = Some(OrderId::generate());
    publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
    // Released after a cancelled or expired order: announced again.
    listed.version = 4;
    listed.order_id = None;
    publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
    let list = app.wait_notified(&fan, 2).await;
    assert_eq!(list.notifications.len(), 2);
    assert!(list.notifications[0].body.contains("Royal Opera House"));
    app.smtp.wait_for(2, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.notifications(&fan).await.notifications.len(), 2);
    assert_eq!(app.smtp.messages().len(), 2);
}

async fn alert_emails_are_limited_per_hour_and_in_app_notices_are_not(backend: Backend) {
    let limits = Limits {
        alert_emails_per_hour: 1,
        ..Limits::default()
    };
    let app = TestApp::spawn_with(backend, limits).await;
    let seller = app.user().await;
    let fan = app.user().await;
    app.alert(&fan, json!({"q": "opera"})).await;
    for title in ["Opera one", "Opera two", "Opera three"] {
        publish(&app.bus.bus, TicketCreated(ticket(&seller, title, 1000))).await;
    }
    app.wait_notified(&fan, 3).await;
    app.smtp.wait_for(1, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.mail_to(&fan).len(), 1, "one alert email an hour");
}

async fn a_sale_sends_the_buyer_a_receipt_and_the_seller_a_sale_notice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let buyer = app.user().await;
    let listed = ticket(&seller, "Opera Gala", 2550);
    let order = order_created(&buyer, &seller, &listed);
    // Completed arrives first: it waits for the order.
    publish(
        &app.bus.bus,
        OrderCompleted {
            id: order.id.clone(),
            version: 1,
            ticket: TicketRef {
                id: listed.id.clone(),
            },
            payment_id: Some("p1".into()),
            user_id: Some(UserId::new(&buyer.id)),
        },
    )
    .await;
    publish(&app.bus.bus, order.clone()).await;
    let available_at = Millis::new(1_800_000_000_000).unwrap();
    publish(
        &app.bus.bus,
        SaleCredited {
            order_id: order.id.clone(),
            seller_id: UserId::new(&seller.id),
            ticket_id: Some(listed.id.clone()),
            title: Some("Opera Gala".into()),
            price: Cents::new(2550),
            fee: Cents::new(128),
            amount: Cents::new(2422),
            available_at,
        },
    )
    .await;

    let receipt = &app.wait_notified(&buyer, 1).await.notifications[0];
    assert_eq!(receipt.kind, NotificationKind::OrderReceipt);
    assert_eq!(receipt.title, "Your receipt: Opera Gala");
    assert_eq!(receipt.link, Some(format!("/orders/{}", order.id)));
    let sold = &app.wait_notified(&seller, 1).await.notifications[0];
    assert_eq!(sold.kind, NotificationKind::TicketSold);
    assert_eq!(sold.link.as_deref(), Some("/payouts"));

    app.smtp.wait_for(2, MAIL_WAIT).await;
    let to_buyer = app.mail_to(&buyer);
    assert_eq!(to_buyer.len(), 1);
    let mail = &to_buyer[0];
    assert_eq!(mail.mail_from, "no-reply@buyticket.test");
    assert_eq!(mail.header("To").as_deref(), Some(buyer.email.as_str()));
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your receipt: Opera Gala")
    );
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    assert!(message_id.ends_with("@buyticket.test>"), "{message_id}");
    assert!(mail.header("Date").is_some());
    let body = mail.text_body();
    assert!(
        body.contains("You paid $25.50 for \"Opera Gala\""),
        "{body}"
    );
    assert!(
        body.contains(&format!("{SITE}/orders/{}", order.id)),
        "{body}"
    );

    let to_seller = app.mail_to(&seller);
    assert_eq!(to_seller.len(), 1);
    assert_eq!(
        to_seller[0].header("Subject").as_deref(),
        Some("Your ticket sold: Opera Gala")
    );
    let body = to_seller[0].text_body();
    assert!(body.contains("sold for $25.50"), "{body}");
    assert!(
        body.contains("fee of $1.28 you receive $24.22, paid out from 2027-01-15 08:00 UTC"),
        "{body}"
    );
}

async fn buyers_hear_of_expired_and_refused_reservations_and_declined_cards(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let buyer = app.user().await;
    let listed = ticket(&seller, "Opera Gala", 2000);
    let expired = order_created(&buyer, &seller, &listed);
    let cancelled_by_buyer = order_created(&buyer, &seller, &listed);
    let refused = order_created(&buyer, &seller, &listed);
    for order in [&expired, &cancelled_by_buyer, &refused] {
        publish(&app.bus.bus, order.clone()).await;
    }
    publish(
        &app.bus.bus,
        PaymentDeclined {
            id: "p1".into(),
            order_id: expired.id.clone(),
            user_id: UserId::new(&buyer.id),
            amount: Cents::new(2000),
            message: "Your card was declined.".into(),
        },
    )
    .await;
    for (order, reason) in [
        (&expired, CancelReason::Expired),
        (&cancelled_by_buyer, CancelReason::Buyer),
        (&refused, CancelReason::TicketChanged),
    ] {
        publish(
            &app.bus.bus,
            OrderCancelled {
                id: order.id.clone(),
                version: 1,
                ticket: TicketRef {
                    id: listed.id.clone(),
                },
                reason: Some(reason),
            },
        )
        .await;
    }
    let list = app.wait_notified(&buyer, 3).await;
    let mut kinds: Vec<NotificationKind> = list.notifications.iter().map(|n| n.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            NotificationKind::ReservationExpired,
            NotificationKind::OrderCancelled,
            NotificationKind::PaymentDeclined
        ]
    );
    let declined = list
        .notifications
        .iter()
        .find(|n| n.kind == NotificationKind::PaymentDeclined)
        .unwrap();
    assert!(
        declined
            .body
            .contains("was declined: Your card was declined.")
    );
    app.smtp.wait_for(3, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.notifications(&buyer).await.notifications.len(),
        3,
        "not the buyer's own cancel"
    );
    let subjects: Vec<String> = app
        .mail_to(&buyer)
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    assert!(
        subjects.contains(&"Your reservation expired: Opera Gala".to_owned()),
        "{subjects:?}"
    );
    assert_eq!(subjects.len(), 3);
}

async fn buyers_hear_of_money_given_back_in_part_and_in_full(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let buyer = app.user().await;
    let listed = ticket(&seller, "Opera Gala", 2000);
    let order = order_created(&buyer, &seller, &listed);
    publish(&app.bus.bus, order.clone()).await;
    let refund = |refunded: i64, amount: i64, taken: i64| PaymentRefunded {
        id: "p1".into(),
        order_id: order.id.clone(),
        user_id: UserId::new(&buyer.id),
        title: Some("Opera Gala".into()),
        price: Cents::new(2000),
        refunded: Cents::new(refunded),
        amount: Cents::new(amount),
        seller_id: Some(UserId::new(&seller.id)),
        seller_amount: Some(Cents::new(taken)),
    };
    // 5.00 back, then 15.00 more: all of it.
    publish(&app.bus.bus, refund(500, 500, 475)).await;
    publish(&app.bus.bus, refund(2000, 1500, 1425)).await;

    let list = app.wait_notified(&buyer, 2).await;
    let mut told: Vec<(String, String)> = list
        .notifications
        .iter()
        .map(|n| {
            assert_eq!(n.kind, NotificationKind::PaymentRefunded);
            assert_eq!(n.link, Some(format!("/orders/{}", order.id)));
            (n.title.clone(), n.body.clone())
        })
        .collect();
    told.sort();
    assert_eq!(told[0].0, "Partly refunded: Opera Gala");
    assert!(
        told[0]
            .1
            .starts_with("$5.00 of your payment of $20.00 for \"Opera Gala\" was refunded."),
        "{}",
        told[0].1
    );
    assert_eq!(told[1].0, "Refunded: Opera Gala");
    assert!(
        told[1]
            .1
            .starts_with("Your payment of $20.00 for \"Opera Gala\" was refunded in full."),
        "{}",
        told[1].1
    );
    app.smtp.wait_for(2, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut subjects: Vec<String> = app
        .mail_to(&buyer)
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Partly refunded: Opera Gala", "Refunded: Opera Gala"],
        "one email each"
    );
    // The seller is told what each refund takes from their payouts.
    let list = app.wait_notified(&seller, 2).await;
    let mut bodies: Vec<&str> = list
        .notifications
        .iter()
        .map(|n| {
            assert_eq!(n.title, "A refund on your sale: Opera Gala");
            assert_eq!(n.link.as_deref(), Some("/payouts"));
            n.body.as_str()
        })
        .collect();
    bodies.sort();
    assert!(
        bodies[0].starts_with("$15.00 of the $20.00 the buyer paid for \"Opera Gala\" was refunded to them. $14.25 of it"),
        "{bodies:?}"
    );
    assert!(
        bodies[1].starts_with("$5.00 of the $20.00 the buyer paid for \"Opera Gala\" was refunded to them. $4.75 of it"),
        "{bodies:?}"
    );
    app.smtp.wait_for(4, MAIL_WAIT).await;
    assert_eq!(app.mail_to(&seller).len(), 2);
}

async fn notifications_page_newest_first_and_are_marked_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let fan = app.user().await;
    let other = app.user().await;
    app.alert(&fan, json!({"q": "opera"})).await;
    app.alert(&other, json!({"q": "opera"})).await;
    for n in 0..5 {
        publish(
            &app.bus.bus,
            TicketCreated(ticket(&seller, &format!("Opera {n}"), 1000)),
        )
        .await;
    }
    app.wait_notified(&fan, 5).await;
    app.wait_notified(&other, 5).await;
    let client = app.as_user(&fan);
    let res = client.get("/api/notifications?limit=2").await;
    let page: NotificationList = serde_json::from_value(res.json).unwrap();
    assert_eq!(page.notifications.len(), 2);
    assert_eq!(page.unread, 5);
    assert!(
        page.notifications[0].id > page.notifications[1].id,
        "newest first"
    );
    let res = client
        .get(&format!(
            "/api/notifications?limit=10&before={}",
            page.notifications[1].id.as_str()
        ))
        .await;
    let rest: NotificationList = serde_json::from_value(res.json).unwrap();
    assert_eq!(rest.notifications.len(), 3);
    assert!(rest.notifications[0].id < page.notifications[1].id);

    for bad in ["limit=0", "limit=101", "limit=x", "before=nope"] {
        let res = client.get(&format!("/api/notifications?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Reading someone else's notification changes nothing of theirs.
    let theirs = app.notifications(&other).await.notifications[0].id.clone();
    let res = client
        .post(
            "/api/notifications/read",
            &json!({"ids": [page.notifications[0].id, theirs]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json, json!({"unread": 4}));
    assert_eq!(app.notifications(&other).await.unread, 5);
    let list = app.notifications(&fan).await;
    assert!(list.notifications[0].read);
    assert!(!list.notifications[1].read);

    let res = client
        .post("/api/notifications/read", &json!({"ids": ["x"]}))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.field_errors()[0].0, "ids");
    let res = client.post("/api/notifications/read", &json!({})).await;
    assert_eq!(res.json, json!({"unread": 0}));
    assert_eq!(app.notifications(&other).await.unread, 5);
    assert_eq!(
        app.server
            .client()
            .post("/api/notifications/read", &json!({}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn a_mail_server_that_is_down_delays_emails_and_never_loses_or_repeats_them(
    backend: Backend,
) {
    let mut app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let buyer = app.user().await;
    app.smtp.stop();
    let listed = ticket(&seller, "Opera Gala", 2000);
    let order = order_created(&buyer, &seller, &listed);
    publish(&app.bus.bus, order.clone()).await;
    let completed = publish(
        &app.bus.bus,
        OrderCompleted {
            id: order.id.clone(),
            version: 1,
            ticket: TicketRef {
                id: listed.id.clone(),
            },
            payment_id: None,
            user_id: Some(UserId::new(&buyer.id)),
        },
    )
    .await;
    // In the app at once; the email waits for the server.
    app.wait_notified(&buyer, 1).await;
    let event_id = completed.id.to_string();
    let buyer_id = UserId::new(&buyer.id);
    eventually(15, "the receipt was tried and put back", || async {
        let attempts: Option<i64> = bt_platform::on_db!(&app.store, |pool| sqlx::query_scalar(
            "SELECT attempts FROM emails WHERE event_id = $1"
        )
        .bind(&event_id)
        .fetch_optional(pool)
        .await)
        .unwrap();
        attempts.is_some_and(|a| a >= 1)
    })
    .await;
    assert_eq!(
        bt_notifications::store::email_status(
            &app.store,
            &event_id,
            &buyer_id,
            NotificationKind::OrderReceipt
        )
        .await
        .unwrap(),
        Some(EmailStatus::Pending)
    );
    // The same event again (a redelivery) adds nothing.
    publish_again(&app, &completed).await;

    app.smtp.restart();
    let mail = app.smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("Your receipt: Opera Gala")
    );
    eventually(10, "the receipt is recorded as sent", || async {
        bt_notifications::store::email_status(
            &app.store,
            &event_id,
            &buyer_id,
            NotificationKind::OrderReceipt,
        )
        .await
        .unwrap()
            == Some(EmailStatus::Sent)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.smtp.messages().len(), 1, "once");
    assert_eq!(app.notifications(&buyer).await.notifications.len(), 1);
}

/// While the mail server is down, pending emails pile up (every order's receipt, every expired
/// reservation), and after each email it queues or tries, the worker asks when the next one is
/// due. That is the earliest of each pending email's retry time or, if later, the end of its
/// lease; it is read from one entry of an index, not from every pending email (with 1,904
/// pending, each answer had read 12,000 index entries and the rows behind them).
async fn the_next_due_email_is_read_from_an_index_not_from_every_pending_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    // Due in an hour or more, so that the worker leaves them alone.
    let hour = Millis::now().plus(Duration::from_secs(3600));
    let at = |ms: u64| hour.plus(Duration::from_millis(ms));
    let email = |n: usize| OutgoingEmail {
        id: format!("email-{n:05}"),
        user_id: UserId::new(&user.id),
        kind: NotificationKind::ReservationExpired,
        subject: "Your reservation expired".into(),
        body: "It is back on sale.".into(),
        attempts: 0,
        address: None,
    };
    let mut tx = app.store.begin().await.unwrap();
    for n in 0..2_000 {
        let inserted = bt_notifications::store::insert_email(
            &mut tx,
            &email(n),
            &format!("event-{n}"),
            Millis::now(),
            at(1_000 + 10 * n as u64),
        )
        .await
        .unwrap();
        assert!(inserted);
    }
    for (n, send_at) in [(2_000, 500), (2_001, 800), (2_002, 100)] {
        bt_notifications::store::insert_email(
            &mut tx,
            &email(n),
            &format!("event-{n}"),
            Millis::now(),
            at(send_at),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // The earliest retry time, but leased until later; the next, leased until a little later
    // (the earliest due); the first of all, sent already.
    for (id, lease) in [("email-02000", at(5_000)), ("email-02001", at(900))] {
        execute(
            &app,
            "UPDATE emails SET lease_until = CAST($1 AS BIGINT) WHERE id = $2",
            &[&lease.get().to_string(), id],
        )
        .await;
    }
    execute(
        &app,
        "UPDATE emails SET status = 'sent' WHERE id = 'email-02002'",
        &[],
    )
    .await;

    assert_eq!(
        bt_notifications::store::next_email_due(&app.store)
            .await
            .unwrap(),
        Some(at(900))
    );

    let sql = bt_notifications::store::next_email_due_sql(backend);
    let plan: Vec<String> = match &app.store {
        Db::Postgres(pool) => {
            // As autovacuum leaves the statistics of a table this size.
            sqlx::query("ANALYZE emails").execute(pool).await.unwrap();
            sqlx::query_scalar(&format!("EXPLAIN {sql}"))
                .fetch_all(pool)
                .await
                .unwrap()
        }
        Db::Sqlite(pool, _) => {
            sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(pool)
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.3)
                .collect()
        }
    };
    let plan = plan.join("\n");
    assert!(plan.contains("emails_next_due"), "{plan}");
    for whole in ["Seq Scan", "Bitmap", "Sort", "TEMP B-TREE"] {
        assert!(!plan.contains(whole), "{whole} in:\n{plan}");
    }
}

/// Publishes the very same envelope again, as a redelivery would bring it (on NATS under a new
/// message id, so that the stream's de-duplication does not drop it).
async fn publish_again<E: bt_contract::events::Event>(
    app: &TestApp,
    envelope: &bt_contract::events::Envelope<E>,
) {
    app.bus
        .bus
        .publish(&bt_platform::bus::OutgoingMessage {
            id: uuid::Uuid::now_v7().to_string(),
            subject: E::SUBJECT.to_owned(),
            payload: serde_json::to_string(envelope).unwrap(),
            request_id: None,
        })
        .await
        .unwrap();
}

async fn an_email_waits_for_its_recipients_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    // A buyer whose user.created has not arrived yet.
    let buyer = TestUser::new();
    let listed = ticket(&seller, "Opera Gala", 2000);
    let order = order_created(&buyer, &seller, &listed);
    publish(&app.bus.bus, order.clone()).await;
    publish(
        &app.bus.bus,
        OrderCompleted {
            id: order.id.clone(),
            version: 1,
            ticket: TicketRef { id: listed.id },
            payment_id: None,
            user_id: Some(UserId::new(&buyer.id)),
        },
    )
    .await;
    app.wait_notified(&buyer, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.smtp.messages().is_empty());
    publish(
        &app.bus.bus,
        UserCreated {
            id: UserId::new(&buyer.id),
            email: buyer.email.clone(),
        },
    )
    .await;
    let mail = app.smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mail[0].rcpt_tos, std::slice::from_ref(&buyer.email));
}

async fn replicas_send_each_email_once(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let (_runtime, _service) = app.replica().await;
    let seller = app.user().await;
    let listed = ticket(&seller, "Opera Gala", 2000);
    // The mail server is down while the receipts queue up, so that both workers find them due
    // together when it returns.
    app.smtp.stop();
    let mut buyers = Vec::new();
    for _ in 0..30 {
        let buyer = app.user().await;
        let order = order_created(&buyer, &seller, &listed);
        publish(&app.bus.bus, order.clone()).await;
        let completed = OrderCompleted {
            id: order.id.clone(),
            version: 1,
            ticket: TicketRef {
                id: listed.id.clone(),
            },
            payment_id: None,
            user_id: Some(UserId::new(&buyer.id)),
        };
        let envelope = publish(&app.bus.bus, completed).await;
        // A redelivery of every other one.
        if buyers.len() % 2 == 0 {
            publish_again(&app, &envelope).await;
        }
        buyers.push(buyer);
    }
    for buyer in &buyers {
        app.wait_notified(buyer, 1).await;
    }
    app.smtp.restart();
    app.smtp.wait_for(30, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mail = app.smtp.messages();
    assert_eq!(mail.len(), 30, "each receipt once");
    let mut ids: Vec<String> = mail.iter().filter_map(|m| m.header("Message-ID")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    for buyer in &buyers {
        assert_eq!(app.mail_to(buyer).len(), 1, "{}", buyer.email);
        assert_eq!(app.notifications(buyer).await.notifications.len(), 1);
    }
}

/// How many `ticket.held` events went out on the test's bus.
async fn holds_published(app: &TestApp) -> usize {
    match &app.bus.bus {
        bt_platform::Bus::Local(local) => local.payloads("ticket.held").await.unwrap().len(),
        bt_platform::Bus::Nats(_) => app
            .bus
            .subject_counts()
            .await
            .get("ticket.held")
            .copied()
            .unwrap_or_default(),
    }
}

/// Runs `sql` with `binds` (all text or all numbers, in order) on the service's database.
async fn execute(app: &TestApp, sql: &str, binds: &[&str]) {
    bt_platform::on_db!(&app.store, |pool| {
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(pool).await.map(drop)
    })
    .unwrap();
}

async fn email_ids(app: &TestApp) -> Vec<String> {
    bt_platform::on_db!(&app.store, |pool| sqlx::query_scalar(
        "SELECT id FROM emails ORDER BY id"
    )
    .fetch_all(pool)
    .await)
    .unwrap()
}

/// Notifications older than 180 days and sent or failed emails older than 30 go, in batches;
/// newer ones stay, and so does an email still waiting to be sent, however old.
async fn old_notifications_and_sent_emails_are_deleted_and_pending_ones_kept(backend: Backend) {
    use bt_notifications::retention::{self, KEEP_EMAILS, KEEP_NOTIFICATIONS, Purged};
    let app = TestApp::spawn(backend).await;
    let seller = app.user().await;
    let fan = app.user().await;
    app.alert(&fan, json!({"q": "opera"})).await;
    for n in 0..4 {
        publish(
            &app.bus.bus,
            TicketCreated(ticket(&seller, &format!("Opera {n}"), 1000)),
        )
        .await;
    }
    let list = app.wait_notified(&fan, 4).await;
    app.smtp.wait_for(4, MAIL_WAIT).await;
    eventually(10, "the 4 emails are recorded as sent", || async {
        let sent: i64 = bt_platform::on_db!(&app.store, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM emails WHERE status = 'sent'"
        )
        .fetch_one(pool)
        .await)
        .unwrap();
        sent == 4
    })
    .await;

    let now = Millis::now();
    let day = Duration::from_secs(24 * 3600);
    // Three notifications are past their time, one is a day short of it.
    let old = now.minus(KEEP_NOTIFICATIONS + day).get().to_string();
    let recent = now.minus(KEEP_NOTIFICATIONS - day).get().to_string();
    let ids: Vec<String> = list
        .notifications
        .iter()
        .map(|n| n.id.to_string())
        .collect();
    for id in &ids[..3] {
        execute(
            &app,
            "UPDATE notifications SET created_at = CAST($1 AS BIGINT) WHERE id = $2",
            &[&old, id],
        )
        .await;
    }
    execute(
        &app,
        "UPDATE notifications SET created_at = CAST($1 AS BIGINT) WHERE id = $2",
        &[&recent, &ids[3]],
    )
    .await;
    // Every email is past its time; one of them is waiting to be sent again (the server was
    // down), one failed for good.
    let old_email = now.minus(KEEP_EMAILS + day).get().to_string();
    let later = now.plus(day).get().to_string();
    let emails = email_ids(&app).await;
    execute(
        &app,
        "UPDATE emails SET created_at = CAST($1 AS BIGINT)",
        &[&old_email],
    )
    .await;
    execute(
        &app,
        "UPDATE emails SET status = 'pending', next_attempt_at = CAST($1 AS BIGINT) WHERE id = $2",
        &[&later, &emails[0]],
    )
    .await;
    execute(
        &app,
        "UPDATE emails SET status = 'failed' WHERE id = $1",
        &[&emails[1]],
    )
    .await;

    let purged = retention::purge(&app.store, now).await.unwrap();

    assert_eq!(
        purged,
        Purged {
            notifications: 3,
            emails: 3
        }
    );
    let left = app.notifications(&fan).await.notifications;
    assert_eq!(
        left.iter().map(|n| n.id.to_string()).collect::<Vec<_>>(),
        [ids[3].clone()]
    );
    assert_eq!(
        email_ids(&app).await,
        [emails[0].clone()],
        "the pending email stays"
    );
    assert_eq!(
        retention::purge(&app.store, now).await.unwrap(),
        Purged::default(),
        "nothing more to delete"
    );
}

async fn a_hold_gives_the_first_subscriber_in_line_a_head_start(backend: Backend) {
    let app = TestApp::spawn_with_hold(backend, Limits::default(), Duration::from_secs(5)).await;
    let seller = app.user().await;
    let first = app.user().await;
    let second = app.user().await;
    app.alert(&first, json!({"q": "opera"})).await;
    app.alert(&second, json!({"q": "gala"})).await;
    let listed = ticket(&seller, "Opera Gala", 2500);
    publish(&app.bus.bus, TicketCreated(listed.clone())).await;

    let list = app.wait_notified(&first, 1).await;
    let held_at = std::time::Instant::now();
    let body = &list.notifications[0].body;
    assert!(body.contains("It is held for you until"), "{body}");
    assert!(
        !body.contains("the first buyer to reserve it gets it"),
        "{body}"
    );
    // The second in line hears of it when the hold ends, in the app and by email.
    let early = app.notifications(&second).await;
    assert!(
        early.notifications.is_empty() && early.unread == 0,
        "{early:?}"
    );
    app.wait_notified(&second, 1).await;
    assert!(
        held_at.elapsed() >= Duration::from_secs(3),
        "the second subscriber was told only after the hold ({:?})",
        held_at.elapsed()
    );
    let mail = app.smtp.wait_for(2, MAIL_WAIT).await;
    assert_eq!(mail[0].rcpt_tos, std::slice::from_ref(&first.email));
    assert_eq!(mail[1].rcpt_tos, std::slice::from_ref(&second.email));
    eventually(10, "ticket.held is published", || async {
        holds_published(&app).await == 1
    })
    .await;
}

/// How many of `user`'s notices held a ticket for them.
async fn holds_told(app: &TestApp, user: &TestUser) -> usize {
    let list = app.notifications(user).await;
    list.notifications
        .iter()
        .filter(|n| n.body.contains("It is held for you until"))
        .count()
}

async fn a_ticket_back_on_sale_is_held_for_the_next_in_line_who_has_not_held_it(backend: Backend) {
    let app = TestApp::spawn_with_hold(backend, Limits::default(), Duration::from_secs(2)).await;
    let seller = app.user().await;
    let first = app.user().await;
    let second = app.user().await;
    app.alert(&first, json!({"q": "opera"})).await;
    app.alert(&second, json!({"q": "opera"})).await;
    let mut listed = ticket(&seller, "Opera Gala", 2500);
    publish(&app.bus.bus, TicketCreated(listed.clone())).await;
    app.wait_notified(&second, 1).await;
    assert_eq!(
        (
            holds_told(&app, &first).await,
            holds_told(&app, &second).await
        ),
        (1, 0)
    );

    // The first in line reserves it and lets it go (cancelled or expired): back on sale, it is
    // held for the second, not again for the first, who could otherwise keep it from everyone.
    let release = async |listed: &mut TicketData| {
        listed.version += 1;
        listed.order_id = Some(OrderId::generate());
        publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
        listed.version += 1;
        listed.order_id = None;
        publish(&app.bus.bus, TicketUpdated(listed.clone())).await;
    };
    // How many holds each was told of, once both were told of the `n`th time on sale.
    let holds_once_told = async |n: usize| {
        app.wait_notified(&first, n).await;
        app.wait_notified(&second, n).await;
        (
            holds_told(&app, &first).await,
            holds_told(&app, &second).await,
        )
    };
    release(&mut listed).await;
    assert_eq!(holds_once_told(2).await, (1, 1));
    eventually(10, "two holds published", || async {
        holds_published(&app).await == 2
    })
    .await;

    // Both have held it: the next time it is back on sale, everyone is told at once.
    release(&mut listed).await;
    assert_eq!(holds_once_told(3).await, (1, 1));
    assert_eq!(holds_published(&app).await, 2);
}

/// Mail goes over STARTTLS to a server whose certificate is signed by the authority of
/// `SMTP_CA_FILE`; without that authority the certificate is refused and nothing is sent. The
/// server refuses mail before STARTTLS, so what it received came over TLS.
#[tokio::test]
async fn mail_goes_over_starttls_to_a_server_signed_by_the_authority_it_is_given() {
    const FROM: &str = "BuyTicket <no-reply@buyticket.test>";
    let smtp = SmtpServer::start_tls();
    let email = OutgoingEmail {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: UserId::new("u1"),
        kind: NotificationKind::OrderReceipt,
        subject: "Your receipt: Opera Gala".into(),
        body: "You paid $25.00.".into(),
        attempts: 0,
        address: None,
    };

    let untrusting = Mailer::smtp(&smtp.tls_url(), FROM).unwrap();
    let refused = untrusting
        .deliver(&email, "fan@example.com")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "the unknown authority is the reason: {refused}"
    );
    let plain = Mailer::smtp(&format!("smtp://127.0.0.1:{}", smtp.port()), FROM).unwrap();
    let refused = plain.deliver(&email, "fan@example.com").await.unwrap_err();
    assert!(refused.to_string().contains("STARTTLS"), "{refused}");
    assert!(smtp.messages().is_empty());

    let pem = std::fs::read(smtp.ca_file()).unwrap();
    let trusting = Mailer::smtp_trusting(&smtp.tls_url(), FROM, Some(("ca.pem", &pem))).unwrap();
    trusting.deliver(&email, "fan@example.com").await.unwrap();
    let mail = smtp.wait_for(1, MAIL_WAIT).await;
    assert_eq!(mail[0].rcpt_tos, ["fan@example.com"]);
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("Your receipt: Opera Gala")
    );
}

backend_tests!(
    replicas_send_each_email_once,
    old_notifications_and_sent_emails_are_deleted_and_pending_ones_kept,
    a_hold_gives_the_first_subscriber_in_line_a_head_start,
    a_ticket_back_on_sale_is_held_for_the_next_in_line_who_has_not_held_it,
    alerts_are_set_listed_and_deleted_by_their_owner_only,
    alerts_are_validated_and_limited_per_user,
    a_listing_tells_every_matching_subscriber_in_the_order_they_subscribed,
    a_ticket_back_on_sale_is_announced_again_and_edits_are_not,
    alert_emails_are_limited_per_hour_and_in_app_notices_are_not,
    a_sale_sends_the_buyer_a_receipt_and_the_seller_a_sale_notice,
    buyers_hear_of_expired_and_refused_reservations_and_declined_cards,
    buyers_hear_of_money_given_back_in_part_and_in_full,
    notifications_page_newest_first_and_are_marked_read,
    a_mail_server_that_is_down_delays_emails_and_never_loses_or_repeats_them,
    an_email_waits_for_its_recipients_address,
    the_next_due_email_is_read_from_an_index_not_from_every_pending_one,
);
