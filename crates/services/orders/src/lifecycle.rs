//! The one way an existing order changes: lock it, apply a [`Command`] (a pure transition of
//! [`domain`](crate::domain)), store it and stage the event it announces — all in the caller's
//! transaction. The HTTP handlers and the event handlers both come through here.

use bt_contract::{ApiError, Millis, OrderId};
use bt_platform::Tx;
use bt_platform::bus::Outbox;

use crate::domain::{Command, Order, OrderEvent, Refusal};
use crate::store;

/// What came of a command.
#[derive(Debug)]
pub enum Executed {
    /// There is no such order.
    NotFound,
    /// The order changed (stored, its event staged).
    Changed(Order),
    /// The command does not apply to the order as it is.
    Refused { order: Order, refusal: Refusal },
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("order {0} changed while it was locked")]
    Conflict(OrderId),
}

impl From<ExecuteError> for ApiError {
    fn from(err: ExecuteError) -> Self {
        match err {
            ExecuteError::Database(err) => err.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Applies `command` to order `id` inside `tx`.
pub async fn execute(
    tx: &mut Tx,
    outbox: &Outbox,
    id: &OrderId,
    command: Command,
    now: Millis,
) -> Result<Executed, ExecuteError> {
    let Some(order) = store::lock_order(tx, id).await? else {
        return Ok(Executed::NotFound);
    };
    let read_version = order.version;
    let transition = match order.clone().apply(command, now) {
        Ok(transition) => transition,
        Err(refusal) => return Ok(Executed::Refused { order, refusal }),
    };
    if !store::save_order(tx, &transition.order, read_version).await? {
        return Err(ExecuteError::Conflict(id.clone()));
    }
    match transition.event {
        Some(OrderEvent::Cancelled(event)) => {
            outbox.stage(tx, event).await?;
        }
        Some(OrderEvent::Completed(event)) => {
            outbox.stage(tx, event).await?;
        }
        None => {}
    }
    Ok(Executed::Changed(transition.order))
}
