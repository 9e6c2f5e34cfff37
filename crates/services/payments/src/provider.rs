//! Payment providers: [`Stripe`] (PaymentIntents created and confirmed server-side) and the
//! [`Development`] provider, the default without `STRIPE_SECRET_KEY`, which mirrors Stripe's
//! test tokens (`tok_visa` succeeds, `tok_chargeDeclined` declines) without any network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bt_contract::Cents;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// One charge to make.
#[derive(Debug, Clone)]
pub struct Charge {
    pub amount: Cents,
    pub currency: String,
    /// The card token from the client (Stripe.js or a test token).
    pub token: String,
    /// Derived from the order id and the attempt number: a retry of one attempt is never
    /// charged twice, and a new attempt (after a decline) is a new charge.
    pub idempotency_key: String,
    pub order_id: String,
    pub attempt: i64,
}

/// What the provider did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Paid.
    Succeeded { provider_id: String },
    /// The card was declined; the message is the provider's, for the buyer.
    Declined { message: String },
    /// Accepted, but the result comes later (a webhook).
    Pending { provider_id: String },
}

/// Why the provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The request is wrong (an unknown token, ...): the message is for the buyer.
    #[error("{0}")]
    Invalid(String),
    /// The provider is unreachable or failing; whether the charge happened is unknown (the
    /// webhook will tell).
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

/// The payment provider in use.
#[derive(Debug, Clone)]
pub enum Provider {
    Stripe(Stripe),
    Development(Development),
}

impl Provider {
    pub async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.charge(charge).await,
            Self::Development(dev) => dev.charge(charge),
        }
    }

    /// Gives back a whole charge. Idempotent.
    pub async fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.refund(provider_id).await,
            Self::Development(dev) => dev.refund(provider_id),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Stripe(_) => "stripe",
            Self::Development(_) => "development",
        }
    }
}

/// A charge the development provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCharge {
    pub provider_id: String,
    pub amount: Cents,
    pub order_id: String,
    pub refunded: bool,
}

/// The development provider: Stripe's test tokens, in memory, idempotent like Stripe.
#[derive(Debug, Clone, Default)]
pub struct Development {
    state: Arc<Mutex<DevState>>,
}

#[derive(Debug, Default)]
struct DevState {
    by_key: HashMap<String, ChargeOutcome>,
    charges: Vec<DevCharge>,
}

impl Development {
    /// Stripe's message for a declined test card.
    pub const DECLINED: &'static str = "Your card was declined.";

    fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, ProviderError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = state.by_key.get(&charge.idempotency_key) {
            return Ok(outcome.clone());
        }
        let outcome = match charge.token.as_str() {
            "tok_visa" | "tok_mastercard" | "tok_amex" | "tok_discover" | "tok_visa_debit" => {
                let provider_id = format!("pi_dev_{}", uuid::Uuid::new_v4().simple());
                state.charges.push(DevCharge {
                    provider_id: provider_id.clone(),
                    amount: charge.amount,
                    order_id: charge.order_id.clone(),
                    refunded: false,
                });
                ChargeOutcome::Succeeded { provider_id }
            }
            "tok_chargeDeclined" => ChargeOutcome::Declined {
                message: Self::DECLINED.into(),
            },
            "tok_chargeDeclinedInsufficientFunds" => ChargeOutcome::Declined {
                message: "Your card has insufficient funds.".into(),
            },
            "tok_chargeDeclinedExpiredCard" => ChargeOutcome::Declined {
                message: "Your card has expired.".into(),
            },
            other => return Err(ProviderError::Invalid(format!("No such token: '{other}'"))),
        };
        state
            .by_key
            .insert(charge.idempotency_key.clone(), outcome.clone());
        Ok(outcome)
    }

    fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state
            .charges
            .iter_mut()
            .find(|c| c.provider_id == provider_id)
        {
            Some(charge) => {
                charge.refunded = true;
                Ok(())
            }
            None => Err(ProviderError::Invalid(format!(
                "No such payment_intent: '{provider_id}'"
            ))),
        }
    }

    /// Every charge made so far (for tests and the development console).
    pub fn charges(&self) -> Vec<DevCharge> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .charges
            .clone()
    }
}

/// A Stripe API client for PaymentIntents and refunds.
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    secret_key: SecretString,
    retries: u32,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeErrorBody>,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    error: StripeErrorBody,
}

#[derive(Debug, Deserialize)]
struct StripeErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: Option<String>,
}

impl Stripe {
    /// A client of the Stripe API at `base` (`https://api.stripe.com`, or a local server in tests).
    pub fn new(base: &str, secret_key: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with static settings");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
            retries: 3,
        }
    }

    /// POSTs a form to Stripe with an idempotency key, retrying (with the same key, so safely)
    /// on network errors, 409 (a concurrent request with the key), 429 and 5xx.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<(u16, String), ProviderError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.secret_key.expose_secret())
                .header("Idempotency-Key", idempotency_key)
                .form(form)
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    if status == 409 || status == 429 || status >= 500 {
                        tracing::warn!(
                            status,
                            path,
                            attempt,
                            "Stripe answered with a retryable error"
                        );
                        last = format!("HTTP {status}");
                        continue;
                    }
                    return Ok((status, body));
                }
                Err(err) => {
                    tracing::warn!(%err, path, attempt, "Stripe request failed");
                    last = err.to_string();
                }
            }
        }
        Err(ProviderError::Unavailable(last))
    }

    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, ProviderError> {
        let form = [
            ("amount", charge.amount.get().to_string()),
            ("currency", charge.currency.to_lowercase()),
            ("confirm", "true".to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("payment_method_data[type]", "card".to_owned()),
            ("payment_method_data[card][token]", charge.token.clone()),
            ("metadata[order_id]", charge.order_id.clone()),
            ("metadata[attempt]", charge.attempt.to_string()),
            (
                "description",
                format!("BuyTicket order {}", charge.order_id),
            ),
        ];
        let (status, body) = self
            .post("/v1/payment_intents", &form, &charge.idempotency_key)
            .await?;
        match status {
            200 => {
                let intent: PaymentIntent = serde_json::from_str(&body).map_err(|e| {
                    ProviderError::Unavailable(format!("unreadable PaymentIntent: {e}"))
                })?;
                Ok(match intent.status.as_str() {
                    "succeeded" => ChargeOutcome::Succeeded { provider_id: intent.id },
                    "processing" => ChargeOutcome::Pending { provider_id: intent.id },
                    "requires_action" => ChargeOutcome::Declined {
                        message: "This card needs authentication, which checkout does not support; please use another card.".into(),
                    },
                    _ => ChargeOutcome::Declined {
                        message: intent
                            .last_payment_error
                            .and_then(|e| e.message)
                            .unwrap_or_else(|| "Your card was declined.".into()),
                    },
                })
            }
            _ => {
                let error = serde_json::from_str::<StripeError>(&body)
                    .map(|e| e.error)
                    .ok();
                let message = error
                    .as_ref()
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| format!("HTTP {status}"));
                match (status, error.as_ref().map(|e| e.kind.as_str())) {
                    (402, _) | (_, Some("card_error")) => Ok(ChargeOutcome::Declined { message }),
                    (401 | 403, _) => {
                        tracing::error!(status, "Stripe refused our API key");
                        Err(ProviderError::Unavailable(message))
                    }
                    _ => Err(ProviderError::Invalid(message)),
                }
            }
        }
    }

    async fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        let form = [("payment_intent", provider_id.to_owned())];
        let (status, body) = self
            .post("/v1/refunds", &form, &format!("refund-{provider_id}"))
            .await?;
        match status {
            200 => Ok(()),
            _ => {
                let message = serde_json::from_str::<StripeError>(&body)
                    .ok()
                    .and_then(|e| e.error.message)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                if message.contains("already been refunded") {
                    Ok(())
                } else {
                    Err(ProviderError::Invalid(message))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(token: &str, key: &str) -> Charge {
        Charge {
            amount: Cents::new(2050),
            currency: "usd".into(),
            token: token.into(),
            idempotency_key: key.into(),
            order_id: "o1".into(),
            attempt: 1,
        }
    }

    #[test]
    fn the_development_provider_mirrors_stripe_test_tokens() {
        let dev = Development::default();
        assert!(matches!(
            dev.charge(&charge("tok_visa", "k1")),
            Ok(ChargeOutcome::Succeeded { .. })
        ));
        assert_eq!(
            dev.charge(&charge("tok_chargeDeclined", "k2")),
            Ok(ChargeOutcome::Declined {
                message: "Your card was declined.".into()
            })
        );
        assert_eq!(
            dev.charge(&charge("tok_bogus", "k3")),
            Err(ProviderError::Invalid("No such token: 'tok_bogus'".into()))
        );
        assert_eq!(dev.charges().len(), 1);
    }

    #[test]
    fn the_development_provider_charges_once_per_idempotency_key() {
        let dev = Development::default();
        let first = dev.charge(&charge("tok_visa", "o1-1")).unwrap();
        let again = dev.charge(&charge("tok_visa", "o1-1")).unwrap();
        assert_eq!(first, again);
        assert_eq!(dev.charges().len(), 1);
        let ChargeOutcome::Succeeded { provider_id } = first else {
            panic!()
        };
        dev.refund(&provider_id).unwrap();
        assert!(dev.charges()[0].refunded);
    }
}
