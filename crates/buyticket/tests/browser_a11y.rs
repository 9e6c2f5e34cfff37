//! Accessibility in a real browser: axe-core (npm, pinned in `support::axe`) checks every state
//! of every page against WCAG 2.2 A and AA, at a desktop and a phone width, and a ticket is
//! bought and paid with the keyboard alone. Headless Chromium against `buyticket up`.
//!
//! Screenshots of the error and confirmation states go to `target/screenshots/`, or to
//! `docs/screenshots/` with `UPDATE_SCREENSHOTS=1`.

mod support;

use std::time::Duration;

use fantoccini::key::Key;
use serde_json::{Value, json};
use support::Process;
use support::chromium::Session;

/// `buyticket up` on a free port (no rate limit on sign-in: the test signs in often).
fn start_marketplace(data: &std::path::Path) -> Process {
    Process::start(
        &["up", "--port", "0", "--data-dir", data.to_str().unwrap()],
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "0")],
    )
}

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

impl Session {
    /// The WCAG 2.2 A/AA (and AAA contrast) violations axe finds on the page as it is now, one
    /// line each:
    /// `rule (impact) on what: selector: why`.
    async fn axe(&self, what: &str, axe: &str) -> Vec<String> {
        self.client.execute(axe, vec![]).await.unwrap();
        // WCAG 2.2 A and AA, and AAA contrast (7:1 for text, 4.5:1 for large text), which
        // this site meets as well.
        let script = r#"
            const done = arguments[arguments.length - 1];
            const tags = { runOnly: { type: "tag", values: arguments[0] } };
            const enhanced = { runOnly: { type: "rule", values: ["color-contrast-enhanced"] } };
            axe.run(document, tags)
              .then(a => axe.run(document, enhanced)
                .then(b => ({ violations: a.violations.concat(b.violations) })))
              .then(r => done(r.violations.map(v => ({
                  id: v.id, impact: v.impact,
                  nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary) }))))
              .catch(e => done("axe failed: " + e));
        "#;
        let result = self
            .client
            .execute_async(script, vec![json!(support::axe::TAGS)])
            .await
            .unwrap();
        let Value::Array(violations) = result else {
            panic!("{what}: {result}");
        };
        violations
            .iter()
            .flat_map(|v| {
                v["nodes"].as_array().unwrap().iter().map(move |node| {
                    format!(
                        "{} ({}) on {what}: {}",
                        v["id"].as_str().unwrap_or_default(),
                        v["impact"].as_str().unwrap_or_default(),
                        node.as_str().unwrap_or_default()
                    )
                })
            })
            .collect()
    }

    /// Checks the page at both widths, adding what axe finds to `found`.
    async fn check(&self, what: &str, axe: &str, found: &mut Vec<String>) {
        for (width, height) in [DESKTOP, PHONE] {
            self.client.set_window_size(width, height).await.unwrap();
            found.extend(self.axe(&format!("{what} at {width}px"), axe).await);
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
    }

    async fn sell(&self, title: &str, price: &str) -> String {
        self.goto("/tickets/new").await;
        self.fill("#title", title).await;
        self.fill("#price", price).await;
        self.click("#submit").await;
        self.text("#page-notice").await;
        self.path().await.trim_start_matches("/tickets/").to_owned()
    }

    /// Presses `key` on whatever has the focus.
    async fn press(&self, key: Key) {
        let active = self.client.active_element().await.unwrap();
        active.send_keys(&key.to_string()).await.unwrap();
    }

    /// The focused element's id (or its tag and text when it has none).
    async fn focused(&self) -> String {
        let script = "const e = document.activeElement; return e.id || (e.tagName + ' ' + (e.value || e.textContent).trim());";
        self.client
            .execute(script, vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Tabs until `id` has the focus (at most 40 presses), checking that every element the
    /// focus visits shows where it is (an outline or a box shadow).
    async fn tab_to(&self, id: &str) {
        for _ in 0..40 {
            self.press(Key::Tab).await;
            let visible = self
                .client
                .execute(
                    "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && s.outlineWidth !== '0px' || s.boxShadow !== 'none';",
                    vec![],
                )
                .await
                .unwrap();
            let focused = self.focused().await;
            assert_eq!(visible, json!(true), "no visible focus on {focused}");
            if focused == id {
                return;
            }
        }
        panic!("#{id} cannot be reached with Tab on {}", self.path().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_state_passes_axe_wcag_2_2_aa_on_desktop_and_phone() {
    let axe = support::axe::source();
    let data = tempfile::tempdir().unwrap();
    let marketplace = start_marketplace(data.path());
    let session = Session::open(&marketplace.url, None).await;
    let s = &*session;
    let mut found = Vec::new();

    // Signed out.
    s.goto("/").await;
    s.check("the empty listing", &axe, &mut found).await;
    s.goto("/auth/signup").await;
    s.fill("#email", "not-an-email").await;
    s.fill("#password", "x").await;
    s.click("#submit").await;
    s.text("#email-error").await;
    s.check("sign-up with errors", &axe, &mut found).await;
    s.screenshot("sign-up-errors").await;
    s.goto("/auth/signin").await;
    s.check("sign-in", &axe, &mut found).await;
    s.goto("/no/such/page").await;
    s.check("a page that does not exist", &axe, &mut found)
        .await;

    // A seller lists tickets; the sell form with errors.
    s.sign_up("seller@test.com").await;
    s.text("#page-notice").await;
    s.check("the listing with a welcome", &axe, &mut found)
        .await;
    s.goto("/tickets/new").await;
    s.fill("#title", "").await;
    s.fill("#price", "abc").await;
    s.click("#submit").await;
    s.text("#price-error").await;
    s.check("the sell form with errors", &axe, &mut found).await;
    s.screenshot("sell-errors").await;
    s.client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    s.screenshot("sell-errors-phone").await;
    s.client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    let show = s.sell("Rock Concert", "1250.50").await;
    s.check("a new listing with its notice", &axe, &mut found)
        .await;
    s.screenshot("listed").await;
    let other = s.sell("Jazz Night", "35").await;
    s.goto("/tickets/mine").await;
    s.check("my tickets (listings)", &axe, &mut found).await;
    s.goto("/auth/signout").await;
    s.check("the sign-out question", &axe, &mut found).await;
    s.sign_out().await;
    s.goto(&format!("/tickets/{show}")).await;
    s.check("a ticket, signed out", &axe, &mut found).await;
    s.goto("/?q=opera").await;
    s.check("a search without results, signed out", &axe, &mut found)
        .await;

    // A buyer.
    s.sign_up("buyer@test.com").await;
    s.goto("/").await;
    s.check("the listing", &axe, &mut found).await;
    s.goto("/?q=concert").await;
    s.check("search results", &axe, &mut found).await;
    s.goto(&format!("/tickets/{show}")).await;
    s.check("a ticket on sale", &axe, &mut found).await;
    let order = s.purchase(&show).await;
    s.check("an order to pay", &axe, &mut found).await;
    s.click("input[value='tok_chargeDeclined']").await;
    s.click("#pay").await;
    s.text("#page-error").await;
    s.check("a declined card", &axe, &mut found).await;
    s.goto(&format!("/orders/{order}/cancel")).await;
    s.check("the cancel question", &axe, &mut found).await;
    s.goto(&format!("/orders/{order}")).await;
    s.click("input[value='tok_visa']").await;
    s.click("#pay").await;
    s.reload_until("#paid", 15).await;
    s.check("a paid order", &axe, &mut found).await;
    let second = s.purchase(&other).await;
    s.goto(&format!("/orders/{second}/cancel")).await;
    s.click("#confirm").await;
    s.text("#page-notice").await;
    s.check("a cancelled order", &axe, &mut found).await;
    s.goto("/orders").await;
    s.check("my orders", &axe, &mut found).await;
    s.goto("/tickets/mine").await;
    s.check("my tickets (bought)", &axe, &mut found).await;
    s.goto("/?q=opera").await;
    s.check("a search without results, with Alert me", &axe, &mut found)
        .await;
    s.goto("/alerts").await;
    s.fill("#q", "opera").await;
    s.fill("#maxPrice", "cheap").await;
    s.click("#create-alert").await;
    s.text("#maxPrice-error").await;
    s.check("the alert form with errors", &axe, &mut found)
        .await;
    s.goto("/notifications").await;
    s.check("notifications", &axe, &mut found).await;
    s.goto("/payouts").await;
    s.check("payouts", &axe, &mut found).await;

    assert!(
        found.is_empty(),
        "axe found {} WCAG 2.2 A/AA or AAA contrast violations:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_bought_and_paid_with_the_keyboard_alone() {
    let data = tempfile::tempdir().unwrap();
    let marketplace = start_marketplace(data.path());
    let session = Session::open(&marketplace.url, None).await;
    let s = &*session;
    s.sign_up("seller@test.com").await;
    let ticket = s.sell("Keyboard Gala", "42").await;
    s.sign_out().await;

    // Sign up with the keyboard: from the ticket, "Create an account" keeps the way back.
    s.goto(&format!("/tickets/{ticket}")).await;
    s.tab_to("sign-up-to-buy").await;
    s.press(Key::Enter).await;
    s.wait_path("/auth/signup").await;
    s.tab_to("email").await;
    let active = s.client.active_element().await.unwrap();
    active.send_keys("keys@test.com").await.unwrap();
    s.tab_to("password").await;
    let active = s.client.active_element().await.unwrap();
    active.send_keys("a long passphrase").await.unwrap();
    s.press(Key::Enter).await;
    s.wait_path(&format!("/tickets/{ticket}")).await;

    // Purchase, pay: Tab and Enter only.
    s.tab_to("purchase").await;
    s.press(Key::Enter).await;
    s.text("#order-status").await;
    assert!(s.path().await.starts_with("/orders/"), "{}", s.path().await);
    s.tab_to("pay").await;
    s.press(Key::Enter).await;
    s.reload_until("#paid", 15).await;
    assert!(s.text("#paid").await.contains("the ticket is yours"));
    tokio::time::sleep(Duration::from_millis(100)).await;
}
