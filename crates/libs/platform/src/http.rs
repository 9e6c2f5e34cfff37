//! HTTP plumbing shared by every service: composing services into one app, the common layers,
//! health and metrics endpoints, and serving with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bt_contract::ApiError;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::db::Db;

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

/// Composes services into one application, as the ingress does: every service's routes on one
/// router, `/healthz`, `/readyz` and `/metrics`, unknown paths and methods answered in the error
/// format, and the common layers.
pub fn app(services: Vec<Service>) -> Router {
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
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(Arc::new(checks)))
        .route("/metrics", get(metrics_endpoint))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(scope_request_id))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("handler panicked").into_response()
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), uri = %req.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

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
        handle
    })
}

async fn metrics_endpoint() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

/// Makes the request id the current one for everything the request does (see [`crate::context`]).
async fn scope_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    crate::context::with_request_id(id, next.run(req)).await
}

async fn record_metrics(req: Request, next: Next) -> Response {
    metrics_handle();
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        metrics::counter!("http_server_errors_total").increment(1);
    }
    response
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

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

    #[tokio::test]
    async fn handlers_see_the_request_id_as_the_current_one() {
        let router = Router::new().route(
            "/api/whoami",
            get(|| async { crate::context::request_id().unwrap_or_default() }),
        );
        let app = app(vec![Service {
            name: "whoami",
            router,
            checks: vec![],
        }]);
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
        let (status, _, body) =
            call(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.lines().any(|l| l.starts_with("http_requests_total")
                && l.contains(r#"route="/api/things""#)
                && l.contains(r#"status="200""#)),
            "{body}"
        );
    }
}
