//! Verifying Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex hmac>[,v1=...]`,
//! HMAC-SHA256 over `"<t>.<raw body>"` with the endpoint secret, compared in constant time, and
//! the timestamp within a tolerance (default 5 minutes) to refuse replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance")]
    TooOld,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` for `payload` with `secret`, at time `now` (Unix seconds).
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    for signature in signatures {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// A `Stripe-Signature` header for `payload` (what Stripe sends; used by tests and tools).
pub fn sign(payload: &[u8], secret: &[u8], timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn a_valid_signature_is_accepted() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(verify(BODY, &header, SECRET, 1_700_000_010, 300), Ok(()));
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = sign(BODY, SECRET, 1_700_000_000);
        let header = format!("{good},v1={}", "00".repeat(32))
            .replace("t=1700000000,", "t=1700000000,v1=abcd,");
        assert_eq!(verify(BODY, &header, SECRET, 1_700_000_000, 300), Ok(()));
    }

    #[test]
    fn a_tampered_body_or_another_secret_is_refused() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.succeeded","x":1}"#;
        assert_eq!(
            verify(tampered, &header, SECRET, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(BODY, &header, b"whsec_other", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_old_or_future_timestamp_is_refused() {
        let header = sign(BODY, SECRET, 1_700_000_000);
        assert_eq!(
            verify(BODY, &header, SECRET, 1_700_000_301, 300),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            verify(BODY, &header, SECRET, 1_699_999_600, 300),
            Err(SignatureError::TooOld)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000",
            "t=1700000000,v1=zz",
        ] {
            assert_eq!(
                verify(BODY, header, SECRET, 1_700_000_000, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }
}
