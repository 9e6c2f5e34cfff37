//! [`MockStripe`]: a local server that speaks Stripe's wire format, for tests of the payments
//! service and of whole deployments (Stripe's servers cannot be reached from here).
//!
//! It checks what every request must carry (form-encoded body, `Authorization: Bearer`,
//! `Idempotency-Key`) and records violations; answers PaymentIntents with automatic or manual
//! capture, their `capture` and `cancel`, and refunds, in Stripe's JSON and error shapes; keeps
//! the answer of each idempotency key (a repeat with the same parameters replays it, with other
//! parameters is an error) and answers `409 idempotency_key_in_use` while a request with the key
//! is still being processed — as Stripe does.
//!
//! Tokens: `tok_visa` (and the other cards) succeed; `tok_chargeDeclined` declines; besides
//! Stripe's, [`FLAKY`], [`DOWN`], [`PROCESSING`], [`THREE_D_SECURE`], [`HELD`] and [`SLOW`].
//!
//! Connect: Express accounts (`POST /v1/accounts`, `GET /v1/accounts/:id`), onboarding links
//! (`POST /v1/account_links`) and transfers (`POST /v1/transfers`, refused to an account
//! whose `transfers` capability is not active). An account finishes its onboarding when the
//! test says so ([`MockStripe::complete_onboarding`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The secret key the mock accepts.
pub const SECRET_KEY: &str = "sk_test_123";

/// 500 on the first request of a key, then as `tok_visa`.
pub const FLAKY: &str = "tok_flaky";
/// Always 500.
pub const DOWN: &str = "tok_down";
/// 200 with status `processing`.
pub const PROCESSING: &str = "tok_processing";
/// 200 with status `requires_action`.
pub const THREE_D_SECURE: &str = "tok_threeDSecure2Required";
/// Answered as `tok_visa` once the test lets it through ([`MockStripe::release`]).
pub const HELD: &str = "tok_held";
/// Answered as `tok_visa` after 300 ms.
pub const SLOW: &str = "tok_slow";

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub idempotency_key: String,
    pub form: Form,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.form, name)
    }
}

/// A PaymentIntent the mock created (a distinct charge), with its current status.
#[derive(Debug, Clone)]
pub struct MockIntent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub order_id: String,
    pub attempt: String,
    /// `requires_capture`, `succeeded`, `canceled`, `processing`, `requires_action`.
    pub status: String,
    pub refunded: bool,
}

/// A connected account the mock created.
#[derive(Debug, Clone)]
pub struct MockAccount {
    pub id: String,
    /// `metadata[user_id]`.
    pub user_id: String,
    pub details_submitted: bool,
    /// The `transfers` capability: `inactive`, `pending` or `active`.
    pub transfers: String,
}

/// A transfer the mock made (a distinct one per idempotency key).
#[derive(Debug, Clone)]
pub struct MockTransfer {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    pub transfer_group: Option<String>,
    pub idempotency_key: String,
}

/// An onboarding link the mock handed out.
#[derive(Debug, Clone)]
pub struct MockAccountLink {
    pub account: String,
    pub url: String,
    pub refresh_url: String,
    pub return_url: String,
}

pub type Form = Vec<(String, String)>;

/// An answer kept for its idempotency key, with the parameters the key was first used with.
#[derive(Debug, Clone)]
struct StoredReply {
    path: String,
    form: Form,
    status: StatusCode,
    body: Value,
}

#[derive(Debug, Default)]
struct Ledger {
    requests: Vec<Seen>,
    /// What the client did wrong on the wire; every test expects none.
    violations: Vec<String>,
    replies: HashMap<String, StoredReply>,
    in_flight: HashSet<String>,
    failed_once: HashSet<String>,
    intents: Vec<MockIntent>,
    accounts: Vec<MockAccount>,
    transfers: Vec<MockTransfer>,
    links: Vec<MockAccountLink>,
}

/// A local Stripe API on 127.0.0.1:0, until the test ends.
#[derive(Clone)]
pub struct MockStripe {
    pub base: String,
    ledger: Arc<Mutex<Ledger>>,
    /// Holds [`HELD`] charges until the test adds a permit.
    gate: Arc<tokio::sync::Semaphore>,
    /// While set, every request fails with a 500 before doing anything (an outage).
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for MockStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockStripe")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

type Reply = (StatusCode, Json<Value>);

impl MockStripe {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut mock = Self {
            base: String::new(),
            ledger: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            down: Arc::default(),
        };
        mock.base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/v1/payment_intents", post(payment_intents))
            .route("/v1/payment_intents/{id}/capture", post(capture))
            .route("/v1/payment_intents/{id}/cancel", post(cancel))
            .route("/v1/refunds", post(refunds))
            .route("/v1/accounts", post(create_account))
            .route("/v1/accounts/{id}", get(retrieve_account))
            .route("/v1/account_links", post(account_links))
            .route("/v1/transfers", post(transfers))
            .with_state(mock.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.ledger().requests.clone()
    }

    /// Every PaymentIntent made, with its status now.
    pub fn intents(&self) -> Vec<MockIntent> {
        self.ledger().intents.clone()
    }

    /// PaymentIntents whose money was taken and not given back.
    pub fn captured(&self) -> Vec<MockIntent> {
        self.intents()
            .into_iter()
            .filter(|i| i.status == "succeeded" && !i.refunded)
            .collect()
    }

    /// Ids of the PaymentIntents refunded.
    pub fn refunds(&self) -> Vec<String> {
        self.intents()
            .into_iter()
            .filter(|i| i.refunded)
            .map(|i| i.id)
            .collect()
    }

    pub fn assert_wire_format_kept(&self) {
        let violations = self.ledger().violations.clone();
        assert!(
            violations.is_empty(),
            "Stripe wire format broken: {violations:#?}"
        );
    }

    /// Lets one held charge through.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    /// Starts (`true`) or ends an outage: every request fails with a 500 meanwhile.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every connected account made.
    pub fn accounts(&self) -> Vec<MockAccount> {
        self.ledger().accounts.clone()
    }

    /// Every transfer made.
    pub fn transfers(&self) -> Vec<MockTransfer> {
        self.ledger().transfers.clone()
    }

    /// Every onboarding link handed out.
    pub fn account_links(&self) -> Vec<MockAccountLink> {
        self.ledger().links.clone()
    }

    /// The seller finished the onboarding of account `id` and Stripe verified it: details
    /// submitted, `transfers` active. Answers the account as Stripe's JSON (the object of an
    /// `account.updated` event).
    pub fn complete_onboarding(&self, id: &str) -> Value {
        self.set_account(id, true, "active")
    }

    /// Sets what Stripe knows of account `id`; answers its JSON.
    pub fn set_account(&self, id: &str, details_submitted: bool, transfers: &str) -> Value {
        let mut ledger = self.ledger();
        let account = ledger
            .accounts
            .iter_mut()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("no account {id}"));
        account.details_submitted = details_submitted;
        account.transfers = transfers.to_owned();
        account_json(account)
    }

    /// Moves a PaymentIntent to `status`, as Stripe does on its own (a processing payment
    /// that completes; the test then sends the webhook that says so).
    pub fn set_status(&self, id: &str, status: &str) {
        let mut ledger = self.ledger();
        let intent = ledger
            .intents
            .iter_mut()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("no PaymentIntent {id}"));
        intent.status = status.to_owned();
    }
}

fn stripe_error(status: StatusCode, error: Value) -> Reply {
    (status, Json(json!({"error": error})))
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks what every Stripe request must carry; returns the idempotency key and the form.
fn check_request(
    mock: &MockStripe,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Form), Reply> {
    check(mock, path, headers, body, true)
}

/// The same for a GET, which carries no idempotency key (Stripe ignores one there).
fn check_get(mock: &MockStripe, path: &str, headers: &HeaderMap) -> Result<(), Reply> {
    check(mock, path, headers, &[], false).map(drop)
}

fn check(
    mock: &MockStripe,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    needs_key: bool,
) -> Result<(String, Form), Reply> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if mock.down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(stripe_error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"type": "api_error", "message": "Stripe is unavailable"}),
        ));
    }
    let mut ledger = mock.ledger();
    let content_type = header("content-type");
    if content_type != "application/x-www-form-urlencoded" && !body.is_empty() {
        ledger
            .violations
            .push(format!("{path}: Content-Type {content_type:?}"));
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "message": "Invalid request: expected a form-encoded body"}),
        ));
    }
    let authorization = header("authorization");
    let Some(key) = authorization.strip_prefix("Bearer ") else {
        ledger
            .violations
            .push(format!("{path}: Authorization {authorization:?}"));
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "You did not provide an API key."}),
        ));
    };
    if key != SECRET_KEY {
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}),
        ));
    }
    let idempotency_key = header("idempotency-key");
    if needs_key && idempotency_key.trim().is_empty() {
        ledger
            .violations
            .push(format!("{path}: no Idempotency-Key"));
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "message": "This test server requires an Idempotency-Key"}),
        ));
    }
    let text = std::str::from_utf8(body).unwrap_or_default();
    let form: Form = reqwest::Url::parse(&format!("http://form/?{text}"))
        .expect("a form body")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    ledger.requests.push(Seen {
        path: path.to_owned(),
        idempotency_key: idempotency_key.clone(),
        form: form.clone(),
    });
    Ok((idempotency_key, form))
}

/// What Stripe answers to a key it has seen: the stored answer (or an error when the parameters
/// differ), or 409 while the first request with the key is still being processed. `None` for a
/// new key, which is then marked in flight.
fn replay_or_begin(
    mock: &MockStripe,
    path: &str,
    key: &str,
    form: &[(String, String)],
) -> Option<Reply> {
    let mut ledger = mock.ledger();
    if let Some(stored) = ledger.replies.get(key).cloned() {
        if stored.form != form || stored.path != path {
            ledger.violations.push(format!(
                "idempotency key {key} reused with other parameters"
            ));
            return Some(stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}),
            ));
        }
        return Some((stored.status, Json(stored.body)));
    }
    if !ledger.in_flight.insert(key.to_owned()) {
        return Some(stripe_error(
            StatusCode::CONFLICT,
            json!({"type": "idempotency_error", "code": "idempotency_key_in_use", "message": "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please retry."}),
        ));
    }
    None
}

/// Keeps the answer for its key (Stripe does not keep answers of requests that failed with a
/// server error before executing).
fn finish(mock: &MockStripe, path: &str, key: &str, form: Form, reply: Reply) -> Reply {
    let (status, Json(body)) = reply;
    let mut ledger = mock.ledger();
    ledger.in_flight.remove(key);
    if !status.is_server_error() {
        ledger.replies.insert(
            key.to_owned(),
            StoredReply {
                path: path.to_owned(),
                form,
                status,
                body: body.clone(),
            },
        );
    }
    (status, Json(body))
}

fn intent_json(intent: &MockIntent) -> Value {
    json!({
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": if intent.status == "requires_capture" { intent.amount } else { 0 },
        "amount_received": if intent.status == "succeeded" { intent.amount } else { 0 },
        "currency": intent.currency,
        "status": intent.status,
        "latest_charge": format!("ch_for_{}", intent.id),
        "metadata": {"order_id": intent.order_id, "attempt": intent.attempt},
    })
}

async fn payment_intents(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let path = "/v1/payment_intents";
    let (key, form) = match check_request(&mock, path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, path, &key, &form) {
        return reply;
    }
    // Stripe finishes what it started even when the client hangs up (a crash): so does the
    // mock, on a task of its own.
    let task = tokio::spawn(async move {
        let reply = create_intent(&mock, &key, &form).await;
        finish(&mock, path, &key, form, reply)
    });
    task.await.unwrap_or_else(|e| {
        stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "api_error", "message": format!("mock failed: {e}")}),
        )
    })
}

async fn create_intent(mock: &MockStripe, key: &str, form: &[(String, String)]) -> Reply {
    let amount = param(form, "amount").and_then(|a| a.parse::<i64>().ok());
    let currency = param(form, "currency").unwrap_or_default().to_owned();
    let token = param(form, "payment_method_data[card][token]")
        .unwrap_or_default()
        .to_owned();
    let order_id = param(form, "metadata[order_id]")
        .unwrap_or_default()
        .to_owned();
    let attempt = param(form, "metadata[attempt]")
        .unwrap_or_default()
        .to_owned();
    let manual = match param(form, "capture_method") {
        None | Some("automatic") => false,
        Some("manual") => true,
        Some(other) => {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "message": format!("Invalid capture_method: {other}")}),
            );
        }
    };
    let mut missing = Vec::new();
    if amount.is_none_or(|a| a <= 0) {
        missing.push("amount (a positive integer of cents)");
    }
    if currency.len() != 3 || currency.to_lowercase() != currency {
        missing.push("currency (a lower-case ISO code)");
    }
    if param(form, "confirm") != Some("true") {
        missing.push("confirm=true");
    }
    if param(form, "payment_method_data[type]") != Some("card") || token.is_empty() {
        missing.push("payment_method_data[type]=card and payment_method_data[card][token]");
    }
    if order_id.is_empty() || attempt.is_empty() {
        missing.push("metadata[order_id] and metadata[attempt]");
    }
    if !missing.is_empty() {
        mock.ledger()
            .violations
            .push(format!("payment_intents without {missing:?}"));
        return stripe_error(
            StatusCode::BAD_REQUEST,
            json!({"type": "invalid_request_error", "code": "parameter_missing", "message": format!("Missing {missing:?}")}),
        );
    }
    let amount = amount.unwrap_or_default();
    if token == DOWN || (token == FLAKY && mock.ledger().failed_once.insert(key.to_owned())) {
        return stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "api_error", "message": "An unknown error occurred"}),
        );
    }
    if token == HELD {
        mock.gate.acquire().await.expect("gate").forget();
    }
    if token == SLOW {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let make = |status: &str| {
        let mut ledger = mock.ledger();
        let intent = MockIntent {
            id: format!("pi_mock_{}", ledger.intents.len() + 1),
            amount,
            currency: currency.clone(),
            order_id: order_id.clone(),
            attempt: attempt.clone(),
            status: status.to_owned(),
            refunded: false,
        };
        ledger.intents.push(intent.clone());
        (StatusCode::OK, Json(intent_json(&intent)))
    };
    let paid = if manual {
        "requires_capture"
    } else {
        "succeeded"
    };
    match token.as_str() {
        "tok_visa" | "tok_mastercard" | FLAKY | HELD | SLOW => make(paid),
        PROCESSING => make("processing"),
        THREE_D_SECURE => make("requires_action"),
        "tok_chargeDeclined" => stripe_error(
            StatusCode::PAYMENT_REQUIRED,
            json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "param": "",
            }),
        ),
        other => stripe_error(
            StatusCode::BAD_REQUEST,
            json!({
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "payment_method_data[card][token]",
                "message": format!("No such token: '{other}'"),
            }),
        ),
    }
}

/// Moves PaymentIntent `id` from `from` to `to`, or answers Stripe's state error.
fn transition(mock: &MockStripe, id: &str, action: &str, from: &str, to: &str) -> Reply {
    let mut ledger = mock.ledger();
    let Some(intent) = ledger.intents.iter_mut().find(|i| i.id == id) else {
        return stripe_error(
            StatusCode::NOT_FOUND,
            json!({"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payment_intent: '{id}'")}),
        );
    };
    if intent.status != from {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            json!({
                "type": "invalid_request_error",
                "code": "payment_intent_unexpected_state",
                "message": format!("This PaymentIntent could not be {action} because it has a status of {}.", intent.status),
                "payment_intent": intent_json(intent),
            }),
        );
    }
    intent.status = to.to_owned();
    (StatusCode::OK, Json(intent_json(intent)))
}

async fn capture(
    State(mock): State<MockStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let path = format!("/v1/payment_intents/{id}/capture");
    let (key, form) = match check_request(&mock, &path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, &path, &key, &form) {
        return reply;
    }
    let reply = transition(&mock, &id, "captured", "requires_capture", "succeeded");
    finish(&mock, &path, &key, form, reply)
}

async fn cancel(
    State(mock): State<MockStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let path = format!("/v1/payment_intents/{id}/cancel");
    let (key, form) = match check_request(&mock, &path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, &path, &key, &form) {
        return reply;
    }
    let reply = transition(&mock, &id, "canceled", "requires_capture", "canceled");
    finish(&mock, &path, &key, form, reply)
}

async fn refunds(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let path = "/v1/refunds";
    let (key, form) = match check_request(&mock, path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, path, &key, &form) {
        return reply;
    }
    let id = param(&form, "payment_intent")
        .unwrap_or_default()
        .to_owned();
    let reply = {
        let mut ledger = mock.ledger();
        match ledger.intents.iter_mut().find(|i| i.id == id) {
            None => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payment_intent: '{id}'")}),
            ),
            Some(intent) if intent.refunded => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "charge_already_refunded", "message": format!("Charge ch_for_{id} has already been refunded.")}),
            ),
            Some(intent) if intent.status != "succeeded" => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "payment_intent_unexpected_state", "message": format!("This PaymentIntent does not have a successful charge to refund (status {}).", intent.status)}),
            ),
            Some(intent) => {
                intent.refunded = true;
                (
                    StatusCode::OK,
                    Json(json!({
                        "id": format!("re_for_{id}"),
                        "object": "refund",
                        "amount": intent.amount,
                        "currency": intent.currency,
                        "payment_intent": id,
                        "status": "succeeded",
                    })),
                )
            }
        }
    };
    finish(&mock, path, &key, form, reply)
}

fn account_json(account: &MockAccount) -> Value {
    let active = account.transfers == "active";
    json!({
        "id": account.id,
        "object": "account",
        "type": "express",
        "details_submitted": account.details_submitted,
        "charges_enabled": false,
        "payouts_enabled": active,
        "capabilities": {"transfers": account.transfers},
        "metadata": {"user_id": account.user_id},
    })
}

fn invalid(message: String) -> Reply {
    stripe_error(
        StatusCode::BAD_REQUEST,
        json!({"type": "invalid_request_error", "message": message}),
    )
}

/// Records a client error that Stripe would refuse, and refuses it.
fn violation(mock: &MockStripe, message: String) -> Reply {
    mock.ledger().violations.push(message.clone());
    invalid(message)
}

async fn create_account(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let path = "/v1/accounts";
    let (key, form) = match check_request(&mock, path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, path, &key, &form) {
        return reply;
    }
    let reply = if param(&form, "type") != Some("express") {
        violation(
            &mock,
            format!("accounts: type {:?}, not express", param(&form, "type")),
        )
    } else if param(&form, "capabilities[transfers][requested]") != Some("true") {
        violation(
            &mock,
            "accounts: capabilities[transfers][requested]=true missing".into(),
        )
    } else {
        let mut ledger = mock.ledger();
        let account = MockAccount {
            id: format!("acct_mock_{}", ledger.accounts.len() + 1),
            user_id: param(&form, "metadata[user_id]")
                .unwrap_or_default()
                .to_owned(),
            details_submitted: false,
            transfers: "inactive".into(),
        };
        ledger.accounts.push(account.clone());
        (StatusCode::OK, Json(account_json(&account)))
    };
    finish(&mock, path, &key, form, reply)
}

fn no_such_account(id: &str) -> Reply {
    stripe_error(
        StatusCode::NOT_FOUND,
        json!({"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such account: '{id}'")}),
    )
}

async fn retrieve_account(
    State(mock): State<MockStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let path = format!("/v1/accounts/{id}");
    if let Err(reply) = check_get(&mock, &path, &headers) {
        return reply;
    }
    let ledger = mock.ledger();
    match ledger.accounts.iter().find(|a| a.id == id) {
        Some(account) => (StatusCode::OK, Json(account_json(account))),
        None => no_such_account(&id),
    }
}

fn is_absolute_url(url: Option<&str>) -> bool {
    url.and_then(|u| reqwest::Url::parse(u).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

async fn account_links(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let path = "/v1/account_links";
    let (key, form) = match check_request(&mock, path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, path, &key, &form) {
        return reply;
    }
    let account = param(&form, "account").unwrap_or_default().to_owned();
    let refresh_url = param(&form, "refresh_url");
    let return_url = param(&form, "return_url");
    let reply = if param(&form, "type") != Some("account_onboarding") {
        violation(
            &mock,
            format!("account_links: type {:?}", param(&form, "type")),
        )
    } else if !is_absolute_url(refresh_url) || !is_absolute_url(return_url) {
        violation(
            &mock,
            format!(
                "account_links: refresh_url {refresh_url:?} and return_url {return_url:?} must be absolute URLs"
            ),
        )
    } else if !mock.ledger().accounts.iter().any(|a| a.id == account) {
        no_such_account(&account)
    } else {
        let mut ledger = mock.ledger();
        let link = MockAccountLink {
            url: format!(
                "https://connect.stripe.com/setup/e/{account}/{}",
                ledger.links.len() + 1
            ),
            account,
            refresh_url: refresh_url.unwrap_or_default().to_owned(),
            return_url: return_url.unwrap_or_default().to_owned(),
        };
        ledger.links.push(link.clone());
        (
            StatusCode::OK,
            Json(json!({
                "object": "account_link",
                "url": link.url,
                "created": 1_800_000_000,
                "expires_at": 1_800_000_300,
            })),
        )
    };
    finish(&mock, path, &key, form, reply)
}

async fn transfers(State(mock): State<MockStripe>, headers: HeaderMap, body: Bytes) -> Reply {
    let path = "/v1/transfers";
    let (key, form) = match check_request(&mock, path, &headers, &body) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if let Some(reply) = replay_or_begin(&mock, path, &key, &form) {
        return reply;
    }
    let amount = param(&form, "amount").and_then(|a| a.parse::<i64>().ok());
    let currency = param(&form, "currency").unwrap_or_default().to_owned();
    let destination = param(&form, "destination").unwrap_or_default().to_owned();
    let reply = if amount.is_none_or(|a| a <= 0) {
        violation(
            &mock,
            format!(
                "transfers: amount {:?} is not a positive integer of cents",
                param(&form, "amount")
            ),
        )
    } else if currency.len() != 3 || currency.to_lowercase() != currency {
        violation(
            &mock,
            format!("transfers: currency {currency:?} is not a lower-case ISO code"),
        )
    } else {
        let mut ledger = mock.ledger();
        match ledger.accounts.iter().find(|a| a.id == destination) {
            None => stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "resource_missing", "param": "destination", "message": format!("No such destination: '{destination}'")}),
            ),
            Some(account) if account.transfers != "active" => invalid(
                "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments".into(),
            ),
            Some(_) => {
                let transfer = MockTransfer {
                    id: format!("tr_mock_{}", ledger.transfers.len() + 1),
                    amount: amount.unwrap_or_default(),
                    currency,
                    destination,
                    transfer_group: param(&form, "transfer_group").map(str::to_owned),
                    idempotency_key: key.clone(),
                };
                ledger.transfers.push(transfer.clone());
                (
                    StatusCode::OK,
                    Json(json!({
                        "id": transfer.id,
                        "object": "transfer",
                        "amount": transfer.amount,
                        "currency": transfer.currency,
                        "destination": transfer.destination,
                        "transfer_group": transfer.transfer_group,
                    })),
                )
            }
        }
    };
    finish(&mock, path, &key, form, reply)
}
