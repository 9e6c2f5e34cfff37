//! CSRF protection for every state-changing form: a random token in a `csrf` cookie
//! (SameSite=Strict, HttpOnly) that each form repeats in a hidden `_csrf` field (double submit),
//! plus an `Origin` check when the browser sends one. The session cookie is SameSite=Lax too.
//!
//! The cookie is only set on HTML pages that no cache may keep (never on the static assets: a
//! shared cache would hand one person's token to the next). The `Origin` is compared with the
//! `Host` header; `X-Forwarded-Host` and `X-Forwarded-Proto` are believed only from a trusted
//! proxy (the TCP peer, `TrustedProxies`), as anyone else can send them.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

/// The name of the CSRF cookie and form field.
pub const COOKIE: &str = "csrf";
pub const FIELD: &str = "_csrf";

/// This request's CSRF token (from the cookie, or new), for rendering forms.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// Gives every request a token; sets the cookie on the response when the browser had none and
/// the response is a page that no cache keeps (see [`crate::headers::is_cacheable`]).
pub async fn ensure_token(secure: bool, mut req: Request, next: Next) -> Response {
    let jar = CookieJar::from_headers(req.headers());
    let existing = jar
        .get(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    let (token, fresh) = match existing {
        Some(token) => (token, false),
        None => (hex::encode(rand::random::<[u8; 32]>()), true),
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(req).await;
    if fresh && is_html(&response) && !crate::headers::is_cacheable(&response) {
        let cookie = Cookie::build((COOKIE, token))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(secure)
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// True when a form post carries the token of its cookie and, if the browser says where it
/// comes from, comes from this site. `from_trusted_proxy`: the TCP peer is one of the trusted
/// proxies, whose `X-Forwarded-Host`/`-Proto` say what the browser asked for.
pub fn is_valid(headers: &HeaderMap, submitted: Option<&str>, from_trusted_proxy: bool) -> bool {
    let jar = CookieJar::from_headers(headers);
    let Some(cookie) = jar.get(COOKIE) else {
        return false;
    };
    let Some(submitted) = submitted else {
        return false;
    };
    if !constant_time_eq(cookie.value().as_bytes(), submitted.as_bytes()) {
        return false;
    }
    same_origin(headers, from_trusted_proxy)
}

/// No `Origin` (an older browser, a same-origin GET turned POST by some agents): the token
/// alone decides. Otherwise its host (and, behind a proxy that says so, its scheme) must be
/// this site's.
fn same_origin(headers: &HeaderMap, from_trusted_proxy: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some((scheme, origin_host)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        // `null` (a sandboxed or opaque origin) or garbage.
        return false;
    };
    let origin_host = origin_host.trim_end_matches('/');
    let forwarded = |name: &'static str| {
        from_trusted_proxy
            .then(|| first_value(headers, HeaderName::from_static(name)))
            .flatten()
    };
    if forwarded("x-forwarded-proto").is_some_and(|proto| !proto.eq_ignore_ascii_case(scheme)) {
        return false;
    }
    let host = forwarded("x-forwarded-host").or_else(|| first_value(headers, header::HOST));
    host.is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(origin_host))
}

/// The first value of a header that may be a comma-separated list (proxies append).
fn first_value(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.split(',').next().unwrap_or_default().trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_form_must_repeat_the_cookie_token() {
        let token = "ab".repeat(32);
        let h = headers(&[("cookie", &format!("csrf={token}")), ("host", "shop.test")]);
        assert!(is_valid(&h, Some(&token), false));
        assert!(!is_valid(&h, Some(&"cd".repeat(32)), false));
        assert!(!is_valid(&h, None, false));
        assert!(!is_valid(
            &headers(&[("host", "shop.test")]),
            Some(&token),
            false
        ));
    }

    #[test]
    fn a_cross_site_origin_is_refused() {
        let token = "ab".repeat(32);
        let cookie = format!("csrf={token}");
        let same = headers(&[
            ("cookie", &cookie),
            ("host", "shop.test:3000"),
            ("origin", "http://shop.test:3000"),
        ]);
        assert!(is_valid(&same, Some(&token), false));
        let cross = headers(&[
            ("cookie", &cookie),
            ("host", "shop.test:3000"),
            ("origin", "http://evil.test"),
        ]);
        assert!(!is_valid(&cross, Some(&token), false));
        let null = headers(&[
            ("cookie", &cookie),
            ("host", "shop.test"),
            ("origin", "null"),
        ]);
        assert!(!is_valid(&null, Some(&token), false));
    }

    #[test]
    fn forwarded_host_and_proto_are_believed_only_from_a_trusted_proxy() {
        let token = "ab".repeat(32);
        let cookie = format!("csrf={token}");
        // Cases: (origin, x-forwarded-host, x-forwarded-proto, from a trusted proxy, accepted).
        let cases = [
            ("http://evil.test", Some("evil.test"), None, false, false),
            ("http://evil.test", Some("evil.test"), None, true, true),
            ("http://shop.test", Some("evil.test"), None, false, true),
            ("http://shop.test", Some("evil.test"), None, true, false),
            (
                "https://shop.example",
                Some("shop.example"),
                Some("https"),
                true,
                true,
            ),
            (
                "http://shop.example",
                Some("shop.example"),
                Some("https"),
                true,
                false,
            ),
            (
                "https://shop.example",
                Some("shop.example, inner"),
                Some("https, http"),
                true,
                true,
            ),
            ("http://SHOP.test", None, None, false, true),
            ("http://shop.test", None, Some("https"), false, true),
            ("http://shop.test", None, Some("https"), true, false),
        ];
        for (origin, forwarded_host, forwarded_proto, trusted, accepted) in cases {
            let mut pairs = vec![
                ("cookie", cookie.as_str()),
                ("host", "shop.test"),
                ("origin", origin),
            ];
            pairs.extend(forwarded_host.map(|h| ("x-forwarded-host", h)));
            pairs.extend(forwarded_proto.map(|p| ("x-forwarded-proto", p)));
            assert_eq!(
                is_valid(&headers(&pairs), Some(&token), trusted),
                accepted,
                "{origin} forwarded {forwarded_host:?} {forwarded_proto:?}, trusted: {trusted}"
            );
        }
    }
}
