//! Password hashing, bounded. An argon2id hash takes about 19 MiB and a core for a moment; an
//! unbounded number of them lets anyone exhaust the memory with sign-in requests, no account
//! needed. So at most [`Hasher::workers`] hashes run at once (as many as the cores, fewer when
//! the memory budget says so), at most [`Hasher::queue`] more wait, briefly; anything beyond is
//! answered at once with `503` and `Retry-After`. The hashes run on threads of their own (as
//! many as the workers), not on the general blocking pool: each thread keeps its allocator
//! arena, so a few threads keep the memory to a few hashes' worth.

use std::sync::Arc;
use std::time::Duration;

use bt_contract::{ApiError, ApiResult};
use tokio::sync::Semaphore;

/// Memory one argon2id hash with the default parameters uses.
pub const HASH_MEMORY_BYTES: u64 = 19 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Runs password hashes on threads of its own, a bounded number at a time.
#[derive(Clone)]
pub struct Hasher {
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
    workers: usize,
    queue: usize,
    max_wait: Duration,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// `workers` hashes at once, `queue` more waiting at most `max_wait`.
    pub fn new(workers: usize, queue: usize, max_wait: Duration) -> Self {
        let workers = workers.max(1);
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hashing-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
                            receiver.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            // Every Hasher is gone.
                            Err(_) => break,
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start a password hashing thread");
            }
        }
        Self {
            running: Arc::new(Semaphore::new(workers)),
            waiting: Arc::new(Semaphore::new(queue)),
            jobs,
            workers,
            queue,
            max_wait,
        }
    }

    /// Sized to this machine: one hash per core, within `memory_budget` bytes of hashing memory;
    /// 64 waiting for at most 5 s.
    pub fn for_this_machine(memory_budget: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let by_memory = usize::try_from(memory_budget / HASH_MEMORY_BYTES).unwrap_or(usize::MAX);
        Self::new(cores.min(by_memory), 64, Duration::from_secs(5))
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Runs `hash` when a worker is free; a `503` with `Retry-After` when too many wait already
    /// or none becomes free in time.
    pub async fn run<T: Send + 'static>(
        &self,
        hash: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let busy = || {
            metrics::counter!("auth_hashing_refused_total").increment(1);
            ApiError::retry_later("Too many sign-ins at once; please try again in a moment", 1)
        };
        let Ok(place) = self.waiting.try_acquire() else {
            return Err(busy());
        };
        let running = tokio::time::timeout(self.max_wait, self.running.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        drop(place);
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _running = running;
            let _ = done.send(hash());
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::internal("the password hashing threads are gone"))?;
        result
            .await
            .map_err(|_| ApiError::internal("a password hash was lost"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_workers_run_and_the_surplus_is_refused_at_once() {
        let hasher = Hasher::new(2, 3, Duration::from_secs(5));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let calls = (0..20).map(|_| {
            let (hasher, now, peak) = (hasher.clone(), now.clone(), peak.clone());
            tokio::spawn(async move {
                hasher
                    .run(move || {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(running, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            })
        });
        let results: Vec<ApiResult<()>> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(peak.load(Ordering::SeqCst) <= 2, "at most two at once");
        let done = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(ApiError::RetryLater { .. })))
            .count();
        assert_eq!(done + refused, 20);
        assert!((2..=5).contains(&done), "the workers and the queue: {done}");
    }

    #[test]
    fn the_workers_fit_the_memory_budget() {
        let hasher = Hasher::for_this_machine(2 * HASH_MEMORY_BYTES);
        assert!(hasher.workers() <= 2);
        let tiny = Hasher::for_this_machine(0);
        assert_eq!(tiny.workers(), 1, "at least one");
    }
}
