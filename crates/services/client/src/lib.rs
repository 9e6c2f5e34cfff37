//! The web client: the marketplace in the browser, rendered on the server (askama templates),
//! talking to the other services only over their HTTP API through the gateway
//! (`API_BASE_URL`), forwarding the browser's session cookie — the API's own cookie.
//!
//! - [`api`]: the HTTP client of the API and the typed replies the pages read.
//! - [`pages`]: the routes: home, sign up/in/out, sell, ticket, edit, order (pay, cancel), my
//!   orders, my tickets (download, sell again, on/off sale, file upload), payouts,
//!   notifications (the header's bell with the unread count, the list, mark as read) and ticket
//!   alerts (the list, add, delete, and "Alert me" on a search without results). Every flow
//!   works without JavaScript (forms, POST-redirect-GET); `assets/app.js` only adds the
//!   countdown, local times (and the browser's offset for the event start), a file size check
//!   and Stripe.js card entry.
//! - [`forms`]: the ticket and alert forms turned into what the API is sent (time zones, file
//!   checks).
//! - [`multipart`]: the forms that carry a file (`multipart/form-data`).
//! - [`flash`]: what a form post tells the page it redirects to (confirmations, errors, the
//!   form as typed), in a short-lived signed cookie: every form is Post/Redirect/Get.
//! - [`csrf`]: double-submit token and Origin check on every form post.
//! - [`assets`]: the embedded CSS, script and icons, with ETags (`304 Not Modified`); pages
//!   and assets are compressed (gzip, brotli) as the browser accepts.
//! - [`headers`]: security headers (Content-Security-Policy, framing, sniffing, referrer) on
//!   every response, and `Cache-Control: no-store` on all but the static assets.
//! - [`views`]: template data and formatting; templates are in `templates/`.

pub mod api;
pub mod assets;
pub mod csrf;
pub mod flash;
pub mod forms;
pub mod headers;
pub mod multipart;
pub mod pages;
pub mod views;

use axum::Router;
use bt_contract::SessionKeys;
use bt_platform::rate_limit::TrustedProxies;
use bt_platform::{Check, Service};

/// What the client needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the API is (the gateway; in `buyticket up`, this process).
    pub api_base: String,
    /// To know who is signed in without a round trip (the API verifies again).
    pub sessions: SessionKeys,
    /// With it, the pay form uses Stripe.js; without it, the development provider's test cards.
    pub stripe_publishable_key: Option<String>,
    pub currency: String,
    /// `Secure` on the CSRF cookie.
    pub cookie_secure: bool,
    /// Proxies whose `X-Forwarded-For` is believed (the browser's address is forwarded to the
    /// API, so that rate limits apply per person, not to the client service).
    pub trusted_proxies: TrustedProxies,
    /// How long an order holds its ticket (`ORDER_EXPIRATION_SECONDS`, the orders service's
    /// setting): the ticket page says so before "Purchase".
    pub reservation_window: std::time::Duration,
    /// The marketplace's fee on a sale, in percent (`SELLER_FEE_PERCENT`, the payments
    /// service's setting): the sell form tells sellers.
    pub seller_fee_percent: u8,
}

/// The client service.
pub fn service(settings: Settings) -> Service {
    let api = api::Api::new(&settings.api_base).with_proxy_token(settings.trusted_proxies.token());
    let health = api.clone();
    Service {
        name: "client",
        router: pages::router(settings, api),
        checks: vec![Check::new("API gateway", move || {
            let api = health.clone();
            async move {
                api.get(&api::Caller::default(), "/healthz")
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })],
    }
}

/// The client's routes, for tests that mount it next to a fake API.
pub fn router(settings: Settings) -> Router {
    let api = api::Api::new(&settings.api_base).with_proxy_token(settings.trusted_proxies.token());
    pages::router(settings, api)
}
