//! The SQL of the tickets service, one named function per statement.

use bt_platform::{Db, Tx, on_db, on_tx};

use crate::domain::Ticket;

const COLUMNS: &str = "id, title, price, user_id, version, order_id, (sold_at IS NOT NULL) AS sold";

fn select(filter: &str) -> String {
    format!("SELECT {COLUMNS} FROM tickets {filter}")
}

const INSERT: &str = "INSERT INTO tickets (id, title, price, user_id, version, order_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $6)";
const UPDATE_DETAILS: &str = "UPDATE tickets SET title = $2, price = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND version = $5 AND order_id IS NULL";
const SET_ORDER: &str = "UPDATE tickets SET order_id = $2, version = version + 1, updated_at = $3 WHERE id = $1 AND version = $4";
const MARK_SOLD: &str = "UPDATE tickets SET sold_at = $2, version = version + 1, updated_at = $2 WHERE id = $1 AND version = $3";
const ORDER_VERSION: &str = "SELECT version FROM order_versions WHERE order_id = $1";
const SET_ORDER_VERSION: &str = "INSERT INTO order_versions (order_id, version) VALUES ($1, $2) ON CONFLICT (order_id) DO UPDATE SET version = excluded.version";

/// Inserts a new ticket (version 0, on sale).
#[tracing::instrument(skip_all, err)]
pub async fn insert(tx: &mut Tx, ticket: &Ticket, now: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price.get())
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

/// The ticket with this id.
#[tracing::instrument(skip_all, err)]
pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<Ticket>> {
    let sql = select("WHERE id = $1");
    on_db!(db, |pool| sqlx::query_as::<_, Ticket>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The ticket with this id, read inside `tx`.
#[tracing::instrument(skip_all, err)]
pub async fn find_in(tx: &mut Tx, id: &str) -> sqlx::Result<Option<Ticket>> {
    let sql = select("WHERE id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, Ticket>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Tickets on sale, newest first, optionally whose title contains `search`
/// (case-insensitive), after the ticket `after` (a cursor), at most `limit`.
#[tracing::instrument(skip_all, err)]
pub async fn list_on_sale(
    db: &Db,
    search: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Ticket>> {
    let mut filter = String::from("WHERE order_id IS NULL");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if search.is_some() {
        filter.push_str(&format!(" AND LOWER(title) LIKE {} ESCAPE '\\'", next()));
    }
    if after.is_some() {
        filter.push_str(&format!(" AND id < {}", next()));
    }
    filter.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    let sql = select(&filter);
    let pattern = search.map(|s| format!("%{}%", escape_like(&s.to_lowercase())));
    on_db!(db, |pool| {
        let mut query = sqlx::query_as::<_, Ticket>(&sql);
        if let Some(pattern) = &pattern {
            query = query.bind(pattern);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        query.bind(limit).fetch_all(pool).await
    })
}

/// Every ticket of a seller, newest first (at most 500).
#[tracing::instrument(skip_all, err)]
pub async fn list_of_seller(db: &Db, user_id: &str) -> sqlx::Result<Vec<Ticket>> {
    let sql = select("WHERE user_id = $1 ORDER BY id DESC LIMIT 500");
    on_db!(db, |pool| sqlx::query_as::<_, Ticket>(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await)
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Changes title and price of a free ticket at `version`; false when it is reserved or changed
/// meanwhile.
#[tracing::instrument(skip_all, err)]
pub async fn update_details(
    tx: &mut Tx,
    id: &str,
    title: &str,
    price: i64,
    version: i64,
    now: i64,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(UPDATE_DETAILS)
        .bind(id)
        .bind(title)
        .bind(price)
        .bind(now)
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Reserves (`Some(order)`) or releases (`None`) the ticket at `version`.
#[tracing::instrument(skip_all, err)]
pub async fn set_order(
    tx: &mut Tx,
    id: &str,
    order_id: Option<&str>,
    version: i64,
    now: i64,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SET_ORDER)
        .bind(id)
        .bind(order_id)
        .bind(now)
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Marks the ticket sold at `version`.
#[tracing::instrument(skip_all, err)]
pub async fn mark_sold(tx: &mut Tx, id: &str, version: i64, now: i64) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(MARK_SOLD)
        .bind(id)
        .bind(now)
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The latest version of an order applied here.
pub async fn order_version(tx: &mut Tx, order_id: &str) -> sqlx::Result<Option<i64>> {
    on_tx!(tx, |conn| sqlx::query_scalar(ORDER_VERSION)
        .bind(order_id)
        .fetch_optional(conn)
        .await)
}

/// Records that version `version` of an order was applied.
pub async fn set_order_version(tx: &mut Tx, order_id: &str, version: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(SET_ORDER_VERSION)
        .bind(order_id)
        .bind(version)
        .execute(conn)
        .await
        .map(drop))
}
