//! The routes of the payments service.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bt_contract::events::OrderStatus;
use bt_contract::json::string_field;
use bt_contract::{ApiError, ApiJson, ApiResult, Cents, CurrentUser, JsonField, validate};
use bt_platform::db::now_millis;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::charging::{self, RecordError, Recorded};
use crate::provider::{Charge, ChargeOutcome, ProviderError};
use crate::store;
use crate::webhook;

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

impl From<RecordError> for ApiError {
    fn from(err: RecordError) -> Self {
        match err {
            RecordError::Database(err) => err.into(),
            other => ApiError::internal(other),
        }
    }
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id), err(Debug))]
async fn create_payment(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewPayment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (token, order_id) = validate!(
        token: required(string_field(&body.token), "Token must be provided"),
        order_id as "orderId": required(string_field(&body.order_id), "OrderId must be provided"),
    )?;
    let order = store::order(&state.db, &order_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if order.user_id != user.0.id {
        return Err(ApiError::NotAuthorized);
    }
    match OrderStatus::parse(&order.status) {
        Some(OrderStatus::Cancelled) => {
            return Err(ApiError::bad_request("Cannot pay for a cancelled order"));
        }
        Some(OrderStatus::Complete) => return Err(ApiError::bad_request("Order is already paid")),
        _ => {}
    }
    // Past its window the order is about to be cancelled (the expiration service owns that):
    // never charge it, even before the cancellation arrives.
    if order
        .expires_at
        .is_some_and(|expires_at| expires_at <= now_millis())
    {
        return Err(ApiError::bad_request("Cannot pay for an expired order"));
    }

    // Claim the order: at most one attempt in flight or succeeded per order.
    let mut tx = state.db.begin().await?;
    if store::succeeded_payment(&mut tx, &order.id)
        .await?
        .is_some()
    {
        return Err(ApiError::bad_request("Order is already paid"));
    }
    let Some(attempt) = store::open_attempt(&mut tx, &order.id, now_millis()).await? else {
        return Err(ApiError::bad_request(
            "A payment for this order is already in progress",
        ));
    };
    tx.commit().await?;

    let charge = Charge {
        amount: Cents::new(order.price),
        currency: state.currency.clone(),
        token,
        idempotency_key: format!("{}-{attempt}", order.id),
        order_id: order.id.clone(),
        attempt,
    };
    let outcome = state.provider.charge(&charge).await;
    let fail = |failure: String| {
        let state = state.clone();
        let order_id = order.id.clone();
        async move {
            let mut tx = state.db.begin().await?;
            store::finish_attempt(
                &mut tx,
                &order_id,
                attempt,
                "failed",
                None,
                Some(&failure),
                now_millis(),
            )
            .await?;
            tx.commit().await?;
            Ok::<(), ApiError>(())
        }
    };
    match outcome {
        Ok(ChargeOutcome::Succeeded { provider_id }) => {
            let recorded = charging::record_success(
                &state.db,
                &state.outbox,
                &state.refunds,
                &order.id,
                Some(attempt),
                &provider_id,
                order.price,
                &state.currency,
            )
            .await?;
            match recorded {
                Recorded::Paid(payment) => {
                    Ok((StatusCode::CREATED, Json(json!({"id": payment.id}))))
                }
                Recorded::Refunding(_) => Err(ApiError::bad_request(
                    "The order was cancelled before the payment completed; the charge is being refunded",
                )),
            }
        }
        Ok(ChargeOutcome::Pending { provider_id }) => {
            let mut tx = state.db.begin().await?;
            store::set_attempt_provider(&mut tx, &order.id, attempt, &provider_id, now_millis())
                .await?;
            tx.commit().await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": null, "status": "processing"})),
            ))
        }
        Ok(ChargeOutcome::Declined { message }) => {
            fail(format!("declined: {message}")).await?;
            metrics::counter!("payments_declined_total").increment(1);
            Err(ApiError::bad_request(message))
        }
        Err(ProviderError::Invalid(message)) => {
            fail(format!("invalid: {message}")).await?;
            Err(ApiError::bad_request(message))
        }
        Err(ProviderError::Unavailable(reason)) => {
            // Whether the charge happened is unknown; a webhook records it if it did, and a
            // duplicate charge is refunded.
            tracing::error!(%reason, order.id = %order.id, "payment provider unavailable");
            fail(format!("provider unavailable: {reason}")).await?;
            Err(ApiError::Unavailable(
                "The payment provider is unavailable; please try again".into(),
            ))
        }
    }
}

/// The parts of a Stripe event the service reads.
#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeEventData,
}

#[derive(Debug, Deserialize)]
struct StripeEventData {
    object: Value,
}

#[tracing::instrument(skip_all, err(Debug))]
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
        tracing::warn!(%err, "webhook refused");
        ApiError::bad_request("Invalid signature")
    })?;
    let event: StripeEvent =
        serde_json::from_slice(&body).map_err(|_| ApiError::bad_request("Not a Stripe event"))?;
    let object = &event.data.object;
    let provider_id = object["id"].as_str().unwrap_or_default().to_owned();
    let order_id = object["metadata"]["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let attempt = object["metadata"]["attempt"]
        .as_str()
        .and_then(|a| a.parse::<i64>().ok());

    // De-duplicated by the Stripe event id. Recording a charge is idempotent by itself (by the
    // PaymentIntent id), so it runs first and the event is marked handled only afterwards: a
    // failure leaves it unmarked and Stripe's retry handles it again.
    let mut tx = state.db.begin().await?;
    if !store::webhook_seen(&mut tx, &event.id, &event.kind, now_millis()).await? {
        return Ok(Json(json!({"received": true, "duplicate": true})));
    }
    match event.kind.as_str() {
        "payment_intent.succeeded" if !order_id.is_empty() && !provider_id.is_empty() => {
            tx.rollback().await?;
            let amount = object["amount_received"]
                .as_i64()
                .or_else(|| object["amount"].as_i64())
                .unwrap_or(0);
            let currency = object["currency"]
                .as_str()
                .unwrap_or(&state.currency)
                .to_owned();
            match charging::record_success(
                &state.db,
                &state.outbox,
                &state.refunds,
                &order_id,
                attempt,
                &provider_id,
                amount,
                &currency,
            )
            .await
            {
                Ok(_) => {}
                Err(RecordError::UnknownOrder(order)) => {
                    tracing::error!(%order, %provider_id, "webhook for an unknown order");
                }
                Err(err) => return Err(err.into()),
            }
            let mut tx = state.db.begin().await?;
            store::webhook_seen(&mut tx, &event.id, &event.kind, now_millis()).await?;
            tx.commit().await?;
        }
        "payment_intent.payment_failed" if !order_id.is_empty() => {
            if let Some(attempt) = attempt {
                let message = object["last_payment_error"]["message"]
                    .as_str()
                    .unwrap_or("declined");
                store::finish_attempt(
                    &mut tx,
                    &order_id,
                    attempt,
                    "failed",
                    Some(&provider_id),
                    Some(message),
                    now_millis(),
                )
                .await?;
            }
            tx.commit().await?;
        }
        _ => tx.commit().await?,
    }
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
