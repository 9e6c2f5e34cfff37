//! The wire contract shared by every BuyTicket service (ARCHITECTURE §3).
//!
//! - [`error`]: [`ApiError`], rendered as `{"errors":[{"message","field"}]}` with the status codes
//!   of the contract, and [`FieldError`].
//! - [`validate`]: [`Validator`], which collects one error per failed field.
//! - [`json`]: the [`ApiJson`] body extractor (malformed, wrong type, too large, wrong content
//!   type all become [`ApiError`]s) and [`JsonField`], a field kept as raw JSON so that each field
//!   is checked on its own.
//! - [`money`]: [`Cents`], money as integer cents parsed exactly from JSON numbers or strings.
//! - [`session`]: JWT sessions ([`SessionKeys`], [`Claims`]) and the [`CurrentUser`] /
//!   [`MaybeUser`] extractors (cookie `session` or `Authorization: Bearer`).

pub mod error;
pub mod events;
pub mod json;
pub mod money;
pub mod query;
pub mod session;
pub mod validate;

pub use error::{ApiError, ApiResult, FieldError};
pub use json::{ApiJson, JsonField};
pub use money::{Cents, MoneyError};
pub use query::ApiQuery;
pub use session::{Claims, CurrentUser, MaybeUser, SESSION_COOKIE, SessionKeys};
pub use validate::Validator;
