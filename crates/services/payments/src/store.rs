//! The SQL of the payments service.

use bt_platform::db::is_unique_violation;
use bt_platform::{Db, Tx, on_db, on_tx};

/// An order as the payments service replicates it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub price: i64,
    pub status: String,
    pub version: i64,
    /// When the order expires (ms since the Unix epoch); `None` for orders replicated before
    /// the replica kept it.
    pub expires_at: Option<i64>,
}

/// A payment row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub provider_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
}

const ORDER: &str =
    "SELECT id, user_id, price, status, version, expires_at FROM orders WHERE id = $1";
/// The order, its row locked until the transaction ends (PostgreSQL; SQLite's `BEGIN IMMEDIATE`
/// already serialises writers).
const ORDER_FOR_UPDATE: &str =
    "SELECT id, user_id, price, status, version, expires_at FROM orders WHERE id = $1 FOR UPDATE";
const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, price, status, version, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
const UPDATE_ORDER: &str =
    "UPDATE orders SET status = $2, version = $3 WHERE id = $1 AND version = $3 - 1";
const NEXT_ATTEMPT: &str =
    "SELECT COALESCE(MAX(attempt), 0) + 1 FROM payment_attempts WHERE order_id = $1";
const INSERT_ATTEMPT: &str = "INSERT INTO payment_attempts (order_id, attempt, state, created_at, updated_at) VALUES ($1, $2, 'in_flight', $3, $3)";
const FINISH_ATTEMPT: &str = "UPDATE payment_attempts SET state = $3, provider_id = COALESCE($4, provider_id), failure = $5, updated_at = $6 WHERE order_id = $1 AND attempt = $2 AND state = 'in_flight'";
const SET_ATTEMPT_PROVIDER: &str = "UPDATE payment_attempts SET provider_id = $3, updated_at = $4 WHERE order_id = $1 AND attempt = $2";
const PAYMENT_BY_PROVIDER: &str = "SELECT id, order_id, provider_id, amount, currency, status FROM payments WHERE provider_id = $1";
const SUCCEEDED_PAYMENT: &str = "SELECT id, order_id, provider_id, amount, currency, status FROM payments WHERE order_id = $1 AND status = 'succeeded'";
const INSERT_PAYMENT: &str = "INSERT INTO payments (id, order_id, provider_id, amount, currency, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";
const SET_PAYMENT_STATUS: &str = "UPDATE payments SET status = $2, updated_at = $3 WHERE id = $1";
const REFUNDS_PENDING: &str = "SELECT id, order_id, provider_id, amount, currency, status FROM payments WHERE status = 'refund_pending' ORDER BY updated_at, id LIMIT 50";
const WEBHOOK_SEEN: &str = "INSERT INTO webhook_events (id, type, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
const PAYMENTS_OF: &str = "SELECT id, order_id, provider_id, amount, currency, status FROM payments WHERE order_id = $1 ORDER BY created_at";

pub async fn order(db: &Db, id: &str) -> sqlx::Result<Option<Order>> {
    on_db!(db, |pool| sqlx::query_as::<_, Order>(ORDER)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

pub async fn order_in(tx: &mut Tx, id: &str) -> sqlx::Result<Option<Order>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, Order>(ORDER)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The order, locked against concurrent changes until `tx` ends: a charge recorded for it and
/// a cancellation of it are serialised, so one of them always sees the other.
pub async fn lock_order(tx: &mut Tx, id: &str) -> sqlx::Result<Option<Order>> {
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query_as::<_, Order>(ORDER)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
        Tx::Postgres(tx) => {
            sqlx::query_as::<_, Order>(ORDER_FOR_UPDATE)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
    }
}

pub async fn insert_order(tx: &mut Tx, order: &Order) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_ORDER)
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(order.price)
        .bind(&order.status)
        .bind(order.version)
        .bind(order.expires_at)
        .execute(conn)
        .await
        .map(drop))
}

/// Applies version `version` (status `status`) on top of the previous one.
pub async fn update_order(tx: &mut Tx, id: &str, status: &str, version: i64) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(UPDATE_ORDER)
        .bind(id)
        .bind(status)
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Opens the next attempt for an order; `None` when another attempt is in flight or has
/// succeeded (the partial unique index refuses it).
pub async fn open_attempt(tx: &mut Tx, order_id: &str, now: i64) -> sqlx::Result<Option<i64>> {
    let attempt: i64 = on_tx!(tx, |conn| sqlx::query_scalar(NEXT_ATTEMPT)
        .bind(order_id)
        .fetch_one(conn)
        .await)?;
    let inserted = on_tx!(tx, |conn| sqlx::query(INSERT_ATTEMPT)
        .bind(order_id)
        .bind(attempt)
        .bind(now)
        .execute(conn)
        .await
        .map(drop));
    match inserted {
        Ok(()) => Ok(Some(attempt)),
        Err(err) if is_unique_violation(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Closes an in-flight attempt as `succeeded` or `failed`.
pub async fn finish_attempt(
    db_or_tx: &mut Tx,
    order_id: &str,
    attempt: i64,
    state: &str,
    provider_id: Option<&str>,
    failure: Option<&str>,
    now: i64,
) -> sqlx::Result<bool> {
    on_tx!(db_or_tx, |conn| sqlx::query(FINISH_ATTEMPT)
        .bind(order_id)
        .bind(attempt)
        .bind(state)
        .bind(provider_id)
        .bind(failure)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

pub async fn set_attempt_provider(
    tx: &mut Tx,
    order_id: &str,
    attempt: i64,
    provider_id: &str,
    now: i64,
) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(SET_ATTEMPT_PROVIDER)
        .bind(order_id)
        .bind(attempt)
        .bind(provider_id)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

pub async fn payment_by_provider(tx: &mut Tx, provider_id: &str) -> sqlx::Result<Option<Payment>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, Payment>(PAYMENT_BY_PROVIDER)
        .bind(provider_id)
        .fetch_optional(conn)
        .await)
}

pub async fn succeeded_payment(tx: &mut Tx, order_id: &str) -> sqlx::Result<Option<Payment>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, Payment>(SUCCEEDED_PAYMENT)
        .bind(order_id)
        .fetch_optional(conn)
        .await)
}

pub async fn insert_payment(tx: &mut Tx, payment: &Payment, now: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_PAYMENT)
        .bind(&payment.id)
        .bind(&payment.order_id)
        .bind(&payment.provider_id)
        .bind(payment.amount)
        .bind(&payment.currency)
        .bind(&payment.status)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

pub async fn set_payment_status(tx: &mut Tx, id: &str, status: &str, now: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(SET_PAYMENT_STATUS)
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

pub async fn set_payment_status_db(db: &Db, id: &str, status: &str, now: i64) -> sqlx::Result<()> {
    on_db!(db, |pool| sqlx::query(SET_PAYMENT_STATUS)
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(pool)
        .await
        .map(drop))
}

pub async fn refunds_pending(db: &Db) -> sqlx::Result<Vec<Payment>> {
    on_db!(db, |pool| sqlx::query_as::<_, Payment>(REFUNDS_PENDING)
        .fetch_all(pool)
        .await)
}

/// Records a webhook event id; false when it was handled before.
pub async fn webhook_seen(tx: &mut Tx, id: &str, kind: &str, now: i64) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(WEBHOOK_SEEN)
        .bind(id)
        .bind(kind)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Every payment of an order (for tests and support).
pub async fn payments_of(db: &Db, order_id: &str) -> sqlx::Result<Vec<Payment>> {
    on_db!(db, |pool| sqlx::query_as::<_, Payment>(PAYMENTS_OF)
        .bind(order_id)
        .fetch_all(pool)
        .await)
}
