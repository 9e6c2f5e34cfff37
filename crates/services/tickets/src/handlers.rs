//! The routes of the tickets service.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use bt_contract::json::string_field;
use bt_contract::{
    ApiError, ApiJson, ApiQuery, ApiResult, CurrentUser, JsonField, Millis, TicketId, validate,
};
use serde::Deserialize;

use crate::AppState;
use crate::domain::{Price, Refusal, Ticket, Title};
use crate::store;

/// Page size of the listing when none is asked for, and the largest allowed.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/tickets", get(list_tickets).post(create_ticket))
        .route("/api/tickets/mine", get(my_tickets))
        .route("/api/tickets/{id}", get(show_ticket).put(update_ticket))
        .with_state(state)
}

/// The body of create and update.
#[derive(Debug, Deserialize)]
pub struct TicketBody {
    title: Option<JsonField>,
    price: Option<JsonField>,
}

/// Query of the listing.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn list_tickets(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<(HeaderMap, Json<Vec<Ticket>>)> {
    let (limit, cursor, search) = validate!(
        limit: parse_limit(query.limit.as_deref()),
        cursor: parse_cursor(query.cursor.as_deref()),
        q: parse_search(query.q.as_deref()),
    )?;
    let mut tickets =
        store::list_on_sale(&state.db, search.as_deref(), cursor.as_deref(), limit + 1).await?;
    let mut headers = HeaderMap::new();
    if tickets.len() as i64 > limit {
        tickets.truncate(limit as usize);
        if let Some(last) = tickets.last() {
            let mut next = format!("/api/tickets?limit={limit}&cursor={}", last.id);
            if let Some(q) = &search {
                next.push_str("&q=");
                next.push_str(&urlencode(q));
            }
            if let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
                headers.insert(header::LINK, value);
            }
        }
    }
    Ok((headers, Json(tickets)))
}

fn parse_limit(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}"
            )),
        },
    }
}

fn parse_cursor(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    match raw {
        None => Ok(None),
        Some(raw) => uuid::Uuid::parse_str(raw)
            .map(|id| Some(id.to_string()))
            .map_err(|_| "cursor is not valid"),
    }
}

fn parse_search(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(q) if q.chars().count() > 200 => Err("q must be at most 200 characters"),
        Some(q) => Ok(Some(q.to_owned())),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Extension: the caller's own tickets in every state (on sale, reserved, sold), newest first.
#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn my_tickets(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<Ticket>>> {
    Ok(Json(store::list_of_seller(&state.db, &user.0.id).await?))
}

#[tracing::instrument(skip_all)]
async fn show_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Ticket>> {
    store::find(&state.db, &TicketId::new(id))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn create_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<TicketBody>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    let (title, price) = validate!(
        title: Title::parse(string_field(&body.title)),
        price: Price::parse(body.price.as_ref()),
    )?;
    let (ticket, created) = Ticket::list(TicketId::generate(), user.0.id, &title, price);
    let mut tx = state.db.begin().await?;
    store::insert(&mut tx, &ticket, Millis::now()).await?;
    state.outbox.stage(&mut tx, created).await?;
    state.outbox.commit(tx).await?;
    tracing::info!(ticket.id = %ticket.id, "ticket created");
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[tracing::instrument(skip_all, fields(user.id = %user.0.id))]
async fn update_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TicketBody>,
) -> ApiResult<Json<Ticket>> {
    let (title, price) = validate!(
        title: Title::parse(string_field(&body.title)),
        price: Price::parse(body.price.as_ref()),
    )?;
    let mut tx = state.db.begin().await?;
    let ticket = store::lock(&mut tx, &TicketId::new(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let read_version = ticket.version;
    let (ticket, updated) =
        ticket
            .edit(&user.0.id, &title, price)
            .map_err(|refusal| match refusal {
                Refusal::NotOwner => ApiError::NotAuthorized,
                other => ApiError::bad_request(other.to_string()),
            })?;
    if !store::save(&mut tx, &ticket, read_version, Millis::now()).await? {
        return Err(ApiError::internal("ticket changed while locked"));
    }
    state.outbox.stage(&mut tx, updated).await?;
    state.outbox.commit(tx).await?;
    Ok(Json(ticket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_in_range() {
        assert_eq!(parse_limit(None), Ok(50));
        assert_eq!(parse_limit(Some("200")), Ok(200));
        for bad in ["0", "201", "-1", "ten", "1.5", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_text_is_encoded_in_the_next_link() {
        assert_eq!(urlencode("rock & roll/ü"), "rock%20%26%20roll%2F%C3%BC");
    }
}
