//! Upgrading an orders database of the previous version: every order keeps the terms its
//! ticket had and counts as confirmed, on SQLite and PostgreSQL.

use bt_contract::events::OrderStatus;
use bt_contract::{Cents, OrderId};
use bt_orders::domain::Reservation;
use bt_orders::store;
use bt_platform::db::DbOptions;
use bt_platform::{Db, Migrations, on_db};
use bt_test_support::{Backend, TestDb, backend_tests};

/// The first `n` migrations of the orders service.
fn first(n: usize) -> Migrations {
    bt_test_support::first_migrations(&bt_orders::MIGRATIONS, n)
}

async fn orders_keep_the_terms_of_their_ticket_and_count_as_confirmed(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = Db::connect(&test_db.url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&first(1)).await.unwrap();
    let sql = "INSERT INTO tickets (id, title, price, user_id, version) VALUES
            ('t1', 'Row A', 2050, 'seller', 3);
         INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, created_at, updated_at) VALUES
            ('o1', 'buyer', 't1', 'cancelled', 1800000000000, 1, 1, 2),
            ('o2', 'buyer', 't1', 'created', 1800000000000, 0, 3, 3);";
    on_db!(&db, |pool| sqlx::raw_sql(sql).execute(pool).await.map(drop)).unwrap();

    db.migrate(&bt_orders::MIGRATIONS).await.unwrap();

    for (id, status) in [("o1", OrderStatus::Cancelled), ("o2", OrderStatus::Created)] {
        let order = store::find_order(&db, &OrderId::new(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.status, status, "{id}");
        assert_eq!(
            (
                order.ticket.title.as_str(),
                order.ticket.price,
                order.ticket.version
            ),
            ("Row A", Cents::new(2050), 3),
            "{id}"
        );
        assert_eq!(order.reservation, Reservation::Confirmed, "{id}");
        assert_eq!((order.payment, order.cancel_reason), (None, None), "{id}");
    }
    // The partial unique index is back: a second active order for t1 is refused.
    let dup = "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version, ticket_title, ticket_price, ticket_version, reservation, created_at, updated_at) VALUES ('o3', 'b2', 't1', 'created', 1, 0, 'Row A', 2050, 3, 'pending', 4, 4)";
    let refused = on_db!(&db, |pool| sqlx::query(dup).execute(pool).await.map(drop));
    assert!(
        refused
            .as_ref()
            .is_err_and(bt_platform::db::is_unique_violation),
        "{refused:?}"
    );
}

backend_tests!(orders_keep_the_terms_of_their_ticket_and_count_as_confirmed);
