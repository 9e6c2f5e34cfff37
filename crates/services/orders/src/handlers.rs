//! The routes of the orders service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bt_contract::events::{OrderCancelled, OrderCreated, OrderStatus, OrderTicket, TicketRef};
use bt_contract::json::string_field;
use bt_contract::{ApiError, ApiJson, ApiResult, Cents, CurrentUser, JsonField, validate};
use bt_platform::db::now_millis;
use serde::Deserialize;

use crate::AppState;
use crate::domain::OrderJson;
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

fn parse_ticket_id(raw: Option<String>) -> Result<String, &'static str> {
    match raw.map(|s| s.trim().to_owned()) {
        Some(id) if !id.is_empty() && id.len() <= 100 => Ok(id),
        _ => Err("TicketId must be provided"),
    }
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id), err(Debug))]
async fn list_orders(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<OrderJson>>> {
    let orders = store::orders_of(&state.db, &user.0.id).await?;
    Ok(Json(orders.iter().map(|o| o.to_json()).collect()))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id), err(Debug))]
async fn create_order(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewOrder>,
) -> ApiResult<(StatusCode, Json<OrderJson>)> {
    let (ticket_id,) =
        validate!(ticket_id as "ticketId": parse_ticket_id(string_field(&body.ticket_id)))?;
    let now = now_millis();
    let window = i64::try_from(state.expiration.as_millis()).unwrap_or(i64::MAX / 4);
    let expires_at = now + window;
    let mut tx = state.db.begin().await?;
    let ticket = store::find_ticket_in(&mut tx, &ticket_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if ticket.user_id == user.0.id {
        return Err(ApiError::bad_request("You cannot buy your own ticket"));
    }
    let id = uuid::Uuid::now_v7().to_string();
    store::insert_order(&mut tx, &id, &user.0.id, &ticket.id, expires_at, now).await?;
    let order = store::find_order_in(&mut tx, &id)
        .await?
        .ok_or_else(|| ApiError::internal("order vanished"))?;
    state
        .outbox
        .stage(
            &mut tx,
            OrderCreated {
                id: id.clone(),
                version: order.version,
                status: OrderStatus::Created,
                user_id: user.0.id.clone(),
                expires_at: order.expires_at(),
                ticket: OrderTicket {
                    id: ticket.id.clone(),
                    price: Cents::new(ticket.price),
                },
            },
        )
        .await?;
    state.outbox.commit(tx).await?;
    tracing::info!(order.id = %id, ticket.id = %ticket.id, "ticket reserved");
    Ok((StatusCode::CREATED, Json(order.to_json())))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id), err(Debug))]
async fn show_order(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderJson>> {
    let order = store::find_order(&state.db, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user.0.id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(Json(order.to_json()))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id), err(Debug))]
async fn cancel_order(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let order = store::find_order_in(&mut tx, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user.0.id {
        return Err(ApiError::NotAuthorized);
    }
    match order.status() {
        OrderStatus::Complete => {
            return Err(ApiError::bad_request("Cannot cancel a completed order"));
        }
        OrderStatus::Cancelled => return Ok(StatusCode::NO_CONTENT),
        OrderStatus::Created | OrderStatus::AwaitingPayment => {}
    }
    if !store::set_status(
        &mut tx,
        &id,
        OrderStatus::Cancelled,
        order.version,
        now_millis(),
    )
    .await?
    {
        return Err(ApiError::bad_request(
            "The order changed meanwhile; please try again",
        ));
    }
    state
        .outbox
        .stage(
            &mut tx,
            OrderCancelled {
                id: id.clone(),
                version: order.version + 1,
                ticket: TicketRef {
                    id: order.ticket_id.clone(),
                },
            },
        )
        .await?;
    state.outbox.commit(tx).await?;
    tracing::info!(order.id = %id, "order cancelled by the buyer");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_id_is_a_non_empty_string() {
        assert_eq!(parse_ticket_id(Some(" abc ".into())), Ok("abc".into()));
        assert!(parse_ticket_id(Some("  ".into())).is_err());
        assert!(parse_ticket_id(None).is_err());
        assert!(parse_ticket_id(Some("x".repeat(101))).is_err());
    }
}
