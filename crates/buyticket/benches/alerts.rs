//! Ticket alerts under a crowd: `cargo bench -p buyticket --bench alerts`.
//!
//! Starts a deployment — `buyticket up`, and the distributed mode (one `serve` process per
//! service on PostgreSQL and NATS) — where ALERT_SUBSCRIBERS users (default 1,000) each set an
//! alert for "opera"; then a seller lists ALERT_LISTINGS matching tickets (default 20), one
//! every ALERT_GAP_MS (default 500), plus as many that match nothing. After each matching
//! listing's `201` it polls (every 5 ms) the notifications of the first and of the last
//! subscriber in line through the API until the alert shows: the time a fan waits for it. At
//! the end every subscriber must have been notified of every matching listing once, in the
//! order they subscribed (read from the notifications database).
//!
//! ALERT_MODES=up,distributed picks the modes (default both).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use bt_contract::SessionKeys;
use bt_platform::db::DbOptions;
use bt_platform::{Db, on_db};
use serde_json::json;
use support::bench::{env_u64, percentile, post_all};
use support::deployment::{Deployment, KEY};

async fn run(mode: &str, deployment: Deployment, subscribers: u64, listings: u64, gap: u64) {
    let ingress = deployment.ingress();
    let sessions = SessionKeys::new(KEY.as_bytes(), Duration::from_secs(3600), false);
    let token = |name: &str| {
        sessions
            .issue(name, &format!("{name}@bench.test"))
            .unwrap()
            .0
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    // Subscribers, one after the other in batches: their alerts' order is the line.
    let alerts: Vec<(String, serde_json::Value)> = (0..subscribers)
        .map(|i| {
            (
                token(&uuid::Uuid::now_v7().to_string()),
                json!({"q": if i % 2 == 0 { "opera" } else { "OPERA" }}),
            )
        })
        .collect();
    let tokens: Vec<String> = alerts.iter().map(|(token, _)| token.clone()).collect();
    let set = post_all(&http, &ingress.url("/api/alerts"), alerts, 16).await;
    assert_eq!(set.len() as u64, subscribers);
    // The line: the oldest alert first.
    let mut line: Vec<(String, String)> = set
        .iter()
        .zip(&tokens)
        .map(|(alert, token)| (alert["id"].as_str().unwrap().to_owned(), token.clone()))
        .collect();
    line.sort();
    let (first_in_line, last_in_line) = (&line[0].1, &line[line.len() - 1].1);
    let notified = |token: &String, count: usize| {
        let http = http.clone();
        let url = ingress.url("/api/notifications?limit=1");
        let token = token.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let list: serde_json::Value = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("the deployment answers")
                    .json()
                    .await
                    .expect("a notification list");
                if list["unread"].as_u64().unwrap_or_default() as usize >= count {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "never notified"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let (mut first, mut last) = (Vec::new(), Vec::new());

    let seller = token(&uuid::Uuid::now_v7().to_string());
    let mut listed = Vec::new();
    for i in 0..listings {
        let mut waits = None;
        for (title, matching) in [
            (format!("Opera Gala night {i}"), true),
            (format!("Jazz night {i}"), false),
        ] {
            let res = http
                .post(ingress.url("/api/tickets"))
                .bearer_auth(&seller)
                .json(&json!({"title": title, "price": 40}))
                .send()
                .await
                .expect("the deployment answers");
            assert_eq!(res.status().as_u16(), 201);
            let ticket: serde_json::Value = res.json().await.unwrap();
            if matching {
                listed.push(ticket["id"].as_str().unwrap().to_owned());
                let count = listed.len();
                waits = Some(tokio::join!(
                    notified(first_in_line, count),
                    notified(last_in_line, count)
                ));
            }
        }
        let (to_first, to_last) = waits.expect("a matching listing");
        first.push(to_first.as_millis() as i64);
        last.push(to_last.as_millis() as i64);
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }

    let db = Db::connect(
        &deployment.database_url("notifications"),
        &DbOptions::default(),
    )
    .await
    .expect("the notifications database");
    let expected = (subscribers * listings) as i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let told: i64 = on_db!(&db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE kind = 'ticket_alert'"
        )
        .fetch_one(pool)
        .await)
        .unwrap();
        if told >= expected {
            assert_eq!(told, expected, "{mode}: told more than once");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{mode}: only {told} of {expected} alert notifications"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for ticket in &listed {
        let link = format!("/tickets/{ticket}");
        let told: Vec<String> = on_db!(&db, |pool| sqlx::query_scalar(
            "SELECT a.id FROM notifications n JOIN alerts a ON a.user_id = n.user_id \
             WHERE n.link = $1 ORDER BY n.id"
        )
        .bind(&link)
        .fetch_all(pool)
        .await)
        .unwrap();
        assert_eq!(told.len() as u64, subscribers, "{mode}: {ticket}");
        assert!(
            told.windows(2).all(|w| w[0] < w[1]),
            "{mode}: subscribers were told in the order they subscribed"
        );
    }
    first.sort_unstable();
    last.sort_unstable();
    println!(
        "{mode}: {subscribers} subscribers x {listings} listings; first subscriber told after \
         p50 {} ms, p99 {} ms; last after p50 {} ms, p99 {} ms, max {} ms",
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        percentile(&last, 0.5),
        percentile(&last, 0.99),
        last.last().copied().unwrap_or_default(),
    );
    db.close().await;
    deployment.stop();
}

#[tokio::main]
async fn main() {
    let subscribers = env_u64("ALERT_SUBSCRIBERS", 1_000);
    let listings = env_u64("ALERT_LISTINGS", 20);
    let gap = env_u64("ALERT_GAP_MS", 500);
    let modes = std::env::var("ALERT_MODES").unwrap_or_else(|_| "up,distributed".into());
    let env = [
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
        ("JWT_KEY", KEY),
        ("RUST_LOG", "warn"),
    ];
    for mode in modes.split(',') {
        let deployment = match mode.trim() {
            "up" => Deployment::embedded(&env),
            "distributed" => Deployment::distributed(&env).await,
            other => panic!("ALERT_MODES: unknown mode {other:?} (up, distributed)"),
        };
        run(mode, deployment, subscribers, listings, gap).await;
    }
}
