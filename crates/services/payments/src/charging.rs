//! Carrying out charges: [`Payments`] sends a started charge to the provider — the first time,
//! or again after a crash or an outage, with the same idempotency key — and records the answer
//! through the charge's transitions ([`domain`](crate::domain)), staging `payment.created` in
//! the same transaction. The pay request, the webhook and the settlement worker all come
//! through here.
//!
//! While a provider call lasts, the charge's lease is renewed; a charge whose lease runs out
//! was abandoned by a process that died, and anyone may replay it.

use std::sync::Arc;
use std::time::Duration;

use bt_contract::events::PaymentDeclined;
use bt_contract::{ApiError, Millis, PaymentId};
use bt_platform::bus::Outbox;
use bt_platform::{Arrivals, Db};
use tokio::sync::Notify;

use crate::domain::{Answer, Charge, ChargeState, Refusal};
use crate::payouts::Ledger;
use crate::provider::{ChargeRequest, Provider, ProviderError};
use crate::store;

/// The payments core: everything that moves a charge, cheap to clone.
#[derive(Debug, Clone)]
pub struct Payments {
    pub db: Db,
    pub outbox: Outbox,
    pub provider: Provider,
    /// ISO currency code of every charge (`PAYMENT_CURRENCY`).
    pub currency: String,
    /// Requests waiting for an order to reach the replica, or for an order's decision.
    pub arrivals: Arrivals,
    /// Wakes the settlement worker (captures, releases, refunds, abandoned charges).
    pub settle: Arc<Notify>,
    /// How long a charge stays leased to the process that sent it without a renewal.
    pub lease: Duration,
    /// Keeps the sellers' ledger in step with the charges.
    pub ledger: Ledger,
}

/// Why a charge could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    #[error("charge {0} vanished")]
    Vanished(PaymentId),
    #[error("charge {0} has no order in the replica")]
    NoOrder(PaymentId),
    #[error("charge {0} has no card token to send")]
    NoToken(PaymentId),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl From<ChargeError> for ApiError {
    fn from(err: ChargeError) -> Self {
        match err {
            ChargeError::Database(err) => err.into(),
            ChargeError::Unavailable(_) => {
                ApiError::retry_later("The payment provider is unavailable; please try again", 2)
            }
            other => ApiError::internal(other),
        }
    }
}

/// Stripe keeps an idempotency key for 24 hours: a started charge older than this is not
/// replayed (the replay could be a new charge) but closed as declined.
pub const REPLAYABLE_FOR: Duration = Duration::from_secs(23 * 3600);

impl Payments {
    /// Closes started charge `charge` as declined when it is too old to replay safely; true
    /// when it did.
    pub async fn close_if_forgotten(&self, charge: &Charge) -> Result<bool, ChargeError> {
        if Millis::now().since(charge.created_at) <= REPLAYABLE_FOR {
            return Ok(false);
        }
        tracing::error!(order.id = %charge.order_id, payment.id = %charge.id, "no answer from the payment provider within a day; closing the attempt");
        let message = "The payment provider did not answer; please try again".to_owned();
        self.record(&charge.id, Answer::Declined { message })
            .await?;
        Ok(true)
    }

    /// Records the provider's `answer` for charge `id`. A charge answered already (by a
    /// concurrent replay, a webhook) stays as it is. Returns the charge as it is now.
    pub async fn record(&self, id: &PaymentId, answer: Answer) -> Result<Charge, ChargeError> {
        let now = Millis::now();
        let order_id = store::charge(&self.db, id)
            .await?
            .ok_or_else(|| ChargeError::Vanished(id.clone()))?
            .order_id;
        let mut tx = self.db.begin().await?;
        // Order first, then its charges: the order's events lock in the same order.
        let order = store::lock_order(&mut tx, &order_id)
            .await?
            .ok_or_else(|| ChargeError::NoOrder(id.clone()))?;
        let charge = store::charge_in(&mut tx, id)
            .await?
            .ok_or_else(|| ChargeError::Vanished(id.clone()))?;
        if charge.state != ChargeState::Started {
            tx.rollback().await?;
            return Ok(charge);
        }
        let (charge, event) = charge.answered(answer, &order, now)?;
        if !store::save_charge(&mut tx, &charge, ChargeState::Started).await? {
            return Err(ChargeError::Vanished(id.clone()));
        }
        if let Some(event) = event {
            self.outbox.stage(&mut tx, event).await?;
        }
        if charge.state == ChargeState::Declined {
            // The buyer is told (notifications), even when they left the page.
            let declined = PaymentDeclined {
                id: charge.id.clone(),
                order_id: charge.order_id.clone(),
                user_id: order.user_id.clone(),
                amount: charge.amount,
                message: charge
                    .failure
                    .clone()
                    .unwrap_or_else(|| "Your card was declined.".into()),
            };
            self.outbox.stage(&mut tx, declined).await?;
        }
        self.outbox.commit(tx).await?;
        match charge.state {
            ChargeState::Authorized => {
                metrics::counter!("payments_authorized_total").increment(1);
                tracing::info!(order.id = %charge.order_id, payment.id = %charge.id, "payment authorised");
            }
            ChargeState::Declined => {
                metrics::counter!("payments_declined_total").increment(1);
                tracing::debug!(order.id = %charge.order_id, payment.id = %charge.id, "payment declined");
            }
            state if state.needs_settling() => {
                tracing::warn!(order.id = %charge.order_id, payment.id = %charge.id, %state, "payment landed on an order that went another way; giving it back");
                self.settle.notify_one();
            }
            _ => {}
        }
        self.arrivals.arrived();
        Ok(charge)
    }

    /// Sends started charge `charge` to the provider (the first time or as a replay with the
    /// same idempotency key), renewing its lease while the call lasts, and records the answer.
    /// On an outage the charge stays started with its lease ended, so that the next pay
    /// request or the settlement worker replays it.
    pub async fn authorize(&self, charge: &Charge) -> Result<Charge, ChargeError> {
        let request =
            ChargeRequest::of(charge).ok_or_else(|| ChargeError::NoToken(charge.id.clone()))?;
        let call = self.provider.authorize(&request);
        let renew = async {
            let mut every = tokio::time::interval(self.lease / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(err) =
                    store::renew_lease(&self.db, &charge.id, Millis::now().plus(self.lease)).await
                {
                    tracing::warn!(%err, payment.id = %charge.id, "could not renew the lease");
                }
            }
        };
        let answer = tokio::select! {
            answer = call => answer,
            _ = renew => return Err(ChargeError::Unavailable("the lease renewal stopped".into())),
        };
        match answer {
            Ok(answer) => self.record(&charge.id, answer).await,
            Err(ProviderError::Invalid(message)) => {
                self.record(&charge.id, Answer::Declined { message }).await
            }
            Err(ProviderError::Unavailable(reason)) => {
                // Logged once here; the charge stays started and is replayed later.
                tracing::warn!(%reason, order.id = %charge.order_id, payment.id = %charge.id, "payment provider unavailable");
                metrics::counter!("payments_provider_unavailable_total").increment(1);
                store::release_lease(&self.db, &charge.id, Millis::now()).await?;
                Err(ChargeError::Unavailable(reason))
            }
        }
    }
}
