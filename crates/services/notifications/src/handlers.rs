//! The routes of the notifications service — `/api/notifications` (the signed-in user's in-app
//! notifications) and `/api/alerts` (their ticket alerts) — each registered together with its
//! OpenAPI description ([`routes`]); the service's document is [`openapi`], served at
//! `/api/notifications/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use bt_contract::openapi::{JsonBodyRefused, NotAuthorized, PriceInput};
use bt_contract::resources::{self, NotificationList};
use bt_contract::{
    AlertId, ApiError, ApiJson, ApiQuery, ApiResult, Cents, CurrentUser, JsonField, Millis,
    MoneyError, NotificationId, page_cursor, page_limit, validate,
};
use bt_platform::api_docs::{self, OpenApiDocument};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::domain::{Alert, AlertRefusal, check_max_price, parse_query};
use crate::store;

/// Notifications per page when none is asked for, and the most.
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
/// The most ids one `POST /api/notifications/read` names.
pub const MAX_READ_IDS: usize = 100;

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the service with its description. `/api/notifications/openapi.json` and
/// `/api/notifications/read` are static paths.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(read_notifications))
        .routes(routes!(openapi_document))
        .routes(routes!(list_alerts, create_alert))
        .routes(routes!(delete_alert))
}

/// The OpenAPI document of the notifications service.
pub fn openapi() -> serde_json::Value {
    let mut doc = routes().into_openapi();
    doc.tags = Some(vec![
        api_docs::tag(
            "notifications",
            "In-app notifications: receipts, sales, expired reservations, declined payments and \
             ticket alerts (service `notifications`).",
        ),
        api_docs::tag(
            "alerts",
            "Ticket alerts: a saved search; every new match on sale is notified, in the order \
             the alerts were made (service `notifications`).",
        ),
    ]);
    api_docs::finish(
        doc,
        "BuyTicket notifications API",
        "What happened to one's orders, sales and alerts, in the app and by email.",
    )
}

#[utoipa::path(
    get,
    path = "/api/notifications/openapi.json",
    tag = "notifications",
    operation_id = "notifications_openapi",
    summary = "The OpenAPI document of the notifications service",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument))
)]
async fn openapi_document() -> Response {
    static DOCUMENT: OnceLock<Arc<String>> = OnceLock::new();
    api_docs::document_response(DOCUMENT.get_or_init(|| Arc::new(openapi().to_string())))
}

/// Query of the notifications list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Only notifications older than this one (the last id of the previous page).
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<String>,
}

fn parse_id(raw: &str) -> Option<String> {
    uuid::Uuid::parse_str(raw.trim())
        .ok()
        .map(|id| id.to_string())
}

#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "notifications",
    operation_id = "list_notifications",
    summary = "The caller's notifications, newest first",
    description = "A page of the caller's notifications and how many of all of them are unread.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(NotificationsQuery),
    responses(
        (status = 200, description = "A page of notifications, newest first, and the unread count.", body = NotificationList),
        (status = 400, description = "A parameter is not valid (`field` is its name).", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn list_notifications(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> ApiResult<Json<NotificationList>> {
    let (limit, before) = validate!(
        limit: page_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT),
        before: page_cursor(
            query.before.as_deref(),
            "before must be the id of a notification"
        )
        .map(|id| id.map(NotificationId::new)),
    )?;
    let now = Millis::now();
    let notifications =
        store::notifications_of(&state.db, &user.0.id, limit, before.as_ref(), now).await?;
    let unread = store::unread(&state.db, &user.0.id, now).await?;
    Ok(Json(NotificationList {
        notifications,
        unread,
    }))
}

/// The body of `POST /api/notifications/read`: which notifications were read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReadBody {
    /// The notifications read (at most 100 ids); absent or `null`: every notification.
    #[schema(value_type = Option<Vec<uuid::Uuid>>, max_items = 100)]
    ids: Option<JsonField>,
}

/// The answer of `POST /api/notifications/read`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unread {
    /// Unread notifications left.
    pub unread: i64,
}

fn parse_read_ids(raw: Option<&JsonField>) -> Result<Option<Vec<NotificationId>>, String> {
    let Some(raw) = raw.filter(|field| !field.is_null()) else {
        return Ok(None);
    };
    let ids: Vec<String> = serde_json::from_str(raw.raw())
        .map_err(|_| "ids must be a list of notification ids".to_owned())?;
    if ids.len() > MAX_READ_IDS {
        return Err(format!(
            "ids must name at most {MAX_READ_IDS} notifications"
        ));
    }
    ids.iter()
        .map(|id| parse_id(id).map(NotificationId::new))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .ok_or_else(|| "ids must be a list of notification ids".to_owned())
}

#[utoipa::path(
    post,
    path = "/api/notifications/read",
    tag = "notifications",
    operation_id = "read_notifications",
    summary = "Mark notifications read",
    description = "Marks the caller's notifications of `ids` read, or all of them without \
        `ids`. Ids of notifications that are not the caller's are ignored.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    request_body(content = ReadBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The unread notifications left.", body = Unread),
        (status = 400, description = "`ids` is not a list of at most 100 notification ids, or the body is not a JSON object.", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        JsonBodyRefused,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn read_notifications(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ReadBody>,
) -> ApiResult<Json<Unread>> {
    let (ids,) = validate!(ids: parse_read_ids(body.ids.as_ref()))?;
    let now = Millis::now();
    store::mark_read(&state.db, &user.0.id, ids.as_deref(), now).await?;
    let unread = store::unread(&state.db, &user.0.id, now).await?;
    Ok(Json(Unread { unread }))
}

/// The body of a new alert: `{q, maxPrice?}`. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewAlert {
    /// The search, as the listing's `q`: tickets whose title contains it, ignoring case
    /// (trimmed, 1 to 200 characters, no control characters).
    #[schema(value_type = String, required = true, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", examples("opera"))]
    q: Option<JsonField>,
    /// Only tickets at or under this price (the same rules as a price); absent or `null`: any
    /// price.
    #[schema(value_type = Option<PriceInput>)]
    max_price: Option<JsonField>,
}

fn parse_max_price(raw: Option<&JsonField>) -> Result<Option<Cents>, String> {
    let Some(raw) = raw.filter(|field| !field.is_null()) else {
        return Ok(None);
    };
    match raw.as_cents() {
        Ok(cents) => check_max_price(cents).map(Some),
        Err(MoneyError::TooManyDecimals) => {
            Err("maxPrice must have at most 2 decimal places".into())
        }
        Err(MoneyError::OutOfRange) => Err("maxPrice must be at most 1000000".into()),
        Err(MoneyError::NotANumber) => Err("maxPrice must be a number, e.g. 40 or 39.50".into()),
    }
}

#[utoipa::path(
    get,
    path = "/api/alerts",
    tag = "alerts",
    operation_id = "list_alerts",
    summary = "The caller's ticket alerts, newest first",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "The caller's alerts.", body = [resources::Alert]),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn list_alerts(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<resources::Alert>>> {
    let alerts = store::alerts_of(&state.db, &user.0.id).await?;
    Ok(Json(alerts.iter().map(Alert::to_json).collect()))
}

#[utoipa::path(
    post,
    path = "/api/alerts",
    tag = "alerts",
    operation_id = "create_alert",
    summary = "Set a ticket alert",
    description = "From now on, each ticket that goes on sale (listed, relisted, or back on sale \
        after a cancelled or expired order) whose title the search finds, at or under `maxPrice`, \
        is notified to the caller in the app and by email — subscribers in the order they set \
        their alerts. A user has at most `ALERTS_PER_USER` alerts (20 by default) and receives \
        at most `ALERT_EMAILS_PER_HOUR` alert emails an hour (10 by default; past it, in-app only).",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    request_body(content = NewAlert, content_type = "application/json"),
    responses(
        (status = 201, description = "The new alert.", body = resources::Alert,
            links(("DeleteAlert" = (operation_id = "delete_alert", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "Validation (`q`, `maxPrice`), `You can have at most 20 alerts; delete one first`, `You already have an alert for this search`, or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        JsonBodyRefused,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn create_alert(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewAlert>,
) -> ApiResult<(StatusCode, Json<resources::Alert>)> {
    let (search, max_price) = validate!(
        q: parse_query(body.q.as_ref().and_then(JsonField::as_str).as_deref()).map_err(|e| {
            if body.q.as_ref().is_some_and(|q| !q.is_null() && q.as_str().is_none()) {
                "q must be text".to_owned()
            } else {
                e
            }
        }),
        max_price as "maxPrice": parse_max_price(body.max_price.as_ref()),
    )?;
    let alert = Alert::new(user.0.id.clone(), search, max_price, Millis::now());
    let mut tx = state.db.begin().await?;
    store::lock_user(&mut tx, &user.0.id).await?;
    let limit = state.limits.alerts_per_user;
    if store::count_alerts(&mut tx, &user.0.id).await? >= limit {
        tx.rollback().await?;
        return Err(ApiError::bad_request(
            AlertRefusal::TooMany(limit).to_string(),
        ));
    }
    if !store::insert_alert(&mut tx, &alert).await? {
        tx.rollback().await?;
        return Err(ApiError::bad_request(AlertRefusal::Duplicate.to_string()));
    }
    tx.commit().await?;
    tracing::info!(alert.id = %alert.id, "ticket alert set");
    Ok((StatusCode::CREATED, Json(alert.to_json())))
}

#[utoipa::path(
    delete,
    path = "/api/alerts/{id}",
    tag = "alerts",
    operation_id = "delete_alert",
    summary = "Delete one of the caller's ticket alerts",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The alert's id.")),
    responses(
        (status = 204, description = "Deleted: no more notices from it."),
        (status = 400, description = "`The request is not valid`: the id is not valid UTF-8 once decoded.", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        (status = 404, description = "`Not Found`: the caller has no such alert.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn delete_alert(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if store::delete_alert(&state.db, &AlertId::new(id), &user.0.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> JsonField {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn max_price_is_money_more_than_zero() {
        assert_eq!(parse_max_price(None), Ok(None));
        assert_eq!(parse_max_price(Some(&field("null"))), Ok(None));
        assert_eq!(
            parse_max_price(Some(&field("40"))),
            Ok(Some(Cents::new(4000)))
        );
        assert_eq!(
            parse_max_price(Some(&field("\"39.50\""))),
            Ok(Some(Cents::new(3950)))
        );
        assert!(parse_max_price(Some(&field("0"))).is_err());
        assert!(parse_max_price(Some(&field("1.234"))).is_err());
        assert_eq!(
            parse_max_price(Some(&field("\"abc\""))),
            Err("maxPrice must be a number, e.g. 40 or 39.50".into())
        );
        assert!(parse_max_price(Some(&field("true"))).is_err());
    }

    #[test]
    fn read_ids_are_a_bounded_list_of_uuids() {
        let id = "01900000-0000-7000-8000-000000000000";
        assert_eq!(parse_read_ids(None), Ok(None));
        assert_eq!(parse_read_ids(Some(&field("null"))), Ok(None));
        assert_eq!(
            parse_read_ids(Some(&field(&format!("[\"{id}\"]")))),
            Ok(Some(vec![NotificationId::new(id)]))
        );
        assert!(parse_read_ids(Some(&field("[\"x\"]"))).is_err());
        assert!(parse_read_ids(Some(&field("\"all\""))).is_err());
        let many = format!("[{}]", vec![format!("\"{id}\""); 101].join(","));
        assert!(parse_read_ids(Some(&field(&many))).is_err());
    }
}
