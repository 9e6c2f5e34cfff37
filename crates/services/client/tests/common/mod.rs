//! The web client in front of a fake API, and a browser of it that keeps cookies (the session,
//! the CSRF token and the flash each form post leaves for the page it redirects to). Shared by
//! the client's tests; each test file brings its own fake API.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Router;
use axum::http::{StatusCode, header};
use bt_platform::rate_limit::TrustedProxies;
use bt_test_support::{TestResponse, TestServer, TestUser, test_sessions};

/// The CSRF token every browser here holds (cookie and form field).
pub const CSRF: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The client's settings in front of the API at `api_base`: US dollars, the development
/// provider's test cards, a 15-minute reservation, a 5% seller fee, loopback trusted as a
/// proxy.
pub fn settings(api_base: String) -> bt_client::Settings {
    bt_client::Settings {
        api_base,
        sessions: test_sessions(),
        stripe_publishable_key: None,
        currency: "usd".into(),
        cookie_secure: false,
        trusted_proxies: TrustedProxies::loopback(),
        reservation_window: std::time::Duration::from_secs(900),
        seller_fee_percent: 5,
    }
}

/// A browser of the client: it sends the cookies it holds and keeps those the client sets (a
/// cookie set with `Max-Age=0` is dropped), and never follows a redirect on its own.
pub struct Browser {
    _api: TestServer,
    _client: TestServer,
    pub base: String,
    http: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    /// The client with `settings` in front of `api`; the browser holds the CSRF cookie, and
    /// `user`'s session when given.
    pub async fn start(
        api: Router,
        user: Option<&TestUser>,
        settings: impl FnOnce(String) -> bt_client::Settings,
    ) -> Self {
        let api = TestServer::spawn(api).await;
        let client = TestServer::spawn(bt_client::router(settings(api.url("")))).await;
        let mut jar = BTreeMap::from([("csrf".to_owned(), CSRF.to_owned())]);
        if let Some(user) = user {
            jar.insert("session".to_owned(), user.token.clone());
        }
        Self {
            base: client.url(""),
            _api: api,
            _client: client,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Mutex::new(jar),
        }
    }

    /// The client with the default [`settings`] in front of `api`.
    pub async fn new(api: Router, user: Option<&TestUser>) -> Self {
        Self::start(api, user, settings).await
    }

    /// The value of the cookie `name` the browser holds.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let cookies = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response =
            bt_test_support::TestClient::try_send(request.header(header::COOKIE, cookies))
                .await
                .unwrap();
        let mut jar = self.jar.lock().unwrap();
        for set in response.headers.get_all(header::SET_COOKIE) {
            let text = set.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        response
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// A form post, with the CSRF field unless `csrf` is false.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)], csrf: bool) -> TestResponse {
        let mut form = fields.to_vec();
        if csrf {
            form.push(("_csrf", CSRF));
        }
        self.send(self.http.post(format!("{}{path}", self.base)).form(&form))
            .await
    }

    /// A `multipart/form-data` post as a browser builds it, with the CSRF field unless `csrf`
    /// is false, and a `file` part (file name, bytes) — empty when none was chosen.
    pub async fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
        csrf: bool,
    ) -> TestResponse {
        const BOUNDARY: &str = "----WebKitFormBoundaryTest1234";
        let mut body = Vec::new();
        let mut fields = fields.to_vec();
        if csrf {
            fields.push(("_csrf", CSRF));
        }
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (filename, bytes) = file.unwrap_or(("", b""));
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body),
        )
        .await
    }

    /// The page a form post's 303 leads to, as the browser would open it (with the flash).
    pub async fn follow(&self, response: &TestResponse) -> TestResponse {
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text);
        let to = location(response);
        let page = self.get(to).await;
        assert_eq!(page.status, StatusCode::OK, "{to}: {}", page.text);
        page
    }
}

/// The `Location` of a redirect, or "".
pub fn location(response: &TestResponse) -> &str {
    response
        .headers
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

/// The text of the first element with `id` (its inner HTML, tags included), if any.
pub fn element<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open_end = start + html[start..].find('>')? + 1;
    let close = open_end + html[open_end..].find("</")?;
    Some(html[open_end..close].trim())
}
