//! After the sale in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through WebDriver (fantoccini) against `buyticket up`, the browser
//! in the `America/New_York` time zone (so the event's start is converted for real).
//!
//! A sells a ticket with its venue, start, face value and a PDF → B buys and pays (`tok_visa`,
//! the development provider) → B finds it in "My tickets" and downloads it (the bytes checked
//! through the client's download route with B's session cookie) → B sells it again above the
//! resale cap (the message next to the price) and within it → A's payouts page shows the
//! credit: the price, the 5% fee and the amount.
//!
//! Screenshots go to `target/screenshots/`, or to `docs/screenshots/` with
//! `UPDATE_SCREENSHOTS=1`: `sell-details`, `my-tickets`, `my-tickets-phone`, `payouts`.

mod support;

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};
use support::Process;
use support::chromium::Session;

/// The ticket file A uploads: a PDF of 1 MiB and a bit, well over the 64 KiB every other
/// request body may have, so the upload's own limit is what is exercised.
fn ticket_file() -> Vec<u8> {
    let mut file = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n% row 5, seat 12\n".to_vec();
    while file.len() < (1 << 20) {
        file.extend_from_slice(b"% padding padding padding padding padding padding padding\n");
    }
    file.extend_from_slice(b"%%EOF\n");
    file
}

/// The resale cap of a $40 face value at 120%, as the tickets service words it.
const CAP: &str = "Price must be at most 48.00 (120% of the face value 40.00)";

/// The browser's time zone: 19:30 there on 12 June 2030 (daylight saving time, UTC−4) is
/// 23:30 UTC.
const TIME_ZONE: &str = "America/New_York";

fn start_marketplace(data: &std::path::Path) -> Process {
    Process::start(
        &["up", "--port", "0", "--data-dir", data.to_str().unwrap()],
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("SELLER_FEE_PERCENT", "5"),
            ("RESALE_PRICE_CAP_PERCENT", "120"),
            ("PAYOUT_INTERVAL_SECONDS", "1"),
        ],
    )
}

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

    /// The value of this browser's session cookie (HttpOnly: WebDriver still reads it).
    async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("session")
            .await
            .expect("a session cookie")
            .value()
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_sold_with_its_file_bought_downloaded_resold_and_paid_out_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pdf = files.path().join("row-5-seat-12.pdf");
    let file = ticket_file();
    std::fs::write(&pdf, &file).unwrap();
    let marketplace = start_marketplace(data.path());
    let base = marketplace.url.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let session = Session::open(&base, Some(TIME_ZONE)).await;
    let s = &*session;

    // A lists a ticket with the event's details and its file.
    s.sign_up("seller@resale.test").await;
    s.goto("/tickets/new").await;
    assert_eq!(
        s.text("#startsAt-zone").await,
        format!("Times are in your time zone ({TIME_ZONE}).")
    );
    s.fill("#title", "Row 5, seat 12").await;
    s.fill("#price", "40").await;
    s.fill("#venue", "Paradiso, Amsterdam").await;
    // A datetime-local field takes typed keys in a locale-dependent order; its value is set
    // as the browser's date picker would.
    s.client
        .execute(
            "document.getElementById('startsAt').value = arguments[0];",
            vec![json!("2030-06-12T19:30")],
        )
        .await
        .unwrap();
    s.fill("#faceValue", "40").await;
    s.client
        .find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(pdf.to_str().unwrap())
        .await
        .unwrap();
    s.client.set_window_size(1280, 1280).await.unwrap();
    s.screenshot("sell-details").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.click("#submit").await;
    assert_eq!(s.text("#ticket-title").await, "Row 5, seat 12");
    let ticket = s.path().await.trim_start_matches("/tickets/").to_owned();
    assert!(ticket.len() > 10, "at the new ticket's page: {ticket}");
    let details = s.text("#ticket-details").await;
    assert!(
        details.contains("Paradiso, Amsterdam") && details.contains("face value $40.00"),
        "{details}"
    );
    assert!(
        details.contains("7:30") && details.contains("2030"),
        "the start in the browser's time zone: {details}"
    );
    assert!(
        s.text("#file-state")
            .await
            .starts_with("Its file is uploaded")
    );
    let listed: Value = http
        .get(format!("{base}/api/tickets/{ticket}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &listed["startsAt"],
            &listed["faceValue"],
            &listed["venue"],
            &listed["hasFile"]
        ),
        (
            &json!("2030-06-12T23:30:00.000Z"),
            &json!(40),
            &json!("Paradiso, Amsterdam"),
            &json!(true)
        ),
        "19:30 in New York is 23:30 UTC in June"
    );
    s.sign_out().await;

    // B buys it and pays; the paid order offers the download.
    s.sign_up("buyer@resale.test").await;
    s.goto("/").await;
    let card = s.text("#tickets").await;
    assert!(
        card.contains("Paradiso, Amsterdam") && card.contains("face value $40.00"),
        "the listing shows the details: {card}"
    );
    let order = s.purchase(&ticket).await;
    s.click("input[value='tok_visa']").await;
    s.click("#pay").await;
    s.reload_until("#paid", 15).await;
    s.reload_until("#download", 15).await;
    assert_eq!(
        s.client
            .find(Locator::Css("#download"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .as_deref(),
        Some(format!("/tickets/{ticket}/download").as_str())
    );
    assert!(order.len() > 10);

    // B's ticket is in My tickets, with its file.
    s.goto("/tickets/mine").await;
    s.reload_until(&format!("#owned #download-{ticket}"), 15)
        .await;
    let owned = s.text("#owned").await;
    assert!(
        owned.contains("Row 5, seat 12") && owned.contains("paid $40.00"),
        "{owned}"
    );
    s.screenshot("my-tickets").await;
    let cookie = format!("session={}", s.session_cookie().await);
    let download = http
        .get(format!("{base}/tickets/{ticket}/download"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let header = |name: &str| {
        download
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(
        header("content-disposition"),
        Some(format!("attachment; filename=\"ticket-{ticket}.pdf\""))
    );
    assert_eq!(
        header("cache-control").as_deref(),
        Some("private, no-store")
    );
    assert!(
        download.bytes().await.unwrap().as_ref() == file.as_slice(),
        "exactly A's bytes"
    );

    // B sells it again: above the cap the message is next to the price; within it, on sale.
    s.fill(&format!("#sell-price-{ticket}"), "48.01").await;
    s.click(&format!("#sell-{ticket}")).await;
    assert_eq!(s.text(&format!("#sell-price-{ticket}-error")).await, CAP);
    s.client.set_window_size(390, 844).await.unwrap();
    s.screenshot("my-tickets-phone").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.fill(&format!("#sell-price-{ticket}"), "48").await;
    s.click(&format!("#sell-{ticket}")).await;
    // The refusal came back to this address too: the confirmation tells the new page.
    assert!(
        s.text("#page-notice")
            .await
            .contains("Your ticket is on sale again.")
    );
    assert_eq!(s.path().await, "/tickets/mine");
    let listings = s.text("#listings").await;
    assert!(
        listings.contains("Row 5, seat 12")
            && listings.contains("$48.00")
            && listings.to_lowercase().contains("on sale"),
        "{listings}"
    );
    assert!(!s.exists("#owned").await, "no longer among the bought ones");
    s.sign_out().await;

    // A's payouts: the credit of the sale, less the 5% fee, pending until the event.
    s.sign_in("seller@resale.test").await;
    s.goto("/payouts").await;
    s.reload_until("#payouts", 15).await;
    let row = s.text("#payouts tbody tr").await;
    for part in ["Row 5, seat 12", "$40.00", "$2.00", "$38.00"] {
        assert!(row.contains(part), "{part}: {row}");
    }
    assert!(row.to_lowercase().contains("pending"), "{row}");
    assert_eq!(s.text("#balance-pending").await, "$38.00");
    assert_eq!(s.text("#balance-paid").await, "$0.00");
    s.screenshot("payouts").await;
    s.click_and_leave("#setup-payouts").await;
    s.wait_path("/payouts").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .text("#account-status")
        .await
        .contains("Payouts are set up")
    {
        assert!(
            Instant::now() < deadline,
            "the development provider's account is usable at once"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.client.refresh().await.unwrap();
    }
    assert!(!s.exists("#setup-payouts").await);

    s.client.clone().close().await.unwrap();
}
