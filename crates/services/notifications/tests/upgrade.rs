//! Upgrading a notifications database of an earlier version keeps every notification, read or
//! not, on SQLite and PostgreSQL, and then takes the kinds added since (`payment_refunded`).

use bt_contract::resources::NotificationKind;
use bt_contract::{Millis, UserId};
use bt_platform::db::DbOptions;
use bt_platform::{Db, on_db};
use bt_test_support::{Backend, TestDb, backend_tests, first_migrations};

async fn run(db: &Db, sql: &str) -> sqlx::Result<()> {
    on_db!(db, |pool| sqlx::raw_sql(sql).execute(pool).await.map(drop))
}

async fn notifications_are_kept_and_refund_notices_can_be_added(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&first_migrations(&bt_notifications::MIGRATIONS, 3))
        .await
        .unwrap();
    let insert = |id: &str, kind: &str, read_at: &str| {
        format!(
            "INSERT INTO notifications (id, user_id, kind, title, body, link, event_id, created_at, visible_at, read_at) VALUES ('{id}', 'u1', '{kind}', 'Title {id}', 'Body', '/orders/o1', 'e-{id}', 1, 1, {read_at});"
        )
    };
    run(
        &db,
        &(insert("n1", "order_receipt", "5") + &insert("n2", "ticket_alert", "NULL")),
    )
    .await
    .unwrap();
    assert!(
        run(&db, &insert("n0", "payment_refunded", "NULL"))
            .await
            .is_err(),
        "not a kind before the upgrade"
    );

    db.migrate(&bt_notifications::MIGRATIONS).await.unwrap();

    run(&db, &insert("n3", "payment_refunded", "NULL"))
        .await
        .unwrap();
    assert!(run(&db, &insert("n4", "nonsense", "NULL")).await.is_err());
    let shown =
        bt_notifications::store::notifications_of(&db, &UserId::new("u1"), 10, None, Millis::now())
            .await
            .unwrap();
    let seen: Vec<(String, NotificationKind, String, bool)> = shown
        .into_iter()
        .map(|n| (n.id.to_string(), n.kind, n.title, n.read))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "n3".into(),
                NotificationKind::PaymentRefunded,
                "Title n3".into(),
                false
            ),
            (
                "n2".into(),
                NotificationKind::TicketAlert,
                "Title n2".into(),
                false
            ),
            (
                "n1".into(),
                NotificationKind::OrderReceipt,
                "Title n1".into(),
                true
            ),
        ]
    );
    // The same event cannot tell the same user the same thing twice.
    assert!(
        run(
            &db,
            &insert("n5", "payment_refunded", "NULL").replace("'e-n5'", "'e-n3'")
        )
        .await
        .is_err()
    );
}

backend_tests!(notifications_are_kept_and_refund_notices_can_be_added);
