//! What the pages show: template data and formatting (money, times, states).

use std::collections::HashMap;

use askama::Template;
use bt_contract::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The signed-in user, as the header shows it.
#[derive(Debug, Clone)]
pub struct UserView {
    pub id: String,
    pub email: String,
}

/// What every page has: the header's state, the CSRF token for forms, a title and banners.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub user: Option<UserView>,
    pub csrf: String,
    /// A success message.
    pub notice: Option<String>,
    /// An error that belongs to no field.
    pub error: Option<String>,
}

/// Validation errors by field, from the API's `{"errors":[{"message","field"}]}`.
#[derive(Debug, Clone, Default)]
pub struct FieldErrors(HashMap<String, String>);

impl FieldErrors {
    /// Splits API errors into per-field messages and the rest (for the banner).
    pub fn from_api(errors: &[FieldError], fields: &[&str]) -> (Self, Option<String>) {
        let mut by_field = HashMap::new();
        let mut other = Vec::new();
        for e in errors {
            match &e.field {
                Some(f) if fields.contains(&f.as_str()) => {
                    by_field
                        .entry(f.clone())
                        .or_insert_with(|| e.message.clone());
                }
                _ => other.push(e.message.clone()),
            }
        }
        (Self(by_field), (!other.is_empty()).then(|| other.join(" ")))
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
}

/// An amount in cents, for people: `$20.50`.
pub fn money(cents: i64, currency: &str) -> String {
    let amount = bt_contract::Cents::new(cents).to_string();
    match currency.to_ascii_lowercase().as_str() {
        "usd" => format!("${amount}"),
        "eur" => format!("€{amount}"),
        "gbp" => format!("£{amount}"),
        other => format!("{amount} {}", other.to_ascii_uppercase()),
    }
}

/// Cents from a price in the API's JSON (a number in currency units).
pub fn cents_of(price: &Value) -> i64 {
    serde_json::from_value::<bt_contract::Cents>(price.clone())
        .map(bt_contract::Cents::get)
        .unwrap_or(0)
}

/// A time the browser shows in the user's locale; this text is the fallback without JavaScript.
pub fn utc_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A ticket in a list.
#[derive(Debug, Clone)]
pub struct TicketCard {
    pub id: String,
    pub title: String,
    pub price: String,
}

/// The state of a ticket, as its seller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    OnSale,
    Reserved,
    Sold,
}

impl TicketState {
    pub fn of(ticket: &Value) -> Self {
        if ticket["sold"].as_bool() == Some(true) {
            Self::Sold
        } else if ticket["orderId"].is_string() {
            Self::Reserved
        } else {
            Self::OnSale
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OnSale => "On sale",
            Self::Reserved => "Reserved",
            Self::Sold => "Sold",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Self::OnSale => "on-sale",
            Self::Reserved => "reserved",
            Self::Sold => "sold",
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub q: String,
    pub tickets: Vec<TicketCard>,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "auth.html")]
pub struct AuthPage {
    pub layout: Layout,
    /// `signup` or `signin`.
    pub mode: &'static str,
    pub email: String,
    pub errors: FieldErrors,
    pub next: String,
}

#[derive(Template)]
#[template(path = "ticket_form.html")]
pub struct TicketFormPage {
    pub layout: Layout,
    pub heading: String,
    pub action: String,
    pub submit: String,
    pub title_value: String,
    pub price_value: String,
    pub errors: FieldErrors,
}

/// A ticket on its own page.
#[derive(Debug, Clone)]
pub struct TicketView {
    pub id: String,
    pub title: String,
    pub price: String,
    pub state: TicketState,
    pub is_owner: bool,
}

#[derive(Template)]
#[template(path = "ticket.html")]
pub struct TicketPage {
    pub layout: Layout,
    pub ticket: TicketView,
}

/// An order on its own page or in a list.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub id: String,
    pub status: String,
    pub status_label: String,
    pub status_class: String,
    pub ticket_id: String,
    pub ticket_title: String,
    pub price: String,
    pub expires_at: String,
    pub expires_at_text: String,
    pub payable: bool,
    pub expired: bool,
    pub paid: bool,
}

impl OrderView {
    pub fn of(order: &Value, currency: &str, now: DateTime<Utc>) -> Self {
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        let expires_at: DateTime<Utc> = order["expiresAt"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(now);
        let past_window = now >= expires_at;
        let paid = status == "complete";
        let expired = past_window && matches!(status.as_str(), "cancelled" | "created");
        let (label, class) = match status.as_str() {
            "complete" => ("Paid", "paid"),
            "cancelled" if expired => ("Expired", "expired"),
            "cancelled" => ("Cancelled", "cancelled"),
            _ if expired => ("Expired", "expired"),
            "awaiting:payment" => ("Payment in progress", "pending"),
            _ => ("Awaiting payment", "pending"),
        };
        Self {
            id: order["id"].as_str().unwrap_or_default().to_owned(),
            payable: matches!(status.as_str(), "created" | "awaiting:payment") && !past_window,
            status,
            status_label: label.to_owned(),
            status_class: class.to_owned(),
            ticket_id: order["ticket"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ticket_title: order["ticket"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            price: money(cents_of(&order["ticket"]["price"]), currency),
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires_at_text: utc_text(expires_at),
            expired,
            paid,
        }
    }
}

/// A test card of the development provider.
#[derive(Debug, Clone)]
pub struct TestCard {
    pub token: &'static str,
    pub label: &'static str,
}

/// The test cards offered with the development provider.
pub const TEST_CARDS: [TestCard; 2] = [
    TestCard {
        token: "tok_visa",
        label: "Visa ending 4242 — succeeds",
    },
    TestCard {
        token: "tok_chargeDeclined",
        label: "Visa ending 0002 — declined",
    },
];

#[derive(Template)]
#[template(path = "order.html")]
pub struct OrderPage {
    pub layout: Layout,
    pub order: OrderView,
    pub cards: Vec<TestCard>,
    pub stripe_key: Option<String>,
    /// Paid at the provider, waiting for the order to complete: the page refreshes itself.
    pub confirming: bool,
}

#[derive(Template)]
#[template(path = "orders.html")]
pub struct OrdersPage {
    pub layout: Layout,
    pub orders: Vec<OrderView>,
}

/// A ticket in the seller's listings.
#[derive(Debug, Clone)]
pub struct ListingView {
    pub id: String,
    pub title: String,
    pub price: String,
    pub state: TicketState,
}

#[derive(Template)]
#[template(path = "listings.html")]
pub struct ListingsPage {
    pub layout: Layout,
    pub tickets: Vec<ListingView>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_shown_with_its_currency() {
        assert_eq!(money(2050, "usd"), "$20.50");
        assert_eq!(money(5, "EUR"), "€0.05");
        assert_eq!(money(100_000_000, "chf"), "1000000.00 CHF");
    }

    #[test]
    fn field_errors_split_from_the_banner() {
        let errors = vec![
            FieldError::new("email", "Email must be valid"),
            FieldError {
                message: "Email in use".into(),
                field: None,
            },
        ];
        let (fields, banner) = FieldErrors::from_api(&errors, &["email", "password"]);
        assert_eq!(fields.get("email"), Some("Email must be valid"));
        assert_eq!(banner.as_deref(), Some("Email in use"));
    }

    fn order_page(stripe_key: Option<&str>) -> String {
        let now = Utc::now();
        let order = json!({"id": "o1", "status": "created", "expiresAt": (now + chrono::Duration::minutes(5)).to_rfc3339(),
            "ticket": {"id": "t1", "title": "Show", "price": 20.5}});
        OrderPage {
            layout: Layout {
                title: "Order".into(),
                user: None,
                csrf: "tok".into(),
                notice: None,
                error: None,
            },
            order: OrderView::of(&order, "usd", now),
            cards: TEST_CARDS.to_vec(),
            stripe_key: stripe_key.map(str::to_owned),
            confirming: false,
        }
        .render()
        .unwrap()
    }

    #[test]
    fn the_pay_form_offers_test_cards_with_the_development_provider() {
        let html = order_page(None);
        assert!(
            html.contains(r#"value="tok_visa""#) && html.contains(r#"value="tok_chargeDeclined""#)
        );
        assert!(!html.contains("js.stripe.com"));
        assert!(html.contains(r#"name="_csrf" value="tok""#));
    }

    #[test]
    fn the_pay_form_uses_stripe_js_with_a_publishable_key() {
        let html = order_page(Some("pk_test_123"));
        assert!(html.contains(r#"<script src="https://js.stripe.com/v3/"></script>"#));
        assert!(html.contains(r#"data-stripe-key="pk_test_123""#));
        assert!(html.contains(r#"id="stripe-token""#));
        assert!(!html.contains("tok_visa"), "no test cards with real Stripe");
    }

    #[test]
    fn an_order_past_its_window_is_expired_and_not_payable() {
        let now: DateTime<Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
        let order = |status: &str, expires: &str| json!({"id": "o1", "status": status, "expiresAt": expires, "ticket": {"id": "t1", "title": "Show", "price": 20.5}});
        let open = OrderView::of(&order("created", "2026-11-25T10:10:00Z"), "usd", now);
        assert!(open.payable && !open.expired);
        assert_eq!(
            (open.status_label.as_str(), open.price.as_str()),
            ("Awaiting payment", "$20.50")
        );
        let late = OrderView::of(&order("created", "2026-11-25T09:59:00Z"), "usd", now);
        assert!(!late.payable && late.expired);
        let expired = OrderView::of(&order("cancelled", "2026-11-25T09:59:00Z"), "usd", now);
        assert_eq!(expired.status_label, "Expired");
        let cancelled = OrderView::of(&order("cancelled", "2026-11-25T10:10:00Z"), "usd", now);
        assert_eq!(cancelled.status_label, "Cancelled");
        let paid = OrderView::of(&order("complete", "2026-11-25T09:59:00Z"), "usd", now);
        assert!(paid.paid && !paid.payable);
        assert_eq!(paid.status_label, "Paid");
    }
}
