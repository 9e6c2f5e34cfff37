//! The settlement worker: finishes at the provider what the charges' transitions decided —
//! capture the hold of the charge that completed its order, release every other hold, refund
//! money taken for an order not completed with it — retrying until the provider answers; and
//! replays started charges that a process left behind when it died (their lease ran out).
//!
//! Woken when a transition needs it, polling every few seconds as a fallback; several replicas
//! may run it at once (every provider call is idempotent, every write conditional).

use std::time::Duration;

use bt_contract::Millis;
use bt_platform::Runtime;

use crate::charging::{ChargeError, Payments};
use crate::domain::{Charge, ChargeState};
use crate::provider::ProviderError;
use crate::store;

/// How many charges one round handles.
const BATCH: i64 = 50;
/// The poll interval when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(2);

/// Starts the worker on `runtime`; it stops at shutdown.
pub fn spawn(payments: Payments, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        let mut failures: u32 = 0;
        loop {
            match round(&payments).await {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(%err, "settling charges failed; retrying");
                    } else {
                        tracing::debug!(%err, failures, "settling charges failed again");
                    }
                }
            }
            let wait = POLL * failures.clamp(1, 15);
            tokio::select! {
                () = payments.settle.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// One round: settle what is due, replay what was abandoned. Fails when any charge could not
/// be handled (the others are handled regardless).
pub async fn round(payments: &Payments) -> Result<(), String> {
    let mut failed = Vec::new();
    for charge in store::charges_to_settle(&payments.db, BATCH)
        .await
        .map_err(|e| e.to_string())?
    {
        if let Err(err) = settle(payments, &charge).await {
            failed.push(format!("{} ({}): {err}", charge.id, charge.state));
        }
    }
    for charge in store::abandoned_charges(&payments.db, Millis::now(), BATCH)
        .await
        .map_err(|e| e.to_string())?
    {
        if let Err(err) = replay(payments, &charge).await {
            failed.push(format!("{} (replay): {err}", charge.id));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Asks the provider for what `charge` waits for, and records the result.
async fn settle(payments: &Payments, charge: &Charge) -> Result<(), ChargeError> {
    let Some(provider_id) = charge.provider_id.as_deref() else {
        return Err(ChargeError::Vanished(charge.id.clone()));
    };
    let result = match charge.state {
        ChargeState::Capturing => payments.provider.capture(provider_id).await,
        ChargeState::Voiding => payments.provider.void(provider_id).await,
        ChargeState::Refunding => payments.provider.refund(provider_id).await,
        _ => return Ok(()),
    };
    let now = Millis::now();
    let next = match result {
        Ok(()) => charge.clone().settled(now)?,
        Err(ProviderError::Invalid(reason)) => {
            let next = charge.clone().settling_refused(reason.clone(), now)?;
            if next.state == ChargeState::CaptureFailed {
                tracing::error!(order.id = %charge.order_id, payment.id = %charge.id, %reason, "the provider refused to capture a completed order's payment; it needs a person");
                metrics::counter!("payments_capture_failed_total").increment(1);
            } else {
                tracing::warn!(order.id = %charge.order_id, payment.id = %charge.id, %reason, "the hold could not be released; refunding instead");
            }
            next
        }
        Err(ProviderError::Unavailable(reason)) => return Err(ChargeError::Unavailable(reason)),
    };
    let mut tx = payments.db.begin().await?;
    // Only over the state this round read: a concurrent replica may have settled it first.
    if store::save_charge(&mut tx, &next, charge.state).await? {
        // The capture credits the seller, in the same transaction; a refund reverses it and
        // is announced to the buyer.
        payments.ledger.follow(&mut tx, charge, &next, now).await?;
        tx.commit().await?;
        let counter = match next.state {
            ChargeState::Succeeded => "payments_captured_total",
            ChargeState::Voided => "payments_voided_total",
            ChargeState::Refunded => "payments_refunded_total",
            _ => "payments_settlement_refused_total",
        };
        metrics::counter!(counter).increment(1);
        tracing::info!(order.id = %next.order_id, payment.id = %next.id, state = %next.state, "charge settled");
        payments.arrivals.arrived();
        if next.state.needs_settling() {
            payments.settle.notify_one();
        }
    }
    Ok(())
}

/// Replays a started charge nobody is working on any more (same idempotency key, same card).
async fn replay(payments: &Payments, charge: &Charge) -> Result<(), ChargeError> {
    let now = Millis::now();
    if !store::take_lease(
        &payments.db,
        &charge.id,
        charge.lease_until,
        now.plus(payments.lease),
        now,
    )
    .await?
    {
        return Ok(());
    }
    if payments.close_if_forgotten(charge).await? {
        return Ok(());
    }
    tracing::info!(order.id = %charge.order_id, payment.id = %charge.id, "replaying an abandoned charge");
    payments.authorize(charge).await.map(drop)
}
