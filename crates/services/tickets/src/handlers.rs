//! The routes of the tickets service, each registered together with its OpenAPI description
//! ([`routes`]); the service's document is [`openapi`], served at `/api/tickets/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bt_contract::json::string_field;
use bt_contract::openapi::{JsonBodyRefused, NotAuthorized, PriceInput};
use bt_contract::search::{Search, SearchError};
use bt_contract::{
    ApiError, ApiJson, ApiQuery, ApiResult, CurrentUser, JsonField, Millis, TicketId, page_limit,
    validate,
};
use bt_platform::api_docs::{self, OpenApiDocument};
use bt_platform::files::{FileKey, FileKind, MAX_FILE_BYTES};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::domain::{Edit, Listing, Patch, Price, Refusal, Ticket, Title, Venue, parse_starts_at};
use crate::snapshots::Snapshot;
use crate::store;

/// Page size of the listing when none is asked for, and the largest allowed.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the service with its description. `/api/tickets/mine` and
/// `/api/tickets/openapi.json` are static paths, so they win over `/api/tickets/{id}` (a
/// ticket cannot be named `mine`, `undelivered` or `openapi.json`: ids are UUIDs).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(my_tickets))
        .routes(routes!(undelivered_tickets))
        .routes(routes!(openapi_document))
        .routes(routes!(show_ticket, update_ticket))
        .routes(routes!(download_file, upload_file))
}

/// The OpenAPI document of the tickets service.
pub fn openapi() -> serde_json::Value {
    let mut doc = routes().into_openapi();
    doc.tags = Some(vec![api_docs::tag(
        "tickets",
        "Tickets for sale: list, search, show, sell and edit (service `tickets`).",
    )]);
    api_docs::finish(
        doc,
        "BuyTicket tickets API",
        "Tickets on sale and their sellers' changes; a ticket reserved by an order cannot be edited.",
    )
}

#[utoipa::path(
    get,
    path = "/api/tickets/openapi.json",
    tag = "tickets",
    operation_id = "tickets_openapi",
    summary = "The OpenAPI document of the tickets service",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument))
)]
async fn openapi_document() -> Response {
    static DOCUMENT: OnceLock<Arc<String>> = OnceLock::new();
    api_docs::document_response(DOCUMENT.get_or_init(|| Arc::new(openapi().to_string())))
}

/// The body of create and update: the seed's `{title, price}`, and the second wave's optional
/// `venue`, `startsAt`, `faceValue` and `forSale`. On update an optional field that is absent is
/// left as it is, and `null` clears it. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    /// 1 to 200 characters once white space around it is trimmed, and no control characters
    /// nor text-direction controls (U+202A–U+202E, U+2066–U+2069; the pattern says so: white
    /// space is Unicode's `White_Space`, which trimming removes).
    #[schema(value_type = String, required = true, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069](?:[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]{0,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", examples("Concert, row 5"))]
    title: Option<JsonField>,
    #[schema(value_type = PriceInput, required = true)]
    price: Option<JsonField>,
    /// Where the event takes place: up to 200 characters once trimmed, no control characters
    /// nor text-direction controls; blank or `null` is none.
    #[schema(value_type = Option<String>, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069](?:[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]{0,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069])?)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", examples("Paradiso, Amsterdam"))]
    #[serde(default, deserialize_with = "bt_contract::json::present")]
    venue: Option<JsonField>,
    /// When the event starts: an RFC 3339 date and time with its offset, in the future. Once it
    /// has passed the ticket leaves the listing and cannot be ordered.
    #[schema(value_type = Option<String>, format = DateTime, examples("2027-06-12T19:30:00Z"))]
    #[serde(default, deserialize_with = "bt_contract::json::present")]
    starts_at: Option<JsonField>,
    /// The price printed on the ticket (the same rules as a price). With it, `price` may be at
    /// most `RESALE_PRICE_CAP_PERCENT`% of it (120% by default). Fixed once the ticket was sold.
    #[schema(value_type = Option<PriceInput>)]
    #[serde(default, deserialize_with = "bt_contract::json::present")]
    face_value: Option<JsonField>,
    /// Whether the owner offers the ticket for sale (default `true` when listing). A buyer lists
    /// a ticket they bought again with `true`; `false` takes a free ticket off sale.
    #[schema(value_type = bool)]
    #[serde(default, deserialize_with = "bt_contract::json::present")]
    for_sale: Option<JsonField>,
}

impl TicketBody {
    fn venue(&self) -> Result<Option<Venue>, String> {
        match &self.venue {
            None => Ok(None),
            Some(field) if field.is_null() => Ok(None),
            Some(field) => match field.as_str() {
                Some(text) => Venue::parse(Some(text)),
                None => Err("Venue must be text".into()),
            },
        }
    }

    fn starts_at(&self, now: Millis) -> Result<Option<Millis>, &'static str> {
        match &self.starts_at {
            None => Ok(None),
            Some(field) if field.is_null() => Ok(None),
            Some(field) => match field.as_str() {
                Some(text) => parse_starts_at(Some(&text), now),
                None => Err(
                    "Event start must be a date and time with a time zone, e.g. 2026-12-31T20:00:00Z",
                ),
            },
        }
    }

    fn for_sale(&self) -> Result<Option<bool>, &'static str> {
        match &self.for_sale {
            None => Ok(None),
            Some(field) => field
                .as_bool()
                .map(Some)
                .ok_or("forSale must be true or false"),
        }
    }

    /// A new listing, every field checked at once.
    fn listing(&self, now: Millis) -> ApiResult<(Listing, bool)> {
        let (title, price, venue, starts_at, face_value, for_sale) = validate!(
            title: Title::parse(string_field(&self.title)),
            price: Price::parse(self.price.as_ref()),
            venue: self.venue(),
            starts_at as "startsAt": self.starts_at(now),
            face_value as "faceValue": Price::parse_face_value(self.face_value.as_ref()),
            for_sale as "forSale": self.for_sale(),
        )?;
        let listing = Listing {
            title,
            price,
            venue,
            starts_at,
            face_value,
        };
        Ok((listing, for_sale.unwrap_or(true)))
    }

    /// An edit: absent optional fields are kept.
    fn edit(&self, now: Millis) -> ApiResult<Edit> {
        let (listing, _) = self.listing(now)?;
        Ok(Edit {
            title: listing.title,
            price: listing.price,
            venue: Patch::from_parsed(self.venue.is_some(), listing.venue),
            starts_at: Patch::from_parsed(self.starts_at.is_some(), listing.starts_at),
            face_value: Patch::from_parsed(self.face_value.is_some(), listing.face_value),
            for_sale: self.for_sale().unwrap_or(None),
        })
    }
}

/// A refused change of a ticket as the API answers it.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotOwner => ApiError::NotAuthorized,
        Refusal::OverCap(message) => ApiError::field("price", message),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Query of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Extension: only tickets whose title contains this text (case-insensitive; trimmed, at
    /// most 200 characters, no control characters; blank is no search). Ticket alerts match
    /// with the same rule. The pattern says so: white space around it is trimmed (Unicode's
    /// `White_Space`, control characters among them), and the trimmed text has no control
    /// character and at most 200 characters (the venue's pattern: utoipa takes only a literal).
    #[param(value_type = Option<String>, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    q: Option<String>,
    /// Extension: page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// Extension: the id of the last ticket of the previous page (from the `Link` header).
    #[param(value_type = Option<String>, format = Uuid)]
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/tickets",
    tag = "tickets",
    operation_id = "list_tickets",
    summary = "Tickets on sale, newest first",
    description = "Only tickets that are not reserved or sold. When there are more, the `Link` \
        header names the next page.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tickets on sale.", body = [Ticket],
            headers(
                ("Link" = String, description = "`</api/tickets?limit=..&cursor=..>; rel=\"next\"` when there are more."),
                ("ETag" = String, description = "The default listing (no query): names this body; send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "The default listing: `public, max-age=0, s-maxage=1` (a shared cache may answer for one second)."),
            ),
            links(("OrderTheFirst" = (operation_id = "create_order", request_body = json!({"ticketId": "$response.body#/0/id"}), description = "Order the first ticket of the page.")))),
        (status = 304, description = "Not Modified: the default listing is still the one `If-None-Match` names (no body)."),
        (status = 400, description = "A parameter is not valid (one entry per parameter, `field` is its name), or the query string does not parse.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn list_tickets(
    State(state): State<AppState>,
    request: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let (limit, cursor, search) = validate!(
        limit: page_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT),
        cursor: parse_cursor(query.cursor.as_deref()),
        q: parse_search(query.q.as_deref()),
    )?;
    if query.q.is_some() || query.limit.is_some() || query.cursor.is_some() {
        let now = Millis::now();
        let (tickets, link) =
            page(&state, search.as_deref(), cursor.as_deref(), limit, now).await?;
        let mut headers = HeaderMap::new();
        if let Some(link) = link {
            headers.insert(header::LINK, link);
        }
        return Ok((headers, Json(tickets)).into_response());
    }
    // The default listing, the one everyone reads: from its snapshot while it is current.
    let snapshots = &state.snapshots;
    if let Some(snapshot) = snapshots.listing(Millis::now()) {
        return Ok(snapshot.respond(&request));
    }
    let _rebuilding = snapshots.rebuilding().await;
    let now = Millis::now();
    if let Some(snapshot) = snapshots.listing(now) {
        return Ok(snapshot.respond(&request));
    }
    let changes = snapshots.changes();
    let (tickets, link) = page(&state, None, None, limit, now).await?;
    let until = tickets.iter().filter_map(|t| t.starts_at).min();
    let body = serde_json::to_vec(&tickets).map_err(ApiError::internal)?;
    let snapshot = Arc::new(Snapshot::new(changes, body, link, until));
    snapshots.set_listing(snapshot.clone());
    Ok(snapshot.respond(&request))
}

/// A page of the listing at `now` and the `Link` to the next one, if there are more.
async fn page(
    state: &AppState,
    search: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
    now: Millis,
) -> ApiResult<(Vec<Ticket>, Option<HeaderValue>)> {
    let mut tickets = store::list_on_sale(&state.db, search, cursor, limit + 1, now).await?;
    let mut link = None;
    if tickets.len() as i64 > limit {
        tickets.truncate(limit as usize);
        if let Some(last) = tickets.last() {
            let next = next_page(limit, last.id.as_ref(), search);
            link = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")).ok();
        }
    }
    Ok((tickets, link))
}

fn parse_cursor(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    match raw {
        None => Ok(None),
        Some(raw) => uuid::Uuid::parse_str(raw)
            .map(|id| Some(id.to_string()))
            .map_err(|_| "cursor is not valid"),
    }
}

/// The listing's search (the one ticket alerts match with, [`Search`]); blank is none.
fn parse_search(raw: Option<&str>) -> Result<Option<String>, String> {
    match raw {
        None => Ok(None),
        Some(raw) => match Search::parse(raw) {
            Ok(search) => Ok(Some(search.as_str().to_owned())),
            Err(SearchError::Blank) => Ok(None),
            Err(err) => Err(format!("q {err}")),
        },
    }
}

/// The listing's next page after the ticket `cursor`: the same `limit` and search.
fn next_page(limit: i64, cursor: &str, search: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("limit", &limit.to_string())
        .append_pair("cursor", cursor);
    if let Some(q) = search {
        query.append_pair("q", q);
    }
    format!("/api/tickets?{}", query.finish())
}

/// Extension: the caller's own tickets in every state (on sale, reserved, sold), newest first.
#[utoipa::path(
    get,
    path = "/api/tickets/mine",
    tag = "tickets",
    operation_id = "my_tickets",
    summary = "The caller's own tickets",
    description = "Extension: every ticket the caller listed, on sale, reserved or sold, newest first.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "The caller's tickets.", body = [Ticket]),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn my_tickets(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<Ticket>>> {
    Ok(Json(store::list_of_seller(&state.db, &user.0.id).await?))
}

/// Extension: the tickets the caller sold without their file, which their buyers wait for.
#[utoipa::path(
    get,
    path = "/api/tickets/undelivered",
    tag = "tickets",
    operation_id = "undelivered_tickets",
    summary = "Tickets the caller sold and has not sent the file of",
    description = "Extension: the tickets whose last sale was the caller's and that have no file yet, oldest sale first. \
        Their buyers get the ticket only once the file is uploaded, which the caller may still do (`PUT /api/tickets/{id}/file`) until it is.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "The tickets (their current owner is the buyer).", body = [Ticket]),
        NotAuthorized,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn undelivered_tickets(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<Ticket>>> {
    Ok(Json(store::list_undelivered(&state.db, &user.0.id).await?))
}

#[utoipa::path(
    get,
    path = "/api/tickets/{id}",
    tag = "tickets",
    operation_id = "show_ticket",
    summary = "One ticket",
    params(("id" = String, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The ticket, in any state.", body = Ticket,
            headers(
                ("ETag" = String, description = "Names this body; send it back in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, max-age=0, s-maxage=1` (a shared cache may answer for one second)."),
            )),
        (status = 304, description = "Not Modified: the ticket is still the one `If-None-Match` names (no body)."),
        (status = 400, description = "`The request is not valid`: the id is not valid UTF-8 once decoded.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such ticket.", body = bt_contract::error::ErrorBody),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn show_ticket(
    State(state): State<AppState>,
    request: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = TicketId::new(id);
    let snapshots = &state.snapshots;
    if let Some(snapshot) = snapshots.ticket(&id) {
        return Ok(snapshot.respond(&request));
    }
    let changes = snapshots.changes();
    let ticket = store::find(&state.db, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let body = serde_json::to_vec(&ticket).map_err(ApiError::internal)?;
    let snapshot = Arc::new(Snapshot::new(changes, body, None, None));
    snapshots.set_ticket(id, snapshot.clone());
    Ok(snapshot.respond(&request))
}

#[utoipa::path(
    post,
    path = "/api/tickets",
    tag = "tickets",
    operation_id = "create_ticket",
    summary = "Sell a ticket",
    description = "Lists a ticket of the caller for sale (version 0, `orderId` null).",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    request_body(content = TicketBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The new ticket.", body = Ticket,
            links(
                ("GetTicket" = (operation_id = "show_ticket", parameters(("id" = "$response.body#/id")))),
                ("UpdateTicket" = (operation_id = "update_ticket", parameters(("id" = "$response.body#/id")))),
                ("UploadTicketFile" = (operation_id = "upload_ticket_file", parameters(("id" = "$response.body#/id")))),
                ("DownloadTicketFile" = (operation_id = "download_ticket_file", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, description = "Validation: one entry per failed field (`title`, `price`), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        NotAuthorized,
        JsonBodyRefused,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn create_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<TicketBody>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    let now = Millis::now();
    let (listing, for_sale) = body.listing(now)?;
    let cap = state.settings.resale_cap;
    let (mut ticket, mut created) =
        Ticket::list(TicketId::generate(), user.0.id, &listing, cap).map_err(refused)?;
    if !for_sale {
        // Listed off sale: the owner offers it later.
        ticket.for_sale = false;
        created.0.for_sale = false;
    }
    let mut tx = state.db.begin().await?;
    store::insert(&mut tx, &ticket, Millis::now()).await?;
    state.outbox.stage(&mut tx, created).await?;
    state.outbox.commit(tx).await?;
    tracing::info!(ticket.id = %ticket.id, "ticket created");
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[utoipa::path(
    put,
    path = "/api/tickets/{id}",
    tag = "tickets",
    operation_id = "update_ticket",
    summary = "Edit one's ticket",
    description = "Changes the title and price of a ticket of the caller; its version goes up by one.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The ticket's id.")),
    request_body(content = TicketBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed ticket.", body = Ticket),
        (status = 400, description = "`Cannot edit a reserved ticket` (reserved or sold), validation (one entry per failed field), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        (status = 401, description = "`Not authorized`: no valid session, or the ticket is someone else's.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such ticket.", body = bt_contract::error::ErrorBody),
        JsonBodyRefused,
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn update_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TicketBody>,
) -> ApiResult<Json<Ticket>> {
    let now = Millis::now();
    let edit = body.edit(now)?;
    let mut tx = state.db.begin().await?;
    let ticket = store::lock(&mut tx, &TicketId::new(id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let read_version = ticket.version;
    let (ticket, updated) = ticket
        .edit(&user.0.id, &edit, state.settings.resale_cap, now)
        .map_err(refused)?;
    if !store::save(&mut tx, &ticket, read_version, now).await? {
        return Err(ApiError::internal("ticket changed while locked"));
    }
    state.outbox.stage(&mut tx, updated).await?;
    state.outbox.commit(tx).await?;
    Ok(Json(ticket))
}

/// The bytes of a ticket file as the API documents them.
#[derive(Debug)]
pub struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/octet-stream")
            .description(Some("The file's bytes."))
            .into()
    }
}

impl utoipa::ToSchema for FileBytes {}

/// Why a file upload is refused, for the owner.
fn file_refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotOwner => ApiError::NotAuthorized,
        Refusal::Reserved => ApiError::bad_request("Cannot replace the file of a reserved ticket"),
        other => ApiError::bad_request(other.to_string()),
    }
}

#[utoipa::path(
    put,
    path = "/api/tickets/{id}/file",
    tag = "tickets",
    operation_id = "upload_ticket_file",
    summary = "Upload the ticket's file",
    description = "The owner uploads (or replaces) the file a buyer gets once they have paid: a \
        PDF, PNG or JPEG of at most 5 MB, its kind decided by its first bytes (the \
        `Content-Type` header is not believed). Only while no order holds the ticket. A ticket \
        sold without its file: its seller uploads it for the buyer (`GET /api/tickets/undelivered`), \
        once; the file is then the buyer's.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The ticket's id.")),
    request_body(content = FileBytes, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored; the ticket shows `hasFile: true`."),
        (status = 400, description = "`The file is empty`, `The file must be a PDF, PNG or JPEG`, `Cannot replace the file of a reserved ticket`.", body = bt_contract::error::ErrorBody),
        (status = 401, description = "`Not authorized`: no valid session, or the ticket is someone else's.", body = bt_contract::error::ErrorBody),
        (status = 404, description = "`Not Found`: no such ticket.", body = bt_contract::error::ErrorBody),
        (status = 413, description = "`The file must be at most 5 MB`.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn upload_file(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    let id = TicketId::new(id);
    // Refuse early, before reading 5 MB, what the owner check refuses anyway.
    let ticket = store::find(&state.db, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    ticket.may_replace_file(&user.0.id).map_err(file_refused)?;
    let bytes = axum::body::to_bytes(body, MAX_FILE_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge("The file must be at most 5 MB".into()))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("The file is empty"));
    }
    let kind = FileKind::sniff(&bytes)
        .ok_or_else(|| ApiError::bad_request("The file must be a PDF, PNG or JPEG"))?;
    let key = FileKey::for_ticket(&id, &bytes).map_err(ApiError::internal)?;
    let size = bytes.len() as i64;
    // The object first, then the row that points at it: a crash leaves at worst an object
    // nobody points at, never a row pointing at nothing.
    state.settings.files.put(&key, bytes).await?;
    let mut tx = state.db.begin().await?;
    let ticket = store::lock(&mut tx, &id).await?.ok_or(ApiError::NotFound)?;
    if let Err(refusal) = ticket.may_replace_file(&user.0.id) {
        // Reserved (or sold) meanwhile: the new object is not kept, unless it is the current one.
        drop(tx);
        if store::file_of(&state.db, &id).await?.map(|(k, _)| k) != Some(key.as_str().to_owned()) {
            state.settings.files.delete(&key).await?;
        }
        return Err(file_refused(refusal));
    }
    let replaced = store::set_file(
        &mut tx,
        &id,
        key.as_str(),
        kind.as_str(),
        size,
        Millis::now(),
    )
    .await?;
    // Through the outbox, which counts the commit: the snapshots show `hasFile` at once.
    state.outbox.commit(tx).await?;
    if let Some(old) = replaced {
        match FileKey::parse(old) {
            Ok(old) => {
                if let Err(err) = state.settings.files.delete(&old).await {
                    // Only an orphan object is left: the ticket points at the new one.
                    tracing::warn!(error = %err, ticket.id = %id, "the replaced file was not deleted");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, ticket.id = %id, "a stored file key is not valid")
            }
        }
    }
    tracing::info!(ticket.id = %id, kind = kind.as_str(), size, "ticket file stored");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/tickets/{id}/file",
    tag = "tickets",
    operation_id = "download_ticket_file",
    summary = "Download the ticket's file",
    description = "For the ticket's current owner only: the seller while they hold it, the buyer \
        once their order is paid. Everyone else gets 404, the seller too once it is sold.",
    security(("sessionCookie" = []), ("bearerJwt" = [])),
    params(("id" = String, Path, description = "The ticket's id.")),
    responses(
        (status = 200, description = "The file, as `application/pdf`, `image/png` or `image/jpeg`.",
            content(
                (FileBytes = "application/pdf"),
                (FileBytes = "image/png"),
                (FileBytes = "image/jpeg"),
            ),
            headers(("Content-Disposition" = String, description = "`attachment` with a file name."))),
        NotAuthorized,
        (status = 404, description = "`Not Found`: no such ticket, no file yet, or not the caller's.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user.0.id))]
async fn download_file(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = TicketId::new(id);
    // A replacement may delete the object between reading the row and reading the object:
    // then the row is read again, once.
    for _ in 0..2 {
        let ticket = store::find(&state.db, &id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if !ticket.file_for(&user.0.id) {
            return Err(ApiError::NotFound);
        }
        let Some((key, kind)) = store::file_of(&state.db, &id).await? else {
            return Err(ApiError::NotFound);
        };
        let key = FileKey::parse(key).map_err(ApiError::internal)?;
        let kind: FileKind = kind.parse().map_err(ApiError::internal)?;
        if let Some(bytes) = state.settings.files.get(&key).await? {
            let disposition = format!("attachment; filename=\"ticket-{id}.{}\"", kind.extension());
            return Ok((
                [
                    (header::CONTENT_TYPE, kind.content_type().to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::CACHE_CONTROL, "private, no-store".to_owned()),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                ],
                bytes,
            )
                .into_response());
        }
    }
    Err(ApiError::internal(format!(
        "the file of ticket {id} is missing from the store"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_pages_by_50_and_at_most_200_as_the_contract_says() {
        assert_eq!(page_limit(None, DEFAULT_LIMIT, MAX_LIMIT), Ok(50));
        assert_eq!(page_limit(Some("200"), DEFAULT_LIMIT, MAX_LIMIT), Ok(200));
        assert!(page_limit(Some("201"), DEFAULT_LIMIT, MAX_LIMIT).is_err());
    }

    #[test]
    fn search_text_is_encoded_in_the_next_link() {
        let next = next_page(20, "abc", Some("rock & roll/ü=+"));
        assert_eq!(
            next,
            "/api/tickets?limit=20&cursor=abc&q=rock+%26+roll%2F%C3%BC%3D%2B"
        );
        let (_, query) = next.split_once('?').unwrap();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("limit".into(), "20".into()),
                ("cursor".into(), "abc".into()),
                ("q".into(), "rock & roll/ü=+".into())
            ]
        );
        assert_eq!(next_page(5, "abc", None), "/api/tickets?limit=5&cursor=abc");
    }
}
