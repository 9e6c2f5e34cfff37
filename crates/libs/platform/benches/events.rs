//! The event path, measured: `cargo bench -p bt-platform --bench events`.
//!
//! One producer service stages `ticket.created` events in its outbox; three consumer services
//! (each with its own database, like orders, expiration and payments for `order.*`) keep a
//! replica of them — inbox, version check, upsert — as the real services do. Both ways of
//! running: the embedded default (SQLite databases, the in-process log) and the distributed
//! mode (PostgreSQL databases, NATS JetStream).
//!
//! - **Throughput**: a backlog of EVENTS_N events (default 20,000) committed in the producer's
//!   outbox (transactions of 500); events/s from the moment its relay starts until every
//!   consumer has applied every event.
//! - **Propagation**: a steady EVENTS_RATE events/s (default 500) for EVENTS_SECONDS (default
//!   10), one event per transaction; from each event's commit in the producer to its commit in
//!   each consumer, p50 / p99 / max.
//!
//! EVENTS_MODES=local,nats picks the modes (default both); EVENTS_PARTITIONS the concurrent
//! transactions per consumer on PostgreSQL (default 4, the services' default). NATS and PostgreSQL are the local
//! servers the tests use (`TEST_NATS_URL`, `TEST_DATABASE_URL`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bt_contract::Cents;
use bt_contract::events::{Envelope, TicketCreated, TicketData};
use bt_platform::bus::consumer::AppliedEvent;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Consumers, Handle, HandlerResult, Outbox, Outcome};
use bt_platform::db::{DbOptions, Migrations};
use bt_platform::{Backend, Db, Runtime, Tx, on_db, on_tx};
use bt_test_support::{BusKind, TestBus, TestDb};

const REPLICA_TABLE: &str = "CREATE TABLE replica (id TEXT PRIMARY KEY NOT NULL, version BIGINT NOT NULL, title TEXT NOT NULL)";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A service: its database and outbox.
struct Svc {
    db: Db,
    outbox: Outbox,
    _test_db: TestDb,
}

impl Svc {
    async fn new(backend: Backend) -> Self {
        let test_db = TestDb::new(backend).await;
        let options = DbOptions {
            max_connections: Some(10),
            ..DbOptions::default()
        };
        let db = Db::open(&test_db.url, &options, &Migrations::NONE)
            .await
            .unwrap();
        on_db!(&db, |pool| sqlx::query(REPLICA_TABLE)
            .execute(pool)
            .await
            .map(drop))
        .unwrap();
        Self {
            outbox: Outbox::new(db.clone()),
            db,
            _test_db: test_db,
        }
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

/// Keeps a replica of tickets in version order, as the orders service does.
#[derive(Clone)]
struct Replica;

impl Handle<TicketCreated> for Replica {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketCreated>) -> HandlerResult {
        let data = event.data.0;
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
            "INSERT INTO replica (id, version, title) VALUES ($1, $2, $3)"
        )
        .bind(&data.id)
        .bind(data.version)
        .bind(&data.title)
        .execute(conn)
        .await
        .map(drop))?;
        Ok(Outcome::Applied)
    }
}

fn ticket(i: u64) -> TicketCreated {
    TicketCreated(TicketData {
        id: bt_contract::TicketId::generate(),
        version: 0,
        title: format!("Seat {i}"),
        price: Cents::new(1000),
        user_id: "seller".into(),
        order_id: None,
        venue: None,
        starts_at: None,
        face_value: None,
        for_sale: true,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A producer, three consumers, the bus; propagation times collected.
struct Setup {
    producer: Svc,
    consumers: Vec<Svc>,
    runtimes: Vec<Runtime>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    _bus: TestBus,
}

impl Setup {
    async fn new(backend: Backend, kind: BusKind) -> Self {
        // The production settings, on a stream and subject prefix of this run's own.
        let unique = TestBus::test_config();
        let bus = TestBus::with_config(
            kind,
            bt_platform::bus::BusConfig {
                subject_prefix: unique.subject_prefix,
                stream: unique.stream,
                consumer_partitions: env_u64("EVENTS_PARTITIONS", 4) as usize,
                ..bt_platform::bus::BusConfig::default()
            },
        )
        .await;
        let producer = Svc::new(backend).await;
        let producer_runtime = Runtime::new(bus.bus.clone());
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let mut consumers = Vec::new();
        let mut runtimes = vec![producer_runtime];
        for name in ["consumer-a", "consumer-b", "consumer-c"] {
            let svc = Svc::new(backend).await;
            let runtime = Runtime::new(bus.bus.clone());
            let seen = latencies.clone();
            Consumers::new(name, svc.db.clone(), svc.outbox.clone())
                .observe(Arc::new(move |applied: &AppliedEvent<'_>| {
                    if let Some(p) = applied.propagation {
                        seen.lock().unwrap().push(p);
                    }
                }))
                .on::<TicketCreated>(Replica)
                .start(&runtime)
                .await
                .unwrap();
            consumers.push(svc);
            runtimes.push(runtime);
        }
        Self {
            producer,
            consumers,
            runtimes,
            latencies,
            _bus: bus,
        }
    }

    /// Starts the producer's outbox relay.
    fn relay(&self) {
        self.producer
            .outbox
            .spawn_relay(&self.runtimes[0], "producer");
    }

    async fn applied_everywhere(&self, n: i64) -> bool {
        for consumer in &self.consumers {
            if consumer.replica_count().await < n {
                return false;
            }
        }
        true
    }

    async fn wait_applied(&self, n: i64, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if self.applied_everywhere(n).await {
                return Some(Instant::now());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        for runtime in &self.runtimes {
            runtime.stop().await;
        }
    }
}

async fn throughput(mode: &str, backend: Backend, kind: BusKind) {
    let n = env_u64("EVENTS_N", 20_000);
    let setup = Setup::new(backend, kind).await;
    // A backlog: every event committed in the producer's outbox before the relay starts.
    let staging = Instant::now();
    let mut i = 0;
    while i < n {
        let mut tx = setup.producer.db.begin().await.unwrap();
        for _ in 0..500.min(n - i) {
            setup
                .producer
                .outbox
                .stage(&mut tx, ticket(i))
                .await
                .unwrap();
            i += 1;
        }
        setup.producer.outbox.commit(tx).await.unwrap();
    }
    let staged = staging.elapsed();
    let started = Instant::now();
    setup.relay();
    let limit = Duration::from_secs(600);
    match setup.wait_applied(n as i64, limit).await {
        Some(done) => {
            let elapsed = done - started;
            println!(
                "{mode}: throughput: {n} events (staged in {:.2} s) relayed and applied by all 3 consumers in {:.2} s = {:.0} events/s end to end ({:.0} consumer applications/s)",
                staged.as_secs_f64(),
                elapsed.as_secs_f64(),
                n as f64 / elapsed.as_secs_f64(),
                3.0 * n as f64 / elapsed.as_secs_f64(),
            );
        }
        None => {
            let counts: Vec<i64> =
                futures::future::join_all(setup.consumers.iter().map(Svc::replica_count)).await;
            println!("{mode}: throughput: not applied within {limit:?}: {counts:?} of {n}");
        }
    }
    setup.stop().await;
}

async fn propagation(mode: &str, backend: Backend, kind: BusKind) {
    let rate = env_u64("EVENTS_RATE", 500);
    let seconds = env_u64("EVENTS_SECONDS", 10);
    let n = rate * seconds;
    let setup = Setup::new(backend, kind).await;
    setup.relay();
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for i in 0..n {
        every.tick().await;
        let mut tx = setup.producer.db.begin().await.unwrap();
        setup
            .producer
            .outbox
            .stage(&mut tx, ticket(i))
            .await
            .unwrap();
        setup.producer.outbox.commit(tx).await.unwrap();
    }
    let produced = started.elapsed();
    let done = setup.wait_applied(n as i64, Duration::from_secs(600)).await;
    let mut latencies = setup.latencies.lock().unwrap().clone();
    latencies.sort();
    println!(
        "{mode}: propagation at {rate} events/s for {seconds} s ({n} events in {:.2} s{}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} consumer applications",
        produced.as_secs_f64(),
        if done.is_some() {
            ""
        } else {
            ", NOT ALL APPLIED"
        },
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len(),
    );
    setup.stop().await;
}

#[tokio::main]
async fn main() {
    let modes = std::env::var("EVENTS_MODES").unwrap_or_else(|_| "local,nats".into());
    for mode in modes.split(',') {
        let (backend, kind) = match mode.trim() {
            "local" => (Backend::Sqlite, BusKind::Local),
            "nats" => (Backend::Postgres, BusKind::Nats),
            other => panic!("EVENTS_MODES: unknown mode {other:?} (local, nats)"),
        };
        throughput(mode, backend, kind).await;
        propagation(mode, backend, kind).await;
    }
}
