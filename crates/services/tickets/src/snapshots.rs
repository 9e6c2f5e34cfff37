//! In-memory snapshots of the two reads everyone makes at once in an on-sale: the default
//! listing (`GET /api/tickets`, no query) and one ticket (`GET /api/tickets/{id}`), kept as
//! the serialized response (body, `ETag`, `Link`), so that serving them is a copy of bytes.
//!
//! **When a snapshot is current.** Every transaction of the service commits through its
//! [`Outbox`], which counts commits ([`Outbox::commits`]): the HTTP handlers' changes and the
//! event handlers' (reserve, release, sell) alike. A snapshot records the count read *before*
//! its database read, and is served only while the count has not moved. So a change made by
//! this process is in the next response after its commit, and a snapshot built from a read
//! that raced a commit is never served. A listing also stops being current when the event of
//! one of its tickets starts (it leaves the listing by itself): its snapshot is only served
//! before the earliest `startsAt` it shows.
//!
//! **Other replicas** (`serve` with NATS): each replica follows `ticket.created` and
//! `ticket.updated` (an ordered consumer of its own, nothing acknowledged) and counts every one
//! as a change, so another replica's change reaches this one's snapshots as fast as the event
//! does (milliseconds). As a bound for what the events do not say (a file uploaded elsewhere, a
//! follower reconnecting), a snapshot is never older than [`MAX_STALENESS`] there. With the
//! in-process bus (`up`) there is one replica and snapshots are exact.
//!
//! **Revalidation and caches.** The `ETag` is a hash of the body; `If-None-Match` with it
//! answers `304 Not Modified` without a body. `Cache-Control: public, max-age=0, s-maxage=1`:
//! a browser revalidates every time, a shared cache in front (nginx's micro-cache in the
//! distributed mode) may answer for one second.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bt_contract::{Millis, TicketId};
use bt_platform::bus::{Bus, Outbox, Runtime};

/// The oldest a snapshot may be on a replica that shares its database with others.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);

/// How many single-ticket snapshots are kept at most (about 200 bytes each).
const MAX_TICKETS: usize = 4096;

/// `Cache-Control` of the snapshotted reads.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=0, s-maxage=1");

/// One serialized response.
#[derive(Debug)]
pub struct Snapshot {
    /// The change count read before the database read it was made from.
    changes: u64,
    built: Instant,
    /// When it stops being current by itself (the earliest event start it shows).
    until: Option<Millis>,
    body: Bytes,
    etag: HeaderValue,
    link: Option<HeaderValue>,
}

impl Snapshot {
    /// A snapshot of `body` made from a read that started at change count `changes`.
    pub fn new(
        changes: u64,
        body: Vec<u8>,
        link: Option<HeaderValue>,
        until: Option<Millis>,
    ) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", hasher.finish(), body.len()))
            .expect("hex digits are a valid header value");
        Self {
            changes,
            built: Instant::now(),
            until,
            body: Bytes::from(body),
            etag,
            link,
        }
    }

    /// The answer to a request with `request`'s headers: 304 when its `If-None-Match` names
    /// this body, else 200 with the body.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, CACHE_CONTROL);
        if let Some(link) = &self.link {
            headers.insert(header::LINK, link.clone());
        }
        if matches_etag(request, &self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        (headers, self.body.clone()).into_response()
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 §13.1.2 asks), or is `*`.
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

/// The snapshots of one tickets service.
#[derive(Debug, Clone)]
pub struct Snapshots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: Outbox,
    /// Changes announced by other replicas' events.
    elsewhere: AtomicU64,
    /// `Some` where other replicas may change the database too.
    max_age: Option<Duration>,
    listing: RwLock<Option<Arc<Snapshot>>>,
    tickets: RwLock<HashMap<TicketId, Arc<Snapshot>>>,
    /// One rebuild of the listing at a time: the readers that find it stale meanwhile wait
    /// for that one instead of all reading the database.
    rebuild: tokio::sync::Mutex<()>,
}

impl Snapshots {
    /// Snapshots that are current while `outbox` has not committed; `shared` when other
    /// replicas write the same database (then [`MAX_STALENESS`] bounds their age).
    pub fn new(outbox: Outbox, shared: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                outbox,
                elsewhere: AtomicU64::new(0),
                max_age: shared.then_some(MAX_STALENESS),
                listing: RwLock::new(None),
                tickets: RwLock::new(HashMap::new()),
                rebuild: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The change count now; read it before the database read a snapshot is made from.
    pub fn changes(&self) -> u64 {
        self.inner
            .outbox
            .commits()
            .wrapping_add(self.inner.elsewhere.load(Ordering::Acquire))
    }

    /// Counts a change made elsewhere (another replica's event).
    pub fn changed_elsewhere(&self) {
        self.inner.elsewhere.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self, snapshot: &Snapshot, now: Millis) -> bool {
        snapshot.changes == self.changes()
            && snapshot.until.is_none_or(|until| now < until)
            && self
                .inner
                .max_age
                .is_none_or(|max| snapshot.built.elapsed() < max)
    }

    /// The default listing, if its snapshot is current.
    pub fn listing(&self, now: Millis) -> Option<Arc<Snapshot>> {
        let listing = self.inner.listing.read().ok()?.clone()?;
        self.current(&listing, now).then_some(listing)
    }

    /// Waits for any rebuild of the listing in progress; hold the guard while rebuilding.
    pub async fn rebuilding(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.rebuild.lock().await
    }

    pub fn set_listing(&self, snapshot: Arc<Snapshot>) {
        if let Ok(mut listing) = self.inner.listing.write() {
            *listing = Some(snapshot);
        }
    }

    /// Ticket `id`, if its snapshot is current.
    pub fn ticket(&self, id: &TicketId) -> Option<Arc<Snapshot>> {
        let ticket = self.inner.tickets.read().ok()?.get(id)?.clone();
        self.current(&ticket, Millis::now()).then_some(ticket)
    }

    pub fn set_ticket(&self, id: TicketId, snapshot: Arc<Snapshot>) {
        let Ok(mut tickets) = self.inner.tickets.write() else {
            return;
        };
        if tickets.len() >= MAX_TICKETS && !tickets.contains_key(&id) {
            let changes = self.changes();
            tickets.retain(|_, s| s.changes == changes);
            if tickets.len() >= MAX_TICKETS {
                tickets.clear();
            }
        }
        tickets.insert(id, snapshot);
    }

    /// On NATS, follows the tickets events of every replica (from now on) and counts each as a
    /// change, on `runtime` until it stops. Nothing to do with the in-process bus.
    pub async fn follow(&self, runtime: &Runtime) -> Result<(), bt_platform::bus::BusError> {
        let Bus::Nats(bus) = &runtime.bus else {
            return Ok(());
        };
        let (_, events) = bus
            .follow_since(EVENTS, std::time::SystemTime::now())
            .await?;
        let snapshots = self.clone();
        // After a gap (events may have been missed) as after an event: a change. Snapshots are
        // bounded by MAX_STALENESS meanwhile.
        bus.keep_following(
            runtime,
            EVENTS,
            events,
            std::time::SystemTime::now,
            "tickets events for the snapshots",
            move |_| snapshots.changed_elsewhere(),
        );
        Ok(())
    }
}

/// The events of every replica's tickets changes.
const EVENTS: &str = "ticket.>";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_none_match: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(if_none_match).unwrap(),
        );
        headers
    }

    #[test]
    fn the_etag_names_the_body() {
        let a = Snapshot::new(0, b"[1]".to_vec(), None, None);
        let b = Snapshot::new(0, b"[2]".to_vec(), None, None);
        let again = Snapshot::new(7, b"[1]".to_vec(), None, None);
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, again.etag);
    }

    #[test]
    fn if_none_match_compares_weakly_and_in_lists() {
        let s = Snapshot::new(0, b"[]".to_vec(), None, None);
        let tag = s.etag.to_str().unwrap().to_owned();
        assert!(matches_etag(&headers(&tag), &s.etag));
        assert!(matches_etag(&headers(&format!("W/{tag}")), &s.etag));
        assert!(matches_etag(&headers(&format!("\"x\", {tag}")), &s.etag));
        assert!(matches_etag(&headers("*"), &s.etag));
        assert!(!matches_etag(&headers("\"x\""), &s.etag));
        assert!(!matches_etag(&HeaderMap::new(), &s.etag));
        assert_eq!(s.respond(&headers(&tag)).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(s.respond(&HeaderMap::new()).status(), StatusCode::OK);
    }
}
