//! The SQL of the orders service, one named function per statement.

use bt_contract::events::OrderStatus;
use bt_contract::{ApiError, ApiResult};
use bt_platform::db::is_unique_violation;
use bt_platform::{Db, Tx, on_db, on_tx};

use crate::domain::{OrderRow, TicketRow};

const ORDER_COLUMNS: &str = "o.id, o.user_id, o.status, o.expires_at, o.version, t.id AS ticket_id, t.title AS ticket_title, t.price AS ticket_price, t.version AS ticket_version";

fn select_orders(filter: &str) -> String {
    format!("SELECT {ORDER_COLUMNS} FROM orders o JOIN tickets t ON t.id = o.ticket_id {filter}")
}

const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $6)";
const SET_STATUS: &str = "UPDATE orders SET status = $2, version = version + 1, updated_at = $3 WHERE id = $1 AND version = $4";
const TICKET: &str = "SELECT id, title, price, user_id, version FROM tickets WHERE id = $1";
const INSERT_TICKET: &str =
    "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, $2, $3, $4, $5)";
const UPDATE_TICKET: &str = "UPDATE tickets SET title = $2, price = $3, user_id = $4, version = $5 WHERE id = $1 AND version = $5 - 1";

/// A new order (version 0) for a ticket. The one place where the database's refusal of a second
/// active order for a ticket becomes `400 Ticket is already reserved`.
#[tracing::instrument(skip_all, err(Debug))]
pub async fn insert_order(
    tx: &mut Tx,
    id: &str,
    user_id: &str,
    ticket_id: &str,
    expires_at: i64,
    now: i64,
) -> ApiResult<()> {
    let result = on_tx!(tx, |conn| sqlx::query(INSERT_ORDER)
        .bind(id)
        .bind(user_id)
        .bind(ticket_id)
        .bind(OrderStatus::Created.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(conn)
        .await
        .map(drop));
    match result {
        Err(err) if is_unique_violation(&err) => {
            Err(ApiError::bad_request("Ticket is already reserved"))
        }
        other => other.map_err(ApiError::from),
    }
}

/// The order with this id, with its ticket.
#[tracing::instrument(skip_all, err)]
pub async fn find_order(db: &Db, id: &str) -> sqlx::Result<Option<OrderRow>> {
    let sql = select_orders("WHERE o.id = $1");
    on_db!(db, |pool| sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The order with this id, read inside `tx`.
#[tracing::instrument(skip_all, err)]
pub async fn find_order_in(tx: &mut Tx, id: &str) -> sqlx::Result<Option<OrderRow>> {
    let sql = select_orders("WHERE o.id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// A user's orders, newest first.
#[tracing::instrument(skip_all, err)]
pub async fn orders_of(db: &Db, user_id: &str) -> sqlx::Result<Vec<OrderRow>> {
    let sql = select_orders("WHERE o.user_id = $1 ORDER BY o.id DESC");
    on_db!(db, |pool| sqlx::query_as::<_, OrderRow>(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await)
}

/// Moves the order at `version` to `status` (version + 1); false if it changed meanwhile.
#[tracing::instrument(skip_all, err)]
pub async fn set_status(
    tx: &mut Tx,
    id: &str,
    status: OrderStatus,
    version: i64,
    now: i64,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SET_STATUS)
        .bind(id)
        .bind(status.as_str())
        .bind(now)
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The replicated ticket with this id.
#[tracing::instrument(skip_all, err)]
pub async fn find_ticket_in(tx: &mut Tx, id: &str) -> sqlx::Result<Option<TicketRow>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, TicketRow>(TICKET)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The replicated ticket with this id.
#[tracing::instrument(skip_all, err)]
pub async fn find_ticket(db: &Db, id: &str) -> sqlx::Result<Option<TicketRow>> {
    on_db!(db, |pool| sqlx::query_as::<_, TicketRow>(TICKET)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// Adds a ticket to the replica.
#[tracing::instrument(skip_all, err)]
pub async fn insert_ticket(tx: &mut Tx, ticket: &TicketRow) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_TICKET)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .execute(conn)
        .await
        .map(drop))
}

/// Applies version `ticket.version` of a ticket on top of the previous one.
#[tracing::instrument(skip_all, err)]
pub async fn update_ticket(tx: &mut Tx, ticket: &TicketRow) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(UPDATE_TICKET)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}
