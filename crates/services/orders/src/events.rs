//! What the orders service does on events: keep its tickets replica (in version order), cancel
//! expired orders, complete paid ones.

use bt_contract::events::{
    Envelope, ExpirationComplete, OrderCancelled, OrderCompleted, OrderStatus, PaymentCreated,
    TicketCreated, TicketData, TicketRef, TicketUpdated,
};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outbox, Outcome};
use bt_platform::db::now_millis;

use crate::domain::TicketRow;
use crate::store;

/// The event handlers of the orders service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub outbox: Outbox,
}

impl Handlers {
    async fn replicate(&self, tx: &mut Tx, data: TicketData) -> HandlerResult {
        let held = store::find_ticket_in(tx, &data.id)
            .await?
            .map(|t| t.version);
        match order(held, data.version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("ticket", held, data.version)),
        }
        let row = TicketRow {
            id: data.id,
            title: data.title,
            price: data.price.get(),
            user_id: data.user_id,
            version: data.version,
        };
        if held.is_none() {
            store::insert_ticket(tx, &row).await?;
        } else if !store::update_ticket(tx, &row).await? {
            return Err("ticket replica changed meanwhile".into());
        }
        Ok(Outcome::Applied)
    }
}

impl Handle<TicketCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketCreated>) -> HandlerResult {
        self.replicate(tx, event.data.0).await
    }
}

impl Handle<TicketUpdated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketUpdated>) -> HandlerResult {
        self.replicate(tx, event.data.0).await
    }
}

impl Handle<ExpirationComplete> for Handlers {
    /// Cancels the order unless it was paid (or cancelled already).
    async fn handle(&self, tx: &mut Tx, event: Envelope<ExpirationComplete>) -> HandlerResult {
        let Some(found) = store::find_order_in(tx, &event.data.order_id).await? else {
            return Err(format!("expiration of unknown order {}", event.data.order_id).into());
        };
        if matches!(
            found.status(),
            OrderStatus::Complete | OrderStatus::Cancelled
        ) {
            return Ok(Outcome::Skipped);
        }
        if !store::set_status(
            tx,
            &found.id,
            OrderStatus::Cancelled,
            found.version,
            now_millis(),
        )
        .await?
        {
            return Err("order changed meanwhile".into());
        }
        self.outbox
            .stage(
                tx,
                OrderCancelled {
                    id: found.id.clone(),
                    version: found.version + 1,
                    ticket: TicketRef {
                        id: found.ticket_id.clone(),
                    },
                },
            )
            .await?;
        tracing::info!(order.id = %found.id, "order expired and was cancelled");
        Ok(Outcome::Applied)
    }
}

impl Handle<PaymentCreated> for Handlers {
    /// Completes the paid order.
    async fn handle(&self, tx: &mut Tx, event: Envelope<PaymentCreated>) -> HandlerResult {
        let payment = event.data;
        let Some(found) = store::find_order_in(tx, &payment.order_id).await? else {
            return Err(format!("payment for unknown order {}", payment.order_id).into());
        };
        match found.status() {
            OrderStatus::Complete => return Ok(Outcome::Skipped),
            OrderStatus::Cancelled => {
                // The payments service refunds a charge that lost the race with expiry.
                tracing::warn!(order.id = %found.id, payment.id = %payment.id, "payment for a cancelled order ignored");
                return Ok(Outcome::Skipped);
            }
            OrderStatus::Created | OrderStatus::AwaitingPayment => {}
        }
        if !store::set_status(
            tx,
            &found.id,
            OrderStatus::Complete,
            found.version,
            now_millis(),
        )
        .await?
        {
            return Err("order changed meanwhile".into());
        }
        self.outbox
            .stage(
                tx,
                OrderCompleted {
                    id: found.id.clone(),
                    version: found.version + 1,
                    ticket: TicketRef {
                        id: found.ticket_id.clone(),
                    },
                },
            )
            .await?;
        tracing::info!(order.id = %found.id, "order paid and completed");
        Ok(Outcome::Applied)
    }
}
