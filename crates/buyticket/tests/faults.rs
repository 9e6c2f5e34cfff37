//! Fault injection in the distributed mode (issue 11, item 4): a purchase rush through
//! `buyticket serve` processes — two replicas of orders — on a PostgreSQL server and a NATS
//! server of the test's own, and during the rush PostgreSQL is restarted (fast mode), NATS is
//! restarted, and replicas of orders and payments are killed with SIGKILL and started again.
//! Clients retry the way the product asks them to (a refused connection or a 502/503/504 is
//! tried again; a payment is asked again until decided). Once everything has settled:
//!
//! - every order answered 201 still exists, for its owner, with the status its story implies;
//! - each ticket has at most one order that is not cancelled and is sold at most once, to the
//!   order that was paid;
//! - every event was delivered: nothing pending in any outbox or consumer, nothing
//!   dead-lettered, each event on the stream once, and the replicas (tickets in orders, orders
//!   in payments, timers in expiration) agree with their sources;
//! - nobody is charged twice: one succeeded charge (and one standing PaymentIntent at "Stripe",
//!   [`MockStripe`]) per complete order and none for any other; every 201 payment is that charge;
//! - no request was answered 500 (a dependency that is down is a 503, ARCHITECTURE §3).
//!
//! `FAULTS_SEED=<n>` replays the buyers' choices of one run.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bt_test_support::stripe::{HELD, MockStripe, SECRET_KEY, SLOW};
use bt_test_support::{OwnNatsServer, OwnPostgresServer, TestResponse};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use support::deployment::{Browser, Deployment, Ingress, SERVICES, poll_for};

/// Tickets on sale when the rush starts.
const FIRST_TICKETS: usize = 10;
/// Then sellers list this many more, and edit one, every [`WAVE_EVERY`] during the rush.
const WAVE_TICKETS: usize = 1;
const WAVE_EVERY: Duration = Duration::from_secs(1);
/// Sellers listing them.
const SELLERS: usize = 3;
/// The buyer whose payment is held at "Stripe" while its payments process is killed.
const HELD_BUYER: usize = 2;
/// The buyer who orders before the rush and leaves the order unpaid: it must expire during
/// the rush, through the faults (a seller's edit cannot refuse it: the tickets service holds
/// it reserved before the rush starts).
const LEFT_BUYER: usize = 1;
/// Buyers rushing for them, one task each.
const BUYERS: usize = 80;
/// The payment window: orders nobody pays expire during the test.
const WINDOW_SECS: u64 = 15;
/// How long buyers start new orders.
const RUSH: Duration = Duration::from_secs(28);
/// How long one request may be retried (through faults) before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long everything may take to settle after the rush.
const SETTLE: Duration = Duration::from_secs(75);

/// What clients saw that the product should never answer.
#[derive(Default)]
struct Observed {
    /// Requests answered 500 (method, path, body).
    server_errors: Vec<String>,
    /// Answers the product's contract does not allow there.
    unexpected: Vec<String>,
    /// What went wrong for clients, when (since the rush started): a refused connection, a
    /// 5xx, a connection broken with the request sent ("lost").
    hiccups: Vec<(Duration, String)>,
}

impl Observed {
    fn lost(&self) -> usize {
        self.hiccups
            .iter()
            .filter(|(_, h)| h.ends_with("lost"))
            .count()
    }

    /// The hiccups by second and kind, e.g. `7s orders 503 ×4`.
    fn timeline(&self) -> String {
        let mut by: BTreeMap<(u64, &str), usize> = BTreeMap::new();
        for (at, what) in &self.hiccups {
            *by.entry((at.as_secs(), what.as_str())).or_default() += 1;
        }
        by.iter()
            .map(|((second, what), n)| format!("{second}s {what} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The test's ingress: the orders path goes to every orders replica in turn (a refused
/// connection moves on to the next, as a load balancer does); the rest to one process each.
struct Shared {
    ingress: Ingress,
    orders: Vec<String>,
    next_order_replica: AtomicUsize,
    observed: Mutex<Observed>,
    started: Instant,
    /// The held buyer has sent its payment.
    held_sent: std::sync::atomic::AtomicBool,
}

/// How a request ended for the client.
enum Outcome {
    /// An answer, after retrying what may be retried.
    Answered(TestResponse),
    /// The connection broke with the request sent, or it was answered 500: whether it was done
    /// is unknown.
    Unknown,
}

impl Shared {
    fn base(&self, path: &str) -> String {
        if path.starts_with("/api/orders") {
            let i = self.next_order_replica.fetch_add(1, Ordering::Relaxed);
            self.orders[i % self.orders.len()].clone()
        } else {
            let url = self.ingress.url(path);
            url[..url.len() - path.len()].to_owned()
        }
    }

    fn note(&self, change: impl FnOnce(&mut Observed)) {
        change(&mut self.observed.lock().unwrap());
    }

    /// Sends a request as a client that follows the product's retry advice: a refused
    /// connection (a process restarting) or a 502/503/504 is sent again after a pause; a GET
    /// whose connection broke is sent again too. Gives up after [`PATIENCE`].
    async fn call(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Outcome {
        let deadline = Instant::now() + PATIENCE;
        let service = path.split(['/', '?']).nth(2).unwrap_or_default().to_owned();
        loop {
            let mut request = http
                .request(method.clone(), format!("{}{path}", self.base(path)))
                .timeout(Duration::from_secs(30));
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = self.started.elapsed();
            // What went wrong, and whether sending it again is safe: a refused connection or a
            // 502/503/504 did nothing; a GET may always be sent again.
            let (hiccup, again) = match bt_test_support::TestClient::try_send(request).await {
                Ok(res) if res.status == StatusCode::INTERNAL_SERVER_ERROR => {
                    self.note(|o| {
                        o.server_errors
                            .push(format!("at {sent:.1?}: {method} {path}: 500 {}", res.text))
                    });
                    (format!("{service} 500"), method == Method::GET)
                }
                Ok(res)
                    if matches!(
                        res.status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) =>
                {
                    (format!("{service} {}", res.status.as_u16()), true)
                }
                Ok(res) => return Outcome::Answered(res),
                Err(err) if err.is_connect() => (format!("{service} refused"), true),
                Err(_) => (format!("{service} {method} lost"), method == Method::GET),
            };
            self.note(|o| o.hiccups.push((sent, hiccup)));
            if !again {
                // A 500 or a broken connection: whether it was done is unknown. The buyer goes
                // on as a person would (an order left behind expires).
                return Outcome::Unknown;
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path} still failing after {PATIENCE:?}: the deployment did not recover"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// The seller of the `n`th ticket lists it.
async fn list_ticket(shared: &Shared, sellers: &[Browser], n: usize) -> Option<String> {
    let body =
        json!({"title": format!("Faults night, seat {n}"), "price": format!("{}.50", 20 + n)});
    match shared
        .call(
            &sellers[n % SELLERS].client.http,
            Method::POST,
            "/api/tickets",
            Some(&body),
        )
        .await
    {
        Outcome::Answered(res) if res.status == StatusCode::CREATED => {
            Some(res.json["id"].as_str().unwrap().to_owned())
        }
        Outcome::Answered(res) => {
            shared.note(|o| {
                o.unexpected
                    .push(format!("POST /api/tickets: {} {}", res.status, res.text))
            });
            None
        }
        Outcome::Unknown => None,
    }
}

/// The sellers during the rush: every [`WAVE_EVERY`] they list [`WAVE_TICKETS`] more tickets
/// and edit one listed before (refused when it is reserved). Returns every ticket answered 201.
async fn sell_in_waves(
    shared: Arc<Shared>,
    sellers: Vec<Browser>,
    mut listed: Vec<String>,
    mut rng: StdRng,
) -> (Vec<Browser>, Vec<String>) {
    let mut wave = 1u32;
    while WAVE_EVERY * wave < RUSH - Duration::from_secs(3) {
        let due = shared.started + WAVE_EVERY * wave;
        tokio::time::sleep_until(due.into()).await;
        for _ in 0..WAVE_TICKETS {
            if let Some(id) = list_ticket(&shared, &sellers, listed.len()).await {
                listed.push(id);
            }
        }
        let n = rng.random_range(0..listed.len());
        let path = format!("/api/tickets/{}", listed[n]);
        let body = json!({"title": format!("Faults night, seat {n} (moved)"), "price": format!("{}.75", 20 + n)});
        if let Outcome::Answered(res) = shared
            .call(
                &sellers[n % SELLERS].client.http,
                Method::PUT,
                &path,
                Some(&body),
            )
            .await
            && res.status != StatusCode::OK
            && res.messages() != ["Cannot edit a reserved ticket"]
            // Sold: the ticket is its buyer's now.
            && res.status != StatusCode::UNAUTHORIZED
        {
            shared.note(|o| {
                o.unexpected
                    .push(format!("PUT {path}: {} {}", res.status, res.text))
            });
        }
        wave += 1;
    }
    (sellers, listed)
}

/// How a buyer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Pays for the order (some try a card that is declined first).
    Payer,
    /// Ordered before the rush; pays with a charge that "Stripe" holds until the payments
    /// process it went to has been killed, then pays again.
    Held,
    /// Cancels the first order, then buys another and pays.
    Canceller,
    /// Leaves the order unpaid: it expires.
    Abandoner,
    /// Ordered before the rush, reserved before it starts, and left unpaid: it expires.
    Left,
}

/// What one buyer did, as the answers told it.
#[derive(Debug, Default)]
struct Story {
    /// Orders answered 201: (order id, ticket id, when, relative to the test's start).
    ordered: Vec<(String, String, Duration)>,
    /// Orders whose cancel was answered 204.
    cancelled: Vec<String>,
    /// Orders left to expire.
    abandoned: Vec<String>,
    /// Payments answered 201: (order id, payment id).
    paid: Vec<(String, String)>,
    /// Orders answered "Order is already paid" (a 201 lost with a broken connection).
    paid_unseen: Vec<String>,
    /// Orders whose payment was refused because the order was cancelled meanwhile, or its
    /// window had passed (retried through the faults for longer than [`WINDOW_SECS`]: the
    /// payments service refuses an order past its `expiresAt` before its expiry is applied).
    refused: Vec<String>,
}

/// One buyer of the rush: finds a free ticket, orders it, and pays, cancels or abandons it.
async fn shop(shared: Arc<Shared>, buyer: &Browser, role: Role, mut rng: StdRng) -> Story {
    let http = &buyer.client.http;
    let mut story = Story::default();
    let mut role = role;
    while shared.started.elapsed() < RUSH {
        let Outcome::Answered(listing) = shared
            .call(http, Method::GET, "/api/tickets?limit=200", None)
            .await
        else {
            continue;
        };
        let free: Vec<String> = listing
            .json
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect();
        if free.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..700))).await;
            continue;
        }
        let ticket = free[rng.random_range(0..free.len())].clone();
        // A person looks before clicking: orders and payments spread over the whole rush.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
        let res = match shared
            .call(
                http,
                Method::POST,
                "/api/orders",
                Some(&json!({"ticketId": ticket})),
            )
            .await
        {
            Outcome::Answered(res) => res,
            Outcome::Unknown => continue,
        };
        let order = match res.status {
            StatusCode::CREATED => res.json["id"].as_str().unwrap().to_owned(),
            // Listed a moment ago: the orders service has not heard of it yet.
            StatusCode::NOT_FOUND => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..300))).await;
                continue;
            }
            // Held by an open order, or sold (its buyer owns it, off sale).
            StatusCode::BAD_REQUEST
                if res.messages() == ["Ticket is already reserved"]
                    || res.messages() == ["This ticket is not for sale"] =>
            {
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..250))).await;
                continue;
            }
            _ => {
                shared.note(|o| {
                    o.unexpected
                        .push(format!("POST /api/orders: {} {}", res.status, res.text))
                });
                continue;
            }
        };
        assert_eq!(res.json["ticket"]["id"], json!(ticket), "{}", res.text);
        story
            .ordered
            .push((order.clone(), ticket, shared.started.elapsed()));
        match role {
            Role::Abandoner => {
                story.abandoned.push(order);
                return story;
            }
            Role::Canceller => {
                let path = format!("/api/orders/{order}");
                if let Outcome::Answered(res) = shared.call(http, Method::DELETE, &path, None).await
                {
                    if res.status == StatusCode::NO_CONTENT {
                        story.cancelled.push(order);
                    } else {
                        shared.note(|o| {
                            o.unexpected
                                .push(format!("DELETE {path}: {} {}", res.status, res.text))
                        });
                    }
                }
                role = Role::Payer;
            }
            Role::Held | Role::Left => unreachable!("this buyer ordered before the rush"),
            Role::Payer => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
                if rng.random_bool(0.25) && !pay_declined(&shared, http, &order, &mut story).await {
                    continue;
                }
                if pay(&shared, http, &order, &mut story).await {
                    return story;
                }
            }
        }
    }
    story
}

/// Tries a card that is declined, until the answer is decided; true when the order can still
/// be paid (declined, as it should be).
async fn pay_declined(
    shared: &Shared,
    http: &reqwest::Client,
    order: &str,
    story: &mut Story,
) -> bool {
    let body = json!({"orderId": order, "token": "tok_chargeDeclined"});
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "a declined payment of order {order} was not decided within {PATIENCE:?}"
        );
        if let Outcome::Answered(res) = shared
            .call(http, Method::POST, "/api/payments", Some(&body))
            .await
        {
            match res.status {
                StatusCode::ACCEPTED | StatusCode::NOT_FOUND => {}
                StatusCode::BAD_REQUEST if order_cannot_be_paid(&res) => {
                    story.refused.push(order.to_owned());
                    return false;
                }
                StatusCode::BAD_REQUEST => return true,
                _ => {
                    shared.note(|o| {
                        o.unexpected.push(format!(
                            "POST /api/payments (declined card): {} {}",
                            res.status, res.text
                        ))
                    });
                    return false;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The held buyer: its payment waits at "Stripe" until the payments process is killed, then
/// it pays again (and must be charged once).
async fn pay_held(shared: Arc<Shared>, buyer: &Browser, order: String, mut story: Story) -> Story {
    let http = &buyer.client.http;
    let body = json!({"orderId": order, "token": HELD});
    shared.held_sent.store(true, Ordering::SeqCst);
    match shared
        .call(http, Method::POST, "/api/payments", Some(&body))
        .await
    {
        Outcome::Unknown => {}
        Outcome::Answered(res) => shared.note(|o| {
            o.unexpected.push(format!(
                "the held payment was answered although its process was killed: {} {}",
                res.status, res.text
            ))
        }),
    }
    pay(&shared, http, &order, &mut story).await;
    story
}

/// Pays until the answer is decided; true when the order is paid.
async fn pay(shared: &Shared, http: &reqwest::Client, order: &str, story: &mut Story) -> bool {
    // A provider that takes 300 ms: payments are in flight when processes die.
    let body = json!({"orderId": order, "token": SLOW});
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "paying order {order} was not decided within {PATIENCE:?}"
        );
        // Asked again after a lost answer too: paying is idempotent per order.
        if let Outcome::Answered(res) = shared
            .call(http, Method::POST, "/api/payments", Some(&body))
            .await
        {
            match res.status {
                StatusCode::CREATED => {
                    let id = res.json["id"].as_str().unwrap().to_owned();
                    story.paid.push((order.to_owned(), id));
                    return true;
                }
                // 202: still deciding; 404: the payments replica has not heard of the order yet.
                StatusCode::ACCEPTED | StatusCode::NOT_FOUND => {}
                StatusCode::BAD_REQUEST if res.messages() == ["Order is already paid"] => {
                    story.paid_unseen.push(order.to_owned());
                    return true;
                }
                StatusCode::BAD_REQUEST
                    if order_cannot_be_paid(&res) || cancelled_while_paying(&res) =>
                {
                    story.refused.push(order.to_owned());
                    return false;
                }
                _ => {
                    shared.note(|o| {
                        o.unexpected
                            .push(format!("POST /api/payments: {} {}", res.status, res.text))
                    });
                    return false;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log lines (`RUST_LOG=warn`) of every `serve` process of the run, by process name.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<(String, String)>>>);

impl Logs {
    /// The lines of level `level` (`ERROR`, `WARN`), each with its process's name.
    fn lines(&self, level: &str) -> Vec<String> {
        let marker = format!(" {level} ");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains(&marker))
            .map(|(name, line)| format!("[{name}] {line}"))
            .collect()
    }
}

/// Shows the processes' errors when the test fails, wherever it fails.
struct ShowLogsOnFailure(Logs);

impl Drop for ShowLogsOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let errors = self.0.lines("ERROR");
            eprintln!("ERROR lines of the serve processes ({}):", errors.len());
            for line in errors.iter().take(60) {
                eprintln!("  {line}");
            }
        }
    }
}

/// A `buyticket serve <service>` process of the test's own (so that it can run two replicas
/// and keep their logs), killed when dropped.
struct Serve {
    name: &'static str,
    service: &'static str,
    child: std::process::Child,
    url: String,
}

impl Serve {
    /// Starts `serve <service>` with `env` on `port` (0: any) and waits (≤ 60 s) until it
    /// prints the URL it listens on.
    fn start(
        name: &'static str,
        service: &'static str,
        env: &[(String, String)],
        port: u16,
        logs: &Logs,
    ) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_buyticket"))
            .args(["serve", service])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start buyticket serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                match line.find("http://") {
                    Some(i) if !line.contains(" WARN ") && !line.contains(" ERROR ") => {
                        let _ = tx.send(line[i..].trim().to_owned());
                    }
                    _ => logs.0.lock().unwrap().push((name.to_owned(), line)),
                }
            }
        });
        let mut serve = Self {
            name,
            service,
            child,
            url: String::new(),
        };
        serve.url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name} did not print its URL"));
        serve
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGKILL, like a crash.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; waits (≤ 20 s) for the exit.
    fn stop(mut self) -> std::process::ExitStatus {
        support::terminate(&mut self.child, self.name)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `serve` processes: auth, tickets, two replicas of orders, expiration, payments.
struct Cluster {
    processes: Vec<Serve>,
    envs: BTreeMap<&'static str, Vec<(String, String)>>,
    logs: Logs,
}

impl Cluster {
    const PROCESSES: [(&'static str, &'static str); 7] = [
        ("auth", "auth"),
        ("tickets", "tickets"),
        ("orders-1", "orders"),
        ("orders-2", "orders"),
        ("expiration", "expiration"),
        ("payments", "payments"),
        ("notifications", "notifications"),
    ];

    fn start(deployment: &Deployment, logs: &Logs) -> Self {
        let envs: BTreeMap<&'static str, Vec<(String, String)>> = SERVICES
            .iter()
            .map(|&service| (service, deployment.service_env(service)))
            .collect();
        let processes = Self::PROCESSES
            .iter()
            .map(|&(name, service)| Serve::start(name, service, &envs[service], 0, logs))
            .collect();
        Self {
            processes,
            envs,
            logs: logs.clone(),
        }
    }

    fn url(&self, name: &str) -> String {
        self.processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.url.clone())
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    fn position(&self, name: &str) -> usize {
        self.processes
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// `kill -9` of process `name`.
    fn kill(&mut self, name: &str) {
        let i = self.position(name);
        self.processes[i].kill();
    }

    /// Starts killed process `name` again, on the same port.
    fn restart(&mut self, name: &str) {
        let i = self.position(name);
        let (name, service, port) = {
            let p = &self.processes[i];
            (p.name, p.service, p.port())
        };
        self.processes[i] = Serve::start(name, service, &self.envs[service], port, &self.logs);
    }

    /// `kill -9` of process `name`, and after `down` the same service on the same port again.
    fn crash(&mut self, name: &str, down: Duration) {
        self.kill(name);
        std::thread::sleep(down);
        self.restart(name);
    }

    /// SIGTERM to every process; each must exit 0 (a graceful shutdown after the faults).
    fn stop(self) {
        for process in self.processes.into_iter().rev() {
            let name = process.name;
            let status = process.stop();
            assert!(status.success(), "{name} exits 0 on SIGTERM: {status}");
        }
    }
}

/// What the fault thread owns while the buyers shop.
struct Faults {
    cluster: Cluster,
    pg: OwnPostgresServer,
    nats: OwnNatsServer,
    mock: MockStripe,
    shared: Arc<Shared>,
    held_order: String,
}

/// A pay request refused before any charge because the order is cancelled, or past its window
/// (the payments service refuses it before the expiry is applied).
fn order_cannot_be_paid(res: &TestResponse) -> bool {
    res.messages() == ["Cannot pay for a cancelled order"]
        || res.messages() == ["Cannot pay for an expired order"]
}

/// A pay request whose authorisation was released because the order was cancelled meanwhile
/// (expired, refused by the tickets service, cancelled by the buyer): the payments service says
/// why, and that nothing was charged (or that the charge is refunded).
fn cancelled_while_paying(res: &TestResponse) -> bool {
    res.messages().iter().all(|m| {
        m.contains("so the order was cancelled;")
            || m.starts_with("The order expired before the payment completed;")
            || m.starts_with("The order was cancelled before the payment completed;")
    }) && !res.messages().is_empty()
}

fn at(started: Instant, secs: f64) {
    let due = started + Duration::from_secs_f64(secs);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// The faults, run on a blocking thread during the rush; returns what it did, when.
fn inject_faults(mut f: Faults, started: Instant) -> (Faults, Vec<(Duration, String)>) {
    let mut log = Vec::new();
    let mut note = |what: &str| log.push((started.elapsed(), what.to_owned()));

    at(started, 3.0);
    note("kill -9 orders-1");
    f.cluster.crash("orders-1", Duration::from_secs(2));
    note("orders-1 started again");

    // The held payment is at "Stripe" when its process dies; "Stripe" goes on with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(f.shared.held_sent.load(Ordering::SeqCst)
        && f.mock.requests().iter().any(|r| {
            r.param("metadata[order_id]") == Some(f.held_order.as_str())
                && r.param("payment_method_data[card][token]") == Some(HELD)
        }))
    {
        assert!(
            Instant::now() < deadline,
            "the held payment did not reach Stripe"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    at(started, 6.0);
    note("kill -9 payments (a payment in flight at Stripe)");
    f.cluster.kill("payments");
    f.mock.release();
    std::thread::sleep(Duration::from_millis(700));
    f.cluster.restart("payments");
    note("payments started again");

    at(started, 9.0);
    note("PostgreSQL: stop (fast)");
    f.pg.stop();
    std::thread::sleep(Duration::from_millis(1500));
    f.pg.start_again();
    note("PostgreSQL started again");

    at(started, 13.0);
    note("NATS: stop");
    f.nats.stop();
    std::thread::sleep(Duration::from_millis(1500));
    f.nats.restart();
    note("NATS started again");

    at(started, 17.0);
    note("kill -9 orders-2");
    f.cluster.crash("orders-2", Duration::from_millis(700));
    note("orders-2 started again");

    at(started, 20.0);
    note("kill -9 payments");
    f.cluster.crash("payments", Duration::from_millis(700));
    note("payments started again");
    (f, log)
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// An order as the orders service stores it.
#[derive(Debug, sqlx::FromRow)]
struct OrderRow {
    id: String,
    user_id: String,
    ticket_id: String,
    status: String,
    version: i64,
    payment_id: Option<String>,
    payment_amount: Option<i64>,
    ticket_price: i64,
    cancel_reason: Option<String>,
}

/// The databases of the five services.
struct Dbs {
    all: BTreeMap<&'static str, PgPool>,
}

impl Dbs {
    fn get(&self, service: &str) -> &PgPool {
        &self.all[service]
    }

    /// Work not done yet: pending outbox rows, undecided orders, pending timers, charges not
    /// settled, events not delivered or not acknowledged. Empty once everything has settled.
    async fn pending_work(&self, deployment: &Deployment) -> Vec<String> {
        let mut pending = Vec::new();
        for (service, db) in &self.all {
            let unsent: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                    .fetch_one(db)
                    .await
                    .unwrap();
            if unsent > 0 {
                pending.push(format!("{service}: {unsent} outbox rows unsent"));
            }
        }
        let open: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, status FROM orders WHERE status IN ('created', 'awaiting:payment')",
        )
        .fetch_all(self.get("orders"))
        .await
        .unwrap();
        if !open.is_empty() {
            pending.push(format!("orders not decided yet: {open:?}"));
        }
        let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM timers WHERE state = 'pending'")
            .fetch_one(self.get("expiration"))
            .await
            .unwrap();
        if timers > 0 {
            pending.push(format!("{timers} expiry timers pending"));
        }
        let charges: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, state FROM charges WHERE state NOT IN ('declined', 'succeeded', 'voided', \
             'refunded')",
        )
        .fetch_all(self.get("payments"))
        .await
        .unwrap();
        if !charges.is_empty() {
            pending.push(format!("charges not settled: {charges:?}"));
        }
        let bus = deployment.bus().expect("a distributed deployment");
        for (consumer, backlog) in bus.consumer_backlogs().await {
            if backlog != (0, 0) {
                pending.push(format!(
                    "consumer {consumer}: {} not delivered, {} not acknowledged",
                    backlog.0, backlog.1
                ));
            }
        }
        pending
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_rush_survives_postgres_and_nats_restarts_and_killed_replicas() {
    let test_started = Instant::now();
    let seed: u64 = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault injection: FAULTS_SEED={seed}");

    // Arrange: servers of the test's own, a deployment on them with two orders replicas.
    let pg = OwnPostgresServer::start();
    let nats = OwnNatsServer::start();
    let mock = MockStripe::start().await;
    let window = WINDOW_SECS.to_string();
    let deployment = Deployment::prepared_on(
        &pg.admin_url,
        &nats.url,
        &[
            ("ORDER_EXPIRATION_SECONDS", &window),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("PAYMENT_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("STRIPE_API_BASE", &mock.base),
        ],
    )
    .await;
    let logs = Logs::default();
    let _show_logs = ShowLogsOnFailure(logs.clone());
    let cluster = Cluster::start(&deployment, &logs);
    let ingress = Ingress {
        auth: cluster.url("auth"),
        tickets: cluster.url("tickets"),
        orders: cluster.url("orders-1"),
        payments: cluster.url("payments"),
        notifications: cluster.url("notifications"),
    };
    let orders_replicas = vec![cluster.url("orders-1"), cluster.url("orders-2")];
    eprintln!(
        "deployment up after {:?}; orders replicas {orders_replicas:?}",
        test_started.elapsed()
    );

    let mut sellers = Vec::new();
    for s in 0..SELLERS {
        sellers.push(Browser::sign_up(&ingress, &format!("seller{s}@faults.test")).await);
    }
    let mut tickets = Vec::new();
    for t in 0..FIRST_TICKETS {
        let res = sellers[t % SELLERS]
            .post(
                "/api/tickets",
                &json!({"title": format!("Faults night, seat {t}"), "price": format!("{}.50", 20 + t)}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        tickets.push(res.json["id"].as_str().unwrap().to_owned());
    }
    let buyers: Vec<Browser> = futures::stream::iter(0..BUYERS)
        .map(|b| {
            let ingress = ingress.clone();
            async move { Browser::sign_up(&ingress, &format!("buyer{b}@faults.test")).await }
        })
        .buffered(8)
        .collect()
        .await;
    // Both orders replicas know every ticket before the rush.
    let dbs_orders = pool(&deployment.database_url("orders")).await;
    poll_for(
        Duration::from_secs(30),
        "the orders replicas know every ticket",
        || async {
            let known: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
                .fetch_one(&dbs_orders)
                .await
                .map_err(|e| e.to_string())?;
            if known as usize == tickets.len() {
                Ok(())
            } else {
                Err(format!("{known} of {}", tickets.len()))
            }
        },
    )
    .await;
    dbs_orders.close().await;
    // Two orders before the rush: the held buyer's and the one left to expire.
    let order_before_rush = |buyer: usize, ticket: &str| {
        let body = json!({"ticketId": ticket});
        let buyer = &buyers[buyer];
        async move {
            let res = buyer.post("/api/orders", &body).await;
            assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
            res.json["id"].as_str().unwrap().to_owned()
        }
    };
    let held_ticket = tickets[0].clone();
    let held_order = order_before_rush(HELD_BUYER, &held_ticket).await;
    let left_ticket = tickets[1].clone();
    let left_order = order_before_rush(LEFT_BUYER, &left_ticket).await;
    for ticket in [&held_ticket, &left_ticket] {
        let path = format!("/api/tickets/{ticket}");
        poll_for(
            Duration::from_secs(30),
            "the tickets service holds the orders made before the rush",
            || async {
                let res = buyers[LEFT_BUYER].get(&path).await;
                match res.json["orderId"].as_str() {
                    Some(_) => Ok(()),
                    None => Err(format!("{}: {}", res.status, res.text)),
                }
            },
        )
        .await;
    }
    eprintln!(
        "{SELLERS} sellers, {FIRST_TICKETS} tickets, {BUYERS} buyers ready after {:?}",
        test_started.elapsed()
    );

    // Act: the rush, and the faults during it.
    let started = Instant::now();
    let shared = Arc::new(Shared {
        ingress: ingress.clone(),
        orders: orders_replicas,
        next_order_replica: AtomicUsize::new(0),
        observed: Mutex::new(Observed::default()),
        started,
        held_sent: std::sync::atomic::AtomicBool::new(false),
    });
    let shoppers: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(b, buyer)| {
            let role = match b % 8 {
                _ if b == HELD_BUYER => Role::Held,
                _ if b == LEFT_BUYER => Role::Left,
                0 => Role::Canceller,
                1 => Role::Abandoner,
                _ => Role::Payer,
            };
            let rng = StdRng::seed_from_u64(seed.wrapping_add(b as u64));
            let shared = shared.clone();
            let (held_order, held_ticket) = (held_order.clone(), held_ticket.clone());
            let (left_order, left_ticket) = (left_order.clone(), left_ticket.clone());
            tokio::spawn(async move {
                let story = match role {
                    Role::Held => {
                        let story = Story {
                            ordered: vec![(held_order.clone(), held_ticket, Duration::ZERO)],
                            ..Story::default()
                        };
                        pay_held(shared, &buyer, held_order, story).await
                    }
                    Role::Left => Story {
                        ordered: vec![(left_order.clone(), left_ticket, Duration::ZERO)],
                        abandoned: vec![left_order],
                        ..Story::default()
                    },
                    _ => shop(shared, &buyer, role, rng).await,
                };
                (buyer, role, story)
            })
        })
        .collect();
    let selling = tokio::spawn(sell_in_waves(
        shared.clone(),
        sellers,
        tickets,
        StdRng::seed_from_u64(seed.wrapping_sub(1)),
    ));
    let faults = {
        let (mock, shared) = (mock.clone(), shared.clone());
        tokio::task::spawn_blocking(move || {
            inject_faults(
                Faults {
                    cluster,
                    pg,
                    nats,
                    mock,
                    shared,
                    held_order,
                },
                started,
            )
        })
    };
    let mut stories = Vec::new();
    for shopper in shoppers {
        stories.push(shopper.await.expect("a buyer's task"));
    }
    let (_sellers, tickets) = selling.await.expect("the sellers' task");
    let (faults, fault_log) = faults.await.expect("the faults");
    eprintln!("rush over after {:?}", started.elapsed());
    for (when, what) in &fault_log {
        eprintln!("  {when:>10.1?}  {what}");
    }
    let Faults {
        cluster, pg, nats, ..
    } = faults;

    let ordered: Vec<(String, String, Duration)> = stories
        .iter()
        .filter(|(_, role, _)| !matches!(role, Role::Held | Role::Left))
        .flat_map(|(_, _, s)| s.ordered.iter().cloned())
        .collect();
    let first_fault = fault_log.first().unwrap().0;
    let last_fault = fault_log.last().unwrap().0;
    assert!(
        ordered.iter().any(|(_, _, at)| *at < first_fault)
            && ordered.iter().any(|(_, _, at)| *at > last_fault),
        "the faults happened during the rush: orders at {:?}, faults from {first_fault:?} to \
         {last_fault:?}",
        ordered.iter().map(|(_, _, at)| *at).collect::<Vec<_>>()
    );

    // Wait until everything has settled.
    let mut all = BTreeMap::new();
    for service in SERVICES {
        all.insert(service, pool(&deployment.database_url(service)).await);
    }
    let dbs = Dbs { all };
    let settling = Instant::now();
    poll_for(SETTLE, "everything settles", || async {
        let pending = dbs.pending_work(&deployment).await;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending.join("; "))
        }
    })
    .await;
    eprintln!("settled {:?} after the rush", settling.elapsed());

    // Assert.

    // 1. Every order answered 201 exists, for its owner, with the status its story implies.
    let orders: Vec<OrderRow> = sqlx::query_as(
        "SELECT id, user_id, ticket_id, status, version, payment_id, payment_amount, \
             ticket_price, cancel_reason FROM orders",
    )
    .fetch_all(dbs.get("orders"))
    .await
    .unwrap();
    let by_id: BTreeMap<&str, _> = orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut paid_orders = BTreeMap::new();
    for (buyer, role, story) in &stories {
        let user = &buyer.id;
        for (order, ticket, _) in &story.ordered {
            let row = by_id
                .get(order.as_str())
                .unwrap_or_else(|| panic!("order {order} (answered 201) is lost"));
            assert_eq!(
                (&row.user_id, &row.ticket_id),
                (user, ticket),
                "order {order}: {row:?}"
            );
            let paid = story.paid.iter().find(|(o, _)| o == order);
            let expected = if paid.is_some() || story.paid_unseen.contains(order) {
                "complete"
            } else {
                "cancelled"
            };
            assert_eq!(
                row.status, expected,
                "order {order} of buyer {user} ({role:?}, {story:?})"
            );
            // Why it was cancelled: a seller's edit may have refused the reservation first, or
            // the ticket was sold already (the orders replica had not heard of the sale yet:
            // the tickets service refuses the reservation, before any charge).
            let reasons: &[&str] = if expected == "complete" {
                &[]
            } else if *role == Role::Left {
                // Reserved before the rush: nothing but its timer can end it.
                &["expired"]
            } else if story.cancelled.contains(order) {
                &["buyer", "ticket_changed", "not_for_sale"]
            } else {
                &["expired", "ticket_changed", "not_for_sale"]
            };
            assert!(
                row.cancel_reason
                    .as_deref()
                    .map_or(reasons.is_empty(), |r| reasons.contains(&r)),
                "order {order} cancelled for {:?}, expected one of {reasons:?}: {story:?}",
                row.cancel_reason
            );
            // ... and its owner sees it so (through each orders replica in turn).
            let path = format!("/api/orders/{order}");
            let Outcome::Answered(res) = shared
                .call(&buyer.client.http, Method::GET, &path, None)
                .await
            else {
                unreachable!("a GET is retried")
            };
            assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.text);
            assert_eq!(
                (&res.json["status"], &res.json["ticket"]["id"]),
                (&json!(expected), &json!(ticket)),
                "GET {path}: {}",
                res.text
            );
            if let Some((_, payment)) = paid {
                assert_eq!(
                    row.payment_id.as_ref(),
                    Some(payment),
                    "order {order} is complete with the payment answered 201"
                );
                paid_orders.insert(order.clone(), payment.clone());
            }
        }
    }
    // 2. At most one order per ticket is not cancelled; a ticket is sold at most once.
    let mut live: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in &orders {
        if o.status != "cancelled" {
            live.entry(o.ticket_id.as_str())
                .or_default()
                .push(o.id.as_str());
        }
    }
    for (ticket, held) in &live {
        assert_eq!(held.len(), 1, "ticket {ticket} has live orders {held:?}");
    }
    let complete: BTreeMap<&str, &str> = orders
        .iter()
        .filter(|o| o.status == "complete")
        .map(|o| (o.ticket_id.as_str(), o.id.as_str()))
        .collect();

    // 3. Events delivered: the tickets service agrees with the orders (sold to the complete
    //    order, or free), the orders service's replica of tickets has the tickets' versions,
    //    the payments service's replica of orders has every order's status and version, and no
    //    timer is left.
    /// id, version, order_id, sold_at, owner, for_sale.
    type TicketRow = (String, i64, Option<String>, Option<i64>, String, bool);
    let ticket_rows: Vec<TicketRow> =
        sqlx::query_as("SELECT id, version, order_id, sold_at, user_id, for_sale FROM tickets")
            .fetch_all(dbs.get("tickets"))
            .await
            .unwrap();
    let replica_versions: BTreeMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT id, version FROM tickets")
            .fetch_all(dbs.get("orders"))
            .await
            .unwrap()
            .into_iter()
            .collect();
    let stored: BTreeSet<&str> = ticket_rows.iter().map(|t| t.0.as_str()).collect();
    for ticket in &tickets {
        assert!(
            stored.contains(ticket.as_str()),
            "ticket {ticket} (answered 201) is lost"
        );
    }
    assert_eq!(
        replica_versions
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        stored,
        "the orders service's replica has every ticket"
    );
    let buyers: BTreeMap<&str, &str> = orders
        .iter()
        .map(|o| (o.id.as_str(), o.user_id.as_str()))
        .collect();
    for (id, version, order_id, sold_at, owner, for_sale) in &ticket_rows {
        match complete.get(id.as_str()) {
            // Sold: the buyer of the complete order owns it, off sale, held by no order.
            Some(order) => assert!(
                order_id.is_none()
                    && sold_at.is_some()
                    && !for_sale
                    && buyers.get(order) == Some(&owner.as_str()),
                "ticket {id} is sold to the buyer of its complete order {order}: owner \
                 {owner}, order_id {order_id:?}, sold_at {sold_at:?}, for_sale {for_sale}"
            ),
            None => assert!(
                order_id.is_none() && sold_at.is_none(),
                "ticket {id} without a complete order is on sale again: order_id \
                 {order_id:?}, sold_at {sold_at:?}"
            ),
        }
        assert_eq!(
            replica_versions.get(id),
            Some(version),
            "the orders service's replica of ticket {id} has its version"
        );
    }
    let payment_orders: BTreeMap<String, (String, i64)> =
        sqlx::query_as::<_, (String, String, i64)>("SELECT id, status, version FROM orders")
            .fetch_all(dbs.get("payments"))
            .await
            .unwrap()
            .into_iter()
            .map(|(id, status, version)| (id, (status, version)))
            .collect();
    for o in &orders {
        assert_eq!(
            payment_orders.get(&o.id),
            Some(&(o.status.clone(), o.version)),
            "the payments service's replica of order {} ({}, version {})",
            o.id,
            o.status,
            o.version
        );
    }

    // 4. No double charge: one succeeded charge per complete order, of its price, the one that
    //    completed it; none for any other order; every 201 payment is such a charge. "Stripe"
    //    holds one standing PaymentIntent per complete order and no hold.
    let charges: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT id, order_id, state, amount FROM charges")
            .fetch_all(dbs.get("payments"))
            .await
            .unwrap();
    let mut succeeded: BTreeMap<&str, Vec<&(String, String, String, i64)>> = BTreeMap::new();
    for charge in &charges {
        if charge.2 == "succeeded" {
            succeeded.entry(charge.1.as_str()).or_default().push(charge);
        }
    }
    for o in &orders {
        let theirs = succeeded.get(o.id.as_str()).cloned().unwrap_or_default();
        if o.status == "complete" {
            assert_eq!(theirs.len(), 1, "order {} charged once: {theirs:?}", o.id);
            assert_eq!(
                o.payment_id.as_ref(),
                Some(&theirs[0].0),
                "{o:?} / {theirs:?}"
            );
            assert_eq!(
                (o.payment_amount, theirs[0].3),
                (Some(o.ticket_price), o.ticket_price),
                "charged the order's price: {o:?}"
            );
        } else {
            assert!(theirs.is_empty(), "order {o:?} is not complete: {theirs:?}");
        }
    }
    for (order, payment) in &paid_orders {
        assert!(
            charges
                .iter()
                .any(|c| &c.0 == payment && &c.1 == order && c.2 == "succeeded"),
            "payment {payment} (201) of order {order} is a succeeded charge"
        );
    }
    let intents = mock.intents();
    for intent in &intents {
        assert_ne!(
            intent.status, "requires_capture",
            "a hold left on a card: {intent:?}"
        );
    }
    for o in &orders {
        let standing: Vec<_> = intents
            .iter()
            .filter(|i| i.order_id == o.id && i.status == "succeeded" && !i.refunded)
            .collect();
        let expected = usize::from(o.status == "complete");
        assert_eq!(
            standing.len(),
            expected,
            "money standing at the provider for {o:?}: {standing:?}"
        );
        if let Some(intent) = standing.first() {
            assert_eq!(intent.amount, o.ticket_price, "{o:?} / {intent:?}");
        }
    }

    mock.assert_wire_format_kept();

    // 5. Every event on the stream once, nothing dead-lettered, every consumer done.
    let bus = deployment.bus().unwrap();
    let counts = bus.subject_counts().await;
    let dead: Vec<_> = counts
        .iter()
        .filter(|(s, _)| s.starts_with("deadletter."))
        .collect();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let mut outboxes: BTreeMap<String, usize> = BTreeMap::new();
    for db in dbs.all.values() {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT subject, count(*) FROM outbox GROUP BY subject")
                .fetch_all(db)
                .await
                .unwrap();
        for (subject, count) in rows {
            *outboxes.entry(subject).or_default() += count as usize;
        }
    }
    assert_eq!(
        counts, outboxes,
        "every event of every outbox is on the stream, once"
    );
    for subject in [
        "ticket.created",
        "ticket.updated",
        "order.created",
        "order.cancelled",
        "order.completed",
        "expiration.complete",
        "payment.created",
    ] {
        assert!(
            counts.contains_key(subject),
            "no {subject} event: {counts:?}"
        );
    }
    let backlogs = bus.consumer_backlogs().await;
    // tickets 3, orders 5, expiration 3, payments 3 durable consumers.
    assert!(
        backlogs.len() >= 14,
        "every service's consumers exist: {backlogs:?}"
    );
    for (consumer, backlog) in &backlogs {
        assert_eq!(*backlog, (0, 0), "consumer {consumer} has work left");
    }

    let observed = std::mem::take(&mut *shared.observed.lock().unwrap());
    eprintln!("{}", summarise(&stories, &orders, &observed));
    eprintln!("whole test so far: {:?}", test_started.elapsed());

    // 6. No 500s; no answers outside the contract.
    assert!(
        observed.unexpected.is_empty(),
        "answers outside the contract: {:#?}",
        observed.unexpected
    );
    assert!(
        observed.server_errors.is_empty(),
        "{} requests answered 500 during the faults (a dependency that is down should be a \
         503): {:#?}",
        observed.server_errors.len(),
        observed.server_errors
    );
    let errors = logs.lines("ERROR");
    eprintln!(
        "the serve processes logged {} ERROR and {} WARN lines",
        errors.len(),
        logs.lines("WARN").len()
    );
    cluster.stop();
    drop(deployment);
    drop((nats, pg));
}

fn summarise(
    stories: &[(Browser, Role, Story)],
    orders: &[OrderRow],
    observed: &Observed,
) -> String {
    let count = |f: fn(&Story) -> usize| stories.iter().map(|(_, _, s)| f(s)).sum::<usize>();
    let statuses: BTreeMap<&str, usize> = orders.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o.status.as_str()).or_default() += 1;
        m
    });
    let tickets: BTreeSet<&str> = orders
        .iter()
        .filter(|o| o.status == "complete")
        .map(|o| o.ticket_id.as_str())
        .collect();
    format!(
        "rush: {} orders answered 201, {} payments 201 ({} more paid with the answer lost), {} \
         cancelled by buyers, {} abandoned, {} payments refused (order cancelled or expired meanwhile); \
         orders in the database {statuses:?}; {} tickets sold; {} answers lost, {} 500s; \
         what clients met: {}",
        count(|s| s.ordered.len()),
        count(|s| s.paid.len()),
        count(|s| s.paid_unseen.len()),
        count(|s| s.cancelled.len()),
        count(|s| s.abandoned.len()),
        count(|s| s.refused.len()),
        tickets.len(),
        observed.lost(),
        observed.server_errors.len(),
        observed.timeline(),
    )
}
