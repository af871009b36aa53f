//! The age rule: who may file a request alone, who needs a guardian, who is
//! turned away.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Age thresholds, from configuration (defaults 15 and 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgePolicy {
    /// Below this age a request is refused outright.
    pub minimum_age: u8,
    /// From this age the subject acts alone; between the two a guardian must
    /// consent.
    pub adult_age: u8,
}

impl Default for AgePolicy {
    fn default() -> Self {
        Self {
            minimum_age: 15,
            adult_age: 18,
        }
    }
}

/// What the age rule decides for one subject on one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgeDecision {
    /// Under the minimum age: the request is not accepted.
    Blocked,
    /// A minor old enough to ask, but only with a guardian's consent.
    NeedsGuardian,
    /// An adult: the request proceeds.
    Proceeds,
}

impl AgePolicy {
    /// Checks that the thresholds make sense; used when parsing configuration.
    pub fn new(minimum_age: u8, adult_age: u8) -> Result<Self, String> {
        if minimum_age > adult_age {
            return Err(format!(
                "minimum age {minimum_age} must not exceed adult age {adult_age}"
            ));
        }
        Ok(Self {
            minimum_age,
            adult_age,
        })
    }

    /// Applies the rule to a subject born on `born`, on the day `on`.
    pub fn decide(&self, born: Date, on: Date) -> AgeDecision {
        let age = age_in_years(born, on);
        if age < i32::from(self.minimum_age) {
            AgeDecision::Blocked
        } else if age < i32::from(self.adult_age) {
            AgeDecision::NeedsGuardian
        } else {
            AgeDecision::Proceeds
        }
    }
}

/// Age in whole years on the day `on` (negative if `on` is before `born`).
///
/// A year is complete on the same month and day; someone born on 29 February
/// completes it on 1 March in years without 29 February, because (2, 28) is
/// still before (2, 29).
pub fn age_in_years(born: Date, on: Date) -> i32 {
    let mut years = i32::from(on.year()) - i32::from(born.year());
    if (on.month(), on.day()) < (born.month(), born.day()) {
        years -= 1;
    }
    years
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn decide(born: Date, on: Date) -> AgeDecision {
        AgePolicy::default().decide(born, on)
    }

    #[test]
    fn boundaries_of_the_15th_birthday() {
        let born = date(2010, 6, 15);
        assert_eq!(decide(born, date(2025, 6, 14)), AgeDecision::Blocked);
        assert_eq!(decide(born, date(2025, 6, 15)), AgeDecision::NeedsGuardian);
    }

    #[test]
    fn boundaries_of_the_18th_birthday() {
        let born = date(2007, 6, 15);
        assert_eq!(decide(born, date(2025, 6, 14)), AgeDecision::NeedsGuardian);
        assert_eq!(decide(born, date(2025, 6, 15)), AgeDecision::Proceeds);
    }

    #[test]
    fn leap_day_birthday_in_a_non_leap_year_counts_from_1_march() {
        let born = date(2008, 2, 29);
        // 2026 has no 29 February: 18 only on 1 March.
        assert_eq!(age_in_years(born, date(2026, 2, 28)), 17);
        assert_eq!(decide(born, date(2026, 2, 28)), AgeDecision::NeedsGuardian);
        assert_eq!(age_in_years(born, date(2026, 3, 1)), 18);
        assert_eq!(decide(born, date(2026, 3, 1)), AgeDecision::Proceeds);
    }

    #[test]
    fn leap_day_birthday_in_a_leap_year_counts_on_the_day() {
        let born = date(2012, 2, 29);
        assert_eq!(age_in_years(born, date(2027, 2, 28)), 14);
        assert_eq!(decide(born, date(2027, 2, 28)), AgeDecision::Blocked);
        assert_eq!(decide(born, date(2027, 3, 1)), AgeDecision::NeedsGuardian);
        // 2028 is a leap year: 16 exactly on 29 February 2028.
        assert_eq!(age_in_years(born, date(2028, 2, 28)), 15);
        assert_eq!(age_in_years(born, date(2028, 2, 29)), 16);
    }

    #[test]
    fn born_on_the_day_of_receipt_is_zero() {
        let d = date(2026, 1, 1);
        assert_eq!(age_in_years(d, d), 0);
        assert_eq!(decide(d, d), AgeDecision::Blocked);
    }

    #[test]
    fn thresholds_come_from_the_policy() {
        let policy = AgePolicy::new(13, 16).expect("valid policy");
        let born = date(2012, 1, 1);
        assert_eq!(
            policy.decide(born, date(2025, 1, 1)),
            AgeDecision::NeedsGuardian
        );
        assert_eq!(policy.decide(born, date(2028, 1, 1)), AgeDecision::Proceeds);
        assert!(AgePolicy::new(18, 15).is_err());
    }

    /// The birthday in year `year` of someone born on `born`: 1 March when the
    /// year has no 29 February.
    fn birthday_in(born: Date, year: i16) -> Date {
        Date::new(year, born.month(), born.day()).unwrap_or_else(|_| date(year, 3, 1))
    }

    #[test]
    fn exhaustive_over_a_leap_cycle_of_birth_dates() {
        let mut born = date(2004, 1, 1);
        while born < date(2008, 1, 1) {
            for n in 1..=20i16 {
                let birthday = birthday_in(born, born.year() + n);
                let eve = birthday.yesterday().expect("in range");
                assert_eq!(age_in_years(born, eve), i32::from(n) - 1, "{born} on {eve}");
                assert_eq!(
                    age_in_years(born, birthday),
                    i32::from(n),
                    "{born} on {birthday}"
                );
            }
            born = born.tomorrow().expect("in range");
        }
    }

    proptest! {
        #[test]
        fn age_never_decreases(y in 1900i16..2100, doy in 0i32..365, a in 0i32..40000, b in 0i32..40000) {
            let born = date(y, 1, 1).checked_add(jiff::Span::new().days(doy)).expect("in range");
            let (lo, hi) = (a.min(b), a.max(b));
            let d1 = born.checked_add(jiff::Span::new().days(lo)).expect("in range");
            let d2 = born.checked_add(jiff::Span::new().days(hi)).expect("in range");
            prop_assert!(age_in_years(born, d1) <= age_in_years(born, d2));
            prop_assert!(age_in_years(born, d1) >= 0);
        }

        #[test]
        fn decision_is_ordered_by_age(y in 1900i16..2020, m in 1i8..=12, d in 1i8..=28, days in 0i32..40000) {
            let born = date(y, m, d);
            let on = born.checked_add(jiff::Span::new().days(days)).expect("in range");
            let age = age_in_years(born, on);
            let expected = if age < 15 { AgeDecision::Blocked } else if age < 18 { AgeDecision::NeedsGuardian } else { AgeDecision::Proceeds };
            prop_assert_eq!(decide(born, on), expected);
        }
    }
}
