//! The SQL of the payments service: its replica of orders, charges, handled webhook events, and
//! the sellers' ledger and payout accounts. Rows are decoded into the domain types; an unknown
//! state or a bad timestamp is an error.

use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::{Cents, Millis, OrderId, PaymentId, UserId};
use bt_platform::db::is_unique_violation;
use bt_platform::{Db, Snapshot, Tx, on_db, on_snapshot, on_tx, write_on_db};

use crate::domain::{Charge, ChargeState, PayableOrder};
use crate::ledger::{AccountStatus, Balance, Credit, CreditStatus, EntryKind, Sums, Totals};

const ORDER_COLUMNS: &str = "id, user_id, price, status, version, expires_at, cancel_reason, completed_by, ticket_id, title, seller_id, starts_at";
const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, price, status, version, expires_at, cancel_reason, completed_by, ticket_id, title, seller_id, starts_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const UPDATE_ORDER: &str = "UPDATE orders SET status = $2, version = $3, cancel_reason = $4, completed_by = $5 WHERE id = $1 AND version = $3 - 1";

const CHARGE_COLUMNS: &str = "id, order_id, attempt, state, amount, currency, token, provider_id, failure, lease_until, amount_refunded, created_at, updated_at";
const INSERT_CHARGE: &str = "INSERT INTO charges (id, order_id, attempt, state, amount, currency, token, provider_id, failure, lease_until, amount_refunded, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const SAVE_CHARGE: &str = "UPDATE charges SET state = $2, token = $3, provider_id = $4, failure = $5, lease_until = $6, amount_refunded = $7, updated_at = $8 WHERE id = $1 AND state = $9 AND amount_refunded <= $7";
const NEXT_ATTEMPT: &str = "SELECT COALESCE(MAX(attempt), 0) + 1 FROM charges WHERE order_id = $1";
const ACTIVE_STATES: &str = "('started', 'authorized', 'capturing', 'succeeded', 'capture_failed')";
const RENEW_LEASE: &str =
    "UPDATE charges SET lease_until = $2 WHERE id = $1 AND state = 'started' AND lease_until < $2";
const TAKE_LEASE: &str = "UPDATE charges SET lease_until = $3 WHERE id = $1 AND state = 'started' AND lease_until = $2 AND lease_until <= $4";
const RELEASE_LEASE: &str =
    "UPDATE charges SET lease_until = $2 WHERE id = $1 AND state = 'started'";
const WEBHOOK_SEEN: &str = "INSERT INTO webhook_events (id, type, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";

fn select_orders(filter: &str) -> String {
    format!("SELECT {ORDER_COLUMNS} FROM orders {filter}")
}

fn select_charges(filter: &str) -> String {
    format!("SELECT {CHARGE_COLUMNS} FROM charges {filter}")
}

/// The replicated order with this id.
pub async fn order(db: &Db, id: &OrderId) -> sqlx::Result<Option<PayableOrder>> {
    let sql = select_orders("WHERE id = $1");
    on_db!(db, |pool| sqlx::query_as::<_, PayableOrder>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The replicated order with this id, read inside `tx`.
pub async fn order_in(tx: &mut Tx, id: &OrderId) -> sqlx::Result<Option<PayableOrder>> {
    let sql = select_orders("WHERE id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, PayableOrder>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The order, locked until `tx` ends (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`
/// serialises writers already): the recording of a charge and the order's events are
/// serialised per order, so one always sees the other.
pub async fn lock_order(tx: &mut Tx, id: &OrderId) -> sqlx::Result<Option<PayableOrder>> {
    match tx {
        Tx::Sqlite(tx, _) => {
            sqlx::query_as::<_, PayableOrder>(&select_orders("WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
        Tx::Postgres(tx) => {
            sqlx::query_as::<_, PayableOrder>(&select_orders("WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
        }
    }
}

pub async fn insert_order(tx: &mut Tx, order: &PayableOrder) -> sqlx::Result<()> {
    on_tx!(tx, |conn| sqlx::query(INSERT_ORDER)
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(order.price)
        .bind(order.status)
        .bind(order.version)
        .bind(order.expires_at)
        .bind(order.cancel_reason)
        .bind(&order.completed_by)
        .bind(&order.ticket_id)
        .bind(&order.title)
        .bind(&order.seller_id)
        .bind(order.starts_at)
        .execute(conn)
        .await
        .map(drop))
}

/// Applies version `version` of an order on top of the previous one.
pub async fn update_order(
    tx: &mut Tx,
    id: &OrderId,
    status: OrderStatus,
    version: i64,
    cancel_reason: Option<CancelReason>,
    completed_by: Option<&PaymentId>,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(UPDATE_ORDER)
        .bind(id)
        .bind(status)
        .bind(version)
        .bind(cancel_reason)
        .bind(completed_by)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The charge with this id.
pub async fn charge(db: &Db, id: &PaymentId) -> sqlx::Result<Option<Charge>> {
    let sql = select_charges("WHERE id = $1");
    on_db!(db, |pool| sqlx::query_as::<_, Charge>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// The charge with this id, read inside `tx` (after its order was locked).
pub async fn charge_in(tx: &mut Tx, id: &PaymentId) -> sqlx::Result<Option<Charge>> {
    let sql = select_charges("WHERE id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, Charge>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The charge of an order that holds or may hold money, if any.
pub async fn active_charge(tx: &mut Tx, order_id: &OrderId) -> sqlx::Result<Option<Charge>> {
    let sql = select_charges(&format!("WHERE order_id = $1 AND state IN {ACTIVE_STATES}"));
    on_tx!(tx, |conn| sqlx::query_as::<_, Charge>(&sql)
        .bind(order_id)
        .fetch_optional(conn)
        .await)
}

/// Every charge of an order, oldest first, inside `tx`.
pub async fn charges_of_order(tx: &mut Tx, order_id: &OrderId) -> sqlx::Result<Vec<Charge>> {
    let sql = select_charges("WHERE order_id = $1 ORDER BY attempt");
    on_tx!(tx, |conn| sqlx::query_as::<_, Charge>(&sql)
        .bind(order_id)
        .fetch_all(conn)
        .await)
}

/// Every charge of an order, oldest first (for tests and support).
pub async fn charges_of(db: &Db, order_id: &OrderId) -> sqlx::Result<Vec<Charge>> {
    let sql = select_charges("WHERE order_id = $1 ORDER BY attempt");
    on_db!(db, |pool| sqlx::query_as::<_, Charge>(&sql)
        .bind(order_id)
        .fetch_all(pool)
        .await)
}

/// The charge with this provider id, inside `tx`.
pub async fn charge_by_provider(tx: &mut Tx, provider_id: &str) -> sqlx::Result<Option<Charge>> {
    let sql = select_charges("WHERE provider_id = $1");
    on_tx!(tx, |conn| sqlx::query_as::<_, Charge>(&sql)
        .bind(provider_id)
        .fetch_optional(conn)
        .await)
}

/// Attempt `attempt` of an order, inside `tx`.
pub async fn charge_by_attempt(
    tx: &mut Tx,
    order_id: &OrderId,
    attempt: i64,
) -> sqlx::Result<Option<Charge>> {
    let sql = select_charges("WHERE order_id = $1 AND attempt = $2");
    on_tx!(tx, |conn| sqlx::query_as::<_, Charge>(&sql)
        .bind(order_id)
        .bind(attempt)
        .fetch_optional(conn)
        .await)
}

/// The number of the next attempt to pay an order.
pub async fn next_attempt(tx: &mut Tx, order_id: &OrderId) -> sqlx::Result<i64> {
    on_tx!(tx, |conn| sqlx::query_scalar(NEXT_ATTEMPT)
        .bind(order_id)
        .fetch_one(conn)
        .await)
}

/// Stores a new charge; false when the order has an active charge already (the partial unique
/// index refuses a second one).
pub async fn insert_charge(tx: &mut Tx, charge: &Charge) -> sqlx::Result<bool> {
    let inserted = on_tx!(tx, |conn| sqlx::query(INSERT_CHARGE)
        .bind(&charge.id)
        .bind(&charge.order_id)
        .bind(charge.attempt)
        .bind(charge.state)
        .bind(charge.amount)
        .bind(&charge.currency)
        .bind(&charge.token)
        .bind(&charge.provider_id)
        .bind(&charge.failure)
        .bind(charge.lease_until)
        .bind(charge.amount_refunded)
        .bind(charge.created_at)
        .bind(charge.updated_at)
        .execute(conn)
        .await
        .map(drop));
    match inserted {
        Ok(()) => Ok(true),
        Err(err) if is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Writes a charge changed by a transition from `read_state`; false when it changed meanwhile:
/// another state, or more refunded than `charge` says (refunds only add up, so a charge read
/// before a partial refund was recorded is never written over it; its writer reads again).
pub async fn save_charge(
    tx: &mut Tx,
    charge: &Charge,
    read_state: ChargeState,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SAVE_CHARGE)
        .bind(&charge.id)
        .bind(charge.state)
        .bind(&charge.token)
        .bind(&charge.provider_id)
        .bind(&charge.failure)
        .bind(charge.lease_until)
        .bind(charge.amount_refunded)
        .bind(charge.updated_at)
        .bind(read_state)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Extends the lease of a started charge to `until` (while its provider call lasts).
pub async fn renew_lease(db: &Db, id: &PaymentId, until: Millis) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(RENEW_LEASE)
        .bind(id)
        .bind(until)
        .execute(pool)
        .await
        .map(drop))
}

/// Takes over a started charge whose lease (`seen`) has run out at `now`, leasing it until
/// `until`; false when someone else took it or it was answered meanwhile.
pub async fn take_lease(
    db: &Db,
    id: &PaymentId,
    seen: Millis,
    until: Millis,
    now: Millis,
) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(TAKE_LEASE)
        .bind(id)
        .bind(seen)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Ends the lease of a started charge at `now` (its provider call failed): the next pay
/// request, or the settlement worker, replays it at once.
pub async fn release_lease(db: &Db, id: &PaymentId, now: Millis) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(RELEASE_LEASE)
        .bind(id)
        .bind(now)
        .execute(pool)
        .await
        .map(drop))
}

/// Charges the provider still has work for (capture, release, refund), oldest change first.
pub async fn charges_to_settle(db: &Db, limit: i64) -> sqlx::Result<Vec<Charge>> {
    let sql = select_charges(
        "WHERE state IN ('capturing', 'voiding', 'refunding') ORDER BY updated_at, id LIMIT $1",
    );
    on_db!(db, |pool| sqlx::query_as::<_, Charge>(&sql)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Started charges nobody is working on at `now` that can be replayed (they still have their
/// token and no provider answer).
pub async fn abandoned_charges(db: &Db, now: Millis, limit: i64) -> sqlx::Result<Vec<Charge>> {
    let sql = select_charges(
        "WHERE state = 'started' AND lease_until <= $1 AND token IS NOT NULL AND provider_id IS NULL ORDER BY lease_until, id LIMIT $2",
    );
    on_db!(db, |pool| sqlx::query_as::<_, Charge>(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Records a webhook event id; false when it was handled before.
pub async fn webhook_seen(tx: &mut Tx, id: &str, kind: &str, now: Millis) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(WEBHOOK_SEEN)
        .bind(id)
        .bind(kind)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

// ---- The sellers' ledger ----

const CREDIT_COLUMNS: &str = "id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until, failure, paid_at, created_at, updated_at";
const INSERT_CREDIT: &str = "INSERT INTO seller_credits (id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until, failure, paid_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT DO NOTHING";
const SAVE_CREDIT: &str = "UPDATE seller_credits SET status = $2, transfer_key = $3, transfer_attempts = $4, transfer_id = $5, lease_until = $6, failure = $7, paid_at = $8, updated_at = $9 WHERE id = $1 AND status = $10";
const MATURE_CREDITS: &str = "UPDATE seller_credits SET status = 'available', updated_at = $1 WHERE status = 'pending' AND available_at <= $1";
const SELLERS_TO_PAY: &str = "SELECT DISTINCT c.seller_id FROM seller_credits c JOIN payout_accounts a ON a.user_id = c.seller_id WHERE c.status = 'available' AND c.seller_id > $1 AND (a.status = 'enabled' OR a.checked_at <= $2) ORDER BY c.seller_id LIMIT $3";
const TAKE_TRANSFER_LEASE: &str = "UPDATE seller_credits SET lease_until = $2 WHERE transfer_key = $1 AND status = 'transferring' AND lease_until <= $3";
const RELEASE_TRANSFER_LEASE: &str = "UPDATE seller_credits SET lease_until = $2 WHERE transfer_key = $1 AND status = 'transferring'";

const ACCOUNT_COLUMNS: &str =
    "user_id, provider_account_id, status, checked_at, created_at, updated_at";
const INSERT_ACCOUNT: &str = "INSERT INTO payout_accounts (user_id, provider_account_id, status, checked_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id) DO NOTHING";
const SET_ACCOUNT_STATUS: &str = "UPDATE payout_accounts SET status = $2, checked_at = $3, updated_at = $3 WHERE provider_account_id = $1";

fn select_credits(filter: &str) -> String {
    format!("SELECT {CREDIT_COLUMNS} FROM seller_credits {filter}")
}

/// ` FOR UPDATE` on PostgreSQL (SQLite's `BEGIN IMMEDIATE` serialises writers already).
fn for_update(tx: &Tx) -> &'static str {
    match tx {
        Tx::Sqlite(..) => "",
        Tx::Postgres(_) => " FOR UPDATE",
    }
}

/// Writes a new ledger entry; false when it is a credit and the order has one already (one
/// credit per order; a sale may have several reversals).
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %credit.order_id, kind = %credit.kind))]
pub async fn insert_credit(tx: &mut Tx, credit: &Credit) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(INSERT_CREDIT)
        .bind(&credit.id)
        .bind(&credit.seller_id)
        .bind(&credit.order_id)
        .bind(credit.kind)
        .bind(&credit.payment_id)
        .bind(&credit.ticket_id)
        .bind(&credit.title)
        .bind(credit.gross)
        .bind(credit.fee)
        .bind(credit.amount)
        .bind(&credit.currency)
        .bind(credit.status)
        .bind(credit.available_at)
        .bind(&credit.transfer_key)
        .bind(credit.transfer_attempts)
        .bind(&credit.transfer_id)
        .bind(credit.lease_until)
        .bind(&credit.failure)
        .bind(credit.paid_at)
        .bind(credit.created_at)
        .bind(credit.updated_at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Writes an entry changed by a transition from `read_status`; false when it changed meanwhile.
pub async fn save_credit(
    tx: &mut Tx,
    credit: &Credit,
    read_status: CreditStatus,
) -> sqlx::Result<bool> {
    on_tx!(tx, |conn| sqlx::query(SAVE_CREDIT)
        .bind(&credit.id)
        .bind(credit.status)
        .bind(&credit.transfer_key)
        .bind(credit.transfer_attempts)
        .bind(&credit.transfer_id)
        .bind(credit.lease_until)
        .bind(&credit.failure)
        .bind(credit.paid_at)
        .bind(credit.updated_at)
        .bind(read_status)
        .execute(conn)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The entry of `kind` of an order, locked until `tx` ends.
pub async fn lock_entry_of_order(
    tx: &mut Tx,
    order_id: &OrderId,
    kind: EntryKind,
) -> sqlx::Result<Option<Credit>> {
    let sql = select_credits(&format!(
        "WHERE order_id = $1 AND kind = $2{}",
        for_update(tx)
    ));
    on_tx!(tx, |conn| sqlx::query_as::<_, Credit>(&sql)
        .bind(order_id)
        .bind(kind)
        .fetch_optional(conn)
        .await)
}

/// The reversal entries of an order (oldest first), locked until `tx` ends.
pub async fn lock_reversals_of_order(tx: &mut Tx, order_id: &OrderId) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits(&format!(
        "WHERE order_id = $1 AND kind = 'reversal' ORDER BY id{}",
        for_update(tx)
    ));
    on_tx!(tx, |conn| sqlx::query_as::<_, Credit>(&sql)
        .bind(order_id)
        .fetch_all(conn)
        .await)
}

/// Up to `limit` entries of a seller, newest first (by id: UUID v7, the order they were made
/// in); with `before`, only the entries whose id is lower (made before it).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn credit_page(
    snapshot: &mut Snapshot,
    seller: &UserId,
    limit: i64,
    before: Option<&str>,
) -> sqlx::Result<Vec<Credit>> {
    let older = if before.is_some() { "AND id < $3 " } else { "" };
    let sql = select_credits(&format!(
        "WHERE seller_id = $1 {older}ORDER BY id DESC LIMIT $2"
    ));
    on_snapshot!(snapshot, |conn| {
        let mut query = sqlx::query_as::<_, Credit>(&sql).bind(seller).bind(limit);
        if let Some(before) = before {
            query = query.bind(before);
        }
        query.fetch_all(conn).await
    })
}

/// [`Balance::of`] and [`Totals::of`] over every entry of a seller as of `now`, summed by the
/// database (a seller's ledger is not read whole to show one page of it).
const SUMS_OF_SELLER: &str = "SELECT \
    CAST(COALESCE(SUM(CASE WHEN status = 'pending' AND available_at > $2 THEN amount ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status = 'available' OR (status = 'pending' AND available_at <= $2) THEN amount ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status IN ('transferring', 'paid') THEN amount ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status <> 'reversed' THEN gross ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status <> 'reversed' THEN fee ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status <> 'reversed' THEN amount ELSE 0 END), 0) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN status = 'reversed' THEN 1 ELSE 0 END), 0) AS BIGINT) \
    FROM seller_credits WHERE seller_id = $1";

/// The balance and totals of every entry of `seller` as of `now`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sums_of_seller(
    snapshot: &mut Snapshot,
    seller: &UserId,
    now: Millis,
) -> sqlx::Result<Sums> {
    type Row = (i64, i64, i64, i64, i64, i64, i64);
    let (pending, available, paid, price, fee, amount, reversed): Row =
        on_snapshot!(snapshot, |conn| sqlx::query_as::<_, Row>(SUMS_OF_SELLER)
            .bind(seller)
            .bind(now)
            .fetch_one(conn)
            .await)?;
    Ok(Sums {
        balance: Balance {
            pending: Cents::new(pending),
            available: Cents::new(available),
            paid: Cents::new(paid),
        },
        totals: Totals {
            price: Cents::new(price),
            fee: Cents::new(fee),
            amount: Cents::new(amount),
            reversed,
        },
    })
}

/// Every entry of an order (its credit, and its reversals if any).
pub async fn credits_of_order(db: &Db, order_id: &OrderId) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits("WHERE order_id = $1 ORDER BY created_at, id");
    on_db!(db, |pool| sqlx::query_as::<_, Credit>(&sql)
        .bind(order_id)
        .fetch_all(pool)
        .await)
}

/// Every entry of the ledger (for tests and audits).
pub async fn all_credits(db: &Db) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits("ORDER BY created_at, id");
    on_db!(db, |pool| sqlx::query_as::<_, Credit>(&sql)
        .fetch_all(pool)
        .await)
}

/// Pending entries whose time has come become available; how many did.
pub async fn mature_credits(db: &Db, now: Millis) -> sqlx::Result<u64> {
    write_on_db!(db, |pool| sqlx::query(MATURE_CREDITS)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// Sellers after `after` (in id order) with available entries and a payout account that is
/// enabled, or whose status was last asked at `recheck_before` or earlier.
pub async fn sellers_to_pay(
    db: &Db,
    after: &str,
    recheck_before: Millis,
    limit: i64,
) -> sqlx::Result<Vec<UserId>> {
    on_db!(db, |pool| sqlx::query_scalar::<_, UserId>(SELLERS_TO_PAY)
        .bind(after)
        .bind(recheck_before)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// A seller's available entries, oldest first, locked until `tx` ends: planning and claiming
/// their transfers is serialised per seller, also against a refund of one of them.
pub async fn lock_available_of(tx: &mut Tx, seller: &UserId) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits(&format!(
        "WHERE seller_id = $1 AND status = 'available' ORDER BY available_at, id{}",
        for_update(tx)
    ));
    on_tx!(tx, |conn| sqlx::query_as::<_, Credit>(&sql)
        .bind(seller)
        .fetch_all(conn)
        .await)
}

/// The entries of the transfer with key `key` (its batch), inside `tx`.
pub async fn batch_in(tx: &mut Tx, key: &str) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits(&format!(
        "WHERE transfer_key = $1 ORDER BY available_at, id{}",
        for_update(tx)
    ));
    on_tx!(tx, |conn| sqlx::query_as::<_, Credit>(&sql)
        .bind(key)
        .fetch_all(conn)
        .await)
}

/// Entries being transferred whose worker's lease ran out at `now` (it died, or the provider
/// was unreachable): their transfers are replayed with the same keys.
pub async fn abandoned_transfers(db: &Db, now: Millis, limit: i64) -> sqlx::Result<Vec<Credit>> {
    let sql = select_credits(
        "WHERE status = 'transferring' AND lease_until <= $1 ORDER BY transfer_key, available_at, id LIMIT $2",
    );
    on_db!(db, |pool| sqlx::query_as::<_, Credit>(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// Takes over the abandoned transfer `key` until `until`: the number of entries taken (0 when
/// another worker took it first).
pub async fn take_transfer_lease(
    db: &Db,
    key: &str,
    until: Millis,
    now: Millis,
) -> sqlx::Result<u64> {
    write_on_db!(db, |pool| sqlx::query(TAKE_TRANSFER_LEASE)
        .bind(key)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// Ends the lease of transfer `key` at `now` (the provider was unreachable): the next round
/// replays it.
pub async fn release_transfer_lease(db: &Db, key: &str, now: Millis) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(RELEASE_TRANSFER_LEASE)
        .bind(key)
        .bind(now)
        .execute(pool)
        .await
        .map(drop))
}

/// A seller's payout account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PayoutAccount {
    pub user_id: UserId,
    /// Stripe's `acct_...` (or the development provider's `acct_dev_...`).
    pub provider_account_id: String,
    pub status: AccountStatus,
    /// When the provider was last asked about it.
    pub checked_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The payout account of `user`.
pub async fn account(db: &Db, user: &UserId) -> sqlx::Result<Option<PayoutAccount>> {
    let sql = select_account();
    on_db!(db, |pool| sqlx::query_as::<_, PayoutAccount>(&sql)
        .bind(user)
        .fetch_optional(pool)
        .await)
}

/// [`account`] as `snapshot` sees it.
pub async fn account_in_snapshot(
    snapshot: &mut Snapshot,
    user: &UserId,
) -> sqlx::Result<Option<PayoutAccount>> {
    let sql = select_account();
    on_snapshot!(snapshot, |conn| sqlx::query_as::<_, PayoutAccount>(&sql)
        .bind(user)
        .fetch_optional(conn)
        .await)
}

/// A seller's payout account.
fn select_account() -> String {
    format!("SELECT {ACCOUNT_COLUMNS} FROM payout_accounts WHERE user_id = $1")
}

/// Stores the payout account of a seller unless the seller has one already (a concurrent
/// request stored it first: the same account, created with the same idempotency key).
pub async fn insert_account(
    db: &Db,
    user: &UserId,
    provider_account_id: &str,
    status: AccountStatus,
    now: Millis,
) -> sqlx::Result<()> {
    write_on_db!(db, |pool| sqlx::query(INSERT_ACCOUNT)
        .bind(user)
        .bind(provider_account_id)
        .bind(status)
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .map(drop))
}

/// Records what the provider says about account `provider_account_id` at `now`; false when no
/// seller has it.
pub async fn set_account_status(
    db: &Db,
    provider_account_id: &str,
    status: AccountStatus,
    now: Millis,
) -> sqlx::Result<bool> {
    write_on_db!(db, |pool| sqlx::query(SET_ACCOUNT_STATUS)
        .bind(provider_account_id)
        .bind(status)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}
