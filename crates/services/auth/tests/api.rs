//! The auth API, route by route and error by error, on SQLite and on PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bt_contract::SessionKeys;
use bt_contract::events::UserCreated;
use bt_platform::db::DbOptions;
use bt_test_support::{
    Backend, EventProbe, TestBus, TestClient, TestDb, TestResponse, backend_tests, bus_for,
    eventually,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestApp;

async fn signup(client: &TestClient, email: &str, password: &str) -> bt_test_support::TestResponse {
    client
        .post(
            "/api/users/signup",
            &json!({"email": email, "password": password}),
        )
        .await
}

async fn signing_up_returns_201_the_user_and_a_session_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();

    let res = signup(&client, "test@test.com", "password").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(res.json["email"], "test@test.com");
    let id = res.json["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(
        res.json.as_object().unwrap().len(),
        2,
        "only id and email: {}",
        res.text
    );
    let cookies = res.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    for flag in [
        "session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "embedded default serves plain HTTP: {cookie}"
    );

    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["currentUser"]["id"], id);
    assert_eq!(me.json["currentUser"]["email"], "test@test.com");
    assert!(me.json["currentUser"]["iat"].is_i64());
}

async fn the_cookie_is_secure_when_configured(backend: Backend) {
    let app = TestApp::spawn_with(backend, 0, true).await;
    let res = signup(&app.client(), "secure@test.com", "password").await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert!(
        res.set_cookies()[0].contains("Secure"),
        "{:?}",
        res.set_cookies()
    );
}

async fn signing_up_with_invalid_fields_reports_each_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let email = ("email", "Email must be valid");
    let password = ("password", "Password must be between 4 and 128 characters");
    let cases = [
        (
            "invalid email",
            json!({"email": "not-an-email", "password": "password"}),
            vec![email],
        ),
        ("no email", json!({"password": "password"}), vec![email]),
        (
            "email not a string",
            json!({"email": 42, "password": "password"}),
            vec![email],
        ),
        (
            "short password",
            json!({"email": "a@test.com", "password": "p"}),
            vec![password],
        ),
        (
            "password only spaces",
            json!({"email": "a@test.com", "password": "       "}),
            vec![password],
        ),
        (
            "long password",
            json!({"email": "a@test.com", "password": "p".repeat(129)}),
            vec![password],
        ),
        (
            "password not a string",
            json!({"email": "a@test.com", "password": 12345}),
            vec![password],
        ),
        (
            "no password",
            json!({"email": "a@test.com"}),
            vec![password],
        ),
        ("nothing", json!({}), vec![email, password]),
        (
            "both null",
            json!({"email": null, "password": null}),
            vec![email, password],
        ),
    ];
    for (case, body, want) in cases {
        let res = client.post("/api/users/signup", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{case}: {}", res.text);
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| ((*f).into(), (*m).into()))
            .collect();
        assert_eq!(res.field_errors(), want, "{case}");
        assert!(
            res.set_cookies().is_empty(),
            "{case}: no session on failure"
        );
    }
}

async fn signing_up_twice_with_one_email_is_refused_whatever_its_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    assert_eq!(
        signup(&client, "ada@test.com", "password").await.status,
        StatusCode::CREATED
    );

    for email in ["ada@test.com", "  ADA@Test.com "] {
        let res = signup(&client, email, "another").await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{email}");
        assert_eq!(
            res.json,
            json!({"errors": [{"message": "Email in use"}]}),
            "{email}"
        );
    }
}

async fn signing_up_publishes_user_created_once_with_the_canonical_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = bt_test_support::EventProbe::new(&app.bus.bus, "user.created").await;
    let client = app.client();
    let res = signup(&client, "  Ada@Test.com ", "password").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let event = probe.next::<bt_contract::events::UserCreated>(10).await;
    assert_eq!(event.data.id.as_str(), res.json["id"].as_str().unwrap());
    assert_eq!(event.data.email, "ada@test.com");
    // A refused sign-up publishes nothing.
    assert_eq!(
        signup(&client, "ada@test.com", "password").await.status,
        StatusCode::BAD_REQUEST
    );
    probe.assert_silent(300).await;
}

async fn concurrent_sign_ups_with_one_email_create_one_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let attempts = (0..8).map(|_| {
        let client = app.client();
        async move { signup(&client, "race@test.com", "password").await.status }
    });
    let statuses = futures::future::join_all(attempts).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((created, refused), (1, 7), "{statuses:?}");
}

async fn passwords_are_stored_as_argon2id_hashes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    signup(&app.client(), "hash@test.com", "password").await;
    let db = bt_platform::Db::connect(&app.db.url, &DbOptions::default())
        .await
        .unwrap();
    let user = bt_auth::store::user_by_email(&db, "hash@test.com")
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash.starts_with("$argon2id$"),
        "{}",
        user.password_hash
    );
    assert!(!user.password_hash.contains("password"));
}

async fn signing_in_with_the_right_password_returns_the_user_and_a_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = signup(&app.client(), "bob@test.com", "password").await.json["id"].clone();

    let client = app.client();
    let res = client
        .post(
            "/api/users/signin",
            &json!({"email": " BOB@test.com", "password": "password"}),
        )
        .await;

    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json, json!({"id": id, "email": "bob@test.com"}));
    assert!(res.set_cookies()[0].starts_with("session="));
    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.json["currentUser"]["id"], id);
}

/// Password managers make long passwords: 64 and 128 characters (any Unicode) sign up and
/// sign in; 129 is refused with the rule in words.
async fn long_passwords_from_password_managers_sign_up_and_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let cases = [
        ("pm64@test.com", "Xk9#".repeat(16)),
        ("pm128@test.com", "aé€😀".repeat(32)),
    ];
    for (email, password) in &cases {
        assert_eq!(password.chars().count() % 64, 0);
        let res = signup(&client, email, password).await;
        assert_eq!(res.status, StatusCode::CREATED, "{email}: {}", res.text);
        let res = client
            .post(
                "/api/users/signin",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{email}: {}", res.text);
    }
    let res = signup(&client, "pm129@test.com", &"p".repeat(129)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json["errors"][0]["message"],
        "Password must be between 4 and 128 characters"
    );
}

async fn signing_in_fails_the_same_way_for_an_unknown_email_and_a_wrong_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    signup(&client, "carol@test.com", "password").await;

    let unknown = client
        .post(
            "/api/users/signin",
            &json!({"email": "nobody@test.com", "password": "password"}),
        )
        .await;
    let wrong = client
        .post(
            "/api/users/signin",
            &json!({"email": "carol@test.com", "password": "Password"}),
        )
        .await;

    for res in [&unknown, &wrong] {
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            res.json,
            json!({"errors": [{"message": "Invalid credentials"}]})
        );
        assert!(res.set_cookies().is_empty());
    }
}

async fn signing_in_with_invalid_fields_reports_each_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let cases = [
        (
            json!({"email": "nope", "password": "x"}),
            vec![("email", "Email must be valid")],
        ),
        (
            json!({"email": "a@test.com", "password": "  "}),
            vec![("password", "You must supply a password")],
        ),
        (
            json!({"email": "a@test.com"}),
            vec![("password", "You must supply a password")],
        ),
        (
            json!({}),
            vec![
                ("email", "Email must be valid"),
                ("password", "You must supply a password"),
            ],
        ),
    ];
    for (body, want) in cases {
        let res = client.post("/api/users/signin", &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| ((*f).into(), (*m).into()))
            .collect();
        assert_eq!(res.field_errors(), want, "{body}");
    }
}

async fn signing_out_clears_the_cookie(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    signup(&client, "dave@test.com", "password").await;

    let res = client.post("/api/users/signout", &json!({})).await;

    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json, json!({}));
    let cookie = &res.set_cookies()[0];
    assert!(
        cookie.starts_with("session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.json, json!({"currentUser": null}));
}

async fn signing_out_needs_no_body_and_no_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let res = client
        .send(client.http.post(client.url("/api/users/signout")))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json, json!({}));
}

async fn the_current_user_comes_from_a_bearer_token_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = signup(&app.client(), "erin@test.com", "password").await;
    let cookie = &res.set_cookies()[0];
    let token = cookie
        .trim_start_matches("session=")
        .split(';')
        .next()
        .unwrap();

    let fresh = app.client();
    let me = fresh
        .send(
            fresh
                .http
                .get(fresh.url("/api/users/currentuser"))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(me.json["currentUser"]["email"], "erin@test.com");
}

async fn without_a_valid_session_there_is_no_current_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let forged = {
        let other = SessionKeys::new(
            b"another-key-that-is-32-bytes-long!!",
            Duration::from_secs(60),
            false,
        );
        other.issue("someone", "x@test.com").unwrap().0
    };
    let cases = [
        None,
        Some("session=garbage".to_owned()),
        Some(format!("session={forged}")),
    ];
    for cookie in cases {
        let mut req = client.http.get(client.url("/api/users/currentuser"));
        if let Some(cookie) = &cookie {
            req = req.header("cookie", cookie);
        }
        let res = client.send(req).await;
        assert_eq!(res.status, StatusCode::OK, "{cookie:?}");
        assert_eq!(res.json, json!({"currentUser": null}), "{cookie:?}");
    }
}

async fn bodies_that_are_not_json_objects_are_refused_in_the_error_format(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let big = format!(
        r#"{{"email":"a@test.com","password":"{}"}}"#,
        "x".repeat(100_000)
    );
    let cases: [(Option<&str>, String, u16, &str); 5] = [
        (
            Some("text/plain"),
            r#"{"email":"a@test.com"}"#.into(),
            415,
            "Content-Type must be application/json",
        ),
        (
            None,
            r#"{"email":"a@test.com"}"#.into(),
            415,
            "Content-Type must be application/json",
        ),
        (
            Some("application/json"),
            r#"{"email": "a@test.com","#.into(),
            400,
            "Request body is not valid JSON",
        ),
        (
            Some("application/json"),
            "[1,2,3]".into(),
            400,
            "Request body must be a JSON object",
        ),
        (
            Some("application/json"),
            big,
            413,
            "Request body is too large",
        ),
    ];
    for path in ["/api/users/signup", "/api/users/signin"] {
        for (ct, body, status, message) in &cases {
            let res = client.post_raw(path, *ct, body.clone()).await;
            assert_eq!(res.status.as_u16(), *status, "{path} {ct:?}: {}", res.text);
            let messages = res.messages();
            assert_eq!(messages.len(), 1, "{}", res.text);
            assert!(messages[0].starts_with(message), "{path}: {messages:?}");
        }
    }
}

async fn unknown_routes_and_methods_answer_in_the_error_format(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let missing = client.get("/api/users/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json, json!({"errors": [{"message": "Not Found"}]}));
    let wrong_method = client.get("/api/users/signup").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        wrong_method.json,
        json!({"errors": [{"message": "Method Not Allowed"}]})
    );
}

async fn sign_in_and_sign_up_are_rate_limited_per_client_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, 3, false).await;
    let client = app.client();
    let attempt = |ip: &'static str, path: &'static str| {
        let client = client.clone();
        async move {
            client
                .send(
                    client
                        .http
                        .post(client.url(path))
                        .header("x-forwarded-for", ip)
                        .json(&json!({"email": "limit@test.com", "password": "password"})),
                )
                .await
        }
    };
    // Three attempts, sign-up and sign-in counted together.
    assert_eq!(
        attempt("198.51.100.1", "/api/users/signup").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        attempt("198.51.100.1", "/api/users/signin").await.status,
        StatusCode::OK
    );
    assert_eq!(
        attempt("198.51.100.1", "/api/users/signin").await.status,
        StatusCode::OK
    );

    let limited = attempt("198.51.100.1", "/api/users/signin").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.json,
        json!({"errors": [{"message": "Too many requests, please try again later"}]})
    );
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry_after), "{retry_after}");
    assert_eq!(
        attempt("198.51.100.1", "/api/users/signup").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Another client address has its own budget; other routes are not limited.
    assert_eq!(
        attempt("198.51.100.2", "/api/users/signin").await.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/api/users/currentuser").await.status,
        StatusCode::OK
    );
}

async fn health_readiness_and_metrics_are_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json["checks"], json!(["auth database"]));
    signup(&client, "metrics@test.com", "password").await;
    let metrics = bt_platform::http::metrics_handle().render();
    assert!(
        metrics.contains(r#"route="/api/users/signup""#),
        "{metrics}"
    );
    // Not public: served behind a token or on a port of its own (see the binary's tests).
    assert_eq!(client.get("/metrics").await.status, StatusCode::NOT_FOUND);
}

fn session_token(res: &TestResponse) -> String {
    let cookie = &res.set_cookies()[0];
    cookie
        .trim_start_matches("session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn current_email(client: &TestClient, token: &str) -> Value {
    let me = client
        .send(
            client
                .http
                .get(client.url("/api/users/currentuser"))
                .bearer_auth(token),
        )
        .await;
    me.json["currentUser"]["email"].clone()
}

async fn signing_out_ends_the_session_for_every_process_and_after_restarts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let running = app.replica().await;
    let client = app.client();
    let token = session_token(&signup(&client, "fay@test.com", "password").await);
    let other_sign_in = session_token(
        &client
            .post(
                "/api/users/signin",
                &json!({"email": "fay@test.com", "password": "password"}),
            )
            .await,
    );
    assert_eq!(
        current_email(&running.server.client(), &token).await,
        "fay@test.com"
    );

    // Signing out with the token (as a stolen-cookie holder would keep using it afterwards).
    let out = client
        .send(
            client
                .http
                .post(client.url("/api/users/signout"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);

    assert_eq!(
        current_email(&client, &token).await,
        Value::Null,
        "this process"
    );
    assert!(app.sessions.verify(&token).is_none());
    let restarted = app.replica().await;
    assert_eq!(
        current_email(&restarted.server.client(), &token).await,
        Value::Null,
        "a process started afterwards"
    );
    if backend == Backend::Postgres {
        // Replicas on NATS follow sign-outs as they happen.
        let replica = running.server.client();
        eventually(10, "the running replica refuses the token", || {
            let replica = replica.clone();
            let token = token.clone();
            async move { current_email(&replica, &token).await == Value::Null }
        })
        .await;
        assert_eq!(
            app.bus.subject_counts().await.get("session.revoked"),
            Some(&1),
            "one event"
        );
    }
    // The user's other session goes on.
    assert_eq!(current_email(&client, &other_sign_in).await, "fay@test.com");
    assert_eq!(
        current_email(&restarted.server.client(), &other_sign_in).await,
        "fay@test.com"
    );
    // Signing out again with the revoked token changes nothing and publishes nothing.
    let again = client
        .send(
            client
                .http
                .post(client.url("/api/users/signout"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    if backend == Backend::Postgres {
        assert_eq!(
            app.bus.subject_counts().await.get("session.revoked"),
            Some(&1)
        );
    }
}

/// A fresh database of this release holding `users` as the releases before `user.created`
/// left them (written with plain SQL, `announced_at` NULL): `(id, email, email_form)`.
async fn database_with_earlier_users(backend: Backend, users: &[(String, String, i16)]) -> TestDb {
    let test_db = TestDb::new(backend).await;
    let db = bt_platform::Db::open(&test_db.url, &DbOptions::default(), &bt_auth::MIGRATIONS)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    for (id, email, email_form) in users {
        bt_platform::on_tx!(&mut tx, |conn| sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at, email_form) \
             VALUES ($1, $2, 'h', 0, $3)"
        )
        .bind(id)
        .bind(email)
        .bind(email_form)
        .execute(conn)
        .await
        .map(drop)
        .unwrap());
    }
    tx.commit().await.unwrap();
    db.close().await;
    test_db
}

/// `count` users the previous release stored (canonical emails, never announced).
fn earlier_users(count: usize) -> Vec<(String, String, i16)> {
    (0..count)
        .map(|i| {
            let id = uuid::Uuid::now_v7().to_string();
            (id, format!("earlier{i}@test.com"), 2)
        })
        .collect()
}

/// The next `count` `user.created` events as email by user id; panics on an id seen twice.
async fn announced(probe: &mut EventProbe, count: usize) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let event = probe.next::<UserCreated>(10).await;
        let id = event.data.id.as_str().to_owned();
        if let Some(before) = seen.insert(id.clone(), event.data.email) {
            panic!("user {id} ({before}) announced twice");
        }
    }
    seen
}

/// The ids of the users whose `user.created` was never staged.
async fn unannounced(test_db: &TestDb) -> Vec<String> {
    let db = bt_platform::Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    let ids = bt_platform::on_db!(&db, |pool| sqlx::query_scalar(
        "SELECT id FROM users WHERE announced_at IS NULL ORDER BY id"
    )
    .fetch_all(pool)
    .await
    .unwrap());
    db.close().await;
    ids
}

async fn users_who_signed_up_before_user_created_are_announced_once_at_start(backend: Backend) {
    // Two full batches and one more, as the previous release stored them; one the first release
    // stored in an older spelling (canonicalised at start, then announced in the canonical
    // form); one whose email is not valid any more (waits for an operator, not announced).
    let mut users = earlier_users(2 * bt_auth::announce::BATCH as usize + 1);
    let mut want: BTreeMap<String, String> = users
        .iter()
        .map(|(id, email, _)| (id.clone(), email.clone()))
        .collect();
    let older_spelling = uuid::Uuid::now_v7().to_string();
    users.push((older_spelling.clone(), "ｅｖｅ@test.com".into(), 1));
    want.insert(older_spelling, "eve@test.com".into());
    let invalid = uuid::Uuid::now_v7().to_string();
    users.push((invalid.clone(), "z\u{200b}oe@test.com".into(), 1));
    let db = database_with_earlier_users(backend, &users).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "user.created").await;

    let app = TestApp::spawn_on(db, bus).await;

    assert_eq!(announced(&mut probe, want.len()).await, want);
    probe.assert_silent(500).await;
    assert_eq!(unannounced(&app.db).await, vec![invalid.clone()]);

    // Someone signing up now is announced by the sign-up, once.
    let res = signup(&app.client(), "new@test.com", "password").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let new_id = res.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        announced(&mut probe, 1).await,
        BTreeMap::from([(new_id, "new@test.com".to_owned())])
    );
    probe.assert_silent(300).await;

    // A restart announces nobody again.
    let _restarted = app.replica().await;
    probe.assert_silent(1500).await;
    assert_eq!(unannounced(&app.db).await, vec![invalid]);
}

async fn a_user_signed_up_by_this_release_is_not_announced_again_after_restarts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut probe = EventProbe::new(&app.bus.bus, "user.created").await;
    let res = signup(&app.client(), "once@test.com", "password").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let id = res.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        announced(&mut probe, 1).await,
        BTreeMap::from([(id, "once@test.com".to_owned())])
    );
    assert_eq!(unannounced(&app.db).await, Vec::<String>::new());

    let _first = app.replica().await;
    let _second = app.replica().await;

    probe.assert_silent(1500).await;
}

async fn processes_starting_together_announce_each_earlier_user_once(backend: Backend) {
    let users = earlier_users(6 * bt_auth::announce::BATCH as usize);
    let want: BTreeMap<String, String> = users
        .iter()
        .map(|(id, email, _)| (id.clone(), email.clone()))
        .collect();
    let db = database_with_earlier_users(backend, &users).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "user.created").await;

    let _replicas = tokio::join!(
        support::start(&db, &bus, 0, false),
        support::start(&db, &bus, 0, false),
        support::start(&db, &bus, 0, false),
    );

    assert_eq!(announced(&mut probe, want.len()).await, want);
    probe.assert_silent(1000).await;
    assert_eq!(unannounced(&db).await, Vec::<String>::new());
}

backend_tests!(
    signing_up_returns_201_the_user_and_a_session_cookie,
    the_cookie_is_secure_when_configured,
    signing_up_with_invalid_fields_reports_each_field,
    signing_up_twice_with_one_email_is_refused_whatever_its_case,
    signing_up_publishes_user_created_once_with_the_canonical_email,
    concurrent_sign_ups_with_one_email_create_one_user,
    passwords_are_stored_as_argon2id_hashes,
    signing_in_with_the_right_password_returns_the_user_and_a_cookie,
    long_passwords_from_password_managers_sign_up_and_sign_in,
    signing_in_fails_the_same_way_for_an_unknown_email_and_a_wrong_password,
    signing_in_with_invalid_fields_reports_each_field,
    signing_out_clears_the_cookie,
    signing_out_needs_no_body_and_no_session,
    signing_out_ends_the_session_for_every_process_and_after_restarts,
    the_current_user_comes_from_a_bearer_token_too,
    without_a_valid_session_there_is_no_current_user,
    bodies_that_are_not_json_objects_are_refused_in_the_error_format,
    unknown_routes_and_methods_answer_in_the_error_format,
    sign_in_and_sign_up_are_rate_limited_per_client_address,
    health_readiness_and_metrics_are_served,
    users_who_signed_up_before_user_created_are_announced_once_at_start,
    a_user_signed_up_by_this_release_is_not_announced_again_after_restarts,
    processes_starting_together_announce_each_earlier_user_once,
);
