//! What a multi-row insert costs on SQLite with numbered placeholders (`$1, $2, ...`) and with
//! anonymous ones (`?, ?, ...`): `cargo bench -p bt-platform --bench placeholders`.
//!
//! SQLite keeps a statement's named parameters (`$1` is a name to it, as `:a` would be) in a
//! list, and looks the list through for every one it reads, to reuse the number of a name seen
//! before; sqlx then asks SQLite the name of every parameter it binds, which walks the list
//! again. Both are quadratic in the number of parameters. An anonymous `?` is not in the list
//! and is bound by its position. The orders service's group commit writes up to 256 orders of
//! 15 values in one statement, and the in-process bus inserts up to 200 rows at once, so
//! `db::values_placeholders` writes `?` on SQLite (BENCHMARKS.md, issue 16 part 17).
//!
//! For each row count, the time of one insert of that many rows of 15 values, both prepared
//! anew each time (`persistent(false)`: every new batch size is a new statement) and from
//! sqlx's statement cache (as a repeated size is), in an in-memory database. Median of 7.

use std::time::Instant;

use bt_platform::Backend;
use bt_platform::db::values_placeholders;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, SqlitePool};

const COLUMNS: usize = 15;
const REPEAT: usize = 7;

/// Median ms of REPEAT inserts of `rows` rows with `placeholders`.
async fn insert(pool: &SqlitePool, rows: usize, placeholders: &str, cached: bool) -> f64 {
    let sql = format!("INSERT INTO t VALUES {placeholders}");
    let mut times = Vec::with_capacity(REPEAT);
    for _ in 0..REPEAT {
        pool.execute("DELETE FROM t").await.expect("emptied");
        let mut query = sqlx::query(&sql).persistent(cached);
        for row in 0..rows {
            for column in 0..COLUMNS {
                query = if column % 2 == 0 {
                    query.bind(format!("value {row} {column}"))
                } else {
                    query.bind((row * COLUMNS + column) as i64)
                };
            }
        }
        let start = Instant::now();
        let done = query.execute(pool).await.expect("inserted");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(done.rows_affected(), rows as u64);
    }
    times.sort_by(f64::total_cmp);
    times[REPEAT / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = SqliteConnectOptions::new().in_memory(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("an in-memory SQLite database");
    let columns: Vec<String> = (0..COLUMNS).map(|c| format!("c{c}")).collect();
    pool.execute(format!("CREATE TABLE t ({})", columns.join(", ")).as_str())
        .await
        .expect("the table");
    println!(
        "| rows of {COLUMNS} values | `$N`, prepared | `?`, prepared | `$N`, cached | `?`, cached |"
    );
    println!("|---|---|---|---|---|");
    for rows in [1, 10, 100, 200, 256] {
        // `values_placeholders` writes `$N` for PostgreSQL: here, the numbered form on SQLite.
        let numbered = values_placeholders(Backend::Postgres, rows, COLUMNS);
        let anonymous = values_placeholders(Backend::Sqlite, rows, COLUMNS);
        let mut cells = Vec::new();
        for cached in [false, true] {
            for placeholders in [&numbered, &anonymous] {
                cells.push(insert(&pool, rows, placeholders, cached).await);
            }
        }
        println!(
            "| {rows} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            cells[0], cells[1], cells[2], cells[3]
        );
    }
}
