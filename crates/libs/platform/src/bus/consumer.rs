//! Typed event handlers, run exactly once in effect: inbox + transaction + ack after commit.
//!
//! ```ignore
//! Consumers::new("orders", db, outbox)
//!     .on::<TicketCreated>(handlers.clone())
//!     .on::<TicketUpdated>(handlers)
//!     .start(&runtime)
//!     .await?;
//! ```

use std::future::Future;
use std::sync::Arc;

use bt_contract::events::{Envelope, Event};
use futures::future::BoxFuture;
use serde::Deserialize;
use tracing::Instrument;

use super::{BusError, Delivery, Outbox, Runtime};
use crate::db::{Db, Tx, now_millis};
use crate::on_tx;

/// Inbox rows per statement.
const INBOX_CHUNK: usize = 200;

/// What a handler did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; the transaction commits.
    Applied,
    /// Nothing to do (an old version, an event that does not concern us); commits too, so the
    /// event is recorded as processed.
    Skipped,
    /// Cannot be applied yet (an earlier version is missing): roll back, deliver again later.
    NotYet(String),
}

/// A handler's failure: rolled back and retried, dead-lettered after too many deliveries.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
pub type HandlerResult = Result<Outcome, HandlerError>;

/// Handles events of type `E` inside the transaction that records them in the inbox. Stage
/// follow-up events in the same `tx` with [`Outbox::stage`].
pub trait Handle<E: Event>: Send + Sync + 'static {
    fn handle(&self, tx: &mut Tx, event: Envelope<E>)
    -> impl Future<Output = HandlerResult> + Send;

    /// The record this handler changes for `event` (by default the event's own record, see
    /// [`Event::key`]): events with one key are applied in order, in one partition; events with
    /// different keys may be applied concurrently.
    fn key(&self, event: &E) -> String {
        event.key().to_owned()
    }
}

/// A handler with its event type erased, so one consumer list holds them all.
trait ErasedHandler: Send + Sync {
    /// The partition key of a payload; `None` when it is not an event of this type.
    fn key(&self, payload: &[u8]) -> Option<String>;

    fn call<'a>(
        &'a self,
        tx: &'a mut Tx,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<Outcome, Failure>>;
}

struct Typed<E, H> {
    handler: H,
    _event: std::marker::PhantomData<fn() -> E>,
}

impl<E: Event, H: Handle<E>> ErasedHandler for Typed<E, H> {
    fn key(&self, payload: &[u8]) -> Option<String> {
        serde_json::from_slice::<Envelope<E>>(payload)
            .ok()
            .map(|envelope| self.handler.key(&envelope.data))
    }

    fn call<'a>(
        &'a self,
        tx: &'a mut Tx,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<Outcome, Failure>> {
        Box::pin(async move {
            let envelope: Envelope<E> =
                serde_json::from_slice(payload).map_err(|e| Failure::Malformed(e.to_string()))?;
            self.handler
                .handle(tx, envelope)
                .await
                .map_err(Failure::Handler)
        })
    }
}

enum Failure {
    /// The message is not an event of this type: no retry can help.
    Malformed(String),
    Handler(HandlerError),
}

/// Only what every envelope has, read before the typed handler runs.
#[derive(Deserialize)]
struct EnvelopeId {
    id: String,
    #[serde(rename = "occurredAt", default)]
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An event a consumer has applied (committed), as observers see it.
#[derive(Debug, Clone)]
pub struct AppliedEvent<'a> {
    pub consumer: &'a str,
    /// The contract subject (`ticket.updated`), without the deployment's prefix.
    pub subject: &'a str,
    /// The record it is about (`Event::key`: a ticket's id, an order's id).
    pub key: &'a str,
    pub event_id: &'a str,
    /// From the event's `occurredAt` (staged in the producer's outbox) to the commit here.
    pub propagation: Option<std::time::Duration>,
}

/// Called after each event is applied and committed (measurements, tests).
pub type Observer = Arc<dyn Fn(&AppliedEvent<'_>) + Send + Sync>;

/// The event consumers of one service.
pub struct Consumers {
    service: &'static str,
    db: Db,
    outbox: Outbox,
    handlers: Vec<(&'static str, Arc<dyn ErasedHandler>)>,
    on_commit: Vec<Arc<tokio::sync::Notify>>,
    arrivals: Vec<crate::arrivals::Arrivals>,
    observers: Vec<Observer>,
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects: Vec<_> = self.handlers.iter().map(|(s, _)| *s).collect();
        f.debug_struct("Consumers")
            .field("service", &self.service)
            .field("subjects", &subjects)
            .finish()
    }
}

/// The durable consumer name of a service's handler of a subject, shared by its replicas.
pub fn durable_name(service: &str, subject: &str) -> String {
    format!("{service}-{}", subject.replace('.', "-"))
}

impl Consumers {
    /// `outbox` is woken after each handler transaction that staged events commits.
    pub fn new(service: &'static str, db: Db, outbox: Outbox) -> Self {
        Self {
            service,
            db,
            outbox,
            handlers: Vec::new(),
            on_commit: Vec::new(),
            arrivals: Vec::new(),
            observers: Vec::new(),
        }
    }

    /// Notifies `notify` after every handler transaction that commits (e.g. to wake a
    /// scheduler that must see what a handler wrote).
    pub fn notify_on_commit(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.on_commit.push(notify);
        self
    }

    /// Calls `observer` after every event applied and committed.
    pub fn observe(mut self, observer: Observer) -> Self {
        self.observers.push(observer);
        self
    }

    /// Wakes the requests waiting in `arrivals` after every handler transaction that commits.
    pub fn announce_to(mut self, arrivals: crate::arrivals::Arrivals) -> Self {
        self.arrivals.push(arrivals);
        self
    }

    /// Handles `E` events with `handler`.
    pub fn on<E: Event>(mut self, handler: impl Handle<E>) -> Self {
        let typed = Typed::<E, _> {
            handler,
            _event: std::marker::PhantomData,
        };
        self.handlers.push((E::SUBJECT, Arc::new(typed)));
        self
    }

    /// Joins every durable consumer (so none misses an event published from now on) and
    /// spawns one loop per subject on `runtime`. Loops stop after their current message when
    /// `runtime` shuts down.
    pub async fn start(self, runtime: &Runtime) -> Result<(), BusError> {
        // Event transactions of this service at one time: SQLite takes one writer anyway (and
        // would make the others sleep on its lock); on PostgreSQL half the pool, so that
        // requests always find a connection.
        let permits = match self.db.backend() {
            crate::db::Backend::Sqlite => 1,
            crate::db::Backend::Postgres => (self.db.max_connections() as usize / 2).max(1),
        };
        let transactions = Arc::new(tokio::sync::Semaphore::new(permits));
        let mut durables = Vec::new();
        for (subject, handler) in self.handlers {
            let durable = durable_name(self.service, subject);
            let mut subscription = runtime.bus.subscribe(&durable, subject).await?;
            durables.push((durable.clone(), subject));
            let partitions = match self.db.backend() {
                // One writer at a time: concurrency would only contend.
                crate::db::Backend::Sqlite => 1,
                crate::db::Backend::Postgres => runtime.bus.config().consumer_partitions.max(1),
            };
            let worker = Worker {
                consumer: durable,
                subject,
                db: self.db.clone(),
                outbox: self.outbox.clone(),
                runtime: runtime.clone(),
                partitions,
                transactions: transactions.clone(),
                handler,
                on_commit: self.on_commit.clone(),
                arrivals: self.arrivals.clone(),
                observers: self.observers.clone(),
            };
            let shutdown = runtime.shutdown.clone();
            let batch = runtime.bus.config().consumer_batch.max(1);
            runtime.tasks.spawn(async move {
                loop {
                    let deliveries = tokio::select! {
                        deliveries = subscription.next_batch(batch) => deliveries,
                        () = shutdown.cancelled() => break,
                    };
                    worker.process_batch(deliveries).await;
                }
                subscription.close().await;
            });
        }
        spawn_lag_monitor(durables, runtime);
        Ok(())
    }
}

/// Measures the lag of `durables` every `lag_interval`: gauges `events_consumer_lag` (events)
/// and `events_consumer_lag_seconds`, the runtime's lag board (`/readyz`), and a log line when
/// a consumer falls further behind than `lag_warning` (and one when it has caught up).
fn spawn_lag_monitor(durables: Vec<(String, &'static str)>, runtime: &Runtime) {
    let bus = runtime.bus.clone();
    let board = runtime.lag.clone();
    let shutdown = runtime.shutdown.clone();
    let config = runtime.bus.config().clone();
    runtime.tasks.spawn(async move {
        let warn_after = config.lag_warning.as_secs_f64();
        let mut behind = std::collections::HashSet::new();
        loop {
            for (durable, subject) in &durables {
                let lag = match bus.lag(durable, subject).await {
                    Ok(lag) => lag,
                    Err(err) => {
                        tracing::debug!(consumer = %durable, %err, "cannot measure the lag");
                        continue;
                    }
                };
                metrics::gauge!("events_consumer_lag", "consumer" => durable.clone())
                    .set(lag.events as f64);
                metrics::gauge!("events_consumer_lag_seconds", "consumer" => durable.clone())
                    .set(lag.seconds);
                board
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(durable.clone(), lag);
                if lag.seconds > warn_after {
                    if behind.insert(durable.clone()) {
                        tracing::warn!(consumer = %durable, events = lag.events, seconds = lag.seconds, "event consumer is falling behind");
                    }
                } else if lag.seconds < warn_after / 2.0 && behind.remove(durable) {
                    tracing::info!(consumer = %durable, events = lag.events, "event consumer has caught up");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(config.lag_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

struct Worker {
    consumer: String,
    subject: &'static str,
    db: Db,
    outbox: Outbox,
    runtime: Runtime,
    /// How many transactions apply a batch concurrently (events split by key).
    partitions: usize,
    /// Shared by the service's workers: how many event transactions may run at once.
    transactions: Arc<tokio::sync::Semaphore>,
    handler: Arc<dyn ErasedHandler>,
    on_commit: Vec<Arc<tokio::sync::Notify>>,
    arrivals: Vec<crate::arrivals::Arrivals>,
    observers: Vec<Observer>,
}

/// One delivery of a batch, with what its envelope says.
struct Item {
    delivery: Delivery,
    id: String,
    /// The partition key (the record the event changes).
    key: String,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    span: tracing::Span,
}

/// What became of one event of a batch.
enum Done {
    /// Applied (or skipped) and committed.
    Now,
    /// Processed before (the inbox has it).
    Before,
    /// Cannot be applied yet; rolled back.
    NotYet(String),
    Malformed(String),
    Failed(String),
}

impl Worker {
    /// Applies a batch: as many events per transaction as possible, each with its own inbox row.
    /// An event that cannot be applied (not yet, failing, malformed) is rolled back alone — the
    /// transaction is redone without it — and retried or dead-lettered alone; its neighbours
    /// commit. Then the batch is acknowledged together.
    async fn process_batch(&self, deliveries: Vec<Delivery>) {
        let mut items = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let envelope = serde_json::from_slice::<EnvelopeId>(&delivery.payload);
            let span = tracing::info_span!(
                "event",
                consumer = %self.consumer,
                subject = %delivery.subject,
                event_id = envelope.as_ref().map(|e| e.id.as_str()).unwrap_or("-"),
                request_id = delivery.request_id.as_deref().unwrap_or("-"),
                delivered = delivery.delivered,
            );
            match envelope {
                Ok(envelope) => items.push(Item {
                    key: self
                        .handler
                        .key(&delivery.payload)
                        .unwrap_or_else(|| envelope.id.clone()),
                    delivery,
                    id: envelope.id,
                    occurred_at: envelope.occurred_at,
                    span,
                }),
                Err(err) => {
                    self.dead_letter(&delivery, &format!("not an event envelope: {err}"))
                        .instrument(span)
                        .await;
                }
            }
        }
        if items.is_empty() {
            return;
        }
        let done = self.apply_partitioned(&items).await;
        self.finish(items, done).await;
    }

    /// Splits `items` by key into the worker's partitions (each keeping the batch's order) and
    /// applies the partitions concurrently.
    async fn apply_partitioned(&self, items: &[Item]) -> Vec<Done> {
        let all: Vec<&Item> = items.iter().collect();
        if self.partitions <= 1 || items.len() < 2 {
            return self.apply_all(&all).await;
        }
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.partitions];
        for (i, item) in items.iter().enumerate() {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&item.key, &mut hasher);
            let partition = (std::hash::Hasher::finish(&hasher) % self.partitions as u64) as usize;
            groups[partition].push(i);
        }
        let runs = groups.iter().filter(|g| !g.is_empty()).map(|group| {
            let members: Vec<&Item> = group.iter().map(|&i| &items[i]).collect();
            async move { (group, self.apply_all(&members).await) }
        });
        let mut done: Vec<Option<Done>> = items.iter().map(|_| None).collect();
        for (group, outcomes) in futures::future::join_all(runs).await {
            for (&i, outcome) in group.iter().zip(outcomes) {
                done[i] = Some(outcome);
            }
        }
        done.into_iter()
            .map(|d| d.unwrap_or_else(|| Done::Failed("not applied".into())))
            .collect()
    }

    /// Applies `items` in as few transactions as their failures allow; one outcome per item.
    async fn apply_all(&self, items: &[&Item]) -> Vec<Done> {
        let mut done: Vec<Option<Done>> = items.iter().map(|_| None).collect();
        // Ranges still to apply, in order.
        let mut todo = std::collections::VecDeque::new();
        todo.push_back(0..items.len());
        while let Some(range) = todo.pop_front() {
            if range.is_empty() {
                continue;
            }
            match self.apply_run(&items[range.clone()]).await {
                Ok(outcomes) => {
                    for (i, outcome) in range.zip(outcomes) {
                        done[i] = Some(outcome);
                    }
                }
                Err(RunError::At(offset, failure)) => {
                    // Redo the run without the failing event: the ones before it, then the rest.
                    let at = range.start + offset;
                    done[at] = Some(failure);
                    todo.push_front(at + 1..range.end);
                    todo.push_front(range.start..at);
                }
                Err(RunError::Transaction(err)) => {
                    for i in range {
                        done[i] = Some(Done::Failed(err.clone()));
                    }
                }
            }
        }
        done.into_iter()
            .map(|d| d.unwrap_or_else(|| Done::Failed("not applied".into())))
            .collect()
    }

    /// Applies `items` in one transaction, all or nothing: the first event that cannot be
    /// applied rolls the run back and is named.
    async fn apply_run(&self, items: &[&Item]) -> Result<Vec<Done>, RunError> {
        let db_err = |e: sqlx::Error| RunError::Transaction(e.to_string());
        let _permit = self
            .transactions
            .acquire()
            .await
            .map_err(|e| RunError::Transaction(e.to_string()))?;
        // The relay is woken at the commit only if a handler staged events.
        let staged_before = self.outbox.staged();
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let mut fresh = self.record_in_inbox(&mut tx, items).await.map_err(db_err)?;
        let mut outcomes = Vec::with_capacity(items.len());
        for (offset, item) in items.iter().enumerate() {
            // Processed before (or earlier in this very batch): nothing to do.
            if !fresh.remove(&item.id) {
                outcomes.push(Done::Before);
                continue;
            }
            let applied = crate::context::with_request_id(
                item.delivery.request_id.clone(),
                self.apply_one(&mut tx, item).instrument(item.span.clone()),
            )
            .await;
            match applied {
                Ok(done) => outcomes.push(done),
                Err(failure) => {
                    tx.rollback().await.map_err(db_err)?;
                    return Err(RunError::At(offset, failure));
                }
            }
        }
        self.outbox
            .commit_staged_since(tx, staged_before)
            .await
            .map_err(db_err)?;
        for notify in &self.on_commit {
            notify.notify_one();
        }
        for arrivals in &self.arrivals {
            arrivals.arrived();
        }
        Ok(outcomes)
    }

    /// Records every event of the run in the inbox (one statement per chunk); returns the ids
    /// that were not there yet.
    async fn record_in_inbox(
        &self,
        tx: &mut Tx,
        items: &[&Item],
    ) -> Result<std::collections::HashSet<String>, sqlx::Error> {
        let now = now_millis();
        let mut fresh = std::collections::HashSet::new();
        for chunk in items.chunks(INBOX_CHUNK) {
            let sql = format!(
                "INSERT INTO inbox (consumer, event_id, processed_at) VALUES {} ON CONFLICT DO NOTHING RETURNING event_id",
                crate::db::values_placeholders(tx.backend(), chunk.len(), 3)
            );
            let inserted: Vec<String> = on_tx!(tx, |conn| {
                let mut query = sqlx::query_scalar(&sql);
                for item in chunk {
                    query = query.bind(&self.consumer).bind(&item.id).bind(now);
                }
                query.fetch_all(conn).await
            })?;
            fresh.extend(inserted);
        }
        Ok(fresh)
    }

    /// The handler, inside the run's transaction (the inbox row is written already).
    async fn apply_one(&self, tx: &mut Tx, item: &Item) -> Result<Done, Done> {
        match self.handler.call(tx, &item.delivery.payload).await {
            Ok(Outcome::Applied | Outcome::Skipped) => Ok(Done::Now),
            Ok(Outcome::NotYet(reason)) => Err(Done::NotYet(reason)),
            Err(Failure::Malformed(err)) => Err(Done::Malformed(err)),
            Err(Failure::Handler(err)) => Err(Done::Failed(err.to_string())),
        }
    }

    /// Acknowledges what is done, retries or dead-letters the rest, records metrics and tells
    /// the observers.
    async fn finish(&self, items: Vec<Item>, done: Vec<Done>) {
        let config = self.runtime.bus.config().clone();
        let mut acks: Vec<&Delivery> = Vec::new();
        let mut handled: u64 = 0;
        let mut duplicates: u64 = 0;
        for (item, outcome) in items.iter().zip(done) {
            let delivery = &item.delivery;
            let _span = item.span.enter();
            match outcome {
                Done::Now => {
                    handled += 1;
                    let propagation = item
                        .occurred_at
                        .and_then(|at| (chrono::Utc::now() - at).to_std().ok());
                    if let Some(propagation) = propagation {
                        metrics::histogram!("events_propagation_seconds", "consumer" => self.consumer.clone())
                            .record(propagation.as_secs_f64());
                    }
                    let applied = AppliedEvent {
                        consumer: &self.consumer,
                        subject: self.subject,
                        key: &item.key,
                        event_id: &item.id,
                        propagation,
                    };
                    for observer in &self.observers {
                        observer(&applied);
                    }
                    acks.push(delivery);
                }
                Done::Before => {
                    duplicates += 1;
                    tracing::debug!("duplicate delivery, already processed");
                    acks.push(delivery);
                }
                Done::NotYet(reason) => {
                    if delivery.delivered >= config.max_deliver_waiting {
                        let reason = format!(
                            "still waiting after {} deliveries: {reason}",
                            delivery.delivered
                        );
                        if self.dead_letter_only(delivery, &reason).await {
                            acks.push(delivery);
                        }
                    } else {
                        let delay = config
                            .backoff(delivery.delivered)
                            .min(config.max_retry_delay / 2);
                        tracing::debug!(%reason, ?delay, "not applicable yet, retrying later");
                        self.nak(delivery, delay).await;
                    }
                }
                Done::Malformed(err) => {
                    let reason = format!("malformed {} event: {err}", delivery.subject);
                    if self.dead_letter_only(delivery, &reason).await {
                        acks.push(delivery);
                    }
                }
                Done::Failed(err) => {
                    metrics::counter!("events_failed_total", "consumer" => self.consumer.clone())
                        .increment(1);
                    if delivery.delivered >= config.max_deliver {
                        let reason = format!("failed {} times, last: {err}", delivery.delivered);
                        if self.dead_letter_only(delivery, &reason).await {
                            acks.push(delivery);
                        }
                    } else {
                        let delay = config.backoff(delivery.delivered);
                        tracing::warn!(error = %err, ?delay, "event handler failed; will retry");
                        self.nak(delivery, delay).await;
                    }
                }
            }
        }
        if handled > 0 {
            metrics::counter!("events_handled_total", "consumer" => self.consumer.clone())
                .increment(handled);
        }
        if duplicates > 0 {
            metrics::counter!("events_duplicate_total", "consumer" => self.consumer.clone())
                .increment(duplicates);
        }
        if let Err(err) = super::ack_all(&acks).await {
            // They come again after ack_wait; the inbox makes that harmless.
            tracing::warn!(consumer = %self.consumer, %err, count = acks.len(), "could not acknowledge; they will be delivered again");
        }
    }

    async fn nak(&self, delivery: &Delivery, delay: std::time::Duration) {
        if let Err(err) = delivery.nak(delay).await {
            tracing::warn!(%err, "could not nak; it will be delivered again after ack_wait");
        }
    }

    /// Copies a message that cannot be processed to the dead-letter subject; true when it is
    /// there (then it is acknowledged with the batch), false when it will be retried.
    async fn dead_letter_only(&self, delivery: &Delivery, reason: &str) -> bool {
        tracing::error!(%reason, "event moved to the dead-letter subject");
        metrics::counter!("events_dead_lettered_total", "consumer" => self.consumer.clone())
            .increment(1);
        match self
            .runtime
            .bus
            .dead_letter(delivery, &self.consumer, reason)
            .await
        {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(%err, "could not dead-letter; retrying later");
                self.nak(delivery, self.runtime.bus.config().max_retry_delay)
                    .await;
                false
            }
        }
    }

    /// Dead-letters and acknowledges one message on its own.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        if self.dead_letter_only(delivery, reason).await
            && let Err(err) = delivery.ack().await
        {
            tracing::warn!(%err, "could not acknowledge; it will be delivered again");
        }
    }
}

/// Why a run of a batch did not commit.
enum RunError {
    /// The event at this offset of the run cannot be applied (what became of it).
    At(usize, Done),
    /// The transaction itself failed (begin, rollback, commit).
    Transaction(String),
}
