//! Sessions: a JWT (HS256, shared key) in the `session` cookie or an `Authorization: Bearer`
//! header, verified locally by every service (ARCHITECTURE §3, §7).
//!
//! Every token names its session (`sid`). Signing out revokes the session: auth records it and
//! publishes `session.revoked`; each process keeps the revoked sessions that have not expired
//! yet in memory ([`SessionKeys::revoke`]) and refuses their tokens, so verifying stays local.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha512};

use crate::error::ApiError;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "session";

/// The smallest key accepted outside the embedded default.
pub const MIN_KEY_BYTES: usize = 32;

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub id: crate::ids::UserId,
    pub email: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The session's id, unique per sign-in: what signing out revokes. Required: a token
    /// without one (issued before sessions were revocable) is refused.
    pub sid: String,
}

/// Everything needed to issue and verify sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionKeys {
    inner: Arc<Inner>,
}

struct Inner {
    /// HMAC-SHA-512 keyed with the shared secret, for keys of other purposes
    /// ([`SessionKeys::derived_key`]).
    derive: Hmac<Sha512>,
    encoding: EncodingKey,
    /// HMAC-SHA-256 keyed with the shared secret: the signature of a session token (HS256).
    signing: Hmac<Sha256>,
    /// The first part of every token [`SessionKeys::issue`] writes (its JOSE header, encoded),
    /// recognised without reading it.
    header: Box<str>,
    ttl: Duration,
    cookie_secure: bool,
    /// Revoked sessions that have not expired: `sid` → expiry (seconds since the epoch).
    revoked: RwLock<HashMap<String, i64>>,
}

/// Revoked sessions kept before expired ones are swept out.
const SWEEP_ABOVE: usize = 1024;

/// Seconds a token is still accepted after its `exp`, for clocks a little apart.
const LEEWAY: i64 = 5;

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("key", &"[redacted]")
            .field("ttl", &self.inner.ttl)
            .field("cookie_secure", &self.inner.cookie_secure)
            .finish()
    }
}

impl SessionKeys {
    /// Keys from the shared secret; sessions live for `ttl`; the cookie gets `Secure` when
    /// `cookie_secure`.
    pub fn new(secret: &[u8], ttl: Duration, cookie_secure: bool) -> Self {
        let encoding = EncodingKey::from_secret(secret);
        // The header as `issue` writes it: a token's first part, whatever its claims.
        let header = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &(), &encoding)
            .expect("HS256 signs with a key of any length")
            .split('.')
            .next()
            .unwrap_or_default()
            .into();
        Self {
            inner: Arc::new(Inner {
                derive: <Hmac<Sha512> as Mac>::new_from_slice(secret)
                    .expect("HMAC takes a key of any length"),
                encoding,
                signing: <Hmac<Sha256> as Mac>::new_from_slice(secret)
                    .expect("HMAC takes a key of any length"),
                header,
                ttl,
                cookie_secure,
                revoked: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// A key of its own for `purpose` (the client signs its flash cookie with one), derived
    /// from the shared secret as HMAC-SHA-512(secret, "buyticket/" + purpose): never the
    /// session key itself, and a different key for every purpose.
    pub fn derived_key(&self, purpose: &str) -> [u8; 64] {
        let mut mac = self.inner.derive.clone();
        mac.update(b"buyticket/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    pub fn cookie_secure(&self) -> bool {
        self.inner.cookie_secure
    }

    /// A signed token for the user, and its claims.
    pub fn issue(&self, id: &str, email: &str) -> Result<(String, Claims), ApiError> {
        let iat = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.inner.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            id: id.into(),
            email: email.to_owned(),
            iat,
            exp: iat.saturating_add(ttl),
            sid: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(ApiError::internal)?;
        Ok((token, claims))
    }

    /// The claims of a valid, unexpired, not revoked token signed with our key; `None` for
    /// anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// [`Self::verify`] at `now` (seconds since the epoch).
    ///
    /// A token is three base64url parts: a header that says HS256 (no other algorithm, no
    /// `none`; nothing else in it is acted on), the claims, and the HMAC-SHA-256 of the first
    /// two with our key, compared in constant time. The claims are read once and `exp` is checked
    /// with [`LEEWAY`]. This is what `jsonwebtoken::decode` accepts (tested against it on
    /// every tampered variant of a token), but it read the header twice and the claims twice.
    /// With it, and a memory of verified tokens, a buyer's first request in a rush paid
    /// 2.6–3.2 µs for its session; 0.7 µs now, whether the token is new or not (BENCHMARKS.md,
    /// issue 16 part 16).
    fn verify_at(&self, token: &str, now: i64) -> Option<Claims> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        if !self.says_hs256(header) {
            return None;
        }
        let mut mac = self.inner.signing.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?)
            .ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        if claims.exp < now - LEEWAY || self.is_revoked(&claims.sid) {
            return None;
        }
        Some(claims)
    }

    /// Whether a token's header names HS256. The header `issue` writes is recognised as text;
    /// any other is read as `jsonwebtoken` reads it, so that a token written by another version
    /// (another order of the fields, say) verifies as before.
    fn says_hs256(&self, header: &str) -> bool {
        header == &*self.inner.header
            || URL_SAFE_NO_PAD
                .decode(header)
                .ok()
                .and_then(|json| serde_json::from_slice::<Header>(&json).ok())
                .is_some_and(|header| header.alg == Algorithm::HS256)
    }

    /// Refuses session `sid` from now on (until `expires_at`, seconds since the epoch, after
    /// which its token is refused anyway). Idempotent.
    pub fn revoke(&self, sid: &str, expires_at: i64) {
        let now = chrono::Utc::now().timestamp();
        if expires_at < now - LEEWAY {
            return;
        }
        let mut revoked = write(&self.inner.revoked);
        if revoked.len() >= SWEEP_ABOVE {
            revoked.retain(|_, exp| *exp >= now - LEEWAY);
        }
        revoked.insert(sid.to_owned(), expires_at);
    }

    /// Whether session `sid` was revoked.
    pub fn is_revoked(&self, sid: &str) -> bool {
        read(&self.inner.revoked).contains_key(sid)
    }

    /// How many revoked sessions are kept (expired ones are swept out as more arrive).
    pub fn revoked_count(&self) -> usize {
        read(&self.inner.revoked).len()
    }

    /// The cookie that carries a session token.
    pub fn session_cookie(&self, token: String) -> Cookie<'static> {
        let max_age = i64::try_from(self.inner.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        Cookie::build((SESSION_COOKIE, token))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.inner.cookie_secure)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build()
    }

    /// A cookie that clears the session in the browser.
    pub fn cleared_cookie(&self) -> Cookie<'static> {
        Cookie::build((SESSION_COOKIE, ""))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.inner.cookie_secure)
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build()
    }

    /// The session of a request: a valid Bearer token, else a valid `session` cookie.
    pub fn from_parts(&self, parts: &Parts) -> Option<Claims> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        if let Some(claims) = bearer.and_then(|t| self.verify(t)) {
            return Some(claims);
        }
        self.verify(&session_cookie(&parts.headers)?)
    }
}

/// The value of the `session` cookie, as a [`CookieJar`] of the request's `Cookie` headers
/// has it (the last of several, percent-decoded). Without reading every other cookie into a
/// jar: that, and percent-decoding the token a byte at a time, was a few percent of a
/// request's CPU. A header with a `%` anywhere still goes through the jar.
fn session_cookie(headers: &axum::http::HeaderMap) -> Option<Cow<'_, str>> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        if value.contains('%') {
            return CookieJar::from_headers(headers)
                .get(SESSION_COOKIE)
                .map(|c| Cow::Owned(c.value().to_owned()));
        }
        for pair in value.split(';') {
            if let Some((name, value)) = pair.split_once('=')
                && name.trim() == SESSION_COOKIE
            {
                found = Some(value.trim());
            }
        }
    }
    found.map(Cow::Borrowed)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The signed-in user; a request without a valid session is refused with 401 `Not authorized`.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Claims);

/// The signed-in user if there is one.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<Claims>);

impl<S> FromRequestParts<S> for MaybeUser
where
    SessionKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(SessionKeys::from_ref(state).from_parts(parts)))
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    SessionKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        SessionKeys::from_ref(state)
            .from_parts(parts)
            .map(Self)
            .ok_or(ApiError::NotAuthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn keys() -> SessionKeys {
        SessionKeys::new(&[7u8; 32], Duration::from_secs(3600), false)
    }

    fn parts(header_name: &str, value: &str) -> Parts {
        Request::get("/")
            .header(header_name, value)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn the_session_cookie_is_read_as_a_cookie_jar_reads_it() {
        let cases: &[&[&[u8]]] = &[
            &[b"session=abc.def.ghi"],
            &[b"theme=dark; session=abc; lang=en"],
            &[b" session = abc ; other=1"],
            &[b"session=first; session=second"],
            &[b"session=one", b"x=1; session=two"],
            &[b"session=two", b"x=1"],
            &[b"session=\"quoted\""],
            &[b"session=a%2Eb"],
            &[b"s%65ssion=encoded-name"],
            &[b"other=1", b"session=x%ZZ"],
            &[b"session=a=b"],
            &[b"nosession"],
            &[b"=empty; session=ok"],
            &[b"session=; x=1"],
            &[b"session=\xff\xfe", b"session=after"],
            &[b"sessions=no; Session=no"],
            &[],
        ];
        for headers in cases {
            let mut map = axum::http::HeaderMap::new();
            for value in *headers {
                map.append(
                    header::COOKIE,
                    axum::http::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let jar = CookieJar::from_headers(&map)
                .get(SESSION_COOKIE)
                .map(|c| c.value().to_owned());
            assert_eq!(session_cookie(&map).map(Cow::into_owned), jar, "{map:?}");
        }
    }

    #[test]
    fn a_token_is_refused_once_expired_past_the_leeway_or_revoked() {
        let keys = keys();
        let (token, claims) = keys.issue("u1", "a@example.com").unwrap();
        assert_eq!(keys.verify(&token), Some(claims.clone()));
        assert_eq!(keys.verify_at(&token, claims.exp + 5), Some(claims.clone()));
        assert_eq!(keys.verify_at(&token, claims.exp + 6), None);
        assert_eq!(keys.verify(&token), Some(claims.clone()));
        keys.revoke(&claims.sid, claims.exp);
        assert_eq!(keys.verify(&token), None, "revoked");
    }

    /// `jsonwebtoken::decode` with the validation the service used before: HS256 only, `exp`
    /// and `iat` required, 5 s of leeway.
    fn decoded_by_jsonwebtoken(secret: &[u8], token: &str) -> Option<Claims> {
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(secret),
            &validation,
        )
        .ok()
        .map(|t| t.claims)
    }

    #[test]
    fn verification_agrees_with_jsonwebtoken() {
        let secret = [7u8; 32];
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        let sign = |header: &Header, claims: &serde_json::Value, secret: &[u8]| {
            jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
        };
        let claims = |exp: i64| serde_json::json!({"id": "u1", "email": "a@b.co", "iat": now, "exp": exp, "sid": "s1"});
        let hs256 = Header::new(Algorithm::HS256);
        let (issued, _) = keys.issue("u1", "a@b.co").unwrap();
        let mut tokens = vec![
            issued.clone(),
            sign(&hs256, &claims(now + 3600), &secret),
            sign(&hs256, &claims(now - 4), &secret),
            sign(&hs256, &claims(now - 60), &secret),
            sign(&hs256, &claims(now + 3600), &[8u8; 32]),
            sign(&hs256, &serde_json::json!({"id": "u1", "email": "a@b.co", "exp": now + 60, "sid": "s"}), &secret),
            sign(&hs256, &serde_json::json!({"id": "u1", "email": "a@b.co", "iat": now, "sid": "s"}), &secret),
            sign(&hs256, &serde_json::json!({"id": "u1", "email": "a@b.co", "iat": now, "exp": "later", "sid": "s"}), &secret),
            sign(&hs256, &serde_json::json!({"id": "u1", "email": "a@b.co", "iat": now, "exp": now + 60, "sid": "s", "extra": [1]}), &secret),
            sign(&hs256, &serde_json::json!([1, 2]), &secret),
            sign(&Header::new(Algorithm::HS384), &claims(now + 3600), &secret),
            sign(&Header::new(Algorithm::HS512), &claims(now + 3600), &secret),
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6InUxIiwiZW1haWwiOiJhQGIuY28iLCJpYXQiOjEsImV4cCI6OTk5OTk5OTk5OSwic2lkIjoicyJ9.".into(),
            String::new(),
            "..".into(),
            "a.b.c.d".into(),
        ];
        // Every byte of an issued token changed, dropped or doubled, and every cut of it.
        for i in 0..issued.len() {
            for with in [b'A', b'B', b'_', b'-', b'.', b'='] {
                let mut changed = issued.clone().into_bytes();
                changed[i] = with;
                tokens.push(String::from_utf8(changed).unwrap());
            }
            let mut dropped = issued.clone();
            dropped.remove(i);
            tokens.push(dropped);
            let mut doubled = issued.clone();
            doubled.insert(i, issued.as_bytes()[i] as char);
            tokens.push(doubled);
            tokens.push(issued[..i].to_owned());
        }
        tokens.push(format!("{issued}A"));
        tokens.push(format!("{issued}."));
        tokens.sort();
        tokens.dedup();
        let mut accepted = 0;
        for token in &tokens {
            let ours = keys.verify(token);
            assert_eq!(ours, decoded_by_jsonwebtoken(&secret, token), "{token}");
            accepted += usize::from(ours.is_some());
        }
        assert_eq!(
            accepted, 4,
            "the issued token, one signed here, one expired within the leeway, one with an extra claim"
        );
    }

    #[test]
    fn a_header_written_otherwise_is_read_as_jsonwebtoken_reads_it() {
        let secret = [7u8; 32];
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            id: "u1".into(),
            email: "a@b.co".into(),
            iat: now,
            exp: now + 60,
            sid: "s1".into(),
        };
        let b64 = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let signed = |header: &str| {
            let signed = format!("{header}.{}", b64(&serde_json::to_string(&claims).unwrap()));
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).unwrap();
            mac.update(signed.as_bytes());
            format!(
                "{signed}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let keys = keys();
        let ours = keys.inner.header.to_string();
        assert_eq!(keys.verify(&signed(&ours)), Some(claims.clone()));
        for (header, accepted) in [
            (r#"{"alg":"HS256","typ":"JWT"}"#, true),
            (r#"{"alg":"HS256"}"#, true),
            (r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#, true),
            (r#"{"typ":"JWT","alg":"HS512"}"#, false),
            (r#"{"typ":"JWT","alg":"none"}"#, false),
            (r#"{"typ":"JWT"}"#, false),
            (r#"{"alg":"HS256","kid":5}"#, false),
            ("[]", false),
        ] {
            let token = signed(&b64(header));
            assert_ne!(token.split('.').next(), Some(ours.as_str()));
            assert_eq!(keys.verify(&token).is_some(), accepted, "{header}");
            assert_eq!(
                decoded_by_jsonwebtoken(&secret, &token).is_some(),
                accepted,
                "{header}"
            );
        }
    }

    #[test]
    fn derived_keys_are_stable_per_secret_and_purpose_and_differ_otherwise() {
        let other = SessionKeys::new(&[8u8; 32], Duration::from_secs(3600), false);
        assert_eq!(keys().derived_key("flash"), keys().derived_key("flash"));
        assert_ne!(keys().derived_key("flash"), keys().derived_key("other"));
        assert_ne!(keys().derived_key("flash"), other.derived_key("flash"));
        assert_ne!(&keys().derived_key("flash")[..32], &[7u8; 32][..]);
    }

    #[test]
    fn an_issued_token_verifies_to_its_claims() {
        let (token, claims) = keys().issue("u1", "a@b.co").unwrap();
        assert_eq!(keys().verify(&token), Some(claims.clone()));
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[test]
    fn a_token_signed_with_another_key_or_tampered_is_refused() {
        let other = SessionKeys::new(&[8u8; 32], Duration::from_secs(3600), false);
        let (token, _) = other.issue("u1", "a@b.co").unwrap();
        assert_eq!(keys().verify(&token), None);

        let (token, _) = keys().issue("u1", "a@b.co").unwrap();
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(keys().verify(&tampered), None);
        assert_eq!(keys().verify("not.a.jwt"), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let expired = SessionKeys::new(&[7u8; 32], Duration::ZERO, false);
        let (token, mut claims) = expired.issue("u1", "a@b.co").unwrap();
        claims.exp -= 120;
        claims.iat -= 120;
        let token2 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(keys().verify(&token2), None);
        drop(token);
    }

    #[test]
    fn a_revoked_session_is_refused_and_others_are_not() {
        let keys = keys();
        let (first, claims) = keys.issue("u1", "a@b.co").unwrap();
        let (second, _) = keys.issue("u1", "a@b.co").unwrap();
        keys.revoke(&claims.sid, claims.exp);
        assert_eq!(keys.verify(&first), None);
        assert!(
            keys.verify(&second).is_some(),
            "another sign-in of the same user"
        );
        // A clone shares the list (one process, many services).
        assert_eq!(keys.clone().verify(&first), None);
        // Revoking twice is harmless; an already expired session is not kept.
        keys.revoke(&claims.sid, claims.exp);
        keys.revoke("old", 1);
        assert_eq!(keys.revoked_count(), 1);
    }

    #[test]
    fn expired_revocations_are_swept_out() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        for i in 0..SWEEP_ABOVE {
            // Expired a minute ago: past the leeway, but still inserted directly.
            keys.inner
                .revoked
                .write()
                .unwrap()
                .insert(format!("s{i}"), now - 60);
        }
        keys.revoke("live", now + 60);
        assert_eq!(keys.revoked_count(), 1);
        assert!(keys.is_revoked("live"));
    }

    #[test]
    fn a_token_without_a_session_id_is_refused() {
        // Issued before sessions were revocable: it cannot be signed out, so it is not accepted.
        #[derive(Serialize)]
        struct Old<'a> {
            id: &'a str,
            email: &'a str,
            iat: i64,
            exp: i64,
        }
        let now = chrono::Utc::now().timestamp();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Old {
                id: "u1",
                email: "a@b.co",
                iat: now,
                exp: now + 3600,
            },
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(keys().verify(&token), None);
    }

    #[test]
    fn a_token_with_the_none_algorithm_is_refused() {
        // header {"alg":"none","typ":"JWT"}, claims with a far expiry, empty signature
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6InUxIiwiZW1haWwiOiJhQGIuY28iLCJpYXQiOjEsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(keys().verify(token), None);
    }

    #[test]
    fn the_session_comes_from_a_bearer_header_or_the_cookie() {
        let (token, claims) = keys().issue("u1", "a@b.co").unwrap();
        let from_bearer = keys().from_parts(&parts("authorization", &format!("Bearer {token}")));
        assert_eq!(from_bearer, Some(claims.clone()));
        let from_cookie = keys().from_parts(&parts("cookie", &format!("other=1; session={token}")));
        assert_eq!(from_cookie, Some(claims));
        assert_eq!(keys().from_parts(&parts("cookie", "session=garbage")), None);
        assert_eq!(
            keys().from_parts(&parts("authorization", "Basic abc")),
            None
        );
    }

    #[test]
    fn the_session_cookie_has_the_contract_flags() {
        let cookie = keys().session_cookie("t".into()).to_string();
        for part in [
            "session=t",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(!cookie.contains("Secure"), "{cookie}");
        let secure = SessionKeys::new(&[7u8; 32], Duration::from_secs(60), true);
        assert!(
            secure
                .session_cookie("t".into())
                .to_string()
                .contains("Secure")
        );
        let cleared = keys().cleared_cookie().to_string();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}
