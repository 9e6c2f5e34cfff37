//! The JSON the API answers with, as types: the services serialise them and the web client
//! reads them, so both sides agree by construction.

use serde::{Deserialize, Serialize};

use crate::events::{CancelReason, OrderStatus};
use crate::ids::{AlertId, NotificationId, OrderId, PaymentId, TicketId, UserId};
use crate::money::Cents;
use crate::time::Millis;

/// An order: `{id, userId, status, expiresAt, version, ticket, payment, cancelReason}`.
/// `payment` and `cancelReason` are extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    /// ISO-8601 UTC.
    pub expires_at: Millis,
    pub version: i64,
    /// The ticket as it was when the order reserved it: what the buyer pays for.
    pub ticket: OrderTicket,
    /// The money: `null` until a payment was authorised for the order.
    #[serde(default)]
    pub payment: Option<OrderPayment>,
    /// Why the order was cancelled; `null` unless it was.
    #[serde(default)]
    pub cancel_reason: Option<CancelReason>,
}

/// The ticket inside an order: `{id, title, price, version}`, as reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderTicket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

/// The payment of an order: `{id, amount, status, refunded}`; `amount` and `refunded` in
/// currency units like `price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPayment {
    pub id: PaymentId,
    pub amount: Cents,
    pub status: OrderPaymentStatus,
    /// Given back to the buyer so far: 0, part of `amount` (a partial refund; `status` stays),
    /// or all of it (`status` is `refunded`). An extension; absent reads as 0.
    #[serde(default)]
    pub refunded: Cents,
}

crate::text_enum! {
    /// Where the money of an order's payment stands, as the order sees it.
    pub enum OrderPaymentStatus {
        /// The card was authorised (the money is held) and the order is being completed.
        Authorized = "authorized",
        /// The order was completed with this payment: the money is taken.
        Succeeded = "succeeded",
        /// The order was cancelled before it could be completed: the hold is released and
        /// nothing is charged.
        Voided = "voided",
        /// All of the payment was given back to the buyer (`refunded` equals `amount`).
        Refunded = "refunded",
    }
}

// The vocabulary of a seller's payouts (`GET /api/payouts`), shared by the payments service
// (its ledger) and the web client.

crate::text_enum! {
    /// What an entry of the ledger is.
    pub enum EntryKind {
        /// The seller's part of a paid order (one per order).
        Credit = "credit",
        /// Takes back (part of) a credit when its charge was refunded (in full after the
        /// credit was paid out, or in part): negative amounts, paid with the credit while it is
        /// not paid out, otherwise netted from the seller's next payouts. A sale may have
        /// several.
        Reversal = "reversal",
    }
}

crate::text_enum! {
    /// Where an entry of the ledger stands.
    pub enum CreditStatus {
        /// Earned, not yet payable: the event has not started (or the delay has not passed).
        Pending = "pending",
        /// Payable: the payout worker transfers it once the seller's account can receive.
        Available = "available",
        /// Claimed by the payout worker with a transfer key; the provider is being asked.
        Transferring = "transferring",
        /// Transferred to the seller (`transferId`, `paidAt`), or netted into a transfer.
        Paid = "paid",
        /// Cancelled before it was paid out: the order's charge was refunded.
        Reversed = "reversed",
    }
}

crate::text_enum! {
    /// A seller's payout account as `GET /api/payouts` shows it.
    pub enum PayoutAccountStatus {
        /// No account yet: `POST /api/payouts/account` starts one.
        None = "none",
        Onboarding = "onboarding",
        Restricted = "restricted",
        Enabled = "enabled",
    }
}

// Notifications and ticket alerts (the notifications service), read by the web client.

crate::text_enum! {
    /// What a notification is about.
    pub enum NotificationKind {
        /// To the buyer: the order is paid, the ticket is theirs (a receipt).
        OrderReceipt = "order_receipt",
        /// To the seller: their ticket sold; what they earn and when it is paid out.
        TicketSold = "ticket_sold",
        /// To the buyer: the reservation ran out before it was paid.
        ReservationExpired = "reservation_expired",
        /// To the buyer: the reservation was cancelled because the ticket changed, went off
        /// sale or its event started before it was confirmed.
        OrderCancelled = "order_cancelled",
        /// To the buyer: the card was declined.
        PaymentDeclined = "payment_declined",
        /// To an alert's subscriber: a ticket matching it is on sale.
        TicketAlert = "ticket_alert",
        /// To the buyer: money of their payment was given back (in full or in part).
        PaymentRefunded = "payment_refunded",
    }
}

/// An in-app notification: `{id, kind, title, body, link, createdAt, read}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: NotificationId,
    pub kind: NotificationKind,
    /// One line, e.g. `Your ticket sold: Opera Gala`.
    pub title: String,
    /// A few sentences with the details.
    pub body: String,
    /// Where to go about it, a path on this site (`/orders/{id}`, `/tickets/{id}`), or `null`.
    pub link: Option<String>,
    /// ISO-8601 UTC.
    pub created_at: Millis,
    pub read: bool,
}

/// `GET /api/notifications`: the newest first, and how many are unread in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationList {
    pub notifications: Vec<Notification>,
    /// Unread notifications of the user (all of them, not only this page's).
    pub unread: i64,
}

/// A ticket alert: `{id, q, maxPrice, createdAt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: AlertId,
    /// The search it matches titles with (the listing's `q`).
    pub q: String,
    /// Only tickets at or under this price; `null` for any price.
    pub max_price: Option<Cents>,
    /// ISO-8601 UTC: alerts on one ticket are served in this order.
    pub created_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_order_has_the_contract_shape_plus_payment_and_cancel_reason() {
        let order = Order {
            id: "o1".into(),
            user_id: "u1".into(),
            status: OrderStatus::Complete,
            expires_at: Millis::new(1_795_600_800_000).unwrap(),
            version: 1,
            ticket: OrderTicket {
                id: "t1".into(),
                title: "Concert".into(),
                price: Cents::new(2050),
                version: 0,
            },
            payment: Some(OrderPayment {
                id: "p1".into(),
                amount: Cents::new(2050),
                status: OrderPaymentStatus::Succeeded,
                refunded: Cents::new(500),
            }),
            cancel_reason: None,
        };
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "o1", "userId": "u1", "status": "complete",
                "expiresAt": "2026-11-25T10:00:00.000Z", "version": 1,
                "ticket": {"id": "t1", "title": "Concert", "price": 20.5, "version": 0},
                "payment": {"id": "p1", "amount": 20.5, "status": "succeeded", "refunded": 5},
                "cancelReason": null
            })
        );
        assert_eq!(serde_json::from_value::<Order>(json).unwrap(), order);
        // Before refunds were shown, a payment had no `refunded`: nothing was given back.
        let earlier: OrderPayment =
            serde_json::from_value(json!({"id": "p1", "amount": 20.5, "status": "voided"}))
                .unwrap();
        assert_eq!(earlier.refunded, Cents::new(0));
        assert_eq!(
            serde_json::to_value(OrderPaymentStatus::Refunded).unwrap(),
            "refunded"
        );
    }
}
