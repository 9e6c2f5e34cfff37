//! The threads that run the server's connections: one single-threaded tokio runtime each, as
//! many as there are cores by default ([`super::ServeLimits::connection_threads`]).
//!
//! Why not the work-stealing runtime the process starts with (measured in the browse bench,
//! BENCHMARKS.md, issue 16 part 10):
//!
//! - **A rush's winners are answered when their order is written.** A handler waiting on
//!   another thread (the orders writer, SQLite's connection threads) is woken from outside the
//!   runtime, into its queue of remote tasks. On the work-stealing runtime the 2,000
//!   connections of a burst overflow the workers' local queues into that same queue a moment
//!   before, so each winner waited behind every loser queued there (30–60 ms after its
//!   commit). Here a connection woken by its socket stays in its thread's local queue, which
//!   has no bound, so the remote queue holds only the handlers whose wait is over, and it is
//!   served first every [`REMOTE_FIRST_EVERY`] tasks rather than every 31st (tokio's
//!   default): a hundred winners woken at once wait for a few hundred tasks, not a few
//!   thousand.
//! - **Less scheduling per request.** No stealing between workers and no waking a parked
//!   worker to steal.
//!
//! A connection is accepted on the caller's runtime and handed, round robin, to the next
//! thread, which owns its socket from then on. The threads belong to the process: made when a
//! listener first needs them, shared by every later listener, never stopped. A socket or a
//! timer made by a handler is tied to the thread that made it, and some outlive the request
//! (a database pool's connections): a thread that stopped with its listener would break them.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};

/// A thread serves its remote queue first on every such tick (tokio: `global_queue_interval`).
pub(crate) const REMOTE_FIRST_EVERY: u32 = 2;

/// The process's connection threads, as many as the largest listener asked for.
static THREADS: Mutex<Vec<Handle>> = Mutex::new(Vec::new());

/// The runtime of one connection thread.
pub(crate) fn connection_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .global_queue_interval(REMOTE_FIRST_EVERY)
        // Finished connections' sockets wait to be closed until there is nothing else to do
        // (`http/closes.rs`).
        .on_thread_park(super::closes::close_waiting)
        .enable_all()
        .build()
}

/// Handles to `count` connection threads, started if the process has fewer.
pub(crate) fn connection_threads(count: usize) -> std::io::Result<Vec<Handle>> {
    let mut threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    while threads.len() < count {
        let runtime = connection_runtime()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("http-{}", threads.len()))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        threads.push(handle);
    }
    Ok(threads[..count].to_vec())
}

/// Where a listener's connections run.
pub(crate) struct Dispatch {
    /// Empty: on the caller's runtime.
    threads: Vec<Handle>,
    next: AtomicUsize,
}

impl Dispatch {
    /// On `count` connection threads; 0 keeps connections on the caller's runtime.
    pub(crate) fn new(count: usize) -> std::io::Result<Self> {
        Ok(Self {
            threads: connection_threads(count)?,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve(stream)` on the next connection thread.
    pub(crate) fn spawn<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.threads.is_empty() {
            tokio::spawn(serve(stream));
            return;
        }
        // The socket leaves this runtime's I/O driver for the thread's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%err, "cannot hand a connection to its thread; closing it");
                return;
            }
        };
        let thread = &self.threads[self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len()];
        thread.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(err) => tracing::debug!(%err, "cannot take a connection over; closing it"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A hundred handlers woken from another thread at once (a rush's winners, by the orders
    /// writer) run before most of a thousand connections already queued (its losers).
    #[test]
    fn handlers_woken_from_another_thread_run_before_the_queued_connections() {
        let runtime = connection_runtime().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        runtime.block_on({
            let log = log.clone();
            async move {
                let registered = Arc::new(AtomicUsize::new(0));
                let mut senders = Vec::new();
                let mut waiting = Vec::new();
                for _ in 0..100 {
                    let (send, receive) = tokio::sync::oneshot::channel::<()>();
                    senders.push(send);
                    let (log, registered) = (log.clone(), registered.clone());
                    waiting.push(tokio::spawn(async move {
                        // The waker is registered in this same poll.
                        registered.fetch_add(1, Ordering::Relaxed);
                        receive.await.unwrap();
                        log.lock().unwrap().push('w');
                    }));
                }
                while registered.load(Ordering::Relaxed) < 100 {
                    tokio::task::yield_now().await;
                }
                let queued: Vec<_> = (0..1000)
                    .map(|_| {
                        let log = log.clone();
                        tokio::spawn(async move { log.lock().unwrap().push('q') })
                    })
                    .collect();
                std::thread::spawn(move || {
                    for send in senders {
                        send.send(()).unwrap();
                    }
                })
                .join()
                .unwrap();
                for task in waiting.into_iter().chain(queued) {
                    task.await.unwrap();
                }
            }
        });
        let log = log.lock().unwrap();
        let last_woken = log.iter().rposition(|c| *c == 'w').unwrap();
        let queued_before = log[..last_woken].iter().filter(|c| **c == 'q').count();
        assert!(
            queued_before <= 300,
            "the woken handlers waited for {queued_before} of the 1000 queued tasks"
        );
    }

    /// On a connection thread, finished connections' sockets wait to be closed (its runtime
    /// closes them when it parks, `http/closes.rs`); on another, they do not.
    #[tokio::test]
    async fn sockets_wait_to_be_closed_on_the_connection_threads_only() {
        let thread = connection_threads(1).unwrap().remove(0);
        let waits = thread
            .spawn(async {
                // Parked at least once since it started (a yield would not park it).
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                super::super::closes::waits_here()
            })
            .await
            .unwrap();
        assert!(waits);
        assert!(!super::super::closes::waits_here());
    }
}
