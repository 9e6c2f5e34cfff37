//! The SQL of the expiration service.

use bt_platform::{Db, Tx, on_db, on_tx, write_on_db};

const SCHEDULE: &str = "INSERT INTO timers (order_id, fire_at, state, updated_at) VALUES ($1, $2, 'pending', $3) ON CONFLICT (order_id) DO NOTHING";
const FINISH: &str = "INSERT INTO timers (order_id, fire_at, state, updated_at) VALUES ($1, 0, 'done', $2) ON CONFLICT (order_id) DO UPDATE SET state = 'done', updated_at = excluded.updated_at";
const NEXT_DUE: &str = "SELECT MIN(fire_at) FROM timers WHERE state = 'pending'";
const DUE_SQLITE: &str = "SELECT order_id FROM timers WHERE state = 'pending' AND fire_at <= $1 ORDER BY fire_at LIMIT $2";
const DUE_POSTGRES: &str = "SELECT order_id FROM timers WHERE state = 'pending' AND fire_at <= $1 ORDER BY fire_at LIMIT $2 FOR UPDATE SKIP LOCKED";
const DELETE: &str = "DELETE FROM timers WHERE order_id = $1";
const PURGE_DONE: &str = "DELETE FROM timers WHERE state = 'done' AND updated_at < $1";
const PENDING: &str = "SELECT COUNT(*) FROM timers WHERE state = 'pending'";

/// Schedules the timer of an order (nothing if the order has a timer or finished already).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn schedule(tx: &mut Tx, order_id: &str, fire_at: i64, now: i64) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SCHEDULE)
        .bind(order_id)
        .bind(fire_at)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Drops the timer of an order that was cancelled or completed (remembering it, in case its
/// `order.created` is still on the way).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn finish(tx: &mut Tx, order_id: &str, now: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(FINISH)
        .bind(order_id)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

/// When the earliest pending timer fires.
pub async fn next_due(db: &Db) -> sqlx::Result<Option<i64>> {
    on_db!(db, |pool| sqlx::query_scalar(NEXT_DUE)
        .fetch_one(pool)
        .await)
}

/// Claims up to `limit` due timers inside `tx` (locked against other replicas until `tx` ends).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn claim_due(tx: &mut Tx, now: i64, limit: i64) -> sqlx::Result<Vec<String>> {
    let sql = match tx {
        Tx::Sqlite(..) => DUE_SQLITE,
        Tx::Postgres(_) => DUE_POSTGRES,
    };
    on_tx!(tx, |conn| sqlx::query_scalar(sql)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await)
}

/// Removes a fired timer.
pub async fn delete(tx: &mut Tx, order_id: &str) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(DELETE)
        .bind(order_id)
        .execute(conn)
        .await
        .map(drop))
}

/// Forgets finished orders older than `before`.
pub async fn purge_done(db: &Db, before: i64) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(PURGE_DONE)
        .bind(before)
        .execute(pool)
        .await
        .map(drop))
}

/// Pending timers.
pub async fn pending(db: &Db) -> sqlx::Result<i64> {
    on_db!(db, |pool| sqlx::query_scalar(PENDING).fetch_one(pool).await)
}
