//! The SLA watchdog's decisions: whether a request or a task is at risk of
//! missing its deadline or has missed it, what was already reported, and
//! what to report now; when a minor's request waited too long for a
//! guardian; how much of the time allowed a closed request took. Pure:
//! time, thresholds and calendars are arguments.
//!
//! Each finding is reported once per threshold. What was reported is kept
//! as the time of the report ([`SlaMarks`]); a report counts for the
//! deadline in force only if it was made once that deadline's threshold was
//! reached, so a request whose deadline was extended after an at-risk
//! report is reported again as the new deadline nears.

use jiff::{SignedDuration, Timestamp};

use super::deadline;
use super::jurisdiction::{Country, Jurisdiction};
use super::request::{Actor, DataSubjectRequest, EventType, NewEvent, State};
use super::routing::Task;

/// A request is at risk this long before its deadline, by default.
pub const DEFAULT_REQUEST_AT_RISK: SignedDuration = SignedDuration::from_hours(7 * 24);
/// A task is at risk this many working hours before it is due, by default.
pub const DEFAULT_TASK_AT_RISK_WORKING_HOURS: u32 = 24;
/// A minor's request expires when no guardian consented this long after it
/// was received, by default.
pub const DEFAULT_CONSENT_WINDOW: SignedDuration = SignedDuration::from_hours(30 * 24);
/// A request waiting for its subject expires after this long, by default.
pub const DEFAULT_AWAITING_SUBJECT_TIMEOUT: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The longest at-risk window a task may have (as a route's SLA).
pub const MAX_TASK_AT_RISK_WORKING_HOURS: u32 = super::routing::MAX_TASK_SLA_WORKING_HOURS;

/// When things count as at risk, and how long a guardian has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// How long before its deadline an open request is at risk.
    pub request_at_risk: SignedDuration,
    /// How many working hours before its due time an open task is at risk.
    pub task_at_risk_working_hours: u32,
    /// How long after receipt a request may await guardian consent.
    pub consent_window: SignedDuration,
    /// How long a request may wait for its subject (identity information
    /// or a clarification) before it expires.
    pub awaiting_subject_timeout: SignedDuration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            request_at_risk: DEFAULT_REQUEST_AT_RISK,
            task_at_risk_working_hours: DEFAULT_TASK_AT_RISK_WORKING_HOURS,
            consent_window: DEFAULT_CONSENT_WINDOW,
            awaiting_subject_timeout: DEFAULT_AWAITING_SUBJECT_TIMEOUT,
        }
    }
}

/// What the watchdog reports about a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Finding {
    /// The deadline is near and the work is not done.
    AtRisk,
    /// The deadline has passed and the work is not done.
    Breached,
}

impl Finding {
    /// `at_risk` or `breached`, for metrics and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtRisk => "at_risk",
            Self::Breached => "breached",
        }
    }

    /// The audit event that records it.
    pub fn event_type(self) -> EventType {
        match self {
            Self::AtRisk => EventType::SlaAtRisk,
            Self::Breached => EventType::SlaBreached,
        }
    }
}

/// When each finding was last reported about a request or a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlaMarks {
    pub at_risk: Option<Timestamp>,
    pub breached: Option<Timestamp>,
}

impl SlaMarks {
    /// These marks once `finding` is reported at `now`.
    pub fn with(self, finding: Finding, now: Timestamp) -> Self {
        match finding {
            Finding::AtRisk => Self {
                at_risk: Some(now),
                ..self
            },
            Finding::Breached => Self {
                breached: Some(now),
                ..self
            },
        }
    }
}

/// What to report about an open request due at `due`, at `now`: nothing,
/// or the one finding not yet reported for this deadline. A request first
/// seen past its deadline is reported breached only: at risk is moot then.
pub fn request_finding(
    due: Timestamp,
    marks: SlaMarks,
    now: Timestamp,
    at_risk: SignedDuration,
) -> Option<Finding> {
    if now > due {
        // Reported after this deadline passed: for this deadline.
        let reported = marks.breached.is_some_and(|t| t > due);
        return (!reported).then_some(Finding::Breached);
    }
    let at_risk_from = due.saturating_sub(at_risk.abs()).unwrap_or(due);
    if now < at_risk_from {
        return None;
    }
    let reported = marks.at_risk.is_some_and(|t| t >= at_risk_from);
    (!reported).then_some(Finding::AtRisk)
}

/// What to report about an open task due at `due`, at `now`: at risk once
/// `due` is within `at_risk_working_hours` working hours on `calendar`,
/// breached once it has passed; each at most once (a task's due time never
/// moves).
pub fn task_finding(
    calendar: &Jurisdiction,
    due: Timestamp,
    marks: SlaMarks,
    now: Timestamp,
    at_risk_working_hours: u32,
) -> Option<Finding> {
    if now > due {
        return marks.breached.is_none().then_some(Finding::Breached);
    }
    let hours = at_risk_working_hours.min(MAX_TASK_AT_RISK_WORKING_HOURS);
    if deadline::add_working_hours(calendar, now, hours) < due {
        return None;
    }
    marks.at_risk.is_none().then_some(Finding::AtRisk)
}

/// The latest due time at which a task can be at risk at `now`, on any
/// calendar: what a store query may narrow the tasks to before
/// [`task_finding`] decides. Working days depend on the country, day
/// boundaries on the subdivision's zone too, hence the day of margin.
pub fn task_scan_horizon(now: Timestamp, at_risk_working_hours: u32) -> Timestamp {
    let hours = at_risk_working_hours.min(MAX_TASK_AT_RISK_WORKING_HOURS);
    Country::all()
        .map(|c| deadline::add_working_hours(&Jurisdiction::from(c), now, hours))
        .max()
        .unwrap_or(now)
        .saturating_add(SignedDuration::from_hours(24))
        .unwrap_or(Timestamp::MAX)
}

/// When a request received at `received_at` stops waiting for a guardian.
pub fn consent_deadline(received_at: Timestamp, window: SignedDuration) -> Timestamp {
    received_at
        .saturating_add(window.abs())
        .unwrap_or(Timestamp::MAX)
}

/// Whether `request` awaits a guardian's consent past the consent window.
pub fn consent_expired(
    request: &DataSubjectRequest,
    now: Timestamp,
    window: SignedDuration,
) -> bool {
    request.state == State::AwaitingGuardianConsent
        && now > consent_deadline(request.received_at, window)
}

/// The audit event of a finding about `request` (its state unchanged).
pub fn request_event(request: &DataSubjectRequest, finding: Finding, now: Timestamp) -> NewEvent {
    let reason = match finding {
        Finding::AtRisk => format!("at risk: due {}", request.due_time),
        Finding::Breached => format!("breached: due {} and not closed", request.due_time),
    };
    NewEvent {
        event_type: finding.event_type(),
        time: now,
        actor: Actor::system(),
        from_state: Some(request.state),
        to_state: request.state,
        reason,
        task: None,
    }
}

/// The audit event of a finding about `task`, on its request's trail.
pub fn task_event(
    request: &DataSubjectRequest,
    task: &Task,
    finding: Finding,
    now: Timestamp,
) -> NewEvent {
    let reason = match finding {
        Finding::AtRisk => format!(
            "task of processor {} at risk: due {}",
            task.processor_id, task.due_time
        ),
        Finding::Breached => format!(
            "task of processor {} breached: due {} and not finished",
            task.processor_id, task.due_time
        ),
    };
    request.task_event(finding.event_type(), task.id, &Actor::system(), reason, now)
}

/// How much of the time allowed closing `request` took: (close time −
/// receipt) / (deadline − receipt), so 1 is closing at the deadline and
/// more is late. `None` unless it was completed or refused, or if it was
/// due no later than it was received.
pub fn time_used(request: &DataSubjectRequest) -> Option<f64> {
    let closed = match (&request.closure, request.close_time) {
        (Some(_), Some(closed)) => closed,
        _ => return None,
    };
    let allowed = request.received_at.duration_until(request.due_time);
    if allowed <= SignedDuration::ZERO {
        return None;
    }
    let taken = request.received_at.duration_until(closed);
    Some(taken.as_secs_f64() / allowed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::age::AgePolicy;
    use crate::domain::input::{RawSubject, RawSubmission, Submission, accept};
    use crate::domain::request::{Closure, Outcome, RefusalReason, RequestType};
    use crate::domain::routing::TaskState;
    use uuid::Uuid;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn days(n: i64) -> SignedDuration {
        SignedDuration::from_hours(24 * n)
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    fn request(received: Timestamp, birth_year: i32) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(RequestType::Erasure),
            subject: Some(RawSubject {
                external_id: "cust-9".into(),
                email: "x@example.org".into(),
                date_of_birth: Some((birth_year, 1, 1)),
                country: "DE".into(),
                subdivision: String::new(),
            }),
            received_at: Some((received.as_second(), 0)),
            ..Default::default()
        };
        let s = Submission::parse(raw, received).expect("valid submission");
        let fp = s.fingerprint();
        let actor = Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        };
        accept(
            s,
            "acme",
            Uuid::new_v4(),
            fp,
            &AgePolicy::default(),
            &actor,
            received,
        )
        .expect("accepted")
        .0
    }

    fn task(due: Timestamp) -> Task {
        Task {
            id: Uuid::new_v4(),
            request: Uuid::new_v4(),
            controller_id: "acme".into(),
            processor_id: "crm".into(),
            state: TaskState::Pending,
            attempt: 0,
            due_time: due,
            lease_token: None,
            lease_expire_time: None,
            outcome: None,
            reason: None,
            result_uri: None,
            note: None,
            create_time: due,
            update_time: due,
            complete_time: None,
            sla: SlaMarks::default(),
        }
    }

    #[test]
    fn a_request_is_at_risk_within_the_window_and_breached_after_the_deadline() {
        let due = t("2026-03-02T22:59:59Z");
        let w = days(7);
        let none = SlaMarks::default();
        let cases = [
            (due - w - secs(1), None),
            (due - w, Some(Finding::AtRisk)),
            (due - days(1), Some(Finding::AtRisk)),
            (due, Some(Finding::AtRisk)),
            (due + secs(1), Some(Finding::Breached)),
            (due + days(400), Some(Finding::Breached)),
        ];
        for (now, expected) in cases {
            assert_eq!(request_finding(due, none, now, w), expected, "at {now}");
        }
    }

    #[test]
    fn each_request_finding_is_reported_once_per_deadline() {
        let due = t("2026-03-02T22:59:59Z");
        let w = days(7);
        let at_risk_at = due - days(3);
        let marks = SlaMarks::default().with(Finding::AtRisk, at_risk_at);
        // Reported: nothing more until the deadline passes.
        for now in [at_risk_at, at_risk_at + days(1), due] {
            assert_eq!(request_finding(due, marks, now, w), None);
        }
        let breached_at = due + secs(5);
        assert_eq!(
            request_finding(due, marks, breached_at, w),
            Some(Finding::Breached)
        );
        let marks = marks.with(Finding::Breached, breached_at);
        assert_eq!(request_finding(due, marks, due + days(30), w), None);

        // Extended after the at-risk report: that report was for the old
        // deadline, so the new one is reported again in its own window.
        let extended = due + days(60);
        assert_eq!(request_finding(extended, marks, due, w), None);
        assert_eq!(
            request_finding(extended, marks, extended - days(2), w),
            Some(Finding::AtRisk)
        );
        let renewed = marks.with(Finding::AtRisk, extended - days(2));
        assert_eq!(
            request_finding(extended, renewed, extended - days(1), w),
            None
        );
    }

    #[test]
    fn request_findings_over_every_combination_of_marks_and_times() {
        let due = t("2026-03-02T22:59:59Z");
        let w = days(7);
        let early = due - days(20);
        let in_window = due - days(2);
        let late = due + days(2);
        let marks = [None, Some(early), Some(in_window), Some(late)];
        for at_risk in marks {
            for breached in marks {
                let m = SlaMarks { at_risk, breached };
                for now in [early, in_window, due, late] {
                    let got = request_finding(due, m, now, w);
                    let expected = if now > due {
                        breached
                            .is_none_or(|b| b <= due)
                            .then_some(Finding::Breached)
                    } else if now >= due - w {
                        at_risk
                            .is_none_or(|a| a < due - w)
                            .then_some(Finding::AtRisk)
                    } else {
                        None
                    };
                    assert_eq!(got, expected, "{m:?} at {now}");
                    // Never both, never at risk once past the deadline.
                    if now > due {
                        assert_ne!(got, Some(Finding::AtRisk));
                    }
                }
            }
        }
    }

    #[test]
    fn a_task_is_at_risk_within_its_working_hours() {
        let de = Jurisdiction::parse("DE", "").expect("DE");
        // Due Tuesday 10 March 2026, 10:00 in Berlin (09:00 UTC).
        let due = t("2026-03-10T09:00:00Z");
        let none = SlaMarks::default();
        // Friday 6 March, 10:00 Berlin: Friday's 14 h, Monday's 24 h and
        // Tuesday's 10 h make 48 working hours to the due time.
        let friday = t("2026-03-06T09:00:00Z");
        assert_eq!(task_finding(&de, due, none, friday, 24), None);
        assert_eq!(task_finding(&de, due, none, friday, 47), None);
        assert_eq!(
            task_finding(&de, due, none, friday, 48),
            Some(Finding::AtRisk)
        );
        // Over the weekend, Monday's and Tuesday morning's 34 working hours
        // remain: not yet at risk at 24, at risk at 34.
        let saturday = t("2026-03-07T12:00:00Z");
        assert_eq!(task_finding(&de, due, none, saturday, 24), None);
        assert_eq!(
            task_finding(&de, due, none, saturday, 34),
            Some(Finding::AtRisk)
        );
        // Monday 10:00 Berlin: exactly 24 working hours left.
        let monday = t("2026-03-09T09:00:00Z");
        assert_eq!(task_finding(&de, due, none, monday - secs(1), 24), None);
        assert_eq!(
            task_finding(&de, due, none, monday, 24),
            Some(Finding::AtRisk)
        );
        assert_eq!(task_finding(&de, due, none, due, 24), Some(Finding::AtRisk));
        assert_eq!(
            task_finding(&de, due, none, due + secs(1), 24),
            Some(Finding::Breached)
        );
    }

    #[test]
    fn each_task_finding_is_reported_once() {
        let de = Jurisdiction::parse("DE", "").expect("DE");
        let due = t("2026-03-10T09:00:00Z");
        let near = due - SignedDuration::from_hours(2);
        let late = due + days(1);
        for at_risk in [None, Some(near)] {
            for breached in [None, Some(late)] {
                let m = SlaMarks { at_risk, breached };
                assert_eq!(
                    task_finding(&de, due, m, near, 24),
                    at_risk.is_none().then_some(Finding::AtRisk),
                    "{m:?}"
                );
                assert_eq!(
                    task_finding(&de, due, m, late, 24),
                    breached.is_none().then_some(Finding::Breached),
                    "{m:?}"
                );
                assert_eq!(task_finding(&de, due, m, due - days(30), 24), None);
            }
        }
    }

    #[test]
    fn the_scan_horizon_covers_every_calendar() {
        // Easter 2026 in Germany: Good Friday 3 April and Easter Monday 6
        // April are holidays.
        let start = t("2026-04-02T20:00:00Z");
        for hours in [0, 1, 24, 72, 500] {
            let horizon = task_scan_horizon(start, hours);
            for c in Country::all() {
                let j = Jurisdiction::from(c);
                let due = deadline::add_working_hours(&j, start, hours);
                assert!(due <= horizon, "{} {hours}", c.code());
                assert_eq!(
                    task_finding(&j, due, SlaMarks::default(), start, hours),
                    Some(Finding::AtRisk),
                    "{} {hours}",
                    c.code()
                );
            }
        }
        // Subdivisions with a zone of their own stay within the margin.
        let la = Jurisdiction::parse("US", "US-CA").expect("California");
        assert!(deadline::add_working_hours(&la, start, 24) <= task_scan_horizon(start, 24));
    }

    #[test]
    fn a_minors_request_expires_after_the_consent_window() {
        let received = t("2026-03-10T09:00:00Z");
        let minor = request(received, 2010);
        assert_eq!(minor.state, State::AwaitingGuardianConsent);
        let window = days(30);
        let end = consent_deadline(received, window);
        assert_eq!(end, received + days(30));
        assert!(!consent_expired(&minor, end, window));
        assert!(consent_expired(&minor, end + secs(1), window));
        let adult = request(received, 1980);
        assert!(!consent_expired(&adult, end + days(10), window));
    }

    #[test]
    fn events_name_the_finding_and_keep_the_state() {
        let received = t("2026-03-10T09:00:00Z");
        let r = request(received, 1980);
        let now = received + days(25);
        let e = request_event(&r, Finding::AtRisk, now);
        assert_eq!(e.event_type, EventType::SlaAtRisk);
        assert_eq!((e.from_state, e.to_state), (Some(r.state), r.state));
        assert_eq!(e.actor, Actor::system());
        assert_eq!(e.task, None);
        let mut tk = task(r.due_time);
        tk.request = r.id;
        let e = task_event(&r, &tk, Finding::Breached, now);
        assert_eq!(e.event_type, EventType::SlaBreached);
        assert_eq!(e.task, Some(tk.id));
        assert!(e.reason.contains("crm"), "{}", e.reason);
        for e in [
            request_event(&r, Finding::Breached, now),
            task_event(&r, &tk, Finding::AtRisk, now),
        ] {
            assert!(!e.reason.contains("example.org"));
            assert!(!e.reason.contains("cust-9"));
        }
        assert_eq!(Finding::AtRisk.as_str(), "at_risk");
        assert_eq!(Finding::Breached.event_type(), EventType::SlaBreached);
    }

    #[test]
    fn time_used_is_the_share_of_the_time_allowed() {
        let received = t("2026-03-10T09:00:00Z");
        let who = Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        };
        let closure = |outcome| Closure {
            outcome,
            refusal_reason: (outcome == Outcome::Refused).then_some(RefusalReason::Excessive),
            explanation: String::new(),
        };
        let mut r = request(received, 1980);
        assert_eq!(time_used(&r), None);
        let allowed = received.duration_until(r.due_time);
        let half = received + allowed / 2;
        r.close(closure(Outcome::Completed), &who, half)
            .expect("close");
        let used = time_used(&r).expect("closed");
        assert!((used - 0.5).abs() < 1e-6, "{used}");

        let mut late = request(received, 1980);
        let due = late.due_time;
        late.close(closure(Outcome::Refused), &who, due + allowed / 4)
            .expect("refuse");
        let used = time_used(&late).expect("refused");
        assert!((used - 1.25).abs() < 1e-6, "{used}");

        let mut cancelled = request(received, 1980);
        cancelled
            .cancel("withdrawn".into(), &who, half)
            .expect("cancel");
        assert_eq!(time_used(&cancelled), None, "a withdrawal is not timed");
    }
}
