//! The races that must never leave money, price and state apart, through whole deployments —
//! `buyticket up` and `buyticket serve` processes on PostgreSQL and NATS — with Stripe played by
//! a local server that speaks its wire format ([`MockStripe`]), so that what was really charged
//! can be checked:
//!
//! 1. a seller's edit racing a buyer's order: the buyer pays the terms the order shows, and a
//!    sold ticket shows what was charged;
//! 2. pay racing cancel: a 201 means the order is complete, a 204 means no charge stands;
//! 3. a crash while a payment waits on the provider: nothing stays stuck, nothing is charged
//!    twice;
//! 4. a randomised rush of buyers, sellers, pays, cancels and expiries, checked at the end
//!    against every order, ticket and charge.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bt_test_support::TestResponse;
use bt_test_support::stripe::{HELD, MockIntent, MockStripe, SECRET_KEY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::deployment::{Browser, Deployment, Ingress, poll_for};

/// How long anything may take to settle through events and the provider.
const SETTLE: Duration = Duration::from_secs(30);

fn stripe_env(mock: &MockStripe) -> Vec<(&'static str, String)> {
    vec![
        ("PAYMENT_PROVIDER", "stripe".to_owned()),
        ("STRIPE_SECRET_KEY", SECRET_KEY.to_owned()),
        ("STRIPE_API_BASE", mock.base.clone()),
    ]
}

fn with<'a>(
    base: &'a [(&'static str, String)],
    more: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut env: Vec<(&'static str, &'a str)> =
        base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(more);
    env
}

async fn embedded(mock: &MockStripe, more: &[(&'static str, &str)]) -> Deployment {
    let env = stripe_env(mock);
    Deployment::embedded(&with(&env, more))
}

async fn distributed(mock: &MockStripe, more: &[(&'static str, &str)]) -> Deployment {
    let env = stripe_env(mock);
    Deployment::distributed(&with(&env, more)).await
}

fn id(json: &Value) -> String {
    json["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id: {json}"))
        .to_owned()
}

/// Lists a ticket; returns its JSON.
async fn list(seller: &Browser, title: &str, price: &str) -> Value {
    let res = seller
        .post("/api/tickets", &json!({"title": title, "price": price}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    res.json
}

/// Pays until the payments service gives a decided answer (201 or 400): a 503 (not known yet,
/// provider busy) or 202 (still deciding) is asked again.
async fn pay_until_decided(buyer: &Browser, order_id: &str, token: &str) -> TestResponse {
    let body = json!({"orderId": order_id, "token": token});
    let body = &body;
    poll_for(SETTLE, "a decided answer to paying", move || async move {
        let res = buyer.post("/api/payments", body).await;
        match res.status {
            StatusCode::CREATED | StatusCode::BAD_REQUEST => Ok(res),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::ACCEPTED => {
                Err(format!("{} {}", res.status, res.text))
            }
            other => panic!("paying answered {other}: {}", res.text),
        }
    })
    .await
}

async fn order_of(buyer: &Browser, order_id: &str) -> Value {
    let res = buyer.get(&format!("/api/orders/{order_id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    res.json
}

/// The order once it is complete or cancelled.
async fn decided_order(buyer: &Browser, order_id: &str) -> Value {
    poll_for(SETTLE, "the order is decided", || async {
        let order = order_of(buyer, order_id).await;
        if order["status"] == "created" {
            Err(order.to_string())
        } else {
            Ok(order)
        }
    })
    .await
}

/// The PaymentIntents of an order at "Stripe".
fn intents_of(mock: &MockStripe, order_id: &str) -> Vec<MockIntent> {
    mock.intents()
        .into_iter()
        .filter(|i| i.order_id == order_id)
        .collect()
}

/// Money taken for an order and not given back.
fn standing(intent: &MockIntent) -> bool {
    intent.status == "succeeded" && !intent.refunded
}

/// Checks, once the provider has settled, that a decided order and the money agree: a complete
/// order has exactly one standing charge, of exactly its price, and shows it; any other order
/// has none and no hold left on the card.
async fn assert_money_matches(mock: &MockStripe, order: &Value) {
    let order_id = id(order);
    let cents = (order["ticket"]["price"].as_f64().unwrap() * 100.0).round() as i64;
    let complete = order["status"] == "complete";
    poll_for(SETTLE, "the provider settles the order's money", || async {
        let intents = intents_of(mock, &order_id);
        let standing: Vec<&MockIntent> = intents.iter().filter(|i| standing(i)).collect();
        let held = intents.iter().any(|i| i.status == "requires_capture");
        let settled = if complete {
            standing.len() == 1 && !held
        } else {
            standing.is_empty() && !held
        };
        if settled {
            Ok(())
        } else {
            Err(format!("{order}: {intents:#?}"))
        }
    })
    .await;
    if complete {
        let charged = intents_of(mock, &order_id)
            .into_iter()
            .find(standing)
            .unwrap();
        assert_eq!(charged.amount, cents, "charged the order's price: {order}");
        assert_eq!(order["payment"]["status"], "succeeded", "{order}");
        assert_eq!(
            order["payment"]["amount"], order["ticket"]["price"],
            "{order}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A seller's edit racing a buyer's order

async fn an_edit_racing_an_order_never_changes_what_the_buyer_pays(
    ingress: &Ingress,
    mock: &MockStripe,
) {
    let seller = Browser::sign_up(ingress, "seller@race1.test").await;
    let buyer = Browser::sign_up(ingress, "buyer@race1.test").await;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..10 {
        let ticket = list(&seller, &format!("Row A, seat {round}"), "10").await;
        let ticket_id = id(&ticket);
        let ticket_path = format!("/api/tickets/{ticket_id}");
        // A third of the rounds the edit leads; a third the order leads by a moment; a third the
        // order is reserved before the edit is sent.
        let order_body = json!({"ticketId": ticket_id});
        let edit_body = json!({"title": format!("Row Z (obstructed), seat {round}"), "price": 99});
        let (order, edit) = match round % 3 {
            0 => {
                let edit = seller.put(&ticket_path, &edit_body).await;
                let order = buyer.post("/api/orders", &order_body).await;
                (order, edit)
            }
            1 => {
                let order = buyer.post("/api/orders", &order_body).await;
                let edit = seller.put(&ticket_path, &edit_body).await;
                (order, edit)
            }
            _ => {
                let order = buyer.post("/api/orders", &order_body).await;
                poll_for(SETTLE, "the ticket is reserved", || async {
                    let ticket = seller.get(&ticket_path).await.json;
                    if ticket["orderId"].is_string() {
                        Ok(())
                    } else {
                        Err(ticket.to_string())
                    }
                })
                .await;
                let edit = seller.put(&ticket_path, &edit_body).await;
                (order, edit)
            }
        };
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
        assert!(
            edit.status == StatusCode::OK
                || edit.json == json!({"errors": [{"message": "Cannot edit a reserved ticket"}]}),
            "{}",
            edit.text
        );
        let order_id = id(&order.json);
        let paid = pay_until_decided(&buyer, &order_id, "tok_visa").await;
        let order = decided_order(&buyer, &order_id).await;
        if paid.status == StatusCode::CREATED {
            // 201: complete, at the terms the order shows, which the sold ticket shows too (once
            // the tickets service has heard of it).
            assert_eq!(order["status"], "complete", "{order}");
            let ticket = poll_for(SETTLE, "the ticket is sold", || async {
                let ticket = seller.get(&ticket_path).await.json;
                if ticket["sold"] == true {
                    Ok(ticket)
                } else {
                    Err(ticket.to_string())
                }
            })
            .await;
            // Sold to the order's buyer, who owns it now.
            assert_eq!(
                (&ticket["orderId"], &ticket["userId"]),
                (&json!(null), &order["userId"]),
                "{ticket} / {order}"
            );
            assert_eq!(
                (&ticket["title"], &ticket["price"]),
                (&order["ticket"]["title"], &order["ticket"]["price"]),
                "the sold ticket shows what was charged: {ticket} / {order}"
            );
        } else {
            // Refused: the reservation was made on terms the seller had changed.
            assert_eq!(order["status"], "cancelled", "{order} / {}", paid.text);
            assert_eq!(order["cancelReason"], "ticket_changed", "{order}");
            let ticket = seller.get(&ticket_path).await.json;
            assert_ne!(ticket["sold"], true, "{ticket}");
        }
        assert_money_matches(mock, &order).await;
        *outcomes
            .entry(format!("edit {} / pay {}", edit.status, paid.status))
            .or_default() += 1;
    }
    eprintln!("race 1 outcomes: {outcomes:?}");
    assert!(
        outcomes.contains_key("edit 400 Bad Request / pay 201 Created")
            && outcomes.keys().any(|k| k.starts_with("edit 200 OK")),
        "both ways of ending: {outcomes:?}"
    );
    mock.assert_wire_format_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_1_edit_versus_order_through_up() {
    let mock = MockStripe::start().await;
    let deployment = embedded(&mock, &[]).await;
    an_edit_racing_an_order_never_changes_what_the_buyer_pays(&deployment.ingress(), &mock).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_1_edit_versus_order_through_serve_processes() {
    let mock = MockStripe::start().await;
    let deployment = distributed(&mock, &[]).await;
    an_edit_racing_an_order_never_changes_what_the_buyer_pays(&deployment.ingress(), &mock).await;
    deployment.stop();
}

// ---------------------------------------------------------------------------------------------
// 2. Pay racing cancel

async fn pay_and_cancel_never_both_succeed(ingress: &Ingress, mock: &MockStripe) {
    let seller = Browser::sign_up(ingress, "seller@race2.test").await;
    let buyer = Browser::sign_up(ingress, "buyer@race2.test").await;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..4usize {
        let ticket = list(&seller, &format!("Show {round}"), "42.10").await;
        let order = buyer
            .post("/api/orders", &json!({"ticketId": id(&ticket)}))
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
        let order_id = id(&order.json);
        let order_path = format!("/api/orders/{order_id}");
        let body = json!({"orderId": order_id, "token": "tok_visa"});

        // 19 pays and one cancel, at once.
        let pays = futures::future::join_all((0..19).map(|_| buyer.post("/api/payments", &body)));
        let (pays, cancel) = tokio::join!(pays, async {
            tokio::time::sleep(Duration::from_millis([0, 30, 120, 400][round])).await;
            buyer.delete(&order_path).await
        });
        let paid = pays.iter().any(|r| r.status == StatusCode::CREATED);
        for res in &pays {
            assert!(
                [
                    StatusCode::CREATED,
                    StatusCode::BAD_REQUEST,
                    StatusCode::ACCEPTED,
                    StatusCode::SERVICE_UNAVAILABLE
                ]
                .contains(&res.status),
                "{} {}",
                res.status,
                res.text
            );
        }
        let cancelled = cancel.status == StatusCode::NO_CONTENT;
        assert!(
            !(paid && cancelled),
            "pay answered 201 and cancel 204: {:?} / {}",
            pays.iter().map(|r| r.status).collect::<Vec<_>>(),
            cancel.text
        );
        let order = decided_order(&buyer, &order_id).await;
        if paid {
            assert_eq!(order["status"], "complete", "a 201 means complete: {order}");
            assert_eq!(
                cancel.json,
                json!({"errors": [{"message": "Cannot cancel a completed order"}]})
            );
        }
        if cancelled {
            assert_eq!(
                order["status"], "cancelled",
                "a 204 means cancelled: {order}"
            );
        }
        assert_money_matches(mock, &order).await;
        *outcomes
            .entry(format!(
                "paid {paid} / cancelled {cancelled} / {}",
                order["status"]
            ))
            .or_default() += 1;
    }
    eprintln!("race 2 outcomes: {outcomes:?}");
    mock.assert_wire_format_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_2_pay_versus_cancel_through_up() {
    let mock = MockStripe::start().await;
    let deployment = embedded(&mock, &[]).await;
    pay_and_cancel_never_both_succeed(&deployment.ingress(), &mock).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_2_pay_versus_cancel_through_serve_processes() {
    let mock = MockStripe::start().await;
    let deployment = distributed(&mock, &[]).await;
    pay_and_cancel_never_both_succeed(&deployment.ingress(), &mock).await;
    deployment.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. A crash while a payment waits on the provider

async fn a_crash_mid_payment_leaves_nothing_stuck(
    mut deployment: Deployment,
    crashing: &'static str,
    mock: &MockStripe,
) {
    let ingress = deployment.ingress();
    let seller = Browser::sign_up(&ingress, "seller@race3.test").await;
    let buyer = Browser::sign_up(&ingress, "buyer@race3.test").await;
    let ticket = list(&seller, "Front row", "55").await;
    let order = buyer
        .post("/api/orders", &json!({"ticketId": id(&ticket)}))
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
    let order_id = id(&order.json);

    // The pay request waits on Stripe; the process dies with it in flight.
    let body = json!({"orderId": order_id, "token": HELD});
    let in_flight = {
        let client = buyer.client.clone();
        let url = ingress.url("/api/payments");
        let body = body.clone();
        tokio::spawn(async move {
            bt_test_support::TestClient::try_send(client.http.post(url).json(&body)).await
        })
    };
    poll_for(SETTLE, "Stripe received the payment", || async {
        if intents_of(mock, &order_id).is_empty() && mock.requests().is_empty() {
            Err("nothing yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    deployment.kill(crashing);
    assert!(
        in_flight.await.unwrap().is_err(),
        "the connection died with the process"
    );
    // Stripe went on with it meanwhile.
    mock.release();
    deployment.start(crashing);

    // The buyer asks again: the attempt is reconciled with Stripe, never left blocking.
    let paid = pay_until_decided(&buyer, &order_id, "tok_visa").await;
    assert!(
        paid.status == StatusCode::CREATED
            || paid.json == json!({"errors": [{"message": "Order is already paid"}]}),
        "{}",
        paid.text
    );
    let order = decided_order(&buyer, &order_id).await;
    assert_eq!(order["status"], "complete", "{order}");
    assert_money_matches(mock, &order).await;
    assert_eq!(
        intents_of(mock, &order_id).len(),
        1,
        "one PaymentIntent, no second charge"
    );
    mock.assert_wire_format_kept();
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_3_crash_mid_payment_through_up() {
    let mock = MockStripe::start().await;
    let deployment = embedded(&mock, &[]).await;
    a_crash_mid_payment_leaves_nothing_stuck(deployment, "all", &mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_3_crash_of_the_payments_service_mid_payment_through_serve_processes() {
    let mock = MockStripe::start().await;
    let deployment = distributed(&mock, &[]).await;
    a_crash_mid_payment_leaves_nothing_stuck(deployment, "payments", &mock).await;
}

// ---------------------------------------------------------------------------------------------
// 4. A randomised rush

/// The payment window of the rush: short, so that expiries race with the rest.
const RUSH_WINDOW_SECS: u64 = 3;

async fn a_randomised_rush_keeps_money_price_and_state_together(
    ingress: &Ingress,
    mock: &MockStripe,
) {
    let seed: u64 = std::env::var("RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("randomised rush: RACE_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sellers = Vec::new();
    for i in 0..3 {
        sellers.push(Browser::sign_up(ingress, &format!("seller{i}@rush.test")).await);
    }
    let mut buyers = Vec::new();
    for i in 0..6 {
        buyers.push(Browser::sign_up(ingress, &format!("buyer{i}@rush.test")).await);
    }
    // (ticket id, seller index)
    let mut tickets = Vec::new();
    for i in 0..10 {
        let seller = i % sellers.len();
        let ticket = list(
            &sellers[seller],
            &format!("Seat {i}"),
            &format!("{}.{:02}", 10 + i, i),
        )
        .await;
        tickets.push((id(&ticket), seller));
    }

    // Rounds of concurrent actions, one per person.
    for _ in 0..12 {
        let mut actions = Vec::new();
        for (b, buyer) in buyers.iter().enumerate() {
            let (ticket, _) = tickets[rng.random_range(0..tickets.len())].clone();
            let action = rng.random_range(0..4);
            let token = if rng.random_bool(0.2) {
                "tok_chargeDeclined"
            } else {
                "tok_visa"
            };
            let pause = rng.random_range(0..30);
            actions.push(Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let mine = buyer.get("/api/orders").await.json;
                let open: Vec<String> = mine
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| o["status"] == "created")
                    .map(id)
                    .collect();
                match (action, open.first()) {
                    (1, Some(order)) => {
                        let _ = buyer
                            .post("/api/payments", &json!({"orderId": order, "token": token}))
                            .await;
                    }
                    (2, Some(order)) => {
                        let _ = buyer.delete(&format!("/api/orders/{order}")).await;
                    }
                    // Leave the open order to expire, or order another ticket.
                    (3, Some(_)) => {}
                    _ => {
                        let _ = buyer
                            .post("/api/orders", &json!({"ticketId": ticket}))
                            .await;
                    }
                }
                b
            })
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = usize> + Send + '_>,
                >);
        }
        for (s, seller) in sellers.iter().enumerate() {
            let own: Vec<String> = tickets
                .iter()
                .filter(|(_, owner)| *owner == s)
                .map(|(t, _)| t.clone())
                .collect();
            let ticket = own[rng.random_range(0..own.len())].clone();
            let price = format!(
                "{}.{:02}",
                rng.random_range(5..60),
                rng.random_range(0..100)
            );
            let title = format!("Seat, edit {}", rng.random_range(0..1000));
            let pause = rng.random_range(0..30);
            actions.push(Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let _ = seller
                    .put(
                        &format!("/api/tickets/{ticket}"),
                        &json!({"title": title, "price": price}),
                    )
                    .await;
                s
            }));
        }
        futures::future::join_all(actions).await;
    }

    // Let every open order expire and everything settle.
    tokio::time::sleep(Duration::from_secs(RUSH_WINDOW_SECS + 1)).await;
    let mut orders: Vec<(usize, Value)> = Vec::new();
    for (b, buyer) in buyers.iter().enumerate() {
        let mine = buyer.get("/api/orders").await.json;
        for order in mine.as_array().unwrap() {
            let decided = decided_order(buyer, &id(order)).await;
            orders.push((b, decided));
        }
    }
    assert!(orders.len() >= 10, "the rush made orders: {}", orders.len());

    let mut complete_per_ticket: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (_, order) in &orders {
        assert_money_matches(mock, order).await;
        if order["status"] == "complete" {
            complete_per_ticket
                .entry(order["ticket"]["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(order.clone());
        }
    }
    for (ticket_id, _) in &tickets {
        let ticket = sellers[0]
            .get(&format!("/api/tickets/{ticket_id}"))
            .await
            .json;
        match complete_per_ticket.get(ticket_id).map(Vec::as_slice) {
            None | Some([]) => {
                assert_ne!(
                    ticket["sold"], true,
                    "sold without a complete order: {ticket}"
                );
                let released = poll_for(SETTLE, "an unsold ticket is back on sale", || async {
                    let ticket = sellers[0]
                        .get(&format!("/api/tickets/{ticket_id}"))
                        .await
                        .json;
                    if ticket["orderId"].is_null() {
                        Ok(ticket)
                    } else {
                        Err(ticket.to_string())
                    }
                })
                .await;
                assert_eq!(released["sold"], false);
            }
            Some([order]) => {
                let sold = poll_for(SETTLE, "the ticket of a complete order is sold", || async {
                    let ticket = sellers[0]
                        .get(&format!("/api/tickets/{ticket_id}"))
                        .await
                        .json;
                    if ticket["sold"] == true {
                        Ok(ticket)
                    } else {
                        Err(ticket.to_string())
                    }
                })
                .await;
                // Sold to the order's buyer, who owns it now.
                assert_eq!(
                    (&sold["orderId"], &sold["userId"]),
                    (&json!(null), &order["userId"]),
                    "{sold} / {order}"
                );
                assert_eq!(
                    (&sold["title"], &sold["price"]),
                    (&order["ticket"]["title"], &order["ticket"]["price"]),
                    "the sold ticket shows what was charged: {sold} / {order}"
                );
            }
            Some(many) => panic!("ticket {ticket_id} sold {} times: {many:#?}", many.len()),
        }
    }
    // No hold left on any card, no money taken for anything that is not a complete order.
    let complete: Vec<String> = orders
        .iter()
        .filter(|(_, o)| o["status"] == "complete")
        .map(|(_, o)| id(o))
        .collect();
    for intent in mock.intents() {
        assert_ne!(
            intent.status, "requires_capture",
            "a hold left on a card: {intent:?}"
        );
        if standing(&intent) {
            assert!(
                complete.contains(&intent.order_id),
                "money taken for {intent:?}"
            );
        }
    }
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for (_, order) in &orders {
        let key = format!("{} {}", order["status"], order["cancelReason"]);
        *summary.entry(key).or_default() += 1;
    }
    eprintln!(
        "rush: {} orders {summary:?}; {} intents",
        orders.len(),
        mock.intents().len()
    );
    mock.assert_wire_format_kept();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_4_randomised_rush_through_up() {
    let mock = MockStripe::start().await;
    let window = RUSH_WINDOW_SECS.to_string();
    let deployment = embedded(&mock, &[("ORDER_EXPIRATION_SECONDS", &window)]).await;
    a_randomised_rush_keeps_money_price_and_state_together(&deployment.ingress(), &mock).await;
    deployment.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_4_randomised_rush_through_serve_processes() {
    let mock = MockStripe::start().await;
    let window = RUSH_WINDOW_SECS.to_string();
    let deployment = distributed(&mock, &[("ORDER_EXPIRATION_SECONDS", &window)]).await;
    a_randomised_rush_keeps_money_price_and_state_together(&deployment.ingress(), &mock).await;
    deployment.stop();
}
