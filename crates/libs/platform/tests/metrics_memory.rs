//! The metrics recorder holds each histogram sample until it is drained, and nothing else
//! drains them where `/metrics` is not scraped (`up` does not serve it by default): every
//! request's duration stayed in memory, and `up` grew by about 8 bytes a request for ever.

use std::time::{Duration, Instant};

/// The resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Waits (at most a minute, never expected) until the recorder's upkeep has run twice more,
/// so that one whole upkeep ran after everything recorded so far.
fn wait_for_upkeep() {
    let seen = bt_platform::http::metrics_upkeeps();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bt_platform::http::metrics_upkeeps() < seen + 2 {
        assert!(Instant::now() < deadline, "the metrics upkeep does not run");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn histogram_samples_do_not_pile_up_without_a_scrape() {
    bt_platform::http::metrics_handle();
    let histogram = metrics::histogram!("test_pile_up_seconds");
    const CHUNK: usize = 2_000_000;
    // One chunk first, so that the allocator holds the memory a chunk takes.
    for i in 0..CHUNK {
        histogram.record(i as f64);
    }
    wait_for_upkeep();
    let before = rss();
    // Five more: 80 MB of samples if none were drained.
    for _ in 0..5 {
        for i in 0..CHUNK {
            histogram.record(i as f64);
        }
        wait_for_upkeep();
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "the process grew by {} MB while recording 10 million samples",
        grown >> 20
    );
    // And they were all counted.
    let text = bt_platform::http::metrics_handle().render();
    assert!(
        text.contains("test_pile_up_seconds_count 12000000"),
        "{}",
        text.lines()
            .filter(|l| l.contains("test_pile_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
