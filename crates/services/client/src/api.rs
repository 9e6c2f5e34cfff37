//! The API as the web client sees it: HTTP calls through the gateway (`API_BASE_URL`),
//! forwarding the browser's session cookie, address and request id, and handing back the
//! session cookies the API sets.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, header};
use bt_contract::FieldError;
use serde_json::Value;

/// An HTTP client of the API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Sent as [`PROXY_TOKEN_HEADER`](bt_platform::rate_limit::PROXY_TOKEN_HEADER), so that
    /// the API believes the browser's address this client forwards.
    proxy_token: Option<HeaderValue>,
}

/// Who the call is made for: the browser's session, address and request id.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub session: Option<String>,
    pub address: Option<IpAddr>,
    pub request_id: Option<String>,
}

/// An API answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    /// `Set-Cookie` headers to pass on to the browser (the session is the API's own).
    pub set_cookies: Vec<HeaderValue>,
    /// The `rel="next"` link, if any.
    pub next: Option<String>,
}

/// The API could not be reached, failed, or answered with something unreadable.
#[derive(Debug, thiserror::Error)]
#[error("the API is unavailable: {reason}")]
pub struct Unavailable {
    pub reason: String,
    /// Set when the API answered 503 with `Retry-After` (the seconds to wait): not an outage but
    /// a request to ask again in a moment — what the request names was created a moment ago
    /// and has not reached the service that answers yet, or an outcome is still being decided.
    pub retry_after_secs: Option<u64>,
}

impl Unavailable {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after_secs: None,
        }
    }
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error entries of an error reply.
    pub fn errors(&self) -> Vec<FieldError> {
        serde_json::from_value::<bt_contract::error::ErrorBody>(self.json.clone())
            .map(|b| b.errors)
            .unwrap_or_default()
    }
}

impl Api {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with static settings");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            proxy_token: None,
        }
    }

    /// Proves this client to the API as a trusted proxy with `token` (see
    /// [`TrustedProxies`](bt_platform::rate_limit::TrustedProxies)).
    pub fn with_proxy_token(mut self, token: Option<&str>) -> Self {
        self.proxy_token = token.and_then(|t| {
            let mut value = HeaderValue::from_str(t).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, caller: &Caller, path: &str) -> Result<Reply, Unavailable> {
        self.call(caller, Method::GET, path, None).await
    }

    /// A GET with query parameters (encoded here).
    pub async fn get_query(
        &self,
        caller: &Caller,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Reply, Unavailable> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Unavailable::new(e.to_string()))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().filter(|(_, v)| !v.is_empty()));
        let path_and_query = match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        self.call(caller, Method::GET, &path_and_query, None).await
    }

    pub async fn post(
        &self,
        caller: &Caller,
        path: &str,
        body: Value,
    ) -> Result<Reply, Unavailable> {
        self.call(caller, Method::POST, path, Some(body)).await
    }

    pub async fn put(
        &self,
        caller: &Caller,
        path: &str,
        body: Value,
    ) -> Result<Reply, Unavailable> {
        self.call(caller, Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, caller: &Caller, path: &str) -> Result<Reply, Unavailable> {
        self.call(caller, Method::DELETE, path, None).await
    }

    async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, Unavailable> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(session) = &caller.session {
            request = request.header(
                header::COOKIE,
                format!("{}={session}", bt_contract::SESSION_COOKIE),
            );
        }
        if let Some(address) = caller.address {
            request = request.header("x-forwarded-for", address.to_string());
        }
        if let Some(token) = &self.proxy_token {
            request = request.header(bt_platform::rate_limit::PROXY_TOKEN_HEADER, token.clone());
        }
        if let Some(id) = &caller.request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Unavailable::new(e.to_string()))?;
        let status = response.status().as_u16();
        let headers: HeaderMap = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| Unavailable::new(e.to_string()))?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                Unavailable::new(format!("HTTP {status} with a body that is not JSON"))
            })?
        };
        if status >= 500 {
            let retry_after_secs = (status == 503)
                .then(|| headers.get(header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let message = serde_json::from_value::<bt_contract::error::ErrorBody>(json)
                .ok()
                .and_then(|b| b.errors.into_iter().next())
                .map(|e| format!(": {}", e.message))
                .unwrap_or_default();
            return Err(Unavailable {
                reason: format!("HTTP {status}{message}"),
                retry_after_secs,
            });
        }
        let set_cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        let next = headers
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_next_link);
        Ok(Reply {
            status,
            json,
            set_cookies,
            next,
        })
    }
}

/// The target of `<...>; rel="next"` in a `Link` header.
pub fn parse_next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_read_from_the_link_header() {
        assert_eq!(
            parse_next_link(r#"</api/tickets?limit=2&cursor=abc>; rel="next""#),
            Some("/api/tickets?limit=2&cursor=abc".into())
        );
        assert_eq!(
            parse_next_link(r#"</a>; rel="prev", </b>; rel="next""#),
            Some("/b".into())
        );
        assert_eq!(parse_next_link(r#"</a>; rel="prev""#), None);
    }
}
