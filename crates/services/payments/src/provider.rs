//! Payment providers: [`Stripe`] (PaymentIntents with manual capture, created and confirmed
//! server-side) and the [`Development`] provider, the default without `STRIPE_SECRET_KEY`,
//! which mirrors Stripe's test tokens (`tok_visa` succeeds, `tok_chargeDeclined` declines)
//! without any network.
//!
//! Money moves in two steps: [`Provider::authorize`] holds it on the card, then
//! [`Provider::capture`] takes it once the order is completed — or [`Provider::void`] releases
//! the hold when it is not. Every request carries an idempotency key, so repeating one (a retry,
//! a replay after a crash) never moves money twice.
//!
//! Sellers are paid out through connected accounts (Stripe Connect Express):
//! [`Provider::create_account`] once per seller, [`Provider::account_link`] for the onboarding
//! page, [`Provider::account`] for whether it can receive transfers, and
//! [`Provider::transfer`] to send a seller their money.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bt_contract::{Cents, OrderId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::{Answer, Charge};
use crate::ledger::{AccountStatus, Batch};

/// One authorisation to ask for: the stored charge, replayable as it is.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub amount: Cents,
    pub currency: String,
    /// The card token from the client (Stripe.js or a test token).
    pub token: String,
    /// `<order id>-<attempt>`.
    pub idempotency_key: String,
    pub order_id: OrderId,
    pub attempt: i64,
}

impl ChargeRequest {
    /// The request of a started charge; `None` once its token is gone (it was answered).
    pub fn of(charge: &Charge) -> Option<Self> {
        Some(Self {
            amount: charge.amount,
            currency: charge.currency.clone(),
            token: charge.token.clone()?,
            idempotency_key: charge.idempotency_key(),
            order_id: charge.order_id.clone(),
            attempt: charge.attempt,
        })
    }
}

/// Why the provider did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Refused for good (an unknown token, a hold that can no longer be captured): the
    /// message says why.
    #[error("{0}")]
    Invalid(String),
    /// Unreachable or failing; whether it happened is unknown — ask again with the same key.
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
    /// Holds the amount on the card (or declines).
    pub async fn authorize(&self, request: &ChargeRequest) -> Result<Answer, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.authorize(request).await,
            Self::Development(dev) => dev.authorize(request),
        }
    }

    /// Takes the held money. Idempotent; capturing a captured charge is done.
    pub async fn capture(&self, provider_id: &str) -> Result<(), ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.capture(provider_id).await,
            Self::Development(dev) => dev.capture(provider_id),
        }
    }

    /// Releases the hold; nothing is charged. Idempotent. `Invalid` when the money was taken
    /// meanwhile (then it must be refunded).
    pub async fn void(&self, provider_id: &str) -> Result<(), ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.void(provider_id).await,
            Self::Development(dev) => dev.void(provider_id),
        }
    }

    /// Gives back a whole captured charge. Idempotent.
    pub async fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.refund(provider_id).await,
            Self::Development(dev) => dev.refund(provider_id),
        }
    }

    /// Creates the connected account of `seller`, once: the idempotency key is the seller's.
    pub async fn create_account(&self, seller: &UserId) -> Result<ConnectedAccount, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.create_account(seller).await,
            Self::Development(dev) => Ok(dev.create_account(seller)),
        }
    }

    /// A one-time link to the provider's onboarding of connected account `account_id`; the
    /// seller comes back to `return_url` (or to `refresh_url` when the link expired). The
    /// development provider has no onboarding: `None`.
    pub async fn account_link(
        &self,
        account_id: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<Option<String>, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe
                .account_link(account_id, refresh_url, return_url)
                .await
                .map(Some),
            Self::Development(_) => Ok(None),
        }
    }

    /// What the provider says about connected account `account_id` now.
    pub async fn account(&self, account_id: &str) -> Result<ConnectedAccount, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.account(account_id).await,
            Self::Development(_) => Ok(ConnectedAccount {
                id: account_id.to_owned(),
                status: AccountStatus::Enabled,
            }),
        }
    }

    /// Sends `request.amount` to a connected account; the transfer's id. Idempotent by
    /// `request.idempotency_key`: asking again names the same transfer.
    pub async fn transfer(&self, request: &TransferRequest) -> Result<String, ProviderError> {
        match self {
            Self::Stripe(stripe) => stripe.transfer(request).await,
            Self::Development(dev) => Ok(dev.transfer(request)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Stripe(_) => "stripe",
            Self::Development(_) => "development",
        }
    }
}

/// A seller's connected account at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedAccount {
    pub id: String,
    pub status: AccountStatus,
}

/// One transfer to a seller: a batch of ledger entries, replayable as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// In cents, positive.
    pub amount: Cents,
    pub currency: String,
    /// The connected account.
    pub destination: String,
    /// The order of the batch's first credit (Stripe's `transfer_group`).
    pub transfer_group: String,
    /// `<credit id>-<attempt>`.
    pub idempotency_key: String,
}

impl TransferRequest {
    /// The transfer that pays `batch` to `destination`.
    pub fn of(batch: &Batch, destination: &str) -> Self {
        Self {
            amount: batch.amount,
            currency: batch.currency.clone(),
            destination: destination.to_owned(),
            transfer_group: batch.order_id.to_string(),
            idempotency_key: batch.key.clone(),
        }
    }
}

/// A transfer the development provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTransfer {
    pub id: String,
    pub request: TransferRequest,
}

/// Where a development charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevStatus {
    Authorized,
    Captured,
    Voided,
    Refunded,
}

/// A charge the development provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCharge {
    pub provider_id: String,
    pub amount: Cents,
    pub order_id: OrderId,
    pub status: DevStatus,
}

/// The development provider: Stripe's test tokens, in memory, idempotent like Stripe. Its ids
/// are derived from the idempotency key, so a replay after a restart names the same charge;
/// capture, void and refund of an id it no longer remembers (a restart) are accepted, since no
/// money is involved.
#[derive(Debug, Clone, Default)]
pub struct Development {
    state: Arc<Mutex<DevState>>,
}

#[derive(Debug, Default)]
struct DevState {
    by_key: HashMap<String, Answer>,
    charges: Vec<DevCharge>,
    transfers: Vec<DevTransfer>,
    transfer_requests: usize,
}

/// `<prefix><the first 24 hex digits of SHA-256(text)>`: ids that a replay after a restart
/// names again.
fn derived_id(prefix: &str, text: &str) -> String {
    format!(
        "{prefix}{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..24]
    )
}

impl Development {
    /// Stripe's message for a declined test card.
    pub const DECLINED: &'static str = "Your card was declined.";

    /// The PaymentIntent id this provider gives the charge of `idempotency_key` (`<order
    /// id>-<attempt>`): what a Stripe webhook about it names (e.g. a test that refunds a
    /// development charge "in the dashboard").
    pub fn intent_id(idempotency_key: &str) -> String {
        derived_id("pi_dev_", idempotency_key)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DevState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorize(&self, request: &ChargeRequest) -> Result<Answer, ProviderError> {
        let mut state = self.state();
        if let Some(answer) = state.by_key.get(&request.idempotency_key) {
            return Ok(answer.clone());
        }
        let answer = match request.token.as_str() {
            "tok_visa" | "tok_mastercard" | "tok_amex" | "tok_discover" | "tok_visa_debit" => {
                let provider_id = Self::intent_id(&request.idempotency_key);
                state.charges.push(DevCharge {
                    provider_id: provider_id.clone(),
                    amount: request.amount,
                    order_id: request.order_id.clone(),
                    status: DevStatus::Authorized,
                });
                Answer::Authorized { provider_id }
            }
            "tok_chargeDeclined" => Answer::Declined {
                message: Self::DECLINED.into(),
            },
            "tok_chargeDeclinedInsufficientFunds" => Answer::Declined {
                message: "Your card has insufficient funds.".into(),
            },
            "tok_chargeDeclinedExpiredCard" => Answer::Declined {
                message: "Your card has expired.".into(),
            },
            other => return Err(ProviderError::Invalid(format!("No such token: '{other}'"))),
        };
        state
            .by_key
            .insert(request.idempotency_key.clone(), answer.clone());
        Ok(answer)
    }

    /// Moves a known charge from one of `from` to `to`; `Invalid` from any other status.
    fn settle(
        &self,
        provider_id: &str,
        from: &[DevStatus],
        to: DevStatus,
    ) -> Result<(), ProviderError> {
        let mut state = self.state();
        let Some(charge) = state
            .charges
            .iter_mut()
            .find(|c| c.provider_id == provider_id)
        else {
            return Ok(());
        };
        if charge.status == to {
            return Ok(());
        }
        if !from.contains(&charge.status) {
            return Err(ProviderError::Invalid(format!(
                "This PaymentIntent is {:?}",
                charge.status
            )));
        }
        charge.status = to;
        Ok(())
    }

    fn capture(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.settle(provider_id, &[DevStatus::Authorized], DevStatus::Captured)
    }

    fn void(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.settle(provider_id, &[DevStatus::Authorized], DevStatus::Voided)
    }

    fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.settle(provider_id, &[DevStatus::Captured], DevStatus::Refunded)
    }

    /// Every charge made so far (for tests and the development console).
    pub fn charges(&self) -> Vec<DevCharge> {
        self.state().charges.clone()
    }

    /// A development account can receive transfers at once.
    fn create_account(&self, seller: &UserId) -> ConnectedAccount {
        ConnectedAccount {
            id: derived_id("acct_dev_", seller.as_str()),
            status: AccountStatus::Enabled,
        }
    }

    /// Instant, once per key (the id is derived from it).
    fn transfer(&self, request: &TransferRequest) -> String {
        let mut state = self.state();
        state.transfer_requests += 1;
        if let Some(done) = state
            .transfers
            .iter()
            .find(|t| t.request.idempotency_key == request.idempotency_key)
        {
            return done.id.clone();
        }
        let id = derived_id("tr_dev_", &request.idempotency_key);
        state.transfers.push(DevTransfer {
            id: id.clone(),
            request: request.clone(),
        });
        id
    }

    /// Every transfer made so far (for tests and the development console).
    pub fn transfers(&self) -> Vec<DevTransfer> {
        self.state().transfers.clone()
    }

    /// How many times a transfer was asked for (replays included).
    pub fn transfer_requests(&self) -> usize {
        self.state().transfer_requests
    }
}

/// A Stripe API client for PaymentIntents (manual capture) and refunds.
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

/// A connected account as Stripe answers it (the parts read).
#[derive(Debug, Deserialize)]
struct StripeAccount {
    id: String,
    #[serde(default)]
    details_submitted: bool,
    #[serde(default)]
    capabilities: HashMap<String, serde_json::Value>,
}

impl From<StripeAccount> for ConnectedAccount {
    fn from(account: StripeAccount) -> Self {
        let transfers = account
            .capabilities
            .get("transfers")
            .and_then(|v| v.as_str());
        Self {
            status: AccountStatus::from_stripe(transfers, account.details_submitted),
            id: account.id,
        }
    }
}

#[derive(Debug, Deserialize)]
struct AccountLink {
    url: String,
}

#[derive(Debug, Deserialize)]
struct StripeTransfer {
    id: String,
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
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Stripe names the PaymentIntent (with its status) in errors about its state.
    #[serde(default)]
    payment_intent: Option<IntentStatus>,
}

#[derive(Debug, Deserialize)]
struct IntentStatus {
    status: String,
}

impl StripeErrorBody {
    /// The status of the PaymentIntent an error is about, if Stripe named it.
    fn intent_status(&self) -> Option<&str> {
        if let Some(intent) = &self.payment_intent {
            return Some(intent.status.as_str());
        }
        let message = self.message.as_deref()?;
        ["succeeded", "canceled", "requires_capture"]
            .into_iter()
            .find(|status| message.contains(&format!("status of {status}")))
    }
}

impl Stripe {
    /// How long one HTTP request to Stripe may take.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// A client of the Stripe API at `base` (`https://api.stripe.com`, or a local server in tests).
    pub fn new(base: &str, secret_key: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Self::REQUEST_TIMEOUT)
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
        self.send(path, Some((form, idempotency_key))).await
    }

    /// GETs an object from Stripe, retrying like [`Stripe::post`].
    async fn get(&self, path: &str) -> Result<(u16, String), ProviderError> {
        self.send(path, None).await
    }

    async fn send(
        &self,
        path: &str,
        post: Option<(&[(&str, String)], &str)>,
    ) -> Result<(u16, String), ProviderError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            let request = match post {
                Some((form, idempotency_key)) => self
                    .http
                    .post(&url)
                    .header("Idempotency-Key", idempotency_key)
                    .form(form),
                None => self.http.get(&url),
            };
            let sent = request
                .bearer_auth(self.secret_key.expose_secret())
                .send()
                .await;
            match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    if status == 409 || status == 429 || status >= 500 {
                        tracing::debug!(
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
                    tracing::debug!(%err, path, attempt, "Stripe request failed");
                    last = err.to_string();
                }
            }
        }
        Err(ProviderError::Unavailable(last))
    }

    /// The answer of a PaymentIntent request (create or retrieve), or the error Stripe gave.
    fn read_error(status: u16, body: &str) -> (String, Option<StripeErrorBody>) {
        let error = serde_json::from_str::<StripeError>(body)
            .map(|e| e.error)
            .ok();
        let message = error
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        (message, error)
    }

    async fn authorize(&self, request: &ChargeRequest) -> Result<Answer, ProviderError> {
        let form = [
            ("amount", request.amount.get().to_string()),
            ("currency", request.currency.to_lowercase()),
            ("confirm", "true".to_owned()),
            ("capture_method", "manual".to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("payment_method_data[type]", "card".to_owned()),
            ("payment_method_data[card][token]", request.token.clone()),
            ("metadata[order_id]", request.order_id.to_string()),
            ("metadata[attempt]", request.attempt.to_string()),
            (
                "description",
                format!("BuyTicket order {}", request.order_id),
            ),
        ];
        let (status, body) = self
            .post("/v1/payment_intents", &form, &request.idempotency_key)
            .await?;
        if status == 200 {
            let intent: PaymentIntent = serde_json::from_str(&body).map_err(|e| {
                ProviderError::Unavailable(format!("unreadable PaymentIntent: {e}"))
            })?;
            let declined = |intent: PaymentIntent| Answer::Declined {
                message: intent
                    .last_payment_error
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| Development::DECLINED.into()),
            };
            return match intent.status.as_str() {
                "requires_capture" => Ok(Answer::Authorized { provider_id: intent.id }),
                "succeeded" => Ok(Answer::Captured { provider_id: intent.id }),
                "processing" => Ok(Answer::Processing { provider_id: intent.id }),
                "requires_action" => Ok(Answer::Declined {
                    message: "This card needs authentication, which checkout does not support; please use another card.".into(),
                }),
                "requires_payment_method" | "canceled" => Ok(declined(intent)),
                // Not what a confirmed PaymentIntent can be, or a status this version does not
                // know: never read as a decline or a payment; the attempt stays open and is
                // asked again.
                other => Err(ProviderError::Unavailable(format!(
                    "PaymentIntent {} has the unexpected status {other:?}",
                    intent.id
                ))),
            };
        }
        let (message, error) = Self::read_error(status, &body);
        match (status, error.as_ref().map(|e| e.kind.as_str())) {
            (402, _) | (_, Some("card_error")) => Ok(Answer::Declined { message }),
            (401 | 403, _) => {
                tracing::error!(status, "Stripe refused our API key");
                Err(ProviderError::Unavailable(message))
            }
            _ => Err(ProviderError::Invalid(message)),
        }
    }

    /// POSTs to an action of a PaymentIntent (`capture`, `cancel`); `done_status` is the status
    /// that means the action had happened already.
    async fn intent_action(
        &self,
        provider_id: &str,
        action: &str,
        done_status: &str,
    ) -> Result<(), ProviderError> {
        let path = format!("/v1/payment_intents/{provider_id}/{action}");
        let (status, body) = self
            .post(&path, &[], &format!("{action}-{provider_id}"))
            .await?;
        if status == 200 {
            return Ok(());
        }
        let (message, error) = Self::read_error(status, &body);
        match error.as_ref().and_then(|e| e.intent_status()) {
            Some(s) if s == done_status => Ok(()),
            _ => {
                let code = error.and_then(|e| e.code).unwrap_or_default();
                Err(ProviderError::Invalid(format!("{message} ({code})")))
            }
        }
    }

    async fn capture(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.intent_action(provider_id, "capture", "succeeded")
            .await
    }

    async fn void(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.intent_action(provider_id, "cancel", "canceled").await
    }

    /// An answer of the Connect API: the object of a 200, or the error Stripe gave (an
    /// unusable API key is an outage, logged at ERROR; anything else is refused).
    fn connect_answer<T: serde::de::DeserializeOwned>(
        what: &str,
        status: u16,
        body: &str,
    ) -> Result<T, ProviderError> {
        if status == 200 {
            return serde_json::from_str(body)
                .map_err(|e| ProviderError::Unavailable(format!("unreadable {what}: {e}")));
        }
        let (message, _) = Self::read_error(status, body);
        if status == 401 || status == 403 {
            tracing::error!(status, what, "Stripe refused our API key");
            return Err(ProviderError::Unavailable(message));
        }
        Err(ProviderError::Invalid(message))
    }

    async fn create_account(&self, seller: &UserId) -> Result<ConnectedAccount, ProviderError> {
        let form = [
            ("type", "express".to_owned()),
            ("capabilities[transfers][requested]", "true".to_owned()),
            ("metadata[user_id]", seller.to_string()),
        ];
        let (status, body) = self
            .post("/v1/accounts", &form, &format!("account-{seller}"))
            .await?;
        let account: StripeAccount = Self::connect_answer("account", status, &body)?;
        Ok(account.into())
    }

    async fn account_link(
        &self,
        account_id: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, ProviderError> {
        let form = [
            ("account", account_id.to_owned()),
            ("type", "account_onboarding".to_owned()),
            ("refresh_url", refresh_url.to_owned()),
            ("return_url", return_url.to_owned()),
        ];
        // A link is used once and expires: every request is a new one.
        let key = format!("account-link-{account_id}-{}", uuid::Uuid::now_v7());
        let (status, body) = self.post("/v1/account_links", &form, &key).await?;
        let link: AccountLink = Self::connect_answer("account link", status, &body)?;
        Ok(link.url)
    }

    async fn account(&self, account_id: &str) -> Result<ConnectedAccount, ProviderError> {
        let (status, body) = self.get(&format!("/v1/accounts/{account_id}")).await?;
        let account: StripeAccount = Self::connect_answer("account", status, &body)?;
        Ok(account.into())
    }

    async fn transfer(&self, request: &TransferRequest) -> Result<String, ProviderError> {
        let form = [
            ("amount", request.amount.get().to_string()),
            ("currency", request.currency.to_lowercase()),
            ("destination", request.destination.clone()),
            ("transfer_group", request.transfer_group.clone()),
            ("metadata[order_id]", request.transfer_group.clone()),
            (
                "description",
                format!("BuyTicket payout {}", request.idempotency_key),
            ),
        ];
        let (status, body) = self
            .post("/v1/transfers", &form, &request.idempotency_key)
            .await?;
        let transfer: StripeTransfer = Self::connect_answer("transfer", status, &body)?;
        Ok(transfer.id)
    }

    async fn refund(&self, provider_id: &str) -> Result<(), ProviderError> {
        let form = [("payment_intent", provider_id.to_owned())];
        let (status, body) = self
            .post("/v1/refunds", &form, &format!("refund-{provider_id}"))
            .await?;
        match status {
            200 => Ok(()),
            _ => {
                let (message, _) = Self::read_error(status, &body);
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

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
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
            dev.authorize(&request("tok_visa", "k1")),
            Ok(Answer::Authorized { .. })
        ));
        assert_eq!(
            dev.authorize(&request("tok_chargeDeclined", "k2")),
            Ok(Answer::Declined {
                message: "Your card was declined.".into()
            })
        );
        assert_eq!(
            dev.authorize(&request("tok_bogus", "k3")),
            Err(ProviderError::Invalid("No such token: 'tok_bogus'".into()))
        );
        assert_eq!(dev.charges().len(), 1);
    }

    #[test]
    fn the_development_provider_authorizes_once_per_key_with_an_id_from_the_key() {
        let dev = Development::default();
        let first = dev.authorize(&request("tok_visa", "o1-1")).unwrap();
        let again = dev.authorize(&request("tok_visa", "o1-1")).unwrap();
        assert_eq!(first, again);
        assert_eq!(dev.charges().len(), 1);
        let after_restart = Development::default()
            .authorize(&request("tok_visa", "o1-1"))
            .unwrap();
        assert_eq!(first, after_restart, "the id is derived from the key");
    }

    #[test]
    fn development_holds_are_captured_or_released_and_captures_refunded() {
        let dev = Development::default();
        let Answer::Authorized { provider_id } = dev.authorize(&request("tok_visa", "a")).unwrap()
        else {
            panic!()
        };
        dev.capture(&provider_id).unwrap();
        dev.capture(&provider_id).unwrap();
        assert!(
            dev.void(&provider_id).is_err(),
            "a captured charge is refunded, not voided"
        );
        dev.refund(&provider_id).unwrap();
        assert_eq!(dev.charges()[0].status, DevStatus::Refunded);
        let Answer::Authorized { provider_id } = dev.authorize(&request("tok_visa", "b")).unwrap()
        else {
            panic!()
        };
        dev.void(&provider_id).unwrap();
        assert!(dev.capture(&provider_id).is_err());
        assert_eq!(dev.charges()[1].status, DevStatus::Voided);
    }

    #[test]
    fn development_transfers_are_instant_and_made_once_per_key() {
        let dev = Development::default();
        let account = dev.create_account(&"seller".into());
        assert_eq!(account.status, AccountStatus::Enabled);
        assert_eq!(
            account,
            dev.create_account(&"seller".into()),
            "one per seller"
        );
        let request = TransferRequest {
            amount: Cents::new(1900),
            currency: "usd".into(),
            destination: account.id,
            transfer_group: "o1".into(),
            idempotency_key: "c1-1".into(),
        };
        let id = dev.transfer(&request);
        assert!(id.starts_with("tr_dev_"), "{id}");
        assert_eq!(dev.transfer(&request), id);
        assert_eq!(dev.transfers().len(), 1);
        let other = TransferRequest {
            idempotency_key: "c2-1".into(),
            ..request
        };
        assert_ne!(dev.transfer(&other), id);
        assert_eq!(dev.transfers().len(), 2);
    }
}
