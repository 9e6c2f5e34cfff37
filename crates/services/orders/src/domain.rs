//! The orders domain: an [`Order`] and its lifecycle as pure transitions.
//!
//! [`Order::place`] makes an order; [`Order::apply`] takes a [`Command`] — from the buyer
//! (cancel) or from an event (expiry, the tickets service's decision on the reservation, a
//! payment) — and answers the changed order and the event to announce, or a [`Refusal`]. The
//! HTTP handlers and the event handlers call the same transitions; nothing else changes an
//! order. Everything here is tested without a database.
//!
//! The rules:
//! - The order keeps the ticket's title and price as they were when it was placed
//!   ([`TicketTerms`]): that is what the buyer is shown and charged.
//! - The tickets service confirms the reservation only if the ticket still has those terms
//!   (otherwise it refuses, and the order is cancelled with `ticket_changed`, before any charge).
//! - A payment completes the order only once the reservation is confirmed; one that arrives
//!   earlier waits on the order and completes it at confirmation.
//! - Cancel, expiry and refusal win over a payment that has not completed the order; a
//!   completed order is never cancelled. The payments service releases the hold of any
//!   payment that did not complete its order.

use std::time::Duration;

use bt_contract::events::{
    CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus, OrderTicket,
    ReservationRefusal, TicketRef,
};
use bt_contract::resources::{self, OrderPayment, OrderPaymentStatus};
use bt_contract::{Cents, Millis, OrderId, PaymentId, TicketId, UserId};

bt_contract::text_enum! {
    /// Whether the tickets service has confirmed that it holds the ticket for the order.
    pub enum Reservation {
        /// Placed here; the tickets service has not answered yet.
        Pending = "pending",
        /// The tickets service holds the ticket for this order, at the order's terms.
        Confirmed = "confirmed",
    }
}

/// The ticket as the order reserved it: what the buyer sees and pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTerms {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    /// The version of the ticket (in this service's replica) the order was placed on.
    pub version: i64,
}

/// A ticket as the orders service's replica holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ListedTicket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    /// Its owner (the seller while it is listed).
    pub user_id: UserId,
    pub version: i64,
    /// When the event starts, if the seller said.
    pub starts_at: Option<Millis>,
    /// Whether its owner offers it for sale.
    pub for_sale: bool,
    /// A ticket alert's hold (`ticket.held`): only `held_for` may order it until `held_until`,
    /// while the ticket is still at `held_version`.
    pub held_for: Option<UserId>,
    pub held_version: Option<i64>,
    pub held_until: Option<Millis>,
}

impl ListedTicket {
    /// Until when someone other than `buyer` holds the ticket at `now`, if they do.
    pub fn held_against(&self, buyer: &UserId, now: Millis) -> Option<Millis> {
        match (&self.held_for, self.held_version, self.held_until) {
            (Some(holder), Some(version), Some(until))
                if version == self.version && now < until && holder != buyer =>
            {
                Some(until)
            }
            _ => None,
        }
    }
}

/// A payment the order knows of: the one that completed it, or one waiting for the
/// reservation to be confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub amount: Cents,
    /// Given back to the buyer so far (`payment.refunded`; only grows).
    pub refunded: Cents,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub expires_at: Millis,
    /// +1 with every change announced by an event (replicas apply versions in order).
    pub version: i64,
    pub ticket: TicketTerms,
    pub reservation: Reservation,
    pub payment: Option<Payment>,
    pub cancel_reason: Option<CancelReason>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What can happen to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The buyer cancels (`DELETE /api/orders/:id`).
    Cancel { by: UserId },
    /// The payment window passed (`expiration.complete`).
    Expire,
    /// The tickets service reserved the ticket for this order (`ticket.updated` naming it).
    ConfirmReservation,
    /// The tickets service refused the reservation (`ticket.reservation_refused`).
    RefuseReservation(ReservationRefusal),
    /// A payment was authorised for the order (`payment.created`).
    Pay { payment: PaymentId, amount: Cents },
    /// Money of a payment of the order was given back to the buyer (`payment.refunded`):
    /// `refunded` of `amount` so far. Changes what the order shows, not its status: it is not
    /// announced (and the version stays).
    Refunded {
        payment: PaymentId,
        amount: Cents,
        refunded: Cents,
    },
}

/// An event a transition announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    Cancelled(OrderCancelled),
    Completed(OrderCompleted),
}

/// The result of a transition: the order as it is now, and the event to announce, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub order: Order,
    pub event: Option<OrderEvent>,
}

/// Why a command does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("You cannot buy your own ticket")]
    OwnTicket,
    #[error("This ticket is not for sale")]
    NotForSale,
    #[error("This event has already started")]
    EventStarted,
    #[error(
        "This ticket is held for the first fan in line of its ticket alert until {} UTC; try again then",
        .0.to_datetime().format("%H:%M:%S")
    )]
    HeldForAlert(Millis),
    #[error("Not authorized")]
    NotOwner,
    #[error("Cannot cancel a completed order")]
    CannotCancelCompleted,
    #[error("the order is cancelled already")]
    AlreadyCancelled,
    #[error("the order is complete already")]
    AlreadyComplete,
    #[error("the reservation is confirmed already")]
    AlreadyConfirmed,
    #[error("this payment is recorded already")]
    SamePayment,
    #[error("the order has another payment ({0})")]
    OtherPayment(PaymentId),
    #[error("a payment of {paid} for an order of {price}")]
    AmountMismatch { paid: Cents, price: Cents },
    #[error("this refund is recorded already")]
    SameRefund,
}

impl Order {
    /// Why `buyer` may not order `ticket` at `now`, if anything forbids it: the checks of
    /// [`Order::place`], without making the order (a buyer refused from memory in a rush gets
    /// the same reason as one who would have been placed).
    pub fn may_place(buyer: &UserId, ticket: &ListedTicket, now: Millis) -> Result<(), Refusal> {
        if ticket.user_id == *buyer {
            return Err(Refusal::OwnTicket);
        }
        if !ticket.for_sale {
            return Err(Refusal::NotForSale);
        }
        if ticket.starts_at.is_some_and(|starts| starts <= now) {
            return Err(Refusal::EventStarted);
        }
        if let Some(until) = ticket.held_against(buyer, now) {
            return Err(Refusal::HeldForAlert(until));
        }
        Ok(())
    }

    /// A new order by `buyer` for `ticket`, reserving it until `now + window`.
    pub fn place(
        id: OrderId,
        buyer: UserId,
        ticket: &ListedTicket,
        now: Millis,
        window: Duration,
    ) -> Result<(Order, OrderCreated), Refusal> {
        Self::may_place(&buyer, ticket, now)?;
        let order = Order {
            id,
            user_id: buyer,
            status: OrderStatus::Created,
            expires_at: now.plus(window),
            version: 0,
            ticket: TicketTerms {
                id: ticket.id.clone(),
                title: ticket.title.clone(),
                price: ticket.price,
                version: ticket.version,
            },
            reservation: Reservation::Pending,
            payment: None,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
        };
        let created = OrderCreated {
            id: order.id.clone(),
            version: order.version,
            status: order.status,
            user_id: order.user_id.clone(),
            expires_at: order.expires_at,
            ticket: OrderTicket {
                id: order.ticket.id.clone(),
                price: order.ticket.price,
                title: Some(order.ticket.title.clone()),
                version: Some(order.ticket.version),
                seller_id: Some(ticket.user_id.clone()),
                starts_at: ticket.starts_at,
            },
        };
        Ok((order, created))
    }

    /// Whether the order is placed and neither paid nor cancelled.
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::Created | OrderStatus::AwaitingPayment
        )
    }

    /// Applies `command` at `now`.
    pub fn apply(self, command: Command, now: Millis) -> Result<Transition, Refusal> {
        match command {
            Command::Cancel { by } => {
                if by != self.user_id {
                    return Err(Refusal::NotOwner);
                }
                self.cancel(CancelReason::Buyer, now)
            }
            Command::Expire => self.cancel(CancelReason::Expired, now),
            Command::RefuseReservation(refusal) => {
                let reason = match refusal {
                    ReservationRefusal::TicketChanged => CancelReason::TicketChanged,
                    ReservationRefusal::NotForSale => CancelReason::NotForSale,
                    ReservationRefusal::EventStarted => CancelReason::EventStarted,
                };
                self.cancel(reason, now)
            }
            Command::ConfirmReservation => self.confirm(now),
            Command::Pay { payment, amount } => self.pay(payment, amount, now),
            Command::Refunded {
                payment,
                amount,
                refunded,
            } => self.refunded(payment, amount, refunded, now),
        }
    }

    /// Records money given back of a payment: of the order's payment (refunds only add up: an
    /// older total changes nothing), or of a payment the order never knew of when the order
    /// was cancelled without one (a charge that landed too late, given back by the payments
    /// service: the buyer sees it came and went). A second charge of an order that has a
    /// payment is not the order's.
    fn refunded(
        mut self,
        payment: PaymentId,
        amount: Cents,
        refunded: Cents,
        now: Millis,
    ) -> Result<Transition, Refusal> {
        match &mut self.payment {
            Some(known) if known.id == payment => {
                if refunded <= known.refunded {
                    return Err(Refusal::SameRefund);
                }
                known.refunded = refunded.min(known.amount);
            }
            Some(known) => return Err(Refusal::OtherPayment(known.id.clone())),
            None if self.status == OrderStatus::Cancelled => {
                self.payment = Some(Payment {
                    id: payment,
                    amount,
                    refunded: refunded.min(amount),
                });
            }
            None => return Err(Refusal::OtherPayment(payment)),
        }
        self.updated_at = now;
        Ok(Transition {
            order: self,
            event: None,
        })
    }

    fn cancel(mut self, reason: CancelReason, now: Millis) -> Result<Transition, Refusal> {
        match self.status {
            OrderStatus::Complete if reason == CancelReason::Buyer => {
                return Err(Refusal::CannotCancelCompleted);
            }
            OrderStatus::Complete => return Err(Refusal::AlreadyComplete),
            OrderStatus::Cancelled => return Err(Refusal::AlreadyCancelled),
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        self.status = OrderStatus::Cancelled;
        self.cancel_reason = Some(reason);
        self.bump(now);
        let event = OrderEvent::Cancelled(OrderCancelled {
            id: self.id.clone(),
            version: self.version,
            ticket: TicketRef {
                id: self.ticket.id.clone(),
            },
            reason: Some(reason),
        });
        Ok(Transition {
            order: self,
            event: Some(event),
        })
    }

    fn confirm(mut self, now: Millis) -> Result<Transition, Refusal> {
        match self.status {
            OrderStatus::Cancelled => return Err(Refusal::AlreadyCancelled),
            OrderStatus::Complete => return Err(Refusal::AlreadyComplete),
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        if self.reservation == Reservation::Confirmed {
            return Err(Refusal::AlreadyConfirmed);
        }
        self.reservation = Reservation::Confirmed;
        self.updated_at = now;
        if self.payment.is_some() {
            // A payment arrived before the confirmation: it completes the order now.
            return Ok(self.complete(now));
        }
        Ok(Transition {
            order: self,
            event: None,
        })
    }

    fn pay(
        mut self,
        payment: PaymentId,
        amount: Cents,
        now: Millis,
    ) -> Result<Transition, Refusal> {
        if let Some(known) = &self.payment {
            return Err(if known.id == payment {
                Refusal::SamePayment
            } else {
                Refusal::OtherPayment(known.id.clone())
            });
        }
        match self.status {
            OrderStatus::Complete => return Err(Refusal::AlreadyComplete),
            OrderStatus::Cancelled => {
                // Too late: recorded so the buyer sees it, released by the payments service.
                self.payment = Some(Payment {
                    id: payment,
                    amount,
                    refunded: Cents::new(0),
                });
                self.updated_at = now;
                return Ok(Transition {
                    order: self,
                    event: None,
                });
            }
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        if amount != self.ticket.price {
            return Err(Refusal::AmountMismatch {
                paid: amount,
                price: self.ticket.price,
            });
        }
        self.payment = Some(Payment {
            id: payment,
            amount,
            refunded: Cents::new(0),
        });
        self.updated_at = now;
        match self.reservation {
            Reservation::Confirmed => Ok(self.complete(now)),
            // Waits for the tickets service's answer on the reservation.
            Reservation::Pending => Ok(Transition {
                order: self,
                event: None,
            }),
        }
    }

    /// Completes the order with its (recorded) payment.
    fn complete(mut self, now: Millis) -> Transition {
        self.status = OrderStatus::Complete;
        self.bump(now);
        let event = OrderEvent::Completed(OrderCompleted {
            id: self.id.clone(),
            version: self.version,
            ticket: TicketRef {
                id: self.ticket.id.clone(),
            },
            payment_id: self.payment.as_ref().map(|p| p.id.clone()),
            user_id: Some(self.user_id.clone()),
        });
        Transition {
            order: self,
            event: Some(event),
        }
    }

    fn bump(&mut self, now: Millis) {
        self.version += 1;
        self.updated_at = now;
    }

    /// The order as the API shows it.
    pub fn to_json(&self) -> resources::Order {
        let payment_status = match self.status {
            OrderStatus::Complete => OrderPaymentStatus::Succeeded,
            OrderStatus::Cancelled => OrderPaymentStatus::Voided,
            OrderStatus::Created | OrderStatus::AwaitingPayment => OrderPaymentStatus::Authorized,
        };
        resources::Order {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            status: self.status,
            expires_at: self.expires_at,
            version: self.version,
            ticket: resources::OrderTicket {
                id: self.ticket.id.clone(),
                title: self.ticket.title.clone(),
                price: self.ticket.price,
                version: self.ticket.version,
            },
            payment: self.payment.as_ref().map(|p| OrderPayment {
                id: p.id.clone(),
                amount: p.amount,
                status: if p.refunded >= p.amount {
                    OrderPaymentStatus::Refunded
                } else {
                    payment_status
                },
                refunded: p.refunded,
            }),
            cancel_reason: self.cancel_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(900);

    fn at(ms: i64) -> Millis {
        Millis::new(1_800_000_000_000 + ms).unwrap()
    }

    fn ticket() -> ListedTicket {
        ListedTicket {
            id: "t1".into(),
            title: "Row A".into(),
            price: Cents::new(1000),
            user_id: "seller".into(),
            version: 4,
            starts_at: None,
            for_sale: true,
            held_for: None,
            held_version: None,
            held_until: None,
        }
    }

    #[test]
    fn a_ticket_held_for_an_alerts_first_subscriber_is_theirs_alone_until_the_hold_ends() {
        let held = ListedTicket {
            held_for: Some("fan".into()),
            held_version: Some(4),
            held_until: Some(at(2_000)),
            ..ticket()
        };
        let refusal =
            Order::place("o1".into(), "buyer".into(), &held, at(1_999), WINDOW).unwrap_err();
        assert_eq!(refusal, Refusal::HeldForAlert(at(2_000)));
        assert_eq!(
            refusal.to_string(),
            "This ticket is held for the first fan in line of its ticket alert until 08:00:02 UTC; try again then"
        );
        assert!(Order::place("o1".into(), "fan".into(), &held, at(0), WINDOW).is_ok());
        assert!(Order::place("o1".into(), "buyer".into(), &held, at(2_000), WINDOW).is_ok());
        // A hold on an earlier version of the ticket ended with that version.
        let changed = ListedTicket {
            version: 5,
            ..held.clone()
        };
        assert!(Order::place("o1".into(), "buyer".into(), &changed, at(0), WINDOW).is_ok());
    }

    fn placed() -> Order {
        Order::place("o1".into(), "buyer".into(), &ticket(), at(0), WINDOW)
            .unwrap()
            .0
    }

    fn confirmed() -> Order {
        placed()
            .apply(Command::ConfirmReservation, at(10))
            .unwrap()
            .order
    }

    fn pay(id: &str, cents: i64) -> Command {
        Command::Pay {
            payment: id.into(),
            amount: Cents::new(cents),
        }
    }

    fn cancel_by(user: &str) -> Command {
        Command::Cancel { by: user.into() }
    }

    #[test]
    fn placing_keeps_the_terms_the_buyer_saw_and_announces_them() {
        let (order, created) =
            Order::place("o1".into(), "buyer".into(), &ticket(), at(0), WINDOW).unwrap();
        assert_eq!(order.status, OrderStatus::Created);
        assert_eq!(order.version, 0);
        assert_eq!(order.expires_at, at(900_000));
        assert_eq!(order.reservation, Reservation::Pending);
        assert_eq!(order.ticket.title, "Row A");
        assert_eq!(order.ticket.price, Cents::new(1000));
        assert_eq!(order.ticket.version, 4);
        assert_eq!(created.ticket.price, Cents::new(1000));
        assert_eq!(created.ticket.title.as_deref(), Some("Row A"));
        assert_eq!(created.ticket.version, Some(4));
        assert_eq!(created.expires_at, order.expires_at);
        assert_eq!(created.ticket.seller_id, Some("seller".into()));
        assert_eq!(created.ticket.starts_at, None);
    }

    #[test]
    fn a_ticket_off_sale_or_whose_event_started_cannot_be_ordered() {
        let off = ListedTicket {
            for_sale: false,
            ..ticket()
        };
        assert_eq!(
            Order::place("o1".into(), "buyer".into(), &off, at(0), WINDOW).unwrap_err(),
            Refusal::NotForSale
        );
        let starts = ListedTicket {
            starts_at: Some(at(5_000)),
            ..ticket()
        };
        let (_, created) =
            Order::place("o1".into(), "buyer".into(), &starts, at(4_999), WINDOW).unwrap();
        assert_eq!(created.ticket.starts_at, Some(at(5_000)));
        for now in [5_000, 9_000] {
            assert_eq!(
                Order::place("o1".into(), "buyer".into(), &starts, at(now), WINDOW).unwrap_err(),
                Refusal::EventStarted
            );
        }
    }

    #[test]
    fn a_refused_reservation_cancels_with_the_tickets_reason() {
        for (refusal, reason) in [
            (
                ReservationRefusal::TicketChanged,
                CancelReason::TicketChanged,
            ),
            (ReservationRefusal::NotForSale, CancelReason::NotForSale),
            (ReservationRefusal::EventStarted, CancelReason::EventStarted),
        ] {
            let t = placed()
                .apply(Command::RefuseReservation(refusal), at(5))
                .unwrap();
            assert_eq!(t.order.status, OrderStatus::Cancelled);
            assert_eq!(t.order.cancel_reason, Some(reason));
        }
    }

    #[test]
    fn a_seller_cannot_buy_their_own_ticket() {
        assert_eq!(
            Order::place("o1".into(), "seller".into(), &ticket(), at(0), WINDOW).unwrap_err(),
            Refusal::OwnTicket
        );
    }

    #[test]
    fn the_buyer_cancels_an_open_order_once() {
        let t = placed().apply(cancel_by("buyer"), at(5)).unwrap();
        assert_eq!(t.order.status, OrderStatus::Cancelled);
        assert_eq!(t.order.cancel_reason, Some(CancelReason::Buyer));
        assert_eq!(t.order.version, 1);
        assert_eq!(
            t.event,
            Some(OrderEvent::Cancelled(OrderCancelled {
                id: "o1".into(),
                version: 1,
                ticket: TicketRef { id: "t1".into() },
                reason: Some(CancelReason::Buyer),
            }))
        );
        assert_eq!(
            t.order.apply(cancel_by("buyer"), at(6)).unwrap_err(),
            Refusal::AlreadyCancelled
        );
    }

    #[test]
    fn only_the_buyer_may_cancel() {
        assert_eq!(
            placed().apply(cancel_by("someone"), at(5)).unwrap_err(),
            Refusal::NotOwner
        );
    }

    #[test]
    fn a_completed_order_is_never_cancelled_by_anyone_or_anything() {
        let paid = confirmed().apply(pay("p1", 1000), at(20)).unwrap().order;
        assert_eq!(paid.status, OrderStatus::Complete);
        assert_eq!(
            paid.clone().apply(cancel_by("buyer"), at(30)).unwrap_err(),
            Refusal::CannotCancelCompleted
        );
        assert_eq!(
            paid.clone().apply(Command::Expire, at(30)).unwrap_err(),
            Refusal::AlreadyComplete
        );
        assert_eq!(
            paid.apply(
                Command::RefuseReservation(ReservationRefusal::TicketChanged),
                at(30)
            )
            .unwrap_err(),
            Refusal::AlreadyComplete
        );
    }

    #[test]
    fn expiry_cancels_an_open_order_and_says_so() {
        let t = confirmed().apply(Command::Expire, at(900_000)).unwrap();
        assert_eq!(t.order.status, OrderStatus::Cancelled);
        assert_eq!(t.order.cancel_reason, Some(CancelReason::Expired));
        assert!(
            matches!(t.event, Some(OrderEvent::Cancelled(ref c)) if c.reason == Some(CancelReason::Expired))
        );
    }

    #[test]
    fn a_refused_reservation_cancels_the_order_with_the_reason() {
        let t = placed()
            .apply(
                Command::RefuseReservation(ReservationRefusal::TicketChanged),
                at(5),
            )
            .unwrap();
        assert_eq!(t.order.status, OrderStatus::Cancelled);
        assert_eq!(t.order.cancel_reason, Some(CancelReason::TicketChanged));
        assert_eq!(
            t.order.to_json().cancel_reason,
            Some(CancelReason::TicketChanged)
        );
    }

    #[test]
    fn confirming_announces_nothing_and_happens_once() {
        let t = placed().apply(Command::ConfirmReservation, at(5)).unwrap();
        assert_eq!(t.event, None);
        assert_eq!(t.order.reservation, Reservation::Confirmed);
        assert_eq!(t.order.version, 0, "no event, no new version");
        assert_eq!(
            t.order
                .apply(Command::ConfirmReservation, at(6))
                .unwrap_err(),
            Refusal::AlreadyConfirmed
        );
    }

    #[test]
    fn a_confirmation_after_a_cancellation_changes_nothing() {
        let cancelled = placed().apply(cancel_by("buyer"), at(5)).unwrap().order;
        assert_eq!(
            cancelled
                .apply(Command::ConfirmReservation, at(6))
                .unwrap_err(),
            Refusal::AlreadyCancelled
        );
    }

    #[test]
    fn a_payment_completes_a_confirmed_order_and_names_itself() {
        let t = confirmed().apply(pay("p1", 1000), at(20)).unwrap();
        assert_eq!(t.order.status, OrderStatus::Complete);
        assert_eq!(t.order.version, 1);
        assert_eq!(
            t.event,
            Some(OrderEvent::Completed(OrderCompleted {
                id: "o1".into(),
                version: 1,
                ticket: TicketRef { id: "t1".into() },
                payment_id: Some("p1".into()),
                user_id: Some("buyer".into()),
            }))
        );
        let json = t.order.to_json();
        let payment = json.payment.unwrap();
        assert_eq!(payment.status, OrderPaymentStatus::Succeeded);
        assert_eq!(payment.amount, Cents::new(1000));
    }

    fn refunded(payment: &str, total: i64) -> Command {
        Command::Refunded {
            payment: payment.into(),
            amount: Cents::new(1000),
            refunded: Cents::new(total),
        }
    }

    #[test]
    fn money_given_back_shows_on_the_order_without_an_event_or_a_version() {
        let paid = confirmed().apply(pay("p1", 1000), at(20)).unwrap().order;
        let part = paid.clone().apply(refunded("p1", 300), at(30)).unwrap();
        assert_eq!(part.event, None);
        assert_eq!(
            (part.order.status, part.order.version, part.order.updated_at),
            (OrderStatus::Complete, 1, at(30))
        );
        let shown = part.order.to_json().payment.unwrap();
        assert_eq!(
            (shown.status, shown.refunded),
            (OrderPaymentStatus::Succeeded, Cents::new(300))
        );
        // Again, or an older total: nothing to do.
        for total in [300, 100] {
            assert_eq!(
                part.order.clone().apply(refunded("p1", total), at(31)),
                Err(Refusal::SameRefund)
            );
        }
        let all = part.order.apply(refunded("p1", 1000), at(40)).unwrap();
        let shown = all.order.to_json().payment.unwrap();
        assert_eq!(
            (shown.status, shown.refunded),
            (OrderPaymentStatus::Refunded, Cents::new(1000))
        );
        // Another charge of the order is not its payment.
        assert_eq!(
            paid.apply(refunded("p2", 1000), at(50)),
            Err(Refusal::OtherPayment("p1".into()))
        );
        // An open order without a payment does not take one from a refund (its real payment
        // may still come); a cancelled one shows the charge that came too late and went back.
        assert_eq!(
            confirmed().apply(refunded("p9", 1000), at(50)),
            Err(Refusal::OtherPayment("p9".into()))
        );
        let ended = confirmed()
            .apply(Command::Expire, at(60))
            .unwrap()
            .order
            .apply(refunded("p9", 1000), at(70))
            .unwrap();
        assert_eq!(
            ended.order.to_json().payment,
            Some(OrderPayment {
                id: "p9".into(),
                amount: Cents::new(1000),
                status: OrderPaymentStatus::Refunded,
                refunded: Cents::new(1000),
            })
        );
        assert_eq!(ended.order.status, OrderStatus::Cancelled);
    }

    #[test]
    fn a_payment_before_the_confirmation_waits_for_it_then_completes() {
        let waiting = placed().apply(pay("p1", 1000), at(5)).unwrap();
        assert_eq!(waiting.event, None);
        assert_eq!(waiting.order.status, OrderStatus::Created);
        assert_eq!(
            waiting.order.to_json().payment.unwrap().status,
            OrderPaymentStatus::Authorized
        );
        let t = waiting
            .order
            .apply(Command::ConfirmReservation, at(6))
            .unwrap();
        assert_eq!(t.order.status, OrderStatus::Complete);
        assert!(
            matches!(t.event, Some(OrderEvent::Completed(ref c)) if c.payment_id == Some("p1".into()))
        );
    }

    #[test]
    fn a_waiting_payment_loses_to_a_refusal_a_cancel_or_expiry() {
        let waiting = placed().apply(pay("p1", 1000), at(5)).unwrap().order;
        for command in [
            Command::RefuseReservation(ReservationRefusal::TicketChanged),
            cancel_by("buyer"),
            Command::Expire,
        ] {
            let t = waiting.clone().apply(command.clone(), at(6)).unwrap();
            assert_eq!(t.order.status, OrderStatus::Cancelled, "{command:?}");
            assert_eq!(
                t.order.to_json().payment.unwrap().status,
                OrderPaymentStatus::Voided,
                "{command:?}"
            );
        }
    }

    #[test]
    fn a_payment_for_a_cancelled_order_is_recorded_as_voided_and_announces_nothing() {
        let cancelled = confirmed().apply(Command::Expire, at(5)).unwrap().order;
        let t = cancelled.apply(pay("p1", 1000), at(6)).unwrap();
        assert_eq!(t.event, None);
        assert_eq!(t.order.status, OrderStatus::Cancelled);
        assert_eq!(
            t.order.to_json().payment.unwrap().status,
            OrderPaymentStatus::Voided
        );
    }

    #[test]
    fn a_second_payment_never_completes_the_order_again() {
        let paid = confirmed().apply(pay("p1", 1000), at(20)).unwrap().order;
        assert_eq!(
            paid.clone().apply(pay("p1", 1000), at(21)).unwrap_err(),
            Refusal::SamePayment
        );
        assert_eq!(
            paid.apply(pay("p2", 1000), at(21)).unwrap_err(),
            Refusal::OtherPayment("p1".into())
        );
    }

    #[test]
    fn a_payment_of_another_amount_is_refused() {
        assert_eq!(
            confirmed().apply(pay("p1", 9900), at(20)).unwrap_err(),
            Refusal::AmountMismatch {
                paid: Cents::new(9900),
                price: Cents::new(1000)
            }
        );
    }

    #[test]
    fn the_json_shows_the_reserved_terms_and_no_payment_until_one_exists() {
        let json = placed().to_json();
        assert_eq!(json.ticket.title, "Row A");
        assert_eq!(json.ticket.price, Cents::new(1000));
        assert_eq!(json.payment, None);
        assert_eq!(json.cancel_reason, None);
    }
}
