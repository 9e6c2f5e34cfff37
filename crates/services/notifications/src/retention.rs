//! Old rows go, so that the service's database does not grow without end: in-app
//! notifications after [`KEEP_NOTIFICATIONS`] (read or not), emails that were sent or refused for
//! good after [`KEEP_EMAILS`]. An email still waiting to be sent is never removed, however old.
//! Deletes go in batches of [`BATCH`] rows (short transactions beside the live traffic), once
//! at start and then every [`EVERY`]; with several replicas each does it, and a row is deleted
//! once whoever gets there first.
//!
//! Safe for the exactly-once rules: the unique `(event_id, user_id, kind)` keys guard against a
//! redelivered event only for as long as an event can be redelivered, which is minutes (the
//! bus's acknowledgements and the inbox), not weeks.

use std::time::Duration;

use bt_contract::Millis;
use bt_platform::{Db, Runtime};

use crate::store;

/// How long an in-app notification is kept.
pub const KEEP_NOTIFICATIONS: Duration = Duration::from_secs(180 * 24 * 3600);

/// How long a sent or failed email is kept (for "was it sent?" questions).
pub const KEEP_EMAILS: Duration = Duration::from_secs(30 * 24 * 3600);

/// Rows per delete statement.
pub const BATCH: i64 = 1000;

/// How often old rows are looked for.
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub notifications: u64,
    pub emails: u64,
}

/// Deletes what is past its time at `now`.
pub async fn purge(db: &Db, now: Millis) -> sqlx::Result<Purged> {
    let notifications_before = now.minus(KEEP_NOTIFICATIONS);
    let emails_before = now.minus(KEEP_EMAILS);
    Ok(Purged {
        notifications: in_batches(|| {
            store::delete_old_notifications(db, notifications_before, BATCH)
        })
        .await?,
        emails: in_batches(|| store::delete_old_emails(db, emails_before, BATCH)).await?,
    })
}

/// Runs `delete` (a batch of at most [`BATCH`] rows) until a batch comes back short; how many
/// rows went in all.
async fn in_batches<F, Fut>(mut delete: F) -> sqlx::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = delete().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Purges at start and every [`EVERY`] on `runtime`, until it stops.
pub fn spawn(db: Db, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        loop {
            match purge(&db, Millis::now()).await {
                Ok(purged) if purged != Purged::default() => {
                    tracing::info!(
                        notifications = purged.notifications,
                        emails = purged.emails,
                        "old notifications and emails deleted"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "deleting old notifications and emails failed; trying again later"),
            }
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}
