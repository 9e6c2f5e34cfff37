//! The OpenAPI side of the contract: how the wire types look as JSON Schema, the security
//! schemes, and the error answers that many routes share — so that every service's document
//! (built from its handlers with `utoipa`, see `bt_platform::api_docs`) describes the same
//! types the same way.
//!
//! - Schemas of the types written by hand here: [`Cents`] (`Money`, a JSON number in currency
//!   units), [`Millis`] (`Timestamp`, an ISO-8601 string), the ids (strings), and every
//!   [`text_enum!`](crate::text_enum) (a string with its spellings as `enum`).
//! - Security: [`SESSION_COOKIE`] (the `session` cookie) and [`BEARER`] (`Authorization:
//!   Bearer <jwt>`), either of which a route marked with both accepts.
//! - Shared answers, for `responses(...)` of `#[utoipa::path]`: [`NotAuthorized`] (401),
//!   [`JsonBodyRefused`] (413, 415), [`RateLimited`] (429 + `Retry-After`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Response, Schema};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

use crate::money::Cents;
use crate::time::Millis;

/// The security scheme of the `session` cookie that sign-up and sign-in set.
pub const SESSION_COOKIE: &str = "sessionCookie";
/// The security scheme of `Authorization: Bearer <jwt>` (the same token as the cookie's).
pub const BEARER: &str = "bearerJwt";

/// The `$ref` of a schema in `components/schemas`.
pub fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// A JSON string with the given spellings.
pub fn string_enum(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// An id: a non-empty string (UUID v7 for ids made by this version).
pub fn id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([serde_json::json!("019a7f3e-5b2c-7d4e-9f10-2a3b4c5d6e7f")])
        .into()
}

impl PartialSchema for Cents {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some(
                "An amount in currency units with at most two decimals (stored as integer \
                 cents), e.g. `20` or `20.5`.",
            ))
            .examples([serde_json::json!(20.5)])
            .into()
    }
}

impl ToSchema for Cents {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

impl PartialSchema for Millis {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An instant, ISO-8601 in UTC with milliseconds."))
            .examples([serde_json::json!("2026-11-25T10:00:00.000Z")])
            .into()
    }
}

impl ToSchema for Millis {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

/// The error body with a description.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref("ErrorBody")))
                .build(),
        )
        .build()
}

/// The `Retry-After` header: whole seconds to wait before trying again.
pub fn retry_after_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before trying again."))
        .build()
}

fn responses(entries: Vec<(&str, Response)>) -> BTreeMap<String, RefOr<Response>> {
    entries
        .into_iter()
        .map(|(status, response)| (status.to_owned(), RefOr::T(response)))
        .collect()
}

/// 401 `Not authorized`: no valid session (cookie or bearer token), or not the owner.
#[derive(Debug)]
pub struct NotAuthorized;

impl IntoResponses for NotAuthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![(
            "401",
            error_response(
                "`Not authorized`: no valid session (the `session` cookie or an \
                 `Authorization: Bearer` token that is unexpired and not signed out).",
            ),
        )])
    }
}

/// 413 and 415: a JSON body over 64 KiB, or a body whose `Content-Type` is not JSON.
#[derive(Debug)]
pub struct JsonBodyRefused;

impl IntoResponses for JsonBodyRefused {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(vec![
            (
                "413",
                error_response("`Request body is too large`: more than 64 KiB."),
            ),
            (
                "415",
                error_response(
                    "`Content-Type must be application/json`: the body is not declared as \
                     JSON (`application/json` or `*/*+json`).",
                ),
            ),
        ])
    }
}

/// 429 with `Retry-After`: too many attempts from one client address.
#[derive(Debug)]
pub struct RateLimited;

impl IntoResponses for RateLimited {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut response = error_response(
            "`Too many requests, please try again later`: too many attempts from this client \
             address (`AUTH_RATE_LIMIT_PER_MINUTE`).",
        );
        response
            .headers
            .insert("Retry-After".to_owned(), retry_after_header());
        responses(vec![("429", response)])
    }
}

/// The security requirements of a route that needs a session: the cookie or the bearer token.
pub fn session_required() -> Vec<utoipa::openapi::security::SecurityRequirement> {
    use utoipa::openapi::security::SecurityRequirement;
    vec![
        SecurityRequirement::new(SESSION_COOKIE, Vec::<String>::new()),
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(schema: RefOr<Schema>) -> serde_json::Value {
        serde_json::to_value(schema).unwrap()
    }

    #[test]
    fn money_is_a_number_and_timestamps_are_date_time_strings() {
        assert_eq!(json(Cents::schema())["type"], "number");
        let at = json(Millis::schema());
        assert_eq!(at["type"], "string");
        assert_eq!(at["format"], "date-time");
    }

    #[test]
    fn text_enums_list_their_spellings() {
        let status = json(crate::events::OrderStatus::schema());
        assert_eq!(
            status["enum"],
            serde_json::json!(["created", "cancelled", "awaiting:payment", "complete"])
        );
        assert_eq!(crate::events::OrderStatus::name(), "OrderStatus");
    }

    #[test]
    fn rate_limited_answers_say_when_to_retry() {
        let responses = RateLimited::responses();
        let RefOr::T(response) = &responses["429"] else {
            panic!("inline response");
        };
        assert!(response.headers.contains_key("Retry-After"));
    }
}

/// A price as a request gives it (a ticket's `price` and `faceValue`, an alert's `maxPrice`):
/// what [`JsonField::as_cents`](crate::JsonField::as_cents) reads, within a price's bounds.
#[derive(Debug)]
pub struct PriceInput;

impl utoipa::PartialSchema for PriceInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(0))
                    .maximum(Some(1_000_000))
                    .multiple_of(Some(0.01)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\+?(?:0*[1-9][0-9]{0,5}(?:\.[0-9]{0,2}0*)?|0*1000000(?:\.0*)?|0*\.(?:[1-9][0-9]?|0[1-9])0*)[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")),
            )
            .description(Some(
                "More than 0, at most 1,000,000, at most two decimals: a JSON number (`20`, \
                 `20.5`) or a numeric string (`\"25.50\"`, trimmed), read exactly (never \
                 through a binary float). The exponent form (`2.05e1`) is read too.",
            ))
            .examples([serde_json::json!(20.5)])
            .into()
    }
}

impl utoipa::ToSchema for PriceInput {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("PriceInput")
    }
}
