//! The listing's text search, in one place: `GET /api/tickets?q=` filters with it and a ticket
//! alert (`POST /api/alerts {q}`) matches new listings with it, so an alert fires for exactly
//! the tickets its search would show.
//!
//! A search is its text trimmed, 1 to [`MAX_CHARS`] characters. A title matches when it
//! contains the text, ignoring case (Unicode lower case on both sides).

/// The longest search, in characters.
pub const MAX_CHARS: usize = 200;

/// A title, or a search text, as searches compare them: Unicode lower case (`str::to_lowercase`;
/// no folding beyond it: `ß` stays `ß`). The one place text is folded for a search: alerts
/// fold here, and the tickets service stores each title folded by it (`tickets.title_folded`),
/// so SQLite (whose `LOWER` folds ASCII only) and PostgreSQL find the same tickets.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// A valid search text (trimmed, not blank, at most [`MAX_CHARS`] characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Search {
    text: String,
    lower: String,
}

/// Why a search text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("must not be blank")]
    Blank,
    #[error("must be at most 200 characters")]
    TooLong,
    #[error("must not contain control characters")]
    Control,
}

impl Search {
    /// Parses a search as received: trimmed; blank, too long or with control characters is an
    /// error.
    pub fn parse(raw: &str) -> Result<Self, SearchError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(SearchError::Blank);
        }
        if text.chars().count() > MAX_CHARS {
            return Err(SearchError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(SearchError::Control);
        }
        Ok(Self {
            text: text.to_owned(),
            lower: fold(text),
        })
    }

    /// The text as the user wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text folded ([`fold`]): what titles, folded alike, are compared with (the listing's
    /// SQL compares the tickets' `title_folded` with it).
    pub fn lower(&self) -> &str {
        &self.lower
    }

    /// Whether a ticket titled `title` is one this search finds.
    pub fn matches(&self, title: &str) -> bool {
        fold(title).contains(&self.lower)
    }
}

impl std::fmt::Display for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_searches_fold_to_unicode_lower_case_alike() {
        let cases = [
            ("ÉTÉ À PARIS", "été à paris"),
            ("ÖL", "öl"),
            ("Rock Concert", "rock concert"),
            // Lower case only: no case folding beyond it (ß stays ß, not ss).
            ("STRASSE Straße", "strasse straße"),
            ("100%_\\", "100%_\\"),
        ];
        for (title, folded) in cases {
            assert_eq!(fold(title), folded, "{title}");
            let search = Search::parse(title).unwrap();
            assert_eq!(folded, search.lower(), "alerts fold {title} alike");
        }
    }

    #[test]
    fn a_search_is_trimmed_and_bounded() {
        assert_eq!(Search::parse("  Opera ").unwrap().as_str(), "Opera");
        assert_eq!(Search::parse(" \t "), Err(SearchError::Blank));
        assert_eq!(Search::parse(&"a".repeat(201)), Err(SearchError::TooLong));
        assert!(
            Search::parse(&"é".repeat(200)).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(Search::parse("a\u{0}b"), Err(SearchError::Control));
    }

    #[test]
    fn a_title_matches_when_it_contains_the_text_in_any_case() {
        let opera = Search::parse("opera").unwrap();
        assert!(opera.matches("Opera Gala"));
        assert!(opera.matches("THE PHANTOM OF THE OPERA"));
        assert!(!opera.matches("Operetta? no: Op era"));
        let accented = Search::parse("ÉTÉ").unwrap();
        assert!(accented.matches("Festival d'été"));
        let literal = Search::parse("100%_").unwrap();
        assert!(literal.matches("Tickets 100%_ sure"));
        assert!(!literal.matches("Tickets 100 percent"));
    }
}
