//! The SQL of the tickets service, one named function per statement.

use bt_contract::search::fold;
use bt_contract::{Millis, OrderId, TicketId, UserId};
use bt_platform::db::values_placeholders;
use bt_platform::{Db, Tx, on_db, on_tx, write_on_db};

use crate::domain::Ticket;

const COLUMNS: &str = "id, title, price, user_id, version, order_id, (sold_at IS NOT NULL) AS sold, venue, starts_at, face_value, for_sale, (file_key IS NOT NULL) AS has_file, reserved_for, sales, sold_by";

fn select(filter: &str) -> String {
    format!("SELECT {COLUMNS} FROM tickets {filter}")
}

const INSERT: &str = "INSERT INTO tickets (id, title, price, user_id, version, order_id, venue, starts_at, face_value, for_sale, created_at, updated_at, title_folded) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $10, $11)";
const SAVE: &str = "UPDATE tickets SET title = $2, price = $3, version = $4, order_id = $5, sold_at = CASE WHEN $6 THEN COALESCE(sold_at, $7) ELSE NULL END, updated_at = $7, user_id = $9, venue = $10, starts_at = $11, face_value = $12, for_sale = $13, reserved_for = $14, sales = $15, title_folded = $16, sold_by = $17 WHERE id = $1 AND version = $8";
// After a cursor, along the primary key: each batch starts where the last one ended instead of
// walking again past the rows folded already.
const UNFOLDED: &str =
    "SELECT id, title FROM tickets WHERE id > $1 AND title_folded IS NULL ORDER BY id LIMIT $2";
// Rows `(id, title_folded, title)`; a row whose title changed since it was read is left as it
// is (the write that changed it folded it). VALUES' columns are `column1`, `column2`, ... on
// both backends.
const SET_FOLDED: &str = "UPDATE tickets SET title_folded = v.column2 FROM (VALUES {rows}) AS v WHERE tickets.id = v.column1 AND tickets.title = v.column3 AND tickets.title_folded IS NULL";
const FILE: &str = "SELECT file_key, file_kind FROM tickets WHERE id = $1 AND file_key IS NOT NULL";
const SET_FILE: &str = "UPDATE tickets SET file_key = $2, file_kind = $3, file_size = $4, updated_at = $5 WHERE id = $1";
const ORDER_VERSION: &str = "SELECT version FROM order_versions WHERE order_id = $1";
const SET_ORDER_VERSION: &str = "INSERT INTO order_versions (order_id, version) VALUES ($1, $2) ON CONFLICT (order_id) DO UPDATE SET version = excluded.version";

/// Inserts a new ticket (version 0, on sale).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert(tx: &mut Tx, ticket: &Ticket, now: Millis) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.user_id)
        .bind(ticket.version)
        .bind(&ticket.venue)
        .bind(ticket.starts_at)
        .bind(ticket.face_value)
        .bind(ticket.for_sale)
        .bind(now)
        .bind(fold(&ticket.title))
        .execute(conn)
        .await
        .map(drop))
}

/// The ticket with this id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(db: &Db, id: &TicketId) -> sqlx::Result<Option<Ticket>> {
    let sql = select("WHERE id = $1");
    on_db!(db, |pool| sqlx::query_as::<_, Ticket>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The ticket with this id, read inside `tx`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_in(tx: &mut Tx, id: &TicketId) -> sqlx::Result<Option<Ticket>> {
    let sql = select("WHERE id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, Ticket>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Tickets on sale — free, offered by their owner, whose event has not started at `now` —
/// newest first, optionally whose title contains `search` (case-insensitive: both sides folded
/// by [`fold`], the title when it was written), after the ticket `after` (a cursor), at most
/// `limit`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_on_sale(
    db: &Db,
    search: Option<&str>,
    after: Option<&str>,
    limit: i64,
    now: Millis,
) -> sqlx::Result<Vec<Ticket>> {
    let mut filter = String::from(
        "WHERE order_id IS NULL AND for_sale AND (starts_at IS NULL OR starts_at > $1)",
    );
    let mut n = 1;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if search.is_some() {
        filter.push_str(&format!(" AND title_folded LIKE {} ESCAPE '\\'", next()));
    }
    if after.is_some() {
        filter.push_str(&format!(" AND id < {}", next()));
    }
    filter.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    let sql = select(&filter);
    let pattern = search.map(|s| format!("%{}%", escape_like(&fold(s))));
    on_db!(db, |pool| {
        let mut query = sqlx::query_as::<_, Ticket>(&sql).bind(now);
        if let Some(pattern) = &pattern {
            query = query.bind(pattern);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        query.bind(limit).fetch_all(pool).await
    })
}

/// Every ticket a user owns — listed, reserved, or bought and not listed again — newest first
/// (at most 500).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_of_seller(db: &Db, user_id: &UserId) -> sqlx::Result<Vec<Ticket>> {
    let sql = select("WHERE user_id = $1 ORDER BY id DESC LIMIT 500");
    on_db!(db, |pool| sqlx::query_as::<_, Ticket>(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await)
}

/// The tickets a user sold last and has not uploaded the file of: their buyers wait for it.
/// Oldest sale first (at most 500).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_undelivered(db: &Db, seller: &UserId) -> sqlx::Result<Vec<Ticket>> {
    let sql = select("WHERE sold_by = $1 AND file_key IS NULL ORDER BY sold_at, id LIMIT 500");
    on_db!(db, |pool| sqlx::query_as::<_, Ticket>(&sql)
        .bind(seller)
        .fetch_all(pool)
        .await)
}

/// Folds the titles of at most `limit` tickets written before `title_folded` existed (NULL
/// there) whose ids come after `after`, in one statement; answers the last id it read and how
/// many rows, or `None` when there was none left. A row whose title changed between the read
/// and the write is left as it is: the write that changed it folded it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn fold_unfolded_titles(
    db: &Db,
    after: &str,
    limit: i64,
) -> sqlx::Result<Option<(String, usize)>> {
    let rows: Vec<(String, String)> = on_db!(db, |pool| sqlx::query_as(UNFOLDED)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    let Some((last, _)) = rows.last() else {
        return Ok(None);
    };
    let last = last.clone();
    let sql = SET_FOLDED.replace("{rows}", &values_placeholders(db.backend(), rows.len(), 3));
    write_on_db!(db, |pool| {
        let mut query = sqlx::query(&sql);
        for (id, title) in &rows {
            query = query.bind(id).bind(fold(title)).bind(title);
        }
        query.execute(pool).await.map(drop)
    })?;
    Ok(Some((last, rows.len())))
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Writes a ticket changed by a transition over the row read at `read_version`; false when the
/// row changed meanwhile.
#[tracing::instrument(level = "debug", skip_all, fields(ticket.id = %ticket.id))]
pub async fn save(
    tx: &mut Tx,
    ticket: &Ticket,
    read_version: i64,
    now: Millis,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SAVE)
        .bind(&ticket.id)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(ticket.version)
        .bind(&ticket.order_id)
        .bind(ticket.sold)
        .bind(now)
        .bind(read_version)
        .bind(&ticket.user_id)
        .bind(&ticket.venue)
        .bind(ticket.starts_at)
        .bind(ticket.face_value)
        .bind(ticket.for_sale)
        .bind(&ticket.reserved_for)
        .bind(ticket.sales)
        .bind(fold(&ticket.title))
        .bind(&ticket.sold_by)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The ticket with this id, locked until `tx` ends (PostgreSQL `FOR UPDATE`; SQLite's
/// `BEGIN IMMEDIATE` serialises writers already).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock(tx: &mut Tx, id: &TicketId) -> sqlx::Result<Option<Ticket>> {
    match tx {
        Tx::Sqlite(tx, _) => {
            sqlx::query_as::<_, Ticket>(&select("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
        Tx::Postgres(tx) => {
            sqlx::query_as::<_, Ticket>(&select("WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
    }
}

/// The latest version of an order applied here.
pub async fn order_version(tx: &mut Tx, order_id: &OrderId) -> sqlx::Result<Option<i64>> {
    on_tx!(tx, |conn| sqlx::query_scalar(ORDER_VERSION)
        .bind(order_id)
        .fetch_optional(conn)
        .await)
}

/// Records that version `version` of an order was applied.
pub async fn set_order_version(tx: &mut Tx, order_id: &OrderId, version: i64) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(SET_ORDER_VERSION)
        .bind(order_id)
        .bind(version)
        .execute(conn)
        .await
        .map(drop))
}

/// Where the file of a ticket is stored, and its kind (`pdf`, `png`, `jpeg`); `None` without one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn file_of(db: &Db, id: &TicketId) -> sqlx::Result<Option<(String, String)>> {
    on_db!(db, |pool| sqlx::query_as(FILE)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// Points the ticket at its (new) file; answers the key of the file it replaces, if any.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_file(
    tx: &mut Tx,
    id: &TicketId,
    key: &str,
    kind: &str,
    size: i64,
    now: Millis,
) -> sqlx::Result<Option<String>> {
    let old: Option<Option<String>> = on_tx!(tx, |conn| sqlx::query_scalar(
        "SELECT file_key FROM tickets WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await)?;
    on_tx!(tx, |conn| sqlx::query(SET_FILE)
        .bind(id)
        .bind(key)
        .bind(kind)
        .bind(size)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(old.flatten().filter(|old| old != key))
}
