//! The seller's payouts: the balance, every sale's credit (price, fee, amount) a page at a time
//! (`?before=`, the API's `next`) under the totals of all of them, and setting up the payout
//! account.
//!
//! **Where "Set up payouts" may send the browser**: `POST /api/payouts/account` answers a URL.
//! The client follows it only when it is a path of this site (the development provider answers
//! `/payouts`; checked like `next` after sign-in) or a page of Stripe Connect's onboarding
//! (`https://connect.stripe.com/...`, where Stripe's Express account links point). Anything
//! else is refused with an error page and logged: the client never redirects to a host it does
//! not know, whatever the API says. (There is no setting for another host: a provider with
//! another onboarding host would be added here, with its test.)

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{AppState, Ctx, Posted, is_local_path, page, see_other, sign_in_path};
use crate::api::{PayoutAccountLink, Payouts, Unavailable};
use crate::views::{PayoutsPage, payouts_path};

/// The one external origin "Set up payouts" may lead to.
pub const STRIPE_CONNECT: &str = "https://connect.stripe.com/";

/// Where the browser may be sent after `POST /api/payouts/account`: a local path, or a page of
/// [`STRIPE_CONNECT`] (printable ASCII, no backslash: the host cannot be read otherwise).
pub fn onboarding_target(url: &str) -> Option<&str> {
    if is_local_path(url) {
        return Some(url);
    }
    let rest = url.strip_prefix(STRIPE_CONNECT)?;
    rest.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'\\')
        .then_some(url)
}

/// What the return from Stripe's onboarding says (`?onboarding=`).
fn onboarding_notice(value: Option<&String>) -> Option<String> {
    let text = match value.map(String::as_str)? {
        "done" => {
            "Thanks — your payout details were sent. The status below updates once the provider has checked them."
        }
        "refresh" => "The setup link expired. Press the button to continue where you left off.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// The page of the caller's payouts older than entry `before` (`None`: the newest), or the
/// page to show instead.
async fn fetch_payouts(
    state: &AppState,
    ctx: &Ctx,
    before: Option<&str>,
) -> Result<Payouts, Response> {
    let reply = match state
        .api
        .get_query(
            &ctx.caller,
            "/api/payouts",
            &[("before", before.unwrap_or_default())],
        )
        .await
    {
        Ok(reply) => reply,
        Err(err) => return Err(ctx.unavailable(&err)),
    };
    match reply.status {
        200 => reply
            .parse()
            .map_err(|err| ctx.unreadable("GET /api/payouts answered payouts", &err)),
        401 => Err(see_other(&sign_in_path(&payouts_path(before)))),
        // `before` is not an entry's id: no such page (as for notifications).
        400 => {
            tracing::debug!(message = %reply.message(), "GET /api/payouts refused the page");
            Err(ctx.not_found())
        }
        status => Err(ctx.unavailable(&Unavailable::new(format!(
            "GET /api/payouts answered HTTP {status}"
        )))),
    }
}

/// The payouts page: one page of entries, the newest or those older than `?before=` (an
/// entry's id, as the API's `next` gave it).
pub(super) async fn payouts_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let before = query
        .get("before")
        .map(String::as_str)
        .filter(|b| !b.is_empty());
    if let Some(redirect) = ctx.sign_in_first(&payouts_path(before)) {
        return redirect;
    }
    let payouts = match fetch_payouts(&state, &ctx, before).await {
        Ok(payouts) => payouts,
        Err(response) => return response,
    };
    // The banner a flash brought (a refused setup), or the word of Stripe's return.
    let mut layout = ctx.layout("Payouts");
    if let Some(notice) = onboarding_notice(query.get("onboarding")) {
        layout.notice = Some(notice);
    }
    page(
        StatusCode::OK,
        &PayoutsPage::new(layout, &payouts, before, &ctx.currency),
    )
}

/// "Set up payouts": asks the API for the onboarding page and sends the browser there.
pub(super) async fn set_up_payouts(
    State(state): State<AppState>,
    Posted { ctx, .. }: Posted,
) -> Response {
    if let Some(redirect) = ctx.sign_in_first("/payouts") {
        return redirect;
    }
    let reply = match state
        .api
        .post(&ctx.caller, "/api/payouts/account", json!({}))
        .await
    {
        Ok(reply) => reply,
        Err(err) => {
            // The provider is down, or payouts are not configured on this server.
            tracing::warn!(%err, "payout account setup failed");
            return ctx.redirect_error(
                "/payouts",
                "Payout setup is not available right now. Please try again later.",
            );
        }
    };
    if reply.status == 401 {
        return see_other("/auth/signin?next=/payouts");
    }
    if !reply.ok() {
        return ctx.redirect_error("/payouts", reply.message());
    }
    let link = match reply.parse::<PayoutAccountLink>() {
        Ok(link) => link,
        Err(err) => return ctx.unreadable("POST /api/payouts/account answered a link", &err),
    };
    match onboarding_target(&link.url) {
        Some(target) => see_other(target),
        None => {
            tracing::error!(url = %link.url, "the payout setup link is not one the client follows");
            ctx.error_page(
                StatusCode::BAD_GATEWAY,
                "Payout setup is not available",
                "We could not open the payout setup page. Please try again later.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_leads_only_to_this_site_or_stripe_connect() {
        let cases = [
            ("/payouts", true),
            ("/payouts?onboarding=done", true),
            ("https://connect.stripe.com/setup/e/acct_123/AbC", true),
            ("https://connect.stripe.com/", true),
            ("https://connect.stripe.com.evil.test/setup", false),
            ("https://connect.stripe.com@evil.test/", false),
            ("https://connect.stripe.com/\\evil.test", false),
            ("https://connect.stripe.com/a b", false),
            ("http://connect.stripe.com/setup", false),
            ("https://dashboard.stripe.com/", false),
            ("https://evil.test/", false),
            ("//evil.test", false),
            ("javascript:alert(1)", false),
            ("", false),
        ];
        for (url, followed) in cases {
            assert_eq!(onboarding_target(url).is_some(), followed, "{url}");
        }
    }

    #[test]
    fn only_the_known_onboarding_notices_are_shown() {
        assert!(onboarding_notice(Some(&"done".to_owned())).is_some());
        assert!(onboarding_notice(Some(&"refresh".to_owned())).is_some());
        assert_eq!(onboarding_notice(Some(&"<b>".to_owned())), None);
    }
}
