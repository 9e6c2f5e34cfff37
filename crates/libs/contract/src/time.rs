//! [`Millis`]: the one timestamp type — milliseconds since the Unix epoch (UTC), stored as
//! BIGINT on both databases, shown as ISO-8601 in JSON.
//!
//! Reading a value from the database that is not a timestamp (negative, or beyond year 9999) is
//! a decode error, never a silent 1970.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(i64);

/// A number that is not a valid [`Millis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a timestamp in milliseconds between 1970 and 9999")]
pub struct InvalidMillis(pub i64);

impl Millis {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);
    /// 9999-12-31T23:59:59.999Z, the latest representable instant.
    pub const MAX: Self = Self(253_402_300_799_999);

    /// Now, from the system clock.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// A timestamp from milliseconds, refused outside 1970..=9999.
    pub fn new(ms: i64) -> Result<Self, InvalidMillis> {
        if (0..=Self::MAX.0).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(InvalidMillis(ms))
        }
    }

    /// A `DateTime`, clamped into 1970..=9999.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_millis().clamp(0, Self::MAX.0))
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        // In range by construction.
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    /// ISO-8601 in UTC with milliseconds: `2026-11-25T09:15:00.000Z`.
    pub fn to_iso(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// This instant moved by `d` (saturating, clamped to the valid range).
    pub fn plus(self, d: std::time::Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms).clamp(0, Self::MAX.0))
    }

    /// This instant moved back by `d` (saturating at the epoch).
    pub fn minus(self, d: std::time::Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms).max(0))
    }

    /// How long from `earlier` to this instant (zero when `earlier` is later).
    pub fn since(self, earlier: Self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0 - earlier.0).unwrap_or(0))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

impl From<DateTime<Utc>> for Millis {
    fn from(at: DateTime<Utc>) -> Self {
        Self::from_datetime(at)
    }
}

/// JSON: an ISO-8601 string.
impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_iso())
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let at = DateTime::<Utc>::deserialize(deserializer)?;
        Self::new(at.timestamp_millis()).map_err(serde::de::Error::custom)
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Millis
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

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Millis
where
    i64: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        let ms = <i64 as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Self::new(ms)?)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Millis
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_1970_to_9999_are_refused() {
        assert_eq!(Millis::new(-1), Err(InvalidMillis(-1)));
        assert_eq!(
            Millis::new(Millis::MAX.get() + 1),
            Err(InvalidMillis(Millis::MAX.get() + 1))
        );
        assert!(Millis::new(0).is_ok());
        assert!(Millis::new(Millis::MAX.get()).is_ok());
    }

    #[test]
    fn json_is_iso_8601_utc_with_milliseconds() {
        let at = Millis::new(1_764_062_100_000).unwrap();
        assert_eq!(at.to_iso(), "2025-11-25T09:15:00.000Z");
        assert_eq!(
            serde_json::to_value(at).unwrap(),
            "2025-11-25T09:15:00.000Z"
        );
        let back: Millis = serde_json::from_str("\"2025-11-25T09:15:00Z\"").unwrap();
        assert_eq!(back, at);
        assert!(serde_json::from_str::<Millis>("\"1969-12-31T23:59:59Z\"").is_err());
    }

    #[test]
    fn arithmetic_saturates_inside_the_valid_range() {
        let at = Millis::new(1_000).unwrap();
        assert_eq!(at.plus(std::time::Duration::from_secs(1)).get(), 2_000);
        assert_eq!(at.minus(std::time::Duration::from_secs(5)), Millis::EPOCH);
        assert_eq!(
            Millis::MAX.plus(std::time::Duration::from_secs(1)),
            Millis::MAX
        );
        assert_eq!(
            at.since(Millis::EPOCH),
            std::time::Duration::from_millis(1_000)
        );
        assert_eq!(Millis::EPOCH.since(at), std::time::Duration::ZERO);
    }
}
