//! Upgrading a payments database of the previous version (attempts + payments) to charges
//! loses no payment and no attempt number, on SQLite and PostgreSQL.

use std::borrow::Cow;

use bt_contract::events::OrderStatus;
use bt_contract::{Cents, Millis, OrderId};
use bt_payments::domain::ChargeState;
use bt_payments::store;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Migrations, on_db};
use bt_test_support::{Backend, TestDb, backend_tests};
use sqlx::migrate::Migrator;

/// The first `n` migrations of the payments service.
fn first(n: usize) -> Migrations {
    let take = |m: &Migrator| Migrator {
        migrations: Cow::Owned(m.migrations[..n].to_vec()),
        ignore_missing: true,
        locking: m.locking,
        no_tx: m.no_tx,
    };
    Migrations {
        sqlite: take(&bt_payments::MIGRATIONS.sqlite),
        postgres: take(&bt_payments::MIGRATIONS.postgres),
    }
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

backend_tests!(payments_and_attempts_become_charges);
