//! What a request answers when its database fails: errors that pass by themselves (a
//! connection the server ended, a database busy with another writer, a pool that is closed)
//! are a 503 with `Retry-After`, which a client retries; anything else is a 500. Each error here
//! is produced by a real database, not built by hand.

use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use bt_contract::ApiError;
use bt_contract::error::is_transient;
use bt_test_support::{Backend, TestDb};
use reqwest::StatusCode;
use sqlx::{Connection, Executor};

fn answer(err: sqlx::Error) -> (StatusCode, Option<String>) {
    let response = ApiError::from(err).into_response();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), retry_after)
}

/// Ends the session of backend `pid` of the database at `url` from another connection: what a
/// fast shutdown or restart of the server does to every session (57P01).
async fn terminate(url: &str, pid: i32) {
    let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_connection_postgres_terminates_is_a_503_to_retry() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut victim = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    terminate(&db.url, pid).await;
    let err = sqlx::query("SELECT 1")
        .execute(&mut victim)
        .await
        .expect_err("the session was terminated");
    assert!(is_transient(&err), "{err:?}");
    assert_eq!(
        answer(err),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".into()))
    );
}

#[tokio::test]
async fn a_postgres_server_that_is_not_there_is_a_503_to_retry() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .await
        .expect_err("nothing listens there");
    assert!(is_transient(&err), "{err:?}");
    assert_eq!(answer(err).0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_serialization_failure_is_a_503_to_retry() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut a = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut b = sqlx::PgConnection::connect(&db.url).await.unwrap();
    a.execute("CREATE TABLE seats (id INT PRIMARY KEY, taken INT NOT NULL)")
        .await
        .unwrap();
    a.execute("INSERT INTO seats VALUES (1, 0)").await.unwrap();
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    b.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    a.execute("SELECT * FROM seats").await.unwrap();
    b.execute("SELECT * FROM seats").await.unwrap();
    a.execute("UPDATE seats SET taken = 1 WHERE id = 1")
        .await
        .unwrap();
    a.execute("COMMIT").await.unwrap();
    let err = b
        .execute("UPDATE seats SET taken = 2 WHERE id = 1")
        .await
        .expect_err("b read a snapshot a has changed since: 40001");
    assert!(is_transient(&err), "{err:?}");
    assert_eq!(
        answer(err),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".into()))
    );
}

#[tokio::test]
async fn a_sqlite_database_busy_with_another_writer_is_a_503_to_retry() {
    let db = TestDb::new(Backend::Sqlite).await;
    let options = |url: &str| {
        url.parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO)
    };
    let mut a = sqlx::SqliteConnection::connect_with(&options(&db.url))
        .await
        .unwrap();
    let mut b = sqlx::SqliteConnection::connect_with(&options(&db.url))
        .await
        .unwrap();
    a.execute("CREATE TABLE seats (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    a.execute("BEGIN IMMEDIATE").await.unwrap();
    let err = b
        .execute("BEGIN IMMEDIATE")
        .await
        .expect_err("a holds the write lock: SQLITE_BUSY");
    assert!(is_transient(&err), "{err:?}");
    assert_eq!(
        answer(err),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".into()))
    );
}

#[tokio::test]
async fn a_constraint_violation_or_a_bad_query_is_a_500() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let err = conn
        .execute("SELECT * FROM no_such_table")
        .await
        .expect_err("no such table");
    assert!(!is_transient(&err), "{err:?}");
    assert_eq!(answer(err).0, StatusCode::INTERNAL_SERVER_ERROR);
    conn.execute("CREATE TABLE seats (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.execute("INSERT INTO seats VALUES (1)").await.unwrap();
    let err = conn
        .execute("INSERT INTO seats VALUES (1)")
        .await
        .expect_err("duplicate key");
    assert!(!is_transient(&err), "{err:?}");
    assert_eq!(answer(err).0, StatusCode::INTERNAL_SERVER_ERROR);
    // A closed pool (the process is shutting down) is one to retry elsewhere.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    pool.close().await;
    let err = pool.acquire().await.expect_err("closed");
    assert_eq!(answer(err).0, StatusCode::SERVICE_UNAVAILABLE);
}

/// A pooled connection is not pinged when it was used a moment ago (`db::needs_ping`), but one
/// that sat idle is: if the server ended it meanwhile (a restart), the pool hands out another
/// one instead of failing the request.
#[tokio::test]
async fn a_pooled_connection_the_server_ended_while_idle_is_replaced_before_use() {
    let test_db = TestDb::new(Backend::Postgres).await;
    let options = bt_platform::db::DbOptions {
        max_connections: Some(1),
        ..Default::default()
    };
    let db = bt_platform::Db::connect(&test_db.url, &options)
        .await
        .unwrap();
    let bt_platform::Db::Postgres(pool) = &db else {
        panic!("a PostgreSQL URL opens a PostgreSQL pool");
    };
    let backend = "SELECT pg_backend_pid()";
    let first: i32 = sqlx::query_scalar(backend).fetch_one(pool).await.unwrap();
    terminate(&test_db.url, first).await;
    tokio::time::sleep(bt_platform::db::PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let second: i32 = sqlx::query_scalar(backend)
        .fetch_one(pool)
        .await
        .expect("the dead connection is replaced before it is used");
    assert_ne!(second, first);
}
