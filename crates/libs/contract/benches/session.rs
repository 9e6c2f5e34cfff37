//! What verifying a session token costs: `cargo bench -p bt-contract --bench session`.
//!
//! In a rush every buyer's first request brings a token this process has not seen, so the
//! figure that matters is a new token's. Printed beside it: the same token again, and
//! `jsonwebtoken::decode` with the validation the service used before (BENCHMARKS.md, issue
//! 16 part 16). Three rounds of 20,000 tokens each, ns per token.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bt_contract::session::{Claims, SessionKeys};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const TOKENS: usize = 20_000;

fn ns_per(start: Instant, count: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / count as f64
}

fn main() {
    let secret = b"bench-key-that-is-at-least-32-bytes-long";
    let keys = SessionKeys::new(secret, Duration::from_secs(3600), false);
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            keys.issue(&format!("{i:024x}"), &format!("buyer{i}@bench.test"))
                .expect("a token")
                .0
        })
        .collect();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    validation.leeway = 5;
    let decoding = DecodingKey::from_secret(secret);
    println!("| round | new tokens | one token again | jsonwebtoken::decode |");
    println!("|---|---|---|---|");
    for round in 1..=3 {
        let keys = SessionKeys::new(secret, Duration::from_secs(3600), false);
        let start = Instant::now();
        for token in &tokens {
            assert!(black_box(keys.verify(token)).is_some());
        }
        let new = ns_per(start, TOKENS);
        let start = Instant::now();
        for _ in 0..TOKENS {
            assert!(black_box(keys.verify(&tokens[0])).is_some());
        }
        let again = ns_per(start, TOKENS);
        let start = Instant::now();
        for token in &tokens {
            assert!(
                black_box(jsonwebtoken::decode::<Claims>(
                    token,
                    &decoding,
                    &validation
                ))
                .is_ok()
            );
        }
        let decode = ns_per(start, TOKENS);
        println!("| {round} | {new:.0} ns | {again:.0} ns | {decode:.0} ns |");
    }
}
