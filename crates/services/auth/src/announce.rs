//! The `user.created` backfill: users who signed up before auth published `user.created`
//! (`users.announced_at` is NULL, migration 0004) are announced once, through the outbox, by a
//! background task started with the service. It claims a batch of them, stages their events
//! and commits, one transaction per batch, until none is left; then it ends.
//!
//! Several replicas may run it at once: a claim marks the rows in the transaction that stages
//! their events, and a row already claimed, or being claimed, is never claimed again. Users
//! whose email is not in the canonical form yet (left by
//! [`canonicalise_stored_emails`](crate::canonicalise_stored_emails) for an operator) wait
//! until it is: the first start afterwards announces them.

use bt_contract::error::is_transient;
use bt_contract::events::UserCreated;
use bt_platform::bus::Outbox;
use bt_platform::db::now_millis;
use bt_platform::{Db, Runtime};

use crate::store;

/// Users announced per transaction.
pub const BATCH: i64 = 500;

/// Starts the backfill on `runtime`: it stops at shutdown (a batch in progress rolls back, the
/// next start does it), retries transient database failures after a growing delay, and gives
/// up until the next start on any other failure.
pub fn spawn(db: Db, outbox: Outbox, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    let retry = runtime.bus.config().clone();
    runtime.tasks.spawn(async move {
        let mut announced = 0;
        let mut failures: i64 = 0;
        loop {
            let batch = tokio::select! {
                () = shutdown.cancelled() => break,
                batch = announce_batch(&db, &outbox, BATCH) => batch,
            };
            match batch {
                Ok(count) => {
                    failures = 0;
                    announced += count;
                    // Fewer than asked: nobody is left, or another replica is announcing them.
                    if (count as i64) < BATCH {
                        break;
                    }
                }
                Err(err) if is_transient(&err) => {
                    failures += 1;
                    let delay = retry.backoff(failures);
                    tracing::warn!(
                        %err,
                        failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot announce the users who signed up before user.created; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(err) => {
                    tracing::error!(
                        %err,
                        announced,
                        "cannot announce the users who signed up before user.created; the next \
                         start carries on"
                    );
                    break;
                }
            }
        }
        if announced > 0 {
            tracing::info!(
                announced,
                "users who signed up before user.created announced"
            );
        }
    });
}

/// Announces up to `limit` users who were never announced, in one transaction: marks them
/// announced and stages their `user.created`; returns how many.
pub async fn announce_batch(db: &Db, outbox: &Outbox, limit: i64) -> sqlx::Result<usize> {
    let mut tx = db.begin().await?;
    let users = store::claim_unannounced_users(&mut tx, now_millis(), limit).await?;
    if users.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let count = users.len();
    for (id, email) in users {
        outbox
            .stage(
                &mut tx,
                UserCreated {
                    id: id.as_str().into(),
                    email,
                },
            )
            .await?;
    }
    outbox.commit(tx).await?;
    Ok(count)
}
