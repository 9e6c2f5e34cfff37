//! The payments service's replica of orders (in version order); a cancellation of an order
//! that was charged meanwhile starts a refund.

use std::sync::Arc;

use bt_contract::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated, OrderStatus};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outcome};
use bt_platform::db::now_millis;
use tokio::sync::Notify;

use crate::store;

/// The event handlers of the payments service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub refunds: Arc<Notify>,
}

impl Handlers {
    async fn apply_status(
        &self,
        tx: &mut Tx,
        id: &str,
        version: i64,
        status: OrderStatus,
    ) -> HandlerResult {
        let held = store::order_in(tx, id).await?.map(|o| o.version);
        match order(held, version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("order", held, version)),
        }
        if !store::update_order(tx, id, status.as_str(), version).await? {
            return Err("order replica changed meanwhile".into());
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
            &store::Order {
                id: created.id,
                user_id: created.user_id,
                price: created.ticket.price.get(),
                status: created.status.as_str().to_owned(),
                version: created.version,
                expires_at: Some(created.expires_at.timestamp_millis()),
            },
        )
        .await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCancelled> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        let cancelled = event.data;
        let outcome = self
            .apply_status(tx, &cancelled.id, cancelled.version, OrderStatus::Cancelled)
            .await?;
        if outcome == Outcome::Applied {
            // Charged, but the order was cancelled first (expiry won the race): give it back.
            if let Some(payment) = store::succeeded_payment(tx, &cancelled.id).await? {
                store::set_payment_status(tx, &payment.id, "refund_pending", now_millis()).await?;
                tracing::warn!(order.id = %cancelled.id, payment.id = %payment.id, "paid order was cancelled; refunding");
                self.refunds.notify_one();
            }
        }
        Ok(outcome)
    }
}

impl Handle<OrderCompleted> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        let completed = event.data;
        self.apply_status(tx, &completed.id, completed.version, OrderStatus::Complete)
            .await
    }
}
