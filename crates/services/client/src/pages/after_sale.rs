//! After the sale: "My tickets" (what the person lists, and what they bought), ticket files
//! (uploaded through the client, downloaded through it with the session cookie) and selling a
//! bought ticket again.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{
    AppState, Ctx, Posted, PostedMultipart, fetch_own_ticket, fetch_ticket, not_your_ticket, page,
    see_other, segment, ticket_view,
};
use crate::api::{Download, Ticket, TicketInput};
use crate::flash::Flash;
use crate::forms;
use crate::views::{MyTicketView, MyTicketsPage, TicketFilePage, owns};

/// The kinds of file the API serves; anything else is passed on as opaque bytes.
const FILE_TYPES: [&str; 3] = ["application/pdf", "image/png", "image/jpeg"];

/// The flash field of a ticket's "Sell again" price on "My tickets".
fn price_field(id: &str) -> String {
    format!("price:{id}")
}

/// The caller's tickets (`GET /api/tickets/mine`).
const MINE: &str = "/api/tickets/mine";

/// The tickets the caller sold without their file (`GET /api/tickets/undelivered`).
const UNDELIVERED: &str = "/api/tickets/undelivered";

/// A list of the caller's tickets from the API (`MINE`, `UNDELIVERED`), or the page to show
/// instead.
async fn fetch_tickets(state: &AppState, ctx: &Ctx, path: &str) -> Result<Vec<Ticket>, Response> {
    match state.api.get(&ctx.caller, path).await {
        Ok(reply) if reply.ok() => reply
            .parse()
            .map_err(|err| ctx.unreadable(&format!("GET {path} answered tickets"), &err)),
        Ok(_) => Err(see_other("/auth/signin?next=/tickets/mine")),
        Err(err) => Err(ctx.unavailable(&err)),
    }
}

/// A ticket whose file the signed-in person may upload, and whether it goes to a buyer who
/// paid already: their own ticket, or one they sold without its file.
async fn fetch_file_ticket(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
) -> Result<(Ticket, bool), Response> {
    let ticket = fetch_ticket(state, ctx, id).await?;
    if owns(ctx.user.as_ref(), &ticket) {
        return Ok((ticket, false));
    }
    let undelivered = fetch_tickets(state, ctx, UNDELIVERED).await?;
    if undelivered.iter().any(|t| t.id == ticket.id) {
        Ok((ticket, true))
    } else {
        Err(not_your_ticket(ctx))
    }
}

/// "My tickets", with a refusal the flash brought back (the price typed and the API's
/// message) shown next to that ticket, and first the tickets sold whose buyer waits for the
/// file.
fn my_tickets_page(ctx: &Ctx, tickets: &[Ticket], undelivered: &[Ticket]) -> MyTicketsPage {
    let views = tickets
        .iter()
        .map(|t| {
            let mut view = MyTicketView::of(t, &ctx.currency);
            if let Some(flash) = &ctx.flash {
                let field = price_field(&view.id);
                if let Some(message) = flash.fields.get(&field) {
                    view.sell_price = flash.typed(&field);
                    view.error = Some(message.clone());
                }
            }
            view
        })
        .collect();
    let undelivered = undelivered
        .iter()
        .map(|t| MyTicketView::of(t, &ctx.currency))
        .collect();
    MyTicketsPage::new(ctx.layout("My tickets"), views, undelivered)
}

pub(super) async fn my_tickets(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/tickets/mine") {
        return redirect;
    }
    let (tickets, undelivered) = match futures::try_join!(
        fetch_tickets(&state, &ctx, MINE),
        fetch_tickets(&state, &ctx, UNDELIVERED)
    ) {
        Ok(both) => both,
        Err(response) => return response,
    };
    page(
        StatusCode::OK,
        &my_tickets_page(&ctx, &tickets, &undelivered),
    )
}

/// Lists the ticket again at `price`, or takes it off or puts it on sale: `PUT` with the
/// ticket's title and `forSale`; then "My tickets" says `done`. A refusal (the price cap, an
/// event that started) is shown on "My tickets" next to the ticket, with the price as typed.
async fn change_sale(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    price: Option<String>,
    for_sale: bool,
    done: &str,
) -> Response {
    let ticket = match fetch_own_ticket(state, ctx, id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let typed = price.clone();
    let to = format!("/tickets/mine#ticket-{}", ticket.id);
    let price = match price
        .as_deref()
        .map(|p| forms::price_text(p, "Price", &ctx.currency))
    {
        None => ticket.price.to_string(),
        Some(Ok(price)) => price,
        Some(Err(message)) => return refused(ctx, &to, &ticket, typed, message),
    };
    let input = TicketInput {
        title: ticket.title.clone(),
        price,
        for_sale: Some(for_sale),
        ..TicketInput::default()
    };
    let path = format!("/api/tickets/{}", ticket.id);
    let reply = match state
        .api
        .put(&ctx.caller, &path, serde_json::json!(input))
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    match reply.status {
        200 => ctx.redirect_notice(&to, done),
        401 => not_your_ticket(ctx),
        404 => ctx.not_found(),
        _ => refused(ctx, &to, &ticket, typed, reply.message()),
    }
}

/// Back to "My tickets" at `to` with `message` next to `ticket` and the price as typed.
fn refused(
    ctx: &Ctx,
    to: &str,
    ticket: &Ticket,
    typed: Option<String>,
    message: String,
) -> Response {
    let field = price_field(ticket.id.as_str());
    let typed = typed.unwrap_or_else(|| ticket.price.to_string());
    ctx.redirect(
        to,
        &Flash::to(to)
            .field_error(&field, message)
            .value(&field, typed),
    )
}

/// "Sell again" of a bought ticket: at the price given, within the resale cap.
pub(super) async fn sell_again(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, form }: Posted,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/tickets/mine") {
        return redirect;
    }
    let price = form.get("price").map(|p| p.trim().to_owned());
    change_sale(
        &state,
        &ctx,
        &id,
        Some(price.unwrap_or_default()),
        true,
        "Your ticket is on sale again. Buyers can find it now.",
    )
    .await
}

/// "Take off sale" / "Put on sale" of a listing, at its price.
pub(super) async fn set_for_sale(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, form }: Posted,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/tickets/mine") {
        return redirect;
    }
    let for_sale = form.get("forSale").is_some_and(|v| v == "true");
    let done = if for_sale {
        "Your ticket is on sale: buyers can find it now."
    } else {
        "Your ticket is off sale: buyers no longer see it. Put it on sale again whenever you like."
    };
    change_sale(&state, &ctx, &id, None, for_sale, done).await
}

/// The upload form of a ticket's file (`for_buyer`: of a ticket sold without it), with the
/// errors a flash brought back.
fn file_page(ctx: &Ctx, ticket: &Ticket, for_buyer: bool) -> TicketFilePage {
    let view = ticket_view(ctx, ticket);
    let mut layout = ctx.layout(format!("File: {}", view.title));
    if layout.error.is_none() && ticket.order_id.is_some() {
        layout.error = Some("Cannot replace the file of a reserved ticket".to_owned());
    }
    TicketFilePage {
        layout,
        ticket: view,
        errors: ctx.flash_errors(),
        for_buyer,
    }
}

pub(super) async fn file_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/file")) {
        return redirect;
    }
    let (ticket, for_buyer) = match fetch_file_ticket(&state, &ctx, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    page(StatusCode::OK, &file_page(&ctx, &ticket, for_buyer))
}

pub(super) async fn upload_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PostedMultipart { ctx, parts }: PostedMultipart,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/file")) {
        return redirect;
    }
    let (ticket, for_buyer) = match fetch_file_ticket(&state, &ctx, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let checked = match parts.file("file") {
        None => Err("Choose a file to upload"),
        Some(file) => forms::check_file(file).map(|()| file),
    };
    let file = match checked {
        Ok(file) => file,
        Err(message) => {
            let to = format!("/tickets/{}/file", ticket.id);
            return ctx.redirect(&to, &Flash::to(&to).field_error("file", message));
        }
    };
    match put_file(&state, &ctx, &ticket, file.bytes.clone(), "").await {
        Ok(()) if for_buyer => ctx.redirect_notice(
            "/tickets/mine",
            "The ticket file is sent: your buyer can download it now.",
        ),
        Ok(()) => ctx.redirect_notice(
            &format!("/tickets/{}", ticket.id),
            "The ticket file is uploaded. Your buyer can download it once they have paid.",
        ),
        Err(response) => response,
    }
}

/// Uploads `bytes` as the file of `ticket` (`PUT /api/tickets/:id/file`). On a refusal: the
/// redirect to the upload form with the API's message next to the file field and `banner`
/// (when not empty) above it.
pub(super) async fn put_file(
    state: &AppState,
    ctx: &Ctx,
    ticket: &Ticket,
    bytes: Vec<u8>,
    banner: &str,
) -> Result<(), Response> {
    let path = format!("/api/tickets/{}/file", ticket.id);
    let message = match state.api.put_bytes(&ctx.caller, &path, bytes).await {
        Ok(reply) if reply.ok() => return Ok(()),
        Ok(reply) => reply.message(),
        Err(err) => {
            tracing::error!(%err, "ticket file upload failed");
            "The file could not be saved right now. Please try again in a moment.".to_owned()
        }
    };
    let to = format!("/tickets/{}/file", ticket.id);
    let mut flash = Flash::to(&to).field_error("file", message);
    flash.error = (!banner.is_empty()).then(|| banner.to_owned());
    Err(ctx.redirect(&to, &flash))
}

/// The ticket's file, for its owner: the API's answer passed on with its type and file name,
/// never kept by a cache. Works with the browser's session cookie, like every page.
pub(super) async fn download(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/download")) {
        return redirect;
    }
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let path = format!("/api/tickets/{id}/file");
    match state.api.get_file(&ctx.caller, &path).await {
        Ok(Download::File {
            content_type,
            content_disposition,
            bytes,
        }) => file_response(id, content_type, content_disposition, bytes),
        Ok(Download::Refused(reply)) if reply.status == 401 => {
            see_other(&format!("/auth/signin?next=/tickets/{id}/download"))
        }
        Ok(Download::Refused(_)) => no_file(&state, &ctx, id).await,
        Err(err) => ctx.unavailable(&err),
    }
}

fn file_response(
    id: &str,
    content_type: Option<String>,
    content_disposition: Option<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let content_type = content_type
        .filter(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            FILE_TYPES
                .iter()
                .any(|known| essence.eq_ignore_ascii_case(known))
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let disposition = content_disposition
        .filter(|d| {
            d.trim_start()
                .to_ascii_lowercase()
                .starts_with("attachment")
        })
        .and_then(|d| HeaderValue::from_str(&d).ok())
        .unwrap_or_else(|| {
            HeaderValue::from_str(&format!("attachment; filename=\"ticket-{id}\""))
                .unwrap_or(HeaderValue::from_static("attachment"))
        });
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// Why there is no file to download (the API answers 404 alike for every reason).
async fn no_file(state: &AppState, ctx: &Ctx, id: &str) -> Response {
    let ticket = match fetch_ticket(state, ctx, id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let message = if !owns(ctx.user.as_ref(), &ticket) {
        "Only the ticket's current owner can download its file."
    } else if !ticket.has_file {
        "The seller has not uploaded this ticket's file yet."
    } else {
        "The file could not be found. Please try again in a moment."
    };
    ctx.error_page(StatusCode::NOT_FOUND, "No file to download", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_an_attachment_of_a_known_type_or_opaque_bytes() {
        let response = file_response(
            "t1",
            Some("text/html".into()),
            Some("inline".into()),
            axum::body::Bytes::from_static(b"<script>"),
        );
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert_eq!(
            response.headers()[header::CONTENT_DISPOSITION],
            "attachment; filename=\"ticket-t1\""
        );
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, no-store"
        );
        let pdf = file_response(
            "t1",
            Some("application/pdf".into()),
            Some("attachment; filename=\"ticket-t1.pdf\"".into()),
            axum::body::Bytes::from_static(b"%PDF-"),
        );
        assert_eq!(pdf.headers()[header::CONTENT_TYPE], "application/pdf");
        assert_eq!(
            pdf.headers()[header::CONTENT_DISPOSITION],
            "attachment; filename=\"ticket-t1.pdf\""
        );
    }
}
