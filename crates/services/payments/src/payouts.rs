//! Seller payouts (`docs/ARCHITECTURE.md` "Payouts"): the ledger is written inside the
//! transactions that move charges ([`record_sale`] when the charge that completed an order is
//! captured, [`reverse_sale`] when it is refunded), sellers get a payout account
//! ([`Payouts::onboard`]), and the payout worker ([`spawn`], [`Payouts::round`]) transfers
//! available credits to accounts that can receive them.
//!
//! The worker may run on every replica at once: a transfer is claimed by a conditional write
//! (`available` → `transferring` with its idempotency key, on rows locked per seller) committed
//! before the provider is called, so each entry is claimed once; a claim whose worker died (or
//! whose provider call failed) is replayed after its lease with the same key, which the
//! provider answers with the same transfer.

use std::sync::Arc;
use std::time::Duration;

use bt_contract::events::{OrderStatus, PaymentRefunded, SaleCredited};
use bt_contract::{ApiError, Cents, Millis, UserId};
use bt_platform::bus::Outbox;
use bt_platform::{Db, Runtime, Tx};
use tokio::sync::Notify;

use crate::domain::{Charge, ChargeState};
use crate::ledger::{
    AccountStatus, Balance, Batch, Credit, CreditStatus, EntryKind, LedgerRefusal,
    PayoutAccountStatus, PayoutRules, Reversal, Totals,
};
use crate::provider::{Provider, ProviderError, TransferRequest};
use crate::store::{self, PayoutAccount};

/// The web client's page of a seller's payouts: where the development provider's onboarding
/// "ends", and where Stripe's onboarding returns to (under the public URL).
pub const PAYOUTS_PAGE: &str = "/payouts";
/// How long a claimed transfer stays with the worker that claimed it before another replays
/// it (longer than a provider call with its retries).
pub const TRANSFER_LEASE: Duration = Duration::from_secs(60);
/// How often, at most, the worker asks the provider about an account that cannot receive
/// transfers yet (the `account.updated` webhook tells sooner).
pub const ACCOUNT_RECHECK: Duration = Duration::from_secs(60);
/// Sellers read at a time, and abandoned transfers replayed per round.
const BATCH: i64 = 100;

/// The payout settings.
#[derive(Debug, Clone)]
pub struct PayoutSettings {
    /// `SELLER_FEE_PERCENT` and `PAYOUT_DELAY_HOURS`.
    pub rules: PayoutRules,
    /// How often the payout worker runs (`PAYOUT_INTERVAL_SECONDS`).
    pub interval: Duration,
    /// The address sellers' browsers reach the site at (`PUBLIC_URL`, e.g.
    /// `https://buyticket.example.com`): Stripe's onboarding returns to `<it>/payouts`.
    pub public_url: Option<String>,
}

/// `PAYOUT_INTERVAL_SECONDS` by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

impl Default for PayoutSettings {
    fn default() -> Self {
        Self {
            rules: PayoutRules::default(),
            interval: DEFAULT_INTERVAL,
            public_url: None,
        }
    }
}

/// The payouts core, cheap to clone.
#[derive(Debug, Clone)]
pub struct Payouts {
    pub db: Db,
    pub provider: Provider,
    pub settings: PayoutSettings,
    /// Wakes the payout worker (a credit became available, an account became usable).
    pub wake: Arc<Notify>,
}

/// Why a payout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Refused(#[from] LedgerRefusal),
}

impl From<PayoutError> for ApiError {
    fn from(err: PayoutError) -> Self {
        match err {
            PayoutError::Database(err) => err.into(),
            PayoutError::Provider(ProviderError::Unavailable(_)) => {
                ApiError::retry_later("The payment provider is unavailable; please try again", 2)
            }
            PayoutError::NotConfigured(what) => {
                tracing::error!(what, "payouts are not configured");
                ApiError::Unavailable(format!("Payouts are not set up on this server: {what}"))
            }
            other => ApiError::internal(other),
        }
    }
}

/// What `GET /api/payouts` shows a seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// One page, newest first.
    pub entries: Vec<Credit>,
    /// The last entry of the page when older ones follow (where the next page starts).
    pub next: Option<String>,
    /// Over every entry, not only the page's.
    pub balance: Balance,
    pub totals: Totals,
    pub account: PayoutAccountStatus,
}

/// Which page of a seller's entries: at most `limit`, made before entry id `before` if given
/// (the previous page's `next`; any id will do, the seller's or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub before: Option<String>,
}

/// Keeps the sellers' ledger in step with the charges, inside their transactions.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub rules: PayoutRules,
    /// Wakes the payout worker (a credit was written available).
    pub wake: Arc<Notify>,
    /// Announces each credit (`sale.credited`, for the seller's sale notice) in its transaction.
    pub outbox: Outbox,
}

impl Ledger {
    /// Follows a charge just saved in `tx`, read as `before` and saved as `after`: its capture
    /// credits the seller of the order it completed ([`record_sale`]) and announces the credit
    /// (`sale.credited`); its refund, in full or in part, is taken back from that credit
    /// ([`reverse_sale`]), and money given back to the buyer is announced
    /// (`payment.refunded`). For a charge that did not change, `before` is `after`.
    pub async fn follow(
        &self,
        tx: &mut Tx,
        before: &Charge,
        after: &Charge,
        now: Millis,
    ) -> sqlx::Result<()> {
        let reversed = match after.state {
            ChargeState::Succeeded => {
                let credited = record_sale(tx, &self.rules, after, now).await?;
                // Refunded in part (before or after the credit was written).
                let reversed = if after.amount_refunded.get() > 0 {
                    reverse_sale(tx, after, now).await?
                } else {
                    None
                };
                if let Some(credit) = credited {
                    self.credited(tx, &credit).await?;
                }
                reversed
            }
            ChargeState::Refunding | ChargeState::Refunded => reverse_sale(tx, after, now).await?,
            _ => None,
        };
        self.announce_refund(tx, before, after, reversed.as_ref())
            .await
    }

    /// Announces a credit just written (`sale.credited`), and wakes the payout worker when it
    /// is payable at once.
    async fn credited(&self, tx: &mut Tx, credit: &Credit) -> sqlx::Result<()> {
        self.outbox
            .stage(
                tx,
                SaleCredited {
                    order_id: credit.order_id.clone(),
                    seller_id: credit.seller_id.clone(),
                    ticket_id: credit.ticket_id.clone(),
                    title: credit.title.clone(),
                    price: credit.gross,
                    fee: credit.fee,
                    amount: credit.amount,
                    available_at: credit.available_at,
                },
            )
            .await?;
        if credit.status == CreditStatus::Available {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Announces the money `after` gives back to the buyer beyond what `before` did
    /// (`payment.refunded`), with the part of it taken from `credit`, the sale's credit that
    /// [`reverse_sale`] brought to it (none for a sale that credited nobody). Nothing when
    /// nothing more is back.
    async fn announce_refund(
        &self,
        tx: &mut Tx,
        before: &Charge,
        after: &Charge,
        credit: Option<&Credit>,
    ) -> sqlx::Result<()> {
        let (was, is) = (before.given_back(), after.given_back());
        if is <= was {
            return Ok(());
        }
        let Some(order) = store::order_in(tx, &after.order_id).await? else {
            return Ok(());
        };
        self.outbox
            .stage(
                tx,
                PaymentRefunded {
                    id: after.id.clone(),
                    order_id: after.order_id.clone(),
                    user_id: order.user_id,
                    title: order.title,
                    price: after.amount,
                    refunded: is,
                    amount: Cents::new(is.get() - was.get()),
                    seller_id: credit.map(|c| c.seller_id.clone()),
                    seller_amount: credit.map(|c| {
                        Cents::new(
                            c.refund_split(is).amount.get() - c.refund_split(was).amount.get(),
                        )
                    }),
                },
            )
            .await?;
        Ok(())
    }
}

/// Credits the seller of the order that `charge` completed, when `charge` is captured: in the
/// transaction that records the capture. Idempotent (one credit per order). A sale without a
/// seller on record (replicated before this release) earns nothing and is logged. Answers the
/// credit written.
pub async fn record_sale(
    tx: &mut Tx,
    rules: &PayoutRules,
    charge: &Charge,
    now: Millis,
) -> sqlx::Result<Option<Credit>> {
    if charge.state != ChargeState::Succeeded {
        return Ok(None);
    }
    let Some(order) = store::order_in(tx, &charge.order_id).await? else {
        return Ok(None);
    };
    if order.status != OrderStatus::Complete || order.completed_by.as_ref() != Some(&charge.id) {
        return Ok(None);
    }
    let credit = match Credit::earn(&order, charge, rules, now) {
        Ok(credit) => credit,
        Err(err) => {
            tracing::warn!(order.id = %order.id, payment.id = %charge.id, amount = %charge.amount, %err, "a sale of an order placed before sellers were recorded: no seller credit (the money stays with the platform; see docs/ARCHITECTURE.md \"Payouts\")");
            metrics::counter!("payouts_unattributed_sales_total").increment(1);
            return Ok(None);
        }
    };
    if !store::insert_credit(tx, &credit).await? {
        return Ok(None);
    }
    metrics::counter!("payouts_credits_total").increment(1);
    tracing::info!(order.id = %credit.order_id, seller.id = %credit.seller_id, gross = %credit.gross, fee = %credit.fee, amount = %credit.amount, status = %credit.status, "seller credited");
    Ok(Some(credit))
}

/// Brings the ledger of the sale `charge` completed to what the buyer got back of it
/// ([`Charge::refunded_amount`]: all of it once refunding or refunded, or the partial refunds
/// so far), in the transaction that records the refund, under the lock of its order. Refunded
/// in full before anything was paid out, the credit (and any earlier reversal) is cancelled;
/// otherwise the part refunded since the last reversal is a new negative entry, which travels
/// with its credit while that is not paid out and is owed back (netted from the seller's next
/// payouts) once it is ([`Credit::refund`]). Idempotent. Answers the sale's credit (as read,
/// locked), if `charge` earned one.
pub async fn reverse_sale(
    tx: &mut Tx,
    charge: &Charge,
    now: Millis,
) -> sqlx::Result<Option<Credit>> {
    let Some(credit) = store::lock_entry_of_order(tx, &charge.order_id, EntryKind::Credit)
        .await?
        .filter(|credit| credit.payment_id == charge.id)
    else {
        return Ok(None);
    };
    let reversals = store::lock_reversals_of_order(tx, &charge.order_id).await?;
    let refunded = charge.refunded_amount();
    match credit.refund(&reversals, refunded, now) {
        Reversal::Cancelled(entries) => {
            for (cancelled, read) in &entries {
                if !store::save_credit(tx, cancelled, *read).await? {
                    return Err(sqlx::Error::Protocol(format!(
                        "ledger entry {} changed while it was locked",
                        cancelled.id
                    )));
                }
            }
            metrics::counter!("payouts_reversals_total").increment(1);
            tracing::info!(order.id = %credit.order_id, seller.id = %credit.seller_id, entries = entries.len(), "the sale was refunded before its payout: its credit is reversed");
        }
        Reversal::Entry(entry) => {
            if store::insert_credit(tx, &entry).await? {
                metrics::counter!("payouts_reversals_total").increment(1);
                if entry.available_at == credit.available_at && entry.status == credit.status {
                    tracing::info!(order.id = %entry.order_id, seller.id = %entry.seller_id, refunded = %refunded, amount = %entry.amount, "part of a sale was refunded before its payout: the seller's credit is reduced by it");
                } else {
                    tracing::warn!(order.id = %entry.order_id, seller.id = %entry.seller_id, refunded = %refunded, amount = %entry.amount, "a sale paid out to its seller was refunded: the seller owes it back from later payouts");
                }
            }
        }
        Reversal::Nothing => {}
    }
    Ok(Some(credit))
}

impl Payouts {
    /// The seller's payout account, created at the provider on first use; then the URL the
    /// seller goes to: Stripe's onboarding, or (development) the payouts page.
    pub async fn onboard(&self, seller: &UserId) -> Result<String, PayoutError> {
        // Stripe sends the seller back to this site: without its address, nothing is made.
        let public = match &self.provider {
            Provider::Development(_) => None,
            Provider::Stripe(_) => Some(
                self.settings
                    .public_url
                    .as_deref()
                    .ok_or(PayoutError::NotConfigured(
                        "PUBLIC_URL (where Stripe's onboarding sends sellers back) is not set",
                    ))?
                    .trim_end_matches('/'),
            ),
        };
        let account = match store::account(&self.db, seller).await? {
            Some(account) => account,
            None => {
                let made = self.provider.create_account(seller).await?;
                let now = Millis::now();
                store::insert_account(&self.db, seller, &made.id, made.status, now).await?;
                tracing::info!(seller.id = %seller, account = %made.id, status = %made.status, "payout account created");
                if made.status == AccountStatus::Enabled {
                    self.wake.notify_one();
                }
                store::account(&self.db, seller)
                    .await?
                    .ok_or(PayoutError::NotConfigured("the payout account vanished"))?
            }
        };
        let Some(public) = public else {
            return Ok(PAYOUTS_PAGE.to_owned());
        };
        let link = self
            .provider
            .account_link(
                &account.provider_account_id,
                &format!("{public}{PAYOUTS_PAGE}?onboarding=refresh"),
                &format!("{public}{PAYOUTS_PAGE}?onboarding=done"),
            )
            .await?;
        Ok(link.unwrap_or_else(|| PAYOUTS_PAGE.to_owned()))
    }

    /// A page of a seller's entries, with the balance and totals of all of them and the
    /// account, as of `now`, all read from one snapshot of the database.
    pub async fn statement(
        &self,
        seller: &UserId,
        page: &PageRequest,
        now: Millis,
    ) -> sqlx::Result<Statement> {
        // The page, the sums and the account as of one instant: a sale written meanwhile is
        // on all of them or on none.
        let mut snapshot = self.db.snapshot().await?;
        // One more than the page: whether older entries follow.
        let mut entries = store::credit_page(
            &mut snapshot,
            seller,
            page.limit + 1,
            page.before.as_deref(),
        )
        .await?;
        let next = if entries.len() as i64 > page.limit {
            entries.truncate(page.limit as usize);
            entries.last().map(|e| e.id.clone())
        } else {
            None
        };
        let sums = store::sums_of_seller(&mut snapshot, seller, now).await?;
        let account = store::account_in_snapshot(&mut snapshot, seller).await?;
        snapshot.end().await?;
        Ok(Statement {
            entries,
            next,
            balance: sums.balance,
            totals: sums.totals,
            account: AccountStatus::shown(account.map(|a| a.status)),
        })
    }

    /// Records what the provider says about a connected account (the `account.updated`
    /// webhook); false when no seller has it.
    pub async fn account_updated(
        &self,
        account_id: &str,
        status: AccountStatus,
        now: Millis,
    ) -> sqlx::Result<bool> {
        let known = store::set_account_status(&self.db, account_id, status, now).await?;
        if known {
            tracing::info!(account = %account_id, %status, "payout account updated");
            if status == AccountStatus::Enabled {
                self.wake.notify_one();
            }
        }
        Ok(known)
    }

    /// One round of the worker as of `now`: pending credits whose time has come become
    /// available, abandoned transfers are replayed, and every seller with available credits
    /// and a usable account is paid. Fails when anything failed (the rest is done regardless).
    pub async fn round(&self, now: Millis) -> Result<(), String> {
        let mut failed = Vec::new();
        let matured = store::mature_credits(&self.db, now)
            .await
            .map_err(|e| e.to_string())?;
        if matured > 0 {
            tracing::debug!(matured, "credits became available");
        }
        let abandoned = store::abandoned_transfers(&self.db, now, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let mut keys: Vec<String> = abandoned
            .into_iter()
            .filter_map(|c| c.transfer_key)
            .collect();
        keys.dedup();
        for key in keys {
            if let Err(err) = self.replay(&key, now).await {
                failed.push(format!("transfer {key} (replay): {err}"));
            }
        }
        // Every seller with something to pay and an account worth trying, page by page.
        let mut after = String::new();
        loop {
            let sellers =
                store::sellers_to_pay(&self.db, &after, now.minus(ACCOUNT_RECHECK), BATCH)
                    .await
                    .map_err(|e| e.to_string())?;
            for seller in &sellers {
                if let Err(err) = self.pay_seller(seller, now).await {
                    failed.push(format!("seller {seller}: {err}"));
                }
            }
            match sellers.last() {
                Some(last) if sellers.len() as i64 == BATCH => after = last.to_string(),
                _ => break,
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// The seller's account if it can receive transfers now, asking the provider again when
    /// the cached answer says no and is older than [`ACCOUNT_RECHECK`].
    async fn usable_account(
        &self,
        seller: &UserId,
        now: Millis,
    ) -> Result<Option<PayoutAccount>, PayoutError> {
        let Some(account) = store::account(&self.db, seller).await? else {
            return Ok(None);
        };
        if account.status == AccountStatus::Enabled {
            return Ok(Some(account));
        }
        if now.since(account.checked_at) < ACCOUNT_RECHECK {
            return Ok(None);
        }
        let fresh = self.provider.account(&account.provider_account_id).await?;
        store::set_account_status(&self.db, &fresh.id, fresh.status, now).await?;
        if fresh.status != account.status {
            tracing::info!(seller.id = %seller, account = %fresh.id, status = %fresh.status, "payout account status changed");
        }
        Ok(
            (fresh.status == AccountStatus::Enabled).then_some(PayoutAccount {
                status: fresh.status,
                checked_at: now,
                ..account
            }),
        )
    }

    /// Claims the transfers of a seller's available entries, then sends them.
    async fn pay_seller(&self, seller: &UserId, now: Millis) -> Result<(), PayoutError> {
        let Some(account) = self.usable_account(seller, now).await? else {
            tracing::debug!(seller.id = %seller, "available credits wait for a payout account that can receive them");
            return Ok(());
        };
        let mut tx = self.db.begin().await?;
        let available = store::lock_available_of(&mut tx, seller).await?;
        let batches = crate::ledger::plan(&available);
        if batches.is_empty() {
            tx.rollback().await?;
            return Ok(());
        }
        let lease_until = now.plus(TRANSFER_LEASE);
        for batch in &batches {
            for id in &batch.entries {
                let Some(entry) = available.iter().find(|e| &e.id == id) else {
                    continue;
                };
                let claimed = entry.clone().claim(&batch.key, lease_until, now)?;
                if !store::save_credit(&mut tx, &claimed, CreditStatus::Available).await? {
                    // Another worker (or a refund) got there first: plan again next round.
                    tx.rollback().await?;
                    return Ok(());
                }
            }
        }
        tx.commit().await?;
        let mut result = Ok(());
        for batch in &batches {
            if let Err(err) = self.send(batch, &account.provider_account_id, now).await {
                result = Err(err);
            }
        }
        result
    }

    /// Takes over an abandoned transfer and sends it again with its key.
    async fn replay(&self, key: &str, now: Millis) -> Result<(), PayoutError> {
        if store::take_transfer_lease(&self.db, key, now.plus(TRANSFER_LEASE), now).await? == 0 {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        let entries: Vec<Credit> = store::batch_in(&mut tx, key)
            .await?
            .into_iter()
            .filter(|e| e.status == CreditStatus::Transferring)
            .collect();
        tx.rollback().await?;
        let Some(batch) = Batch::claimed(&entries) else {
            return Ok(());
        };
        let seller = &entries[0].seller_id;
        let Some(account) = store::account(&self.db, seller).await? else {
            return Err(PayoutError::NotConfigured(
                "a claimed transfer's seller has no account",
            ));
        };
        tracing::info!(transfer.key = %key, seller.id = %seller, "replaying a transfer left unanswered");
        self.send(&batch, &account.provider_account_id, now).await
    }

    /// Asks the provider for the transfer of a claimed batch and records the answer.
    async fn send(&self, batch: &Batch, destination: &str, now: Millis) -> Result<(), PayoutError> {
        let answer = if batch.amount.get() == 0 {
            // Credits of nothing (a 100 % fee): recorded paid, nothing to send.
            Ok(None)
        } else {
            self.provider
                .transfer(&TransferRequest::of(batch, destination))
                .await
                .map(Some)
        };
        match answer {
            Ok(transfer_id) => {
                let mut tx = self.db.begin().await?;
                let mut paid = 0;
                for entry in store::batch_in(&mut tx, &batch.key).await? {
                    if entry.status != CreditStatus::Transferring {
                        continue;
                    }
                    let done = entry.paid(transfer_id.as_deref(), Millis::now().max(now))?;
                    if store::save_credit(&mut tx, &done, CreditStatus::Transferring).await? {
                        paid += 1;
                    }
                }
                tx.commit().await?;
                if paid > 0 {
                    metrics::counter!("payouts_transfers_total").increment(1);
                    tracing::info!(transfer.key = %batch.key, transfer.id = transfer_id.as_deref().unwrap_or("none"), amount = %batch.amount, entries = paid, "seller paid");
                }
                Ok(())
            }
            Err(ProviderError::Unavailable(reason)) => {
                // Replayed with the same key once the lease ends: now.
                store::release_transfer_lease(&self.db, &batch.key, now).await?;
                metrics::counter!("payouts_provider_unavailable_total").increment(1);
                Err(PayoutError::Provider(ProviderError::Unavailable(reason)))
            }
            Err(ProviderError::Invalid(reason)) => {
                self.refused(batch, &reason, now).await?;
                metrics::counter!("payouts_transfers_refused_total").increment(1);
                tracing::warn!(transfer.key = %batch.key, destination, amount = %batch.amount, %reason, "the provider refused a payout; the credits are available again");
                // The account may have lost its capability: ask again on the next round.
                if let Ok(fresh) = self.provider.account(destination).await {
                    store::set_account_status(&self.db, destination, fresh.status, now).await?;
                }
                Ok(())
            }
        }
    }

    /// Puts a refused batch back to `available` (a new transfer will have a new key). A credit
    /// refunded in full while it was being transferred was never paid after all: it and its
    /// reversals are cancelled when none of them was paid out meanwhile (otherwise they net).
    async fn refused(&self, batch: &Batch, reason: &str, now: Millis) -> Result<(), PayoutError> {
        let mut tx = self.db.begin().await?;
        let mut credits = Vec::new();
        for entry in store::batch_in(&mut tx, &batch.key).await? {
            if entry.status != CreditStatus::Transferring {
                continue;
            }
            let back = entry.refused(reason, now)?;
            if store::save_credit(&mut tx, &back, CreditStatus::Transferring).await?
                && back.kind == EntryKind::Credit
            {
                credits.push(back);
            }
        }
        // After the whole batch is back: a credit's reversals may be in it.
        for credit in credits {
            let reversals = store::lock_reversals_of_order(&mut tx, &credit.order_id).await?;
            let reversed: i64 = reversals
                .iter()
                .filter(|r| r.status != CreditStatus::Reversed)
                .map(|r| -r.gross.get())
                .sum();
            if let Reversal::Cancelled(entries) =
                credit.refund(&reversals, Cents::new(reversed), now)
            {
                for (cancelled, read) in &entries {
                    store::save_credit(&mut tx, cancelled, *read).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Starts the payout worker on `runtime`: a round every `interval` (sooner when woken), backing
/// off while rounds fail; it stops at shutdown.
pub fn spawn(payouts: Payouts, runtime: &Runtime) {
    let shutdown = runtime.shutdown.clone();
    runtime.tasks.spawn(async move {
        let mut failures: u32 = 0;
        loop {
            match payouts.round(Millis::now()).await {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(%err, "paying sellers failed; retrying");
                    } else {
                        tracing::debug!(%err, failures, "paying sellers failed again");
                    }
                }
            }
            let wait = payouts.settings.interval * failures.clamp(1, 10);
            tokio::select! {
                () = payouts.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    });
}
