//! The routes of the orders service: parse, call the domain, answer. Each route is registered
//! together with its OpenAPI description ([`routes`]); the service's document is [`openapi`],
//! served at `/api/orders/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use bt_contract::json::string_field;
use bt_contract::openapi::{JsonBodyRefused, NotAuthorized};
use bt_contract::resources;
use bt_contract::{
    ApiError, ApiJson, ApiResult, CurrentUser, JsonField, Millis, OrderId, TicketId, validate,
};
use bt_platform::api_docs::{self, OpenApiDocument};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::domain::{Command, ListedTicket, Order, Refusal};
use crate::lifecycle::{Executed, execute};
use crate::reservations::Written;
use crate::store;

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the service with its description. `/api/orders/openapi.json` is a static
/// path, so it wins over `/api/orders/{id}` (order ids are UUIDs).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders, create_order))
        .routes(routes!(openapi_document))
        .routes(routes!(show_order, cancel_order))
}

/// The OpenAPI document of the orders service.
pub fn openapi() -> serde_json::Value {
    let mut doc = routes().into_openapi();
    doc.tags = Some(vec![api_docs::tag(
        "orders",
        "Orders: reserve a ticket, see one's orders, cancel (service `orders`).",
    )]);
    api_docs::finish(
        doc,
        "BuyTicket orders API",
        "An order reserves a ticket until `expiresAt`; paying completes it, otherwise it is \
         cancelled when it expires.",
    )
}

#[utoipa::path(
    get,
    path = "/api/orders/openapi.json",
    tag = "orders",
    operation_id = "orders_openapi",
    summary = "The OpenAPI document of the orders service",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument))
)]
async fn openapi_document() -> Response {
    static DOCUMENT: OnceLock<Arc<String>> = OnceLock::new();
    api_docs::document_response(DOCUMENT.get_or_init(|| Arc::new(openapi().to_string())))
}

/// The body of a new order: `{ticketId}`. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewOrder {
    /// The ticket to reserve (trimmed; 1 to 100 characters).
    #[serde(rename = "ticketId")]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")]
    ticket_id: Option<JsonField>,
}

fn parse_ticket_id(raw: Option<String>) -> Result<TicketId, &'static str> {
    match raw.map(|s| s.trim().to_owned()) {
        Some(id) if !id.is_empty() && id.chars().count() <= 100 => Ok(TicketId::new(id)),
        _ => Err("TicketId must be provided"),
    }
}

/// A refusal of the buyer's own command as the API answers it.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotOwner => ApiError::NotAuthorized,
        other => ApiError::bad_request(other.to_string()),
    }
}

#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "orders",
    operation_id = "list_orders",
    summary = "The caller's orders, newest first",
    description = "Each with the ticket as it was reserved and its payment, if any.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "The caller's orders.", body = [resources::Order]),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn list_orders(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<resources::Order>>> {
    let orders = store::orders_of(&state.db, &user.0.id).await?;
    Ok(Json(orders.iter().map(Order::to_json).collect()))
}

#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    operation_id = "create_order",
    summary = "Reserve a ticket",
    description = "Places an order for a ticket on sale: it reserves the ticket until `expiresAt` \
        (`ORDER_EXPIRATION_SECONDS` after now, 900 by default).",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    request_body(content = NewOrder, content_type = "application/json"),
    responses(
        (status = 201, description = "The new order, status `created`.", body = resources::Order,
            links(
                ("GetOrder" = (operation_id = "show_order", parameters(("id" = "$response.body#/id")))),
                ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/id")))),
                ("PayOrder" = (operation_id = "create_payment", request_body = json!({"orderId": "$response.body#/id", "token": "tok_visa"}))),
            )),
        (status = 400, description = "`Ticket is already reserved`, `You cannot buy your own ticket`, `This ticket is not for sale`, `This event has already started`, `This ticket is held for the first fan in line of its ticket alert until ...` (`ALERT_HOLD_SECONDS`), validation (`ticketId`), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        (status = 404, description = "`Not Found`: no such ticket.", body = bt_contract::error::ErrorBody),
        JsonBodyRefused,
        (status = 503, description = "The ticket was listed a moment ago and has not reached this service yet (with `Retry-After`), or busy.", body = bt_contract::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait before trying again."))),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn create_order(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewOrder>,
) -> ApiResult<(StatusCode, Json<resources::Order>)> {
    let (ticket_id,) =
        validate!(ticket_id as "ticketId": parse_ticket_id(string_field(&body.ticket_id)))?;
    let buyer = user.0.id;
    let place = |ticket: &ListedTicket| {
        Order::place(
            OrderId::generate(),
            buyer.clone(),
            ticket,
            Millis::now(),
            state.expiration,
        )
        .map_err(refused)
    };
    // Most buyers of a rush are too late: a ticket this process knows is taken is refused from
    // memory, after the same checks as any other (see `reservations`).
    if let Some(ticket) = state.reservations.taken(&ticket_id) {
        Order::may_place(&buyer, &ticket, Millis::now()).map_err(refused)?;
        return Err(ApiError::bad_request(TAKEN));
    }
    // A ticket listed a moment ago may not have reached the replica yet: wait for it briefly.
    let ticket = state
        .reservations
        .read_ticket(&ticket_id, || {
            state
                .arrivals
                .find(ticket_id.created_at(), "ticket", || async {
                    Ok(store::find_ticket(&state.db, &ticket_id).await?)
                })
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    let (order, created) = place(&ticket)?;
    let claim = state
        .reservations
        .claim(&ticket)
        .ok_or_else(|| ApiError::bad_request(TAKEN))?;
    let json = order.to_json();
    match state.reservations.write(claim, order, created).await? {
        Written::Won => {
            tracing::info!(order.id = %json.id, ticket.id = %ticket.id, "ticket reserved");
            Ok((StatusCode::CREATED, Json(json)))
        }
        Written::Taken => Err(ApiError::bad_request(TAKEN)),
    }
}

/// Why a buyer who is too late is refused.
const TAKEN: &str = "Ticket is already reserved";

#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    operation_id = "show_order",
    summary = "One of the caller's orders",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order.", body = resources::Order),
        (status = 400, description = "`The request is not valid`: the id is not valid UTF-8 once decoded.", body = bt_contract::error::ErrorBody),
        (status = 401, description = "`Not authorized`: no valid session, or the order is someone else's.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such order.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn show_order(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<resources::Order>> {
    let order = store::find_order(&state.db, &OrderId::new(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user.0.id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(Json(order.to_json()))
}

#[utoipa::path(
    delete,
    path = "/api/orders/{id}",
    tag = "orders",
    operation_id = "cancel_order",
    summary = "Cancel one of the caller's orders",
    description = "The ticket is free again. Cancelling a cancelled order changes nothing and \
        answers 204 too.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The order's id.")),
    responses(
        (status = 204, description = "Cancelled (status `cancelled`)."),
        (status = 400, description = "`Cannot cancel a completed order`, or the id is not valid UTF-8 once decoded.", body = bt_contract::error::ErrorBody),
        (status = 401, description = "`Not authorized`: no valid session, or the order is someone else's.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such order.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn cancel_order(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = OrderId::new(id);
    let mut tx = state.db.begin().await?;
    let command = Command::Cancel { by: user.0.id };
    match execute(&mut tx, &state.outbox, &id, command, Millis::now()).await? {
        Executed::NotFound => Err(ApiError::NotFound),
        Executed::Refused {
            refusal: Refusal::AlreadyCancelled,
            ..
        } => Ok(StatusCode::NO_CONTENT),
        Executed::Refused { refusal, .. } => Err(refused(refusal)),
        Executed::Changed(order) => {
            state.outbox.commit(tx).await?;
            state.reservations.forget(&order.ticket.id);
            tracing::info!(order.id = %id, "order cancelled by the buyer");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_id_is_a_non_empty_string() {
        assert_eq!(
            parse_ticket_id(Some(" abc ".into())),
            Ok(TicketId::new("abc"))
        );
        assert!(parse_ticket_id(Some("  ".into())).is_err());
        assert!(parse_ticket_id(None).is_err());
        assert!(parse_ticket_id(Some("x".repeat(101))).is_err());
    }

    #[test]
    fn a_ticket_id_is_limited_in_characters_as_the_document_says_not_in_bytes() {
        // The document's `maxLength: 100` counts characters; 100 two-byte characters are
        // 200 bytes and still a well-formed id (a 404 then, not a 400).
        assert!(parse_ticket_id(Some("é".repeat(100))).is_ok());
        assert!(parse_ticket_id(Some("é".repeat(101))).is_err());
    }

    #[test]
    fn refusals_of_the_buyer_are_401_or_400_with_the_rule() {
        assert!(matches!(
            refused(Refusal::NotOwner),
            ApiError::NotAuthorized
        ));
        let err = refused(Refusal::CannotCancelCompleted);
        assert_eq!(err.to_string(), "Cannot cancel a completed order");
        assert_eq!(
            refused(Refusal::OwnTicket).to_string(),
            "You cannot buy your own ticket"
        );
    }
}
