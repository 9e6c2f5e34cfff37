//! The tickets domain: titles and prices parsed at the edge, and the ticket's changes as pure
//! transitions — listed, edited by its seller, reserved for an order (only at the terms the
//! order was placed on), released, sold — each answering the changed ticket and its event, or a
//! [`Refusal`]. Tested without a database.

use bt_contract::events::{
    OrderCreated, ReservationRefusal, TicketCreated, TicketData, TicketReservationRefused,
    TicketUpdated,
};
use bt_contract::{Cents, JsonField, MoneyError, OrderId, TicketId, UserId};
use serde::Serialize;

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
        } else if title.chars().any(char::is_control) {
            Err("Title must not contain control characters".into())
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
        let raw = raw.ok_or(POSITIVE)?;
        match raw.as_cents() {
            Ok(cents) if cents.get() <= 0 => Err(POSITIVE),
            Ok(cents) if cents > Self::MAX => Err("Price must be at most 1000000"),
            Ok(cents) => Ok(Self(cents)),
            Err(MoneyError::TooManyDecimals) => Err("Price must have at most 2 decimal places"),
            Err(MoneyError::OutOfRange) => Err("Price must be at most 1000000"),
            Err(MoneyError::NotANumber) => Err(POSITIVE),
        }
    }

    pub fn cents(self) -> Cents {
        self.0
    }
}

/// A ticket as stored and as the API shows it: `{id, title, price, userId, version, orderId}`
/// plus `sold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    /// The seller.
    pub user_id: UserId,
    /// Goes up by one with every change.
    pub version: i64,
    /// The order that reserves it; `null` when it is free.
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
    /// Extension: true once the order that reserves it was paid (it stays off the market).
    pub sold: bool,
}

/// Why a change of a ticket does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Not authorized")]
    NotOwner,
    #[error("Cannot edit a reserved ticket")]
    Reserved,
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
    Reserved(Ticket, TicketUpdated),
    /// The ticket is not what the buyer saw: announce the refusal, change nothing.
    Refused(TicketReservationRefused),
}

impl Ticket {
    /// A new ticket of `seller`, on sale (version 0).
    pub fn list(
        id: TicketId,
        seller: UserId,
        title: &Title,
        price: Price,
    ) -> (Self, TicketCreated) {
        let ticket = Self {
            id,
            title: title.as_str().to_owned(),
            price: price.cents(),
            user_id: seller,
            version: 0,
            order_id: None,
            sold: false,
        };
        let created = TicketCreated(ticket.event_data());
        (ticket, created)
    }

    /// The seller changes title and price; only while no order holds the ticket.
    pub fn edit(
        mut self,
        by: &UserId,
        title: &Title,
        price: Price,
    ) -> Result<(Self, TicketUpdated), Refusal> {
        if &self.user_id != by {
            return Err(Refusal::NotOwner);
        }
        if self.order_id.is_some() {
            return Err(Refusal::Reserved);
        }
        self.title = title.as_str().to_owned();
        self.price = price.cents();
        Ok(self.changed())
    }

    /// An order wants the ticket. It is reserved only at the terms the order was placed on
    /// (title and price; events of earlier versions carry no title, then the price alone).
    pub fn reserve(mut self, order: &OrderCreated) -> Result<Reservation, Refusal> {
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
        if !same_title || order.ticket.price != self.price {
            return Ok(Reservation::Refused(TicketReservationRefused {
                order_id: order.id.clone(),
                ticket_id: self.id.clone(),
                reason: ReservationRefusal::TicketChanged,
            }));
        }
        self.order_id = Some(order.id.clone());
        let (ticket, updated) = self.changed();
        Ok(Reservation::Reserved(ticket, updated))
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
        Ok(self.changed())
    }

    /// The order that holds the ticket was paid: sold, off the market for good.
    pub fn sell(mut self, order_id: &OrderId) -> Result<(Self, TicketUpdated), Refusal> {
        if self.sold {
            return Err(Refusal::Sold);
        }
        if self.order_id.as_ref() != Some(order_id) {
            return Err(Refusal::NotHeldByIt);
        }
        self.sold = true;
        Ok(self.changed())
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
            ("\"abc\"", "Price must be greater than 0"),
            ("null", "Price must be greater than 0"),
            ("true", "Price must be greater than 0"),
            ("10.001", "Price must have at most 2 decimal places"),
            ("1000000.01", "Price must be at most 1000000"),
            ("1e30", "Price must be at most 1000000"),
        ];
        for (json, message) in bad {
            assert_eq!(Price::parse(Some(&field(json))), Err(message), "{json}");
        }
        assert_eq!(Price::parse(None), Err("Price must be greater than 0"));
    }

    fn ticket() -> Ticket {
        Ticket::list(
            "t1".into(),
            "seller".into(),
            &Title::parse(Some("Row A".into())).unwrap(),
            Price::parse(Some(&field("10"))).unwrap(),
        )
        .0
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
            },
        }
    }

    fn reserved(ticket: Ticket, order_id: &str) -> Ticket {
        match ticket
            .reserve(&order(order_id, Some("Row A"), 1000))
            .unwrap()
        {
            Reservation::Reserved(ticket, _) => ticket,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ticket_is_reserved_at_the_terms_the_order_was_placed_on() {
        let Reservation::Reserved(held, updated) =
            ticket().reserve(&order("o1", Some("Row A"), 1000)).unwrap()
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
            let refused = ticket().reserve(&order("o1", title, cents)).unwrap();
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
            ticket().reserve(&order("o1", None, 1000)).unwrap(),
            Reservation::Reserved(..)
        ));
        assert!(matches!(
            ticket().reserve(&order("o1", None, 999)).unwrap(),
            Reservation::Refused(..)
        ));
    }

    #[test]
    fn a_held_ticket_waits_for_its_release_before_another_order() {
        let held = reserved(ticket(), "o1");
        assert_eq!(
            held.clone()
                .reserve(&order("o1", Some("Row A"), 1000))
                .unwrap_err(),
            Refusal::AlreadyReservedByIt
        );
        assert_eq!(
            held.reserve(&order("o2", Some("Row A"), 1000)).unwrap_err(),
            Refusal::HeldByAnother("o1".into())
        );
    }

    #[test]
    fn only_the_seller_edits_and_only_while_free() {
        let title = Title::parse(Some("Row Z".into())).unwrap();
        let price = Price::parse(Some(&field("99"))).unwrap();
        assert_eq!(
            ticket().edit(&"someone".into(), &title, price).unwrap_err(),
            Refusal::NotOwner
        );
        let (edited, updated) = ticket().edit(&"seller".into(), &title, price).unwrap();
        assert_eq!(
            (edited.title.as_str(), edited.price),
            ("Row Z", Cents::new(9900))
        );
        assert_eq!(updated.0.version, 1);
        assert_eq!(
            reserved(ticket(), "o1")
                .edit(&"seller".into(), &title, price)
                .unwrap_err(),
            Refusal::Reserved
        );
    }

    #[test]
    fn release_and_sale_only_by_the_holding_order_and_a_sale_is_final() {
        let held = reserved(ticket(), "o1");
        assert_eq!(
            held.clone().release(&"o2".into()).unwrap_err(),
            Refusal::NotHeldByIt
        );
        let (free, _) = held.clone().release(&"o1".into()).unwrap();
        assert_eq!(free.order_id, None);
        let (sold, _) = held.sell(&"o1".into()).unwrap();
        assert!(sold.sold);
        assert_eq!(
            sold.clone().release(&"o1".into()).unwrap_err(),
            Refusal::Sold
        );
        assert_eq!(sold.sell(&"o1".into()).unwrap_err(), Refusal::Sold);
    }
}
