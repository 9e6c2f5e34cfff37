//! What the tickets service does when orders change: reserve (at the terms the order was placed
//! on, or refuse), release, sell — the transitions of [`domain`](crate::domain). Every change
//! bumps the ticket's version and publishes `ticket.updated` in the same transaction; a refused
//! reservation publishes `ticket.reservation_refused` and changes nothing.
//!
//! Order events are applied in order per order (by the order's version, kept in
//! `order_versions`): an `order.cancelled` that arrives before its `order.created` waits.

use bt_contract::events::{Envelope, OrderCancelled, OrderCompleted, OrderCreated, TicketUpdated};
use bt_contract::{Millis, OrderId, TicketId};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outbox, Outcome};

use crate::domain::{Refusal, Reservation, Ticket};
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
        order_id: &OrderId,
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

    async fn locked(
        &self,
        tx: &mut Tx,
        id: &TicketId,
        order_id: &OrderId,
    ) -> Result<Ticket, String> {
        store::lock(tx, id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("order {order_id} is for unknown ticket {id}"))
    }

    /// Stores a changed ticket and stages its `ticket.updated`.
    async fn save(
        &self,
        tx: &mut Tx,
        read_version: i64,
        ticket: &Ticket,
        updated: TicketUpdated,
    ) -> HandlerResult {
        if !store::save(tx, ticket, read_version, Millis::now()).await? {
            return Err(format!("ticket {} changed while locked", ticket.id).into());
        }
        self.outbox.stage(tx, updated).await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCreated> for Handlers {
    /// Order events change the ticket: one ticket's events in order.
    fn key(&self, event: &OrderCreated) -> String {
        event.ticket.id.to_string()
    }

    /// Reserves the ticket for the order, or refuses when it is not what the buyer saw.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCreated>) -> HandlerResult {
        let created = event.data;
        let ticket = self.locked(tx, &created.ticket.id, &created.id).await?;
        let read_version = ticket.version;
        let reservation = match ticket.reserve(&created, Millis::now()) {
            Ok(reservation) => reservation,
            Err(Refusal::AlreadyReservedByIt) => return Ok(Outcome::Skipped),
            // Still held by an earlier order whose cancellation has not arrived yet.
            Err(refusal) => return Ok(Outcome::NotYet(refusal.to_string())),
        };
        if let Some(outcome) = self
            .check_order_version(tx, &created.id, created.version)
            .await?
        {
            return Ok(outcome);
        }
        match reservation {
            Reservation::Reserved(ticket, updated) => {
                self.save(tx, read_version, &ticket, updated).await
            }
            Reservation::Refused(refused) => {
                tracing::info!(order.id = %created.id, ticket.id = %created.ticket.id, reason = %refused.reason, "reservation refused");
                self.outbox.stage(tx, refused).await?;
                Ok(Outcome::Applied)
            }
        }
    }
}

impl Handle<OrderCancelled> for Handlers {
    /// Order events change the ticket: one ticket's events in order.
    fn key(&self, event: &OrderCancelled) -> String {
        event.ticket.id.to_string()
    }

    /// Releases the ticket if this order holds it.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        let cancelled = event.data;
        if let Some(outcome) = self
            .check_order_version(tx, &cancelled.id, cancelled.version)
            .await?
        {
            return Ok(outcome);
        }
        let ticket = self.locked(tx, &cancelled.ticket.id, &cancelled.id).await?;
        let read_version = ticket.version;
        match ticket.release(&cancelled.id) {
            Ok((ticket, updated)) => self.save(tx, read_version, &ticket, updated).await,
            Err(Refusal::Sold) => {
                tracing::error!(order.id = %cancelled.id, ticket.id = %cancelled.ticket.id, "a sold ticket's order was cancelled; keeping it sold");
                Ok(Outcome::Skipped)
            }
            Err(_) => Ok(Outcome::Skipped),
        }
    }
}

impl Handle<OrderCompleted> for Handlers {
    /// Order events change the ticket: one ticket's events in order.
    fn key(&self, event: &OrderCompleted) -> String {
        event.ticket.id.to_string()
    }

    /// Sells the ticket: its buyer owns it now, off sale until they list it again.
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        let completed = event.data;
        if let Some(outcome) = self
            .check_order_version(tx, &completed.id, completed.version)
            .await?
        {
            return Ok(outcome);
        }
        let ticket = self.locked(tx, &completed.ticket.id, &completed.id).await?;
        let read_version = ticket.version;
        let holder = ticket.order_id.clone();
        match ticket.sell(&completed.id, completed.user_id.as_ref()) {
            Ok((ticket, updated)) => self.save(tx, read_version, &ticket, updated).await,
            Err(Refusal::Sold) => Ok(Outcome::Skipped),
            Err(refusal) => {
                tracing::error!(order.id = %completed.id, ticket.id = %completed.ticket.id, ?holder, %refusal, "completed order does not hold its ticket");
                Ok(Outcome::Skipped)
            }
        }
    }
}
