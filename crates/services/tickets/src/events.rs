//! What the tickets service does when orders change: reserve, release, sell. Every change bumps
//! the ticket's version and publishes `ticket.updated`, in the same transaction.
//!
//! Order events are applied in order per order (by the order's version, kept in
//! `order_versions`): an `order.cancelled` that arrives before its `order.created` waits.

use bt_contract::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated, TicketUpdated};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outbox, Outcome};
use bt_platform::db::now_millis;

use crate::store;

/// The event handlers of the tickets service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub outbox: Outbox,
}

impl Handlers {
    /// Applies version `version` of order `order_id` only in order; `None` means "apply".
    async fn check_order_version(
        &self,
        tx: &mut Tx,
        order_id: &str,
        version: i64,
    ) -> Result<Option<Outcome>, sqlx::Error> {
        let held = store::order_version(tx, order_id).await?;
        match order(held, version) {
            VersionOrder::Apply => {
                store::set_order_version(tx, order_id, version).await?;
                Ok(None)
            }
            other => Ok(Some(other.outcome("order", held, version))),
        }
    }

    async fn publish_updated(&self, tx: &mut Tx, ticket_id: &str) -> HandlerResult {
        let ticket = store::find_in(tx, ticket_id)
            .await?
            .ok_or_else(|| format!("ticket {ticket_id} vanished"))?;
        self.outbox
            .stage(tx, TicketUpdated(ticket.event_data()))
            .await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCreated> for Handlers {
    /// Reserves the ticket for the order.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCreated>) -> HandlerResult {
        let order_created = event.data;
        let Some(ticket) = store::find_in(tx, &order_created.ticket.id).await? else {
            return Err(format!(
                "order {} is for unknown ticket {}",
                order_created.id, order_created.ticket.id
            )
            .into());
        };
        match ticket.order_id.as_deref() {
            Some(current) if current == order_created.id => return Ok(Outcome::Skipped),
            // Still reserved by an earlier order whose cancellation has not arrived yet.
            Some(current) => {
                return Ok(Outcome::NotYet(format!(
                    "ticket reserved by order {current}"
                )));
            }
            None => {}
        }
        if let Some(outcome) = self
            .check_order_version(tx, &order_created.id, order_created.version)
            .await?
        {
            return Ok(outcome);
        }
        if !store::set_order(
            tx,
            &ticket.id,
            Some(&order_created.id),
            ticket.version,
            now_millis(),
        )
        .await?
        {
            return Err("ticket changed during the reservation".into());
        }
        self.publish_updated(tx, &ticket.id).await
    }
}

impl Handle<OrderCancelled> for Handlers {
    /// Releases the ticket if this order holds it.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        let cancelled = event.data;
        if let Some(outcome) = self
            .check_order_version(tx, &cancelled.id, cancelled.version)
            .await?
        {
            return Ok(outcome);
        }
        let Some(ticket) = store::find_in(tx, &cancelled.ticket.id).await? else {
            return Err(format!(
                "cancelled order {} is for unknown ticket {}",
                cancelled.id, cancelled.ticket.id
            )
            .into());
        };
        if ticket.order_id.as_deref() != Some(cancelled.id.as_str()) {
            return Ok(Outcome::Skipped);
        }
        if ticket.sold {
            tracing::error!(order.id = %cancelled.id, ticket.id = %ticket.id, "a sold ticket's order was cancelled; keeping it sold");
            return Ok(Outcome::Skipped);
        }
        if !store::set_order(tx, &ticket.id, None, ticket.version, now_millis()).await? {
            return Err("ticket changed during the release".into());
        }
        self.publish_updated(tx, &ticket.id).await
    }
}

impl Handle<OrderCompleted> for Handlers {
    /// Marks the ticket sold: it stays off the market for good.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        let completed = event.data;
        if let Some(outcome) = self
            .check_order_version(tx, &completed.id, completed.version)
            .await?
        {
            return Ok(outcome);
        }
        let Some(ticket) = store::find_in(tx, &completed.ticket.id).await? else {
            return Err(format!(
                "completed order {} is for unknown ticket {}",
                completed.id, completed.ticket.id
            )
            .into());
        };
        if ticket.sold {
            return Ok(Outcome::Skipped);
        }
        if ticket.order_id.as_deref() != Some(completed.id.as_str()) {
            tracing::error!(order.id = %completed.id, ticket.id = %ticket.id, holder = ?ticket.order_id, "completed order does not hold its ticket");
            return Ok(Outcome::Skipped);
        }
        if !store::mark_sold(tx, &ticket.id, ticket.version, now_millis()).await? {
            return Err("ticket changed while being sold".into());
        }
        self.publish_updated(tx, &ticket.id).await
    }
}
