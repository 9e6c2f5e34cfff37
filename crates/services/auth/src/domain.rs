//! The auth domain: emails, passwords and their hashes.

use std::borrow::Cow;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use unicode_normalization::UnicodeNormalization;

/// An email address in one canonical form, so that addresses that look alike are one account.
///
/// [`Email::parse`] builds the form in this order:
///
/// 1. NFKC: compatibility and composed forms become one (`ＡＤＡ` → `ADA`, `A` + U+030A
///    combining ring → `Å`, `＠` → `@`); then trimmed and lower-cased (Unicode-aware).
/// 2. Control, white-space, format (Unicode category Cf: zero-width, bidi overrides) and other
///    default-ignorable characters are refused anywhere: they make invisible look-alikes.
/// 3. The domain (after the last `@`) is mapped by UTS-46 (IDNA) to its ASCII form, so
///    `exämple.com` and `xn--exmple-cua.com` are one domain; a domain IDNA refuses is invalid,
///    and so is one with characters other than letters, digits and hyphens (STD3).
/// 4. The local part may stay non-ASCII (internationalised mailboxes exist), in the form above.
///
/// The result must be a valid address (`email_address`) with a dotted domain, no IP address
/// (`[…]` literal or all-digit last label), no quoted local part, and at most 254 bytes.
/// Every refusal is [`Email::INVALID`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const INVALID: &'static str = "Email must be valid";

    pub fn parse(raw: Option<String>) -> Result<Self, &'static str> {
        let folded = fold(&raw.ok_or(Self::INVALID)?);
        if folded.chars().any(is_invisible) {
            return Err(Self::INVALID);
        }
        let (local, domain) = folded.rsplit_once('@').ok_or(Self::INVALID)?;
        if local.is_empty() || local.starts_with('"') || domain.starts_with('[') {
            return Err(Self::INVALID);
        }
        let domain = ascii_domain(domain).ok_or(Self::INVALID)?;
        let email = format!("{local}@{domain}");
        let valid = email.len() <= 254
            && email_address::EmailAddress::is_valid(&email)
            && domain.contains('.')
            && !domain.ends_with('.')
            && domain.split('.').all(|label| !label.is_empty())
            && !domain
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
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

/// NFKC, trimmed, lower-cased.
fn fold(raw: &str) -> String {
    raw.nfkc().collect::<String>().trim().to_lowercase()
}

/// The ASCII (punycode) form of a domain by UTS-46, letters, digits and hyphens only, labels
/// of at most 63 bytes; `None` when IDNA refuses it.
fn ascii_domain(domain: &str) -> Option<String> {
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .ok()
        .map(Cow::into_owned)
}

/// Characters that do not show, or show as nothing: controls, white space, and the format
/// (Cf) and default-ignorable code points below (zero-width spaces and joiners, bidi marks and
/// overrides, the soft hyphen, variation selectors, Hangul fillers, tags).
fn is_invisible(c: char) -> bool {
    c.is_control() || c.is_whitespace() || INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// General category Cf together with `Default_Ignorable_Code_Point` (Unicode 16), as inclusive
/// ranges.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// A password for a new account: 4 to 128 characters after trimming. The seed allowed at most
/// 20, which refused the long passwords password managers make; the wire contract only widened
/// (every password the seed took is still taken).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    pub const LENGTH: &'static str = "Password must be between 4 and 128 characters";
    pub const MISSING: &'static str = "You must supply a password";

    /// The most characters of a new password.
    pub const MAX_CHARS: usize = 128;

    /// A new password (sign-up): 4–128 characters after trimming.
    pub fn new_password(raw: Option<String>) -> Result<Self, &'static str> {
        let password = raw.ok_or(Self::LENGTH)?.trim().to_owned();
        let chars = password.chars().count();
        if (4..=Self::MAX_CHARS).contains(&chars) {
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

    /// An argon2id hash in PHC format (salted), with the default parameters.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let params = argon2::Params::default();
        let mut out = vec![
            0u8;
            params
                .output_len()
                .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN)
        ];
        let argon2 = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params.clone(),
        );
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes)?;
        with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(self.0.as_bytes(), salt_raw, &mut out, blocks)
        })?;
        Ok(PasswordHash {
            algorithm: argon2::Algorithm::Argon2id.ident(),
            version: Some(argon2::Version::V0x13.into()),
            params: (&params).try_into()?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out)?),
        }
        .to_string())
    }

    /// True when this password matches `hash`. With no hash (unknown email) it checks against
    /// a dummy hash, so both cases take the same time and reveal nothing.
    pub fn verify(&self, hash: Option<&str>) -> bool {
        let (hash, known) = match hash {
            Some(hash) => (hash, true),
            None => (dummy_hash(), false),
        };
        match self.recompute(hash) {
            Ok(matches) => matches && known,
            Err(err) => {
                tracing::error!(%err, "stored password hash cannot be checked");
                false
            }
        }
    }

    /// Hashes this password with `hash`'s algorithm, parameters and salt, and compares in
    /// constant time.
    fn recompute(&self, hash: &str) -> Result<bool, argon2::password_hash::Error> {
        use argon2::password_hash::Error;
        let parsed = PasswordHash::new(hash)?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm)?;
        let version = parsed
            .version
            .map(argon2::Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let expected = parsed.hash.ok_or(Error::PhcStringField)?;
        let salt = parsed.salt.ok_or(Error::PhcStringField)?;
        // Includes the output length, from the hash.
        let params = argon2::Params::try_from(&parsed)?;
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes)?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(self.0.as_bytes(), salt_raw, &mut out, blocks)
        })?;
        Ok(Output::new(&out)? == expected)
    }
}

/// Runs `f` with `count` argon2 memory blocks that this thread keeps between hashes. A fresh
/// 19 MiB allocation per hash is not reliably given back by the allocator (its arenas keep
/// it), so each hash would grow the process; one buffer per hashing thread keeps the memory
/// at a few hashes' worth however many sign-ins arrive.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BLOCKS.with(|blocks| match blocks.try_borrow_mut() {
        Ok(mut blocks) => {
            if blocks.len() < count {
                blocks.resize(count, argon2::Block::default());
            }
            f(&mut blocks[..count])
        }
        // Re-entered on this thread (never in practice): a buffer of its own.
        Err(_) => f(&mut vec![argon2::Block::default(); count]),
    })
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

    fn parse(raw: &str) -> Result<Email, &'static str> {
        Email::parse(Some(raw.to_owned()))
    }

    #[test]
    fn look_alike_spellings_are_one_email() {
        let cases = [
            (
                "A + combining ring is precomposed å",
                "A\u{030A}DA@EXAMPLE.COM",
                "åda@example.com",
                "åda@example.com",
            ),
            (
                "full-width letters are ASCII",
                "ＡＤＡ@example.com",
                "ada@example.com",
                "ada@example.com",
            ),
            (
                "a Unicode domain is its punycode",
                "ada@exämple.com",
                "ada@xn--exmple-cua.com",
                "ada@xn--exmple-cua.com",
            ),
            (
                "a decomposed Unicode domain is its punycode",
                "ada@exa\u{0308}mple.com",
                "ADA@XN--EXMPLE-CUA.COM",
                "ada@xn--exmple-cua.com",
            ),
            (
                "full-width @ and ideographic full stop",
                "ada＠example。com",
                "ada@example.com",
                "ada@example.com",
            ),
            (
                "Kelvin sign is k",
                "\u{212A}ate@example.com",
                "kate@example.com",
                "kate@example.com",
            ),
            (
                "full-width space is trimmed",
                "\u{3000}ada@example.com\u{3000}",
                "ada@example.com",
                "ada@example.com",
            ),
        ];
        for (case, a, b, want) in cases {
            let (a, b) = (parse(a), parse(b));
            assert_eq!(a, b, "{case}");
            assert_eq!(a.unwrap().as_str(), want, "{case}");
        }
    }

    #[test]
    fn ascii_addresses_keep_their_spelling() {
        for email in [
            "test@test.com",
            "ada.lovelace+tix@example.co.uk",
            "o'brien_1-2@mail.example-shop.io",
            "x@xn--p1ai.xn--p1ai",
            "ada@ab--cd.com",
        ] {
            assert_eq!(parse(email).map(|e| e.0), Ok(email.to_owned()), "{email}");
        }
    }

    #[test]
    fn non_ascii_local_parts_are_kept_in_canonical_form() {
        let cases = [
            ("precomposed stays", "åda@example.com", "åda@example.com"),
            (
                "upper case is lowered",
                "ÅDA@example.com",
                "åda@example.com",
            ),
            (
                "Greek with final sigma",
                "ΑΔΑΣ@example.gr",
                "αδας@example.gr",
            ),
            ("CJK", "用户@例子.中国", "用户@xn--fsqu00a.xn--fiqs8s"),
        ];
        for (case, raw, want) in cases {
            assert_eq!(parse(raw).map(|e| e.0), Ok(want.to_owned()), "{case}");
        }
    }

    #[test]
    fn invisible_characters_are_refused_anywhere() {
        let cases = [
            ("zero-width space", '\u{200B}'),
            ("zero-width non-joiner", '\u{200C}'),
            ("zero-width joiner", '\u{200D}'),
            ("left-to-right mark", '\u{200E}'),
            ("right-to-left mark", '\u{200F}'),
            ("right-to-left override", '\u{202E}'),
            ("left-to-right isolate", '\u{2066}'),
            ("word joiner", '\u{2060}'),
            ("byte order mark", '\u{FEFF}'),
            ("soft hyphen", '\u{00AD}'),
            ("Arabic letter mark", '\u{061C}'),
            ("Mongolian vowel separator", '\u{180E}'),
            ("combining grapheme joiner", '\u{034F}'),
            ("variation selector", '\u{FE0F}'),
            ("Hangul filler", '\u{3164}'),
            ("tag letter", '\u{E0041}'),
            ("interlinear annotation", '\u{FFF9}'),
            ("no-break space", '\u{00A0}'),
            ("ideographic space", '\u{3000}'),
            ("line separator", '\u{2028}'),
            ("tab", '\t'),
            ("bell", '\u{0007}'),
            ("delete", '\u{007F}'),
            ("C1 control", '\u{0085}'),
        ];
        for (case, c) in cases {
            let inside = [
                format!("ad{c}a@example.com"),
                format!("ada{c}@example.com"),
                format!("ada@{c}example.com"),
                format!("ada@exam{c}ple.com"),
            ];
            // White space at either end is trimmed; anything else there is refused.
            let ends = [format!("{c}ada@example.com"), format!("ada@example.com{c}")];
            let ends = if c.is_whitespace() {
                &[][..]
            } else {
                &ends[..]
            };
            for raw in inside.iter().chain(ends) {
                assert_eq!(parse(raw), Err(Email::INVALID), "{case}: {raw:?}");
            }
        }
    }

    #[test]
    fn domains_that_idna_refuses_are_invalid() {
        let long_label = format!("ada@{}é.com", "a".repeat(61));
        let cases = [
            ("punycode that decodes to a control", "ada@xn--a.com"),
            ("punycode that does not decode", "ada@xn--zz.com"),
            (
                "left-to-right and right-to-left in one label",
                "ada@a\u{05D0}.com",
            ),
            ("an unassigned code point", "ada@a\u{0378}b.com"),
            ("an underscore", "ada@foo_bar.com"),
            ("a symbol other than a hyphen", "ada@foo!bar.com"),
            ("a 63-byte label that is longer as punycode", &long_label),
        ];
        for (case, raw) in cases {
            assert!(
                email_address::EmailAddress::is_valid(&fold(raw)),
                "{case}: only IDNA should refuse {raw:?}"
            );
            assert_eq!(parse(raw), Err(Email::INVALID), "{case}: {raw:?}");
        }
    }

    #[test]
    fn ip_addresses_are_not_domains() {
        for (case, raw) in [
            ("IPv4 literal", "ada@[192.0.2.1]"),
            ("IPv6 literal", "ada@[IPv6:2001:db8::1]"),
            ("bare IPv4", "ada@192.0.2.1"),
            ("numeric last label", "ada@example.123"),
        ] {
            assert_eq!(parse(raw), Err(Email::INVALID), "{case}");
        }
    }

    #[test]
    fn the_length_limit_applies_to_the_canonical_form() {
        let domain = format!(
            "{}.{}.{}.com",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(60)
        );
        let cases = [
            (
                "254 ASCII bytes",
                format!("{}@{}.com", "a".repeat(64), &domain[..185]),
                Some(254),
            ),
            (
                "255 ASCII bytes",
                format!("{}@{}.com", "a".repeat(64), &domain[..186]),
                None,
            ),
            (
                "241 bytes that grow to 257 (ⅷ is viii)",
                format!("{}@{domain}", "ⅷ".repeat(16)),
                None,
            ),
            (
                "365 bytes that shrink to 125 (full-width is ASCII)",
                format!("{}@{}.com", "ａ".repeat(60), "ｂ".repeat(60)),
                Some(125),
            ),
        ];
        for (case, raw, want) in cases {
            let got = parse(&raw).map(|e| e.0.len());
            assert_eq!(got.ok(), want, "{case}: {} raw bytes", raw.len());
        }
    }

    #[test]
    fn the_canonical_form_parses_to_itself() {
        let bmp = (0..=0xFFFF_u32).filter_map(char::from_u32);
        for c in bmp {
            for raw in [format!("a{c}b@example.com"), format!("ab@x{c}y.com")] {
                if let Ok(email) = parse(&raw) {
                    assert_eq!(parse(email.as_str()), Ok(email), "U+{:04X}", c as u32);
                }
            }
        }
    }

    #[test]
    fn new_passwords_are_4_to_128_characters_after_trimming() {
        let longest = "ü".repeat(128);
        let seed_longest = "12345678901234567890";
        let manager = "Xk9#".repeat(16);
        for ok in [
            "pass",
            "  pass  ",
            seed_longest,
            "pässwörd",
            &manager,
            &longest,
        ] {
            assert!(Password::new_password(Some(ok.into())).is_ok(), "{ok:?}");
        }
        let too_long = "p".repeat(129);
        let padded = format!("  {longest}  ");
        assert!(
            Password::new_password(Some(padded)).is_ok(),
            "trimmed first"
        );
        for bad in ["", "abc", "   abc   ", &too_long] {
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
    fn hashes_from_the_standard_argon2_api_still_verify() {
        // Accounts created before hashing reused its memory: the same PHC strings.
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let stored = Argon2::default()
            .hash_password(b"secret", &salt)
            .unwrap()
            .to_string();
        assert!(
            Password::given(Some("secret".into()))
                .unwrap()
                .verify(Some(&stored))
        );
        assert!(
            !Password::given(Some("secreT".into()))
                .unwrap()
                .verify(Some(&stored))
        );
        // And ours verifies with the standard API, so the format is the same.
        use argon2::password_hash::PasswordVerifier;
        let ours = Password::given(Some("secret".into()))
            .unwrap()
            .hash()
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"secret", &parsed)
                .is_ok()
        );
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        // A damaged stored hash is a refusal, not a panic.
        assert!(
            !Password::given(Some("secret".into()))
                .unwrap()
                .verify(Some("$argon2id$v=19$bad"))
        );
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let password = Password::given(Some("hunter2".into())).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
