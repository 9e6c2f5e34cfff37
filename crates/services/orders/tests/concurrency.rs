//! No oversell under load: many buyers racing for few tickets get exactly one order per ticket,
//! on SQLite (with the in-process bus) and on PostgreSQL (with NATS), there also through two
//! replicas at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bt_contract::events::TicketCreated;
use bt_test_support::{Backend, TestUser, backend_tests, eventually, publish};
use common::{TestApp, ticket_data};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BUYERS: usize = 500;
const TICKETS: usize = 20;

async fn five_hundred_buyers_racing_for_twenty_tickets_get_exactly_twenty_orders(backend: Backend) {
    // The service runs with its default database pool (10 connections, 5 s acquire timeout).
    let app = TestApp::spawn(backend).await;
    race(&app, &[app.server.url("/api/orders")]).await;
}

/// PostgreSQL only: replicas share its database there (`serve`); on SQLite one process is the
/// only writer. The buyers are split between two replicas, whose group writers race for the
/// same tickets (and pass over a ticket the other is writing, without waiting for it).
#[tokio::test]
async fn five_hundred_buyers_on_two_replicas_racing_for_twenty_tickets_get_exactly_twenty_orders() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (other, _runtime) = app.replica().await;
    race(
        &app,
        &[app.server.url("/api/orders"), other.url("/api/orders")],
    )
    .await;
}

/// 500 buyers order 20 tickets all at once, buyer `i` ticket `i % 20` through
/// `urls[(i / 20) % urls.len()]` (so that each ticket's buyers are split among the URLs): exactly
/// one order per ticket, every other buyer refused.
async fn race(app: &TestApp, urls: &[String]) {
    // Arrange: 20 tickets of one seller in the replica, 500 other users with their sessions.
    let seller = TestUser::new();
    let mut tickets = Vec::new();
    for i in 0..TICKETS {
        let ticket = ticket_data(&seller, &format!("Seat {i}"), 1000);
        publish(&app.bus.bus, TicketCreated(ticket.clone())).await;
        tickets.push(ticket.id);
    }
    eventually(20, "the replica holds the 20 tickets", || async {
        app.count("SELECT COUNT(*) FROM tickets").await == TICKETS as i64
    })
    .await;
    let buyers: Vec<TestUser> = (0..BUYERS).map(|_| TestUser::new()).collect();
    // One connection pool shared by every buyer; each request carries its buyer's session.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(BUYERS)
        .build()
        .unwrap();

    // Act: every buyer orders ticket i % 20, all at once.
    let requests = buyers.iter().enumerate().map(|(i, buyer)| {
        let request = http
            .post(&urls[(i / TICKETS) % urls.len()])
            .bearer_auth(&buyer.token)
            .json(&json!({"ticketId": tickets[i % TICKETS]}));
        async move {
            let res = request.send().await.expect("request sent");
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (i, status, body)
        }
    });
    let responses = futures::future::join_all(requests).await;

    // Assert: 20 orders, one per ticket; 480 refusals, each the contract's 400.
    let mut unexpected: BTreeMap<String, usize> = BTreeMap::new();
    let mut ordered_tickets = BTreeSet::new();
    let mut winners = Vec::new();
    let mut refused = 0;
    for (i, status, body) in &responses {
        match *status {
            StatusCode::CREATED => {
                assert_eq!(body["userId"], buyers[*i].id.as_str(), "{body}");
                assert_eq!(
                    body["ticket"]["id"],
                    tickets[i % TICKETS].as_str(),
                    "{body}"
                );
                assert_eq!(body["status"], "created", "{body}");
                ordered_tickets.insert(tickets[i % TICKETS].clone());
                winners.push(body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::BAD_REQUEST
                if *body == json!({"errors": [{"message": "Ticket is already reserved"}]}) =>
            {
                refused += 1;
            }
            other => *unexpected.entry(format!("{other} {body}")).or_default() += 1,
        }
    }
    assert!(
        unexpected.is_empty(),
        "every request is either 201 or 400 Ticket is already reserved; also got: {unexpected:#?}"
    );
    assert_eq!((winners.len(), refused), (TICKETS, BUYERS - TICKETS));
    assert_eq!(ordered_tickets.len(), TICKETS, "one order per ticket");

    // The database agrees: exactly 20 orders, all active, one per ticket, and one
    // order.created staged per order — none for a refused request.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders").await,
        TICKETS as i64
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(DISTINCT ticket_id) FROM orders WHERE status IN ('created', 'awaiting:payment', 'complete')"
        )
        .await,
        TICKETS as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE subject = 'order.created'")
            .await,
        TICKETS as i64
    );
    for id in &winners {
        assert_eq!(app.stored_order(id).await, ("created".to_owned(), 0));
    }
}

backend_tests!(five_hundred_buyers_racing_for_twenty_tickets_get_exactly_twenty_orders);
