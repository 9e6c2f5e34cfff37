//! The tickets domain: titles and prices, and the ticket as the API shows it.

use bt_contract::{Cents, JsonField, MoneyError};
use serde::Serialize;

/// A ticket title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: Option<String>) -> Result<Self, String> {
        let title = raw.unwrap_or_default().trim().to_owned();
        if title.is_empty() {
            Err("Title is required".into())
        } else if title.chars().count() > Self::MAX_CHARS {
            Err(format!(
                "Title must be at most {} characters",
                Self::MAX_CHARS
            ))
        } else if title.chars().any(char::is_control) {
            Err("Title must not contain control characters".into())
        } else {
            Ok(Self(title))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A ticket price: more than 0, at most 1,000,000, at most 2 decimals; exact cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(Cents);

impl Price {
    pub const MAX: Cents = Cents::new(100_000_000);

    pub fn parse(raw: Option<&JsonField>) -> Result<Self, &'static str> {
        const POSITIVE: &str = "Price must be greater than 0";
        let raw = raw.ok_or(POSITIVE)?;
        match raw.as_cents() {
            Ok(cents) if cents.get() <= 0 => Err(POSITIVE),
            Ok(cents) if cents > Self::MAX => Err("Price must be at most 1000000"),
            Ok(cents) => Ok(Self(cents)),
            Err(MoneyError::TooManyDecimals) => Err("Price must have at most 2 decimal places"),
            Err(MoneyError::OutOfRange) => Err("Price must be at most 1000000"),
            Err(MoneyError::NotANumber) => Err(POSITIVE),
        }
    }

    pub fn cents(self) -> Cents {
        self.0
    }
}

/// A ticket as stored and as the API shows it: `{id, title, price, userId, version, orderId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: String,
    pub title: String,
    #[sqlx(try_from = "i64")]
    pub price: Cents,
    pub user_id: String,
    pub version: i64,
    pub order_id: Option<String>,
    /// Extension: true once the order that reserves it was paid (it stays off the market).
    pub sold: bool,
}

impl Ticket {
    /// The ticket's data as events carry it.
    pub fn event_data(&self) -> bt_contract::events::TicketData {
        bt_contract::events::TicketData {
            id: self.id.clone(),
            version: self.version,
            title: self.title.clone(),
            price: self.price,
            user_id: self.user_id.clone(),
            order_id: self.order_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> JsonField {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(
            Title::parse(Some("  Concert ".into())).unwrap().as_str(),
            "Concert"
        );
        assert_eq!(
            Title::parse(Some("   ".into())),
            Err("Title is required".into())
        );
        assert_eq!(Title::parse(None), Err("Title is required".into()));
        assert!(Title::parse(Some("é".repeat(200))).is_ok());
        assert_eq!(
            Title::parse(Some("x".repeat(201))),
            Err("Title must be at most 200 characters".into())
        );
        assert!(Title::parse(Some("a\u{0}b".into())).is_err());
    }

    #[test]
    fn prices_are_exact_positive_and_bounded() {
        let ok = [
            ("20", 2000),
            ("20.5", 2050),
            ("\"25.50\"", 2550),
            ("0.01", 1),
            ("1000000", 100_000_000),
        ];
        for (json, cents) in ok {
            assert_eq!(
                Price::parse(Some(&field(json))).unwrap().cents(),
                Cents::new(cents),
                "{json}"
            );
        }
        let bad = [
            ("0", "Price must be greater than 0"),
            ("-10", "Price must be greater than 0"),
            ("\"abc\"", "Price must be greater than 0"),
            ("null", "Price must be greater than 0"),
            ("true", "Price must be greater than 0"),
            ("10.001", "Price must have at most 2 decimal places"),
            ("1000000.01", "Price must be at most 1000000"),
            ("1e30", "Price must be at most 1000000"),
        ];
        for (json, message) in bad {
            assert_eq!(Price::parse(Some(&field(json))), Err(message), "{json}");
        }
        assert_eq!(Price::parse(None), Err("Price must be greater than 0"));
    }
}
