//! Scheduling and dropping timers from order events.

use bt_contract::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated};
use bt_platform::Tx;
use bt_platform::bus::{Handle, HandlerResult, Outcome};
use bt_platform::db::now_millis;

use crate::store;

/// The event handlers of the expiration service.
#[derive(Debug, Clone, Default)]
pub struct Handlers;

impl Handle<OrderCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCreated>) -> HandlerResult {
        let order = event.data;
        let fire_at = order.expires_at.get();
        if store::schedule(tx, order.id.as_str(), fire_at, now_millis()).await? {
            tracing::debug!(order.id = %order.id, %order.expires_at, "timer scheduled");
            Ok(Outcome::Applied)
        } else {
            Ok(Outcome::Skipped)
        }
    }
}

impl Handle<OrderCancelled> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        store::finish(tx, event.data.id.as_str(), now_millis()).await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCompleted> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        store::finish(tx, event.data.id.as_str(), now_millis()).await?;
        Ok(Outcome::Applied)
    }
}
