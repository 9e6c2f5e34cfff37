//! The embedded default's bus: a durable event log in one SQLite file, with the semantics the
//! services rely on from JetStream — publish de-duplication by event id, durable consumers
//! shared by their subscribers, explicit acks, delayed redelivery on nak, redelivery after
//! `ack_wait` when a subscriber dies — so a crash loses nothing in one process either.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::watch;

use super::{Acker, BusConfig, BusError, Delivery, OutgoingMessage};
use crate::db::now_millis;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/local_bus");

const PUBLISH: &str = "INSERT INTO events (id, subject, payload, request_id, published_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";
const JOIN: &str = "INSERT INTO consumers (name, subject, cursor) VALUES ($1, $2, 0) ON CONFLICT (name) DO UPDATE SET subject = excluded.subject";
const DUE: &str =
    "SELECT seq, delivered FROM pending WHERE consumer = $1 AND due_at <= $2 ORDER BY seq LIMIT 1";
const REDELIVER: &str =
    "UPDATE pending SET delivered = delivered + 1, due_at = $3 WHERE consumer = $1 AND seq = $2";
const NEXT_NEW: &str = "SELECT e.seq FROM events e JOIN consumers c ON c.name = $1 WHERE e.seq > c.cursor AND e.subject = c.subject ORDER BY e.seq LIMIT 1";
const ADVANCE: &str = "UPDATE consumers SET cursor = $2 WHERE name = $1";
const HAND_OUT: &str =
    "INSERT INTO pending (consumer, seq, delivered, due_at) VALUES ($1, $2, 1, $3)";
const EVENT: &str = "SELECT payload, request_id FROM events WHERE seq = $1";
const ACK: &str = "DELETE FROM pending WHERE consumer = $1 AND seq = $2";
const NAK: &str = "UPDATE pending SET due_at = $3 WHERE consumer = $1 AND seq = $2";
const NEXT_DUE: &str = "SELECT MIN(due_at) FROM pending WHERE consumer = $1";

/// The in-process bus over its SQLite log.
#[derive(Debug, Clone)]
pub struct LocalBus {
    pool: SqlitePool,
    config: BusConfig,
    /// Bumped on every publish, so waiting subscribers look again at once.
    published: Arc<watch::Sender<u64>>,
}

impl LocalBus {
    /// Opens (creating when missing) the log at `url` (`sqlite://data/bus.db`).
    pub async fn open(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self {
            pool,
            config,
            published: Arc::new(watch::channel(0).0),
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
}

impl LocalSubscription {
    /// The next message: a redelivery that is due, else the next new event of the subject.
    pub async fn next(&mut self) -> Delivery {
        let mut failures = 0;
        loop {
            self.published.borrow_and_update();
            match self.try_next().await {
                Ok(Some(delivery)) => return delivery,
                Ok(None) => failures = 0,
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
            tokio::select! {
                _ = self.published.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        let next: Option<i64> = sqlx::query_scalar(NEXT_DUE)
            .bind(&self.durable)
            .fetch_one(&self.bus.pool)
            .await
            .unwrap_or(None);
        let max = Duration::from_secs(1);
        match next {
            Some(due) => Duration::from_millis(u64::try_from(due - now_millis()).unwrap_or(0))
                .clamp(Duration::from_millis(5), max),
            None => max,
        }
    }

    async fn try_next(&self) -> Result<Option<Delivery>, BusError> {
        let now = now_millis();
        let redeliver_at =
            now + i64::try_from(self.bus.config.ack_wait.as_millis()).unwrap_or(i64::MAX / 4);
        let mut tx = self.bus.pool.begin_with("BEGIN IMMEDIATE").await?;
        let due: Option<(i64, i64)> = sqlx::query_as(DUE)
            .bind(&self.durable)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, delivered) = match due {
            Some((seq, delivered)) => {
                sqlx::query(REDELIVER)
                    .bind(&self.durable)
                    .bind(seq)
                    .bind(redeliver_at)
                    .execute(&mut *tx)
                    .await?;
                (seq, delivered + 1)
            }
            None => {
                let next: Option<i64> = sqlx::query_scalar(NEXT_NEW)
                    .bind(&self.durable)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(seq) = next else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                sqlx::query(ADVANCE)
                    .bind(&self.durable)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(HAND_OUT)
                    .bind(&self.durable)
                    .bind(seq)
                    .bind(redeliver_at)
                    .execute(&mut *tx)
                    .await?;
                (seq, 1)
            }
        };
        let (payload, request_id): (String, Option<String>) =
            sqlx::query_as(EVENT).bind(seq).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(Delivery {
            subject: self.subject.clone(),
            payload: Bytes::from(payload),
            request_id,
            delivered,
            acker: Acker::Local(LocalAcker {
                pool: self.bus.pool.clone(),
                durable: self.durable.clone(),
                seq,
            }),
        }))
    }
}

/// Acknowledges one local delivery.
#[derive(Debug)]
pub struct LocalAcker {
    pool: SqlitePool,
    durable: String,
    seq: i64,
}

impl LocalAcker {
    pub async fn ack(&self) -> Result<(), BusError> {
        sqlx::query(ACK)
            .bind(&self.durable)
            .bind(self.seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let due = now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        sqlx::query(NAK)
            .bind(&self.durable)
            .bind(self.seq)
            .bind(due)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
