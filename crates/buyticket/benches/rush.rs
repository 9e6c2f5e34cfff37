//! The on-sale rush, measured: `cargo bench -p buyticket --bench rush`.
//!
//! Starts `buyticket up` (embedded default: SQLite + in-process bus; release build) on a free
//! loopback port, lists TICKETS tickets, then fires BUYERS purchase requests at once (every
//! buyer a different user, each ticket wanted by BUYERS / TICKETS buyers) and reports
//! throughput and latency percentiles. It also checks the outcome: exactly TICKETS orders
//! succeed, every other request is `400 Ticket is already reserved`. A second phase measures
//! the public listing (`GET /api/tickets`) under concurrent readers.
//!
//! Sizes can be changed with RUSH_TICKETS, RUSH_BUYERS, RUSH_READS, RUSH_CONCURRENCY.
//! RUSH_TARGET_URL (with RUSH_JWT_KEY, the target's session key) measures a deployment that
//! already runs instead, e.g. the local distributed mode behind nginx.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bt_contract::SessionKeys;
use futures::StreamExt;
use serde_json::json;
use support::Process;

const KEY: &str = "bench-key-that-is-at-least-32-bytes-long!!";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    println!(
        "{name}: {} requests in {:.2} s = {:.0} req/s; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let tickets = env_usize("RUSH_TICKETS", 100);
    let buyers = env_usize("RUSH_BUYERS", 2000);
    let reads = env_usize("RUSH_READS", 5000);
    let concurrency = env_usize("RUSH_CONCURRENCY", 64);

    // Either a deployment that already runs (e.g. `scripts/local-cluster up`), or our own
    // `buyticket up`.
    // Our own process (if any) is stopped when dropped at the end.
    let (base, key, _own) = match std::env::var("RUSH_TARGET_URL") {
        Ok(url) => {
            let key = std::env::var("RUSH_JWT_KEY")
                .expect("RUSH_JWT_KEY: the target's JWT_KEY (e.g. target/local-cluster/jwt_key)");
            (url.trim_end_matches('/').to_owned(), key, None)
        }
        Err(_) => {
            let (process, data) = start_up();
            (process.url.clone(), KEY.to_owned(), Some((process, data)))
        }
    };
    println!("target: {base}");
    let sessions = SessionKeys::new(key.as_bytes(), Duration::from_secs(3600), false);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let token = |i: usize| {
        sessions
            .issue(&format!("user-{i}"), &format!("user-{i}@bench.test"))
            .unwrap()
            .0
    };

    // List the tickets (one seller).
    let seller = token(usize::MAX);
    let mut ids = Vec::new();
    for i in 0..tickets {
        let res = http
            .post(format!("{base}/api/tickets"))
            .bearer_auth(&seller)
            .json(&json!({"title": format!("Seat {i}"), "price": "49.99"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Wait until the orders replica has them all (an order for the last one stops being 404).
    let probe_buyer = token(usize::MAX - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = http
            .post(format!("{base}/api/orders"))
            .bearer_auth(&probe_buyer)
            .json(&json!({"ticketId": "not-a-ticket"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let listed = http
            .get(format!("{base}/api/tickets?limit=200"))
            .send()
            .await
            .unwrap();
        let n = listed.json::<Vec<serde_json::Value>>().await.unwrap().len();
        if n >= tickets.min(200) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        assert!(Instant::now() < deadline);
    }

    // The rush: every buyer at once.
    let tokens: Vec<String> = (0..buyers).map(token).collect();
    let started = Instant::now();
    let results: Vec<(u16, Duration)> = futures::stream::iter(0..buyers)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/api/orders");
            let body = json!({"ticketId": ids[i % ids.len()]});
            let token = tokens[i].clone();
            async move {
                let t = Instant::now();
                let status = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, t.elapsed())
            }
        })
        .buffer_unordered(buyers)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results.iter().filter(|(s, _)| *s == 400).count();
    let other = results.len() - created - refused;
    println!(
        "rush: {buyers} buyers for {tickets} tickets -> {created} orders, {refused} refused (400), {other} other"
    );
    assert_eq!(created, tickets, "exactly one order per ticket");
    assert_eq!(other, 0, "no errors under the rush");
    report(
        "purchase rush (POST /api/orders)",
        results.iter().map(|(_, d)| *d).collect(),
        elapsed,
    );

    // Browsing: the listing under concurrent readers.
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(0..reads)
        .map(|_| {
            let http = http.clone();
            let url = format!("{base}/api/tickets");
            async move {
                let t = Instant::now();
                let res = http.get(url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap();
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    report(
        &format!("listing (GET /api/tickets, {concurrency} concurrent)"),
        latencies,
        started.elapsed(),
    );
}

/// `buyticket up` on a free loopback port, in a temporary data directory.
fn start_up() -> (Process, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let process = Process::start(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[("JWT_KEY", KEY), ("AUTH_RATE_LIMIT_PER_MINUTE", "0")],
    );
    (process, data)
}
