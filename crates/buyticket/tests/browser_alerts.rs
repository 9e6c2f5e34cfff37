//! Ticket alerts and notifications in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`) driven through WebDriver (fantoccini) against `buyticket up`, which
//! runs the notifications service and, without `SMTP_URL`, writes its emails into
//! `<data-dir>/mail/*.eml`.
//!
//! B searches for "opera" → nothing on sale, "Alert me" → the alert is on `/alerts` → A lists
//! "Opera Gala" (over the HTTP API with A's session cookie) → B's header shows the bell with 1
//! unread within seconds → `/notifications` says "On sale now: Opera Gala" and links to the
//! ticket, which B follows → "Mark all as read" takes the badge away → an email for the alert
//! is in the mail directory → B deletes the alert.
//!
//! Screenshots go to `target/screenshots/`, or to `docs/screenshots/` with
//! `UPDATE_SCREENSHOTS=1`: `alert-me`, `alerts`, `alerts-phone`, `notifications-bell`,
//! `notifications`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;
use support::chromium::Session;
use support::{Process, poll};

/// The window of the desktop screenshots.
const DESKTOP: (u32, u32) = (1280, 800);

/// The window of the phone screenshot.
const PHONE: (u32, u32) = (390, 844);

impl Session {
    /// Clicks `css` and waits until the browser has left the page it was on (for a form
    /// whose redirect comes back to the same path).
    async fn click_and_leave(&self, css: &str) {
        let page = self.client.find(Locator::Css("body")).await.unwrap();
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while page.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "{css} did not lead anywhere");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .attr(name)
            .await
            .unwrap()
    }

    async fn screenshot_at(&self, name: &str, (width, height): (u32, u32)) {
        self.client.set_window_size(width, height).await.unwrap();
        self.screenshot(name).await;
    }
}

/// The emails in the mail directory of `up` whose text contains `needle`.
fn emails_with(mail: &Path, needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(mail) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|text| text.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_from_an_empty_search_notifies_in_the_header_the_page_and_by_email_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let marketplace = Process::start(
        &[
            "up",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "0")],
    );
    let session = Session::open(&marketplace.url, None).await;
    let s = &*session;
    s.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();

    // B searches for opera: nothing on sale, and the offer of an alert.
    s.sign_up("b@alerts.test").await;
    assert_eq!(
        s.attr("#bell", "aria-label").await.as_deref(),
        Some("Notifications"),
        "nothing unread yet"
    );
    assert!(!s.exists("#bell-badge").await);
    s.fill("#q", "opera").await;
    s.click(".search button[type=submit]").await;
    assert!(
        s.text("#no-results")
            .await
            .contains("No tickets match “opera” right now."),
        "{}",
        s.text("main").await
    );
    assert!(!s.exists("#tickets").await);
    assert_eq!(
        s.text("#alert-me").await,
        "Alert me when a ticket for “opera” is listed"
    );
    s.screenshot("alert-me").await;

    // "Alert me": the alert is on the alerts page.
    s.click("#alert-me").await;
    s.wait_path("/alerts").await;
    assert_eq!(
        s.text(".banner.notice").await,
        "Alert set: we will let you know when a ticket for “opera” is listed."
    );
    let alerts = s.text("#alerts").await;
    assert!(
        alerts.contains("“opera”") && alerts.contains("any price"),
        "{alerts}"
    );
    s.screenshot("alerts").await;
    s.screenshot_at("alerts-phone", PHONE).await;
    s.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();

    // A lists "Opera Gala" over the API, with A's session cookie.
    let seller = marketplace.client();
    let signed_up = seller
        .post(
            "/api/users/signup",
            &json!({"email": "a@alerts.test", "password": "password"}),
        )
        .await;
    assert_eq!(signed_up.status, 201, "{}", signed_up.text);
    let listed = seller
        .post(
            "/api/tickets",
            &json!({"title": "Opera Gala", "price": "45"}),
        )
        .await;
    assert_eq!(listed.status, 201, "{}", listed.text);
    let ticket = listed.json["id"].as_str().unwrap().to_owned();

    // Within seconds B's header shows the bell with 1 unread.
    s.goto("/").await;
    s.reload_until("#bell-badge", 10).await;
    assert_eq!(s.text("#bell-badge").await, "1");
    assert_eq!(
        s.attr("#bell", "aria-label").await.as_deref(),
        Some("Notifications, 1 unread")
    );
    s.screenshot("notifications-bell").await;

    // The notifications page says so and links to the ticket.
    s.click("#bell").await;
    s.wait_path("/notifications").await;
    let item = format!("#notifications a[href='/tickets/{ticket}']");
    assert_eq!(s.text(&item).await, "On sale now: Opera Gala");
    let unread = s.text("#notifications .notification.unread").await;
    assert!(
        unread.starts_with("NEW") || unread.starts_with("New"),
        "marked in words: {unread}"
    );
    assert!(unread.contains("Ticket alert"), "{unread}");
    s.screenshot("notifications").await;
    s.click(&item).await;
    s.wait_path(&format!("/tickets/{ticket}")).await;
    assert_eq!(s.text("#ticket-title").await, "Opera Gala");

    // Mark all as read: the badge is gone.
    s.goto("/notifications").await;
    s.click_and_leave("#mark-all-read").await;
    s.wait_path("/notifications").await;
    assert_eq!(
        s.text(".banner.notice").await,
        "All notifications are marked as read."
    );
    assert!(!s.exists("#bell-badge").await);
    assert_eq!(
        s.attr("#bell", "aria-label").await.as_deref(),
        Some("Notifications")
    );
    assert!(!s.exists("#notifications .notification.unread").await);
    s.goto("/").await;
    assert!(!s.exists("#bell-badge").await, "nor on other pages");

    // The alert's email is in the mail directory of `up`.
    let mail = data.path().join("mail");
    let emails = poll(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "the alert's email is written",
        || {
            let found = emails_with(&mail, "Subject: On sale now: Opera Gala");
            let seen = format!("no such email in {}", mail.display());
            async move {
                if found.is_empty() {
                    Err(seen)
                } else {
                    Ok(found)
                }
            }
        },
    )
    .await;
    assert_eq!(emails.len(), 1, "one email for one alert: {emails:?}");
    assert!(emails[0].contains("To: b@alerts.test"), "{}", emails[0]);

    // B deletes the alert.
    s.goto("/alerts").await;
    s.click_and_leave("#alerts button[id^='delete-']").await;
    s.wait_path("/alerts").await;
    assert_eq!(
        s.text(".banner.notice").await,
        "Alert deleted: you will get no more notices from it."
    );
    assert!(s.exists("#no-alerts").await);

    s.client.clone().close().await.unwrap();
}
