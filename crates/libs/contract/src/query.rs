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
    use super::page_limit;

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
}
