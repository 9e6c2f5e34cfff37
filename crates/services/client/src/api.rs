//! The API as the web client sees it: HTTP calls through the gateway (`API_BASE_URL`),
//! forwarding the browser's session cookie, address and request id, and handing back the
//! session cookies the API sets.
//!
//! The replies the pages read are typed here ([`Ticket`], [`Payouts`], [`PayoutAccountLink`];
//! orders, notifications and alerts are the contract's: `bt_contract::resources::Order`,
//! [`NotificationList`], [`Alert`]): a reply of another shape is an API failure, never a
//! default. Ticket files go up and come down as raw bytes ([`Api::put_bytes`],
//! [`Api::get_file`]).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, header};
pub use bt_contract::resources::{
    Alert, CreditStatus, EntryKind, Notification, NotificationKind, NotificationList,
    PayoutAccountStatus,
};
use bt_contract::{Cents, FieldError, Millis, OrderId, TicketId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reply of sign-up and sign-in: `{id, email}` (the email in its canonical form).
#[derive(Debug, Clone, Deserialize)]
pub struct SignedIn {
    pub id: String,
    pub email: String,
}

/// A ticket as the API answers it (`GET /api/tickets`, `/api/tickets/:id`, `/api/tickets/mine`,
/// `POST`, `PUT`): the seed's `{id, title, price, userId, version, orderId}` and the extensions
/// `sold`, `venue`, `startsAt`, `faceValue`, `forSale`, `hasFile`. The API always sends every
/// field (`null` when unset); the booleans are required, so a reply without them is an API
/// failure rather than a guess.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    /// The current owner: the seller while listed, the buyer once their order completed.
    pub user_id: UserId,
    pub version: i64,
    /// The order that holds it; `null` when free.
    pub order_id: Option<OrderId>,
    /// Bought, and not listed again by its new owner yet.
    pub sold: bool,
    pub venue: Option<String>,
    pub starts_at: Option<Millis>,
    pub face_value: Option<Cents>,
    /// Whether its owner offers it.
    pub for_sale: bool,
    /// Whether its file was uploaded.
    pub has_file: bool,
}

/// What `POST /api/tickets` and `PUT /api/tickets/:id` are sent. Prices go as the text the
/// person typed (the API reads numeric strings exactly and names the field it refuses). On
/// `PUT` an optional field left `None` is absent (kept); `Some(None)` is `null` (cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketInput {
    pub title: String,
    pub price: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<Option<String>>,
    /// RFC 3339 in UTC (`2027-06-12T17:30:00Z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_value: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_sale: Option<bool>,
}

/// What `POST /api/alerts` is sent: the search, and the most to pay when one was typed — as
/// the text typed, like a ticket's price (the API reads numeric strings exactly and names the
/// field it refuses); absent for any price.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertInput {
    pub q: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<String>,
}

/// `GET /api/payouts[?before=<entry id>]`: the caller's sums by status and totals (both over
/// every entry), one page of entries (newest first), where the next page starts, the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payouts {
    pub pending: Cents,
    pub available: Cents,
    pub paid: Cents,
    pub totals: PayoutTotals,
    /// One page: at most the API's `limit`, older than the `before` asked for.
    pub entries: Vec<PayoutEntry>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next: Option<String>,
    pub account: PayoutAccount,
}

/// The sums of price, fee and amount over all the seller's entries except the reversed ones,
/// and how many are reversed (left out of the sums).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutTotals {
    pub price: Cents,
    pub fee: Cents,
    pub amount: Cents,
    pub reversed: i64,
}

/// One entry of a seller's ledger; `price = amount + fee`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutEntry {
    pub id: String,
    pub kind: EntryKind,
    pub order_id: OrderId,
    pub ticket_id: Option<TicketId>,
    pub title: Option<String>,
    pub price: Cents,
    pub fee: Cents,
    pub amount: Cents,
    pub status: CreditStatus,
    pub available_at: Millis,
    pub paid_at: Option<Millis>,
    pub created_at: Millis,
}

/// The seller's payout account: `{status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutAccount {
    pub status: PayoutAccountStatus,
}

/// `POST /api/payouts/account`: where the seller goes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutAccountLink {
    pub url: String,
}

/// A ticket file as `GET /api/tickets/:id/file` answered it.
#[derive(Debug, Clone)]
pub enum Download {
    /// 200: the bytes and the headers to pass on.
    File {
        content_type: Option<String>,
        content_disposition: Option<String>,
        bytes: axum::body::Bytes,
    },
    /// Any other answer below 500 (404 for everyone but the owner, 401 without a session).
    Refused(Reply),
}

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

    /// The body as the type the contract says it is.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.json)
    }

    /// The error entries of an error reply.
    pub fn errors(&self) -> Vec<FieldError> {
        serde_json::from_value::<bt_contract::error::ErrorBody>(self.json.clone())
            .map(|b| b.errors)
            .unwrap_or_default()
    }

    /// The messages of an error reply, as one text for a banner.
    pub fn message(&self) -> String {
        self.errors()
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How long an idle connection to the API is kept for the next call: less than the idle timeout
/// of the server it goes to (BuyTicket's 60 s, `bt_platform::http::ServeLimits`; nginx's 75 s),
/// so that a call is never sent on a connection the server is closing (reqwest keeps them 90 s
/// by default). The same rule as the ingress's (BENCHMARKS.md, issue 16 part 12).
const POOL_IDLE: Duration = Duration::from_secs(50);

impl Api {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE)
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
        let path_and_query = self.with_query(path, query)?;
        self.call(caller, Method::GET, &path_and_query, None).await
    }

    /// [`get_query`](Self::get_query) that gives up after `timeout` (connecting, answering and
    /// the body together), for what a page can do without (the header's unread count).
    pub async fn get_query_within(
        &self,
        caller: &Caller,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Reply, Unavailable> {
        let path_and_query = self.with_query(path, query)?;
        let request = self
            .request(caller, Method::GET, &path_and_query)
            .timeout(timeout);
        Self::reply(Self::send(request).await?).await
    }

    /// `path` with `query` encoded (empty values left out; no `?` when nothing is left).
    fn with_query(&self, path: &str, query: &[(&str, &str)]) -> Result<String, Unavailable> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Unavailable::new(e.to_string()))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().filter(|(_, v)| !v.is_empty()));
        Ok(match url.query() {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_owned(),
        })
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

    /// `PUT` of raw bytes (a ticket file), answered like any other call.
    pub async fn put_bytes(
        &self,
        caller: &Caller,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<Reply, Unavailable> {
        let request = self
            .request(caller, Method::PUT, path)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        Self::reply(Self::send(request).await?).await
    }

    /// A `GET` whose success is raw bytes (a ticket file); errors are the API's JSON.
    pub async fn get_file(&self, caller: &Caller, path: &str) -> Result<Download, Unavailable> {
        let response = Self::send(self.request(caller, Method::GET, path)).await?;
        if response.status() != reqwest::StatusCode::OK {
            return Self::reply(response).await.map(Download::Refused);
        }
        let text_header = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = text_header(header::CONTENT_TYPE);
        let content_disposition = text_header(header::CONTENT_DISPOSITION);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Unavailable::new(e.to_string()))?;
        Ok(Download::File {
            content_type,
            content_disposition,
            bytes,
        })
    }

    async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, Unavailable> {
        let mut request = self.request(caller, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::reply(Self::send(request).await?).await
    }

    /// A request to the API on behalf of `caller`: their session, address and request id, and
    /// this client's proxy token.
    fn request(&self, caller: &Caller, method: Method, path: &str) -> reqwest::RequestBuilder {
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
        request
    }

    async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Unavailable> {
        request
            .send()
            .await
            .map_err(|e| Unavailable::new(e.to_string()))
    }

    /// Reads a JSON answer (or none); 5xx is [`Unavailable`].
    async fn reply(response: reqwest::Response) -> Result<Reply, Unavailable> {
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
    use serde_json::json;

    #[test]
    fn idle_connections_are_let_go_before_the_api_closes_them() {
        let server = bt_platform::http::ServeLimits::default().idle_timeout;
        assert!(
            POOL_IDLE < server,
            "kept {POOL_IDLE:?}, the API closes after {server:?}"
        );
    }

    /// A ticket as the tickets service answers it.
    fn ticket_json() -> Value {
        json!({"id": "t1", "title": "Show", "price": 45, "userId": "u1", "version": 3,
            "orderId": null, "sold": false, "venue": "Paradiso", "startsAt": "2030-06-12T17:30:00.000Z",
            "faceValue": 40, "forSale": true, "hasFile": true})
    }

    #[test]
    fn a_ticket_reply_parses_and_one_of_another_shape_does_not() {
        let ticket: Ticket = serde_json::from_value(ticket_json()).unwrap();
        assert_eq!(
            (ticket.price, ticket.face_value, ticket.has_file),
            (Cents::new(4500), Some(Cents::new(4000)), true)
        );
        assert_eq!(
            ticket.starts_at.map(Millis::to_iso).as_deref(),
            Some("2030-06-12T17:30:00.000Z")
        );
        let cases = [
            ("forSale", None, "no forSale"),
            ("hasFile", None, "no hasFile"),
            (
                "startsAt",
                Some(json!("soon")),
                "a start that is not ISO-8601",
            ),
            (
                "faceValue",
                Some(json!("forty")),
                "a face value that is not money",
            ),
            ("price", Some(Value::Null), "no price"),
        ];
        for (field, value, why) in cases {
            let mut bad = ticket_json();
            match value {
                Some(value) => bad[field] = value,
                None => drop(bad.as_object_mut().unwrap().remove(field)),
            }
            assert!(serde_json::from_value::<Ticket>(bad).is_err(), "{why}");
        }
    }

    #[test]
    fn payouts_parse_strictly() {
        let good = json!({"pending": 38, "available": -2.5, "paid": 0,
            "totals": {"price": 120, "fee": 6.05, "amount": 113.95, "reversed": 1},
            "entries": [{"id": "c1", "kind": "credit", "orderId": "o1", "ticketId": null, "title": null,
                "price": 40, "fee": 2, "amount": 38, "status": "pending",
                "availableAt": "2030-06-12T17:30:00.000Z", "paidAt": null,
                "createdAt": "2030-01-01T00:00:00.000Z"}],
            "next": "0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            "account": {"status": "onboarding"}});
        let payouts: Payouts = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(payouts.available, Cents::new(-250));
        assert_eq!(
            payouts.totals,
            PayoutTotals {
                price: Cents::new(12_000),
                fee: Cents::new(605),
                amount: Cents::new(11_395),
                reversed: 1,
            }
        );
        assert_eq!(payouts.entries[0].status, CreditStatus::Pending);
        assert_eq!(
            payouts.next.as_deref(),
            Some("0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b")
        );
        assert_eq!(payouts.account.status, PayoutAccountStatus::Onboarding);
        let mut last_page = good.clone();
        last_page["next"] = Value::Null;
        let last_page: Payouts = serde_json::from_value(last_page).unwrap();
        assert_eq!(last_page.next, None);
        for (pointer, value) in [
            ("/entries/0/status", json!("lost")),
            ("/entries/0/kind", json!("bonus")),
            ("/account/status", json!("maybe")),
            ("/entries/0/availableAt", Value::Null),
            ("/totals", Value::Null),
            ("/totals/amount", json!("lots")),
            ("/totals/reversed", json!(1.5)),
            ("/next", json!(7)),
        ] {
            let mut bad = good.clone();
            *bad.pointer_mut(pointer).unwrap() = value;
            assert!(serde_json::from_value::<Payouts>(bad).is_err(), "{pointer}");
        }
        let mut no_totals = good.clone();
        no_totals.as_object_mut().unwrap().remove("totals");
        assert!(
            serde_json::from_value::<Payouts>(no_totals).is_err(),
            "no totals"
        );
    }

    #[test]
    fn an_edit_sends_absent_kept_and_null_cleared_fields() {
        let input = TicketInput {
            title: "Show".into(),
            price: "45".into(),
            venue: Some(None),
            starts_at: None,
            face_value: Some(Some("40".into())),
            for_sale: Some(true),
        };
        assert_eq!(
            serde_json::to_value(input).unwrap(),
            json!({"title": "Show", "price": "45", "venue": null, "faceValue": "40", "forSale": true})
        );
    }

    #[test]
    fn notifications_and_alerts_parse_strictly() {
        let good = json!({"unread": 1, "notifications": [{"id": "n1", "kind": "ticket_alert",
            "title": "On sale now: Opera Gala", "body": "A ticket for your alert “opera”.",
            "link": "/tickets/t1", "createdAt": "2030-01-01T00:00:00.000Z", "read": false}]});
        let list: NotificationList = serde_json::from_value(good.clone()).unwrap();
        assert_eq!(list.unread, 1);
        assert_eq!(list.notifications[0].kind, NotificationKind::TicketAlert);
        assert_eq!(list.notifications[0].link.as_deref(), Some("/tickets/t1"));
        for (pointer, value) in [
            ("/unread", Value::Null),
            ("/notifications/0/kind", json!("gossip")),
            ("/notifications/0/read", json!("no")),
            ("/notifications/0/createdAt", json!("yesterday")),
        ] {
            let mut bad = good.clone();
            *bad.pointer_mut(pointer).unwrap() = value;
            assert!(
                serde_json::from_value::<NotificationList>(bad).is_err(),
                "{pointer}"
            );
        }
        let alert = json!({"id": "a1", "q": "opera", "maxPrice": 39.5,
            "createdAt": "2030-01-01T00:00:00.000Z"});
        let parsed: Alert = serde_json::from_value(alert.clone()).unwrap();
        assert_eq!(parsed.max_price, Some(Cents::new(3950)));
        let any_price: Alert =
            serde_json::from_value(json!({"id": "a1", "q": "opera", "maxPrice": null,
                "createdAt": "2030-01-01T00:00:00.000Z"}))
            .unwrap();
        assert_eq!(any_price.max_price, None);
        for (field, value) in [("maxPrice", json!("cheap")), ("q", Value::Null)] {
            let mut bad = alert.clone();
            bad[field] = value;
            assert!(serde_json::from_value::<Alert>(bad).is_err(), "{field}");
        }
    }

    #[test]
    fn an_alert_sends_its_price_as_typed_and_none_for_any_price() {
        let input = AlertInput {
            q: "opera".into(),
            max_price: Some("39.50".into()),
        };
        assert_eq!(
            serde_json::to_value(input).unwrap(),
            json!({"q": "opera", "maxPrice": "39.50"})
        );
        let any = AlertInput {
            q: "opera".into(),
            max_price: None,
        };
        assert_eq!(serde_json::to_value(any).unwrap(), json!({"q": "opera"}));
    }

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
