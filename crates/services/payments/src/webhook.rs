//! Stripe webhooks: verifying `Stripe-Signature: t=<unix>,v1=<hex hmac>[,v1=...]` (HMAC-SHA256
//! over `"<t>.<raw body>"` with the endpoint secret, compared in constant time, the timestamp
//! within a tolerance — default 5 minutes — to refuse replays), and applying the PaymentIntent
//! events to charges ([`apply`]): an authorisation or a capture reported later than the pay
//! request's answer (or never answered because of a crash), a failure, a hold released elsewhere;
//! a charge refunded in full or in part (`charge.refunded`, e.g. from Stripe's dashboard),
//! which the seller's credit follows; and whether a seller's connected account can receive transfers
//! (`account.updated`).

use bt_contract::{Cents, Millis, OrderId};
use hmac::{Hmac, Mac};
use serde::Deserialize;

use crate::charging::{ChargeError, Payments};
use crate::domain::{Answer, Charge, ChargeState};
use crate::ledger::AccountStatus;
use crate::payouts::Payouts;
use crate::store;
use sha2::Sha256;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance")]
    TooOld,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` for `payload` with `secret`, at time `now` (Unix seconds).
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    for signature in signatures {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// A `Stripe-Signature` header for `payload` (what Stripe sends; used by tests and tools).
pub fn sign(payload: &[u8], secret: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The parts of a Stripe event the service reads.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: StripeEventData,
}

#[derive(Debug, Deserialize)]
pub struct StripeEventData {
    pub object: IntentObject,
}

/// The object of an event: a PaymentIntent (`payment_intent.*`), a Charge (`charge.refunded`)
/// or an Account (`account.updated`); the fields of the others read as empty.
#[derive(Debug, Default, Deserialize)]
pub struct IntentObject {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub amount: Option<i64>,
    /// Charge: its PaymentIntent.
    #[serde(default)]
    pub payment_intent: Option<String>,
    /// Charge: refunded in full.
    #[serde(default)]
    pub refunded: Option<bool>,
    /// Charge: how much was refunded so far, in cents.
    #[serde(default)]
    pub amount_refunded: Option<i64>,
    /// Account: the onboarding was finished.
    #[serde(default)]
    pub details_submitted: Option<bool>,
    /// Account: `{"transfers": "active", ...}`.
    #[serde(default)]
    pub capabilities: Option<std::collections::HashMap<String, serde_json::Value>>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
}

/// The metadata the service puts on its PaymentIntents (Stripe sends values as strings).
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub attempt: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PaymentError {
    #[serde(default)]
    pub message: Option<String>,
}

/// Applies a verified Stripe event to the charge (or the payout account) it is about.
pub async fn apply(
    payments: &Payments,
    payouts: &Payouts,
    event: &StripeEvent,
) -> Result<(), ChargeError> {
    let intent = &event.data.object;
    match event.kind.as_str() {
        "charge.refunded" => return refunded(payments, intent).await,
        "account.updated" => {
            let transfers = intent
                .capabilities
                .as_ref()
                .and_then(|c| c.get("transfers"))
                .and_then(|v| v.as_str());
            let status =
                AccountStatus::from_stripe(transfers, intent.details_submitted.unwrap_or(false));
            if !intent.id.is_empty() {
                payouts
                    .account_updated(&intent.id, status, Millis::now())
                    .await?;
            }
            return Ok(());
        }
        _ => {}
    }
    let answer = match event.kind.as_str() {
        "payment_intent.amount_capturable_updated" => Answer::Authorized {
            provider_id: intent.id.clone(),
        },
        "payment_intent.succeeded" => Answer::Captured {
            provider_id: intent.id.clone(),
        },
        "payment_intent.payment_failed" => Answer::Declined {
            message: intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "Your card was declined.".into()),
        },
        "payment_intent.canceled" => Answer::Declined {
            message: "The payment was cancelled".into(),
        },
        _ => return Ok(()),
    };
    if intent.id.is_empty() {
        return Ok(());
    }
    let now = Millis::now();
    let mut tx = payments.db.begin().await?;
    let mut charge = store::charge_by_provider(&mut tx, &intent.id).await?;
    let order_id = intent.metadata.order_id.as_deref().map(OrderId::from);
    let attempt = intent
        .metadata
        .attempt
        .as_deref()
        .and_then(|a| a.parse().ok());
    if charge.is_none()
        && let (Some(order_id), Some(attempt)) = (&order_id, attempt)
    {
        charge = store::charge_by_attempt(&mut tx, order_id, attempt).await?;
    }
    let Some(charge) = charge else {
        tx.rollback().await?;
        return match (&answer, order_id) {
            (Answer::Authorized { .. } | Answer::Captured { .. }, Some(order_id)) => {
                adopt(payments, &order_id, intent, answer).await
            }
            _ => Ok(()),
        };
    };
    let next = match (event.kind.as_str(), charge.state) {
        ("payment_intent.succeeded", ChargeState::Capturing) => Some(charge.clone().settled(now)?),
        ("payment_intent.canceled", _) => charge.clone().released_elsewhere(now),
        (_, ChargeState::Started) => {
            tx.rollback().await?;
            payments.record(&charge.id, answer).await?;
            return Ok(());
        }
        _ => None,
    };
    if let Some(next) = next
        && store::save_charge(&mut tx, &next, charge.state).await?
    {
        // A capture credits the seller, in the same transaction (less what was refunded of
        // it before the capture was recorded, which the buyer is then told of).
        payments.ledger.follow(&mut tx, &charge, &next, now).await?;
        tx.commit().await?;
        tracing::info!(payment.id = %next.id, state = %next.state, "charge changed by a webhook");
        payments.arrivals.arrived();
    }
    Ok(())
}

/// A charge refunded at the provider (`charge.refunded`, sent for each refund with the total
/// refunded so far): in full, the charge is `refunded`; in part, it stays `succeeded` and
/// records the total. Either way the seller's credit of its order follows
/// ([`crate::payouts::Ledger::follow`]), in the same transaction.
async fn refunded(payments: &Payments, object: &IntentObject) -> Result<(), ChargeError> {
    let Some(intent) = object.payment_intent.as_deref().filter(|i| !i.is_empty()) else {
        return Ok(());
    };
    let now = Millis::now();
    let mut tx = payments.db.begin().await?;
    let Some(seen) = store::charge_by_provider(&mut tx, intent).await? else {
        tx.rollback().await?;
        tracing::debug!(provider_id = %intent, "a refund of a charge this service does not know");
        return Ok(());
    };
    // Order first, then its charge, as everywhere.
    store::lock_order(&mut tx, &seen.order_id).await?;
    let Some(charge) = store::charge_in(&mut tx, &seen.id).await? else {
        return Err(ChargeError::Vanished(seen.id));
    };
    let total = object.amount_refunded.map(Cents::new);
    let full = object.refunded == Some(true) || total.is_some_and(|t| t >= charge.amount);
    let changed = if full {
        charge.clone().refunded_elsewhere(now)
    } else {
        total.and_then(|t| charge.clone().refunded_in_part(t, now))
    };
    // Nothing new (a repeated or older report, or a charge that holds no money): the ledger
    // followed when the charge was saved as it is.
    let Some(next) = changed else {
        tx.rollback().await?;
        return Ok(());
    };
    if !store::save_charge(&mut tx, &next, charge.state).await? {
        return Err(ChargeError::Vanished(charge.id));
    }
    tracing::info!(order.id = %next.order_id, payment.id = %next.id, from = %charge.state, to = %next.state, refunded = %next.refunded_amount(), "charge refunded at the provider");
    payments.ledger.follow(&mut tx, &charge, &next, now).await?;
    tx.commit().await?;
    payments.arrivals.arrived();
    Ok(())
}

/// A charge the service did not start (made before charges were recorded this way, or in the
/// dashboard): recorded as a new attempt of its order, so the rules apply to it — or, when the
/// order holds money already, refunded.
async fn adopt(
    payments: &Payments,
    order_id: &OrderId,
    intent: &IntentObject,
    answer: Answer,
) -> Result<(), ChargeError> {
    let now = Millis::now();
    let mut tx = payments.db.begin().await?;
    let Some(order) = store::lock_order(&mut tx, order_id).await? else {
        tracing::error!(order.id = %order_id, provider_id = %intent.id, "webhook for an unknown order");
        return Ok(());
    };
    let attempt = store::next_attempt(&mut tx, order_id).await?;
    let mut charge = Charge {
        id: bt_contract::PaymentId::generate(),
        order_id: order.id.clone(),
        attempt,
        state: ChargeState::Started,
        amount: intent.amount.map_or(order.price, Cents::new),
        currency: intent
            .currency
            .clone()
            .unwrap_or_else(|| payments.currency.clone()),
        token: None,
        provider_id: None,
        failure: None,
        lease_until: now,
        amount_refunded: Cents::new(0),
        created_at: now,
        updated_at: now,
    };
    if store::insert_charge(&mut tx, &charge).await? {
        tx.commit().await?;
        payments.record(&charge.id, answer).await?;
        return Ok(());
    }
    // The order has a charge holding money already: this one is a second charge.
    charge.provider_id = Some(intent.id.clone());
    charge.state = if matches!(answer, Answer::Captured { .. }) {
        ChargeState::Refunding
    } else {
        ChargeState::Voiding
    };
    store::insert_charge(&mut tx, &charge).await?;
    tx.commit().await?;
    tracing::warn!(order.id = %order_id, provider_id = %intent.id, "a second charge for an order; giving it back");
    payments.settle.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn a_valid_signature_is_accepted() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(verify(BODY, &header, SECRET, 1_700_000_010, 300), Ok(()));
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = sign(BODY, SECRET, 1_700_000_000);
        let header = format!("{good},v1={}", "00".repeat(32))
            .replace("t=1700000000,", "t=1700000000,v1=abcd,");
        assert_eq!(verify(BODY, &header, SECRET, 1_700_000_000, 300), Ok(()));
    }

    #[test]
    fn a_tampered_body_or_another_secret_is_refused() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.succeeded","x":1}"#;
        assert_eq!(
            verify(tampered, &header, SECRET, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(BODY, &header, b"whsec_other", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_old_or_future_timestamp_is_refused() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(
            verify(BODY, &header, SECRET, 1_700_000_301, 300),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            verify(BODY, &header, SECRET, 1_699_999_600, 300),
            Err(SignatureError::TooOld)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000",
            "t=1700000000,v1=zz",
        ] {
            assert_eq!(
                verify(BODY, header, SECRET, 1_700_000_000, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }
}
