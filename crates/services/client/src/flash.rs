//! Flash messages: what a form post has to tell the page it redirects to (Post/Redirect/Get).
//!
//! Every form post answers with a redirect, on success and on failure alike, so that reloading
//! a page never posts a form again and the address bar always holds a page that can be opened.
//! What the next page must show travels in a short-lived `flash` cookie:
//!
//! - a confirmation ("Your ticket is listed.") or an error banner;
//! - the error of each field, and what was typed into the fields (never a password), so that
//!   the form comes back as it was sent.
//!
//! The cookie is signed (HMAC-SHA-256 with a key derived from `JWT_KEY`, see
//! [`bt_contract::SessionKeys::derived_key`]): a page shows only what this service wrote.
//! It names the page it is for, lives 60 seconds, and is cleared by the page that shows it; a
//! page at another address leaves it alone.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, CookieJar, Key, SameSite};
use serde::{Deserialize, Serialize};

/// The cookie's name.
pub const COOKIE: &str = "flash";

/// How long a flash waits for its page.
const MAX_AGE_SECS: i64 = 60;

/// Browsers keep cookies of up to 4096 bytes (name, value and attributes).
const MAX_VALUE_BYTES: usize = 3800;

/// Longest text kept of one message or value.
const MAX_TEXT_CHARS: usize = 600;

/// What a redirect tells the page it leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// The path of the page it is for (no query).
    #[serde(rename = "p")]
    pub path: String,
    /// A confirmation, in the green banner.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// An error, in the red banner.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Field name → its error message.
    #[serde(rename = "f", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Field name → what was typed.
    #[serde(rename = "v", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Flash {
    /// A confirmation for the page at `to`.
    pub fn notice(to: &str, message: impl Into<String>) -> Self {
        Self {
            path: path_of(to).to_owned(),
            notice: Some(message.into()),
            ..Self::default()
        }
    }

    /// An error banner for the page at `to`.
    pub fn error(to: &str, message: impl Into<String>) -> Self {
        Self {
            path: path_of(to).to_owned(),
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// Nothing yet, for the page at `to`.
    pub fn to(to: &str) -> Self {
        Self {
            path: path_of(to).to_owned(),
            ..Self::default()
        }
    }

    /// With the error of `field`.
    pub fn field_error(mut self, field: &str, message: impl Into<String>) -> Self {
        self.fields.insert(field.to_owned(), message.into());
        self
    }

    /// With what was typed into `field`.
    pub fn value(mut self, field: &str, typed: impl Into<String>) -> Self {
        self.values.insert(field.to_owned(), typed.into());
        self
    }

    /// The value typed into `field`, or "".
    pub fn typed(&self, field: &str) -> String {
        self.values.get(field).cloned().unwrap_or_default()
    }

    /// The cookie's value: base64url of the JSON, cut to fit a cookie (the typed values go
    /// first, then long texts are shortened; the messages always fit).
    fn encode(&self) -> String {
        let mut flash = self.clone();
        for text in flash
            .notice
            .iter_mut()
            .chain(flash.error.iter_mut())
            .chain(flash.fields.values_mut())
            .chain(flash.values.values_mut())
        {
            shorten(text, MAX_TEXT_CHARS);
        }
        let mut value = flash.to_base64();
        if value.len() > MAX_VALUE_BYTES {
            flash.values.clear();
            value = flash.to_base64();
        }
        if value.len() > MAX_VALUE_BYTES {
            for text in flash
                .notice
                .iter_mut()
                .chain(flash.error.iter_mut())
                .chain(flash.fields.values_mut())
            {
                shorten(text, 120);
            }
            value = flash.to_base64();
        }
        value
    }

    fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(value: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(value).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

fn shorten(text: &mut String, max_chars: usize) {
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        text.truncate(at);
        text.push('…');
    }
}

/// The path part of a local address.
fn path_of(to: &str) -> &str {
    let end = to.find(['?', '#']).unwrap_or(to.len());
    &to[..end]
}

/// Signs and reads flash cookies.
#[derive(Clone)]
pub struct Flasher {
    key: Key,
    secure: bool,
}

impl std::fmt::Debug for Flasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flasher")
            .field("key", &"[redacted]")
            .field("secure", &self.secure)
            .finish()
    }
}

impl Flasher {
    /// `key`: 64 bytes of its own (see [`bt_contract::SessionKeys::derived_key`]); `secure`:
    /// the cookie is sent over HTTPS only.
    pub fn new(key: &[u8; 64], secure: bool) -> Self {
        Self {
            key: Key::from(key),
            secure,
        }
    }

    /// A 303 See Other to `to` carrying `flash`.
    pub fn redirect(&self, to: &str, flash: &Flash) -> Response {
        let mut response = see_other(to);
        if let Some(value) = self.set_cookie(flash) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// The `Set-Cookie` header that carries `flash`.
    pub fn set_cookie(&self, flash: &Flash) -> Option<HeaderValue> {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            Cookie::build((COOKIE, flash.encode()))
                .http_only(true)
                .same_site(SameSite::Lax)
                .path("/")
                .secure(self.secure)
                .max_age(cookie::time::Duration::seconds(MAX_AGE_SECS))
                .build(),
        );
        let cookie = jar.get(COOKIE)?;
        HeaderValue::from_str(&cookie.to_string()).ok()
    }

    /// The flash of a request's cookie header, if this service signed it.
    pub fn read(&self, cookie_value: &str) -> Option<Flash> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(COOKIE, cookie_value.to_owned()));
        let verified = jar.signed(&self.key).get(COOKIE)?;
        Flash::decode(verified.value())
    }

    fn cleared(&self) -> HeaderValue {
        let cookie = Cookie::build((COOKIE, ""))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .max_age(cookie::time::Duration::ZERO)
            .build();
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or(HeaderValue::from_static("flash=; Path=/; Max-Age=0"))
    }
}

/// The flash this request brings for its page (see [`layer`]).
#[derive(Debug, Clone)]
pub struct Incoming(pub Flash);

/// Reads the request's flash cookie: a valid one for this path becomes an [`Incoming`]
/// extension, and the response clears the cookie once a page has been shown for it (not on a
/// redirect, and not when the response sets a new one). A cookie that does not verify is
/// cleared at once.
pub async fn layer(flasher: Flasher, mut req: Request, next: Next) -> Response {
    let raw = axum_extra::extract::CookieJar::from_headers(req.headers())
        .get(COOKIE)
        .map(|c| c.value().to_owned());
    let Some(raw) = raw else {
        return next.run(req).await;
    };
    let flash = flasher.read(&raw);
    let for_this_page = flash
        .as_ref()
        .is_some_and(|f| f.path == req.uri().path() && req.method() == axum::http::Method::GET);
    if let Some(flash) = flash.clone().filter(|_| for_this_page) {
        req.extensions_mut().insert(Incoming(flash));
    }
    let mut response = next.run(req).await;
    let sets_its_own = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"flash="));
    let shown = for_this_page && !response.status().is_redirection();
    if !sets_its_own && (shown || flash.is_none()) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, flasher.cleared());
    }
    response
}

/// A plain 303 See Other to `to`.
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flasher() -> Flasher {
        Flasher::new(&[9u8; 64], false)
    }

    fn cookie_value(header: &HeaderValue) -> String {
        let text = header.to_str().unwrap();
        let pair = text.split(';').next().unwrap();
        pair.strip_prefix("flash=").unwrap().to_owned()
    }

    #[test]
    fn a_flash_round_trips_through_its_signed_cookie() {
        let flash = Flash::error("/tickets/new?x=1", "Check the fields below.")
            .field_error("price", "Enter the price as a number, like 20 or 20.50")
            .value("title", "Opera « Gala »; \"night\"")
            .value("price", "abc");
        assert_eq!(flash.path, "/tickets/new");
        let header = flasher().set_cookie(&flash).unwrap();
        let text = header.to_str().unwrap();
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Lax"),
            "{text}"
        );
        assert!(
            text.contains("Max-Age=60") && text.contains("Path=/"),
            "{text}"
        );
        assert_eq!(flasher().read(&cookie_value(&header)), Some(flash));
    }

    #[test]
    fn a_flash_signed_with_another_key_or_changed_is_not_read() {
        let flash = Flash::notice("/", "You are signed out.");
        let value = cookie_value(&flasher().set_cookie(&flash).unwrap());
        assert_eq!(Flasher::new(&[1u8; 64], false).read(&value), None);
        let forged = Flash::notice("/", "Call +1 555 0100 to claim a refund.");
        let (mac, _) = value.split_at(44);
        assert_eq!(
            flasher().read(&format!("{mac}{}", forged.to_base64())),
            None
        );
        assert_eq!(flasher().read("garbage"), None);
    }

    #[test]
    fn a_flash_too_big_for_a_cookie_drops_the_typed_values_first() {
        let long = "x".repeat(5000);
        let flash = Flash::error("/tickets/new", "Check the fields below.")
            .field_error("title", "Title must be at most 200 characters")
            .value("title", &long)
            .value("venue", &long)
            .value("faceValue", &long)
            .value("price", &long)
            .value("startsAt", &long);
        let header = flasher().set_cookie(&flash).unwrap();
        assert!(header.len() < 4096, "{}", header.len());
        let read = flasher().read(&cookie_value(&header)).unwrap();
        assert_eq!(read.error, flash.error);
        assert_eq!(read.fields, flash.fields);
        assert!(read.values.is_empty());
        // One long message is shortened, never dropped.
        let header = flasher()
            .set_cookie(&Flash::error("/", "y".repeat(10_000)))
            .unwrap();
        let read = flasher().read(&cookie_value(&header)).unwrap();
        assert!(read.error.unwrap().ends_with('…'));
    }
}
