//! Legal response deadlines and working-hour arithmetic.
//!
//! Conventions, chosen so that a computed deadline is never later than the
//! law allows:
//!
//! * Days are counted in the data subject's jurisdiction: the receipt date is
//!   the calendar date in its zone at the instant the request arrived, and a
//!   deadline ends at the last microsecond of its date in that zone.
//! * GDPR periods follow Regulation (EEC, Euratom) No 1182/71, which the EDPB
//!   and the ICO apply to Art. 12(3): the day of receipt is not counted, a
//!   period of months ends on the same-numbered day of the last month (or on
//!   that month's last day if it has no such day), and a period ending on a
//!   Saturday, Sunday or public holiday runs to the end of the next working
//!   day.
//! * CCPA and LGPD periods are counted in calendar days with no roll past
//!   weekends or holidays: neither statute provides for one, so rolling could
//!   only make us late.
//! * Working days are Monday to Friday minus national holidays, for every
//!   country (including those with another weekend), see [`super::holidays`].
//! * Holiday rules are checked against an independent table only up to
//!   [`holidays::VERIFIED_THROUGH`]; a deadline that needed a later year's
//!   holidays says so in [`Deadline::beyond_verified_holidays`], so that the
//!   caller can warn (this module does no I/O).
//! * Results that would fall beyond jiff's range (year 9999) saturate at
//!   [`Date::MAX`] / [`Timestamp::MAX`]; no real request gets near it, and it
//!   keeps these functions total.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};

use super::holidays;
use super::jurisdiction::{Jurisdiction, Regime};

/// The end of a response period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    /// The last day of the period, in the jurisdiction's zone.
    pub date: Date,
    /// The last microsecond of `date` in the jurisdiction's zone: the start
    /// of the next local day minus 1 µs (so 23 or 25 hours after the start of
    /// `date` on DST days).
    pub due_time: Timestamp,
    /// Whether finding `date` looked up the national holidays of a year
    /// after [`holidays::VERIFIED_THROUGH`]: true for a period that rolls
    /// past non-working days (GDPR), in a country with holiday rules, ending
    /// after that year. The date is still the one the rules give, but no one
    /// has checked those rules for that year, so a holiday created or moved
    /// since may be missing: time to review the tables.
    pub beyond_verified_holidays: bool,
}

impl Deadline {
    const fn saturated(beyond_verified_holidays: bool) -> Deadline {
        Deadline {
            date: Date::MAX,
            due_time: Timestamp::MAX,
            beyond_verified_holidays,
        }
    }
}

/// The deadline for answering a request received at `received_at`:
/// GDPR one month (rolled to a working day), CCPA 45 calendar days,
/// LGPD 15 calendar days.
pub fn statutory_deadline(j: &Jurisdiction, received_at: Timestamp) -> Deadline {
    statutory_period(j.regime()).deadline(j, received_at)
}

fn statutory_period(regime: Regime) -> Period {
    match regime {
        // GDPR Art. 12(3): "within one month of receipt of the request".
        Regime::Gdpr => Period::months(1).rolled(),
        // Cal. Civ. Code § 1798.130(a)(2): "within 45 days of receiving".
        Regime::Ccpa => Period::days(45),
        // LGPD Art. 19(II): "within 15 days from the date of the request".
        Regime::Lgpd => Period::days(15),
    }
}

/// The deadline once the controller has extended it, counted from receipt:
/// GDPR three months (one plus "two further months", rolled), CCPA 90
/// calendar days (45 plus "an additional 45 days"), LGPD none.
pub fn extended_deadline(j: &Jurisdiction, received_at: Timestamp) -> Option<Deadline> {
    extended_period(j.regime()).map(|period| period.deadline(j, received_at))
}

/// The statutory deadline of a clock that started on local day `start` and
/// was suspended for `added_days` days: the period counted from `start`,
/// its last day moved `added_days` later, then rolled as the period rolls.
/// From the receipt date with no days added, this is
/// [`statutory_deadline`]; [`super::pause`] decides `start` and the days.
pub fn statutory_deadline_from(j: &Jurisdiction, start: Date, added_days: u32) -> Deadline {
    statutory_period(j.regime()).deadline_from(j, &j.time_zone(), start, added_days)
}

/// [`extended_deadline`] for a clock that started on local day `start` and
/// was suspended for `added_days` days, as [`statutory_deadline_from`].
pub fn extended_deadline_from(j: &Jurisdiction, start: Date, added_days: u32) -> Option<Deadline> {
    extended_period(j.regime())
        .map(|period| period.deadline_from(j, &j.time_zone(), start, added_days))
}

fn extended_period(regime: Regime) -> Option<Period> {
    match regime {
        Regime::Gdpr => Some(Period::months(3).rolled()),
        Regime::Ccpa => Some(Period::days(90)),
        // The LGPD provides no extension.
        Regime::Lgpd => None,
    }
}

/// [`Deadline::beyond_verified_holidays`] for a deadline known only by its
/// due time, such as a stored request's statutory or extended deadline
/// (both periods of a regime roll alike).
pub fn beyond_verified_holidays(j: &Jurisdiction, due_time: Timestamp) -> bool {
    let rolled = statutory_period(j.regime()).rolled;
    consults_unverified_holidays(j, rolled, j.local_date(due_time))
}

/// Whether settling a period on `last_day` looked up holidays past
/// [`holidays::VERIFIED_THROUGH`]. A rolled period looks at each day from
/// its nominal end to `last_day`, so `last_day` is the latest it saw; an
/// unrolled one looks at none.
fn consults_unverified_holidays(j: &Jurisdiction, rolled: bool, last_day: Date) -> bool {
    rolled && holidays::covers(j.country()) && !holidays::verified(last_day)
}

/// `start` plus `hours` working hours: the earliest instant by which that
/// much time on working days (Monday to Friday, not national holidays of
/// `j`'s country) has elapsed since `start`.
///
/// Each working day contributes all its real local hours, midnight to
/// midnight (23 or 25 on DST days); other days contribute nothing. So a start
/// on a non-working day counts from the next working day's midnight, and a
/// budget that runs out exactly at the end of a working day yields that
/// day's closing midnight, not the start of the next working day. Zero
/// hours yields `start` itself.
///
/// Runs a day at a time, never an hour at a time.
pub fn add_working_hours(j: &Jurisdiction, start: Timestamp, hours: u32) -> Timestamp {
    if hours == 0 {
        return start;
    }
    let budget = SignedDuration::from_hours(i64::from(hours));
    // Even counting every hour as working, the result would be out of range;
    // bailing out here also bounds the day loop below.
    if start.duration_until(Timestamp::MAX) < budget {
        return Timestamp::MAX;
    }
    walk_working_time(j, &j.time_zone(), start, budget).unwrap_or(Timestamp::MAX)
}

fn walk_working_time(
    j: &Jurisdiction,
    tz: &TimeZone,
    start: Timestamp,
    mut remaining: SignedDuration,
) -> Option<Timestamp> {
    // Days are the half-open intervals [start of day, start of next day).
    let mut day = tz.to_datetime(start).date();
    let mut day_end = start_of_day(tz, day.tomorrow().ok()?)?;
    // Where clocks fall back across midnight a date can reappear after the
    // next day began, so find the interval that really contains `start`.
    while day_end <= start {
        day = day.tomorrow().ok()?;
        day_end = start_of_day(tz, day.tomorrow().ok()?)?;
    }
    let mut cursor = start;
    loop {
        if j.is_working_day(day) {
            let available = cursor.duration_until(day_end);
            if remaining <= available {
                return cursor.checked_add(remaining).ok();
            }
            remaining = remaining.checked_sub(available)?;
        }
        cursor = day_end;
        day = day.tomorrow().ok()?;
        day_end = start_of_day(tz, day.tomorrow().ok()?)?;
    }
}

/// A response period as the statutes phrase it.
#[derive(Debug, Clone, Copy)]
struct Period {
    length: Length,
    /// Whether a period ending on a non-working day runs on to the next
    /// working day (1182/71 Art. 3(4)).
    rolled: bool,
}

#[derive(Debug, Clone, Copy)]
enum Length {
    Months(i32),
    Days(i32),
}

impl Period {
    const fn months(months: i32) -> Self {
        Self {
            length: Length::Months(months),
            rolled: false,
        }
    }

    const fn days(days: i32) -> Self {
        Self {
            length: Length::Days(days),
            rolled: false,
        }
    }

    const fn rolled(mut self) -> Self {
        self.rolled = true;
        self
    }

    fn deadline(self, j: &Jurisdiction, received_at: Timestamp) -> Deadline {
        let tz = j.time_zone();
        let receipt = tz.to_datetime(received_at).date();
        self.deadline_from(j, &tz, receipt, 0)
    }

    /// The period counted from day `start`, its nominal last day moved
    /// `added_days` later before it settles.
    fn deadline_from(
        self,
        j: &Jurisdiction,
        tz: &TimeZone,
        start: Date,
        added_days: u32,
    ) -> Deadline {
        let nominal = match self.length {
            Length::Months(months) => add_months_clamped(start, months),
            Length::Days(days) => start.checked_add(Span::new().days(days)).ok(),
        };
        nominal
            .and_then(|date| add_days(date, added_days))
            .and_then(|date| settle(j, tz, date, self.rolled))
            .unwrap_or_else(|| {
                Deadline::saturated(consults_unverified_holidays(j, self.rolled, Date::MAX))
            })
    }
}

/// `date` plus `days` calendar days; `None` beyond jiff's range.
fn add_days(date: Date, days: u32) -> Option<Date> {
    if days == 0 {
        return Some(date);
    }
    let span = Span::new().try_days(i64::from(days)).ok()?;
    date.checked_add(span).ok()
}

/// `date` plus `months`, clamped to the end of a shorter target month
/// (1182/71 Art. 3(2)(c)): 31 January + 1 month = 28 or 29 February.
fn add_months_clamped(date: Date, months: i32) -> Option<Date> {
    let index = i32::from(date.year()) * 12 + i32::from(date.month()) - 1 + months;
    let year = i16::try_from(index.div_euclid(12)).ok()?;
    let month = i8::try_from(index.rem_euclid(12) + 1).ok()?;
    let days_in_month = Date::new(year, month, 1).ok()?.days_in_month();
    Date::new(year, month, date.day().min(days_in_month)).ok()
}

/// Turns the nominal last day into a [`Deadline`], rolling past non-working
/// days when the period requires it.
fn settle(j: &Jurisdiction, tz: &TimeZone, mut date: Date, rolled: bool) -> Option<Deadline> {
    loop {
        let next = date.tomorrow().ok()?;
        if rolled && !j.is_working_day(date) {
            date = next;
            continue;
        }
        let due_time = start_of_day(tz, next)?
            .checked_sub(SignedDuration::from_micros(1))
            .ok()?;
        if tz.to_datetime(due_time).date() == date {
            return Some(Deadline {
                date,
                due_time,
                beyond_verified_holidays: consults_unverified_holidays(j, rolled, date),
            });
        }
        // The date never appeared on this zone's clocks (Samoa skipped
        // 30 December 2011), so the period ends with the next day that did.
        date = next;
    }
}

/// The first instant whose local date is `day`.
fn start_of_day(tz: &TimeZone, day: Date) -> Option<Timestamp> {
    // "Compatible" resolution gives the earlier midnight in a fold and, in a
    // gap that starts at midnight, the first instant after the gap.
    let midnight = tz.to_timestamp(day.to_datetime(Time::midnight())).ok()?;
    let just_before = midnight.checked_sub(SignedDuration::from_nanos(1)).ok()?;
    if tz.to_datetime(just_before).date() < day {
        return Some(midnight);
    }
    // The clocks jumped from before midnight to after it, so the day began
    // at that transition, which "compatible" overshoots.
    tz.preceding(midnight)
        .next()
        .map(|transition| transition.timestamp())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
pub(super) mod tests {
    use super::*;
    use jiff::ZonedDateTime;
    use jiff::civil::{DateTime, Weekday, date};
    use proptest::prelude::*;

    use crate::domain::holidays;
    use crate::domain::jurisdiction::Country;

    /// The countries where the GDPR (or UK GDPR) applies by law.
    const GDPR_COUNTRIES: [&str; 31] = [
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
        "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
        "GB",
    ];

    pub(in crate::domain) fn jurisdiction(country: &str, subdivision: &str) -> Jurisdiction {
        Jurisdiction::parse(country, subdivision).expect("valid jurisdiction")
    }

    /// The instant at which local civil time `dt` occurs in `j`.
    pub(in crate::domain) fn local(j: &Jurisdiction, dt: DateTime) -> Timestamp {
        j.time_zone().to_timestamp(dt).expect("representable")
    }

    pub(in crate::domain) fn utc(dt: DateTime) -> Timestamp {
        TimeZone::UTC.to_timestamp(dt).expect("representable")
    }

    /// Statutory deadline date for a request received at local noon.
    fn due_date(j: &Jurisdiction, received: Date) -> Date {
        statutory_deadline(j, local(j, received.at(12, 0, 0, 0))).date
    }

    fn extended_date(j: &Jurisdiction, received: Date) -> Option<Date> {
        extended_deadline(j, local(j, received.at(12, 0, 0, 0))).map(|d| d.date)
    }

    #[test]
    fn the_spec_example_sunday_first_of_february() {
        let de = jurisdiction("DE", "");
        assert_eq!(date(2026, 2, 1).weekday(), Weekday::Sunday);
        assert_eq!(due_date(&de, date(2026, 2, 1)), date(2026, 3, 2));
    }

    #[test]
    fn month_end_clamps() {
        let cases = [
            (date(2024, 1, 31), date(2024, 2, 29)),
            (date(2025, 1, 31), date(2025, 2, 28)),
            (date(2024, 1, 29), date(2024, 2, 29)),
            (date(2025, 1, 29), date(2025, 2, 28)),
            (date(2027, 3, 29), date(2027, 4, 29)),
            (date(2027, 3, 30), date(2027, 4, 30)),
            (date(2027, 3, 31), date(2027, 4, 30)),
            (date(2026, 5, 31), date(2026, 6, 30)),
            (date(2026, 12, 31), date(2027, 1, 31)),
            (date(2026, 12, 15), date(2027, 1, 15)),
        ];
        for (received, nominal) in cases {
            assert_eq!(add_months_clamped(received, 1), Some(nominal), "{received}");
        }
        assert_eq!(
            add_months_clamped(date(2026, 1, 31), 3),
            Some(date(2026, 4, 30))
        );
        assert_eq!(
            add_months_clamped(date(2023, 11, 30), 3),
            Some(date(2024, 2, 29))
        );
        assert_eq!(add_months_clamped(date(9999, 12, 1), 1), None);

        // The same through the public API, where none of these needs a roll.
        let de = jurisdiction("DE", "");
        for (received, expected) in [
            (date(2024, 1, 31), date(2024, 2, 29)),
            (date(2025, 1, 31), date(2025, 2, 28)),
            (date(2027, 3, 29), date(2027, 4, 29)),
            (date(2027, 3, 30), date(2027, 4, 30)),
            (date(2027, 3, 31), date(2027, 4, 30)),
        ] {
            assert_eq!(due_date(&de, received), expected, "{received}");
        }
    }

    #[test]
    fn weekend_roll() {
        let de = jurisdiction("DE", "");
        // 28 February 2026 is a Saturday.
        assert_eq!(due_date(&de, date(2026, 1, 28)), date(2026, 3, 2));
        assert_eq!(due_date(&de, date(2026, 1, 31)), date(2026, 3, 2));
        // 1 March 2026 is a Sunday.
        assert_eq!(due_date(&de, date(2026, 2, 1)), date(2026, 3, 2));
        assert_eq!(due_date(&de, date(2026, 2, 2)), date(2026, 3, 2));
        assert_eq!(due_date(&de, date(2026, 2, 3)), date(2026, 3, 3));
    }

    #[test]
    fn deadlines_past_the_verified_holidays_say_so() {
        let last = holidays::VERIFIED_THROUGH;
        let de = jurisdiction("DE", "");
        let noon = |j: &Jurisdiction, y, m, d| local(j, date(y, m, d).at(12, 0, 0, 0));
        let inside = statutory_deadline(&de, noon(&de, last, 11, 15));
        assert_eq!(inside.date.year(), last);
        assert!(!inside.beyond_verified_holidays);
        let past = statutory_deadline(&de, noon(&de, last, 12, 15));
        assert_eq!(past.date.year(), last + 1);
        assert!(past.beyond_verified_holidays);
        // The extension of a request received in a verified year can end
        // past it.
        let extended = extended_deadline(&de, noon(&de, last, 11, 15)).expect("GDPR extends");
        assert!(extended.beyond_verified_holidays);
        // Calendar-day periods look up no holidays at all.
        let ca = jurisdiction("US", "US-CA");
        let ccpa = statutory_deadline(&ca, noon(&ca, last + 5, 1, 10));
        assert!(!ccpa.beyond_verified_holidays);
        let br = jurisdiction("BR", "");
        assert!(!statutory_deadline(&br, noon(&br, last + 5, 1, 10)).beyond_verified_holidays);
        // A country without holiday rules has nothing to verify.
        let jp = jurisdiction("JP", "");
        assert!(holidays::covers(de.country()) && !holidays::covers(jp.country()));
        assert!(!statutory_deadline(&jp, noon(&jp, last + 5, 1, 10)).beyond_verified_holidays);
    }

    #[test]
    fn the_stored_due_time_tells_the_same_as_the_computed_deadline() {
        for regime in [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd] {
            if let Some(extended) = extended_period(regime) {
                assert_eq!(
                    extended.rolled,
                    statutory_period(regime).rolled,
                    "{regime:?}"
                );
            }
        }
        let last = holidays::VERIFIED_THROUGH;
        let mut countries: Vec<Jurisdiction> =
            GDPR_COUNTRIES.iter().map(|c| jurisdiction(c, "")).collect();
        countries.extend([
            jurisdiction("US", "US-CA"),
            jurisdiction("BR", ""),
            jurisdiction("JP", ""),
        ]);
        for j in &countries {
            let mut day = date(last, 8, 1);
            while day <= date(last + 1, 1, 31) {
                let received = local(j, day.at(12, 0, 0, 0));
                let deadlines = [
                    Some(statutory_deadline(j, received)),
                    extended_deadline(j, received),
                ];
                for deadline in deadlines.into_iter().flatten() {
                    assert_eq!(
                        beyond_verified_holidays(j, deadline.due_time),
                        deadline.beyond_verified_holidays,
                        "{j:?} {day}"
                    );
                    assert_eq!(
                        deadline.beyond_verified_holidays,
                        j.regime() == Regime::Gdpr
                            && holidays::covers(j.country())
                            && deadline.date.year() > last,
                        "{j:?} {day}"
                    );
                }
                day = day.tomorrow().expect("in range");
            }
        }
    }

    #[test]
    fn national_holidays_roll_the_deadline() {
        // Good Friday, then the weekend, then Easter Monday.
        let de = jurisdiction("DE", "");
        assert_eq!(due_date(&de, date(2026, 3, 3)), date(2026, 4, 7));
        // German Unity Day 2025 is a Friday.
        assert_eq!(due_date(&de, date(2025, 9, 3)), date(2025, 10, 6));
        // Ascension Day 2026.
        let fr = jurisdiction("FR", "");
        assert_eq!(due_date(&fr, date(2026, 4, 14)), date(2026, 5, 15));
        // Armistice Day 2026 is a Wednesday.
        assert_eq!(due_date(&fr, date(2026, 10, 11)), date(2026, 11, 12));
        // St Patrick's Day 2026 is a Tuesday.
        let ie = jurisdiction("IE", "");
        assert_eq!(due_date(&ie, date(2026, 2, 17)), date(2026, 3, 18));
        // Christmas and St Stephen's Day 2025 are Thursday and Friday.
        assert_eq!(due_date(&ie, date(2025, 11, 25)), date(2025, 12, 29));
        // Boxing Day 2026 falls on Saturday, so Monday 28th is the substitute.
        let gb = jurisdiction("GB", "");
        assert_eq!(due_date(&gb, date(2026, 11, 26)), date(2026, 12, 29));
        // A regional holiday does not roll: Epiphany is regional in Germany.
        assert_eq!(due_date(&de, date(2026, 12, 6)), date(2027, 1, 6));
    }

    #[test]
    fn extensions() {
        let de = jurisdiction("DE", "");
        assert_eq!(
            extended_date(&de, date(2026, 1, 31)),
            Some(date(2026, 4, 30))
        );
        // 1 May 2026 is Labour Day (Friday), then a weekend.
        assert_eq!(extended_date(&de, date(2026, 2, 1)), Some(date(2026, 5, 4)));
        // 30 November + 3 months clamps to Saturday 28 February, then rolls.
        assert_eq!(
            extended_date(&de, date(2025, 11, 30)),
            Some(date(2026, 3, 2))
        );
        let ca = jurisdiction("US", "US-CA");
        assert_eq!(
            extended_date(&ca, date(2026, 1, 10)),
            Some(date(2026, 4, 10))
        );
        let br = jurisdiction("BR", "");
        assert_eq!(extended_date(&br, date(2026, 1, 10)), None);
    }

    #[test]
    fn deadlines_from_a_later_start_with_days_added() {
        let de = jurisdiction("DE", "");
        let receipt = date(2026, 1, 31);
        let received = local(&de, receipt.at(12, 0, 0, 0));
        assert_eq!(
            statutory_deadline_from(&de, receipt, 0),
            statutory_deadline(&de, received)
        );
        assert_eq!(
            extended_deadline_from(&de, receipt, 0),
            extended_deadline(&de, received)
        );
        // The days are added after the month-end clamp and before the roll:
        // Saturday 28 February plus 3 is Tuesday 3 March; Thursday 30 April
        // plus 3 is Sunday 3 May, rolled to Monday 4 May.
        assert_eq!(
            statutory_deadline_from(&de, receipt, 3).date,
            date(2026, 3, 3)
        );
        assert_eq!(
            extended_deadline_from(&de, receipt, 3).map(|d| d.date),
            Some(date(2026, 5, 4))
        );
        // Calendar-day periods just add: 45 days from 10 January is
        // 24 February, 5 more Sunday 1 March, not rolled.
        let ca = jurisdiction("US", "US-CA");
        assert_eq!(
            statutory_deadline_from(&ca, date(2026, 1, 10), 5).date,
            date(2026, 3, 1)
        );
        let br = jurisdiction("BR", "");
        assert_eq!(extended_deadline_from(&br, date(2026, 1, 10), 5), None);
        // Days beyond jiff's range saturate.
        assert_eq!(
            statutory_deadline_from(&de, receipt, u32::MAX),
            Deadline::saturated(true)
        );
    }

    #[test]
    fn ccpa_counts_45_calendar_days_without_roll() {
        let ca = jurisdiction("US", "US-CA");
        assert_eq!(due_date(&ca, date(2026, 1, 10)), date(2026, 2, 24));
        // Lands on Saturday 7 March 2026 and stays there.
        assert_eq!(due_date(&ca, date(2026, 1, 21)), date(2026, 3, 7));
        // Lands on Thanksgiving and stays there.
        assert_eq!(due_date(&ca, date(2026, 10, 12)), date(2026, 11, 26));
    }

    #[test]
    fn lgpd_counts_15_calendar_days_without_roll() {
        let br = jurisdiction("BR", "");
        assert_eq!(due_date(&br, date(2026, 1, 10)), date(2026, 1, 25));
        // Lands on Black Consciousness Day and stays there.
        assert_eq!(due_date(&br, date(2026, 11, 5)), date(2026, 11, 20));
    }

    #[test]
    fn other_countries_use_gdpr_with_weekend_roll() {
        let ny = jurisdiction("US", "US-NY");
        // Received 2 a.m. UTC on 1 March is still 28 February in New York;
        // 28 March 2026 is a Saturday.
        let t = utc(date(2026, 3, 1).at(2, 0, 0, 0));
        assert_eq!(statutory_deadline(&ny, t).date, date(2026, 3, 30));
        // US federal holidays apply to US requests under the GDPR default:
        // 19 June 2026 (Juneteenth) is a Friday.
        assert_eq!(due_date(&ny, date(2026, 5, 19)), date(2026, 6, 22));
    }

    #[test]
    fn receipt_date_is_local_to_the_subject() {
        // 23:30 UTC on Saturday 31 January is already Sunday 1 February in
        // Berlin, so the example deadline applies...
        let t = utc(date(2026, 1, 31).at(23, 30, 0, 0));
        let de = jurisdiction("DE", "");
        assert_eq!(statutory_deadline(&de, t).date, date(2026, 3, 2));
        // ...while in Lisbon (UTC+0 in winter) it is still 31 January:
        // 28 February is a Saturday, so also Monday 2 March, but from a
        // different receipt date.
        let pt = jurisdiction("PT", "");
        assert_eq!(pt.local_date(t), date(2026, 1, 31));
        // Vice versa: 03:00 UTC on 1 February is still 31 January in
        // California, 45 days before 17 March.
        let ca = jurisdiction("US", "US-CA");
        let t = utc(date(2026, 2, 1).at(3, 0, 0, 0));
        assert_eq!(ca.local_date(t), date(2026, 1, 31));
        assert_eq!(statutory_deadline(&ca, t).date, date(2026, 3, 17));
        // The Azores are an hour behind Lisbon: 00:30 UTC on 16 March is
        // 15 March there.
        let azores = jurisdiction("PT", "PT-20");
        let t = utc(date(2026, 3, 16).at(0, 30, 0, 0));
        assert_eq!(statutory_deadline(&azores, t).date, date(2026, 4, 15));
        assert_eq!(statutory_deadline(&pt, t).date, date(2026, 4, 16));
    }

    #[test]
    fn due_time_is_the_last_microsecond_of_the_local_day() {
        let de = jurisdiction("DE", "");
        // Winter (CET, UTC+1).
        let deadline = statutory_deadline(&de, utc(date(2026, 1, 15).at(9, 0, 0, 0)));
        assert_eq!(deadline.date, date(2026, 2, 16));
        assert_eq!(
            deadline.due_time,
            utc(date(2026, 2, 16).at(22, 59, 59, 999_999_000))
        );
        // Summer (CEST, UTC+2).
        let deadline = statutory_deadline(&de, utc(date(2026, 6, 15).at(9, 0, 0, 0)));
        assert_eq!(deadline.date, date(2026, 7, 15));
        assert_eq!(
            deadline.due_time,
            utc(date(2026, 7, 15).at(21, 59, 59, 999_999_000))
        );
    }

    #[test]
    fn due_time_on_dst_days() {
        let ca = jurisdiction("US", "US-CA");
        // Sunday 8 March 2026: clocks spring forward, the day has 23 hours
        // and ends at UTC-7.
        let deadline = statutory_deadline(&ca, local(&ca, date(2026, 1, 22).at(12, 0, 0, 0)));
        assert_eq!(deadline.date, date(2026, 3, 8));
        assert_eq!(
            deadline.due_time,
            utc(date(2026, 3, 9).at(6, 59, 59, 999_999_000))
        );
        // Sunday 1 November 2026: clocks fall back, the day has 25 hours and
        // ends at UTC-8.
        let deadline = statutory_deadline(&ca, local(&ca, date(2026, 9, 17).at(12, 0, 0, 0)));
        assert_eq!(deadline.date, date(2026, 11, 1));
        assert_eq!(
            deadline.due_time,
            utc(date(2026, 11, 2).at(7, 59, 59, 999_999_000))
        );
    }

    #[test]
    fn start_of_day_handles_gaps_around_midnight() {
        // Santiago springs forward at midnight: 6 September 2026 starts 01:00.
        let santiago = TimeZone::get("America/Santiago").expect("zone");
        let start = start_of_day(&santiago, date(2026, 9, 6)).expect("start");
        assert_eq!(santiago.to_datetime(start), date(2026, 9, 6).at(1, 0, 0, 0));
        // A zone whose clocks jump from 23:30 straight to 00:30: the day
        // begins at the transition, shown as 00:30.
        let odd = TimeZone::posix("AAA-3BBB,M3.5.0/23:30,M10.5.0/3").expect("posix");
        let start = start_of_day(&odd, date(2026, 3, 30)).expect("start");
        assert_eq!(odd.to_datetime(start), date(2026, 3, 30).at(0, 30, 0, 0));
        let just_before = start
            .checked_sub(SignedDuration::from_nanos(1))
            .expect("instant");
        assert_eq!(odd.to_datetime(just_before).date(), date(2026, 3, 29));
    }

    #[test]
    fn a_skipped_local_day_is_never_a_deadline() {
        // Samoa skipped 30 December 2011; no period can end on a day that
        // never happened there.
        let ws = jurisdiction("WS", "");
        let tz = ws.time_zone();
        let deadline = settle(&ws, &tz, date(2011, 12, 30), false).expect("deadline");
        assert_eq!(deadline.date, date(2011, 12, 31));
        let rolled = settle(&ws, &tz, date(2011, 12, 30), true).expect("deadline");
        assert_eq!(rolled.date, date(2012, 1, 2));
    }

    #[test]
    fn far_future_saturates() {
        let de = jurisdiction("DE", "");
        let t = utc(date(9999, 12, 20).at(0, 0, 0, 0));
        assert_eq!(statutory_deadline(&de, t), Deadline::saturated(true));
        assert_eq!(add_working_hours(&de, t, u32::MAX), Timestamp::MAX);
    }

    #[test]
    fn working_hours_over_a_weekend() {
        let de = jurisdiction("DE", "");
        // Friday 15:00 + 72 h = 9 (Fri) + 24 (Mon) + 24 (Tue) + 15 (Wed).
        let friday = local(&de, date(2026, 1, 16).at(15, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, friday, 72),
            local(&de, date(2026, 1, 21).at(15, 0, 0, 0))
        );
        // Across Whit Monday it lands a day later.
        let friday = local(&de, date(2026, 5, 22).at(15, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, friday, 72),
            local(&de, date(2026, 5, 28).at(15, 0, 0, 0))
        );
        // Exactly the rest of Friday ends at the midnight closing Friday.
        let friday = local(&de, date(2026, 1, 16).at(15, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, friday, 9),
            local(&de, date(2026, 1, 17).at(0, 0, 0, 0))
        );
        assert_eq!(
            add_working_hours(&de, friday, 10),
            local(&de, date(2026, 1, 19).at(1, 0, 0, 0))
        );
        assert_eq!(add_working_hours(&de, friday, 0), friday);
    }

    #[test]
    fn working_hours_from_a_non_working_day() {
        let de = jurisdiction("DE", "");
        let saturday = local(&de, date(2026, 1, 17).at(10, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, saturday, 5),
            local(&de, date(2026, 1, 19).at(5, 0, 0, 0))
        );
        assert_eq!(add_working_hours(&de, saturday, 0), saturday);
        // Starting on Good Friday 2026 counts from Tuesday after Easter.
        let good_friday = local(&de, date(2026, 4, 3).at(10, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, good_friday, 1),
            local(&de, date(2026, 4, 7).at(1, 0, 0, 0))
        );
    }

    #[test]
    fn working_hours_across_dst() {
        let de = jurisdiction("DE", "");
        // The spring-forward Sunday (29 March 2026) is not counted anyway.
        let friday = local(&de, date(2026, 3, 27).at(15, 0, 0, 0));
        assert_eq!(
            add_working_hours(&de, friday, 72),
            local(&de, date(2026, 4, 1).at(15, 0, 0, 0))
        );
        // Egypt changes clocks on working days: Friday 24 April 2026 starts
        // at 01:00 (23 hours) and Thursday 29 October 2026 repeats 23:00
        // (25 hours).
        let eg = jurisdiction("EG", "");
        let thursday = local(&eg, date(2026, 4, 23).at(0, 0, 0, 0));
        assert_eq!(
            add_working_hours(&eg, thursday, 24 + 23),
            local(&eg, date(2026, 4, 25).at(0, 0, 0, 0))
        );
        assert_eq!(
            add_working_hours(&eg, thursday, 24 + 23 + 1),
            local(&eg, date(2026, 4, 27).at(1, 0, 0, 0))
        );
        let thursday = local(&eg, date(2026, 10, 29).at(0, 0, 0, 0));
        assert_eq!(
            add_working_hours(&eg, thursday, 25),
            local(&eg, date(2026, 10, 30).at(0, 0, 0, 0))
        );
        assert_eq!(
            add_working_hours(&eg, thursday, 24),
            utc(date(2026, 10, 29).at(21, 0, 0, 0))
        );
    }

    #[test]
    fn working_hours_are_fast_for_large_budgets() {
        let de = jurisdiction("DE", "");
        let start = utc(date(2026, 1, 1).at(0, 0, 0, 0));
        // About 80 years of working days.
        let end = add_working_hours(&de, start, 500_000);
        assert!(de.local_date(end).year() > 2100);
    }

    /// Working time in [a, b), counted independently through jiff's own
    /// day arithmetic rather than the helpers under test.
    fn working_time_between(j: &Jurisdiction, a: Timestamp, b: Timestamp) -> SignedDuration {
        let tz = j.time_zone();
        let mut total = SignedDuration::ZERO;
        let mut day: ZonedDateTime = a
            .to_zoned_datetime(tz)
            .start_of_day()
            .expect("start of day");
        while day.timestamp() < b {
            let next = day
                .tomorrow()
                .expect("tomorrow")
                .start_of_day()
                .expect("start");
            if j.is_working_day(day.date()) {
                let from = day.timestamp().max(a);
                let to = next.timestamp().min(b);
                if from < to {
                    total += from.duration_until(to);
                }
            }
            day = next;
        }
        total
    }

    fn gdpr_jurisdiction() -> impl Strategy<Value = Jurisdiction> {
        prop::sample::select(GDPR_COUNTRIES.to_vec())
            .prop_map(|code| Jurisdiction::parse(code, "").expect("valid"))
    }

    /// Instants from 1970-01-01 to 2100-01-01.
    fn instant() -> impl Strategy<Value = Timestamp> {
        (0_i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    proptest! {
        #[test]
        fn gdpr_deadline_is_a_working_day_on_or_after_the_nominal_date(
            j in gdpr_jurisdiction(),
            received in instant(),
        ) {
            let deadline = statutory_deadline(&j, received);
            let nominal = add_months_clamped(j.local_date(received), 1).expect("nominal");
            prop_assert!(deadline.date >= nominal);
            prop_assert!(j.is_working_day(deadline.date));
            prop_assert!(!matches!(deadline.date.weekday(), Weekday::Saturday | Weekday::Sunday));
            prop_assert!(!holidays::is_public_holiday(j.country(), deadline.date));
            // Nothing in between was a working day.
            let mut day = nominal;
            while day < deadline.date {
                prop_assert!(!j.is_working_day(day));
                day = day.tomorrow().expect("tomorrow");
            }
        }

        #[test]
        fn gdpr_deadline_is_monotone_in_receipt(
            j in gdpr_jurisdiction(),
            first in instant(),
            gap in 0_i64..(90 * 86_400),
        ) {
            let second = first.checked_add(SignedDuration::from_secs(gap)).expect("instant");
            // Receipt dates themselves only go backwards where clocks fall
            // back across midnight; the deadline follows the receipt date.
            prop_assume!(j.local_date(first) <= j.local_date(second));
            let a = statutory_deadline(&j, first);
            let b = statutory_deadline(&j, second);
            prop_assert!(a.date <= b.date);
            prop_assert!(a.due_time <= b.due_time);
        }

        #[test]
        fn extension_is_never_earlier_and_due_times_fall_on_their_date(
            j in gdpr_jurisdiction(),
            received in instant(),
        ) {
            let tz = j.time_zone();
            let statutory = statutory_deadline(&j, received);
            let extended = extended_deadline(&j, received).expect("gdpr extends");
            prop_assert!(extended.date >= statutory.date);
            for deadline in [statutory, extended] {
                prop_assert_eq!(tz.to_datetime(deadline.due_time).date(), deadline.date);
                let next_day = deadline
                    .due_time
                    .checked_add(SignedDuration::from_micros(1))
                    .expect("instant");
                prop_assert!(tz.to_datetime(next_day).date() > deadline.date);
            }
        }

        #[test]
        fn due_times_fall_on_their_date_for_every_country(
            index in 0_usize..249,
            received in instant(),
        ) {
            let country = Country::all().nth(index).expect("country");
            let j = Jurisdiction::from(country);
            let tz = j.time_zone();
            let deadline = statutory_deadline(&j, received);
            prop_assert_eq!(tz.to_datetime(deadline.due_time).date(), deadline.date);
        }

        #[test]
        fn working_hours_count_exactly_and_are_monotone(
            j in gdpr_jurisdiction(),
            start in instant(),
            hours in 0_u32..1_500,
            more in 0_u32..200,
            later in 0_i64..(10 * 86_400),
        ) {
            let end = add_working_hours(&j, start, hours);
            prop_assert!(end >= start);
            prop_assert_eq!(
                working_time_between(&j, start, end),
                SignedDuration::from_hours(i64::from(hours))
            );
            // Monotone in hours.
            prop_assert!(add_working_hours(&j, start, hours + more) >= end);
            // Monotone in the start.
            let start2 = start.checked_add(SignedDuration::from_secs(later)).expect("instant");
            prop_assert!(add_working_hours(&j, start2, hours) >= end);
            // Never strictly inside a non-working day, except as the midnight
            // that closes the previous working day.
            if hours > 0 {
                let tz = j.time_zone();
                let day = tz.to_datetime(end).date();
                if !j.is_working_day(day) {
                    prop_assert_eq!(Some(end), start_of_day(&tz, day));
                    prop_assert!(j.is_working_day(day.yesterday().expect("yesterday")));
                }
            }
        }
    }
}
