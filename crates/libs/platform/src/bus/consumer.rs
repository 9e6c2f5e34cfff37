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

const INBOX_INSERT: &str = "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

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
}

/// A handler with its event type erased, so one consumer list holds them all.
trait ErasedHandler: Send + Sync {
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
}

/// The event consumers of one service.
pub struct Consumers {
    service: &'static str,
    db: Db,
    outbox: Outbox,
    handlers: Vec<(&'static str, Arc<dyn ErasedHandler>)>,
    on_commit: Vec<Arc<tokio::sync::Notify>>,
    arrivals: Vec<crate::arrivals::Arrivals>,
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
    /// `outbox` is woken after each handler commits, for the events the handler staged.
    pub fn new(service: &'static str, db: Db, outbox: Outbox) -> Self {
        Self {
            service,
            db,
            outbox,
            handlers: Vec::new(),
            on_commit: Vec::new(),
            arrivals: Vec::new(),
        }
    }

    /// Notifies `notify` after every handler transaction that commits (e.g. to wake a
    /// scheduler that must see what a handler wrote).
    pub fn notify_on_commit(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.on_commit.push(notify);
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
        for (subject, handler) in self.handlers {
            let durable = durable_name(self.service, subject);
            let mut subscription = runtime.bus.subscribe(&durable, subject).await?;
            let worker = Worker {
                consumer: durable,
                db: self.db.clone(),
                outbox: self.outbox.clone(),
                runtime: runtime.clone(),
                handler,
                on_commit: self.on_commit.clone(),
                arrivals: self.arrivals.clone(),
            };
            let shutdown = runtime.shutdown.clone();
            runtime.tasks.spawn(async move {
                loop {
                    let delivery = tokio::select! {
                        delivery = subscription.next() => delivery,
                        () = shutdown.cancelled() => break,
                    };
                    worker.process(delivery).await;
                }
            });
        }
        Ok(())
    }
}

struct Worker {
    consumer: String,
    db: Db,
    outbox: Outbox,
    runtime: Runtime,
    handler: Arc<dyn ErasedHandler>,
    on_commit: Vec<Arc<tokio::sync::Notify>>,
    arrivals: Vec<crate::arrivals::Arrivals>,
}

impl Worker {
    async fn process(&self, delivery: Delivery) {
        let id = serde_json::from_slice::<EnvelopeId>(&delivery.payload).map(|e| e.id);
        let span = tracing::info_span!(
            "event",
            consumer = %self.consumer,
            subject = %delivery.subject,
            event_id = id.as_deref().unwrap_or("-"),
            request_id = delivery.request_id.as_deref().unwrap_or("-"),
            delivered = delivery.delivered,
        );
        let request_id = delivery.request_id.clone();
        crate::context::with_request_id(
            request_id,
            self.process_in_span(delivery, id).instrument(span),
        )
        .await;
    }

    async fn process_in_span(&self, delivery: Delivery, id: Result<String, serde_json::Error>) {
        let subject = delivery.subject.clone();
        let config = self.runtime.bus.config().clone();
        let id = match id {
            Ok(id) => id,
            Err(err) => {
                self.dead_letter(&delivery, &format!("not an event envelope: {err}"))
                    .await;
                return;
            }
        };
        match self.apply(&id, &delivery).await {
            Ok(Applied::Now) => {
                metrics::counter!("events_handled_total", "consumer" => self.consumer.clone())
                    .increment(1);
                self.ack(&delivery).await;
            }
            Ok(Applied::Before) => {
                metrics::counter!("events_duplicate_total", "consumer" => self.consumer.clone())
                    .increment(1);
                tracing::debug!("duplicate delivery, already processed");
                self.ack(&delivery).await;
            }
            Ok(Applied::NotYet(reason)) => {
                if delivery.delivered >= config.max_deliver_waiting {
                    self.dead_letter(
                        &delivery,
                        &format!(
                            "still waiting after {} deliveries: {reason}",
                            delivery.delivered
                        ),
                    )
                    .await;
                } else {
                    let delay = config
                        .backoff(delivery.delivered)
                        .min(config.max_retry_delay / 2);
                    tracing::debug!(%reason, ?delay, "not applicable yet, retrying later");
                    self.nak(&delivery, delay).await;
                }
            }
            Err(Failure::Malformed(err)) => {
                self.dead_letter(&delivery, &format!("malformed {subject} event: {err}"))
                    .await;
            }
            Err(Failure::Handler(err)) => {
                metrics::counter!("events_failed_total", "consumer" => self.consumer.clone())
                    .increment(1);
                if delivery.delivered >= config.max_deliver {
                    self.dead_letter(
                        &delivery,
                        &format!("failed {} times, last: {err}", delivery.delivered),
                    )
                    .await;
                } else {
                    let delay = config.backoff(delivery.delivered);
                    tracing::warn!(error = %err, ?delay, "event handler failed; will retry");
                    self.nak(&delivery, delay).await;
                }
            }
        }
    }

    /// Inbox row + handler in one transaction.
    async fn apply(&self, id: &str, delivery: &Delivery) -> Result<Applied, Failure> {
        let db_err = |e: sqlx::Error| Failure::Handler(Box::new(e));
        let mut tx = self.db.begin().await.map_err(db_err)?;
        let inserted = on_tx!(&mut tx, |conn| sqlx::query(INBOX_INSERT)
            .bind(&self.consumer)
            .bind(id)
            .bind(now_millis())
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))
        .map_err(db_err)?;
        if inserted == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Applied::Before);
        }
        match self.handler.call(&mut tx, &delivery.payload).await? {
            Outcome::Applied | Outcome::Skipped => {
                self.outbox.commit(tx).await.map_err(db_err)?;
                for notify in &self.on_commit {
                    notify.notify_one();
                }
                for arrivals in &self.arrivals {
                    arrivals.arrived();
                }
                Ok(Applied::Now)
            }
            Outcome::NotYet(reason) => {
                tx.rollback().await.map_err(db_err)?;
                Ok(Applied::NotYet(reason))
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(err) = delivery.ack().await {
            // The message comes again after ack_wait; the inbox makes that harmless.
            tracing::warn!(%err, "could not acknowledge; it will be delivered again");
        }
    }

    async fn nak(&self, delivery: &Delivery, delay: std::time::Duration) {
        if let Err(err) = delivery.nak(delay).await {
            tracing::warn!(%err, "could not nak; it will be delivered again after ack_wait");
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        tracing::error!(%reason, "event moved to the dead-letter subject");
        metrics::counter!("events_dead_lettered_total", "consumer" => self.consumer.clone())
            .increment(1);
        match self
            .runtime
            .bus
            .dead_letter(delivery, &self.consumer, reason)
            .await
        {
            Ok(()) => self.ack(delivery).await,
            Err(err) => {
                tracing::error!(%err, "could not dead-letter; retrying later");
                self.nak(delivery, self.runtime.bus.config().max_retry_delay)
                    .await;
            }
        }
    }
}

enum Applied {
    Now,
    Before,
    NotYet(String),
}
