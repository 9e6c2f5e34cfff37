//! CSRF protection for every state-changing form: a random token in a `csrf` cookie
//! (SameSite=Strict, HttpOnly) that each form repeats in a hidden `_csrf` field (double submit),
//! plus an `Origin` check when the browser sends one. The session cookie is SameSite=Lax too.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

/// The name of the CSRF cookie and form field.
pub const COOKIE: &str = "csrf";
pub const FIELD: &str = "_csrf";

/// This request's CSRF token (from the cookie, or new), for rendering forms.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// Gives every request a token; sets the cookie on responses when the browser had none.
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
    if fresh {
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

/// True when a form post carries the token of its cookie and, if the browser says where it
/// comes from, comes from this site.
pub fn is_valid(headers: &HeaderMap, submitted: Option<&str>) -> bool {
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
    same_origin(headers)
}

fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
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
        assert!(is_valid(&h, Some(&token)));
        assert!(!is_valid(&h, Some(&"cd".repeat(32))));
        assert!(!is_valid(&h, None));
        assert!(!is_valid(&headers(&[("host", "shop.test")]), Some(&token)));
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
        assert!(is_valid(&same, Some(&token)));
        let cross = headers(&[
            ("cookie", &cookie),
            ("host", "shop.test:3000"),
            ("origin", "http://evil.test"),
        ]);
        assert!(!is_valid(&cross, Some(&token)));
        let null = headers(&[
            ("cookie", &cookie),
            ("host", "shop.test"),
            ("origin", "null"),
        ]);
        assert!(!is_valid(&null, Some(&token)));
    }
}
