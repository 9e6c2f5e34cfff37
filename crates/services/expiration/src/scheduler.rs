//! Fires due timers: publishes `expiration.complete` through the outbox and deletes the timer,
//! in one transaction.

use std::sync::Arc;
use std::time::Duration;

use bt_contract::events::ExpirationComplete;
use bt_platform::bus::Outbox;
use bt_platform::db::now_millis;
use bt_platform::{Db, Runtime};
use tokio::sync::Notify;

use crate::store;

/// The longest the scheduler sleeps without looking again (timers scheduled by another replica,
/// a missed wake-up).
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// Timers fired per transaction.
const BATCH: i64 = 100;
/// Finished orders are remembered this long.
const KEEP_DONE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Starts the scheduler on `runtime`; `wake` is notified when a timer is scheduled.
pub fn spawn(db: Db, outbox: Outbox, wake: Arc<Notify>, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    let backoff = runtime.bus.config().clone();
    runtime.tasks.spawn(async move {
        let mut failures: i64 = 0;
        let mut last_purge = std::time::Instant::now();
        loop {
            let sleep = match fire_due(&db, &outbox).await {
                Ok(_) => {
                    failures = 0;
                    until_next_due(&db).await
                }
                Err(err) => {
                    failures += 1;
                    tracing::warn!(%err, failures, "expiry scheduler failed; retrying");
                    backoff.backoff(failures)
                }
            };
            if last_purge.elapsed() > Duration::from_secs(3600) {
                last_purge = std::time::Instant::now();
                let before = now_millis() - KEEP_DONE.as_millis() as i64;
                if let Err(err) = store::purge_done(&db, before).await {
                    tracing::warn!(%err, "purging finished timers failed");
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

async fn until_next_due(db: &Db) -> Duration {
    match store::next_due(db).await {
        Ok(Some(at)) => {
            Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0)).min(MAX_SLEEP)
        }
        Ok(None) => MAX_SLEEP,
        Err(err) => {
            tracing::warn!(%err, "cannot read the next timer");
            MAX_SLEEP
        }
    }
}

/// Fires every due timer; returns how many fired.
pub async fn fire_due(db: &Db, outbox: &Outbox) -> sqlx::Result<usize> {
    let mut fired = 0;
    loop {
        let mut tx = db.begin().await?;
        let due = store::claim_due(&mut tx, now_millis(), BATCH).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(fired);
        }
        for order_id in &due {
            outbox
                .stage(
                    &mut tx,
                    ExpirationComplete {
                        order_id: bt_contract::OrderId::new(order_id.clone()),
                    },
                )
                .await?;
            store::delete(&mut tx, order_id).await?;
        }
        outbox.commit(tx).await?;
        metrics::counter!("expiration_timers_fired_total").increment(due.len() as u64);
        tracing::info!(count = due.len(), "expiry timers fired");
        fired += due.len();
        if (due.len() as i64) < BATCH {
            return Ok(fired);
        }
    }
}
