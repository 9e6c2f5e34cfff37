//! The marketplace in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through WebDriver (fantoccini) against `buyticket up`.
//!
//! Screenshots of the main pages go to `target/screenshots/`, or to `docs/screenshots/` with
//! `UPDATE_SCREENSHOTS=1` (how the README's pictures are made).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::Process;

/// How long an order reserves its ticket in this test.
const WINDOW_SECS: u64 = 8;

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

fn chromedriver() -> (Guard, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian package chromium-driver; scripts/ensure-services.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Guard(child), port)
}

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

struct Session {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Session {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// The visible text, lower-cased (status labels are shown in capitals by CSS).
    async fn label(&self, css: &str) -> String {
        self.text(css).await.to_lowercase()
    }

    /// Waits until the browser is at `path` (after a form post and its redirect).
    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.path().await != path {
            if Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                panic!(
                    "expected to be at {path}, still at {}:\n{source}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Reloads until `css` exists (pages that wait for events), at most `secs`.
    async fn reload_until(&self, css: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.exists(css).await {
            assert!(
                Instant::now() < deadline,
                "{css} did not appear on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.client.refresh().await.unwrap();
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_up(&self, email: &str) {
        self.goto("/auth/signup").await;
        self.fill("#email", email).await;
        self.fill("#password", "password").await;
        self.click("#submit").await;
        self.wait_path("/").await;
        assert!(
            self.exists("a[href='/tickets/new']").await,
            "the header shows the signed-in links"
        );
    }

    async fn sign_out(&self) {
        self.click("form[action='/auth/signout'] button").await;
        self.text("a[href='/auth/signin']").await;
        assert!(
            !self.exists("a[href='/tickets/new']").await,
            "the header shows the signed-out links"
        );
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

    /// Buys a ticket: the ticket page's Purchase button, retried while the orders replica
    /// catches up (the page then says so).
    async fn purchase(&self, ticket_id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.goto(&format!("/tickets/{ticket_id}")).await;
            self.click("#purchase").await;
            let _ = self
                .client
                .wait()
                .at_most(Duration::from_secs(5))
                .for_element(Locator::Css("#order-status, #page-error"))
                .await;
            if self.path().await.starts_with("/orders/") {
                return self.path().await.trim_start_matches("/orders/").to_owned();
            }
            assert!(Instant::now() < deadline, "could not purchase {ticket_id}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_selling_declines_expiry_and_sign_in_errors_work_in_chromium() {
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let marketplace = start_marketplace(data.path());
    let base = marketplace.url.clone();
    let (_driver, port) = chromedriver();
    let session = Session {
        client: browser(port, profile.path()).await,
        base,
        shots: screenshots_dir(),
    };
    let s = &session;

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
    s.screenshot("home").await;
    s.client.set_window_size(390, 844).await.unwrap();
    s.screenshot("home-phone").await;
    s.client.set_window_size(1280, 900).await.unwrap();
    s.goto(&format!("/tickets/{concert}")).await;
    s.screenshot("ticket").await;
    let order = s.purchase(&concert).await;
    assert_eq!(s.label("#order-status").await, "awaiting payment");
    assert!(s.exists("#countdown").await);
    s.screenshot("order").await;
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
    assert_eq!(s.path().await, format!("/orders/{second}/pay"));

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

    session.client.close().await.unwrap();
}
