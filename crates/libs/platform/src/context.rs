//! The request id of the work in progress, carried from an HTTP request into the events it
//! causes (outbox rows, NATS headers) and from an event into its handler's logs and the events
//! the handler publishes in turn.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the current HTTP request or event handler, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `future` with `id` as the current request id (or none).
pub async fn with_request_id<F: Future>(id: Option<String>, future: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, future).await,
        None => future.await,
    }
}
