//! The events the services exchange (ARCHITECTURE §4): one Rust type per subject, and the
//! envelope `{id, type, occurredAt, data}` they travel in.
//!
//! Every event that describes a replicated record carries that record's `version`, so a replica
//! can apply version `v` only on top of `v - 1`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Cents;

/// A typed event: its subject is also the envelope's `type`.
pub trait Event:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    const SUBJECT: &'static str;
}

/// Every subject the services publish.
pub const SUBJECTS: [&str; 7] = [
    TicketCreated::SUBJECT,
    TicketUpdated::SUBJECT,
    OrderCreated::SUBJECT,
    OrderCancelled::SUBJECT,
    OrderCompleted::SUBJECT,
    ExpirationComplete::SUBJECT,
    PaymentCreated::SUBJECT,
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

/// The status of an order, as the contract spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Reserved, waiting for payment.
    #[serde(rename = "created")]
    Created,
    /// Cancelled by the buyer or expired; the ticket is free again.
    #[serde(rename = "cancelled")]
    Cancelled,
    /// A payment is in progress.
    #[serde(rename = "awaiting:payment")]
    AwaitingPayment,
    /// Paid; the ticket is sold.
    #[serde(rename = "complete")]
    Complete,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::AwaitingPayment => "awaiting:payment",
            Self::Complete => "complete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Cancelled,
            Self::AwaitingPayment,
            Self::Complete,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `ticket.created` / `ticket.updated` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketData {
    pub id: String,
    pub version: i64,
    pub title: String,
    pub price: Cents,
    pub user_id: String,
    pub order_id: Option<String>,
}

/// A ticket was listed (version 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketCreated(pub TicketData);

/// A ticket changed: edited, reserved, released or sold (version + 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketUpdated(pub TicketData);

/// A reference to a ticket inside order events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    pub id: String,
}

/// The ticket of a new order, with the price to charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTicket {
    pub id: String,
    pub price: Cents,
}

/// An order reserved a ticket until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub id: String,
    pub version: i64,
    pub status: OrderStatus,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub ticket: OrderTicket,
}

/// An order was cancelled (by the buyer or by expiry); its ticket is free again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub id: String,
    pub version: i64,
    pub ticket: TicketRef,
}

/// An order was paid; its ticket is sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    pub id: String,
    pub version: i64,
    pub ticket: TicketRef,
}

/// The payment window of an order has passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    pub order_id: String,
}

/// An order was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub id: String,
    pub order_id: String,
    pub stripe_id: String,
}

impl Event for TicketCreated {
    const SUBJECT: &'static str = "ticket.created";
}
impl Event for TicketUpdated {
    const SUBJECT: &'static str = "ticket.updated";
}
impl Event for OrderCreated {
    const SUBJECT: &'static str = "order.created";
}
impl Event for OrderCancelled {
    const SUBJECT: &'static str = "order.cancelled";
}
impl Event for OrderCompleted {
    const SUBJECT: &'static str = "order.completed";
}
impl Event for ExpirationComplete {
    const SUBJECT: &'static str = "expiration.complete";
}
impl Event for PaymentCreated {
    const SUBJECT: &'static str = "payment.created";
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
        }
    }

    #[test]
    fn every_event_has_the_contract_wire_shape_and_round_trips() {
        let ticket_json = json!({"id": "t1", "version": 3, "title": "Concert", "price": 20.5, "userId": "u1", "orderId": null});
        round_trip(TicketCreated(ticket()), ticket_json.clone());
        round_trip(TicketUpdated(ticket()), ticket_json);
        let expires: DateTime<Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
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
                },
            },
            json!({"id": "o1", "version": 0, "status": "created", "userId": "u2", "expiresAt": "2026-11-25T10:00:00Z", "ticket": {"id": "t1", "price": 20}}),
        );
        round_trip(
            OrderCancelled {
                id: "o1".into(),
                version: 1,
                ticket: TicketRef { id: "t1".into() },
            },
            json!({"id": "o1", "version": 1, "ticket": {"id": "t1"}}),
        );
        round_trip(
            OrderCompleted {
                id: "o1".into(),
                version: 2,
                ticket: TicketRef { id: "t1".into() },
            },
            json!({"id": "o1", "version": 2, "ticket": {"id": "t1"}}),
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
            },
            json!({"id": "p1", "orderId": "o1", "stripeId": "pi_1"}),
        );
    }

    #[test]
    fn subjects_are_the_contract_names() {
        assert_eq!(
            SUBJECTS,
            [
                "ticket.created",
                "ticket.updated",
                "order.created",
                "order.cancelled",
                "order.completed",
                "expiration.complete",
                "payment.created"
            ]
        );
    }

    #[test]
    fn order_statuses_use_the_contract_spelling() {
        for status in [
            OrderStatus::Created,
            OrderStatus::Cancelled,
            OrderStatus::AwaitingPayment,
            OrderStatus::Complete,
        ] {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("paid"), None);
    }
}
