//! What the pages show: template data and formatting (money, times, states).

use std::collections::HashMap;

use askama::Template;
use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::resources::{Order, OrderPayment, OrderPaymentStatus};
use bt_contract::{FieldError, Millis};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::api::{
    Alert, CreditStatus, EntryKind, Notification, NotificationKind, PayoutAccountStatus,
    PayoutEntry, Payouts, Ticket,
};
use crate::forms::{AlertForm, FormField, TicketForm};

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
    /// The signed-in user's unread notifications, for the bell in the header; `None` when not
    /// known (signed out, or the notifications service did not answer in time).
    pub unread: Option<i64>,
}

impl Layout {
    /// The bell's accessible name: `Notifications, 3 unread`, or `Notifications`.
    pub fn bell_label(&self) -> String {
        match self.unread {
            Some(n) if n > 0 => format!("Notifications, {n} unread"),
            _ => "Notifications".to_owned(),
        }
    }

    /// The bell's badge: the unread count (`99+` past 99), none when there is nothing unread
    /// or the count is not known.
    pub fn bell_badge(&self) -> Option<String> {
        match self.unread? {
            n if n <= 0 => None,
            n if n > 99 => Some("99+".to_owned()),
            n => Some(n.to_string()),
        }
    }
}

/// Validation errors by field, from the API's `{"errors":[{"message","field"}]}`.
#[derive(Debug, Clone, Default)]
pub struct FieldErrors(HashMap<String, String>);

impl FieldErrors {
    /// Splits API errors into per-field messages, in the form's words (see
    /// [`FormField::worded`]), and the rest (for the banner).
    pub fn from_api(errors: &[FieldError], fields: &[FormField]) -> (Self, Option<String>) {
        let mut by_field = HashMap::new();
        let mut other = Vec::new();
        for e in errors {
            match fields
                .iter()
                .find(|field| e.field.as_deref() == Some(field.name))
            {
                Some(field) => {
                    by_field
                        .entry(field.name.to_owned())
                        .or_insert_with(|| field.worded(&e.message));
                }
                None => other.push(e.message.clone()),
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

    /// Sets the message of `field` (a check the client made itself).
    pub fn set(&mut self, field: &str, message: impl Into<String>) {
        self.0.insert(field.to_owned(), message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `field` is the first of `order` (names separated by spaces, in the form's
    /// order) with an error: the field that takes the focus when the form comes back, so that
    /// a screen reader reads its label and its message at once.
    pub fn focus(&self, field: &str, order: &str) -> bool {
        order.split_whitespace().find(|f| self.has(f)) == Some(field)
    }

    /// The messages by field, for a flash (see [`crate::flash`]).
    pub fn into_map(self) -> std::collections::BTreeMap<String, String> {
        self.0.into_iter().collect()
    }

    /// The messages a flash brought back.
    pub fn from_map(map: &std::collections::BTreeMap<String, String>) -> Self {
        Self(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// An amount in cents, for people: `$20.50`.
pub fn money(cents: i64, currency: &str) -> String {
    bt_contract::Cents::new(cents).with_currency(currency)
}

/// A time the browser shows in the user's locale and time zone; this text is the fallback
/// without JavaScript: `Sat 28 Nov 2026, 19:12 UTC`.
pub fn utc_text(at: DateTime<Utc>) -> String {
    at.format("%a %-d %b %Y, %H:%M UTC").to_string()
}

/// Left to pay at or under this, the order page warns (and so does its script, live).
pub const URGENT: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The time left to pay, for people: "12 minutes left", "1 minute left", "less than a
/// minute left".
pub fn time_left_text(left: chrono::TimeDelta) -> String {
    match left.num_minutes() {
        m if m >= 2 => format!("{m} minutes left"),
        1 => "1 minute left".to_owned(),
        _ => "less than a minute left".to_owned(),
    }
}

/// The time left to pay an order, as the server's clock tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLeft {
    /// Whole seconds (rounded down): the script counts down from them on the browser's
    /// monotonic clock, so that a device clock that is off changes nothing.
    pub seconds: i64,
    /// For people and for a page without the script: "12 minutes left".
    pub text: String,
}

impl TimeLeft {
    pub fn of(left: chrono::TimeDelta) -> Self {
        Self {
            seconds: left.num_seconds().max(0),
            text: time_left_text(left),
        }
    }
}

/// A moment on a page: `<time datetime="{iso}" data-local>{text}</time>` (the script shows it
/// in the browser's zone; `text` is UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeView {
    pub iso: String,
    pub text: String,
}

impl TimeView {
    pub fn of(at: Millis) -> Self {
        let at = at.to_datetime();
        Self {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            text: utc_text(at),
        }
    }
}

/// Where and when the event is, and the ticket's face value, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventDetails {
    pub venue: Option<String>,
    pub starts_at: Option<TimeView>,
    /// `face value $40.00`.
    pub face_value: Option<String>,
    /// The event has started (it can no longer be sold).
    pub started: bool,
}

impl EventDetails {
    pub fn of(ticket: &Ticket, currency: &str) -> Self {
        Self {
            venue: ticket.venue.clone(),
            starts_at: ticket.starts_at.map(TimeView::of),
            face_value: ticket
                .face_value
                .map(|c| format!("face value {}", money(c.get(), currency))),
            started: ticket.starts_at.is_some_and(crate::forms::has_started),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.venue.is_none() && self.starts_at.is_none() && self.face_value.is_none()
    }
}

/// A ticket in a list.
#[derive(Debug, Clone)]
pub struct TicketCard {
    pub id: String,
    pub title: String,
    pub price: String,
    pub details: EventDetails,
}

impl TicketCard {
    pub fn of(ticket: &Ticket, currency: &str) -> Self {
        Self {
            id: ticket.id.to_string(),
            title: ticket.title.clone(),
            price: money(ticket.price.get(), currency),
            details: EventDetails::of(ticket, currency),
        }
    }
}

/// The state of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    OnSale,
    /// Its owner does not offer it (taken off sale, or listed off sale).
    OffSale,
    Reserved,
    /// Bought, and not listed again by its new owner (a ticket of the first release stays
    /// sold to its order).
    Sold,
}

impl TicketState {
    pub fn of(ticket: &Ticket) -> Self {
        if ticket.sold {
            Self::Sold
        } else if ticket.order_id.is_some() {
            Self::Reserved
        } else if ticket.for_sale {
            Self::OnSale
        } else {
            Self::OffSale
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OnSale => "On sale",
            Self::OffSale => "Off sale",
            Self::Reserved => "Reserved",
            Self::Sold => "Sold",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            Self::OnSale => "on-sale",
            Self::OffSale => "off-sale",
            Self::Reserved => "reserved",
            Self::Sold => "sold",
        }
    }

    /// Its owner may change it (edit, file, on/off sale): not while an order holds it.
    pub fn editable(self) -> bool {
        matches!(self, Self::OnSale | Self::OffSale)
    }
}

/// The listing's address for the search `q` (`/?q=opera+gala`), encoded as a browser encodes
/// the search form (`application/x-www-form-urlencoded`: a space is `+`), so that it is a local
/// path `next` may lead back to.
pub fn search_path(q: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    format!("/?q={encoded}")
}

/// What a query value keeps as it is: RFC 3986's unreserved characters; anything else is
/// percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What a local path given as a query value (`next`) keeps as it is: also its `/`s.
const PATH_VALUE: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// `s` percent-encoded for a query value.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The local path `s` percent-encoded for a query value, its `/`s left as they are.
pub fn path_value(s: &str) -> String {
    utf8_percent_encode(s, PATH_VALUE).to_string()
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub q: String,
    pub tickets: Vec<TicketCard>,
    pub next: Option<String>,
    pub previous: Option<String>,
    /// "12 tickets match “opera”", "Tickets 25–48 on sale".
    pub count: Option<String>,
    /// For a signed-out visitor whose search found nothing: "Alert me" leads to sign in,
    /// then back to this search.
    pub sign_in_to_alert: String,
    /// The API refused the listing asked for (a search it does not take): the banner says why,
    /// and the page does not claim that no tickets are on sale.
    pub refused: bool,
}

impl HomePage {
    /// A search that found nothing (and did not fail): the page offers an alert for it.
    pub fn offers_alert(&self) -> bool {
        !self.q.is_empty() && self.tickets.is_empty() && self.layout.error.is_none()
    }
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
    /// The other form (sign in ↔ sign up), leading to the same `next`.
    pub other: String,
}

#[derive(Template)]
#[template(path = "ticket_form.html")]
pub struct TicketFormPage {
    pub layout: Layout,
    pub heading: String,
    pub action: String,
    pub submit: String,
    pub form: TicketForm,
    /// The start field holds a UTC time from the API, which the script shows in local time
    /// (not when it holds what the person typed).
    pub starts_at_is_utc: bool,
    /// Editing a ticket whose file was uploaded: the file input replaces it.
    pub has_file: bool,
    pub errors: FieldErrors,
    /// The currency prices are typed in.
    pub currency: CurrencyView,
    /// The marketplace's fee on a sale, in percent.
    pub fee_percent: u8,
}

/// The currency of the prices on a form: its symbol before the field and its code in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyView {
    /// `$`, `€`, `£`, or the code (`CHF`).
    pub symbol: String,
    /// `USD`.
    pub code: String,
}

impl CurrencyView {
    pub fn of(currency: &str) -> Self {
        let code = currency.to_ascii_uppercase();
        let symbol = bt_contract::money::currency_symbol(currency)
            .map_or_else(|| code.clone(), str::to_owned);
        Self { symbol, code }
    }
}

/// A question before something that cannot be undone: "Cancel your reservation?", with the
/// button that does it (a form post) and the way back.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    /// Where the form posts.
    pub action: String,
    /// The button's text.
    pub confirm: String,
    pub back: String,
    pub back_label: String,
}

/// A ticket on its own page.
#[derive(Debug, Clone)]
pub struct TicketView {
    pub id: String,
    pub title: String,
    pub price: String,
    pub state: TicketState,
    /// The signed-in person owns it: the seller while listed, the buyer once bought.
    pub is_owner: bool,
    pub details: EventDetails,
    pub has_file: bool,
}

/// Whether `viewer` (signed in, or `None`) owns `ticket`: its seller while listed, its buyer
/// once bought.
pub fn owns(viewer: Option<&UserView>, ticket: &Ticket) -> bool {
    viewer.is_some_and(|u| u.id == ticket.user_id.as_str())
}

impl TicketView {
    pub fn of(ticket: &Ticket, viewer: Option<&UserView>, currency: &str) -> Self {
        Self {
            id: ticket.id.to_string(),
            title: ticket.title.clone(),
            price: money(ticket.price.get(), currency),
            state: TicketState::of(ticket),
            is_owner: owns(viewer, ticket),
            details: EventDetails::of(ticket, currency),
            has_file: ticket.has_file,
        }
    }
}

#[derive(Template)]
#[template(path = "ticket.html")]
pub struct TicketPage {
    pub layout: Layout,
    pub ticket: TicketView,
    /// The signed-in buyer's own open order of this ticket (it is reserved for them): the page
    /// leads to it.
    pub own_order: Option<OrderView>,
    /// How long a purchase holds the ticket: "15 minutes".
    pub reservation: String,
    /// Sign in / sign up, then back to this ticket.
    pub sign_in: String,
    pub sign_up: String,
}

/// An order on its own page or in a list.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub ticket_id: String,
    pub ticket_title: String,
    pub price: String,
    pub expires_at: String,
    pub expires_at_text: String,
    pub payable: bool,
    pub expired: bool,
    pub paid: bool,
    /// Open, with its card authorised: the order is being completed (the page refreshes).
    pub authorized: bool,
    /// The money, once a payment was authorised for the order.
    pub payment: Option<PaymentView>,
    /// Why the order ended unpaid (cancelled, or past its window), for people.
    pub ended: Option<&'static str>,
    /// When the order was placed (the time in its UUIDv7 id).
    pub placed: Option<TimeView>,
    /// While it can be paid: the time left, in seconds (the script counts them down) and in
    /// words ("12 minutes left").
    pub time_left: Option<TimeLeft>,
    /// Two minutes or less left to pay.
    pub urgent: bool,
}

/// The payment of an order, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    /// `Paid $20.50`, `Paid $20.50 — $5.00 refunded`, `Card authorised, confirming…`, `Card
    /// hold released — nothing was charged`, `Refunded $20.50 — all of it was given back`.
    pub text: String,
    /// The CSS class of its state: `paid`, `pending` or `released`.
    pub class: &'static str,
}

impl PaymentView {
    pub fn of(payment: &OrderPayment, currency: &str) -> Self {
        let amount = money(payment.amount.get(), currency);
        let (text, class) = match payment.status {
            OrderPaymentStatus::Succeeded if payment.refunded.get() > 0 => (
                format!(
                    "Paid {amount} — {} refunded",
                    money(payment.refunded.get(), currency)
                ),
                "paid",
            ),
            OrderPaymentStatus::Succeeded => (format!("Paid {amount}"), "paid"),
            OrderPaymentStatus::Authorized => {
                ("Card authorised, confirming…".to_owned(), "pending")
            }
            OrderPaymentStatus::Voided => (
                "Card hold released — nothing was charged".to_owned(),
                "released",
            ),
            OrderPaymentStatus::Refunded => (
                format!("Refunded {amount} — all of it was given back"),
                "released",
            ),
        };
        Self { text, class }
    }
}

/// What the buyer reads about an order that ended unpaid because it expired.
pub const EXPIRED_TEXT: &str = "This order expired before it was paid.";

/// Why an order was cancelled, for the buyer.
pub fn cancel_reason_text(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Buyer => "You cancelled this order.",
        CancelReason::Expired => EXPIRED_TEXT,
        CancelReason::TicketChanged => {
            "The seller changed this ticket's title or price before your reservation was confirmed, so the order was cancelled. Nothing was charged."
        }
        CancelReason::NotForSale => {
            "The seller took this ticket off sale before your reservation was confirmed, so the order was cancelled. Nothing was charged."
        }
        CancelReason::EventStarted => {
            "The event started before your reservation was confirmed, so the order was cancelled. Nothing was charged."
        }
    }
}

impl OrderView {
    pub fn of(order: &Order, currency: &str, now: DateTime<Utc>) -> Self {
        let status = order.status;
        let expires_at = order.expires_at.to_datetime();
        let past_window = now >= expires_at;
        let open = matches!(status, OrderStatus::Created | OrderStatus::AwaitingPayment);
        // Authorised in time, the order is completed even when it is looked at after its window.
        let authorized = open
            && order
                .payment
                .as_ref()
                .is_some_and(|p| p.status == OrderPaymentStatus::Authorized);
        let expired = match status {
            OrderStatus::Complete => false,
            // Orders from before `cancelReason` existed: the window tells.
            OrderStatus::Cancelled => match order.cancel_reason {
                Some(reason) => reason == CancelReason::Expired,
                None => past_window,
            },
            OrderStatus::Created | OrderStatus::AwaitingPayment => past_window && !authorized,
        };
        let refunded = order
            .payment
            .as_ref()
            .is_some_and(|p| p.status == OrderPaymentStatus::Refunded);
        let (status_label, status_class) = match status {
            // All of the money went back to the buyer (e.g. refunded in Stripe's dashboard).
            OrderStatus::Complete if refunded => ("Refunded", "cancelled"),
            OrderStatus::Complete => ("Paid", "paid"),
            OrderStatus::Cancelled if expired => ("Expired", "expired"),
            OrderStatus::Cancelled => ("Cancelled", "cancelled"),
            _ if expired => ("Expired", "expired"),
            OrderStatus::AwaitingPayment => ("Payment in progress", "pending"),
            _ if authorized => ("Payment in progress", "pending"),
            _ => ("Awaiting payment", "pending"),
        };
        let ended = match (status, order.cancel_reason) {
            (OrderStatus::Cancelled, Some(reason)) => Some(cancel_reason_text(reason)),
            _ if expired => Some(EXPIRED_TEXT),
            (OrderStatus::Cancelled, None) => Some("This order was cancelled."),
            _ => None,
        };
        Self {
            id: order.id.to_string(),
            status,
            status_label,
            status_class,
            ticket_id: order.ticket.id.to_string(),
            ticket_title: order.ticket.title.clone(),
            price: money(order.ticket.price.get(), currency),
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires_at_text: utc_text(expires_at),
            payable: open && !past_window && !authorized,
            expired,
            paid: status == OrderStatus::Complete,
            authorized,
            payment: order.payment.as_ref().map(|p| PaymentView::of(p, currency)),
            ended,
            placed: uuid::Uuid::parse_str(order.id.as_str())
                .ok()
                .and_then(|id| id.get_timestamp())
                .and_then(|ts| {
                    let (secs, nanos) = ts.to_unix();
                    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
                })
                .map(|at| TimeView::of(Millis::from(at))),
            time_left: (open && !past_window && !authorized)
                .then(|| TimeLeft::of(expires_at - now)),
            urgent: open && !past_window && !authorized && expires_at - now <= URGENT,
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
    /// The order's card is authorised and the order is not decided yet: the page refreshes
    /// itself.
    pub confirming: bool,
    /// A payment was submitted (`?paid=1`) but the order, still payable, has none: it was
    /// declined or has not gone through yet. The page says so above the pay form.
    pub not_through: bool,
    /// The ticket's file, once the order is complete.
    pub file: FileLink,
}

/// What a paid order's page says about the ticket's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLink {
    /// Nothing (not paid, or the ticket has changed hands since).
    None,
    /// The buyer owns the ticket and its file is there: a download link.
    Ready,
    /// The buyer owns the ticket, but the seller has not uploaded its file.
    NotUploaded,
}

impl OrderPage {
    /// The page of `order`; `paid` when the address says a payment was submitted (`?paid=1`,
    /// where the API's 201 or 202 leads). Only the order's own payment tells whether one is
    /// being decided: while its card is authorised the page says so and refreshes itself. An
    /// open order without a payment stays payable whatever the address says (the submitted
    /// payment was declined, or has not gone through yet — the payments service never charges
    /// an order twice); with `paid`, the page says that no payment has gone through.
    pub fn new(layout: Layout, order: OrderView, paid: bool, stripe_key: Option<String>) -> Self {
        Self {
            layout,
            confirming: order.authorized,
            not_through: paid && order.payable,
            order,
            cards: TEST_CARDS.to_vec(),
            stripe_key,
            file: FileLink::None,
        }
    }

    /// Whether the page loads Stripe.js (and so needs [`crate::headers::CSP_WITH_STRIPE`]).
    pub fn uses_stripe(&self) -> bool {
        self.stripe_key.is_some() && self.order.payable
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
pub struct OrdersPage {
    pub layout: Layout,
    pub orders: Vec<OrderView>,
}

/// A ticket on "My tickets": one its owner lists (on sale, off sale, reserved) or one they
/// bought and hold.
#[derive(Debug, Clone)]
pub struct MyTicketView {
    pub id: String,
    pub title: String,
    pub price: String,
    pub state: TicketState,
    pub details: EventDetails,
    pub has_file: bool,
    /// The "Sell again" price field: what was typed (after an error), else the price paid.
    pub sell_price: String,
    /// The API's refusal of "Sell again" or of a change of sale, next to the price field.
    pub error: Option<String>,
}

impl MyTicketView {
    pub fn of(ticket: &Ticket, currency: &str) -> Self {
        Self {
            id: ticket.id.to_string(),
            title: ticket.title.clone(),
            price: money(ticket.price.get(), currency),
            state: TicketState::of(ticket),
            details: EventDetails::of(ticket, currency),
            has_file: ticket.has_file,
            sell_price: ticket.price.to_string(),
            error: None,
        }
    }

    /// Bought and held: the owner downloads it or sells it again.
    pub fn is_bought(&self) -> bool {
        self.state == TicketState::Sold
    }
}

#[derive(Template)]
#[template(path = "my_tickets.html")]
pub struct MyTicketsPage {
    pub layout: Layout,
    /// The tickets the person offers or offered (on sale, off sale, reserved).
    pub listings: Vec<MyTicketView>,
    /// The tickets they bought and hold.
    pub owned: Vec<MyTicketView>,
    /// The tickets they sold without their file: the buyer waits for it.
    pub undelivered: Vec<MyTicketView>,
}

impl MyTicketsPage {
    pub fn new(layout: Layout, tickets: Vec<MyTicketView>, undelivered: Vec<MyTicketView>) -> Self {
        let (owned, listings) = tickets.into_iter().partition(MyTicketView::is_bought);
        Self {
            layout,
            listings,
            owned,
            undelivered,
        }
    }
}

/// The upload (or replacement) of a ticket's file.
#[derive(Template)]
#[template(path = "ticket_file.html")]
pub struct TicketFilePage {
    pub layout: Layout,
    pub ticket: TicketView,
    pub errors: FieldErrors,
    /// A ticket sold without its file: it goes to a buyer who paid already.
    pub for_buyer: bool,
}

/// An entry of the payouts page.
#[derive(Debug, Clone)]
pub struct PayoutEntryView {
    pub title: String,
    pub ticket_id: Option<String>,
    pub is_reversal: bool,
    pub price: String,
    pub fee: String,
    pub amount: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub available_at: TimeView,
    pub paid_at: Option<TimeView>,
}

impl PayoutEntryView {
    pub fn of(entry: &PayoutEntry, currency: &str) -> Self {
        let (status_label, status_class) = match entry.status {
            CreditStatus::Pending => ("Pending", "pending"),
            CreditStatus::Available => ("Available", "on-sale"),
            CreditStatus::Transferring => ("Being paid", "pending"),
            CreditStatus::Paid => ("Paid", "paid"),
            CreditStatus::Reversed => ("Reversed", "cancelled"),
        };
        let title = entry.title.clone().unwrap_or_else(|| "A ticket".to_owned());
        let is_reversal = entry.kind == EntryKind::Reversal;
        Self {
            title: if is_reversal {
                format!("Refund: {title}")
            } else {
                title
            },
            ticket_id: entry.ticket_id.as_ref().map(ToString::to_string),
            is_reversal,
            price: money(entry.price.get(), currency),
            fee: money(entry.fee.get(), currency),
            amount: money(entry.amount.get(), currency),
            status_label,
            status_class,
            available_at: TimeView::of(entry.available_at),
            paid_at: entry.paid_at.map(TimeView::of),
        }
    }
}

/// The payouts page's address: the newest entries, or those older than entry `before` (the id
/// percent-encoded: it is the API's text, and goes into a query and back to the API).
pub fn payouts_path(before: Option<&str>) -> String {
    match before {
        Some(id) => format!("/payouts?before={}", query_value(id)),
        None => "/payouts".to_owned(),
    }
}

/// The seller's payouts: the balance, the account, one page of entries (newest first), the
/// totals of every entry, and the links to the other pages.
#[derive(Template)]
#[template(path = "payouts.html")]
pub struct PayoutsPage {
    pub layout: Layout,
    pub pending: String,
    pub available: String,
    pub paid: String,
    pub account: PayoutAccountStatus,
    pub entries: Vec<PayoutEntryView>,
    /// Sums of price, fee and amount over every entry that counts (all but `reversed`), from
    /// the API's `totals`: the page holds only some of the entries.
    pub total_price: String,
    /// Some entry (on any page) is `reversed`, and left out of the totals.
    pub has_reversed: bool,
    pub total_fee: String,
    pub total_amount: String,
    /// The page of older entries (`/payouts?before=<next>`), when there is one.
    pub older: Option<String>,
    /// Back to the newest entries (`/payouts`), on every page but the first.
    pub newest: Option<String>,
}

impl PayoutsPage {
    /// The page of `payouts` that was asked for with `before` (`None`: the first page).
    pub fn new(layout: Layout, payouts: &Payouts, before: Option<&str>, currency: &str) -> Self {
        let totals = &payouts.totals;
        Self {
            layout,
            pending: money(payouts.pending.get(), currency),
            available: money(payouts.available.get(), currency),
            paid: money(payouts.paid.get(), currency),
            account: payouts.account.status,
            entries: payouts
                .entries
                .iter()
                .map(|e| PayoutEntryView::of(e, currency))
                .collect(),
            total_price: money(totals.price.get(), currency),
            has_reversed: totals.reversed > 0,
            total_fee: money(totals.fee.get(), currency),
            total_amount: money(totals.amount.get(), currency),
            older: payouts.next.as_deref().map(|next| payouts_path(Some(next))),
            newest: before.map(|_| payouts_path(None)),
        }
    }

    /// What the account's state means for the seller.
    pub fn account_text(&self) -> &'static str {
        match self.account {
            PayoutAccountStatus::None => "Set up payouts to receive the money from your sales.",
            PayoutAccountStatus::Onboarding => {
                "Your payout setup is not finished yet. Continue where you left off."
            }
            PayoutAccountStatus::Restricted => {
                "Your payout provider needs more details before it can pay you."
            }
            PayoutAccountStatus::Enabled => {
                "Payouts are set up: available money is transferred to you automatically."
            }
        }
    }

    /// The label of the setup button; none once the account is enabled.
    pub fn setup_label(&self) -> Option<&'static str> {
        match self.account {
            PayoutAccountStatus::None => Some("Set up payouts"),
            PayoutAccountStatus::Onboarding | PayoutAccountStatus::Restricted => {
                Some("Continue payout setup")
            }
            PayoutAccountStatus::Enabled => None,
        }
    }
}

/// A notification on the notifications page.
#[derive(Debug, Clone)]
pub struct NotificationView {
    pub id: String,
    /// What it is about, in words: `Ticket alert`, `Receipt`.
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    /// Where it leads: a path of this site, else nothing (whatever the API says, a
    /// notification never links elsewhere).
    pub link: Option<String>,
    pub created_at: TimeView,
    pub read: bool,
}

impl NotificationView {
    pub fn of(notification: &Notification) -> Self {
        Self {
            id: notification.id.to_string(),
            kind: notification_kind_text(notification.kind),
            title: notification.title.clone(),
            body: notification.body.clone(),
            link: notification
                .link
                .clone()
                .filter(|link| crate::pages::is_local_path(link)),
            created_at: TimeView::of(notification.created_at),
            read: notification.read,
        }
    }
}

/// What a notification is about, for people.
pub fn notification_kind_text(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::OrderReceipt => "Receipt",
        NotificationKind::TicketSold => "Sale",
        NotificationKind::ReservationExpired => "Reservation expired",
        NotificationKind::OrderCancelled => "Order cancelled",
        NotificationKind::PaymentDeclined => "Payment declined",
        NotificationKind::TicketAlert => "Ticket alert",
        NotificationKind::PaymentRefunded => "Refund",
    }
}

/// The signed-in user's notifications, a page at a time (newest first).
#[derive(Template)]
#[template(path = "notifications.html")]
pub struct NotificationsPage {
    pub layout: Layout,
    pub notifications: Vec<NotificationView>,
    /// Unread in all (not only on this page).
    pub unread: i64,
    /// The page before this one ends at this notification (`?before=`); `None` on the first.
    pub before: Option<String>,
    /// The next page of older ones, when this one came back full.
    pub older: Option<String>,
}

/// A ticket alert on the alerts page.
#[derive(Debug, Clone)]
pub struct AlertView {
    pub id: String,
    pub q: String,
    /// `up to $40.00`, or `any price`.
    pub price: String,
    pub created_at: TimeView,
    /// The listing with this search.
    pub search: String,
}

impl AlertView {
    pub fn of(alert: &Alert, currency: &str) -> Self {
        Self {
            id: alert.id.to_string(),
            q: alert.q.clone(),
            price: match alert.max_price {
                Some(max) => format!("up to {}", money(max.get(), currency)),
                None => "any price".to_owned(),
            },
            created_at: TimeView::of(alert.created_at),
            search: search_path(&alert.q),
        }
    }
}

/// The signed-in user's ticket alerts and the form to add one.
#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    pub layout: Layout,
    pub alerts: Vec<AlertView>,
    /// The form as typed (after a refusal), else empty.
    pub form: AlertForm,
    pub errors: FieldErrors,
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
    use bt_contract::Cents;
    use bt_contract::resources::OrderTicket;
    use serde_json::{Value, json};

    fn layout(unread: Option<i64>) -> Layout {
        Layout {
            title: "Page".into(),
            user: None,
            csrf: "tok".into(),
            notice: None,
            error: None,
            unread,
        }
    }

    #[test]
    fn the_bell_says_how_many_are_unread_and_shows_no_badge_at_zero() {
        // (the count, the accessible name, the badge)
        let cases = [
            (None, "Notifications", None),
            (Some(0), "Notifications", None),
            (Some(1), "Notifications, 1 unread", Some("1")),
            (Some(99), "Notifications, 99 unread", Some("99")),
            (Some(100), "Notifications, 100 unread", Some("99+")),
        ];
        for (unread, label, badge) in cases {
            let layout = layout(unread);
            assert_eq!(layout.bell_label(), label, "{unread:?}");
            assert_eq!(layout.bell_badge().as_deref(), badge, "{unread:?}");
        }
    }

    #[test]
    fn a_notification_links_only_to_this_site() {
        let notification = |link: Option<&str>| Notification {
            id: "n1".into(),
            kind: NotificationKind::TicketAlert,
            title: "On sale now: Opera Gala".into(),
            body: "A ticket for your alert.".into(),
            link: link.map(str::to_owned),
            created_at: Millis::from_datetime("2030-01-01T10:00:00Z".parse().unwrap()),
            read: false,
        };
        let cases = [
            (Some("/tickets/t1"), Some("/tickets/t1")),
            (Some("/payouts"), Some("/payouts")),
            (Some("https://evil.test/"), None),
            (Some("//evil.test"), None),
            (Some("javascript:alert(1)"), None),
            (None, None),
        ];
        for (link, shown) in cases {
            let view = NotificationView::of(&notification(link));
            assert_eq!(view.link.as_deref(), shown, "{link:?}");
            assert_eq!(view.kind, "Ticket alert");
            assert_eq!(view.created_at.text, "Tue 1 Jan 2030, 10:00 UTC");
        }
    }

    #[test]
    fn an_alert_shows_its_price_limit_in_words_and_its_search() {
        let alert = |max_price: Option<i64>| Alert {
            id: "a1".into(),
            q: "Opera Gala".into(),
            max_price: max_price.map(Cents::new),
            created_at: Millis::from_datetime("2030-01-01T10:00:00Z".parse().unwrap()),
        };
        let limited = AlertView::of(&alert(Some(3950)), "usd");
        assert_eq!(limited.price, "up to $39.50");
        assert_eq!(limited.search, "/?q=Opera+Gala");
        assert_eq!(AlertView::of(&alert(None), "usd").price, "any price");
    }

    #[test]
    fn a_payouts_page_address_carries_its_entry_id_encoded() {
        let cases = [
            (None, "/payouts"),
            (
                Some("0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"),
                "/payouts?before=0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
            ),
            (Some("a b&c=d/é"), "/payouts?before=a%20b%26c%3Dd%2F%C3%A9"),
            (Some("\"><x"), "/payouts?before=%22%3E%3Cx"),
        ];
        for (before, path) in cases {
            assert_eq!(payouts_path(before), path, "{before:?}");
        }
    }

    #[test]
    fn money_is_shown_with_its_currency() {
        assert_eq!(money(2050, "usd"), "$20.50");
        assert_eq!(money(5, "EUR"), "€0.05");
        assert_eq!(money(100_000_000, "chf"), "1,000,000.00 CHF");
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
        let (fields, banner) = FieldErrors::from_api(&errors, &crate::forms::AUTH_FIELDS);
        assert_eq!(fields.get("email"), Some("Email must be valid"));
        assert_eq!(banner.as_deref(), Some("Email in use"));
    }

    /// An order of a $20.50 ticket, its window ending at `expires`.
    fn order(status: OrderStatus, expires: &str) -> Order {
        Order {
            id: "o1".into(),
            user_id: "u1".into(),
            status,
            expires_at: Millis::from_datetime(expires.parse().unwrap()),
            version: 0,
            ticket: OrderTicket {
                id: "t1".into(),
                title: "Show".into(),
                price: Cents::new(2050),
                version: 0,
            },
            payment: None,
            cancel_reason: None,
        }
    }

    fn with_payment(order: Order, status: OrderPaymentStatus) -> Order {
        let refunded = if status == OrderPaymentStatus::Refunded {
            2050
        } else {
            0
        };
        with_refund(order, status, refunded)
    }

    fn with_refund(mut order: Order, status: OrderPaymentStatus, refunded: i64) -> Order {
        order.payment = Some(OrderPayment {
            id: "p1".into(),
            amount: Cents::new(2050),
            status,
            refunded: Cents::new(refunded),
        });
        order
    }

    fn cancelled(reason: CancelReason, expires: &str) -> Order {
        Order {
            cancel_reason: Some(reason),
            ..order(OrderStatus::Cancelled, expires)
        }
    }

    /// The moment the tests look at orders from; windows end at 10:10 (open) or 09:59 (over).
    const NOW: &str = "2026-11-25T10:00:00Z";
    const OPEN: &str = "2026-11-25T10:10:00Z";
    const OVER: &str = "2026-11-25T09:59:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    /// The order page as the handler builds it (`paid`: the address says a payment was
    /// submitted).
    fn render_order(order: &Order, paid: bool, stripe_key: Option<&str>) -> String {
        let layout = Layout {
            title: "Order".into(),
            user: None,
            csrf: "tok".into(),
            notice: None,
            error: None,
            unread: None,
        };
        let view = OrderView::of(order, "usd", now());
        OrderPage::new(layout, view, paid, stripe_key.map(str::to_owned))
            .render()
            .unwrap()
            // Askama escapes apostrophes; the tests read the text.
            .replace("&#39;", "'")
    }

    fn order_page(stripe_key: Option<&str>) -> String {
        render_order(&order(OrderStatus::Created, OPEN), false, stripe_key)
    }

    fn render_orders(orders: &[Order]) -> String {
        OrdersPage {
            layout: Layout {
                title: "My orders".into(),
                user: None,
                csrf: "tok".into(),
                notice: None,
                error: None,
                unread: None,
            },
            orders: orders
                .iter()
                .map(|o| OrderView::of(o, "usd", now()))
                .collect(),
        }
        .render()
        .unwrap()
        .replace("&#39;", "'")
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
        let open = OrderView::of(&order(OrderStatus::Created, OPEN), "usd", now());
        assert!(open.payable && !open.expired);
        assert_eq!(
            (open.status_label, open.price.as_str()),
            ("Awaiting payment", "$20.50")
        );
        let late = OrderView::of(&order(OrderStatus::Created, OVER), "usd", now());
        assert!(!late.payable && late.expired);
        let expired = OrderView::of(&order(OrderStatus::Cancelled, OVER), "usd", now());
        assert_eq!(expired.status_label, "Expired");
        let cancelled = OrderView::of(&order(OrderStatus::Cancelled, OPEN), "usd", now());
        assert_eq!(cancelled.status_label, "Cancelled");
        let paid = OrderView::of(&order(OrderStatus::Complete, OVER), "usd", now());
        assert!(paid.paid && !paid.payable);
        assert_eq!(paid.status_label, "Paid");
        let partly = OrderView::of(
            &with_refund(
                order(OrderStatus::Complete, OVER),
                OrderPaymentStatus::Succeeded,
                500,
            ),
            "usd",
            now(),
        );
        assert_eq!(partly.status_label, "Paid");
        let refunded = OrderView::of(
            &with_payment(
                order(OrderStatus::Complete, OVER),
                OrderPaymentStatus::Refunded,
            ),
            "usd",
            now(),
        );
        assert_eq!(
            (refunded.status_label, refunded.status_class),
            ("Refunded", "cancelled")
        );
    }

    #[test]
    fn the_order_page_shows_each_payment_status_in_words() {
        let cases = [
            (
                with_payment(
                    order(OrderStatus::Complete, OPEN),
                    OrderPaymentStatus::Succeeded,
                ),
                "Paid $20.50",
                "paid",
            ),
            (
                with_payment(
                    order(OrderStatus::Created, OPEN),
                    OrderPaymentStatus::Authorized,
                ),
                "Card authorised, confirming…",
                "pending",
            ),
            (
                with_payment(
                    cancelled(CancelReason::TicketChanged, OPEN),
                    OrderPaymentStatus::Voided,
                ),
                "Card hold released — nothing was charged",
                "released",
            ),
            (
                with_refund(
                    order(OrderStatus::Complete, OVER),
                    OrderPaymentStatus::Succeeded,
                    500,
                ),
                "Paid $20.50 — $5.00 refunded",
                "paid",
            ),
            (
                with_payment(
                    order(OrderStatus::Complete, OVER),
                    OrderPaymentStatus::Refunded,
                ),
                "Refunded $20.50 — all of it was given back",
                "released",
            ),
            (
                with_payment(
                    cancelled(CancelReason::Expired, OVER),
                    OrderPaymentStatus::Refunded,
                ),
                "Refunded $20.50 — all of it was given back",
                "released",
            ),
        ];
        for (order, sentence, class) in cases {
            let html = render_order(&order, false, None);
            let line = format!(r#"<p class="payment {class}" id="payment">{sentence}</p>"#);
            assert!(html.contains(&line), "{sentence}: {html}");
        }
        let unpaid = render_order(&order(OrderStatus::Created, OPEN), false, None);
        assert!(!unpaid.contains(r#"id="payment""#), "no payment, no line");
    }

    #[test]
    fn the_order_page_says_why_an_order_was_cancelled() {
        let cases = [
            (
                CancelReason::Buyer,
                "You cancelled this order.",
                "cancelled",
                "Cancelled",
            ),
            (
                CancelReason::Expired,
                "This order expired before it was paid.",
                "expired",
                "Expired",
            ),
            (
                CancelReason::TicketChanged,
                "The seller changed this ticket's title or price before your reservation was confirmed, so the order was cancelled. Nothing was charged.",
                "cancelled",
                "Cancelled",
            ),
        ];
        for (reason, sentence, id, label) in cases {
            // The reason decides, not the clock: within the window and after it alike.
            for expires in [OPEN, OVER] {
                let html = render_order(&cancelled(reason, expires), false, None);
                assert!(
                    html.contains(&format!(
                        r#"<p class="aside" id="{id}">{sentence} <a href="/tickets/t1">"#
                    )),
                    "{reason} at {expires}: {html}"
                );
                assert!(
                    html.contains(&format!(r#"id="order-status">{label}</p>"#)),
                    "{reason} at {expires}: {html}"
                );
                assert!(!html.contains(r#"id="pay-form""#), "{reason}: not payable");
            }
        }
    }

    #[test]
    fn an_order_cancelled_before_reasons_existed_reads_its_window() {
        let expired = render_order(&order(OrderStatus::Cancelled, OVER), false, None);
        assert!(expired.contains(r#"id="expired">This order expired before it was paid."#));
        let cancelled = render_order(&order(OrderStatus::Cancelled, OPEN), false, None);
        assert!(cancelled.contains(r#"id="cancelled">This order was cancelled."#));
        let unpaid_past_window = render_order(&order(OrderStatus::Created, OVER), false, None);
        assert!(
            unpaid_past_window.contains(r#"id="expired">This order expired before it was paid."#)
        );
    }

    #[test]
    fn an_authorised_card_keeps_the_page_confirming_without_a_pay_form() {
        // Authorised within the window, the order is being completed even after it.
        for expires in [OPEN, OVER] {
            let order = with_payment(
                order(OrderStatus::Created, expires),
                OrderPaymentStatus::Authorized,
            );
            let view = OrderView::of(&order, "usd", now());
            assert!(
                view.authorized && !view.payable && !view.expired,
                "{expires}"
            );
            assert_eq!(view.status_label, "Payment in progress");
            let html = render_order(&order, false, None);
            assert!(
                html.contains(r#"<meta http-equiv="refresh" content="2">"#),
                "{html}"
            );
            assert!(!html.contains(r#"id="pay-form""#) && !html.contains(r#"id="expired""#));
            // With `?paid=1` too: the payment line says it, once.
            let paid = render_order(&order, true, None);
            assert!(paid.contains(r#"<meta http-equiv="refresh" content="2">"#));
            assert_eq!(paid.matches("confirming").count(), 1, "{paid}");
            assert!(!paid.contains("payment-not-through"));
        }
    }

    #[test]
    fn a_submitted_payment_the_order_does_not_hold_leaves_the_order_payable() {
        // `?paid=1` (the API answered 201 or 202) but the order has no payment: it was
        // declined, or has not gone through yet. The order alone tells: no refreshing, the pay
        // form, and a line that says so.
        let html = render_order(&order(OrderStatus::Created, OPEN), true, None);
        assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
        assert!(html.contains(r#"id="payment-not-through">No payment has gone through"#));
        assert!(html.contains(r#"id="pay-form""#) && html.contains(r#"id="cancel""#));
        // Decided: no refreshing, no such line.
        for decided in [
            with_payment(
                order(OrderStatus::Complete, OPEN),
                OrderPaymentStatus::Succeeded,
            ),
            with_payment(
                cancelled(CancelReason::Expired, OVER),
                OrderPaymentStatus::Voided,
            ),
        ] {
            let html = render_order(&decided, true, None);
            assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
            assert!(!html.contains("payment-not-through"));
        }
        let paid = render_order(
            &with_payment(
                order(OrderStatus::Complete, OPEN),
                OrderPaymentStatus::Succeeded,
            ),
            true,
            None,
        );
        assert!(paid.contains(r#"id="paid""#) && paid.contains("Paid $20.50"));
    }

    #[test]
    fn the_orders_list_shows_the_money_and_why_orders_ended() {
        let html = render_orders(&[
            with_payment(
                order(OrderStatus::Complete, OVER),
                OrderPaymentStatus::Succeeded,
            ),
            with_payment(
                order(OrderStatus::Created, OPEN),
                OrderPaymentStatus::Authorized,
            ),
            with_payment(
                cancelled(CancelReason::TicketChanged, OPEN),
                OrderPaymentStatus::Voided,
            ),
            cancelled(CancelReason::Buyer, OPEN),
            cancelled(CancelReason::Expired, OVER),
        ]);
        for text in [
            r#"<span class="note payment paid">Paid $20.50</span>"#,
            r#"<span class="note payment pending">Card authorised, confirming…</span>"#,
            r#"<span class="note payment released">Card hold released — nothing was charged</span>"#,
            r#"<span class="note">The seller changed this ticket's title or price"#,
            r#"<span class="note">You cancelled this order.</span>"#,
            r#"<span class="note">This order expired before it was paid.</span>"#,
            r#"<span class="state expired">Expired</span>"#,
            r#"<span class="state pending">Payment in progress</span>"#,
        ] {
            assert!(html.contains(text), "{text}: {html}");
        }
    }

    #[test]
    fn an_order_reply_of_another_shape_does_not_parse() {
        let good = serde_json::to_value(order(OrderStatus::Created, OPEN)).unwrap();
        assert!(serde_json::from_value::<Order>(good.clone()).is_ok());
        let cases = [
            ("status", json!("shipped"), "an unknown status"),
            ("expiresAt", json!("soon"), "a time that is not ISO-8601"),
            ("expiresAt", Value::Null, "no window"),
            ("cancelReason", json!("bored"), "an unknown cancel reason"),
            (
                "payment",
                json!({"id": "p1", "amount": 20.5, "status": "pending"}),
                "an unknown payment status",
            ),
        ];
        for (field, value, why) in cases {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(serde_json::from_value::<Order>(bad).is_err(), "{why}");
        }
    }
}
