//! The bus on NATS JetStream: one stream for every subject, a durable pull consumer per
//! (service, subject) shared by the service's replicas, explicit acks, publish de-duplication
//! by `Nats-Msg-Id`.
//!
//! Compatible with nats-server 2.9 (what the machines run) and newer: one `filter_subject` per
//! consumer, no 2.10+ fields (async-nats is built without its `server_2_10` features).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures::{FutureExt, StreamExt};

use super::{Acker, BusConfig, BusError, Delivery, OutgoingMessage};

const REQUEST_ID_HEADER: &str = "x-request-id";

/// The stream's subject filters: `<first token>.>` of every subject of the contract (derived
/// from [`SUBJECTS`](bt_contract::events::SUBJECTS), so a new event cannot be left out of the
/// stream) and `deadletter.>`.
pub fn stream_subjects() -> Vec<String> {
    let mut subjects: Vec<String> = bt_contract::events::SUBJECTS
        .iter()
        .map(|s| format!("{}.>", s.split('.').next().unwrap_or(s)))
        .collect();
    subjects.push("deadletter.>".into());
    subjects.sort();
    subjects.dedup();
    subjects
}

/// A connection to NATS with JetStream.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: BusConfig,
}

impl NatsBus {
    /// Connects to `url` and creates (or updates) the stream. Reconnects by itself afterwards.
    pub async fn connect(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("buyticket")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| BusError::Nats(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        let bus = Self { client, js, config };
        tokio::time::timeout(Duration::from_secs(15), bus.ensure_stream())
            .await
            .map_err(|_| BusError::Nats(format!("NATS at {url} did not answer within 15 s")))??;
        Ok(bus)
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The stream holds every subject of the contract and the dead letters.
    fn stream_config(&self) -> stream::Config {
        let p = &self.config.subject_prefix;
        stream::Config {
            name: self.config.stream.clone(),
            subjects: stream_subjects()
                .iter()
                .map(|s| format!("{p}{s}"))
                .collect(),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        }
    }

    async fn ensure_stream(&self) -> Result<(), BusError> {
        let config = self.stream_config();
        self.js
            .create_or_update_stream(config.clone())
            .await
            .map_err(|e| {
                let stream = &self.config.stream;
                if e.to_string().contains("overlap") {
                    BusError::Nats(format!(
                        "cannot create stream {stream}: its subjects ({}) overlap with another \
                         stream on this NATS server, i.e. another deployment uses the same \
                         subjects. Give this deployment subjects of its own with \
                         EVENT_SUBJECT_PREFIX (e.g. `{}.`), or join the other deployment by \
                         using its EVENT_STREAM and EVENT_SUBJECT_PREFIX",
                        config.subjects.join(", "),
                        stream.to_lowercase()
                    ))
                } else {
                    BusError::Nats(format!("cannot create stream {stream}: {e}"))
                }
            })?;
        Ok(())
    }

    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        self.publish_batch(std::slice::from_ref(message)).await
    }

    /// Sends every message, then awaits their acknowledgements together.
    pub async fn publish_batch(&self, messages: &[OutgoingMessage]) -> Result<(), BusError> {
        let mut acks = Vec::with_capacity(messages.len());
        for message in messages {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", message.id.as_str());
            if let Some(request_id) = &message.request_id {
                headers.insert(REQUEST_ID_HEADER, request_id.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(
                    self.config.subject(&message.subject),
                    headers,
                    message.payload.clone().into(),
                )
                .await
                .map_err(BusError::nats)?;
            acks.push(ack);
        }
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for ack in futures::future::join_all(acks).await {
            ack.map_err(BusError::nats)?;
        }
        Ok(())
    }

    fn consumer_config(&self, durable: &str, subject: &str) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: self.config.subject(subject),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            // A backstop: the consumer dead-letters long before (see `BusConfig`).
            max_deliver: self.config.max_deliver_waiting + self.config.max_deliver + 5,
            max_ack_pending: 2000,
            ..Default::default()
        }
    }

    pub async fn subscribe(
        &self,
        durable: &str,
        subject: &str,
    ) -> Result<NatsSubscription, BusError> {
        let mut sub = NatsSubscription {
            bus: self.clone(),
            durable: durable.to_owned(),
            subject: subject.to_owned(),
            messages: None,
        };
        sub.connect().await?;
        Ok(sub)
    }

    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        consumer: &str,
        reason: &str,
    ) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        let original_id = serde_json::from_slice::<serde_json::Value>(&delivery.payload)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        headers.insert(
            "Nats-Msg-Id",
            format!("{original_id}:dead:{consumer}").as_str(),
        );
        headers.insert("x-dead-letter-consumer", consumer);
        headers.insert(
            "x-dead-letter-reason",
            reason.replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert(
            "x-dead-letter-deliveries",
            delivery.delivered.to_string().as_str(),
        );
        if let Some(request_id) = &delivery.request_id {
            headers.insert(REQUEST_ID_HEADER, request_id.as_str());
        }
        let ack = self
            .js
            .publish_with_headers(
                self.config.dead_letter_subject(&delivery.subject),
                headers,
                delivery.payload.clone(),
            )
            .await
            .map_err(BusError::nats)?;
        ack.await.map_err(BusError::nats)?;
        Ok(())
    }

    /// How far `durable` is behind: messages not delivered yet plus delivered and not
    /// acknowledged; the age of the oldest of them.
    pub async fn lag(&self, durable: &str, subject: &str) -> Result<super::Lag, BusError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(BusError::nats)?;
        let mut consumer: consumer::PullConsumer =
            stream.get_consumer(durable).await.map_err(BusError::nats)?;
        let info = consumer.info().await.map_err(BusError::nats)?;
        let events = info.num_pending + info.num_ack_pending as u64;
        if events == 0 {
            return Ok(super::Lag {
                events,
                seconds: 0.0,
            });
        }
        let oldest = stream
            .raw_message_builder()
            .sequence(info.ack_floor.stream_sequence + 1)
            .next_by_subject(self.config.subject(subject))
            .send()
            .await
            .map_err(BusError::nats)?;
        let published = chrono::DateTime::<chrono::Utc>::from_timestamp(
            oldest.time.unix_timestamp(),
            oldest.time.nanosecond(),
        )
        .unwrap_or_else(chrono::Utc::now);
        let seconds = (chrono::Utc::now() - published)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64());
        Ok(super::Lag { events, seconds })
    }

    /// The payloads on `subject` published at `since` or later, then each new one as it
    /// comes, in order; and how many there were already. An ordered consumer of this process
    /// alone: nothing is acknowledged, and after a reconnect it resumes where it was.
    pub async fn follow_since(
        &self,
        subject: &str,
        since: std::time::SystemTime,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<Vec<u8>, BusError>>,
        ),
        BusError,
    > {
        use futures::StreamExt;
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(BusError::nats)?;
        let nanos = since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        let start_time = async_nats::datetime::from_nanos(nanos).map_err(BusError::nats)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.config.subject(subject),
                deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
                ..Default::default()
            })
            .await
            .map_err(BusError::nats)?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(BusError::nats)?;
        let payloads = messages.map(|message| {
            message
                .map(|m| m.message.payload.to_vec())
                .map_err(BusError::nats)
        });
        Ok((pending, payloads.boxed()))
    }

    /// Keeps following `subject` on `runtime` until it stops, from `messages` (what
    /// [`NatsBus::follow_since`] returned): each payload goes to `on_event(Some(payload))`.
    /// When the stream ends, it follows again from `since()` a second later and calls
    /// `on_event(None)`: events may have been missed in between. `what` names the follower in
    /// warnings.
    pub fn keep_following(
        &self,
        runtime: &super::Runtime,
        subject: &'static str,
        mut messages: futures::stream::BoxStream<'static, Result<Vec<u8>, BusError>>,
        since: impl Fn() -> std::time::SystemTime + Send + 'static,
        what: &'static str,
        mut on_event: impl FnMut(Option<&[u8]>) + Send + 'static,
    ) {
        let shutdown = runtime.shutdown.clone();
        let bus = self.clone();
        runtime.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => match next {
                        Some(Ok(payload)) => on_event(Some(&payload)),
                        Some(Err(err)) => {
                            tracing::warn!(%err, "following {what}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        None => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            match bus.follow_since(subject, since()).await {
                                Ok((_, again)) => {
                                    messages = again;
                                    on_event(None);
                                }
                                Err(err) => tracing::warn!(%err, "following {what}"),
                            }
                        }
                    },
                }
            }
        });
    }

    pub async fn ready(&self) -> Result<(), String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(format!("not connected ({other:?})")),
        }
    }
}

/// The messages of one durable consumer for this replica.
pub struct NatsSubscription {
    bus: NatsBus,
    durable: String,
    subject: String,
    messages: Option<consumer::pull::Stream>,
}

impl std::fmt::Debug for NatsSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSubscription")
            .field("durable", &self.durable)
            .finish()
    }
}

impl NatsSubscription {
    /// Creates or updates the durable consumer and opens its message stream.
    async fn connect(&mut self) -> Result<(), BusError> {
        let stream = self
            .bus
            .js
            .get_stream(&self.bus.config.stream)
            .await
            .map_err(BusError::nats)?;
        let consumer: consumer::PullConsumer = stream
            .create_consumer(self.bus.consumer_config(&self.durable, &self.subject))
            .await
            .map_err(|e| BusError::Nats(format!("cannot create consumer {}: {e}", self.durable)))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(500)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(BusError::nats)?;
        self.messages = Some(messages);
        Ok(())
    }

    /// The next messages, at least one and at most `max` (the first awaited, the rest what has
    /// arrived already). Outages (NATS restarting, the stream or consumer re-created) are waited
    /// out and the stream reopened.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Delivery> {
        let mut batch = vec![self.next().await];
        while batch.len() < max {
            let Some(messages) = self.messages.as_mut() else {
                break;
            };
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(self.delivery(message)),
                Some(Some(Err(err))) => {
                    tracing::warn!(durable = %self.durable, %err, "consumer stream error; reopening");
                    self.messages = None;
                    break;
                }
                Some(None) => {
                    self.messages = None;
                    break;
                }
                None => break,
            }
        }
        batch
    }

    fn delivery(&self, message: jetstream::Message) -> Delivery {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let request_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(REQUEST_ID_HEADER))
            .map(|v| v.as_str().to_owned());
        Delivery {
            subject: self.subject.clone(),
            payload: message.payload.clone(),
            request_id,
            delivered,
            acker: Acker::Nats(Box::new(message)),
        }
    }

    /// The next message. Outages (NATS restarting, the stream or consumer re-created) are
    /// waited out and the stream reopened.
    async fn next(&mut self) -> Delivery {
        let mut failures: i64 = 0;
        loop {
            if self.messages.is_none()
                && let Err(err) = self.connect().await
            {
                failures += 1;
                tracing::warn!(durable = %self.durable, %err, "cannot open the consumer; retrying");
                tokio::time::sleep(self.bus.config.backoff(failures)).await;
                continue;
            }
            let Some(messages) = self.messages.as_mut() else {
                continue;
            };
            match messages.next().await {
                Some(Ok(message)) => return self.delivery(message),
                Some(Err(err)) => {
                    failures += 1;
                    tracing::warn!(durable = %self.durable, %err, "consumer stream error; reopening");
                    self.messages = None;
                    tokio::time::sleep(self.bus.config.backoff(failures)).await;
                }
                None => {
                    self.messages = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stream_holds_every_subject_of_the_contract() {
        let filters = super::stream_subjects();
        for subject in bt_contract::events::SUBJECTS {
            assert!(
                filters
                    .iter()
                    .any(|f| subject.starts_with(f.trim_end_matches('>'))),
                "{subject} is not in {filters:?}"
            );
        }
        assert!(filters.contains(&"deadletter.>".to_owned()));
        assert!(filters.contains(&"sale.>".to_owned()));
    }
}
