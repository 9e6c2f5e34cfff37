//! Recording charges: exactly one payment per order, and money given back when a charge lands
//! on an order that was cancelled meanwhile (or was already paid).

use std::sync::Arc;
use std::time::Duration;

use bt_contract::events::{OrderStatus, PaymentCreated};
use bt_platform::bus::Outbox;
use bt_platform::db::now_millis;
use bt_platform::{Db, Runtime};
use tokio::sync::Notify;

use crate::provider::Provider;
use crate::store::{self, Payment};

/// What became of a successful charge.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// The order is paid: `payment.created` is on its way.
    Paid(Payment),
    /// The order was cancelled meanwhile, or already paid: the charge is being refunded.
    Refunding(Payment),
}

/// Records a charge that succeeded at the provider (from the pay request or a webhook).
/// Idempotent by the provider's id.
#[allow(clippy::too_many_arguments)]
pub async fn record_success(
    db: &Db,
    outbox: &Outbox,
    refunds: &Notify,
    order_id: &str,
    attempt: Option<i64>,
    provider_id: &str,
    amount: i64,
    currency: &str,
) -> Result<Recorded, RecordError> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    if let Some(existing) = store::payment_by_provider(&mut tx, provider_id).await? {
        tx.rollback().await?;
        return Ok(if existing.status == "succeeded" {
            Recorded::Paid(existing)
        } else {
            Recorded::Refunding(existing)
        });
    }
    // Locked, so that a cancellation committing meanwhile is either seen here or sees this
    // payment (and refunds it).
    let order = store::lock_order(&mut tx, order_id)
        .await?
        .ok_or_else(|| RecordError::UnknownOrder(order_id.to_owned()))?;
    let already_paid = store::succeeded_payment(&mut tx, order_id).await?;
    let cancelled = order.status == OrderStatus::Cancelled.as_str();
    let mut payment = Payment {
        id: uuid::Uuid::now_v7().to_string(),
        order_id: order_id.to_owned(),
        provider_id: provider_id.to_owned(),
        amount,
        currency: currency.to_owned(),
        status: "succeeded".into(),
    };
    if cancelled || already_paid.is_some() {
        let why = if cancelled {
            "order cancelled before the charge landed"
        } else {
            "order already paid"
        };
        if let Some(attempt) = attempt {
            store::finish_attempt(
                &mut tx,
                order_id,
                attempt,
                "failed",
                Some(provider_id),
                Some(why),
                now,
            )
            .await?;
        }
        payment.status = "refund_pending".into();
        store::insert_payment(&mut tx, &payment, now).await?;
        tx.commit().await?;
        refunds.notify_one();
        tracing::warn!(
            order.id = order_id,
            provider_id,
            why,
            "charge will be refunded"
        );
        metrics::counter!("payments_refunds_started_total").increment(1);
        return Ok(Recorded::Refunding(payment));
    }
    if let Some(attempt) = attempt {
        store::finish_attempt(
            &mut tx,
            order_id,
            attempt,
            "succeeded",
            Some(provider_id),
            None,
            now,
        )
        .await?;
    }
    store::insert_payment(&mut tx, &payment, now).await?;
    outbox
        .stage(
            &mut tx,
            PaymentCreated {
                id: payment.id.clone(),
                order_id: order_id.to_owned(),
                stripe_id: provider_id.to_owned(),
            },
        )
        .await?;
    outbox.commit(tx).await?;
    metrics::counter!("payments_succeeded_total").increment(1);
    tracing::info!(order.id = order_id, payment.id = %payment.id, "payment recorded");
    Ok(Recorded::Paid(payment))
}

/// Why a charge could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("charge for unknown order {0}")]
    UnknownOrder(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Refunds every payment marked `refund_pending`, retrying until the provider accepts; woken by
/// `wake`, polling every few seconds as a fallback.
pub fn spawn_refunds(db: Db, provider: Provider, wake: Arc<Notify>, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        let mut failures: u32 = 0;
        loop {
            match refund_pending(&db, &provider).await {
                Ok(_) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%err, failures, "refunds failed; retrying");
                }
            }
            let wait = Duration::from_secs(if failures == 0 {
                5
            } else {
                u64::from(failures.min(6)) * 5
            });
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// Refunds what is pending. A refund the provider refuses does not hold up the others: it is
/// logged, moved to the back of the queue (its `updated_at` touched) and tried again later.
async fn refund_pending(db: &Db, provider: &Provider) -> Result<usize, String> {
    let pending = store::refunds_pending(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    let mut failed = Vec::new();
    for payment in pending {
        if let Err(err) = provider.refund(&payment.provider_id).await {
            tracing::warn!(%err, order.id = %payment.order_id, provider_id = %payment.provider_id, "refund failed");
            metrics::counter!("payments_refund_failures_total").increment(1);
            store::set_payment_status_db(db, &payment.id, "refund_pending", now_millis())
                .await
                .map_err(|e| e.to_string())?;
            failed.push(payment.provider_id);
            continue;
        }
        store::set_payment_status_db(db, &payment.id, "refunded", now_millis())
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("payments_refunded_total").increment(1);
        tracing::info!(order.id = %payment.order_id, provider_id = %payment.provider_id, "charge refunded");
        done += 1;
    }
    if failed.is_empty() {
        Ok(done)
    } else {
        Err(format!(
            "{} refund(s) failed: {}",
            failed.len(),
            failed.join(", ")
        ))
    }
}
