//! Per-client-address rate limits (sign-in and sign-up), and finding the client address behind
//! trusted proxies (NGINX, the ingress, the web client calling the API for a browser).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use bt_contract::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

/// The header by which the web client proves it is a trusted proxy, wherever it runs: it
/// carries [`TrustedProxies::token_for_key`] of the shared session key.
pub const PROXY_TOKEN_HEADER: &str = "x-buyticket-proxy";

/// The proxies whose `X-Forwarded-For` (and the client's `X-Forwarded-Host`) is believed: peers
/// in the configured networks (`TRUSTED_PROXIES`; none unless configured), and requests that
/// carry the proxy token (the web client calling the API for a browser).
#[derive(Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedProxies")
            .field("nets", &self.nets)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl TrustedProxies {
    /// Nobody: every peer is the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loopback only.
    pub fn loopback() -> Self {
        Self::from_str("127.0.0.0/8,::1/128").expect("static list")
    }

    /// Also trusts requests that carry `token` in [`PROXY_TOKEN_HEADER`].
    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The token a trusted proxy sends ([`PROXY_TOKEN_HEADER`]), if one is set.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The proxy token of a deployment: derived from its shared session key (HMAC-SHA256 of a
    /// fixed label), so every process knows it and it reveals nothing of the key.
    pub fn token_for_key(key: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(b"buyticket trusted proxy v1");
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether the request comes from a trusted proxy: its peer is in a trusted network, or it
    /// carries the proxy token.
    pub fn is_trusted(&self, parts: &Parts) -> bool {
        self.contains(peer_of(parts)) || self.carries_token(parts)
    }

    fn carries_token(&self, parts: &Parts) -> bool {
        use subtle::ConstantTimeEq;
        let Some(token) = &self.token else {
            return false;
        };
        parts
            .headers
            .get(PROXY_TOKEN_HEADER)
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Loopback and the private ranges where an ingress or load balancer lives.
    pub fn private_networks() -> Self {
        Self::from_str("127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7")
            .expect("static list")
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or, when the request comes from a trusted proxy, the
    /// right-most address of `X-Forwarded-For` that is not itself in a trusted network (what
    /// NGINX's `real_ip_recursive` does). Spoofed entries to the left of our proxies are ignored.
    pub fn client_addr(&self, parts: &Parts) -> IpAddr {
        let peer = peer_of(parts);
        if !self.is_trusted(parts) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| IpAddr::from_str(s.trim()).ok())
            .collect();
        let mut client = peer;
        for ip in forwarded.into_iter().rev() {
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

fn peer_of(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses or CIDR networks; empty trusts nobody.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                IpNet::from_str(p)
                    .or_else(|_| IpAddr::from_str(p).map(IpNet::from))
                    .map_err(|_| format!("{p:?} is not an IP address or CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(|nets| Self { nets, token: None })
    }
}

/// A limit of `n` attempts per minute per client address (bursts up to `n`).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    proxies: TrustedProxies,
    checks: Arc<AtomicU64>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.inner.is_some())
            .field("proxies", &self.proxies)
            .finish()
    }
}

impl RateLimiter {
    /// `per_minute == 0` turns the limit off.
    pub fn per_minute(per_minute: u32, proxies: TrustedProxies) -> Self {
        let inner = NonZeroU32::new(per_minute)
            .map(|n| Arc::new(governor::RateLimiter::keyed(Quota::per_minute(n))));
        Self {
            inner,
            proxies,
            checks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts one attempt of this request's client; 429 when over the limit.
    pub fn check(&self, parts: &Parts) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let client = self.proxies.client_addr(parts);
        limiter.check_key(&bucket_of(client)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Under attack this is every request: the counter tells, the log stays quiet.
            tracing::debug!(%client, "rate limited");
            metrics::counter!("rate_limited_total").increment(1);
            ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs() + 1,
            }
        })
    }
}

/// The budget a client address draws on: itself for IPv4, its /64 for IPv6 (one subscriber
/// usually holds a whole /64, so counting full addresses would give it 2^64 budgets).
pub fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(octets))
            }
        },
        v4 => v4,
    }
}

/// Middleware that counts every request of the routes it wraps against `limiter`:
/// `.route_layer(axum::middleware::from_fn_with_state(limiter, rate_limit::enforce))`.
pub async fn enforce(
    axum::extract::State(limiter): axum::extract::State<RateLimiter>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    if let Err(err) = limiter.check(&parts) {
        return err.into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: &str, xff: Option<&str>) -> Parts {
        let mut req = Request::get("/");
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        let mut parts = req.body(()).unwrap().into_parts().0;
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from_str(peer).unwrap()));
        parts
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::loopback();
        let ip = proxies.client_addr(&parts("203.0.113.9:5000", Some("1.2.3.4")));
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::private_networks();
        let cases = [
            (Some("198.51.100.7"), "198.51.100.7"),
            (Some("6.6.6.6, 198.51.100.7"), "198.51.100.7"),
            (Some("6.6.6.6, 198.51.100.7, 10.0.0.5"), "198.51.100.7"),
            (Some("garbage, 198.51.100.7"), "198.51.100.7"),
            (None, "10.1.2.3"),
        ];
        for (xff, want) in cases {
            let ip = proxies.client_addr(&parts("10.1.2.3:80", xff));
            assert_eq!(ip.to_string(), want, "{xff:?}");
        }
    }

    #[test]
    fn a_request_with_the_proxy_token_is_trusted_from_any_peer_and_others_are_not() {
        let token = TrustedProxies::token_for_key(b"a-shared-session-key-of-32-bytes");
        assert_eq!(token.len(), 64);
        assert_ne!(
            token,
            TrustedProxies::token_for_key(b"another-key-of-at-least-32-bytes")
        );
        let proxies = TrustedProxies::none().with_token(token.clone());
        let with = |value: &str| {
            let mut parts = parts("127.0.0.1:5000", Some("198.51.100.7"));
            parts
                .headers
                .insert(PROXY_TOKEN_HEADER, value.parse().unwrap());
            parts
        };
        assert_eq!(
            proxies.client_addr(&with(&token)).to_string(),
            "198.51.100.7"
        );
        // Loopback is not trusted by itself any more, nor a wrong token.
        let plain = parts("127.0.0.1:5000", Some("198.51.100.7"));
        assert_eq!(proxies.client_addr(&plain).to_string(), "127.0.0.1");
        assert_eq!(proxies.client_addr(&with("0000")).to_string(), "127.0.0.1");
        // Without a configured token, no header value is trusted.
        let none = TrustedProxies::none();
        assert_eq!(none.client_addr(&with("")).to_string(), "127.0.0.1");
        assert!(!format!("{proxies:?}").contains(&token), "redacted");
    }

    #[test]
    fn proxy_lists_parse_addresses_and_networks_and_reject_garbage() {
        let proxies = TrustedProxies::from_str("10.0.0.0/8, 192.168.1.1,::1").unwrap();
        assert!(proxies.contains("10.9.9.9".parse().unwrap()));
        assert!(proxies.contains("192.168.1.1".parse().unwrap()));
        assert!(!proxies.contains("192.168.1.2".parse().unwrap()));
        assert!(TrustedProxies::from_str("").unwrap().nets.is_empty());
        assert!(TrustedProxies::from_str("nope").is_err());
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64_and_mapped_ipv4_is_ipv4() {
        let limiter = RateLimiter::per_minute(2, TrustedProxies::default());
        let one = parts("[2001:db8:1:2::1]:1", None);
        let same_64 = parts("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", None);
        let other_64 = parts("[2001:db8:1:3::1]:1", None);
        limiter.check(&one).unwrap();
        limiter.check(&same_64).unwrap();
        assert!(limiter.check(&one).is_err(), "the /64 used its budget");
        limiter.check(&other_64).unwrap();
        assert_eq!(
            bucket_of("::ffff:198.51.100.1".parse().unwrap()),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_limit_applies_per_client_and_zero_turns_it_off() {
        let limiter = RateLimiter::per_minute(3, TrustedProxies::default());
        let a = parts("198.51.100.1:1", None);
        let b = parts("198.51.100.2:1", None);
        for _ in 0..3 {
            limiter.check(&a).unwrap();
        }
        let Err(ApiError::TooManyRequests { retry_after_secs }) = limiter.check(&a) else {
            panic!("fourth attempt should be limited");
        };
        assert!((1..=61).contains(&retry_after_secs));
        limiter.check(&b).unwrap();

        let off = RateLimiter::per_minute(0, TrustedProxies::default());
        for _ in 0..100 {
            off.check(&a).unwrap();
        }
    }
}
