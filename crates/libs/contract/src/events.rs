//! The events the services exchange (ARCHITECTURE §4): one Rust type per subject, and the
//! envelope `{id, type, occurredAt, data}` they travel in.
//!
//! Every event that describes a replicated record carries that record's `version`, so a replica
//! can apply version `v` only on top of `v - 1`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{OrderId, PaymentId, TicketId, UserId};
use crate::money::Cents;
use crate::time::Millis;

/// A typed event: its subject is also the envelope's `type`.
pub trait Event:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    const SUBJECT: &'static str;

    /// The record the event is about (a ticket, an order): events about one record are applied
    /// in order; events about different records may be applied concurrently.
    fn key(&self) -> &str;
}

/// Every subject the services publish.
pub const SUBJECTS: [&str; 14] = [
    TicketCreated::SUBJECT,
    TicketUpdated::SUBJECT,
    TicketReservationRefused::SUBJECT,
    OrderCreated::SUBJECT,
    OrderCancelled::SUBJECT,
    OrderCompleted::SUBJECT,
    ExpirationComplete::SUBJECT,
    PaymentCreated::SUBJECT,
    SessionRevoked::SUBJECT,
    UserCreated::SUBJECT,
    PaymentDeclined::SUBJECT,
    SaleCredited::SUBJECT,
    TicketHeld::SUBJECT,
    PaymentRefunded::SUBJECT,
];

/// The wire form of every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Unique per event; also the JetStream `Nats-Msg-Id` and the inbox key.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

impl<T: Event> Envelope<T> {
    /// A new envelope with a fresh id, stamped now.
    pub fn new(data: T) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: T::SUBJECT.to_owned(),
            occurred_at: Utc::now(),
            data,
        }
    }
}

crate::text_enum! {
    /// The status of an order, as the contract spells it.
    pub enum OrderStatus {
        /// Reserved, waiting for payment.
        Created = "created",
        /// Cancelled by the buyer, expired, or refused by the tickets service; the ticket is
        /// free again.
        Cancelled = "cancelled",
        /// A payment is in progress (in the contract; this version never sets it).
        AwaitingPayment = "awaiting:payment",
        /// Paid; the ticket is sold.
        Complete = "complete",
    }
}

impl OrderStatus {
    /// Whether an order in this status holds its ticket (the partial unique index of orders).
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Cancelled)
    }
}

crate::text_enum! {
    /// Why an order was cancelled (`order.cancelled.reason`, the order JSON's `cancelReason`).
    pub enum CancelReason {
        /// The buyer cancelled it.
        Buyer = "buyer",
        /// It was not paid within its window.
        Expired = "expired",
        /// The seller changed the ticket's title or price before the reservation was confirmed,
        /// so the tickets service refused it: the buyer is never charged for terms they did not see.
        TicketChanged = "ticket_changed",
        /// The owner took the ticket off sale before the reservation was confirmed.
        NotForSale = "not_for_sale",
        /// The event started before the reservation was confirmed.
        EventStarted = "event_started",
    }
}

crate::text_enum! {
    /// Why the tickets service refused to reserve a ticket for an order.
    pub enum ReservationRefusal {
        /// The ticket's title or price differ from those the order was made on.
        TicketChanged = "ticket_changed",
        /// Its owner took it off sale.
        NotForSale = "not_for_sale",
        /// The event has started.
        EventStarted = "event_started",
    }
}

/// `ticket.created` / `ticket.updated` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketData {
    pub id: TicketId,
    pub version: i64,
    pub title: String,
    pub price: Cents,
    /// The owner: the seller while it is listed, the buyer once an order for it completes.
    pub user_id: UserId,
    pub order_id: Option<OrderId>,
    /// Extensions (second wave), absent from events of earlier versions: the event's venue,
    /// start and face value; whether the owner offers it for sale (`true` when absent: every
    /// ticket of the first release was on sale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_value: Option<Cents>,
    #[serde(default = "on_sale")]
    pub for_sale: bool,
}

fn on_sale() -> bool {
    true
}

/// A ticket was listed (version 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketCreated(pub TicketData);

/// A ticket changed: edited, reserved, released or sold (version + 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketUpdated(pub TicketData);

/// The tickets service did not reserve the ticket for an order (extension): the orders service
/// cancels the order with the reason, before any charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketReservationRefused {
    pub order_id: OrderId,
    pub ticket_id: TicketId,
    pub reason: ReservationRefusal,
}

/// A reference to a ticket inside order events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    pub id: TicketId,
}

/// The ticket of a new order: the terms the buyer reserved it at. `title` and `version` are
/// extensions (absent from events of earlier versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTicket {
    pub id: TicketId,
    pub price: Cents,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Extensions (second wave): who sells it (the payments service credits them) and when the
    /// event starts (the seller's credit becomes available then).
    #[serde(rename = "sellerId", default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<UserId>,
    #[serde(rename = "startsAt", default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Millis>,
}

/// An order reserved a ticket until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub id: OrderId,
    pub version: i64,
    pub status: OrderStatus,
    pub user_id: UserId,
    pub expires_at: Millis,
    pub ticket: OrderTicket,
}

/// An order was cancelled; its ticket is free again. `reason` is an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub id: OrderId,
    pub version: i64,
    pub ticket: TicketRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}

/// An order was paid; its ticket is sold. `paymentId` (extension) names the payment that
/// completed it: the payments service captures that one and releases any other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub id: OrderId,
    pub version: i64,
    pub ticket: TicketRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    /// Extension (second wave): the buyer, who becomes the ticket's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

/// The payment window of an order has passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    pub order_id: OrderId,
}

/// A payment for an order was authorised at the provider (the money is held, not yet taken):
/// the orders service completes the order with it, or not. `amount` is an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub stripe_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Cents>,
}

/// A session was ended (signed out) before it expired: every service refuses its token from
/// now on. An extension (the seed has no such event); published by auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    /// The session's id (the token's `sid` claim).
    pub sid: String,
    pub user_id: UserId,
    /// When the token expires anyway, seconds since the epoch: the revocation is needed until
    /// then only.
    pub expires_at: i64,
}

impl Event for TicketCreated {
    const SUBJECT: &'static str = "ticket.created";
    fn key(&self) -> &str {
        self.0.id.as_str()
    }
}
impl Event for TicketUpdated {
    const SUBJECT: &'static str = "ticket.updated";
    fn key(&self) -> &str {
        self.0.id.as_str()
    }
}
impl Event for TicketReservationRefused {
    const SUBJECT: &'static str = "ticket.reservation_refused";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}
impl Event for OrderCreated {
    const SUBJECT: &'static str = "order.created";
    fn key(&self) -> &str {
        self.id.as_str()
    }
}
impl Event for OrderCancelled {
    const SUBJECT: &'static str = "order.cancelled";
    fn key(&self) -> &str {
        self.id.as_str()
    }
}
impl Event for OrderCompleted {
    const SUBJECT: &'static str = "order.completed";
    fn key(&self) -> &str {
        self.id.as_str()
    }
}
impl Event for ExpirationComplete {
    const SUBJECT: &'static str = "expiration.complete";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}
impl Event for PaymentCreated {
    const SUBJECT: &'static str = "payment.created";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}
/// Someone signed up (second wave; published by auth): services that tell people things keep a
/// replica of who is who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCreated {
    pub id: UserId,
    /// In its canonical form (what sign-in compares).
    pub email: String,
}

impl Event for UserCreated {
    const SUBJECT: &'static str = "user.created";
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

/// The provider declined a card (second wave; published by payments in the transaction that
/// records the decline): the buyer is told, and may try another card while the order is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    /// The attempt that was declined.
    pub id: PaymentId,
    pub order_id: OrderId,
    /// The buyer.
    pub user_id: UserId,
    pub amount: Cents,
    /// The provider's words, for the buyer (e.g. `Your card was declined.`).
    pub message: String,
}

impl Event for PaymentDeclined {
    const SUBJECT: &'static str = "payment.declined";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}

/// Money of a captured charge was given back to the buyer (second wave; published by payments
/// in the transaction that records the refund): refunded in full — in Stripe's dashboard, or by
/// the service itself (e.g. a payment that landed after its order was cancelled) — or in part
/// (Stripe sends each refund with the running total). The buyer is told, and the order shows it.
/// Totals only grow, so a consumer keeps the largest `refunded` it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The charge refunded.
    pub id: PaymentId,
    pub order_id: OrderId,
    /// The buyer.
    pub user_id: UserId,
    /// The ticket's title as sold; `None` for orders replicated before titles were.
    pub title: Option<String>,
    /// What the buyer was charged.
    pub price: Cents,
    /// Given back so far, this refund included (`price` when refunded in full).
    pub refunded: Cents,
    /// Given back by this refund.
    pub amount: Cents,
    /// The seller of the sale, when this refund takes money back from their credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<UserId>,
    /// What this refund takes back from the seller's credit: their part of `amount` (the
    /// platform gives back its fee in the same proportion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_amount: Option<Cents>,
}

impl PaymentRefunded {
    /// Whether all of the charge is given back.
    pub fn in_full(&self) -> bool {
        self.refunded >= self.price
    }
}

impl Event for PaymentRefunded {
    const SUBJECT: &'static str = "payment.refunded";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}

/// A sale was captured and its seller credited (second wave; published by payments in the
/// transaction that writes the credit, once per order): what the seller earns and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleCredited {
    pub order_id: OrderId,
    pub seller_id: UserId,
    pub ticket_id: Option<TicketId>,
    /// The ticket's title as sold.
    pub title: Option<String>,
    /// What the buyer paid: `amount + fee`.
    pub price: Cents,
    /// The platform's fee (`SELLER_FEE_PERCENT` of the price).
    pub fee: Cents,
    /// The seller's part.
    pub amount: Cents,
    /// When the credit becomes payable (the event's start, or the payout delay after the sale).
    pub available_at: Millis,
}

impl Event for SaleCredited {
    const SUBJECT: &'static str = "sale.credited";
    fn key(&self) -> &str {
        self.order_id.as_str()
    }
}

/// A ticket alert's first subscriber in line holds a ticket that just went on sale: until
/// `until`, only they can order it (second wave; published by notifications when
/// `ALERT_HOLD_SECONDS` is more than 0). The hold is on `ticketVersion` of the ticket: any later
/// change of the ticket ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketHeld {
    pub ticket_id: TicketId,
    pub ticket_version: i64,
    pub user_id: UserId,
    pub until: Millis,
}

impl Event for TicketHeld {
    const SUBJECT: &'static str = "ticket.held";
    fn key(&self) -> &str {
        self.ticket_id.as_str()
    }
}

impl Event for SessionRevoked {
    const SUBJECT: &'static str = "session.revoked";
    fn key(&self) -> &str {
        &self.sid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<E: Event + PartialEq>(data: E, wire: serde_json::Value) {
        let envelope = Envelope::new(data);
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], E::SUBJECT);
        assert_eq!(json["id"], envelope.id.to_string());
        assert!(
            json["occurredAt"].as_str().unwrap().ends_with('Z'),
            "{json}"
        );
        assert_eq!(json["data"], wire, "{}", E::SUBJECT);
        let back: Envelope<E> = serde_json::from_value(json).unwrap();
        assert_eq!(back, envelope);
    }

    fn ticket() -> TicketData {
        TicketData {
            id: "t1".into(),
            version: 3,
            title: "Concert".into(),
            price: Cents::new(2050),
            user_id: "u1".into(),
            order_id: None,
            venue: None,
            starts_at: None,
            face_value: None,
            for_sale: true,
        }
    }

    #[test]
    fn second_wave_fields_round_trip_and_are_optional_in_earlier_events() {
        let starts = Millis::new(1_798_000_000_000).unwrap();
        let full = TicketData {
            venue: Some("Paradiso".into()),
            starts_at: Some(starts),
            face_value: Some(Cents::new(4000)),
            for_sale: false,
            ..ticket()
        };
        round_trip(
            TicketUpdated(full),
            json!({"id": "t1", "version": 3, "title": "Concert", "price": 20.5, "userId": "u1",
                "orderId": null, "venue": "Paradiso", "startsAt": "2026-12-23T04:26:40.000Z",
                "faceValue": 40, "forSale": false}),
        );
        // A first-release event: on sale, no details.
        let old: TicketData = serde_json::from_value(json!({"id": "t1", "version": 3,
            "title": "Concert", "price": 20.5, "userId": "u1", "orderId": null}))
        .unwrap();
        assert_eq!(old, ticket());
        let order_ticket: OrderTicket = serde_json::from_value(
            json!({"id": "t1", "price": 20, "sellerId": "u1", "startsAt": "2026-12-23T04:26:40.000Z"}),
        )
        .unwrap();
        assert_eq!(order_ticket.seller_id, Some("u1".into()));
        assert_eq!(order_ticket.starts_at, Some(starts));
        let completed: OrderCompleted = serde_json::from_value(
            json!({"id": "o1", "version": 2, "ticket": {"id": "t1"}, "userId": "u2"}),
        )
        .unwrap();
        assert_eq!(completed.user_id, Some("u2".into()));
    }

    #[test]
    fn every_event_has_the_contract_wire_shape_and_round_trips() {
        let ticket_json = json!({"id": "t1", "version": 3, "title": "Concert", "price": 20.5, "userId": "u1", "orderId": null, "forSale": true});
        round_trip(TicketCreated(ticket()), ticket_json.clone());
        round_trip(TicketUpdated(ticket()), ticket_json);
        let expires = Millis::new(1_795_600_800_000).unwrap();
        round_trip(
            OrderCreated {
                id: "o1".into(),
                version: 0,
                status: OrderStatus::Created,
                user_id: "u2".into(),
                expires_at: expires,
                ticket: OrderTicket {
                    id: "t1".into(),
                    price: Cents::new(2000),
                    title: Some("Concert".into()),
                    version: Some(3),
                    seller_id: None,
                    starts_at: None,
                },
            },
            json!({"id": "o1", "version": 0, "status": "created", "userId": "u2", "expiresAt": "2026-11-25T10:00:00.000Z", "ticket": {"id": "t1", "price": 20, "title": "Concert", "version": 3}}),
        );
        round_trip(
            OrderCancelled {
                id: "o1".into(),
                version: 1,
                ticket: TicketRef { id: "t1".into() },
                reason: Some(CancelReason::Expired),
            },
            json!({"id": "o1", "version": 1, "ticket": {"id": "t1"}, "reason": "expired"}),
        );
        round_trip(
            OrderCompleted {
                id: "o1".into(),
                version: 2,
                ticket: TicketRef { id: "t1".into() },
                payment_id: Some("p1".into()),
                user_id: None,
            },
            json!({"id": "o1", "version": 2, "ticket": {"id": "t1"}, "paymentId": "p1"}),
        );
        round_trip(
            ExpirationComplete {
                order_id: "o1".into(),
            },
            json!({"orderId": "o1"}),
        );
        round_trip(
            PaymentCreated {
                id: "p1".into(),
                order_id: "o1".into(),
                stripe_id: "pi_1".into(),
                amount: Some(Cents::new(2000)),
            },
            json!({"id": "p1", "orderId": "o1", "stripeId": "pi_1", "amount": 20}),
        );
        round_trip(
            TicketReservationRefused {
                order_id: "o1".into(),
                ticket_id: "t1".into(),
                reason: ReservationRefusal::TicketChanged,
            },
            json!({"orderId": "o1", "ticketId": "t1", "reason": "ticket_changed"}),
        );
        round_trip(
            SessionRevoked {
                sid: "s1".into(),
                user_id: "u1".into(),
                expires_at: 1_795_600_800,
            },
            json!({"sid": "s1", "userId": "u1", "expiresAt": 1_795_600_800}),
        );
        round_trip(
            UserCreated {
                id: "u1".into(),
                email: "ada@example.com".into(),
            },
            json!({"id": "u1", "email": "ada@example.com"}),
        );
    }

    #[test]
    fn events_of_the_seed_lineage_without_the_extensions_still_read() {
        let created: OrderCreated = serde_json::from_value(json!({"id": "o1", "version": 0, "status": "created", "userId": "u2", "expiresAt": "2026-11-25T10:00:00Z", "ticket": {"id": "t1", "price": 20}})).unwrap();
        assert_eq!(created.ticket.title, None);
        assert_eq!(created.ticket.version, None);
        let cancelled: OrderCancelled =
            serde_json::from_value(json!({"id": "o1", "version": 1, "ticket": {"id": "t1"}}))
                .unwrap();
        assert_eq!(cancelled.reason, None);
        let completed: OrderCompleted =
            serde_json::from_value(json!({"id": "o1", "version": 2, "ticket": {"id": "t1"}}))
                .unwrap();
        assert_eq!(completed.payment_id, None);
        let paid: PaymentCreated =
            serde_json::from_value(json!({"id": "p1", "orderId": "o1", "stripeId": "pi_1"}))
                .unwrap();
        assert_eq!(paid.amount, None);
    }

    #[test]
    fn an_unknown_status_or_reason_is_an_error_not_a_default() {
        assert!(
            serde_json::from_value::<OrderCreated>(json!({"id": "o1", "version": 0, "status": "paid", "userId": "u2", "expiresAt": "2026-11-25T10:00:00Z", "ticket": {"id": "t1", "price": 20}}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<OrderCancelled>(
                json!({"id": "o1", "version": 1, "ticket": {"id": "t1"}, "reason": "whim"})
            )
            .is_err()
        );
    }

    #[test]
    fn subjects_are_the_contract_names() {
        assert_eq!(
            SUBJECTS,
            [
                "ticket.created",
                "ticket.updated",
                "ticket.reservation_refused",
                "order.created",
                "order.cancelled",
                "order.completed",
                "expiration.complete",
                "payment.created",
                "session.revoked",
                "user.created",
                "payment.declined",
                "sale.credited",
                "ticket.held",
                "payment.refunded"
            ]
        );
    }

    #[test]
    fn order_statuses_use_the_contract_spelling() {
        let spelled: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            spelled,
            ["created", "cancelled", "awaiting:payment", "complete"]
        );
        for status in OrderStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("paid".parse::<OrderStatus>().is_err());
    }
}
