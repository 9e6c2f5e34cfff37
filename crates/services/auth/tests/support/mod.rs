//! The auth service under test, shared by the auth test files.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use bt_auth::Settings;
use bt_contract::SessionKeys;
use bt_platform::Runtime;
use bt_platform::db::DbOptions;
use bt_platform::rate_limit::{RateLimiter, TrustedProxies};
use bt_test_support::{Backend, TestBus, TestClient, TestDb, TestServer, bus_for};

pub const KEY: &[u8] = b"test-key-that-is-at-least-32-bytes-long";

/// The auth service on a database of its own (and a bus: SQLite with the in-process one,
/// PostgreSQL with NATS).
pub struct TestApp {
    pub db: TestDb,
    pub bus: TestBus,
    pub server: TestServer,
    pub sessions: SessionKeys,
    pub runtime: Runtime,
}

/// Another auth process on the same database and bus (a restart, or a second replica).
pub struct Replica {
    pub server: TestServer,
    pub sessions: SessionKeys,
    pub runtime: Runtime,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, 0, false).await
    }

    /// With `rate_limit` sign-ins/ups per minute (0: none) and `Secure` cookies or not.
    pub async fn spawn_with(backend: Backend, rate_limit: u32, cookie_secure: bool) -> Self {
        let db = TestDb::new(backend).await;
        let bus = TestBus::new(bus_for(backend)).await;
        let Replica {
            server,
            sessions,
            runtime,
        } = start(&db, &bus, rate_limit, cookie_secure).await;
        Self {
            db,
            bus,
            server,
            sessions,
            runtime,
        }
    }

    /// The service started on a database and bus prepared beforehand (e.g. with rows as an
    /// earlier release left them).
    pub async fn spawn_on(db: TestDb, bus: TestBus) -> Self {
        let Replica {
            server,
            sessions,
            runtime,
        } = start(&db, &bus, 0, false).await;
        Self {
            db,
            bus,
            server,
            sessions,
            runtime,
        }
    }

    /// Another process on this database and bus, with session keys of its own.
    pub async fn replica(&self) -> Replica {
        start(&self.db, &self.bus, 0, false).await
    }

    pub fn client(&self) -> TestClient {
        self.server.client()
    }
}

/// An auth process on `db` and `bus` (which others may share), with session keys of its own.
pub async fn start(db: &TestDb, bus: &TestBus, rate_limit: u32, cookie_secure: bool) -> Replica {
    let sessions = SessionKeys::new(KEY, Duration::from_secs(7 * 24 * 3600), cookie_secure);
    let settings = Settings {
        sessions: sessions.clone(),
        rate_limit: RateLimiter::per_minute(rate_limit, TrustedProxies::loopback()),
    };
    let runtime = Runtime::new(bus.bus.clone());
    let service = bt_auth::service(&db.url, &DbOptions::default(), settings, &runtime)
        .await
        .expect("auth service starts");
    bt_platform::sessions::follow_revocations(&runtime, sessions.clone())
        .await
        .expect("follows sign-outs");
    let server = TestServer::spawn(bt_platform::http::app(vec![service])).await;
    Replica {
        server,
        sessions,
        runtime,
    }
}
