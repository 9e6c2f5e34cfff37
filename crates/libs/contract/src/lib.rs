//! The wire contract shared by every BuyTicket service (ARCHITECTURE §3).
//!
//! - [`error`]: [`ApiError`], rendered as `{"errors":[{"message","field"}]}` with the status codes
//!   of the contract, and [`FieldError`].
//! - [`validate`]: [`Validator`], which collects one error per failed field.
//! - [`json`]: the [`ApiJson`] body extractor (malformed, wrong type, too large, wrong content
//!   type all become [`ApiError`]s) and [`JsonField`], a field kept as raw JSON so that each field
//!   is checked on its own.
//! - [`money`]: [`Cents`], money as integer cents parsed exactly from JSON numbers or strings.
//! - [`ids`]: [`UserId`], [`TicketId`], [`OrderId`], [`PaymentId`], [`AlertId`],
//!   [`NotificationId`] — ids as newtypes.
//! - [`time`]: [`Millis`], the one timestamp type (ms since the epoch; ISO-8601 in JSON).
//! - [`text_enum!`]: enums stored as TEXT whose unknown values are errors, never defaults.
//! - [`events`]: the events between services and their envelope.
//! - [`resources`]: the JSON the API answers with, typed, for services and the web client.
//! - [`search`]: [`Search`](search::Search), the text search of the listing, which ticket alerts
//!   match with too.
//! - [`openapi`]: how those types look in the OpenAPI documents, the security schemes and the
//!   error answers many routes share.
//! - [`session`]: JWT sessions ([`SessionKeys`], [`Claims`]) and the [`CurrentUser`] /
//!   [`MaybeUser`] extractors (cookie `session` or `Authorization: Bearer`).
//! - `benches/session.rs`: what verifying a session token costs
//!   (`cargo bench -p bt-contract --bench session`).

pub mod error;
pub mod events;
pub mod ids;
pub mod json;
pub mod money;
pub mod openapi;
pub mod query;
pub mod resources;
pub mod search;
pub mod session;
pub mod text_enum;
pub mod time;
pub mod validate;

pub use error::{ApiError, ApiResult, FieldError};
pub use ids::{AlertId, NotificationId, OrderId, PaymentId, TicketId, UserId};
pub use json::{ApiJson, JsonField};
pub use money::{Cents, MoneyError};
pub use query::{ApiQuery, page_cursor, page_limit};
pub use session::{Claims, CurrentUser, MaybeUser, SESSION_COOKIE, SessionKeys};
pub use time::Millis;
pub use validate::Validator;

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use sqlx;
    pub use utoipa;
}
