//! The one error type every handler returns, and its wire format.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One entry of the `errors` array. `field` is present only for validation errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub message: String,
    /// The request field that failed validation (its name on the wire); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

/// The body of every error response: `{"errors":[...]}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[schema(min_items = 1)]
    pub errors: Vec<FieldError>,
}

/// Every error a client can see. The status code of each variant is chosen in
/// [`ApiError::status`] and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with one entry per failed field.
    #[error("validation failed: {0:?}")]
    Validation(Vec<FieldError>),
    /// 400 with a message and no field.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `Not authorized`.
    #[error("Not authorized")]
    NotAuthorized,
    /// 404 `Not Found`.
    #[error("Not Found")]
    NotFound,
    /// 405 for a known path with another method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 413 for a body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 for a body that is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429 with a `Retry-After` header.
    #[error("Too many requests, please try again later")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503 when a dependency (database, bus) is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with a `Retry-After` header: the request names something that exists but has not
    /// reached this service yet, or an outcome that is still being decided.
    #[error("{message}")]
    RetryLater {
        message: String,
        retry_after_secs: u64,
    },
    /// Any other status the framework produces (408, 414, ...), with its message.
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    /// 500. The source is logged once and never sent to the client.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// 503 + `Retry-After`: try again in `retry_after_secs`.
    pub fn retry_later(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::RetryLater {
            message: message.into(),
            retry_after_secs,
        }
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotAuthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::RetryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Status { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `errors` array sent to the client.
    pub fn errors(&self) -> Vec<FieldError> {
        let message = |m: &str| {
            vec![FieldError {
                message: m.to_owned(),
                field: None,
            }]
        };
        match self {
            Self::Validation(errors) => errors.clone(),
            Self::Internal(_) => message("Something went wrong"),
            other => message(&other.to_string()),
        }
    }
}

/// Database failures are internal errors, except those a client may simply retry: an
/// exhausted connection pool (503, overload), and a database that is unreachable, restarting,
/// out of connections, or that refused a transaction for a conflict (serialization failure,
/// deadlock, a SQLite database busy past its timeout) — 503 with `Retry-After`. A database that
/// is down is a dependency that is down (ARCHITECTURE §3), not a bug: it is logged as a
/// warning, at most once every [`OUTAGE_WARNING_EVERY_SECS`] seconds per process, however many
/// requests meet it.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => {
                warn_outage("database connection pool exhausted", &err);
                Self::Unavailable("Service is busy, please try again".into())
            }
            other if is_transient(&other) => {
                warn_outage(
                    "database unavailable (requests answer 503 until it is back)",
                    &other,
                );
                Self::retry_later("Service is temporarily unavailable, please try again", 1)
            }
            other => Self::internal(other),
        }
    }
}

/// How often (at most) a process logs that its database is unreachable or busy.
pub const OUTAGE_WARNING_EVERY_SECS: u64 = 10;

/// Whether a database error is one that passes by itself: the connection (lost, refused,
/// closed pool), the server (shutting down, starting, out of connections or resources), or a
/// transaction conflict that a retry resolves.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            let code = code.as_ref();
            // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P01-03
            // shutdown / crash / cannot connect now, 40001 serialization failure, 40P01
            // deadlock. SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (and their extended codes).
            // (PostgreSQL's codes have five characters, SQLite's extended codes at most four
            // digits, the primary code in the low byte.)
            let sqlite_busy =
                code.len() < 5 && code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
                || sqlite_busy
        }),
        _ => false,
    }
}

fn warn_outage(what: &str, err: &sqlx::Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + OUTAGE_WARNING_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %err, "{what}");
    } else {
        tracing::debug!(error = %err, "{what}");
    }
}

/// A failed background task (e.g. `spawn_blocking`) is an internal error.
impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::internal(err)
    }
}

/// The result of a handler or domain function.
pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, error.debug = ?source, "internal error");
        }
        let status = self.status();
        let body = ErrorBody {
            errors: self.errors(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyRequests { retry_after_secs }
        | Self::RetryLater {
            retry_after_secs, ..
        } = self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(err: ApiError) -> (StatusCode, serde_json::Value) {
        let response = err.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn validation_errors_render_one_entry_per_field_with_the_field_name() {
        let (status, body) = render(ApiError::Validation(vec![
            FieldError::new("email", "Email must be valid"),
            FieldError::new("password", "Password must be between 4 and 128 characters"),
        ]))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({"errors": [
                {"message": "Email must be valid", "field": "email"},
                {"message": "Password must be between 4 and 128 characters", "field": "password"}
            ]})
        );
    }

    #[tokio::test]
    async fn each_variant_has_the_contract_status_and_no_field() {
        let cases = [
            (ApiError::bad_request("Email in use"), 400, "Email in use"),
            (ApiError::NotAuthorized, 401, "Not authorized"),
            (ApiError::NotFound, 404, "Not Found"),
            (ApiError::MethodNotAllowed, 405, "Method Not Allowed"),
            (ApiError::PayloadTooLarge("too big".into()), 413, "too big"),
            (ApiError::UnsupportedMediaType("json".into()), 415, "json"),
            (
                ApiError::TooManyRequests {
                    retry_after_secs: 3,
                },
                429,
                "Too many requests, please try again later",
            ),
        ];
        for (err, code, message) in cases {
            let (status, body) = render(err).await;
            assert_eq!(status.as_u16(), code, "{message}");
            assert_eq!(body, serde_json::json!({"errors": [{"message": message}]}));
        }
    }

    #[tokio::test]
    async fn internal_errors_never_leak_their_details() {
        let (status, body) = render(ApiError::internal("password column missing")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"message": "Something went wrong"}]})
        );
    }

    #[tokio::test]
    async fn retry_later_is_a_503_that_says_when_to_retry() {
        let response = ApiError::retry_later("Not known here yet", 2).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let (_, body) = render(ApiError::retry_later("Not known here yet", 2)).await;
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"message": "Not known here yet"}]})
        );
    }

    #[tokio::test]
    async fn too_many_requests_says_when_to_retry() {
        let response = ApiError::TooManyRequests {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
