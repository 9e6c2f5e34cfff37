//! JSON request bodies.
//!
//! [`ApiJson<T>`] reads the body itself so that every way a body can be wrong is answered in the
//! contract's error format: a content type other than JSON (415), a body over the limit set with
//! `axum::extract::DefaultBodyLimit` (413), malformed JSON or a body that is not an object (400).
//! Request types declare their fields as `Option<JsonField>`, so a field of the wrong type does
//! not fail the whole body: each field is then checked on its own and reported with its name.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::money::{Cents, MoneyError};

/// A JSON body of type `T`, parsed once at the edge.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&req) {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("Request body is too large".into())
            } else {
                ApiError::bad_request("Could not read the request body")
            }
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

fn has_json_content_type(req: &Request) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5
            && mime[..mime.len() - 5].contains('/')
            && mime.to_ascii_lowercase().ends_with("+json"))
}

/// Parses a request body into `T` with the contract's error messages.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(ApiError::bad_request("Request body must be a JSON object")),
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(ApiError::bad_request("Request body must be a JSON object"));
        }
        Some(_) => {}
    }
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => {
            ApiError::bad_request(format!("Request body has the wrong shape: {err}"))
        }
        _ => ApiError::bad_request(format!("Request body is not valid JSON: {err}")),
    })
}

/// One field of a request body, kept as the raw JSON text the client sent so that it can be
/// checked (and reported) on its own, and so that numbers are never rounded through `f64`.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct JsonField(Box<RawValue>);

impl JsonField {
    /// The raw JSON text of the field.
    pub fn raw(&self) -> &str {
        self.0.get()
    }

    /// Whether the field is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.raw() == "null"
    }

    /// The value when the field is a JSON boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The value when the field is a JSON string.
    pub fn as_str(&self) -> Option<String> {
        let raw = self.raw();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw).ok()
        } else {
            None
        }
    }

    /// Money from a JSON number (`20`, `20.5`) or a numeric string (`"25.50"`), exactly.
    pub fn as_cents(&self) -> Result<Cents, MoneyError> {
        let raw = self.raw();
        if raw.starts_with('"') {
            let text = self.as_str().ok_or(MoneyError::NotANumber)?;
            Cents::parse_decimal(text.trim())
        } else {
            Cents::parse_decimal(raw)
        }
    }
}

/// For `#[serde(default, deserialize_with = "bt_contract::json::present")]` on an
/// `Option<JsonField>`: a field sent as `null` is `Some` (its raw text `null`), so that a
/// request can tell "leave it" (absent, `None`) from "clear it" (`null`).
pub fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<JsonField>, D::Error> {
    <JsonField as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// The string value of an optional field: `None` when it is missing, null or not a string.
pub fn string_field(field: &Option<JsonField>) -> Option<String> {
    field.as_ref().and_then(JsonField::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_field_tells_null_from_absent() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "present")]
            venue: Option<JsonField>,
            #[serde(default, deserialize_with = "present")]
            flag: Option<JsonField>,
        }
        let body: Body = serde_json::from_str(r#"{"venue": null}"#).unwrap();
        assert!(body.venue.as_ref().is_some_and(JsonField::is_null));
        assert!(body.flag.is_none());
        let body: Body = serde_json::from_str(r#"{"venue": "Hall", "flag": false}"#).unwrap();
        assert_eq!(body.venue.unwrap().as_str().as_deref(), Some("Hall"));
        assert_eq!(body.flag.unwrap().as_bool(), Some(false));
    }
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use axum::{Json, Router};
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Body2 {
        name: Option<JsonField>,
        price: Option<JsonField>,
    }

    async fn echo(ApiJson(body): ApiJson<Body2>) -> Json<serde_json::Value> {
        Json(serde_json::json!({
            "name": string_field(&body.name),
            "price": body.price.map(|p| p.as_cents().map(|c| c.get()).ok()),
        }))
    }

    async fn send(content_type: Option<&str>, body: impl Into<Body>) -> (u16, serde_json::Value) {
        let app = Router::new()
            .route("/", post(echo))
            .layer(DefaultBodyLimit::max(64));
        let mut req = Request::post("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let response = app.oneshot(req.body(body.into()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn message(body: &serde_json::Value) -> &str {
        body["errors"][0]["message"].as_str().unwrap()
    }

    #[tokio::test]
    async fn a_json_object_is_parsed_field_by_field() {
        let (status, body) = send(
            Some("application/json; charset=utf-8"),
            r#"{"name":"Ada","price":20.5,"extra":[1]}"#,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::json!({"name": "Ada", "price": 2050}));
    }

    #[tokio::test]
    async fn fields_of_the_wrong_type_do_not_fail_the_whole_body() {
        let (status, body) = send(Some("application/json"), r#"{"name":5,"price":"x"}"#).await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::json!({"name": null, "price": null}));
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_content_is_415() {
        let cases = [
            (None, "{}"),
            (Some("text/plain"), "{}"),
            (Some("application/x-www-form-urlencoded"), "a=b"),
        ];
        for (ct, body) in cases {
            let (status, json) = send(ct, body).await;
            assert_eq!(status, 415, "{ct:?}");
            assert_eq!(message(&json), "Content-Type must be application/json");
        }
    }

    #[tokio::test]
    async fn a_vendor_json_content_type_is_accepted() {
        let (status, _) = send(Some("application/vnd.api+json"), "{}").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn malformed_json_is_400_in_the_error_format() {
        let (status, json) = send(Some("application/json"), r#"{"name": "#).await;
        assert_eq!(status, 400);
        assert!(message(&json).starts_with("Request body is not valid JSON"));
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_400() {
        for body in ["", "   ", "[1,2]", "5", "\"text\"", "null"] {
            let (status, json) = send(Some("application/json"), body).await;
            assert_eq!(status, 400, "{body:?}");
            assert_eq!(
                message(&json),
                "Request body must be a JSON object",
                "{body:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(100));
        let (status, json) = send(Some("application/json"), big).await;
        assert_eq!(status, 413);
        assert_eq!(message(&json), "Request body is too large");
    }
}
