//! Newtypes for personal data. They can only hold valid values, have no
//! `Display`, and their `Debug` is redacted, so a stray `{:?}` or an
//! instrumented function's arguments never put personal data in a log line.

use std::fmt;

use jiff::civil::Date;

/// An email address (of a subject or a guardian).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

/// A person's full name (a guardian's).
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

/// A date of birth.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(Date);

/// Longest accepted email address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest accepted person name.
pub const MAX_NAME_LEN: usize = 200;
/// Earliest accepted year of birth.
pub const MIN_BIRTH_YEAR: i16 = 1900;

impl Email {
    /// Accepts `local@domain` with a dotted domain, no spaces or control
    /// characters. Deliverability is the controller's business, not ours.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.chars().count() > MAX_EMAIL_LEN {
            return Err("must be at most 254 characters");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err("must be an address like name@example.org");
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err("must be an address like name@example.org");
        }
        Ok(Self(s.to_owned()))
    }

    /// The address, for storage and for the API response.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PersonName {
    /// Accepts 1 to 200 characters, not only spaces, no control characters.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.trim().is_empty() {
            return Err("is required");
        }
        if s.chars().count() > MAX_NAME_LEN {
            return Err("must be at most 200 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(s.to_owned()))
    }

    /// The name, for storage and for the API response.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl DateOfBirth {
    /// Builds a date of birth from year, month and day; the date must exist
    /// and lie between 1900-01-01 and `latest` (the day of receipt).
    pub fn parse(year: i32, month: i32, day: i32, latest: Date) -> Result<Self, &'static str> {
        let (Ok(y), Ok(m), Ok(d)) = (i16::try_from(year), i8::try_from(month), i8::try_from(day))
        else {
            return Err("is not a valid calendar date");
        };
        let date = Date::new(y, m, d).map_err(|_| "is not a valid calendar date")?;
        if date.year() < MIN_BIRTH_YEAR {
            return Err("must not be before 1900");
        }
        if date > latest {
            return Err("must not be after the day the request was received");
        }
        Ok(Self(date))
    }

    /// Rebuilds a stored date of birth without the range checks, which held
    /// when it was first accepted.
    pub fn from_stored(date: Date) -> Self {
        Self(date)
    }

    /// The date, for the age rule, storage and the API response.
    pub fn expose(&self) -> Date {
        self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

impl fmt::Debug for DateOfBirth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DateOfBirth(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn debug_never_shows_the_value() {
        let e = Email::parse("ada@example.org").expect("valid");
        let n = PersonName::parse("Ada Lovelace").expect("valid");
        let d = DateOfBirth::parse(1990, 12, 10, date(2026, 1, 1)).expect("valid");
        let all = format!("{e:?} {n:?} {d:?}");
        assert!(!all.contains("ada"), "{all}");
        assert!(!all.contains("Lovelace"), "{all}");
        assert!(!all.contains("1990"), "{all}");
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.org",
            "a@",
            "a@b",
            "a@.b",
            "a@b.",
            "a@b..c",
            "a b@c.d",
            "a@b@c.d",
            "a\u{0}@b.c",
            long.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert!(PersonName::parse("Zoë O'Brien-Łukasz").is_ok());
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse("a\nb").is_err());
        assert!(PersonName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn dates_of_birth() {
        let today = date(2026, 3, 1);
        assert!(DateOfBirth::parse(2024, 2, 29, today).is_ok());
        assert!(DateOfBirth::parse(2025, 2, 29, today).is_err());
        assert!(DateOfBirth::parse(2026, 2, 30, today).is_err());
        assert!(DateOfBirth::parse(2026, 13, 1, today).is_err());
        assert!(DateOfBirth::parse(1899, 12, 31, today).is_err());
        assert!(DateOfBirth::parse(1900, 1, 1, today).is_ok());
        assert!(DateOfBirth::parse(2026, 3, 1, today).is_ok());
        assert!(DateOfBirth::parse(2026, 3, 2, today).is_err());
        assert!(DateOfBirth::parse(70000, 1, 1, today).is_err());
        assert!(DateOfBirth::parse(0, 0, 0, today).is_err());
    }
}
