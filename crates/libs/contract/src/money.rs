//! Money as integer cents, end to end.
//!
//! Parsing works on the decimal text the client sent (never through `f64`), so `20.1` is exactly
//! 2010 cents and `20.001` is refused rather than rounded. Serialising writes a JSON number in
//! currency units, as the wire contract wants: 2000 → `20`, 2050 → `20.5`, 2055 → `20.55`.

use serde::{Serialize, Serializer};

/// An amount of money in cents. May be zero or negative; the domain types that use it decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(i64);

/// Why a text is not an amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a number")]
    NotANumber,
    #[error("more than two decimal places")]
    TooManyDecimals,
    #[error("out of range")]
    OutOfRange,
}

/// The largest amount [`Cents::parse_decimal`] accepts (well above any price the services allow).
const MAX_ABS_CENTS: i128 = 1_000_000_000_000_000;

impl Cents {
    pub const fn new(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// Parses a JSON number's text (`20`, `-3.5`, `2.05e1`) or the same inside a string, exactly.
    pub fn parse_decimal(text: &str) -> Result<Self, MoneyError> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => {
                let exp: i32 = rest[i + 1..].parse().map_err(|_| MoneyError::NotANumber)?;
                (&rest[..i], exp)
            }
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !all_digits(int_part)
            || !all_digits(frac_part)
        {
            return Err(MoneyError::NotANumber);
        }
        // value = digits × 10^(exponent − |frac|); cents = value × 100.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let scale = i64::from(exponent) - frac_part.len() as i64 + 2;
        let cents: i128 = if digits.is_empty() {
            0
        } else if scale >= 0 {
            if digits.len() as i64 + scale > 18 {
                return Err(MoneyError::OutOfRange);
            }
            let base: i128 = digits.parse().map_err(|_| MoneyError::OutOfRange)?;
            base * 10i128.pow(scale as u32)
        } else {
            // `digits` starts with a non-zero digit, so dropping all of it loses a non-zero digit.
            let drop = usize::try_from(-scale).unwrap_or(usize::MAX);
            if drop >= digits.len() || digits[digits.len() - drop..].bytes().any(|b| b != b'0') {
                return Err(MoneyError::TooManyDecimals);
            }
            let kept = &digits[..digits.len() - drop];
            if kept.len() > 18 {
                return Err(MoneyError::OutOfRange);
            }
            kept.parse().map_err(|_| MoneyError::OutOfRange)?
        };
        if cents > MAX_ABS_CENTS {
            return Err(MoneyError::OutOfRange);
        }
        let cents = i64::try_from(cents).map_err(|_| MoneyError::OutOfRange)?;
        Ok(Self(if negative { -cents } else { cents }))
    }

    /// The amount in currency units as a decimal string with no trailing zeros (`20`, `20.5`).
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (units, cents) = (abs / 100, abs % 100);
        match cents {
            0 => format!("{sign}{units}"),
            c if c % 10 == 0 => format!("{sign}{units}.{}", c / 10),
            c => format!("{sign}{units}.{c:02}"),
        }
    }
}

impl From<i64> for Cents {
    fn from(cents: i64) -> Self {
        Self(cents)
    }
}

/// Stored as BIGINT cents on both databases.
impl<DB: sqlx::Database> sqlx::Type<DB> for Cents
where
    i64: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <i64 as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <i64 as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Cents
where
    i64: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<i64 as sqlx::Decode<'r, DB>>::decode(value)?))
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Cents
where
    i64: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
    }
}

/// The symbol written before amounts of `currency` (an ISO code, any case): `$`, `€`, `£`;
/// `None` for the others, which are written with their code after the amount.
pub fn currency_symbol(currency: &str) -> Option<&'static str> {
    match currency.to_ascii_lowercase().as_str() {
        "usd" => Some("$"),
        "eur" => Some("€"),
        "gbp" => Some("£"),
        _ => None,
    }
}

impl Cents {
    /// The amount for people, with its currency and thousands separated: `$1,250.50`,
    /// `€20.50`, `£20.50`, `20.50 CHF`, `-$5.00`.
    pub fn with_currency(self, currency: &str) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let amount = self.grouped();
        match currency_symbol(currency) {
            Some(symbol) => format!("{sign}{symbol}{amount}"),
            None => format!("{sign}{amount} {}", currency.to_ascii_uppercase()),
        }
    }

    /// The absolute amount with two decimals and commas between thousands: `1,250.50`.
    fn grouped(self) -> String {
        let abs = self.0.unsigned_abs();
        let whole = (abs / 100).to_string();
        let first = match whole.len() % 3 {
            0 => 3,
            n => n,
        };
        let (head, rest) = whole.split_at(first);
        let mut out = head.to_owned();
        for group in rest.as_bytes().chunks(3) {
            out.push(',');
            out.push_str(std::str::from_utf8(group).unwrap_or_default());
        }
        format!("{out}.{:02}", abs % 100)
    }
}

impl std::fmt::Display for Cents {
    /// Two decimals, for people: `20.50`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Cents {
    /// A JSON number in currency units. The shortest `f64` text of `cents / 100` is the exact
    /// decimal for every amount below 2^53 cents, so the client reads back what was stored.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            serializer.serialize_i64(self.0 / 100)
        } else {
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Cents {
    /// Reads what [`Serialize`] writes (for clients of the API and for events).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let text = if text.starts_with('"') {
            serde_json::from_str::<String>(text).map_err(serde::de::Error::custom)?
        } else {
            text.to_owned()
        };
        Self::parse_decimal(text.trim()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_for_people_have_their_currency_and_thousands_separated() {
        let cases = [
            (0, "usd", "$0.00"),
            (2050, "usd", "$20.50"),
            (99_999, "usd", "$999.99"),
            (100_000, "usd", "$1,000.00"),
            (125_050, "USD", "$1,250.50"),
            (100_000_000, "usd", "$1,000,000.00"),
            (-500, "usd", "-$5.00"),
            (-123_456_789, "eur", "-€1,234,567.89"),
            (4000, "gbp", "£40.00"),
            (1_234_500, "chf", "12,345.00 CHF"),
        ];
        for (cents, currency, text) in cases {
            assert_eq!(
                Cents(cents).with_currency(currency),
                text,
                "{cents} {currency}"
            );
        }
    }

    #[test]
    fn decimal_texts_parse_to_exact_cents() {
        let cases = [
            ("20", 2000),
            ("20.5", 2050),
            ("20.55", 2055),
            ("20.10", 2010),
            ("0.1", 10),
            ("0.01", 1),
            ("-3.5", -350),
            ("0", 0),
            ("0.00", 0),
            ("1000000", 100_000_000),
            ("2.05e1", 2050),
            ("2E3", 200_000),
            ("1e-2", 1),
            ("150e-2", 150),
            ("20.500", 2050),
            ("007.5", 750),
            (".5", 50),
            ("5.", 500),
        ];
        for (text, cents) in cases {
            assert_eq!(Cents::parse_decimal(text), Ok(Cents(cents)), "{text}");
        }
    }

    #[test]
    fn texts_that_are_not_exact_cents_are_refused() {
        let cases = [
            ("20.001", MoneyError::TooManyDecimals),
            ("0.005", MoneyError::TooManyDecimals),
            ("1e-3", MoneyError::TooManyDecimals),
            ("20.10000000000000001", MoneyError::TooManyDecimals),
            ("abc", MoneyError::NotANumber),
            ("", MoneyError::NotANumber),
            ("-", MoneyError::NotANumber),
            (".", MoneyError::NotANumber),
            ("1.2.3", MoneyError::NotANumber),
            ("1e", MoneyError::NotANumber),
            ("0x10", MoneyError::NotANumber),
            ("1 000", MoneyError::NotANumber),
            ("1e400", MoneyError::OutOfRange),
            ("99999999999999999999999", MoneyError::OutOfRange),
        ];
        for (text, err) in cases {
            assert_eq!(Cents::parse_decimal(text), Err(err), "{text}");
        }
    }

    #[test]
    fn cents_serialise_as_a_json_number_in_currency_units() {
        let cases = [
            (2000, "20"),
            (2050, "20.5"),
            (2055, "20.55"),
            (1, "0.01"),
            (99_999_999, "999999.99"),
            (-350, "-3.5"),
        ];
        for (cents, json) in cases {
            assert_eq!(serde_json::to_string(&Cents(cents)).unwrap(), json);
            assert_eq!(Cents(cents).to_decimal_string(), json);
            assert_eq!(serde_json::from_str::<Cents>(json).unwrap(), Cents(cents));
        }
    }

    #[test]
    fn every_cent_amount_round_trips_through_json() {
        for cents in (0..200_000).chain(99_990_000..100_000_001) {
            let json = serde_json::to_string(&Cents(cents)).unwrap();
            assert_eq!(Cents::parse_decimal(&json), Ok(Cents(cents)), "{json}");
        }
    }

    #[test]
    fn display_shows_two_decimals() {
        assert_eq!(Cents(2050).to_string(), "20.50");
        assert_eq!(Cents(5).to_string(), "0.05");
    }
}
