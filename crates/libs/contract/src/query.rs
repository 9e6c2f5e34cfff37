//! Query strings, parsed with errors in the contract's format.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters of type `T`; a query that does not parse is a 400 in the error format.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

/// A page size given as `limit`: `default` when absent, else a whole number from 1 to `max`
/// (the message names the range, for [`crate::validate!`]).
pub fn page_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, String> {
    match raw {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("limit must be a whole number from 1 to {max}")),
        },
    }
}

/// A page's starting point given as an id (`before`): absent, or a UUID (surrounding blanks
/// ignored), written in its canonical form; `invalid` is the message for anything else.
pub fn page_cursor(
    raw: Option<&str>,
    invalid: &'static str,
) -> Result<Option<String>, &'static str> {
    match raw {
        None => Ok(None),
        Some(raw) => uuid::Uuid::parse_str(raw.trim())
            .map(|id| Some(id.to_string()))
            .map_err(|_| invalid),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("Invalid query string: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{page_cursor, page_limit};

    #[test]
    fn a_page_limit_is_the_default_or_a_whole_number_in_range() {
        assert_eq!(page_limit(None, 50, 200), Ok(50));
        assert_eq!(page_limit(Some(" 200 "), 50, 200), Ok(200));
        assert_eq!(page_limit(Some("1"), 50, 200), Ok(1));
        for bad in ["0", "201", "-1", "", "ten", "1.5"] {
            assert_eq!(
                page_limit(Some(bad), 50, 200),
                Err("limit must be a whole number from 1 to 200".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_cursor_is_absent_or_a_uuid_in_canonical_form() {
        assert_eq!(page_cursor(None, "bad"), Ok(None));
        assert_eq!(
            page_cursor(Some(" 0193A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B "), "bad"),
            Ok(Some("0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b".into()))
        );
        for bad in ["", "yesterday", "0193a1b2"] {
            assert_eq!(page_cursor(Some(bad), "bad"), Err("bad"), "{bad}");
        }
    }
}
