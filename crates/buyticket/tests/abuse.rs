//! The binary under abuse, as an attacker would try it against `buyticket up`: a flood of
//! sign-ins (each a memory-hungry password hash) and hundreds of idle connections.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::Process;

/// The peak resident memory of process `pid` so far, in bytes (Linux: `VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

fn up(data: &std::path::Path) -> Process {
    Process::start(
        &["up", "--port", "0", "--data-dir", data.to_str().unwrap()],
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "0")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sign_ins_keep_memory_under_300_mb() {
    let data = tempfile::tempdir().unwrap();
    let process = up(data.path());
    let client = process.client();
    let res = client
        .post(
            "/api/users/signup",
            &json!({"email": "victim@test.com", "password": "password"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);

    let attempts = (0..200).map(|i| {
        let client = process.client();
        async move {
            let email = if i % 2 == 0 {
                "victim@test.com".to_owned()
            } else {
                format!("nobody{i}@test.com")
            };
            client
                .post(
                    "/api/users/signin",
                    &json!({"email": email, "password": "wrong-password"}),
                )
                .await
        }
    });
    let answers = futures::future::join_all(attempts).await;

    let mut refused_busy = 0;
    for res in &answers {
        match res.status {
            StatusCode::BAD_REQUEST => {
                assert_eq!(
                    res.json,
                    json!({"errors": [{"message": "Invalid credentials"}]})
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(res.headers.contains_key("retry-after"), "{:?}", res.headers);
                refused_busy += 1;
            }
            other => panic!("sign-in answered {other}: {}", res.text),
        }
    }
    let peak = peak_rss(process.pid());
    eprintln!(
        "200 sign-ins: {refused_busy} asked to retry; peak RSS {} MB",
        peak / (1024 * 1024)
    );
    assert!(
        peak < 300 * 1024 * 1024,
        "peak RSS {} MB",
        peak / (1024 * 1024)
    );
    // Still serving.
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    assert!(process.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_neither_stop_the_server_nor_stay_open() {
    let data = tempfile::tempdir().unwrap();
    let process = up(data.path());
    let client = process.client();
    let addr = process.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Half of them start a request and never finish its headers.
    for stream in idle.iter_mut().step_by(2) {
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(b"POST /api/users/signin HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
    }
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);

    // Closed by the server once the header timeout (10 s) has passed.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut closed = 0;
    for stream in &mut idle {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => {
                // An error answer for the unfinished request, then the close.
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
                {
                    closed += 1;
                }
            }
            Err(_) => {}
        }
    }
    assert_eq!(closed, 300, "every idle connection was closed");
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    assert!(process.stop().success());
}

/// Sign-in attempts from this machine with `X-Forwarded-For: <forwarded>`; the statuses.
async fn sign_ins_forwarded_for(process: &Process, forwarded: &[&str]) -> Vec<StatusCode> {
    let client = process.client();
    let mut statuses = Vec::new();
    for address in forwarded {
        let res = client
            .send(
                client
                    .http
                    .post(client.url("/api/users/signin"))
                    .header("x-forwarded-for", *address)
                    .json(&json!({"email": "guess@test.com", "password": "password"})),
            )
            .await;
        statuses.push(res.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_client_cannot_pick_its_rate_limit_bucket_with_x_forwarded_for() {
    let data = tempfile::tempdir().unwrap();
    let process = Process::start(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "3")],
    );
    // A new forwarded address per attempt: all are this machine's attempts all the same.
    let statuses = sign_ins_forwarded_for(
        &process,
        &[
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3",
            "198.51.100.4",
        ],
    )
    .await;
    assert_eq!(
        statuses,
        [
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(process.stop().success());

    // Once loopback is configured as a proxy, its forwarded addresses are believed.
    let data = tempfile::tempdir().unwrap();
    let process = Process::start(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let statuses =
        sign_ins_forwarded_for(&process, &["198.51.100.1", "198.51.100.2", "198.51.100.1"]).await;
    assert_eq!(
        statuses,
        [
            StatusCode::BAD_REQUEST,
            StatusCode::BAD_REQUEST,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(process.stop().success());
}
