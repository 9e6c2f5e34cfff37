//! What the benchmarks (`benches/*.rs`) share: settings from the environment, percentiles, and
//! many users' requests sent concurrently.

use std::time::Duration;

use futures::StreamExt;

/// A whole-number setting from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank; 0 when empty.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sends `bodies` as POSTs to `url`, `concurrency` at a time, each as its own user, retrying
/// 503 (not propagated yet, busy); returns the answers' JSON.
pub async fn post_all(
    http: &reqwest::Client,
    url: &str,
    requests: Vec<(String, serde_json::Value)>,
    concurrency: usize,
) -> Vec<serde_json::Value> {
    futures::stream::iter(requests)
        .map(|(token, body)| {
            let http = http.clone();
            let url = url.to_owned();
            async move {
                for _ in 0..100 {
                    let res = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("the deployment answers");
                    let status = res.status().as_u16();
                    let json: serde_json::Value = res.json().await.unwrap_or_default();
                    match status {
                        201 => return json,
                        503 => tokio::time::sleep(Duration::from_millis(200)).await,
                        other => panic!("{url} answered {other}: {json}"),
                    }
                }
                panic!("{url} kept answering 503")
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}
