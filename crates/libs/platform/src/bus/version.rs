//! Version ordering for replicas: apply version `v` only on top of `v - 1`.

use super::Outcome;

/// What to do with an incoming version, given the version held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// `incoming` is the next version (or the first one, 0, of a record not held yet).
    Apply,
    /// Held already or superseded: acknowledge and skip.
    Stale,
    /// An earlier version is missing: retry later, never apply early.
    Gap,
}

/// Orders `incoming` against `held` (`None` when the record is not held yet).
pub fn order(held: Option<i64>, incoming: i64) -> VersionOrder {
    match held {
        None if incoming == 0 => VersionOrder::Apply,
        None => VersionOrder::Gap,
        Some(held) if incoming <= held => VersionOrder::Stale,
        Some(held) if incoming == held + 1 => VersionOrder::Apply,
        Some(_) => VersionOrder::Gap,
    }
}

impl VersionOrder {
    /// The handler outcome for anything but [`VersionOrder::Apply`].
    pub fn outcome(self, what: &str, held: Option<i64>, incoming: i64) -> Outcome {
        match self {
            Self::Apply => Outcome::Applied,
            Self::Stale => Outcome::Skipped,
            Self::Gap => Outcome::NotYet(format!(
                "{what}: holding version {}, received {incoming}",
                held.map_or("none".to_owned(), |v| v.to_string())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_apply_only_on_their_predecessor() {
        let cases = [
            (None, 0, VersionOrder::Apply),
            (None, 1, VersionOrder::Gap),
            (Some(0), 1, VersionOrder::Apply),
            (Some(0), 0, VersionOrder::Stale),
            (Some(3), 2, VersionOrder::Stale),
            (Some(3), 5, VersionOrder::Gap),
            (Some(3), 4, VersionOrder::Apply),
        ];
        for (held, incoming, want) in cases {
            assert_eq!(
                order(held, incoming),
                want,
                "held {held:?}, incoming {incoming}"
            );
        }
    }
}
