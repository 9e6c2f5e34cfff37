//! The ticket form as people fill it in, turned into what the API is sent
//! ([`TicketInput`](crate::api::TicketInput)): the event's start from an HTML `datetime-local`
//! field, and the checks of a chosen file the client can make before anything is created. The
//! ticket alert form ([`AlertForm`]) likewise, into an [`AlertInput`](crate::api::AlertInput).
//!
//! **Time zones.** A `datetime-local` field has no zone. With JavaScript, `assets/app.js` puts
//! the browser's offset from UTC for that date and time (minutes east of UTC, so daylight
//! saving time is right for the event's date, not today's) into the hidden `tzOffset` field;
//! without it — or with an offset outside UTC−14:00…UTC+14:00 — the time is read as UTC, and
//! the form says so. Times from the API are shown in UTC and converted to the browser's zone by
//! the same script, so a form without JavaScript shows and reads UTC consistently.

use std::collections::HashMap;

use bt_contract::{Cents, FieldError, Millis};
use bt_platform::files::{FileKind, MAX_FILE_BYTES};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use crate::api::{AlertInput, Ticket, TicketInput};
use crate::multipart::Upload;

/// A field of a form: its name, the API's (the JSON name, so that the API's field errors land
/// next to it), and the label people read next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormField {
    /// `maxPrice`.
    pub name: &'static str,
    /// `Maximum price`.
    pub label: &'static str,
}

impl FormField {
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        Self { name, label }
    }

    /// The API's `message` about this field in the form's words. The notifications and
    /// tickets services begin some messages with the field's JSON name (`q must be provided`,
    /// `maxPrice must be greater than 0`, `cursor is not valid`); the page says the label
    /// instead (`Search must be provided`). A message that does not begin with the name
    /// (`Price must be greater than 0`, already in words) is kept as it is.
    pub fn worded(&self, message: &str) -> String {
        match message
            .strip_prefix(self.name)
            .and_then(|rest| rest.strip_prefix(' '))
        {
            Some(rest) => format!("{} {rest}", self.label),
            None => message.to_owned(),
        }
    }
}

/// The messages of an API refusal as one text for a banner, those about one of `fields` in
/// the form's words (see [`FormField::worded`]).
pub fn worded_messages(errors: &[FieldError], fields: &[FormField]) -> String {
    errors
        .iter()
        .map(|e| {
            match fields
                .iter()
                .find(|field| e.field.as_deref() == Some(field.name))
            {
                Some(field) => field.worded(&e.message),
                None => e.message.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The listing's search (`q`), on the home page and in ticket alerts.
pub const SEARCH: FormField = FormField::new("q", "Search");

/// The fields of the sell and edit forms.
pub const TICKET_FIELDS: [FormField; 6] = [
    FormField::new("title", "Title"),
    FormField::new("price", "Price"),
    FormField::new("venue", "Venue"),
    FormField::new("startsAt", "Starts at"),
    FormField::new("faceValue", "Face value"),
    FormField::new("file", "Ticket file"),
];

/// The fields of the sign-up and sign-in forms.
pub const AUTH_FIELDS: [FormField; 2] = [
    FormField::new("email", "Email"),
    FormField::new("password", "Password"),
];

/// What the ticket form sent, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketForm {
    pub title: String,
    pub price: String,
    pub venue: String,
    /// As the `datetime-local` field sends it: `2027-06-12T19:30`.
    pub starts_at: String,
    /// The browser's offset from UTC in minutes east, when its script said.
    pub tz_offset: String,
    pub face_value: String,
}

impl TicketForm {
    pub fn from_fields(fields: &HashMap<String, String>) -> Self {
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        Self {
            title: text("title"),
            price: text("price").trim().to_owned(),
            venue: text("venue"),
            starts_at: text("startsAt").trim().to_owned(),
            tz_offset: text("tzOffset").trim().to_owned(),
            face_value: text("faceValue").trim().to_owned(),
        }
    }

    /// The fields as typed, for a flash that brings the form back (see [`crate::flash`]).
    pub fn values(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("title", &self.title),
            ("price", &self.price),
            ("venue", &self.venue),
            ("startsAt", &self.starts_at),
            ("tzOffset", &self.tz_offset),
            ("faceValue", &self.face_value),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.clone()))
        .collect()
    }

    /// The form of an existing ticket: its start in UTC (the script shows it in local time).
    pub fn of(ticket: &Ticket) -> Self {
        Self {
            title: ticket.title.clone(),
            price: ticket.price.to_string(),
            venue: ticket.venue.clone().unwrap_or_default(),
            starts_at: ticket
                .starts_at
                .map(|at| datetime_local(at.to_datetime()))
                .unwrap_or_default(),
            tz_offset: String::new(),
            face_value: ticket.face_value.map(|c| c.to_string()).unwrap_or_default(),
        }
    }

    /// The event's start in UTC: `None` when left empty, `Err` (the message for the field)
    /// when it is not a date and time.
    pub fn starts_at_utc(&self) -> Result<Option<DateTime<Utc>>, &'static str> {
        local_to_utc(&self.starts_at, &self.tz_offset)
    }

    /// A new listing, its prices typed in `currency` (the site's): only the details that were
    /// filled in are sent.
    pub fn for_create(&self, currency: &str) -> Result<TicketInput, &'static str> {
        let starts_at = self.starts_at_utc()?;
        Ok(TicketInput {
            title: self.title.clone(),
            price: as_typed_amount(&self.price, currency),
            venue: non_empty(&self.venue).map(Some),
            starts_at: starts_at.map(|at| Some(rfc3339(at))),
            face_value: non_empty(&self.face_value).map(|v| Some(as_typed_amount(&v, currency))),
            for_sale: None,
        })
    }

    /// An edit of `current`: a detail that is unchanged is not sent (the API keeps it; a sold
    /// ticket's details may not change, and the form shows the start to the minute only), one
    /// emptied is sent as `null` (cleared). Prices are typed in `currency` (the site's).
    pub fn for_update(
        &self,
        current: &Ticket,
        currency: &str,
    ) -> Result<TicketInput, &'static str> {
        let starts_at = self.starts_at_utc()?;
        let venue = non_empty(&self.venue);
        let venue = (venue.as_deref() != current.venue.as_deref().map(str::trim)).then_some(venue);
        let same_start = match (starts_at, current.starts_at) {
            (Some(new), Some(old)) => to_minute(new) == to_minute(old.to_datetime()),
            (None, None) => true,
            _ => false,
        };
        let starts_at = (!same_start).then(|| starts_at.map(rfc3339));
        let face_value = non_empty(&self.face_value).map(|v| as_typed_amount(&v, currency));
        let same_face_value = match (&face_value, current.face_value) {
            (Some(text), Some(old)) => Cents::parse_decimal(text).ok() == Some(old),
            (None, None) => true,
            _ => false,
        };
        let face_value = (!same_face_value).then_some(face_value);
        Ok(TicketInput {
            title: self.title.clone(),
            price: as_typed_amount(&self.price, currency),
            venue,
            starts_at,
            face_value,
            for_sale: None,
        })
    }
}

/// The fields of the alert forms (on `/alerts`, and "Alert me" on a search without results).
pub const ALERT_FIELDS: [FormField; 2] = [SEARCH, FormField::new("maxPrice", "Maximum price")];

/// What an alert form sent, as typed (trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertForm {
    pub q: String,
    /// The most to pay, as typed; empty for any price.
    pub max_price: String,
}

impl AlertForm {
    pub fn from_fields(fields: &HashMap<String, String>) -> Self {
        let text = |name: &str| fields.get(name).map(|v| v.trim().to_owned());
        Self {
            q: text("q").unwrap_or_default(),
            max_price: text("maxPrice").unwrap_or_default(),
        }
    }

    /// What `POST /api/alerts` is sent. The price goes as typed, as a ticket's price does: the
    /// API reads it exactly (`40`, `39.50`) and its refusal lands next to the field. Left empty,
    /// it is absent: any price. The price is typed in `currency` (the site's).
    pub fn input(&self, currency: &str) -> AlertInput {
        AlertInput {
            q: self.q.clone(),
            max_price: non_empty(&self.max_price).map(|v| as_typed_amount(&v, currency)),
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// An amount as people type it, as the API reads it: `$1,250.50` → `1250.50`. Around the
/// number, the site's `currency` — its symbol (`$` for `usd`) or its code (`USD`, any case),
/// before or after it — and spaces are dropped; commas that separate thousands (`1,250`,
/// `12,500,000.00`) are dropped. `Err`: the message for the field, named `label` ("Price"), for
/// an amount in another currency (`20 EUR` or `€20` on a site in dollars: "Prices are in USD"),
/// and for what cannot be read as a number — with a hint for a comma used for cents (`20,50`)
/// or one out of place among the thousands (`1,0000`).
/// Whether the number is a valid price (more than 0, at most two decimals, not too large) is
/// the API's to say.
pub fn price_text(typed: &str, label: &str, currency: &str) -> Result<String, String> {
    let mut text = typed.trim();
    if text.is_empty() {
        return Err(format!(
            "Enter a {}, like 20 or 20.50",
            label.to_lowercase()
        ));
    }
    // The site's own symbol and code, before or after the number (`$20`, `20 USD`, `$20 USD`).
    let code = currency.to_ascii_uppercase();
    let symbol = bt_contract::money::currency_symbol(currency);
    for marker in symbol.into_iter().chain([code.as_str()]) {
        text = without_marker(text, marker);
    }
    if names_another_currency(text) {
        return Err(format!(
            "Prices are in {code}: enter the {} in {code}, like 20 or 20.50",
            label.to_lowercase()
        ));
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest.trim_start()),
        None => ("", text),
    };
    let (whole, cents) = match digits.split_once('.') {
        Some((whole, cents)) => (whole, Some(cents)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let whole = if whole.contains(',') {
        let groups: Vec<&str> = whole.split(',').collect();
        let thousands = (1..=3).contains(&groups[0].len())
            && groups.iter().all(|g| all_digits(g))
            && groups[1..].iter().all(|g| g.len() == 3);
        if thousands {
            groups.concat()
        } else if cents.is_none()
            && groups.len() == 2
            && all_digits(groups[0])
            && (1..=2).contains(&groups[1].len())
            && all_digits(groups[1])
        {
            // `20,50`: a comma for cents.
            return Err(format!("{label} uses a point for cents, like 20.50"));
        } else if groups.iter().all(|g| all_digits(g)) {
            // `1,0000`, `12,50,000`: digits, but not in thousands.
            return Err(format!(
                "{label} has a comma in the wrong place: commas go between thousands, like 1,250.50"
            ));
        } else {
            return Err(not_a_number(label));
        }
    } else {
        whole.to_owned()
    };
    let readable = match cents {
        Some(cents) => (whole.is_empty() || all_digits(&whole)) && all_digits(cents),
        None => all_digits(&whole),
    };
    if !readable {
        return Err(not_a_number(label));
    }
    Ok(match cents {
        Some(cents) => format!("{sign}{whole}.{cents}"),
        None => format!("{sign}{whole}"),
    })
}

/// `text` without `marker` (a currency's symbol or code, any case) before or after the number,
/// and the spaces beside it.
fn without_marker<'a>(text: &'a str, marker: &str) -> &'a str {
    let n = marker.len();
    if text
        .get(..n)
        .is_some_and(|head| head.eq_ignore_ascii_case(marker))
    {
        return text[n..].trim_start();
    }
    if let Some(start) = text.len().checked_sub(n)
        && text
            .get(start..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(marker))
    {
        return text[..start].trim_end();
    }
    text
}

/// Signs of currencies: one before or after a number (alone, or in `US$`, `R$`) says the amount
/// is in that currency.
const CURRENCY_SIGNS: [char; 26] = [
    '$', '€', '£', '¥', '₹', '₩', '₽', '₺', '₪', '₫', '฿', '₴', '₦', '₱', '¢', '₣', '₤', '₡', '₲',
    '₵', '₸', '₼', '₾', '₭', '₮', '₨',
];

/// Whether `text` (the site's own symbol and code dropped) is a number with a currency beside
/// it: a sign (`€20`, `US$20`) or a three-letter code (`20 EUR`) before or after the digits.
fn names_another_currency(text: &str) -> bool {
    let beside =
        |c: char| !(c.is_ascii_digit() || c.is_whitespace() || matches!(c, '.' | ',' | '-' | '+'));
    let before = &text[..text.len() - text.trim_start_matches(beside).len()];
    let after = &text[text.trim_end_matches(beside).len()..];
    let is_currency = |marker: &str| {
        marker.contains(CURRENCY_SIGNS)
            || (marker.len() == 3 && marker.bytes().all(|b| b.is_ascii_alphabetic()))
    };
    text.bytes().any(|b| b.is_ascii_digit()) && (is_currency(before) || is_currency(after))
}

fn not_a_number(label: &str) -> String {
    format!("{label} must be a number, like 20 or 20.50")
}

/// What the API is sent of an amount in `currency`: the number [`price_text`] reads, or the
/// text as typed when it reads none (the API then refuses it, and its message lands next to
/// the field).
fn as_typed_amount(typed: &str, currency: &str) -> String {
    price_text(typed, "Price", currency).unwrap_or_else(|_| typed.trim().to_owned())
}

/// The message next to the start field when it is not a date and time.
pub const STARTS_AT_UNREADABLE: &str =
    "Enter the date and time the event starts, e.g. 2027-06-12 19:30";

/// The message next to the start field when it is before 1970 (a year such as 0000 a date
/// picker lets through): the API's words for a start that has passed.
pub const STARTS_AT_PAST: &str = "Event start must be in the future";

/// The message next to the start field when it is after the last moment the API keeps
/// (9999-12-31 23:59:59.999 UTC, [`Millis::MAX`]).
pub const STARTS_AT_TOO_LATE: &str = "Event start must be in the year 9999 or earlier";

/// A `datetime-local` value (`YYYY-MM-DDTHH:MM`, seconds optional) at `offset_minutes` east of
/// UTC (empty or out of range: UTC), in UTC. Empty is `None`. A date outside the times the API
/// keeps (1970 to 9999 in UTC; a date picker lets years 0000 to 275760 through) is refused
/// with its own message, which a different date fixes, rather than as unreadable.
pub fn local_to_utc(
    local: &str,
    offset_minutes: &str,
) -> Result<Option<DateTime<Utc>>, &'static str> {
    let local = local.trim();
    if local.is_empty() {
        return Ok(None);
    }
    // Years of more than four digits (which chrono reads only with a sign): after 9999.
    if local
        .split_once('-')
        .is_some_and(|(year, _)| year.len() > 4 && year.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(STARTS_AT_TOO_LATE);
    }
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(local, format).ok())
    .ok_or(STARTS_AT_UNREADABLE)?;
    let offset = offset_minutes
        .parse::<i32>()
        .ok()
        .filter(|m| (-14 * 60..=14 * 60).contains(m))
        .and_then(|m| FixedOffset::east_opt(m * 60))
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    let at = offset
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or(STARTS_AT_UNREADABLE)?;
    if at.timestamp_millis() < Millis::EPOCH.get() {
        Err(STARTS_AT_PAST)
    } else if at.timestamp_millis() > Millis::MAX.get() {
        Err(STARTS_AT_TOO_LATE)
    } else {
        Ok(Some(at))
    }
}

/// RFC 3339 in UTC, as the API takes it: `2027-06-12T17:30:00Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The value of a `datetime-local` field for a UTC time: `2027-06-12T17:30`.
pub fn datetime_local(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M").to_string()
}

fn to_minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// What the client can tell about a chosen file before the API is asked: the API's own
/// messages for an empty file, one over 5 MB, or one that is not a PDF, PNG or JPEG (by its
/// first bytes, as the API decides; the name and type the browser gave are not believed).
pub fn check_file(file: &Upload) -> Result<(), &'static str> {
    if file.bytes.is_empty() {
        Err("The file is empty")
    } else if file.bytes.len() > MAX_FILE_BYTES {
        Err("The file must be at most 5 MB")
    } else if FileKind::sniff(&file.bytes).is_none() {
        Err("The file must be a PDF, PNG or JPEG")
    } else {
        Ok(())
    }
}

/// Whether `at` has passed (an event that started can no longer be sold).
pub fn has_started(at: Millis) -> bool {
    at <= Millis::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_as_people_type_them_and_refused_in_words() {
        let read = [
            ("20", "20"),
            ("20.50", "20.50"),
            (" 20.5 ", "20.5"),
            ("$20", "20"),
            ("$ 1,250.00", "1250.00"),
            ("1,000.50", "1000.50"),
            ("12,500,000", "12500000"),
            ("20 USD", "20"),
            (".50", ".50"),
            ("-5", "-5"),
            ("0", "0"),
            ("10.001", "10.001"),
        ];
        for (typed, sent) in read {
            assert_eq!(
                price_text(typed, "Price", "usd").as_deref(),
                Ok(sent),
                "{typed}"
            );
        }
        let refused = [
            ("abc", "Price must be a number, like 20 or 20.50"),
            ("$", "Price must be a number, like 20 or 20.50"),
            ("20$50", "Price must be a number, like 20 or 20.50"),
            (
                "1,00.50",
                "Price has a comma in the wrong place: commas go between thousands, like 1,250.50",
            ),
            (
                "1,0000",
                "Price has a comma in the wrong place: commas go between thousands, like 1,250.50",
            ),
            (
                "12,50,000",
                "Price has a comma in the wrong place: commas go between thousands, like 1,250.50",
            ),
            ("1e3", "Price must be a number, like 20 or 20.50"),
            ("20,50", "Price uses a point for cents, like 20.50"),
            ("20,5", "Price uses a point for cents, like 20.50"),
            ("", "Enter a price, like 20 or 20.50"),
            ("   ", "Enter a price, like 20 or 20.50"),
        ];
        for (typed, message) in refused {
            assert_eq!(
                price_text(typed, "Price", "usd"),
                Err(message.to_owned()),
                "{typed}"
            );
        }
        assert_eq!(
            price_text("twenty", "Face value", "usd"),
            Err("Face value must be a number, like 20 or 20.50".to_owned())
        );
    }

    #[test]
    fn a_price_is_read_in_the_sites_currency_and_refused_in_another() {
        let in_usd = "Prices are in USD: enter the price in USD, like 20 or 20.50";
        let in_eur = "Prices are in EUR: enter the price in EUR, like 20 or 20.50";
        let in_chf = "Prices are in CHF: enter the price in CHF, like 20 or 20.50";
        // (typed, the site's currency, the number sent or the message)
        let cases = [
            ("20", "usd", Ok("20")),
            ("$20", "usd", Ok("20")),
            ("20 USD", "usd", Ok("20")),
            ("usd 20", "usd", Ok("20")),
            ("$20 USD", "usd", Ok("20")),
            ("20 EUR", "usd", Err(in_usd)),
            ("€20", "usd", Err(in_usd)),
            ("£1,250.50", "usd", Err(in_usd)),
            ("20 CHF", "usd", Err(in_usd)),
            ("¥2000", "usd", Err(in_usd)),
            ("€20", "eur", Ok("20")),
            ("20,000 EUR", "eur", Ok("20000")),
            ("20", "eur", Ok("20")),
            ("$20", "eur", Err(in_eur)),
            ("20 usd", "eur", Err(in_eur)),
            ("CHF 20.50", "chf", Ok("20.50")),
            ("20 chf", "chf", Ok("20")),
            ("$20", "chf", Err(in_chf)),
            ("20 GBP", "chf", Err(in_chf)),
            // Not an amount in any currency.
            (
                "EUR",
                "usd",
                Err("Price must be a number, like 20 or 20.50"),
            ),
            (
                "abc",
                "usd",
                Err("Price must be a number, like 20 or 20.50"),
            ),
        ];
        for (typed, currency, want) in cases {
            assert_eq!(
                price_text(typed, "Price", currency),
                want.map(str::to_owned).map_err(str::to_owned),
                "{typed} on a {currency} site"
            );
        }
    }

    #[test]
    fn the_apis_messages_name_a_field_as_the_form_labels_it() {
        let max_price = ALERT_FIELDS[1];
        // (the field, the API's message, what the page says)
        let cases = [
            (SEARCH, "q must be provided", "Search must be provided"),
            (
                SEARCH,
                "q must be at most 200 characters",
                "Search must be at most 200 characters",
            ),
            (
                max_price,
                "maxPrice must be greater than 0",
                "Maximum price must be greater than 0",
            ),
            (
                TICKET_FIELDS[4],
                "faceValue must be a number",
                "Face value must be a number",
            ),
            // Already in words, or not about the field by its name: kept.
            (
                TICKET_FIELDS[1],
                "Price must be greater than 0",
                "Price must be greater than 0",
            ),
            (SEARCH, "quite wrong", "quite wrong"),
            (SEARCH, "q", "q"),
        ];
        for (field, message, worded) in cases {
            assert_eq!(field.worded(message), worded, "{message}");
        }
        let errors = [
            FieldError::new("q", "q must not contain control characters"),
            FieldError {
                message: "The request is not valid".into(),
                field: None,
            },
        ];
        assert_eq!(
            worded_messages(&errors, &[SEARCH]),
            "Search must not contain control characters The request is not valid"
        );
    }

    #[test]
    fn a_local_time_is_read_at_the_browsers_offset_or_as_utc() {
        // (the datetime-local value, tzOffset, UTC or the error)
        let cases = [
            ("2027-06-12T19:30", "120", Ok(Some("2027-06-12T17:30:00Z"))),
            ("2027-06-12T19:30", "-240", Ok(Some("2027-06-12T23:30:00Z"))),
            ("2027-06-12T19:30", "330", Ok(Some("2027-06-12T14:00:00Z"))),
            ("2027-06-12T01:00", "120", Ok(Some("2027-06-11T23:00:00Z"))),
            ("2027-06-12T19:30", "", Ok(Some("2027-06-12T19:30:00Z"))),
            ("2027-06-12T19:30", "abc", Ok(Some("2027-06-12T19:30:00Z"))),
            ("2027-06-12T19:30", "900", Ok(Some("2027-06-12T19:30:00Z"))),
            ("2027-06-12T19:30:45", "0", Ok(Some("2027-06-12T19:30:45Z"))),
            (
                "2027-06-12T19:30:45.5",
                "0",
                Ok(Some("2027-06-12T19:30:45Z")),
            ),
            (" 2027-06-12T19:30 ", "0", Ok(Some("2027-06-12T19:30:00Z"))),
            ("", "120", Ok(None)),
            ("2027-06-12", "0", Err(STARTS_AT_UNREADABLE)),
            ("2027-02-30T19:30", "0", Err(STARTS_AT_UNREADABLE)),
            // Years a date picker lets through, outside what the API takes (1970 to 9999 in
            // UTC, and in the future).
            ("0000-06-12T19:30", "0", Err(STARTS_AT_PAST)),
            ("1969-12-31T23:59", "0", Err(STARTS_AT_PAST)),
            ("1970-01-01T00:30", "60", Err(STARTS_AT_PAST)),
            ("9999-06-12T19:30", "0", Ok(Some("9999-06-12T19:30:00Z"))),
            ("9999-12-31T23:30", "-240", Err(STARTS_AT_TOO_LATE)),
            ("10000-01-01T00:00", "0", Err(STARTS_AT_TOO_LATE)),
            ("275760-09-13T00:00", "0", Err(STARTS_AT_TOO_LATE)),
            ("tomorrow", "0", Err(STARTS_AT_UNREADABLE)),
        ];
        for (local, offset, want) in cases {
            assert_eq!(
                local_to_utc(local, offset).map(|at| at.map(rfc3339)),
                want.map(|at| at.map(str::to_owned)),
                "{local:?} at {offset:?}"
            );
        }
    }

    fn ticket() -> Ticket {
        Ticket {
            id: "t1".into(),
            title: "Show".into(),
            price: Cents::new(4000),
            user_id: "u1".into(),
            version: 0,
            order_id: None,
            sold: false,
            venue: Some("Paradiso".into()),
            starts_at: Some(Millis::from_datetime(
                "2027-06-12T17:30:20Z".parse().unwrap(),
            )),
            face_value: Some(Cents::new(4000)),
            for_sale: true,
            has_file: false,
        }
    }

    #[test]
    fn an_edit_sends_only_the_details_that_changed() {
        let unchanged = TicketForm {
            title: "Show".into(),
            price: "45".into(),
            venue: " Paradiso ".into(),
            starts_at: "2027-06-12T19:30".into(),
            tz_offset: "120".into(),
            face_value: "40.00".into(),
        };
        assert_eq!(
            unchanged.for_update(&ticket(), "usd").unwrap(),
            TicketInput {
                title: "Show".into(),
                price: "45".into(),
                ..TicketInput::default()
            },
            "the same venue, the same minute, the same amount: nothing but title and price"
        );
        let cleared = TicketForm {
            venue: String::new(),
            starts_at: String::new(),
            face_value: String::new(),
            ..unchanged.clone()
        };
        let input = cleared.for_update(&ticket(), "usd").unwrap();
        assert_eq!(
            (input.venue, input.starts_at, input.face_value),
            (Some(None), Some(None), Some(None)),
            "emptied details are cleared"
        );
        let changed = TicketForm {
            venue: "Melkweg".into(),
            starts_at: "2027-06-12T20:00".into(),
            face_value: "50".into(),
            ..unchanged
        };
        let input = changed.for_update(&ticket(), "usd").unwrap();
        assert_eq!(
            (input.venue, input.starts_at, input.face_value),
            (
                Some(Some("Melkweg".into())),
                Some(Some("2027-06-12T18:00:00Z".into())),
                Some(Some("50".into()))
            )
        );
    }

    #[test]
    fn a_new_listing_sends_only_the_details_given() {
        let form = TicketForm {
            title: "Show".into(),
            price: "40".into(),
            ..TicketForm::default()
        };
        let json = serde_json::to_value(form.for_create("usd").unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"title": "Show", "price": "40"}));
        let bad_start = TicketForm {
            starts_at: "soon".into(),
            ..form
        };
        assert_eq!(bad_start.for_create("usd"), Err(STARTS_AT_UNREADABLE));
    }

    #[test]
    fn the_form_of_a_ticket_shows_its_start_in_utc_to_the_minute() {
        let form = TicketForm::of(&ticket());
        assert_eq!(form.starts_at, "2027-06-12T17:30");
        assert_eq!(form.face_value, "40.00");
        assert_eq!(form.price, "40.00");
    }

    #[test]
    fn an_alert_form_sends_its_search_and_price_as_typed() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>()
        };
        /// The fields posted.
        type Fields = &'static [(&'static str, &'static str)];
        // (the fields, the search sent, the price sent)
        let cases: [(Fields, &str, Option<&str>); 5] = [
            (
                &[("q", " opera "), ("maxPrice", " 39.50 ")],
                "opera",
                Some("39.50"),
            ),
            (&[("q", "Opera Gala"), ("maxPrice", "")], "Opera Gala", None),
            (&[("q", "opera"), ("maxPrice", "   ")], "opera", None),
            (&[("q", "opera")], "opera", None),
            (&[("maxPrice", "abc")], "", Some("abc")),
        ];
        for (pairs, q, max_price) in cases {
            let input = AlertForm::from_fields(&fields(pairs)).input("usd");
            assert_eq!(
                (input.q.as_str(), input.max_price.as_deref()),
                (q, max_price),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_file_is_checked_as_the_api_checks_it() {
        let file = |bytes: &[u8]| Upload {
            filename: "ticket.pdf".into(),
            bytes: bytes.to_vec(),
        };
        let cases: [(&[u8], Result<(), &str>); 5] = [
            (b"%PDF-1.7 ...", Ok(())),
            (b"\x89PNG\r\n\x1a\n....", Ok(())),
            (b"\xFF\xD8\xFF\xE0", Ok(())),
            (b"", Err("The file is empty")),
            (b"GIF89a", Err("The file must be a PDF, PNG or JPEG")),
        ];
        for (bytes, want) in cases {
            assert_eq!(check_file(&file(bytes)), want, "{bytes:?}");
        }
        let mut big = b"%PDF-".to_vec();
        big.resize(MAX_FILE_BYTES + 1, b' ');
        assert_eq!(
            check_file(&file(&big)),
            Err("The file must be at most 5 MB")
        );
    }
}
