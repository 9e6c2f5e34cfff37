//! The purchase flow end to end, through the `buyticket` binary as it is run: once through
//! `buyticket up` (SQLite, in-process event log, one listener), once through separate
//! `buyticket serve` processes on PostgreSQL and NATS JetStream, with this test as the ingress.
//!
//! create a ticket → it becomes orderable → order it → the ticket shows `orderId` and cannot
//! be edited → cancel → the ticket is free, editable and orderable again.

mod support;

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::deployment::{Browser, Deployment, Ingress};

/// How long the replicas may take to catch up through events.
const CATCH_UP: Duration = Duration::from_secs(20);

/// Waits (up to [`CATCH_UP`]) until `attempt` gives `Ok`.
async fn poll<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    support::poll(CATCH_UP, Duration::from_millis(50), what, attempt).await
}

fn error(message: &str) -> Value {
    json!({"errors": [{"message": message}]})
}

/// The ids of the tickets on sale (the first page of the listing).
async fn listed(browser: &Browser) -> Vec<String> {
    let res = browser.get("/api/tickets").await;
    assert_eq!(res.status, StatusCode::OK, "listing: {}", res.text);
    res.json
        .as_array()
        .unwrap_or_else(|| panic!("the listing is an array: {}", res.text))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Orders `ticket_id`, waiting while the orders service does not know the ticket yet (503 after
/// a bounded wait; 404 only for a ticket older than the wait): its replica learns tickets
/// through events.
async fn order_when_known(buyer: &Browser, ticket_id: &str) -> Value {
    let body = json!({"ticketId": ticket_id});
    let body = &body;
    poll("the orders service knows the ticket", move || async move {
        let res = buyer.post("/api/orders", body).await;
        match res.status {
            StatusCode::CREATED => Ok(res.json),
            StatusCode::SERVICE_UNAVAILABLE => Err(res.text),
            other => panic!("ordering answered {other}: {}", res.text),
        }
    })
    .await
}

/// Waits until the ticket at `path` satisfies `check`, and returns it.
async fn ticket_when(
    browser: &Browser,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let check = &check;
    poll(what, move || async move {
        let res = browser.get(path).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.text);
        if check(&res.json) {
            Ok(res.json)
        } else {
            Err(res.text)
        }
    })
    .await
}

fn version(json: &Value) -> i64 {
    json["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("a version: {json}"))
}

async fn purchase_flow(ingress: &Ingress) {
    // The seller lists a ticket.
    let seller = Browser::sign_up(ingress, "seller@test.com").await;
    let res = seller
        .post(
            "/api/tickets",
            &json!({"title": "Concert, row 1", "price": 20.5}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let created = res.json;
    assert_eq!(created["title"], "Concert, row 1");
    assert_eq!(created["price"], json!(20.5));
    assert_eq!(created["userId"], json!(seller.id));
    assert_eq!(created["orderId"], Value::Null);
    let ticket_id = created["id"].as_str().unwrap().to_owned();
    let ticket_path = format!("/api/tickets/{ticket_id}");
    assert!(listed(&seller).await.contains(&ticket_id));

    // A buyer orders it as soon as the orders service has heard of it.
    let buyer = Browser::sign_up(ingress, "buyer@test.com").await;
    let order = order_when_known(&buyer, &ticket_id).await;
    assert_eq!(order["status"], "created", "{order}");
    assert_eq!(order["userId"], json!(buyer.id));
    assert_eq!(order["ticket"]["id"], json!(ticket_id));
    assert_eq!(order["ticket"]["title"], "Concert, row 1");
    assert_eq!(order["ticket"]["price"], json!(20.5));
    assert!(
        order["expiresAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let order_id = order["id"].as_str().unwrap().to_owned();
    let order_path = format!("/api/orders/{order_id}");

    // The tickets service learns of the reservation: the ticket names the order, is off the
    // market and cannot be edited.
    let reserved = ticket_when(&seller, &ticket_path, "the ticket shows the order", |t| {
        t["orderId"] == json!(order_id)
    })
    .await;
    assert!(version(&reserved) > version(&created), "{reserved}");
    let res = seller
        .put(
            &ticket_path,
            &json!({"title": "Concert, row 2", "price": 25}),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Cannot edit a reserved ticket"));
    assert_eq!(seller.get(&ticket_path).await.json, reserved, "unchanged");
    assert!(!listed(&seller).await.contains(&ticket_id));

    // Nobody else can order it meanwhile.
    let rival = Browser::sign_up(ingress, "rival@test.com").await;
    let res = rival
        .post("/api/orders", &json!({"ticketId": ticket_id}))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    assert_eq!(res.json, error("Ticket is already reserved"));

    let mine = buyer.get("/api/orders").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let ids: Vec<&Value> = mine
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&json!(order_id)], "{}", mine.text);
    let theirs = rival.get(&order_path).await;
    assert_eq!(theirs.status, StatusCode::UNAUTHORIZED, "{}", theirs.text);

    // The buyer cancels: the ticket is free, listed and editable again.
    let res = buyer.delete(&order_path).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    let res = buyer.get(&order_path).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json["status"], "cancelled", "{}", res.text);
    let freed = ticket_when(&seller, &ticket_path, "the ticket is free", |t| {
        t["orderId"].is_null()
    })
    .await;
    assert!(version(&freed) > version(&reserved), "{freed}");
    assert!(listed(&seller).await.contains(&ticket_id));
    let res = seller
        .put(
            &ticket_path,
            &json!({"title": "Concert, row 2", "price": "25.50"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let edited = res.json;
    assert_eq!(version(&edited), version(&freed) + 1, "{edited}");
    assert_eq!(edited["title"], "Concert, row 2");
    assert_eq!(edited["price"], json!(25.5));
    assert_eq!(edited["orderId"], Value::Null);

    // The other buyer can order it now, at the new terms. An order placed before the edit
    // reached the orders service carries the old terms: the tickets service refuses it and it is
    // cancelled, saying why — then the buyer orders again.
    let (rival, ticket_id_ref) = (&rival, &ticket_id);
    let second = poll("an order at the new terms", move || async move {
        let res = rival
            .post("/api/orders", &json!({"ticketId": ticket_id_ref}))
            .await;
        match res.status {
            StatusCode::CREATED if res.json["ticket"]["title"] == "Concert, row 2" => Ok(res.json),
            StatusCode::CREATED => {
                let path = format!("/api/orders/{}", res.json["id"].as_str().unwrap());
                let refused = poll("the stale order is refused", || async {
                    let order = rival.get(&path).await.json;
                    if order["status"] == "cancelled" {
                        Ok(order)
                    } else {
                        Err(order.to_string())
                    }
                })
                .await;
                assert_eq!(refused["cancelReason"], "ticket_changed", "{refused}");
                Err(format!("placed on stale terms: {}", res.text))
            }
            // Reserved by the stale order until its cancellation arrives.
            StatusCode::BAD_REQUEST => Err(res.text),
            other => panic!("ordering answered {other}: {}", res.text),
        }
    })
    .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, order_id);
    let reserved_again = ticket_when(rival, &ticket_path, "the ticket shows the new order", |t| {
        t["orderId"] == json!(second_id)
    })
    .await;
    assert!(version(&reserved_again) > version(&edited));
    assert_eq!(second["status"], "created");
    // The order keeps the terms it was placed on: what the buyer saw is what the buyer pays.
    assert_eq!(
        second["ticket"],
        json!({"id": ticket_id, "title": "Concert, row 2", "price": 25.5, "version": version(&edited)})
    );
    let shown = rival.get(&format!("/api/orders/{second_id}")).await.json;
    assert_eq!(shown["ticket"], second["ticket"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_flow_through_up() {
    let deployment = Deployment::embedded(&[]);
    purchase_flow(&deployment.ingress()).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_flow_through_serve_processes_on_postgresql_and_nats() {
    let deployment = Deployment::distributed(&[]).await;
    let ingress = deployment.ingress();
    assert!(
        ingress.auth != ingress.tickets && ingress.tickets != ingress.orders,
        "one listener per service: {ingress:?}"
    );
    purchase_flow(&ingress).await;
    deployment.stop();
}

/// The order window of the expiry tests.
const SHORT_WINDOW_SECS: u64 = 3;

/// An unpaid order expires and its ticket is back on sale; a paid order completes, its ticket
/// goes to the buyer and stays off the market (also after the window) until they list it
/// again, and the expired order cannot be paid.
async fn expiry_and_payment_flow(ingress: &Ingress) {
    let seller = Browser::sign_up(ingress, "seller@test.com").await;
    let buyer = Browser::sign_up(ingress, "buyer@test.com").await;
    let mut ids = Vec::new();
    for title in ["Left unpaid", "Paid for"] {
        let res = seller
            .post("/api/tickets", &json!({"title": title, "price": "42.10"}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        ids.push(res.json["id"].as_str().unwrap().to_owned());
    }
    let (unpaid_ticket, paid_ticket) = (ids[0].clone(), ids[1].clone());

    // Unpaid: cancelled by the expiration service once the window is over.
    let unpaid = order_when_known(&buyer, &unpaid_ticket).await;
    let unpaid_id = unpaid["id"].as_str().unwrap().to_owned();
    let expires_at: chrono::DateTime<chrono::Utc> =
        unpaid["expiresAt"].as_str().unwrap().parse().unwrap();
    let window = expires_at - chrono::Utc::now();
    assert!(
        window <= chrono::Duration::seconds(SHORT_WINDOW_SECS as i64),
        "{window}"
    );

    // Paid: the payments replica may need a moment to learn the order (404 until then).
    let paid = order_when_known(&buyer, &paid_ticket).await;
    let paid_id = paid["id"].as_str().unwrap().to_owned();
    let payment = buyer.pay(&paid_id, CATCH_UP).await;
    assert!(payment["id"].is_string(), "{payment}");

    let paid_path = format!("/api/orders/{paid_id}");
    let unpaid_path = format!("/api/orders/{unpaid_id}");
    poll("the paid order is complete", || async {
        let res = buyer.get(&paid_path).await;
        if res.json["status"] == "complete" {
            Ok(())
        } else {
            Err(res.text)
        }
    })
    .await;
    poll("the unpaid order expired", || async {
        let res = buyer.get(&unpaid_path).await;
        if res.json["status"] == "cancelled" {
            Ok(())
        } else {
            Err(res.text)
        }
    })
    .await;
    let cancelled_after = chrono::Utc::now() - expires_at;
    assert!(
        cancelled_after < chrono::Duration::seconds(2),
        "cancelled {cancelled_after} after expiresAt"
    );

    ticket_when(
        &buyer,
        &format!("/api/tickets/{unpaid_ticket}"),
        "the expired order's ticket is free",
        |t| t["orderId"].is_null(),
    )
    .await;
    assert!(
        listed(&buyer).await.contains(&unpaid_ticket),
        "back on sale"
    );
    let sold = ticket_when(
        &buyer,
        &format!("/api/tickets/{paid_ticket}"),
        "the paid ticket is sold",
        |t| t["sold"] == true,
    )
    .await;
    // The buyer owns it now, off sale (no order holds it any more).
    assert_eq!(
        (
            sold["userId"].as_str(),
            sold["orderId"].clone(),
            sold["forSale"].clone()
        ),
        (Some(buyer.id.as_str()), json!(null), json!(false))
    );

    // After the window: the paid order stays complete and its ticket off the market.
    tokio::time::sleep(Duration::from_secs(SHORT_WINDOW_SECS)).await;
    assert_eq!(buyer.get(&paid_path).await.json["status"], "complete");
    assert!(
        !listed(&buyer).await.contains(&paid_ticket),
        "a sold ticket is never back on sale"
    );
    let latecomer = Browser::sign_up(ingress, "latecomer@test.com").await;
    let again = order_or_refusal(&latecomer, &paid_ticket).await;
    assert_eq!(again, error("This ticket is not for sale"));

    // The expired order cannot be paid (once the payments replica learned the cancellation).
    let body = json!({"orderId": unpaid_id, "token": "tok_visa"});
    poll("paying the expired order is refused", || async {
        let res = buyer.post("/api/payments", &body).await;
        if res.status == StatusCode::BAD_REQUEST
            && res.json == error("Cannot pay for an expired order")
        {
            Ok(())
        } else {
            Err(format!("{} {}", res.status, res.text))
        }
    })
    .await;
}

/// The body of a refused order (the ticket is known to the orders service by now).
async fn order_or_refusal(browser: &Browser, ticket_id: &str) -> Value {
    let res = browser
        .post("/api/orders", &json!({"ticketId": ticket_id}))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text);
    res.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_expire_and_payments_complete_through_up() {
    let window = SHORT_WINDOW_SECS.to_string();
    let deployment = Deployment::embedded(&[("ORDER_EXPIRATION_SECONDS", &window)]);
    expiry_and_payment_flow(&deployment.ingress()).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_expire_and_payments_complete_through_serve_processes_on_postgresql_and_nats() {
    let window = SHORT_WINDOW_SECS.to_string();
    let deployment = Deployment::distributed(&[("ORDER_EXPIRATION_SECONDS", &window)]).await;
    expiry_and_payment_flow(&deployment.ingress()).await;
    deployment.stop();
}
