//! The orders domain.

use bt_contract::Cents;
use bt_contract::events::OrderStatus;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// An order with its ticket, as stored (one row of `orders` joined with the replica).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub expires_at: i64,
    pub version: i64,
    pub ticket_id: String,
    pub ticket_title: String,
    pub ticket_price: i64,
    pub ticket_version: i64,
}

/// An order as the API shows it: `{id, userId, status, expiresAt, version, ticket}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    /// ISO-8601 UTC.
    pub expires_at: String,
    pub version: i64,
    pub ticket: TicketJson,
}

/// The ticket inside an order: `{id, title, price, version}`.
#[derive(Debug, Clone, Serialize)]
pub struct TicketJson {
    pub id: String,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

impl OrderRow {
    pub fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Cancelled)
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.expires_at).unwrap_or_default()
    }

    pub fn to_json(&self) -> OrderJson {
        OrderJson {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            status: self.status(),
            expires_at: iso(self.expires_at()),
            version: self.version,
            ticket: TicketJson {
                id: self.ticket_id.clone(),
                title: self.ticket_title.clone(),
                price: Cents::new(self.ticket_price),
                version: self.ticket_version,
            },
        }
    }
}

/// ISO-8601 in UTC with milliseconds: `2026-11-25T09:15:00.000Z`.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The ticket replica row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub id: String,
    pub title: String,
    pub price: i64,
    pub user_id: String,
    pub version: i64,
}
