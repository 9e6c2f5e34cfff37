//! A whole deployment for process-level tests — `buyticket up`, or one `buyticket serve`
//! process per service on PostgreSQL and NATS with this test as the ingress — and the people
//! who use it ([`Browser`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bt_platform::bus::BusConfig;
use bt_test_support::{TestBus, TestClient, TestDb, TestResponse, nats_url, postgres_admin_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Process;

/// The session key of the distributed deployments.
pub const KEY: &str = "an-e2e-test-key-that-is-at-least-32-bytes-long";

/// The ingress's path rules: where each request goes.
#[derive(Debug, Clone)]
pub struct Ingress {
    pub auth: String,
    pub tickets: String,
    pub orders: String,
    pub payments: String,
    pub notifications: String,
}

impl Ingress {
    /// Everything on one listener (`buyticket up`).
    pub fn single(url: &str) -> Self {
        Self {
            auth: url.to_owned(),
            tickets: url.to_owned(),
            orders: url.to_owned(),
            payments: url.to_owned(),
            notifications: url.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        let base = if path.starts_with("/api/users/") {
            &self.auth
        } else if path.starts_with("/api/tickets") {
            &self.tickets
        } else if path.starts_with("/api/orders") {
            &self.orders
        } else if path.starts_with("/api/payments") || path.starts_with("/api/payouts") {
            &self.payments
        } else if path.starts_with("/api/notifications") || path.starts_with("/api/alerts") {
            &self.notifications
        } else {
            panic!("the test ingress has no route for {path}")
        };
        format!("{base}{path}")
    }
}

/// One person with a browser: a cookie jar, talking to the ingress.
pub struct Browser {
    pub client: TestClient,
    pub ingress: Ingress,
    pub id: String,
}

impl Browser {
    /// Signs up with `email`; the session is the `session` cookie of the auth service, which
    /// the cookie jar then sends to every service (cookies are per host, not per port, so the
    /// `serve` processes on other ports of 127.0.0.1 receive it too, as behind one ingress).
    pub async fn sign_up(ingress: &Ingress, email: &str) -> Self {
        let mut browser = Self {
            client: TestClient::new(""),
            ingress: ingress.clone(),
            id: String::new(),
        };
        let res = browser
            .post(
                "/api/users/signup",
                &json!({"email": email, "password": "password"}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "sign-up: {}", res.text);
        let cookies = res.set_cookies();
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with("session=") && !c.contains("Secure")),
            "a plain-HTTP session cookie: {cookies:?}"
        );
        browser.id = res.json["id"].as_str().unwrap().to_owned();
        browser
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        let http = &self.client.http;
        self.client.send(http.get(self.ingress.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> TestResponse {
        let http = &self.client.http;
        self.client
            .send(http.post(self.ingress.url(path)).json(body))
            .await
    }

    /// A POST that may lose its connection (a process killed with it in flight).
    pub async fn try_post(&self, path: &str, body: &Value) -> Result<TestResponse, reqwest::Error> {
        let http = &self.client.http;
        TestClient::try_send(http.post(self.ingress.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> TestResponse {
        let http = &self.client.http;
        self.client
            .send(http.put(self.ingress.url(path)).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        let http = &self.client.http;
        self.client.send(http.delete(self.ingress.url(path))).await
    }

    /// Pays order `order_id` with the test card `tok_visa`, asking again (for up to `limit`)
    /// while the payments service has not heard of the order yet (503) or the order is not
    /// complete yet (202): the `201` answer's body.
    pub async fn pay(&self, order_id: &str, limit: Duration) -> Value {
        let body = json!({"orderId": order_id, "token": "tok_visa"});
        poll_for(limit, "the payment is taken", || async {
            let res = self.post("/api/payments", &body).await;
            match res.status {
                StatusCode::CREATED => Ok(res.json),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::ACCEPTED => Err(res.text),
                other => panic!("paying answered {other}: {}", res.text),
            }
        })
        .await
    }
}

/// The services of a distributed deployment, in start order.
pub const SERVICES: [&str; 6] = [
    "auth",
    "tickets",
    "orders",
    "expiration",
    "payments",
    "notifications",
];

/// A running deployment.
pub enum Deployment {
    /// `buyticket up` on a data directory of its own.
    Embedded {
        process: Option<Process>,
        env: Vec<(String, String)>,
        data: tempfile::TempDir,
    },
    /// One `serve` process per service, on PostgreSQL and NATS.
    Distributed {
        processes: BTreeMap<&'static str, Process>,
        env: Vec<(String, String)>,
        // Dropped after the processes: one database per service, and the run's own stream.
        dbs: BTreeMap<&'static str, TestDb>,
        _stream: Box<TestBus>,
        /// The ticket files (`FILE_STORE_URL=file://...`: every replica runs here).
        _files: tempfile::TempDir,
    },
}

impl Deployment {
    /// `buyticket up` with `env` on top of a clean environment.
    pub fn embedded(env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut deployment = Self::Embedded {
            process: None,
            env,
            data,
        };
        deployment.start("all");
        deployment
    }

    /// The six services as `serve` processes on PostgreSQL and NATS (each with its own fresh
    /// database; a stream and subject prefix of this run's own), with `env` on top.
    pub async fn distributed(env: &[(&str, &str)]) -> Self {
        Self::distributed_on(&postgres_admin_url(), &nats_url(), env).await
    }

    /// [`Deployment::distributed`] on the PostgreSQL server of `pg_admin_url` (a role that may
    /// create databases) and the NATS server at `nats_url`, e.g. servers of the test's own
    /// ([`bt_test_support::OwnPostgresServer`], [`bt_test_support::OwnNatsServer`]) that it
    /// restarts.
    pub async fn distributed_on(pg_admin_url: &str, nats_url: &str, env: &[(&str, &str)]) -> Self {
        let mut deployment = Self::prepared_on(pg_admin_url, nats_url, env).await;
        for service in SERVICES {
            deployment.start(service);
        }
        deployment
    }

    /// What [`Deployment::distributed_on`] prepares — a database per service, the run's own
    /// stream, the settings — with no process started yet: start them with
    /// [`Deployment::start`], or run them as processes of the test's own with
    /// [`Deployment::service_env`] (e.g. several replicas of a service).
    pub async fn prepared_on(pg_admin_url: &str, nats_url: &str, env: &[(&str, &str)]) -> Self {
        let unique = TestBus::test_config().stream[1..].to_owned();
        let stream = TestBus::on_nats(
            nats_url,
            BusConfig {
                stream: format!("D{unique}"),
                subject_prefix: format!("d{unique}."),
                ..TestBus::test_config()
            },
        )
        .await;
        let mut all_env: Vec<(String, String)> = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("NATS_URL", nats_url),
            ("JWT_KEY", KEY),
            ("EVENT_STREAM", stream.config.stream.as_str()),
            (
                "EVENT_SUBJECT_PREFIX",
                stream.config.subject_prefix.as_str(),
            ),
            ("COOKIE_SECURE", "false"),
            ("PAYMENT_PROVIDER", "development"),
            // Emails link here; a test that reads the mail sets SMTP_URL to a server of its
            // own, the others send to a closed port (the emails wait, nothing else does).
            ("PUBLIC_URL", "http://buyticket.test"),
            ("SMTP_URL", "smtp://127.0.0.1:9"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let files = tempfile::tempdir().expect("temp dir");
        all_env.push((
            "FILE_STORE_URL".to_owned(),
            format!("file://{}", files.path().display()),
        ));
        all_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut dbs = BTreeMap::new();
        for service in SERVICES {
            dbs.insert(service, TestDb::postgres_on(pg_admin_url).await);
        }
        Self::Distributed {
            processes: BTreeMap::new(),
            env: all_env,
            dbs,
            _files: files,
            _stream: Box::new(stream),
        }
    }

    /// Starts `service` (`"all"` for the embedded deployment) again.
    pub fn start(&mut self, service: &'static str) {
        match self {
            Self::Embedded { process, env, data } => {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let dir = data.path().to_str().expect("a UTF-8 path").to_owned();
                let port = process
                    .as_ref()
                    .map(|p| p.url.rsplit(':').next().unwrap_or("0").to_owned())
                    .unwrap_or_else(|| "0".to_owned());
                *process = Some(Process::start(
                    &["up", "--port", &port, "--data-dir", &dir],
                    &env,
                ));
            }
            Self::Distributed {
                processes,
                env,
                dbs,
                ..
            } => {
                let mut env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let db = &dbs[service].url;
                env.push(("DATABASE_URL", db));
                let port = processes
                    .get(service)
                    .map(|p| p.url.rsplit(':').next().unwrap_or("0").to_owned());
                if let Some(port) = &port {
                    env.retain(|(k, _)| *k != "PORT");
                    env.push(("PORT", port));
                }
                processes.insert(service, Process::start(&["serve", service], &env));
            }
        }
    }

    /// The environment `serve <service>` runs with in the distributed deployment (its
    /// `DATABASE_URL` included, `PORT` left out).
    pub fn service_env(&self, service: &str) -> Vec<(String, String)> {
        let Self::Distributed { env, dbs, .. } = self else {
            panic!("serve processes are for the distributed deployment");
        };
        let mut env: Vec<(String, String)> =
            env.iter().filter(|(k, _)| k != "PORT").cloned().collect();
        env.push(("DATABASE_URL".to_owned(), dbs[service].url.clone()));
        env
    }

    /// The distributed deployment's own stream on NATS (e.g. for
    /// [`TestBus::subject_counts`]); `None` for the embedded deployment.
    pub fn bus(&self) -> Option<&TestBus> {
        match self {
            Self::Embedded { .. } => None,
            Self::Distributed {
                _stream: stream, ..
            } => Some(stream),
        }
    }

    /// Kills `service` (`"all"` for the embedded deployment) at once, like a crash.
    pub fn kill(&mut self, service: &'static str) {
        match self {
            Self::Embedded { process, .. } => {
                if let Some(process) = process.as_mut() {
                    process.kill();
                }
            }
            Self::Distributed { processes, .. } => {
                if let Some(process) = processes.get_mut(service) {
                    process.kill();
                }
            }
        }
    }

    /// The database URL of `service`.
    pub fn database_url(&self, service: &str) -> String {
        match self {
            Self::Embedded { data, .. } => {
                format!(
                    "sqlite://{}",
                    data.path().join(format!("{service}.db")).display()
                )
            }
            Self::Distributed { dbs, .. } => dbs
                .get(service)
                .unwrap_or_else(|| panic!("no service {service}"))
                .url
                .clone(),
        }
    }

    /// Where each path goes.
    pub fn ingress(&self) -> Ingress {
        match self {
            Self::Embedded { process, .. } => {
                Ingress::single(&process.as_ref().expect("running").url)
            }
            Self::Distributed { processes, .. } => Ingress {
                auth: processes["auth"].url.clone(),
                tickets: processes["tickets"].url.clone(),
                orders: processes["orders"].url.clone(),
                payments: processes["payments"].url.clone(),
                notifications: processes["notifications"].url.clone(),
            },
        }
    }

    /// Stops every process with SIGTERM; each must exit 0.
    pub fn stop(self) {
        match self {
            Self::Embedded { process, .. } => {
                if let Some(process) = process {
                    let status = process.stop();
                    assert!(status.success(), "up exits 0 on SIGTERM: {status}");
                }
            }
            Self::Distributed { mut processes, .. } => {
                for service in SERVICES.iter().rev() {
                    if let Some(process) = processes.remove(service) {
                        let status = process.stop();
                        assert!(status.success(), "{service} exits 0 on SIGTERM: {status}");
                    }
                }
            }
        }
    }
}

/// Waits (up to `limit`) until `attempt` gives `Ok`.
pub async fn poll_for<T, F, Fut>(limit: Duration, what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    super::poll(limit, Duration::from_millis(50), what, attempt).await
}
