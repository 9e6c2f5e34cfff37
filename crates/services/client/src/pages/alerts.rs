//! Ticket alerts: the signed-in user's saved searches (`/alerts`: the list, the form to add one,
//! a Delete button each), and "Alert me" on a search that found nothing, which posts the same
//! form. Every ticket that goes on sale matching an alert is notified in the app and by email
//! (the notifications service decides; this page only keeps the list).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{AppState, Ctx, FormData, page, see_other, segment, sign_in_path};
use crate::api::Alert;
use crate::forms::{ALERT_FIELDS, AlertForm};
use crate::views::{AlertView, AlertsPage, FieldErrors, search_path};

/// What a redirect back to the alerts page says happened (`?done=`, and for a new alert its
/// id in `?alert=`): fixed texts and the alert's own search, nothing else from the URL.
fn done_notice(query: &HashMap<String, String>, alerts: &[Alert]) -> Option<String> {
    match query.get("done").map(String::as_str)? {
        "created" => {
            let created = query
                .get("alert")
                .and_then(|id| alerts.iter().find(|a| a.id.as_str() == id));
            Some(match created {
                Some(alert) => format!(
                    "Alert set: we will let you know when a ticket for “{}” is listed.",
                    alert.q
                ),
                None => {
                    "Alert set: we will let you know when a matching ticket is listed.".to_owned()
                }
            })
        }
        "deleted" => Some("Alert deleted: you will get no more notices from it.".to_owned()),
        _ => None,
    }
}

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

/// The alerts page: the list, and the form as typed with its errors.
fn alerts_page(ctx: &Ctx, alerts: &[Alert], form: AlertForm, errors: FieldErrors) -> AlertsPage {
    AlertsPage {
        layout: ctx.layout("Ticket alerts"),
        alerts: alerts
            .iter()
            .map(|a| AlertView::of(a, &ctx.currency))
            .collect(),
        form,
        errors,
    }
}

pub(super) async fn alerts(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/alerts") {
        return redirect;
    }
    let alerts = match fetch_alerts(&state, &ctx).await {
        Ok(alerts) => alerts,
        Err(response) => return response,
    };
    let mut alerts_page = alerts_page(&ctx, &alerts, AlertForm::default(), FieldErrors::default());
    alerts_page.layout.notice = done_notice(&query, &alerts);
    page(StatusCode::OK, &alerts_page)
}

/// A new alert (`POST /api/alerts {q, maxPrice?}`), from the alerts page or from "Alert me" on
/// a search without results; then the alerts page with it. A refusal is shown on the alerts
/// page: the form as typed, the API's field errors next to their fields, the rest (too many
/// alerts, the same search twice) in the banner.
pub(super) async fn create_alert(
    State(state): State<AppState>,
    ctx: Ctx,
    FormData(form): FormData,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
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
    let reply = match state
        .api
        .post(&ctx.caller, "/api/alerts", json!(alert_form.input()))
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
            Ok(alert) => see_other(&format!("/alerts?done=created&alert={}", alert.id)),
            Err(err) => ctx.unreadable("POST /api/alerts answered an alert", &err),
        };
    }
    let (errors, banner) = FieldErrors::from_api(&reply.errors(), &ALERT_FIELDS);
    let alerts = match fetch_alerts(&state, &ctx).await {
        Ok(alerts) => alerts,
        Err(response) => return response,
    };
    let mut alerts_page = alerts_page(&ctx, &alerts, alert_form, errors);
    alerts_page.layout.error = banner;
    page(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &alerts_page,
    )
}

/// An alert's Delete button (`DELETE /api/alerts/:id`); then the alerts page.
pub(super) async fn delete_alert(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    FormData(form): FormData,
) -> Response {
    if let Some(response) = ctx.form_refusal(&form) {
        return response;
    }
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
    let error = match reply.status {
        200..=299 => return see_other("/alerts?done=deleted"),
        401 => return see_other(&sign_in_path("/alerts")),
        // Deleted already (another tab, a second click), or not the caller's.
        404 => "This alert no longer exists.".to_owned(),
        _ => reply
            .errors()
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join(" "),
    };
    let alerts = match fetch_alerts(&state, &ctx).await {
        Ok(alerts) => alerts,
        Err(response) => return response,
    };
    let mut alerts_page = alerts_page(&ctx, &alerts, AlertForm::default(), FieldErrors::default());
    alerts_page.layout.error = Some(error);
    page(
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST),
        &alerts_page,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bt_contract::Millis;

    fn alert(id: &str, q: &str) -> Alert {
        Alert {
            id: id.into(),
            q: q.into(),
            max_price: None,
            created_at: Millis::now(),
        }
    }

    #[test]
    fn the_notice_names_the_new_alert_and_nothing_else_from_the_url() {
        let query = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>()
        };
        let alerts = [alert("a1", "opera"), alert("a2", "jazz")];
        assert_eq!(
            done_notice(&query(&[("done", "created"), ("alert", "a1")]), &alerts).as_deref(),
            Some("Alert set: we will let you know when a ticket for “opera” is listed.")
        );
        assert_eq!(
            done_notice(
                &query(&[("done", "created"), ("alert", "<b>hi</b>")]),
                &alerts
            )
            .as_deref(),
            Some("Alert set: we will let you know when a matching ticket is listed.")
        );
        assert!(done_notice(&query(&[("done", "deleted")]), &alerts).is_some());
        assert_eq!(done_notice(&query(&[("done", "<b>")]), &alerts), None);
        assert_eq!(done_notice(&query(&[]), &alerts), None);
    }
}
