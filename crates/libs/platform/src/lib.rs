//! Platform code shared by every BuyTicket service. Services describe *what* they do; this
//! crate is *how* they run.
//!
//! - [`db`]: one [`Db`] handle over SQLite (embedded default) or PostgreSQL (distributed),
//!   opened from a URL, migrations per service, transactions (`BEGIN IMMEDIATE` on SQLite),
//!   snapshots for reads ([`Db::snapshot`]) and the [`on_db!`] / [`on_tx!`] / [`on_snapshot!`]
//!   / [`write_on_db!`] macros that expand one query body per backend; multi-row statements'
//!   placeholders per backend ([`db::values_placeholders`], anonymous on SQLite).
//!
//! Benchmarks: `cargo bench -p bt-platform --bench events` (the event path end to end) and
//! `--bench placeholders` (a multi-row insert on SQLite, numbered against anonymous
//! placeholders).
//! - [`http`]: composing services into one router ([`http::app`]) with the common layers
//!   (request ids, tracing, metrics, body limit, panics and unknown routes in the error format),
//!   `/healthz`, `/readyz`, `/metrics`, and serving with graceful shutdown.
//! - [`bus`]: events — the transactional [`Outbox`](bus::Outbox) and its relay, typed
//!   consumers with an idempotent inbox, version ordering, dead letters — over NATS JetStream or
//!   the embedded default's durable in-process log.
//! - [`api_docs`]: finishing and merging the services' OpenAPI documents, and the API
//!   reference page rendered from them.
//! - [`arrivals`]: bounded waits for events that have not reached the service yet (a fresh id
//!   is answered once its event arrives, or 503 with `Retry-After`, never 404).
//! - [`context`]: the request id carried from HTTP into events and back into logs.
//! - [`files`]: ticket files — their kind by signature, content-addressed keys, and the
//!   [`FileStore`](files::FileStore) over a local directory or an S3-compatible bucket.
//! - [`rate_limit`]: per-client-address limits and the client address behind trusted proxies.
//! - [`telemetry`]: `tracing` set-up.

pub mod api_docs;
pub mod arrivals;
pub mod bus;
pub mod context;
pub mod db;
pub mod files;
pub mod http;
pub mod rate_limit;
pub mod sessions;
pub mod telemetry;

pub use arrivals::Arrivals;
pub use bus::{Bus, Runtime};
pub use db::{Backend, Db, Migrations, Snapshot, Tx};
pub use http::{Check, Service};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] db::OpenError),
    #[error("event bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error("reading the database at start: {0}")]
    Read(#[from] sqlx::Error),
}
