//! After the sale, end to end through the `buyticket` binary — once through `buyticket up`,
//! once through `serve` processes on PostgreSQL and NATS (issue 12):
//!
//! A lists a ticket with its file → B buys and pays → B downloads exactly A's bytes, A no longer
//! can → B lists it again above the resale cap (refused) and within it → C buys and pays → C
//! downloads the file, B no longer can → A's and B's payout ledgers balance to the cent with the
//! fees, and the development provider pays both out.

mod support;

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::deployment::{Browser, Deployment, Ingress};

const CATCH_UP: Duration = Duration::from_secs(30);

/// The ticket file A uploads: a (small) PDF.
const FILE: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n% row 5, seat 12\n%%EOF\n";

/// What the deployments run with: payouts available at once (no event start given), paid by a
/// worker that runs every second.
const ENV: &[(&str, &str)] = &[
    ("PAYOUT_DELAY_HOURS", "0"),
    ("PAYOUT_INTERVAL_SECONDS", "1"),
    ("SELLER_FEE_PERCENT", "5"),
    ("RESALE_PRICE_CAP_PERCENT", "120"),
];

async fn poll<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    support::poll(CATCH_UP, Duration::from_millis(50), what, attempt).await
}

/// The file as `browser` downloads it: status and bytes.
async fn download(browser: &Browser, ticket: &str) -> (StatusCode, Vec<u8>) {
    let url = browser.ingress.url(&format!("/api/tickets/{ticket}/file"));
    let res = browser.client.http.get(url).send().await.unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

/// `buyer` orders `ticket` (once the orders service knows it at the terms `price`), pays, and
/// waits until the tickets service gives them the ticket. Answers the order.
async fn buy(buyer: &Browser, ticket: &str, price: Value) -> Value {
    let order = poll("the orders service offers the ticket", || async {
        let res = buyer
            .post("/api/orders", &json!({"ticketId": ticket}))
            .await;
        match res.status {
            StatusCode::CREATED if res.json["ticket"]["price"] == price => Ok(res.json),
            // Ordered at the old terms (the replica had not heard of the relisting): cancel.
            StatusCode::CREATED => {
                let id = res.json["id"].as_str().unwrap();
                buyer.delete(&format!("/api/orders/{id}")).await;
                Err(format!("ordered at {}", res.json["ticket"]["price"]))
            }
            // Not known yet, or not on sale yet in the replica, or still held by the order
            // just cancelled above.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_REQUEST => Err(res.text),
            other => panic!("ordering answered {other}: {}", res.text),
        }
    })
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    buyer.pay(&order_id, CATCH_UP).await;
    poll("the buyer owns the ticket", || async {
        let res = buyer.get(&format!("/api/tickets/{ticket}")).await;
        if res.json["userId"] == buyer.id.as_str() {
            Ok(())
        } else {
            Err(res.text)
        }
    })
    .await;
    order
}

/// `seller`'s payouts once every entry is `status` (e.g. `paid`).
async fn payouts_when(seller: &Browser, status: &str) -> Value {
    poll(&format!("the payouts are {status}"), || async {
        let res = seller.get("/api/payouts").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        let entries = res.json["entries"].as_array().cloned().unwrap_or_default();
        if !entries.is_empty() && entries.iter().all(|e| e["status"] == status) {
            Ok(res.json)
        } else {
            Err(res.text)
        }
    })
    .await
}

/// In cents, from a JSON amount in currency units.
fn cents(amount: &Value) -> i64 {
    (amount.as_f64().unwrap() * 100.0).round() as i64
}

async fn after_the_sale(ingress: &Ingress) {
    let a = Browser::sign_up(ingress, "a@resale.test").await;
    let b = Browser::sign_up(ingress, "b@resale.test").await;
    let c = Browser::sign_up(ingress, "c@resale.test").await;

    // A lists with the event's details and uploads the file.
    let res = a
        .post(
            "/api/tickets",
            &json!({"title": "Row 5, seat 12", "price": 40, "faceValue": 40,
                "venue": "Paradiso, Amsterdam"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let ticket = res.json["id"].as_str().unwrap().to_owned();
    let url = a.ingress.url(&format!("/api/tickets/{ticket}/file"));
    let upload = a
        .client
        .send(a.client.http.put(url).body(FILE.to_vec()))
        .await;
    assert_eq!(upload.status, StatusCode::NO_CONTENT, "{}", upload.text);
    assert_eq!(download(&a, &ticket).await, (StatusCode::OK, FILE.to_vec()));
    assert_eq!(download(&b, &ticket).await.0, StatusCode::NOT_FOUND);

    // B buys: B gets exactly A's bytes; A no longer.
    buy(&b, &ticket, json!(40)).await;
    assert_eq!(download(&b, &ticket).await, (StatusCode::OK, FILE.to_vec()));
    assert_eq!(download(&a, &ticket).await.0, StatusCode::NOT_FOUND);
    let owned = b.get(&format!("/api/tickets/{ticket}")).await.json;
    assert_eq!(
        (
            owned["forSale"].clone(),
            owned["sold"].clone(),
            owned["orderId"].clone()
        ),
        (json!(false), json!(true), json!(null))
    );

    // B lists it again: above the cap refused, within it on sale.
    let path = format!("/api/tickets/{ticket}");
    let above = b
        .put(
            &path,
            &json!({"title": "Row 5, seat 12", "price": 48.01, "forSale": true}),
        )
        .await;
    assert_eq!(above.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        above.json,
        json!({"errors": [{"message": "Price must be at most 48.00 (120% of the face value 40.00)", "field": "price"}]})
    );
    let relisted = b
        .put(
            &path,
            &json!({"title": "Row 5, seat 12", "price": 48, "forSale": true}),
        )
        .await;
    assert_eq!(relisted.status, StatusCode::OK, "{}", relisted.text);
    assert_eq!(relisted.json["forSale"], json!(true));

    // C buys from B: C gets the file; B no longer.
    buy(&c, &ticket, json!(48)).await;
    assert_eq!(download(&c, &ticket).await, (StatusCode::OK, FILE.to_vec()));
    assert_eq!(download(&b, &ticket).await.0, StatusCode::NOT_FOUND);
    assert_eq!(download(&a, &ticket).await.0, StatusCode::NOT_FOUND);

    // The payouts: each seller is credited the price less 5%, to the cent, and paid once they
    // have a payout account (the development provider's is usable at once).
    for seller in [&a, &b] {
        let res = seller.post("/api/payouts/account", &json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }
    for (seller, price, fee) in [(&a, 4000, 200), (&b, 4800, 240)] {
        let payouts = payouts_when(seller, "paid").await;
        let entries = payouts["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{payouts}");
        let entry = &entries[0];
        assert_eq!(entry["ticketId"], ticket.as_str());
        assert_eq!(
            (
                cents(&entry["price"]),
                cents(&entry["fee"]),
                cents(&entry["amount"])
            ),
            (price, fee, price - fee)
        );
        assert_eq!(
            (
                cents(&payouts["pending"]),
                cents(&payouts["available"]),
                cents(&payouts["paid"])
            ),
            (0, 0, price - fee),
            "{payouts}"
        );
    }
    // C sold nothing.
    assert_eq!(c.get("/api/payouts").await.json["entries"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_sale_through_up() {
    let deployment = Deployment::embedded(ENV);
    after_the_sale(&deployment.ingress()).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_sale_through_serve_processes_on_postgresql_and_nats() {
    let deployment = Deployment::distributed(ENV).await;
    after_the_sale(&deployment.ingress()).await;
    deployment.stop();
}
