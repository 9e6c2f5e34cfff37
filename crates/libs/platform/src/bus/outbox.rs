//! The transactional outbox and its relay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bt_contract::events::{Envelope, Event};
use tokio::sync::Notify;

use super::{Bus, BusError, OutgoingMessage, Runtime};
use crate::db::{
    Backend, Db, Tx, anonymous_placeholders, list_placeholders, now_millis, values_placeholders,
};
use crate::{on_db, on_tx};

/// Rows the relay publishes per batch.
const BATCH: i64 = 500;
/// Sent rows are kept this long (for inspection), then deleted.
const KEEP_SENT: Duration = Duration::from_secs(3600);
/// Inbox rows are kept this long: longer than any redelivery can come (the stream keeps
/// events 7 days).
const KEEP_INBOX: Duration = Duration::from_secs(8 * 24 * 3600);

const INSERT: &str = "INSERT INTO outbox (id, subject, payload, request_id, created_at) VALUES";
const PENDING: &str = "SELECT seq, id, subject, payload, request_id FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1";
const DELETE_SENT: &str = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1";
const DELETE_INBOX: &str = "DELETE FROM inbox WHERE processed_at < $1";
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

/// One outbox row to insert: the envelope's id, the envelope as JSON, the request id it carries.
type StagedRow = (String, String, Option<String>);

fn row<E: Event>(envelope: &Envelope<E>, request_id: Option<String>) -> sqlx::Result<StagedRow> {
    let payload = serde_json::to_string(envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok((envelope.id.to_string(), payload, request_id))
}

/// Inserts `rows` of events `E` with one statement, in their order (`seq` follows it).
async fn insert_rows<E: Event>(tx: &mut Tx, rows: &[StagedRow]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT} {}",
        values_placeholders(tx.backend(), rows.len(), 5)
    );
    let now = now_millis();
    on_tx!(tx, |conn| {
        let mut query = sqlx::query(&sql);
        for (id, payload, request_id) in rows {
            query = query
                .bind(id)
                .bind(E::SUBJECT)
                .bind(payload)
                .bind(request_id)
                .bind(now);
        }
        query.execute(conn).await.map(drop)
    })?;
    metrics::counter!("events_staged_total", "subject" => E::SUBJECT).increment(rows.len() as u64);
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct PendingRow {
    seq: i64,
    id: String,
    subject: String,
    payload: String,
    request_id: Option<String>,
}

/// A service's outbox: stage events in a transaction, commit, and the relay publishes them.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Db,
    wake: Arc<Notify>,
    commits: Arc<AtomicU64>,
    /// Rows staged so far, committed or not: see [`Outbox::commit_staged_since`].
    staged: Arc<AtomicU64>,
    wakes: Arc<AtomicU64>,
}

impl Outbox {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
            commits: Arc::new(AtomicU64::new(0)),
            staged: Arc::new(AtomicU64::new(0)),
            wakes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many transactions committed through [`Outbox::commit`] so far (the HTTP handlers'
    /// and the event handlers' alike): a change counter for in-memory copies of what those
    /// transactions write. Read it before reading the database; a copy made from that read is
    /// current for as long as the counter has not moved.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// Writes `event` into the outbox as part of `tx`; it is published only if `tx` commits.
    /// Carries the current request id (see [`crate::context`]).
    pub async fn stage<E: Event>(&self, tx: &mut Tx, event: E) -> sqlx::Result<Envelope<E>> {
        let envelope = Envelope::new(event);
        self.insert::<E>(tx, &[row(&envelope, crate::context::request_id())?])
            .await?;
        Ok(envelope)
    }

    /// Stages `events` (each with the request id it carries) in `tx` with one statement, in
    /// the given order: one round trip for a batch.
    pub async fn stage_all<E: Event>(
        &self,
        tx: &mut Tx,
        events: Vec<(E, Option<String>)>,
    ) -> sqlx::Result<()> {
        let rows = events
            .into_iter()
            .map(|(event, request_id)| row(&Envelope::new(event), request_id))
            .collect::<sqlx::Result<Vec<_>>>()?;
        self.insert::<E>(tx, &rows).await
    }

    /// Inserts `rows` of events `E` in `tx`, counted as staged ([`Outbox::staged`]).
    async fn insert<E: Event>(&self, tx: &mut Tx, rows: &[StagedRow]) -> sqlx::Result<()> {
        insert_rows::<E>(tx, rows).await?;
        self.staged.fetch_add(rows.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Commits `tx` and wakes the relay.
    pub async fn commit(&self, tx: Tx) -> sqlx::Result<()> {
        self.commit_only(tx).await?;
        self.wake();
        Ok(())
    }

    /// Commits `tx` and counts the commit ([`Outbox::commits`]), without waking the relay.
    async fn commit_only(&self, tx: Tx) -> sqlx::Result<()> {
        tx.commit().await?;
        self.commits.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// How many rows were staged through this outbox so far, in transactions committed or
    /// not: read before a transaction begins, for [`Outbox::commit_staged_since`].
    pub fn staged(&self) -> u64 {
        self.staged.load(Ordering::Acquire)
    }

    /// Commits `tx` and wakes the relay only if rows were staged since `since`, a
    /// [`Outbox::staged`] read before `tx` began: a transaction that may stage nothing (an
    /// event handler that only updates its replica) then costs the relay no look at the
    /// outbox. Rows that another transaction staged meanwhile wake it too, which is one look
    /// too many at worst, never an event left waiting for the relay's next poll.
    pub async fn commit_staged_since(&self, tx: Tx, since: u64) -> sqlx::Result<()> {
        self.commit_only(tx).await?;
        if self.staged() != since {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the relay (after a commit that staged events).
    pub fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// How many times the relay was woken so far ([`Outbox::wake`]): each wake costs it a
    /// look at the outbox.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Rows not published yet.
    pub async fn pending(&self) -> sqlx::Result<i64> {
        on_db!(&self.db, |pool| sqlx::query_scalar::<_, i64>(COUNT_PENDING)
            .fetch_one(pool)
            .await)
    }

    /// Publishes pending rows in order, a batch at a time (published together, then marked
    /// sent with one statement), until none is left or the bus fails; returns how many were
    /// published.
    pub async fn relay_once(&self, bus: &Bus) -> Result<usize, BusError> {
        let mut published = 0;
        loop {
            let rows: Vec<PendingRow> = on_db!(&self.db, |pool| sqlx::query_as(PENDING)
                .bind(BATCH)
                .fetch_all(pool)
                .await)?;
            if rows.is_empty() {
                return Ok(published);
            }
            let full = rows.len() as i64 == BATCH;
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let messages: Vec<OutgoingMessage> = rows
                .into_iter()
                .map(|row| OutgoingMessage {
                    id: row.id,
                    subject: row.subject,
                    payload: row.payload,
                    request_id: row.request_id,
                })
                .collect();
            bus.publish_batch(&messages).await?;
            // Marked by their own seqs: a row with a lower seq that committed after this batch
            // was read is still pending, never marked without being published.
            // Anonymous on SQLite, as `values_placeholders` says why: up to 501 parameters.
            let sql = match self.db.backend() {
                Backend::Sqlite => format!(
                    "UPDATE outbox SET sent_at = ? WHERE seq IN ({})",
                    anonymous_placeholders(seqs.len())
                ),
                Backend::Postgres => format!(
                    "UPDATE outbox SET sent_at = $1 WHERE seq IN ({})",
                    list_placeholders(seqs.len(), 2)
                ),
            };
            let now = now_millis();
            let _turn = self.db.write_turn().await?;
            on_db!(&self.db, |pool| {
                let mut query = sqlx::query(&sql).bind(now);
                for seq in &seqs {
                    query = query.bind(seq);
                }
                query.execute(pool).await.map(drop)
            })?;
            for message in &messages {
                metrics::counter!("events_published_total", "subject" => message.subject.clone())
                    .increment(1);
            }
            published += messages.len();
            if !full {
                return Ok(published);
            }
        }
    }

    /// Deletes sent outbox rows and old inbox rows.
    pub async fn housekeeping(&self) -> sqlx::Result<()> {
        let now = now_millis();
        let sent_before = now - KEEP_SENT.as_millis() as i64;
        let inbox_before = now - KEEP_INBOX.as_millis() as i64;
        let _turn = self.db.write_turn().await?;
        on_db!(&self.db, |pool| sqlx::query(DELETE_SENT)
            .bind(sent_before)
            .execute(pool)
            .await
            .map(drop))?;
        on_db!(&self.db, |pool| sqlx::query(DELETE_INBOX)
            .bind(inbox_before)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Starts the relay: publishes right after each commit that wakes it (once the process is
    /// not answering a burst of requests, at most `relay_yield` later: [`crate::http::Requests::quiet`]),
    /// polls as a fallback, retries with backoff while the bus is down, and flushes once more
    /// at shutdown.
    pub fn spawn_relay(&self, runtime: &Runtime, service: &'static str) {
        let outbox = self.clone();
        let bus = runtime.bus.clone();
        let shutdown = runtime.shutdown.clone();
        runtime.tasks.spawn(async move {
            let poll = bus.config().poll_interval;
            let mut failures: i64 = 0;
            let mut last_housekeeping = std::time::Instant::now();
            loop {
                match outbox.relay_once(&bus).await {
                    Ok(_) => failures = 0,
                    Err(err) => {
                        failures += 1;
                        metrics::counter!("outbox_relay_errors_total", "service" => service).increment(1);
                        tracing::warn!(service, %err, failures, "outbox relay could not publish; will retry");
                    }
                }
                if last_housekeeping.elapsed() > Duration::from_secs(600) {
                    last_housekeeping = std::time::Instant::now();
                    if let Err(err) = outbox.housekeeping().await {
                        tracing::warn!(service, %err, "outbox housekeeping failed");
                    }
                }
                let wait = if failures > 0 { bus.config().backoff(failures) } else { poll };
                let woken = tokio::select! {
                    () = outbox.wake.notified(), if failures == 0 => true,
                    () = tokio::time::sleep(wait) => false,
                    () = shutdown.cancelled() => break,
                };
                if !woken {
                    continue;
                }
                // A commit woke us: while the process answers a burst of requests, its events
                // wait for the burst to be answered (at most `relay_yield`).
                let config = bus.config();
                let held = tokio::select! {
                    held = crate::http::requests().quiet(config.relay_busy, config.relay_yield) => held,
                    () = shutdown.cancelled() => break,
                };
                if !held.is_zero() {
                    metrics::histogram!("outbox_relay_held_seconds", "service" => service)
                        .record(held.as_secs_f64());
                }
            }
            // Flush what was committed before shutdown, if the bus lets us.
            match tokio::time::timeout(Duration::from_secs(5), outbox.relay_once(&bus)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(service, published = n, "outbox flushed at shutdown"),
                Ok(Err(err)) => tracing::warn!(service, %err, "outbox not flushed at shutdown; rows stay pending"),
                Err(_) => tracing::warn!(service, "outbox flush timed out at shutdown; rows stay pending"),
                _ => {}
            }
        });
    }
}
