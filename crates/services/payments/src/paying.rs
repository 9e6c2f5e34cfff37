//! `POST /api/payments`: pay an order, and answer only what is true.
//!
//! - **201** means the orders service completed the order with this payment: the money is
//!   captured (or being captured) and the order ends `complete`.
//! - **400** when the order cannot be paid (cancelled, paid, expired), the card was declined, or
//!   the order went another way while the card was being authorised — then the hold is released
//!   and nothing is charged.
//! - **202** `{id, status: "processing"}` when the outcome is not known within the wait (the
//!   provider or the orders service is slow); the order page shows it when it is.
//!
//! Concurrent pay requests for one order collapse into one charge: the first starts it, the
//! others wait for its outcome (and answer the same), or — when it was left behind by a process
//! that died — replay it with the same idempotency key.

use std::time::Duration;

use bt_contract::events::{CancelReason, OrderStatus};
use bt_contract::{ApiError, ApiResult, Millis, OrderId, PaymentId, UserId};

use crate::charging::Payments;
use crate::domain::{Charge, ChargeState, PayableOrder, Refusal};
use crate::store;

/// The longest a pay request waits for the order's decision after the card was authorised.
pub const DECISION_WAIT: Duration = Duration::from_secs(10);
/// The longest a pay request waits for another request's charge of the same order.
pub const JOIN_WAIT: Duration = Duration::from_secs(10);

/// A pay request's happy answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// 201: the order is complete with this payment.
    Complete(PaymentId),
    /// 202: the outcome is still being decided.
    Processing(PaymentId),
}

/// A refusal of the buyer's request as the API answers it.
pub fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotOwner => ApiError::NotAuthorized,
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Why the money of a charge went back, for the buyer.
fn released(order: &PayableOrder, charge: &Charge) -> ApiError {
    let nothing_charged = !matches!(charge.state, ChargeState::Refunding | ChargeState::Refunded);
    let outcome = if nothing_charged {
        "nothing was charged"
    } else {
        "the charge is being refunded"
    };
    let message = match (order.status, order.cancel_reason) {
        (OrderStatus::Complete, _) => return ApiError::bad_request("Order is already paid"),
        (_, Some(CancelReason::Expired)) => {
            format!("The order expired before the payment completed; {outcome}")
        }
        (_, Some(CancelReason::TicketChanged)) => format!(
            "The seller changed the ticket before your reservation was confirmed, so the order was cancelled; {outcome}"
        ),
        (_, Some(CancelReason::NotForSale)) => format!(
            "The seller took the ticket off sale before your reservation was confirmed, so the order was cancelled; {outcome}"
        ),
        (_, Some(CancelReason::EventStarted)) => format!(
            "The event started before your reservation was confirmed, so the order was cancelled; {outcome}"
        ),
        _ => format!("The order was cancelled before the payment completed; {outcome}"),
    };
    ApiError::bad_request(message)
}

/// What a charge and its order say about a pay request, if it is decided.
fn decided(order: &PayableOrder, charge: &Charge) -> Option<ApiResult<Paid>> {
    let won =
        order.status == OrderStatus::Complete && order.completed_by.as_ref() == Some(&charge.id);
    match charge.state {
        ChargeState::Capturing | ChargeState::CaptureFailed => {
            Some(Ok(Paid::Complete(charge.id.clone())))
        }
        ChargeState::Succeeded if won => Some(Ok(Paid::Complete(charge.id.clone()))),
        ChargeState::Voiding
        | ChargeState::Voided
        | ChargeState::Refunding
        | ChargeState::Refunded => Some(Err(released(order, charge))),
        ChargeState::Declined => Some(Err(ApiError::bad_request(
            charge
                .failure
                .clone()
                .unwrap_or_else(|| "Your card was declined.".into()),
        ))),
        ChargeState::Started | ChargeState::Authorized | ChargeState::Succeeded => None,
    }
}

/// Pays order `order_id` for `buyer` with card `token`.
pub async fn pay(
    payments: &Payments,
    buyer: &UserId,
    order_id: &OrderId,
    token: String,
) -> ApiResult<Paid> {
    // An order placed a moment ago may not have reached the replica yet: wait for it briefly.
    let order = payments
        .arrivals
        .find(order_id.created_at(), "order", || async {
            Ok(store::order(&payments.db, order_id).await?)
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    if &order.user_id != buyer {
        return Err(ApiError::NotAuthorized);
    }
    let join_deadline = Millis::now().plus(JOIN_WAIT);
    loop {
        let now = Millis::now();
        let mut tx = payments.db.begin().await?;
        let order = store::lock_order(&mut tx, order_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        // A decided order answers as such; a request that joined an undecided charge learns
        // the decision from the charge instead (below).
        match order.status {
            OrderStatus::Complete => return Err(refused(Refusal::AlreadyPaid)),
            OrderStatus::Cancelled => return Err(refused(Refusal::Cancelled(order.cancel_reason))),
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        let Some(active) = store::active_charge(&mut tx, order_id).await? else {
            order.check_payable(buyer, now).map_err(refused)?;
            let attempt = store::next_attempt(&mut tx, order_id).await?;
            let charge = Charge::start(
                &order,
                buyer,
                attempt,
                token.clone(),
                &payments.currency,
                now,
                payments.lease,
            )
            .map_err(refused)?;
            if !store::insert_charge(&mut tx, &charge).await? {
                // Another request started one first: join it.
                continue;
            }
            tx.commit().await?;
            let charge = payments.authorize(&charge).await?;
            return outcome(payments, &charge).await;
        };
        tx.rollback().await?;
        if active.state != ChargeState::Started {
            return outcome(payments, &active).await;
        }
        if !active.is_leased(now) {
            // Left behind by a process that died, or by an outage: replay it.
            let until = now.plus(payments.lease);
            if store::take_lease(&payments.db, &active.id, active.lease_until, until, now).await? {
                if payments.close_if_forgotten(&active).await? {
                    // Too old to replay: a new attempt with this request's card.
                    continue;
                }
                tracing::info!(order.id = %order_id, payment.id = %active.id, "replaying an abandoned charge");
                let charge = payments.authorize(&active).await?;
                return outcome(payments, &charge).await;
            }
            continue;
        }
        // Another request is working on it: wait for its answer, then answer the same — or,
        // when it was declined and this request brings another card, try that card.
        let same_card = active.token.as_deref() == Some(token.as_str());
        let remaining = join_deadline.since(now);
        let wait = remaining.min(active.lease_until.since(now) + Duration::from_millis(50));
        let answered = payments
            .arrivals
            .wait_for(wait, || async {
                let charge = store::charge(&payments.db, &active.id).await?;
                Ok(charge.filter(|c| {
                    c.state != ChargeState::Started || c.lease_until != active.lease_until
                }))
            })
            .await?;
        match answered {
            Some(charge) if charge.state == ChargeState::Declined && !same_card => continue,
            Some(charge) if charge.state != ChargeState::Started => {
                return outcome(payments, &charge).await;
            }
            // Its lease moved (renewed or released): look again.
            Some(_) => {}
            None if Millis::now() >= join_deadline => {
                return Err(ApiError::retry_later(
                    "A payment for this order is already in progress; please try again",
                    2,
                ));
            }
            None => {}
        }
    }
}

/// Waits (bounded) for the decision on an answered charge and answers the pay request.
async fn outcome(payments: &Payments, charge: &Charge) -> ApiResult<Paid> {
    if charge.state == ChargeState::Started {
        // The provider is still processing it; its webhook will tell.
        return Ok(Paid::Processing(charge.id.clone()));
    }
    let id = charge.id.clone();
    let order_id = charge.order_id.clone();
    let answer = payments
        .arrivals
        .wait_for(DECISION_WAIT, || async {
            let Some(charge) = store::charge(&payments.db, &id).await? else {
                return Err(ApiError::internal(format!("charge {id} vanished")));
            };
            let Some(order) = store::order(&payments.db, &order_id).await? else {
                return Err(ApiError::internal(format!("order {order_id} vanished")));
            };
            Ok(decided(&order, &charge))
        })
        .await?;
    match answer {
        Some(answer) => answer,
        None => {
            tracing::debug!(payment.id = %id, "no decision within the wait; answering 202");
            Ok(Paid::Processing(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use bt_contract::Cents;

    use super::*;

    fn order(
        status: OrderStatus,
        reason: Option<CancelReason>,
        completed_by: Option<&str>,
    ) -> PayableOrder {
        PayableOrder {
            id: "o1".into(),
            user_id: "buyer".into(),
            price: Cents::new(1000),
            status,
            version: 1,
            expires_at: Millis::now(),
            cancel_reason: reason,
            completed_by: completed_by.map(PaymentId::from),
            ticket_id: None,
            title: None,
            seller_id: None,
            starts_at: None,
        }
    }

    fn charge(state: ChargeState) -> Charge {
        let now = Millis::now();
        Charge {
            id: "p1".into(),
            order_id: "o1".into(),
            attempt: 1,
            state,
            amount: Cents::new(1000),
            currency: "usd".into(),
            token: None,
            provider_id: Some("pi_1".into()),
            failure: None,
            lease_until: now,
            amount_refunded: Cents::new(0),
            created_at: now,
            updated_at: now,
        }
    }

    fn message(answer: Option<ApiResult<Paid>>) -> String {
        match answer {
            Some(Err(err)) => err.to_string(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn a_charge_is_paid_only_once_its_order_is_complete_with_it() {
        let open = order(OrderStatus::Created, None, None);
        assert!(decided(&open, &charge(ChargeState::Authorized)).is_none());
        assert!(decided(&open, &charge(ChargeState::Succeeded)).is_none());
        let complete = order(OrderStatus::Complete, None, Some("p1"));
        assert_eq!(
            decided(&complete, &charge(ChargeState::Capturing))
                .unwrap()
                .unwrap(),
            Paid::Complete("p1".into())
        );
        assert_eq!(
            decided(&complete, &charge(ChargeState::Succeeded))
                .unwrap()
                .unwrap(),
            Paid::Complete("p1".into())
        );
    }

    #[test]
    fn a_released_charge_says_why_and_that_nothing_was_charged() {
        let cases = [
            (
                Some(CancelReason::Expired),
                "The order expired before the payment completed; nothing was charged",
            ),
            (
                Some(CancelReason::Buyer),
                "The order was cancelled before the payment completed; nothing was charged",
            ),
            (
                Some(CancelReason::TicketChanged),
                "The seller changed the ticket before your reservation was confirmed, so the order was cancelled; nothing was charged",
            ),
            (
                Some(CancelReason::NotForSale),
                "The seller took the ticket off sale before your reservation was confirmed, so the order was cancelled; nothing was charged",
            ),
            (
                Some(CancelReason::EventStarted),
                "The event started before your reservation was confirmed, so the order was cancelled; nothing was charged",
            ),
        ];
        for (reason, want) in cases {
            let cancelled = order(OrderStatus::Cancelled, reason, None);
            assert_eq!(
                message(decided(&cancelled, &charge(ChargeState::Voiding))),
                want
            );
        }
        let cancelled = order(OrderStatus::Cancelled, Some(CancelReason::Buyer), None);
        assert_eq!(
            message(decided(&cancelled, &charge(ChargeState::Refunding))),
            "The order was cancelled before the payment completed; the charge is being refunded"
        );
        let paid_by_another = order(OrderStatus::Complete, None, Some("p0"));
        assert_eq!(
            message(decided(&paid_by_another, &charge(ChargeState::Voided))),
            "Order is already paid"
        );
    }
}
