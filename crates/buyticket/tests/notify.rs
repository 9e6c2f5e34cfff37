//! Notifications end to end through the `buyticket` binary — once through `buyticket up`, once
//! through `serve` processes on PostgreSQL and NATS — with a real SMTP server (issue 13):
//!
//! B sets an alert for "opera" → A lists "Opera Gala" → B is notified in the app and by email →
//! the mail server goes down → B buys and pays → B has a receipt and A a sale notice in the app
//! at once → the mail server comes back → both emails arrive, once each.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use bt_test_support::smtp::{ReceivedMessage, SmtpServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::deployment::{Browser, Deployment, Ingress};

const CATCH_UP: Duration = Duration::from_secs(30);
/// After the mail server returns, the emails wait at most one retry interval (which grows from
/// 5 s while the server is down).
const MAIL_BACK: Duration = Duration::from_secs(60);

async fn poll<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    support::poll(CATCH_UP, Duration::from_millis(20), what, attempt).await
}

/// `user`'s notifications once there are `count`.
async fn notified(user: &Browser, count: usize) -> Value {
    poll(&format!("{count} notifications"), || async {
        let res = user.get("/api/notifications").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        if res.json["notifications"].as_array().map_or(0, Vec::len) >= count {
            Ok(res.json)
        } else {
            Err(res.text)
        }
    })
    .await
}

/// `buyer` orders `ticket` (asking again while the orders service has not heard of it) and
/// pays for it: the order's id.
async fn buy(buyer: &Browser, ticket: &str) -> String {
    let order = poll("the orders service offers the ticket", || async {
        let res = buyer
            .post("/api/orders", &json!({"ticketId": ticket}))
            .await;
        match res.status {
            StatusCode::CREATED => Ok(res.json),
            StatusCode::SERVICE_UNAVAILABLE => Err(res.text),
            other => panic!("ordering answered {other}: {}", res.text),
        }
    })
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    buyer.pay(&order_id, CATCH_UP).await;
    order_id
}

fn subjects_to(mail: &[ReceivedMessage], address: &str) -> Vec<String> {
    mail.iter()
        .filter(|m| m.rcpt_tos.iter().any(|to| to == address))
        .filter_map(|m| m.header("Subject"))
        .collect()
}

async fn alert_then_sale(ingress: &Ingress, smtp: &mut SmtpServer) {
    let a = Browser::sign_up(ingress, "a@notify.test").await;
    let b = Browser::sign_up(ingress, "b@notify.test").await;
    let res = b.post("/api/alerts", &json!({"q": "opera"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);

    let res = a
        .post("/api/tickets", &json!({"title": "Opera Gala", "price": 25}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let listed_at = Instant::now();
    let ticket = res.json["id"].as_str().unwrap().to_owned();

    let list = notified(&b, 1).await;
    // How long the alert took, for the record (BENCHMARKS.md measures it under load).
    eprintln!(
        "B was notified in the app {:?} after the listing",
        listed_at.elapsed()
    );
    assert_eq!(list["unread"], 1);
    let alert = &list["notifications"][0];
    assert_eq!(alert["kind"], "ticket_alert");
    assert_eq!(alert["title"], "On sale now: Opera Gala");
    assert_eq!(alert["link"], format!("/tickets/{ticket}"));
    let mail = smtp.wait_for(1, CATCH_UP).await;
    assert_eq!(mail[0].rcpt_tos, ["b@notify.test"]);
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("On sale now: Opera Gala")
    );
    assert!(
        mail[0].text_body().contains(&format!("/tickets/{ticket}")),
        "{}",
        mail[0].text_body()
    );

    // The mail server goes down; the sale goes on.
    smtp.stop();
    let order_id = buy(&b, &ticket).await;

    // In the app at once.
    let list = notified(&b, 2).await;
    let receipt = &list["notifications"][0];
    assert_eq!(receipt["kind"], "order_receipt");
    assert_eq!(receipt["title"], "Your receipt: Opera Gala");
    assert_eq!(receipt["link"], format!("/orders/{order_id}"));
    let list = notified(&a, 1).await;
    let sold = &list["notifications"][0];
    assert_eq!(sold["kind"], "ticket_sold");
    assert!(
        sold["body"].as_str().unwrap().contains(
            "\"Opera Gala\" sold for $25.00. After the platform fee of $1.25 you receive $23.75"
        ),
        "{sold}"
    );
    assert_eq!(
        smtp.messages().len(),
        1,
        "nothing is sent while the server is down"
    );

    // The server comes back: both emails arrive, once each.
    smtp.restart();
    smtp.wait_until(MAIL_BACK, |mail| mail.len() >= 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mail = smtp.messages();
    assert_eq!(
        subjects_to(&mail, "b@notify.test"),
        ["On sale now: Opera Gala", "Your receipt: Opera Gala"]
    );
    assert_eq!(
        subjects_to(&mail, "a@notify.test"),
        ["Your ticket sold: Opera Gala"]
    );
    let receipt = mail
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("Your receipt: Opera Gala"))
        .unwrap();
    let text = receipt.text_body();
    assert!(
        text.contains("You paid $25.00 for \"Opera Gala\""),
        "{text}"
    );
    assert!(text.contains(&format!("/orders/{order_id}")), "{text}");

    // Read: the count goes to zero.
    let res = b.post("/api/notifications/read", &json!({})).await;
    assert_eq!(res.json, json!({"unread": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_then_sale_through_up() {
    let mut smtp = SmtpServer::start();
    let url = smtp.url();
    let deployment = Deployment::embedded(&[("SMTP_URL", &url), ("SELLER_FEE_PERCENT", "5")]);
    alert_then_sale(&deployment.ingress(), &mut smtp).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_then_sale_through_serve_processes_on_postgresql_and_nats() {
    let mut smtp = SmtpServer::start();
    let url = smtp.url();
    let deployment =
        Deployment::distributed(&[("SMTP_URL", &url), ("SELLER_FEE_PERCENT", "5")]).await;
    alert_then_sale(&deployment.ingress(), &mut smtp).await;
    deployment.stop();
}

const WEBHOOK_SECRET: &str = "whsec_notify_e2e";

/// A signed `charge.refunded` webhook: `refunded` cents of the `price` cents that the
/// development provider took for `order_id` (its first attempt) are back with the buyer.
async fn refund_in_the_dashboard(
    ingress: &Ingress,
    order_id: &str,
    price: i64,
    refunded: i64,
) -> StatusCode {
    let intent = bt_payments::provider::Development::intent_id(&format!("{order_id}-1"));
    let body = json!({
        "id": format!("evt_refund_{order_id}_{refunded}"),
        "object": "event",
        "type": "charge.refunded",
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {
            "id": format!("ch_{intent}"), "object": "charge", "amount": price,
            "amount_refunded": refunded, "refunded": refunded >= price, "payment_intent": intent,
        }},
    })
    .to_string();
    let signature = bt_payments::webhook::sign(
        body.as_bytes(),
        WEBHOOK_SECRET.as_bytes(),
        chrono::Utc::now().timestamp(),
    );
    reqwest::Client::new()
        .post(ingress.url("/api/payments/webhook"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook")
        .status()
}

/// A sale refunded in Stripe's dashboard, first in part and then in full: the buyer's order
/// shows it, the buyer is told each time (in the app and by email), and the seller's payouts
/// give the money back.
async fn a_refund_reaches_the_order_the_buyer_and_the_seller(ingress: &Ingress, smtp: &SmtpServer) {
    let a = Browser::sign_up(ingress, "a@refund.test").await;
    let b = Browser::sign_up(ingress, "b@refund.test").await;
    let res = a
        .post("/api/tickets", &json!({"title": "Opera Gala", "price": 20}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let ticket = res.json["id"].as_str().unwrap().to_owned();
    let order_id = buy(&b, &ticket).await;
    let payment_of = |expected: Value| {
        let b = &b;
        let order_id = &order_id;
        async move {
            poll(&format!("the order's payment is {expected}"), || async {
                let res = b.get(&format!("/api/orders/{order_id}")).await;
                let payment = &res.json["payment"];
                if payment["status"] == expected["status"]
                    && payment["refunded"] == expected["refunded"]
                {
                    Ok(())
                } else {
                    Err(res.text)
                }
            })
            .await
        }
    };
    payment_of(json!({"status": "succeeded", "refunded": 0})).await;
    // Captured (the seller is credited): what Stripe's dashboard can refund.
    poll("the seller is credited", || async {
        let res = a.get("/api/payouts").await;
        if res.json["pending"] == json!(19) {
            Ok(())
        } else {
            Err(res.text)
        }
    })
    .await;

    assert_eq!(
        refund_in_the_dashboard(ingress, &order_id, 2000, 500).await,
        StatusCode::OK
    );
    payment_of(json!({"status": "succeeded", "refunded": 5})).await;
    let payouts = a.get("/api/payouts").await;
    assert_eq!(payouts.json["pending"], json!(14.25), "{}", payouts.text);

    assert_eq!(
        refund_in_the_dashboard(ingress, &order_id, 2000, 2000).await,
        StatusCode::OK
    );
    payment_of(json!({"status": "refunded", "refunded": 20})).await;
    let payouts = a.get("/api/payouts").await;
    assert_eq!(
        (
            &payouts.json["pending"],
            &payouts.json["totals"]["reversed"]
        ),
        (&json!(0), &json!(2)),
        "{}",
        payouts.text
    );

    // The buyer's receipt, then one notice per refund.
    let list = notified(&b, 3).await;
    let titles: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Refunded: Opera Gala",
            "Partly refunded: Opera Gala",
            "Your receipt: Opera Gala"
        ]
    );
    assert_eq!(
        list["notifications"][0]["link"],
        format!("/orders/{order_id}")
    );
    // The seller: the sale notice, and what each refund takes from their payouts.
    let list = notified(&a, 3).await;
    let told: Vec<(&str, &str)> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["title"].as_str().unwrap(), n["body"].as_str().unwrap()))
        .collect();
    // (Each subject has its own consumer: the sale notice may come after the refunds'.)
    let has = |title: &str, text: &str| told.iter().any(|(t, b)| *t == title && b.contains(text));
    let refund = "A refund on your sale: Opera Gala";
    assert!(
        has("Your ticket sold: Opera Gala", "you receive $19.00"),
        "{told:?}"
    );
    assert!(
        has(refund, "$4.75 of it comes out of your payouts"),
        "{told:?}"
    );
    assert!(
        has(refund, "$14.25 of it comes out of your payouts"),
        "{told:?}"
    );
    smtp.wait_until(CATCH_UP, |mail| {
        subjects_to(mail, "b@refund.test").len() >= 3
    })
    .await;
    let mut subjects = subjects_to(&smtp.messages(), "b@refund.test");
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Partly refunded: Opera Gala",
            "Refunded: Opera Gala",
            "Your receipt: Opera Gala"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_reaches_the_order_the_buyer_and_the_seller_through_up() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let deployment = Deployment::embedded(&[
        ("SMTP_URL", &url),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ]);
    a_refund_reaches_the_order_the_buyer_and_the_seller(&deployment.ingress(), &smtp).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_reaches_the_order_the_buyer_and_the_seller_through_serve_processes() {
    let smtp = SmtpServer::start();
    let url = smtp.url();
    let deployment = Deployment::distributed(&[
        ("SMTP_URL", &url),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await;
    a_refund_reaches_the_order_the_buyer_and_the_seller(&deployment.ingress(), &smtp).await;
    deployment.stop();
}

/// With ALERT_HOLD_SECONDS, the first subscriber in line holds a new listing: anyone else's
/// order is refused, saying until when, and theirs is taken.
async fn the_first_in_line_holds_the_ticket(deployment: &Deployment) {
    let ingress = deployment.ingress();
    let a = Browser::sign_up(&ingress, "a@hold.test").await;
    let b = Browser::sign_up(&ingress, "b@hold.test").await;
    let c = Browser::sign_up(&ingress, "c@hold.test").await;
    for fan in [&b, &c] {
        let res = fan.post("/api/alerts", &json!({"q": "opera"})).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    }
    let res = a
        .post("/api/tickets", &json!({"title": "Opera Gala", "price": 25}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let ticket = res.json["id"].as_str().unwrap().to_owned();
    let list = notified(&b, 1).await;
    let body = list["notifications"][0]["body"].as_str().unwrap();
    assert!(body.contains("It is held for you until"), "{body}");
    assert_eq!(
        c.get("/api/notifications").await.json["unread"],
        0,
        "C waits for the hold"
    );

    // Once the orders service knows of the hold (an event after the listing's own), C is refused.
    let orders = bt_platform::Db::connect(
        &deployment.database_url("orders"),
        &bt_platform::db::DbOptions::default(),
    )
    .await
    .unwrap();
    poll("the orders service holds the ticket for B", || async {
        let holder: Option<String> = bt_platform::on_db!(&orders, |pool| sqlx::query_scalar(
            "SELECT held_for FROM tickets WHERE id = $1"
        )
        .bind(&ticket)
        .fetch_optional(pool)
        .await)
        .unwrap()
        .flatten();
        if holder.as_deref() == Some(b.id.as_str()) {
            Ok(())
        } else {
            Err(format!("{holder:?}"))
        }
    })
    .await;
    orders.close().await;
    let res = c.post("/api/orders", &json!({"ticketId": ticket})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert!(
        res.messages()[0]
            .starts_with("This ticket is held for the first fan in line of its ticket alert until"),
        "{}",
        res.text
    );
    let res = b.post("/api/orders", &json!({"ticketId": ticket})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_in_line_holds_the_ticket_through_up() {
    let deployment = Deployment::embedded(&[("ALERT_HOLD_SECONDS", "120")]);
    the_first_in_line_holds_the_ticket(&deployment).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_in_line_holds_the_ticket_through_serve_processes() {
    let deployment = Deployment::distributed(&[("ALERT_HOLD_SECONDS", "120")]).await;
    the_first_in_line_holds_the_ticket(&deployment).await;
    deployment.stop();
}

/// Without SMTP_URL, `up` writes each email into `<data-dir>/mail` and logs where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_smtp_writes_the_emails_into_the_data_directory() {
    let deployment = Deployment::embedded(&[]);
    let ingress = deployment.ingress();
    let a = Browser::sign_up(&ingress, "a@mail-dir.test").await;
    let b = Browser::sign_up(&ingress, "b@mail-dir.test").await;
    let res = b.post("/api/alerts", &json!({"q": "gala"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let res = a
        .post("/api/tickets", &json!({"title": "Opera Gala", "price": 25}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let Deployment::Embedded { data, .. } = &deployment else {
        unreachable!("embedded")
    };
    let dir = data.path().join("mail");
    let message = poll("an .eml file in the mail directory", || async {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .collect();
        match files.as_slice() {
            [one] => std::fs::read_to_string(one.path()).map_err(|e| e.to_string()),
            other => Err(format!("{} files", other.len())),
        }
    })
    .await;
    assert!(message.contains("To: b@mail-dir.test"), "{message}");
    assert!(
        message.contains("Subject: On sale now: Opera Gala"),
        "{message}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the mail directory is the owner's only"
        );
    }
    deployment.stop();
}
