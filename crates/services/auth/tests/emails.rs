//! Look-alike emails are one account: sign-up, sign-in and the stored email all use the
//! canonical form of `Email::parse`, on SQLite and on PostgreSQL.

mod support;

use bt_platform::db::DbOptions;
use bt_test_support::{Backend, TestClient, TestDb, TestResponse, backend_tests};
use reqwest::StatusCode;
use serde_json::json;
use support::TestApp;

async fn signup(client: &TestClient, email: &str) -> TestResponse {
    client
        .post(
            "/api/users/signup",
            &json!({"email": email, "password": "password"}),
        )
        .await
}

async fn signin(client: &TestClient, email: &str) -> TestResponse {
    client
        .post(
            "/api/users/signin",
            &json!({"email": email, "password": "password"}),
        )
        .await
}

async fn signing_up_with_a_look_alike_of_an_existing_email_answers_email_in_use(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let cases = [
        (
            "A + combining ring after precomposed å",
            "åda@example.com",
            "A\u{030A}DA@EXAMPLE.COM",
        ),
        (
            "precomposed é after e + combining acute",
            "be\u{0301}a@example.com",
            "béa@example.com",
        ),
        (
            "full-width letters after ASCII",
            "cy@example.com",
            "ＣＹ@example.com",
        ),
        (
            "punycode after the Unicode domain",
            "di@exämple.com",
            "di@xn--exmple-cua.com",
        ),
        (
            "the Unicode domain after its punycode",
            "ed@xn--exmple-cua.com",
            "ED@EXÄMPLE.COM",
        ),
    ];
    for (case, existing, look_alike) in cases {
        let first = signup(&client, existing).await;
        assert_eq!(first.status, StatusCode::CREATED, "{case}: {}", first.text);

        let res = signup(&client, look_alike).await;

        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{case}: {}", res.text);
        assert_eq!(
            res.json,
            json!({"errors": [{"message": "Email in use"}]}),
            "{case}"
        );
        assert!(res.set_cookies().is_empty(), "{case}: no session");
    }
}

async fn signing_in_with_a_look_alike_spelling_reaches_the_same_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = signup(&app.client(), "åda@exämple.com").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();

    for spelling in [
        "åda@exämple.com",
        "A\u{030A}DA@EXA\u{0308}MPLE.COM",
        "ÅDA@xn--exmple-cua.com",
        " åda＠EXÄMPLE。COM ",
    ] {
        let client = app.client();
        let res = signin(&client, spelling).await;

        assert_eq!(res.status, StatusCode::OK, "{spelling:?}: {}", res.text);
        assert_eq!(
            res.json,
            json!({"id": id, "email": "åda@xn--exmple-cua.com"}),
            "{spelling:?}"
        );
        let me = client.get("/api/users/currentuser").await;
        assert_eq!(me.json["currentUser"]["id"], id.as_str(), "{spelling:?}");
    }
}

async fn the_stored_and_returned_email_is_the_canonical_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    let canonical = "ada@xn--exmple-cua.com";

    let res = signup(&client, "  ＡＤＡ@EXA\u{0308}MPLE.COM ").await;

    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(res.json["email"], canonical);
    let me = client.get("/api/users/currentuser").await;
    assert_eq!(me.json["currentUser"]["email"], canonical);
    let db = bt_platform::Db::connect(&app.db.url, &DbOptions::default())
        .await
        .unwrap();
    let stored = bt_auth::store::user_by_email(&db, canonical)
        .await
        .unwrap()
        .expect("the user is stored under the canonical email");
    assert_eq!(stored.id, res.json["id"].as_str().unwrap());
    assert_eq!(stored.email, canonical);
}

async fn emails_with_invisible_characters_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client();
    for (case, email) in [
        ("zero-width space", "ada\u{200B}@example.com"),
        ("left-to-right mark", "ada@example.com\u{200E}"),
        ("right-to-left override", "\u{202E}ada@example.com"),
    ] {
        let res = signup(&client, email).await;

        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{case}: {}", res.text);
        assert_eq!(
            res.field_errors(),
            vec![("email".to_owned(), "Email must be valid".to_owned())],
            "{case}"
        );
    }
}

async fn emails_stored_by_the_first_release_are_brought_to_the_canonical_form(backend: Backend) {
    // Three accounts as the first release stored them (trimmed and lower-cased only).
    let test_db = TestDb::new(backend).await;
    let db = bt_platform::Db::open(&test_db.url, &DbOptions::default(), &bt_auth::MIGRATIONS)
        .await
        .unwrap();
    let legacy = [
        ("u1", "ada@exämple.com"),         // domain becomes punycode
        ("u2", "ada@xn--exmple-cua.com"),  // already the canonical form of u1's: a clash
        ("u3", "ｂｏｂ@example.com"),      // fullwidth: NFKC makes it bob@example.com
        ("u4", "z\u{200b}oe@example.com"), // invisible: no longer valid
    ];
    for (id, email) in legacy {
        bt_platform::on_db!(&db, |pool| sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, 'h', 0)"
        )
        .bind(id)
        .bind(email)
        .execute(pool)
        .await
        .map(drop)
        .unwrap());
    }
    let done = bt_auth::canonicalise_stored_emails(&db).await.unwrap();
    assert_eq!(
        done,
        bt_auth::Canonicalised {
            rewritten: 2,
            left: 2
        }
    );
    let rows: Vec<(String, String, i16)> = bt_platform::on_db!(&db, |pool| sqlx::query_as(
        "SELECT id, email, email_form FROM users ORDER BY id"
    )
    .fetch_all(pool)
    .await
    .unwrap());
    assert_eq!(
        rows,
        vec![
            ("u1".into(), "ada@exämple.com".into(), 1),
            ("u2".into(), "ada@xn--exmple-cua.com".into(), 2),
            ("u3".into(), "bob@example.com".into(), 2),
            ("u4".into(), "z\u{200b}oe@example.com".into(), 1),
        ],
        "u1 clashes with u2 (which was first in id order and is canonical already), u4 is invalid"
    );
    // Idempotent: the rows left are reported again, nothing else changes.
    let again = bt_auth::canonicalise_stored_emails(&db).await.unwrap();
    assert_eq!(
        again,
        bt_auth::Canonicalised {
            rewritten: 0,
            left: 2
        }
    );
}

backend_tests!(
    signing_up_with_a_look_alike_of_an_existing_email_answers_email_in_use,
    signing_in_with_a_look_alike_spelling_reaches_the_same_account,
    the_stored_and_returned_email_is_the_canonical_form,
    emails_with_invisible_characters_are_refused,
    emails_stored_by_the_first_release_are_brought_to_the_canonical_form,
);
