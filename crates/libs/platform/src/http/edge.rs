//! The common layers of every route as one [`tower::Layer`]: [`Edge`].
//!
//! What a request goes through, in this order:
//!
//! 1. `Authorization` and `Cookie` are marked sensitive (never shown in debug output).
//! 2. Its request id: the `x-request-id` it came with (from the ingress) if that is at most
//!    [`MAX_REQUEST_ID_BYTES`] of letters, digits, `-`, `_`, `.` and `:`, else a new UUID
//!    (which replaces the caller's in the request too). It is answered in the same header,
//!    and it is the current id of everything the request does ([`crate::context`]: log
//!    lines, events), in the `http` tracing span with the method and the path.
//! 3. A request target longer than [`MAX_URI_BYTES`] is answered 414 at once.
//! 4. The handler runs within the request timeout (408 after it). A panic in it is caught and
//!    answered 500.
//! 5. An error response the framework produced that is neither JSON nor a page (a rejected
//!    path parameter, a body over the limit read by an extractor, the 408) gets the contract's
//!    `{"errors":[...]}` body with its status.
//! 6. An answer to a request that carried credentials (an `Authorization` or a `Cookie`
//!    header: any, as the session may be in either) or that sets a cookie, and whose handler
//!    chose no `Cache-Control`, is [`PRIVATE_NO_STORE`]: per-user answers are kept by no cache.
//!    A handler's own `Cache-Control` is kept (the public listing's `s-maxage`, its 304s).
//!    No `Vary` is added: a `no-store` answer is not stored, and whether an answer a handler
//!    made cacheable depends on the caller is for the handler to say.
//! 7. It is counted: `http_requests_total` and `http_request_duration_seconds` by method,
//!    matched route and status, and `http_server_errors_total` for a 500; and in the process's
//!    own count of requests started ([`super::requests`]), which the outbox relay waits on.
//!
//! Why one layer rather than a stack of tower-http layers and `from_fn` middlewares (which did
//! the same): `Router::layer` boxes each layer it is given around every route, and every
//! `from_fn` boxes the rest of the stack again for each request (its `Next`). In the browse
//! benchmark the boxing, cloning and dropping of those layers was about a quarter of the
//! server's time per request, more than the handler's. Here a request costs one boxed future
//! and one clone of the inner service, and the metrics' handles are looked up without building
//! labels (see [`RouteMetrics`]).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bt_contract::ApiError;
use futures::FutureExt;
use tracing::Instrument;

use super::{MAX_URI_BYTES, REQUEST_ID};

/// The common layers as one; see the module's documentation.
#[derive(Clone)]
pub(crate) struct Edge {
    request_timeout: Duration,
    metrics: Arc<RouteMetrics>,
}

impl Edge {
    pub(crate) fn new(request_timeout: Duration) -> Self {
        // The recorder must be installed before the first handle is made.
        super::metrics_handle();
        Self {
            request_timeout,
            metrics: Arc::new(RouteMetrics::default()),
        }
    }
}

impl<S> tower::Layer<S> for Edge {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            inner,
            edge: self.clone(),
        }
    }
}

/// [`Edge`] around one route.
#[derive(Clone)]
pub(crate) struct EdgeService<S> {
    inner: S,
    edge: Edge,
}

impl<S> tower::Service<Request> for EdgeService<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        super::requests().started();
        // The service made ready is the one to call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let edge = self.edge.clone();

        let headers = req.headers_mut();
        let mut credentialed = false;
        for name in [header::AUTHORIZATION, header::COOKIE] {
            if let Some(value) = headers.get_mut(&name) {
                value.set_sensitive(true);
                credentialed = true;
            }
        }
        let id = match headers.get(&REQUEST_ID) {
            Some(given) if is_plain_request_id(given.as_bytes()) => given.clone(),
            _ => {
                let mut text = uuid::Uuid::encode_buffer();
                let made = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
                let made = HeaderValue::from_str(made).expect("a UUID is a valid header value");
                headers.insert(REQUEST_ID.clone(), made.clone());
                made
            }
        };
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        // At DEBUG: a line written during the request carries its id anyway (`telemetry`).
        let span = tracing::debug_span!(
            "http",
            method = %method,
            uri = %req.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
        );
        let uri = req.uri();
        let too_long = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1) > MAX_URI_BYTES;

        let future = async move {
            let mut response = if too_long {
                ApiError::Status {
                    status: StatusCode::URI_TOO_LONG,
                    message: "The request URL is too long".into(),
                }
                .into_response()
            } else {
                let current = id.to_str().ok().map(str::to_owned);
                let handled = AssertUnwindSafe(crate::context::with_request_id(
                    current,
                    tokio::time::timeout(edge.request_timeout, inner.call(req)),
                ))
                .catch_unwind()
                .await;
                match handled {
                    Ok(Ok(Ok(response))) => in_the_contract_format(response),
                    Ok(Ok(Err(never))) => match never {},
                    Ok(Err(_elapsed)) => {
                        in_the_contract_format(StatusCode::REQUEST_TIMEOUT.into_response())
                    }
                    Err(_panic) => ApiError::internal("handler panicked").into_response(),
                }
            };
            if !response.headers().contains_key(&REQUEST_ID) {
                response.headers_mut().insert(REQUEST_ID.clone(), id);
            }
            let headers = response.headers_mut();
            if (credentialed || headers.contains_key(header::SET_COOKIE))
                && !headers.contains_key(header::CACHE_CONTROL)
            {
                headers.insert(header::CACHE_CONTROL, PRIVATE_NO_STORE);
            }
            let status = response.status();
            edge.metrics
                .record(&method, route.as_ref(), status, started);
            tracing::debug!(
                status = status.as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1e3,
                "finished processing request"
            );
            Ok(response)
        };
        Box::pin(future.instrument(span))
    }
}

/// The `Cache-Control` of an answer to a caller with credentials whose handler chose none.
const PRIVATE_NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

/// The longest request id taken from a caller (a UUID is 36 bytes, a W3C `traceparent` 55).
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether a caller's `x-request-id` is kept: 1 to [`MAX_REQUEST_ID_BYTES`] bytes of ASCII
/// letters, digits, `-`, `_`, `.` and `:`. That keeps the ids of ingress-nginx (32 hex digits),
/// UUIDs and tracing ids, and nothing that could end the id in a log line and start another
/// field (a space, `=`, a quote) or fill the logs and the outbox (a 7 KB id was taken).
fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// An error response that is neither JSON nor a page gets the `{"errors":[...]}` body with its
/// status (`Retry-After`, `Allow` and the request id kept).
fn in_the_contract_format(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let message = match status {
        StatusCode::REQUEST_TIMEOUT => "The request took too long".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large".to_owned(),
        StatusCode::BAD_REQUEST => "The request is not valid".to_owned(),
        other => other.canonical_reason().unwrap_or("Error").to_owned(),
    };
    let mut replaced = ApiError::Status { status, message }.into_response();
    for name in [header::RETRY_AFTER, header::ALLOW, REQUEST_ID.clone()] {
        if let Some(value) = response.headers().get(&name) {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}

/// The request metrics' handles, per route, method and status, made once each: recording a
/// request is then two atomic updates, where `metrics::counter!` with labels builds three label
/// strings and looks the key up in the registry every time.
#[derive(Default)]
pub(crate) struct RouteMetrics {
    /// By matched route ("unmatched" for none); a route has few methods and statuses, so
    /// they are a short list each.
    by_route: RwLock<HashMap<String, Vec<RouteHandles>>>,
}

struct RouteHandles {
    method: Method,
    status: StatusCode,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl RouteMetrics {
    fn record(
        &self,
        method: &Method,
        route: Option<&MatchedPath>,
        status: StatusCode,
        started: Instant,
    ) {
        let route = route.map_or("unmatched", MatchedPath::as_str);
        let seconds = started.elapsed().as_secs_f64();
        let recorded = |handles: &[RouteHandles]| {
            let found = handles
                .iter()
                .find(|h| h.status == status && h.method == method);
            if let Some(h) = found {
                h.requests.increment(1);
                h.duration.record(seconds);
            }
            found.is_some()
        };
        let by_route = self.by_route.read().unwrap_or_else(|e| e.into_inner());
        if !by_route.get(route).is_some_and(|h| recorded(h)) {
            drop(by_route);
            let mut by_route = self.by_route.write().unwrap_or_else(|e| e.into_inner());
            let handles = by_route.entry(route.to_owned()).or_default();
            // Another request may have made them meanwhile.
            if !recorded(handles) {
                let labels = [
                    ("method", method.to_string()),
                    ("route", route.to_owned()),
                    ("status", status.as_u16().to_string()),
                ];
                handles.push(RouteHandles {
                    method: method.clone(),
                    status,
                    requests: metrics::counter!("http_requests_total", &labels),
                    duration: metrics::histogram!("http_request_duration_seconds", &labels),
                });
                recorded(handles);
            }
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            metrics::counter!("http_server_errors_total").increment(1);
        }
    }
}
