//! Security headers on every response of the client (pages, error pages, redirects, assets),
//! and caching: nothing is stored by a cache unless its handler says so (only the static
//! assets do), since almost every page shows who is signed in or carries their CSRF token.
//!
//! The pages have no inline script or style (`assets/app.js` and `assets/app.css` only), so the
//! Content-Security-Policy allows this origin alone; the order page adds Stripe.js when it
//! loads it (a publishable key is configured), see [`CSP_WITH_STRIPE`].

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of every response: this origin only, never framed.
pub const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The policy of the order page when it loads Stripe.js for card entry.
pub const CSP_WITH_STRIPE: &str = "default-src 'self'; \
    script-src 'self' https://js.stripe.com; \
    frame-src 'self' https://js.stripe.com https://hooks.stripe.com; \
    connect-src 'self' https://api.stripe.com; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The `Cache-Control` of every response whose handler did not choose one.
pub const NO_STORE: &str = "no-store";

/// The `Cache-Control` of the static assets (the only responses a shared cache may keep).
pub const PUBLIC_ASSET: &str = "public, max-age=3600";

/// Adds the security headers to a response; a handler may have chosen its own
/// Content-Security-Policy (stricter or with Stripe) and Cache-Control, which are kept.
pub async fn secure(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static(NO_STORE));
    let fixed: [(HeaderName, &'static str); 3] = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a response may be kept by a cache (and so must never carry anything personal,
/// such as the CSRF cookie).
pub fn is_cacheable(response: &Response) -> bool {
    let Some(value) = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        // Heuristic caching applies to responses without Cache-Control.
        return true;
    };
    !value
        .split(',')
        .map(str::trim)
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn only_no_store_or_private_responses_are_not_cacheable() {
        let with = |value: Option<&'static str>| {
            let mut response = ().into_response();
            if let Some(value) = value {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            }
            is_cacheable(&response)
        };
        assert!(with(None), "no Cache-Control: heuristically cacheable");
        assert!(with(Some(PUBLIC_ASSET)));
        assert!(!with(Some(NO_STORE)));
        assert!(!with(Some("private, max-age=0")));
        assert!(!with(Some("max-age=0, No-Store")));
    }
}
