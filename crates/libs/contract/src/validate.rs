//! Collects one error per failed field, so that a client learns every problem at once.

use crate::error::{ApiError, FieldError};

/// ```
/// use bt_contract::Validator;
/// let mut v = Validator::default();
/// let age: Option<u32> = v.check("age", "x".parse::<u32>().map_err(|_| "Age must be a number"));
/// let name = v.check("name", Ok::<_, String>("Ada"));
/// assert!(age.is_none() && name.is_some());
/// assert!(v.finish().is_err());
/// ```
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    /// Records the error of `result` against `field`, or passes the value through.
    pub fn check<T, M: Into<String>>(
        &mut self,
        field: &'static str,
        result: Result<T, M>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.push(FieldError::new(field, message));
                None
            }
        }
    }

    /// `Ok(())` when every checked field passed, else a 400 with every failure.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// Runs every check, then returns all values or all errors:
/// `let (email, password) = validate!(email: Email::parse(..), password: Password::parse(..))?;`
/// A field whose wire name is not a Rust identifier is named with `as`:
/// `validate!(ticket_id as "ticketId": TicketId::parse(..))`.
#[macro_export]
macro_rules! validate {
    ($($field:ident $(as $name:literal)? : $check:expr),+ $(,)?) => {{
        let mut validator = $crate::Validator::default();
        $( let $field = validator.check($crate::__field_name!($field $(, $name)?), $check); )+
        match validator.finish() {
            Ok(()) => Ok(($( $field.expect("checked above"), )+)),
            Err(err) => Err(err),
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $name:literal) => {
        $name
    };
}

#[cfg(test)]
mod tests {
    use crate::ApiError;

    #[test]
    fn validate_reports_every_failed_field_in_order() {
        let result: Result<(u32, u32, u32), ApiError> = validate!(
            a: "1".parse::<u32>().map_err(|_| "A must be a number"),
            b: "x".parse::<u32>().map_err(|_| "B must be a number"),
            c as "cField": "y".parse::<u32>().map_err(|_| "C must be a number"),
        );
        let Err(ApiError::Validation(errors)) = result else {
            panic!("expected validation errors");
        };
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_deref().unwrap(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("b", "B must be a number"),
                ("cField", "C must be a number")
            ]
        );
    }

    #[test]
    fn validate_returns_every_value_when_all_pass() {
        let result: Result<(u32, String), ApiError> = validate!(
            a: "7".parse::<u32>().map_err(|_| "bad"),
            b: Ok::<_, String>("ok".to_owned()),
        );
        assert_eq!(result.unwrap(), (7, "ok".to_owned()));
    }
}
