//! Expiry on time with 10,000 pending orders: `cargo bench -p buyticket --bench expiry`.
//!
//! Starts a deployment — `buyticket up`, and the distributed mode (one `serve` process per
//! service on PostgreSQL and NATS) — with a payment window of EXPIRY_WINDOW seconds (default
//! 60), lists EXPIRY_ORDERS tickets (default 10,000) and has as many buyers reserve one each, as
//! fast as the deployment takes them: every order then expires within the same minute. It
//! waits until every order is cancelled and reports the lateness of each cancellation (the
//! order's `updated_at` minus its `expires_at`, read from the orders database): p50, p99, max.
//!
//! EXPIRY_MODES=up,distributed picks the modes (default both); EXPIRY_CONCURRENCY the requests
//! in flight (default 32).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bt_contract::SessionKeys;
use bt_platform::db::DbOptions;
use bt_platform::{Db, on_db};
use serde_json::json;
use support::bench::{env_u64, percentile, post_all};
use support::deployment::{Deployment, KEY};

async fn run(mode: &str, deployment: Deployment, orders: u64, window: u64, concurrency: usize) {
    let ingress = deployment.ingress();
    let sessions = SessionKeys::new(KEY.as_bytes(), Duration::from_secs(3600), false);
    let token = |name: String| {
        sessions
            .issue(&name, &format!("{name}@bench.test"))
            .unwrap()
            .0
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    let started = Instant::now();
    let listings = (0..orders)
        .map(|i| {
            (
                token(format!("seller-{}", i % 20)),
                json!({"title": format!("Seat {i}"), "price": "25"}),
            )
        })
        .collect();
    let tickets = post_all(&http, &ingress.url("/api/tickets"), listings, concurrency).await;
    let listed = started.elapsed();
    let started = Instant::now();
    let purchases = tickets
        .iter()
        .enumerate()
        .map(|(i, ticket)| {
            (
                token(format!("buyer-{i}")),
                json!({"ticketId": ticket["id"]}),
            )
        })
        .collect();
    let placed = post_all(&http, &ingress.url("/api/orders"), purchases, concurrency).await;
    let ordering = started.elapsed();
    println!(
        "{mode}: {orders} tickets listed in {:.1} s; {} orders placed in {:.1} s, all expiring within {window} s + {:.1} s",
        listed.as_secs_f64(),
        placed.len(),
        ordering.as_secs_f64(),
        ordering.as_secs_f64(),
    );

    let db = Db::connect(&deployment.database_url("orders"), &DbOptions::default())
        .await
        .expect("the orders database");
    let deadline = Instant::now() + Duration::from_secs(window + 300);
    loop {
        let cancelled: i64 = on_db!(&db, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'"
        )
        .fetch_one(pool)
        .await)
        .unwrap();
        if cancelled as u64 >= orders {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: only {cancelled} of {orders} orders cancelled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut lateness: Vec<i64> = on_db!(&db, |pool| sqlx::query_scalar(
        "SELECT updated_at - expires_at FROM orders WHERE cancel_reason = 'expired'"
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    lateness.sort_unstable();
    println!(
        "{mode}: {} orders expired; lateness p50 {} ms, p99 {} ms, max {} ms",
        lateness.len(),
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or_default(),
    );
    db.close().await;
    deployment.stop();
}

#[tokio::main]
async fn main() {
    let orders = env_u64("EXPIRY_ORDERS", 10_000);
    let window = env_u64("EXPIRY_WINDOW", 60);
    let concurrency = env_u64("EXPIRY_CONCURRENCY", 32) as usize;
    let modes = std::env::var("EXPIRY_MODES").unwrap_or_else(|_| "up,distributed".into());
    let window_env = window.to_string();
    let env = [
        ("ORDER_EXPIRATION_SECONDS", window_env.as_str()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
        ("JWT_KEY", KEY),
        ("RUST_LOG", "warn"),
    ];
    for mode in modes.split(',') {
        let deployment = match mode.trim() {
            "up" => Deployment::embedded(&env),
            "distributed" => Deployment::distributed(&env).await,
            other => panic!("EXPIRY_MODES: unknown mode {other:?} (up, distributed)"),
        };
        run(mode, deployment, orders, window, concurrency).await;
    }
}
