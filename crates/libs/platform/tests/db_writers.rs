//! SQLite's writers in one process take turns (`db::Writers`) instead of meeting in SQLite's
//! busy handler: a second writer waits for the first one's commit and then goes; a pool of its
//! own (`Db::own_pool`) and a statement outside a transaction (`Db::write_turn`,
//! `write_on_db!`) take their turn with the others; a turn not given within the acquire timeout
//! is an error that answers 503, like an exhausted pool. A snapshot for reads (`Db::snapshot`)
//! takes no turn: a writer commits beside it, and it goes on seeing the database as it was.

use std::time::Duration;

use axum::response::IntoResponse;
use bt_contract::ApiError;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Migrations, Snapshot, Tx, on_db, on_snapshot, on_tx, write_on_db};
use bt_test_support::{Backend, TestDb};
use reqwest::StatusCode;

async fn open(test_db: &TestDb, options: &DbOptions) -> Db {
    let db = Db::open(&test_db.url, options, &Migrations::NONE)
        .await
        .unwrap();
    on_db!(&db, |pool| sqlx::query("CREATE TABLE writes (n BIGINT)")
        .execute(pool)
        .await
        .map(drop)
        .unwrap());
    db
}

async fn write(tx: &mut Tx, n: i64) {
    on_tx!(tx, |conn| sqlx::query("INSERT INTO writes (n) VALUES ($1)")
        .bind(n)
        .execute(conn)
        .await
        .map(drop)
        .unwrap());
}

async fn written(db: &Db) -> Vec<i64> {
    on_db!(db, |pool| sqlx::query_scalar(
        "SELECT n FROM writes ORDER BY n"
    )
    .fetch_all(pool)
    .await
    .unwrap())
}

/// Starts a writer on `db` that writes `n` and commits; it waits for its turn first.
fn second_writer(db: &Db, n: i64) -> tokio::task::JoinHandle<()> {
    let db = db.clone();
    tokio::spawn(async move {
        let mut tx = db.begin().await.unwrap();
        write(&mut tx, n).await;
        tx.commit().await.unwrap();
    })
}

#[tokio::test]
async fn a_sqlite_writer_waits_for_the_one_before_it_and_then_goes() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = open(&test_db, &DbOptions::default()).await;
    let own = db.own_pool(1).await.unwrap();
    for (name, other) in [("the same pool", &db), ("a pool of its own", &own)] {
        let mut first = db.begin().await.unwrap();
        write(&mut first, 1).await;
        let second = second_writer(other, 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "{name}: the second writer waits while the first holds its turn"
        );
        first.commit().await.unwrap();
        second.await.unwrap();
        assert_eq!(written(&db).await, [1, 2], "{name}: both written");
        on_db!(&db, |pool| sqlx::query("DELETE FROM writes")
            .execute(pool)
            .await
            .map(drop)
            .unwrap());
    }
}

#[tokio::test]
async fn a_statement_outside_a_transaction_takes_its_turn_too() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = open(&test_db, &DbOptions::default()).await;
    let mut first = db.begin().await.unwrap();
    write(&mut first, 1).await;
    let statement = {
        let db = db.clone();
        tokio::spawn(async move {
            let _turn = db.write_turn().await.unwrap();
            on_db!(&db, |pool| sqlx::query("INSERT INTO writes (n) VALUES (2)")
                .execute(pool)
                .await
                .map(drop)
                .unwrap());
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!statement.is_finished());
    first.commit().await.unwrap();
    statement.await.unwrap();
    assert_eq!(written(&db).await, [1, 2]);
}

/// Starts `write_on_db!` of `n` on `db`, answering what the statement answered.
fn write_outside_a_transaction(db: &Db, n: i64) -> tokio::task::JoinHandle<sqlx::Result<()>> {
    let db = db.clone();
    tokio::spawn(async move {
        write_on_db!(&db, |pool| sqlx::query(
            "INSERT INTO writes (n) VALUES ($1)"
        )
        .bind(n)
        .execute(pool)
        .await
        .map(drop))
    })
}

#[tokio::test]
async fn write_on_db_waits_for_the_turn_on_sqlite_and_then_goes() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = open(&test_db, &DbOptions::default()).await;
    // Behind a transaction: it goes once the transaction commits.
    let mut first = db.begin().await.unwrap();
    write(&mut first, 1).await;
    let statement = write_outside_a_transaction(&db, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !statement.is_finished(),
        "the statement waits while a transaction holds the turn"
    );
    first.commit().await.unwrap();
    statement.await.unwrap().unwrap();
    assert_eq!(written(&db).await, [1, 2]);
    // Behind a turn that holds no lock of SQLite's: what it waits for is the turn itself (a
    // statement that did not take it would go at once).
    let turn = db.write_turn().await.unwrap();
    let statement = write_outside_a_transaction(&db, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !statement.is_finished(),
        "the statement waits while another writer holds the turn"
    );
    drop(turn);
    statement.await.unwrap().unwrap();
    assert_eq!(written(&db).await, [1, 2, 3]);
}

/// Options under which a writer waits 200 ms for its turn.
fn impatient() -> DbOptions {
    DbOptions {
        acquire_timeout: Duration::from_millis(200),
        ..DbOptions::default()
    }
}

/// `err` is a turn not given in time, which is answered 503.
fn assert_busy(err: sqlx::Error) {
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    assert_eq!(
        ApiError::from(err).into_response().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn write_on_db_not_given_its_turn_within_the_acquire_timeout_is_a_503() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = open(&test_db, &impatient()).await;
    let first = db.begin().await.unwrap();
    let err = write_outside_a_transaction(&db, 1)
        .await
        .unwrap()
        .unwrap_err();
    assert_busy(err);
    first.rollback().await.unwrap();
    assert_eq!(written(&db).await, [] as [i64; 0], "nothing written");
}

#[tokio::test]
async fn a_turn_not_given_within_the_acquire_timeout_is_a_503() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = open(&test_db, &impatient()).await;
    let first = db.begin().await.unwrap();
    let err = db.begin().await.unwrap_err();
    assert_busy(err);
    // Its turn comes once the first is done.
    first.rollback().await.unwrap();
    db.begin().await.unwrap().commit().await.unwrap();
}

#[tokio::test]
async fn postgres_writers_do_not_queue_in_the_process() {
    let test_db = TestDb::new(Backend::Postgres).await;
    let db = open(&test_db, &DbOptions::default()).await;
    assert!(db.write_turn().await.unwrap().is_none());
    // Two transactions at once, neither waiting for the other's commit.
    let mut first = db.begin().await.unwrap();
    let mut second = db.begin().await.unwrap();
    write(&mut first, 1).await;
    write(&mut second, 2).await;
    second.commit().await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(written(&db).await, [1, 2]);
}

#[tokio::test]
async fn postgres_writes_outside_a_transaction_take_no_turn() {
    let test_db = TestDb::new(Backend::Postgres).await;
    let db = open(&test_db, &DbOptions::default()).await;
    let mut first = db.begin().await.unwrap();
    write(&mut first, 1).await;
    // Runs beside the open transaction, without waiting for its commit.
    tokio::time::timeout(Duration::from_secs(5), write_outside_a_transaction(&db, 2))
        .await
        .expect("the statement does not wait for the transaction")
        .unwrap()
        .unwrap();
    assert_eq!(written(&db).await, [2], "the statement committed by itself");
    first.commit().await.unwrap();
    assert_eq!(written(&db).await, [1, 2]);
}

async fn seen(snapshot: &mut Snapshot) -> Vec<i64> {
    on_snapshot!(snapshot, |conn| sqlx::query_scalar(
        "SELECT n FROM writes ORDER BY n"
    )
    .fetch_all(conn)
    .await
    .unwrap())
}

/// A snapshot sees the database as of its first read, whatever commits after it, and holds up
/// no writer, on either backend.
async fn a_snapshot_sees_one_instant_and_holds_up_no_writer(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = open(&test_db, &DbOptions::default()).await;
    let mut tx = db.begin().await.unwrap();
    write(&mut tx, 1).await;
    tx.commit().await.unwrap();
    let mut snapshot = db.snapshot().await.unwrap();
    assert_eq!(seen(&mut snapshot).await, [1]);
    // A writer and a statement outside a transaction commit while the snapshot is open.
    tokio::time::timeout(Duration::from_secs(5), second_writer(&db, 2))
        .await
        .expect("a writer does not wait for a snapshot")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), write_outside_a_transaction(&db, 3))
        .await
        .expect("a statement does not wait for a snapshot")
        .unwrap()
        .unwrap();
    assert_eq!(written(&db).await, [1, 2, 3]);
    assert_eq!(
        seen(&mut snapshot).await,
        [1],
        "the snapshot is of its first read"
    );
    if backend == Backend::Postgres {
        let refused = on_snapshot!(&mut snapshot, |conn| sqlx::query(
            "INSERT INTO writes (n) VALUES (4)"
        )
        .execute(conn)
        .await
        .map(drop));
        assert!(refused.is_err(), "PostgreSQL refuses a write in a snapshot");
    }
    drop(snapshot);
    let mut after = db.snapshot().await.unwrap();
    assert_eq!(seen(&mut after).await, [1, 2, 3]);
    after.end().await.unwrap();
}

bt_test_support::backend_tests!(a_snapshot_sees_one_instant_and_holds_up_no_writer);
