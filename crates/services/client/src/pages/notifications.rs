//! The signed-in user's notifications: the bell in the header (its unread count) and the
//! notifications page (newest first, a page at a time, marking them read).
//!
//! **The bell's count** comes from `GET /api/notifications?limit=1` (its `unread`), asked once
//! per page: when [`Ctx`](super::Ctx) is read for a `GET` by a signed-in user — except on
//! routes that render no header (the ticket download) and on the notifications page, whose own
//! list answers the count. Form posts do not ask (they answer with a redirect to a page that
//! does; a refused form shown again has the bell without its count). The bell can do without:
//! if the notifications service fails or takes longer than [`BELL_TIMEOUT`], the page is
//! rendered with the bell and no count — never an error page because of it.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{AppState, Ctx, Posted, page, see_other, segment};
use crate::api::{Api, Caller, NotificationList};
use crate::views::{NotificationView, NotificationsPage};

/// Notifications per page.
pub const PAGE_SIZE: usize = 20;

/// How long a page waits for the bell's count before it is rendered without it.
pub const BELL_TIMEOUT: Duration = Duration::from_secs(2);

/// The caller's unread notifications, or `None` when the notifications service does not tell
/// (down, slow, or the session is no longer accepted): the header then shows no count.
pub(super) async fn unread_count(api: &Api, caller: &Caller) -> Option<i64> {
    let reply = api
        .get_query_within(
            caller,
            "/api/notifications",
            &[("limit", "1")],
            BELL_TIMEOUT,
        )
        .await;
    match reply {
        Ok(reply) if reply.ok() => match reply.parse::<NotificationList>() {
            Ok(list) => Some(list.unread),
            Err(err) => {
                tracing::warn!(%err, "GET /api/notifications answered a list that does not parse");
                None
            }
        },
        Ok(reply) => {
            tracing::debug!(status = reply.status, "no unread count for the header");
            None
        }
        Err(err) => {
            tracing::warn!(%err, "no unread count for the header");
            None
        }
    }
}

/// The `before` of a page (`?before=`): a notification's id, or nothing for the first page.
/// `Err` when it cannot be one.
fn page_start(query: &HashMap<String, String>) -> Result<Option<&str>, ()> {
    match query.get("before").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(id) => segment(id).map(Some).ok_or(()),
    }
}

/// The notifications page's address, from `before`.
fn page_path(before: Option<&str>) -> String {
    match before {
        Some(id) => format!("/notifications?before={id}"),
        None => "/notifications".to_owned(),
    }
}

/// The page of notifications before `before` (with the banner a flash brought).
async fn render_notifications(state: &AppState, ctx: &Ctx, before: Option<&str>) -> Response {
    let limit = PAGE_SIZE.to_string();
    let reply = match state
        .api
        .get_query(
            &ctx.caller,
            "/api/notifications",
            &[("limit", &limit), ("before", before.unwrap_or_default())],
        )
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    match reply.status {
        200 => {}
        401 => return see_other(&super::sign_in_path(&page_path(before))),
        // `before` is not the id of a notification.
        400 => return ctx.not_found(),
        status => {
            return ctx.unavailable(&crate::api::Unavailable::new(format!(
                "GET /api/notifications answered HTTP {status}"
            )));
        }
    }
    let list = match reply.parse::<NotificationList>() {
        Ok(list) => list,
        Err(err) => return ctx.unreadable("GET /api/notifications answered a list", &err),
    };
    let older = (list.notifications.len() >= PAGE_SIZE)
        .then(|| list.notifications.last())
        .flatten()
        .map(|last| page_path(Some(last.id.as_str())));
    let mut layout = ctx.layout("Notifications");
    // This page's list tells the count: the header shows it without asking again.
    layout.unread = Some(list.unread);
    page(
        StatusCode::OK,
        &NotificationsPage {
            layout,
            notifications: list
                .notifications
                .iter()
                .map(NotificationView::of)
                .collect(),
            unread: list.unread,
            before: before.map(str::to_owned),
            older,
        },
    )
}

pub(super) async fn notifications_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(before) = page_start(&query) else {
        return ctx.not_found();
    };
    if let Some(redirect) = ctx.sign_in_first(&page_path(before)) {
        return redirect;
    }
    render_notifications(&state, &ctx, before).await
}

/// "Mark all as read" (`POST /api/notifications/read {}`), or one notification's "Mark as
/// read" (the form's `id`: `{"ids": [id]}`); then back to the page the form was on.
pub(super) async fn mark_read(
    State(state): State<AppState>,
    Posted { ctx, form }: Posted,
) -> Response {
    let Ok(before) = page_start(&form) else {
        return ctx.not_found();
    };
    if let Some(redirect) = ctx.sign_in_first(&page_path(before)) {
        return redirect;
    }
    let one = match form.get("id").map(String::as_str) {
        None | Some("") => None,
        Some(id) => match segment(id) {
            Some(id) => Some(id),
            None => return ctx.not_found(),
        },
    };
    let body = match one {
        Some(id) => json!({"ids": [id]}),
        None => json!({}),
    };
    let reply = match state
        .api
        .post(&ctx.caller, "/api/notifications/read", body)
        .await
    {
        Ok(reply) => reply,
        Err(err) => return ctx.unavailable(&err),
    };
    if reply.status == 401 {
        return see_other(&super::sign_in_path(&page_path(before)));
    }
    let to = page_path(before);
    if !reply.ok() {
        return ctx.redirect_error(&to, reply.message());
    }
    match one {
        Some(id) => see_other(&format!("{to}#notification-{id}")),
        None => ctx.redirect_notice(&to, "All notifications are marked as read."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_starts_before_a_notification_id_or_at_the_newest() {
        let query = |before: Option<&str>| {
            before
                .map(|b| HashMap::from([("before".to_owned(), b.to_owned())]))
                .unwrap_or_default()
        };
        let id = "01900000-0000-7000-8000-000000000000";
        assert_eq!(page_start(&query(None)), Ok(None));
        assert_eq!(page_start(&query(Some(""))), Ok(None));
        assert_eq!(page_start(&query(Some(id))), Ok(Some(id)));
        assert_eq!(page_start(&query(Some("../alerts"))), Err(()));
        assert_eq!(page_start(&query(Some("a&limit=100"))), Err(()));
        assert_eq!(page_path(Some(id)), format!("/notifications?before={id}"));
        assert_eq!(page_path(None), "/notifications");
    }
}
