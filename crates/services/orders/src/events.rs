//! What the orders service does on events: keep its tickets replica (in version order), and
//! move orders through their lifecycle — the tickets service's answer on a reservation
//! (`ticket.updated` naming the order confirms it, `ticket.reservation_refused` refuses it),
//! expiry, payment. Every order change goes through [`lifecycle::execute`].

use bt_contract::events::{
    Envelope, ExpirationComplete, OrderStatus, PaymentCreated, PaymentRefunded, TicketCreated,
    TicketData, TicketHeld, TicketReservationRefused, TicketUpdated,
};
use bt_contract::{Millis, OrderId};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outbox, Outcome};

use crate::domain::{Command, ListedTicket, Refusal};
use crate::lifecycle::{Executed, execute};
use crate::reservations::Reservations;
use crate::store;

/// The event handlers of the orders service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub outbox: Outbox,
    pub reservations: Reservations,
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
        let row = ListedTicket {
            id: data.id,
            title: data.title,
            price: data.price,
            user_id: data.user_id,
            version: data.version,
            starts_at: data.starts_at,
            for_sale: data.for_sale,
            // Kept as they are by the replica's writes; a hold ends with its version.
            held_for: None,
            held_version: None,
            held_until: None,
        };
        if held.is_none() {
            store::insert_ticket(tx, &row).await?;
        } else if !store::update_ticket(tx, &row).await? {
            return Err("ticket replica changed meanwhile".into());
        }
        if let Some(order_id) = data.order_id {
            // The tickets service reserved the ticket for this order: the reservation stands.
            self.run(tx, &order_id, Command::ConfirmReservation).await?;
        }
        Ok(Outcome::Applied)
    }

    /// Runs `command` on an order; a refusal is normal for events (a confirmation of an order
    /// cancelled meanwhile, a redelivered payment) and changes nothing.
    async fn run(&self, tx: &mut Tx, id: &OrderId, command: Command) -> HandlerResult {
        let what = format!("{command:?}");
        match execute(tx, &self.outbox, id, command, Millis::now()).await? {
            Executed::NotFound => Err(format!("{what} for unknown order {id}").into()),
            Executed::Changed(order) => {
                if order.status == OrderStatus::Complete {
                    // Sold: the replica says so from this commit on, not only once the tickets
                    // service's `ticket.updated` comes (a buyer ordering meanwhile would be
                    // placed, then cancelled as "not for sale").
                    if let Some(sold) =
                        store::sell_ticket_in(tx, &order.ticket.id, &order.user_id).await?
                    {
                        self.reservations.sold(sold);
                    }
                } else if !order.is_open() {
                    // Before the commit: a buyer who comes meanwhile goes to the database,
                    // which waits for this transaction.
                    self.reservations.forget(&order.ticket.id);
                }
                tracing::info!(order.id = %id, status = %order.status, command = what, "order changed");
                Ok(Outcome::Applied)
            }
            Executed::Refused {
                refusal: refusal @ Refusal::AmountMismatch { .. },
                ..
            } => {
                // Never completes the order; the hold is released when the order expires.
                tracing::error!(order.id = %id, %refusal, "payment refused");
                Ok(Outcome::Skipped)
            }
            Executed::Refused { refusal, .. } => {
                tracing::debug!(order.id = %id, %refusal, command = what, "nothing to do");
                Ok(Outcome::Skipped)
            }
        }
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

impl Handle<TicketHeld> for Handlers {
    /// Records a ticket alert's hold on the version of the ticket it was given on.
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketHeld>) -> HandlerResult {
        let hold = event.data;
        let held = store::find_ticket_in(tx, &hold.ticket_id)
            .await?
            .map(|t| t.version);
        match held {
            Some(version) if version > hold.ticket_version => Ok(Outcome::Skipped),
            Some(version) if version == hold.ticket_version => {
                store::hold_ticket(tx, &hold).await?;
                tracing::debug!(ticket.id = %hold.ticket_id, user.id = %hold.user_id, until = %hold.until, "ticket held for an alert's first subscriber");
                Ok(Outcome::Applied)
            }
            _ => Ok(Outcome::NotYet(format!(
                "hold of ticket {} at version {}: the replica holds {held:?}",
                hold.ticket_id, hold.ticket_version
            ))),
        }
    }
}

impl Handle<TicketReservationRefused> for Handlers {
    /// Cancels the order, saying why, before any charge.
    async fn handle(
        &self,
        tx: &mut Tx,
        event: Envelope<TicketReservationRefused>,
    ) -> HandlerResult {
        let refused = event.data;
        self.run(
            tx,
            &refused.order_id,
            Command::RefuseReservation(refused.reason),
        )
        .await
    }
}

impl Handle<ExpirationComplete> for Handlers {
    /// Cancels the order unless it was paid (or cancelled already).
    async fn handle(&self, tx: &mut Tx, event: Envelope<ExpirationComplete>) -> HandlerResult {
        self.run(tx, &event.data.order_id, Command::Expire).await
    }
}

impl Handle<PaymentCreated> for Handlers {
    /// Completes the order with the payment, once its reservation is confirmed.
    async fn handle(&self, tx: &mut Tx, event: Envelope<PaymentCreated>) -> HandlerResult {
        let payment = event.data;
        let amount = match payment.amount {
            Some(amount) => amount,
            // Events of earlier versions carry no amount: they charged the order's price.
            None => match store::lock_order(tx, &payment.order_id).await? {
                Some(order) => order.ticket.price,
                None => {
                    return Err(format!("payment for unknown order {}", payment.order_id).into());
                }
            },
        };
        self.run(
            tx,
            &payment.order_id,
            Command::Pay {
                payment: payment.id,
                amount,
            },
        )
        .await
    }
}

impl Handle<PaymentRefunded> for Handlers {
    /// Shows the money given back on the order (its version stays: nothing is announced).
    async fn handle(&self, tx: &mut Tx, event: Envelope<PaymentRefunded>) -> HandlerResult {
        let refund = event.data;
        self.run(
            tx,
            &refund.order_id,
            Command::Refunded {
                payment: refund.id,
                amount: refund.price,
                refunded: refund.refunded,
            },
        )
        .await
    }
}
