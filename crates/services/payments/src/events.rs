//! The payments service's replica of orders (in version order), and what the orders service's
//! decision means for the order's charges: the charge that completed the order is captured,
//! every other hold is released (and money taken by mistake refunded) — decided here in the
//! event's transaction, carried out by the settlement worker. The replica keeps the ticket's
//! seller, title and start from `order.created`, for the seller's credit; a charge captured
//! before its order completed credits the seller in the `order.completed` transaction.

use std::sync::Arc;

use bt_contract::events::{
    CancelReason, Envelope, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus,
};
use bt_contract::{Millis, OrderId, PaymentId};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outcome};
use tokio::sync::Notify;

use crate::domain::{Charge, PayableOrder};
use crate::payouts::Ledger;
use crate::store;

/// The event handlers of the payments service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub settle: Arc<Notify>,
    pub ledger: Ledger,
}

impl Handlers {
    /// Applies a status change of version `version`, then `change` to each of the order's
    /// charges.
    #[allow(clippy::too_many_arguments)]
    async fn apply_status(
        &self,
        tx: &mut Tx,
        id: &OrderId,
        version: i64,
        status: OrderStatus,
        cancel_reason: Option<CancelReason>,
        winner: Option<PaymentId>,
        change: impl Fn(Charge, &Option<PaymentId>, Millis) -> Option<Charge>,
    ) -> HandlerResult {
        let held = store::lock_order(tx, id).await?.map(|o| o.version);
        match order(held, version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("order", held, version)),
        }
        let charges = store::charges_of_order(tx, id).await?;
        // Events of earlier versions do not name the payment: it is the one holding money.
        let winner = winner.or_else(|| {
            (status == OrderStatus::Complete)
                .then(|| {
                    charges
                        .iter()
                        .find(|c| c.state.is_active())
                        .map(|c| c.id.clone())
                })
                .flatten()
        });
        if !store::update_order(tx, id, status, version, cancel_reason, winner.as_ref()).await? {
            return Err("order replica changed meanwhile".into());
        }
        let now = Millis::now();
        let mut settle = false;
        for charge in charges {
            let read_state = charge.state;
            let is_winner = winner.as_ref() == Some(&charge.id);
            let before = charge.clone();
            if let Some(next) = change(charge, &winner, now) {
                if !store::save_charge(tx, &next, read_state).await? {
                    return Err(format!("charge {} changed meanwhile", next.id).into());
                }
                tracing::info!(order.id = %id, payment.id = %next.id, from = %read_state, to = %next.state, "charge follows its order");
                settle |= next.state.needs_settling();
                self.ledger.follow(tx, &before, &next, now).await?;
            } else if is_winner && status == OrderStatus::Complete {
                // Captured before the order completed with it: the seller is credited now.
                self.ledger.follow(tx, &before, &before, now).await?;
            }
        }
        if settle {
            self.settle.notify_one();
        }
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCreated>) -> HandlerResult {
        let created = event.data;
        let held = store::order_in(tx, &created.id).await?.map(|o| o.version);
        match order(held, created.version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("order", held, created.version)),
        }
        store::insert_order(
            tx,
            &PayableOrder {
                id: created.id,
                user_id: created.user_id,
                price: created.ticket.price,
                status: created.status,
                version: created.version,
                expires_at: created.expires_at,
                cancel_reason: None,
                completed_by: None,
                ticket_id: Some(created.ticket.id),
                title: created.ticket.title,
                seller_id: created.ticket.seller_id,
                starts_at: created.ticket.starts_at,
            },
        )
        .await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCancelled> for Handlers {
    /// Releases the hold of any charge of the order; refunds money taken for it.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        let cancelled = event.data;
        self.apply_status(
            tx,
            &cancelled.id,
            cancelled.version,
            OrderStatus::Cancelled,
            cancelled.reason,
            None,
            |charge, _, now| charge.order_cancelled(now),
        )
        .await
    }
}

impl Handle<OrderCompleted> for Handlers {
    /// Captures the charge that completed the order; releases any other.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        let completed = event.data;
        self.apply_status(
            tx,
            &completed.id,
            completed.version,
            OrderStatus::Complete,
            None,
            completed.payment_id,
            |charge, winner, now| match winner {
                Some(winner) => charge.order_completed(winner, now),
                None => None,
            },
        )
        .await
    }
}
