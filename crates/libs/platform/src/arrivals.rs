//! Waiting briefly for what exists but has not reached this service yet (ARCHITECTURE §10):
//! a request naming a fresh id that the service has not heard of waits — bounded — for the
//! event that brings it, then answers; if it still has not arrived, `503` with `Retry-After`,
//! never `404` for something that exists.
//!
//! [`Arrivals`] is woken after every event handler commits ([`Consumers::announce_to`]), and
//! also re-checks on a short poll, because with several replicas the event may be applied by
//! another process that shares the database. Only ids made recently (UUID v7 carry their
//! creation time) wait; anything older is answered at once. The number of requests waiting at
//! one time is bounded, so fresh-looking ids cannot tie up the server.
//!
//! [`Consumers::announce_to`]: crate::bus::Consumers::announce_to

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bt_contract::{ApiError, ApiResult, Millis};
use tokio::sync::{Semaphore, watch};

/// How long, and for which ids, requests wait for events.
#[derive(Debug, Clone)]
pub struct ArrivalPolicy {
    /// Ids made longer ago than this are not waited for (their event would have arrived).
    pub recent: Duration,
    /// The longest a request waits for an event.
    pub max_wait: Duration,
    /// How often a waiting request re-checks without being woken.
    pub poll: Duration,
    /// How many requests may wait at one time; more are answered 503 at once.
    pub max_waiters: usize,
}

impl Default for ArrivalPolicy {
    fn default() -> Self {
        Self {
            recent: Duration::from_secs(60),
            max_wait: Duration::from_secs(2),
            poll: Duration::from_millis(25),
            max_waiters: 512,
        }
    }
}

/// Wakes requests that wait for an event when a handler commits.
#[derive(Debug, Clone)]
pub struct Arrivals {
    tx: Arc<watch::Sender<u64>>,
    waiters: Arc<Semaphore>,
    policy: ArrivalPolicy,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self::new(ArrivalPolicy::default())
    }
}

impl Arrivals {
    pub fn new(policy: ArrivalPolicy) -> Self {
        let (tx, _) = watch::channel(0);
        Self {
            tx: Arc::new(tx),
            waiters: Arc::new(Semaphore::new(policy.max_waiters)),
            policy,
        }
    }

    pub fn policy(&self) -> &ArrivalPolicy {
        &self.policy
    }

    /// Something was committed: waiting requests check again.
    pub fn arrived(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether a thing made at `created_at` may still be on its way.
    pub fn is_recent(&self, created_at: Option<Millis>, now: Millis) -> bool {
        created_at.is_some_and(|at| {
            // A little clock skew between services is tolerated.
            at <= now.plus(Duration::from_secs(5)) && now.since(at) <= self.policy.recent
        })
    }

    /// What `probe` finds; when it finds nothing and the thing is recent (`created_at`, from
    /// its UUID v7 id), waits up to the policy's bound for it to arrive. `Ok(None)` means it
    /// does not exist (404); a recent thing that still has not arrived is a 503 with
    /// `Retry-After`, worded with `what` ("order", "ticket").
    pub async fn find<T, F, Fut>(
        &self,
        created_at: Option<Millis>,
        what: &str,
        mut probe: F,
    ) -> ApiResult<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ApiResult<Option<T>>>,
    {
        if let Some(found) = probe().await? {
            return Ok(Some(found));
        }
        if !self.is_recent(created_at, Millis::now()) {
            return Ok(None);
        }
        match self.wait_for(self.policy.max_wait, probe).await? {
            Some(found) => Ok(Some(found)),
            None => {
                tracing::debug!(what, "still not arrived after waiting");
                Err(ApiError::retry_later(
                    format!(
                        "This {what} is not known here yet (it was created a moment ago); please try again"
                    ),
                    1,
                ))
            }
        }
    }

    /// Re-runs `probe` whenever a handler commits (and at least every poll interval) until it
    /// finds something or `max_wait` has passed (`Ok(None)`). Answers 503 at once when too many
    /// requests are waiting already.
    pub async fn wait_for<T, F, Fut>(
        &self,
        max_wait: Duration,
        mut probe: F,
    ) -> ApiResult<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ApiResult<Option<T>>>,
    {
        let Ok(_permit) = self.waiters.try_acquire() else {
            return Err(ApiError::retry_later(
                "Too many requests are waiting; please try again",
                1,
            ));
        };
        let mut changes = self.tx.subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if let Some(found) = probe().await? {
                return Ok(Some(found));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            let wake = tokio::time::sleep(self.policy.poll);
            tokio::select! {
                _ = changes.changed() => {}
                () = wake => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn policy() -> ArrivalPolicy {
        ArrivalPolicy {
            recent: Duration::from_secs(60),
            max_wait: Duration::from_millis(300),
            poll: Duration::from_secs(10),
            max_waiters: 2,
        }
    }

    #[tokio::test]
    async fn an_old_or_foreign_id_that_is_not_found_is_not_waited_for() {
        let arrivals = Arrivals::new(policy());
        let probes = AtomicUsize::new(0);
        let probe = || async {
            probes.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<()>, ApiError>(None)
        };
        let old = Millis::now().minus(Duration::from_secs(120));
        assert!(
            arrivals
                .find(Some(old), "order", probe)
                .await
                .unwrap()
                .is_none()
        );
        assert!(arrivals.find(None, "order", probe).await.unwrap().is_none());
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_recent_id_is_found_once_it_arrives() {
        let arrivals = Arrivals::new(policy());
        let present = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waker = {
            let arrivals = arrivals.clone();
            let present = present.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                present.store(true, Ordering::SeqCst);
                arrivals.arrived();
            })
        };
        let found = arrivals
            .find(Some(Millis::now()), "order", || {
                let present = present.clone();
                async move { Ok::<_, ApiError>(present.load(Ordering::SeqCst).then_some(7)) }
            })
            .await
            .unwrap();
        assert_eq!(found, Some(7));
        waker.await.unwrap();
    }

    #[tokio::test]
    async fn a_recent_id_that_never_arrives_is_a_503_with_retry_after() {
        let arrivals = Arrivals::new(policy());
        let err = arrivals
            .find(Some(Millis::now()), "order", || async {
                Ok::<Option<()>, ApiError>(None)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::RetryLater {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn waiters_beyond_the_bound_are_refused_at_once() {
        let arrivals = Arrivals::new(policy());
        let waiting = |a: Arrivals| async move {
            a.wait_for(Duration::from_millis(300), || async {
                Ok::<Option<()>, ApiError>(None)
            })
            .await
        };
        let (a, b) = (
            tokio::spawn(waiting(arrivals.clone())),
            tokio::spawn(waiting(arrivals.clone())),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = waiting(arrivals.clone()).await;
        assert!(
            matches!(third, Err(ApiError::RetryLater { .. })),
            "{third:?}"
        );
        assert!(a.await.unwrap().unwrap().is_none());
        assert!(b.await.unwrap().unwrap().is_none());
    }
}
