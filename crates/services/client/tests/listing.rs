//! The listing against a fake API: how many tickets a page shows and of what, clearing a
//! search, and paging forward and back through the API's cursors.

use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;

mod common;

/// 30 tickets, newest first, of which those whose title contains "Gala" match `gala`.
fn tickets() -> Vec<Value> {
    (0..30)
        .map(|i| {
            let title = if i % 10 == 0 {
                format!("Opera Gala {i}")
            } else {
                format!("Show {i}")
            };
            json!({"id": format!("00000000-0000-7000-8000-{i:012}"), "title": title,
                "price": 20, "userId": "seller", "version": 0, "orderId": null, "sold": false,
                "venue": null, "startsAt": null, "faceValue": null, "forSale": true,
                "hasFile": false})
        })
        .collect()
}

/// A refusal of the tickets service: `{"errors": [{message, field}]}`.
fn refused(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"errors": [{"message": message, "field": field}]})),
    )
        .into_response()
}

/// `GET /api/tickets` as the tickets service answers it: `limit` after `cursor` (the id of the
/// last ticket of the previous page), `q` a case-insensitive title search, `Link: rel="next"`
/// when there are more; a search over 200 characters or a cursor that is not a ticket id is
/// refused in its words.
async fn list(Query(query): Query<HashMap<String, String>>) -> Response {
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(50);
    let q = query.get("q").cloned().unwrap_or_default().to_lowercase();
    if q.chars().count() > 200 {
        return refused("q", "q must be at most 200 characters");
    }
    if query
        .get("cursor")
        .is_some_and(|c| uuid::Uuid::parse_str(c).is_err())
    {
        return refused("cursor", "cursor is not valid");
    }
    let all: Vec<Value> = tickets()
        .into_iter()
        .filter(|t| t["title"].as_str().unwrap().to_lowercase().contains(&q))
        .collect();
    let start = match query.get("cursor").filter(|c| !c.is_empty()) {
        Some(cursor) => all.iter().position(|t| t["id"] == *cursor).unwrap() + 1,
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let mut response = Json(&page).into_response();
    if start + limit < all.len() {
        let last = page.last().unwrap()["id"].as_str().unwrap();
        let link = format!("</api/tickets?limit={limit}&cursor={last}>; rel=\"next\"");
        response
            .headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    response
}

fn api() -> Router {
    Router::new().route("/api/tickets", get(list))
}

fn href<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..at];
    let href = tag.split("href=\"").nth(1)?;
    href.split('"').next()
}

fn decoded(href: &str) -> String {
    href.replace("&#38;", "&").replace("&amp;", "&")
}

#[tokio::test]
async fn the_listing_counts_its_tickets_and_pages_forward_and_back() {
    let browser = common::Browser::new(api(), None).await;

    let first = browser.get("/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.text.contains("Tickets 1–24 on sale."),
        "{}",
        first.text
    );
    assert!(first.text.contains("Show 1<"));
    assert!(
        href(&first.text, "previous-page").is_none(),
        "no page before the first"
    );

    let next = decoded(href(&first.text, "next-page").expect("a next page"));
    let second = browser.get(&next).await;
    assert!(
        second.text.contains("Tickets 25–30 on sale."),
        "{}",
        second.text
    );
    assert!(second.text.contains("Show 29<") && !second.text.contains("Show 1<"));
    assert!(href(&second.text, "next-page").is_none(), "the last page");

    let previous = decoded(href(&second.text, "previous-page").expect("a previous page"));
    let back = browser.get(&previous).await;
    assert!(back.text.contains("Tickets 1–24 on sale."), "{}", back.text);
    assert!(back.text.contains("Show 1<"));
    assert!(href(&back.text, "previous-page").is_none());

    // A trail that is not one of cursors is not followed.
    let forged = browser.get("/?q=&trail=%3Cscript%3E").await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_search_says_how_many_match_and_can_be_cleared() {
    let browser = common::Browser::new(api(), None).await;

    let found = browser.get("/?q=gala").await;
    assert!(
        found.text.contains("<h1>Results for “gala”</h1>"),
        "{}",
        found.text
    );
    assert!(
        found
            .text
            .contains("3 tickets match “gala”. <a href=\"/\" id=\"clear-search\">Clear search</a>"),
        "{}",
        found.text
    );
    let one = browser.get("/?q=gala+20").await;
    assert!(
        one.text.contains("1 ticket matches “gala 20”."),
        "{}",
        one.text
    );
    let none = browser.get("/?q=jazz").await;
    assert!(none.text.contains(r#"id="clear-search""#));
    assert!(none.text.contains("No tickets match “jazz” right now."));
    let all = browser.get("/").await;
    assert!(!all.text.contains("clear-search"));
    assert!(all.text.contains("<h1>Tickets on sale</h1>"));
}

#[tokio::test]
async fn an_out_of_date_page_link_shows_the_first_page_with_a_notice() {
    let browser = common::Browser::new(api(), None).await;

    let page = browser.get("/?q=&cursor=not-a-ticket&trail=-").await;

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        common::element(&page.text, "page-notice"),
        Some(
            "The page you followed is out of date, so the listing starts again from the first page."
        ),
        "{}",
        page.text
    );
    assert!(!page.text.contains("cursor is not valid"), "{}", page.text);
    assert!(
        !page.text.contains("No tickets are on sale"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Tickets 1–24 on sale."), "{}", page.text);
    assert!(page.text.contains("Show 1<"));
    assert!(
        href(&page.text, "previous-page").is_none(),
        "the first page has none before it"
    );
    let next = decoded(href(&page.text, "next-page").expect("a next page"));
    let second = browser.get(&next).await;
    assert!(
        second.text.contains("Tickets 25–30 on sale."),
        "{}",
        second.text
    );
}

#[tokio::test]
async fn a_search_the_api_refuses_is_worded_for_people_and_claims_no_results() {
    let browser = common::Browser::new(api(), None).await;
    let long = "x".repeat(300);

    let page = browser.get(&format!("/?q={long}")).await;

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        common::element(&page.text, "page-error"),
        Some("Search must be at most 200 characters"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("No tickets match"), "{}", page.text);
    assert!(!page.text.contains(r#"id="alert-offer""#));
}
