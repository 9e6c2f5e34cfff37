//! Ids as newtypes: [`UserId`], [`TicketId`], [`OrderId`], [`PaymentId`], [`AlertId`],
//! [`NotificationId`]. Each is TEXT in the databases and a JSON string; new ids are UUID v7, whose first 48 bits are the creation time
//! ([`created_at`](OrderId::created_at)) — which tells a service whether an id it has not heard
//! of may simply not have reached it yet.
//!
//! Swapping two ids of different kinds does not compile.

use crate::time::Millis;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $description:literal) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new id: a UUID v7 (time-ordered).
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            /// An id as received (a path segment, an event field). Whether it exists is for the
            /// store to say.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// When the id was made, for UUID v7 ids; `None` for any other id.
            pub fn created_at(&self) -> Option<Millis> {
                uuid_v7_time(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::openapi::id_schema($description)
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// A user (auth service).
    UserId,
    "The id of a user."
);
id_type!(
    /// A ticket (tickets service).
    TicketId,
    "The id of a ticket."
);
id_type!(
    /// An order (orders service).
    OrderId,
    "The id of an order."
);
id_type!(
    /// A payment: one attempt to charge an order (payments service).
    PaymentId,
    "The id of a payment."
);

id_type!(
    /// A ticket alert: a saved search whose new matches are announced (notifications service).
    AlertId,
    "The id of a ticket alert."
);
id_type!(
    /// An in-app notification (notifications service).
    NotificationId,
    "The id of a notification."
);

/// The creation time of a UUID v7 in its canonical text form.
fn uuid_v7_time(text: &str) -> Option<Millis> {
    let uuid = uuid::Uuid::parse_str(text).ok()?;
    // Only the spelling ids are made in (lower case, hyphenated): another one (upper case, a
    // URN, no hyphens) names no id, however new the time it carries.
    if uuid.get_version() != Some(uuid::Version::SortRand)
        || uuid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            != text
    {
        return None;
    }
    let (secs, nanos) = uuid.get_timestamp()?.to_unix();
    let ms = i64::try_from(secs)
        .ok()?
        .checked_mul(1000)?
        .checked_add(i64::from(nanos / 1_000_000))?;
    Millis::new(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_uuid_v7_and_know_when_they_were_made() {
        let before = Millis::now();
        let id = OrderId::generate();
        let after = Millis::now();
        let at = id.created_at().expect("a v7 id has a time");
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    }

    #[test]
    fn other_ids_have_no_time() {
        assert_eq!(TicketId::new("t1").created_at(), None);
        assert_eq!(
            TicketId::new(uuid::Uuid::new_v4().to_string()).created_at(),
            None
        );
    }

    /// Ids are made in one spelling; another spelling of a new id names nothing, and must not
    /// be waited for as an id about to arrive (it would wait, then answer 503 for a minute).
    #[test]
    fn another_spelling_of_a_new_id_has_no_time() {
        let id = OrderId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        for other in [
            id.as_str().to_uppercase(),
            uuid.urn().to_string(),
            uuid.simple().to_string(),
            uuid.braced().to_string(),
        ] {
            assert_eq!(OrderId::new(&other).created_at(), None, "{other}");
        }
    }

    #[test]
    fn ids_are_plain_json_strings() {
        let id = UserId::new("u1");
        assert_eq!(serde_json::to_value(&id).unwrap(), "u1");
        let back: UserId = serde_json::from_str("\"u1\"").unwrap();
        assert_eq!(back, id);
    }
}
