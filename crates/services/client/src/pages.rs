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
use axum::routing::get;
use axum::{Extension, Form, Router, middleware};
use axum_extra::extract::CookieJar;
use bt_contract::resources::Order;
use serde_json::json;

use crate::Settings;
use crate::api::{Api, Caller, Reply, Ticket, Unavailable};
use crate::assets;
use crate::csrf::{self, CsrfToken};
use crate::flash::{self, Flash, Flasher, see_other};
use crate::forms::{self, TICKET_FIELDS, TicketForm};
use crate::headers;
use crate::multipart::{self, MultipartForm};
use crate::views::{
    AuthPage, ConfirmPage, CurrencyView, ErrorPage, FieldErrors, FileLink, HomePage, Layout,
    OrderPage, OrderView, OrdersPage, TicketCard, TicketFormPage, TicketPage, TicketState,
    TicketView, UserView, owns, search_path,
};

#[derive(Debug, Clone)]
struct AppState {
    api: Api,
    settings: Arc<Settings>,
    flasher: Flasher,
}

pub fn router(settings: Settings, api: Api) -> Router {
    let secure = settings.cookie_secure;
    let flasher = Flasher::new(&settings.sessions.derived_key("client/flash"), secure);
    let state = AppState {
        api,
        settings: Arc::new(settings),
        flasher: flasher.clone(),
    };
    Router::new()
        .route("/", get(home))
        .route("/auth/signup", get(signup_form).post(signup))
        .route("/auth/signin", get(signin_form).post(signin))
        .route("/auth/signout", get(signout_page).post(signout))
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
        // A GET on a form's address (a reload, a bookmark, a shared link) shows its page.
        .route(
            "/tickets/{id}/sell",
            get(to_my_tickets).post(after_sale::sell_again),
        )
        .route(
            "/tickets/{id}/sale",
            get(to_my_tickets).post(after_sale::set_for_sale),
        )
        .route("/tickets/{id}/purchase", get(to_ticket).post(purchase))
        .route("/orders", get(my_orders))
        .route("/orders/{id}", get(order_page))
        .route("/orders/{id}/pay", get(to_order).post(pay))
        .route("/orders/{id}/cancel", get(cancel_page).post(cancel))
        // "My listings" became part of "My tickets"; the old address shows it too.
        .route("/listings", get(after_sale::my_tickets))
        .route("/payouts", get(payouts::payouts_page))
        .route(
            "/payouts/account",
            get(|| async { see_other("/payouts") }).post(payouts::set_up_payouts),
        )
        // The notifications page's own list tells the bell's count.
        .route(
            "/notifications",
            get(notifications::notifications_page).layer(Extension(NoBell)),
        )
        .route(
            "/notifications/read",
            get(|| async { see_other("/notifications") }).post(notifications::mark_read),
        )
        .route("/alerts", get(alerts::alerts).post(alerts::create_alert))
        .route(
            "/alerts/{id}/delete",
            get(|| async { see_other("/alerts") }).post(alerts::delete_alert),
        )
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/favicon.ico", get(favicon_ico))
        .route("/favicon.svg", get(favicon_svg))
        .route("/{*path}", get(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the CSRF layer: it sets its cookie only on responses that no cache keeps, and
        // needs the final Cache-Control to know.
        .layer(middleware::from_fn(headers::secure))
        .layer(middleware::from_fn(move |req: Request, next| {
            csrf::ensure_token(secure, req, next)
        }))
        .layer(middleware::from_fn(move |req: Request, next| {
            flash::layer(flasher.clone(), req, next)
        }))
        // Pages and assets in gzip or brotli, as the browser accepts (tiny bodies stay as they
        // are); outermost, so that what is compressed is the final response.
        .layer(tower_http::compression::CompressionLayer::new())
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
    fee_percent: u8,
    /// What the form post that led here had to say (see [`crate::flash`]).
    flash: Option<Flash>,
    flasher: Flasher,
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
            fee_percent: state.settings.seller_fee_percent,
            flash: parts
                .extensions
                .get::<flash::Incoming>()
                .map(|incoming| incoming.0.clone()),
            flasher: state.flasher.clone(),
        })
    }
}

impl Ctx {
    /// The page's frame, with the flash's confirmation or error in its banner.
    fn layout(&self, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            user: self.user.clone(),
            csrf: self.csrf.clone(),
            notice: self.flash.as_ref().and_then(|f| f.notice.clone()),
            error: self.flash.as_ref().and_then(|f| f.error.clone()),
            unread: self.unread,
        }
    }

    /// The frame of a form's page: when the flash brought field errors and no banner of its
    /// own, the summary banner that announces them.
    fn form_layout(&self, title: impl Into<String>) -> Layout {
        let mut layout = self.layout(title);
        if layout.error.is_none() && self.flash.as_ref().is_some_and(|f| !f.fields.is_empty()) {
            layout.error = Some(CHECK_FIELDS.to_owned());
        }
        layout
    }

    /// The field errors the flash brought back.
    fn flash_errors(&self) -> FieldErrors {
        self.flash
            .as_ref()
            .map(|f| FieldErrors::from_map(&f.fields))
            .unwrap_or_default()
    }

    /// The form as typed, when a flash brought it back.
    fn flash_values(&self) -> Option<HashMap<String, String>> {
        self.flash
            .as_ref()
            .filter(|f| !f.values.is_empty() || !f.fields.is_empty())
            .map(|f| {
                f.values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
    }

    /// A 303 to `to` that carries `flash` (Post/Redirect/Get).
    fn redirect(&self, to: &str, flash: &Flash) -> Response {
        self.flasher.redirect(to, flash)
    }

    /// A 303 to `to` with `message` in its red banner.
    fn redirect_error(&self, to: &str, message: impl Into<String>) -> Response {
        self.redirect(to, &Flash::error(to, message))
    }

    /// A 303 to `to` with `message` in its green banner.
    fn redirect_notice(&self, to: &str, message: impl Into<String>) -> Response {
        self.redirect(to, &Flash::notice(to, message))
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

    /// The page for a form post that could not be read: not a form (another `Content-Type`, a
    /// broken body), or a file too large.
    fn unreadable_form(&self, why: &multipart::Unreadable) -> Response {
        tracing::debug!(?why, "a form post could not be read");
        self.error_page(why.status(), why.heading(), why.message())
    }

    /// For a signed-out visitor: the redirect to sign in, then back to `next`.
    fn sign_in_first(&self, next: &str) -> Option<Response> {
        self.user.is_none().then(|| see_other(&sign_in_path(next)))
    }
}

/// The sign-in page that leads back to `next` (a local path).
fn sign_in_path(next: &str) -> String {
    format!("/auth/signin?next={}", crate::views::path_value(next))
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

/// A form posted from a page: the page's context and the form's fields. A post without a
/// valid CSRF token is refused (403, the expired-form page) before the handler runs, and a body
/// that is not a form is the site's error page saying so.
struct Posted {
    ctx: Ctx,
    form: HashMap<String, String>,
}

impl axum::extract::FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (ctx, req) = context_of(req, state).await;
        let form = match Form::<HashMap<String, String>>::from_request(req, state).await {
            Ok(Form(form)) => form,
            Err(rejection) => {
                let why = multipart::Unreadable::NotAForm(rejection.body_text());
                return Err(ctx.unreadable_form(&why));
            }
        };
        match ctx.form_refusal(&form) {
            Some(refusal) => Err(refusal),
            None => Ok(Self { ctx, form }),
        }
    }
}

/// [`Posted`] for a multipart form (one with a file).
struct PostedMultipart {
    ctx: Ctx,
    parts: multipart::Parts,
}

impl axum::extract::FromRequest<AppState> for PostedMultipart {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (ctx, req) = context_of(req, state).await;
        let parts = match MultipartForm::from_request(req, state).await {
            Ok(MultipartForm(parts)) => parts,
            Err(why) => return Err(ctx.unreadable_form(&why)),
        };
        match ctx.form_refusal(&parts.fields) {
            Some(refusal) => Err(refusal),
            None => Ok(Self { ctx, parts }),
        }
    }
}

/// The page's context of `req`, and `req` back for its body.
async fn context_of(req: Request, state: &AppState) -> (Ctx, Request) {
    let (mut parts, body) = req.into_parts();
    let ctx = match Ctx::from_request_parts(&mut parts, state).await {
        Ok(ctx) => ctx,
        Err(never) => match never {},
    };
    (ctx, Request::from_parts(parts, body))
}

async fn css(headers: HeaderMap) -> Response {
    static CSS: assets::Asset = assets::Asset::new(
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    );
    CSS.serve(&headers)
}

async fn js(headers: HeaderMap) -> Response {
    static JS: assets::Asset = assets::Asset::new(
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    );
    JS.serve(&headers)
}

async fn favicon_svg(headers: HeaderMap) -> Response {
    static SVG: assets::Asset =
        assets::Asset::new("image/svg+xml", include_bytes!("../assets/favicon.svg"));
    SVG.serve(&headers)
}

/// The icon browsers ask for on their own (`/favicon.ico`), 32×32.
async fn favicon_ico(headers: HeaderMap) -> Response {
    static ICO: assets::Asset =
        assets::Asset::new("image/x-icon", include_bytes!("../assets/favicon.ico"));
    ICO.serve(&headers)
}

/// Unknown pages: HTML for people, the API's error format under `/api/`.
async fn not_found(ctx: Ctx, Path(path): Path<String>) -> Response {
    if path.starts_with("api/") || path == "api" {
        return bt_contract::ApiError::NotFound.into_response();
    }
    ctx.not_found()
}

/// Tickets per page of the listing.
const PAGE_SIZE: usize = 24;

/// The most pages "Previous" can lead back through (the trail of cursors is in the address).
const MAX_TRAIL: usize = 50;

async fn home(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let q = query
        .get("q")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut cursor = query.get("cursor").cloned().unwrap_or_default();
    // The cursors of the pages before this one (`-` for the first page), for "Previous".
    let mut trail: Vec<String> = query
        .get("trail")
        .map(|t| {
            t.split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if trail.len() > MAX_TRAIL || trail.iter().any(|c| c != "-" && segment(c).is_none()) {
        return see_other(&search_path(&q));
    }
    let mut reply = match list_page(&state, &ctx, &q, &cursor).await {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    let mut layout = ctx.layout(if q.is_empty() {
        "Tickets on sale".to_owned()
    } else {
        format!("“{q}”: tickets on sale")
    });
    // A page link the API no longer reads (an old or edited address): the first page, saying so.
    if !cursor.is_empty()
        && reply
            .errors()
            .iter()
            .any(|e| e.field.as_deref() == Some("cursor"))
    {
        cursor.clear();
        trail.clear();
        reply = match list_page(&state, &ctx, &q, "").await {
            Ok(reply) => reply,
            Err(err) => return ctx.unavailable(&err),
        };
        layout.notice = Some(OUT_OF_DATE_PAGE.to_owned());
    }
    let refused = !reply.ok();
    let tickets = if reply.ok() {
        match reply.parse::<Vec<Ticket>>() {
            Ok(tickets) => tickets
                .iter()
                .map(|t| TicketCard::of(t, &ctx.currency))
                .collect(),
            Err(err) => return ctx.unreadable("GET /api/tickets answered tickets", &err),
        }
    } else {
        layout.error = Some(forms::worded_messages(&reply.errors(), &[forms::SEARCH]));
        Vec::new()
    };
    let listing = |cursor: &str, trail: &[String]| {
        let mut path = search_path(&q);
        if !cursor.is_empty() && cursor != "-" {
            path.push_str(&format!("&cursor={}", crate::views::path_value(cursor)));
        }
        if !trail.is_empty() {
            path.push_str(&format!("&trail={}", trail.join(",")));
        }
        path
    };
    let next = reply
        .next
        .as_deref()
        .and_then(|n| n.split_once('?'))
        .and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("cursor="))
                .map(percent_decode)
        })
        .filter(|_| trail.len() < MAX_TRAIL)
        .map(|next_cursor| {
            let mut next_trail = trail.clone();
            next_trail.push(if cursor.is_empty() {
                "-".to_owned()
            } else {
                cursor.clone()
            });
            listing(&next_cursor, &next_trail)
        });
    let previous = trail
        .split_last()
        .map(|(last, before)| listing(last, before));
    let first = trail.len() * PAGE_SIZE + 1;
    let shown = tickets.len();
    let count = match (q.is_empty(), shown, next.is_some() || !trail.is_empty()) {
        (_, 0, _) => None,
        (true, _, false) => Some(plural(shown, "ticket on sale", "tickets on sale")),
        (false, _, false) => Some(format!(
            "{} “{q}”",
            plural(shown, "ticket matches", "tickets match")
        )),
        (_, _, true) => Some(format!(
            "Tickets {first}–{} {}",
            first + shown - 1,
            if q.is_empty() {
                "on sale".to_owned()
            } else {
                format!("for “{q}”")
            }
        )),
    };
    let sign_in_to_alert = sign_in_path(&search_path(&q));
    page(
        StatusCode::OK,
        &HomePage {
            layout,
            q,
            tickets,
            next,
            previous,
            count,
            sign_in_to_alert,
            refused,
        },
    )
}

/// A page of the listing (`GET /api/tickets`): the tickets matching `q` after `cursor` (empty:
/// all, from the first).
async fn list_page(
    state: &AppState,
    ctx: &Ctx,
    q: &str,
    cursor: &str,
) -> Result<Reply, Unavailable> {
    let limit = PAGE_SIZE.to_string();
    state
        .api
        .get_query(
            &ctx.caller,
            "/api/tickets",
            &[("limit", &limit), ("q", q), ("cursor", cursor)],
        )
        .await
}

/// The notice of a listing page whose link the API no longer reads (its cursor), shown with
/// the first page instead.
const OUT_OF_DATE_PAGE: &str =
    "The page you followed is out of date, so the listing starts again from the first page.";

/// "1 ticket", "3 tickets".
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn auth_page(ctx: &Ctx, mode: &'static str, next: String) -> AuthPage {
    let layout = ctx.form_layout(if mode == "signup" {
        "Sign up"
    } else {
        "Sign in"
    });
    AuthPage {
        layout,
        mode,
        email: ctx
            .flash
            .as_ref()
            .map(|f| f.typed("email"))
            .unwrap_or_default(),
        errors: ctx.flash_errors(),
        other: auth_path(if mode == "signup" { "signin" } else { "signup" }, &next),
        next,
    }
}

/// The banner of a form sent back with errors next to its fields.
const CHECK_FIELDS: &str = "Please correct the fields marked below.";

/// The sign-up or sign-in page that leads to `next` afterwards.
fn auth_path(mode: &str, next: &str) -> String {
    if next == "/" {
        format!("/auth/{mode}")
    } else {
        format!("/auth/{mode}?next={}", crate::views::path_value(next))
    }
}

async fn signup_form(ctx: Ctx, Query(query): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(query.get("next"));
    page(StatusCode::OK, &auth_page(&ctx, "signup", next))
}

async fn signin_form(ctx: Ctx, Query(query): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(query.get("next"));
    page(StatusCode::OK, &auth_page(&ctx, "signin", next))
}

async fn signup(State(state): State<AppState>, Posted { ctx, form }: Posted) -> Response {
    authenticate(state, ctx, form, "signup").await
}

async fn signin(State(state): State<AppState>, Posted { ctx, form }: Posted) -> Response {
    authenticate(state, ctx, form, "signin").await
}

/// Signs up or in, then goes to `next` with a welcome; a refusal goes back to the form with
/// the messages and the email as typed (never the password).
async fn authenticate(
    state: AppState,
    ctx: Ctx,
    form: HashMap<String, String>,
    mode: &'static str,
) -> Response {
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
        let signed_in = reply
            .parse::<crate::api::SignedIn>()
            .map(|u| u.email)
            .unwrap_or(email);
        let welcome = if mode == "signup" {
            format!(
                "Welcome to BuyTicket! Your account is ready and you are signed in as {signed_in}."
            )
        } else {
            format!("You are signed in as {signed_in}.")
        };
        let mut response = see_other_with_cookies(&next, &reply);
        if let Some(cookie) = ctx.flasher.set_cookie(&Flash::notice(&next, welcome)) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return response;
    }
    let (errors, banner) = FieldErrors::from_api(&reply.errors(), &forms::AUTH_FIELDS);
    let to = auth_path(mode, &next);
    let mut flash = Flash::to(&to).value("email", email);
    flash.error = banner;
    flash.fields = errors.into_map();
    ctx.redirect(&to, &flash)
}

/// A GET of the sign-out address: a page with the button (signing out is a form post).
async fn signout_page(ctx: Ctx) -> Response {
    if ctx.user.is_none() {
        return see_other("/");
    }
    page(
        StatusCode::OK,
        &ConfirmPage {
            layout: ctx.layout("Sign out"),
            heading: "Sign out?".to_owned(),
            message: "You will need your email and password to sign in again.".to_owned(),
            action: "/auth/signout".to_owned(),
            confirm: "Sign out".to_owned(),
            back: "/".to_owned(),
            back_label: "Stay signed in".to_owned(),
        },
    )
}

async fn signout(State(state): State<AppState>, Posted { ctx, .. }: Posted) -> Response {
    match state
        .api
        .post(&ctx.caller, "/api/users/signout", json!({}))
        .await
    {
        Ok(reply) => {
            let mut response = see_other_with_cookies("/", &reply);
            if let Some(cookie) = ctx
                .flasher
                .set_cookie(&Flash::notice("/", "You are signed out."))
            {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(err) => ctx.unavailable(&err),
    }
}

/// The sell or edit form, as the flash brought it back (with its errors) or as `form`.
fn ticket_form(
    ctx: &Ctx,
    heading: &str,
    action: String,
    submit: &str,
    form: TicketForm,
) -> TicketFormPage {
    let typed = ctx.flash_values();
    TicketFormPage {
        layout: ctx.form_layout(heading),
        heading: heading.to_owned(),
        action,
        submit: submit.to_owned(),
        starts_at_is_utc: typed.is_none() && !form.starts_at.is_empty(),
        form: typed.map_or(form, |values| TicketForm::from_fields(&values)),
        has_file: false,
        errors: ctx.flash_errors(),
        currency: CurrencyView::of(&ctx.currency),
        fee_percent: ctx.fee_percent,
    }
}

/// The sell form of a new ticket.
fn sell_form(ctx: &Ctx) -> TicketFormPage {
    ticket_form(
        ctx,
        "Sell a ticket",
        "/tickets/new".into(),
        "List ticket",
        TicketForm::default(),
    )
}

/// The edit form of `ticket`.
fn edit_form(ctx: &Ctx, ticket: &Ticket) -> TicketFormPage {
    let mut page = ticket_form(
        ctx,
        "Edit listing",
        format!("/tickets/{}/edit", ticket.id),
        "Save changes",
        TicketForm::of(ticket),
    );
    page.has_file = ticket.has_file;
    page
}

/// Back to the ticket form at `to` with `errors` next to the fields, `banner` above them and
/// the form as typed. A file is never carried back (browsers do not refill file fields): if
/// one was chosen, the person is asked to choose it again.
fn refused_form(
    ctx: &Ctx,
    to: &str,
    form: &TicketForm,
    mut errors: FieldErrors,
    banner: Option<String>,
    had_file: bool,
) -> Response {
    if had_file && !errors.has("file") {
        errors.set(
            "file",
            "Please choose the file again: it is not kept when the form has errors.",
        );
    }
    let mut flash = Flash::to(to);
    flash.values = form.values();
    flash.fields = errors.into_map();
    flash.error = banner;
    ctx.redirect(to, &flash)
}

/// The checks the client makes before the API is asked: a title, prices it can read (in the
/// site's `currency`), a start it can read and a file the API would take. Their messages go next to the fields.
fn check_ticket_form(form: &TicketForm, parts: &multipart::Parts, currency: &str) -> FieldErrors {
    let mut errors = FieldErrors::default();
    // The API's own words, so that a form checked here reads like one checked there.
    if form.title.trim().is_empty() {
        errors.set("title", "Title is required");
    }
    if let Err(message) = forms::price_text(&form.price, "Price", currency) {
        errors.set("price", message);
    }
    if !form.face_value.is_empty()
        && let Err(message) = forms::price_text(&form.face_value, "Face value", currency)
    {
        errors.set("faceValue", message);
    }
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
    page(StatusCode::OK, &sell_form(&ctx))
}

/// Lists a ticket with its details, then uploads its file (when one was chosen). The file is
/// checked first, so that a file the API would refuse does not leave a listing without it.
async fn create_ticket(
    State(state): State<AppState>,
    PostedMultipart { ctx, parts }: PostedMultipart,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/tickets/new") {
        return redirect;
    }
    let form = TicketForm::from_fields(&parts.fields);
    let had_file = parts.file("file").is_some();
    let errors = check_ticket_form(&form, &parts, &ctx.currency);
    let input = match form.for_create(&ctx.currency) {
        Ok(input) if errors.is_empty() => input,
        _ => return refused_form(&ctx, "/tickets/new", &form, errors, None, had_file),
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
        let (errors, banner) = FieldErrors::from_api(&reply.errors(), &TICKET_FIELDS);
        return refused_form(&ctx, "/tickets/new", &form, errors, banner, had_file);
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
    let to = format!("/tickets/{}", ticket.id);
    ctx.redirect_notice(
        &to,
        "Your ticket is listed: buyers can find it now. You can edit it until someone reserves it.",
    )
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
    // Whose reservation it is, asked only when someone signed in, not its owner, looks at a
    // reserved ticket: the page of a ticket on sale costs no more than before.
    let own_order = if view.state == TicketState::Reserved && ctx.user.is_some() && !view.is_owner {
        own_reservation(&state, &ctx, ticket.id.as_str()).await
    } else {
        None
    };
    page(
        StatusCode::OK,
        &TicketPage {
            layout: ctx.layout(view.title.clone()),
            ticket: view,
            own_order,
            reservation: minutes_text(state.settings.reservation_window),
            sign_in: auth_path("signin", &format!("/tickets/{}", ticket.id)),
            sign_up: auth_path("signup", &format!("/tickets/{}", ticket.id)),
        },
    )
}

/// The signed-in buyer's own reservation of the ticket `ticket_id`: their open order of it that
/// they can still pay, or whose payment is being confirmed (`GET /api/orders`, the caller's
/// orders). `None` when they hold none, or when their orders cannot be read: the page is then
/// shown as to anyone else.
async fn own_reservation(state: &AppState, ctx: &Ctx, ticket_id: &str) -> Option<OrderView> {
    let orders = match state.api.get(&ctx.caller, "/api/orders").await {
        Ok(reply) if reply.ok() => reply.parse::<Vec<Order>>(),
        Ok(reply) => {
            tracing::debug!(
                status = reply.status,
                "GET /api/orders refused the caller's orders"
            );
            return None;
        }
        Err(err) => {
            tracing::warn!(%err, "the caller's orders could not be read");
            return None;
        }
    };
    let orders = match orders {
        Ok(orders) => orders,
        Err(err) => {
            tracing::warn!(%err, "GET /api/orders answered orders that do not parse");
            return None;
        }
    };
    let now = chrono::Utc::now();
    orders
        .iter()
        .filter(|order| order.ticket.id.as_str() == ticket_id)
        .map(|order| OrderView::of(order, &ctx.currency, now))
        .find(|view| view.payable || view.authorized)
}

/// A window for people: "15 minutes", "1 minute", "90 seconds".
fn minutes_text(window: std::time::Duration) -> String {
    let secs = window.as_secs();
    match (secs / 60, secs % 60) {
        (1, 0) => "1 minute".to_owned(),
        (m, 0) => format!("{m} minutes"),
        _ => format!("{secs} seconds"),
    }
}

/// The ticket if the signed-in person owns it, or the page to show instead.
async fn fetch_own_ticket(state: &AppState, ctx: &Ctx, id: &str) -> Result<Ticket, Response> {
    let ticket = fetch_ticket(state, ctx, id).await?;
    if owns(ctx.user.as_ref(), &ticket) {
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
    let mut form_page = edit_form(&ctx, &ticket);
    if ticket.order_id.is_some() && form_page.layout.error.is_none() {
        form_page.layout.error = Some("Cannot edit a reserved ticket".into());
    }
    page(StatusCode::OK, &form_page)
}

/// Saves an edit: title and price, the details that changed, then the file (when one was
/// chosen).
async fn update_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    PostedMultipart { ctx, parts }: PostedMultipart,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/tickets/{id}/edit")) {
        return redirect;
    }
    let current = match fetch_own_ticket(&state, &ctx, &id).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    let to = format!("/tickets/{}/edit", current.id);
    let form = TicketForm::from_fields(&parts.fields);
    let had_file = parts.file("file").is_some();
    let errors = check_ticket_form(&form, &parts, &ctx.currency);
    let input = match form.for_update(&current, &ctx.currency) {
        Ok(input) if errors.is_empty() => input,
        _ => return refused_form(&ctx, &to, &form, errors, None, had_file),
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
        _ => {
            let (errors, banner) = FieldErrors::from_api(&reply.errors(), &TICKET_FIELDS);
            return refused_form(&ctx, &to, &form, errors, banner, had_file);
        }
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
    ctx.redirect_notice(
        &format!("/tickets/{}", ticket.id),
        "Your changes are saved.",
    )
}

/// Reserves the ticket (an order) and goes to the order to pay; a refusal goes back to the
/// ticket with the reason, except that a buyer who already holds the ticket goes to their
/// order.
async fn purchase(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, .. }: Posted,
) -> Response {
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let ticket_path = format!("/tickets/{id}");
    if let Some(redirect) = ctx.sign_in_first(&ticket_path) {
        return redirect;
    }
    let reply = match state
        .api
        .post(&ctx.caller, "/api/orders", json!({"ticketId": id}))
        .await
    {
        Ok(reply) => reply,
        Err(err) => match err.retry_after_secs {
            Some(secs) => {
                tracing::debug!(%err, "order to be tried again later");
                return retry_later(ctx.redirect_error(&ticket_path, BUY_LATER), secs);
            }
            None => return ctx.unavailable(&err),
        },
    };
    if reply.ok() {
        return match serde_json::from_value::<Order>(reply.json) {
            Ok(order) => ctx.redirect_notice(
                &format!("/orders/{}", order.id),
                format!(
                    "The ticket is reserved for you for {}. Pay before the time runs out to make it yours.",
                    minutes_text(state.settings.reservation_window)
                ),
            ),
            Err(err) => ctx.unreadable("POST /api/orders answered an order", &err),
        };
    }
    // Refused because an open order holds the ticket: when it is the buyer's own (a second
    // click, a page opened before), their order rather than the refusal.
    if reply.errors().iter().any(|e| e.message == TAKEN)
        && let Some(order) = own_reservation(&state, &ctx, id).await
    {
        let notice = if order.authorized {
            "This ticket is already reserved for you, and your payment is being confirmed."
        } else {
            "This ticket is already reserved for you. Pay before the time runs out to make it yours."
        };
        return ctx.redirect_notice(&format!("/orders/{}", order.id), notice);
    }
    let message = match reply.status {
        404 => "This ticket is no longer available.".to_owned(),
        _ => reply.message(),
    };
    ctx.redirect_error(&ticket_path, message)
}

/// The orders service's refusal of an order for a ticket an open order holds (its words, in
/// the contract's list of `POST /api/orders` refusals).
const TAKEN: &str = "Ticket is already reserved";

/// A redirect for a request the API asked to repeat later (503 with `Retry-After`), with the
/// delay passed on.
fn retry_later(mut response: Response, retry_after_secs: u64) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs.max(1)),
    );
    response
}

/// The banner for an order the API asked to repeat later: the ticket was listed a moment ago
/// and has not reached the orders service yet. Not an outage page.
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

/// The order page; `paid` when the address says a payment was submitted (`?paid=1`): see
/// [`OrderPage::new`].
fn order_page_for(state: &AppState, ctx: &Ctx, order: &Order, paid: bool) -> OrderPage {
    let view = OrderView::of(order, &ctx.currency, chrono::Utc::now());
    OrderPage::new(
        ctx.layout(format!("Order: {}", view.ticket_title)),
        view,
        paid,
        state.settings.stripe_publishable_key.clone(),
    )
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
    let mut order_page = order_page_for(&state, &ctx, &order, paid);
    order_page.file = file_link(&state, &ctx, &order).await;
    order_response(StatusCode::OK, &order_page)
}

async fn pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, form }: Posted,
) -> Response {
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let order_path = format!("/orders/{id}");
    if let Some(redirect) = ctx.sign_in_first(&order_path) {
        return redirect;
    }
    let body = json!({"orderId": id, "token": field(&form, "token")});
    let reply = match state.api.post(&ctx.caller, "/api/payments", body).await {
        Ok(reply) => reply,
        Err(err) => match err.retry_after_secs {
            Some(secs) => {
                tracing::debug!(%err, "payment to be tried again later");
                return retry_later(ctx.redirect_error(&order_path, PAY_LATER), secs);
            }
            None => return ctx.unavailable(&err),
        },
    };
    // 201: the order is complete; 202: the outcome is still being decided. Either way the
    // order page shows where the order stands: confirming (refreshing itself) while its card
    // is authorised, payable again while it has no payment (see `OrderPage::new`).
    if reply.ok() {
        return see_other(&format!("{order_path}?paid=1"));
    }
    ctx.redirect_error(&order_path, reply.message())
}

/// The banner for a pay request the API asked to repeat later (503 with `Retry-After`): the
/// order was created a moment ago and has not reached the payments service yet, or the
/// provider is briefly unavailable. Not an outage page.
const PAY_LATER: &str = "We could not take your payment just yet. Please try again in a moment.";

/// "Cancel reservation?": the confirm step before an order is cancelled.
async fn cancel_page(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Some(redirect) = ctx.sign_in_first(&format!("/orders/{id}")) {
        return redirect;
    }
    let order = match fetch_order(&state, &ctx, &id).await {
        Ok(order) => order,
        Err(response) => return response,
    };
    let view = OrderView::of(&order, &ctx.currency, chrono::Utc::now());
    if !view.payable {
        return see_other(&format!("/orders/{}", order.id));
    }
    page(
        StatusCode::OK,
        &ConfirmPage {
            layout: ctx.layout("Cancel reservation"),
            heading: format!("Cancel your reservation of “{}”?", view.ticket_title),
            message: "The ticket goes back on sale at once and someone else may buy it.".to_owned(),
            action: format!("/orders/{}/cancel", order.id),
            confirm: "Yes, cancel my reservation".to_owned(),
            back: format!("/orders/{}", order.id),
            back_label: "Keep it and pay".to_owned(),
        },
    )
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, .. }: Posted,
) -> Response {
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let order_path = format!("/orders/{id}");
    if let Some(redirect) = ctx.sign_in_first(&order_path) {
        return redirect;
    }
    let reply = match state
        .api
        .delete(&ctx.caller, &format!("/api/orders/{id}"))
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if !reply.ok() {
        return ctx.redirect_error(&order_path, reply.message());
    }
    // 204 also answers the cancel of an order that had already ended: the order tells how.
    match fetch_order(&state, &ctx, id).await {
        Ok(order) => match after_cancel(&order) {
            Ok(notice) => ctx.redirect_notice(&order_path, notice),
            Err(error) => ctx.redirect_error(&order_path, error),
        },
        // The cancel was taken; the order page shows where the order stands (or the outage).
        Err(_) => see_other(&order_path),
    }
}

/// What the buyer is told after the API took a cancel (204), from the order as it stands
/// then: the confirmation only when the buyer's cancel is what ended it. The API answers 204
/// for an order that was cancelled before too — expired, or refused by the tickets service
/// while the confirm page was open — and that is not the buyer's cancellation.
fn after_cancel(order: &Order) -> Result<&'static str, &'static str> {
    use bt_contract::events::{CancelReason, OrderStatus};
    match (order.status, order.cancel_reason) {
        (OrderStatus::Cancelled, Some(CancelReason::Buyer)) => {
            Ok("Your reservation is cancelled and the ticket is back on sale. Nothing was charged.")
        }
        (OrderStatus::Created | OrderStatus::AwaitingPayment, _) => {
            Err("Your reservation could not be cancelled. Please try again.")
        }
        _ => Err("This reservation had already ended, so there was nothing to cancel."),
    }
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

/// A GET of a ticket's purchase address: the ticket.
async fn to_ticket(Path(id): Path<String>) -> Response {
    match segment(&id) {
        Some(id) => see_other(&format!("/tickets/{id}")),
        None => see_other("/"),
    }
}

/// A GET of an order's pay address: the order.
async fn to_order(Path(id): Path<String>) -> Response {
    match segment(&id) {
        Some(id) => see_other(&format!("/orders/{id}")),
        None => see_other("/orders"),
    }
}

/// A GET of a "My tickets" form's address: "My tickets".
async fn to_my_tickets() -> Response {
    see_other("/tickets/mine")
}

/// Any other method on a page's address: a page, never the API's JSON.
async fn method_not_allowed(ctx: Ctx) -> Response {
    ctx.error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "This page cannot do that",
        "The address exists, but not for this kind of request. Open it from a link or form on the site.",
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
