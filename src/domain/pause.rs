//! The request clock when the controller waits for the data subject: when it
//! starts, which pauses stop it, and the deadlines that follow.
//!
//! Days are the jurisdiction's local calendar dates, as in [`super::deadline`];
//! A is the local date a pause was asked on, B the date it was answered on,
//! and D(s) the end day of the period counted from start day s before any
//! roll to a working day. Per regime:
//!
//! * GDPR in the EU/EEA (and every country that falls back to it), and UK
//!   requests received before [`UK_ARTICLE_12A_IN_FORCE`]: time is suspended
//!   while the controller waits for the information it asked for to confirm
//!   the requester's identity (EDPB Guidelines 01/2022 on the right of
//!   access, §159). Each answered identity pause adds B − A days: the days
//!   whose end the controller spent waiting, none if the answer came the day
//!   it was asked. Due = Roll(D(receipt) + the added days).
//! * UK GDPR Art. 12A (inserted by the Data (Use and Access) Act 2025 s.76):
//!   the period begins with the latest of receipt and the arrival of the
//!   identity information asked for, S; for an access request, the days from
//!   the day a clarification was asked through the day it was answered do
//!   not count, so a clarification asked on or after S adds B − A + 1 days.
//!   Due = Roll(D(S) + the added days); the extension counts three months
//!   from the same S, plus the same days.
//! * CCPA (11 CCR §7021(b): the period runs "regardless of time required to
//!   verify the request") and LGPD: nothing pauses the clock.
//!
//! How the rules are applied at their edges:
//!
//! * Each pause adds its own days, as the rules above count them: a
//!   clarification answered on the day the next one is asked adds that day
//!   to each (B − A + 1 for both), exactly as the sum of the rule's terms.
//! * A clarification asked before S adds nothing, even if answered after S.
//! * A pause still open adds nothing and moves no start: the caller keeps
//!   the deadline it had until the answer arrives.
//! * A pause that ends before it starts is ignored.
//!
//! Waiting for a guardian's consent is not a pause (see [`super::age`]).

use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;

use super::deadline::{self, Deadline};
use super::jurisdiction::{Jurisdiction, Regime};
use super::request::RequestType;

/// The first day of receipt to which UK GDPR Art. 12A applies: the Data
/// (Use and Access) Act 2025 s.76 came into force on 5 February 2026 (The
/// Data (Use and Access) Act 2025 (Commencement No. 6) Regulations 2026,
/// SI 2026/82).
pub const UK_ARTICLE_12A_IN_FORCE: Date = date(2026, 2, 5);

/// What the controller waits for while a pause is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PauseKind {
    /// Information the controller asked for to confirm the requester's
    /// identity.
    IdentityVerification,
    /// The data subject's clarification of what an access request seeks
    /// (UK GDPR Art. 12A only).
    Clarification,
}

impl PauseKind {
    /// Every kind, in API order.
    pub const ALL: [PauseKind; 2] = [Self::IdentityVerification, Self::Clarification];

    /// Stable lower-case name, used in storage, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdentityVerification => "identity_verification",
            Self::Clarification => "clarification",
        }
    }

    /// Inverse of [`PauseKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// One wait for the data subject: from when the controller asked until the
/// answer arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub kind: PauseKind,
    /// When the controller asked.
    pub start: Timestamp,
    /// When the answer arrived; `None` while the controller still waits.
    pub end: Option<Timestamp>,
}

impl Pause {
    /// The local dates (A, B) of an answered pause; `None` while it is open
    /// or if it ends before it starts.
    fn closed_dates(&self, tz: &TimeZone) -> Option<(Date, Date)> {
        let end = self.end.filter(|end| *end >= self.start)?;
        Some((
            tz.to_datetime(self.start).date(),
            tz.to_datetime(end).date(),
        ))
    }
}

/// A request's clock given its pauses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    /// When the period began: the receipt, or under UK GDPR Art. 12A the
    /// arrival of the identity information if that came later.
    pub start: Timestamp,
    /// The statutory deadline in force, pauses counted.
    pub due: Deadline,
    /// The deadline in force once extended, pauses counted; `None` where the
    /// regime has no extension (LGPD).
    pub extended_due: Option<Deadline>,
    /// One entry per pause, in the order given: the days it added to the
    /// deadline (for a UK identity pause, the days it moved the start).
    pub counted_days: Vec<u32>,
}

/// The clock of a request received at `received_at` in `j`, given all its
/// pauses in any order; [`Clock::counted_days`] follows that order.
pub fn clock(j: &Jurisdiction, received_at: Timestamp, pauses: &[Pause]) -> Clock {
    if !pauses_move_deadline(j) {
        return Clock {
            start: received_at,
            due: deadline::statutory_deadline(j, received_at),
            extended_due: deadline::extended_deadline(j, received_at),
            counted_days: vec![0; pauses.len()],
        };
    }
    let tz = j.time_zone();
    let mut counted_days = vec![0; pauses.len()];
    let (start, start_date, suspended) = if uk_article_12a(j, received_at) {
        let (start, start_date) =
            latest_identity_start(&tz, received_at, pauses, &mut counted_days);
        // A clarification stops the days from the one it was asked through
        // the one it was answered: [A, B + 1).
        let stops = closed(&tz, pauses, PauseKind::Clarification)
            .filter(|(_, (asked, _))| *asked >= start_date)
            .map(|(index, (asked, answered))| (index, days_between(asked, answered) + 1));
        (start, start_date, count(stops, &mut counted_days))
    } else {
        // Time is suspended from the day identity was asked to the day it
        // was answered: [A, B).
        let stops = closed(&tz, pauses, PauseKind::IdentityVerification)
            .map(|(index, (asked, answered))| (index, days_between(asked, answered)));
        let receipt = tz.to_datetime(received_at).date();
        (received_at, receipt, count(stops, &mut counted_days))
    };
    Clock {
        start,
        due: deadline::statutory_deadline_from(j, start_date, suspended),
        extended_due: deadline::extended_deadline_from(j, start_date, suspended),
        counted_days,
    }
}

/// UK GDPR Art. 12A applies: the subject is in the UK and the request was
/// received, by the local date, on or after [`UK_ARTICLE_12A_IN_FORCE`].
pub fn uk_article_12a(j: &Jurisdiction, received_at: Timestamp) -> bool {
    j.country().code() == "GB" && j.local_date(received_at) >= UK_ARTICLE_12A_IN_FORCE
}

/// Whether the controller may stop the clock to ask what a request seeks:
/// only for an access request under UK GDPR Art. 12A.
pub fn clarification_allowed(
    j: &Jurisdiction,
    request_type: RequestType,
    received_at: Timestamp,
) -> bool {
    request_type == RequestType::Access && uk_article_12a(j, received_at)
}

/// Whether pauses can move a request's deadline at all: under the GDPR and
/// UK GDPR yes, under the CCPA and the LGPD never.
pub fn pauses_move_deadline(j: &Jurisdiction) -> bool {
    j.regime() == Regime::Gdpr
}

/// The answered pauses of `kind` with their input index and local dates.
fn closed<'a>(
    tz: &'a TimeZone,
    pauses: &'a [Pause],
    kind: PauseKind,
) -> impl Iterator<Item = (usize, (Date, Date))> + 'a {
    pauses
        .iter()
        .enumerate()
        .filter(move |(_, pause)| pause.kind == kind)
        .filter_map(|(index, pause)| Some((index, pause.closed_dates(tz)?)))
}

/// Art. 12A's start: the latest of receipt and the answered identity pauses'
/// ends, by local date and then instant. The pause that sets it is credited
/// with the days it moved the start date past where the others leave it.
fn latest_identity_start(
    tz: &TimeZone,
    received_at: Timestamp,
    pauses: &[Pause],
    counted_days: &mut [u32],
) -> (Timestamp, Date) {
    let receipt = (tz.to_datetime(received_at).date(), received_at);
    let ends: Vec<(usize, (Date, Timestamp))> = pauses
        .iter()
        .enumerate()
        .filter(|(_, pause)| pause.kind == PauseKind::IdentityVerification)
        .filter_map(|(index, pause)| {
            let (_, answered) = pause.closed_dates(tz)?;
            Some((index, (answered, pause.end?)))
        })
        .collect();
    let Some(&(winner, latest)) = ends
        .iter()
        .filter(|(_, end)| *end > receipt)
        .max_by_key(|(_, end)| *end)
    else {
        return (received_at, receipt.0);
    };
    let without = ends
        .iter()
        .filter(|(index, _)| *index != winner)
        .map(|(_, (answered, _))| *answered)
        .fold(receipt.0, Date::max);
    if let Some(days) = counted_days.get_mut(winner) {
        *days = days_between(without, latest.0);
    }
    (latest.1, latest.0)
}

/// The days each pause of `stops` (input index, days) adds, credited in
/// `counted_days`, and their sum.
fn count(stops: impl Iterator<Item = (usize, u32)>, counted_days: &mut [u32]) -> u32 {
    stops.fold(0_u32, |total, (index, days)| {
        if let Some(counted) = counted_days.get_mut(index) {
            *counted = days;
        }
        total.saturating_add(days)
    })
}

/// Days since an arbitrary epoch; exact, as civil days all have 24 hours.
fn day_number(day: Date) -> i64 {
    Date::ZERO.duration_until(day).as_hours().div_euclid(24)
}

/// Days from `from` to `to`, zero if `to` is not later.
fn days_between(from: Date, to: Date) -> u32 {
    u32::try_from(day_number(to) - day_number(from)).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use proptest::prelude::*;

    use crate::domain::deadline::tests::{jurisdiction, local, utc};
    use crate::domain::holidays;
    use crate::domain::jurisdiction::Country;

    use PauseKind::{Clarification, IdentityVerification};

    /// Received at local noon on `day`.
    fn noon(j: &Jurisdiction, day: Date) -> Timestamp {
        local(j, day.at(12, 0, 0, 0))
    }

    /// Asked at 10:00 local on `asked`, answered at 15:00 local on
    /// `answered` (or still open).
    fn pause(j: &Jurisdiction, kind: PauseKind, asked: Date, answered: Option<Date>) -> Pause {
        Pause {
            kind,
            start: local(j, asked.at(10, 0, 0, 0)),
            end: answered.map(|day| local(j, day.at(15, 0, 0, 0))),
        }
    }

    fn identity(j: &Jurisdiction, asked: Date, answered: Date) -> Pause {
        pause(j, IdentityVerification, asked, Some(answered))
    }

    fn clarification(j: &Jurisdiction, asked: Date, answered: Date) -> Pause {
        pause(j, Clarification, asked, Some(answered))
    }

    fn dates(clock: &Clock) -> (Date, Option<Date>) {
        (clock.due.date, clock.extended_due.map(|due| due.date))
    }

    #[test]
    fn kinds_have_stable_names() {
        assert_eq!(IdentityVerification.as_str(), "identity_verification");
        assert_eq!(Clarification.as_str(), "clarification");
        for kind in PauseKind::ALL {
            assert_eq!(PauseKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PauseKind::parse("guardian_consent"), None);
        assert_eq!(PauseKind::parse(""), None);
    }

    #[test]
    fn eu_identity_pause_after_a_receipt_on_the_31st() {
        let de = jurisdiction("DE", "");
        let received = noon(&de, date(2026, 1, 31));
        let without = clock(&de, received, &[]);
        assert_eq!(dates(&without), (date(2026, 3, 2), Some(date(2026, 4, 30))));
        // Asked Monday 2 February, answered Thursday 5 February: 3 days.
        // One month from 31 January clamps to Saturday 28 February; plus 3
        // is Tuesday 3 March. Three months end Thursday 30 April; plus 3 is
        // Sunday 3 May, rolled to Monday 4 May.
        let clock = clock(
            &de,
            received,
            &[identity(&de, date(2026, 2, 2), date(2026, 2, 5))],
        );
        assert_eq!(dates(&clock), (date(2026, 3, 3), Some(date(2026, 5, 4))));
        assert_eq!(clock.counted_days, vec![3]);
        assert_eq!(clock.start, received);
        assert_eq!(
            clock.due.due_time,
            utc(date(2026, 3, 3).at(22, 59, 59, 999_999_000))
        );
        assert!(!clock.due.beyond_verified_holidays);
    }

    #[test]
    fn eu_pause_answered_the_day_it_was_asked_adds_nothing() {
        let de = jurisdiction("DE", "");
        // One month from Tuesday 3 March 2026 is Good Friday, 3 April;
        // Easter Monday follows the weekend: Tuesday 7 April.
        let received = noon(&de, date(2026, 3, 3));
        assert!(holidays::is_public_holiday(de.country(), date(2026, 4, 3)));
        assert!(holidays::is_public_holiday(de.country(), date(2026, 4, 6)));
        let same_day = clock(
            &de,
            received,
            &[identity(&de, date(2026, 3, 5), date(2026, 3, 5))],
        );
        assert_eq!(same_day.counted_days, vec![0]);
        assert_eq!(same_day.due.date, date(2026, 4, 7));
        assert_eq!(
            same_day,
            Clock {
                counted_days: vec![0],
                ..clock(&de, received, &[])
            }
        );
        // A day more lands on Saturday 4 April: still Tuesday 7 April.
        let one_day = clock(
            &de,
            received,
            &[identity(&de, date(2026, 3, 5), date(2026, 3, 6))],
        );
        assert_eq!(one_day.counted_days, vec![1]);
        assert_eq!(one_day.due.date, date(2026, 4, 7));
        // Five days land on Wednesday 8 April.
        let five_days = clock(
            &de,
            received,
            &[identity(&de, date(2026, 3, 5), date(2026, 3, 10))],
        );
        assert_eq!(five_days.counted_days, vec![5]);
        assert_eq!(five_days.due.date, date(2026, 4, 8));
    }

    #[test]
    fn eu_pause_over_a_month_end_lands_on_a_holiday() {
        let fr = jurisdiction("FR", "");
        // Received Tuesday 7 April 2026: due Thursday 7 May without pauses.
        let received = noon(&fr, date(2026, 4, 7));
        assert_eq!(clock(&fr, received, &[]).due.date, date(2026, 5, 7));
        // Asked Thursday 30 April, answered Friday 1 May: one day, so
        // Friday 8 May, Victory in Europe Day, then the weekend: Monday
        // 11 May. Three months: Tuesday 7 July plus one, Wednesday 8 July.
        assert!(holidays::is_public_holiday(fr.country(), date(2026, 5, 8)));
        let clock = clock(
            &fr,
            received,
            &[identity(&fr, date(2026, 4, 30), date(2026, 5, 1))],
        );
        assert_eq!(clock.counted_days, vec![1]);
        assert_eq!(dates(&clock), (date(2026, 5, 11), Some(date(2026, 7, 8))));
    }

    #[test]
    fn eu_several_pauses_and_an_open_one() {
        let de = jurisdiction("DE", "");
        let received = noon(&de, date(2026, 1, 15));
        let pauses = [
            // Friday to Monday, over the weekend: 3 days.
            identity(&de, date(2026, 1, 16), date(2026, 1, 19)),
            // Answered the same day: none.
            identity(&de, date(2026, 1, 26), date(2026, 1, 26)),
            // Monday 2 to Tuesday 10 February: 8 days.
            identity(&de, date(2026, 2, 2), date(2026, 2, 10)),
            // Still open: none.
            pause(&de, IdentityVerification, date(2026, 2, 20), None),
        ];
        // One month from 15 January is Sunday 15 February (due Monday 16
        // without pauses); plus 11 days, Thursday 26 February. Three months:
        // Wednesday 15 April plus 11 is Sunday 26 April, so Monday 27 April.
        let clock = clock(&de, received, &pauses);
        assert_eq!(clock.counted_days, vec![3, 0, 8, 0]);
        assert_eq!(dates(&clock), (date(2026, 2, 26), Some(date(2026, 4, 27))));
    }

    #[test]
    fn eu_pause_over_a_weekend_into_christmas() {
        let de = jurisdiction("DE", "");
        // Received Monday 16 November 2026; asked Friday 20, answered
        // Monday 30 November: 10 days. Wednesday 16 December plus 10 is
        // Saturday 26 December, the second Christmas day: Monday 28.
        // Three months: Tuesday 16 February 2027 plus 10, Friday 26 February.
        let clock = clock(
            &de,
            noon(&de, date(2026, 11, 16)),
            &[identity(&de, date(2026, 11, 20), date(2026, 11, 30))],
        );
        assert_eq!(clock.counted_days, vec![10]);
        assert_eq!(dates(&clock), (date(2026, 12, 28), Some(date(2027, 2, 26))));
    }

    #[test]
    fn eu_days_are_the_subjects_local_dates() {
        let de = jurisdiction("DE", "");
        // 23:30 UTC on Saturday 31 January is Sunday 1 February in Berlin.
        let received = utc(date(2026, 1, 31).at(23, 30, 0, 0));
        // Asked 2 February; answered 23:30 UTC on 4 February, which is
        // already 5 February in Berlin: 3 days, not 2.
        let pause = Pause {
            kind: IdentityVerification,
            start: utc(date(2026, 2, 2).at(8, 0, 0, 0)),
            end: Some(utc(date(2026, 2, 4).at(23, 30, 0, 0))),
        };
        // One month from 1 February is Sunday 1 March; plus 3, Wednesday
        // 4 March.
        let clock = clock(&de, received, &[pause]);
        assert_eq!(clock.counted_days, vec![3]);
        assert_eq!(clock.due.date, date(2026, 3, 4));
    }

    #[test]
    fn clarifications_add_nothing_outside_article_12a() {
        let fr = jurisdiction("FR", "");
        let received = noon(&fr, date(2026, 3, 2));
        let clock = clock(
            &fr,
            received,
            &[clarification(&fr, date(2026, 3, 3), date(2026, 3, 6))],
        );
        assert_eq!(
            clock,
            Clock {
                counted_days: vec![0],
                ..super::clock(&fr, received, &[])
            }
        );
        // Nor in the UK before 5 February 2026.
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 2, 4));
        let clock = super::clock(
            &gb,
            received,
            &[clarification(&gb, date(2026, 2, 5), date(2026, 2, 9))],
        );
        assert_eq!(clock.counted_days, vec![0]);
        assert_eq!(clock.due.date, date(2026, 3, 4));
    }

    #[test]
    fn uk_received_the_day_before_and_the_day_article_12a_came_into_force() {
        let gb = jurisdiction("GB", "");
        let asked = date(2026, 2, 11);
        let answered = date(2026, 2, 16);
        // Received Wednesday 4 February: suspended Wednesday 11 to Monday
        // 16 February, 5 days. Wednesday 4 March plus 5 is Monday 9 March.
        // Three months: Monday 4 May (a bank holiday, but it is not the
        // last day) plus 5 is Saturday 9 May, so Monday 11 May.
        let before = noon(&gb, date(2026, 2, 4));
        assert!(!uk_article_12a(&gb, before));
        let clock_before = clock(&gb, before, &[identity(&gb, asked, answered)]);
        assert_eq!(clock_before.counted_days, vec![5]);
        assert_eq!(clock_before.start, before);
        assert_eq!(
            dates(&clock_before),
            (date(2026, 3, 9), Some(date(2026, 5, 11)))
        );
        // Received Thursday 5 February: the month begins with the identity
        // information's arrival on Monday 16 February, 11 days after
        // receipt; due Monday 16 March. Three months: Saturday 16 May, so
        // Monday 18 May.
        let after = noon(&gb, date(2026, 2, 5));
        assert!(uk_article_12a(&gb, after));
        let pause = identity(&gb, asked, answered);
        let clock_after = clock(&gb, after, std::slice::from_ref(&pause));
        assert_eq!(clock_after.counted_days, vec![11]);
        assert_eq!(Some(clock_after.start), pause.end);
        assert_eq!(
            dates(&clock_after),
            (date(2026, 3, 16), Some(date(2026, 5, 18)))
        );
    }

    #[test]
    fn uk_clarification_rolls_past_easter() {
        let gb = jurisdiction("GB", "");
        // Received Monday 2 March 2026; clarification asked Tuesday 3,
        // answered Friday 6 March: 3, 4, 5 and 6 March do not count, 4
        // days. Thursday 2 April plus 4 is Easter Monday, 6 April: Tuesday
        // 7 April. Three months: Tuesday 2 June plus 4 is Saturday 6 June,
        // so Monday 8 June.
        let received = noon(&gb, date(2026, 3, 2));
        assert!(holidays::is_public_holiday(gb.country(), date(2026, 4, 6)));
        let clock = clock(
            &gb,
            received,
            &[clarification(&gb, date(2026, 3, 3), date(2026, 3, 6))],
        );
        assert_eq!(clock.counted_days, vec![4]);
        assert_eq!(clock.start, received);
        assert_eq!(dates(&clock), (date(2026, 4, 7), Some(date(2026, 6, 8))));
    }

    #[test]
    fn uk_clarifications_sharing_a_day_each_count_it() {
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 3, 2));
        // 3 to 6 March (4 days), then asked again the day the first answer
        // came and answered Monday 9 March (6 to 9 March, 4 days): each
        // adds B − A + 1, 8 in all. Thursday 2 April plus 8 is Friday
        // 10 April, a working day (Easter Monday was the 6th).
        let clock = clock(
            &gb,
            received,
            &[
                clarification(&gb, date(2026, 3, 6), date(2026, 3, 9)),
                clarification(&gb, date(2026, 3, 3), date(2026, 3, 6)),
            ],
        );
        assert_eq!(clock.counted_days, vec![4, 4]);
        assert_eq!(clock.due.date, date(2026, 4, 10));
    }

    #[test]
    fn uk_start_moves_past_a_clarification() {
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 3, 9));
        let identity_pause = identity(&gb, date(2026, 3, 13), date(2026, 3, 20));
        let mut pauses = vec![
            // Asked and answered before the identity information arrived:
            // the clock had not started, nothing to stop.
            clarification(&gb, date(2026, 3, 10), date(2026, 3, 12)),
            identity_pause.clone(),
        ];
        // The month begins Friday 20 March, 11 days after receipt: due
        // Monday 20 April.
        let first = clock(&gb, received, &pauses);
        assert_eq!(first.counted_days, vec![0, 11]);
        assert_eq!(Some(first.start), identity_pause.end);
        assert_eq!(first.due.date, date(2026, 4, 20));
        // A clarification asked and answered on Monday 23 March stops that
        // one day: Tuesday 21 April. Three months: Saturday 20 June plus 1,
        // Sunday, so Monday 22 June.
        pauses.push(clarification(&gb, date(2026, 3, 23), date(2026, 3, 23)));
        let second = clock(&gb, received, &pauses);
        assert_eq!(second.counted_days, vec![0, 11, 1]);
        assert_eq!(dates(&second), (date(2026, 4, 21), Some(date(2026, 6, 22))));
        // Without the identity pause the first clarification counts: 10 to
        // 12 and 23 March, 4 days after Thursday 9 April: Monday 13 April.
        let without_identity = clock(&gb, received, &[pauses[0].clone(), pauses[2].clone()]);
        assert_eq!(without_identity.counted_days, vec![3, 1]);
        assert_eq!(without_identity.due.date, date(2026, 4, 13));
    }

    #[test]
    fn uk_clarification_asked_before_identity_arrived_adds_nothing() {
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 3, 9));
        // Asked 10 March, answered 25 March, after the identity information
        // arrived on 20 March: it began before the clock did.
        let clock = clock(
            &gb,
            received,
            &[
                clarification(&gb, date(2026, 3, 10), date(2026, 3, 25)),
                identity(&gb, date(2026, 3, 13), date(2026, 3, 20)),
            ],
        );
        assert_eq!(clock.counted_days, vec![0, 11]);
        assert_eq!(clock.due.date, date(2026, 4, 20));
    }

    #[test]
    fn uk_identity_arriving_after_a_clarification_can_bring_the_due_date_forward() {
        let gb = jurisdiction("GB", "");
        let received = local(&gb, date(2026, 3, 9).at(9, 0, 0, 0));
        // Clarification asked on the day of receipt and answered Monday
        // 16 March: 8 days after Thursday 9 April, Friday 17 April.
        let asked = clarification(&gb, date(2026, 3, 9), date(2026, 3, 16));
        let before = clock(&gb, received, std::slice::from_ref(&asked));
        assert_eq!(before.counted_days, vec![8]);
        assert_eq!(before.due.date, date(2026, 4, 17));
        // Identity then asked and received the same Monday: the month runs
        // from 16 March, the clarification came before it and stops
        // nothing, so Thursday 16 April, a day earlier.
        let after = clock(
            &gb,
            received,
            &[asked, identity(&gb, date(2026, 3, 16), date(2026, 3, 16))],
        );
        assert_eq!(after.counted_days, vec![0, 7]);
        assert_eq!(after.due.date, date(2026, 4, 16));
    }

    #[test]
    fn uk_receipt_on_the_31st() {
        let gb = jurisdiction("GB", "");
        let received = local(&gb, date(2026, 3, 31).at(10, 0, 0, 0));
        // Identity asked at once and answered the same afternoon: the start
        // moves to that instant but not to another day.
        let identity_pause = identity(&gb, date(2026, 3, 31), date(2026, 3, 31));
        let pauses = [
            identity_pause.clone(),
            // Wednesday 1 and Thursday 2 April do not count.
            clarification(&gb, date(2026, 4, 1), date(2026, 4, 2)),
        ];
        // One month from 31 March is Thursday 30 April; plus 2 is Saturday
        // 2 May, and Monday 4 May is a bank holiday: Tuesday 5 May. Three
        // months: Tuesday 30 June plus 2, Thursday 2 July.
        let clock = clock(&gb, received, &pauses);
        assert_eq!(Some(clock.start), identity_pause.end);
        assert_eq!(clock.counted_days, vec![0, 2]);
        assert!(holidays::is_public_holiday(gb.country(), date(2026, 5, 4)));
        assert_eq!(dates(&clock), (date(2026, 5, 5), Some(date(2026, 7, 2))));
    }

    #[test]
    fn uk_latest_identity_information_starts_the_clock() {
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 2, 5));
        let later = identity(&gb, date(2026, 2, 20), date(2026, 2, 23));
        let pauses = [
            identity(&gb, date(2026, 2, 5), date(2026, 2, 9)),
            later.clone(),
            // Still open: moves nothing.
            pause(&gb, IdentityVerification, date(2026, 3, 2), None),
        ];
        // The start moves to Monday 23 February, 14 days after the 9th
        // where the first answer alone would have put it: due Monday 23
        // March.
        let clock = clock(&gb, received, &pauses);
        assert_eq!(clock.counted_days, vec![0, 14, 0]);
        assert_eq!(Some(clock.start), later.end);
        assert_eq!(clock.due.date, date(2026, 3, 23));
    }

    #[test]
    fn open_pauses_add_nothing() {
        let gb = jurisdiction("GB", "");
        let received = noon(&gb, date(2026, 3, 2));
        let without = clock(&gb, received, &[]);
        for kind in PauseKind::ALL {
            let open = clock(&gb, received, &[pause(&gb, kind, date(2026, 3, 3), None)]);
            assert_eq!(
                open,
                Clock {
                    counted_days: vec![0],
                    ..without.clone()
                },
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_pause_ending_before_it_starts_is_ignored() {
        for j in [jurisdiction("DE", ""), jurisdiction("GB", "")] {
            let received = noon(&j, date(2026, 3, 2));
            for kind in PauseKind::ALL {
                let backwards = Pause {
                    kind,
                    start: noon(&j, date(2026, 3, 20)),
                    end: Some(noon(&j, date(2026, 3, 10))),
                };
                let clock = clock(&j, received, &[backwards]);
                assert_eq!(
                    clock,
                    Clock {
                        counted_days: vec![0],
                        ..super::clock(&j, received, &[])
                    }
                );
            }
        }
    }

    #[test]
    fn ccpa_and_lgpd_never_pause() {
        let ca = jurisdiction("US", "US-CA");
        let received = noon(&ca, date(2026, 1, 10));
        let pauses = [
            identity(&ca, date(2026, 1, 12), date(2026, 1, 20)),
            clarification(&ca, date(2026, 1, 21), date(2026, 1, 23)),
            pause(&ca, IdentityVerification, date(2026, 1, 26), None),
        ];
        // 45 days from Saturday 10 January is Tuesday 24 February, 90 days
        // Friday 10 April, whatever the wait.
        let clock = clock(&ca, received, &pauses);
        assert_eq!(clock.counted_days, vec![0, 0, 0]);
        assert_eq!(clock.start, received);
        assert_eq!(dates(&clock), (date(2026, 2, 24), Some(date(2026, 4, 10))));

        let br = jurisdiction("BR", "");
        let received = noon(&br, date(2026, 1, 10));
        let clock = super::clock(
            &br,
            received,
            &[identity(&br, date(2026, 1, 11), date(2026, 1, 20))],
        );
        // 15 days: Sunday 25 January, no extension.
        assert_eq!(clock.counted_days, vec![0]);
        assert_eq!(dates(&clock), (date(2026, 1, 25), None));
    }

    #[test]
    fn which_requests_may_pause() {
        let gb = jurisdiction("GB", "");
        // London is on UTC in February: the last instant of 4 February and
        // the first of 5 February.
        let last_before = utc(date(2026, 2, 4).at(23, 59, 59, 999_999_999));
        let first_after = utc(date(2026, 2, 5).at(0, 0, 0, 0));
        assert!(!uk_article_12a(&gb, last_before));
        assert!(uk_article_12a(&gb, first_after));
        assert!(uk_article_12a(&jurisdiction("GB", "GB-SCT"), first_after));
        assert!(!uk_article_12a(&jurisdiction("IE", ""), first_after));
        for request_type in RequestType::ALL {
            let access = request_type == RequestType::Access;
            assert_eq!(
                clarification_allowed(&gb, request_type, first_after),
                access
            );
            assert!(!clarification_allowed(&gb, request_type, last_before));
            let fr = jurisdiction("FR", "");
            assert!(!clarification_allowed(&fr, request_type, first_after));
        }
        for (country, subdivision, moves) in [
            ("DE", "", true),
            ("GB", "", true),
            ("NO", "", true),
            // Countries outside the table fall back to the GDPR.
            ("JP", "", true),
            ("US", "US-NY", true),
            ("US", "US-CA", false),
            ("BR", "", false),
        ] {
            let j = jurisdiction(country, subdivision);
            assert_eq!(pauses_move_deadline(&j), moves, "{j}");
        }
    }

    #[test]
    fn far_future_saturates() {
        let de = jurisdiction("DE", "");
        let received = utc(date(9999, 12, 20).at(0, 0, 0, 0));
        let clock = clock(
            &de,
            received,
            &[identity(&de, date(9999, 12, 21), date(9999, 12, 23))],
        );
        assert_eq!(clock.due.date, Date::MAX);
        assert_eq!(clock.due.due_time, Timestamp::MAX);
        // Days that cannot be added saturate too.
        let received = noon(&de, date(2026, 1, 5));
        let endless = Pause {
            kind: IdentityVerification,
            start: Timestamp::MIN,
            end: Some(Timestamp::MAX),
        };
        let clock = super::clock(&de, received, &[endless]);
        assert_eq!(clock.due.due_time, Timestamp::MAX);
    }

    /// The subdivisions with a zone or regime of their own.
    const SUBDIVISIONS: [&str; 18] = [
        "AU-QLD", "AU-WA", "BR-AM", "CA-BC", "ES-CN", "PT-20", "PT-30", "US-AK", "US-AZ", "US-CA",
        "US-CO", "US-HI", "US-IL", "US-NV", "US-NY", "US-OR", "US-TX", "US-WA",
    ];

    /// Every country, every subdivision with rules of its own, and the UK
    /// (where the rules differ most), Germany and California more often.
    fn any_jurisdiction() -> impl Strategy<Value = Jurisdiction> {
        prop_oneof![
            2 => (0_usize..249).prop_map(|index| {
                Jurisdiction::from(Country::all().nth(index).expect("country"))
            }),
            1 => prop::sample::select(SUBDIVISIONS.to_vec())
                .prop_map(|code| Jurisdiction::parse(&code[..2], code).expect("valid")),
            3 => Just(Jurisdiction::parse("GB", "").expect("valid")),
            1 => Just(Jurisdiction::parse("DE", "").expect("valid")),
            1 => Just(Jurisdiction::parse("US", "US-CA").expect("valid")),
        ]
    }

    /// Instants from 1970-01-01 to 2100-01-01.
    fn instant() -> impl Strategy<Value = Timestamp> {
        (0_i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    /// Instants around 5 February 2026, so both sides of Art. 12A.
    fn instant_near_12a() -> impl Strategy<Value = Timestamp> {
        (1_767_225_600_i64..1_798_761_600)
            .prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    fn kind() -> impl Strategy<Value = PauseKind> {
        prop::sample::select(PauseKind::ALL.to_vec())
    }

    /// A pause asked up to 120 days after receipt, answered up to 45 days
    /// later or still open.
    fn pause_after(received: Timestamp) -> impl Strategy<Value = Pause> {
        (
            kind(),
            0_i64..120 * 86_400,
            prop::option::of(0_i64..45 * 86_400),
        )
            .prop_map(move |(kind, after, length)| {
                let start = received + SignedDuration::from_secs(after);
                Pause {
                    kind,
                    start,
                    end: length.map(|length| start + SignedDuration::from_secs(length)),
                }
            })
    }

    fn closed_pause_after(received: Timestamp) -> impl Strategy<Value = Pause> {
        (kind(), 0_i64..120 * 86_400, 0_i64..45 * 86_400).prop_map(move |(kind, after, length)| {
            let start = received + SignedDuration::from_secs(after);
            Pause {
                kind,
                start,
                end: Some(start + SignedDuration::from_secs(length)),
            }
        })
    }

    /// A jurisdiction, a receipt and up to five pauses after it.
    fn request() -> impl Strategy<Value = (Jurisdiction, Timestamp, Vec<Pause>)> {
        (
            any_jurisdiction(),
            prop_oneof![instant(), instant_near_12a()],
        )
            .prop_flat_map(|(j, received)| {
                prop::collection::vec(pause_after(received), 0..5)
                    .prop_map(move |pauses| (j.clone(), received, pauses))
            })
    }

    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())
            .prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    fn not_earlier(later: &Deadline, earlier: &Deadline) -> bool {
        later.date >= earlier.date && later.due_time >= earlier.due_time
    }

    proptest! {
        #[test]
        fn without_pauses_the_deadlines_are_todays(
            j in any_jurisdiction(),
            received in prop_oneof![instant(), instant_near_12a()],
        ) {
            let clock = clock(&j, received, &[]);
            prop_assert_eq!(clock.start, received);
            prop_assert_eq!(clock.due, deadline::statutory_deadline(&j, received));
            prop_assert_eq!(clock.extended_due, deadline::extended_deadline(&j, received));
            prop_assert!(clock.counted_days.is_empty());
        }

        #[test]
        fn pauses_never_make_a_deadline_earlier((j, received, pauses) in request()) {
            let clock = clock(&j, received, &pauses);
            prop_assert_eq!(clock.counted_days.len(), pauses.len());
            prop_assert!(clock.start >= received);
            prop_assert!(not_earlier(&clock.due, &deadline::statutory_deadline(&j, received)));
            let today = deadline::extended_deadline(&j, received);
            prop_assert_eq!(clock.extended_due.is_some(), today.is_some());
            if let (Some(extended), Some(today)) = (clock.extended_due, today) {
                prop_assert!(not_earlier(&extended, &today));
            }
            if !pauses_move_deadline(&j) {
                prop_assert_eq!(clock.due, deadline::statutory_deadline(&j, received));
                prop_assert_eq!(clock.extended_due, deadline::extended_deadline(&j, received));
                prop_assert!(clock.counted_days.iter().all(|days| *days == 0));
            } else {
                // A rolled deadline is a working day.
                prop_assert!(j.is_working_day(clock.due.date));
                prop_assert_eq!(j.local_date(clock.due.due_time), clock.due.date);
            }
        }

        #[test]
        fn a_closed_pause_never_makes_a_deadline_earlier(
            (j, received, pauses, added) in request().prop_flat_map(|(j, received, pauses)| {
                closed_pause_after(received)
                    .prop_map(move |added| (j.clone(), received, pauses.clone(), added))
            }),
            position in any::<prop::sample::Index>(),
        ) {
            // The exception the law makes: under Art. 12A identity
            // information arriving later starts the month later, and a
            // clarification that began before that start then stops
            // nothing; the new month need not make up those days.
            prop_assume!(!(
                uk_article_12a(&j, received)
                    && added.kind == IdentityVerification
                    && pauses.iter().any(|pause| pause.kind == Clarification)
            ));
            let before = clock(&j, received, &pauses);
            let mut more = pauses.clone();
            more.insert(position.index(pauses.len() + 1), added);
            let after = clock(&j, received, &more);
            prop_assert!(not_earlier(&after.due, &before.due));
            if let (Some(after), Some(before)) = (after.extended_due, before.extended_due) {
                prop_assert!(not_earlier(&after, &before));
            }
            prop_assert!(after.start >= before.start);
        }

        #[test]
        fn open_pauses_change_nothing(
            (j, received, pauses) in request(),
            open in prop::collection::vec((kind(), 0_i64..120 * 86_400), 1..3),
        ) {
            let before = clock(&j, received, &pauses);
            let mut more = pauses.clone();
            more.extend(open.iter().map(|(kind, after)| Pause {
                kind: *kind,
                start: received + SignedDuration::from_secs(*after),
                end: None,
            }));
            let after = clock(&j, received, &more);
            let mut expected = before.counted_days.clone();
            expected.extend(std::iter::repeat_n(0, open.len()));
            prop_assert_eq!(after, Clock { counted_days: expected, ..before });
        }

        #[test]
        fn the_order_of_pauses_does_not_matter((j, received, pauses) in request()) {
            let forward = clock(&j, received, &pauses);
            let reversed: Vec<Pause> = pauses.iter().rev().cloned().collect();
            let backward = clock(&j, received, &reversed);
            prop_assert_eq!(forward.due, backward.due);
            prop_assert_eq!(forward.extended_due, backward.extended_due);
            prop_assert_eq!(forward.start, backward.start);
            let total = |clock: &Clock| clock.counted_days.iter().map(|d| u64::from(*d)).sum::<u64>();
            prop_assert_eq!(total(&forward), total(&backward));
        }

        #[test]
        fn eu_counted_days_are_the_days_suspended(
            j in prop::sample::select(vec!["DE", "FR", "IE", "NO"])
                .prop_map(|code| Jurisdiction::parse(code, "").expect("valid")),
            received in instant(),
            gaps in prop::collection::vec((0_u32..20, 0_u32..20), 0..4),
        ) {
            // Pauses one after another at local noon: each adds its whole
            // days, and the deadline is the one from receipt plus their sum.
            let tz = j.time_zone();
            let receipt = j.local_date(received);
            let mut day = receipt;
            let mut pauses = Vec::new();
            let mut total = 0;
            for (gap, length) in gaps {
                day = day.checked_add(jiff::Span::new().days(gap)).expect("date");
                let asked = day;
                day = day.checked_add(jiff::Span::new().days(length)).expect("date");
                let at_noon = |d: Date| tz.to_timestamp(d.at(12, 0, 0, 0)).expect("instant");
                pauses.push(Pause {
                    kind: IdentityVerification,
                    start: at_noon(asked).max(received),
                    end: Some(at_noon(day).max(received)),
                });
                total += length;
            }
            let clock = clock(&j, received, &pauses);
            prop_assert_eq!(clock.counted_days.iter().sum::<u32>(), total);
            // Counted with jiff's own month arithmetic, which also clamps to
            // the end of a shorter month: the first working day on or after
            // one month from receipt plus the days suspended.
            let nominal = receipt
                .checked_add(jiff::Span::new().months(1))
                .and_then(|d| d.checked_add(jiff::Span::new().days(total)))
                .expect("date");
            let mut expected = nominal;
            while !j.is_working_day(expected) {
                expected = expected.tomorrow().expect("date");
            }
            prop_assert_eq!(clock.due.date, expected);
        }

        #[test]
        fn clocks_are_total(
            j in any_jurisdiction(),
            received in any_timestamp(),
            pauses in prop::collection::vec(
                (kind(), any_timestamp(), prop::option::of(any_timestamp()))
                    .prop_map(|(kind, start, end)| Pause { kind, start, end }),
                0..5,
            ),
        ) {
            let clock = clock(&j, received, &pauses);
            prop_assert_eq!(clock.counted_days.len(), pauses.len());
            prop_assert!(clock.start >= received);
            prop_assert!(not_earlier(&clock.due, &deadline::statutory_deadline(&j, received)));
        }
    }
}
