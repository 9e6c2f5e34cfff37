//! The notifications service's rules, pure and tested without a database: what an alert is and
//! when a ticket starts to match it, what each notice says, and how an email is retried.

use std::time::Duration;

use bt_contract::events::{CancelReason, PaymentDeclined, PaymentRefunded, SaleCredited};
use bt_contract::resources::NotificationKind;
use bt_contract::search::{Search, SearchError};
use bt_contract::{AlertId, Cents, Millis, OrderId, TicketId, UserId};

bt_contract::text_enum! {
    /// Where an email of the outbox stands.
    pub enum EmailStatus {
        /// To be sent at `next_attempt_at` (first try, or a retry after a failure).
        Pending = "pending",
        /// Accepted by the mail server (or written to the mail directory).
        Sent = "sent",
        /// Refused for good by the mail server (e.g. an address it rejects): not retried.
        Failed = "failed",
    }
}

/// How much one user may ask of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Alerts one user may have at once (`ALERTS_PER_USER`, default 20).
    pub alerts_per_user: i64,
    /// Alert emails one user receives per hour (`ALERT_EMAILS_PER_HOUR`, default 10); past it,
    /// matches are still notified in the app. Receipts and other notices are never limited.
    pub alert_emails_per_hour: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            alerts_per_user: 20,
            alert_emails_per_hour: 10,
        }
    }
}

/// The highest `maxPrice` an alert takes (the largest price a ticket can have).
pub const MAX_ALERT_PRICE: Cents = Cents::new(100_000_000);

/// A ticket alert: a user's saved search, and the price they would pay at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: AlertId,
    pub user_id: UserId,
    pub search: Search,
    pub max_price: Option<Cents>,
    pub created_at: Millis,
}

impl Alert {
    /// A new alert of `user_id` (the id is time-ordered: alerts are served in creation order).
    pub fn new(user_id: UserId, search: Search, max_price: Option<Cents>, now: Millis) -> Self {
        Self {
            id: AlertId::generate(),
            user_id,
            search,
            max_price,
            created_at: now,
        }
    }

    /// Whether `ticket` is one this alert is waiting for at `now`: on sale, someone else's,
    /// found by the search, and at or under the price limit.
    pub fn matches(&self, ticket: &TicketView, now: Millis) -> bool {
        ticket.on_sale(now)
            && ticket.owner != self.user_id
            && self.search.matches(&ticket.title)
            && self.max_price.is_none_or(|max| ticket.price <= max)
    }

    /// Whether the change of a ticket from `before` (`None`: just listed) to `after` makes it
    /// match this alert: listed, back on sale after a cancelled or expired order, relisted by
    /// its new owner, or edited into the search or under the price. A ticket that matched
    /// already is not announced again.
    pub fn newly_matches(
        &self,
        before: Option<&TicketView>,
        after: &TicketView,
        now: Millis,
    ) -> bool {
        self.matches(after, now) && !before.is_some_and(|before| self.matches(before, now))
    }

    pub fn to_json(&self) -> bt_contract::resources::Alert {
        bt_contract::resources::Alert {
            id: self.id.clone(),
            q: self.search.as_str().to_owned(),
            max_price: self.max_price,
            created_at: self.created_at,
        }
    }
}

/// Why an alert cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertRefusal {
    #[error("You can have at most {0} alerts; delete one first")]
    TooMany(i64),
    #[error("You already have an alert for this search")]
    Duplicate,
}

/// Parses an alert's `q` (the listing's search rules).
pub fn parse_query(raw: Option<&str>) -> Result<Search, String> {
    match raw {
        None => Err("q must be provided".into()),
        Some(raw) => Search::parse(raw).map_err(|err| match err {
            SearchError::Blank => "q must be provided".into(),
            other => format!("q {other}"),
        }),
    }
}

/// Checks an alert's `maxPrice` (already parsed as money): more than 0, at most the largest
/// price.
pub fn check_max_price(price: Cents) -> Result<Cents, String> {
    if price.get() <= 0 {
        Err("maxPrice must be greater than 0".into())
    } else if price > MAX_ALERT_PRICE {
        Err(format!("maxPrice must be at most {}", MAX_ALERT_PRICE))
    } else {
        Ok(price)
    }
}

/// A ticket as the notifications service knows it (from `ticket.created` / `ticket.updated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub id: TicketId,
    pub version: i64,
    pub title: String,
    pub price: Cents,
    pub owner: UserId,
    pub order_id: Option<OrderId>,
    pub for_sale: bool,
    pub starts_at: Option<Millis>,
    pub venue: Option<String>,
}

impl TicketView {
    /// The listing's rule: offered by its owner, not reserved, its event not started.
    pub fn on_sale(&self, now: Millis) -> bool {
        self.for_sale && self.order_id.is_none() && self.starts_at.is_none_or(|at| at > now)
    }
}

/// An order as placed (from `order.created`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: OrderId,
    pub buyer: UserId,
    pub ticket_id: TicketId,
    pub title: Option<String>,
    pub price: Cents,
}

impl OrderView {
    fn title(&self) -> &str {
        self.title.as_deref().unwrap_or("your ticket")
    }
}

/// What one person is told: in the app, and (same words) by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub recipient: UserId,
    pub kind: NotificationKind,
    /// One line: the notification's title and the email's subject.
    pub title: String,
    /// A few sentences.
    pub body: String,
    /// A path on the site (`/orders/{id}`); the email shows it as a full address.
    pub link: Option<String>,
}

/// How notices are worded: the currency amounts are shown in.
#[derive(Debug, Clone)]
pub struct Wording {
    pub currency: String,
}

impl Wording {
    fn money(&self, amount: Cents) -> String {
        amount.with_currency(&self.currency)
    }

    /// To the buyer, when their order is paid.
    pub fn receipt(&self, order: &OrderView) -> Notice {
        Notice {
            recipient: order.buyer.clone(),
            kind: NotificationKind::OrderReceipt,
            title: format!("Your receipt: {}", order.title()),
            body: format!(
                "Thank you for your purchase. You paid {} for \"{}\". The ticket is yours: \
                 download it from your order, or list it again if you cannot go.\n\n\
                 Order: {}",
                self.money(order.price),
                order.title(),
                order.id
            ),
            link: Some(format!("/orders/{}", order.id)),
        }
    }

    /// To the seller, when the sale is captured and credited.
    pub fn sold(&self, sale: &SaleCredited) -> Notice {
        let title = sale.title.as_deref().unwrap_or("your ticket");
        Notice {
            recipient: sale.seller_id.clone(),
            kind: NotificationKind::TicketSold,
            title: format!("Your ticket sold: {title}"),
            body: format!(
                "\"{title}\" sold for {}. After the platform fee of {} you receive {}, paid out \
                 from {}.\n\nOrder: {}",
                self.money(sale.price),
                self.money(sale.fee),
                self.money(sale.amount),
                sale.available_at.to_datetime().format("%Y-%m-%d %H:%M UTC"),
                sale.order_id
            ),
            link: Some("/payouts".into()),
        }
    }

    /// To the buyer, when their reservation ran out unpaid.
    pub fn expired(&self, order: &OrderView) -> Notice {
        Notice {
            recipient: order.buyer.clone(),
            kind: NotificationKind::ReservationExpired,
            title: format!("Your reservation expired: {}", order.title()),
            body: format!(
                "Your reservation of \"{}\" ({}) was not paid in time, so the ticket is back on \
                 sale. Nothing was charged. If it is still available you can reserve it again.",
                order.title(),
                self.money(order.price)
            ),
            link: Some(format!("/tickets/{}", order.ticket_id)),
        }
    }

    /// To the buyer, when the order was cancelled by something other than themselves or the
    /// clock; `None` for the buyer's own cancel (they know) and expiry ([`Self::expired`]).
    pub fn cancelled(&self, order: &OrderView, reason: Option<CancelReason>) -> Option<Notice> {
        let why = match reason? {
            CancelReason::Buyer | CancelReason::Expired => return None,
            CancelReason::TicketChanged => {
                "the seller changed the ticket before your reservation was confirmed"
            }
            CancelReason::NotForSale => "the seller took the ticket off sale",
            CancelReason::EventStarted => "the event has started",
        };
        Some(Notice {
            recipient: order.buyer.clone(),
            kind: NotificationKind::OrderCancelled,
            title: format!("Your order was cancelled: {}", order.title()),
            body: format!(
                "Your order for \"{}\" ({}) was cancelled because {why}. Nothing was charged.",
                order.title(),
                self.money(order.price)
            ),
            link: Some(format!("/orders/{}", order.id)),
        })
    }

    /// To the buyer, when the card was declined.
    pub fn declined(&self, declined: &PaymentDeclined, order: Option<&OrderView>) -> Notice {
        let title = order.map_or("your order", OrderView::title);
        Notice {
            recipient: declined.user_id.clone(),
            kind: NotificationKind::PaymentDeclined,
            title: format!("Payment declined: {title}"),
            body: format!(
                "Your payment of {} for \"{title}\" was declined: {} Your reservation stays \
                 until it expires; you can pay with another card.",
                self.money(declined.amount),
                declined.message
            ),
            link: Some(format!("/orders/{}", declined.order_id)),
        }
    }

    /// To the buyer, when money of their payment was given back: in full, or in part (with
    /// the total so far when there were earlier refunds).
    pub fn refunded(&self, refund: &PaymentRefunded, order: Option<&OrderView>) -> Notice {
        let title = refund
            .title
            .as_deref()
            .or(order.map(OrderView::title))
            .unwrap_or("your order");
        let (headline, body) = if refund.in_full() {
            (
                format!("Refunded: {title}"),
                format!(
                    "Your payment of {} for \"{title}\" was refunded in full.",
                    self.money(refund.price)
                ),
            )
        } else if refund.refunded == refund.amount {
            (
                format!("Partly refunded: {title}"),
                format!(
                    "{} of your payment of {} for \"{title}\" was refunded.",
                    self.money(refund.amount),
                    self.money(refund.price)
                ),
            )
        } else {
            (
                format!("Partly refunded: {title}"),
                format!(
                    "{} more of your payment of {} for \"{title}\" was refunded: {} in all.",
                    self.money(refund.amount),
                    self.money(refund.price),
                    self.money(refund.refunded)
                ),
            )
        };
        Notice {
            recipient: refund.user_id.clone(),
            kind: NotificationKind::PaymentRefunded,
            title: headline,
            body: format!(
                "{body} It goes back to the card you paid with; your bank may take a few days \
                 to show it.\n\nOrder: {}",
                refund.order_id
            ),
            link: Some(format!("/orders/{}", refund.order_id)),
        }
    }

    /// To the seller, when a refund of their sale takes money back from their credit; `None`
    /// when it takes nothing from them.
    pub fn refund_taken(&self, refund: &PaymentRefunded) -> Option<Notice> {
        let (seller, taken) = (refund.seller_id.clone()?, refund.seller_amount?);
        if taken.get() <= 0 {
            return None;
        }
        let title = refund.title.as_deref().unwrap_or("your ticket");
        let what = if refund.in_full() && refund.amount == refund.price {
            format!(
                "The sale of \"{title}\" ({}) was refunded to the buyer in full.",
                self.money(refund.price)
            )
        } else {
            format!(
                "{} of the {} the buyer paid for \"{title}\" was refunded to them.",
                self.money(refund.amount),
                self.money(refund.price)
            )
        };
        Some(Notice {
            recipient: seller,
            kind: NotificationKind::PaymentRefunded,
            title: format!("A refund on your sale: {title}"),
            body: format!(
                "{what} {} of it comes out of your payouts (the platform gives back its fee in \
                 the same proportion).\n\nOrder: {}",
                self.money(taken),
                refund.order_id
            ),
            link: Some("/payouts".into()),
        })
    }

    /// To an alert's subscriber, when a ticket starts to match it.
    pub fn alert(&self, alert: &Alert, ticket: &TicketView) -> Notice {
        let mut details = vec![self.money(ticket.price)];
        if let Some(venue) = &ticket.venue {
            details.push(venue.clone());
        }
        if let Some(at) = ticket.starts_at {
            details.push(at.to_datetime().format("%Y-%m-%d %H:%M UTC").to_string());
        }
        Notice {
            recipient: alert.user_id.clone(),
            kind: NotificationKind::TicketAlert,
            title: format!("On sale now: {}", ticket.title),
            body: format!(
                "A ticket matching your alert \"{}\"{} is on sale: \"{}\" ({}). Tickets go \
                 fast — the first buyer to reserve it gets it.",
                alert.search,
                alert
                    .max_price
                    .map(|max| format!(" (up to {})", self.money(max)))
                    .unwrap_or_default(),
                ticket.title,
                details.join(", ")
            ),
            link: Some(format!("/tickets/{}", ticket.id)),
        }
    }
}

impl Wording {
    /// To the first subscriber in line of an alert, who holds the ticket until `until`.
    pub fn alert_held(&self, alert: &Alert, ticket: &TicketView, until: Millis) -> Notice {
        let mut notice = self.alert(alert, ticket);
        notice.body = format!(
            "{} It is held for you until {} UTC: nobody else can reserve it before then.",
            notice
                .body
                .trim_end_matches(" Tickets go fast — the first buyer to reserve it gets it."),
            until.to_datetime().format("%H:%M:%S")
        );
        notice
    }
}

/// When an email that failed `attempts` times is tried again: 5 s, doubling, at most 10 min.
/// A mail server that is down delays messages, never loses them: transient failures are
/// retried for as long as it takes.
pub fn retry_delay(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(5)
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Millis {
        Millis::new(1_800_000_000_000).unwrap()
    }

    fn ticket(title: &str, price: i64) -> TicketView {
        TicketView {
            id: TicketId::new("t1"),
            version: 0,
            title: title.into(),
            price: Cents::new(price),
            owner: UserId::new("seller"),
            order_id: None,
            for_sale: true,
            starts_at: None,
            venue: None,
        }
    }

    fn alert(q: &str, max: Option<i64>) -> Alert {
        Alert::new(
            UserId::new("fan"),
            Search::parse(q).unwrap(),
            max.map(Cents::new),
            now(),
        )
    }

    #[test]
    fn an_alert_matches_tickets_on_sale_found_by_its_search_under_its_price() {
        let opera = alert("opera", Some(5000));
        assert!(opera.matches(&ticket("Opera Gala", 5000), now()));
        assert!(
            !opera.matches(&ticket("Opera Gala", 5001), now()),
            "over the price"
        );
        assert!(
            !opera.matches(&ticket("Jazz night", 100), now()),
            "not found"
        );
        let reserved = TicketView {
            order_id: Some(OrderId::new("o1")),
            ..ticket("Opera Gala", 100)
        };
        assert!(!opera.matches(&reserved, now()));
        let off_sale = TicketView {
            for_sale: false,
            ..ticket("Opera Gala", 100)
        };
        assert!(!opera.matches(&off_sale, now()));
        let started = TicketView {
            starts_at: Some(now()),
            ..ticket("Opera Gala", 100)
        };
        assert!(!opera.matches(&started, now()));
        let own = TicketView {
            owner: UserId::new("fan"),
            ..ticket("Opera Gala", 100)
        };
        assert!(
            !opera.matches(&own, now()),
            "nobody is alerted of their own ticket"
        );
        assert!(alert("OPERA", None).matches(&ticket("opera", 99_999_999), now()));
    }

    #[test]
    fn a_ticket_is_announced_when_it_starts_to_match_and_not_again_while_it_does() {
        let opera = alert("opera", Some(3000));
        let listed = ticket("Opera Gala", 2500);
        assert!(opera.newly_matches(None, &listed, now()), "listed");
        let edited = TicketView {
            version: 1,
            venue: Some("Royal Opera House".into()),
            ..listed.clone()
        };
        assert!(!opera.newly_matches(Some(&listed), &edited, now()));
        let reserved = TicketView {
            version: 2,
            order_id: Some(OrderId::new("o1")),
            ..edited.clone()
        };
        assert!(!opera.newly_matches(Some(&edited), &reserved, now()));
        let released = TicketView {
            version: 3,
            order_id: None,
            ..reserved.clone()
        };
        assert!(
            opera.newly_matches(Some(&reserved), &released, now()),
            "back on sale after a cancelled or expired order"
        );
        let expensive = ticket("Opera Gala", 4000);
        let cheaper = TicketView {
            version: 1,
            price: Cents::new(3000),
            ..expensive.clone()
        };
        assert!(!opera.newly_matches(None, &expensive, now()));
        assert!(
            opera.newly_matches(Some(&expensive), &cheaper, now()),
            "price dropped"
        );
        let renamed = TicketView {
            version: 1,
            title: "Gala night".into(),
            ..listed.clone()
        };
        assert!(!opera.newly_matches(Some(&listed), &renamed, now()));
        assert!(
            opera.newly_matches(Some(&renamed), &listed, now()),
            "renamed into the search"
        );
    }

    #[test]
    fn alert_fields_are_checked() {
        assert_eq!(parse_query(Some("  Opera ")).unwrap().as_str(), "Opera");
        assert_eq!(parse_query(None).unwrap_err(), "q must be provided");
        assert_eq!(parse_query(Some("  ")).unwrap_err(), "q must be provided");
        assert_eq!(
            parse_query(Some(&"x".repeat(201))).unwrap_err(),
            "q must be at most 200 characters"
        );
        assert!(check_max_price(Cents::new(0)).is_err());
        assert!(check_max_price(Cents::new(-5)).is_err());
        assert_eq!(check_max_price(Cents::new(1)), Ok(Cents::new(1)));
        assert!(check_max_price(Cents::new(100_000_001)).is_err());
    }

    #[test]
    fn notices_say_what_happened_with_the_amounts() {
        let wording = Wording {
            currency: "usd".into(),
        };
        let order = OrderView {
            id: OrderId::new("o1"),
            buyer: UserId::new("b"),
            ticket_id: TicketId::new("t1"),
            title: Some("Opera Gala".into()),
            price: Cents::new(2550),
        };
        let receipt = wording.receipt(&order);
        assert_eq!(receipt.recipient, UserId::new("b"));
        assert_eq!(receipt.title, "Your receipt: Opera Gala");
        assert!(receipt.body.contains("You paid $25.50 for \"Opera Gala\""));
        assert_eq!(receipt.link.as_deref(), Some("/orders/o1"));

        let sold = wording.sold(&SaleCredited {
            order_id: OrderId::new("o1"),
            seller_id: UserId::new("s"),
            ticket_id: Some(TicketId::new("t1")),
            title: Some("Opera Gala".into()),
            price: Cents::new(2550),
            fee: Cents::new(128),
            amount: Cents::new(2422),
            available_at: Millis::new(1_800_000_000_000).unwrap(),
        });
        assert_eq!(sold.recipient, UserId::new("s"));
        assert!(sold.body.contains("sold for $25.50"), "{}", sold.body);
        assert!(sold.body.contains("fee of $1.28 you receive $24.22"));
        assert!(sold.body.contains("paid out from 2027-01-15 08:00 UTC"));

        assert_eq!(
            wording.expired(&order).kind,
            NotificationKind::ReservationExpired
        );
        assert!(
            wording
                .cancelled(&order, Some(CancelReason::Buyer))
                .is_none()
        );
        assert!(wording.cancelled(&order, None).is_none());
        let changed = wording
            .cancelled(&order, Some(CancelReason::TicketChanged))
            .unwrap();
        assert!(changed.body.contains("the seller changed the ticket"));

        let declined = wording.declined(
            &PaymentDeclined {
                id: "p1".into(),
                order_id: OrderId::new("o1"),
                user_id: UserId::new("b"),
                amount: Cents::new(2550),
                message: "Your card was declined.".into(),
            },
            Some(&order),
        );
        assert!(
            declined
                .body
                .contains("$25.50 for \"Opera Gala\" was declined: Your card")
        );

        let refund = |refunded: i64, amount: i64, title: Option<&str>| PaymentRefunded {
            id: "p1".into(),
            order_id: OrderId::new("o1"),
            user_id: UserId::new("b"),
            title: title.map(str::to_owned),
            price: Cents::new(2550),
            refunded: Cents::new(refunded),
            amount: Cents::new(amount),
            seller_id: None,
            seller_amount: None,
        };
        let first = wording.refunded(&refund(500, 500, Some("Opera Gala")), None);
        assert_eq!(
            (first.recipient.as_str(), first.kind, first.title.as_str()),
            (
                "b",
                NotificationKind::PaymentRefunded,
                "Partly refunded: Opera Gala"
            )
        );
        assert!(first.body.starts_with(
            "$5.00 of your payment of $25.50 for \"Opera Gala\" was refunded. It goes back"
        ));
        assert_eq!(first.link.as_deref(), Some("/orders/o1"));
        let more = wording.refunded(&refund(800, 300, None), Some(&order));
        assert!(
            more.body.starts_with(
                "$3.00 more of your payment of $25.50 for \"Opera Gala\" was refunded: $8.00 in all."
            ),
            "the order's title without one in the event: {}",
            more.body
        );
        let all = wording.refunded(&refund(2550, 1750, None), None);
        assert_eq!(all.title, "Refunded: your order");
        assert!(
            all.body
                .starts_with("Your payment of $25.50 for \"your order\" was refunded in full.")
        );
        // The seller, when the refund takes from their credit.
        assert_eq!(
            wording.refund_taken(&refund(500, 500, Some("Opera Gala"))),
            None
        );
        let from_seller = |refunded: i64, amount: i64, taken: i64| PaymentRefunded {
            seller_id: Some(UserId::new("s")),
            seller_amount: Some(Cents::new(taken)),
            ..refund(refunded, amount, Some("Opera Gala"))
        };
        let part = wording.refund_taken(&from_seller(500, 500, 475)).unwrap();
        assert_eq!(
            (
                part.recipient.as_str(),
                part.kind,
                part.title.as_str(),
                part.link.as_deref()
            ),
            (
                "s",
                NotificationKind::PaymentRefunded,
                "A refund on your sale: Opera Gala",
                Some("/payouts")
            )
        );
        assert!(part.body.starts_with(
            "$5.00 of the $25.50 the buyer paid for \"Opera Gala\" was refunded to them. $4.75 of it comes out of your payouts"
        ), "{}", part.body);
        let whole = wording
            .refund_taken(&from_seller(2550, 2550, 2422))
            .unwrap();
        assert!(whole.body.starts_with(
            "The sale of \"Opera Gala\" ($25.50) was refunded to the buyer in full. $24.22 of it"
        ), "{}", whole.body);
        assert_eq!(
            wording.refund_taken(&from_seller(2550, 2550, 0)),
            None,
            "nothing taken"
        );

        let fan = alert("opera", Some(3000));
        let listed = TicketView {
            venue: Some("Royal Opera House".into()),
            ..ticket("Opera Gala", 2500)
        };
        let notice = wording.alert(&fan, &listed);
        assert_eq!(notice.recipient, UserId::new("fan"));
        assert_eq!(notice.title, "On sale now: Opera Gala");
        assert!(notice.body.contains("your alert \"opera\" (up to $30.00)"));
        assert!(notice.body.contains("($25.00, Royal Opera House)"));
        assert_eq!(notice.link.as_deref(), Some("/tickets/t1"));
    }

    #[test]
    fn retries_back_off_to_ten_minutes() {
        assert_eq!(retry_delay(1), Duration::from_secs(5));
        assert_eq!(retry_delay(2), Duration::from_secs(10));
        assert_eq!(retry_delay(5), Duration::from_secs(80));
        assert_eq!(retry_delay(8), Duration::from_secs(600));
        assert_eq!(retry_delay(1_000), Duration::from_secs(600));
        assert_eq!(retry_delay(0), Duration::from_secs(5));
    }
}
