//! Test helpers shared by every crate's tests.
//!
//! - [`TestDb`]: a fresh, isolated database per test on either backend: a temporary SQLite
//!   file, or a PostgreSQL database with a unique name on the local server (dropped afterwards).
//! - [`TestServer`]: a router served on `127.0.0.1:0` until dropped.
//! - [`TestClient`]: an HTTP client that keeps cookies, with JSON helpers.
//! - [`backend_tests!`]: runs one async test body on SQLite and on PostgreSQL.
//! - [`stripe::MockStripe`]: a local server that speaks Stripe's wire format.
//! - [`moto::MotoServer`]: a real S3 API (moto, installed from PyPI on first use) with a fresh
//!   bucket per test.
//! - [`OwnNatsServer`], [`OwnPostgresServer`]: servers of a test's own, for tests that stop and
//!   restart them.
//! - [`free_port`], [`free_port_block`]: free ports for a test's servers, outside the kernel's
//!   ephemeral range so a restart gets them back.
//!
//! PostgreSQL is reached at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a role that may create databases.

use std::net::SocketAddr;

use axum::Router;
pub use bt_platform::Backend;
use bt_platform::db::redact_url;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, Executor};

pub mod moto;
mod pyenv;
pub mod smtp;
pub mod stripe;

/// A port of `127.0.0.1` that is free now (another process may take it before it is bound),
/// picked at random **outside the kernel's ephemeral range** ([`ephemeral_port_range`]).
///
/// A port the kernel hands out for outgoing connections is a bad home for a test's server: once
/// the server is stopped, any outgoing connection on the machine may get that port as its local
/// end, and a client retrying the stopped server on `127.0.0.1` can even be connected to itself
/// (TCP simultaneous open), so a restart on the same port fails with "address already in use".
/// Ports from 10000 up to the range's start and above its end are never handed out that way.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `ports` consecutive ports of `127.0.0.1` that are all free now, all outside the
/// kernel's ephemeral range (see [`free_port`]), picked at random: for a set of servers that
/// take their ports from one base (the local cluster's nginx and replicas).
pub fn free_port_block(ports: u16) -> u16 {
    assert!(ports > 0, "a block of no ports");
    let ephemeral = ephemeral_port_range();
    let span = ports - 1;
    let bases = || {
        (10_000..=u16::MAX - span)
            .filter(|base| (*base..=base + span).all(|port| !ephemeral.contains(&port)))
    };
    let count = bases().count();
    assert!(
        count > 1_000,
        "the ephemeral port range {ephemeral:?} leaves too few ports for test servers; \
         narrow it (net.ipv4.ip_local_port_range)"
    );
    // A random start (v4 UUIDs are random), then the next candidates in turn.
    let start = (uuid::Uuid::new_v4().as_u128() % count as u128) as usize;
    bases()
        .cycle()
        .skip(start)
        .take(count)
        .find(|&base| {
            (base..=base + span).all(|port| {
                std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok()
            })
        })
        .unwrap_or_else(|| {
            panic!("no {ports} consecutive free ports on 127.0.0.1 outside the ephemeral range")
        })
}

/// The ports the kernel picks from for the local end of outgoing connections
/// (`/proc/sys/net/ipv4/ip_local_port_range`; Linux's default 32768–60999 where it cannot be read).
pub fn ephemeral_port_range() -> std::ops::RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            Some(bounds.next()?.ok()?..=bounds.next()?.ok()?)
        })
        .unwrap_or(32_768..=60_999)
}

/// Where tests create their PostgreSQL databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database that only this test uses.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
    /// The admin URL of the server the database was made on, when not
    /// [`postgres_admin_url`] (see [`TestDb::postgres_on`]).
    pg_admin: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        init_logs();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                    pg_admin: None,
                }
            }
            Backend::Postgres => {
                let name = format!("bt_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL must run for this test ({}): {e}",
                            redact_url(&admin)
                        )
                    });
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                drop(conn.close().await);
                let (base, _) = admin.rsplit_once('/').expect("admin URL has a database");
                Self {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                    pg_name: Some(name),
                    pg_admin: None,
                }
            }
        }
    }

    /// A fresh PostgreSQL database on the server of `admin_url` (a role that may create
    /// databases), e.g. an [`OwnPostgresServer`]; dropped there afterwards.
    pub async fn postgres_on(admin_url: &str) -> Self {
        init_logs();
        let name = format!("bt_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL must run for this test ({}): {e}",
                    redact_url(admin_url)
                )
            });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        drop(conn.close().await);
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("admin URL has a database");
        Self {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            _dir: None,
            pg_name: Some(name),
            pg_admin: Some(admin_url.to_owned()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = self.pg_admin.take().unwrap_or_else(postgres_admin_url);
        clean_up_in_drop(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                drop_database(&mut conn, &name).await;
                drop(conn.close().await);
            }
        });
    }
}

/// Runs async clean-up from `Drop`, which runs outside async code (or inside a runtime that
/// must not be blocked): a small runtime on its own thread, joined before returning.
fn clean_up_in_drop(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let cleanup = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work);
    });
    drop(cleanup.join());
}

/// Drops a test database, disconnecting whoever still uses it; failures are ignored.
async fn drop_database(conn: &mut sqlx::PgConnection, name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    drop(conn.execute(sql.as_str()).await);
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG` filters).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    drop(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init(),
    );
}

/// A router served on an ephemeral loopback port until dropped.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn spawn(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                drop(rx.await);
            };
            drop(bt_platform::http::serve(listener, app, shutdown).await);
        });
        Self {
            addr,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A new client (its own cookie jar) for this server.
    pub fn client(&self) -> TestClient {
        TestClient::new(&format!("http://{}", self.addr))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HTTP client with its own cookie jar, like one browser.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub base: String,
    pub http: reqwest::Client,
}

/// A response read completely: status, headers and the body as JSON (`Value::Null` when empty
/// or not JSON; `text` keeps the raw body).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl TestResponse {
    /// The `message` of every entry of an error body.
    pub fn messages(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(field, message)` of every entry of an error body.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

impl TestClient {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> TestResponse {
        match Self::try_send(req).await {
            Ok(response) => response,
            Err(err) => panic!("request failed: {err:?}"),
        }
    }

    /// Sends a request and reads the whole response; `Err` when the connection broke (e.g. the
    /// server died with the request in flight).
    pub async fn try_send(req: reqwest::RequestBuilder) -> Result<TestResponse, reqwest::Error> {
        let response = req.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(TestResponse {
            status,
            headers,
            json,
            text,
        })
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> TestResponse {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> TestResponse {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    /// A POST with a raw body and content type, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> TestResponse {
        let mut req = self.http.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        self.send(req).await
    }
}

/// Runs each listed `async fn name(backend: Backend)` once on SQLite (`sqlite::name`) and once on
/// PostgreSQL (`postgres::name`).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )+
        }
    };
}

/// Which bus a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// The real local NATS server (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`).
    Nats,
    /// The embedded default's in-process log, in a temporary file.
    Local,
}

/// Where tests reach NATS.
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A bus of its own for one test: on NATS a unique stream and subject prefix (the stream is
/// deleted afterwards), locally a fresh log file. Retries are fast so tests stay short.
#[derive(Debug)]
pub struct TestBus {
    pub bus: bt_platform::Bus,
    pub config: bt_platform::bus::BusConfig,
    nats_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestBus {
    /// A fast-retrying configuration with a unique prefix and stream name.
    pub fn test_config() -> bt_platform::bus::BusConfig {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        bt_platform::bus::BusConfig {
            subject_prefix: format!("t{unique}."),
            stream: format!("T{unique}"),
            max_deliver: 3,
            max_deliver_waiting: 50,
            ack_wait: std::time::Duration::from_secs(10),
            retry_delay: std::time::Duration::from_millis(20),
            max_retry_delay: std::time::Duration::from_millis(200),
            poll_interval: std::time::Duration::from_millis(200),
            consumer_batch: 64,
            consumer_partitions: 4,
            relay_yield: std::time::Duration::from_millis(250),
            relay_busy: 40,
            lag_warning: std::time::Duration::from_secs(10),
            lag_interval: std::time::Duration::from_millis(200),
        }
    }

    pub async fn new(kind: BusKind) -> Self {
        Self::with_config(kind, Self::test_config()).await
    }

    pub async fn with_config(kind: BusKind, config: bt_platform::bus::BusConfig) -> Self {
        init_logs();
        match kind {
            BusKind::Nats => Self::on_nats(&nats_url(), config).await,
            BusKind::Local => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("bus.db").display());
                let bus = bt_platform::bus::local::LocalBus::open(&url, config.clone())
                    .await
                    .expect("local bus");
                Self {
                    bus: bt_platform::Bus::Local(Box::new(bus)),
                    config,
                    nats_url: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// A bus on the NATS server at `url`.
    pub async fn on_nats(url: &str, config: bt_platform::bus::BusConfig) -> Self {
        let bus = bt_platform::bus::nats::NatsBus::connect(url, config.clone())
            .await
            .unwrap_or_else(|e| panic!("NATS with JetStream must run for this test: {e}"));
        Self {
            bus: bt_platform::Bus::Nats(Box::new(bus)),
            config,
            nats_url: Some(url.to_owned()),
            _dir: None,
        }
    }
}

impl TestBus {
    /// The test's NATS stream; `None` for the local bus.
    async fn nats_stream(&self) -> Option<async_nats::jetstream::stream::Stream> {
        let bt_platform::Bus::Nats(nats) = &self.bus else {
            return None;
        };
        Some(
            nats.jetstream()
                .get_stream(&self.config.stream)
                .await
                .expect("the test's stream exists"),
        )
    }

    /// How many messages the NATS stream holds per subject (without the test's prefix); empty
    /// for the local bus. Tells, e.g., that nothing went to a `deadletter.` subject.
    pub async fn subject_counts(&self) -> std::collections::BTreeMap<String, usize> {
        use futures::TryStreamExt;
        let mut counts = std::collections::BTreeMap::new();
        let Some(stream) = self.nats_stream().await else {
            return counts;
        };
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(">")
            .await
            .expect("stream info")
            .try_collect()
            .await
            .expect("stream subjects");
        for (subject, count) in subjects {
            let subject = subject
                .strip_prefix(&self.config.subject_prefix)
                .unwrap_or(&subject)
                .to_owned();
            counts.insert(subject, count);
        }
        counts
    }

    /// What every durable consumer of the NATS stream has not finished yet, by consumer name:
    /// `(not delivered yet, delivered and not acknowledged)`; empty for the local bus. Tells
    /// that every event reached its consumers.
    pub async fn consumer_backlogs(&self) -> std::collections::BTreeMap<String, (u64, usize)> {
        use futures::TryStreamExt;
        let mut backlogs = std::collections::BTreeMap::new();
        let Some(stream) = self.nats_stream().await else {
            return backlogs;
        };
        let infos: Vec<async_nats::jetstream::consumer::Info> = stream
            .consumers()
            .try_collect()
            .await
            .expect("consumer infos");
        for info in infos {
            backlogs.insert(info.name, (info.num_pending, info.num_ack_pending));
        }
        backlogs
    }
}

/// Drops, when dropped, every PostgreSQL database whose name starts with `prefix`: for tests
/// whose processes create their databases themselves (`buyticket serve` creates a missing one).
#[derive(Debug)]
pub struct PgDatabasesGuard {
    pub prefix: String,
}

impl Drop for PgDatabasesGuard {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let admin = postgres_admin_url();
        clean_up_in_drop(async move {
            let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                return;
            };
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            )
            .bind(&prefix)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            for name in names {
                drop_database(&mut conn, &name).await;
            }
            drop(conn.close().await);
        });
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let Some(url) = self.nats_url.take() else {
            return;
        };
        let stream = self.config.stream.clone();
        clean_up_in_drop(async move {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(std::time::Duration::from_secs(2))
                .connect(&url);
            if let Ok(Ok(client)) =
                tokio::time::timeout(std::time::Duration::from_secs(3), connect).await
            {
                let js = async_nats::jetstream::new(client);
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(3),
                    js.delete_stream(&stream),
                )
                .await;
            }
        });
    }
}

/// A NATS server of a test's own (a child process on a free port with its own store), for
/// tests that stop and restart the server without disturbing anyone else.
#[derive(Debug)]
pub struct OwnNatsServer {
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnNatsServer {
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.restart();
        server
    }

    fn binary() -> String {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nats-server")
        .to_owned()
    }

    /// Starts the server (again) on the same port and store, and waits until it accepts.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = std::process::Command::new(Self::binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as an operator would (SIGTERM), waiting (≤ 10 s, then SIGKILL) until it
    /// has exited; [`OwnNatsServer::restart`] starts it again.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL server of a test's own (`initdb` into a temporary directory, `pg_ctl` on a free
/// port of 127.0.0.1, trust authentication), for tests that stop and restart the database server
/// without disturbing anyone else; stopped (immediate mode) and removed when dropped. Run as
/// root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).
/// Panics, with what to install, when PostgreSQL's server binaries are missing.
#[derive(Debug)]
pub struct OwnPostgresServer {
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`: a superuser, for [`TestDb::postgres_on`].
    pub admin_url: String,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    /// Run the binaries as this OS user (`runuser -u <user> --`), when running as root.
    as_user: Option<String>,
    running: bool,
}

impl OwnPostgresServer {
    /// Creates a cluster and starts the server.
    pub fn start() -> Self {
        let bin = Self::bin_dir();
        let as_user = Self::running_as_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("bt-pg-")
            .tempdir()
            .expect("temp dir");
        if let Some(user) = &as_user {
            let status = std::process::Command::new("chown")
                .args([
                    &format!("{user}:"),
                    dir.path().to_str().expect("UTF-8 path"),
                ])
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown {user} {}: is there a `{user}` OS user?",
                dir.path().display()
            );
        }
        let port = free_port();
        let mut server = Self {
            port,
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            dir,
            as_user,
            running: false,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        server.start_again();
        server
    }

    /// The newest installed `initdb`'s directory (Debian: /usr/lib/postgresql/<v>/bin), or the
    /// one on `PATH`.
    fn bin_dir() -> std::path::PathBuf {
        let mut candidates: Vec<(u32, std::path::PathBuf)> =
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = entry.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect();
        candidates.sort();
        if let Some((_, bin)) = candidates.pop() {
            return bin;
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
            .unwrap_or_else(|| {
                panic!(
                    "this test needs PostgreSQL's server binaries (initdb, pg_ctl): none under \
                     /usr/lib/postgresql/*/bin or on PATH; install the `postgresql` package"
                )
            })
    }

    fn running_as_root() -> bool {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user.
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    fn data_dir(&self) -> String {
        self.dir
            .path()
            .join("data")
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }

    /// Runs one of PostgreSQL's binaries (as the server's OS user), panicking with its output
    /// when it fails.
    fn run(&self, binary: &str, args: &[&str]) {
        let program = self.bin.join(binary);
        let mut command = match &self.as_user {
            Some(user) => {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => std::process::Command::new(&program),
        };
        // The server's own log goes to a file; the output of the command itself is collected.
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{binary} {} failed: {}\n{}\nserver log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts the stopped server again on the same port and data, and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "already running");
        let socket_dir = self.dir.path().to_str().expect("UTF-8 path").to_owned();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c fsync=off -c full_page_writes=off",
            self.port
        );
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                log.to_str().expect("UTF-8 path"),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server in fast mode (clients are disconnected, the server shuts down cleanly)
    /// and waits until it is down.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "30", "stop"],
        );
        self.running = false;
    }

    /// Stops (fast mode) and starts the server again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for OwnPostgresServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let program = self.bin.join("pg_ctl");
            let mut command = match &self.as_user {
                Some(user) => {
                    let mut command = std::process::Command::new("runuser");
                    command.args(["-u", user, "--"]).arg(&program);
                    command
                }
                None => std::process::Command::new(&program),
            };
            // Not `run`: no panic while dropping.
            drop(
                command
                    .args(["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status(),
            );
            self.running = false;
        }
    }
}

/// The session key every test signs with.
pub const TEST_JWT_KEY: &[u8] = b"test-jwt-key-that-is-at-least-32-bytes-long";

/// Session keys for tests (plain-HTTP cookies, 7-day sessions).
pub fn test_sessions() -> bt_contract::SessionKeys {
    bt_contract::SessionKeys::new(
        TEST_JWT_KEY,
        std::time::Duration::from_secs(7 * 24 * 3600),
        false,
    )
}

/// A signed-in user for services that only verify sessions: a fresh id and email, and a
/// session token signed with [`TEST_JWT_KEY`].
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

impl TestUser {
    pub fn new() -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        let email = format!("{}@test.com", uuid::Uuid::new_v4().simple());
        let (token, _) = test_sessions().issue(&id, &email).expect("token");
        Self { id, email, token }
    }

    /// A client of `base` that sends this user's session as a Bearer token.
    pub fn client(&self, base: &str) -> TestClient {
        TestClient::with_bearer(base, &self.token)
    }
}

impl Default for TestUser {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    /// A client that sends `Authorization: Bearer <token>` with every request.
    pub fn with_bearer(base: &str, token: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        let value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }
}

/// The bus a backend is paired with in service tests: SQLite with the in-process log (the
/// embedded default), PostgreSQL with NATS (the distributed mode).
pub fn bus_for(backend: Backend) -> BusKind {
    match backend {
        Backend::Sqlite => BusKind::Local,
        Backend::Postgres => BusKind::Nats,
    }
}

/// Waits until `condition` holds, panicking with `what` after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads the events of one subject from a test bus (a durable consumer of its own).
#[derive(Debug)]
pub struct EventProbe {
    subscription: bt_platform::bus::Subscription,
}

impl EventProbe {
    /// Starts listening; sees every event of `subject` published on the bus, also earlier ones.
    pub async fn new(bus: &bt_platform::Bus, subject: &str) -> Self {
        let durable = format!("probe-{}", uuid::Uuid::new_v4().simple());
        let subscription = bus
            .subscribe(&durable, subject)
            .await
            .expect("probe subscription");
        Self { subscription }
    }

    /// The next event, acknowledged; panics after `secs` seconds without one.
    pub async fn next<E: bt_contract::events::Event>(
        &mut self,
        secs: u64,
    ) -> bt_contract::events::Envelope<E> {
        let delivery = tokio::time::timeout(
            std::time::Duration::from_secs(secs),
            self.subscription.next(),
        )
        .await
        .unwrap_or_else(|_| panic!("no {} event within {secs} s", E::SUBJECT));
        delivery.ack().await.expect("ack");
        serde_json::from_slice(&delivery.payload).expect("an event envelope")
    }

    /// Asserts that no event arrives within `millis`.
    pub async fn assert_silent(&mut self, millis: u64) {
        if let Ok(delivery) = tokio::time::timeout(
            std::time::Duration::from_millis(millis),
            self.subscription.next(),
        )
        .await
        {
            panic!(
                "unexpected event: {}",
                String::from_utf8_lossy(&delivery.payload)
            );
        }
    }
}

/// Publishes an event directly on a bus, as another service would.
pub async fn publish<E: bt_contract::events::Event>(
    bus: &bt_platform::Bus,
    data: E,
) -> bt_contract::events::Envelope<E> {
    let envelope = bt_contract::events::Envelope::new(data);
    bus.publish(&bt_platform::bus::OutgoingMessage {
        id: envelope.id.to_string(),
        subject: E::SUBJECT.to_owned(),
        payload: serde_json::to_string(&envelope).expect("json"),
        request_id: None,
    })
    .await
    .expect("publish");
    envelope
}

/// The first `n` of a service's `migrations`: a database as an earlier version left it, for
/// the upgrade tests (migrate with these, write the old rows, then migrate with all).
pub fn first_migrations(migrations: &bt_platform::Migrations, n: usize) -> bt_platform::Migrations {
    let take = |m: &sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(m.migrations[..n].to_vec()),
        ignore_missing: true,
        locking: m.locking,
        no_tx: m.no_tx,
    };
    bt_platform::Migrations {
        sqlite: take(&migrations.sqlite),
        postgres: take(&migrations.postgres),
    }
}
