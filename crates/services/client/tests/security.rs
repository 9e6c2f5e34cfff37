//! The client's defences against a fake API: redirects after sign-in only to this site, the
//! security headers on every response, nothing personal in caches (no-store pages, no CSRF
//! cookie on the cacheable assets), and `X-Forwarded-Host` believed only from trusted proxies.

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bt_contract::events::OrderStatus;
use bt_contract::resources::{Order, OrderTicket};
use bt_contract::{Cents, Millis};
use bt_platform::rate_limit::TrustedProxies;
use bt_test_support::{TestResponse, TestServer, TestUser};
use serde_json::json;

mod common;
use common::CSRF;

const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What a client is started with.
struct Options {
    trusted_proxies: TrustedProxies,
    stripe_publishable_key: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::loopback(),
            stripe_publishable_key: None,
        }
    }
}

/// The web client in front of a fake API, and requests of a browser with or without a session.
struct Client {
    _api: TestServer,
    _client: TestServer,
    base: String,
    http: reqwest::Client,
    user: TestUser,
}

/// A browser's cookies.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Visitor {
    /// Never here before: no cookie at all.
    New,
    /// Has the CSRF cookie, is not signed in.
    SignedOut,
    /// Has the CSRF cookie and a session.
    SignedIn,
}

impl Client {
    async fn start(options: Options) -> Self {
        let user = TestUser::new();
        let api = TestServer::spawn(fake_api(&user.id)).await;
        let client = TestServer::spawn(bt_client::router(bt_client::Settings {
            stripe_publishable_key: options.stripe_publishable_key,
            trusted_proxies: options.trusted_proxies,
            ..common::settings(api.url(""))
        }))
        .await;
        Self {
            base: client.url(""),
            _api: api,
            _client: client,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            user,
        }
    }

    fn cookies(&self, visitor: Visitor) -> Option<String> {
        match visitor {
            Visitor::New => None,
            Visitor::SignedOut => Some(format!("csrf={CSRF}")),
            Visitor::SignedIn => Some(format!("session={}; csrf={CSRF}", self.user.token)),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        bt_test_support::TestClient::try_send(request)
            .await
            .unwrap()
    }

    async fn get(&self, visitor: Visitor, path: &str) -> TestResponse {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookies) = self.cookies(visitor) {
            request = request.header(header::COOKIE, cookies);
        }
        self.send(request).await
    }

    /// A form post with the CSRF cookie and field, and these extra headers.
    fn post_form(
        &self,
        visitor: Visitor,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut form = fields.to_vec();
        form.push(("_csrf", CSRF));
        let mut request = self.http.post(format!("{}{path}", self.base)).form(&form);
        if let Some(cookies) = self.cookies(visitor) {
            request = request.header(header::COOKIE, cookies);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    }
}

fn order(user_id: &str) -> Order {
    Order {
        id: "o1".into(),
        user_id: user_id.into(),
        status: OrderStatus::Created,
        expires_at: Millis::now().plus(std::time::Duration::from_secs(600)),
        version: 0,
        ticket: OrderTicket {
            id: "t1".into(),
            title: "Show".into(),
            price: Cents::new(2050),
            version: 0,
        },
        payment: None,
        cancel_reason: None,
    }
}

/// An API with one ticket of `user_id` (`t1`; `broken` fails), one order of theirs (`o1`),
/// and sign-in/sign-up that always succeed.
fn fake_api(user_id: &str) -> Router {
    let ticket = json!({"id": "t1", "title": "Show", "price": 20.5, "userId": user_id, "version": 0, "orderId": null, "sold": false,
        "venue": "Paradiso", "startsAt": "2030-06-12T17:30:00.000Z", "faceValue": 20.5, "forSale": true, "hasFile": true});
    let payouts = json!({"pending": 0, "available": 0, "paid": 0,
        "totals": {"price": 0, "fee": 0, "amount": 0, "reversed": 0},
        "entries": [], "next": null, "account": {"status": "none"}});
    let order = serde_json::to_value(order(user_id)).unwrap();
    let orders = json!([order.clone()]);
    let tickets = json!([ticket.clone()]);
    let signed_in = || async {
        (
            [(header::SET_COOKIE, "session=from-the-api; Path=/; HttpOnly")],
            Json(json!({"id": "u1", "email": "a@test.com"})),
        )
    };
    Router::new()
        .route("/api/tickets", {
            let tickets = tickets.clone();
            get(move || async move { Json(tickets) })
        })
        .route(
            "/api/tickets/mine",
            get(move || async move { Json(tickets) }),
        )
        .route(
            "/api/tickets/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if id == "broken" {
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    } else {
                        Json(ticket).into_response()
                    }
                },
            ),
        )
        .route("/api/payouts", get(move || async move { Json(payouts) }))
        .route("/api/orders", get(move || async move { Json(orders) }))
        .route("/api/orders/{id}", get(move || async move { Json(order) }))
        .route("/api/users/signin", post(signed_in))
        .route("/api/users/signup", post(signed_in))
}

fn header<'a>(response: &'a TestResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name).map(|v| v.to_str().unwrap())
}

fn csrf_cookies(response: &TestResponse) -> Vec<String> {
    response
        .set_cookies()
        .into_iter()
        .filter(|c| c.starts_with("csrf="))
        .collect()
}

#[tokio::test]
async fn after_sign_in_or_sign_up_only_paths_of_this_site_are_followed() {
    let client = Client::start(Options::default()).await;
    // (the `next` field as the server reads it, where the browser is sent)
    let cases = [
        ("/\t/evil.test", "/"),
        ("/\n/x", "/"),
        ("/\r/evil.test", "/"),
        ("/\r\n/evil.test", "/"),
        ("/ /evil.test", "/"),
        (" /evil.test", "/"),
        ("/\u{0}/evil.test", "/"),
        ("/\\evil.test", "/"),
        ("\\\\evil.test", "/"),
        ("/orders\\..\\..\\evil.test", "/"),
        ("//evil.test", "/"),
        ("///evil.test", "/"),
        ("https://evil.test", "/"),
        ("http:/evil.test", "/"),
        ("javascript:alert(1)", "/"),
        ("/%2F/evil.test", "/"),
        ("/%2f/evil.test", "/"),
        ("/%252F/evil.test", "/"),
        ("%2F%2Fevil.test", "/"),
        ("/%5Cevil.test", "/"),
        ("/%09/evil.test", "/"),
        ("/%0a/x", "/"),
        ("/\u{3000}/evil.test", "/"),
        ("evil.test", "/"),
        ("", "/"),
        ("/orders/abc?x=1#y", "/orders/abc?x=1#y"),
        ("/tickets/new", "/tickets/new"),
        ("/?q=rock&cursor=abc", "/?q=rock&cursor=abc"),
        ("/", "/"),
    ];
    for action in ["/auth/signin", "/auth/signup"] {
        for (next, want) in cases {
            let fields = [
                ("email", "a@test.com"),
                ("password", "password"),
                ("next", next),
            ];
            let request = client.post_form(Visitor::SignedOut, action, &fields, &[]);

            let response = client.send(request).await;

            assert_eq!(
                response.status,
                StatusCode::SEE_OTHER,
                "{action} next={next:?}: {}",
                response.text
            );
            assert_eq!(
                header(&response, "location"),
                Some(want),
                "{action} next={next:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_sign_in_form_carries_only_a_local_next_path() {
    let client = Client::start(Options::default()).await;
    // (the query string, the `next` field of the form)
    let cases = [
        ("next=/%09/evil.test", "/"),
        ("next=/%0a/x", "/"),
        ("next=/%5Cevil.test", "/"),
        ("next=%2F%2Fevil.test", "/"),
        ("next=/%252F/evil.test", "/"),
        ("next=https://evil.test", "/"),
        ("next=/tickets/t1", "/tickets/t1"),
    ];
    for page in ["/auth/signin", "/auth/signup"] {
        for (query, want) in cases {
            let response = client
                .get(Visitor::SignedOut, &format!("{page}?{query}"))
                .await;

            assert_eq!(response.status, StatusCode::OK, "{page}?{query}");
            let field = format!(r#"<input type="hidden" name="next" value="{want}">"#);
            assert!(
                response.text.contains(&field),
                "{page}?{query}: {}",
                response.text
            );
        }
    }
}

/// Every kind of response the client gives: pages, redirects, error pages, assets.
const EVERY_KIND: [(Visitor, &str); 22] = [
    (Visitor::New, "/"),
    (Visitor::SignedOut, "/"),
    (Visitor::SignedIn, "/"),
    (Visitor::New, "/auth/signin"),
    (Visitor::New, "/auth/signup?next=/orders"),
    (Visitor::SignedOut, "/tickets/t1"),
    (Visitor::SignedIn, "/tickets/t1"),
    (Visitor::SignedIn, "/tickets/new"),
    (Visitor::SignedIn, "/tickets/t1/edit"),
    (Visitor::SignedIn, "/orders"),
    (Visitor::SignedIn, "/orders/o1"),
    (Visitor::SignedIn, "/listings"),
    (Visitor::SignedIn, "/tickets/mine"),
    (Visitor::SignedIn, "/tickets/t1/file"),
    (Visitor::SignedIn, "/payouts"),
    (Visitor::SignedOut, "/payouts"),
    (Visitor::SignedOut, "/orders"),
    (Visitor::New, "/nowhere"),
    (Visitor::SignedIn, "/tickets/broken"),
    (Visitor::New, "/api/nowhere"),
    (Visitor::New, "/assets/app.css"),
    (Visitor::New, "/assets/app.js"),
];

fn assert_security_headers(response: &TestResponse, what: &str) {
    assert_eq!(
        header(response, "content-security-policy"),
        Some(CSP),
        "{what}"
    );
    assert_eq!(header(response, "x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        header(response, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(response, "referrer-policy"),
        Some("same-origin"),
        "{what}"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let client = Client::start(Options::default()).await;
    let mut statuses = Vec::new();
    for (visitor, path) in EVERY_KIND {
        let response = client.get(visitor, path).await;
        statuses.push(response.status.as_u16());
        assert_security_headers(&response, &format!("GET {path} as {visitor:?}"));
    }
    let refused = client
        .send(
            client
                .http
                .post(format!("{}/auth/signin", client.base))
                .form(&[("email", "a@test.com")]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_security_headers(&refused, "a refused form");
    let unreadable = client
        .send(
            client
                .http
                .post(format!("{}/auth/signin", client.base))
                .body("not a form"),
        )
        .await;
    assert_eq!(unreadable.status, StatusCode::BAD_REQUEST);
    assert_security_headers(&unreadable, "an unreadable form");

    for status in [200, 303, 404, 503] {
        assert!(
            statuses.contains(&status),
            "{status} was tried: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn the_order_page_allows_stripe_only_when_it_loads_stripe_js() {
    let stripe = Client::start(Options {
        stripe_publishable_key: Some("pk_test_123".into()),
        ..Options::default()
    })
    .await;
    let development = Client::start(Options::default()).await;

    let with_key = stripe.get(Visitor::SignedIn, "/orders/o1").await;
    let without_key = development.get(Visitor::SignedIn, "/orders/o1").await;
    let elsewhere = stripe.get(Visitor::SignedIn, "/orders").await;

    assert!(
        with_key
            .text
            .contains(r#"<script src="https://js.stripe.com/v3/"></script>"#)
    );
    assert_eq!(
        header(&with_key, "content-security-policy"),
        Some(
            "default-src 'self'; script-src 'self' https://js.stripe.com; \
             frame-src 'self' https://js.stripe.com https://hooks.stripe.com; \
             connect-src 'self' https://api.stripe.com; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        )
    );
    assert_eq!(header(&with_key, "x-frame-options"), Some("DENY"));
    assert!(!without_key.text.contains("js.stripe.com"));
    assert_eq!(header(&without_key, "content-security-policy"), Some(CSP));
    assert_eq!(header(&elsewhere, "content-security-policy"), Some(CSP));
}

#[tokio::test]
async fn no_page_is_kept_by_a_cache_but_the_assets_are() {
    let client = Client::start(Options::default()).await;
    for (visitor, path) in EVERY_KIND {
        let response = client.get(visitor, path).await;

        let want = if path.starts_with("/assets/") {
            "public, max-age=3600"
        } else {
            "no-store"
        };
        assert_eq!(
            header(&response, "cache-control"),
            Some(want),
            "GET {path} as {visitor:?}"
        );
    }
    let signed_in = client
        .send(client.post_form(
            Visitor::SignedOut,
            "/auth/signin",
            &[("email", "a@test.com"), ("password", "password")],
            &[],
        ))
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert!(
        signed_in
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("session="))
    );
    assert_eq!(header(&signed_in, "cache-control"), Some("no-store"));
}

#[tokio::test]
async fn the_csrf_cookie_is_set_on_pages_never_on_the_cacheable_assets() {
    let client = Client::start(Options::default()).await;

    let css = client.get(Visitor::New, "/assets/app.css").await;
    let js = client.get(Visitor::New, "/assets/app.js").await;
    let sign_in = client.get(Visitor::New, "/auth/signin").await;
    let home = client.get(Visitor::New, "/").await;

    for asset in [&css, &js] {
        assert_eq!(asset.status, StatusCode::OK);
        assert_eq!(asset.set_cookies(), Vec::<String>::new());
    }
    for page in [&sign_in, &home] {
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(csrf_cookies(page).len(), 1, "{:?}", page.set_cookies());
        assert_eq!(header(page, "cache-control"), Some("no-store"));
    }
    let cookie = &csrf_cookies(&sign_in)[0];
    let token = cookie
        .trim_start_matches("csrf=")
        .split(';')
        .next()
        .unwrap();
    assert!(
        sign_in
            .text
            .contains(&format!(r#"name="_csrf" value="{token}""#)),
        "the form repeats the cookie's token"
    );
}

#[tokio::test]
async fn a_forwarded_host_is_believed_only_from_a_trusted_proxy() {
    let nobody = Client::start(Options {
        trusted_proxies: TrustedProxies::default(),
        ..Options::default()
    })
    .await;
    let loopback = Client::start(Options::default()).await;
    let host = |client: &Client| client.base.trim_start_matches("http://").to_owned();
    let sign_in = [("email", "a@test.com"), ("password", "password")];
    let forged = [
        ("origin", "http://evil.test"),
        ("x-forwarded-host", "evil.test"),
    ];

    let untrusted = nobody
        .send(nobody.post_form(Visitor::SignedOut, "/auth/signin", &sign_in, &forged))
        .await;
    let trusted = loopback
        .send(loopback.post_form(Visitor::SignedOut, "/auth/signin", &sign_in, &forged))
        .await;
    let same_site_origin = format!("http://{}", host(&nobody));
    let direct = nobody
        .send(nobody.post_form(
            Visitor::SignedOut,
            "/auth/signin",
            &sign_in,
            &[("origin", &same_site_origin)],
        ))
        .await;
    let proxied_origin = format!("http://{}", host(&loopback));
    let other_host_behind_proxy = loopback
        .send(loopback.post_form(
            Visitor::SignedOut,
            "/auth/signin",
            &sign_in,
            &[
                ("origin", &proxied_origin),
                ("x-forwarded-host", "shop.example"),
            ],
        ))
        .await;
    let wrong_scheme_behind_proxy = loopback
        .send(loopback.post_form(
            Visitor::SignedOut,
            "/auth/signin",
            &sign_in,
            &[
                ("origin", "http://shop.example"),
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-proto", "https"),
            ],
        ))
        .await;
    let https_behind_proxy = loopback
        .send(loopback.post_form(
            Visitor::SignedOut,
            "/auth/signin",
            &sign_in,
            &[
                ("origin", "https://shop.example"),
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-proto", "https"),
            ],
        ))
        .await;

    assert_eq!(
        untrusted.status,
        StatusCode::FORBIDDEN,
        "{}",
        untrusted.text
    );
    assert!(untrusted.text.contains("This form has expired"));
    assert_eq!(trusted.status, StatusCode::SEE_OTHER, "{}", trusted.text);
    assert_eq!(direct.status, StatusCode::SEE_OTHER, "{}", direct.text);
    assert_eq!(other_host_behind_proxy.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong_scheme_behind_proxy.status, StatusCode::FORBIDDEN);
    assert_eq!(https_behind_proxy.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_client_proves_itself_to_the_api_with_the_proxy_token_and_forwards_the_browser() {
    use std::sync::{Arc, Mutex};
    // What the API saw: (proxy token, forwarded address) of each call.
    type Seen = Vec<(Option<String>, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let api = {
        let seen = seen.clone();
        Router::new().route(
            "/api/tickets",
            get(move |headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let value =
                        |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push((
                        value(bt_platform::rate_limit::PROXY_TOKEN_HEADER),
                        value("x-forwarded-for"),
                    ));
                    Json(json!([]))
                }
            }),
        )
    };
    let api = TestServer::spawn(api).await;
    for token in [Some("a-proxy-token"), None] {
        let proxies = match token {
            Some(token) => TrustedProxies::none().with_token(token.to_owned()),
            None => TrustedProxies::none(),
        };
        let client = TestServer::spawn(bt_client::router(bt_client::Settings {
            trusted_proxies: proxies,
            ..common::settings(api.url(""))
        }))
        .await;
        // A browser on this machine that claims another address: not believed (no trusted
        // proxy in front), so the client forwards the address it really comes from.
        let res = reqwest::Client::new()
            .get(client.url("/"))
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let last = seen
            .lock()
            .unwrap()
            .pop()
            .expect("the home page lists tickets");
        assert_eq!(
            last,
            (token.map(str::to_owned), Some("127.0.0.1".to_owned())),
            "token {token:?}"
        );
    }
}

#[tokio::test]
async fn pages_and_assets_are_compressed_and_assets_revalidate_with_their_etag() {
    let browser = common::Browser::new(fake_api("u1"), None).await;
    let http = reqwest::Client::new();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = http.get(format!("{}{path}", browser.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        browser.send(request)
    };

    for (accepts, encoding) in [("br", "br"), ("gzip", "gzip"), ("gzip, deflate, br", "br")] {
        for path in ["/", "/assets/app.css", "/assets/app.js"] {
            let response = get(path, &[("accept-encoding", accepts)]).await;
            assert_eq!(response.status, StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, "content-encoding"),
                Some(encoding),
                "{path} for {accepts}"
            );
            assert!(header(&response, "vary").is_some_and(|v| v.contains("accept-encoding")));
        }
    }
    let plain = get("/assets/app.css", &[]).await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(plain.text.contains("--focus"), "the stylesheet itself");

    for (path, content_type) in [
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/x-icon"),
    ] {
        let first = get(path, &[]).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert_eq!(header(&first, "content-type"), Some(content_type));
        let etag = header(&first, "etag").expect("an ETag").to_owned();
        let again = get(path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.text.is_empty());
        assert_eq!(header(&again, "etag"), Some(etag.as_str()));
    }
    // A real icon: the ICO header of one 32×32 image.
    let ico = http
        .get(format!("{}/favicon.ico", browser.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&ico[..6], &[0, 0, 1, 0, 1, 0]);
    assert_eq!((ico[6], ico[7]), (32, 32));
}
