//! What the service does with each event, inside the transaction that records it in the inbox
//! (so a redelivery adds nothing): keep the replicas, and tell people — an in-app notification
//! and a queued email per recipient, written together.
//!
//! | event | who is told |
//! |---|---|
//! | `user.created` | nobody: the address is kept for emails |
//! | `ticket.created` / `ticket.updated` | every alert the ticket starts to match, oldest alert first (with `ALERT_HOLD_SECONDS`: the first in line who has not held the ticket yet at once, holding it — `ticket.held` — and the others when the hold ends; everyone at once when all have held it) |
//! | `order.created` | nobody: the order is kept for the notices below |
//! | `order.completed` | the buyer: a receipt |
//! | `order.cancelled` | the buyer, when it expired or the ticket changed under them |
//! | `payment.declined` | the buyer |
//! | `sale.credited` | the seller: sold, the fee and the payout date |

use std::sync::Arc;
use std::time::Duration;

use bt_contract::events::{
    CancelReason, Envelope, OrderCancelled, OrderCompleted, OrderCreated, PaymentDeclined,
    PaymentRefunded, SaleCredited, TicketCreated, TicketData, TicketHeld, TicketUpdated,
    UserCreated,
};
use bt_contract::resources::NotificationKind;
use bt_contract::{Millis, NotificationId, UserId};
use bt_platform::Tx;
use bt_platform::bus::version::{VersionOrder, order};
use bt_platform::bus::{Handle, HandlerResult, Outbox, Outcome};

use crate::domain::{Limits, Notice, OrderView, TicketView, Wording};
use crate::store::{self, OutgoingEmail};

/// The event handlers of the notifications service.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub(crate) context: Arc<Context>,
    /// Announces the holds of ticket alerts (`ticket.held`).
    pub(crate) outbox: Outbox,
}

/// What the handlers need to word and address notices.
#[derive(Debug)]
pub struct Context {
    pub wording: Wording,
    /// The site's address, for the links in emails (`PUBLIC_URL`), without a trailing slash.
    pub public_url: String,
    pub limits: Limits,
    /// How long the first subscriber in line of a ticket alert holds a ticket alone
    /// (`ALERT_HOLD_SECONDS`; zero: no hold, everyone is told at once).
    pub hold: Duration,
}

impl Handlers {
    pub fn new(context: Context, outbox: Outbox) -> Self {
        Self {
            context: Arc::new(context),
            outbox,
        }
    }

    /// Tells `notice.recipient` in the app and by email (unless `email` is false), once per
    /// (event, recipient, kind).
    async fn tell(
        &self,
        tx: &mut Tx,
        event_id: &str,
        notice: &Notice,
        email: bool,
        now: Millis,
    ) -> sqlx::Result<()> {
        self.tell_from(tx, event_id, notice, email, now, now).await
    }

    /// [`Self::tell`], shown and sent from `from`.
    async fn tell_from(
        &self,
        tx: &mut Tx,
        event_id: &str,
        notice: &Notice,
        email: bool,
        now: Millis,
        from: Millis,
    ) -> sqlx::Result<()> {
        let id = NotificationId::generate();
        if !store::insert_notification(tx, &id, notice, event_id, now, from).await? {
            return Ok(());
        }
        metrics::counter!("notifications_created_total", "kind" => notice.kind.as_str())
            .increment(1);
        if email {
            let outgoing = OutgoingEmail {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: notice.recipient.clone(),
                kind: notice.kind,
                subject: notice.title.clone(),
                body: self.email_body(notice),
                attempts: 0,
                address: None,
            };
            store::insert_email(tx, &outgoing, event_id, now, from).await?;
        }
        Ok(())
    }

    /// The plain-text email of a notice: its words, the full link, and why it was sent.
    fn email_body(&self, notice: &Notice) -> String {
        let site = &self.context.public_url;
        let mut body = notice.body.clone();
        if let Some(link) = &notice.link {
            body.push_str(&format!("\n\n{site}{link}"));
        }
        body.push_str("\n\n-- \nBuyTicket, the fair ticket resale marketplace");
        if notice.kind == NotificationKind::TicketAlert {
            body.push_str(&format!(
                "\nYou receive this because you set a ticket alert. Manage your alerts: {site}/alerts"
            ));
        } else {
            body.push_str(&format!("\nYou receive this about your account at {site}/"));
        }
        body.push('\n');
        body
    }

    /// A ticket's new version: kept, and every alert it starts to match is told, in the order
    /// the alerts were made.
    async fn ticket_changed(&self, tx: &mut Tx, event_id: &str, data: TicketData) -> HandlerResult {
        let before = store::ticket_in(tx, &data.id).await?;
        let held = before.as_ref().map(|t| t.version);
        match order(held, data.version) {
            VersionOrder::Apply => {}
            other => return Ok(other.outcome("ticket", held, data.version)),
        }
        let after = TicketView {
            id: data.id,
            version: data.version,
            title: data.title,
            price: data.price,
            owner: data.user_id,
            order_id: data.order_id,
            for_sale: data.for_sale,
            starts_at: data.starts_at,
            venue: data.venue,
        };
        store::save_ticket(tx, &after).await?;
        let now = Millis::now();
        if !after.on_sale(now) {
            return Ok(Outcome::Applied);
        }
        let hour_ago = now.minus(Duration::from_secs(3600));
        let mut told = 0;
        // With a hold, the first subscriber in line has the ticket to themselves for a while;
        // the others are told when it ends.
        let hold = self.context.hold;
        let until = now.plus(hold);
        // One per subscriber (their oldest alert that matches): a fan with two matching alerts
        // gets one notice, and one email of their hourly allowance.
        let mut subscribers = std::collections::HashSet::new();
        let matching: Vec<_> = store::alerts_for(tx, after.price)
            .await?
            .into_iter()
            .filter(|alert| alert.newly_matches(before.as_ref(), &after, now))
            .filter(|alert| subscribers.insert(alert.user_id.clone()))
            .collect();
        let users: Vec<UserId> = matching.iter().map(|a| a.user_id.clone()).collect();
        // Alert emails in the last hour per subscriber, counted once for all of them and kept
        // up to date below as emails are queued. The subscribers are locked first: on
        // PostgreSQL two tickets' events are applied concurrently, and both counted the
        // same emails (two emails past a limit of one, seen in CI).
        store::lock_users(tx, &users).await?;
        let mut emailed = store::alert_emails_since(tx, &users, hour_ago).await?;
        // The hold goes to the first in line who has not held this ticket before (none once
        // all have): back on sale after a cancelled or expired order, it is not held again for
        // whoever let it go.
        let holder = if hold.is_zero() {
            None
        } else {
            let held = store::holders_of(tx, &after.id).await?;
            matching
                .iter()
                .position(|alert| !held.contains(&alert.user_id))
        };
        for (place, alert) in matching.into_iter().enumerate() {
            let (notice, from) = if holder.is_none() {
                (self.context.wording.alert(&alert, &after), now)
            } else if holder == Some(place) {
                store::record_hold(tx, &after.id, &alert.user_id, now).await?;
                self.outbox
                    .stage(
                        tx,
                        TicketHeld {
                            ticket_id: after.id.clone(),
                            ticket_version: after.version,
                            user_id: alert.user_id.clone(),
                            until,
                        },
                    )
                    .await?;
                (self.context.wording.alert_held(&alert, &after, until), now)
            } else {
                (self.context.wording.alert(&alert, &after), until)
            };
            let sent = emailed.entry(alert.user_id.clone()).or_insert(0);
            let email = *sent < self.context.limits.alert_emails_per_hour;
            if email {
                *sent += 1;
            }
            if !email {
                tracing::debug!(user.id = %alert.user_id, alert.id = %alert.id, "hourly alert email limit reached: in-app only");
            }
            self.tell_from(tx, event_id, &notice, email, now, from)
                .await?;
            told += 1;
        }
        if told > 0 {
            metrics::counter!("notifications_alerts_matched_total").increment(told);
            tracing::info!(ticket.id = %after.id, subscribers = told, "ticket alert subscribers told");
        }
        Ok(Outcome::Applied)
    }

    /// The order an event is about, or a retry until `order.created` has arrived.
    async fn order_of(
        tx: &mut Tx,
        id: &bt_contract::OrderId,
    ) -> Result<Result<OrderView, Outcome>, sqlx::Error> {
        Ok(match store::order_in(tx, id).await? {
            Some(order) => Ok(order),
            None => Err(Outcome::NotYet(format!(
                "order {id}: order.created has not arrived yet"
            ))),
        })
    }
}

impl Handle<UserCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<UserCreated>) -> HandlerResult {
        let user = event.data;
        store::upsert_user(tx, &user.id, &user.email, Millis::now()).await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<TicketCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketCreated>) -> HandlerResult {
        self.ticket_changed(tx, &event.id.to_string(), event.data.0)
            .await
    }
}

impl Handle<TicketUpdated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<TicketUpdated>) -> HandlerResult {
        self.ticket_changed(tx, &event.id.to_string(), event.data.0)
            .await
    }
}

impl Handle<OrderCreated> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCreated>) -> HandlerResult {
        let created = event.data;
        let order = OrderView {
            id: created.id,
            buyer: created.user_id,
            ticket_id: created.ticket.id,
            title: created.ticket.title,
            price: created.ticket.price,
        };
        if store::insert_order(tx, &order, Millis::now()).await? {
            Ok(Outcome::Applied)
        } else {
            Ok(Outcome::Skipped)
        }
    }
}

impl Handle<OrderCompleted> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCompleted>) -> HandlerResult {
        let order = match Self::order_of(tx, &event.data.id).await? {
            Ok(order) => order,
            Err(wait) => return Ok(wait),
        };
        let notice = self.context.wording.receipt(&order);
        self.tell(tx, &event.id.to_string(), &notice, true, Millis::now())
            .await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<OrderCancelled> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<OrderCancelled>) -> HandlerResult {
        let reason = event.data.reason;
        if matches!(reason, None | Some(CancelReason::Buyer)) {
            return Ok(Outcome::Skipped);
        }
        let order = match Self::order_of(tx, &event.data.id).await? {
            Ok(order) => order,
            Err(wait) => return Ok(wait),
        };
        let wording = &self.context.wording;
        let notice = match reason {
            Some(CancelReason::Expired) => Some(wording.expired(&order)),
            other => wording.cancelled(&order, other),
        };
        if let Some(notice) = notice {
            self.tell(tx, &event.id.to_string(), &notice, true, Millis::now())
                .await?;
        }
        Ok(Outcome::Applied)
    }
}

impl Handle<PaymentDeclined> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<PaymentDeclined>) -> HandlerResult {
        let order = store::order_in(tx, &event.data.order_id).await?;
        let notice = self.context.wording.declined(&event.data, order.as_ref());
        self.tell(tx, &event.id.to_string(), &notice, true, Millis::now())
            .await?;
        Ok(Outcome::Applied)
    }
}

impl Handle<PaymentRefunded> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<PaymentRefunded>) -> HandlerResult {
        let order = store::order_in(tx, &event.data.order_id).await?;
        let event_id = event.id.to_string();
        let now = Millis::now();
        let notice = self.context.wording.refunded(&event.data, order.as_ref());
        self.tell(tx, &event_id, &notice, true, now).await?;
        if let Some(notice) = self.context.wording.refund_taken(&event.data) {
            self.tell(tx, &event_id, &notice, true, now).await?;
        }
        Ok(Outcome::Applied)
    }
}

impl Handle<SaleCredited> for Handlers {
    async fn handle(&self, tx: &mut Tx, event: Envelope<SaleCredited>) -> HandlerResult {
        let notice = self.context.wording.sold(&event.data);
        self.tell(tx, &event.id.to_string(), &notice, true, Millis::now())
            .await?;
        Ok(Outcome::Applied)
    }
}
