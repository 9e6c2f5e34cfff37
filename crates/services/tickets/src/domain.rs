//! The tickets domain: titles, prices and event details parsed at the edge, and the ticket's
//! changes as pure transitions — listed, edited or relisted by its owner, reserved for an order
//! (only at the terms the order was placed on, while on sale and before the event starts),
//! released, sold (the buyer becomes the owner) — each answering the changed ticket and its
//! event, or a [`Refusal`]. Tested without a database.
//!
//! Resale rules: a price may exceed the face value by at most the resale cap
//! ([`ResaleCap`], `RESALE_PRICE_CAP_PERCENT`, 120 by default); the event details (venue, start,
//! face value) are fixed once the ticket has been sold, so a buyer cannot raise the face value
//! to lift the cap; a sold ticket is off sale until its new owner lists it again.

use bt_contract::events::{
    OrderCreated, ReservationRefusal, TicketCreated, TicketData, TicketReservationRefused,
    TicketUpdated,
};
use bt_contract::{Cents, JsonField, Millis, MoneyError, OrderId, TicketId, UserId};
use serde::Serialize;

/// Whether `c` changes the direction of the text around it: the bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069). In a title or venue, shown beside
/// prices in pages, receipts and emails, one could make "00.5$" read "$5.00".
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why the text of `field` (a title, a venue) is refused for a character in it: a control
/// character or a text-direction control.
fn character_refusal(field: &str, text: &str) -> Option<String> {
    if text.chars().any(char::is_control) {
        Some(format!("{field} must not contain control characters"))
    } else if text.chars().any(is_direction_control) {
        Some(format!("{field} must not contain text-direction controls"))
    } else {
        None
    }
}

/// A ticket title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: Option<String>) -> Result<Self, String> {
        let title = raw.unwrap_or_default().trim().to_owned();
        if title.is_empty() {
            Err("Title is required".into())
        } else if title.chars().count() > Self::MAX_CHARS {
            Err(format!(
                "Title must be at most {} characters",
                Self::MAX_CHARS
            ))
        } else if let Some(refusal) = character_refusal("Title", &title) {
            Err(refusal)
        } else {
            Ok(Self(title))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A ticket price: more than 0, at most 1,000,000, at most 2 decimals; exact cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(Cents);

impl Price {
    pub const MAX: Cents = Cents::new(100_000_000);

    pub fn parse(raw: Option<&JsonField>) -> Result<Self, &'static str> {
        const POSITIVE: &str = "Price must be greater than 0";
        const NOT_A_NUMBER: &str = "Price must be a number, like 20 or 20.50";
        let raw = raw.ok_or(POSITIVE)?;
        match raw.as_cents() {
            Ok(cents) if cents.get() <= 0 => Err(POSITIVE),
            Ok(cents) if cents > Self::MAX => Err("Price must be at most 1000000"),
            Ok(cents) => Ok(Self(cents)),
            Err(MoneyError::TooManyDecimals) => Err("Price must have at most 2 decimal places"),
            Err(MoneyError::OutOfRange) => Err("Price must be at most 1000000"),
            // `"abc"`, `true`: say what is wrong. (`null` and a missing price keep the seed's
            // message above.)
            Err(MoneyError::NotANumber) if !raw.is_null() => Err(NOT_A_NUMBER),
            Err(MoneyError::NotANumber) => Err(POSITIVE),
        }
    }

    pub fn cents(self) -> Cents {
        self.0
    }

    /// A face value: the same rules as a price; absent or `null` is none.
    pub fn parse_face_value(raw: Option<&JsonField>) -> Result<Option<Self>, String> {
        match raw {
            None => Ok(None),
            Some(field) if field.is_null() => Ok(None),
            Some(field) => Self::parse(Some(field))
                .map(Some)
                .map_err(|message| message.replacen("Price", "Face value", 1)),
        }
    }
}

/// A venue: trimmed, 1 to 200 characters, no control characters nor text-direction controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venue(String);

impl Venue {
    pub const MAX_CHARS: usize = 200;

    /// `None` (absent, `null` or only white space) is no venue.
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, String> {
        let venue = raw.unwrap_or_default().trim().to_owned();
        if venue.is_empty() {
            Ok(None)
        } else if venue.chars().count() > Self::MAX_CHARS {
            Err(format!(
                "Venue must be at most {} characters",
                Self::MAX_CHARS
            ))
        } else if let Some(refusal) = character_refusal("Venue", &venue) {
            Err(refusal)
        } else {
            Ok(Some(Self(venue)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When an event starts, given as ISO-8601 with a time zone (`2026-12-31T20:00:00Z`,
/// `2026-12-31T21:00:00+01:00`), kept in UTC; it must be in the future when it is set. `None`
/// (absent or JSON `null`) is no start; a blank string is refused like any other non-date.
pub fn parse_starts_at(raw: Option<&str>, now: Millis) -> Result<Option<Millis>, &'static str> {
    const FORMAT: &str =
        "Event start must be a date and time with a time zone, e.g. 2026-12-31T20:00:00Z";
    // Absent is no start; a blank string is not a date (JSON `null` says "none").
    let Some(raw) = raw.map(str::trim) else {
        return Ok(None);
    };
    // RFC 3339 as JSON Schema's `date-time` reads it: `T` between date and time, not a space
    // (which chrono would also take).
    if !matches!(raw.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(FORMAT);
    }
    let at = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| FORMAT)?;
    let at = Millis::new(at.timestamp_millis()).map_err(|_| FORMAT)?;
    if at <= now {
        return Err("Event start must be in the future");
    }
    Ok(Some(at))
}

/// How far above its face value a ticket may be resold: at most `percent`% of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResaleCap {
    percent: u32,
}

impl ResaleCap {
    pub const DEFAULT_PERCENT: u32 = 120;
    /// A cap under 100% would forbid selling at face value; over 1000% is no cap.
    pub const PERCENT_RANGE: std::ops::RangeInclusive<u32> = 100..=1000;

    pub fn new(percent: u32) -> Result<Self, String> {
        if Self::PERCENT_RANGE.contains(&percent) {
            Ok(Self { percent })
        } else {
            Err(format!(
                "must be a whole number from {} to {} (percent of the face value)",
                Self::PERCENT_RANGE.start(),
                Self::PERCENT_RANGE.end()
            ))
        }
    }

    pub fn percent(self) -> u32 {
        self.percent
    }

    /// The highest price for a face value, rounded down to the cent.
    pub fn max_price(self, face_value: Cents) -> Cents {
        Cents::new(face_value.get() * i64::from(self.percent) / 100)
    }

    /// The price, or the message for the `price` field naming the maximum.
    pub fn check(self, price: Cents, face_value: Option<Cents>) -> Result<(), String> {
        match face_value {
            Some(face) if price > self.max_price(face) => Err(format!(
                "Price must be at most {} ({}% of the face value {})",
                self.max_price(face),
                self.percent,
                face
            )),
            _ => Ok(()),
        }
    }
}

impl Default for ResaleCap {
    fn default() -> Self {
        Self {
            percent: Self::DEFAULT_PERCENT,
        }
    }
}

/// A change of an optional field: left as it is (absent from the request), cleared (`null`),
/// or set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone + PartialEq> Patch<T> {
    /// A request field: absent → keep; `null` or blank → clear; else set.
    pub fn from_parsed(present: bool, value: Option<T>) -> Self {
        match (present, value) {
            (false, _) => Self::Keep,
            (true, None) => Self::Clear,
            (true, Some(v)) => Self::Set(v),
        }
    }

    fn applied_to(&self, current: &Option<T>) -> Option<T> {
        match self {
            Self::Keep => current.clone(),
            Self::Clear => None,
            Self::Set(v) => Some(v.clone()),
        }
    }
}

/// What a seller lists: the seed's title and price, and the event's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub title: Title,
    pub price: Price,
    pub venue: Option<Venue>,
    pub starts_at: Option<Millis>,
    pub face_value: Option<Price>,
}

/// An owner's change: title and price always (as the seed's `PUT` sends them), the details and
/// `forSale` only when the request names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub title: Title,
    pub price: Price,
    pub venue: Patch<Venue>,
    pub starts_at: Patch<Millis>,
    pub face_value: Patch<Price>,
    pub for_sale: Option<bool>,
}

/// A ticket as stored and as the API shows it: the seed's `{id, title, price, userId, version,
/// orderId}` plus `sold`, the event details, `forSale` and `hasFile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    /// The owner: the seller while it is listed, the buyer once an order for it completes.
    pub user_id: UserId,
    /// Goes up by one with every change.
    pub version: i64,
    /// The order that reserves it; `null` when it is free.
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
    /// Extension: true once an order for it was paid, until its new owner lists it again.
    pub sold: bool,
    /// Extension: where the event takes place.
    #[schema(required = true)]
    pub venue: Option<String>,
    /// Extension: when the event starts (UTC). Once it has, the ticket leaves the listing and
    /// cannot be ordered.
    #[schema(required = true)]
    pub starts_at: Option<Millis>,
    /// Extension: the price printed on the ticket; `price` may exceed it by the resale cap.
    #[schema(required = true)]
    pub face_value: Option<Cents>,
    /// Extension: whether its owner offers it for sale.
    pub for_sale: bool,
    /// Extension: whether the ticket's file was uploaded.
    pub has_file: bool,
    /// The buyer of the order that holds it (not shown).
    #[serde(skip)]
    pub reserved_for: Option<UserId>,
    /// How many times it was sold (not shown): its details are fixed once it was.
    #[serde(skip)]
    pub sales: i64,
    /// Who sold it last (not shown): the owner before its last sale, who may still upload the
    /// file while it has none ([`Ticket::may_replace_file`]).
    #[serde(skip)]
    pub sold_by: Option<UserId>,
}

/// Why a change of a ticket does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Not authorized")]
    NotOwner,
    #[error("Cannot edit a reserved ticket")]
    Reserved,
    #[error("The event details cannot be changed once the ticket has been sold")]
    DetailsFixed,
    #[error("This event has already started")]
    EventStarted,
    /// The price is over the resale cap: the message names the maximum.
    #[error("{0}")]
    OverCap(String),
    #[error("the ticket is reserved by this order already")]
    AlreadyReservedByIt,
    #[error("the ticket is held by order {0}")]
    HeldByAnother(OrderId),
    #[error("the ticket is not held by this order")]
    NotHeldByIt,
    #[error("the ticket is sold")]
    Sold,
}

/// The tickets service's answer to an order that wants the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Held for the order now; announce the change.
    Reserved(Box<Ticket>, TicketUpdated),
    /// The ticket is not what the buyer saw, or no longer for sale: announce the refusal,
    /// change nothing.
    Refused(TicketReservationRefused),
}

impl Ticket {
    /// A new ticket of `seller`, on sale (version 0), within the resale cap.
    pub fn list(
        id: TicketId,
        seller: UserId,
        listing: &Listing,
        cap: ResaleCap,
    ) -> Result<(Self, TicketCreated), Refusal> {
        let face_value = listing.face_value.map(Price::cents);
        cap.check(listing.price.cents(), face_value)
            .map_err(Refusal::OverCap)?;
        let ticket = Self {
            id,
            title: listing.title.as_str().to_owned(),
            price: listing.price.cents(),
            user_id: seller,
            version: 0,
            order_id: None,
            sold: false,
            venue: listing.venue.as_ref().map(|v| v.as_str().to_owned()),
            starts_at: listing.starts_at,
            face_value,
            for_sale: true,
            has_file: false,
            reserved_for: None,
            sales: 0,
            sold_by: None,
        };
        let created = TicketCreated(ticket.event_data());
        Ok((ticket, created))
    }

    /// The owner changes the listing, only while no order holds the ticket: title and price,
    /// the details (until the first sale), on or off sale (on sale only before the event).
    pub fn edit(
        mut self,
        by: &UserId,
        edit: &Edit,
        cap: ResaleCap,
        now: Millis,
    ) -> Result<(Self, TicketUpdated), Refusal> {
        if &self.user_id != by {
            return Err(Refusal::NotOwner);
        }
        if self.order_id.is_some() {
            return Err(Refusal::Reserved);
        }
        let venue = edit
            .venue
            .applied_to(&self.venue.clone().map(Venue))
            .map(|v| v.0);
        let starts_at = edit.starts_at.applied_to(&self.starts_at);
        let face_value = edit
            .face_value
            .applied_to(&self.face_value.map(Price))
            .map(Price::cents);
        let details_change =
            venue != self.venue || starts_at != self.starts_at || face_value != self.face_value;
        if details_change && self.sales > 0 {
            return Err(Refusal::DetailsFixed);
        }
        let for_sale = edit.for_sale.unwrap_or(self.for_sale);
        if for_sale && starts_at.is_some_and(|starts| starts <= now) {
            return Err(Refusal::EventStarted);
        }
        cap.check(edit.price.cents(), face_value)
            .map_err(Refusal::OverCap)?;
        if for_sale && !self.for_sale {
            // Listed again by its (new) owner.
            self.sold = false;
        }
        self.title = edit.title.as_str().to_owned();
        self.price = edit.price.cents();
        self.venue = venue;
        self.starts_at = starts_at;
        self.face_value = face_value;
        self.for_sale = for_sale;
        Ok(self.changed())
    }

    /// An order wants the ticket. It is reserved only while on sale, before the event starts,
    /// and at the terms the order was placed on (title and price; events of earlier versions
    /// carry no title, then the price alone).
    pub fn reserve(mut self, order: &OrderCreated, now: Millis) -> Result<Reservation, Refusal> {
        match &self.order_id {
            Some(holder) if *holder == order.id => return Err(Refusal::AlreadyReservedByIt),
            // Held by an earlier order whose cancellation has not arrived yet.
            Some(holder) => return Err(Refusal::HeldByAnother(holder.clone())),
            None => {}
        }
        let same_title = order
            .ticket
            .title
            .as_ref()
            .is_none_or(|title| *title == self.title);
        let refusal = if !self.for_sale {
            Some(ReservationRefusal::NotForSale)
        } else if self.starts_at.is_some_and(|starts| starts <= now) {
            Some(ReservationRefusal::EventStarted)
        } else if !same_title || order.ticket.price != self.price {
            Some(ReservationRefusal::TicketChanged)
        } else {
            None
        };
        if let Some(reason) = refusal {
            return Ok(Reservation::Refused(TicketReservationRefused {
                order_id: order.id.clone(),
                ticket_id: self.id.clone(),
                reason,
            }));
        }
        self.order_id = Some(order.id.clone());
        self.reserved_for = Some(order.user_id.clone());
        let (ticket, updated) = self.changed();
        Ok(Reservation::Reserved(Box::new(ticket), updated))
    }

    /// The order that held the ticket was cancelled: back on sale, unless it was sold.
    pub fn release(mut self, order_id: &OrderId) -> Result<(Self, TicketUpdated), Refusal> {
        if self.order_id.as_ref() != Some(order_id) {
            return Err(Refusal::NotHeldByIt);
        }
        if self.sold {
            return Err(Refusal::Sold);
        }
        self.order_id = None;
        self.reserved_for = None;
        Ok(self.changed())
    }

    /// The order that holds the ticket was paid by `buyer` (the event's, else the one it was
    /// reserved for): the buyer owns it now, off sale until they list it again. A reservation
    /// of the first release, whose buyer is unknown here, stays sold to its order as then.
    pub fn sell(
        mut self,
        order_id: &OrderId,
        buyer: Option<&UserId>,
    ) -> Result<(Self, TicketUpdated), Refusal> {
        if self.order_id.as_ref() != Some(order_id) {
            return Err(Refusal::NotHeldByIt);
        }
        if self.sold {
            return Err(Refusal::Sold);
        }
        self.sold = true;
        self.for_sale = false;
        self.sales += 1;
        if let Some(buyer) = buyer.cloned().or_else(|| self.reserved_for.clone()) {
            self.sold_by = Some(std::mem::replace(&mut self.user_id, buyer));
            self.order_id = None;
        }
        self.reserved_for = None;
        Ok(self.changed())
    }

    /// Whether `user` may download the ticket's file: its owner, once it was uploaded.
    pub fn file_for(&self, user: &UserId) -> bool {
        self.has_file && &self.user_id == user
    }

    /// Whether `user` may upload (replace) the ticket's file, while no order holds it: its
    /// owner; or, while it has none, whoever sold it last, since a ticket sold without its file
    /// reaches its buyer only once its seller uploads it.
    pub fn may_replace_file(&self, user: &UserId) -> Result<(), Refusal> {
        let sends_it = !self.has_file && self.sold_by.as_ref() == Some(user);
        if &self.user_id != user && !sends_it {
            return Err(Refusal::NotOwner);
        }
        if self.order_id.is_some() {
            return Err(Refusal::Reserved);
        }
        Ok(())
    }

    fn changed(mut self) -> (Self, TicketUpdated) {
        self.version += 1;
        let updated = TicketUpdated(self.event_data());
        (self, updated)
    }

    /// The ticket's data as events carry it.
    pub fn event_data(&self) -> TicketData {
        TicketData {
            id: self.id.clone(),
            version: self.version,
            title: self.title.clone(),
            price: self.price,
            user_id: self.user_id.clone(),
            order_id: self.order_id.clone(),
            venue: self.venue.clone(),
            starts_at: self.starts_at,
            face_value: self.face_value,
            for_sale: self.for_sale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> JsonField {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(
            Title::parse(Some("  Concert ".into())).unwrap().as_str(),
            "Concert"
        );
        assert_eq!(
            Title::parse(Some("   ".into())),
            Err("Title is required".into())
        );
        assert_eq!(Title::parse(None), Err("Title is required".into()));
        assert!(Title::parse(Some("é".repeat(200))).is_ok());
        assert_eq!(
            Title::parse(Some("x".repeat(201))),
            Err("Title must be at most 200 characters".into())
        );
        assert!(Title::parse(Some("a\u{0}b".into())).is_err());
    }

    #[test]
    fn prices_are_exact_positive_and_bounded() {
        let ok = [
            ("20", 2000),
            ("20.5", 2050),
            ("\"25.50\"", 2550),
            ("0.01", 1),
            ("1000000", 100_000_000),
        ];
        for (json, cents) in ok {
            assert_eq!(
                Price::parse(Some(&field(json))).unwrap().cents(),
                Cents::new(cents),
                "{json}"
            );
        }
        let bad = [
            ("0", "Price must be greater than 0"),
            ("-10", "Price must be greater than 0"),
            ("\"abc\"", "Price must be a number, like 20 or 20.50"),
            ("\"1,000.50\"", "Price must be a number, like 20 or 20.50"),
            ("null", "Price must be greater than 0"),
            ("true", "Price must be a number, like 20 or 20.50"),
            ("10.001", "Price must have at most 2 decimal places"),
            ("1000000.01", "Price must be at most 1000000"),
            ("1e30", "Price must be at most 1000000"),
        ];
        for (json, message) in bad {
            assert_eq!(Price::parse(Some(&field(json))), Err(message), "{json}");
        }
        assert_eq!(Price::parse(None), Err("Price must be greater than 0"));
    }

    fn price(json: &str) -> Price {
        Price::parse(Some(&field(json))).unwrap()
    }

    fn listing(title: &str, cents: &str) -> Listing {
        Listing {
            title: Title::parse(Some(title.into())).unwrap(),
            price: price(cents),
            venue: None,
            starts_at: None,
            face_value: None,
        }
    }

    fn ticket() -> Ticket {
        Ticket::list(
            "t1".into(),
            "seller".into(),
            &listing("Row A", "10"),
            ResaleCap::default(),
        )
        .unwrap()
        .0
    }

    fn edit(title: &str, cents: &str) -> Edit {
        Edit {
            title: Title::parse(Some(title.into())).unwrap(),
            price: price(cents),
            venue: Patch::Keep,
            starts_at: Patch::Keep,
            face_value: Patch::Keep,
            for_sale: None,
        }
    }

    fn at(ms: i64) -> Millis {
        Millis::new(1_800_000_000_000 + ms).unwrap()
    }

    fn order(id: &str, title: Option<&str>, cents: i64) -> OrderCreated {
        OrderCreated {
            id: id.into(),
            version: 0,
            status: bt_contract::events::OrderStatus::Created,
            user_id: "buyer".into(),
            expires_at: bt_contract::Millis::now(),
            ticket: bt_contract::events::OrderTicket {
                id: "t1".into(),
                price: Cents::new(cents),
                title: title.map(str::to_owned),
                version: Some(0),
                seller_id: Some("seller".into()),
                starts_at: None,
            },
        }
    }

    fn reserved(ticket: Ticket, order_id: &str) -> Ticket {
        match ticket
            .reserve(&order(order_id, Some("Row A"), 1000), at(0))
            .unwrap()
        {
            Reservation::Reserved(ticket, _) => *ticket,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ticket_is_reserved_at_the_terms_the_order_was_placed_on() {
        let Reservation::Reserved(held, updated) = ticket()
            .reserve(&order("o1", Some("Row A"), 1000), at(0))
            .unwrap()
        else {
            panic!("not reserved")
        };
        assert_eq!(held.order_id, Some("o1".into()));
        assert_eq!(held.version, 1);
        assert_eq!(updated.0.order_id, Some("o1".into()));
    }

    #[test]
    fn an_order_placed_on_other_terms_is_refused_and_changes_nothing() {
        for (title, cents) in [(Some("Row A"), 9900), (Some("Row Z (obstructed)"), 1000)] {
            let refused = ticket().reserve(&order("o1", title, cents), at(0)).unwrap();
            assert_eq!(
                refused,
                Reservation::Refused(TicketReservationRefused {
                    order_id: "o1".into(),
                    ticket_id: "t1".into(),
                    reason: ReservationRefusal::TicketChanged,
                }),
                "{title:?} {cents}"
            );
        }
    }

    #[test]
    fn an_order_event_without_a_title_is_checked_by_price() {
        assert!(matches!(
            ticket().reserve(&order("o1", None, 1000), at(0)).unwrap(),
            Reservation::Reserved(..)
        ));
        assert!(matches!(
            ticket().reserve(&order("o1", None, 999), at(0)).unwrap(),
            Reservation::Refused(..)
        ));
    }

    #[test]
    fn a_held_ticket_waits_for_its_release_before_another_order() {
        let held = reserved(ticket(), "o1");
        assert_eq!(
            held.clone()
                .reserve(&order("o1", Some("Row A"), 1000), at(0))
                .unwrap_err(),
            Refusal::AlreadyReservedByIt
        );
        assert_eq!(
            held.reserve(&order("o2", Some("Row A"), 1000), at(0))
                .unwrap_err(),
            Refusal::HeldByAnother("o1".into())
        );
    }

    #[test]
    fn only_the_owner_edits_and_only_while_free() {
        let change = edit("Row Z", "99");
        let cap = ResaleCap::default();
        assert_eq!(
            ticket()
                .edit(&"someone".into(), &change, cap, at(0))
                .unwrap_err(),
            Refusal::NotOwner
        );
        let (edited, updated) = ticket()
            .edit(&"seller".into(), &change, cap, at(0))
            .unwrap();
        assert_eq!(
            (edited.title.as_str(), edited.price),
            ("Row Z", Cents::new(9900))
        );
        assert_eq!(updated.0.version, 1);
        assert_eq!(
            reserved(ticket(), "o1")
                .edit(&"seller".into(), &change, cap, at(0))
                .unwrap_err(),
            Refusal::Reserved
        );
    }

    #[test]
    fn release_only_by_the_holding_order() {
        let held = reserved(ticket(), "o1");
        assert_eq!(
            held.clone().release(&"o2".into()).unwrap_err(),
            Refusal::NotHeldByIt
        );
        let (free, updated) = held.release(&"o1".into()).unwrap();
        assert_eq!(free.order_id, None);
        assert_eq!(free.reserved_for, None);
        assert!(free.for_sale);
        assert_eq!(updated.0.order_id, None);
    }

    #[test]
    fn a_sale_gives_the_ticket_to_its_buyer_off_sale() {
        let held = reserved(ticket(), "o1");
        assert_eq!(held.reserved_for, Some("buyer".into()));
        assert_eq!(
            held.clone().sell(&"o2".into(), None).unwrap_err(),
            Refusal::NotHeldByIt
        );
        // The buyer is the event's, or else the one the ticket was reserved for.
        for buyer in [Some(UserId::from("buyer")), None] {
            let (sold, updated) = held.clone().sell(&"o1".into(), buyer.as_ref()).unwrap();
            assert_eq!(sold.user_id, UserId::from("buyer"));
            assert_eq!(
                (sold.order_id.clone(), sold.for_sale, sold.sold),
                (None, false, true)
            );
            assert_eq!(sold.sales, 1);
            assert_eq!(updated.0.user_id, UserId::from("buyer"));
            assert!(!updated.0.for_sale);
            // A repeated completion or a late cancellation of that order changes nothing.
            assert_eq!(
                sold.clone().sell(&"o1".into(), None).unwrap_err(),
                Refusal::NotHeldByIt
            );
            assert_eq!(
                sold.release(&"o1".into()).unwrap_err(),
                Refusal::NotHeldByIt
            );
        }
    }

    #[test]
    fn a_reservation_of_the_first_release_stays_sold_to_its_order() {
        let mut held = reserved(ticket(), "o1");
        held.reserved_for = None;
        let (sold, _) = held.sell(&"o1".into(), None).unwrap();
        assert_eq!(sold.user_id, UserId::from("seller"));
        assert_eq!(sold.order_id, Some("o1".into()));
        assert!(sold.sold && !sold.for_sale);
        assert_eq!(
            sold.clone().release(&"o1".into()).unwrap_err(),
            Refusal::Sold
        );
        assert_eq!(sold.sell(&"o1".into(), None).unwrap_err(), Refusal::Sold);
    }

    fn sold_to_buyer() -> Ticket {
        reserved(ticket(), "o1")
            .sell(&"o1".into(), Some(&"buyer".into()))
            .unwrap()
            .0
    }

    #[test]
    fn the_buyer_lists_it_again_and_it_can_be_sold_again() {
        let cap = ResaleCap::default();
        let owned = sold_to_buyer();
        // Off sale: an order for it is refused, the seller cannot edit it any more.
        assert_eq!(
            owned
                .clone()
                .reserve(&order("o2", Some("Row A"), 1000), at(0))
                .unwrap(),
            Reservation::Refused(TicketReservationRefused {
                order_id: "o2".into(),
                ticket_id: "t1".into(),
                reason: ReservationRefusal::NotForSale,
            })
        );
        assert_eq!(
            owned
                .clone()
                .edit(&"seller".into(), &edit("Row A", "12"), cap, at(0))
                .unwrap_err(),
            Refusal::NotOwner
        );
        // An edit that does not say `forSale` keeps it off sale.
        let (kept, _) = owned
            .clone()
            .edit(&"buyer".into(), &edit("Row A, resale", "12"), cap, at(0))
            .unwrap();
        assert!(!kept.for_sale && kept.sold);
        let relist = Edit {
            for_sale: Some(true),
            ..edit("Row A, resale", "12")
        };
        let (listed, updated) = owned.edit(&"buyer".into(), &relist, cap, at(0)).unwrap();
        assert!(listed.for_sale && !listed.sold);
        assert!(updated.0.for_sale);
        let mut next = order("o2", Some("Row A, resale"), 1200);
        next.user_id = "third".into();
        let Reservation::Reserved(held, _) = listed.reserve(&next, at(0)).unwrap() else {
            panic!("not reserved")
        };
        let (sold, _) = held.sell(&"o2".into(), Some(&"third".into())).unwrap();
        assert_eq!(sold.user_id, UserId::from("third"));
        assert_eq!(sold.sales, 2);
        // Taken off sale by its owner while free.
        let off = Edit {
            for_sale: Some(false),
            ..edit("Row A", "10")
        };
        let (off, _) = ticket().edit(&"seller".into(), &off, cap, at(0)).unwrap();
        assert!(!off.for_sale);
    }

    #[test]
    fn the_price_may_exceed_the_face_value_by_the_cap_only() {
        let cap = ResaleCap::default();
        assert_eq!(cap.max_price(Cents::new(4000)), Cents::new(4800));
        assert_eq!(cap.max_price(Cents::new(3333)), Cents::new(3999));
        assert!(cap.check(Cents::new(4800), Some(Cents::new(4000))).is_ok());
        assert!(cap.check(Cents::new(99_900), None).is_ok());
        assert_eq!(
            cap.check(Cents::new(4801), Some(Cents::new(4000))),
            Err("Price must be at most 48.00 (120% of the face value 40.00)".into())
        );
        let strict = ResaleCap::new(100).unwrap();
        assert!(
            strict
                .check(Cents::new(4001), Some(Cents::new(4000)))
                .is_err()
        );
        assert!(ResaleCap::new(99).is_err() && ResaleCap::new(1001).is_err());

        let over = Listing {
            face_value: Some(price("40")),
            ..listing("Row A", "48.01")
        };
        assert!(matches!(
            Ticket::list("t1".into(), "seller".into(), &over, cap),
            Err(Refusal::OverCap(_))
        ));
        let within = Listing {
            price: price("48"),
            ..over
        };
        let (listed, created) = Ticket::list("t1".into(), "seller".into(), &within, cap).unwrap();
        assert_eq!(created.0.face_value, Some(Cents::new(4000)));
        // The cap applies to edits, with the face value as it will be.
        let raise = edit("Row A", "60");
        assert!(matches!(
            listed.clone().edit(&"seller".into(), &raise, cap, at(0)),
            Err(Refusal::OverCap(_))
        ));
        let with_face = Edit {
            face_value: Patch::Set(price("50")),
            ..raise
        };
        assert!(
            listed
                .edit(&"seller".into(), &with_face, cap, at(0))
                .is_ok()
        );
    }

    #[test]
    fn event_details_are_fixed_once_sold_so_a_buyer_cannot_lift_the_cap() {
        let cap = ResaleCap::default();
        let owned = sold_to_buyer();
        for change in [
            Edit {
                face_value: Patch::Set(price("500")),
                ..edit("Row A", "10")
            },
            Edit {
                venue: Patch::Set(Venue::parse(Some("Elsewhere".into())).unwrap().unwrap()),
                ..edit("Row A", "10")
            },
            Edit {
                starts_at: Patch::Set(at(1_000)),
                ..edit("Row A", "10")
            },
        ] {
            assert_eq!(
                owned
                    .clone()
                    .edit(&"buyer".into(), &change, cap, at(0))
                    .unwrap_err(),
                Refusal::DetailsFixed
            );
        }
        // Before a sale the seller may still correct them.
        let change = Edit {
            venue: Patch::Set(Venue::parse(Some("Hall".into())).unwrap().unwrap()),
            ..edit("Row A", "10")
        };
        let (fixed, updated) = ticket()
            .edit(&"seller".into(), &change, cap, at(0))
            .unwrap();
        assert_eq!(fixed.venue.as_deref(), Some("Hall"));
        assert_eq!(updated.0.venue.as_deref(), Some("Hall"));
        let clear = Edit {
            venue: Patch::Clear,
            ..edit("Row A", "10")
        };
        assert_eq!(
            fixed
                .edit(&"seller".into(), &clear, cap, at(0))
                .unwrap()
                .0
                .venue,
            None
        );
    }

    #[test]
    fn a_ticket_whose_event_started_cannot_be_reserved_or_listed_again() {
        let cap = ResaleCap::default();
        let starts = Listing {
            starts_at: Some(at(10_000)),
            ..listing("Row A", "10")
        };
        let (listed, _) = Ticket::list("t1".into(), "seller".into(), &starts, cap).unwrap();
        assert!(matches!(
            listed
                .clone()
                .reserve(&order("o1", Some("Row A"), 1000), at(9_999))
                .unwrap(),
            Reservation::Reserved(..)
        ));
        assert_eq!(
            listed
                .clone()
                .reserve(&order("o1", Some("Row A"), 1000), at(10_000))
                .unwrap(),
            Reservation::Refused(TicketReservationRefused {
                order_id: "o1".into(),
                ticket_id: "t1".into(),
                reason: ReservationRefusal::EventStarted,
            })
        );
        let off = Edit {
            for_sale: Some(false),
            ..edit("Row A", "10")
        };
        let (off, _) = listed.edit(&"seller".into(), &off, cap, at(0)).unwrap();
        let on = Edit {
            for_sale: Some(true),
            ..edit("Row A", "10")
        };
        assert_eq!(
            off.clone()
                .edit(&"seller".into(), &on, cap, at(10_000))
                .unwrap_err(),
            Refusal::EventStarted
        );
        assert!(off.edit(&"seller".into(), &on, cap, at(9_000)).is_ok());
    }

    #[test]
    fn venues_and_starts_are_parsed_strictly() {
        assert_eq!(
            Venue::parse(Some("  Hall ".into()))
                .unwrap()
                .unwrap()
                .as_str(),
            "Hall"
        );
        assert_eq!(Venue::parse(Some("   ".into())), Ok(None));
        assert_eq!(Venue::parse(None), Ok(None));
        assert!(Venue::parse(Some("x".repeat(201))).is_err());
        assert!(Venue::parse(Some("a\u{7}b".into())).is_err());
        let now = at(0);
        assert_eq!(
            parse_starts_at(Some("2027-01-15T20:00:00+01:00"), now),
            Ok(Some(Millis::new(1_800_039_600_000).unwrap()))
        );
        assert_eq!(parse_starts_at(None, now), Ok(None));
        assert!(parse_starts_at(Some(" "), now).is_err());
        for bad in [
            "2027-01-15",
            "2027-01-15 20:00:00Z",
            "tomorrow",
            "2027-01-15T20:00:00",
        ] {
            assert!(parse_starts_at(Some(bad), now).is_err(), "{bad}");
        }
        assert_eq!(
            parse_starts_at(Some("2020-01-01T00:00:00Z"), now),
            Err("Event start must be in the future")
        );
    }

    #[test]
    fn only_the_owner_gets_the_file_and_replaces_it_while_free() {
        let mut owned = sold_to_buyer();
        assert!(!owned.file_for(&"buyer".into()));
        owned.has_file = true;
        assert!(owned.file_for(&"buyer".into()));
        assert!(!owned.file_for(&"seller".into()));
        assert_eq!(owned.may_replace_file(&"buyer".into()), Ok(()));
        assert_eq!(
            owned.may_replace_file(&"seller".into()),
            Err(Refusal::NotOwner)
        );
        assert_eq!(
            reserved(ticket(), "o1").may_replace_file(&"seller".into()),
            Err(Refusal::Reserved)
        );
    }
}
