//! The fuzz harness of gdpr-intake. One input is one request message of one
//! of the three services, the first byte choosing which. It is decoded as
//! the server decodes it and put through exactly the checks its handler
//! runs (`api::parse`, which calls `domain::input`); what passes goes on
//! through the pure rules the handler calls next: the age rule and the
//! deadline, the fan-out plan with its working hours, the transitions.
//!
//! Nothing may panic, and every refusal must be the INVALID_ARGUMENT a
//! client would get, with at least one named field where the message
//! decoded. The library holds the harness so that `cargo test` runs it on
//! the seed inputs without libFuzzer.

use std::sync::OnceLock;

use gdpr_intake::api::codec;
use gdpr_intake::api::convert;
use gdpr_intake::api::dsr::parse_name;
use gdpr_intake::api::error::ApiError;
use gdpr_intake::api::page;
use gdpr_intake::api::parse;
use gdpr_intake::auth::{Caller, Role};
use gdpr_intake::domain::age::AgePolicy;
use gdpr_intake::domain::input::{self, Rejection};
use gdpr_intake::domain::pause::PauseKind;
use gdpr_intake::domain::request::{Actor, DataSubjectRequest, State};
use gdpr_intake::domain::routing::{self, MAX_TASK_SLA_WORKING_HOURS, Route};
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::store::FeedPosition;
use jiff::Timestamp;
use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

/// The server's clock in every run: 2026-06-15T12:00:00Z.
pub const NOW: Timestamp = Timestamp::constant(1_781_524_800, 0);

/// The request messages of the three services, in the order the first
/// byte of an input picks them (modulo their number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Submit,
    Get,
    List,
    Consent,
    Extend,
    Cancel,
    Close,
    Events,
    CreateProcessor,
    ListProcessors,
    DeleteProcessor,
    CreateRoute,
    ListRoutes,
    DeleteRoute,
    Claim,
    Renew,
    Complete,
    Release,
    ListTasks,
    Watch,
    Revoke,
    ListRevocations,
    Evidence,
    Report,
    Feed,
    WatchFeed,
    AskIdentity,
    RecordIdentity,
    AskClarification,
    RecordClarification,
}

impl Kind {
    pub const ALL: [Kind; 30] = [
        Kind::Submit,
        Kind::Get,
        Kind::List,
        Kind::Consent,
        Kind::Extend,
        Kind::Cancel,
        Kind::Close,
        Kind::Events,
        Kind::CreateProcessor,
        Kind::ListProcessors,
        Kind::DeleteProcessor,
        Kind::CreateRoute,
        Kind::ListRoutes,
        Kind::DeleteRoute,
        Kind::Claim,
        Kind::Renew,
        Kind::Complete,
        Kind::Release,
        Kind::ListTasks,
        Kind::Watch,
        Kind::Revoke,
        Kind::ListRevocations,
        Kind::Evidence,
        Kind::Report,
        Kind::Feed,
        Kind::WatchFeed,
        Kind::AskIdentity,
        Kind::RecordIdentity,
        Kind::AskClarification,
        Kind::RecordClarification,
    ];

    /// The message an input starting with `byte` is.
    pub fn of(byte: u8) -> Kind {
        Self::ALL[usize::from(byte) % Self::ALL.len()]
    }

    /// The first byte of an input that is this message.
    pub fn byte(self) -> u8 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0)
    }
}

/// Runs one fuzz input.
pub fn check_request(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    match Kind::of(first) {
        Kind::Submit => with(bytes, submit),
        Kind::Get => with(bytes, |m: v1::GetDataSubjectRequestRequest| {
            checked(parse_name(&m.name));
        }),
        Kind::List => with(bytes, |m: v1::ListDataSubjectRequestsRequest| {
            if let Some(p) = checked(parse::list_requests(&m)) {
                assert!((1..=page::MAX_PAGE_SIZE).contains(&p.size));
            }
        }),
        Kind::Consent => with(bytes, consent),
        Kind::Extend => with(bytes, |m: v1::ExtendDeadlineRequest| {
            if let Some((_, reason)) = checked(parse::reasoned(&m.name, m.reason)) {
                let _ = adult().clone().extend_deadline(reason, &actor(), NOW);
            }
        }),
        Kind::AskIdentity => with(bytes, |m: v1::RequestIdentityVerificationRequest| {
            if let Some((_, reason)) = checked(parse::reasoned(&m.name, m.reason)) {
                let mut r = adult().clone();
                if r.request_identity_verification(reason, &actor(), NOW)
                    .is_ok()
                {
                    assert_eq!(r.state, State::AwaitingIdentityVerification);
                    let _ = convert::request_to_proto(&r);
                }
            }
        }),
        Kind::RecordIdentity => with(bytes, |m: v1::RecordIdentityVerificationRequest| {
            if let Some((_, method)) = checked(parse::named_text(&m.name, "method", m.method)) {
                let mut r = awaiting_identity().clone();
                let arrival = r
                    .pending_pause(PauseKind::IdentityVerification)
                    .map(|p| input::parse_arrival(convert::raw_timestamp(m.received_at), p, NOW));
                if let Ok(Ok(at)) = arrival {
                    r.record_identity_verification(&method, at, &actor(), NOW)
                        .expect("an admitted arrival closes the pause");
                    assert_eq!(r.state, State::InProgress);
                    assert!(r.due_time >= awaiting_identity().due_time);
                }
            }
        }),
        Kind::AskClarification => with(bytes, |m: v1::RequestClarificationRequest| {
            if let Some((_, question)) = checked(parse::named_text(&m.name, "question", m.question))
            {
                let refused = adult()
                    .clone()
                    .request_clarification(question, &actor(), NOW)
                    .map_err(|e| e.reason);
                assert_eq!(refused.err(), Some("CLOCK_STOP_NOT_ALLOWED"));
            }
        }),
        Kind::RecordClarification => with(bytes, |m: v1::RecordClarificationRequest| {
            if checked(parse_name(&m.name)).is_some() {
                let r = adult();
                assert!(r.pending_pause(PauseKind::Clarification).is_err());
            }
        }),
        Kind::Cancel => with(bytes, |m: v1::CancelDataSubjectRequestRequest| {
            if let Some((_, reason)) = checked(parse::reasoned(&m.name, m.reason)) {
                let mut r = adult().clone();
                if r.cancel(reason, &actor(), NOW).is_ok() {
                    assert_eq!(r.state, State::Cancelled);
                }
            }
        }),
        Kind::Close => with(bytes, |m: v1::CloseDataSubjectRequestRequest| {
            if let Some((_, closure)) = checked(parse::close(m)) {
                let _ = minor().clone().close(closure.clone(), &actor(), NOW);
                let mut r = adult().clone();
                if r.close(closure, &actor(), NOW).is_ok() {
                    assert!(r.state.is_final());
                    let _ = convert::request_to_proto(&r);
                }
            }
        }),
        Kind::Events => with(bytes, |m: v1::ListRequestEventsRequest| {
            if let Some(p) = checked(parse::list_events(&m)) {
                assert!(p.after >= 0);
            }
        }),
        Kind::CreateProcessor => with(bytes, |m: v1::CreateProcessorRequest| {
            if let Some(p) = checked(parse::new_processor(m, NOW)) {
                assert!(routing::valid_processor_id(&p.id));
                let _ = convert::processor_to_proto(&p);
            }
        }),
        Kind::ListProcessors => with(bytes, |m: v1::ListProcessorsRequest| {
            checked(parse::list_processors(&m));
        }),
        Kind::DeleteProcessor => with(bytes, |m: v1::DeleteProcessorRequest| {
            checked(parse::processor_id(m.processor_id));
        }),
        Kind::CreateRoute => with(bytes, create_route),
        Kind::ListRoutes => with(bytes, |m: v1::ListRoutesRequest| {
            for caller in [caller(Role::Admin, ""), caller(Role::Auditor, "acme")] {
                if let Some(Some(p)) = checked(parse::list_routes(m.clone(), &caller))
                    && caller.role != Role::Admin
                {
                    assert_eq!(p.filter.controller_id.as_deref(), Some("acme"));
                }
            }
        }),
        Kind::DeleteRoute => with(bytes, |m: v1::DeleteRouteRequest| {
            checked(parse::route_name(&m.name));
        }),
        Kind::Claim => with(bytes, |m: v1::ClaimTasksRequest| {
            if let Some((max, lease)) = checked(parse::claim(&m)) {
                assert!((1..=routing::MAX_CLAIM).contains(&max));
                assert!(lease <= routing::MAX_LEASE);
            }
        }),
        Kind::Renew => with(bytes, |m: v1::RenewTaskLeaseRequest| {
            checked(parse::renew(m));
        }),
        Kind::Complete => with(bytes, |m: v1::CompleteTaskRequest| {
            checked(parse::complete(m));
        }),
        Kind::Release => with(bytes, |m: v1::ReleaseTaskRequest| {
            checked(parse::release(m));
        }),
        Kind::ListTasks => with(bytes, |m: v1::ListTasksRequest| {
            checked(parse::list_tasks(&m));
        }),
        // No fields: only decoding can fail.
        Kind::Watch => with(bytes, |_: v1::WatchTasksRequest| {}),
        Kind::Revoke => with(bytes, |m: v1::RevokeAccessRequest| {
            if let Some(r) = checked(parse::new_revocation(m, &caller(Role::Admin, ""), NOW)) {
                assert!(!r.target.value().trim().is_empty());
            }
        }),
        Kind::ListRevocations => with(bytes, |m: v1::ListRevocationsRequest| {
            checked(parse::list_revocations(&m));
        }),
        Kind::Evidence => with(bytes, |m: v1::ExportRequestEvidenceRequest| {
            checked(parse_name(&m.name));
        }),
        Kind::Report => with(bytes, |m: v1::GetComplianceReportRequest| {
            if let Some(r) = checked(parse::compliance_report(&m)) {
                assert!(r.controller_id.as_ref().is_none_or(|c| !c.is_empty()));
            }
        }),
        Kind::Feed => with(bytes, |m: v1::ListFeedEventsRequest| {
            if let Some(p) = checked(parse::feed_page(&m, "acme")) {
                assert!(p.after.number >= 0 && p.size >= 1);
                // A cursor of one tenant's feed is refused for another.
                if !m.cursor.is_empty() {
                    assert!(parse::feed_page(&m, "globex").is_err());
                }
            }
        }),
        Kind::WatchFeed => with(bytes, |m: v1::WatchRequestEventsRequest| {
            if let Some(at) = checked(parse::feed_start(&m, "acme")) {
                let again = page::encode_feed_cursor("acme", at);
                assert_eq!(
                    parse::feed_start(&v1::WatchRequestEventsRequest { cursor: again }, "acme")
                        .ok(),
                    Some(at)
                );
            }
        }),
    }
}

/// Decodes `bytes` as the server does and hands the message on. A message
/// that does not decode must get the codec's INVALID_ARGUMENT.
fn with<M: Message + Default>(bytes: &[u8], then: impl FnOnce(M)) {
    match M::decode(bytes) {
        Ok(m) => then(m),
        Err(e) => {
            let status = codec::malformed(&e);
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.get_error_details().error_info().is_some());
        }
    }
}

/// The checked value, or `None` after making sure the refusal is what a
/// client would get: INVALID_ARGUMENT with a BadRequest naming fields.
fn checked<T>(r: Result<T, ApiError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ApiError::InvalidArgument(violations)) => {
            assert!(!violations.is_empty());
            for v in &violations {
                assert!(!v.field.is_empty() && !v.description.is_empty(), "{v:?}");
            }
            let status = Status::from(ApiError::InvalidArgument(violations));
            assert_eq!(status.code(), Code::InvalidArgument);
            let named = status
                .get_error_details()
                .bad_request()
                .map_or(0, |b| b.field_violations.len());
            assert!(named > 0, "{status:?}");
            None
        }
        Err(other) => panic!("a check refused with {other:?}, not INVALID_ARGUMENT"),
    }
}

fn actor() -> Actor {
    Actor {
        id: "fuzz@acme".to_owned(),
        role: "controller".to_owned(),
    }
}

fn caller(role: Role, tenant: &str) -> Caller {
    Caller {
        subject: "fuzz".to_owned(),
        role,
        tenant: tenant.to_owned(),
        token_id: None,
        expires_at: 0,
    }
}

fn submit(m: v1::SubmitDataSubjectRequestRequest) {
    let Some(submission) = checked(parse::submission(m, NOW)) else {
        return;
    };
    let received = submission.received_at.unwrap_or(NOW);
    let fingerprint = submission.fingerprint();
    assert_eq!(fingerprint.len(), 64);
    let accepted = input::accept(
        submission,
        "acme",
        Uuid::nil(),
        fingerprint,
        &AgePolicy::default(),
        &actor(),
        NOW,
    );
    let (mut request, event) = match accepted {
        Ok(accepted) => accepted,
        Err(Rejection::UnderMinimumAge) => return,
    };
    assert!(request.due_time > received, "the deadline follows receipt");
    let _ = convert::request_to_proto(&request);
    if request.needs_fan_out(&event) {
        let calendar = request.subject.jurisdiction.clone();
        let tasks = routing::fan_out(&request, &[route("acme")], &calendar, NOW, Uuid::nil);
        for t in &tasks {
            assert!(
                t.due_time <= request.due_time,
                "a task is never due after its request"
            );
        }
    }
    let _ = request.extend_deadline("more time".to_owned(), &actor(), NOW);
}

fn consent(m: v1::RecordGuardianConsentRequest) {
    let Some((_, raw)) = checked(parse::guardian_consent(m)) else {
        return;
    };
    let mut request = minor().clone();
    let Some(guardian) =
        checked(input::parse_guardian(raw, request.received_at, NOW).map_err(ApiError::from))
    else {
        return;
    };
    if request
        .record_guardian_consent(guardian, &actor(), NOW)
        .is_ok()
    {
        assert_eq!(request.state, State::InProgress);
        let _ = convert::request_to_proto(&request);
    }
}

fn create_route(m: v1::CreateRouteRequest) {
    let Some(route) = checked(parse::new_route(m, Uuid::nil(), NOW)) else {
        return;
    };
    assert!(route.task_sla_working_hours <= MAX_TASK_SLA_WORKING_HOURS);
    let _ = convert::route_to_proto(&route);
    let mut request = adult().clone();
    request.controller_id.clone_from(&route.controller_id);
    let calendar = request.subject.jurisdiction.clone();
    for t in routing::fan_out(&request, &[route], &calendar, NOW, Uuid::nil) {
        assert!(t.due_time <= request.due_time);
    }
}

fn route(controller: &str) -> Route {
    Route {
        id: Uuid::nil(),
        controller_id: controller.to_owned(),
        processor_id: "crm".to_owned(),
        request_types: Vec::new(),
        task_sla_working_hours: MAX_TASK_SLA_WORKING_HOURS,
        create_time: NOW,
    }
}

/// A submission of acme's that passes every check, for a subject born on
/// `born` in Germany.
pub fn valid_submission(born: (i32, i32, i32)) -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        request_id: "0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".to_owned(),
        r#type: v1::RequestType::Erasure.into(),
        subject: Some(v1::Subject {
            external_id: "cust-1".to_owned(),
            email: "a@example.org".to_owned(),
            date_of_birth: Some(Date {
                year: born.0,
                month: born.1,
                day: born.2,
            }),
            country: "DE".to_owned(),
            subdivision: String::new(),
        }),
        received_at: None,
        details: String::new(),
        corrections: Default::default(),
        identity_verification_required: false,
    }
}

fn stored(born: (i32, i32, i32)) -> DataSubjectRequest {
    let submission =
        parse::submission(valid_submission(born), NOW).expect("the base submission is valid");
    let fingerprint = submission.fingerprint();
    let (request, _) = input::accept(
        submission,
        "acme",
        Uuid::nil(),
        fingerprint,
        &AgePolicy::default(),
        &actor(),
        NOW,
    )
    .expect("the base subject is old enough");
    request
}

/// An adult's request, in progress.
fn adult() -> &'static DataSubjectRequest {
    static ADULT: OnceLock<DataSubjectRequest> = OnceLock::new();
    ADULT.get_or_init(|| stored((1985, 12, 10)))
}

/// The adult's request waiting since a day before [`NOW`] for the
/// requester's identity.
fn awaiting_identity() -> &'static DataSubjectRequest {
    static WAITING: OnceLock<DataSubjectRequest> = OnceLock::new();
    WAITING.get_or_init(|| {
        let mut r = adult().clone();
        let asked = NOW - jiff::SignedDuration::from_hours(24);
        r.request_identity_verification("passport".to_owned(), &actor(), asked)
            .expect("an adult's request in progress can wait for identity");
        r
    })
}

/// A 16-year-old's request, awaiting guardian consent.
fn minor() -> &'static DataSubjectRequest {
    static MINOR: OnceLock<DataSubjectRequest> = OnceLock::new();
    MINOR.get_or_init(|| stored((2010, 1, 1)))
}

/// One valid input per message, and a few that go deeper (a minor, a
/// rectification, CCPA): the seed corpus, so that the fuzzer starts past
/// the checks instead of having to find a UUID and a country by chance.
pub fn seeds() -> Vec<Vec<u8>> {
    const NAME: &str = "dataSubjectRequests/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10";
    const TASK: &str = "tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10";
    fn seed(kind: Kind, m: &impl Message) -> Vec<u8> {
        let mut out = vec![kind.byte()];
        out.extend(m.encode_to_vec());
        out
    }
    let mut rectification = valid_submission((1990, 2, 28));
    rectification.r#type = v1::RequestType::Rectification.into();
    rectification
        .corrections
        .insert("last_name".to_owned(), "Lovelace".to_owned());
    let mut ccpa = valid_submission((2000, 1, 1));
    ccpa.received_at = Some(prost_types::Timestamp {
        seconds: NOW.as_second() - 86_400,
        nanos: 0,
    });
    if let Some(s) = ccpa.subject.as_mut() {
        s.country = "US".to_owned();
        s.subdivision = "US-CA".to_owned();
    }
    vec![
        seed(Kind::Submit, &valid_submission((1985, 12, 10))),
        seed(Kind::Submit, &valid_submission((2010, 1, 1))),
        seed(Kind::Submit, &rectification),
        seed(Kind::Submit, &ccpa),
        seed(
            Kind::Submit,
            &v1::SubmitDataSubjectRequestRequest {
                identity_verification_required: true,
                ..valid_submission((1985, 12, 10))
            },
        ),
        seed(
            Kind::Get,
            &v1::GetDataSubjectRequestRequest { name: NAME.into() },
        ),
        seed(
            Kind::List,
            &v1::ListDataSubjectRequestsRequest {
                page_size: 10,
                state: v1::data_subject_request::State::InProgress.into(),
                ..Default::default()
            },
        ),
        seed(
            Kind::Consent,
            &v1::RecordGuardianConsentRequest {
                name: NAME.into(),
                guardian: Some(v1::Guardian {
                    full_name: "Grace Hopper".into(),
                    relationship: v1::GuardianRelationship::Parent.into(),
                    email: "g@example.org".into(),
                    verification_method: "id-check".into(),
                    consented_at: Some(prost_types::Timestamp {
                        seconds: NOW.as_second(),
                        nanos: 0,
                    }),
                }),
            },
        ),
        seed(
            Kind::Extend,
            &v1::ExtendDeadlineRequest {
                name: NAME.into(),
                reason: "complex".into(),
            },
        ),
        seed(
            Kind::Cancel,
            &v1::CancelDataSubjectRequestRequest {
                name: NAME.into(),
                reason: "withdrawn".into(),
            },
        ),
        seed(
            Kind::Close,
            &v1::CloseDataSubjectRequestRequest {
                name: NAME.into(),
                outcome: v1::Outcome::Refused.into(),
                refusal_reason: v1::RefusalReason::Excessive.into(),
                explanation: "third this month".into(),
            },
        ),
        seed(
            Kind::Events,
            &v1::ListRequestEventsRequest {
                name: NAME.into(),
                page_size: 5,
                page_token: page::encode_events_token(Uuid::nil(), 3),
            },
        ),
        seed(
            Kind::CreateProcessor,
            &v1::CreateProcessorRequest {
                processor_id: "crm".into(),
                display_name: "CRM Ltd".into(),
                contact: "privacy@crm.example".into(),
            },
        ),
        seed(
            Kind::ListProcessors,
            &v1::ListProcessorsRequest {
                page_size: 2,
                page_token: page::encode_key_token("p1", "crm"),
            },
        ),
        seed(
            Kind::DeleteProcessor,
            &v1::DeleteProcessorRequest {
                processor_id: "crm".into(),
            },
        ),
        seed(
            Kind::CreateRoute,
            &v1::CreateRouteRequest {
                controller_id: "acme".into(),
                processor_id: "crm".into(),
                request_types: vec![v1::RequestType::Erasure.into()],
                task_sla_working_hours: 72,
            },
        ),
        seed(
            Kind::ListRoutes,
            &v1::ListRoutesRequest {
                controller_id: "acme".into(),
                ..Default::default()
            },
        ),
        seed(
            Kind::DeleteRoute,
            &v1::DeleteRouteRequest {
                name: "routes/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".into(),
            },
        ),
        seed(
            Kind::Claim,
            &v1::ClaimTasksRequest {
                max_tasks: 5,
                lease_duration: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
            },
        ),
        seed(
            Kind::Renew,
            &v1::RenewTaskLeaseRequest {
                name: TASK.into(),
                lease_token: "lease".into(),
                lease_duration: None,
            },
        ),
        seed(
            Kind::Complete,
            &v1::CompleteTaskRequest {
                name: TASK.into(),
                lease_token: "lease".into(),
                outcome: v1::TaskOutcome::Failed.into(),
                reason: "system down".into(),
                result_uri: "https://crm.example/r/1".into(),
                note: String::new(),
            },
        ),
        seed(
            Kind::Release,
            &v1::ReleaseTaskRequest {
                name: TASK.into(),
                lease_token: "lease".into(),
                reason: "later".into(),
            },
        ),
        seed(
            Kind::ListTasks,
            &v1::ListTasksRequest {
                state: v1::task::State::Pending.into(),
                ..Default::default()
            },
        ),
        seed(Kind::Watch, &v1::WatchTasksRequest {}),
        seed(
            Kind::Revoke,
            &v1::RevokeAccessRequest {
                target: Some(v1::revoke_access_request::Target::TokenId("jti-1".into())),
                reason: "leaked".into(),
            },
        ),
        seed(
            Kind::ListRevocations,
            &v1::ListRevocationsRequest {
                page_size: 2,
                page_token: page::encode_key_token("r1", "7"),
            },
        ),
        seed(
            Kind::Evidence,
            &v1::ExportRequestEvidenceRequest {
                name: NAME.into(),
                include_personal_data: false,
            },
        ),
        seed(
            Kind::Feed,
            &v1::ListFeedEventsRequest {
                cursor: page::encode_feed_cursor(
                    "acme",
                    FeedPosition {
                        transaction: 812,
                        request: uuid::Uuid::nil(),
                        number: 3,
                    },
                ),
                page_size: 50,
            },
        ),
        seed(
            Kind::AskIdentity,
            &v1::RequestIdentityVerificationRequest {
                name: NAME.into(),
                reason: "passport copy".into(),
            },
        ),
        seed(
            Kind::RecordIdentity,
            &v1::RecordIdentityVerificationRequest {
                name: NAME.into(),
                method: "id-check".into(),
                received_at: Some(prost_types::Timestamp {
                    seconds: NOW.as_second() - 3_600,
                    nanos: 0,
                }),
            },
        ),
        seed(
            Kind::AskClarification,
            &v1::RequestClarificationRequest {
                name: NAME.into(),
                question: "which account?".into(),
            },
        ),
        seed(
            Kind::RecordClarification,
            &v1::RecordClarificationRequest {
                name: NAME.into(),
                received_at: None,
            },
        ),
        seed(
            Kind::WatchFeed,
            &v1::WatchRequestEventsRequest {
                cursor: String::new(),
            },
        ),
        seed(
            Kind::Report,
            &v1::GetComplianceReportRequest {
                start_date: Some(gdpr_intake::proto::google::r#type::Date {
                    year: 2026,
                    month: 1,
                    day: 1,
                }),
                end_date: Some(gdpr_intake::proto::google::r#type::Date {
                    year: 2026,
                    month: 12,
                    day: 31,
                }),
                regime: v1::Regime::Ccpa.into(),
                controller_id: String::new(),
                ccpa_7102: true,
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_a_seed_and_every_seed_runs_clean() {
        let seeds = seeds();
        for kind in Kind::ALL {
            assert!(
                seeds.iter().any(|s| s.first() == Some(&kind.byte())),
                "{kind:?} has no seed"
            );
        }
        for seed in &seeds {
            check_request(seed);
        }
    }

    #[test]
    fn the_base_requests_are_what_the_transitions_need() {
        assert_eq!(adult().state, State::InProgress);
        assert_eq!(minor().state, State::AwaitingGuardianConsent);
    }

    #[test]
    fn hostile_inputs_run_clean() {
        // Each first byte, with nothing, with garbage, and with a string
        // that is not UTF-8 in field 1.
        for first in 0..=u8::MAX {
            check_request(&[first]);
            check_request(&[first, 0xff, 0xff, 0xff]);
            check_request(&[first, 0x0a, 0x02, 0xc3, 0x28]);
        }
        // A lease whose nanos would overflow its seconds when normalised.
        let claim = v1::ClaimTasksRequest {
            max_tasks: 1,
            lease_duration: Some(prost_types::Duration {
                seconds: i64::MAX,
                nanos: 1_000_000_000,
            }),
        };
        let mut input = vec![Kind::Claim.byte()];
        input.extend(claim.encode_to_vec());
        check_request(&input);
    }
}
