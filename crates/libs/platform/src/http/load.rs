//! How busy this process is answering requests.
//!
//! The common layer ([`super::edge`]) counts every request the process starts answering. The
//! outbox relay asks [`Requests::quiet`] before it publishes what a commit staged: while the
//! process has started the bus's `relay_busy` requests or more within the last [`REQUEST_WINDOW`], the
//! events wait, at most the bus's `relay_yield`. An on-sale rush is the case: its few winners' events start a
//! cascade of transactions in every service that applies them, and on shared cores (the
//! embedded default, a small node) that cascade took the cores from the rush's other buyers,
//! whose answers then waited for it (BENCHMARKS.md, issue 16 part 6). Held, the cascade runs
//! once the burst is answered. Nothing is lost or reordered by the wait: the events are
//! committed in the outbox already, and the relay publishes them in order as always.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The step of the request count, and of a wait.
pub const TICK: Duration = Duration::from_millis(5);

/// Ticks in the window.
const TICKS: usize = 8;

/// The window over which requests are counted: a short gap in a burst (the requests of one
/// instant arrive in spurts on shared cores) does not end it.
pub const REQUEST_WINDOW: Duration = TICK.saturating_mul(TICKS as u32);

/// Requests started by this process, per tick of the last [`REQUEST_WINDOW`] (see the module's
/// documentation).
#[derive(Debug)]
pub struct Requests {
    origin: Instant,
    /// The tick each slot counts (ticks since `origin`, from 1; 0: never used).
    ticks: [AtomicU64; TICKS],
    counts: [AtomicU64; TICKS],
}

static REQUESTS: LazyLock<Requests> = LazyLock::new(Requests::new);

/// The requests of this process, as the common layer counts them.
pub fn requests() -> &'static Requests {
    &REQUESTS
}

impl Default for Requests {
    fn default() -> Self {
        Self::new()
    }
}

impl Requests {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            ticks: std::array::from_fn(|_| AtomicU64::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn tick(&self) -> u64 {
        let micros = self.origin.elapsed().as_micros() / TICK.as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
    }

    /// A request starts being answered. (Approximate under races: a request counted in a
    /// slot just as another resets it for a new tick may be lost; a window is a rate, not a
    /// ledger.)
    pub fn started(&self) {
        let tick = self.tick();
        let slot = (tick % TICKS as u64) as usize;
        if self.ticks[slot].load(Ordering::Relaxed) != tick
            && self.ticks[slot].swap(tick, Ordering::Relaxed) != tick
        {
            self.counts[slot].store(0, Ordering::Relaxed);
        }
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests started within the last [`REQUEST_WINDOW`].
    pub fn recent(&self) -> u64 {
        let now = self.tick();
        (0..TICKS)
            .filter(|&slot| {
                let tick = self.ticks[slot].load(Ordering::Relaxed);
                tick != 0 && tick <= now && now - tick < TICKS as u64
            })
            .map(|slot| self.counts[slot].load(Ordering::Relaxed))
            .sum()
    }

    /// Waits while `busy` or more requests started within the last [`REQUEST_WINDOW`], at most
    /// `max`; how long it waited. `busy` 0 or `max` zero: no wait.
    pub async fn quiet(&self, busy: u64, max: Duration) -> Duration {
        let start = Instant::now();
        if busy == 0 || max.is_zero() {
            return Duration::ZERO;
        }
        loop {
            let waited = start.elapsed();
            if self.recent() < busy || waited >= max {
                return waited;
            }
            tokio::time::sleep(TICK.min(max - waited)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// `n` requests every `every` (tokio's clock), for `load`.
    fn load(
        requests: Arc<Requests>,
        n: u64,
        every: Duration,
        load: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let end = Instant::now() + load;
            while Instant::now() < end {
                for _ in 0..n {
                    requests.started();
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn requests_are_counted_over_the_last_window_only() {
        let requests = Requests::new();
        assert_eq!(requests.recent(), 0);
        for _ in 0..30 {
            requests.started();
        }
        tokio::time::sleep(TICK * 3).await;
        requests.started();
        assert_eq!(requests.recent(), 31);
        tokio::time::sleep(REQUEST_WINDOW - TICK).await;
        assert_eq!(requests.recent(), 1, "the first 30 are out of the window");
        tokio::time::sleep(REQUEST_WINDOW).await;
        assert_eq!(requests.recent(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_process_does_not_wait() {
        let requests = Requests::new();
        assert_eq!(requests.quiet(40, 250 * MS).await, Duration::ZERO);
        // Requests long ago do not count either.
        for _ in 0..100 {
            requests.started();
        }
        tokio::time::sleep(REQUEST_WINDOW * 2).await;
        assert_eq!(requests.quiet(40, 250 * MS).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_waited_out_then_the_wait_ends_within_a_window() {
        let requests = Arc::new(Requests::new());
        let burst = load(requests.clone(), 5, MS, 100 * MS);
        // 20 ms into the burst (100 requests), a commit: it waits for the other 80 ms.
        tokio::time::sleep(20 * MS).await;
        let waited = requests.quiet(40, 250 * MS).await;
        burst.await.unwrap();
        assert!(
            waited >= 79 * MS && waited <= 80 * MS + REQUEST_WINDOW + TICK,
            "waited {waited:?} for the last 80 ms of a burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_that_does_not_end_is_waited_for_at_most_max() {
        let requests = Arc::new(Requests::new());
        let endless = load(requests.clone(), 5, MS, Duration::from_secs(10));
        tokio::time::sleep(REQUEST_WINDOW).await;
        assert_eq!(requests.quiet(40, 250 * MS).await, 250 * MS);
        endless.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn requests_slower_than_busy_hold_nothing_back() {
        let requests = Arc::new(Requests::new());
        // One request every 2 ms: about 20 in a window, under 40.
        let steady = load(requests.clone(), 1, 2 * MS, Duration::from_secs(10));
        tokio::time::sleep(REQUEST_WINDOW * 2).await;
        assert_eq!(requests.quiet(40, 250 * MS).await, Duration::ZERO);
        // Switched off: no wait whatever the load.
        let busy = load(requests.clone(), 50, MS, Duration::from_secs(10));
        tokio::time::sleep(REQUEST_WINDOW).await;
        assert_eq!(requests.quiet(0, 250 * MS).await, Duration::ZERO);
        assert_eq!(requests.quiet(1, Duration::ZERO).await, Duration::ZERO);
        steady.abort();
        busy.abort();
    }
}
