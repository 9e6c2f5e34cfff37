//! The listener and the common layers under abuse: errors the framework produces answer in the
//! contract's format; slow, idle and surplus connections are closed.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use bt_platform::http::{AppOptions, ServeLimits, app_with, serve_with};
use bt_platform::{Check, Service};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An application with an id route and a slow route, served with `limits`; its address.
async fn serve(limits: ServeLimits) -> std::net::SocketAddr {
    serve_timed(limits, Duration::from_millis(300)).await
}

/// [`serve`] with requests bounded by `request_timeout`.
async fn serve_timed(limits: ServeLimits, request_timeout: Duration) -> std::net::SocketAddr {
    let router = Router::new()
        .route(
            "/api/things/{id}",
            get(|Path(id): Path<String>| async move { id }),
        )
        .route(
            "/api/request-id",
            get(|| async { bt_platform::context::request_id().unwrap_or_default() }),
        )
        .route(
            "/api/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("a bug in a handler");
                }
                "unreachable"
            }),
        )
        .route(
            "/api/thread",
            get(|| async { std::thread::current().name().unwrap_or("-").to_owned() }),
        )
        .route("/api/echo", post(|body: String| async move { body }))
        .route(
            "/api/stream",
            get(|| async {
                // Ten chunks, one every 150 ms: 1.5 s of answer that never pauses for long.
                let chunks = futures::stream::unfold(0, |n| async move {
                    if n == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Some((Ok::<_, std::io::Error>(format!("chunk {n}\n")), n + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "done"
            }),
        );
    let app = app_with(
        vec![Service {
            name: "things",
            router,
            checks: vec![Check::new("always", || async { Ok(()) })],
        }],
        &AppOptions {
            metrics_token: None,
            request_timeout,
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(listener, app, std::future::pending(), limits));
    addr
}

fn error(message: &str) -> serde_json::Value {
    json!({"errors": [{"message": message}]})
}

async fn get_json(url: String) -> (StatusCode, String, serde_json::Value) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.json().await.unwrap_or_default();
    (status, content_type, body)
}

#[tokio::test]
async fn errors_the_framework_produces_answer_in_the_error_format() {
    let addr = serve(ServeLimits::default()).await;

    // A path parameter that is not UTF-8 once decoded.
    let (status, content_type, body) = get_json(format!("http://{addr}/api/things/%FF")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, error("The request is not valid"));

    // A request target of 10 KB, and one of 100 KB (longer than an HTTP parser takes).
    let long = "x".repeat(10 * 1024);
    let (status, content_type, body) = get_json(format!("http://{addr}/api/things/{long}")).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, error("The request URL is too long"));
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/things/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "y".repeat(100 * 1024)
    );
    let _ = raw.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        error("The request URL is too long")
    );

    // A request that takes longer than the application allows.
    let (status, content_type, body) = get_json(format!("http://{addr}/api/slow")).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, error("The request took too long"));

    // What works still works.
    let ok = reqwest::get(format!("http://{addr}/api/things/abc"))
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "abc");
}

#[tokio::test]
async fn the_request_id_is_kept_or_made_and_answered_and_reaches_the_handler() {
    let addr = serve(ServeLimits::default()).await;
    let http = reqwest::Client::new();

    // Given by the ingress: kept, answered, and the handler's current request id.
    let res = http
        .get(format!("http://{addr}/api/request-id"))
        .header("x-request-id", "from-the-ingress-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "from-the-ingress-1");
    assert_eq!(res.text().await.unwrap(), "from-the-ingress-1");

    // Not given: a new one (a UUID) for each request, answered, and the same in the handler.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let res = http
            .get(format!("http://{addr}/api/request-id"))
            .send()
            .await
            .unwrap();
        let answered = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&answered).is_ok(), "{answered}");
        assert_eq!(res.text().await.unwrap(), answered);
        seen.push(answered);
    }
    assert_ne!(seen[0], seen[1]);

    // Errors carry it too.
    let res = http
        .get(format!("http://{addr}/api/nowhere"))
        .header("x-request-id", "lost-2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-request-id"], "lost-2");
}

/// The name of the thread that answers `/api/thread` on a new connection.
async fn thread_of(addr: std::net::SocketAddr) -> String {
    // A new client: a new connection.
    let res = reqwest::get(format!("http://{addr}/api/thread"))
        .await
        .unwrap();
    res.text().await.unwrap()
}

/// Connections run on the connection threads (`http-N`), spread over them; with none, on the
/// caller's runtime. Either way every request is answered.
#[tokio::test]
async fn connections_run_on_the_connection_threads_or_on_the_callers_runtime() {
    let threaded = serve(ServeLimits {
        connection_threads: 3,
        ..Default::default()
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(thread_of(threaded).await);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["http-0", "http-1", "http-2"],
        "round robin over the three threads"
    );

    let inline = serve(ServeLimits {
        connection_threads: 0,
        ..Default::default()
    })
    .await;
    let name = thread_of(inline).await;
    assert!(!name.starts_with("http-"), "on the test's runtime: {name}");
    let (status, _, body) = get_json(format!("http://{inline}/api/things/%FF")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, error("The request is not valid"));
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_in_the_error_format_and_the_server_goes_on() {
    let addr = serve(ServeLimits::default()).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/api/panic"))
        .header("x-request-id", "panic-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["x-request-id"], "panic-1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let ok = http
        .get(format!("http://{addr}/api/things/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "after");
}

#[tokio::test]
async fn every_request_is_counted_by_method_route_and_status() {
    let addr = serve(ServeLimits::default()).await;
    for id in ["a", "b", "c"] {
        let (status, _, _) = get_json(format!("http://{addr}/api/things/{id}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, _) = get_json(format!("http://{addr}/api/nowhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get_json(format!("http://{addr}/api/panic")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let text = bt_platform::http::metrics_handle().render();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        line(r#"http_requests_total{method="GET",route="/api/things/{id}",status="200"}"#),
        "3"
    );
    assert_eq!(
        line(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
        "1"
    );
    assert_eq!(
        line(
            r#"http_request_duration_seconds_count{method="GET",route="/api/things/{id}",status="200"}"#
        ),
        "3"
    );
    assert_eq!(line("http_server_errors_total"), "1");
}

/// True when the server closed `stream` (reading gives end of file or an error) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn headers_sent_too_slowly_and_idle_connections_are_closed() {
    let addr = serve(ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..ServeLimits::default()
    })
    .await;

    // Slowloris: a request line, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slow headers"
    );

    // A keep-alive connection that stays idle after its request.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "idle keep-alive"
    );

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "silent"
    );
}

/// The socket of a connection that ended is closed, on the connection threads too (where its
/// close waits for the thread to be idle, `http/closes.rs`): after the client left (it shut its
/// side down) and after an answer the server ends with `Connection: close`.
#[tokio::test]
async fn the_socket_of_a_connection_that_ended_is_closed() {
    for connection_threads in [0, 2] {
        let addr = serve(ServeLimits {
            connection_threads,
            ..ServeLimits::default()
        })
        .await;
        let mut left = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut left, REQUEST).await, "HTTP/1.1 200 OK");
        left.shutdown().await.unwrap();
        assert!(
            closed_within(&mut left, Duration::from_secs(3)).await,
            "the client left ({connection_threads} connection threads)"
        );
        let mut ended = TcpStream::connect(addr).await.unwrap();
        let request = b"GET /api/things/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert_eq!(exchange(&mut ended, request).await, "HTTP/1.1 200 OK");
        assert!(
            closed_within(&mut ended, Duration::from_secs(3)).await,
            "the server ended it ({connection_threads} connection threads)"
        );
    }
}

/// Sends `request` on `stream` and reads one answer of `Content-Length` bytes; its status line.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "the server closed the connection instead of answering"
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() >= length {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
    }
}

const REQUEST: &[u8] = b"GET /api/things/a HTTP/1.1\r\nHost: x\r\n\r\n";

/// A connection to a server with a 300 ms head bound and a 5 s idle timeout, which has had one
/// request answered.
async fn answered_once() -> TcpStream {
    let addr = serve(ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(5),
        ..ServeLimits::default()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut stream, REQUEST).await, "HTTP/1.1 200 OK");
    stream
}

/// An ingress keeps its idle connections to a service for a while (the local cluster's nginx
/// 50 s) and sends the next request on one of them: the service must keep an idle keep-alive
/// connection for `idle_timeout`, not close it once `header_read_timeout` has passed (which
/// nginx answered with 502 to the requests it sent as the service closed).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_kept_for_the_idle_timeout() {
    let mut stream = answered_once().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(exchange(&mut stream, REQUEST).await, "HTTP/1.1 200 OK");
}

/// A keep-alive connection idle for longer than `header_read_timeout` still has only that long
/// to send its next request's head once the head has begun.
#[tokio::test]
async fn a_head_sent_too_slowly_after_an_idle_wait_is_closed() {
    let mut stream = answered_once().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream
        .write_all(b"GET /api/things/b HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(2)).await,
        "closed by the head's bound, not after the idle timeout (5 s)"
    );
}

/// The head's bound ends with the head: a body may take longer (up to the request's timeout,
/// each pause within the idle timeout).
#[tokio::test]
async fn a_body_may_take_longer_than_the_head() {
    let addr = serve_timed(
        ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(5),
            ..ServeLimits::default()
        },
        Duration::from_secs(5),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(exchange(&mut stream, b"llo").await, "HTTP/1.1 200 OK");
}

/// The idle timeout is for a connection that neither reads nor writes: an answer still being
/// written (a download, a stream) keeps its connection for as long as it makes progress, though
/// the client sends nothing meanwhile.
#[tokio::test]
async fn an_answer_that_keeps_streaming_outlasts_the_idle_timeout() {
    let addr = serve(ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        ..ServeLimits::default()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the stream goes on")
            .unwrap();
        assert!(
            n > 0,
            "the connection was closed mid-answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).contains("chunk 9"));
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_server_goes_on() {
    let addr = serve(ServeLimits {
        max_connections: 3,
        header_read_timeout: Duration::from_millis(800),
        ..ServeLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A fourth is closed at once.
    let mut surplus = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut surplus, Duration::from_millis(500)).await);

    // Once the held ones are gone (they time out), the server answers again.
    drop(held);
    let mut answered = false;
    for _ in 0..50 {
        if let Ok(res) = reqwest::get(format!("http://{addr}/healthz")).await {
            answered = res.status() == StatusCode::OK;
            if answered {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the server goes on");
}

/// One HTTP/2 frame: its type, flags, stream and payload.
async fn read_frame(stream: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], id, payload)
}

#[tokio::test]
async fn a_client_that_speaks_http2_with_prior_knowledge_is_answered_in_http2() {
    let addr = serve(ServeLimits::default()).await;
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    // The preface, an empty SETTINGS frame, then GET /api/things/abc on stream 1 (HPACK:
    // :method GET, :scheme http, :path and :authority as literals).
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let path = b"/api/things/abc";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 1, b'x']);
    out.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    h2.write_all(&out).await.unwrap();

    let (mut status, mut body) = (None, Vec::new());
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (kind, flags, id, payload) = read_frame(&mut h2).await;
            match (kind, id) {
                // HEADERS: `:status 200` is HPACK's static entry 8.
                (0x1, 1) => status = payload.first().copied(),
                (0x0, 1) => body.extend_from_slice(&payload),
                _ => {}
            }
            if id == 1 && flags & 0x1 != 0 {
                break;
            }
        }
    })
    .await
    .expect("an HTTP/2 answer on stream 1");
    assert_eq!(status, Some(0x88), "the answer's status is 200");
    assert_eq!(body, b"abc");

    // HTTP/1.1 on the same listener still works.
    let ok = reqwest::get(format!("http://{addr}/api/things/def"))
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "def");
}
