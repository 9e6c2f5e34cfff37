//! The auth domain: emails, passwords and their hashes.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// An email address, trimmed and lower-cased, so that `Ada@Example.com ` and `ada@example.com`
/// are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const INVALID: &'static str = "Email must be valid";

    pub fn parse(raw: Option<String>) -> Result<Self, &'static str> {
        let email = raw.ok_or(Self::INVALID)?.trim().to_lowercase();
        let valid = email.len() <= 254
            && email_address::EmailAddress::is_valid(&email)
            && email.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !local.starts_with('"')
                    && domain.contains('.')
                    && !domain.starts_with('[')
                    && !domain.ends_with('.')
                    && domain.split('.').all(|label| !label.is_empty())
            });
        if valid {
            Ok(Self(email))
        } else {
            Err(Self::INVALID)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password for a new account: 4 to 20 characters after trimming (the seed's rule).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    pub const LENGTH: &'static str = "Password must be between 4 and 20 characters";
    pub const MISSING: &'static str = "You must supply a password";

    /// A new password (sign-up): 4–20 characters after trimming.
    pub fn new_password(raw: Option<String>) -> Result<Self, &'static str> {
        let password = raw.ok_or(Self::LENGTH)?.trim().to_owned();
        let chars = password.chars().count();
        if (4..=20).contains(&chars) {
            Ok(Self(password))
        } else {
            Err(Self::LENGTH)
        }
    }

    /// A password given to sign in: anything non-empty after trimming.
    pub fn given(raw: Option<String>) -> Result<Self, &'static str> {
        let password = raw.ok_or(Self::MISSING)?.trim().to_owned();
        if password.is_empty() || password.len() > 1024 {
            Err(Self::MISSING)
        } else {
            Ok(Self(password))
        }
    }

    /// An argon2id hash in PHC format (salted).
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Ok(Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)?
            .to_string())
    }

    /// True when this password matches `hash`. With no hash (unknown email) it checks against
    /// a dummy hash, so both cases take the same time and reveal nothing.
    pub fn verify(&self, hash: Option<&str>) -> bool {
        let (hash, known) = match hash {
            Some(hash) => (hash, true),
            None => (dummy_hash(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            tracing::error!("stored password hash is not a PHC string");
            return false;
        };
        let matches = Argon2::default()
            .verify_password(self.0.as_bytes(), &parsed)
            .is_ok();
        matches && known
    }
}

fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Password("dummy password for timing".into())
            .hash()
            .expect("hashing a constant works")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        let ok = [
            ("test@test.com", "test@test.com"),
            (
                "  Ada.Lovelace+tix@Example.CO.uk ",
                "ada.lovelace+tix@example.co.uk",
            ),
        ];
        for (raw, want) in ok {
            assert_eq!(
                Email::parse(Some(raw.into())).unwrap().as_str(),
                want,
                "{raw}"
            );
        }
        let bad = [
            "",
            "   ",
            "plain",
            "a@b",
            "@example.com",
            "a@.com",
            "a@example.",
            "a b@example.com",
            "a@exa mple.com",
            "a@@example.com",
        ];
        for raw in bad {
            assert_eq!(
                Email::parse(Some(raw.into())),
                Err(Email::INVALID),
                "{raw:?}"
            );
        }
        assert_eq!(Email::parse(None), Err(Email::INVALID));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(Some(long)), Err(Email::INVALID));
    }

    #[test]
    fn new_passwords_are_4_to_20_characters_after_trimming() {
        for ok in ["pass", "  pass  ", "12345678901234567890", "pässwörd"] {
            assert!(Password::new_password(Some(ok.into())).is_ok(), "{ok:?}");
        }
        for bad in ["", "abc", "   abc   ", "123456789012345678901"] {
            assert_eq!(
                Password::new_password(Some(bad.into())),
                Err(Password::LENGTH),
                "{bad:?}"
            );
        }
        assert_eq!(Password::new_password(None), Err(Password::LENGTH));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::new_password(Some("secret".into())).unwrap();
        let hash = password.hash().unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password.verify(Some(&hash)));
        let other = Password::given(Some("Secret".into())).unwrap();
        assert!(!other.verify(Some(&hash)));
        assert!(!password.verify(None));
        assert_ne!(hash, password.hash().unwrap(), "salted");
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let password = Password::given(Some("hunter2".into())).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
