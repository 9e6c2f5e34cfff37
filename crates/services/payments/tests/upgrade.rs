//! Upgrading a payments database of an earlier version loses nothing, on SQLite and
//! PostgreSQL: attempts + payments become charges with their attempt numbers; the ledger of
//! payouts keeps every entry when a sale may have several reversals (partial refunds).

use bt_contract::events::OrderStatus;
use bt_contract::{Cents, Millis, OrderId};
use bt_payments::domain::ChargeState;
use bt_payments::ledger::CreditStatus;
use bt_payments::store;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Migrations, on_db};
use bt_test_support::{Backend, TestDb, backend_tests};

/// The first `n` migrations of the payments service.
fn first(n: usize) -> Migrations {
    bt_test_support::first_migrations(&bt_payments::MIGRATIONS, n)
}

async fn run(db: &Db, sql: &str) {
    on_db!(db, |pool| sqlx::raw_sql(sql).execute(pool).await.map(drop))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn payments_and_attempts_become_charges(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&first(2)).await.unwrap();
    // The previous version's data: o1 declined once then paid; o2 charged after it was
    // cancelled (being refunded) plus a webhook-only charge already refunded; o3 with an attempt
    // in flight at the upgrade, replicated before orders kept their expiry.
    run(
        &db,
        "INSERT INTO orders (id, user_id, price, status, version, expires_at) VALUES
            ('o1', 'u1', 1000, 'complete', 2, 1800000000000),
            ('o2', 'u1', 2500, 'cancelled', 1, 1800000000000),
            ('o3', 'u2', 700, 'created', 0, NULL);
         INSERT INTO payment_attempts (order_id, attempt, state, provider_id, failure, created_at, updated_at) VALUES
            ('o1', 1, 'failed', NULL, 'declined: Your card was declined.', 1, 1),
            ('o1', 2, 'succeeded', 'pi_2', NULL, 2, 2),
            ('o2', 1, 'failed', 'pi_3', 'order cancelled before the charge landed', 3, 3),
            ('o3', 1, 'in_flight', NULL, NULL, 4, 4);
         INSERT INTO payments (id, order_id, provider_id, amount, currency, status, created_at, updated_at) VALUES
            ('p1', 'o1', 'pi_2', 1000, 'usd', 'succeeded', 2, 2),
            ('p2', 'o2', 'pi_3', 2500, 'usd', 'refund_pending', 3, 3),
            ('p3', 'o2', 'pi_web', 2500, 'usd', 'refunded', 5, 5);",
    )
    .await;

    db.migrate(&bt_payments::MIGRATIONS).await.unwrap();

    let summary = |charges: Vec<bt_payments::domain::Charge>| -> Vec<(String, i64, ChargeState, Option<String>)> {
        charges
            .into_iter()
            .map(|c| (c.id.into_string(), c.attempt, c.state, c.provider_id))
            .collect()
    };
    let o1 = store::charges_of(&db, &OrderId::new("o1")).await.unwrap();
    assert_eq!(
        summary(o1.clone()),
        [
            ("attempt-o1-1".to_owned(), 1, ChargeState::Declined, None),
            (
                "p1".to_owned(),
                2,
                ChargeState::Succeeded,
                Some("pi_2".to_owned())
            ),
        ]
    );
    assert_eq!(o1[1].amount, Cents::new(1000));
    assert_eq!(
        summary(store::charges_of(&db, &OrderId::new("o2")).await.unwrap()),
        [
            (
                "p2".to_owned(),
                1,
                ChargeState::Refunding,
                Some("pi_3".to_owned())
            ),
            (
                "p3".to_owned(),
                2,
                ChargeState::Refunded,
                Some("pi_web".to_owned())
            ),
        ]
    );
    let o3 = store::charges_of(&db, &OrderId::new("o3")).await.unwrap();
    assert_eq!(o3.len(), 1);
    assert_eq!(
        o3[0].state,
        ChargeState::Declined,
        "an attempt of unknown outcome frees the order"
    );
    assert!(
        o3[0]
            .failure
            .as_deref()
            .unwrap()
            .contains("outcome unknown")
    );

    let paid = store::order(&db, &OrderId::new("o1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.status, OrderStatus::Complete);
    assert_eq!(paid.completed_by, Some("p1".into()));
    assert_eq!(
        (
            &paid.seller_id,
            &paid.title,
            &paid.ticket_id,
            paid.starts_at
        ),
        (&None, &None, &None, None),
        "orders of earlier versions have no seller on record (so no credit)"
    );
    assert!(
        store::all_credits(&db).await.unwrap().is_empty(),
        "nothing is credited for sales before the ledger"
    );
    let old = store::order(&db, &OrderId::new("o3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        old.expires_at,
        Millis::EPOCH,
        "long past any payment window"
    );
    // A new attempt never reuses an old idempotency key.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        store::next_attempt(&mut tx, &OrderId::new("o1"))
            .await
            .unwrap(),
        3
    );
}

async fn the_ledger_keeps_every_entry_when_sales_may_have_several_reversals(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&first(5)).await.unwrap();
    // The previous version's ledger: o1 paid out then refunded (credit + one reversal), o2
    // refunded before its payout (reversed), o3 pending; o1's charge refunded.
    let entry = |id: &str, order: &str, kind: &str, gross: i64, fee: i64, status: &str| {
        format!(
            "('{id}', 's1', '{order}', '{kind}', 'p-{order}', 't-{order}', 'Show', {gross}, {fee}, {}, 'usd', '{status}', 5, NULL, 0, NULL, 0, NULL, NULL, 1, 1)",
            gross - fee
        )
    };
    run(
        &db,
        &format!(
            "INSERT INTO charges (id, order_id, attempt, state, amount, currency, token, provider_id, failure, lease_until, created_at, updated_at) VALUES
                ('p-o1', 'o1', 1, 'refunded', 2000, 'usd', NULL, 'pi_1', NULL, 0, 1, 1);
             INSERT INTO seller_credits (id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until, failure, paid_at, created_at, updated_at) VALUES {}, {}, {}, {};",
            entry("c1", "o1", "credit", 2000, 100, "paid"),
            entry("r1", "o1", "reversal", -2000, -100, "available"),
            entry("c2", "o2", "credit", 1000, 50, "reversed"),
            entry("c3", "o3", "credit", 700, 35, "pending"),
        ),
    )
    .await;

    db.migrate(&bt_payments::MIGRATIONS).await.unwrap();

    let entries: Vec<(String, String, i64, i64, i64, CreditStatus)> = store::all_credits(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.id,
                e.order_id.into_string(),
                e.gross.get(),
                e.fee.get(),
                e.amount.get(),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (
                "c1".into(),
                "o1".into(),
                2000,
                100,
                1900,
                CreditStatus::Paid
            ),
            (
                "c2".into(),
                "o2".into(),
                1000,
                50,
                950,
                CreditStatus::Reversed
            ),
            (
                "c3".into(),
                "o3".into(),
                700,
                35,
                665,
                CreditStatus::Pending
            ),
            (
                "r1".into(),
                "o1".into(),
                -2000,
                -100,
                -1900,
                CreditStatus::Available
            ),
        ]
    );
    let charge = store::charges_of(&db, &OrderId::new("o1")).await.unwrap();
    assert_eq!(charge[0].amount_refunded, Cents::new(0));
    assert_eq!(charge[0].refunded_amount(), Cents::new(2000));
    // A second reversal of a sale is now possible; a second credit still is not.
    run(
        &db,
        &format!(
            "INSERT INTO seller_credits (id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until, failure, paid_at, created_at, updated_at) VALUES {}",
            entry("r3", "o3", "reversal", -100, -5, "pending")
        ),
    )
    .await;
    let second = on_db!(&db, |pool| {
        sqlx::raw_sql(&format!(
        "INSERT INTO seller_credits (id, seller_id, order_id, kind, payment_id, ticket_id, title, gross, fee, amount, currency, status, available_at, transfer_key, transfer_attempts, transfer_id, lease_until, failure, paid_at, created_at, updated_at) VALUES {}",
        entry("c3b", "o3", "credit", 700, 35, "pending")
    ))
    .execute(pool)
    .await
    .map(drop)
    });
    assert!(second.is_err(), "one credit per sale");
}

backend_tests!(
    payments_and_attempts_become_charges,
    the_ledger_keeps_every_entry_when_sales_may_have_several_reversals
);
