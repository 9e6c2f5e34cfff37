//! The marketplace in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through WebDriver (fantoccini) against `buyticket up`.
//!
//! Screenshots of the main pages go to `target/screenshots/`, or to `docs/screenshots/` with
//! `UPDATE_SCREENSHOTS=1` (how the README's pictures are made).

mod support;

use std::time::{Duration, Instant};

use support::Process;
use support::chromium::Session;

/// How long an order reserves its ticket in this test.
const WINDOW_SECS: u64 = 8;

/// `buyticket up` on a free port with a short order window.
fn start_marketplace(data: &std::path::Path) -> Process {
    Process::start(
        &["up", "--port", "0", "--data-dir", data.to_str().unwrap()],
        &[
            ("ORDER_EXPIRATION_SECONDS", &WINDOW_SECS.to_string()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
        ],
    )
}

impl Session {
    /// The visible text, lower-cased (status labels are shown in capitals by CSS).
    async fn label(&self, css: &str) -> String {
        self.text(css).await.to_lowercase()
    }

    async fn sell(&self, title: &str, price: &str) -> String {
        self.goto("/tickets/new").await;
        self.fill("#title", title).await;
        self.fill("#price", price).await;
        self.click("#submit").await;
        assert_eq!(self.text("#ticket-title").await, title);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.path().await.starts_with("/tickets/0") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.path().await.trim_start_matches("/tickets/").to_owned()
    }
}

/// A browser whose session is never closed (a test that ends without `close`, or panics) is
/// still stopped with the test: here the runtime ends right after the drop, as a test process
/// exits after its last line, so no WebDriver request can close the session.
#[test]
fn a_browser_left_open_stops_with_its_test() {
    let data = tempfile::tempdir().unwrap();
    let marketplace = start_marketplace(data.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (profile, browsers) = runtime.block_on(async {
        let session = Session::open(&marketplace.url, None).await;
        session.goto("/").await;
        let profile = session.profile.path().display().to_string();
        let browsers = support::chromium::processes_with(&profile);
        drop(session);
        (profile, browsers)
    });
    drop(runtime);
    assert!(
        !browsers.is_empty(),
        "Chromium runs with --user-data-dir={profile}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = support::chromium::processes_with(&profile);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = support::chromium::processes_with(&profile);
    }
    assert!(left.is_empty(), "browser processes left running: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_selling_declines_expiry_and_sign_in_errors_work_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let marketplace = start_marketplace(data.path());
    let base = marketplace.url.clone();
    let session = Session::open(&base, None).await;
    let s = &*session;

    // A seller signs up and lists three tickets.
    s.goto("/auth/signup").await;
    s.screenshot("sign-up").await;
    s.sign_up("seller@test.com").await;
    s.goto("/tickets/new").await;
    s.screenshot("sell").await;
    let concert = s.sell("Rock Concert", "20.50").await;
    assert_eq!(s.text("#ticket-price").await, "$20.50");
    assert!(
        s.exists("#edit").await,
        "the seller sees Edit, not Purchase"
    );
    assert!(!s.exists("#purchase").await);
    let declined = s.sell("Jazz Night", "35").await;
    let expiring = s.sell("Opera Gala", "99.99").await;
    s.goto("/listings").await;
    assert!(s.label("#listings").await.contains("on sale"));
    s.screenshot("my-listings").await;
    s.sign_out().await;

    // A buyer signs up, finds the ticket, buys it and pays with the succeeding test card.
    s.sign_up("buyer@test.com").await;
    s.goto("/").await;
    assert!(s.text("#tickets").await.contains("Rock Concert"));
    assert_eq!(s.text("#result-count").await, "3 tickets on sale.");
    s.screenshot("home").await;
    // A search says how many it found and can be cleared.
    s.fill("#q", "rock").await;
    s.click(".search button").await;
    s.wait_for_text("#result-count", "1 ticket matches “rock”. Clear search")
        .await;
    s.click("#clear-search").await;
    s.wait_for_text("#result-count", "3 tickets on sale.").await;
    assert!(!s.exists("#clear-search").await);
    s.client.set_window_size(390, 844).await.unwrap();
    s.screenshot("home-phone").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.goto(&format!("/tickets/{concert}")).await;
    s.screenshot("ticket").await;
    let order = s.purchase(&concert).await;
    assert_eq!(s.label("#order-status").await, "awaiting payment");
    // The reservation's confirmation, the live countdown and, with this test's 8-second
    // window, the warning of its last two minutes, announced in a live region.
    assert!(
        s.text("#page-notice")
            .await
            .contains("The ticket is reserved for you for 8 seconds.")
    );
    assert!(s.text("#countdown").await.ends_with(" left"));
    assert_eq!(
        s.text("#time-warning").await,
        "Less than 2 minutes left: pay now to keep this ticket."
    );
    // The deadline in the viewer's locale, with the time zone named.
    let deadline_text = s.text("#countdown-line time").await;
    assert!(
        deadline_text.ends_with(" UTC") && !deadline_text.contains("-"),
        "{deadline_text}"
    );
    s.screenshot("order").await;
    s.client.set_window_size(390, 844).await.unwrap();
    s.screenshot("order-phone").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.click("input[value='tok_visa']").await;
    s.click("#pay").await;
    s.reload_until("#paid", 15).await;
    assert_eq!(s.label("#order-status").await, "paid");
    s.screenshot("order-paid").await;
    s.goto("/orders").await;
    let orders = s.text("#orders").await;
    assert!(
        orders.contains("Rock Concert") && orders.to_lowercase().contains("paid"),
        "{orders}"
    );
    s.screenshot("my-orders").await;
    // On a phone the orders are cards, the price still there.
    s.client.set_window_size(390, 844).await.unwrap();
    let price = s
        .client
        .find(fantoccini::Locator::Css("#orders td[data-label='Price']"))
        .await
        .unwrap();
    assert!(
        price.is_displayed().await.unwrap(),
        "the price shows on a phone"
    );
    assert_eq!(price.text().await.unwrap(), "$20.50");
    s.screenshot("my-orders-phone").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.goto("/").await;
    assert!(
        !s.text("main").await.contains("Rock Concert"),
        "a sold ticket is no longer on sale"
    );
    s.goto(&format!("/tickets/{concert}")).await;
    assert_eq!(s.label("#ticket-state").await, "sold");

    // A declined card shows the decline, and the order stays payable.
    let second = s.purchase(&declined).await;
    s.click("input[value='tok_chargeDeclined']").await;
    s.click("#pay").await;
    assert_eq!(s.text("#page-error").await, "Your card was declined.");
    assert!(s.exists("#pay-form").await, "the order can still be paid");
    assert_eq!(s.label("#order-status").await, "awaiting payment");
    s.screenshot("payment-declined").await;
    // Post/Redirect/Get: the address is the order's, so a reload shows it and posts nothing.
    assert_eq!(s.path().await, format!("/orders/{second}"));

    // Cancelling asks first; then the order says so and nothing was charged.
    let to_cancel = s.purchase(&expiring).await;
    s.click("#cancel").await;
    s.wait_path(&format!("/orders/{to_cancel}/cancel")).await;
    s.screenshot("cancel-confirm").await;
    s.click("#confirm").await;
    assert!(
        s.text("#page-notice")
            .await
            .contains("Your reservation is cancelled")
    );
    s.screenshot("order-cancelled").await;
    s.goto(&format!("/tickets/{expiring}")).await;
    s.reload_until("#purchase", 10).await;

    // An order past its window shows expired, and its ticket is back on sale.
    let third = s.purchase(&expiring).await;
    tokio::time::sleep(Duration::from_secs(WINDOW_SECS)).await;
    s.goto(&format!("/orders/{third}")).await;
    s.reload_until("#expired", 10).await;
    assert_eq!(s.label("#order-status").await, "expired");
    assert!(!s.exists("#pay-form").await);
    s.screenshot("order-expired").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        s.goto("/").await;
        if s.text("main").await.contains("Opera Gala") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired order's ticket is back on sale"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.sign_out().await;

    // Sign-in with a wrong password shows the error next to the form.
    s.goto("/auth/signin").await;
    s.fill("#email", "buyer@test.com").await;
    s.fill("#password", "wrong-password").await;
    s.click("#submit").await;
    assert_eq!(s.text("#page-error").await, "Invalid credentials");
    assert_eq!(s.path().await, "/auth/signin");
    s.screenshot("sign-in-error").await;
    // Field errors sit next to their fields.
    s.fill("#email", "not-an-email").await;
    s.click("#submit").await;
    assert_eq!(s.text("#email-error").await, "Email must be valid");
    assert!(order.len() > 10);

    s.client.clone().close().await.unwrap();
}
