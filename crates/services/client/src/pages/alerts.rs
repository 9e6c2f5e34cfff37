//! Ticket alerts: the signed-in user's saved searches (`/alerts`: the list, the form to add one,
//! a Delete button each), and "Alert me" on a search that found nothing, which posts the same
//! form. Every ticket that goes on sale matching an alert is notified in the app and by email
//! (the notifications service decides; this page only keeps the list).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{AppState, Ctx, Posted, page, see_other, segment, sign_in_path};
use crate::api::Alert;
use crate::flash::Flash;
use crate::forms::{ALERT_FIELDS, AlertForm};
use crate::views::{AlertView, AlertsPage, FieldErrors, search_path};

/// The caller's alerts (`GET /api/alerts`, newest first), or the page to show instead.
async fn fetch_alerts(state: &AppState, ctx: &Ctx) -> Result<Vec<Alert>, Response> {
    match state.api.get(&ctx.caller, "/api/alerts").await {
        Ok(reply) if reply.ok() => reply
            .parse()
            .map_err(|err| ctx.unreadable("GET /api/alerts answered alerts", &err)),
        Ok(reply) if reply.status == 401 => Err(see_other(&sign_in_path("/alerts"))),
        Ok(reply) => Err(ctx.unavailable(&crate::api::Unavailable::new(format!(
            "GET /api/alerts answered HTTP {}",
            reply.status
        )))),
        Err(err) => Err(ctx.unavailable(&err)),
    }
}

/// The alerts page: the list, and the form as a flash brought it back (as typed, with its
/// errors) or empty.
fn alerts_page(ctx: &Ctx, alerts: &[Alert]) -> AlertsPage {
    AlertsPage {
        layout: ctx.layout("Ticket alerts"),
        alerts: alerts
            .iter()
            .map(|a| AlertView::of(a, &ctx.currency))
            .collect(),
        form: ctx
            .flash_values()
            .map(|values| AlertForm::from_fields(&values))
            .unwrap_or_default(),
        errors: ctx.flash_errors(),
    }
}

pub(super) async fn alerts(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/alerts") {
        return redirect;
    }
    let alerts = match fetch_alerts(&state, &ctx).await {
        Ok(alerts) => alerts,
        Err(response) => return response,
    };
    page(StatusCode::OK, &alerts_page(&ctx, &alerts))
}

/// A new alert (`POST /api/alerts {q, maxPrice?}`), from the alerts page or from "Alert me" on
/// a search without results; then the alerts page with it. A refusal is shown on the alerts
/// page: the form as typed, the API's field errors next to their fields, the rest (too many
/// alerts, the same search twice) in the banner.
pub(super) async fn create_alert(
    State(state): State<AppState>,
    Posted { ctx, form }: Posted,
) -> Response {
    let alert_form = AlertForm::from_fields(&form);
    // Signed out meanwhile: back to the search after signing in, where "Alert me" is.
    let back = if alert_form.q.is_empty() {
        "/alerts".to_owned()
    } else {
        search_path(&alert_form.q)
    };
    if let Some(redirect) = ctx.sign_in_first(&back) {
        return redirect;
    }
    let back_to_form = |fields: FieldErrors, banner: Option<String>| {
        let mut flash = Flash::to("/alerts")
            .value("q", &alert_form.q)
            .value("maxPrice", &alert_form.max_price);
        flash.fields = fields.into_map();
        flash.error = banner;
        ctx.redirect("/alerts", &flash)
    };
    if !alert_form.max_price.is_empty()
        && let Err(message) =
            crate::forms::price_text(&alert_form.max_price, "Maximum price", &ctx.currency)
    {
        let mut errors = FieldErrors::default();
        errors.set("maxPrice", message);
        return back_to_form(errors, None);
    }
    let reply = match state
        .api
        .post(
            &ctx.caller,
            "/api/alerts",
            json!(alert_form.input(&ctx.currency)),
        )
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if reply.status == 401 {
        return see_other(&sign_in_path(&back));
    }
    if reply.ok() {
        return match reply.parse::<Alert>() {
            Ok(alert) => ctx.redirect_notice(
                "/alerts",
                format!(
                    "Alert set: we will let you know when a ticket for “{}” is listed.",
                    alert.q
                ),
            ),
            Err(err) => ctx.unreadable("POST /api/alerts answered an alert", &err),
        };
    }
    let (errors, banner) = FieldErrors::from_api(&reply.errors(), &ALERT_FIELDS);
    back_to_form(errors, banner)
}

/// An alert's Delete button (`DELETE /api/alerts/:id`); then the alerts page.
pub(super) async fn delete_alert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { ctx, .. }: Posted,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/alerts") {
        return redirect;
    }
    let Some(id) = segment(&id) else {
        return ctx.not_found();
    };
    let reply = match state
        .api
        .delete(&ctx.caller, &format!("/api/alerts/{id}"))
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    match reply.status {
        200..=299 => ctx.redirect_notice(
            "/alerts",
            "Alert deleted: you will get no more notices from it.",
        ),
        401 => see_other(&sign_in_path("/alerts")),
        // Deleted already (another tab, a second click), or not the caller's.
        404 => ctx.redirect_error("/alerts", "This alert no longer exists."),
        _ => ctx.redirect_error("/alerts", reply.message()),
    }
}
