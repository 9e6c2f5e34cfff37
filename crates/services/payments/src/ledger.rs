//! The sellers' ledger as pure rules, tested without a database: the fee and the split of a
//! sale, when its credit becomes available, the life of a credit, which entries one transfer
//! pays, and a seller's balance.
//!
//! ```text
//!            (time passes)             (worker claims, key stored)   (provider answers)
//! pending ───────────────▶ available ─────────────────▶ transferring ──────────────▶ paid
//!    │                        │  ▲                           │                         │
//!    └──── refund ────────────┴──┼──▶ reversed               └──── refund ─────────────┴──▶ + a
//!                                └── refused for good ◀──────┘        negative `reversal` entry
//! ```
//!
//! Every entry holds `gross = amount + fee` exactly: the buyer's money (`gross`, the captured
//! charge) is the seller's `amount` plus the platform's `fee`. A reversal entry holds the same
//! three amounts negated, so sums over any set of entries keep the identity.

use std::time::Duration;

use bt_contract::{Cents, Millis, OrderId, PaymentId, TicketId, UserId};

pub use bt_contract::resources::{CreditStatus, EntryKind, PayoutAccountStatus};

use crate::domain::{Charge, PayableOrder};

bt_contract::text_enum! {
    /// Whether a seller's payout account can receive transfers (the provider's word, cached).
    pub enum AccountStatus {
        /// Created; the seller has not finished the provider's onboarding.
        Onboarding = "onboarding",
        /// Details submitted, but the provider does not let it receive transfers (yet).
        Restricted = "restricted",
        /// Receives transfers.
        Enabled = "enabled",
    }
}

impl AccountStatus {
    /// How `GET /api/payouts` shows a seller's account, or its absence.
    pub fn shown(status: Option<Self>) -> PayoutAccountStatus {
        match status {
            None => PayoutAccountStatus::None,
            Some(Self::Onboarding) => PayoutAccountStatus::Onboarding,
            Some(Self::Restricted) => PayoutAccountStatus::Restricted,
            Some(Self::Enabled) => PayoutAccountStatus::Enabled,
        }
    }

    /// A Stripe account's status from its `capabilities.transfers` and `details_submitted`:
    /// transfers need the `transfers` capability `active` (Stripe refuses a transfer to an
    /// account without it; `payouts_enabled` is about the seller's bank, later).
    pub fn from_stripe(transfers: Option<&str>, details_submitted: bool) -> Self {
        match (transfers, details_submitted) {
            (Some("active"), _) => Self::Enabled,
            (_, true) => Self::Restricted,
            (_, false) => Self::Onboarding,
        }
    }
}

/// The platform's fee, a whole percentage of the sale from 0 to 100 (`SELLER_FEE_PERCENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePercent(u8);

impl FeePercent {
    /// The default fee: 5 %.
    pub const DEFAULT: Self = Self(5);

    /// `None` above 100.
    pub const fn new(percent: u8) -> Option<Self> {
        if percent <= 100 {
            Some(Self(percent))
        } else {
            None
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    /// The fee on `gross`: this percentage of it, rounded half-up to the cent, in integer
    /// arithmetic (a negative amount gets the negated fee of its absolute value).
    pub fn fee_of(self, gross: Cents) -> Cents {
        let abs = i128::from(gross.get()).abs();
        let fee = (abs * i128::from(self.0) + 50) / 100;
        // fee ≤ |gross|, so it fits.
        let fee = i64::try_from(fee).unwrap_or(i64::MAX);
        Cents::new(if gross.get() < 0 { -fee } else { fee })
    }

    /// The split of a sale of `gross`: `gross = amount + fee`, to the cent.
    pub fn split(self, gross: Cents) -> Split {
        let fee = self.fee_of(gross);
        Split {
            gross,
            fee,
            amount: Cents::new(gross.get() - fee.get()),
        }
    }
}

impl Default for FeePercent {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the buyer's money of one sale is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// What the buyer paid (the captured charge).
    pub gross: Cents,
    /// The platform's fee.
    pub fee: Cents,
    /// The seller's credit.
    pub amount: Cents,
}

/// The payout rules in force (the settings `SELLER_FEE_PERCENT`, `PAYOUT_DELAY_HOURS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutRules {
    pub fee: FeePercent,
    /// How long after the sale a credit becomes available when the event's start is unknown.
    pub delay: Duration,
}

impl Default for PayoutRules {
    fn default() -> Self {
        Self {
            fee: FeePercent::DEFAULT,
            delay: DEFAULT_DELAY,
        }
    }
}

/// `PAYOUT_DELAY_HOURS` by default: 48 hours.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(48 * 3600);

impl PayoutRules {
    /// When a credit of a sale captured at `captured_at` becomes available: when the event
    /// starts (never before the sale itself), or `delay` after the sale without a known start.
    pub fn available_at(&self, starts_at: Option<Millis>, captured_at: Millis) -> Millis {
        match starts_at {
            Some(start) => start.max(captured_at),
            None => captured_at.plus(self.delay),
        }
    }
}

/// The sale has no seller on record (sold before this release): nothing to credit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {0} has no seller on record")]
pub struct Unattributed(pub OrderId);

/// Why a change of an entry does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerRefusal {
    #[error("entry {id} is {status}, not {expected}")]
    NotIn {
        id: String,
        status: CreditStatus,
        expected: CreditStatus,
    },
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Credit {
    pub id: String,
    pub seller_id: UserId,
    pub order_id: OrderId,
    pub kind: EntryKind,
    /// The charge whose capture earned it.
    pub payment_id: PaymentId,
    pub ticket_id: Option<TicketId>,
    pub title: Option<String>,
    pub gross: Cents,
    pub fee: Cents,
    pub amount: Cents,
    pub currency: String,
    pub status: CreditStatus,
    pub available_at: Millis,
    /// The provider idempotency key of the transfer that pays it (set when claimed).
    pub transfer_key: Option<String>,
    /// How many transfers were tried for it: the next key is `<id>-<attempts + 1>`.
    pub transfer_attempts: i64,
    pub transfer_id: Option<String>,
    pub lease_until: Millis,
    /// Why its last transfer was refused, for support.
    pub failure: Option<String>,
    pub paid_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a refund does to the ledger of its sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversal {
    /// Refunded in full before anything of it was paid out: the credit and its earlier
    /// reversals are now `reversed` (each with the status it was read in, for the conditional
    /// write).
    Cancelled(Vec<(Credit, CreditStatus)>),
    /// A negative entry for the part refunded since the last one. It travels with its credit
    /// while the credit is not paid out (same status, same `available_at`: both are paid in one
    /// net transfer); once the credit is paid out (or on its way), it is owed back, available at
    /// once and netted from the seller's next payouts.
    Entry(Box<Credit>),
    /// The ledger says this much is refunded already.
    Nothing,
}

/// Whether an entry's money has not left for the seller: it can still be cancelled.
fn unpaid(status: CreditStatus) -> bool {
    matches!(status, CreditStatus::Pending | CreditStatus::Available)
}

impl Credit {
    /// The credit of the seller of `order` for the capture of `charge` (the charge that
    /// completed it) at `now`.
    pub fn earn(
        order: &PayableOrder,
        charge: &Charge,
        rules: &PayoutRules,
        now: Millis,
    ) -> Result<Self, Unattributed> {
        let seller = order
            .seller_id
            .clone()
            .ok_or_else(|| Unattributed(order.id.clone()))?;
        let split = rules.fee.split(charge.amount);
        let available_at = rules.available_at(order.starts_at, now);
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            seller_id: seller,
            order_id: order.id.clone(),
            kind: EntryKind::Credit,
            payment_id: charge.id.clone(),
            ticket_id: order.ticket_id.clone(),
            title: order.title.clone(),
            gross: split.gross,
            fee: split.fee,
            amount: split.amount,
            currency: charge.currency.clone(),
            status: if available_at <= now {
                CreditStatus::Available
            } else {
                CreditStatus::Pending
            },
            available_at,
            transfer_key: None,
            transfer_attempts: 0,
            transfer_id: None,
            lease_until: Millis::EPOCH,
            failure: None,
            paid_at: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Its status as of `now`: a pending entry whose time has come is available (the worker
    /// writes it down on its next round).
    pub fn status_at(&self, now: Millis) -> CreditStatus {
        match self.status {
            CreditStatus::Pending if self.available_at <= now => CreditStatus::Available,
            other => other,
        }
    }

    fn expect(&self, expected: CreditStatus) -> Result<(), LedgerRefusal> {
        if self.status == expected {
            Ok(())
        } else {
            Err(LedgerRefusal::NotIn {
                id: self.id.clone(),
                status: self.status,
                expected,
            })
        }
    }

    /// A pending entry whose time has come becomes available.
    pub fn mature(mut self, now: Millis) -> Option<Self> {
        (self.status_at(now) == CreditStatus::Available && self.status == CreditStatus::Pending)
            .then(|| {
                self.status = CreditStatus::Available;
                self.updated_at = now;
                self
            })
    }

    /// The worker takes an available entry into the transfer with key `key`, leased to it
    /// until `lease_until`: written before the provider is asked, so that a crash replays the
    /// same key.
    pub fn claim(
        mut self,
        key: &str,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Self, LedgerRefusal> {
        self.expect(CreditStatus::Available)?;
        self.status = CreditStatus::Transferring;
        self.transfer_key = Some(key.to_owned());
        self.transfer_attempts += 1;
        self.lease_until = lease_until;
        self.updated_at = now;
        Ok(self)
    }

    /// The provider made transfer `transfer_id` (none for a batch of nothing to send).
    pub fn paid(mut self, transfer_id: Option<&str>, now: Millis) -> Result<Self, LedgerRefusal> {
        self.expect(CreditStatus::Transferring)?;
        self.status = CreditStatus::Paid;
        self.transfer_id = transfer_id.map(str::to_owned);
        self.failure = None;
        self.paid_at = Some(now);
        self.updated_at = now;
        Ok(self)
    }

    /// The provider refused the transfer for good: available again, for a new transfer (a new
    /// key: the provider keeps its refusal for the old one).
    pub fn refused(mut self, reason: &str, now: Millis) -> Result<Self, LedgerRefusal> {
        self.expect(CreditStatus::Transferring)?;
        self.status = CreditStatus::Available;
        self.transfer_key = None;
        self.failure = Some(reason.to_owned());
        self.lease_until = now;
        self.updated_at = now;
        Ok(self)
    }

    /// An entry that was never paid out is cancelled (`reversed`): a credit whose charge was
    /// refunded, or a reversal whose credit turned out never to have been paid.
    pub fn cancel(mut self, now: Millis) -> Result<Self, LedgerRefusal> {
        match self.status {
            CreditStatus::Pending | CreditStatus::Available => {
                self.status = CreditStatus::Reversed;
                self.updated_at = now;
                Ok(self)
            }
            _ => Err(LedgerRefusal::NotIn {
                id: self.id.clone(),
                status: self.status,
                expected: CreditStatus::Available,
            }),
        }
    }

    /// What the buyer gets back of this credit's sale when `refunded` of it (cents, all
    /// refunds so far) is refunded, split like the sale: the fee given back is the credit's
    /// fee in the same proportion, rounded half-up to the cent, and the seller gives back the
    /// rest. All of the gross gives back exactly the fee and the amount; a larger `refunded`
    /// counts as all of it.
    pub fn refund_split(&self, refunded: Cents) -> Split {
        let gross = i128::from(self.gross.get().max(0));
        let part = i128::from(refunded.get()).clamp(0, gross);
        let fee = if gross == 0 {
            0
        } else {
            (2 * i128::from(self.fee.get()) * part + gross) / (2 * gross)
        };
        // 0 ≤ fee ≤ part ≤ gross, which is an i64.
        let part = i64::try_from(part).unwrap_or(i64::MAX);
        let fee = i64::try_from(fee).unwrap_or(i64::MAX);
        Split {
            gross: Cents::new(part),
            fee: Cents::new(fee),
            amount: Cents::new(part - fee),
        }
    }

    /// This credit's sale has `refunded` (cents, all refunds so far; its whole gross or more
    /// for a full refund) given back to the buyer at `now`, and `reversals` are the sale's
    /// reversal entries so far. Brings the ledger to it: the entries of the sale that count sum
    /// to the credit less [`Credit::refund_split`] of `refunded`. Idempotent, and an older
    /// report (less refunded than the ledger has) changes nothing.
    pub fn refund(&self, reversals: &[Credit], refunded: Cents, now: Millis) -> Reversal {
        if self.kind != EntryKind::Credit || self.status == CreditStatus::Reversed {
            return Reversal::Nothing;
        }
        let counted: Vec<&Credit> = reversals
            .iter()
            .filter(|r| {
                r.kind == EntryKind::Reversal
                    && r.order_id == self.order_id
                    && r.status != CreditStatus::Reversed
            })
            .collect();
        let full = refunded >= self.gross;
        if full && unpaid(self.status) && counted.iter().all(|r| unpaid(r.status)) {
            let entries = std::iter::once(self)
                .chain(counted)
                .filter_map(|e| {
                    let read = e.status;
                    e.clone()
                        .cancel(now)
                        .ok()
                        .map(|cancelled| (cancelled, read))
                })
                .collect();
            return Reversal::Cancelled(entries);
        }
        let target = self.refund_split(refunded);
        let done = |field: fn(&Credit) -> Cents| -> i64 {
            counted.iter().map(|r| -field(r).get()).sum::<i64>()
        };
        let gross = target.gross.get() - done(|r| r.gross);
        if gross <= 0 {
            return Reversal::Nothing;
        }
        let fee = target.fee.get() - done(|r| r.fee);
        let (status, available_at) = if unpaid(self.status) {
            (self.status, self.available_at)
        } else {
            (CreditStatus::Available, now)
        };
        Reversal::Entry(Box::new(
            Self {
                kind: EntryKind::Reversal,
                gross: Cents::new(-gross),
                fee: Cents::new(-fee),
                amount: Cents::new(-(gross - fee)),
                status,
                available_at,
                ..self.clone()
            }
            .made_anew(now),
        ))
    }

    /// This entry as a new one made at `now`: a new id, never sent (no transfer, no lease, no
    /// failure, not paid).
    fn made_anew(self, now: Millis) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            transfer_key: None,
            transfer_attempts: 0,
            transfer_id: None,
            lease_until: Millis::EPOCH,
            failure: None,
            paid_at: None,
            created_at: now,
            updated_at: now,
            ..self
        }
    }
}

/// Entries paid by one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The provider idempotency key: `<first credit's id>-<its attempt>`.
    pub key: String,
    /// The ids of its entries.
    pub entries: Vec<String>,
    /// What the transfer sends: the sum of the entries' amounts (> 0, or 0 for credits of
    /// nothing, which are recorded paid without a transfer).
    pub amount: Cents,
    /// The order of the first credit (Stripe's `transfer_group`).
    pub order_id: OrderId,
    pub currency: String,
}

impl Batch {
    fn of(entries: &[&Credit]) -> Option<Self> {
        let head = entries
            .iter()
            .find(|e| e.kind == EntryKind::Credit && e.amount.get() >= 0)?;
        Some(Self {
            key: format!("{}-{}", head.id, head.transfer_attempts + 1),
            entries: entries.iter().map(|e| e.id.clone()).collect(),
            amount: Cents::new(entries.iter().map(|e| e.amount.get()).sum()),
            order_id: head.order_id.clone(),
            currency: head.currency.clone(),
        })
    }
}

impl Batch {
    /// The batch of entries claimed with one transfer key, as it was planned (to replay its
    /// transfer with the same parameters). `None` for no entries or entries of no key.
    pub fn claimed(entries: &[Credit]) -> Option<Self> {
        let key = entries.first()?.transfer_key.clone()?;
        let head_id = key.rsplit_once('-').map_or(key.as_str(), |(id, _)| id);
        let head = entries
            .iter()
            .find(|e| e.id == head_id)
            .or_else(|| entries.first())?;
        Some(Self {
            entries: entries.iter().map(|e| e.id.clone()).collect(),
            amount: Cents::new(entries.iter().map(|e| e.amount.get()).sum()),
            order_id: head.order_id.clone(),
            currency: head.currency.clone(),
            key,
        })
    }
}

/// The transfers that pay a seller's `available` entries (oldest first): one per credit while
/// the seller owes nothing; when the seller owes reversals, one transfer of the net total of
/// all of them — and none while that total is not positive (the debt waits for later credits).
/// Entries in another currency than the first one's wait for a transfer of their own.
pub fn plan(available: &[Credit]) -> Vec<Batch> {
    let Some(currency) = available.first().map(|e| e.currency.as_str()) else {
        return Vec::new();
    };
    let entries: Vec<&Credit> = available
        .iter()
        .filter(|e| e.status == CreditStatus::Available && e.currency == currency)
        .collect();
    let owes = entries.iter().any(|e| e.amount.get() < 0);
    if !owes {
        return entries
            .iter()
            .filter_map(|e| Batch::of(std::slice::from_ref(e)))
            .collect();
    }
    let total: i64 = entries.iter().map(|e| e.amount.get()).sum();
    if total <= 0 {
        return Vec::new();
    }
    Batch::of(&entries).into_iter().collect()
}

/// A seller's balance: sums of the `amount`s of the entries by where they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Earned, not yet payable.
    pub pending: Cents,
    /// Payable (negative while reversals exceed credits).
    pub available: Cents,
    /// Transferred, or being transferred.
    pub paid: Cents,
}

impl Balance {
    /// The balance of `entries` as of `now`; reversed credits count nowhere.
    pub fn of(entries: &[Credit], now: Millis) -> Self {
        let (mut pending, mut available, mut paid) = (0i64, 0i64, 0i64);
        for entry in entries {
            let amount = entry.amount.get();
            match entry.status_at(now) {
                CreditStatus::Pending => pending += amount,
                CreditStatus::Available => available += amount,
                CreditStatus::Transferring | CreditStatus::Paid => paid += amount,
                CreditStatus::Reversed => {}
            }
        }
        Self {
            pending: Cents::new(pending),
            available: Cents::new(available),
            paid: Cents::new(paid),
        }
    }
}

/// The sums of a seller's entries that count (all but the reversed ones), and how many are
/// reversed: the totals under the entries of the payouts page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// What the buyers paid.
    pub price: Cents,
    /// The platform's fees.
    pub fee: Cents,
    /// The seller's parts.
    pub amount: Cents,
    /// Entries left out: their sale was refunded before it was paid out.
    pub reversed: i64,
}

impl Totals {
    /// The totals of `entries`.
    pub fn of(entries: &[Credit]) -> Self {
        let counted = entries
            .iter()
            .filter(|e| e.status != CreditStatus::Reversed);
        let (mut price, mut fee, mut amount) = (0i64, 0i64, 0i64);
        for entry in counted {
            price += entry.gross.get();
            fee += entry.fee.get();
            amount += entry.amount.get();
        }
        Self {
            price: Cents::new(price),
            fee: Cents::new(fee),
            amount: Cents::new(amount),
            reversed: entries
                .iter()
                .filter(|e| e.status == CreditStatus::Reversed)
                .count() as i64,
        }
    }
}

/// A seller's balance and totals over every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sums {
    pub balance: Balance,
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use bt_contract::events::OrderStatus;

    use super::*;
    use crate::domain::ChargeState;

    fn at(ms: i64) -> Millis {
        Millis::new(1_800_000_000_000 + ms).unwrap()
    }

    const HOUR: i64 = 3_600_000;

    fn percent(p: u8) -> FeePercent {
        FeePercent::new(p).unwrap()
    }

    fn order(seller: Option<&str>, starts_at: Option<Millis>) -> PayableOrder {
        PayableOrder {
            id: "o1".into(),
            user_id: "buyer".into(),
            price: Cents::new(2000),
            status: OrderStatus::Complete,
            version: 1,
            expires_at: at(0),
            cancel_reason: None,
            completed_by: Some("p1".into()),
            ticket_id: Some("t1".into()),
            title: Some("Concert".into()),
            seller_id: seller.map(UserId::from),
            starts_at,
        }
    }

    fn charge(cents: i64) -> Charge {
        Charge {
            id: "p1".into(),
            order_id: "o1".into(),
            attempt: 1,
            state: ChargeState::Succeeded,
            amount: Cents::new(cents),
            currency: "usd".into(),
            token: None,
            provider_id: Some("pi_1".into()),
            failure: None,
            lease_until: at(0),
            amount_refunded: Cents::new(0),
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn credit(cents: i64, starts_at: Option<Millis>) -> Credit {
        Credit::earn(
            &order(Some("seller"), starts_at),
            &charge(cents),
            &PayoutRules::default(),
            at(0),
        )
        .unwrap()
    }

    fn available(cents: i64) -> Credit {
        credit(cents, Some(at(0)))
    }

    #[test]
    fn the_fee_is_the_percentage_rounded_half_up_to_the_cent() {
        let five = percent(5);
        let cases = [
            (1, 0),                   // 0.05 cent
            (5, 0),                   // 0.25
            (9, 0),                   // 0.45
            (10, 1),                  // 0.5 → up
            (11, 1),                  // 0.55
            (29, 1),                  // 1.45
            (30, 2),                  // 1.5 → up
            (1999, 100),              // 99.95 → 100
            (100_000_000, 5_000_000), // 1,000,000.00
            (0, 0),
        ];
        for (gross, fee) in cases {
            assert_eq!(five.fee_of(Cents::new(gross)), Cents::new(fee), "{gross}");
        }
        assert_eq!(percent(0).fee_of(Cents::new(1999)), Cents::new(0));
        assert_eq!(percent(100).fee_of(Cents::new(1999)), Cents::new(1999));
        assert_eq!(percent(33).fee_of(Cents::new(150)), Cents::new(50)); // 49.5 → 50
        assert_eq!(five.fee_of(Cents::new(-1999)), Cents::new(-100));
    }

    #[test]
    fn a_split_accounts_for_every_cent() {
        for p in [0u8, 1, 5, 7, 33, 50, 99, 100] {
            for gross in (0..3000).chain([99_999_999, 100_000_000]) {
                let split = percent(p).split(Cents::new(gross));
                assert_eq!(split.gross.get(), split.amount.get() + split.fee.get());
                assert!(
                    split.fee.get() >= 0 && split.amount.get() >= 0,
                    "{p}% of {gross}"
                );
            }
        }
        let split = percent(5).split(Cents::new(1999));
        assert_eq!(
            (split.fee, split.amount),
            (Cents::new(100), Cents::new(1899))
        );
    }

    #[test]
    fn fee_percentages_above_100_are_refused() {
        assert_eq!(FeePercent::new(100).map(FeePercent::get), Some(100));
        assert_eq!(FeePercent::new(101), None);
        assert_eq!(FeePercent::default().get(), 5);
    }

    #[test]
    fn a_credit_is_available_when_the_event_starts_or_after_the_delay() {
        let rules = PayoutRules {
            fee: percent(5),
            delay: Duration::from_secs(48 * 3600),
        };
        assert_eq!(
            rules.available_at(Some(at(10 * HOUR)), at(0)),
            at(10 * HOUR)
        );
        assert_eq!(rules.available_at(None, at(0)), at(48 * HOUR));
        assert_eq!(
            rules.available_at(Some(at(-HOUR)), at(0)),
            at(0),
            "an event that started already: available at the sale"
        );

        let later = credit(2000, Some(at(10 * HOUR)));
        assert_eq!(later.status, CreditStatus::Pending);
        assert_eq!(later.status_at(at(10 * HOUR - 1)), CreditStatus::Pending);
        assert_eq!(later.status_at(at(10 * HOUR)), CreditStatus::Available);
        assert_eq!(later.clone().mature(at(10 * HOUR - 1)), None);
        assert_eq!(
            later.mature(at(10 * HOUR)).map(|c| c.status),
            Some(CreditStatus::Available)
        );
        assert_eq!(
            credit(2000, Some(at(-HOUR))).status,
            CreditStatus::Available
        );
        assert_eq!(credit(2000, None).available_at, at(48 * HOUR));
    }

    #[test]
    fn a_credit_is_the_sellers_part_of_the_captured_amount() {
        let credit = credit(1999, None);
        assert_eq!(credit.seller_id, "seller");
        assert_eq!(credit.kind, EntryKind::Credit);
        assert_eq!(credit.payment_id, "p1");
        assert_eq!(credit.ticket_id, Some("t1".into()));
        assert_eq!(credit.title.as_deref(), Some("Concert"));
        assert_eq!(
            (credit.gross, credit.fee, credit.amount),
            (Cents::new(1999), Cents::new(100), Cents::new(1899))
        );
    }

    #[test]
    fn a_sale_without_a_seller_on_record_earns_no_credit() {
        assert_eq!(
            Credit::earn(
                &order(None, None),
                &charge(2000),
                &PayoutRules::default(),
                at(0)
            ),
            Err(Unattributed("o1".into()))
        );
    }

    #[test]
    fn a_credit_is_claimed_then_paid_or_refused_and_claimed_again_with_a_new_key() {
        let credit = available(2000);
        let id = credit.id.clone();
        let batch = &plan(std::slice::from_ref(&credit))[0];
        assert_eq!(batch.key, format!("{id}-1"));
        let claimed = credit.claim(&batch.key, at(60_000), at(1)).unwrap();
        assert_eq!(claimed.status, CreditStatus::Transferring);
        assert_eq!(claimed.transfer_key.as_deref(), Some(batch.key.as_str()));
        assert!(
            claimed.clone().claim("again", at(0), at(2)).is_err(),
            "claimed once"
        );

        let paid = claimed.clone().paid(Some("tr_1"), at(5)).unwrap();
        assert_eq!(paid.status, CreditStatus::Paid);
        assert_eq!(
            (paid.transfer_id.as_deref(), paid.paid_at),
            (Some("tr_1"), Some(at(5)))
        );
        assert!(paid.clone().paid(Some("tr_2"), at(6)).is_err());

        let refused = claimed.refused("no account", at(5)).unwrap();
        assert_eq!(refused.status, CreditStatus::Available);
        assert_eq!(refused.failure.as_deref(), Some("no account"));
        assert_eq!(plan(&[refused])[0].key, format!("{id}-2"), "a new key");
    }

    /// `credit`'s sale refunded in full at `now`, with no earlier reversal.
    fn refund_all(credit: &Credit, now: Millis) -> Reversal {
        credit.refund(&[], credit.gross, now)
    }

    /// `credit` claimed and paid.
    fn paid_out(credit: Credit) -> Credit {
        credit
            .claim("k", at(9), at(1))
            .unwrap()
            .paid(Some("tr_1"), at(2))
            .unwrap()
    }

    /// The new entry of a reversal (panics otherwise).
    fn entry(reversal: Reversal) -> Credit {
        match reversal {
            Reversal::Entry(entry) => *entry,
            other => panic!("expected a new entry, got {other:?}"),
        }
    }

    /// The entries a reversal cancels, as they are after it (panics otherwise).
    fn cancelled(reversal: Reversal) -> Vec<Credit> {
        match reversal {
            Reversal::Cancelled(entries) => entries.into_iter().map(|(e, _)| e).collect(),
            other => panic!("expected cancelled entries, got {other:?}"),
        }
    }

    fn amounts(entry: &Credit) -> (i64, i64, i64) {
        (entry.gross.get(), entry.fee.get(), entry.amount.get())
    }

    #[test]
    fn a_refund_cancels_an_unpaid_credit_and_owes_back_a_paid_one() {
        let pending = credit(2000, None);
        let Reversal::Cancelled(entries) = refund_all(&pending, at(1)) else {
            panic!("a pending credit is cancelled")
        };
        let [(reversed, read)] = entries.as_slice() else {
            panic!("only the credit: {entries:?}")
        };
        assert_eq!(
            (reversed.status, *read),
            (CreditStatus::Reversed, CreditStatus::Pending)
        );
        assert_eq!(refund_all(reversed, at(2)), Reversal::Nothing);
        assert!(matches!(
            refund_all(&available(2000), at(1)),
            Reversal::Cancelled(_)
        ));

        let paid = paid_out(available(2000));
        let owed = entry(refund_all(&paid, at(3)));
        assert_eq!(owed.kind, EntryKind::Reversal);
        assert_eq!(
            (owed.status, owed.available_at),
            (CreditStatus::Available, at(3))
        );
        assert_eq!(amounts(&owed), (-2000, -100, -1900));
        assert_eq!(
            (owed.order_id.clone(), owed.payment_id.clone()),
            (paid.order_id.clone(), paid.payment_id.clone())
        );
        assert_ne!(owed.id, paid.id);
        assert_eq!(
            paid.refund(std::slice::from_ref(&owed), paid.gross, at(4)),
            Reversal::Nothing,
            "the same refund again"
        );
        assert_eq!(
            refund_all(&owed, at(4)),
            Reversal::Nothing,
            "a reversal is not reversed"
        );
        let transferring = available(2000).claim("k", at(9), at(1)).unwrap();
        assert!(matches!(
            refund_all(&transferring, at(2)),
            Reversal::Entry(_)
        ));
    }

    #[test]
    fn a_partial_refund_gives_back_the_fee_in_proportion_to_the_cent() {
        // 2000 at 5 %: fee 100, amount 1900.
        let sale = credit(2000, None);
        let cases = [
            (0, 0),      // nothing
            (1, 0),      // 0.05 cent of fee
            (10, 1),     // 0.5 → up
            (500, 25),   // a quarter
            (1999, 100), // 99.95 → 100
            (2000, 100), // all of it
            (5000, 100), // more than all counts as all
            (-300, 0),   // nonsense counts as nothing
        ];
        for (refunded, fee) in cases {
            let split = sale.refund_split(Cents::new(refunded));
            assert_eq!(split.fee.get(), fee, "{refunded}");
            assert_eq!(split.gross.get(), refunded.clamp(0, 2000));
            assert_eq!(split.gross.get(), split.amount.get() + split.fee.get());
        }
        // Every cent of every sale, at every fee: the parts never shrink as refunds add up,
        // and all of it gives back exactly the credit.
        for p in [0u8, 1, 5, 33, 50, 99, 100] {
            for gross in [1i64, 3, 7, 10, 99, 1999] {
                let rules = PayoutRules {
                    fee: percent(p),
                    ..PayoutRules::default()
                };
                let sale =
                    Credit::earn(&order(Some("seller"), None), &charge(gross), &rules, at(0))
                        .unwrap();
                let mut last = sale.refund_split(Cents::new(0));
                for refunded in 1..=gross {
                    let split = sale.refund_split(Cents::new(refunded));
                    assert!(
                        split.fee >= last.fee && split.amount >= last.amount,
                        "{p}% of {gross}, {refunded} refunded: {split:?} after {last:?}"
                    );
                    assert!(split.fee <= sale.fee && split.amount <= sale.amount);
                    last = split;
                }
                assert_eq!((last.fee, last.amount), (sale.fee, sale.amount));
            }
        }
    }

    #[test]
    fn partial_refunds_travel_with_an_unpaid_credit_and_the_full_refund_cancels_them_all() {
        let sale = credit(2000, Some(at(10 * HOUR)));
        let first = entry(sale.refund(&[], Cents::new(500), at(1)));
        assert_eq!(amounts(&first), (-500, -25, -475));
        assert_eq!(
            (first.kind, first.status, first.available_at),
            (EntryKind::Reversal, CreditStatus::Pending, at(10 * HOUR)),
            "paid (or not) with its credit"
        );
        let so_far = [first.clone()];
        // The same report again, or an older one: nothing.
        assert_eq!(
            sale.refund(&so_far, Cents::new(500), at(2)),
            Reversal::Nothing
        );
        assert_eq!(
            sale.refund(&so_far, Cents::new(300), at(2)),
            Reversal::Nothing
        );
        // 800 in all: the 300 since.
        let second = entry(sale.refund(&so_far, Cents::new(800), at(3)));
        assert_eq!(amounts(&second), (-300, -15, -285));
        let so_far = [first.clone(), second.clone()];
        assert_eq!(
            Balance::of(&[sale.clone(), first.clone(), second.clone()], at(4)).pending,
            Cents::new(1900 - 475 - 285)
        );
        // All of it: the credit and both reversals are cancelled, nothing is owed.
        let gone = cancelled(sale.refund(&so_far, Cents::new(2000), at(5)));
        assert_eq!(
            gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            [sale.id.as_str(), first.id.as_str(), second.id.as_str()]
        );
        assert!(gone.iter().all(|e| e.status == CreditStatus::Reversed));
        assert_eq!(Balance::of(&gone, at(6)), Balance::default());
    }

    #[test]
    fn partial_refunds_after_the_payout_are_owed_back_and_add_up_to_the_credit() {
        let paid = paid_out(available(1999));
        let first = entry(paid.refund(&[], Cents::new(1000), at(3)));
        assert_eq!(
            (first.status, first.available_at),
            (CreditStatus::Available, at(3)),
            "owed at once"
        );
        assert_eq!(amounts(&first), (-1000, -50, -950)); // 50.03 → 50
        let rest = entry(paid.refund(std::slice::from_ref(&first), paid.gross, at(4)));
        assert_eq!(amounts(&rest), (-999, -50, -949));
        let entries = [paid.clone(), first, rest];
        assert_eq!(
            Totals::of(&entries),
            Totals {
                price: Cents::new(0),
                fee: Cents::new(0),
                amount: Cents::new(0),
                reversed: 0,
            },
            "every cent given back"
        );
        assert_eq!(
            paid.refund(&entries[1..], paid.gross, at(5)),
            Reversal::Nothing
        );
    }

    #[test]
    fn a_full_refund_after_a_partial_one_was_netted_owes_only_the_rest() {
        // The credit was being transferred when part of it was refunded: that reversal was
        // owed at once and netted with another sale; then the transfer was refused for good
        // and the credit is available again.
        let transferring = available(2000).claim("k", at(9), at(1)).unwrap();
        let partial = entry(transferring.refund(&[], Cents::new(500), at(2)));
        assert_eq!(partial.status, CreditStatus::Available);
        let netted = paid_out(partial);
        let back = transferring.refused("no account", at(3)).unwrap();
        let rest = entry(back.refund(std::slice::from_ref(&netted), Cents::new(2000), at(4)));
        assert_eq!(amounts(&rest), (-1500, -75, -1425));
        assert_eq!(
            (rest.status, rest.available_at),
            (CreditStatus::Available, back.available_at),
            "with its credit, which is not paid out"
        );
        let entries = [back, netted, rest];
        assert_eq!(Totals::of(&entries).price, Cents::new(0));
    }

    #[test]
    fn without_debts_every_credit_is_a_transfer_of_its_own() {
        let (a, b) = (available(2000), available(1000));
        let batches = plan(&[a.clone(), b.clone()]);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].entries, std::slice::from_ref(&a.id));
        assert_eq!(batches[0].amount, a.amount);
        assert_eq!(batches[0].order_id, "o1");
        assert_eq!(batches[1].entries, [b.id]);
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn debts_are_netted_and_nothing_is_sent_while_the_total_is_not_positive() {
        let debt = entry(refund_all(&paid_out(available(2000)), at(3)));
        // -1900 owed; a credit of 950 is not enough.
        let small = available(1000);
        assert!(plan(&[debt.clone(), small.clone()]).is_empty());
        assert!(plan(std::slice::from_ref(&debt)).is_empty());
        // With another 2000 (1900 net), one transfer of 950 + 1900 − 1900.
        let big = available(2000);
        let batches = plan(&[debt.clone(), small.clone(), big.clone()]);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].amount, Cents::new(950));
        assert_eq!(batches[0].entries, [debt.id, small.id.clone(), big.id]);
        assert_eq!(
            batches[0].key,
            format!("{}-1", small.id),
            "keyed by its first credit"
        );
    }

    #[test]
    fn a_claimed_batch_is_replayed_with_the_parameters_it_was_planned_with() {
        let (a, b) = (available(5000), available(1000));
        let debt = entry(refund_all(&paid_out(available(3000)), at(3)));
        let entries = [debt, b, a];
        let planned = plan(&entries).remove(0);
        let claimed: Vec<Credit> = entries
            .into_iter()
            .map(|e| e.claim(&planned.key, at(60), at(4)).unwrap())
            .collect();
        assert_eq!(Batch::claimed(&claimed), Some(planned));
        assert_eq!(Batch::claimed(&[]), None);
    }

    #[test]
    fn only_an_unpaid_entry_can_be_cancelled() {
        assert_eq!(
            available(2000).cancel(at(1)).unwrap().status,
            CreditStatus::Reversed
        );
        let claimed = available(2000).claim("k", at(9), at(1)).unwrap();
        assert!(claimed.cancel(at(2)).is_err());
    }

    #[test]
    fn a_balance_sums_entries_by_where_they_stand_now() {
        let pending = credit(1000, Some(at(10 * HOUR)));
        let available = available(2000);
        let paid = paid_out(super::tests::available(3000));
        let debt = entry(refund_all(&paid, at(3)));
        let reversed = cancelled(refund_all(&super::tests::available(500), at(3))).remove(0);
        let entries = [pending, available, paid, debt, reversed];
        assert_eq!(
            Balance::of(&entries, at(4)),
            Balance {
                pending: Cents::new(950),
                available: Cents::new(1900 - 2850),
                paid: Cents::new(2850),
            }
        );
        assert_eq!(
            Balance::of(&entries, at(10 * HOUR)).available,
            Cents::new(950 + 1900 - 2850),
            "a pending credit whose time came counts as available"
        );
    }

    #[test]
    fn a_stripe_account_receives_transfers_once_its_transfers_capability_is_active() {
        assert_eq!(
            AccountStatus::from_stripe(Some("active"), true),
            AccountStatus::Enabled
        );
        assert_eq!(
            AccountStatus::from_stripe(Some("pending"), true),
            AccountStatus::Restricted
        );
        assert_eq!(
            AccountStatus::from_stripe(Some("inactive"), false),
            AccountStatus::Onboarding
        );
        assert_eq!(
            AccountStatus::from_stripe(None, false),
            AccountStatus::Onboarding
        );
        assert_eq!(AccountStatus::shown(None), PayoutAccountStatus::None);
        assert_eq!(
            AccountStatus::shown(Some(AccountStatus::Enabled)),
            PayoutAccountStatus::Enabled
        );
    }

    #[test]
    fn stored_statuses_are_read_strictly() {
        assert!("paid".parse::<CreditStatus>().is_ok());
        assert!("refunded".parse::<CreditStatus>().is_err());
        assert!("Paid".parse::<CreditStatus>().is_err());
        assert!("closed".parse::<AccountStatus>().is_err());
        assert!("debit".parse::<EntryKind>().is_err());
    }
}
