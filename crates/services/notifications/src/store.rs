//! The SQL of the notifications service: the replicas (`users`, `tickets`, `orders`), `alerts`,
//! `notifications` and the email outbox (`emails`).

use std::collections::HashMap;

use bt_contract::resources::{Notification, NotificationKind};
use bt_contract::search::Search;
use bt_contract::{AlertId, Cents, Millis, NotificationId, OrderId, TicketId, UserId};
use bt_platform::db::{Backend, anonymous_placeholders, list_placeholders};
use bt_platform::{Db, Tx, on_db, on_tx, write_on_db};

use crate::domain::{Alert, EmailStatus, Notice, OrderView, TicketView};

const UPSERT_USER: &str = "INSERT INTO users (id, email, updated_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at";

const TICKET: &str = "SELECT id, version, title, price, user_id, order_id, for_sale, starts_at, venue FROM tickets WHERE id = $1";
const UPSERT_TICKET: &str = "INSERT INTO tickets (id, version, title, price, user_id, order_id, for_sale, starts_at, venue) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title, price = excluded.price, user_id = excluded.user_id, order_id = excluded.order_id, for_sale = excluded.for_sale, starts_at = excluded.starts_at, venue = excluded.venue";

const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, ticket_id, title, price, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const ORDER: &str = "SELECT id, user_id, ticket_id, title, price FROM orders WHERE id = $1";

const ALERT_COLUMNS: &str = "id, user_id, q, max_price, created_at";
const INSERT_ALERT: &str = "INSERT INTO alerts (id, user_id, q, q_lower, max_price, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
const COUNT_ALERTS: &str = "SELECT COUNT(*) FROM alerts WHERE user_id = $1";
const DELETE_ALERT: &str = "DELETE FROM alerts WHERE id = $1 AND user_id = $2";
const HOLDERS: &str = "SELECT user_id FROM ticket_holds WHERE ticket_id = $1";
const RECORD_HOLD: &str = "INSERT INTO ticket_holds (ticket_id, user_id, held_at) VALUES ($1, $2, $3) ON CONFLICT (ticket_id, user_id) DO NOTHING";
const LOCK_USER_POSTGRES: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";
const LOCK_USERS_POSTGRES: &str = "SELECT pg_advisory_xact_lock(hashtext(id)) FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS users";

const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (id, user_id, kind, title, body, link, event_id, created_at, visible_at, read_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL) ON CONFLICT (event_id, user_id, kind) DO NOTHING";
const UNREAD: &str = "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL AND visible_at <= $2";

const INSERT_EMAIL: &str = "INSERT INTO emails (id, user_id, kind, subject, body, event_id, status, attempts, next_attempt_at, lease_until, last_error, sent_to, created_at, sent_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $8, 0, NULL, NULL, $7, NULL) ON CONFLICT (event_id, user_id, kind) DO NOTHING";
const CLAIM_EMAILS_SQLITE: &str = "UPDATE emails SET lease_until = $1 WHERE id IN (SELECT id FROM emails WHERE status = 'pending' AND next_attempt_at <= $2 AND lease_until <= $2 ORDER BY id LIMIT $3) RETURNING id, user_id, kind, subject, body, attempts, (SELECT email FROM users WHERE users.id = emails.user_id) AS address";
const CLAIM_EMAILS_POSTGRES: &str = "UPDATE emails SET lease_until = $1 WHERE id IN (SELECT id FROM emails WHERE status = 'pending' AND next_attempt_at <= $2 AND lease_until <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, user_id, kind, subject, body, attempts, (SELECT email FROM users WHERE users.id = emails.user_id) AS address";
const EMAIL_SENT: &str = "UPDATE emails SET status = 'sent', sent_to = $3, sent_at = $4, attempts = attempts + 1, lease_until = 0, last_error = NULL WHERE id = $1 AND lease_until = $2 AND status = 'pending'";
const EMAIL_RETRY: &str = "UPDATE emails SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4, lease_until = 0 WHERE id = $1 AND lease_until = $2 AND status = 'pending'";
const EMAIL_WAIT: &str = "UPDATE emails SET next_attempt_at = $3, last_error = $4, lease_until = 0 WHERE id = $1 AND lease_until = $2 AND status = 'pending'";
const EMAIL_FAILED: &str = "UPDATE emails SET status = 'failed', attempts = attempts + 1, last_error = $3, lease_until = 0 WHERE id = $1 AND lease_until = $2 AND status = 'pending'";
// When the next pending email is due: the first entry of the index `emails_next_due` (migration
// 0003), whose expression each backend writes its own way, as the statement must.
const NEXT_EMAIL_DUE_SQLITE: &str = "SELECT max(lease_until, next_attempt_at) FROM emails WHERE status = 'pending' ORDER BY max(lease_until, next_attempt_at) LIMIT 1";
const NEXT_EMAIL_DUE_POSTGRES: &str = "SELECT GREATEST(lease_until, next_attempt_at) FROM emails WHERE status = 'pending' ORDER BY GREATEST(lease_until, next_attempt_at) LIMIT 1";
const EMAILS_PENDING: &str = "SELECT COUNT(*) FROM emails WHERE status = 'pending'";
const EMAIL_STATUS: &str =
    "SELECT status FROM emails WHERE event_id = $1 AND user_id = $2 AND kind = $3";

// Users.

/// Records (or corrects) a user's address.
pub async fn upsert_user(tx: &mut Tx, id: &UserId, email: &str, now: Millis) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(UPSERT_USER)
        .bind(id)
        .bind(email)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

// Tickets.

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: TicketId,
    version: i64,
    title: String,
    price: Cents,
    user_id: UserId,
    order_id: Option<OrderId>,
    for_sale: bool,
    starts_at: Option<Millis>,
    venue: Option<String>,
}

impl From<TicketRow> for TicketView {
    fn from(row: TicketRow) -> Self {
        Self {
            id: row.id,
            version: row.version,
            title: row.title,
            price: row.price,
            owner: row.user_id,
            order_id: row.order_id,
            for_sale: row.for_sale,
            starts_at: row.starts_at,
            venue: row.venue,
        }
    }
}

/// The replica of a ticket.
pub async fn ticket_in(tx: &mut Tx, id: &TicketId) -> sqlx::Result<Option<TicketView>> {
    let row = on_tx!(tx, |conn| sqlx::query_as::<_, TicketRow>(TICKET)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(TicketView::from))
}

/// Writes a ticket's replica (new, or its next version).
pub async fn save_ticket(tx: &mut Tx, ticket: &TicketView) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(UPSERT_TICKET)
        .bind(&ticket.id)
        .bind(ticket.version)
        .bind(&ticket.title)
        .bind(ticket.price)
        .bind(&ticket.owner)
        .bind(&ticket.order_id)
        .bind(ticket.for_sale)
        .bind(ticket.starts_at)
        .bind(&ticket.venue)
        .execute(conn)
        .await
        .map(drop))
}

// Orders.

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: OrderId,
    user_id: UserId,
    ticket_id: TicketId,
    title: Option<String>,
    price: Cents,
}

/// Records an order as placed; false when it was recorded already.
pub async fn insert_order(tx: &mut Tx, order: &OrderView, now: Millis) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(INSERT_ORDER)
        .bind(&order.id)
        .bind(&order.buyer)
        .bind(&order.ticket_id)
        .bind(&order.title)
        .bind(order.price)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// An order as placed, if `order.created` reached the service.
pub async fn order_in(tx: &mut Tx, id: &OrderId) -> sqlx::Result<Option<OrderView>> {
    let row = on_tx!(tx, |conn| sqlx::query_as::<_, OrderRow>(ORDER)
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(|row| OrderView {
        id: row.id,
        buyer: row.user_id,
        ticket_id: row.ticket_id,
        title: row.title,
        price: row.price,
    }))
}

// Alerts.

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: AlertId,
    user_id: UserId,
    q: String,
    max_price: Option<Cents>,
    created_at: Millis,
}

impl TryFrom<AlertRow> for Alert {
    type Error = sqlx::Error;

    fn try_from(row: AlertRow) -> Result<Self, Self::Error> {
        let search = Search::parse(&row.q).map_err(|err| {
            sqlx::Error::Decode(format!("alert {}: stored search {err}", row.id.as_str()).into())
        })?;
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            search,
            max_price: row.max_price,
            created_at: row.created_at,
        })
    }
}

fn alerts(rows: Vec<AlertRow>) -> sqlx::Result<Vec<Alert>> {
    rows.into_iter().map(Alert::try_from).collect()
}

/// Serialises the alert changes of one user (PostgreSQL; SQLite transactions are serial).
pub async fn lock_user(tx: &mut Tx, user: &UserId) -> sqlx::Result<()> {
    match tx {
        Tx::Sqlite(..) => Ok(()),
        Tx::Postgres(tx) => sqlx::query(LOCK_USER_POSTGRES)
            .bind(user)
            .execute(&mut **tx)
            .await
            .map(drop),
    }
}

/// Serialises what concerns each of `users` (their alert emails in the hour) with every other
/// transaction that locks one of them (PostgreSQL; SQLite transactions are serial). In the
/// order of the ids, so that two transactions locking the same users never wait for each
/// other in a cycle.
pub async fn lock_users(tx: &mut Tx, users: &[UserId]) -> sqlx::Result<()> {
    match tx {
        Tx::Sqlite(..) => Ok(()),
        Tx::Postgres(tx) => {
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            sqlx::query(LOCK_USERS_POSTGRES)
                .bind(ids)
                .execute(&mut **tx)
                .await
                .map(drop)
        }
    }
}

/// The users a ticket alert's hold of ticket `id` was given to so far.
pub async fn holders_of(tx: &mut Tx, id: &TicketId) -> sqlx::Result<Vec<UserId>> {
    on_tx!(tx, |conn| sqlx::query_scalar(HOLDERS)
        .bind(id)
        .fetch_all(conn)
        .await)
}

/// Records that ticket `id` was held for `user` at `now`.
pub async fn record_hold(
    tx: &mut Tx,
    id: &TicketId,
    user: &UserId,
    now: Millis,
) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(RECORD_HOLD)
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(conn)
        .await
        .map(drop))
}

/// How many alerts a user has.
pub async fn count_alerts(tx: &mut Tx, user: &UserId) -> sqlx::Result<i64> {
    on_tx!(tx, |conn| sqlx::query_scalar(COUNT_ALERTS)
        .bind(user)
        .fetch_one(conn)
        .await)
}

/// Saves a new alert; false when the user has one for the same search and price limit.
pub async fn insert_alert(tx: &mut Tx, alert: &Alert) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(INSERT_ALERT)
        .bind(&alert.id)
        .bind(&alert.user_id)
        .bind(alert.search.as_str())
        .bind(alert.search.lower())
        .bind(alert.max_price)
        .bind(alert.created_at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// A user's alerts, newest first.
pub async fn alerts_of(db: &Db, user: &UserId) -> sqlx::Result<Vec<Alert>> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE user_id = $1 ORDER BY id DESC");
    let rows = on_db!(db, |pool| sqlx::query_as::<_, AlertRow>(&sql)
        .bind(user)
        .fetch_all(pool)
        .await)?;
    alerts(rows)
}

/// Deletes one of a user's alerts; false when they have no such alert.
pub async fn delete_alert(db: &Db, id: &AlertId, user: &UserId) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(DELETE_ALERT)
        .bind(id)
        .bind(user)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The alerts a ticket at `price` titled `title` may match (its price limit allows it and its
/// search occurs in the title), in the order they were made. The title test is repeated in
/// Rust ([`Alert::matches`]), which is the rule; SQL only narrows the rows read.
pub async fn alerts_for(tx: &mut Tx, price: Cents) -> sqlx::Result<Vec<Alert>> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE max_price IS NULL OR max_price >= $1 ORDER BY id"
    );
    let rows = on_tx!(tx, |conn| sqlx::query_as::<_, AlertRow>(&sql)
        .bind(price)
        .fetch_all(conn)
        .await)?;
    alerts(rows)
}

// Notifications.

/// Adds a notification, shown from `visible_at`; false when this event told this user this
/// already.
pub async fn insert_notification(
    tx: &mut Tx,
    id: &NotificationId,
    notice: &Notice,
    event_id: &str,
    now: Millis,
    visible_at: Millis,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(INSERT_NOTIFICATION)
        .bind(id)
        .bind(&notice.recipient)
        .bind(notice.kind)
        .bind(&notice.title)
        .bind(&notice.body)
        .bind(&notice.link)
        .bind(event_id)
        .bind(now)
        .bind(visible_at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: NotificationId,
    kind: NotificationKind,
    title: String,
    body: String,
    link: Option<String>,
    created_at: Millis,
    read_at: Option<Millis>,
}

/// A user's notifications shown at `now`, newest first, at most `limit`, older than `before`
/// when given.
pub async fn notifications_of(
    db: &Db,
    user: &UserId,
    limit: i64,
    before: Option<&NotificationId>,
    now: Millis,
) -> sqlx::Result<Vec<Notification>> {
    let filter = if before.is_some() { "AND id < $4" } else { "" };
    let sql = format!(
        "SELECT id, kind, title, body, link, created_at, read_at FROM notifications WHERE user_id = $1 AND visible_at <= $3 {filter} ORDER BY id DESC LIMIT $2"
    );
    let rows = on_db!(db, |pool| {
        let mut query = sqlx::query_as::<_, NotificationRow>(&sql)
            .bind(user)
            .bind(limit)
            .bind(now);
        if let Some(before) = before {
            query = query.bind(before);
        }
        query.fetch_all(pool).await
    })?;
    Ok(rows
        .into_iter()
        .map(|row| Notification {
            id: row.id,
            kind: row.kind,
            title: row.title,
            body: row.body,
            link: row.link,
            created_at: row.created_at,
            read: row.read_at.is_some(),
        })
        .collect())
}

/// How many of a user's notifications shown at `now` are unread.
pub async fn unread(db: &Db, user: &UserId, now: Millis) -> sqlx::Result<i64> {
    on_db!(db, |pool| sqlx::query_scalar(UNREAD)
        .bind(user)
        .bind(now)
        .fetch_one(pool)
        .await)
}

/// Marks a user's notifications shown at `now` read: those of `ids`, or all of them.
pub async fn mark_read(
    db: &Db,
    user: &UserId,
    ids: Option<&[NotificationId]>,
    now: Millis,
) -> sqlx::Result<u64> {
    let mut sql = String::from(
        "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL AND visible_at <= $2",
    );
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(0);
        }
        sql.push_str(&format!(" AND id IN ({})", list_placeholders(ids.len(), 3)));
    }
    write_on_db!(db, |pool| {
        let mut query = sqlx::query(&sql).bind(user).bind(now);
        for id in ids.unwrap_or_default() {
            query = query.bind(id);
        }
        query.execute(pool).await.map(|r| r.rows_affected())
    })
}

// The email outbox.

/// Queues an email, to send from `send_at`; false when this event queued it for this user
/// already.
pub async fn insert_email(
    tx: &mut Tx,
    email: &OutgoingEmail,
    event_id: &str,
    now: Millis,
    send_at: Millis,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(INSERT_EMAIL)
        .bind(&email.id)
        .bind(&email.user_id)
        .bind(email.kind)
        .bind(&email.subject)
        .bind(&email.body)
        .bind(event_id)
        .bind(now)
        .bind(send_at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Users per query of [`alert_emails_since`] (well under either backend's limit of bound
/// values).
const USERS_PER_COUNT: usize = 500;

/// Alert emails queued since `since` for each of `users` (the hourly limit): one grouped count
/// per 500 users, not one query per subscriber. Users without any are absent (zero).
pub async fn alert_emails_since(
    tx: &mut Tx,
    users: &[UserId],
    since: Millis,
) -> sqlx::Result<HashMap<UserId, i64>> {
    let mut counts = HashMap::new();
    for chunk in users.chunks(USERS_PER_COUNT) {
        // Anonymous on SQLite (`db::values_placeholders` says why): 501 parameters.
        let (since_at, users_in) = match tx.backend() {
            Backend::Sqlite => ("?", anonymous_placeholders(chunk.len())),
            Backend::Postgres => ("$1", list_placeholders(chunk.len(), 2)),
        };
        let sql = format!(
            "SELECT user_id, COUNT(*) FROM emails WHERE kind = 'ticket_alert' AND created_at >= {since_at} AND user_id IN ({users_in}) GROUP BY user_id"
        );
        let rows: Vec<(UserId, i64)> = on_tx!(tx, |conn| {
            let mut query = sqlx::query_as(&sql).bind(since);
            for user in chunk {
                query = query.bind(user);
            }
            query.fetch_all(conn).await
        })?;
        counts.extend(rows);
    }
    Ok(counts)
}

/// An email of the outbox, as the worker sends it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutgoingEmail {
    pub id: String,
    pub user_id: UserId,
    pub kind: NotificationKind,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// Failed tries so far.
    pub attempts: i64,
    /// The recipient's address, read with the claim (`None` until `user.created` arrived);
    /// never written by [`insert_email`].
    pub address: Option<String>,
}

/// Claims up to `limit` due emails until `lease_until` (no other replica takes them meanwhile),
/// oldest first.
pub async fn claim_emails(
    db: &Db,
    now: Millis,
    lease_until: Millis,
    limit: i64,
) -> sqlx::Result<Vec<OutgoingEmail>> {
    let mut tx = db.begin().await?;
    let sql = match &tx {
        Tx::Sqlite(..) => CLAIM_EMAILS_SQLITE,
        Tx::Postgres(_) => CLAIM_EMAILS_POSTGRES,
    };
    let mut rows = on_tx!(&mut tx, |conn| sqlx::query_as::<_, OutgoingEmail>(sql)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(conn)
        .await)?;
    tx.commit().await?;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Records an email sent to `to` under the lease `lease`; false when the lease was lost.
pub async fn email_sent(
    db: &Db,
    id: &str,
    lease: Millis,
    to: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(EMAIL_SENT)
        .bind(id)
        .bind(lease)
        .bind(to)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Records a failed try: the email is tried again at `next_attempt_at`.
pub async fn email_retry(
    db: &Db,
    id: &str,
    lease: Millis,
    next_attempt_at: Millis,
    error: &str,
) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(EMAIL_RETRY)
        .bind(id)
        .bind(lease)
        .bind(next_attempt_at)
        .bind(error)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Puts an email back without counting a try (its recipient's address is not known yet).
pub async fn email_wait(
    db: &Db,
    id: &str,
    lease: Millis,
    next_attempt_at: Millis,
    reason: &str,
) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(EMAIL_WAIT)
        .bind(id)
        .bind(lease)
        .bind(next_attempt_at)
        .bind(reason)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Records an email refused for good.
pub async fn email_failed(db: &Db, id: &str, lease: Millis, error: &str) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(EMAIL_FAILED)
        .bind(id)
        .bind(lease)
        .bind(error)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// When the next pending email is due: its retry time or, if later, the end of its lease. The
/// worker asks after every email it queues or tries, so the answer comes from one entry of an
/// index, however many emails wait for a mail server that is down.
pub async fn next_email_due(db: &Db) -> sqlx::Result<Option<Millis>> {
    let sql = next_email_due_sql(db.backend());
    on_db!(db, |pool| sqlx::query_scalar(sql)
        .fetch_optional(pool)
        .await)
}

/// The statement of [`next_email_due`] on `backend` (public for the test of its plan).
pub fn next_email_due_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => NEXT_EMAIL_DUE_SQLITE,
        Backend::Postgres => NEXT_EMAIL_DUE_POSTGRES,
    }
}

/// Emails not yet sent.
pub async fn pending_emails(db: &Db) -> sqlx::Result<i64> {
    on_db!(db, |pool| sqlx::query_scalar(EMAILS_PENDING)
        .fetch_one(pool)
        .await)
}

/// Where the email of `kind` that event `event_id` queued for `user` stands (tests, support).
pub async fn email_status(
    db: &Db,
    event_id: &str,
    user: &UserId,
    kind: NotificationKind,
) -> sqlx::Result<Option<EmailStatus>> {
    on_db!(db, |pool| sqlx::query_scalar(EMAIL_STATUS)
        .bind(event_id)
        .bind(user)
        .bind(kind)
        .fetch_optional(pool)
        .await)
}

// Retention (see [`crate::retention`]).

const DELETE_OLD_NOTIFICATIONS: &str = "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE created_at < $1 LIMIT $2)";
const DELETE_OLD_EMAILS: &str = "DELETE FROM emails WHERE id IN (SELECT id FROM emails WHERE status <> 'pending' AND created_at < $1 LIMIT $2)";

/// Deletes up to `limit` notifications created before `before`; how many went.
pub async fn delete_old_notifications(db: &Db, before: Millis, limit: i64) -> sqlx::Result<u64> {
    delete_old(db, DELETE_OLD_NOTIFICATIONS, before, limit).await
}

/// Deletes up to `limit` sent or failed emails created before `before` (never a pending one);
/// how many went.
pub async fn delete_old_emails(db: &Db, before: Millis, limit: i64) -> sqlx::Result<u64> {
    delete_old(db, DELETE_OLD_EMAILS, before, limit).await
}

/// Runs one of the retention deletes (`$1` before, `$2` limit); how many rows went.
async fn delete_old(db: &Db, sql: &str, before: Millis, limit: i64) -> sqlx::Result<u64> {
    write_on_db!(db, |pool| sqlx::query(sql)
        .bind(before)
        .bind(limit)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}
