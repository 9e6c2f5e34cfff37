//! The routes of the orders service: parse, call the domain, answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bt_contract::json::string_field;
use bt_contract::resources;
use bt_contract::{
    ApiError, ApiJson, ApiResult, CurrentUser, JsonField, Millis, OrderId, TicketId, validate,
};
use serde::Deserialize;

use crate::AppState;
use crate::domain::{Command, Order, Refusal};
use crate::lifecycle::{Executed, execute};
use crate::store;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(list_orders).post(create_order))
        .route("/api/orders/{id}", get(show_order).delete(cancel_order))
        .with_state(state)
}

/// The body of a new order.
#[derive(Debug, Deserialize)]
pub struct NewOrder {
    #[serde(rename = "ticketId")]
    ticket_id: Option<JsonField>,
}

fn parse_ticket_id(raw: Option<String>) -> Result<TicketId, &'static str> {
    match raw.map(|s| s.trim().to_owned()) {
        Some(id) if !id.is_empty() && id.len() <= 100 => Ok(TicketId::new(id)),
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

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn list_orders(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<resources::Order>>> {
    let orders = store::orders_of(&state.db, &user.0.id).await?;
    Ok(Json(orders.iter().map(Order::to_json).collect()))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn create_order(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewOrder>,
) -> ApiResult<(StatusCode, Json<resources::Order>)> {
    let (ticket_id,) =
        validate!(ticket_id as "ticketId": parse_ticket_id(string_field(&body.ticket_id)))?;
    // A ticket listed a moment ago may not have reached the replica yet: wait for it briefly.
    let ticket = state
        .arrivals
        .find(ticket_id.created_at(), "ticket", || async {
            Ok(store::find_ticket(&state.db, &ticket_id).await?)
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    let (order, created) = Order::place(
        OrderId::generate(),
        user.0.id,
        &ticket,
        Millis::now(),
        state.expiration,
    )
    .map_err(refused)?;
    let mut tx = state.db.begin().await?;
    store::insert_order(&mut tx, &order).await?;
    state.outbox.stage(&mut tx, created).await?;
    state.outbox.commit(tx).await?;
    tracing::info!(order.id = %order.id, ticket.id = %order.ticket.id, "ticket reserved");
    Ok((StatusCode::CREATED, Json(order.to_json())))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
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

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
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
        Executed::Changed(_) => {
            state.outbox.commit(tx).await?;
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
