//! Parsing of caller input into domain values. Every check lives here, so the
//! API layer only moves fields across, and every bad field is reported at
//! once. Messages say what to fix and never repeat personal data.

use std::collections::BTreeMap;

use jiff::{Span, Timestamp, ToSpan};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::age::{AgeDecision, AgePolicy};
use super::deadline;
use super::jurisdiction::{Jurisdiction, JurisdictionError};
use super::pii::{DateOfBirth, Email, PersonName};
use super::request::{
    Actor, ClockPause, Closure, DataSubjectRequest, EventType, Guardian, GuardianIdentity,
    GuardianRelationship, NewEvent, Outcome, Personal, RefusalReason, RequestType, State, Subject,
};
use super::sla::SlaMarks;

/// One bad field: its path in the API message and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Collects violations while a message is parsed.
#[derive(Default, Debug)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        });
    }

    /// `Ok(value)` when nothing was wrong.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

/// Longest `external_id`.
pub const MAX_EXTERNAL_ID_LEN: usize = 256;
/// Longest `details`.
pub const MAX_DETAILS_LEN: usize = 4096;
/// Most `corrections` entries.
pub const MAX_CORRECTIONS: usize = 100;
/// Longest correction field name.
pub const MAX_CORRECTION_KEY_LEN: usize = 128;
/// Longest correction value.
pub const MAX_CORRECTION_VALUE_LEN: usize = 1024;
/// Longest reason (extension, cancellation).
pub const MAX_REASON_LEN: usize = 2000;
/// Longest closing explanation.
pub const MAX_EXPLANATION_LEN: usize = 4000;
/// Longest guardian verification method.
pub const MAX_VERIFICATION_LEN: usize = 500;
/// How far ahead of our clock a caller's `received_at` may be, for clock
/// skew between services.
pub const RECEIVED_AT_SKEW_SECS: i64 = 60;

/// A submission as it arrives, with no check done yet.
#[derive(Clone, Debug, Default)]
pub struct RawSubmission {
    pub request_id: String,
    /// `None` when unset or unknown.
    pub request_type: Option<RequestType>,
    pub subject: Option<RawSubject>,
    /// Seconds and nanoseconds since the epoch, as sent.
    pub received_at: Option<(i64, i32)>,
    pub details: String,
    pub corrections: BTreeMap<String, String>,
    pub identity_verification_required: bool,
}

/// A subject as it arrives.
#[derive(Clone, Default)]
pub struct RawSubject {
    pub external_id: String,
    pub email: String,
    /// Year, month, day as sent.
    pub date_of_birth: Option<(i32, i32, i32)>,
    pub country: String,
    pub subdivision: String,
}

impl std::fmt::Debug for RawSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSubject")
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

/// A valid submission.
#[derive(Clone, Debug)]
pub struct Submission {
    pub request_id: Uuid,
    pub request_type: RequestType,
    pub subject: Subject,
    /// As sent; `None` means "now" and is fixed at acceptance.
    pub received_at: Option<Timestamp>,
    pub details: String,
    pub corrections: BTreeMap<String, String>,
    /// The request waits for the requester's identity before anything is
    /// done, its clock paused from receipt.
    pub identity_verification_required: bool,
}

fn check_text(v: &mut Violations, field: &str, s: &str, max: usize, required: bool) {
    if required && s.trim().is_empty() {
        v.add(field, "is required");
    } else if s.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if s.contains('\0') {
        v.add(field, "must not contain NUL characters");
    }
}

fn timestamp(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Timestamp::new(seconds, nanos).ok()
}

impl Submission {
    /// Checks every field of `raw`; `now` bounds `received_at`.
    pub fn parse(raw: RawSubmission, now: Timestamp) -> Result<Self, Vec<FieldViolation>> {
        let mut v = Violations::default();

        let request_id = if raw.request_id.is_empty() {
            v.add(
                "request_id",
                "is required: a UUID chosen by the caller, used as the idempotency key",
            );
            None
        } else {
            match Uuid::try_parse(&raw.request_id) {
                Ok(id) if !id.is_nil() => Some(id),
                _ => {
                    v.add(
                        "request_id",
                        "must be a UUID such as 0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
                    );
                    None
                }
            }
        };

        if raw.request_type.is_none() {
            v.add(
                "type",
                "is required: one of the REQUEST_TYPE_ values other than UNSPECIFIED",
            );
        }

        let received_at = match raw.received_at {
            None => None,
            Some((s, n)) => match timestamp(s, n) {
                None => {
                    v.add("received_at", "is not a valid timestamp");
                    None
                }
                Some(t) => {
                    let earliest = now
                        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                        .checked_sub(13.months())
                        .map(|z| z.timestamp())
                        .unwrap_or(Timestamp::UNIX_EPOCH);
                    if t < Timestamp::UNIX_EPOCH {
                        v.add("received_at", "must not be before 1970");
                        None
                    } else if t < earliest {
                        v.add("received_at", "must not be more than 13 months in the past");
                        None
                    } else if t > now + Span::new().seconds(RECEIVED_AT_SKEW_SECS) {
                        v.add("received_at", "must not be in the future");
                        None
                    } else {
                        Some(t)
                    }
                }
            },
        };

        let subject = match raw.subject {
            None => {
                v.add("subject", "is required");
                None
            }
            Some(s) => parse_subject(&mut v, s, received_at.unwrap_or(now)),
        };

        check_text(&mut v, "details", &raw.details, MAX_DETAILS_LEN, false);

        let rectification = raw.request_type == Some(RequestType::Rectification);
        if rectification && raw.corrections.is_empty() {
            v.add(
                "corrections",
                "is required for rectification: map each field to its corrected value",
            );
        } else if !rectification && !raw.corrections.is_empty() && raw.request_type.is_some() {
            v.add("corrections", "applies only to rectification requests");
        } else if raw.corrections.len() > MAX_CORRECTIONS {
            v.add(
                "corrections",
                format!("must have at most {MAX_CORRECTIONS} entries"),
            );
        } else {
            for (key, value) in &raw.corrections {
                if key.trim().is_empty() || key.chars().count() > MAX_CORRECTION_KEY_LEN {
                    v.add(
                        "corrections",
                        format!("field names must be 1 to {MAX_CORRECTION_KEY_LEN} characters"),
                    );
                    break;
                }
                if value.chars().count() > MAX_CORRECTION_VALUE_LEN || value.contains('\0') {
                    v.add(
                        &format!("corrections[{key}]"),
                        format!(
                            "must be at most {MAX_CORRECTION_VALUE_LEN} characters, without NUL"
                        ),
                    );
                }
            }
        }

        match (request_id, raw.request_type, subject) {
            (Some(request_id), Some(request_type), Some(subject)) if v.is_empty() => Ok(Self {
                request_id,
                request_type,
                subject,
                received_at,
                details: raw.details,
                corrections: raw.corrections,
                identity_verification_required: raw.identity_verification_required,
            }),
            _ => Err(v.into_vec()),
        }
    }

    /// A digest of everything the caller sent, so that a retry (same digest)
    /// can be told from a reuse of the `request_id` for something else.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |name: &str, value: &str| {
            h.update(name.as_bytes());
            h.update([0]);
            h.update((value.len() as u64).to_be_bytes());
            h.update(value.as_bytes());
        };
        field("request_id", &self.request_id.to_string());
        field("type", self.request_type.as_str());
        field("external_id", &self.subject.external_id);
        field("email", self.subject.email().map_or("", Email::expose));
        field(
            "date_of_birth",
            &self
                .subject
                .date_of_birth()
                .map(|d| d.expose().to_string())
                .unwrap_or_default(),
        );
        field("country", self.subject.jurisdiction.country().code());
        field(
            "subdivision",
            self.subject.jurisdiction.subdivision().unwrap_or(""),
        );
        field(
            "received_at",
            &self
                .received_at
                .map(|t| t.as_microsecond().to_string())
                .unwrap_or_default(),
        );
        field("details", &self.details);
        for (k, val) in &self.corrections {
            field("correction_key", k);
            field("correction_value", val);
        }
        // Only when set, so that the digest of every other submission stays
        // what it was before the flag existed.
        if self.identity_verification_required {
            field("identity_verification_required", "true");
        }
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn parse_subject(v: &mut Violations, s: RawSubject, received_at: Timestamp) -> Option<Subject> {
    check_text(
        v,
        "subject.external_id",
        &s.external_id,
        MAX_EXTERNAL_ID_LEN,
        true,
    );
    if s.external_id.chars().any(char::is_control) && !s.external_id.contains('\0') {
        v.add("subject.external_id", "must not contain control characters");
    }
    let email = if s.email.is_empty() {
        None
    } else {
        match Email::parse(&s.email) {
            Ok(e) => Some(e),
            Err(why) => {
                v.add("subject.email", why);
                None
            }
        }
    };
    let jurisdiction = match Jurisdiction::parse(&s.country, &s.subdivision) {
        Ok(j) => Some(j),
        Err(e @ JurisdictionError::InvalidSubdivision { .. }) => {
            v.add("subject.subdivision", e.to_string());
            None
        }
        Err(e) => {
            v.add("subject.country", e.to_string());
            None
        }
    };
    let date_of_birth = match (s.date_of_birth, &jurisdiction) {
        (None, _) => {
            v.add("subject.date_of_birth", "is required");
            None
        }
        (Some((y, m, d)), j) => {
            // The latest possible birth date is the day of receipt where the
            // subject lives; without a valid country, UTC is close enough to
            // still report a date that does not exist.
            let latest = j
                .as_ref()
                .map(|j| j.local_date(received_at))
                .unwrap_or_else(|| {
                    received_at
                        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                        .date()
                });
            match DateOfBirth::parse(y, m, d, latest) {
                Ok(dob) => Some(dob),
                Err(why) => {
                    v.add("subject.date_of_birth", why);
                    None
                }
            }
        }
    };
    let jurisdiction = jurisdiction?;
    let date_of_birth = date_of_birth?;
    Some(Subject::new(
        s.external_id,
        jurisdiction,
        email,
        date_of_birth,
    ))
}

/// Why a valid submission is still not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The subject is under the minimum age on the day of receipt.
    UnderMinimumAge,
}

/// Turns a valid submission into a new request: applies the age rule and
/// computes the deadline. `now` is the acceptance time.
pub fn accept(
    submission: Submission,
    controller_id: &str,
    id: Uuid,
    fingerprint: String,
    policy: &AgePolicy,
    actor: &Actor,
    now: Timestamp,
) -> Result<(DataSubjectRequest, NewEvent), Rejection> {
    let received_at = submission.received_at.unwrap_or(now);
    let j = &submission.subject.jurisdiction;
    let receipt_day = j.local_date(received_at);
    // A parsed submission always has its subject's date of birth; without
    // one there is no age to accept on, so it is refused.
    let decision = submission
        .subject
        .date_of_birth()
        .map_or(AgeDecision::Blocked, |dob| {
            policy.decide(dob.expose(), receipt_day)
        });
    let state = match decision {
        AgeDecision::Blocked => return Err(Rejection::UnderMinimumAge),
        AgeDecision::NeedsGuardian => State::AwaitingGuardianConsent,
        AgeDecision::Proceeds => State::InProgress,
    };
    let due = deadline::statutory_deadline(j, received_at);
    let regime = j.regime();
    // Identity first: the state the age rule gave waits until it is
    // recorded, the clock paused from receipt.
    let (state, clock_pauses) = if submission.identity_verification_required {
        (
            State::AwaitingIdentityVerification,
            vec![ClockPause::at_submission(received_at, state)],
        )
    } else {
        (state, Vec::new())
    };
    let request = DataSubjectRequest {
        id,
        controller_id: controller_id.to_owned(),
        request_id: submission.request_id,
        request_type: submission.request_type,
        subject: submission.subject,
        details: submission.details,
        corrections: submission.corrections,
        state,
        regime,
        received_at,
        create_time: now,
        update_time: now,
        original_due_time: due.due_time,
        due_time: due.due_time,
        extension: None,
        guardian_consent: None,
        closure: None,
        close_time: None,
        cancellation_reason: None,
        unrouted: false,
        fingerprint,
        version: 1,
        origin: None,
        sla: SlaMarks::default(),
        clock_start_time: received_at,
        clock_pauses,
        duplicate_of: None,
    };
    let reason = match state {
        State::AwaitingGuardianConsent => "subject is a minor: awaiting guardian consent",
        State::AwaitingIdentityVerification => "accepted: awaiting identity verification",
        _ => "accepted",
    };
    let event = NewEvent {
        event_type: EventType::Submitted,
        time: now,
        actor: actor.clone(),
        from_state: None,
        to_state: state,
        reason: reason.to_owned(),
        task: None,
    };
    Ok((request, event))
}

/// A guardian as it arrives.
#[derive(Clone, Default)]
pub struct RawGuardian {
    pub full_name: String,
    pub relationship: Option<GuardianRelationship>,
    pub email: String,
    pub verification_method: String,
    pub consented_at: Option<(i64, i32)>,
}

/// Parses a guardian's consent for a request received at `received_at`.
pub fn parse_guardian(
    raw: Option<RawGuardian>,
    received_at: Timestamp,
    now: Timestamp,
) -> Result<Guardian, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let Some(raw) = raw else {
        v.add("guardian", "is required");
        return Err(v.into_vec());
    };
    let full_name = PersonName::parse(&raw.full_name)
        .map_err(|why| v.add("guardian.full_name", why))
        .ok();
    if raw.relationship.is_none() {
        v.add(
            "guardian.relationship",
            "is required: GUARDIAN_RELATIONSHIP_PARENT or GUARDIAN_RELATIONSHIP_LEGAL_GUARDIAN",
        );
    }
    let email = if raw.email.is_empty() {
        v.add("guardian.email", "is required");
        None
    } else {
        Email::parse(&raw.email)
            .map_err(|why| v.add("guardian.email", why))
            .ok()
    };
    check_text(
        &mut v,
        "guardian.verification_method",
        &raw.verification_method,
        MAX_VERIFICATION_LEN,
        true,
    );
    let consented_at = match raw.consented_at {
        None => {
            v.add("guardian.consented_at", "is required");
            None
        }
        Some((s, n)) => match timestamp(s, n) {
            None => {
                v.add("guardian.consented_at", "is not a valid timestamp");
                None
            }
            Some(t) if t < received_at => {
                v.add(
                    "guardian.consented_at",
                    "must not be before the request was received",
                );
                None
            }
            Some(t) if t > now + Span::new().seconds(RECEIVED_AT_SKEW_SECS) => {
                v.add("guardian.consented_at", "must not be in the future");
                None
            }
            Some(t) => Some(t),
        },
    };
    match (full_name, raw.relationship, email, consented_at) {
        (Some(full_name), Some(relationship), Some(email), Some(consented_at)) if v.is_empty() => {
            Ok(Guardian {
                identity: Personal::Present(GuardianIdentity { full_name, email }),
                relationship,
                verification_method: raw.verification_method,
                consented_at,
            })
        }
        _ => Err(v.into_vec()),
    }
}

/// Parses when the information a pause waited for arrived: required, a
/// valid time, and one that can close `pause` at `now`
/// ([`ClockPause::admits`]).
pub fn parse_arrival(
    raw: Option<(i64, i32)>,
    pause: &ClockPause,
    now: Timestamp,
) -> Result<Timestamp, Vec<FieldViolation>> {
    let mut v = Violations::default();
    let arrival = match raw {
        None => {
            v.add("received_at", "is required");
            None
        }
        Some((s, n)) => match timestamp(s, n) {
            None => {
                v.add("received_at", "is not a valid timestamp");
                None
            }
            Some(t) => match pause.admits(t, now) {
                Ok(()) => Some(t),
                Err(why) => {
                    v.add("received_at", why);
                    None
                }
            },
        },
    };
    match arrival {
        Some(t) if v.is_empty() => Ok(t),
        _ => Err(v.into_vec()),
    }
}

/// Parses a required free-text reason (extension, cancellation).
pub fn parse_reason(field: &str, reason: String) -> Result<String, Vec<FieldViolation>> {
    let mut v = Violations::default();
    check_text(&mut v, field, &reason, MAX_REASON_LEN, true);
    v.finish(|| reason)
}

/// Parses the controller's final word.
pub fn parse_closure(
    outcome: Option<Outcome>,
    refusal_reason: Option<RefusalReason>,
    explanation: String,
) -> Result<Closure, Vec<FieldViolation>> {
    let mut v = Violations::default();
    match outcome {
        None => v.add(
            "outcome",
            "is required: OUTCOME_COMPLETED or OUTCOME_REFUSED",
        ),
        Some(Outcome::Refused) => {
            if refusal_reason.is_none() {
                v.add("refusal_reason", "is required when the outcome is refused");
            }
            check_text(
                &mut v,
                "explanation",
                &explanation,
                MAX_EXPLANATION_LEN,
                true,
            );
        }
        Some(Outcome::Completed) => {
            if refusal_reason.is_some() {
                v.add(
                    "refusal_reason",
                    "must be unset when the outcome is completed",
                );
            }
            check_text(
                &mut v,
                "explanation",
                &explanation,
                MAX_EXPLANATION_LEN,
                false,
            );
        }
    }
    match outcome {
        Some(outcome) if v.is_empty() => Ok(Closure {
            outcome,
            refusal_reason,
            explanation,
        }),
        _ => Err(v.into_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "2026-06-15T12:00:00Z".parse().expect("valid")
    }

    fn raw() -> RawSubmission {
        RawSubmission {
            request_id: "0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".into(),
            request_type: Some(RequestType::Erasure),
            subject: Some(RawSubject {
                external_id: "cust-9".into(),
                email: "a@example.org".into(),
                date_of_birth: Some((1990, 5, 17)),
                country: "FR".into(),
                subdivision: String::new(),
            }),
            received_at: None,
            details: String::new(),
            corrections: BTreeMap::new(),
            identity_verification_required: false,
        }
    }

    fn fields(r: Result<Submission, Vec<FieldViolation>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_valid_submission_parses() {
        let s = Submission::parse(raw(), now()).expect("valid");
        assert_eq!(s.request_type, RequestType::Erasure);
        assert_eq!(s.subject.jurisdiction.country().code(), "FR");
    }

    #[test]
    fn the_fingerprint_tells_a_retry_from_a_reuse() {
        let a = Submission::parse(raw(), now()).expect("valid");
        let b = Submission::parse(raw(), now() + 5.minutes()).expect("valid");
        assert_eq!(
            a.fingerprint(),
            b.fingerprint(),
            "a later retry is the same content"
        );
        let mut other = raw();
        other.details = "x".into();
        let c = Submission::parse(other, now()).expect("valid");
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut timed = raw();
        timed.received_at = Some((now().as_second(), 0));
        let d = Submission::parse(timed, now()).expect("valid");
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn received_at_bounds() {
        let at = |t: Timestamp| {
            let mut r = raw();
            r.received_at = Some((t.as_second(), t.subsec_nanosecond()));
            fields(Submission::parse(r, now()))
        };
        assert!(at(now()).is_empty());
        assert!(
            at(now() + 30.seconds()).is_empty(),
            "small clock skew is tolerated"
        );
        assert_eq!(at(now() + 2.minutes()), vec!["received_at"]);
        assert!(at("2025-05-16T00:00:00Z".parse().expect("valid")).is_empty());
        assert_eq!(
            at("2025-05-14T00:00:00Z".parse().expect("valid")),
            vec!["received_at"]
        );
        let mut r = raw();
        r.received_at = Some((0, -1));
        assert_eq!(fields(Submission::parse(r, now())), vec!["received_at"]);
        let mut r = raw();
        r.received_at = Some((-86_400, 0));
        assert_eq!(fields(Submission::parse(r, now())), vec!["received_at"]);
    }

    #[test]
    fn messages_never_repeat_personal_data() {
        let mut r = raw();
        if let Some(s) = r.subject.as_mut() {
            s.email = "secret-person@@example".into();
            s.date_of_birth = Some((2999, 2, 30));
        }
        let v = Submission::parse(r, now()).expect_err("invalid");
        let all = format!("{v:?}");
        assert!(!all.contains("secret-person"), "{all}");
        assert!(!all.contains("2999"), "{all}");
    }

    #[test]
    fn guardians_and_closures() {
        let received = now() - 1.hour();
        let ok = RawGuardian {
            full_name: "Grace Hopper".into(),
            relationship: Some(GuardianRelationship::Parent),
            email: "g@example.org".into(),
            verification_method: "id-check".into(),
            consented_at: Some((now().as_second(), 0)),
        };
        assert!(parse_guardian(Some(ok.clone()), received, now()).is_ok());
        let names = |g: Option<RawGuardian>| -> Vec<String> {
            parse_guardian(g, received, now())
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert_eq!(names(None), vec!["guardian"]);
        assert_eq!(
            names(Some(RawGuardian::default())),
            vec![
                "guardian.full_name",
                "guardian.relationship",
                "guardian.email",
                "guardian.verification_method",
                "guardian.consented_at"
            ]
        );
        let mut future = ok.clone();
        future.consented_at = Some(((now() + 1.hour()).as_second(), 0));
        assert_eq!(names(Some(future)), vec!["guardian.consented_at"]);

        assert!(parse_closure(Some(Outcome::Completed), None, String::new()).is_ok());
        assert!(
            parse_closure(
                Some(Outcome::Refused),
                Some(RefusalReason::Other),
                "why".into()
            )
            .is_ok()
        );
        let c = |o, r, e: &str| {
            parse_closure(o, r, e.to_owned())
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(c(None, None, ""), vec!["outcome"]);
        assert_eq!(
            c(Some(Outcome::Refused), None, ""),
            vec!["refusal_reason", "explanation"]
        );
        assert_eq!(
            c(Some(Outcome::Completed), Some(RefusalReason::Other), ""),
            vec!["refusal_reason"]
        );
        assert_eq!(
            parse_reason("reason", "  ".into()).map_err(|v| v.len()),
            Err(1)
        );
        assert_eq!(
            parse_reason("reason", "x".repeat(2001)).map_err(|v| v.len()),
            Err(1)
        );
    }

    fn any_raw() -> impl Strategy<Value = RawSubmission> {
        let text = "\\PC{0,12}";
        (
            prop_oneof![
                Just("0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".to_owned()),
                text.prop_map(String::from)
            ],
            proptest::option::of(proptest::sample::select(RequestType::ALL.to_vec())),
            proptest::option::of((
                text,
                text,
                proptest::option::of((-10i32..3000, -2i32..15, -2i32..40)),
                "[A-Z]{0,3}",
                "[A-Z]{2}-[A-Z0-9]{1,3}|",
            )),
            proptest::option::of((-3_000_000_000i64..3_000_000_000, -5i32..1_000_000_001)),
            text,
            proptest::collection::btree_map(text, text, 0..4),
        )
            .prop_map(
                |(request_id, request_type, subject, received_at, details, corrections)| {
                    RawSubmission {
                        request_id,
                        request_type,
                        subject: subject.map(
                            |(external_id, email, date_of_birth, country, subdivision)| {
                                RawSubject {
                                    external_id,
                                    email,
                                    date_of_birth,
                                    country,
                                    subdivision,
                                }
                            },
                        ),
                        received_at,
                        details,
                        corrections,
                        identity_verification_required: false,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_input_is_either_accepted_or_rejected_with_named_fields(r in any_raw()) {
            match Submission::parse(r, now()) {
                Ok(s) => {
                    // A valid submission always yields a deadline after receipt.
                    let received = s.received_at.unwrap_or(now());
                    let fp = s.fingerprint();
                    if let Ok((req, _)) = accept(s, "acme", Uuid::new_v4(), fp, &AgePolicy::default(), &Actor::system(), now()) {
                        prop_assert!(req.due_time > received);
                    }
                }
                Err(v) => {
                    prop_assert!(!v.is_empty());
                    prop_assert!(v.iter().all(|f| !f.field.is_empty() && !f.description.is_empty()));
                }
            }
        }
    }
}
