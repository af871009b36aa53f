//! Moves values between generated proto types and domain types. No checks
//! live here: parsing and validation are in `domain::input`.

use jiff::Timestamp;

use crate::domain::input::{RawGuardian, RawSubject, RawSubmission};
use crate::domain::jurisdiction::Regime;
use crate::domain::pause::PauseKind;
use crate::domain::request::{
    self as dom, DataSubjectRequest, EventType, GuardianRelationship, Outcome, RefusalReason,
    RequestEvent, RequestType, State,
};
use crate::proto::google::r#type::Date;
use crate::proto::v1;
use crate::service::FeedEntry;

/// A revocation as the API shows it.
pub fn revocation_to_proto(r: &crate::domain::revocation::Revocation) -> v1::Revocation {
    use crate::domain::revocation::RevocationTarget;
    use v1::revocation::Target;
    v1::Revocation {
        name: format!("revocations/{}", r.seq),
        target: Some(match &r.target {
            RevocationTarget::Subject(s) => Target::Subject(s.clone()),
            RevocationTarget::TokenId(t) => Target::TokenId(t.clone()),
        }),
        reason: r.reason.clone(),
        revoked_by: r.revoked_by.clone(),
        create_time: Some(timestamp(r.create_time)),
    }
}

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

pub fn raw_timestamp(t: Option<prost_types::Timestamp>) -> Option<(i64, i32)> {
    t.map(|t| (t.seconds, t.nanos))
}

pub fn request_type_from_proto(v: i32) -> Option<RequestType> {
    use v1::RequestType as P;
    Some(match P::try_from(v).ok()? {
        P::Unspecified => return None,
        P::Access => RequestType::Access,
        P::Rectification => RequestType::Rectification,
        P::Erasure => RequestType::Erasure,
        P::Restriction => RequestType::Restriction,
        P::Portability => RequestType::Portability,
        P::Objection => RequestType::Objection,
        P::WithdrawConsent => RequestType::WithdrawConsent,
    })
}

pub fn request_type_to_proto(t: RequestType) -> v1::RequestType {
    use v1::RequestType as P;
    match t {
        RequestType::Access => P::Access,
        RequestType::Rectification => P::Rectification,
        RequestType::Erasure => P::Erasure,
        RequestType::Restriction => P::Restriction,
        RequestType::Portability => P::Portability,
        RequestType::Objection => P::Objection,
        RequestType::WithdrawConsent => P::WithdrawConsent,
    }
}

pub fn state_from_proto(v: i32) -> Option<State> {
    use v1::data_subject_request::State as P;
    Some(match P::try_from(v).ok()? {
        P::Unspecified => return None,
        P::AwaitingGuardianConsent => State::AwaitingGuardianConsent,
        P::InProgress => State::InProgress,
        P::NeedsAttention => State::NeedsAttention,
        P::Completed => State::Completed,
        P::Refused => State::Refused,
        P::Cancelled => State::Cancelled,
        P::Expired => State::Expired,
        P::AwaitingIdentityVerification => State::AwaitingIdentityVerification,
        P::AwaitingClarification => State::AwaitingClarification,
        P::Duplicate => State::Duplicate,
    })
}

pub fn state_to_proto(s: State) -> v1::data_subject_request::State {
    use v1::data_subject_request::State as P;
    match s {
        State::AwaitingGuardianConsent => P::AwaitingGuardianConsent,
        State::InProgress => P::InProgress,
        State::NeedsAttention => P::NeedsAttention,
        State::Completed => P::Completed,
        State::Refused => P::Refused,
        State::Cancelled => P::Cancelled,
        State::Expired => P::Expired,
        State::AwaitingIdentityVerification => P::AwaitingIdentityVerification,
        State::AwaitingClarification => P::AwaitingClarification,
        State::Duplicate => P::Duplicate,
    }
}

fn regime_to_proto(r: Regime) -> v1::Regime {
    match r {
        Regime::Gdpr => v1::Regime::Gdpr,
        Regime::Ccpa => v1::Regime::Ccpa,
        Regime::Lgpd => v1::Regime::Lgpd,
    }
}

pub fn outcome_from_proto(v: i32) -> Option<Outcome> {
    match v1::Outcome::try_from(v).ok()? {
        v1::Outcome::Unspecified => None,
        v1::Outcome::Completed => Some(Outcome::Completed),
        v1::Outcome::Refused => Some(Outcome::Refused),
    }
}

fn outcome_to_proto(o: Outcome) -> v1::Outcome {
    match o {
        Outcome::Completed => v1::Outcome::Completed,
        Outcome::Refused => v1::Outcome::Refused,
    }
}

pub fn refusal_reason_from_proto(v: i32) -> Option<RefusalReason> {
    use v1::RefusalReason as P;
    Some(match P::try_from(v).ok()? {
        P::Unspecified => return None,
        P::ManifestlyUnfounded => RefusalReason::ManifestlyUnfounded,
        P::Excessive => RefusalReason::Excessive,
        P::IdentityNotVerified => RefusalReason::IdentityNotVerified,
        P::LegalExemption => RefusalReason::LegalExemption,
        P::Other => RefusalReason::Other,
    })
}

fn refusal_reason_to_proto(r: RefusalReason) -> v1::RefusalReason {
    use v1::RefusalReason as P;
    match r {
        RefusalReason::ManifestlyUnfounded => P::ManifestlyUnfounded,
        RefusalReason::Excessive => P::Excessive,
        RefusalReason::IdentityNotVerified => P::IdentityNotVerified,
        RefusalReason::LegalExemption => P::LegalExemption,
        RefusalReason::Other => P::Other,
    }
}

fn relationship_from_proto(v: i32) -> Option<GuardianRelationship> {
    match v1::GuardianRelationship::try_from(v).ok()? {
        v1::GuardianRelationship::Unspecified => None,
        v1::GuardianRelationship::Parent => Some(GuardianRelationship::Parent),
        v1::GuardianRelationship::LegalGuardian => Some(GuardianRelationship::LegalGuardian),
    }
}

fn relationship_to_proto(r: GuardianRelationship) -> v1::GuardianRelationship {
    match r {
        GuardianRelationship::Parent => v1::GuardianRelationship::Parent,
        GuardianRelationship::LegalGuardian => v1::GuardianRelationship::LegalGuardian,
    }
}

fn event_type_to_proto(t: EventType) -> v1::RequestEventType {
    use v1::RequestEventType as P;
    match t {
        EventType::Submitted => P::Submitted,
        EventType::GuardianConsentRecorded => P::GuardianConsentRecorded,
        EventType::DeadlineExtended => P::DeadlineExtended,
        EventType::Cancelled => P::Cancelled,
        EventType::Closed => P::Closed,
        EventType::Expired => P::Expired,
        EventType::NeedsAttention => P::NeedsAttention,
        EventType::TaskCreated => P::TaskCreated,
        EventType::TaskClaimed => P::TaskClaimed,
        EventType::TaskReleased => P::TaskReleased,
        EventType::TaskCompleted => P::TaskCompleted,
        EventType::TaskFailed => P::TaskFailed,
        EventType::TaskCancelled => P::TaskCancelled,
        EventType::SlaAtRisk => P::SlaAtRisk,
        EventType::SlaBreached => P::SlaBreached,
        EventType::Purged => P::Purged,
        EventType::IdentityVerificationRequested => P::IdentityVerificationRequested,
        EventType::IdentityVerificationRecorded => P::IdentityVerificationRecorded,
        EventType::ClarificationRequested => P::ClarificationRequested,
        EventType::ClarificationRecorded => P::ClarificationRecorded,
        EventType::DuplicateReceived => P::DuplicateReceived,
        EventType::DuplicateStored => P::DuplicateStored,
    }
}

pub fn raw_submission(m: v1::SubmitDataSubjectRequestRequest) -> RawSubmission {
    RawSubmission {
        request_id: m.request_id,
        request_type: request_type_from_proto(m.r#type),
        subject: m.subject.map(|s| RawSubject {
            external_id: s.external_id,
            email: s.email,
            date_of_birth: s.date_of_birth.map(|d| (d.year, d.month, d.day)),
            country: s.country,
            subdivision: s.subdivision,
        }),
        received_at: raw_timestamp(m.received_at),
        details: m.details,
        corrections: m.corrections.into_iter().collect(),
        identity_verification_required: m.identity_verification_required,
    }
}

pub fn raw_guardian(g: Option<v1::Guardian>) -> Option<RawGuardian> {
    g.map(|g| RawGuardian {
        full_name: g.full_name,
        relationship: relationship_from_proto(g.relationship),
        email: g.email,
        verification_method: g.verification_method,
        consented_at: raw_timestamp(g.consented_at),
    })
}

fn guardian_to_proto(g: &dom::Guardian) -> v1::Guardian {
    // A purged guardian keeps the relationship and the evidence, not who.
    let who = g.identity.present();
    v1::Guardian {
        full_name: who
            .map(|w| w.full_name.expose().to_owned())
            .unwrap_or_default(),
        relationship: relationship_to_proto(g.relationship).into(),
        email: who.map(|w| w.email.expose().to_owned()).unwrap_or_default(),
        verification_method: g.verification_method.clone(),
        consented_at: Some(timestamp(g.consented_at)),
    }
}

pub fn request_to_proto(r: &DataSubjectRequest) -> v1::DataSubjectRequest {
    v1::DataSubjectRequest {
        name: r.name(),
        request_id: r.request_id.to_string(),
        r#type: request_type_to_proto(r.request_type).into(),
        subject: Some(v1::Subject {
            external_id: r.subject.external_id.clone(),
            email: r
                .subject
                .email()
                .map(|e| e.expose().to_owned())
                .unwrap_or_default(),
            date_of_birth: r.subject.date_of_birth().map(|dob| {
                let dob = dob.expose();
                Date {
                    year: dob.year().into(),
                    month: dob.month().into(),
                    day: dob.day().into(),
                }
            }),
            country: r.subject.jurisdiction.country().code().to_owned(),
            subdivision: r
                .subject
                .jurisdiction
                .subdivision()
                .unwrap_or_default()
                .to_owned(),
        }),
        state: state_to_proto(r.state).into(),
        regime: regime_to_proto(r.regime).into(),
        received_at: Some(timestamp(r.received_at)),
        create_time: Some(timestamp(r.create_time)),
        update_time: Some(timestamp(r.update_time)),
        due_time: Some(timestamp(r.due_time)),
        original_due_time: Some(timestamp(r.original_due_time)),
        extension: r.extension.as_ref().map(|e| v1::DeadlineExtension {
            reason: e.reason.clone(),
            extend_time: Some(timestamp(e.extend_time)),
            extended_by: e.extended_by.clone(),
        }),
        guardian_consent: r.guardian_consent.as_ref().map(|c| v1::GuardianConsent {
            guardian: Some(guardian_to_proto(&c.guardian)),
            record_time: Some(timestamp(c.record_time)),
            recorded_by: c.recorded_by.clone(),
        }),
        outcome: r
            .closure
            .as_ref()
            .map_or(v1::Outcome::Unspecified, |c| outcome_to_proto(c.outcome))
            .into(),
        refusal_reason: r
            .closure
            .as_ref()
            .and_then(|c| c.refusal_reason)
            .map_or(v1::RefusalReason::Unspecified, refusal_reason_to_proto)
            .into(),
        explanation: r
            .closure
            .as_ref()
            .map(|c| c.explanation.clone())
            .unwrap_or_default(),
        close_time: r.close_time.map(timestamp),
        deadline_met: r.deadline_met(),
        details: r.details.clone(),
        corrections: r
            .corrections
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        controller_id: r.controller_id.clone(),
        cancellation_reason: r.cancellation_reason.clone().unwrap_or_default(),
        unrouted: r.unrouted,
        purge_time: r.purge_time().map(timestamp),
        clock_pauses: r.clock_pauses.iter().map(clock_pause_to_proto).collect(),
        clock_start_time: Some(timestamp(r.clock_start_time)),
        duplicate_of: r
            .duplicate_of
            .map(|id| format!("{}{id}", dom::NAME_PREFIX))
            .unwrap_or_default(),
    }
}

fn clock_pause_to_proto(p: &dom::ClockPause) -> v1::ClockPause {
    v1::ClockPause {
        kind: match p.kind {
            PauseKind::IdentityVerification => v1::ClockPauseKind::IdentityVerification,
            PauseKind::Clarification => v1::ClockPauseKind::Clarification,
        }
        .into(),
        reason: p.reason.clone(),
        start_time: Some(timestamp(p.start)),
        end_time: p.end.map(timestamp),
        counted_days: p.counted_days,
    }
}

pub fn event_to_proto(e: &RequestEvent) -> v1::RequestEvent {
    v1::RequestEvent {
        name: format!("{}{}/events/{}", dom::NAME_PREFIX, e.request, e.sequence),
        sequence: e.sequence,
        r#type: event_type_to_proto(e.event.event_type).into(),
        create_time: Some(timestamp(e.event.time)),
        actor: e.event.actor.id.clone(),
        actor_role: e.event.actor.role.clone(),
        from_state: e
            .event
            .from_state
            .map_or(v1::data_subject_request::State::Unspecified, state_to_proto)
            .into(),
        to_state: state_to_proto(e.event.to_state).into(),
        reason: e.event.reason.clone(),
        task: e
            .event
            .task
            .map(|t| format!("{}{t}", crate::domain::routing::TASK_PREFIX))
            .unwrap_or_default(),
    }
}

/// An event of a tenant's change feed, with its cursor.
pub fn feed_event_to_proto(cursors: &super::page::FeedCursors, e: &FeedEntry) -> v1::FeedEvent {
    v1::FeedEvent {
        cursor: cursors.encode(e.at),
        name: format!("{}{}", dom::NAME_PREFIX, e.event.request),
        event: Some(event_to_proto(&e.event)),
    }
}

pub fn processor_to_proto(p: &crate::domain::routing::Processor) -> v1::Processor {
    v1::Processor {
        name: format!("processors/{}", p.id),
        processor_id: p.id.clone(),
        display_name: p.display_name.clone(),
        contact: p.contact.clone().unwrap_or_default(),
        create_time: Some(timestamp(p.create_time)),
    }
}

pub fn route_to_proto(r: &crate::domain::routing::Route) -> v1::Route {
    v1::Route {
        name: r.name(),
        controller_id: r.controller_id.clone(),
        processor_id: r.processor_id.clone(),
        request_types: r
            .request_types
            .iter()
            .map(|t| request_type_to_proto(*t).into())
            .collect(),
        task_sla_working_hours: i32::try_from(r.task_sla_working_hours).unwrap_or(i32::MAX),
        create_time: Some(timestamp(r.create_time)),
    }
}

fn task_state_to_proto(s: crate::domain::routing::TaskState) -> v1::task::State {
    use crate::domain::routing::TaskState as D;
    use v1::task::State as P;
    match s {
        D::Pending => P::Pending,
        D::Leased => P::Leased,
        D::Completed => P::Completed,
        D::Failed => P::Failed,
        D::Cancelled => P::Cancelled,
    }
}

pub fn task_state_from_proto(v: i32) -> Option<crate::domain::routing::TaskState> {
    use crate::domain::routing::TaskState as D;
    use v1::task::State as P;
    Some(match P::try_from(v).ok()? {
        P::Unspecified => return None,
        P::Pending => D::Pending,
        P::Leased => D::Leased,
        P::Completed => D::Completed,
        P::Failed => D::Failed,
        P::Cancelled => D::Cancelled,
    })
}

pub fn task_outcome_from_proto(v: i32) -> Option<crate::domain::routing::TaskOutcome> {
    use crate::domain::routing::TaskOutcome as D;
    use v1::TaskOutcome as P;
    Some(match P::try_from(v).ok()? {
        P::Unspecified => return None,
        P::Done => D::Done,
        P::NoDataHeld => D::NoDataHeld,
        P::Failed => D::Failed,
    })
}

fn task_outcome_to_proto(o: crate::domain::routing::TaskOutcome) -> v1::TaskOutcome {
    use crate::domain::routing::TaskOutcome as D;
    use v1::TaskOutcome as P;
    match o {
        D::Done => P::Done,
        D::NoDataHeld => P::NoDataHeld,
        D::Failed => P::Failed,
    }
}

/// A task as its processor sees it at `now`. The lease token is shown only
/// to the caller that holds the lease (`with_lease`).
pub fn task_to_proto(
    v: &crate::domain::routing::TaskView,
    now: Timestamp,
    with_lease: bool,
) -> v1::Task {
    let t = &v.task;
    let state = t.visible_state(now);
    let leased = state == crate::domain::routing::TaskState::Leased;
    v1::Task {
        name: t.name(),
        data_subject_request: format!("{}{}", dom::NAME_PREFIX, t.request),
        processor_id: t.processor_id.clone(),
        controller_id: t.controller_id.clone(),
        r#type: request_type_to_proto(v.request_type).into(),
        subject: Some(v1::TaskSubject {
            external_id: v.external_id.clone(),
            email: v
                .email
                .as_ref()
                .map(|e| e.expose().to_owned())
                .unwrap_or_default(),
            country: v.country.code().to_owned(),
        }),
        corrections: v
            .corrections
            .iter()
            .map(|(k, val)| (k.clone(), val.clone()))
            .collect(),
        state: task_state_to_proto(state).into(),
        attempt: t.attempt,
        due_time: Some(timestamp(t.due_time)),
        lease_token: if with_lease && leased {
            t.lease_token.clone().unwrap_or_default()
        } else {
            String::new()
        },
        lease_expire_time: if leased {
            t.lease_expire_time.map(timestamp)
        } else {
            None
        },
        outcome: t
            .outcome
            .map_or(v1::TaskOutcome::Unspecified, task_outcome_to_proto)
            .into(),
        reason: t.reason.clone().unwrap_or_default(),
        result_uri: t.result_uri.clone().unwrap_or_default(),
        note: t.note.clone().unwrap_or_default(),
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        complete_time: t.complete_time.map(timestamp),
    }
}
