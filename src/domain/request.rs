//! The data-subject request, its states and the rules that move it between
//! them. Pure: every function takes the time it needs as an argument.

use std::collections::BTreeMap;

use jiff::Timestamp;
use uuid::Uuid;

use super::deadline;
use super::jurisdiction::{Jurisdiction, Regime};
use super::pii::{DateOfBirth, Email, PersonName};
use super::sla::SlaMarks;

/// The right a data subject exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestType {
    Access,
    Rectification,
    Erasure,
    Restriction,
    Portability,
    Objection,
    WithdrawConsent,
}

impl RequestType {
    /// Every type, in API order.
    pub const ALL: [RequestType; 7] = [
        Self::Access,
        Self::Rectification,
        Self::Erasure,
        Self::Restriction,
        Self::Portability,
        Self::Objection,
        Self::WithdrawConsent,
    ];

    /// Stable lower-case name, used in storage, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Portability => "portability",
            Self::Objection => "objection",
            Self::WithdrawConsent => "withdraw_consent",
        }
    }

    /// Inverse of [`RequestType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    AwaitingGuardianConsent,
    InProgress,
    NeedsAttention,
    Completed,
    Refused,
    Cancelled,
    Expired,
}

impl State {
    /// Every state, in API order.
    pub const ALL: [State; 7] = [
        Self::AwaitingGuardianConsent,
        Self::InProgress,
        Self::NeedsAttention,
        Self::Completed,
        Self::Refused,
        Self::Cancelled,
        Self::Expired,
    ];

    /// Stable lower-case name, used in storage, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingGuardianConsent => "awaiting_guardian_consent",
            Self::InProgress => "in_progress",
            Self::NeedsAttention => "needs_attention",
            Self::Completed => "completed",
            Self::Refused => "refused",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Inverse of [`State::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Refused | Self::Cancelled | Self::Expired
        )
    }
}

/// The controller's final word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Refused,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    ManifestlyUnfounded,
    Excessive,
    IdentityNotVerified,
    LegalExemption,
    Other,
}

impl RefusalReason {
    /// Every reason, in API order.
    pub const ALL: [RefusalReason; 5] = [
        Self::ManifestlyUnfounded,
        Self::Excessive,
        Self::IdentityNotVerified,
        Self::LegalExemption,
        Self::Other,
    ];

    /// Stable lower-case name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManifestlyUnfounded => "manifestly_unfounded",
            Self::Excessive => "excessive",
            Self::IdentityNotVerified => "identity_not_verified",
            Self::LegalExemption => "legal_exemption",
            Self::Other => "other",
        }
    }

    /// Inverse of [`RefusalReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How a guardian relates to the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardianRelationship {
    Parent,
    LegalGuardian,
}

impl GuardianRelationship {
    /// Stable lower-case name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parent => "parent",
            Self::LegalGuardian => "legal_guardian",
        }
    }

    /// Inverse of [`GuardianRelationship::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Parent, Self::LegalGuardian]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Personal data a request holds until the retention purge removes it
/// ([`DataSubjectRequest::purge`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Personal<T> {
    Present(T),
    /// Removed at `at`: nothing of it is kept, only when it went.
    Purged {
        at: Timestamp,
    },
}

impl<T> Personal<T> {
    /// The data, unless it was purged.
    pub fn present(&self) -> Option<&T> {
        match self {
            Self::Present(data) => Some(data),
            Self::Purged { .. } => None,
        }
    }

    /// When the data was purged, if it was.
    pub fn purge_time(&self) -> Option<Timestamp> {
        match self {
            Self::Present(_) => None,
            Self::Purged { at } => Some(*at),
        }
    }
}

/// The person a request is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// The controller's own identifier; the only subject field that may
    /// appear in telemetry. Kept by the retention purge: it names the
    /// person only in the controller's own records.
    pub external_id: String,
    pub jurisdiction: Jurisdiction,
    /// The email and date of birth, until the retention purge.
    pub personal: Personal<SubjectData>,
}

/// What the request holds about the subject as a person.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectData {
    pub email: Option<Email>,
    pub date_of_birth: DateOfBirth,
}

impl Subject {
    /// A subject whose personal data is present.
    pub fn new(
        external_id: String,
        jurisdiction: Jurisdiction,
        email: Option<Email>,
        date_of_birth: DateOfBirth,
    ) -> Self {
        Self {
            external_id,
            jurisdiction,
            personal: Personal::Present(SubjectData {
                email,
                date_of_birth,
            }),
        }
    }

    /// The email, unless none was given or it was purged.
    pub fn email(&self) -> Option<&Email> {
        self.personal.present().and_then(|d| d.email.as_ref())
    }

    /// The date of birth, unless it was purged.
    pub fn date_of_birth(&self) -> Option<&DateOfBirth> {
        self.personal.present().map(|d| &d.date_of_birth)
    }
}

/// A guardian and the evidence of their consent.
#[derive(Clone, Debug, PartialEq)]
pub struct Guardian {
    /// The guardian's name and email, until the retention purge.
    pub identity: Personal<GuardianIdentity>,
    pub relationship: GuardianRelationship,
    pub verification_method: String,
    pub consented_at: Timestamp,
}

/// Who the guardian is.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardianIdentity {
    pub full_name: PersonName,
    pub email: Email,
}

/// A guardian's consent as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardianConsent {
    pub guardian: Guardian,
    pub record_time: Timestamp,
    pub recorded_by: String,
}

/// The one extension of the deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub reason: String,
    pub extend_time: Timestamp,
    pub extended_by: String,
}

/// The controller's final word, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closure {
    pub outcome: Outcome,
    pub refusal_reason: Option<RefusalReason>,
    pub explanation: String,
}

/// Who caused a change: a caller (JWT `sub` and role) or the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub role: String,
}

impl Actor {
    /// The service itself (for the watchdog's changes).
    pub fn system() -> Self {
        Self {
            id: "gdpr-intake".to_owned(),
            role: "system".to_owned(),
        }
    }
}

/// What happened to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Submitted,
    GuardianConsentRecorded,
    DeadlineExtended,
    Cancelled,
    Closed,
    Expired,
    NeedsAttention,
    TaskCreated,
    TaskClaimed,
    TaskReleased,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
    /// The SLA watchdog found the request, or one of its tasks, at risk of
    /// missing its deadline.
    SlaAtRisk,
    /// The SLA watchdog found the request, or one of its tasks, past its
    /// deadline.
    SlaBreached,
    /// The retention purge removed the request's personal data.
    Purged,
}

impl EventType {
    pub const ALL: [EventType; 16] = [
        Self::Submitted,
        Self::GuardianConsentRecorded,
        Self::DeadlineExtended,
        Self::Cancelled,
        Self::Closed,
        Self::Expired,
        Self::NeedsAttention,
        Self::TaskCreated,
        Self::TaskClaimed,
        Self::TaskReleased,
        Self::TaskCompleted,
        Self::TaskFailed,
        Self::TaskCancelled,
        Self::SlaAtRisk,
        Self::SlaBreached,
        Self::Purged,
    ];

    /// Stable lower-case name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::GuardianConsentRecorded => "guardian_consent_recorded",
            Self::DeadlineExtended => "deadline_extended",
            Self::Cancelled => "cancelled",
            Self::Closed => "closed",
            Self::Expired => "expired",
            Self::NeedsAttention => "needs_attention",
            Self::TaskCreated => "task_created",
            Self::TaskClaimed => "task_claimed",
            Self::TaskReleased => "task_released",
            Self::TaskCompleted => "task_completed",
            Self::TaskFailed => "task_failed",
            Self::TaskCancelled => "task_cancelled",
            Self::SlaAtRisk => "sla_at_risk",
            Self::SlaBreached => "sla_breached",
            Self::Purged => "purged",
        }
    }

    /// Inverse of [`EventType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An audit event about to be written with the change it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub time: Timestamp,
    pub actor: Actor,
    pub from_state: Option<State>,
    pub to_state: State,
    pub reason: String,
    /// The task concerned, for task events.
    pub task: Option<Uuid>,
}

/// A stored audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEvent {
    /// The request it belongs to.
    pub request: Uuid,
    /// Position in the request's trail, from 1.
    pub sequence: i64,
    pub event: NewEvent,
}

/// The W3C trace context of the call that submitted a request, kept so
/// that later spans about the request can link back to it. Opaque here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceOrigin {
    /// `00-{trace id}-{span id}-{flags}`.
    pub traceparent: String,
    /// Vendor entries, if the call carried any.
    pub tracestate: Option<String>,
}

/// A data-subject request as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSubjectRequest {
    pub id: Uuid,
    /// The tenant (controller) it belongs to.
    pub controller_id: String,
    pub request_id: Uuid,
    pub request_type: RequestType,
    pub subject: Subject,
    pub details: String,
    pub corrections: BTreeMap<String, String>,
    pub state: State,
    pub regime: Regime,
    pub received_at: Timestamp,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub original_due_time: Timestamp,
    pub due_time: Timestamp,
    pub extension: Option<Extension>,
    pub guardian_consent: Option<GuardianConsent>,
    pub closure: Option<Closure>,
    pub close_time: Option<Timestamp>,
    pub cancellation_reason: Option<String>,
    /// Set when the request entered in progress and no route matched it: an
    /// operator should look at the routing configuration.
    pub unrouted: bool,
    /// Digest of the submitted content, to tell a retry from a reuse of the
    /// same `request_id`.
    pub fingerprint: String,
    /// Optimistic-concurrency version, 1 at creation, +1 per change.
    pub version: i64,
    /// The call that submitted it, when that call was traced.
    pub origin: Option<TraceOrigin>,
    /// What the SLA watchdog has reported about it. Only the watchdog
    /// writes these, and a report does not change the version.
    pub sla: SlaMarks,
}

/// A transition the request's state does not allow. `reason` is the
/// ErrorInfo reason the API reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransitionError {
    pub reason: &'static str,
    pub message: String,
}

impl TransitionError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The resource name prefix.
pub const NAME_PREFIX: &str = "dataSubjectRequests/";

impl DataSubjectRequest {
    /// `dataSubjectRequests/{uuid}`.
    pub fn name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.id)
    }

    /// When the retention purge removed the personal data, if it did.
    pub fn purge_time(&self) -> Option<Timestamp> {
        self.subject.personal.purge_time()
    }

    /// Whether the request was closed (completed or refused) by its deadline;
    /// `None` until then.
    pub fn deadline_met(&self) -> Option<bool> {
        match (&self.closure, self.close_time) {
            (Some(_), Some(closed)) => Some(closed <= self.due_time),
            _ => None,
        }
    }

    fn ensure_open(&self, action: &str) -> Result<(), TransitionError> {
        if self.state.is_final() {
            return Err(TransitionError::new(
                "REQUEST_ALREADY_CLOSED",
                format!(
                    "cannot {action}: the request is already {}",
                    self.state.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        to: State,
        event_type: EventType,
        actor: &Actor,
        reason: String,
        now: Timestamp,
    ) -> NewEvent {
        let from = self.state;
        self.state = to;
        self.update_time = now;
        self.version += 1;
        NewEvent {
            event_type,
            time: now,
            actor: actor.clone(),
            from_state: Some(from),
            to_state: to,
            reason,
            task: None,
        }
    }

    /// Records a guardian's consent and moves the request to in progress.
    pub fn record_guardian_consent(
        &mut self,
        guardian: Guardian,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        if self.state != State::AwaitingGuardianConsent {
            return Err(TransitionError::new(
                "REQUEST_NOT_AWAITING_GUARDIAN_CONSENT",
                format!(
                    "guardian consent applies only to a request awaiting it; this one is {}",
                    self.state.as_str()
                ),
            ));
        }
        let reason = format!(
            "{} consent verified by {}",
            guardian.relationship.as_str(),
            guardian.verification_method
        );
        self.guardian_consent = Some(GuardianConsent {
            guardian,
            record_time: now,
            recorded_by: actor.id.clone(),
        });
        Ok(self.apply(
            State::InProgress,
            EventType::GuardianConsentRecorded,
            actor,
            reason,
            now,
        ))
    }

    /// Extends the deadline once, before it has passed.
    pub fn extend_deadline(
        &mut self,
        reason: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.ensure_open("extend the deadline")?;
        if self.extension.is_some() {
            return Err(TransitionError::new(
                "DEADLINE_ALREADY_EXTENDED",
                "the deadline was already extended once; it cannot be extended again",
            ));
        }
        if now > self.due_time {
            return Err(TransitionError::new(
                "DEADLINE_PASSED",
                "the deadline has passed; an extension must be decided before it",
            ));
        }
        let Some(extended) =
            deadline::extended_deadline(&self.subject.jurisdiction, self.received_at)
        else {
            return Err(TransitionError::new(
                "EXTENSION_NOT_ALLOWED",
                format!("the {} regime allows no extension", self.regime.as_str()),
            ));
        };
        // Never shorten: an extension only ever moves the deadline later.
        self.due_time = extended.due_time.max(self.due_time);
        self.extension = Some(Extension {
            reason: reason.clone(),
            extend_time: now,
            extended_by: actor.id.clone(),
        });
        let state = self.state;
        Ok(self.apply(state, EventType::DeadlineExtended, actor, reason, now))
    }

    /// Records that the subject withdrew the request.
    pub fn cancel(
        &mut self,
        reason: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.ensure_open("cancel")?;
        self.cancellation_reason = Some(reason.clone());
        self.close_time = Some(now);
        Ok(self.apply(State::Cancelled, EventType::Cancelled, actor, reason, now))
    }

    /// The controller's final word. Completing needs the request to be under
    /// way (a minor's request cannot be completed before a guardian
    /// consents); refusing is possible from any open state.
    pub fn close(
        &mut self,
        closure: Closure,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.ensure_open("close")?;
        let to = match closure.outcome {
            Outcome::Completed => {
                if self.state == State::AwaitingGuardianConsent {
                    return Err(TransitionError::new(
                        "REQUEST_AWAITING_GUARDIAN_CONSENT",
                        "a request awaiting guardian consent cannot be completed; record the consent first, or refuse it",
                    ));
                }
                State::Completed
            }
            Outcome::Refused => State::Refused,
        };
        let reason = match (closure.outcome, closure.refusal_reason) {
            (Outcome::Refused, Some(r)) => format!("refused: {}", r.as_str()),
            _ => "completed".to_owned(),
        };
        self.closure = Some(closure);
        self.close_time = Some(now);
        Ok(self.apply(to, EventType::Closed, actor, reason, now))
    }

    /// Completes a request whose processors all finished their tasks.
    pub fn complete_by_processors(&mut self, now: Timestamp) -> Result<NewEvent, TransitionError> {
        self.ensure_open("complete")?;
        self.closure = Some(Closure {
            outcome: Outcome::Completed,
            refusal_reason: None,
            explanation: "every processor task was completed".to_owned(),
        });
        self.close_time = Some(now);
        Ok(self.apply(
            State::Completed,
            EventType::Closed,
            &Actor::system(),
            "every processor task was completed".to_owned(),
            now,
        ))
    }

    /// Flags a request a person must look at (a processor task failed).
    pub fn flag_needs_attention(
        &mut self,
        reason: String,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        if self.state != State::InProgress {
            return Err(TransitionError::new(
                "REQUEST_NOT_IN_PROGRESS",
                "only a request in progress can be flagged",
            ));
        }
        Ok(self.apply(
            State::NeedsAttention,
            EventType::NeedsAttention,
            &Actor::system(),
            reason,
            now,
        ))
    }

    /// Whether the request has just entered in progress and its tasks must
    /// be created: at submission for an adult, at consent for a minor.
    pub fn needs_fan_out(&self, event: &NewEvent) -> bool {
        self.state == State::InProgress
            && matches!(
                event.event_type,
                EventType::Submitted | EventType::GuardianConsentRecorded
            )
    }

    /// An event about one of the request's tasks; the request's state does
    /// not change.
    pub fn task_event(
        &self,
        event_type: EventType,
        task: Uuid,
        actor: &Actor,
        reason: String,
        now: Timestamp,
    ) -> NewEvent {
        NewEvent {
            event_type,
            time: now,
            actor: actor.clone(),
            from_state: Some(self.state),
            to_state: self.state,
            reason,
            task: Some(task),
        }
    }

    /// Removes the personal data of a request in a final state: the
    /// subject's email and date of birth, the guardian's name and email,
    /// the details and the corrections. What the audit trail holds stays,
    /// and so does everything else (states, times, reasons, the closure):
    /// the record that the request was handled, without whom it was about.
    /// The event names no personal data. A purged request is not purged
    /// again.
    pub fn purge(&mut self, now: Timestamp) -> Result<NewEvent, TransitionError> {
        if !self.state.is_final() {
            return Err(TransitionError::new(
                "REQUEST_NOT_CLOSED",
                "only a closed request can be purged of personal data",
            ));
        }
        if self.purge_time().is_some() {
            return Err(TransitionError::new(
                "REQUEST_ALREADY_PURGED",
                "the request's personal data was already purged",
            ));
        }
        self.subject.personal = Personal::Purged { at: now };
        if let Some(consent) = &mut self.guardian_consent {
            consent.guardian.identity = Personal::Purged { at: now };
        }
        self.details.clear();
        self.corrections.clear();
        let state = self.state;
        Ok(self.apply(
            state,
            EventType::Purged,
            &Actor::system(),
            "personal data removed after the retention period".to_owned(),
            now,
        ))
    }

    /// Ends a request whose guardian never consented within the window.
    pub fn expire(&mut self, now: Timestamp) -> Result<NewEvent, TransitionError> {
        if self.state != State::AwaitingGuardianConsent {
            return Err(TransitionError::new(
                "REQUEST_NOT_AWAITING_GUARDIAN_CONSENT",
                "only a request awaiting guardian consent can expire",
            ));
        }
        self.close_time = Some(now);
        Ok(self.apply(
            State::Expired,
            EventType::Expired,
            &Actor::system(),
            "no guardian consent within the consent window".to_owned(),
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::age::AgePolicy;
    use crate::domain::input::{RawSubject, RawSubmission, Submission, accept};
    use jiff::{SignedDuration, ToSpan};

    fn controller() -> Actor {
        Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        }
    }

    fn t0() -> Timestamp {
        "2026-03-10T09:00:00Z".parse().expect("valid")
    }

    fn request(country: &str, birth_year: i32) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(RequestType::Access),
            subject: Some(RawSubject {
                external_id: "cust-1".into(),
                email: "a@example.org".into(),
                date_of_birth: Some((birth_year, 1, 1)),
                country: country.into(),
                subdivision: String::new(),
            }),
            received_at: Some((t0().as_second(), 0)),
            ..Default::default()
        };
        let s = Submission::parse(raw, t0()).expect("valid submission");
        let fp = s.fingerprint();
        accept(
            s,
            "acme",
            Uuid::new_v4(),
            fp,
            &AgePolicy::default(),
            &controller(),
            t0(),
        )
        .expect("accepted")
        .0
    }

    fn guardian() -> Guardian {
        Guardian {
            identity: Personal::Present(GuardianIdentity {
                full_name: PersonName::parse("Grace Hopper").expect("valid"),
                email: Email::parse("g@example.org").expect("valid"),
            }),
            relationship: GuardianRelationship::Parent,
            verification_method: "id-check".into(),
            consented_at: t0(),
        }
    }

    fn completed() -> Closure {
        Closure {
            outcome: Outcome::Completed,
            refusal_reason: None,
            explanation: String::new(),
        }
    }

    #[test]
    fn adults_start_in_progress_and_minors_wait() {
        assert_eq!(request("DE", 1980).state, State::InProgress);
        assert_eq!(request("DE", 2010).state, State::AwaitingGuardianConsent);
    }

    #[test]
    fn every_transition_bumps_the_version_and_describes_itself() {
        let mut r = request("DE", 2010);
        let e = r
            .record_guardian_consent(guardian(), &controller(), t0() + 1.hour())
            .expect("consent");
        assert_eq!(r.version, 2);
        assert_eq!(e.from_state, Some(State::AwaitingGuardianConsent));
        assert_eq!(e.to_state, State::InProgress);
        assert_eq!(e.event_type, EventType::GuardianConsentRecorded);
        let e = r
            .extend_deadline("complex".into(), &controller(), t0() + 2.hours())
            .expect("extend");
        assert_eq!(r.version, 3);
        assert_eq!(
            (e.from_state, e.to_state),
            (Some(State::InProgress), State::InProgress)
        );
        r.close(completed(), &controller(), t0() + 3.hours())
            .expect("close");
        assert_eq!(r.version, 4);
        assert_eq!(r.state, State::Completed);
        assert_eq!(r.deadline_met(), Some(true));
    }

    #[test]
    fn final_states_refuse_every_change() {
        let finals: Vec<DataSubjectRequest> = {
            let mut done = request("DE", 1980);
            done.close(completed(), &controller(), t0()).expect("close");
            let mut cancelled = request("DE", 1980);
            cancelled
                .cancel("withdrawn".into(), &controller(), t0())
                .expect("cancel");
            let mut expired = request("DE", 2010);
            expired.expire(t0()).expect("expire");
            let mut refused = request("DE", 1980);
            refused
                .close(
                    Closure {
                        outcome: Outcome::Refused,
                        refusal_reason: Some(RefusalReason::Excessive),
                        explanation: "fifth identical request this week".into(),
                    },
                    &controller(),
                    t0(),
                )
                .expect("refuse");
            vec![done, cancelled, expired, refused]
        };
        for r in finals {
            let before = r.clone();
            let mut r2 = r.clone();
            assert_eq!(
                r2.cancel("x".into(), &controller(), t0())
                    .map_err(|e| e.reason),
                Err("REQUEST_ALREADY_CLOSED")
            );
            assert_eq!(
                r2.close(completed(), &controller(), t0())
                    .map_err(|e| e.reason),
                Err("REQUEST_ALREADY_CLOSED")
            );
            assert_eq!(
                r2.extend_deadline("x".into(), &controller(), t0())
                    .map_err(|e| e.reason),
                Err("REQUEST_ALREADY_CLOSED")
            );
            assert!(
                r2.record_guardian_consent(guardian(), &controller(), t0())
                    .is_err()
            );
            assert!(r2.expire(t0()).is_err());
            assert_eq!(r2, before, "a refused change leaves the request untouched");
        }
    }

    #[test]
    fn extension_is_once_and_before_the_deadline() {
        let mut r = request("DE", 1980);
        let due = r.due_time;
        let mut late = r.clone();
        assert_eq!(
            late.extend_deadline(
                "x".into(),
                &controller(),
                due + SignedDuration::from_micros(1)
            )
            .map_err(|e| e.reason),
            Err("DEADLINE_PASSED")
        );
        r.extend_deadline("x".into(), &controller(), due)
            .expect("at the last instant still in time");
        assert!(r.due_time > due);
        assert_eq!(r.original_due_time, due);
        assert_eq!(
            r.extend_deadline("y".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("DEADLINE_ALREADY_EXTENDED")
        );
        let mut br = request("BR", 1980);
        assert_eq!(
            br.extend_deadline("x".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("EXTENSION_NOT_ALLOWED")
        );
    }

    #[test]
    fn consent_only_when_awaited_and_completion_only_after_it() {
        let mut adult = request("DE", 1980);
        assert_eq!(
            adult
                .record_guardian_consent(guardian(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_NOT_AWAITING_GUARDIAN_CONSENT")
        );
        let mut minor = request("DE", 2010);
        assert_eq!(
            minor
                .close(completed(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_AWAITING_GUARDIAN_CONSENT")
        );
        let refusal = Closure {
            outcome: Outcome::Refused,
            refusal_reason: Some(RefusalReason::IdentityNotVerified),
            explanation: "guardian unreachable".into(),
        };
        minor
            .close(refusal, &controller(), t0())
            .expect("a minor's request can be refused");
        assert_eq!(minor.state, State::Refused);
        assert_eq!(
            adult.expire(t0()).map_err(|e| e.reason),
            Err("REQUEST_NOT_AWAITING_GUARDIAN_CONSENT")
        );
    }

    #[test]
    fn deadline_met_compares_close_time_with_the_deadline_in_force() {
        let mut r = request("DE", 1980);
        let due = r.due_time;
        r.close(completed(), &controller(), due).expect("close");
        assert_eq!(r.deadline_met(), Some(true));
        let mut r = request("DE", 1980);
        r.close(
            completed(),
            &controller(),
            due + SignedDuration::from_micros(1),
        )
        .expect("close");
        assert_eq!(r.deadline_met(), Some(false));
        let mut r = request("DE", 1980);
        r.cancel("withdrawn".into(), &controller(), t0())
            .expect("cancel");
        assert_eq!(
            r.deadline_met(),
            None,
            "a withdrawal is not judged against the deadline"
        );
    }

    #[test]
    fn names_and_enum_strings_round_trip() {
        for t in RequestType::ALL {
            assert_eq!(RequestType::parse(t.as_str()), Some(t));
        }
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        for r in RefusalReason::ALL {
            assert_eq!(RefusalReason::parse(r.as_str()), Some(r));
        }
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        let r = request("DE", 1980);
        assert_eq!(r.name(), format!("dataSubjectRequests/{}", r.id));
    }
}
