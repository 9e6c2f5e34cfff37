//! HTTP plumbing shared by every service: composing services into one app, the common layers,
//! health and metrics endpoints, and serving with graceful shutdown.
//!
//! - `http/closes.rs`: on a connection thread, a finished connection's socket is closed when
//!   the thread is idle.
//! - `http/edge.rs`: the common layer (request ids, the request's timeout, metrics, errors in
//!   the contract's format).
//! - `http/heads.rs`: each request's head within `header_read_timeout`, idle keep-alive
//!   connections kept for `idle_timeout`.
//! - `http/idle.rs`: a connection that neither reads nor writes for `idle_timeout` is closed.
//! - `http/load.rs`: the requests each process starts, for the event relay to yield to a burst.
//! - `http/threads.rs`: the connection threads.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bt_contract::ApiError;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::db::Db;

mod closes;
mod edge;
mod heads;
mod idle;
mod load;
mod threads;

pub use load::{REQUEST_WINDOW, Requests, requests};

/// The largest request body any API route accepts.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The header that carries the request id across HTTP hops and into events.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One readiness check of `/readyz`: a name and an async probe.
#[derive(Clone)]
pub struct Check {
    pub name: String,
    probe: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
    /// Shown beside the checks when ready: `(key, what)`.
    detail: Option<(String, Arc<dyn Fn() -> serde_json::Value + Send + Sync>)>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

impl Check {
    pub fn new<F, Fut>(name: impl Into<String>, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            probe: Arc::new(move || Box::pin(probe())),
            detail: None,
        }
    }

    /// Adds `key: detail()` to the body of a ready `/readyz` (information, never a failure).
    pub fn with_detail(
        mut self,
        key: impl Into<String>,
        detail: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.detail = Some((key.into(), Arc::new(detail)));
        self
    }

    /// The database answers a round trip.
    pub fn database(name: impl Into<String>, db: Db) -> Self {
        Self::new(name, move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(2), (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err("timed out".into()),
        }
    }
}

/// A service ready to be mounted: its routes (full paths, no fallback) and its readiness checks.
#[derive(Debug)]
pub struct Service {
    pub name: &'static str,
    pub router: Router,
    pub checks: Vec<Check>,
}

/// How the composed application behaves beyond its services' routes.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// `/metrics` on this application, for `Authorization: Bearer <token>` only; `None`: not
    /// served here (see [`metrics_router`] for a listener of its own).
    pub metrics_token: Option<String>,
    /// The longest a request may take (408 in the error format after it).
    pub request_timeout: Duration,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            metrics_token: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The longest request target the application answers (414 in the error format beyond).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Composes services into one application, as the ingress does: every service's routes on one
/// router, `/healthz` and `/readyz`, unknown paths and methods answered in the error format, and
/// the common layers. `/metrics` is not served (see [`app_with`]).
pub fn app(services: Vec<Service>) -> Router {
    app_with(services, &AppOptions::default())
}

/// [`app`] with options: `/metrics` behind a token, the request timeout.
pub fn app_with(services: Vec<Service>, options: &AppOptions) -> Router {
    let mut router = Router::new();
    let mut checks = Vec::new();
    for service in services {
        router = router.merge(service.router);
        for check in service.checks {
            if !checks.iter().any(|c: &Check| c.name == check.name) {
                checks.push(check);
            }
        }
    }
    if let Some(token) = options.metrics_token.clone() {
        router = router.route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let token = token.clone();
                async move {
                    let given = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
                        metrics_endpoint().await.into_response()
                    } else {
                        ApiError::NotAuthorized.into_response()
                    }
                }
            }),
        );
    }
    router
        .merge(health_routes(Arc::new(checks)).0)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // One `Router::layer`: each call boxes its layer around every route again.
        .layer(
            tower::ServiceBuilder::new()
                .layer(edge::Edge::new(options.request_timeout))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
}

/// `/metrics` alone, for a listener of its own (`METRICS_ADDR`, e.g. on an internal port that
/// only the Prometheus scraper reaches).
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .fallback(|| async { ApiError::NotFound })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/healthz` and `/readyz`, registered and described by the same call.
pub(crate) fn health_routes(checks: Arc<Vec<Check>>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .split_for_parts();
    (router.with_state(checks), doc)
}

/// `{"status": "ok"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: String,
}

/// `{"status": "ready", "checks": [...]}` and the checks' details.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Readiness {
    /// Always `ready`.
    #[schema(pattern = "^ready$")]
    status: String,
    /// The names of the checks that passed (all of them).
    checks: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "The process is alive.", body = Health))
)]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the databases and the event bus answer",
    description = "Runs every readiness check of the services in this process (2 s each). \
        More keys may follow `checks` (consumer lag, event log figures).",
    responses(
        (status = 200, description = "Every check passed.", body = Readiness),
        (status = 503, description = "`Not ready: <check>: <why>`: a check failed or timed out.", body = bt_contract::error::ErrorBody),
    )
)]
async fn readyz(State(checks): State<Arc<Vec<Check>>>) -> Response {
    let results = futures::future::join_all(
        checks
            .iter()
            .map(|c| async move { (c.name.clone(), c.run().await) }),
    )
    .await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    if failed.is_empty() {
        let names: Vec<&String> = results.iter().map(|(n, _)| n).collect();
        let mut body = serde_json::json!({"status": "ready", "checks": names});
        for check in checks.iter() {
            if let Some((key, detail)) = &check.detail {
                let value = detail();
                match (body.get_mut(key.as_str()), value) {
                    (Some(serde_json::Value::Object(have)), serde_json::Value::Object(more)) => {
                        have.extend(more);
                    }
                    (_, value) => {
                        body[key.as_str()] = value;
                    }
                }
            }
        }
        axum::Json(body).into_response()
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        ApiError::Unavailable(format!("Not ready: {}", failed.join("; "))).into_response()
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        // The recorder keeps every histogram sample until it is drained, which a scrape does,
        // and this: without it, a process nobody scrapes (`up` by default) kept each request's
        // duration for ever (8 bytes a request; 30 MB in the browse benchmark).
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                    METRICS_UPKEEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "cannot start the metrics upkeep; histograms grow until scraped");
        }
        handle
    })
}

/// How often histogram samples are drained into their buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static METRICS_UPKEEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times the metrics' upkeep has run in this process (for tests).
pub fn metrics_upkeeps() -> u64 {
    METRICS_UPKEEPS.load(std::sync::atomic::Ordering::Relaxed)
}

async fn metrics_endpoint() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

/// What a listener tolerates from its clients.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Connections open at one time; one more is closed at once (and counted).
    pub max_connections: usize,
    /// How long a client may take to send a request's head, counted from its first byte (from
    /// the accept for a connection's first request). Not the wait between requests on a
    /// keep-alive connection: that is `idle_timeout`'s (`http/heads.rs`).
    pub header_read_timeout: Duration,
    /// How long a connection may stay without reading or writing a byte (idle keep-alive, a
    /// body trickled slowly) before it is closed.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// The threads that run the connections, one single-threaded runtime each (see
    /// `http/threads.rs`); 0 runs them on the caller's runtime.
    pub connection_threads: usize,
}

/// One connection thread per core.
pub fn default_connection_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            connection_threads: default_connection_threads(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, ServeLimits::default()).await
}

/// [`serve`] with explicit limits: at most `max_connections` at a time, headers within
/// `header_read_timeout`, no connection silent for longer than `idle_timeout` (requests as a
/// whole are bounded by the application's own timeout, see [`app`]), each connection on one of
/// `connection_threads` (an error if they cannot be started).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    use futures::FutureExt;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tokio::io::AsyncWriteExt;
    use tower::ServiceExt;

    let dispatch = threads::Dispatch::new(limits.connection_threads)?;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1, and HTTP/2 with prior knowledge (h2c) when the first line is its preface. Not
    // hyper-util's `auto` builder: it reads the first bytes again to tell the two apart, and
    // HTTP/1's read buffer then grows from 8 to 16 KB on every connection (16 MB more at the
    // peak of a rush's 2,000 connections), while the request line read below tells them apart
    // already.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // Not hyper's: it closed keep-alive connections idle for longer than the head's bound
        // (`http/heads.rs`, which bounds each head instead).
        .header_read_timeout(None)
        // Long enough for any URL the application answers itself (414 in the error format).
        .max_buf_size(256 * 1024);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    let builders = Arc::new((http1, http2));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // E.g. out of file descriptors: wait for connections to close.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            tracing::debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let accepted = tokio::time::Instant::now();
        let router = app.clone();
        let heads = heads::Heads::first();
        let service_heads = heads.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            service_heads.handling();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answered = service_heads.clone();
            router
                .clone()
                .oneshot(req.map(axum::body::Body::new))
                .inspect(move |_| answered.answered())
        });
        let builders = builders.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        dispatch.spawn(stream, move |stream| async move {
            let mut stream = closes::Closing::new(stream, Some(permit));
            // The first request line is read here, so that one too long for the HTTP parser
            // (which would answer a bare 414) is answered in the contract's format.
            let head = match tokio::time::timeout(
                limits.header_read_timeout,
                read_request_line(&mut stream),
            )
            .await
            {
                Ok(Ok(RequestLine::Read(head))) => head,
                Ok(Ok(RequestLine::TooLong)) => {
                    let _ = stream.write_all(URI_TOO_LONG_RESPONSE.as_bytes()).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                Ok(Err(_)) | Err(_) => return,
            };
            let h2 = head.starts_with(HTTP2_PREFACE_LINE);
            // Each HTTP/1 head within `header_read_timeout`, the first one counted from the
            // accept (HTTP/2's streams share the connection: bound by the idle timeout only).
            let head_limit = (!h2).then_some(limits.header_read_timeout);
            let io = idle::IdleBound::new(
                heads::HeadBound::new(
                    Prefixed {
                        prefix: head,
                        offset: 0,
                        inner: stream,
                    },
                    heads,
                    head_limit,
                    accepted,
                ),
                limits.idle_timeout,
            );
            let io = TokioIo::new(io);
            let (http1, http2) = &*builders;
            let served = if h2 {
                // Boxed: HTTP/2's connection state is larger, and every connection's task
                // would otherwise be sized for it.
                Box::pin(watcher.watch(http2.serve_connection(io, service))).await
            } else {
                watcher.watch(http1.serve_connection(io, service)).await
            };
            if let Err(err) = served {
                tracing::debug!(%peer, %err, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period; closing them");
    }
    Ok(())
}

/// The first line of HTTP/2's connection preface (RFC 9113, 3.4): a client that speaks HTTP/2
/// with prior knowledge.
const HTTP2_PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// What the first request line of a connection was.
enum RequestLine {
    /// Read (possibly with more bytes after it, or the client went away): hand these to the
    /// HTTP parser first.
    Read(Vec<u8>),
    /// Longer than the application answers.
    TooLong,
}

/// The 414 a request line over [`MAX_URI_BYTES`] gets, in the contract's format.
const URI_TOO_LONG_RESPONSE: &str = "HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 54\r\nconnection: close\r\n\r\n{\"errors\":[{\"message\":\"The request URL is too long\"}]}";

/// Reads until the end of the first line (or the client stops sending). Straight into `head`:
/// a buffer on the stack here would live in every connection's task for as long as the
/// connection (4 KB each, 8 MB for a rush of 2,000 connections).
async fn read_request_line(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<RequestLine> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if head.contains(&b'\n') {
            return Ok(RequestLine::Read(head));
        }
        // The method, a space, the target, a space, the version.
        if head.len() > MAX_URI_BYTES + 32 {
            return Ok(RequestLine::TooLong);
        }
        if head.capacity() - head.len() < 512 {
            head.reserve(4096);
        }
        if stream.read_buf(&mut head).await? == 0 {
            return Ok(RequestLine::Read(head));
        }
    }
}

/// A stream that first yields bytes read from it already.
struct Prefixed<S> {
    prefix: Vec<u8>,
    offset: usize,
    inner: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.offset < self.prefix.len() {
            let rest = &self.prefix[self.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.offset += n;
            if self.offset == self.prefix.len() {
                self.prefix = Vec::new();
                self.offset = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// process that has printed its address may be told to stop at once, and `serve_with` polls
/// this future only between accepts. A signal in that gap used to find the default action and
/// end the process on the spot (no graceful stop, exit by signal).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::error!(%err, "cannot listen for {name}");
                None
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "Ctrl-C");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            async fn received(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = received(interrupt) => tracing::info!("Ctrl-C received, shutting down"),
                () = received(terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderValue, Method, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    /// A SIGTERM that arrives after `shutdown_signal()` is called but before its future is
    /// first polled stops the server gracefully. (With the handler installed on first poll, the
    /// signal killed this test process.)
    #[cfg(unix)]
    #[tokio::test]
    async fn a_signal_before_the_first_poll_is_a_graceful_stop() {
        let stop = shutdown_signal();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the signal ends the wait");
    }

    async fn boom() -> &'static str {
        let items: Vec<&str> = Vec::new();
        items[1]
    }

    fn test_app() -> Router {
        let router = Router::new()
            .route("/api/things", post(|| async { "made" }))
            .route("/api/boom", get(boom));
        let failing = Check::new("bus", || async {
            Err::<(), _>("connection refused".to_owned())
        });
        app(vec![Service {
            name: "things",
            router,
            checks: vec![failing],
        }])
    }

    async fn call(app: Router, req: Request) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app.oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn unknown_paths_are_404_in_the_error_format() {
        let (status, _, body) = call(
            test_app(),
            Request::get("/api/nothing").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"errors":[{"message":"Not Found"}]}"#);
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_in_the_error_format() {
        let (status, _, body) = call(
            test_app(),
            Request::get("/api/things").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, r#"{"errors":[{"message":"Method Not Allowed"}]}"#);
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_without_details() {
        let (status, _, body) = call(
            test_app(),
            Request::get("/api/boom").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, r#"{"errors":[{"message":"Something went wrong"}]}"#);
    }

    #[tokio::test]
    async fn every_response_carries_a_request_id_and_keeps_the_callers() {
        let (_, headers, _) = call(
            test_app(),
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert!(uuid::Uuid::parse_str(headers[&REQUEST_ID].to_str().unwrap()).is_ok());
        let req = Request::get("/healthz")
            .header(&REQUEST_ID, "abc-123")
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = call(test_app(), req).await;
        assert_eq!(headers[&REQUEST_ID], "abc-123");
    }

    /// An app whose `/api/whoami` answers the request id current in its handler.
    fn whoami_app() -> Router {
        let router = Router::new().route(
            "/api/whoami",
            get(|| async { crate::context::request_id().unwrap_or_default() }),
        );
        app(vec![Service {
            name: "whoami",
            router,
            checks: vec![],
        }])
    }

    #[tokio::test]
    async fn handlers_see_the_request_id_as_the_current_one() {
        let app = whoami_app();
        let req = Request::get("/api/whoami")
            .header(&REQUEST_ID, "req-7")
            .body(Body::empty())
            .unwrap();
        let (_, _, body) = call(app.clone(), req).await;
        assert_eq!(body, "req-7");
        let (_, headers, body) = call(
            app,
            Request::get("/api/whoami").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            body,
            headers[&REQUEST_ID].to_str().unwrap(),
            "a generated id is current too"
        );
    }

    /// The caller's id is kept only if it is short and made of characters that cannot start
    /// another field of a log line; anything else is replaced by a new id, answered and
    /// current in the handler (and so in its log lines and events) instead of the caller's.
    #[tokio::test]
    async fn a_request_id_is_kept_only_if_short_and_plain_else_a_new_one_replaces_it() {
        let app = whoami_app();
        let longest = "a".repeat(128);
        let kept: &[(&str, &str)] = &[
            (
                "ed1b2d3c4f5a69788796a5b4c3d2e1f0",
                "ingress-nginx's $request_id",
            ),
            ("0f8fad5b-d9cb-469f-a165-70867728950e", "a UUID"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "a W3C traceparent",
            ),
            ("purchase-7", "letters, digits and a hyphen"),
            ("svc_1.pod-2:9f", "underscore, dot and colon"),
            (&longest, "128 bytes"),
        ];
        for (given, why) in kept {
            let req = Request::get("/api/whoami")
                .header(&REQUEST_ID, *given)
                .body(Body::empty())
                .unwrap();
            let (_, headers, body) = call(app.clone(), req).await;
            assert_eq!(headers[&REQUEST_ID], *given, "{why}: answered");
            assert_eq!(body, *given, "{why}: current in the handler");
        }

        let too_long = "a".repeat(129);
        let seven_kb = "b".repeat(7 * 1024);
        let replaced: &[(&[u8], &str)] = &[
            (
                b"x user.id=01a2-FAKE level=ERROR",
                "spaces and = forge log fields",
            ),
            (b"a=b", "an equals sign"),
            (b"\"quoted\"", "quotes"),
            (b"tab\there", "a tab"),
            (b"semi;colon", "a semicolon"),
            ("caf\u{e9}".as_bytes(), "not ASCII"),
            (b"", "empty"),
            (too_long.as_bytes(), "129 bytes"),
            (seven_kb.as_bytes(), "7 KB"),
        ];
        for (given, why) in replaced {
            let req = Request::get("/api/whoami")
                .header(&REQUEST_ID, HeaderValue::from_bytes(given).unwrap())
                .body(Body::empty())
                .unwrap();
            let (_, headers, body) = call(app.clone(), req).await;
            let answered = headers[&REQUEST_ID].to_str().unwrap();
            assert_ne!(
                answered,
                String::from_utf8_lossy(given),
                "{why}: not answered"
            );
            assert!(
                uuid::Uuid::parse_str(answered).is_ok(),
                "{why}: a new id is answered, not {answered:?}"
            );
            assert_eq!(
                body, answered,
                "{why}: the new id is current in the handler"
            );
        }
    }

    /// An answer to a request with credentials (or one that sets a cookie) is kept by no cache
    /// unless its handler chose a `Cache-Control`; an anonymous answer is left as it was.
    #[tokio::test]
    async fn a_credentialed_answer_is_private_and_not_stored_unless_its_handler_chose() {
        const PUBLIC: &str = "public, max-age=0, s-maxage=1";
        let router = Router::new()
            .route("/api/mine", get(|| async { "yours" }))
            .route(
                "/api/listing",
                get(|| async { ([(header::CACHE_CONTROL, PUBLIC)], "everyone's") }),
            )
            .route(
                "/api/listing-unchanged",
                get(|| async {
                    (
                        StatusCode::NOT_MODIFIED,
                        [(header::CACHE_CONTROL, PUBLIC), (header::ETAG, "\"1\"")],
                    )
                }),
            )
            .route(
                "/api/signin",
                post(|| async { ([(header::SET_COOKIE, "session=t; HttpOnly")], "in") }),
            );
        let app = app(vec![Service {
            name: "cache",
            router,
            checks: vec![],
        }]);
        let private = Some("private, no-store");
        let cookie = (header::COOKIE, "session=abc");
        let bearer = (header::AUTHORIZATION, "Bearer abc");
        /// The method, the path, the credential sent, the `Cache-Control` answered, and why.
        type Case = (
            Method,
            &'static str,
            Option<(HeaderName, &'static str)>,
            Option<&'static str>,
            &'static str,
        );
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (Method::GET, "/api/mine", Some(cookie.clone()), private, "a session cookie"),
            (Method::GET, "/api/mine", Some(bearer.clone()), private, "a Bearer token"),
            (Method::GET, "/api/nothing", Some(cookie.clone()), private, "a 404 to a signed-in caller"),
            (Method::GET, "/api/listing", Some(cookie.clone()), Some(PUBLIC), "the handler's own kept"),
            (Method::GET, "/api/listing-unchanged", Some(bearer.clone()), Some(PUBLIC), "a 304's own kept"),
            (Method::POST, "/api/signin", None, private, "an answer that sets a cookie"),
            (Method::GET, "/api/mine", None, None, "anonymous: unchanged"),
            (Method::GET, "/api/listing", None, Some(PUBLIC), "anonymous: the handler's own"),
        ];
        for (method, path, credential, expected, why) in cases {
            let mut req = Request::builder().method(method.clone()).uri(*path);
            if let Some((name, value)) = credential {
                req = req.header(name, *value);
            }
            let (_, headers, _) = call(app.clone(), req.body(Body::empty()).unwrap()).await;
            let cache_control = headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect::<Vec<_>>();
            assert_eq!(
                cache_control,
                expected.iter().copied().collect::<Vec<_>>(),
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn readyz_names_the_failing_check_with_503() {
        let (status, _, body) = call(
            test_app(),
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            r#"{"errors":[{"message":"Not ready: bus: connection refused"}]}"#
        );
    }

    #[tokio::test]
    async fn metrics_count_requests_by_route_and_status() {
        let app = test_app();
        call(
            app.clone(),
            Request::post("/api/things").body(Body::empty()).unwrap(),
        )
        .await;
        let (status, _, _) = call(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "not on the public listener");
        let (status, _, body) = call(
            metrics_router(),
            Request::get("/metrics").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.lines().any(|l| l.starts_with("http_requests_total")
                && l.contains(r#"route="/api/things""#)
                && l.contains(r#"status="200""#)),
            "{body}"
        );
    }
}
