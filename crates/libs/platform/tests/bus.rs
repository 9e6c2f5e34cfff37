//! The event layer's guarantees, on the real NATS server and the in-process log, with SQLite
//! and PostgreSQL service databases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bt_contract::Cents;
use bt_contract::events::{Envelope, Event, TicketCreated, TicketData, TicketUpdated};
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Consumers, Handle, HandlerResult, Outbox, Outcome, OutgoingMessage};
use bt_platform::db::{DbOptions, Migrations};
use bt_platform::{Backend, Db, Runtime, Tx, on_db, on_tx};
use bt_test_support::{BusKind, OwnNatsServer, TestBus, TestDb};

const REPLICA_TABLE: &str = "CREATE TABLE replica (id TEXT PRIMARY KEY NOT NULL, version BIGINT NOT NULL, title TEXT NOT NULL)";
/// Every version applied, in commit order: written in the handler's transaction, so a run that
/// is rolled back leaves nothing here.
const HISTORY_TABLE: &str =
    "CREATE TABLE history (id TEXT NOT NULL, version BIGINT NOT NULL, at BIGINT NOT NULL)";

/// A test service: its database (with a replica table), outbox and recorded effects.
struct Svc {
    db: Db,
    outbox: Outbox,
    _test_db: TestDb,
}

impl Svc {
    async fn new(backend: Backend) -> Self {
        let test_db = TestDb::new(backend).await;
        let db = Db::open(&test_db.url, &DbOptions::default(), &Migrations::NONE)
            .await
            .unwrap();
        for table in [REPLICA_TABLE, HISTORY_TABLE] {
            on_db!(&db, |pool| sqlx::query(table).execute(pool).await.map(drop)).unwrap();
        }
        Self {
            outbox: Outbox::new(db.clone()),
            db,
            _test_db: test_db,
        }
    }

    /// Stages `events` in one transaction and commits (waking the relay if one runs).
    async fn stage_all(&self, events: Vec<TicketCreated>) -> Vec<Envelope<TicketCreated>> {
        let mut tx = self.db.begin().await.unwrap();
        let mut staged = Vec::new();
        for event in events {
            staged.push(self.outbox.stage(&mut tx, event).await.unwrap());
        }
        self.outbox.commit(tx).await.unwrap();
        staged
    }

    async fn replica(&self, id: &str) -> Option<(i64, String)> {
        on_db!(&self.db, |pool| sqlx::query_as::<_, (i64, String)>(
            "SELECT version, title FROM replica WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)
        .unwrap()
    }

    /// The versions of `id` applied, in the order they were applied.
    async fn history(&self, id: &str) -> Vec<i64> {
        on_db!(&self.db, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT version FROM history WHERE id = $1 ORDER BY at, version"
        )
        .bind(id)
        .fetch_all(pool)
        .await)
        .unwrap()
    }

    async fn replica_count(&self) -> i64 {
        on_db!(&self.db, |pool| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM replica"
        )
        .fetch_one(pool)
        .await)
        .unwrap()
    }
}

fn ticket(id: &str, version: i64, title: &str) -> TicketData {
    TicketData {
        id: id.into(),
        version,
        title: title.to_owned(),
        price: Cents::new(1000),
        user_id: "u1".into(),
        order_id: None,
        venue: None,
        starts_at: None,
        face_value: None,
        for_sale: true,
    }
}

/// Keeps a replica of tickets with version ordering, and records what it saw.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<AtomicUsize>,
    calls_by_title: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    request_ids: Arc<Mutex<Vec<Option<String>>>>,
    /// While set, every event is "not applicable yet" (a consumer that cannot keep up).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    fn calls_for(&self, title: &str) -> usize {
        self.calls_by_title
            .lock()
            .unwrap()
            .get(title)
            .copied()
            .unwrap_or(0)
    }

    async fn apply(&self, tx: &mut Tx, data: TicketData) -> HandlerResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self
            .calls_by_title
            .lock()
            .unwrap()
            .entry(data.title.clone())
            .or_default() += 1;
        self.request_ids
            .lock()
            .unwrap()
            .push(bt_platform::context::request_id());
        if data.title == "poison" {
            return Err("this event always fails".into());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Ok(Outcome::NotYet("closed".into()));
        }
        let held: Option<i64> = on_tx!(tx, |conn| sqlx::query_scalar(
            "SELECT version FROM replica WHERE id = $1"
        )
        .bind(&data.id)
        .fetch_optional(conn)
        .await)?;
        match order(held, data.version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("ticket", held, data.version)),
        }
        on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO replica (id, version, title) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title"
        )
        .bind(&data.id)
        .bind(data.version)
        .bind(&data.title)
        .execute(conn)
        .await
        .map(drop))?;
        // Microseconds, and a sequence within the transaction: the order of application.
        let at = chrono::Utc::now().timestamp_micros();
        on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO history (id, version, at) VALUES ($1, $2, $3)"
        )
        .bind(&data.id)
        .bind(data.version)
        .bind(at)
        .execute(conn)
        .await
        .map(drop))?;
        Ok(Outcome::Applied)
    }
}

impl Handle<TicketCreated> for Recorder {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketCreated>) -> HandlerResult {
        self.apply(tx, event.data.0).await
    }
}

impl Handle<TicketUpdated> for Recorder {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketUpdated>) -> HandlerResult {
        self.apply(tx, event.data.0).await
    }
}

/// Starts the "replica" service's consumers on a new runtime.
async fn start_consumers(svc: &Svc, bus: &bt_platform::Bus, recorder: Recorder) -> Runtime {
    let runtime = Runtime::new(bus.clone());
    Consumers::new("replica", svc.db.clone(), svc.outbox.clone())
        .on::<TicketCreated>(recorder.clone())
        .on::<TicketUpdated>(recorder)
        .start(&runtime)
        .await
        .unwrap();
    runtime
}

/// Waits until `condition` holds, failing the test after `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes an envelope directly (no outbox), under the message id `message_id`.
async fn publish_raw<E: Event>(bus: &bt_platform::Bus, message_id: &str, envelope: &Envelope<E>) {
    bus.publish(&OutgoingMessage {
        id: message_id.to_owned(),
        subject: E::SUBJECT.to_owned(),
        payload: serde_json::to_string(envelope).unwrap(),
        request_id: None,
    })
    .await
    .unwrap();
}

async fn an_event_committed_to_the_outbox_is_delivered_even_if_the_process_dies_before_publishing(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let mut probe = test_bus
        .bus
        .subscribe("probe", TicketCreated::SUBJECT)
        .await
        .unwrap();

    // The change and its event commit together; the process "dies" before any relay ran.
    let staged = svc
        .stage_all(vec![TicketCreated(ticket("t1", 0, "Concert"))])
        .await;
    assert_eq!(svc.outbox.pending().await.unwrap(), 1);
    drop(svc.outbox.clone());

    // A new process: a fresh outbox handle on the same database, and its relay.
    let restarted = Outbox::new(svc.db.clone());
    let runtime = Runtime::new(test_bus.bus.clone());
    restarted.spawn_relay(&runtime, "test");

    let delivery = tokio::time::timeout(Duration::from_secs(10), probe.next())
        .await
        .expect("the pending row is published after the restart");
    let got: Envelope<TicketCreated> = serde_json::from_slice(&delivery.payload).unwrap();
    assert_eq!(got.id, staged[0].id);
    assert_eq!(got.data, staged[0].data);
    delivery.ack().await.unwrap();
    eventually(5, "the row is marked sent", || async {
        restarted.pending().await.unwrap() == 0
    })
    .await;
    runtime.stop().await;
}

async fn a_duplicate_delivery_leaves_the_consumer_data_unchanged(backend: Backend, kind: BusKind) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;

    let original = Envelope::new(TicketCreated(ticket("t1", 0, "Original")));
    let mut redelivered = original.clone();
    redelivered.data.0.title = "Changed".into();
    // Two messages that carry the same event id (a redelivery past the de-duplication window).
    publish_raw(&test_bus.bus, "message-1", &original).await;
    publish_raw(&test_bus.bus, "message-2", &redelivered).await;
    publish_raw(
        &test_bus.bus,
        "message-3",
        &Envelope::new(TicketCreated(ticket("t2", 0, "Sentinel"))),
    )
    .await;

    eventually(10, "the sentinel is applied", || async {
        svc.replica("t2").await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(svc.replica("t1").await, Some((0, "Original".into())));
    assert_eq!(
        recorder.calls_for("Original") + recorder.calls_for("Changed"),
        1,
        "the handler ran once"
    );
    runtime.stop().await;
}

async fn two_replicas_process_a_burst_of_1000_events_exactly_once_between_them(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let (first, second) = (Recorder::default(), Recorder::default());
    let replica_a = start_consumers(&svc, &test_bus.bus, first.clone()).await;
    let replica_b = start_consumers(&svc, &test_bus.bus, second.clone()).await;
    let relay = Runtime::new(test_bus.bus.clone());
    svc.outbox.spawn_relay(&relay, "test");

    for batch in 0..10 {
        let events = (0..100)
            .map(|i| TicketCreated(ticket(&format!("t{batch}-{i}"), 0, "Burst")))
            .collect();
        svc.stage_all(events).await;
    }

    eventually(120, "1000 events are applied", || async {
        svc.replica_count().await == 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (
        first.calls.load(Ordering::SeqCst),
        second.calls.load(Ordering::SeqCst),
    );
    assert_eq!(
        a + b,
        1000,
        "each event handled once between the replicas ({a} + {b})"
    );
    assert!(a > 0 && b > 0, "both replicas took a share ({a} + {b})");
    relay.stop().await;
    replica_a.stop().await;
    replica_b.stop().await;
}

async fn an_event_that_keeps_failing_is_dead_lettered_and_the_consumer_goes_on(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let mut dead_letters = test_bus
        .bus
        .subscribe(
            "dead-letter-probe",
            &format!("deadletter.{}", TicketCreated::SUBJECT),
        )
        .await
        .unwrap();
    let recorder = Recorder::default();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;

    let poison = Envelope::new(TicketCreated(ticket("t1", 0, "poison")));
    publish_raw(&test_bus.bus, &poison.id.to_string(), &poison).await;
    publish_raw(
        &test_bus.bus,
        "next",
        &Envelope::new(TicketCreated(ticket("t2", 0, "Next"))),
    )
    .await;

    let dead = tokio::time::timeout(Duration::from_secs(20), dead_letters.next())
        .await
        .expect("the failing event reaches the dead-letter subject");
    let got: Envelope<TicketCreated> = serde_json::from_slice(&dead.payload).unwrap();
    assert_eq!(got.id, poison.id);
    assert_eq!(
        recorder.calls_for("poison"),
        test_bus.config.max_deliver as usize,
        "delivered N times"
    );
    eventually(10, "the next event is applied", || async {
        svc.replica("t2").await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recorder.calls_for("poison"),
        test_bus.config.max_deliver as usize,
        "no more deliveries"
    );
    assert_eq!(svc.replica("t1").await, None);
    runtime.stop().await;
}

async fn out_of_order_versions_are_applied_in_order(backend: Backend, kind: BusKind) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;

    let updated = |v: i64| Envelope::new(TicketUpdated(ticket("t1", v, &format!("v{v}"))));
    publish_raw(&test_bus.bus, "u3", &updated(3)).await;
    publish_raw(&test_bus.bus, "u1", &updated(1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        svc.replica("t1").await,
        None,
        "nothing applies before version 0"
    );
    publish_raw(
        &test_bus.bus,
        "c0",
        &Envelope::new(TicketCreated(ticket("t1", 0, "v0"))),
    )
    .await;
    publish_raw(&test_bus.bus, "u4", &updated(4)).await;
    publish_raw(&test_bus.bus, "u2", &updated(2)).await;

    eventually(30, "version 4 is applied", || async {
        svc.replica("t1").await == Some((4, "v4".into()))
    })
    .await;
    assert_eq!(svc.history("t1").await, [0, 1, 2, 3, 4]);
    runtime.stop().await;
}

async fn the_request_id_travels_from_the_http_request_to_the_handler(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;
    svc.outbox.spawn_relay(&runtime, "test");

    bt_platform::context::with_request_id(
        Some("req-42".into()),
        svc.stage_all(vec![TicketCreated(ticket("t1", 0, "Traced"))]),
    )
    .await;

    eventually(10, "the event is applied", || async {
        svc.replica("t1").await.is_some()
    })
    .await;
    assert_eq!(
        *recorder.request_ids.lock().unwrap(),
        [Some("req-42".to_owned())]
    );
    runtime.stop().await;
}

async fn a_failing_event_in_a_batch_neither_holds_up_nor_undoes_its_neighbours(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    // One transaction, so they travel and are applied as one batch.
    let events = (0..60)
        .map(|i| {
            let title = if i == 30 { "poison" } else { "Neighbour" };
            TicketCreated(ticket(&format!("t{i}"), 0, title))
        })
        .collect();
    svc.stage_all(events).await;
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;
    svc.outbox.spawn_relay(&runtime, "test");

    eventually(20, "the 59 neighbours are applied", || async {
        svc.replica_count().await == 59
    })
    .await;
    for i in (0..60).filter(|i| *i != 30) {
        assert_eq!(
            svc.history(&format!("t{i}")).await,
            [0],
            "t{i} applied once"
        );
    }
    eventually(
        20,
        "the failing event was tried max_deliver times",
        || async { recorder.calls_for("poison") == test_bus.config.max_deliver as usize },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(svc.replica("t30").await, None);
    assert_eq!(svc.replica_count().await, 59, "nothing undone");
    runtime.stop().await;
}

async fn one_records_events_stay_in_order_while_others_are_applied_alongside(
    backend: Backend,
    kind: BusKind,
) {
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    // Ten versions of twenty tickets, interleaved, in one transaction: one batch, split by
    // ticket into concurrent transactions on PostgreSQL.
    let mut tx = svc.db.begin().await.unwrap();
    for version in 0..10 {
        for i in 0..20 {
            svc.outbox
                .stage(
                    &mut tx,
                    TicketUpdated(ticket(&format!("t{i}"), version, &format!("v{version}"))),
                )
                .await
                .unwrap();
        }
    }
    svc.outbox.commit(tx).await.unwrap();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;
    svc.outbox.spawn_relay(&runtime, "test");

    eventually(30, "every ticket is at version 9", || async {
        for i in 0..20 {
            if svc.replica(&format!("t{i}")).await.map(|(v, _)| v) != Some(9) {
                return false;
            }
        }
        true
    })
    .await;
    for i in 0..20 {
        assert_eq!(
            svc.history(&format!("t{i}")).await,
            (0..10).collect::<Vec<i64>>(),
            "t{i}"
        );
    }
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        200,
        "each version applied at its first delivery: no gap was ever seen"
    );
    runtime.stop().await;
}

async fn a_consumer_that_falls_behind_shows_its_lag_then_catches_up(
    backend: Backend,
    kind: BusKind,
) {
    bt_platform::http::metrics_handle();
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let recorder = Recorder::default();
    recorder.closed.store(true, Ordering::SeqCst);
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;
    svc.outbox.spawn_relay(&runtime, "test");
    svc.stage_all(
        (0..20)
            .map(|i| TicketCreated(ticket(&format!("t{i}"), 0, "Late")))
            .collect(),
    )
    .await;
    let consumer = bt_platform::bus::consumer::durable_name("replica", TicketCreated::SUBJECT);
    let lag = || runtime.lag.lock().unwrap().get(&consumer).copied();

    eventually(20, "the lag shows 20 events, some time old", || async {
        lag().is_some_and(|l| l.events == 20 && l.seconds > 0.2)
    })
    .await;
    let metrics = bt_platform::http::metrics_handle().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("events_consumer_lag{") && l.contains(&consumer)),
        "the gauge is exported"
    );
    let server =
        bt_test_support::TestServer::spawn(bt_platform::http::app(vec![bt_platform::Service {
            name: "replica",
            router: axum::Router::new(),
            checks: vec![runtime.readiness()],
        }]))
        .await;
    let ready = server.client().get("/readyz").await;
    assert_eq!(ready.json["status"], "ready", "{}", ready.text);
    assert_eq!(
        ready.json["consumers"][&consumer]["events"], 20,
        "{}",
        ready.text
    );

    recorder.closed.store(false, Ordering::SeqCst);
    eventually(30, "the consumer caught up", || async {
        svc.replica_count().await == 20 && lag().is_some_and(|l| l.events == 0 && l.seconds == 0.0)
    })
    .await;
    runtime.stop().await;
}

/// Runs each test on every pairing of database and bus.
macro_rules! bus_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite_local {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite, super::BusKind::Local).await } )+
        }
        mod sqlite_nats {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite, super::BusKind::Nats).await } )+
        }
        mod postgres_nats {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres, super::BusKind::Nats).await } )+
        }
        mod postgres_local {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres, super::BusKind::Local).await } )+
        }
    };
}

bus_tests!(
    an_event_committed_to_the_outbox_is_delivered_even_if_the_process_dies_before_publishing,
    a_duplicate_delivery_leaves_the_consumer_data_unchanged,
    two_replicas_process_a_burst_of_1000_events_exactly_once_between_them,
    an_event_that_keeps_failing_is_dead_lettered_and_the_consumer_goes_on,
    out_of_order_versions_are_applied_in_order,
    the_request_id_travels_from_the_http_request_to_the_handler,
    a_failing_event_in_a_batch_neither_holds_up_nor_undoes_its_neighbours,
    one_records_events_stay_in_order_while_others_are_applied_alongside,
    a_consumer_that_falls_behind_shows_its_lag_then_catches_up,
    a_consumer_commit_wakes_the_relay_only_for_the_events_it_staged,
);

/// Applies each `TicketCreated` and stages a `TicketUpdated` of it (version + 1), as a service
/// whose handler has events of its own to publish.
#[derive(Clone)]
struct Forwarder {
    outbox: Outbox,
}

impl Handle<TicketCreated> for Forwarder {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketCreated>) -> HandlerResult {
        let mut data = event.data.0;
        data.version += 1;
        self.outbox.stage(tx, TicketUpdated(data)).await?;
        Ok(Outcome::Applied)
    }
}

async fn a_consumer_commit_wakes_the_relay_only_for_the_events_it_staged(
    backend: Backend,
    kind: BusKind,
) {
    // A handler that writes its replica and stages nothing: its commits leave the relay asleep.
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::new(kind).await;
    let runtime = start_consumers(&svc, &test_bus.bus, Recorder::default()).await;
    for n in 0..3 {
        let event = Envelope::new(TicketCreated(ticket(&format!("t{n}"), 0, "Quiet")));
        publish_raw(&test_bus.bus, &event.id.to_string(), &event).await;
    }
    eventually(10, "the three events are applied", || async {
        svc.replica_count().await == 3
    })
    .await;
    assert_eq!(
        svc.outbox.wakes(),
        0,
        "commits that staged nothing woke the relay"
    );
    runtime.stop().await;

    // A handler that stages an event: its commit wakes the relay, and the event is published.
    let svc = Svc::new(backend).await;
    let mut probe = test_bus
        .bus
        .subscribe("probe-forwarded", TicketUpdated::SUBJECT)
        .await
        .unwrap();
    let runtime = Runtime::new(test_bus.bus.clone());
    Consumers::new("forwarder", svc.db.clone(), svc.outbox.clone())
        .on::<TicketCreated>(Forwarder {
            outbox: svc.outbox.clone(),
        })
        .start(&runtime)
        .await
        .unwrap();
    svc.outbox.spawn_relay(&runtime, "test");
    let event = Envelope::new(TicketCreated(ticket("f1", 0, "Forwarded")));
    publish_raw(&test_bus.bus, &event.id.to_string(), &event).await;
    // The bus kept the first part's three events too: this consumer forwards them as well.
    let mut forwarded = Vec::new();
    while !forwarded.contains(&("f1".to_owned(), 1)) {
        let delivery = tokio::time::timeout(Duration::from_secs(10), probe.next())
            .await
            .expect("the staged events are published");
        let got: Envelope<TicketUpdated> = serde_json::from_slice(&delivery.payload).unwrap();
        forwarded.push((got.data.0.id.as_str().to_owned(), got.data.0.version));
        delivery.ack().await.unwrap();
        assert!(
            forwarded.len() <= 4,
            "only four events to forward: {forwarded:?}"
        );
    }
    assert!(
        svc.outbox.wakes() >= 1,
        "the commit that staged an event woke the relay"
    );
    runtime.stop().await;
}

async fn every_event_is_delivered_when_nats_restarts_during_a_burst(backend: Backend) {
    let mut server = OwnNatsServer::start();
    let svc = Svc::new(backend).await;
    let test_bus = TestBus::on_nats(&server.url, TestBus::test_config()).await;
    let recorder = Recorder::default();
    let runtime = start_consumers(&svc, &test_bus.bus, recorder.clone()).await;
    svc.outbox.spawn_relay(&runtime, "test");

    for batch in 0..30 {
        if batch == 10 {
            server.kill();
        }
        if batch == 20 {
            server.restart();
        }
        let events = (0..10)
            .map(|i| TicketCreated(ticket(&format!("t{batch}-{i}"), 0, "Burst")))
            .collect();
        svc.stage_all(events).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    eventually(90, "all 300 events are applied", || async {
        svc.replica_count().await == 300
    })
    .await;
    assert_eq!(svc.outbox.pending().await.unwrap(), 0);
    runtime.stop().await;
}

mod nats_restart {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_is_delivered_when_nats_restarts_during_a_burst_on_sqlite() {
        super::every_event_is_delivered_when_nats_restarts_during_a_burst(super::Backend::Sqlite)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_is_delivered_when_nats_restarts_during_a_burst_on_postgres() {
        super::every_event_is_delivered_when_nats_restarts_during_a_burst(super::Backend::Postgres)
            .await
    }
}
