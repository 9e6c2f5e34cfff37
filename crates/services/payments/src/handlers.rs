//! The routes of the payments service: `POST /api/payments` ([`paying`](crate::paying)) and
//! `POST /api/payments/webhook` ([`webhook`](crate::webhook)).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bt_contract::json::string_field;
use bt_contract::{
    ApiError, ApiJson, ApiResult, CurrentUser, JsonField, Millis, OrderId, validate,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::paying::{self, Paid};
use crate::store;
use crate::webhook::{self, StripeEvent};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/payments", post(create_payment))
        .route("/api/payments/webhook", post(stripe_webhook))
        .with_state(state)
}

/// The body of a payment.
#[derive(Debug, Deserialize)]
pub struct NewPayment {
    token: Option<JsonField>,
    #[serde(rename = "orderId")]
    order_id: Option<JsonField>,
}

fn required(raw: Option<String>, message: &'static str) -> Result<String, &'static str> {
    match raw.map(|s| s.trim().to_owned()) {
        Some(s) if !s.is_empty() && s.len() <= 255 => Ok(s),
        _ => Err(message),
    }
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn create_payment(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewPayment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (token, order_id) = validate!(
        token: required(string_field(&body.token), "Token must be provided"),
        order_id as "orderId": required(string_field(&body.order_id), "OrderId must be provided"),
    )?;
    let order_id = OrderId::new(order_id);
    match paying::pay(&state.payments, &user.0.id, &order_id, token).await? {
        Paid::Complete(id) => Ok((StatusCode::CREATED, Json(json!({"id": id})))),
        Paid::Processing(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": "processing"})),
        )),
    }
}

#[tracing::instrument(skip_all)]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::bad_request(
            "Webhooks are not configured (STRIPE_WEBHOOK_SECRET)",
        ));
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    webhook::verify(
        &body,
        signature,
        secret.expose_secret().as_bytes(),
        chrono::Utc::now().timestamp(),
        state.webhook_tolerance_secs,
    )
    .map_err(|err| {
        tracing::debug!(%err, "webhook refused");
        ApiError::bad_request("Invalid signature")
    })?;
    let event: StripeEvent =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("Not a Stripe event"))?;
    // De-duplicated by the Stripe event id. Applying an event is idempotent by itself, so it
    // runs first and the event is marked handled only afterwards: a failure leaves it unmarked
    // and Stripe's retry handles it again.
    let db = &state.payments.db;
    let mut tx = db.begin().await?;
    if !store::webhook_seen(&mut tx, &event.id, &event.kind, Millis::now()).await? {
        return Ok(Json(json!({"received": true, "duplicate": true})));
    }
    tx.rollback().await?;
    webhook::apply(&state.payments, &event).await?;
    let mut tx = db.begin().await?;
    store::webhook_seen(&mut tx, &event.id, &event.kind, Millis::now()).await?;
    tx.commit().await?;
    Ok(Json(json!({"received": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_non_empty_strings() {
        assert_eq!(
            required(Some(" tok_visa ".into()), "m"),
            Ok("tok_visa".into())
        );
        assert_eq!(required(Some("".into()), "m"), Err("m"));
        assert_eq!(required(None, "m"), Err("m"));
    }
}
