//! The `buyticket` binary as a user runs it: `up` (embedded default) and `serve <service>`.

mod support;

use std::process::Command;

use bt_test_support::free_port;
use bt_test_support::{Backend, BusKind, TestBus, TestDb, nats_url};
use reqwest::StatusCode;
use serde_json::json;
use support::Process;

const KEY: &str = "a-test-key-that-is-at-least-32-bytes-long";

fn is_html(res: &bt_test_support::TestResponse) -> bool {
    res.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_buyticket"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "off")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_sign_up_and_keeps_data_and_sessions_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let first = Process::up(data.path());
    assert!(first.url.starts_with("http://127.0.0.1:"), "{}", first.url);
    let client = first.client();

    let res = client
        .post(
            "/api/users/signup",
            &json!({"email": "ada@test.com", "password": "password"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let cookie = res.set_cookies()[0].clone();
    assert!(
        cookie.starts_with("session=") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.json["currentUser"]["email"], "ada@test.com");
    assert!(first.stop().success(), "graceful shutdown exits 0");

    let second = Process::up(data.path());
    let session = cookie.split(';').next().unwrap().to_owned();
    let again = second.client();
    let me = again
        .send(
            again
                .http
                .get(again.url("/api/users/currentuser"))
                .header("cookie", session),
        )
        .await;
    assert_eq!(
        me.json["currentUser"]["email"], "ada@test.com",
        "the session survives a restart"
    );
    let res = again
        .post(
            "/api/users/signin",
            &json!({"email": "ada@test.com", "password": "password"}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the user survives a restart: {}",
        res.text
    );
    let dup = again
        .post(
            "/api/users/signup",
            &json!({"email": "ada@test.com", "password": "password"}),
        )
        .await;
    assert_eq!(dup.json, json!({"errors": [{"message": "Email in use"}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_routes_like_the_ingress_to_every_service_and_answers_unknown_paths_with_404() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let process = Process::up(&data);
    let client = process.client();
    let not_found = json!({"errors": [{"message": "Not Found"}]});
    let not_authorized = json!({"errors": [{"message": "Not authorized"}]});

    // auth
    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json, json!({"currentUser": null}));
    // tickets: the listing answers (empty on a fresh data directory), an unknown ticket is 404
    let tickets = client.get("/api/tickets").await;
    assert_eq!(tickets.status, StatusCode::OK, "{}", tickets.text);
    assert_eq!(tickets.json, json!([]));
    let missing = client
        .get("/api/tickets/0190a0b0-0000-7000-8000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    // orders: one's orders need a session
    let orders = client.get("/api/orders").await;
    assert_eq!(orders.status, StatusCode::UNAUTHORIZED, "{}", orders.text);
    assert_eq!(orders.json, not_authorized);
    // payments: paying needs a session; a wrong method is 405 in the error format
    let pay = client
        .post(
            "/api/payments",
            &json!({"token": "tok_visa", "orderId": "0190a0b0-0000-7000-8000-000000000000"}),
        )
        .await;
    assert_eq!(pay.status, StatusCode::UNAUTHORIZED, "{}", pay.text);
    assert_eq!(pay.json, not_authorized);
    let wrong_method = client.get("/api/payments").await;
    assert_eq!(
        wrong_method.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        wrong_method.text
    );
    assert_eq!(
        wrong_method.json,
        json!({"errors": [{"message": "Method Not Allowed"}]})
    );
    // client: everything else; pages that need a session send the browser to sign in
    let home = client.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(is_html(&home), "{:?}", home.headers);
    let new_ticket = client.get("/tickets/new").await;
    assert_eq!(
        new_ticket.status,
        StatusCode::SEE_OTHER,
        "{}",
        new_ticket.text
    );
    assert_eq!(
        new_ticket.headers["location"],
        "/auth/signin?next=/tickets/new"
    );

    // Unknown API paths, also under a mounted service's prefix, are 404 in the error format;
    // an unknown page is the client's 404 page.
    for path in [
        "/api/nothing-here",
        "/api/users/nothing-here",
        "/api/tickets/nothing/here",
        "/api/orders/nothing/here",
        "/api/payments/nothing-here",
    ] {
        let res = client.get(path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}: {}", res.text);
        assert_eq!(res.json, not_found, "{path}");
    }
    let page = client.get("/nothing-here").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text);
    assert!(is_html(&page), "{:?}", page.headers);

    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(client.get("/readyz").await.status, StatusCode::OK);
    let metrics = client.get("/metrics").await;
    assert!(
        !metrics.text.contains("http_requests_total"),
        "metrics are not public: {}",
        metrics.status
    );
    for file in [
        "auth.db",
        "tickets.db",
        "orders.db",
        "expiration.db",
        "payments.db",
        "bus.db",
        "jwt_key",
    ] {
        let path = data.join(file);
        assert!(path.exists(), "{file}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "{file} is readable by its owner only: {mode:o}"
        );
    }
    for companion in ["auth.db-wal", "auth.db-shm"] {
        let path = data.join(companion);
        if path.exists() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{companion}: {mode:o}");
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the data directory: {mode:o}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_jwt_key_or_with_a_short_one() {
    let (code, stderr) = run_to_end(&["serve", "auth"], &[("DATABASE_URL", "sqlite::memory:")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("JWT_KEY is not set"), "{stderr}");

    let (code, stderr) = run_to_end(
        &["serve", "auth"],
        &[("DATABASE_URL", "sqlite::memory:"), ("JWT_KEY", "short")],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("JWT_KEY must be at least 32 bytes"),
        "{stderr}"
    );
}

/// Logs written to a pipe or a file (a container's output, `> up.log`) carry no ANSI colour
/// codes, in either format; `LOG_FORMAT=json` is one JSON object per line.
#[test]
fn logs_to_a_pipe_have_no_colour_codes_and_json_logs_are_json_lines() {
    for format in ["text", "json"] {
        let output = Command::new(env!("CARGO_BIN_EXE_buyticket"))
            .args(["serve", "auth"])
            .env_clear()
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", format)
            .env("DATABASE_URL", "sqlite::memory:")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let logs = String::from_utf8(output.stdout).unwrap();
        assert!(logs.contains("JWT_KEY is not set"), "{format}: {logs:?}");
        assert!(!logs.contains('\u{1b}'), "{format}: {logs:?}");
        if format == "json" {
            for line in logs.lines() {
                let object: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
                assert_eq!(object["level"], "ERROR", "{line}");
            }
        }
    }
}

#[test]
fn serve_refuses_to_start_without_a_database_url() {
    let (code, stderr) = run_to_end(&["serve", "auth"], &[("JWT_KEY", KEY)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
}

#[test]
fn serve_payments_refuses_to_take_fake_payments_unless_told_to() {
    // A production payments service without Stripe keys would accept test tokens as payment:
    // it must not start silently.
    let base = [("DATABASE_URL", "sqlite::memory:"), ("JWT_KEY", KEY)];
    let (code, stderr) = run_to_end(&["serve", "payments"], &base);
    assert_eq!(code, 2);
    assert!(stderr.contains("STRIPE_SECRET_KEY is not set"), "{stderr}");
    assert!(stderr.contains("PAYMENT_PROVIDER=development"), "{stderr}");

    let (code, stderr) = run_to_end(
        &["serve", "payments"],
        &[base[0], base[1], ("PAYMENT_PROVIDER", "stripe")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("STRIPE_SECRET_KEY is not set"), "{stderr}");

    let (code, stderr) = run_to_end(
        &["serve", "payments"],
        &[
            base[0],
            base[1],
            ("PAYMENT_PROVIDER", "development"),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("PAYMENT_PROVIDER=development and STRIPE_SECRET_KEY"),
        "{stderr}"
    );

    let (code, stderr) = run_to_end(
        &["serve", "payments"],
        &[base[0], base[1], ("PAYMENT_PROVIDER", "paypal")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid value 'paypal'"), "{stderr}");

    // The other services do not care about payment settings.
    let (code, stderr) = run_to_end(&["serve", "auth"], &[("JWT_KEY", KEY)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_payments_starts_with_the_development_provider_when_asked() {
    let bus = TestBus::new(BusKind::Nats).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("payments.db").display());
    let process = Process::start(
        &["serve", "payments"],
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("DATABASE_URL", &db),
            ("JWT_KEY", KEY),
            ("NATS_URL", &nats_url()),
            ("EVENT_STREAM", &bus.config.stream),
            ("EVENT_SUBJECT_PREFIX", &bus.config.subject_prefix),
            ("PAYMENT_PROVIDER", "development"),
        ],
    );
    let res = process.client().get("/readyz").await;
    assert_eq!(res.status, reqwest::StatusCode::OK, "{}", res.text);
    assert!(process.stop().success());
}

#[test]
fn an_unknown_service_or_bad_flag_is_a_usage_error() {
    let (code, stderr) = run_to_end(&["serve", "billing"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid value 'billing'"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_auth_runs_on_postgresql_with_secure_cookies() {
    let db = TestDb::new(Backend::Postgres).await;
    let process = Process::start(
        &["serve", "auth", "--host", "127.0.0.1", "--port", "0"],
        &[("DATABASE_URL", &db.url), ("JWT_KEY", KEY)],
    );
    let client = process.client();
    let res = client
        .post(
            "/api/users/signup",
            &json!({"email": "pg@test.com", "password": "password"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert!(
        res.set_cookies()[0].contains("Secure"),
        "distributed mode defaults to Secure"
    );
    let token = res.set_cookies()[0]
        .trim_start_matches("session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me = client
        .send(
            client
                .http
                .get(client.url("/api/users/currentuser"))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(me.json["currentUser"]["email"], "pg@test.com");
    assert_eq!(client.get("/readyz").await.status, StatusCode::OK);
    assert!(process.stop().success());
}

#[test]
fn serve_tickets_refuses_to_start_without_a_file_store_and_names_the_setting() {
    let (code, stderr) = run_to_end(
        &["serve", "tickets"],
        &[("DATABASE_URL", "sqlite::memory:"), ("JWT_KEY", KEY)],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("FILE_STORE_URL is not set"), "{stderr}");
    assert!(stderr.contains("s3://<bucket>"), "{stderr}");
    let (code, stderr) = run_to_end(
        &["serve", "tickets"],
        &[
            ("DATABASE_URL", "sqlite::memory:"),
            ("JWT_KEY", KEY),
            ("FILE_STORE_URL", "s3://tickets"),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}

#[test]
fn serve_notifications_refuses_to_start_without_a_mail_server_or_a_public_url() {
    let base = [("DATABASE_URL", "sqlite::memory:"), ("JWT_KEY", KEY)];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        run_to_end(&["serve", "notifications"], &env)
    };
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Env, &[&str]); 4] = [
        (
            &[("PUBLIC_URL", "https://buyticket.example.com")],
            &[
                "SMTP_URL is not set",
                "smtps://user:password@smtp.example.com:465",
            ],
        ),
        (
            &[("SMTP_URL", "smtp://127.0.0.1:2525")],
            &["PUBLIC_URL is not set", "links each email"],
        ),
        (
            &[
                ("SMTP_URL", "ftp://mail.example.com"),
                ("PUBLIC_URL", "https://buyticket.example.com"),
            ],
            &["SMTP_URL is not valid", "?tls=required"],
        ),
        (
            &[
                ("SMTP_URL", "smtp://127.0.0.1:2525"),
                ("PUBLIC_URL", "https://buyticket.example.com"),
                ("MAIL_FROM", "nobody"),
            ],
            &["MAIL_FROM is not a valid address"],
        ),
    ];
    for (extra, expected) in cases {
        let (code, stderr) = with(extra);
        assert_ne!(code, 0, "{extra:?}");
        for text in expected {
            assert!(stderr.contains(text), "{extra:?}: {stderr}");
        }
        assert!(!stderr.contains("    "), "one readable line: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_on_one_nats_coexist_and_a_real_overlap_names_the_fix() {
    let unique = TestBus::test_config().stream[1..].to_lowercase();
    let (first_stream, second_stream) = (format!("ONE{unique}"), format!("TWO{unique}"));
    let shared_prefix = format!("shared{unique}.");
    let (db_one, db_two, db_three) = (
        TestDb::new(Backend::Postgres).await,
        TestDb::new(Backend::Postgres).await,
        TestDb::new(Backend::Postgres).await,
    );
    let nats = nats_url();
    let files = tempfile::tempdir().unwrap();
    let file_store = format!("file://{}", files.path().display());
    let env = |db: &TestDb, stream: &str| {
        vec![
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("NATS_URL".to_owned(), nats.clone()),
            ("JWT_KEY".to_owned(), KEY.to_owned()),
            ("EVENT_STREAM".to_owned(), stream.to_owned()),
            ("FILE_STORE_URL".to_owned(), file_store.clone()),
        ]
    };
    let as_refs = |env: &[(String, String)]| -> Vec<(String, String)> { env.to_vec() };
    // One deployment on a prefix of its own...
    let mut one = as_refs(&env(&db_one, &first_stream));
    one.push(("EVENT_SUBJECT_PREFIX".into(), shared_prefix.clone()));
    let one_env: Vec<(&str, &str)> = one.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let first = Process::start(
        &["serve", "tickets", "--host", "127.0.0.1", "--port", "0"],
        &one_env,
    );
    // ... and another with only its own stream name: it derives a prefix of its own and starts.
    let two = as_refs(&env(&db_two, &second_stream));
    let two_env: Vec<(&str, &str)> = two.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let second = Process::start(
        &["serve", "tickets", "--host", "127.0.0.1", "--port", "0"],
        &two_env,
    );
    assert_eq!(second.client().get("/readyz").await.status, StatusCode::OK);

    // A third that really claims the first one's subjects is refused, saying how to fix it.
    let mut three = as_refs(&env(&db_three, &format!("THREE{unique}")));
    three.push(("EVENT_SUBJECT_PREFIX".into(), shared_prefix));
    let three_env: Vec<(&str, &str)> = three
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, stderr) = run_to_end(&["serve", "tickets", "--port", "0"], &three_env);
    assert_ne!(code, 0);
    assert!(stderr.contains("overlap"), "{stderr}");
    assert!(stderr.contains("EVENT_SUBJECT_PREFIX"), "{stderr}");

    assert!(second.stop().success());
    assert!(first.stop().success());
    // The streams of this test go with it.
    for stream in [first_stream, second_stream] {
        let guard = TestBus::on_nats(
            &nats_url(),
            bt_platform::bus::BusConfig {
                stream,
                subject_prefix: format!("gone{unique}."),
                ..TestBus::test_config()
            },
        )
        .await;
        drop(guard);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_behind_a_token_or_on_a_port_of_their_own() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "a-metrics-token-0123456789";
    let process = Process::start(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[
            ("METRICS_TOKEN", token),
            ("METRICS_ADDR", &format!("127.0.0.1:{port}")),
        ],
    );
    let client = process.client();
    client.get("/healthz").await;

    let anonymous = client.get("/metrics").await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text
    );
    assert_eq!(
        anonymous.json,
        json!({"errors": [{"message": "Not authorized"}]})
    );
    let wrong = client
        .send(
            client
                .http
                .get(client.url("/metrics"))
                .bearer_auth("a-wrong-token-0123456789"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let scraped = client
        .send(client.http.get(client.url("/metrics")).bearer_auth(token))
        .await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(
        scraped.text.contains("http_requests_total"),
        "{}",
        scraped.text
    );

    let own_port = bt_test_support::TestClient::new(&format!("http://127.0.0.1:{port}"));
    let scraped = own_port.get("/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(scraped.text.contains("http_requests_total"));
    assert_eq!(
        own_port.get("/api/tickets").await.status,
        StatusCode::NOT_FOUND,
        "metrics only"
    );
    assert!(process.stop().success());
}

/// `up` with `env` stops at once (exit code 2) and says `message`.
fn assert_up_refuses(env: &[(&str, &str)], message: &str) {
    let data = tempfile::tempdir().unwrap();
    let (code, stderr) = run_to_end(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
}

#[test]
fn a_short_metrics_token_is_refused() {
    assert_up_refuses(
        &[("METRICS_TOKEN", "short")],
        "METRICS_TOKEN must be at least 16 characters",
    );
}

#[test]
fn too_many_http_threads_are_refused() {
    assert_up_refuses(
        &[("HTTP_THREADS", "100000")],
        "HTTP_THREADS must be at most 256",
    );
}

/// The binary's allocator is jemalloc with the options of `.cargo/config.toml` built in (memory
/// a rush freed goes back to the system within a second): jemalloc prints its build-time
/// options and the ones in force when asked for its statistics at exit.
#[cfg(not(target_env = "msvc"))]
#[test]
fn the_allocator_is_jemalloc_and_gives_freed_memory_back_on_its_own() {
    let (code, stderr) = run_to_end(&["--version"], &[("_RJEM_MALLOC_CONF", "stats_print:true")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "config.malloc_conf: \"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\""
        ),
        "jemalloc's build-time options: {stderr}"
    );
    for option in [
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(stderr.contains(option), "{option}: {stderr}");
    }
}
