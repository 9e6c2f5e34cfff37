//! The routes of the payments service: `POST /api/payments` ([`paying`](crate::paying)),
//! `POST /api/payments/webhook` ([`webhook`](crate::webhook)), and the sellers' `GET
//! /api/payouts` and `POST /api/payouts/account` ([`payouts`](crate::payouts)), each
//! registered together with its OpenAPI description ([`routes`]); the service's document is
//! [`openapi`], served at `/api/payments/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bt_contract::json::string_field;
use bt_contract::openapi::JsonBodyRefused;
use bt_contract::openapi::NotAuthorized;
use bt_contract::{
    ApiError, ApiJson, ApiQuery, ApiResult, Cents, CurrentUser, JsonField, Millis, OrderId,
    PaymentId, TicketId, page_cursor, page_limit, validate,
};
use bt_platform::api_docs::{self, OpenApiDocument};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::ledger::{Credit, CreditStatus, EntryKind, PayoutAccountStatus, Totals};
use crate::paying::{self, Paid};
use crate::payouts::PageRequest;
use crate::store;
use crate::webhook::{self, StripeEvent};

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the service with its description.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment))
        .routes(routes!(stripe_webhook))
        .routes(routes!(list_payouts))
        .routes(routes!(create_payout_account))
        .routes(routes!(openapi_document))
}

/// The OpenAPI document of the payments service.
pub fn openapi() -> serde_json::Value {
    let mut doc = routes().into_openapi();
    doc.tags = Some(vec![
        api_docs::tag(
            "payments",
            "Paying an order, and Stripe's webhook (service `payments`).",
        ),
        api_docs::tag(
            "payouts",
            "What sellers are owed and paid for their sales, and where they are paid \
             (service `payments`).",
        ),
    ]);
    api_docs::finish(
        doc,
        "BuyTicket payments API",
        "Pays an order through the payment provider (Stripe, or the development provider, \
         which mirrors Stripe's test tokens: `tok_visa` succeeds, `tok_chargeDeclined` is \
         declined), and pays sellers their part of each sale.",
    )
}

#[utoipa::path(
    get,
    path = "/api/payments/openapi.json",
    tag = "payments",
    operation_id = "payments_openapi",
    summary = "The OpenAPI document of the payments service",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument))
)]
async fn openapi_document() -> Response {
    static DOCUMENT: OnceLock<Arc<String>> = OnceLock::new();
    api_docs::document_response(DOCUMENT.get_or_init(|| Arc::new(openapi().to_string())))
}

/// The body of a payment: `{token, orderId}`. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewPayment {
    /// The card token from the provider (Stripe.js), e.g. `tok_visa`; trimmed, 1 to 255
    /// characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]", examples("tok_visa"))]
    token: Option<JsonField>,
    /// The order to pay (one of the caller's); trimmed, 1 to 255 characters.
    #[serde(rename = "orderId")]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")]
    order_id: Option<JsonField>,
}

/// A payment that completed its order: `{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Payment {
    id: PaymentId,
}

/// A payment whose outcome is still being decided: `{id, status: "processing"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentProcessing {
    id: PaymentId,
    /// Always `processing`.
    #[schema(value_type = String, pattern = "^processing$")]
    status: &'static str,
}

/// What a webhook answers: `{received: true}`, with `duplicate: true` for an event handled
/// before.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookReceived {
    received: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    duplicate: Option<bool>,
}

/// A Stripe event as the webhook reads it (`payment_intent.*`, `charge.refunded`,
/// `account.updated`): `{id, type, data: {object}}`;
/// other fields are ignored. The service parses it with [`StripeEvent`] once the signature of
/// the raw body is verified.
#[derive(Debug)]
pub struct StripeEventBody;

impl utoipa::PartialSchema for StripeEventBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "id",
                string("Stripe's event id (`evt_...`): an event is handled once."),
            )
            .required("id")
            .property("type", string("E.g. `payment_intent.succeeded`."))
            .required("type")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("object", ObjectBuilder::new().schema_type(Type::Object))
                    .required("object"),
            )
            .required("data")
            .description(Some("A Stripe event; other fields are ignored."))
            .into()
    }
}

impl utoipa::ToSchema for StripeEventBody {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("StripeEvent")
    }
}

/// A required text field, trimmed, of at most 255 characters; `name` is how messages call it.
fn required(raw: Option<String>, name: &str) -> Result<String, String> {
    match raw.map(|s| s.trim().to_owned()) {
        Some(s) if s.chars().count() > 255 => Err(format!("{name} must be at most 255 characters")),
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{name} must be provided")),
    }
}

#[utoipa::path(
    post,
    path = "/api/payments",
    tag = "payments",
    operation_id = "create_payment",
    summary = "Pay an order",
    description = "Charges the order's price with the card `token`. Concurrent requests for one \
        order collapse into one charge; a declined card may be retried with another.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    request_body(content = NewPayment, content_type = "application/json"),
    responses(
        (status = 201, description = "Paid: the order is complete with this payment.", body = Payment),
        (status = 202, description = "The outcome is not known yet (the provider or the orders service is slow); the order shows it when it is.", body = PaymentProcessing),
        (status = 400, description = "The order cannot be paid (`Cannot pay for a cancelled order`, `Order is already paid`, `Cannot pay for an expired order`), the card was declined (the provider's message), validation (`token`, `orderId`), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        (status = 401, description = "`Not authorized`: no valid session, or the order is someone else's.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such order.", body = bt_contract::error::ErrorBody),
        JsonBodyRefused,
        (status = 503, description = "The order was placed a moment ago and has not reached this service yet (with `Retry-After`), or busy.", body = bt_contract::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait before trying again."))),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn create_payment(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewPayment>,
) -> ApiResult<Response> {
    let (token, order_id) = validate!(
        token: required(string_field(&body.token), "Token"),
        order_id as "orderId": required(string_field(&body.order_id), "OrderId"),
    )?;
    let order_id = OrderId::new(order_id);
    match paying::pay(&state.payments, &user.0.id, &order_id, token).await? {
        Paid::Complete(id) => Ok((StatusCode::CREATED, Json(Payment { id })).into_response()),
        Paid::Processing(id) => Ok((
            StatusCode::ACCEPTED,
            Json(PaymentProcessing {
                id,
                status: "processing",
            }),
        )
            .into_response()),
    }
}

#[utoipa::path(
    post,
    path = "/api/payments/webhook",
    tag = "payments",
    operation_id = "stripe_webhook",
    summary = "Stripe's webhook",
    description = "Stripe's events about PaymentIntents, refunds (`charge.refunded`) and \
        sellers' connected accounts (`account.updated`), verified with the `Stripe-Signature` \
        header (HMAC-SHA256 of the raw body with `STRIPE_WEBHOOK_SECRET`, within the tolerance). \
        Each event is handled once.",
    params(("Stripe-Signature" = Option<String>, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256>`.")),
    request_body(content = StripeEventBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Handled (or handled before: `duplicate: true`).", body = WebhookReceived),
        (status = 400, description = "`Invalid signature`, `Not a Stripe event`, or webhooks are not configured (no `STRIPE_WEBHOOK_SECRET`).", body = bt_contract::error::ErrorBody),
        (status = 413, description = "`Request body is too large`: more than 64 KiB.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); Stripe retries.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceived>> {
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
        return Ok(Json(WebhookReceived {
            received: true,
            duplicate: Some(true),
        }));
    }
    tx.rollback().await?;
    webhook::apply(&state.payments, &state.payouts, &event).await?;
    let mut tx = db.begin().await?;
    store::webhook_seen(&mut tx, &event.id, &event.kind, Millis::now()).await?;
    tx.commit().await?;
    Ok(Json(WebhookReceived {
        received: true,
        duplicate: None,
    }))
}

/// A seller's payouts: `{pending, available, paid, totals, entries, next, account}`, amounts in
/// currency units like `price`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutsBody {
    /// Credits not yet payable (the event has not started, or the delay after the sale has not
    /// passed).
    pending: Cents,
    /// Payable now, or with the next payout; negative while refunds of sales already paid out
    /// exceed it (netted from later payouts).
    available: Cents,
    /// Transferred to the seller's payout account (or on the way).
    paid: Cents,
    /// Over every entry, not only this page's.
    totals: PayoutTotals,
    /// A page of entries, newest first (by id: UUID v7, the order they were made in).
    entries: Vec<PayoutEntry>,
    /// The id to pass as `before` for the next (older) page; `null` on the last page.
    #[schema(required = true, value_type = Option<String>, format = Uuid)]
    next: Option<String>,
    account: PayoutAccountBody,
}

/// Sums of `price`, `fee` and `amount` over every entry of the seller that counts (all but the
/// `reversed` ones), and how many entries are `reversed`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutTotals {
    price: Cents,
    fee: Cents,
    amount: Cents,
    /// Entries left out of the sums: their sale was refunded before it was paid out.
    reversed: i64,
}

impl From<Totals> for PayoutTotals {
    fn from(totals: Totals) -> Self {
        Self {
            price: totals.price,
            fee: totals.fee,
            amount: totals.amount,
            reversed: totals.reversed,
        }
    }
}

/// The page of `GET /api/payouts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PayoutsQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Only entries made before this one (`next` of the previous page).
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<String>,
}

/// Entries on a page of `GET /api/payouts` unless `limit` says otherwise.
const PAYOUTS_PAGE: i64 = 50;
/// The most entries on one page.
const MAX_PAYOUTS_PAGE: i64 = 100;

/// One entry of a seller's ledger: the credit of a sale (`kind: "credit"`), or the reversal of a
/// credit paid out before its sale was refunded (`kind: "reversal"`, negative amounts).
/// `price = amount + fee` exactly.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutEntry {
    #[schema(value_type = String, format = Uuid)]
    id: String,
    kind: EntryKind,
    order_id: OrderId,
    /// `null` for sales recorded without it.
    #[schema(required = true)]
    ticket_id: Option<TicketId>,
    /// The ticket's title when it was ordered; `null` when unknown.
    #[schema(required = true)]
    title: Option<String>,
    /// What the buyer paid.
    price: Cents,
    /// The platform's fee (`SELLER_FEE_PERCENT` of the price, rounded half-up to the cent).
    fee: Cents,
    /// The seller's part: `price − fee`.
    amount: Cents,
    /// `pending`, `available`, `transferring`, `paid`, or `reversed` (the sale was refunded
    /// before it was paid out; counted nowhere).
    status: CreditStatus,
    /// When it becomes (or became) payable: the event's start, or `PAYOUT_DELAY_HOURS` after
    /// the sale without one.
    available_at: Millis,
    /// `null` until it is paid.
    #[schema(required = true)]
    paid_at: Option<Millis>,
    created_at: Millis,
}

/// The seller's payout account: `{status}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutAccountBody {
    /// `none` (start it with `POST /api/payouts/account`), `onboarding` (unfinished),
    /// `restricted` (the provider does not let it receive transfers yet) or `enabled`.
    status: PayoutAccountStatus,
}

/// Where the seller goes to set up their payout account: `{url}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutAccountLink {
    /// Stripe's onboarding page (a one-time link), or with the development provider the web
    /// client's payouts page (`/payouts`): the account is usable at once.
    url: String,
}

impl PayoutEntry {
    fn of(credit: Credit, now: Millis) -> Self {
        Self {
            status: credit.status_at(now),
            id: credit.id,
            kind: credit.kind,
            order_id: credit.order_id,
            ticket_id: credit.ticket_id,
            title: credit.title,
            price: credit.gross,
            fee: credit.fee,
            amount: credit.amount,
            available_at: credit.available_at,
            paid_at: credit.paid_at,
            created_at: credit.created_at,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/payouts",
    tag = "payouts",
    operation_id = "list_payouts",
    summary = "The caller's payouts as a seller",
    description = "Sums of the caller's credits by where they stand and totals over all of \
        them, one page of entries (newest first; `next` continues with older ones) and the \
        payout account's status. A sale credits its seller `price − fee` once its \
        payment is captured; the credit becomes available when the event starts (or \
        `PAYOUT_DELAY_HOURS` after the sale without a start) and is then transferred to the \
        seller's payout account. Only the caller's own entries are shown.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(PayoutsQuery),
    responses(
        (status = 200, description = "The caller's payouts.", body = PayoutsBody),
        (status = 400, description = "A parameter is not valid (`field` is its name).", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn list_payouts(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<PayoutsQuery>,
) -> ApiResult<Json<PayoutsBody>> {
    let (limit, before) = validate!(
        limit: page_limit(query.limit.as_deref(), PAYOUTS_PAGE, MAX_PAYOUTS_PAGE),
        before: page_cursor(query.before.as_deref(), "before must be the id of an entry"),
    )?;
    let now = Millis::now();
    let statement = state
        .payouts
        .statement(&user.0.id, &PageRequest { limit, before }, now)
        .await?;
    Ok(Json(PayoutsBody {
        pending: statement.balance.pending,
        available: statement.balance.available,
        paid: statement.balance.paid,
        totals: statement.totals.into(),
        next: statement.next,
        entries: statement
            .entries
            .into_iter()
            .map(|c| PayoutEntry::of(c, now))
            .collect(),
        account: PayoutAccountBody {
            status: statement.account,
        },
    }))
}

#[utoipa::path(
    post,
    path = "/api/payouts/account",
    tag = "payouts",
    operation_id = "create_payout_account",
    summary = "Set up the caller's payout account",
    description = "Creates the caller's payout account on first use (with Stripe: an Express \
        connected account) and answers where to go next: Stripe's onboarding page (a new \
        one-time link each time), or with the development provider the web client's payouts \
        page, the account being usable at once. Needs no body.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "Where the seller goes next.", body = PayoutAccountLink),
        NotAuthorized,
        (status = 503, description = "The payment provider is unavailable (with `Retry-After`), payouts are not set up on this server (`PUBLIC_URL`), or busy.", body = bt_contract::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait before trying again, when worth it."))),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn create_payout_account(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<PayoutAccountLink>> {
    let url = state.payouts.onboard(&user.0.id).await?;
    Ok(Json(PayoutAccountLink { url }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_the_payout_routes_with_every_field_required() {
        let doc = openapi();
        assert!(doc["paths"]["/api/payouts"]["get"].is_object());
        assert!(doc["paths"]["/api/payouts/account"]["post"].is_object());
        let schemas = &doc["components"]["schemas"];
        let required = |name: &str| -> Vec<String> {
            let mut fields: Vec<String> = schemas[name]["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has required fields"))
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect();
            fields.sort();
            fields
        };
        assert_eq!(
            required("PayoutEntry"),
            [
                "amount",
                "availableAt",
                "createdAt",
                "fee",
                "id",
                "kind",
                "orderId",
                "paidAt",
                "price",
                "status",
                "ticketId",
                "title"
            ]
        );
        assert_eq!(
            required("PayoutsBody"),
            [
                "account",
                "available",
                "entries",
                "next",
                "paid",
                "pending",
                "totals"
            ]
        );
        assert_eq!(
            required("PayoutTotals"),
            ["amount", "fee", "price", "reversed"]
        );
        assert_eq!(required("PayoutAccountLink"), ["url"]);
    }

    #[test]
    fn required_fields_are_non_empty_strings() {
        assert_eq!(
            required(Some(" tok_visa ".into()), "Token"),
            Ok("tok_visa".into())
        );
        let missing = Err("Token must be provided".to_owned());
        assert_eq!(required(Some("  ".into()), "Token"), missing);
        assert_eq!(required(None, "Token"), missing);
    }

    #[test]
    fn required_fields_are_limited_in_characters_as_the_document_says_not_in_bytes() {
        assert!(required(Some("é".repeat(255)), "Token").is_ok());
        // Too long is not "missing".
        assert_eq!(
            required(Some("é".repeat(256)), "Token"),
            Err("Token must be at most 255 characters".to_owned())
        );
    }
}
