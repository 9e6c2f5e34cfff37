//! The SQL of the orders service, one named function per statement. Rows are decoded into the
//! domain types: an unknown status, a bad timestamp or half a payment is an error, never a
//! default.

use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::{Cents, Millis, OrderId, PaymentId, TicketId, UserId};
use bt_platform::{Backend, Db, Tx, on_db, on_tx};

use crate::domain::{ListedTicket, Order, Payment, Reservation, TicketTerms};

const ORDER_COLUMNS: &str = "id, user_id, status, expires_at, version, ticket_id, ticket_title, ticket_price, ticket_version, reservation, payment_id, payment_amount, payment_refunded, cancel_reason, created_at, updated_at";

/// PostgreSQL: takes, without waiting, the advisory lock of the ticket of the row `wanted` being
/// inserted, held until the transaction ends; false when another transaction holds it
/// ([`insert_orders_if_free`]). The key is a 64-bit hash of the ticket's id, one-key form (the
/// notifications service's per-user locks are in another database).
const TICKET_BEING_ORDERED: &str =
    "pg_try_advisory_xact_lock(hashtextextended(wanted.ticket_id, 0))";

fn select_orders(filter: &str) -> String {
    format!("SELECT {ORDER_COLUMNS} FROM orders {filter}")
}

const SAVE_ORDER: &str = "UPDATE orders SET status = $2, version = $3, reservation = $4, payment_id = $5, payment_amount = $6, payment_refunded = $7, cancel_reason = $8, updated_at = $9 WHERE id = $1 AND version = $10";
/// The replica's columns of a ticket ([`ListedTicket`]), for the statements that read one.
macro_rules! ticket_columns {
    () => {
        "id, title, price, user_id, version, starts_at, for_sale, held_for, held_version, held_until"
    };
}
const TICKET: &str = concat!("SELECT ", ticket_columns!(), " FROM tickets WHERE id = $1");
const SELL_TICKET: &str = concat!(
    "UPDATE tickets SET user_id = $2, for_sale = FALSE WHERE id = $1 RETURNING ",
    ticket_columns!()
);
const HOLD_TICKET: &str = "UPDATE tickets SET held_for = $2, held_version = $3, held_until = $4 WHERE id = $1 AND version = $3";
const INSERT_TICKET: &str = "INSERT INTO tickets (id, title, price, user_id, version, starts_at, for_sale) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const UPDATE_TICKET: &str = "UPDATE tickets SET title = $2, price = $3, user_id = $4, version = $5, starts_at = $6, for_sale = $7 WHERE id = $1 AND version = $5 - 1";

/// One row of `orders`, as stored.
#[derive(Debug, sqlx::FromRow)]
struct OrderRow {
    id: OrderId,
    user_id: UserId,
    status: OrderStatus,
    expires_at: Millis,
    version: i64,
    ticket_id: TicketId,
    ticket_title: String,
    ticket_price: Cents,
    ticket_version: i64,
    reservation: Reservation,
    payment_id: Option<PaymentId>,
    payment_amount: Option<Cents>,
    payment_refunded: Cents,
    cancel_reason: Option<CancelReason>,
    created_at: Millis,
    updated_at: Millis,
}

impl TryFrom<OrderRow> for Order {
    type Error = sqlx::Error;

    fn try_from(row: OrderRow) -> Result<Self, Self::Error> {
        let payment = match (row.payment_id, row.payment_amount) {
            (Some(id), Some(amount)) => Some(Payment {
                id,
                amount,
                refunded: row.payment_refunded,
            }),
            (None, None) => None,
            _ => {
                return Err(sqlx::Error::Decode(
                    format!("order {} has half a payment", row.id).into(),
                ));
            }
        };
        Ok(Order {
            id: row.id,
            user_id: row.user_id,
            status: row.status,
            expires_at: row.expires_at,
            version: row.version,
            ticket: TicketTerms {
                id: row.ticket_id,
                title: row.ticket_title,
                price: row.ticket_price,
                version: row.ticket_version,
            },
            reservation: row.reservation,
            payment,
            cancel_reason: row.cancel_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn decode_all(rows: Vec<OrderRow>) -> sqlx::Result<Vec<Order>> {
    rows.into_iter().map(Order::try_from).collect()
}

/// Stores new orders, each unless its ticket has an open order already (the partial unique
/// index decides, `ON CONFLICT DO NOTHING` on both backends), in the given order; the ids of
/// those stored. The group writer's statement ([`crate::reservations`]): a lost order does not
/// fail the transaction the other orders are written in. One statement for the whole batch:
/// on PostgreSQL each statement is a round trip, and a rush's batch of 100 orders, one
/// statement each, took 240 ms of round trips on the loaded local cluster.
///
/// On PostgreSQL, where replicas share the database (`serve`), an order is inserted only if
/// its transaction takes the ticket's advisory lock ([`TICKET_BEING_ORDERED`]) without waiting.
/// Another replica's writer holds that lock from its insert until its transaction ends, and
/// inserting the same ticket meanwhile would wait on the unique index for that transaction,
/// holding up every order of this batch, winners and losers alike (the distributed rush's
/// slowest group commits waited so: BENCHMARKS.md, issue 16 parts 20 and 22). An order whose ticket is being written
/// elsewhere is lost at once instead. So is one whose ticket has an open order in the
/// statement's snapshot (the unique index's own condition, `orders_one_open_per_ticket`): the
/// index would wait for a transaction changing that order (the consumer confirming its
/// reservation, in a rush's cascade), and a plain read does not. Neither check decides alone:
/// an order they let through still meets the unique index, and a transaction that fails after
/// all only made its losers retry. The replica's row of the ticket must also still be on sale:
/// another replica that completed an order for it marked the row sold in that transaction,
/// while this replica's copy in memory may be a moment old (at most `TRUST`); such an order is
/// lost too, not placed and then cancelled as "not for sale". SQLite has one writer at a time
/// (one process, `BEGIN IMMEDIATE`), whose memory is never behind its own commits: nothing to
/// wait for, nothing to read again.
#[tracing::instrument(level = "debug", skip_all, fields(orders = orders.len()))]
pub async fn insert_orders_if_free(tx: &mut Tx, orders: &[&Order]) -> sqlx::Result<Vec<OrderId>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let values = bt_platform::db::values_placeholders(tx.backend(), orders.len(), 16);
    let sql = match tx.backend() {
        Backend::Sqlite => format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING RETURNING id"
        ),
        Backend::Postgres => format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) SELECT * FROM (VALUES {values}) AS wanted ({ORDER_COLUMNS}) \
             WHERE NOT EXISTS (SELECT 1 FROM orders existing WHERE existing.ticket_id = wanted.ticket_id \
             AND existing.status IN ('{}', '{}')) \
             AND EXISTS (SELECT 1 FROM tickets listed WHERE listed.id = wanted.ticket_id AND listed.for_sale) \
             AND {TICKET_BEING_ORDERED} \
             ON CONFLICT DO NOTHING RETURNING id",
            OrderStatus::Created.as_str(),
            OrderStatus::AwaitingPayment.as_str(),
        ),
    };
    on_tx!(tx, |conn| {
        let mut query = sqlx::query_scalar::<_, OrderId>(&sql);
        for order in orders {
            query = query
                .bind(&order.id)
                .bind(&order.user_id)
                .bind(order.status)
                .bind(order.expires_at)
                .bind(order.version)
                .bind(&order.ticket.id)
                .bind(&order.ticket.title)
                .bind(order.ticket.price)
                .bind(order.ticket.version)
                .bind(order.reservation)
                .bind(order.payment.as_ref().map(|p| &p.id))
                .bind(order.payment.as_ref().map(|p| p.amount))
                .bind(order.payment.as_ref().map_or(Cents::new(0), |p| p.refunded))
                .bind(order.cancel_reason)
                .bind(order.created_at)
                .bind(order.updated_at);
        }
        query.fetch_all(conn).await
    })
}

/// Writes an order changed by a transition over the row read at `read_version`; false when the
/// row changed meanwhile.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order.id))]
pub async fn save_order(tx: &mut Tx, order: &Order, read_version: i64) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SAVE_ORDER)
        .bind(&order.id)
        .bind(order.status)
        .bind(order.version)
        .bind(order.reservation)
        .bind(order.payment.as_ref().map(|p| &p.id))
        .bind(order.payment.as_ref().map(|p| p.amount))
        .bind(order.payment.as_ref().map_or(Cents::new(0), |p| p.refunded))
        .bind(order.cancel_reason)
        .bind(order.updated_at)
        .bind(read_version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The order with this id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_order(db: &Db, id: &OrderId) -> sqlx::Result<Option<Order>> {
    let sql = select_orders("WHERE id = $1");
    let row = on_db!(db, |pool| sqlx::query_as::<_, OrderRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)?;
    row.map(Order::try_from).transpose()
}

/// The order with this id, locked until `tx` ends (PostgreSQL `FOR UPDATE`; SQLite's
/// `BEGIN IMMEDIATE` serialises writers already): transitions of one order never interleave.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_order(tx: &mut Tx, id: &OrderId) -> sqlx::Result<Option<Order>> {
    let row = match tx {
        Tx::Sqlite(tx, _) => {
            sqlx::query_as::<_, OrderRow>(&select_orders("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
        }
        Tx::Postgres(tx) => {
            sqlx::query_as::<_, OrderRow>(&select_orders("WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    row.map(Order::try_from).transpose()
}

/// A user's orders, newest first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn orders_of(db: &Db, user_id: &UserId) -> sqlx::Result<Vec<Order>> {
    let sql = select_orders("WHERE user_id = $1 ORDER BY id DESC");
    let rows = on_db!(db, |pool| sqlx::query_as::<_, OrderRow>(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
    decode_all(rows)
}

/// The replicated ticket with this id, read inside `tx`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_ticket_in(tx: &mut Tx, id: &TicketId) -> sqlx::Result<Option<ListedTicket>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, ListedTicket>(TICKET)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The replicated ticket with this id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_ticket(db: &Db, id: &TicketId) -> sqlx::Result<Option<ListedTicket>> {
    on_db!(db, |pool| sqlx::query_as::<_, ListedTicket>(TICKET)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// Adds a ticket to the replica.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_ticket(tx: &mut Tx, ticket: &ListedTicket) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_TICKET)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .bind(ticket.starts_at)
        .bind(ticket.for_sale)
        .execute(conn)
        .await
        .map(drop))
}

/// Applies version `ticket.version` of a ticket on top of the previous one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn update_ticket(tx: &mut Tx, ticket: &ListedTicket) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(UPDATE_TICKET)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .bind(ticket.starts_at)
        .bind(ticket.for_sale)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Marks the replicated ticket `id` sold to `buyer` (its owner now, off sale), inside the
/// transaction that completes its order, and answers it as it is now (`None`: not replicated):
/// the tickets service's `ticket.updated` saying the same comes later, as the next version.
pub async fn sell_ticket_in(
    tx: &mut Tx,
    id: &TicketId,
    buyer: &UserId,
) -> sqlx::Result<Option<ListedTicket>> {
    on_tx!(tx, |conn| sqlx::query_as::<_, ListedTicket>(SELL_TICKET)
        .bind(id)
        .bind(buyer)
        .fetch_optional(conn)
        .await)
}

/// Records a ticket alert's hold on the replica (at the version it was given on).
pub async fn hold_ticket(tx: &mut Tx, hold: &bt_contract::events::TicketHeld) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(HOLD_TICKET)
        .bind(&hold.ticket_id)
        .bind(&hold.user_id)
        .bind(hold.ticket_version)
        .bind(hold.until)
        .execute(conn)
        .await
        .map(drop))
}
