//! The payments domain: the orders replica ([`PayableOrder`]) and the [`Charge`] — one attempt
//! to pay an order — with its lifecycle as pure transitions, tested without a database.
//!
//! Money moves in two steps (authorise, then capture), so that the orders service decides
//! between a payment and a cancellation before any money is taken:
//!
//! ```text
//! started ──provider──▶ authorized ──order.completed (this one)──▶ capturing ──▶ succeeded
//!    │                      │  └──────order.cancelled / another won──▶ voiding ──▶ voided
//!    └──▶ declined          └── (hold released: nothing charged)
//! ```
//!
//! A charge the provider took at once (`captured`, e.g. reported by a webhook) is `succeeded`
//! and, if its order is not completed with it, `refunding` → `refunded`. A capture the provider
//! refuses for good is `capture_failed` (the order is complete but unpaid: a person must look).

use std::time::Duration;

use bt_contract::events::{CancelReason, OrderStatus, PaymentCreated};
use bt_contract::{Cents, Millis, OrderId, PaymentId, TicketId, UserId};

bt_contract::text_enum! {
    /// Where a charge stands.
    pub enum ChargeState {
        /// Sent to the provider; the answer is not recorded yet. The card token is kept so the
        /// same request (same idempotency key) can be replayed after a crash or an outage.
        Started = "started",
        /// The provider refused the card (or the request); no money moved.
        Declined = "declined",
        /// The money is held on the card; the order decides.
        Authorized = "authorized",
        /// The order was completed with this charge: the hold is being captured.
        Capturing = "capturing",
        /// The money is taken.
        Succeeded = "succeeded",
        /// The provider refused to capture (the hold expired or was cancelled elsewhere).
        CaptureFailed = "capture_failed",
        /// The order went another way: the hold is being released.
        Voiding = "voiding",
        /// The hold was released; nothing was charged.
        Voided = "voided",
        /// Money was taken for an order not completed with it: it is being given back.
        Refunding = "refunding",
        /// Given back.
        Refunded = "refunded",
    }
}

impl ChargeState {
    /// States in which a charge holds or may hold money for its order: at most one per order
    /// (`charges_one_active_per_order`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Started
                | Self::Authorized
                | Self::Capturing
                | Self::Succeeded
                | Self::CaptureFailed
        )
    }

    /// States in which the provider still has work to do for this charge.
    pub fn needs_settling(self) -> bool {
        matches!(self, Self::Capturing | Self::Voiding | Self::Refunding)
    }
}

/// An order as the payments service replicates it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PayableOrder {
    pub id: OrderId,
    pub user_id: UserId,
    pub price: Cents,
    pub status: OrderStatus,
    pub version: i64,
    pub expires_at: Millis,
    pub cancel_reason: Option<CancelReason>,
    /// The charge the order was completed with.
    pub completed_by: Option<PaymentId>,
    /// The ticket, its title, its seller and when its event starts, as `order.created` told
    /// them; `None` for orders replicated before this release (no seller: no credit).
    pub ticket_id: Option<TicketId>,
    pub title: Option<String>,
    pub seller_id: Option<UserId>,
    pub starts_at: Option<Millis>,
}

impl PayableOrder {
    /// Whether `buyer` may start paying this order at `now`.
    pub fn check_payable(&self, buyer: &UserId, now: Millis) -> Result<(), Refusal> {
        if &self.user_id != buyer {
            return Err(Refusal::NotOwner);
        }
        match self.status {
            OrderStatus::Cancelled => Err(Refusal::Cancelled(self.cancel_reason)),
            OrderStatus::Complete => Err(Refusal::AlreadyPaid),
            // Past its window the order is about to be cancelled: never charge it.
            _ if self.expires_at <= now => Err(Refusal::Expired),
            OrderStatus::Created | OrderStatus::AwaitingPayment => Ok(()),
        }
    }

    fn is_open(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::Created | OrderStatus::AwaitingPayment
        )
    }
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The money is held (Stripe `requires_capture`).
    Authorized { provider_id: String },
    /// The money is taken already (Stripe `succeeded`).
    Captured { provider_id: String },
    /// Not decided yet; a webhook will tell (Stripe `processing`).
    Processing { provider_id: String },
    /// The card or the request was refused; the message is for the buyer.
    Declined { message: String },
}

/// One attempt to pay an order.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Charge {
    pub id: PaymentId,
    pub order_id: OrderId,
    /// 1, 2, ... per order; the provider idempotency key is `<order id>-<attempt>`.
    pub attempt: i64,
    pub state: ChargeState,
    pub amount: Cents,
    pub currency: String,
    /// The card token, kept only while `started` (to replay the same request).
    pub token: Option<String>,
    pub provider_id: Option<String>,
    /// Why it was declined or failed, for the buyer and support.
    pub failure: Option<String>,
    /// Until when the process that sent it is presumed to be working on it (renewed while the
    /// provider call lasts); after that, anyone may replay it.
    pub lease_until: Millis,
    /// How much of it the provider reports refunded so far while it is `succeeded` (partial
    /// refunds, e.g. from Stripe's dashboard); see [`Charge::refunded_amount`].
    pub amount_refunded: Cents,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Why an order past its window cannot be paid, whether or not its expiry was applied yet.
const EXPIRED: &str = "Cannot pay for an expired order";

/// Why a transition does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Not authorized")]
    NotOwner,
    #[error("{}", if *.0 == Some(CancelReason::Expired) { EXPIRED } else { "Cannot pay for a cancelled order" })]
    Cancelled(Option<CancelReason>),
    #[error("Order is already paid")]
    AlreadyPaid,
    #[error("{EXPIRED}")]
    Expired,
    #[error("the charge is {0}, not started")]
    NotStarted(ChargeState),
    #[error("the charge is {0}; nothing to settle")]
    NothingToSettle(ChargeState),
}

impl Charge {
    /// A new attempt (number `attempt`) by `buyer` to pay `order` with `token`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        order: &PayableOrder,
        buyer: &UserId,
        attempt: i64,
        token: String,
        currency: &str,
        now: Millis,
        lease: Duration,
    ) -> Result<Self, Refusal> {
        order.check_payable(buyer, now)?;
        Ok(Self {
            id: PaymentId::generate(),
            order_id: order.id.clone(),
            attempt,
            state: ChargeState::Started,
            amount: order.price,
            currency: currency.to_owned(),
            token: Some(token),
            provider_id: None,
            failure: None,
            lease_until: now.plus(lease),
            amount_refunded: Cents::new(0),
            created_at: now,
            updated_at: now,
        })
    }

    /// The provider idempotency key of this attempt: a retry or replay of it is never charged
    /// twice, a new attempt (after a decline) is a new charge.
    pub fn idempotency_key(&self) -> String {
        format!("{}-{}", self.order_id, self.attempt)
    }

    /// Whether someone is presumed to be working on this started charge at `now`.
    pub fn is_leased(&self, now: Millis) -> bool {
        self.state == ChargeState::Started && self.lease_until > now
    }

    /// Records the provider's answer to a started charge, given its order as it is now. Answers
    /// the changed charge and, when the order may now be completed with it, `payment.created`.
    pub fn answered(
        mut self,
        answer: Answer,
        order: &PayableOrder,
        now: Millis,
    ) -> Result<(Self, Option<PaymentCreated>), Refusal> {
        if self.state != ChargeState::Started {
            return Err(Refusal::NotStarted(self.state));
        }
        self.updated_at = now;
        let event = match answer {
            Answer::Declined { message } => {
                self.state = ChargeState::Declined;
                self.failure = Some(message);
                self.token = None;
                None
            }
            Answer::Processing { provider_id } => {
                self.provider_id = Some(provider_id);
                None
            }
            // Cancelled or paid meanwhile: release the hold, or give the money back.
            Answer::Authorized { provider_id } if !order.is_open() => {
                self.state = ChargeState::Voiding;
                self.provider_id = Some(provider_id);
                self.token = None;
                None
            }
            Answer::Captured { provider_id } if !order.is_open() => {
                self.state = ChargeState::Refunding;
                self.provider_id = Some(provider_id);
                self.token = None;
                None
            }
            Answer::Authorized { provider_id } => {
                self.state = ChargeState::Authorized;
                Some(self.announce(provider_id))
            }
            Answer::Captured { provider_id } => {
                self.state = ChargeState::Succeeded;
                Some(self.announce(provider_id))
            }
        };
        Ok((self, event))
    }

    fn announce(&mut self, provider_id: String) -> PaymentCreated {
        self.token = None;
        self.provider_id = Some(provider_id.clone());
        PaymentCreated {
            id: self.id.clone(),
            order_id: self.order_id.clone(),
            stripe_id: provider_id,
            amount: Some(self.amount),
        }
    }

    /// The order was completed with `winner`: capture this charge if it is the winner,
    /// release or refund it otherwise. `None` when nothing changes.
    pub fn order_completed(mut self, winner: &PaymentId, now: Millis) -> Option<Self> {
        let next = match (self.state, &self.id == winner) {
            (ChargeState::Authorized, true) => ChargeState::Capturing,
            (ChargeState::Authorized, false) => ChargeState::Voiding,
            (ChargeState::Succeeded, false) => ChargeState::Refunding,
            _ => return None,
        };
        self.state = next;
        self.updated_at = now;
        Some(self)
    }

    /// The order was cancelled: release or refund this charge. `None` when nothing changes
    /// (a started charge learns of it when its answer is recorded).
    pub fn order_cancelled(mut self, now: Millis) -> Option<Self> {
        let next = match self.state {
            ChargeState::Authorized => ChargeState::Voiding,
            ChargeState::Succeeded => ChargeState::Refunding,
            _ => return None,
        };
        self.state = next;
        self.updated_at = now;
        Some(self)
    }

    /// The provider did what the charge was waiting for (captured, released, refunded).
    pub fn settled(mut self, now: Millis) -> Result<Self, Refusal> {
        self.state = match self.state {
            ChargeState::Capturing => ChargeState::Succeeded,
            ChargeState::Voiding => ChargeState::Voided,
            ChargeState::Refunding => ChargeState::Refunded,
            other => return Err(Refusal::NothingToSettle(other)),
        };
        self.updated_at = now;
        Ok(self)
    }

    /// The provider refused for good to do what the charge was waiting for: a capture that
    /// cannot happen is `capture_failed`; a release of a hold that was captured meanwhile
    /// becomes a refund.
    pub fn settling_refused(mut self, reason: String, now: Millis) -> Result<Self, Refusal> {
        self.state = match self.state {
            ChargeState::Capturing => ChargeState::CaptureFailed,
            ChargeState::Voiding => ChargeState::Refunding,
            other => return Err(Refusal::NothingToSettle(other)),
        };
        self.failure = Some(reason);
        self.updated_at = now;
        Ok(self)
    }

    /// The provider reports the charge refunded in full (a refund made in its dashboard, or
    /// ours confirmed): a captured or refunding charge is `refunded`. `None` otherwise.
    pub fn refunded_elsewhere(mut self, now: Millis) -> Option<Self> {
        self.state = match self.state {
            // Capturing: the provider captured it before the service recorded the capture.
            ChargeState::Succeeded | ChargeState::Capturing | ChargeState::Refunding => {
                ChargeState::Refunded
            }
            _ => return None,
        };
        self.updated_at = now;
        Some(self)
    }

    /// The provider reports `total` of this captured charge refunded so far, less than all of
    /// it (a partial refund made elsewhere, e.g. in Stripe's dashboard). Recorded while
    /// `succeeded`, or while `capturing`: the provider captured it (it refunds only captured
    /// money) before the service recorded the capture, which then takes the refund into
    /// account. `None` when that changes nothing: another state, a report not newer than what
    /// is recorded (webhooks may come twice or out of order; refunds only add up), or a full
    /// refund ([`Charge::refunded_elsewhere`]).
    pub fn refunded_in_part(mut self, total: Cents, now: Millis) -> Option<Self> {
        if !matches!(self.state, ChargeState::Succeeded | ChargeState::Capturing)
            || total <= self.amount_refunded
            || total >= self.amount
        {
            return None;
        }
        self.amount_refunded = total;
        self.updated_at = now;
        Some(self)
    }

    /// What the buyer got back of this charge: all of it once it is being refunded or
    /// refunded, otherwise what partial refunds gave back.
    pub fn refunded_amount(&self) -> Cents {
        match self.state {
            ChargeState::Refunding | ChargeState::Refunded => self.amount,
            _ => self.amount_refunded,
        }
    }

    /// What the buyer has back of this charge, as announced: all of it once `refunded`; what
    /// partial refunds gave back while `succeeded`, or `refunding` (the rest is not back yet);
    /// nothing otherwise — a partial refund recorded while `capturing` counts from the
    /// capture, when the sale's credit (which it reduces) is written.
    pub fn given_back(&self) -> Cents {
        match self.state {
            ChargeState::Refunded => self.amount,
            ChargeState::Succeeded | ChargeState::Refunding => self.amount_refunded,
            _ => Cents::new(0),
        }
    }

    /// The hold was released at the provider without us asking (expired, cancelled in the
    /// dashboard): an authorised charge is void; a started one is declined.
    pub fn released_elsewhere(mut self, now: Millis) -> Option<Self> {
        self.state = match self.state {
            ChargeState::Authorized | ChargeState::Voiding => ChargeState::Voided,
            ChargeState::Started => {
                self.failure = Some("The payment was cancelled".into());
                self.token = None;
                ChargeState::Declined
            }
            _ => return None,
        };
        self.updated_at = now;
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(6);

    fn at(ms: i64) -> Millis {
        Millis::new(1_800_000_000_000 + ms).unwrap()
    }

    fn order(status: OrderStatus) -> PayableOrder {
        PayableOrder {
            id: "o1".into(),
            user_id: "buyer".into(),
            price: Cents::new(1000),
            status,
            version: 0,
            expires_at: at(900_000),
            cancel_reason: None,
            completed_by: None,
            ticket_id: None,
            title: None,
            seller_id: None,
            starts_at: None,
        }
    }

    fn started() -> Charge {
        Charge::start(
            &order(OrderStatus::Created),
            &"buyer".into(),
            1,
            "tok_visa".into(),
            "usd",
            at(0),
            LEASE,
        )
        .unwrap()
    }

    fn authorized() -> Charge {
        started()
            .answered(
                Answer::Authorized {
                    provider_id: "pi_1".into(),
                },
                &order(OrderStatus::Created),
                at(10),
            )
            .unwrap()
            .0
    }

    #[test]
    fn a_charge_is_for_the_order_price_with_a_key_per_attempt() {
        let charge = started();
        assert_eq!(charge.amount, Cents::new(1000));
        assert_eq!(charge.state, ChargeState::Started);
        assert_eq!(charge.idempotency_key(), "o1-1");
        assert_eq!(charge.token.as_deref(), Some("tok_visa"));
        assert!(charge.is_leased(at(5_999)));
        assert!(!charge.is_leased(at(6_000)));
    }

    #[test]
    fn only_the_buyer_pays_only_an_open_order_within_its_window() {
        let buyer: UserId = "buyer".into();
        let open = order(OrderStatus::Created);
        assert_eq!(
            open.check_payable(&"other".into(), at(0)),
            Err(Refusal::NotOwner)
        );
        assert_eq!(
            open.check_payable(&buyer, at(900_000)),
            Err(Refusal::Expired)
        );
        assert_eq!(open.check_payable(&buyer, at(899_999)), Ok(()));
        let mut cancelled = order(OrderStatus::Cancelled);
        cancelled.cancel_reason = Some(CancelReason::Expired);
        assert_eq!(
            cancelled.check_payable(&buyer, at(0)),
            Err(Refusal::Cancelled(Some(CancelReason::Expired)))
        );
        assert_eq!(
            order(OrderStatus::Complete).check_payable(&buyer, at(0)),
            Err(Refusal::AlreadyPaid)
        );
        // The buyer is told why: an order that expired is not said to be "cancelled".
        assert_eq!(
            Refusal::Cancelled(Some(CancelReason::Expired)).to_string(),
            "Cannot pay for an expired order"
        );
        for other in [
            None,
            Some(CancelReason::Buyer),
            Some(CancelReason::NotForSale),
        ] {
            assert_eq!(
                Refusal::Cancelled(other).to_string(),
                "Cannot pay for a cancelled order"
            );
        }
    }

    #[test]
    fn an_authorisation_of_an_open_order_announces_the_payment_with_its_amount() {
        let (charge, event) = started()
            .answered(
                Answer::Authorized {
                    provider_id: "pi_1".into(),
                },
                &order(OrderStatus::Created),
                at(10),
            )
            .unwrap();
        assert_eq!(charge.state, ChargeState::Authorized);
        assert_eq!(charge.token, None, "the token is not kept once answered");
        assert_eq!(
            event,
            Some(PaymentCreated {
                id: charge.id.clone(),
                order_id: "o1".into(),
                stripe_id: "pi_1".into(),
                amount: Some(Cents::new(1000)),
            })
        );
    }

    #[test]
    fn an_authorisation_that_lands_on_a_closed_order_is_released_unannounced() {
        for status in [OrderStatus::Cancelled, OrderStatus::Complete] {
            let (charge, event) = started()
                .answered(
                    Answer::Authorized {
                        provider_id: "pi_1".into(),
                    },
                    &order(status),
                    at(10),
                )
                .unwrap();
            assert_eq!(charge.state, ChargeState::Voiding, "{status}");
            assert_eq!(event, None);
            let (charge, event) = started()
                .answered(
                    Answer::Captured {
                        provider_id: "pi_1".into(),
                    },
                    &order(status),
                    at(10),
                )
                .unwrap();
            assert_eq!(charge.state, ChargeState::Refunding, "{status}");
            assert_eq!(event, None);
        }
    }

    #[test]
    fn a_decline_ends_the_attempt_and_frees_the_order() {
        let (charge, event) = started()
            .answered(
                Answer::Declined {
                    message: "Your card was declined.".into(),
                },
                &order(OrderStatus::Created),
                at(10),
            )
            .unwrap();
        assert_eq!(charge.state, ChargeState::Declined);
        assert!(!charge.state.is_active());
        assert_eq!(charge.failure.as_deref(), Some("Your card was declined."));
        assert_eq!(event, None);
    }

    #[test]
    fn processing_keeps_the_attempt_open_for_its_webhook() {
        let (charge, event) = started()
            .answered(
                Answer::Processing {
                    provider_id: "pi_1".into(),
                },
                &order(OrderStatus::Created),
                at(10),
            )
            .unwrap();
        assert_eq!(charge.state, ChargeState::Started);
        assert_eq!(charge.provider_id.as_deref(), Some("pi_1"));
        assert_eq!(event, None);
    }

    #[test]
    fn an_answer_is_recorded_once() {
        assert_eq!(
            authorized()
                .answered(
                    Answer::Authorized {
                        provider_id: "pi_1".into()
                    },
                    &order(OrderStatus::Created),
                    at(20)
                )
                .unwrap_err(),
            Refusal::NotStarted(ChargeState::Authorized)
        );
    }

    #[test]
    fn the_winner_is_captured_and_any_other_released_or_refunded() {
        let winner = authorized();
        let id = winner.id.clone();
        let capturing = winner.order_completed(&id, at(30)).unwrap();
        assert_eq!(capturing.state, ChargeState::Capturing);
        assert_eq!(
            capturing.settled(at(40)).unwrap().state,
            ChargeState::Succeeded
        );
        let other: PaymentId = "someone-else".into();
        assert_eq!(
            authorized().order_completed(&other, at(30)).unwrap().state,
            ChargeState::Voiding
        );
        let mut captured = authorized();
        captured.state = ChargeState::Succeeded;
        assert_eq!(
            captured.order_completed(&other, at(30)).unwrap().state,
            ChargeState::Refunding
        );
        assert_eq!(started().order_completed(&other, at(30)), None);
    }

    #[test]
    fn a_cancelled_order_releases_its_hold_and_nothing_is_charged() {
        let voiding = authorized().order_cancelled(at(30)).unwrap();
        assert_eq!(voiding.state, ChargeState::Voiding);
        assert_eq!(voiding.settled(at(40)).unwrap().state, ChargeState::Voided);
        assert_eq!(started().order_cancelled(at(30)), None);
    }

    #[test]
    fn a_refused_capture_needs_a_person_and_a_refused_release_becomes_a_refund() {
        let winner = authorized();
        let id = winner.id.clone();
        let capturing = winner.order_completed(&id, at(30)).unwrap();
        let failed = capturing
            .settling_refused("expired".into(), at(40))
            .unwrap();
        assert_eq!(failed.state, ChargeState::CaptureFailed);
        let refunding = authorized()
            .order_cancelled(at(30))
            .unwrap()
            .settling_refused("already captured".into(), at(40))
            .unwrap();
        assert_eq!(refunding.state, ChargeState::Refunding);
        assert_eq!(
            authorized().settled(at(40)).unwrap_err(),
            Refusal::NothingToSettle(ChargeState::Authorized)
        );
    }

    #[test]
    fn a_refund_reported_by_the_provider_ends_a_captured_charge() {
        let mut captured = authorized();
        captured.state = ChargeState::Succeeded;
        assert_eq!(
            captured.refunded_elsewhere(at(30)).unwrap().state,
            ChargeState::Refunded
        );
        let refunding = authorized()
            .order_cancelled(at(30))
            .unwrap()
            .settling_refused("captured".into(), at(31))
            .unwrap();
        assert_eq!(
            refunding.refunded_elsewhere(at(40)).unwrap().state,
            ChargeState::Refunded
        );
        assert_eq!(authorized().refunded_elsewhere(at(30)), None);
    }

    #[test]
    fn partial_refunds_of_a_captured_charge_only_add_up() {
        let mut captured = authorized();
        captured.state = ChargeState::Succeeded;
        assert_eq!(captured.refunded_amount(), Cents::new(0));
        let part = captured
            .clone()
            .refunded_in_part(Cents::new(400), at(30))
            .unwrap();
        assert_eq!(
            (part.state, part.amount_refunded, part.updated_at),
            (ChargeState::Succeeded, Cents::new(400), at(30))
        );
        assert_eq!(part.refunded_amount(), Cents::new(400));
        // Again, or an older report: nothing changes.
        assert_eq!(part.clone().refunded_in_part(Cents::new(400), at(31)), None);
        assert_eq!(part.clone().refunded_in_part(Cents::new(100), at(31)), None);
        let more = part
            .clone()
            .refunded_in_part(Cents::new(999), at(32))
            .unwrap();
        assert_eq!(more.amount_refunded, Cents::new(999));
        // All of it is a full refund, not a part.
        assert_eq!(
            more.clone().refunded_in_part(Cents::new(1000), at(33)),
            None
        );
        assert_eq!(more.given_back(), Cents::new(999));
        let refunded = more.refunded_elsewhere(at(33)).unwrap();
        assert_eq!(refunded.refunded_amount(), Cents::new(1000));
        assert_eq!(refunded.given_back(), Cents::new(1000));
        // Being refunded: taken from the seller already, not back with the buyer yet.
        let refunding = authorized()
            .order_cancelled(at(30))
            .unwrap()
            .settling_refused("captured".into(), at(31))
            .unwrap();
        assert_eq!(
            (refunding.refunded_amount(), refunding.given_back()),
            (Cents::new(1000), Cents::new(0))
        );
        // Only a captured charge is refunded in part; one being captured was captured at the
        // provider already (the refund is taken into account when the capture is recorded).
        assert_eq!(authorized().refunded_in_part(Cents::new(400), at(30)), None);
        let mut capturing = authorized();
        capturing.state = ChargeState::Capturing;
        let early = capturing
            .clone()
            .refunded_in_part(Cents::new(400), at(30))
            .unwrap();
        assert_eq!(
            (early.state, early.amount_refunded, early.given_back()),
            (ChargeState::Capturing, Cents::new(400), Cents::new(0))
        );
        let captured = early.settled(at(31)).unwrap();
        assert_eq!(
            (captured.state, captured.given_back()),
            (ChargeState::Succeeded, Cents::new(400))
        );
        assert_eq!(
            capturing.refunded_elsewhere(at(32)).unwrap().state,
            ChargeState::Refunded
        );
        // The rest of a charge refunded in part: what was back stays back until it is done.
        let mut rest = captured.clone();
        rest.state = ChargeState::Refunding;
        assert_eq!(rest.given_back(), Cents::new(400));
        assert_eq!(rest.settled(at(40)).unwrap().given_back(), Cents::new(1000));
    }

    #[test]
    fn at_most_one_charge_per_order_holds_money() {
        let active: Vec<&str> = ChargeState::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            active,
            [
                "started",
                "authorized",
                "capturing",
                "succeeded",
                "capture_failed"
            ]
        );
    }
}
