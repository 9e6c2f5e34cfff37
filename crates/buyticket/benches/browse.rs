//! Browsing and the rush, side by side with nginx, in one run:
//! `cargo bench -p buyticket --bench browse`.
//!
//! Starts `buyticket up` (embedded default, release build) on a free loopback port and lists
//! BROWSE_TICKETS tickets (default 50). Then it starts nginx (one worker) on another port,
//! serving the very bodies `up` answered as static files:
//!
//! - `GET /api/tickets`: the default listing;
//! - `GET /api/tickets/:id`: one ticket;
//! - `POST /api/orders`: the rush's losing answer, a static `400 {"errors":[...]}`.
//!
//! The same load generator (wrk, Debian's package: `apt-get install wrk`) drives both with the
//! same settings (BROWSE_THREADS `-t`, default 1; BROWSE_CONNECTIONS `-c`, default 64;
//! BROWSE_SECONDS `-d`, default 10), and the report prints each figure of BuyTicket beside
//! nginx's, with the ratio, and the resident memory (RSS) of `up` after each phase.
//!
//! Then the rush: RUSH_BUYERS buyers (default 2,000), each a user of their own, for
//! RUSH_TICKETS new tickets (default 100), every request written at the same instant over a
//! connection opened beforehand, and nginx answering the same burst with the static refusal
//! (first, and each burst after a 2 s pause, so that neither is measured beside the work the
//! other left); every ticket must be sold once and no more. The figures are split by answer too (the
//! winners' 201 and the losers' 400). The rush is repeated RUSH_ROUNDS times (default 5), each
//! with new tickets and buyers, and the report gives every round and the median of the p99
//! ratios. (The `rush` benchmark has more rush shapes.)
//!
//! Each round also measures two floors of the rush, each answering the same burst with the
//! static refusal, to tell what limits it: nginx behind nginx set up as the local cluster's
//! ingress (the cost of the ingress hop alone, for the distributed mode), and BuyTicket's own
//! HTTP stack alone (the bench started again as a server of `bt_platform::http` whose handler
//! answers the refusal: no session, no body, no ticket).
//!
//! RUSH_STACK_ONLY=1 runs only the rush's bursts at nginx and at that HTTP stack alone, round
//! after round (RUSH_ROUNDS, RUSH_BUYERS), for an A/B of the stack without `up`; with
//! RUSH_BARE_ADDR, at a bare server started already (`BROWSE_BARE_PORT=<port> <this binary>`,
//! e.g. from another build, or under `perf`).
//!
//! BROWSE_TARGET_URL (with BROWSE_JWT_KEY, the target's session key) measures a deployment that
//! runs already instead of `up`: the local distributed mode behind its nginx
//! (`scripts/local-cluster up`), whose replicas' memory is not reported.
//!
//! TOKIO_WORKER_THREADS, HTTP_THREADS, _RJEM_MALLOC_CONF, EVENT_RELAY_BUSY and
//! EVENT_RELAY_YIELD_MS, when set, are handed on to `up` (which otherwise starts with a clean
//! environment); HTTP_THREADS to the bare server too.
//!
//! Only loopback addresses are used, for a bounded time.

/// The bench's environment variables handed on to `up` when set (it otherwise starts with a
/// clean environment): tokio's worker count, the connection threads, jemalloc's options and the
/// relay's hold during a burst, for an A/B without a rebuild.
const PASSED_TO_UP: [&str; 5] = [
    "TOKIO_WORKER_THREADS",
    "HTTP_THREADS",
    "_RJEM_MALLOC_CONF",
    "EVENT_RELAY_BUSY",
    "EVENT_RELAY_YIELD_MS",
];

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use bt_contract::SessionKeys;
use bt_test_support::free_port;
use serde_json::json;
use support::Process;
use support::bench::{env_u64, percentile};

const KEY: &str = "bench-key-that-is-at-least-32-bytes-long!!";

/// The pause after each burst of the rush, so that no burst is measured beside the work the
/// one before it left.
const SETTLE: Duration = Duration::from_secs(2);

/// What wrk measured of one URL.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers other than 2xx/3xx (expected for the losing purchase, a 400).
    non_2xx: u64,
}

/// wrk's latency figures are `1.23ms`, `456.78us`, `1.02s`.
fn millis(text: &str) -> f64 {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

/// Runs wrk against `url` (with `script`, a Lua file for a POST, when given).
fn wrk(url: &str, script: Option<&Path>) -> Load {
    let threads = env_u64("BROWSE_THREADS", 1).to_string();
    let connections = env_u64("BROWSE_CONNECTIONS", 64).to_string();
    let seconds = format!("{}s", env_u64("BROWSE_SECONDS", 10));
    let mut command = Command::new("wrk");
    command.args([
        "-t",
        &threads,
        "-c",
        &connections,
        "-d",
        &seconds,
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk must be installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    let mut load = Load::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => load.requests_per_sec = n.parse().unwrap_or(0.0),
            ["50%", t] => load.p50_ms = millis(t),
            ["99%", t] => load.p99_ms = millis(t),
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    assert!(load.requests_per_sec > 0.0, "no figures from wrk: {text}");
    load
}

/// The resident memory of process `pid`, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// nginx on `port`, with its pid, logs and temporary files in `dir`; stopped when dropped.
struct Nginx {
    master: Child,
    conf: std::path::PathBuf,
    error_log: std::path::PathBuf,
}

impl Nginx {
    /// One worker serving `root`'s files at the API's paths, and the rush's refusal.
    fn start(root: &Path, port: u16) -> Self {
        Self::start_with(
            root,
            port,
            "1",
            4096,
            "",
            &format!(
                r#"        location = /api/tickets {{ alias {root}/listing.json; }}
        location /api/tickets/ {{ alias {root}/tickets/; }}
        location = /api/orders {{ return 400 '{{"errors":[{{"message":"{TAKEN}"}}]}}'; }}"#,
                root = root.display()
            ),
        )
    }

    /// nginx as the local cluster's ingress (`scripts/local-cluster`: a worker per core, idle
    /// upstream connections kept, the same proxy headers) in front of the static nginx at
    /// `upstream`: what the ingress hop alone costs the rush, with an upstream that answers
    /// at once.
    fn start_proxy(dir: &Path, port: u16, upstream: u16) -> Self {
        Self::start_with(
            dir,
            port,
            "auto",
            // A client's connection and its upstream's.
            16384,
            &format!(
                "    upstream static {{ server 127.0.0.1:{upstream}; keepalive 1024; keepalive_timeout 50s; }}\n"
            ),
            r#"        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Request-Id $request_id;
        location /api/orders { proxy_pass http://static; }"#,
        )
    }

    fn start_with(
        dir: &Path,
        port: u16,
        workers: &str,
        connections: u32,
        http: &str,
        server: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("nginx.conf");
        let text = format!(
            r#"worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    types {{ }}
    default_type application/json;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}    server {{
        # The same backlog as BuyTicket's listener: the rush's 2,000 connections are opened
        # at once, and over nginx's default (511) some were reset.
        listen 127.0.0.1:{port} backlog=4096;
{server}
    }}
}}
"#,
            dir = dir.display()
        );
        std::fs::write(&conf, text).unwrap();
        let error_log = dir.join("error.log");
        let master = nginx_command(&conf, &error_log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx must be installed (scripts/ensure-services.sh installs it)");
        // The guard first: stopped on every path, also when it never starts.
        let nginx = Self {
            master,
            conf,
            error_log,
        };
        wait_for_listener(port, "nginx");
        nginx
    }
}

/// Waits until something accepts connections on `port` (5 s at most).
fn wait_for_listener(port: u16, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port}");
}

/// The bench itself, started again as a server of the static refusal through BuyTicket's own
/// HTTP stack (`bt_platform::http`: the common layer, routing, hyper, the connection threads;
/// no session, body or ticket): what the stack alone costs the rush. Stopped when dropped.
struct Bare(Child);

/// The environment variable that makes the bench that bare server, on the port it gives.
const BARE_PORT: &str = "BROWSE_BARE_PORT";

impl Bare {
    fn start(port: u16) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .env(BARE_PORT, port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let bare = Self(child);
        wait_for_listener(port, "the bare server");
        bare
    }

    /// The server's side, in the child process.
    async fn serve(port: u16) {
        use bt_platform::http::{ServeLimits, Service, app, serve_with};
        let router = axum::Router::new().route(
            "/api/orders",
            axum::routing::post(|| async { bt_contract::ApiError::bad_request(TAKEN) }),
        );
        let app = app(vec![Service {
            name: "bare",
            router,
            checks: Vec::new(),
        }]);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], port).into()).unwrap();
        // As `up`'s listener: the same backlog, connections on a thread per core (or on
        // HTTP_THREADS, as `up`).
        let listener = socket.listen(4096).unwrap();
        let mut limits = ServeLimits {
            max_connections: 16_384,
            ..ServeLimits::default()
        };
        if let Ok(threads) = std::env::var("HTTP_THREADS") {
            limits.connection_threads = threads.parse().expect("HTTP_THREADS: a number");
        }
        serve_with(listener, app, std::future::pending(), limits)
            .await
            .unwrap();
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rush's refusal, as BuyTicket answers it.
const TAKEN: &str = "Ticket is already reserved";

/// nginx with the bench's configuration and error log (it starts it, or signals it).
fn nginx_command(conf: &Path, error_log: &Path) -> Command {
    let mut command = Command::new(nginx_binary());
    command.arg("-c").arg(conf).arg("-e").arg(error_log);
    command
}

fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx")
        .to_owned()
}

impl Drop for Nginx {
    /// `nginx -s stop`: the master stops its worker and exits. (Killing the master alone left
    /// the worker running, listening, after every run.)
    fn drop(&mut self) {
        let _ = nginx_command(&self.conf, &self.error_log)
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.master.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

fn row(what: &str, ours: Load, nginx: Load, rss: f64) {
    println!(
        "| {what} | {:.0} | {:.0} | {:.1}% | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1}× | {} |",
        ours.requests_per_sec,
        nginx.requests_per_sec,
        100.0 * ours.requests_per_sec / nginx.requests_per_sec,
        ours.p50_ms,
        ours.p99_ms,
        nginx.p50_ms,
        nginx.p99_ms,
        ours.p99_ms / nginx.p99_ms,
        megabytes(rss),
    );
}

/// `42 MB`, or `—` when the target is not a process of this bench (BROWSE_TARGET_URL).
fn megabytes(rss: f64) -> String {
    if rss.is_nan() {
        "—".to_owned()
    } else {
        format!("{rss:.0} MB")
    }
}

/// Reads one HTTP/1.1 answer (with `Content-Length`) from `stream`; its status.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> u16 {
    buffer.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.expect("the server answers");
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("answers with a Content-Length");
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("the body");
        assert!(n > 0, "the server closed the connection mid-body");
        buffer.extend_from_slice(&chunk[..n]);
    }
    status
}

/// A rush at `addr`: one connection per request, each opened and used once beforehand (a
/// `GET /healthz`), then every request written at the same instant. Per request, sorted by
/// time: the time from its write to its whole answer (µs), and (in the same order) its status.
async fn burst(addr: SocketAddr, requests: Vec<String>) -> (Vec<i64>, Vec<u16>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).unwrap();
                let mut buffer = Vec::with_capacity(1024);
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await
                    .unwrap();
                read_answer(&mut stream, &mut buffer).await;
                // A buyer that failed to connect has panicked: the others must not wait for
                // it for ever.
                tokio::time::timeout(Duration::from_secs(60), barrier.wait())
                    .await
                    .expect("every buyer connected within a minute");
                let start = Instant::now();
                stream.write_all(request.as_bytes()).await.unwrap();
                let status = read_answer(&mut stream, &mut buffer).await;
                (start.elapsed().as_micros() as i64, status)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers.sort_unstable();
    let latencies = answers.iter().map(|(latency, _)| *latency).collect();
    let statuses = answers.iter().map(|(_, status)| *status).collect();
    (latencies, statuses)
}

/// p50 / p99 / max (ms) of the answers with `status`, from latencies sorted with their statuses.
fn of_status(latencies: &[i64], statuses: &[u16], status: u16) -> String {
    let mine: Vec<i64> = latencies
        .iter()
        .zip(statuses)
        .filter(|(_, s)| **s == status)
        .map(|(l, _)| *l)
        .collect();
    let ms = |v: i64| v as f64 / 1000.0;
    format!(
        "{} answers {status}: p50 {:.1} / p99 {:.1} / max {:.1} ms",
        mine.len(),
        ms(percentile(&mine, 0.5)),
        ms(percentile(&mine, 0.99)),
        ms(*mine.last().unwrap_or(&0)),
    )
}

fn order_request(token: &str, ticket: &str) -> String {
    let body = format!("{{\"ticketId\":\"{ticket}\"}}");
    format!(
        "POST /api/orders HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// "1.4×, best 0.9×, worst 2.7×" of ratios.
fn spread(ratios: &mut [f64]) -> String {
    ratios.sort_by(f64::total_cmp);
    format!(
        "{:.1}×, best {:.1}×, worst {:.1}×",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    )
}

fn burst_row(what: &str, ours: &[i64], nginx: &[i64], rss: f64, floors: [&[i64]; 2]) {
    let ms = |v: i64| v as f64 / 1000.0;
    let floors = floors.map(|f| {
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(f, 0.5)),
            ms(percentile(f, 0.99))
        )
    });
    println!(
        "| {what} | {} | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} / {:.1} ms | {:.1}× | {} | {}; {} |",
        ours.len(),
        ms(percentile(ours, 0.5)),
        ms(percentile(ours, 0.99)),
        ms(*ours.last().unwrap_or(&0)),
        ms(percentile(nginx, 0.5)),
        ms(percentile(nginx, 0.99)),
        ms(*nginx.last().unwrap_or(&0)),
        percentile(ours, 0.99) as f64 / percentile(nginx, 0.99).max(1) as f64,
        megabytes(rss),
        floors[0],
        floors[1],
    );
}

/// The body `GET url` answers.
async fn body(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let res = http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {url}");
    res.bytes().await.unwrap().to_vec()
}

/// Lists a ticket as `seller`; its id.
async fn list(http: &reqwest::Client, base: &str, seller: &str, title: &str, price: u64) -> String {
    let res = http
        .post(format!("{base}/api/tickets"))
        .bearer_auth(seller)
        .json(&json!({"title": title, "price": price}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "listing {title}");
    let ticket: serde_json::Value = res.json().await.unwrap();
    ticket["id"].as_str().unwrap().to_owned()
}

/// RUSH_STACK_ONLY: only the rush's bursts at nginx and at BuyTicket's HTTP stack alone, round
/// after round, for an A/B of the stack without `up` (RUSH_BARE_ADDR: a bare server started
/// already, e.g. from another build or under `perf`).
async fn stack_only() {
    let buyers = env_u64("RUSH_BUYERS", 2000) as usize;
    let rounds = env_u64("RUSH_ROUNDS", 5).max(1) as usize;
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = Nginx::start(root.path(), port);
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (bare_addr, _bare) = match std::env::var("RUSH_BARE_ADDR") {
        Ok(addr) => (addr.parse().expect("RUSH_BARE_ADDR: host:port"), None),
        Err(_) => {
            let port = free_port();
            let bare = Bare::start(port);
            (SocketAddr::from(([127, 0, 0, 1], port)), Some(bare))
        }
    };
    println!("| round | nginx p50 / p99 | stack alone p50 / p99 | p99 ratio |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let requests: Vec<String> = (0..buyers)
            .map(|i| order_request(&format!("token-{round}-{i}"), "ticket"))
            .collect();
        let (theirs, statuses) = burst(nginx_addr, requests.clone()).await;
        assert!(statuses.iter().all(|s| *s == 400));
        tokio::time::sleep(SETTLE).await;
        let (ours, statuses) = burst(bare_addr, requests).await;
        assert!(statuses.iter().all(|s| *s == 400));
        tokio::time::sleep(SETTLE).await;
        let ms = |of: &[i64], p| percentile(of, p) as f64 / 1000.0;
        let ratio = ms(&ours, 0.99) / ms(&theirs, 0.99).max(0.001);
        println!(
            "| {round} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {ratio:.1}× |",
            ms(&theirs, 0.5),
            ms(&theirs, 0.99),
            ms(&ours, 0.5),
            ms(&ours, 0.99)
        );
        ratios.push(ratio);
    }
    println!("stack alone, p99 ratio median {}", spread(&mut ratios));
}

#[tokio::main]
async fn main() {
    if let Ok(port) = std::env::var(BARE_PORT) {
        return Bare::serve(port.parse().expect("a port")).await;
    }
    if std::env::var_os("RUSH_STACK_ONLY").is_some() {
        return stack_only().await;
    }
    let tickets = env_u64("BROWSE_TICKETS", 50);
    let data = tempfile::tempdir().unwrap();
    // BROWSE_TARGET_URL (with BROWSE_JWT_KEY, the target's session key): a deployment that
    // runs already, e.g. the local distributed mode behind its nginx; otherwise `up`.
    let (base, key, up) = match std::env::var("BROWSE_TARGET_URL") {
        Ok(url) => {
            let key = std::env::var("BROWSE_JWT_KEY")
                .expect("BROWSE_JWT_KEY: the target's JWT_KEY (e.g. target/local-cluster/jwt_key)");
            (url.trim_end_matches('/').to_owned(), key, None)
        }
        Err(_) => {
            let mut env = vec![
                ("JWT_KEY", KEY.to_owned()),
                ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ];
            // `up` starts with a clean environment: only these reach it from the bench's.
            for name in PASSED_TO_UP {
                if let Ok(value) = std::env::var(name) {
                    env.push((name, value));
                }
            }
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let up = Process::start(
                &[
                    "up",
                    "--port",
                    "0",
                    "--data-dir",
                    data.path().to_str().unwrap(),
                ],
                &env,
            );
            (up.url.clone(), KEY.to_owned(), Some(up))
        }
    };
    // The resident memory of `up` (not measured for a target of its own).
    let rss = || up.as_ref().map_or(f64::NAN, |up| rss_mb(up.pid()));
    match &up {
        Some(up) => println!(
            "target: {base} (pid {}), {tickets} tickets listed",
            up.pid()
        ),
        None => println!("target: {base}, {tickets} tickets listed"),
    }
    let sessions = SessionKeys::new(key.as_bytes(), Duration::from_secs(3600), false);
    let (seller, _) = sessions.issue("bench-seller", "seller@bench.test").unwrap();
    let (buyer, _) = sessions.issue("bench-buyer", "buyer@bench.test").unwrap();
    let http = reqwest::Client::new();
    let mut first = None;
    for n in 0..tickets {
        let id = list(&http, &base, &seller, &format!("Bench concert {n}"), 20 + n).await;
        first.get_or_insert(id);
    }
    let one = first.expect("at least one ticket");
    // A buyer reserves the first ticket: the "losing purchase" below is a buyer too late.
    let reserved = http
        .post(format!("{base}/api/orders"))
        .bearer_auth(&buyer)
        .json(&json!({"ticketId": one}))
        .send()
        .await
        .unwrap();
    assert_eq!(reserved.status(), 201, "the winning order");
    let rss_filled = rss();

    // The bodies nginx serves: exactly what `up` answered.
    let root = tempfile::tempdir().unwrap();
    // In the distributed mode the listing may lag the writes (other replicas learn them from
    // the events, and nginx's micro-cache may serve a page from before them): wait until it
    // shows the tickets just listed, less the reserved one at most (one default page).
    let page = bt_tickets::handlers::DEFAULT_LIMIT as usize;
    let expected = (tickets as usize).min(page).saturating_sub(1).max(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (listing, second) = loop {
        let listing = body(&http, &format!("{base}/api/tickets")).await;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&listing).unwrap();
        if list.len() >= expected {
            let second = list[0]["id"].as_str().unwrap().to_owned();
            break (listing, second);
        }
        assert!(
            Instant::now() < deadline,
            "the listing shows {} tickets 10 s after {tickets} were listed",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ticket = body(&http, &format!("{base}/api/tickets/{second}")).await;
    std::fs::write(root.path().join("listing.json"), &listing).unwrap();
    std::fs::create_dir_all(root.path().join("tickets")).unwrap();
    std::fs::write(root.path().join("tickets").join(&second), &ticket).unwrap();
    let port = free_port();
    let _nginx = Nginx::start(root.path(), port);
    let static_base = format!("http://127.0.0.1:{port}");
    println!(
        "bodies: listing {} bytes, ticket {} bytes; nginx (1 worker) on {static_base}",
        listing.len(),
        ticket.len()
    );
    // The rush's floors, for what limits it: the ingress hop alone, and BuyTicket's HTTP stack
    // alone, each answering the static refusal.
    let proxy_port = free_port();
    let _proxy = Nginx::start_proxy(&root.path().join("proxy"), proxy_port, port);
    let bare_port = free_port();
    let _bare = Bare::start(bare_port);

    // A losing purchase: a POST of the already reserved ticket, as another buyer.
    let (late, _) = sessions.issue("bench-late", "late@bench.test").unwrap();
    let script = root.path().join("order.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"ticketId\":\"{one}\"}}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {late}\"\n"
        ),
    )
    .unwrap();

    println!();
    println!(
        "| request | BuyTicket req/s | nginx req/s | ratio | BuyTicket p50 / p99 | nginx p50 / p99 | p99 ratio | RSS of up after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let phases: [(&str, String, String, Option<&Path>); 3] = [
        (
            "GET /api/tickets",
            format!("{base}/api/tickets"),
            format!("{static_base}/api/tickets"),
            None,
        ),
        (
            "GET /api/tickets/:id",
            format!("{base}/api/tickets/{second}"),
            format!("{static_base}/api/tickets/{second}"),
            None,
        ),
        (
            "POST /api/orders (losing)",
            format!("{base}/api/orders"),
            format!("{static_base}/api/orders"),
            Some(script.as_path()),
        ),
    ];
    for (what, ours, theirs, script) in phases {
        let ours = wrk(&ours, script);
        let theirs = wrk(&theirs, script);
        if script.is_some() {
            assert!(ours.non_2xx > 0, "the late buyers were refused");
        }
        row(what, ours, theirs, rss());
    }
    println!();
    println!(
        "RSS of up after listing {tickets} tickets: {}",
        megabytes(rss_filled)
    );

    // The rush: RUSH_BUYERS buyers (default 2,000), each a user of their own, at once for
    // RUSH_TICKETS new tickets (default 100), over connections opened beforehand; nginx
    // answers the same burst with the static refusal.
    let rush_tickets = env_u64("RUSH_TICKETS", 100) as usize;
    let rush_buyers = env_u64("RUSH_BUYERS", 2000) as usize;
    let rounds = env_u64("RUSH_ROUNDS", 5).max(1) as usize;
    let ours_addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let nginx_addr: SocketAddr = static_base.trim_start_matches("http://").parse().unwrap();
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    let bare_addr = SocketAddr::from(([127, 0, 0, 1], bare_port));
    println!();
    println!(
        "| rush round | buyers | BuyTicket p50 / p99 / max | nginx p50 / p99 / max | p99 ratio | RSS of up after | floors, p50 / p99: nginx behind nginx; BuyTicket's HTTP stack |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut floor_ratios = (Vec::new(), Vec::new());
    let mut by_answer = Vec::new();
    for round in 1..=rounds {
        let mut wanted = Vec::new();
        for n in 0..rush_tickets {
            wanted.push(list(&http, &base, &seller, &format!("Rush {round} gala {n}"), 50).await);
        }
        // Each ticket's orders service replica knows it before the burst (no 503 "not yet").
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests: Vec<String> = (0..rush_buyers)
            .map(|i| {
                let (token, _) = sessions
                    .issue(
                        &format!("rush-{round}-{i}"),
                        &format!("rush-{round}-{i}@bench.test"),
                    )
                    .unwrap();
                order_request(&token, &wanted[i % rush_tickets])
            })
            .collect();
        // Each burst on a quiet machine: after BuyTicket's, the winners' events are applied
        // (a second or so of work in every service), and after either, 2,000 connections
        // close. Measured right after BuyTicket's, nginx's p99 moved from 3 to 130 ms with
        // that work; right after nginx's, BuyTicket's rose by about a quarter.
        let (theirs, nginx_statuses) = burst(nginx_addr, requests.clone()).await;
        tokio::time::sleep(SETTLE).await;
        let (proxied, proxied_statuses) = burst(proxy_addr, requests.clone()).await;
        tokio::time::sleep(SETTLE).await;
        let (bare, bare_statuses) = burst(bare_addr, requests.clone()).await;
        tokio::time::sleep(SETTLE).await;
        let (ours, statuses) = burst(ours_addr, requests).await;
        let rss_rush = rss();
        tokio::time::sleep(SETTLE).await;
        let won = statuses.iter().filter(|s| **s == 201).count();
        let refused = statuses.iter().filter(|s| **s == 400).count();
        assert_eq!(
            won, rush_tickets,
            "every ticket sold once, none twice: {statuses:?}"
        );
        assert_eq!(won + refused, rush_buyers, "every other buyer refused");
        assert!(nginx_statuses.iter().all(|s| *s == 400));
        assert!(proxied_statuses.iter().all(|s| *s == 400));
        assert!(bare_statuses.iter().all(|s| *s == 400));
        burst_row(
            &format!("{round}: {won} sold, {refused} refused"),
            &ours,
            &theirs,
            rss_rush,
            [&proxied, &bare],
        );
        let p99_ratio =
            |of: &[i64]| percentile(of, 0.99) as f64 / percentile(&theirs, 0.99).max(1) as f64;
        ratios.push(p99_ratio(&ours));
        floor_ratios.0.push(p99_ratio(&proxied));
        floor_ratios.1.push(p99_ratio(&bare));
        by_answer.push(format!(
            "round {round}: {}; {}",
            of_status(&ours, &statuses, 201),
            of_status(&ours, &statuses, 400)
        ));
    }
    println!();
    println!(
        "{rush_buyers} buyers for {rush_tickets} tickets, {rounds} rounds: p99 ratio median {}",
        spread(&mut ratios)
    );
    println!(
        "floors, p99 ratio to nginx's: nginx behind nginx median {}; BuyTicket's HTTP stack alone median {}",
        spread(&mut floor_ratios.0),
        spread(&mut floor_ratios.1)
    );
    println!();
    println!("BuyTicket's rush by answer:");
    for line in by_answer {
        println!("- {line}");
    }
    // The winning order is still the only one.
    let orders = http
        .get(format!("{base}/api/orders"))
        .bearer_auth(&late)
        .send()
        .await
        .unwrap()
        .json::<Vec<serde_json::Value>>()
        .await
        .unwrap();
    assert!(orders.is_empty(), "no late buyer got an order");
}
