//! Expiry timers: on time, durable across restarts, dropped for finished orders, never fired
//! twice by two replicas; on SQLite (in-process bus) and PostgreSQL (NATS).

use std::collections::HashMap;
use std::time::Duration;

use bt_contract::Cents;
use bt_contract::events::{
    ExpirationComplete, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    TicketRef,
};
use bt_platform::Runtime;
use bt_platform::db::DbOptions;
use bt_test_support::{
    Backend, EventProbe, TestBus, TestDb, backend_tests, bus_for, eventually, publish,
};
use chrono::{DateTime, Utc};

struct Instance {
    runtime: Runtime,
}

async fn start(db: &TestDb, bus: &TestBus) -> Instance {
    let runtime = Runtime::new(bus.bus.clone());
    bt_expiration::service(&db.url, &DbOptions::default(), &runtime)
        .await
        .expect("expiration service starts");
    Instance { runtime }
}

fn order_created(id: &str, expires_at: DateTime<Utc>) -> OrderCreated {
    OrderCreated {
        id: id.into(),
        version: 0,
        status: OrderStatus::Created,
        user_id: "buyer".into(),
        expires_at: expires_at.into(),
        ticket: OrderTicket {
            id: format!("ticket-{id}").into(),
            price: Cents::new(1000),
            title: Some("A ticket".into()),
            version: Some(0),
            seller_id: None,
            starts_at: None,
        },
    }
}

/// `ms` from now, to the millisecond: the precision of `expiresAt` on the wire (`Millis`). A
/// finer deadline would be truncated on the way in, and "never early" compared against a time
/// the service was never told (it failed once, 0.3 ms "early").
fn in_millis(ms: i64) -> DateTime<Utc> {
    bt_contract::Millis::from(Utc::now() + chrono::Duration::milliseconds(ms)).to_datetime()
}

async fn pending_timers(db: &TestDb) -> i64 {
    let handle = bt_platform::Db::connect(&db.url, &DbOptions::default())
        .await
        .unwrap();
    let n = bt_expiration::store::pending(&handle).await.unwrap();
    handle.close().await;
    n
}

async fn an_order_expires_on_time_never_early(backend: Backend) {
    let db = TestDb::new(backend).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "expiration.complete").await;
    let service = start(&db, &bus).await;

    let expires_at = in_millis(1500);
    publish(&bus.bus, order_created("o1", expires_at)).await;

    let event = probe.next::<ExpirationComplete>(10).await;
    let received = Utc::now();
    assert_eq!(event.data.order_id, "o1");
    assert!(
        event.occurred_at >= expires_at,
        "fired {} before {expires_at}",
        event.occurred_at
    );
    let late = received - expires_at;
    assert!(
        late < chrono::Duration::seconds(1),
        "published {late} after expiresAt"
    );
    eventually(5, "the timer is gone", || async {
        pending_timers(&db).await == 0
    })
    .await;
    service.runtime.stop().await;
}

async fn an_order_already_past_its_window_expires_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "expiration.complete").await;
    let service = start(&db, &bus).await;

    publish(&bus.bus, order_created("late", in_millis(-60_000))).await;

    assert_eq!(
        probe.next::<ExpirationComplete>(5).await.data.order_id,
        "late"
    );
    service.runtime.stop().await;
}

async fn cancelled_and_completed_orders_never_expire(backend: Backend) {
    let db = TestDb::new(backend).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "expiration.complete").await;
    let service = start(&db, &bus).await;

    publish(&bus.bus, order_created("cancelled", in_millis(800))).await;
    publish(&bus.bus, order_created("paid", in_millis(800))).await;
    eventually(10, "both timers are scheduled", || async {
        pending_timers(&db).await == 2
    })
    .await;
    publish(
        &bus.bus,
        OrderCancelled {
            id: "cancelled".into(),
            version: 1,
            ticket: TicketRef { id: "t".into() },
            reason: None,
        },
    )
    .await;
    publish(
        &bus.bus,
        OrderCompleted {
            id: "paid".into(),
            version: 1,
            ticket: TicketRef { id: "t".into() },
            payment_id: None,
            user_id: None,
        },
    )
    .await;
    // A cancellation that overtakes its order.created: the timer is never scheduled.
    publish(
        &bus.bus,
        OrderCancelled {
            id: "overtaken".into(),
            version: 1,
            ticket: TicketRef { id: "t".into() },
            reason: None,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(&bus.bus, order_created("overtaken", in_millis(300))).await;
    // A control order proves the scheduler is running.
    publish(&bus.bus, order_created("control", in_millis(1200))).await;

    assert_eq!(
        probe.next::<ExpirationComplete>(10).await.data.order_id,
        "control"
    );
    probe.assert_silent(500).await;
    assert_eq!(pending_timers(&db).await, 0);
    service.runtime.stop().await;
}

async fn a_timer_survives_a_restart_of_the_service(backend: Backend) {
    let db = TestDb::new(backend).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "expiration.complete").await;

    let first = start(&db, &bus).await;
    let expires_at = in_millis(2000);
    publish(&bus.bus, order_created("o1", expires_at)).await;
    eventually(10, "the timer is scheduled", || async {
        pending_timers(&db).await == 1
    })
    .await;
    first.runtime.stop().await;
    probe.assert_silent(300).await;

    let second = start(&db, &bus).await;
    let event = probe.next::<ExpirationComplete>(10).await;
    assert_eq!(event.data.order_id, "o1");
    assert!(event.occurred_at >= expires_at);
    assert!(Utc::now() - expires_at < chrono::Duration::seconds(1));
    second.runtime.stop().await;
}

async fn two_replicas_never_fire_one_timer_twice(backend: Backend) {
    let db = TestDb::new(backend).await;
    let bus = TestBus::new(bus_for(backend)).await;
    let mut probe = EventProbe::new(&bus.bus, "expiration.complete").await;
    let (a, b) = (start(&db, &bus).await, start(&db, &bus).await);

    let expires_at = in_millis(1500);
    for i in 0..100 {
        publish(&bus.bus, order_created(&format!("o{i}"), expires_at)).await;
    }

    let mut fired: HashMap<bt_contract::OrderId, usize> = HashMap::new();
    for _ in 0..100 {
        *fired
            .entry(probe.next::<ExpirationComplete>(15).await.data.order_id)
            .or_default() += 1;
    }
    probe.assert_silent(1000).await;
    assert_eq!(fired.len(), 100, "every timer fired");
    assert!(
        fired.values().all(|n| *n == 1),
        "no timer fired twice: {fired:?}"
    );
    a.runtime.stop().await;
    b.runtime.stop().await;
}

backend_tests!(
    an_order_expires_on_time_never_early,
    an_order_already_past_its_window_expires_at_once,
    cancelled_and_completed_orders_never_expire,
    a_timer_survives_a_restart_of_the_service,
    two_replicas_never_fire_one_timer_twice,
);
