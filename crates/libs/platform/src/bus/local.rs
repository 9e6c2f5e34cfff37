//! The embedded default's bus: a durable event log in one SQLite file, with the semantics the
//! services rely on from JetStream — publish de-duplication by event id, durable consumers
//! shared by their subscribers, explicit acks, delayed redelivery on nak, redelivery after
//! `ack_wait` when a subscriber dies — so a crash loses nothing in one process either.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::{Notify, watch};

use super::{Acker, BusConfig, BusError, Delivery, OutgoingMessage};
use crate::db::{Backend, anonymous_placeholders, now_millis, values_placeholders};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/local_bus");

const PUBLISH: &str = "INSERT INTO events (id, subject, payload, request_id, published_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";
const JOIN: &str = "INSERT INTO consumers (name, subject, cursor) VALUES ($1, $2, 0) ON CONFLICT (name) DO UPDATE SET subject = excluded.subject";
const DUE: &str =
    "SELECT seq, delivered FROM pending WHERE consumer = $1 AND due_at <= $2 ORDER BY seq LIMIT $3";
const NEXT_NEW: &str = "SELECT seq, payload, request_id FROM events WHERE subject = $1 AND seq > (SELECT cursor FROM consumers WHERE name = $2) ORDER BY seq LIMIT $3";
const ADVANCE: &str = "UPDATE consumers SET cursor = $2 WHERE name = $1";
/// Rows per multi-row statement (well under SQLite's limit of bound values).
const CHUNK: usize = 200;
const NAK: &str = "UPDATE pending SET due_at = $3 WHERE consumer = $1 AND seq = $2";
const NEXT_DUE: &str = "SELECT MIN(due_at) FROM pending WHERE consumer = $1";

/// How soon an idle subscription removes what its handlers acknowledged from `pending`.
const ACK_FLUSH: Duration = Duration::from_secs(1);

/// How long an idle subscription waits at most with nothing to hand out, no acknowledgement to
/// write and no redelivery due. Every change it waits for wakes it (a publish, an ack, a nak,
/// and the redeliveries due in `pending`, whose time it knows): this bound is only a last
/// resort. Before, it looked every second: 23 subscriptions of an idle `up` made 1–7% of a core
/// busy (BENCHMARKS.md, issue 16 part 14).
const IDLE_LOOK: Duration = Duration::from_secs(30);

/// The in-process bus over its SQLite log.
#[derive(Debug, Clone)]
pub struct LocalBus {
    pool: SqlitePool,
    config: BusConfig,
    /// Bumped on every publish, so waiting subscribers look again at once.
    published: Arc<watch::Sender<u64>>,
    /// Looks at the log by subscriptions (transactions of [`LocalSubscription::next_batch`]).
    looks: Arc<AtomicU64>,
}

impl LocalBus {
    /// Opens (creating when missing) the log at `url` (`sqlite://data/bus.db`).
    pub async fn open(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let options = SqliteConnectOptions::from_str(url)?;
        crate::db::private_file(options.get_filename()).map_err(sqlx::Error::Io)?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = crate::db::sqlite_pool()
            .max_connections(1)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self {
            pool,
            config,
            published: Arc::new(watch::channel(0).0),
            looks: Arc::default(),
        })
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), BusError> {
        self.append(
            &message.id,
            &message.subject,
            &message.payload,
            message.request_id.as_deref(),
        )
        .await
    }

    /// Publishes `messages` in one transaction of the log. Publishing an id again stores it once.
    pub async fn publish_batch(&self, messages: &[OutgoingMessage]) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in messages.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO events (id, subject, payload, request_id, published_at) VALUES {} ON CONFLICT (id) DO NOTHING",
                values_placeholders(Backend::Sqlite, chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for message in chunk {
                query = query
                    .bind(&message.id)
                    .bind(&message.subject)
                    .bind(&message.payload)
                    .bind(&message.request_id)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.published.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn append(
        &self,
        id: &str,
        subject: &str,
        payload: &str,
        request_id: Option<&str>,
    ) -> Result<(), BusError> {
        sqlx::query(PUBLISH)
            .bind(id)
            .bind(subject)
            .bind(payload)
            .bind(request_id)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        self.published.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    pub async fn subscribe(
        &self,
        durable: &str,
        subject: &str,
    ) -> Result<LocalSubscription, BusError> {
        sqlx::query(JOIN)
            .bind(durable)
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(LocalSubscription {
            bus: self.clone(),
            durable: durable.to_owned(),
            subject: subject.to_owned(),
            published: self.published.subscribe(),
            handled: Arc::default(),
        })
    }

    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        consumer: &str,
        reason: &str,
    ) -> Result<(), BusError> {
        let id = serde_json::from_slice::<serde_json::Value>(&delivery.payload)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let payload = String::from_utf8_lossy(&delivery.payload);
        tracing::error!(consumer, reason, "dead letter");
        self.append(
            &format!("{id}:dead:{consumer}"),
            &format!("deadletter.{}", delivery.subject),
            &payload,
            delivery.request_id.as_deref(),
        )
        .await
    }

    /// How far `durable` is behind: events not handed out yet plus those handed out and not
    /// acknowledged (acknowledgements are written within a second, so this may count a few
    /// acknowledged ones for that long).
    pub async fn lag(&self, durable: &str, subject: &str) -> Result<super::Lag, BusError> {
        let unread: (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(published_at) FROM events WHERE subject = $1 AND seq > (SELECT cursor FROM consumers WHERE name = $2)",
        )
        .bind(subject)
        .bind(durable)
        .fetch_one(&self.pool)
        .await?;
        let unacked: (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(e.published_at) FROM pending p JOIN events e ON e.seq = p.seq WHERE p.consumer = $1",
        )
        .bind(durable)
        .fetch_one(&self.pool)
        .await?;
        let oldest = match (unread.1, unacked.1) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(super::Lag {
            events: u64::try_from(unread.0 + unacked.0).unwrap_or(0),
            seconds: oldest.map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1e3),
        })
    }

    pub async fn ready(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Every payload published on `subject` (for tests and inspection of dead letters).
    pub async fn payloads(&self, subject: &str) -> Result<Vec<String>, BusError> {
        Ok(
            sqlx::query_scalar("SELECT payload FROM events WHERE subject = $1 ORDER BY seq")
                .bind(subject)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// The messages of one durable consumer for this subscriber.
#[derive(Debug)]
pub struct LocalSubscription {
    bus: LocalBus,
    durable: String,
    subject: String,
    published: watch::Receiver<u64>,
    handled: Arc<Handled>,
}

/// What a subscription's handlers did with its deliveries since it last looked at the log.
#[derive(Debug, Default)]
struct Handled {
    /// Acknowledged, not yet removed from `pending`: removed in the subscription's next
    /// transaction of the log (the next batch, or within [`ACK_FLUSH`] when idle).
    acked: std::sync::Mutex<Vec<i64>>,
    /// An acknowledgement was deferred: an idle subscription writes it within [`ACK_FLUSH`].
    ack: Notify,
    /// A delivery was put back with a delay: an idle subscription looks again, to wait for it.
    nak: Notify,
}

impl Handled {
    fn acked(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LocalSubscription {
    /// The next messages, at least one and at most `max`: redeliveries that are due, then the
    /// next new events of the subject, in log order.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Delivery> {
        let mut failures = 0;
        loop {
            self.published.borrow_and_update();
            match self.try_next_batch(max).await {
                Ok(batch) if !batch.is_empty() => return batch,
                Ok(_) => failures = 0,
                Err(err) => {
                    failures += 1;
                    tracing::warn!(durable = %self.durable, %err, "event log read failed; retrying");
                }
            }
            let wait = if failures > 0 {
                self.bus.config.backoff(failures)
            } else {
                self.until_next_due().await
            };
            self.idle(wait).await;
        }
    }

    /// Waits `wait` at most, less if an event is published, a delivery is put back, or an
    /// acknowledgement is to be written ([`ACK_FLUSH`]).
    async fn idle(&mut self, wait: Duration) {
        let mut until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = self.published.changed() => return,
                () = self.handled.nak.notified() => return,
                () = tokio::time::sleep_until(until) => return,
                // Every deferred ack notifies: one made since the last look has left a permit.
                () = self.handled.ack.notified() => {
                    // Possibly for an ack written already (by the last look).
                    if !self.handled.acked().is_empty() {
                        until = until.min(tokio::time::Instant::now() + ACK_FLUSH);
                    }
                }
            }
        }
    }

    /// Until the next redelivery is due ([`IDLE_LOOK`] at most; acknowledgements shorten the
    /// wait in [`Self::idle`]).
    async fn until_next_due(&self) -> Duration {
        let next: Option<i64> = sqlx::query_scalar(NEXT_DUE)
            .bind(&self.durable)
            .fetch_one(&self.bus.pool)
            .await
            .unwrap_or(None);
        match next {
            Some(due) => Duration::from_millis(u64::try_from(due - now_millis()).unwrap_or(0))
                .clamp(Duration::from_millis(5), IDLE_LOOK),
            None => IDLE_LOOK,
        }
    }

    /// Removes what was acknowledged from `pending` now (at shutdown).
    pub async fn flush_acks(&self) -> Result<(), BusError> {
        let acked = std::mem::take(&mut *self.handled.acked());
        if acked.is_empty() {
            return Ok(());
        }
        let mut tx = self.bus.pool.begin_with("BEGIN IMMEDIATE").await?;
        delete_pending(&mut tx, &self.durable, &acked).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Hands out up to `max` messages in one transaction of the log.
    async fn try_next_batch(&self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let now = now_millis();
        let redeliver_at =
            now + i64::try_from(self.bus.config.ack_wait.as_millis()).unwrap_or(i64::MAX / 4);
        self.bus.looks.fetch_add(1, Ordering::Relaxed);
        let mut tx = self.bus.pool.begin_with("BEGIN IMMEDIATE").await?;
        let acked = std::mem::take(&mut *self.handled.acked());
        if let Err(err) = delete_pending(&mut tx, &self.durable, &acked).await {
            // Kept for the next transaction.
            self.handled.acked().extend(acked);
            return Err(err);
        }
        let flushed = !acked.is_empty();
        let due: Vec<(i64, i64)> = sqlx::query_as(DUE)
            .bind(&self.durable)
            .bind(now)
            .bind(max)
            .fetch_all(&mut *tx)
            .await?;
        let mut handed: Vec<(i64, i64)> = due
            .iter()
            .map(|(seq, delivered)| (*seq, delivered + 1))
            .collect();
        for chunk in due.chunks(CHUNK) {
            let sql = format!(
                "UPDATE pending SET delivered = delivered + 1, due_at = ? WHERE consumer = ? AND seq IN ({})",
                anonymous_placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(redeliver_at).bind(&self.durable);
            for (seq, _) in chunk {
                query = query.bind(seq);
            }
            query.execute(&mut *tx).await?;
        }
        // Redeliveries' payloads (rare), then the new events with theirs in one query.
        let mut rows: Vec<(i64, String, Option<String>)> = Vec::new();
        if !handed.is_empty() {
            let sql = format!(
                "SELECT seq, payload, request_id FROM events WHERE seq IN ({})",
                anonymous_placeholders(handed.len())
            );
            let mut query = sqlx::query_as::<_, (i64, String, Option<String>)>(&sql);
            for (seq, _) in &handed {
                query = query.bind(seq);
            }
            rows = query.fetch_all(&mut *tx).await?;
        }
        let room = max - handed.len() as i64;
        if room > 0 {
            let new: Vec<(i64, String, Option<String>)> = sqlx::query_as(NEXT_NEW)
                .bind(&self.subject)
                .bind(&self.durable)
                .bind(room)
                .fetch_all(&mut *tx)
                .await?;
            if let Some((last, _, _)) = new.last() {
                sqlx::query(ADVANCE)
                    .bind(&self.durable)
                    .bind(last)
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in new.chunks(CHUNK) {
                let sql = format!(
                    "INSERT INTO pending (consumer, seq, delivered, due_at) VALUES {}",
                    values_placeholders(Backend::Sqlite, chunk.len(), 4)
                );
                let mut query = sqlx::query(&sql);
                for (seq, _, _) in chunk {
                    query = query
                        .bind(&self.durable)
                        .bind(seq)
                        .bind(1_i64)
                        .bind(redeliver_at);
                }
                query.execute(&mut *tx).await?;
            }
            handed.extend(new.iter().map(|(seq, _, _)| (*seq, 1)));
            rows.extend(new);
        }
        if handed.is_empty() {
            if flushed {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            return Ok(Vec::new());
        }
        rows.sort_unstable_by_key(|(seq, _, _)| *seq);
        tx.commit().await?;
        let delivered: std::collections::HashMap<i64, i64> = handed.into_iter().collect();
        Ok(rows
            .into_iter()
            .map(|(seq, payload, request_id)| Delivery {
                subject: self.subject.clone(),
                payload: Bytes::from(payload),
                request_id,
                delivered: delivered.get(&seq).copied().unwrap_or(1),
                acker: Acker::Local(LocalAcker {
                    pool: self.bus.pool.clone(),
                    durable: self.durable.clone(),
                    seq,
                    handled: self.handled.clone(),
                }),
            })
            .collect())
    }
}

/// Acknowledges local deliveries: each is removed from `pending` in its subscription's next
/// transaction of the log (no transaction of its own).
pub(crate) async fn ack_local(ackers: &[&LocalAcker]) -> Result<(), BusError> {
    for acker in ackers {
        acker.defer_ack();
    }
    Ok(())
}

/// Removes acknowledged deliveries of `durable` from `pending`, inside `tx`.
async fn delete_pending(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    durable: &str,
    seqs: &[i64],
) -> Result<(), BusError> {
    for chunk in seqs.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM pending WHERE consumer = ? AND seq IN ({})",
            anonymous_placeholders(chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(durable);
        for seq in chunk {
            query = query.bind(seq);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Acknowledges one local delivery.
#[derive(Debug)]
pub struct LocalAcker {
    pool: SqlitePool,
    durable: String,
    seq: i64,
    handled: Arc<Handled>,
}

impl LocalAcker {
    /// Done: removed from `pending` with the subscription's next transaction of the log (a
    /// redelivery meanwhile, after a crash, is harmless: consumers keep an inbox).
    pub async fn ack(&self) -> Result<(), BusError> {
        self.defer_ack();
        Ok(())
    }

    fn defer_ack(&self) {
        self.handled.acked().push(self.seq);
        self.handled.ack.notify_one();
    }

    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let due = now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        sqlx::query(NAK)
            .bind(&self.durable)
            .bind(self.seq)
            .bind(due)
            .execute(&self.pool)
            .await?;
        self.handled.nak.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bus(dir: &tempfile::TempDir) -> LocalBus {
        let url = format!("sqlite://{}", dir.path().join("bus.db").display());
        LocalBus::open(&url, BusConfig::default()).await.unwrap()
    }

    fn message(n: u32) -> OutgoingMessage {
        OutgoingMessage {
            id: format!("event-{n}"),
            subject: "things.created".into(),
            payload: format!(r#"{{"id":"event-{n}"}}"#),
            request_id: None,
        }
    }

    fn looks(bus: &LocalBus) -> u64 {
        bus.looks.load(Ordering::Relaxed)
    }

    /// Subscriptions with nothing to do wait for something to happen (here a publish, which
    /// each gets at once) instead of looking at the log every second.
    #[tokio::test]
    async fn idle_subscriptions_do_not_look_at_the_log_until_something_happens() {
        let dir = tempfile::tempdir().unwrap();
        let bus = bus(&dir).await;
        let mut waiting = Vec::new();
        for n in 0..3 {
            let mut subscription = bus
                .subscribe(&format!("consumer-{n}"), "things.created")
                .await
                .unwrap();
            waiting.push(tokio::spawn(
                async move { subscription.next_batch(10).await },
            ));
        }
        // Each looks once, finds nothing and waits.
        while looks(&bus) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(looks(&bus), 3, "no look while nothing happened");
        bus.publish(&message(1)).await.unwrap();
        for task in waiting {
            let batch = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("woken by the publish")
                .unwrap();
            assert_eq!(batch.len(), 1);
        }
    }

    /// An acknowledgement made while the subscription waits with nothing due (its next look
    /// would be `IDLE_LOOK` away) is written within `ACK_FLUSH`.
    #[tokio::test]
    async fn an_ack_made_while_idle_is_written_soon() {
        let dir = tempfile::tempdir().unwrap();
        let bus = bus(&dir).await;
        let mut subscription = bus.subscribe("consumer", "things.created").await.unwrap();
        bus.publish(&message(1)).await.unwrap();
        let batch = subscription.next_batch(10).await;
        let next = tokio::spawn(async move { subscription.next_batch(10).await });
        while looks(&bus) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        batch[0].ack().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while bus.lag("consumer", "things.created").await.unwrap().events > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ack is written within a second or so, not after IDLE_LOOK"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!next.is_finished(), "nothing to hand out");
        next.abort();
    }

    /// An idle subscription writes what its handlers acknowledged, and hands out again what
    /// they put back once its delay is over.
    #[tokio::test]
    async fn an_idle_subscription_writes_its_acks_and_hands_out_what_was_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let bus = bus(&dir).await;
        let mut subscription = bus.subscribe("consumer", "things.created").await.unwrap();
        bus.publish_batch(&[message(1), message(2)]).await.unwrap();
        let batch = subscription.next_batch(10).await;
        assert_eq!(batch.len(), 2);
        let (done, again) = (&batch[0], &batch[1]);
        // The subscription waits (nothing new, the redelivery due after `ack_wait`, 30 s)
        // while the handlers finish.
        let next = tokio::spawn(async move { subscription.next_batch(10).await });
        while looks(&bus) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done.ack().await.unwrap();
        again.nak(Duration::from_millis(300)).await.unwrap();
        let redelivered = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("handed out again after its delay, not after the 30 s of `ack_wait`")
            .unwrap();
        assert_eq!(redelivered.len(), 1);
        assert_eq!(&redelivered[0].payload[..], again.payload.as_ref());
        assert_eq!(redelivered[0].delivered, 2);
        // Only the redelivered event is still unacknowledged: the ack was written.
        let lag = bus.lag("consumer", "things.created").await.unwrap();
        assert_eq!(lag.events, 1);
    }
}
