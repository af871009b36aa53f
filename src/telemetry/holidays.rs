//! The signal that the holiday tables need a review: a deadline computed
//! with national holidays of a year after
//! [`VERIFIED_THROUGH`](crate::domain::holidays::VERIFIED_THROUGH), the
//! last year they were checked against the independent reference.
//!
//! The deadline is still the one the rules give; the warning and the
//! counter say that a holiday created or moved by a law since may be
//! missing, so the reference should be regenerated and the tables
//! reviewed (see `tools/holidays/generate.py`).

use jiff::Timestamp;

use super::Metrics;
use crate::domain::deadline;
use crate::domain::holidays::VERIFIED_THROUGH;
use crate::domain::jurisdiction::{Country, Jurisdiction};

/// To call where a request's deadline has just been computed (at intake and
/// when it is extended), with the request's jurisdiction and the new due
/// time: when that deadline needed holidays past `VERIFIED_THROUGH`, warns
/// and counts it through [`holidays_unverified`].
pub fn check_deadline_holidays(metrics: &Metrics, j: &Jurisdiction, due_time: Timestamp) {
    if deadline::beyond_verified_holidays(j, due_time) {
        holidays_unverified(metrics, j.country(), j.local_date(due_time).year());
    }
}

/// Logs a warning and counts `gdpr.deadline.holidays_unverified` for a
/// deadline in `country` that falls in `due_year`, past the verified years.
/// Only the country and the year: nothing about the request or its subject.
pub fn holidays_unverified(metrics: &Metrics, country: Country, due_year: i16) {
    tracing::warn!(
        country = country.code(),
        due_year,
        verified_through = VERIFIED_THROUGH,
        "deadline computed with holiday rules not verified for its year; regenerate the holiday reference and review the tables"
    );
    metrics.holidays_unverified(country.code());
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {

    use jiff::civil::date;

    use super::*;
    use crate::domain::deadline::statutory_deadline;
    use crate::telemetry::Telemetry;
    use crate::telemetry::captured::Captured;

    /// The log lines `f` writes, and the counter's value per country
    /// afterwards.
    fn run(f: impl FnOnce(&Metrics)) -> (String, Vec<String>) {
        let telemetry = Telemetry::disabled();
        let metrics = telemetry.metrics();
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || f(&metrics));
        let logs = out.text();
        let text = telemetry.prometheus_text().expect("encodes");
        let counts = text
            .lines()
            .filter(|l| l.starts_with("gdpr_deadline_holidays_unverified_total{"))
            .map(str::to_owned)
            .collect();
        (logs, counts)
    }

    fn received(j: &Jurisdiction, year: i16, month: i8, day: i8) -> Timestamp {
        j.time_zone()
            .to_timestamp(date(year, month, day).at(12, 0, 0, 0))
            .expect("representable")
    }

    #[test]
    fn a_deadline_past_the_verified_years_warns_and_counts() {
        let de = Jurisdiction::parse("DE", "").expect("DE");
        let due = statutory_deadline(&de, received(&de, VERIFIED_THROUGH, 12, 15));
        assert!(due.beyond_verified_holidays);
        let (logs, counts) = run(|m| check_deadline_holidays(m, &de, due.due_time));
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains("country=\"DE\""), "{logs}");
        assert!(
            logs.contains(&format!("due_year={}", VERIFIED_THROUGH + 1)),
            "{logs}"
        );
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert!(counts[0].contains("country=\"DE\""), "{counts:?}");
        assert!(counts[0].ends_with(" 1"), "{counts:?}");
    }

    #[test]
    fn a_deadline_within_the_verified_years_says_nothing() {
        let de = Jurisdiction::parse("DE", "").expect("DE");
        let due = statutory_deadline(&de, received(&de, VERIFIED_THROUGH, 11, 15));
        // And a calendar-day deadline looks up no holidays, however late.
        let ca = Jurisdiction::parse("US", "US-CA").expect("US-CA");
        let ccpa = statutory_deadline(&ca, received(&ca, VERIFIED_THROUGH + 3, 1, 10));
        let (logs, counts) = run(|m| {
            check_deadline_holidays(m, &de, due.due_time);
            check_deadline_holidays(m, &ca, ccpa.due_time);
        });
        assert_eq!(logs, "");
        assert!(counts.is_empty(), "{counts:?}");
    }
}
