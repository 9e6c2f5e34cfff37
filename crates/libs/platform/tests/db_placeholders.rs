//! Multi-row statements written with `db::values_placeholders` (anonymous `?` on SQLite,
//! numbered `$N` on PostgreSQL) put every bound value in its own row and column, for as many
//! rows as the group commit writes at once.

use bt_platform::db::{DbOptions, values_placeholders};
use bt_platform::{Db, Migrations, on_db, on_tx};
use bt_test_support::{Backend, TestDb};

/// As many rows as the orders service's largest group commit, each of a key and 15 values.
const ROWS: usize = 256;
const COLUMNS: usize = 15;

/// Row `row`'s value in column `column`: text in even columns, a number in odd ones, none
/// equal to another.
fn value(row: usize, column: usize) -> String {
    format!("r{row}c{column}")
}

async fn a_multi_row_insert_puts_each_value_in_its_row_and_column(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::open(&test_db.url, &DbOptions::default(), &Migrations::NONE)
        .await
        .unwrap();
    let columns: Vec<String> = (0..COLUMNS)
        .map(|c| {
            if c % 2 == 0 {
                format!("c{c} TEXT NOT NULL")
            } else {
                format!("c{c} BIGINT NOT NULL")
            }
        })
        .collect();
    let create = format!(
        "CREATE TABLE wide (n BIGINT PRIMARY KEY, {})",
        columns.join(", ")
    );
    on_db!(&db, |pool| sqlx::query(&create)
        .execute(pool)
        .await
        .map(drop))
    .unwrap();

    let sql = format!(
        "INSERT INTO wide VALUES {} ON CONFLICT DO NOTHING RETURNING n",
        values_placeholders(db.backend(), ROWS, COLUMNS + 1)
    );
    // Rows bound in a shuffled order of `n`, so that a value bound to the wrong row shows.
    let order: Vec<usize> = (0..ROWS).map(|i| (i * 97) % ROWS).collect();
    let mut tx = db.begin().await.unwrap();
    let mut inserted: Vec<i64> = on_tx!(&mut tx, |conn| {
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for &row in &order {
            query = query.bind(row as i64);
            for column in 0..COLUMNS {
                query = if column % 2 == 0 {
                    query.bind(value(row, column))
                } else {
                    query.bind((row * 1000 + column) as i64)
                };
            }
        }
        query.fetch_all(conn).await
    })
    .unwrap();
    tx.commit().await.unwrap();
    inserted.sort_unstable();
    assert_eq!(inserted, (0..ROWS as i64).collect::<Vec<_>>());

    let read: Vec<(i64, String, i64, String)> = on_db!(&db, |pool| sqlx::query_as(
        "SELECT n, c0, c1, c14 FROM wide ORDER BY n"
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    assert_eq!(read.len(), ROWS);
    for (n, c0, c1, c14) in read {
        let row = n as usize;
        assert_eq!(c0, value(row, 0), "row {row}, first column");
        assert_eq!(c1, (row * 1000 + 1) as i64, "row {row}, second column");
        assert_eq!(c14, value(row, 14), "row {row}, last column");
    }
}

bt_test_support::backend_tests!(a_multi_row_insert_puts_each_value_in_its_row_and_column);
