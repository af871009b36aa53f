//! The data-subject request, its states and the rules that move it between
//! them. Pure: every function takes the time it needs as an argument.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::jurisdiction::{Jurisdiction, Regime};
use super::pause::{self, Pause, PauseKind};
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
    /// Waiting for the information asked for to confirm the requester's
    /// identity; the clock is paused.
    AwaitingIdentityVerification,
    /// Waiting for the subject to clarify an access request (UK GDPR
    /// Art. 12A); the clock is paused.
    AwaitingClarification,
    /// The subject already had the same request open with the controller:
    /// nothing is done for this one.
    Duplicate,
}

impl State {
    /// Every state, in API order.
    pub const ALL: [State; 10] = [
        Self::AwaitingGuardianConsent,
        Self::InProgress,
        Self::NeedsAttention,
        Self::Completed,
        Self::Refused,
        Self::Cancelled,
        Self::Expired,
        Self::AwaitingIdentityVerification,
        Self::AwaitingClarification,
        Self::Duplicate,
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
            Self::AwaitingIdentityVerification => "awaiting_identity_verification",
            Self::AwaitingClarification => "awaiting_clarification",
            Self::Duplicate => "duplicate",
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
            Self::Completed | Self::Refused | Self::Cancelled | Self::Expired | Self::Duplicate
        )
    }

    /// Waiting for the subject, with the clock paused.
    pub fn awaits_subject(self) -> bool {
        matches!(
            self,
            Self::AwaitingIdentityVerification | Self::AwaitingClarification
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
    /// The controller asked for information to confirm the requester's
    /// identity; a pause opened.
    IdentityVerificationRequested,
    /// The identity information arrived; the pause closed.
    IdentityVerificationRecorded,
    /// The controller asked the subject to clarify an access request; a
    /// pause opened.
    ClarificationRequested,
    /// The clarification arrived; the pause closed.
    ClarificationRecorded,
    /// On an open request: the same request came again and was stored as
    /// its duplicate.
    DuplicateReceived,
    /// On a new request: stored as the duplicate of an open one.
    DuplicateStored,
}

impl EventType {
    pub const ALL: [EventType; 22] = [
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
        Self::IdentityVerificationRequested,
        Self::IdentityVerificationRecorded,
        Self::ClarificationRequested,
        Self::ClarificationRecorded,
        Self::DuplicateReceived,
        Self::DuplicateStored,
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
            Self::IdentityVerificationRequested => "identity_verification_requested",
            Self::IdentityVerificationRecorded => "identity_verification_recorded",
            Self::ClarificationRequested => "clarification_requested",
            Self::ClarificationRecorded => "clarification_recorded",
            Self::DuplicateReceived => "duplicate_received",
            Self::DuplicateStored => "duplicate_stored",
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

/// A pause of a request's clock: the controller waited for the subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockPause {
    pub kind: PauseKind,
    /// Why it was asked (the caller's reason or question; empty for the
    /// pause a submission opened).
    pub reason: String,
    /// When the controller asked.
    pub start: Timestamp,
    /// When the information arrived; `None` while open.
    pub end: Option<Timestamp>,
    /// The days it added to the deadline ([`pause::clock`]); 0 while open.
    pub counted_days: u32,
    /// The state the request goes back to when the pause closes.
    pub resume: State,
    /// Opened by a submission that required identity verification: the
    /// request fans out when the pause closes into in progress.
    pub at_submission: bool,
}

impl ClockPause {
    /// The pause a submission that requires identity verification opens at
    /// receipt; `resume` is the state the age rule gives.
    pub fn at_submission(received_at: Timestamp, resume: State) -> Self {
        Self {
            kind: PauseKind::IdentityVerification,
            reason: String::new(),
            start: received_at,
            end: None,
            counted_days: 0,
            resume,
            at_submission: true,
        }
    }

    /// Whether information that arrived at `received_at` can close this
    /// pause at `now`: not before it opened, not in the future.
    pub fn admits(&self, received_at: Timestamp, now: Timestamp) -> Result<(), &'static str> {
        if received_at > now {
            Err("must not be in the future")
        } else if received_at < self.start {
            Err("must not be before the pause opened (its start_time)")
        } else {
            Ok(())
        }
    }
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
    /// When the statutory period began: receipt, or under the UK's
    /// Art. 12A the arrival of the identity information, if later.
    pub clock_start_time: Timestamp,
    /// The pauses of the clock, oldest first; at most the last is open.
    pub clock_pauses: Vec<ClockPause>,
    /// For a duplicate: the open request it repeats.
    pub duplicate_of: Option<Uuid>,
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
        if self.state.awaits_subject() {
            return Err(TransitionError::new(
                "REQUEST_AWAITING_SUBJECT",
                format!(
                    "the deadline cannot be extended while the request is {}: its clock is paused",
                    self.state.as_str()
                ),
            ));
        }
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
        let Some(extended) = self.clock().extended_due else {
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

    /// The clock as the regime runs it over the request's pauses.
    pub fn clock(&self) -> pause::Clock {
        let pauses: Vec<Pause> = self
            .clock_pauses
            .iter()
            .map(|p| Pause {
                kind: p.kind,
                start: p.start,
                end: p.end,
            })
            .collect();
        pause::clock(&self.subject.jurisdiction, self.received_at, &pauses)
    }

    /// The open pause, if the request is waiting for the subject.
    pub fn open_pause(&self) -> Option<&ClockPause> {
        self.clock_pauses.last().filter(|p| p.end.is_none())
    }

    /// The open pause of `kind`, or the error a caller gets when it
    /// records an answer nobody is waiting for.
    pub fn pending_pause(&self, kind: PauseKind) -> Result<&ClockPause, TransitionError> {
        let awaited = match kind {
            PauseKind::IdentityVerification => State::AwaitingIdentityVerification,
            PauseKind::Clarification => State::AwaitingClarification,
        };
        match self.open_pause() {
            Some(p) if p.kind == kind && self.state == awaited => Ok(p),
            _ => Err(TransitionError::new(
                match kind {
                    PauseKind::IdentityVerification => "NO_PENDING_IDENTITY_VERIFICATION",
                    PauseKind::Clarification => "NO_PENDING_CLARIFICATION",
                },
                format!(
                    "no {} was asked for: the request is {}",
                    kind.as_str().replace('_', " "),
                    self.state.as_str()
                ),
            )),
        }
    }

    /// Opens a pause of `kind` for `reason`, from in progress or awaiting
    /// guardian consent, before the deadline in force has passed. The
    /// event does not repeat `reason`.
    fn open_clock_pause(
        &mut self,
        kind: PauseKind,
        reason: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.ensure_open("pause the clock")?;
        if !matches!(
            self.state,
            State::InProgress | State::AwaitingGuardianConsent
        ) {
            return Err(TransitionError::new(
                "REQUEST_NOT_PAUSABLE",
                format!(
                    "only a request in progress or awaiting guardian consent can wait for the subject; this one is {}",
                    self.state.as_str()
                ),
            ));
        }
        if now > self.due_time {
            return Err(TransitionError::new(
                "DEADLINE_PASSED",
                "the deadline has passed; the subject must be asked before it",
            ));
        }
        let (to, event_type) = match kind {
            PauseKind::IdentityVerification => (
                State::AwaitingIdentityVerification,
                EventType::IdentityVerificationRequested,
            ),
            PauseKind::Clarification => (
                State::AwaitingClarification,
                EventType::ClarificationRequested,
            ),
        };
        self.clock_pauses.push(ClockPause {
            kind,
            reason,
            start: now,
            end: None,
            counted_days: 0,
            resume: self.state,
            at_submission: false,
        });
        // The caller's text may say things about the subject: it stays on
        // the request's pause, and the event only says what was asked.
        let described = format!("{} asked of the subject", kind.as_str().replace('_', " "));
        Ok(self.apply(to, event_type, actor, described, now))
    }

    /// Records that the controller asked for information to confirm the
    /// requester's identity: the clock pauses until it arrives.
    pub fn request_identity_verification(
        &mut self,
        reason: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.open_clock_pause(PauseKind::IdentityVerification, reason, actor, now)
    }

    /// Records that the controller asked the subject to clarify an access
    /// request; only the UK GDPR (Art. 12A) stops the clock for that.
    pub fn request_clarification(
        &mut self,
        question: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        if !pause::clarification_allowed(
            &self.subject.jurisdiction,
            self.request_type,
            self.received_at,
        ) {
            return Err(TransitionError::new(
                "CLOCK_STOP_NOT_ALLOWED",
                "the clock stops for a clarification only for an access request under the UK GDPR received from 2026-02-05",
            ));
        }
        self.open_clock_pause(PauseKind::Clarification, question, actor, now)
    }

    /// Closes the open pause of `kind` with the information that arrived at
    /// `received_at`: the deadline is computed again over every pause, and
    /// the request goes back to the state it left.
    fn close_clock_pause(
        &mut self,
        kind: PauseKind,
        received_at: Timestamp,
        reason: String,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        let open = self.pending_pause(kind)?;
        if let Err(why) = open.admits(received_at, now) {
            return Err(TransitionError::new(
                "RECEIVED_AT_OUT_OF_RANGE",
                format!("received_at {why}"),
            ));
        }
        let resume = open.resume;
        if let Some(last) = self.clock_pauses.last_mut() {
            last.end = Some(received_at);
        }
        let clock = self.clock();
        for (p, days) in self.clock_pauses.iter_mut().zip(&clock.counted_days) {
            p.counted_days = *days;
        }
        self.clock_start_time = clock.start;
        self.due_time = match (&self.extension, clock.extended_due) {
            (Some(_), Some(extended)) => extended.due_time,
            _ => clock.due.due_time,
        };
        let event_type = match kind {
            PauseKind::IdentityVerification => EventType::IdentityVerificationRecorded,
            PauseKind::Clarification => EventType::ClarificationRecorded,
        };
        Ok(self.apply(resume, event_type, actor, reason, now))
    }

    /// Records that the identity information arrived at `received_at`,
    /// confirmed by `method`.
    pub fn record_identity_verification(
        &mut self,
        method: &str,
        received_at: Timestamp,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        let reason = format!("identity verified by {method}");
        self.close_clock_pause(
            PauseKind::IdentityVerification,
            received_at,
            reason,
            actor,
            now,
        )
    }

    /// Records that the subject's clarification arrived at `received_at`.
    pub fn record_clarification(
        &mut self,
        received_at: Timestamp,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        self.close_clock_pause(
            PauseKind::Clarification,
            received_at,
            "clarification received".to_owned(),
            actor,
            now,
        )
    }

    /// Ends a request that waited for the subject longer than `timeout`.
    pub fn expire_awaiting_subject(
        &mut self,
        timeout: SignedDuration,
        now: Timestamp,
    ) -> Result<NewEvent, TransitionError> {
        let kind = match self.open_pause() {
            Some(p)
                if self.state.awaits_subject()
                    && p.start
                        .saturating_add(timeout.abs())
                        .unwrap_or(Timestamp::MAX)
                        <= now =>
            {
                p.kind
            }
            _ => {
                return Err(TransitionError::new(
                    "REQUEST_NOT_AWAITING_SUBJECT_PAST_TIMEOUT",
                    "only a request that waited for the subject past the timeout can expire",
                ));
            }
        };
        self.close_time = Some(now);
        let reason = format!(
            "no answer from the subject within the awaiting-subject timeout ({} asked for)",
            kind.as_str().replace('_', " ")
        );
        Ok(self.apply(
            State::Expired,
            EventType::Expired,
            &Actor::system(),
            reason,
            now,
        ))
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
    /// A request that required identity verification at submission does so
    /// when that identity is recorded.
    pub fn needs_fan_out(&self, event: &NewEvent) -> bool {
        self.state == State::InProgress
            && match event.event_type {
                EventType::Submitted | EventType::GuardianConsentRecorded => true,
                EventType::IdentityVerificationRecorded => {
                    self.clock_pauses.last().is_some_and(|p| p.at_submission)
                }
                _ => false,
            }
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

    /// A request of `request_type` in `country`/`subdivision`, received at
    /// `received`, optionally waiting for the requester's identity.
    fn submitted(
        country: &str,
        subdivision: &str,
        request_type: RequestType,
        received: Timestamp,
        identity_required: bool,
        birth_year: i32,
    ) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(request_type),
            subject: Some(RawSubject {
                external_id: "cust-1".into(),
                email: "a@example.org".into(),
                date_of_birth: Some((birth_year, 1, 1)),
                country: country.into(),
                subdivision: subdivision.into(),
            }),
            received_at: Some((received.as_second(), 0)),
            corrections: if request_type == RequestType::Rectification {
                [("address".to_owned(), "1 Main St".to_owned())].into()
            } else {
                BTreeMap::new()
            },
            identity_verification_required: identity_required,
            ..Default::default()
        };
        let s = Submission::parse(raw, received).expect("valid submission");
        let fp = s.fingerprint();
        accept(
            s,
            "acme",
            Uuid::new_v4(),
            fp,
            &AgePolicy::default(),
            &controller(),
            received,
        )
        .expect("accepted")
        .0
    }

    /// The deadline the pause arithmetic gives for `r`'s pauses as they
    /// stand: the extended one if the request was extended.
    fn expected_due(r: &DataSubjectRequest) -> Timestamp {
        let pauses: Vec<Pause> = r
            .clock_pauses
            .iter()
            .map(|p| Pause {
                kind: p.kind,
                start: p.start,
                end: p.end,
            })
            .collect();
        let clock = pause::clock(&r.subject.jurisdiction, r.received_at, &pauses);
        match (&r.extension, clock.extended_due) {
            (Some(_), Some(extended)) => extended.due_time,
            _ => clock.due.due_time,
        }
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
    fn an_identity_pause_opens_and_closes_back_into_the_state_it_left() {
        for (birth_year, state) in [
            (1980, State::InProgress),
            (2010, State::AwaitingGuardianConsent),
        ] {
            let mut r = request("DE", birth_year);
            assert_eq!(r.state, state);
            let asked = t0() + SignedDuration::from_hours(24 * 2);
            let e = r
                .request_identity_verification(
                    "passport copy for account 77".into(),
                    &controller(),
                    asked,
                )
                .expect("asked");
            assert_eq!(e.event_type, EventType::IdentityVerificationRequested);
            assert_eq!(
                (e.from_state, e.to_state),
                (Some(state), State::AwaitingIdentityVerification)
            );
            assert!(
                !e.reason.contains("passport"),
                "the caller's text stays off the event"
            );
            assert_eq!(r.version, 2);
            let open = r.open_pause().expect("open").clone();
            assert_eq!(
                (
                    open.kind,
                    open.start,
                    open.end,
                    open.counted_days,
                    open.resume
                ),
                (PauseKind::IdentityVerification, asked, None, 0, state)
            );
            assert_eq!(open.reason, "passport copy for account 77");
            let due_while_open = r.due_time;
            let answered = asked + SignedDuration::from_hours(24 * 5);
            let e = r
                .record_identity_verification("id-check:case-1", answered, &controller(), answered)
                .expect("recorded");
            assert_eq!(e.event_type, EventType::IdentityVerificationRecorded);
            assert_eq!(
                (e.from_state, e.to_state),
                (Some(State::AwaitingIdentityVerification), state)
            );
            assert_eq!(r.state, state);
            assert_eq!(r.version, 3);
            assert!(r.open_pause().is_none());
            assert_eq!(r.clock_pauses[0].end, Some(answered));
            assert_eq!(r.due_time, expected_due(&r));
            assert!(
                r.due_time > due_while_open,
                "an EU identity pause adds its days"
            );
            assert_eq!(r.clock_pauses[0].counted_days, 5);
            assert_eq!(
                r.original_due_time, due_while_open,
                "the deadline at receipt stays"
            );
            assert!(
                !r.needs_fan_out(&e),
                "a request that was under way does not fan out again"
            );
        }
    }

    #[test]
    fn pausing_is_refused_from_other_states_and_after_the_deadline() {
        let mut r = request("DE", 1980);
        r.request_identity_verification("x".into(), &controller(), t0())
            .expect("asked");
        let mut again = r.clone();
        assert_eq!(
            again
                .request_identity_verification("y".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_NOT_PAUSABLE")
        );
        let mut flagged = request("DE", 1980);
        flagged
            .flag_needs_attention("task failed".into(), t0())
            .expect("flag");
        assert_eq!(
            flagged
                .request_identity_verification("y".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_NOT_PAUSABLE")
        );
        let mut done = request("DE", 1980);
        done.close(completed(), &controller(), t0()).expect("close");
        assert_eq!(
            done.request_identity_verification("y".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_ALREADY_CLOSED")
        );
        let mut late = request("DE", 1980);
        let due = late.due_time;
        let before = late.clone();
        assert_eq!(
            late.request_identity_verification(
                "y".into(),
                &controller(),
                due + SignedDuration::from_micros(1)
            )
            .map_err(|e| e.reason),
            Err("DEADLINE_PASSED")
        );
        assert_eq!(
            late, before,
            "a refused change leaves the request untouched"
        );
        late.request_identity_verification("y".into(), &controller(), due)
            .expect("at the last instant still in time");
    }

    #[test]
    fn clarification_stops_the_clock_only_for_uk_access_requests_from_12a() {
        let in_force = t0();
        let before_12a: Timestamp = "2026-01-20T10:00:00Z".parse().expect("valid");
        let cases = [
            ("GB", "", RequestType::Access, in_force, true),
            ("GB", "", RequestType::Erasure, in_force, false),
            ("GB", "", RequestType::Rectification, in_force, false),
            ("GB", "", RequestType::Access, before_12a, false),
            ("DE", "", RequestType::Access, in_force, false),
            ("US", "US-CA", RequestType::Access, in_force, false),
            ("BR", "", RequestType::Access, in_force, false),
        ];
        for (country, subdivision, request_type, received, allowed) in cases {
            let mut r = submitted(country, subdivision, request_type, received, false, 1980);
            let result = r
                .request_clarification(
                    "which years?".into(),
                    &controller(),
                    received + SignedDuration::from_hours(24),
                )
                .map(|e| e.event_type)
                .map_err(|e| e.reason);
            if allowed {
                assert_eq!(result, Ok(EventType::ClarificationRequested), "{country}");
                assert_eq!(r.state, State::AwaitingClarification);
            } else {
                assert_eq!(
                    result,
                    Err("CLOCK_STOP_NOT_ALLOWED"),
                    "{country} {request_type:?}"
                );
                assert_eq!(r.state, State::InProgress);
            }
        }
    }

    #[test]
    fn a_uk_clarification_moves_the_deadline_as_the_arithmetic_says() {
        let mut r = submitted("GB", "", RequestType::Access, t0(), false, 1980);
        let due = r.due_time;
        let asked = t0() + SignedDuration::from_hours(24 * 3);
        r.request_clarification("which years?".into(), &controller(), asked)
            .expect("asked");
        let answered = asked + SignedDuration::from_hours(24 * 4);
        let e = r
            .record_clarification(answered, &controller(), answered)
            .expect("recorded");
        assert_eq!(e.event_type, EventType::ClarificationRecorded);
        assert_eq!(r.state, State::InProgress);
        assert_eq!(r.due_time, expected_due(&r));
        assert!(r.due_time > due);
        assert_eq!(
            r.clock_pauses[0].counted_days, 5,
            "the days from asking to answer, both counted"
        );
        assert_eq!(r.clock_start_time, t0());
    }

    #[test]
    fn a_uk_identity_answer_moves_the_start_of_the_period() {
        let mut r = submitted("GB", "", RequestType::Access, t0(), true, 1980);
        assert_eq!(r.state, State::AwaitingIdentityVerification);
        let answered = t0() + SignedDuration::from_hours(24 * 10);
        r.record_identity_verification("id-check", answered, &controller(), answered)
            .expect("recorded");
        assert_eq!(r.clock_start_time, expected_clock(&r).start);
        assert!(r.clock_start_time > r.received_at);
        assert_eq!(r.due_time, expected_due(&r));
    }

    fn expected_clock(r: &DataSubjectRequest) -> pause::Clock {
        r.clock()
    }

    #[test]
    fn ccpa_and_lgpd_pauses_change_the_state_and_not_the_deadline() {
        for (country, subdivision) in [("US", "US-CA"), ("BR", "")] {
            let mut r = submitted(
                country,
                subdivision,
                RequestType::Erasure,
                t0(),
                false,
                1980,
            );
            let due = r.due_time;
            r.request_identity_verification(
                "x".into(),
                &controller(),
                t0() + SignedDuration::from_hours(24),
            )
            .expect("asked");
            assert_eq!(r.state, State::AwaitingIdentityVerification);
            let answered = t0() + SignedDuration::from_hours(24 * 9);
            r.record_identity_verification("id-check", answered, &controller(), answered)
                .expect("recorded");
            assert_eq!(r.due_time, due, "{country}");
            assert_eq!(r.clock_pauses[0].counted_days, 0);
            assert_eq!(r.clock_start_time, t0());
        }
    }

    #[test]
    fn recording_needs_a_pending_pause_of_that_kind_and_a_time_inside_it() {
        let mut r = request("DE", 1980);
        assert_eq!(
            r.record_identity_verification("m", t0(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("NO_PENDING_IDENTITY_VERIFICATION")
        );
        assert_eq!(
            r.record_clarification(t0(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("NO_PENDING_CLARIFICATION")
        );
        let asked = t0() + SignedDuration::from_hours(24);
        r.request_identity_verification("x".into(), &controller(), asked)
            .expect("asked");
        assert_eq!(
            r.record_clarification(asked, &controller(), asked)
                .map_err(|e| e.reason),
            Err("NO_PENDING_CLARIFICATION"),
            "an identity pause is not closed by a clarification"
        );
        let now = asked + SignedDuration::from_hours(24 * 2);
        let before = r.clone();
        for bad in [
            asked - SignedDuration::from_micros(1),
            now + SignedDuration::from_micros(1),
        ] {
            assert_eq!(
                r.record_identity_verification("m", bad, &controller(), now)
                    .map_err(|e| e.reason),
                Err("RECEIVED_AT_OUT_OF_RANGE")
            );
            assert_eq!(r, before);
        }
        let e = r
            .record_identity_verification("m", asked, &controller(), now)
            .expect("answered the day it was asked");
        assert_eq!(e.to_state, State::InProgress);
        assert_eq!(r.clock_pauses[0].counted_days, 0, "no day passed");
        assert_eq!(r.due_time, before.due_time);
        assert_eq!(
            r.record_identity_verification("m", now, &controller(), now)
                .map_err(|e| e.reason),
            Err("NO_PENDING_IDENTITY_VERIFICATION"),
            "a closed pause is not closed again"
        );
    }

    #[test]
    fn while_awaiting_the_subject_cancel_and_close_work_and_extension_does_not() {
        let mut r = request("DE", 1980);
        r.request_identity_verification("x".into(), &controller(), t0())
            .expect("asked");
        assert_eq!(
            r.clone()
                .extend_deadline("x".into(), &controller(), t0())
                .map_err(|e| e.reason),
            Err("REQUEST_AWAITING_SUBJECT")
        );
        let mut cancelled = r.clone();
        cancelled
            .cancel("withdrawn".into(), &controller(), t0())
            .expect("cancel");
        assert_eq!(cancelled.state, State::Cancelled);
        let mut refused = r.clone();
        refused
            .close(
                Closure {
                    outcome: Outcome::Refused,
                    refusal_reason: Some(RefusalReason::IdentityNotVerified),
                    explanation: "no answer".into(),
                },
                &controller(),
                t0(),
            )
            .expect("refuse");
        assert_eq!(refused.state, State::Refused);
        r.close(completed(), &controller(), t0()).expect("complete");
        assert_eq!(r.state, State::Completed);
    }

    #[test]
    fn an_extension_after_a_pause_runs_from_the_clock() {
        let mut r = submitted("GB", "", RequestType::Access, t0(), true, 1980);
        let answered = t0() + SignedDuration::from_hours(24 * 6);
        r.record_identity_verification("id-check", answered, &controller(), answered)
            .expect("recorded");
        r.extend_deadline("complex".into(), &controller(), answered)
            .expect("extend");
        assert_eq!(Some(r.due_time), r.clock().extended_due.map(|d| d.due_time));
        r.request_clarification(
            "which?".into(),
            &controller(),
            answered + SignedDuration::from_hours(24),
        )
        .expect("asked");
        let back = answered + SignedDuration::from_hours(24 * 3);
        r.record_clarification(back, &controller(), back)
            .expect("recorded");
        assert_eq!(
            r.due_time,
            expected_due(&r),
            "an extended deadline moves by the pause too"
        );
    }

    #[test]
    fn a_submission_requiring_identity_waits_and_fans_out_when_it_is_recorded() {
        let mut adult = submitted("DE", "", RequestType::Erasure, t0(), true, 1980);
        assert_eq!(adult.state, State::AwaitingIdentityVerification);
        let pause = adult.open_pause().expect("opened at receipt").clone();
        assert_eq!(
            (pause.start, pause.at_submission, pause.resume),
            (t0(), true, State::InProgress)
        );
        let answered = t0() + SignedDuration::from_hours(24);
        let e = adult
            .record_identity_verification("id-check", answered, &controller(), answered)
            .expect("recorded");
        assert_eq!(adult.state, State::InProgress);
        assert!(adult.needs_fan_out(&e));
        let e = adult
            .request_identity_verification("again".into(), &controller(), answered)
            .expect("asked again");
        assert!(!adult.needs_fan_out(&e));
        let e = adult
            .record_identity_verification("id-check", answered, &controller(), answered)
            .expect("recorded again");
        assert!(!adult.needs_fan_out(&e), "the tasks exist already");

        let mut minor = submitted("DE", "", RequestType::Erasure, t0(), true, 2010);
        assert_eq!(minor.state, State::AwaitingIdentityVerification);
        let e = minor
            .record_identity_verification("id-check", answered, &controller(), answered)
            .expect("recorded");
        assert_eq!(
            minor.state,
            State::AwaitingGuardianConsent,
            "the age rule decides"
        );
        assert!(!minor.needs_fan_out(&e));
    }

    #[test]
    fn waiting_too_long_for_the_subject_expires_the_request() {
        let timeout = SignedDuration::from_hours(30 * 24);
        let mut r = request("DE", 1980);
        assert_eq!(
            r.clone()
                .expire_awaiting_subject(timeout, t0() + SignedDuration::from_hours(24 * 60))
                .map_err(|e| e.reason),
            Err("REQUEST_NOT_AWAITING_SUBJECT_PAST_TIMEOUT")
        );
        r.request_identity_verification("x".into(), &controller(), t0())
            .expect("asked");
        assert!(
            r.clone()
                .expire_awaiting_subject(timeout, t0() + timeout - SignedDuration::from_micros(1))
                .is_err()
        );
        let e = r
            .expire_awaiting_subject(timeout, t0() + timeout)
            .expect("expired");
        assert_eq!(e.event_type, EventType::Expired);
        assert_eq!(e.from_state, Some(State::AwaitingIdentityVerification));
        assert!(e.reason.contains("awaiting-subject timeout"));
        assert_eq!(r.state, State::Expired);
        assert_eq!(r.close_time, Some(t0() + timeout));
    }

    #[test]
    fn the_new_states_are_open_or_final_as_the_api_says() {
        assert!(!State::AwaitingIdentityVerification.is_final());
        assert!(!State::AwaitingClarification.is_final());
        assert!(State::Duplicate.is_final());
        assert!(State::AwaitingClarification.awaits_subject());
        assert!(!State::AwaitingGuardianConsent.awaits_subject());
    }

    proptest::proptest! {
        /// Whatever the regime and the dates, a pause never shortens the
        /// deadline in force and always gives back the state it took.
        #[test]
        fn a_pause_never_shortens_the_deadline(
            place in 0usize..4,
            identity in proptest::bool::ANY,
            asked_hours in 0i64..(40 * 24),
            waited_hours in 0i64..(60 * 24),
        ) {
            let (country, subdivision) = [("DE", ""), ("GB", ""), ("US", "US-CA"), ("BR", "")][place];
            let mut r = submitted(country, subdivision, RequestType::Access, t0(), false, 1980);
            let asked = t0() + SignedDuration::from_hours(asked_hours);
            proptest::prop_assume!(asked <= r.due_time);
            let before = r.due_time;
            let kind = if identity || country != "GB" {
                r.request_identity_verification("x".into(), &controller(), asked)
                    .expect("asked");
                PauseKind::IdentityVerification
            } else {
                r.request_clarification("x".into(), &controller(), asked)
                    .expect("asked");
                PauseKind::Clarification
            };
            let answered = asked + SignedDuration::from_hours(waited_hours);
            match kind {
                PauseKind::IdentityVerification => r
                    .record_identity_verification("m", answered, &controller(), answered)
                    .expect("recorded"),
                PauseKind::Clarification => r
                    .record_clarification(answered, &controller(), answered)
                    .expect("recorded"),
            };
            proptest::prop_assert!(r.due_time >= before);
            proptest::prop_assert_eq!(r.due_time, expected_due(&r));
            proptest::prop_assert_eq!(r.state, State::InProgress);
        }
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
