//! Revoked sessions across processes (see `bt_contract::session`): auth publishes
//! `session.revoked` when someone signs out, and every process that verifies sessions follows
//! those events into its [`SessionKeys`], so that verifying stays local.
//!
//! On NATS a process reads, before it serves, every revocation published within the session
//! lifetime (older ones are of expired tokens), then follows new ones as they come. The stream
//! keeps events for 7 days, so the session lifetime may not be longer (the configuration
//! checks it). With the in-process bus every service shares one [`SessionKeys`] and auth
//! revokes in it directly (and reloads its table at start): there is nothing to follow.

use std::time::{Duration, SystemTime};

use bt_contract::SessionKeys;
use bt_contract::events::{Envelope, Event, SessionRevoked};
use futures::StreamExt;

use crate::bus::{Bus, BusError, Runtime};

/// The longest session lifetime the event stream can revoke (its retention).
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long catching up with the published revocations may take at start.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// Reads the revocations published within the session lifetime into `sessions`, then keeps
/// following new ones on `runtime` until it stops. Returns once caught up.
pub async fn follow_revocations(runtime: &Runtime, sessions: SessionKeys) -> Result<(), BusError> {
    let Bus::Nats(bus) = &runtime.bus else {
        return Ok(());
    };
    // A token is accepted until `exp` (+ leeway): revocations older than a lifetime (plus a
    // minute) are of tokens that have expired.
    let since = SystemTime::now()
        .checked_sub(sessions.ttl() + Duration::from_secs(60))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let (pending, mut messages) = bus.follow_since(SessionRevoked::SUBJECT, since).await?;
    let caught_up = async {
        for _ in 0..pending {
            match messages.next().await {
                Some(Ok(payload)) => apply(&sessions, &payload),
                Some(Err(err)) => return Err(err),
                None => {
                    return Err(BusError::Nats(
                        "the revocations stream ended while catching up".into(),
                    ));
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(CATCH_UP_LIMIT, caught_up)
        .await
        .map_err(|_| {
            BusError::Nats(format!(
                "reading {pending} revoked sessions took longer than {CATCH_UP_LIMIT:?}"
            ))
        })??;
    tracing::debug!(pending, "revoked sessions read");
    // After a gap, reading the lifetime's revocations again covers what was missed:
    // revocations are idempotent.
    let ttl = sessions.ttl();
    bus.keep_following(
        runtime,
        SessionRevoked::SUBJECT,
        messages,
        move || {
            SystemTime::now()
                .checked_sub(ttl + Duration::from_secs(60))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        },
        "revoked sessions",
        move |payload| {
            if let Some(payload) = payload {
                apply(&sessions, payload);
            }
        },
    );
    Ok(())
}

fn apply(sessions: &SessionKeys, payload: &[u8]) {
    match serde_json::from_slice::<Envelope<SessionRevoked>>(payload) {
        Ok(envelope) => sessions.revoke(&envelope.data.sid, envelope.data.expires_at),
        Err(err) => tracing::error!(%err, "a session.revoked event that does not parse"),
    }
}
