//! Events between services (ARCHITECTURE §4), built once so every service gets the guarantees.
//!
//! - [`Outbox`]: a service stages an event in the transaction of the change it announces; a
//!   relay publishes pending rows (woken at commit, polling as a fallback) with the event id as
//!   the message id, and marks them sent. A crash between commit and publish loses nothing.
//! - [`Consumers`]: typed handlers ([`Handle`]) run in a transaction that also records
//!   `(consumer, event id)` in the inbox, so a redelivery changes nothing; acknowledged after
//!   commit; retried with a delay on failure or on a version gap ([`version`]); dead-lettered
//!   after a bounded number of deliveries.
//! - [`Bus`]: where events travel — NATS JetStream ([`nats`]; one stream, durable pull
//!   consumers shared by a service's replicas) or, in the embedded default, a durable
//!   in-process log in one SQLite file ([`local`]) with the same at-least-once semantics.

pub mod consumer;
pub mod local;
pub mod nats;
pub mod outbox;
pub mod version;

use std::time::Duration;

use axum::body::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use consumer::{Consumers, Handle, HandlerError, HandlerResult, Outcome};
pub use outbox::Outbox;

use crate::http::Check;

/// How events travel and are retried.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Put before every subject (`""` in production, so subjects are the contract's
    /// `ticket.created`...; tests use a unique prefix such as `t0193.`).
    pub subject_prefix: String,
    /// The JetStream stream that holds every event.
    pub stream: String,
    /// Deliveries of a message whose handler fails before it goes to the dead-letter subject.
    pub max_deliver: i64,
    /// Deliveries of a message that waits for an earlier version before it is dead-lettered.
    pub max_deliver_waiting: i64,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// First retry delay after a failure (doubles per delivery, up to `max_retry_delay`).
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// How long the relay sleeps between polls when nothing wakes it.
    pub poll_interval: Duration,
    /// The most events a consumer applies in one transaction (one batch of the bus).
    pub consumer_batch: usize,
    /// How many transactions apply a batch concurrently on PostgreSQL (events split by the
    /// record they change; one record's events stay in one partition, in order). SQLite always
    /// uses one.
    pub consumer_partitions: usize,
    /// The longest the relay holds committed events while this process is answering a burst
    /// of requests (`relay_busy` or more started within the last 40 ms), so that the burst is
    /// answered before the events it caused are applied on the same cores
    /// ([`crate::http::Requests::quiet`]). Zero: never held.
    pub relay_yield: Duration,
    /// Requests started within the last 40 ms from which the process counts as busy (40: a
    /// thousand requests a second). 0: never busy.
    pub relay_busy: u64,
    /// A consumer further behind than this is logged (once, until it catches up).
    pub lag_warning: Duration,
    /// How often each consumer's lag is measured (for `/metrics`, `/readyz` and the log).
    pub lag_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            subject_prefix: String::new(),
            stream: "BUYTICKET".into(),
            max_deliver: 5,
            max_deliver_waiting: 60,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            consumer_batch: 256,
            consumer_partitions: 4,
            relay_yield: Duration::from_millis(250),
            relay_busy: 40,
            lag_warning: Duration::from_secs(10),
            lag_interval: Duration::from_secs(5),
        }
    }
}

impl BusConfig {
    /// The full subject of a contract subject.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}{subject}", self.subject_prefix)
    }

    /// Where messages that kept failing go: `deadletter.<subject>`.
    pub fn dead_letter_subject(&self, subject: &str) -> String {
        format!("{}deadletter.{subject}", self.subject_prefix)
    }

    /// The delay before redelivering after `delivered` failed deliveries.
    pub fn backoff(&self, delivered: i64) -> Duration {
        let exp = u32::try_from(delivered.clamp(1, 16) - 1).unwrap_or(0);
        self.retry_delay
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max_retry_delay)
    }
}

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("event log: {0}")]
    Local(#[from] sqlx::Error),
    #[error("event log: {0}")]
    LocalMigrate(#[from] sqlx::migrate::MigrateError),
}

impl BusError {
    pub(crate) fn nats(err: impl std::fmt::Display) -> Self {
        Self::Nats(err.to_string())
    }
}

/// An event on its way out: what the relay hands to the bus.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: String,
    /// The contract subject, without prefix.
    pub subject: String,
    pub payload: String,
    pub request_id: Option<String>,
}

/// How far a durable consumer is behind.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Lag {
    /// Events published and not yet acknowledged by the consumer.
    pub events: u64,
    /// How long ago the oldest of them was published (0 when none).
    pub seconds: f64,
}

/// The latest lag of every consumer of a process, for `/readyz`.
pub type LagBoard = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Lag>>>;

/// Where events travel.
#[derive(Debug, Clone)]
pub enum Bus {
    Nats(Box<nats::NatsBus>),
    Local(Box<local::LocalBus>),
}

impl Bus {
    pub fn config(&self) -> &BusConfig {
        match self {
            Self::Nats(bus) => bus.config(),
            Self::Local(bus) => bus.config(),
        }
    }

    /// Publishes one event and waits until the bus has stored it. Publishing the same id twice
    /// stores it once.
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        match self {
            Self::Nats(bus) => bus.publish(message).await,
            Self::Local(bus) => bus.publish(message).await,
        }
    }

    /// Publishes `messages` and waits until the bus has stored them all (NATS: sent together,
    /// acknowledgements awaited together; in-process: one transaction of the log). On an error
    /// some may have been stored: publishing them again stores each once.
    pub async fn publish_batch(&self, messages: &[OutgoingMessage]) -> Result<(), BusError> {
        match self {
            Self::Nats(bus) => bus.publish_batch(messages).await,
            Self::Local(bus) => bus.publish_batch(messages).await,
        }
    }

    /// Joins (creating or updating) the durable consumer `durable` of `subject`. Every
    /// subscriber of one durable consumer gets a share of its messages, each message once.
    pub async fn subscribe(&self, durable: &str, subject: &str) -> Result<Subscription, BusError> {
        match self {
            Self::Nats(bus) => bus
                .subscribe(durable, subject)
                .await
                .map(|s| Subscription::Nats(Box::new(s))),
            Self::Local(bus) => bus
                .subscribe(durable, subject)
                .await
                .map(|s| Subscription::Local(Box::new(s))),
        }
    }

    /// How far durable consumer `durable` of `subject` is behind.
    pub async fn lag(&self, durable: &str, subject: &str) -> Result<Lag, BusError> {
        match self {
            Self::Nats(bus) => bus.lag(durable, subject).await,
            Self::Local(bus) => bus.lag(durable, subject).await,
        }
    }

    /// Copies a message that cannot be processed to `deadletter.<subject>`.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        consumer: &str,
        reason: &str,
    ) -> Result<(), BusError> {
        match self {
            Self::Nats(bus) => bus.dead_letter(delivery, consumer, reason).await,
            Self::Local(bus) => bus.dead_letter(delivery, consumer, reason).await,
        }
    }

    /// `/readyz`: the bus is reachable.
    pub fn readiness(&self) -> Check {
        match self.clone() {
            Self::Nats(bus) => Check::new("event bus (NATS)", move || {
                let bus = bus.clone();
                async move { bus.ready().await }
            }),
            Self::Local(bus) => Check::new("event bus (local)", move || {
                let bus = bus.clone();
                async move { bus.ready().await }
            }),
        }
    }
}

/// The messages of one durable consumer, as this subscriber receives them.
#[derive(Debug)]
pub enum Subscription {
    Nats(Box<nats::NatsSubscription>),
    Local(Box<local::LocalSubscription>),
}

impl Subscription {
    /// The next message; waits until there is one. Transient bus failures are retried inside.
    pub async fn next(&mut self) -> Delivery {
        loop {
            if let Some(delivery) = self.next_batch(1).await.into_iter().next() {
                return delivery;
            }
        }
    }

    /// The next messages, at least one and at most `max` (what is available now); waits until
    /// there is one. Transient bus failures are retried inside.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Delivery> {
        match self {
            Self::Nats(sub) => sub.next_batch(max).await,
            Self::Local(sub) => sub.next_batch(max).await,
        }
    }
}

impl Subscription {
    /// Finishes what is left to do for acknowledged messages (before shutdown).
    pub async fn close(&mut self) {
        if let Self::Local(sub) = self
            && let Err(err) = sub.flush_acks().await
        {
            tracing::warn!(%err, "acknowledgements not written; those events come again (harmlessly)");
        }
    }
}

/// Acknowledges `deliveries` (of one subscription) together.
pub async fn ack_all(deliveries: &[&Delivery]) -> Result<(), BusError> {
    let mut local = Vec::new();
    for delivery in deliveries {
        match &delivery.acker {
            Acker::Nats(message) => message.ack().await.map_err(BusError::nats)?,
            Acker::Local(acker) => local.push(acker),
        }
    }
    local::ack_local(&local).await
}

/// One delivery of one message.
#[derive(Debug)]
pub struct Delivery {
    /// The contract subject, without prefix.
    pub subject: String,
    pub payload: Bytes,
    pub request_id: Option<String>,
    /// How many times this message has been delivered, this time included.
    pub delivered: i64,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    Nats(Box<async_nats::jetstream::Message>),
    Local(local::LocalAcker),
}

impl Delivery {
    /// Done: never deliver it again.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(message) => message.ack().await.map_err(BusError::nats),
            Acker::Local(acker) => acker.ack().await,
        }
    }

    /// Not done: deliver it again after `delay`.
    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(message) => message
                .ack_with(async_nats::jetstream::AckKind::Nak(Some(delay)))
                .await
                .map_err(BusError::nats),
            Acker::Local(acker) => acker.nak(delay).await,
        }
    }
}

/// What a service's background work runs with: the bus, the shutdown signal, and the tracker
/// that shutdown waits on.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub bus: Bus,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// The consumers' latest lag (kept by [`Consumers`]).
    pub lag: LagBoard,
}

impl Runtime {
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            lag: LagBoard::default(),
        }
    }

    /// `/readyz`: the bus is reachable; the detail shows how far each consumer is behind.
    pub fn readiness(&self) -> Check {
        let board = self.lag.clone();
        self.bus.readiness().with_detail("consumers", move || {
            let lag = board.lock().unwrap_or_else(|e| e.into_inner()).clone();
            serde_json::to_value(lag).unwrap_or_default()
        })
    }

    /// Signals every background task to stop and waits until they have (relays flush first).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let config = BusConfig::default();
        let delays: Vec<u128> = (1..=8).map(|n| config.backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(config.backoff(1_000_000).as_millis(), 5000);
    }

    #[test]
    fn subjects_get_the_prefix() {
        let config = BusConfig {
            subject_prefix: "t1.".into(),
            ..BusConfig::default()
        };
        assert_eq!(config.subject("order.created"), "t1.order.created");
        assert_eq!(
            config.dead_letter_subject("order.created"),
            "t1.deadletter.order.created"
        );
    }
}
