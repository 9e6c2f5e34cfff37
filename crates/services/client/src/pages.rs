//! The pages of the web client. Each handler: read the request, call the API, render a page
//! or redirect (POST-redirect-GET). API validation errors are shown next to their fields,
//! other errors in a banner; no page ever shows raw JSON or a stack trace.
//!
//! After the sale ("My tickets", ticket files, selling again) is in [`after_sale`], the
//! seller's payouts in [`payouts`], the bell in the header and the notifications page in
//! [`notifications`], ticket alerts (and "Alert me" on a search without results) in
//! [`alerts`].

mod after_sale;
mod alerts;
mod notifications;
mod payouts;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router, middleware};
use axum_extra::extract::CookieJar;
use bt_contract::resources::Order;
use serde_json::json;

use crate::Settings;
use crate::api::{Api, Caller, Reply, Ticket, Unavailable};
use crate::csrf::{self, CsrfToken};
use crate::forms::{self, TICKET_FIELDS, TicketForm};
use crate::headers;
use crate::multipart::{self, MultipartForm};
use crate::views::{
    AuthPage, ErrorPage, FieldErrors, FileLink, HomePage, Layout, OrderPage, OrderView, OrdersPage,
    TEST_CARDS, TicketCard, TicketFormPage, TicketPage, TicketView, UserView, search_path,
};

#[derive(Debug, Clone)]
struct AppState {
    api: Api,
    settings: Arc<Settings>,
}

pub fn router(settings: Settings, api: Api) -> Router {
    let secure = settings.cookie_secure;
    let state = AppState {
        api,
        settings: Arc::new(settings),
    };
    Router::new()
        .route("/", get(home))
        .route("/auth/signup", get(signup_form).post(signup))
        .route("/auth/signin", get(signin_form).post(signin))
        .route("/auth/signout", post(signout))
        .route("/tickets/new", get(new_ticket_form).post(create_ticket))
        .route("/tickets/mine", get(after_sale::my_tickets))
        .route("/tickets/{id}", get(ticket_page))
        .route(
            "/tickets/{id}/edit",
            get(edit_ticket_form).post(update_ticket),
        )
        .route(
            "/tickets/{id}/file",
            get(after_sale::file_form).post(after_sale::upload_file),
        )
        .route(
            "/tickets/{id}/download",
            get(after_sale::download).layer(Extension(NoBell)),
        )
        .route("/tickets/{id}/sell", post(after_sale::sell_again))
        .route("/tickets/{id}/sale", post(after_sale::set_for_sale))
        .route("/tickets/{id}/purchase", post(purchase))
        .route("/orders", get(my_orders))
        .route("/orders/{id}", get(order_page))
        .route("/orders/{id}/pay", post(pay))
        .route("/orders/{id}/cancel", post(cancel))
        // "My listings" became part of "My tickets"; the old address shows it too.
        .route("/listings", get(after_sale::my_tickets))
        .route("/payouts", get(payouts::payouts_page))
        .route("/payouts/account", post(payouts::set_up_payouts))
        // The notifications page's own list tells the bell's count.
        .route(
            "/notifications",
            get(notifications::notifications_page).layer(Extension(NoBell)),
        )
        .route("/notifications/read", post(notifications::mark_read))
        .route("/alerts", get(alerts::alerts).post(alerts::create_alert))
        .route("/alerts/{id}/delete", post(alerts::delete_alert))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/{*path}", get(not_found))
        // Inside the CSRF layer: it sets its cookie only on responses that no cache keeps, and
        // needs the final Cache-Control to know.
        .layer(middleware::from_fn(headers::secure))
        .layer(middleware::from_fn(move |req: Request, next| {
            csrf::ensure_token(secure, req, next)
        }))
        .with_state(state)
}

/// On a route: its `GET` does not ask for the bell's count when [`Ctx`] is read (it renders
/// no header, or reads the count itself).
#[derive(Debug, Clone, Copy)]
struct NoBell;

/// Everything a page needs to know about the request.
struct Ctx {
    caller: Caller,
    user: Option<UserView>,
    /// The bell's count (see [`notifications`]).
    unread: Option<i64>,
    csrf: String,
    headers: HeaderMap,
    /// The TCP peer is a trusted proxy: its `X-Forwarded-Host`/`-Proto` are believed.
    from_trusted_proxy: bool,
    currency: String,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let session = jar
            .get(bt_contract::SESSION_COOKIE)
            .map(|c| c.value().to_owned());
        let user = session
            .as_deref()
            .and_then(|token| state.settings.sessions.verify(token))
            .map(|claims| UserView {
                id: claims.id.into_string(),
                email: claims.email,
            });
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let from_trusted_proxy = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| state.settings.trusted_proxies.contains(peer.ip()));
        let caller = Caller {
            session: if user.is_some() { session } else { None },
            address: Some(state.settings.trusted_proxies.client_addr(parts)),
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        // One call per page, for the header's bell (see [`notifications`]).
        let wants_bell = user.is_some()
            && parts.method == Method::GET
            && parts.extensions.get::<NoBell>().is_none()
            && !parts.uri.path().starts_with("/api/");
        let unread = if wants_bell {
            notifications::unread_count(&state.api, &caller).await
        } else {
            None
        };
        Ok(Self {
            caller,
            user,
            unread,
            csrf,
            headers: parts.headers.clone(),
            from_trusted_proxy,
            currency: state.settings.currency.clone(),
        })
    }
}

impl Ctx {
    fn layout(&self, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            user: self.user.clone(),
            csrf: self.csrf.clone(),
            notice: None,
            error: None,
            unread: self.unread,
        }
    }

    fn error_page(&self, status: StatusCode, heading: &str, message: &str) -> Response {
        let page = ErrorPage {
            layout: self.layout(heading),
            status: status.as_u16(),
            heading: heading.to_owned(),
            message: message.to_owned(),
        };
        (status, render(&page)).into_response()
    }

    fn unavailable(&self, err: &Unavailable) -> Response {
        tracing::error!(%err, "API call failed");
        self.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Something went wrong",
            "BuyTicket could not complete this request. Please try again in a moment.",
        )
    }

    /// An API reply that does not have the contract's shape: an API failure, never a default.
    fn unreadable(&self, what: &str, err: &serde_json::Error) -> Response {
        self.unavailable(&Unavailable::new(format!(
            "{what} that does not parse: {err}"
        )))
    }

    fn not_found(&self) -> Response {
        self.error_page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        )
    }

    /// The refusal of a form post without a valid CSRF token, if it has none.
    fn form_refusal(&self, form: &HashMap<String, String>) -> Option<Response> {
        if csrf::is_valid(
            &self.headers,
            form.get(csrf::FIELD).map(String::as_str),
            self.from_trusted_proxy,
        ) {
            None
        } else {
            Some(self.error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "For your security the form could not be submitted. Go back, reload the page and try again.",
            ))
        }
    }

    /// For a signed-out visitor: the redirect to sign in, then back to `next`.
    fn sign_in_first(&self, next: &str) -> Option<Response> {
        self.user.is_none().then(|| see_other(&sign_in_path(next)))
    }
}

/// The sign-in page that leads back to `next` (a local path).
fn sign_in_path(next: &str) -> String {
    format!("/auth/signin?next={}", encode(next))
}

fn render(page: &impl Template) -> Html<String> {
    match page.render() {
        Ok(html) => Html(html),
        Err(err) => {
            tracing::error!(%err, "template failed");
            Html("<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned())
        }
    }
}

fn page(status: StatusCode, page: &impl Template) -> Response {
    (status, render(page)).into_response()
}

/// 303 See Other to `to`.
fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A redirect that also passes on the API's session cookies.
fn see_other_with_cookies(to: &str, reply: &Reply) -> Response {
    let mut response = see_other(to);
    for cookie in &reply.set_cookies {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

/// Only local paths are followed after sign-in (no open redirect); anything else goes home.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.clone(),
        _ => "/".to_owned(),
    }
}

/// A path of this site that a browser cannot read as another host, however it is decoded:
/// printable ASCII (it goes into `Location` as is), and, as given and after each round of
/// percent-decoding, one leading `/` not followed by `/` or `\`, and no backslash, control
/// character or whitespace anywhere (browsers drop tabs and newlines and read `\` as `/`, so
/// `/\t/evil.test` is `//evil.test`). Not starting with `/` also means no scheme
/// (`javascript:`, `https:`).
pub(crate) fn is_local_path(target: &str) -> bool {
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let mut current = Cow::Borrowed(target);
    // Each round removes at least one `%`: a few rounds reach every decoding that matters.
    for _ in 0..4 {
        let shape_ok = current.starts_with('/')
            && !current.starts_with("//")
            && !current
                .chars()
                .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
        if !shape_ok {
            return false;
        }
        let decoded = percent_decode(&current);
        if decoded == current {
            return true;
        }
        current = Cow::Owned(decoded);
    }
    false
}

/// `%XX` escapes decoded (others left as they are); bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|b| char::from(*b).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path segment from the URL, safe to put into an API path.
fn segment(id: &str) -> Option<&str> {
    (!id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(id)
}

fn field(form: &HashMap<String, String>, name: &str) -> String {
    form.get(name).cloned().unwrap_or_default()
}

/// Form bodies; a malformed one is an error page, not a plain-text rejection.
struct FormData(HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Form::<HashMap<String, String>>::from_request(req, state).await {
            Ok(Form(map)) => Ok(Self(map)),
            Err(rejection) => Err((
                StatusCode::BAD_REQUEST,
                Html(format!(
                    "<!doctype html><title>Bad request</title><p>The form could not be read ({}). <a href=\"/\">Back</a></p>",
                    html_escape(&rejection.body_text())
                )),
            )
                .into_response()),
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, headers::PUBLIC_ASSET),
        ],
        include_str!("../assets/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, headers::PUBLIC_ASSET),
        ],
        include_str!("../assets/app.js"),
    )
}

/// Unknown pages: HTML for people, the API's error format under `/api/`.
async fn not_found(ctx: Ctx, Path(path): Path<String>) -> Response {
    if path.starts_with("api/") || path == "api" {
        return bt_contract::ApiError::NotFound.into_response();
    }
    ctx.not_found()
}

async fn home(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let q = query
        .get("q")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cursor = query.get("cursor").cloned().unwrap_or_default();
    let reply = match state
        .api
        .get_query(
            &ctx.caller,
            "/api/tickets",
            &[("limit", "24"), ("q", &q), ("cursor", &cursor)],
        )
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    let mut layout = ctx.layout("Tickets on sale");
    let tickets = if reply.ok() {
        match reply.parse::<Vec<Ticket>>() {
            Ok(tickets) => tickets
                .iter()
                .map(|t| TicketCard::of(t, &ctx.currency))
                .collect(),
            Err(err) => return ctx.unreadable("GET /api/tickets answered tickets", &err),
        }
    } else {
        layout.error = Some(
            reply
                .errors()
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join(" "),
        );
        Vec::new()
    };
    let next = reply
        .next
        .as_deref()
        .and_then(|n| n.split_once('?'))
        .map(|(_, query)| format!("/?{query}"));
    let sign_in_to_alert = sign_in_path(&search_path(&q));
    page(
        StatusCode::OK,
        &HomePage {
            layout,
            q,
            tickets,
            next,
            sign_in_to_alert,
        },
    )
}

fn auth_page(
    ctx: &Ctx,
    mode: &'static str,
    email: String,
    errors: FieldErrors,
    banner: Option<String>,
    next: String,
) -> AuthPage {
    let mut layout = ctx.layout(if mode == "signup" {
        "Sign up"
    } else {
        "Sign in"
    });
    layout.error = banner;
    AuthPage {
        layout,
        mode,
        email,
        errors,
        next,
    }
}

async fn signup_form(ctx: Ctx, Query(query): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(query.get("next"));
    page(
        StatusCode::OK,
        &auth_page(
            &ctx,
            "signup",
            String::new(),
            FieldErrors::default(),
            None,
            next,
        ),
    )
}

async fn signin_form(ctx: Ctx, Query(query): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(query.get("next"));
    page(
        StatusCode::OK,
        &auth_page(
            &ctx,
            "signin",
            String::new(),
            FieldErrors::default(),
            None,
            next,
        ),
    )
}

async fn signup(State(state): State<AppState>, ctx: Ctx, FormData(form): FormData) -> Response {
    authenticate(state, ctx, form, "signup").await
}

async fn signin(State(state): State<AppState>, ctx: Ctx, FormData(form): FormData) -> Response {
    authenticate(state, ctx, form, "signin").await
}

async fn authenticate(
    state: AppState,
    ctx: Ctx,
    form: HashMap<String, String>,
    mode: &'static str,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
    let email = field(&form, "email");
    let next = safe_next(form.get("next"));
    let body = json!({"email": email, "password": field(&form, "password")});
    let reply = match state
        .api
        .post(&ctx.caller, &format!("/api/users/{mode}"), body)
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if reply.ok() {
        return see_other_with_cookies(&next, &reply);
    }
    let (errors, banner) = FieldErrors::from_api(&reply.errors(), &["email", "password"]);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    page(status, &auth_page(&ctx, mode, email, errors, banner, next))
}

async fn signout(State(state): State<AppState>, ctx: Ctx, FormData(form): FormData) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
    match state
        .api
        .post(&ctx.caller, "/api/users/signout", json!({}))
        .await
    {
        Ok(reply) => see_other_with_cookies("/", &reply),
        Err(err) => ctx.unavailable(&err),
    }
}

/// The sell or edit form.
fn ticket_form(
    ctx: &Ctx,
    heading: &str,
    action: String,
    submit: &str,
    form: TicketForm,
) -> TicketFormPage {
    TicketFormPage {
        layout: ctx.layout(heading),
        heading: heading.to_owned(),
        action,
        submit: submit.to_owned(),
        form,
        starts_at_is_utc: false,
        has_file: false,
        errors: FieldErrors::default(),
    }
}

/// The sell form of a new ticket.
fn sell_form(ctx: &Ctx, form: TicketForm) -> TicketFormPage {
    ticket_form(
        ctx,
        "Sell a ticket",
        "/tickets/new".into(),
        "List ticket",
        form,
    )
}

/// The edit form of `ticket`.
fn edit_form(ctx: &Ctx, ticket: &Ticket, form: TicketForm) -> TicketFormPage {
    let mut page = ticket_form(
        ctx,
        "Edit listing",
        format!("/tickets/{}/edit", ticket.id),
        "Save changes",
        form,
    );
    page.has_file = ticket.has_file;
    page
}

/// Re-renders a ticket form with the API's refusal: field errors next to their fields, the
/// rest in the banner.
fn refused_form(mut form_page: TicketFormPage, reply: &Reply) -> Response {
    let (errors, banner) = FieldErrors::from_api(&reply.errors(), &TICKET_FIELDS);
    form_page.errors = errors;
    form_page.layout.error = banner;
    page(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &form_page,
    )
}

/// The checks the client makes before the API is asked: a start it can read and a file the
/// API would take. Their messages go next to the fields.
fn check_ticket_form(form: &TicketForm, parts: &multipart::Parts) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if let Err(message) = form.starts_at_utc() {
        errors.set("startsAt", message);
    }
    if let Some(Err(message)) = parts.file("file").map(forms::check_file) {
        errors.set("file", message);
    }
    errors
}

async fn new_ticket_form(ctx: Ctx) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/tickets/new") {
        return redirect;
    }
    page(StatusCode::OK, &sell_form(&ctx, TicketForm::default()))
}

/// Lists a ticket with its details, then uploads its file (when one was chosen). The file is
/// checked first, so that a file the API would refuse does not leave a listing without it.
async fn create_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    MultipartForm(parts): MultipartForm,
) -> Response {
    if let Some(response) = ctx.form_refusal(&parts.fields) {
        return response;
    }
    if let Some(redirect) = ctx.sign_in_first("/tickets/new") {
        return redirect;
    }
    let form = TicketForm::from_fields(&parts.fields);
    let errors = check_ticket_form(&form, &parts);
    let input = match form.for_create() {
        Ok(input) if errors.is_empty() => input,
        _ => {
            let mut form_page = sell_form(&ctx, form);
            form_page.errors = errors;
            return page(StatusCode::BAD_REQUEST, &form_page);
        }
    };
    let reply = match state
        .api
        .post(&ctx.caller, "/api/tickets", json!(input))
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if !reply.ok() {
        return refused_form(sell_form(&ctx, form), &reply);
    }
    let ticket = match reply.parse::<Ticket>() {
        Ok(ticket) => ticket,
        Err(err) => return ctx.unreadable("POST /api/tickets answered a ticket", &err),
    };
    if let Some(file) = parts.file("file") {
        let listed = "Your ticket is listed, but its file was not saved. Please upload it again.";
        if let Err(response) =
            after_sale::put_file(&state, &ctx, &ticket, file.bytes.clone(), listed).await
        {
            return response;
        }
    }
    see_other(&format!("/tickets/{}", ticket.id))
}

/// The ticket, or the page to show instead.
async fn fetch_ticket(state: &AppState, ctx: &Ctx, id: &str) -> Result<Ticket, Response> {
    let Some(id) = segment(id) else {
        return Err(ctx.not_found());
    };
    match state
        .api
        .get(&ctx.caller, &format!("/api/tickets/{id}"))
        .await
    {
        Ok(reply) if reply.ok() => reply.parse().map_err(|err| {
            ctx.unreadable(&format!("GET /api/tickets/{id} answered a ticket"), &err)
        }),
        Ok(_) => Err(ctx.error_page(
            StatusCode::NOT_FOUND,
            "Ticket not found",
            "This ticket does not exist.",
        )),
        Err(err) => Err(ctx.unavailable(&err)),
    }
}

fn ticket_view(ctx: &Ctx, ticket: &Ticket) -> TicketView {
    TicketView::of(ticket, ctx.user.as_ref(), &ctx.currency)
}

async fn ticket_page(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let ticket = match fetch_ticket(&state, &ctx, &id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let view = ticket_view(&ctx, &ticket);
    page(
        StatusCode::OK,
        &TicketPage {
            layout: ctx.layout(view.title.clone()),
            ticket: view,
        },
    )
}

/// The ticket if the signed-in person owns it, or the page to show instead.
async fn fetch_own_ticket(state: &AppState, ctx: &Ctx, id: &str) -> Result<Ticket, Response> {
    let ticket = fetch_ticket(state, ctx, id).await?;
    if ctx
        .user
        .as_ref()
        .is_some_and(|u| u.id == ticket.user_id.as_str())
    {
        Ok(ticket)
    } else {
        Err(not_your_ticket(ctx))
    }
}

fn not_your_ticket(ctx: &Ctx) -> Response {
    ctx.error_page(
        StatusCode::FORBIDDEN,
        "Not your ticket",
        "Only the ticket's owner can change it.",
    )
}

async fn edit_ticket_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/edit")) {
        return redirect;
    }
    let ticket = match fetch_own_ticket(&state, &ctx, &id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let mut form_page = edit_form(&ctx, &ticket, TicketForm::of(&ticket));
    form_page.starts_at_is_utc = true;
    if ticket.order_id.is_some() {
        form_page.layout.error = Some("Cannot edit a reserved ticket".into());
    }
    page(StatusCode::OK, &form_page)
}

/// Saves an edit: title and price, the details that changed, then the file (when one was
/// chosen).
async fn update_ticket(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    MultipartForm(parts): MultipartForm,
) -> Response {
    if let Some(response) = ctx.form_refusal(&parts.fields) {
        return response;
    }
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/edit")) {
        return redirect;
    }
    let current = match fetch_own_ticket(&state, &ctx, &id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let form = TicketForm::from_fields(&parts.fields);
    let errors = check_ticket_form(&form, &parts);
    let input = match form.for_update(&current) {
        Ok(input) if errors.is_empty() => input,
        _ => {
            let mut form_page = edit_form(&ctx, &current, form);
            form_page.errors = errors;
            return page(StatusCode::BAD_REQUEST, &form_page);
        }
    };
    let reply = match state
        .api
        .put(
            &ctx.caller,
            &format!("/api/tickets/{}", current.id),
            json!(input),
        )
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    match reply.status {
        200 => {}
        404 => {
            return ctx.error_page(
                StatusCode::NOT_FOUND,
                "Ticket not found",
                "This ticket does not exist.",
            );
        }
        401 => return not_your_ticket(&ctx),
        _ => return refused_form(edit_form(&ctx, &current, form), &reply),
    }
    let ticket = match reply.parse::<Ticket>() {
        Ok(ticket) => ticket,
        Err(err) => return ctx.unreadable("PUT /api/tickets/:id answered a ticket", &err),
    };
    if let Some(file) = parts.file("file") {
        let saved = "Your changes are saved, but the file was not. Please upload it again.";
        if let Err(response) =
            after_sale::put_file(&state, &ctx, &ticket, file.bytes.clone(), saved).await
        {
            return response;
        }
    }
    see_other(&format!("/tickets/{}", ticket.id))
}

async fn purchase(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    FormData(form): FormData,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}")) {
        return redirect;
    }
    let reply = match state
        .api
        .post(&ctx.caller, "/api/orders", json!({"ticketId": id}))
        .await
    {
        Ok(reply) => reply,
        Err(err) => match err.retry_after_secs {
            Some(secs) => return buy_later(&state, &ctx, &id, secs, &err).await,
            None => return ctx.unavailable(&err),
        },
    };
    if reply.ok() {
        return match serde_json::from_value::<Order>(reply.json) {
            Ok(order) => see_other(&format!("/orders/{}", order.id)),
            Err(err) => ctx.unreadable("POST /api/orders answered an order", &err),
        };
    }
    let ticket = match fetch_ticket(&state, &ctx, &id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let view = ticket_view(&ctx, &ticket);
    let mut layout = ctx.layout(view.title.clone());
    layout.error = Some(match reply.status {
        404 => "This ticket is no longer available.".to_owned(),
        _ => reply
            .errors()
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join(" "),
    });
    page(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &TicketPage {
            layout,
            ticket: view,
        },
    )
}

/// The ticket page with a "try again in a moment" banner, for an order the API asked to repeat
/// later (503 with `Retry-After`): the ticket was listed a moment ago and has not reached the
/// orders service yet. Not an outage page.
async fn buy_later(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    retry_after_secs: u64,
    err: &Unavailable,
) -> Response {
    tracing::debug!(%err, "order to be tried again later");
    let ticket = match fetch_ticket(state, ctx, id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let view = ticket_view(ctx, &ticket);
    let mut layout = ctx.layout(view.title.clone());
    layout.error = Some(BUY_LATER.to_owned());
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        &TicketPage {
            layout,
            ticket: view,
        },
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    );
    response
}

/// The banner of [`buy_later`].
const BUY_LATER: &str = "This ticket was listed moments ago and cannot be bought yet. Please try again in a few seconds.";

/// The order, or the page to show instead.
async fn fetch_order(state: &AppState, ctx: &Ctx, id: &str) -> Result<Order, Response> {
    let Some(id) = segment(id) else {
        return Err(ctx.not_found());
    };
    match state
        .api
        .get(&ctx.caller, &format!("/api/orders/{id}"))
        .await
    {
        Ok(reply) if reply.ok() => serde_json::from_value(reply.json).map_err(|err| {
            ctx.unreadable(&format!("GET /api/orders/{id} answered an order"), &err)
        }),
        Ok(reply) if reply.status == 401 => Err(ctx.error_page(
            StatusCode::FORBIDDEN,
            "Not your order",
            "This order belongs to someone else.",
        )),
        Ok(_) => Err(ctx.error_page(
            StatusCode::NOT_FOUND,
            "Order not found",
            "This order does not exist.",
        )),
        Err(err) => Err(ctx.unavailable(&err)),
    }
}

/// The order page; `paid` when the API just took the payment (201 or 202): until the order is
/// decided, the page says so and refreshes itself — as it does while the card is authorised.
fn order_page_for(
    state: &AppState,
    ctx: &Ctx,
    order: &Order,
    paid: bool,
    error: Option<String>,
) -> OrderPage {
    let view = OrderView::of(order, &ctx.currency, chrono::Utc::now());
    let mut layout = ctx.layout(format!("Order: {}", view.ticket_title));
    layout.error = error;
    OrderPage {
        layout,
        confirming: (paid || view.authorized) && view.is_open(),
        order: view,
        cards: TEST_CARDS.to_vec(),
        stripe_key: state.settings.stripe_publishable_key.clone(),
        file: FileLink::None,
    }
}

/// What a paid order's page offers of the ticket's file: a download while the buyer owns the
/// ticket and its file is there. The ticket is asked for; if that fails, the page is shown
/// without it (the order is what the page is about).
async fn file_link(state: &AppState, ctx: &Ctx, order: &Order) -> FileLink {
    if order.status != bt_contract::events::OrderStatus::Complete {
        return FileLink::None;
    }
    let path = format!("/api/tickets/{}", order.ticket.id);
    let ticket = match state.api.get(&ctx.caller, &path).await {
        Ok(reply) if reply.ok() => reply.parse::<Ticket>().ok(),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(%err, "the ticket of a paid order could not be read");
            None
        }
    };
    match ticket {
        Some(t) if t.user_id.as_str() != order.user_id.as_str() => FileLink::None,
        Some(t) if !t.has_file => FileLink::NotUploaded,
        Some(_) => FileLink::Ready,
        None => FileLink::None,
    }
}

/// The order page, with the Content-Security-Policy that lets it load Stripe.js when it does.
fn order_response(status: StatusCode, order_page: &OrderPage) -> Response {
    let mut response = page(status, order_page);
    if order_page.uses_stripe() {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(headers::CSP_WITH_STRIPE),
        );
    }
    response
}

async fn order_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/orders/{id}")) {
        return redirect;
    }
    let order = match fetch_order(&state, &ctx, &id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let paid = query.contains_key("paid");
    let mut order_page = order_page_for(&state, &ctx, &order, paid, None);
    order_page.file = file_link(&state, &ctx, &order).await;
    order_response(StatusCode::OK, &order_page)
}

async fn pay(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    FormData(form): FormData,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
    if let Some(redirect) = ctx.sign_in_first(&format!("/orders/{id}")) {
        return redirect;
    }
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let body = json!({"orderId": id, "token": field(&form, "token")});
    let reply = match state.api.post(&ctx.caller, "/api/payments", body).await {
        Ok(reply) => reply,
        Err(err) => match err.retry_after_secs {
            Some(secs) => return pay_later(&state, &ctx, id, secs, &err).await,
            None => return ctx.unavailable(&err),
        },
    };
    // 201: the order is complete; 202: the outcome is still being decided. Either way the
    // order page shows where it stands, and refreshes itself until it is decided.
    if reply.ok() {
        return see_other(&format!("/orders/{id}?paid=1"));
    }
    let order = match fetch_order(&state, &ctx, id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let message = reply
        .errors()
        .into_iter()
        .map(|e| e.message)
        .collect::<Vec<_>>()
        .join(" ");
    order_response(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &order_page_for(&state, &ctx, &order, false, Some(message)),
    )
}

/// The order page with a "try again in a moment" banner, for a pay request the API asked to
/// repeat later (503 with `Retry-After`): the order was created a moment ago and has not reached
/// the payments service yet, or the provider is briefly unavailable. Not an outage page.
async fn pay_later(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    retry_after_secs: u64,
    err: &Unavailable,
) -> Response {
    tracing::debug!(%err, "payment to be tried again later");
    let order = match fetch_order(state, ctx, id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let mut response = order_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &order_page_for(state, ctx, &order, false, Some(PAY_LATER.to_owned())),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    );
    response
}

/// The banner of [`pay_later`].
const PAY_LATER: &str = "We could not take your payment just yet. Please try again in a moment.";

async fn cancel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    FormData(form): FormData,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
    if let Some(redirect) = ctx.sign_in_first(&format!("/orders/{id}")) {
        return redirect;
    }
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let reply = match state
        .api
        .delete(&ctx.caller, &format!("/api/orders/{id}"))
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if reply.ok() {
        return see_other(&format!("/orders/{id}"));
    }
    let order = match fetch_order(&state, &ctx, id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let message = reply
        .errors()
        .into_iter()
        .map(|e| e.message)
        .collect::<Vec<_>>()
        .join(" ");
    order_response(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &order_page_for(&state, &ctx, &order, false, Some(message)),
    )
}

async fn my_orders(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/orders") {
        return redirect;
    }
    let reply = match state.api.get(&ctx.caller, "/api/orders").await {
        Ok(reply) if reply.ok() => reply,
        Ok(_) => return see_other("/auth/signin?next=/orders"),
        Err(err) => return ctx.unavailable(&err),
    };
    let orders = match serde_json::from_value::<Vec<Order>>(reply.json) {
        Ok(orders) => orders,
        Err(err) => return ctx.unreadable("GET /api/orders answered orders", &err),
    };
    let now = chrono::Utc::now();
    let orders = orders
        .iter()
        .map(|o| OrderView::of(o, &ctx.currency, now))
        .collect();
    page(
        StatusCode::OK,
        &OrdersPage {
            layout: ctx.layout("My orders"),
            orders,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        let cases = [
            (Some("/orders"), "/orders"),
            (Some("/orders/abc?x=1#y"), "/orders/abc?x=1#y"),
            (Some("/?q=caf%C3%A9"), "/?q=caf%C3%A9"),
            (Some("/100%"), "/100%"),
            (Some("/\t/evil.test"), "/"),
            (Some("/\n/x"), "/"),
            (Some("/\r/evil.test"), "/"),
            (Some("/\u{7f}/evil.test"), "/"),
            (Some("/\u{85}/evil.test"), "/"),
            (Some("/\u{a0}/evil.test"), "/"),
            (Some("/é"), "/"),
            (Some("//evil.test"), "/"),
            (Some("///evil.test"), "/"),
            (Some("https://evil.test"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/\\evil.test"), "/"),
            (Some("\\\\evil.test"), "/"),
            (Some("/%2F/evil.test"), "/"),
            (Some("/%2f%2fevil.test"), "/"),
            (Some("/%252F/evil.test"), "/"),
            (Some("/%25252F/evil.test"), "/"),
            (Some("%2F%2Fevil.test"), "/"),
            (Some("/%5Cevil.test"), "/"),
            (Some("/%09/evil.test"), "/"),
            (Some("/a%20b"), "/"),
            (Some(""), "/"),
            (None, "/"),
        ];
        for (next, want) in cases {
            assert_eq!(
                safe_next(next.map(str::to_owned).as_ref()),
                want,
                "{next:?}"
            );
        }
    }

    #[test]
    fn alert_me_signed_out_leads_back_to_the_search_after_sign_in() {
        let cases = [
            ("opera", "/?q=opera"),
            ("Opera Gala", "/?q=Opera+Gala"),
            ("café & co", "/?q=caf%C3%A9+%26+co"),
            ("a+b=c?", "/?q=a%2Bb%3Dc%3F"),
        ];
        for (q, path) in cases {
            assert_eq!(search_path(q), path, "{q}");
            // The sign-in page reads `next` decoded, and follows it only as a local path.
            let sign_in = sign_in_path(path);
            let next = percent_decode(sign_in.strip_prefix("/auth/signin?next=").unwrap());
            assert_eq!(safe_next(Some(&next)), path, "{q}");
        }
    }

    #[test]
    fn ids_in_urls_are_plain_segments() {
        assert_eq!(
            segment("0192f5e4-0000-7000-8000-000000000000"),
            Some("0192f5e4-0000-7000-8000-000000000000")
        );
        assert_eq!(segment("../users"), None);
        assert_eq!(segment("a?b"), None);
        assert_eq!(segment(""), None);
    }
}
