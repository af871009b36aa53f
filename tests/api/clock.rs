//! The request's clock through the real server, on both backends: pauses
//! for identity verification and (UK) clarification, the deadline they
//! move as `domain::pause` counts it, their errors, the fan-out held back
//! until the identity is recorded, the watchdog's silence while a request
//! waits for its subject and its expiry after the timeout, the audit
//! trail's integrity and what the events do not say.

use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::{ManualClock, SystemClock};
use gdpr_intake::domain::jurisdiction::Jurisdiction;
use gdpr_intake::domain::pause::{self, Pause, PauseKind};
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::RequestEventType as E;
use gdpr_intake::proto::v1::data_subject_request::State;
use gdpr_intake::store::StoreConfig;
use jiff::{SignedDuration, Timestamp};
use tonic::Code;

use crate::helpers::*;

on_both_backends!(
    an_identity_pause_moves_the_deadline_by_its_days,
    recording_is_refused_without_a_pause_or_outside_it,
    clarification_stops_the_clock_only_for_uk_access_requests,
    a_submission_requiring_identity_fans_out_only_once_it_is_recorded,
    the_watchdog_is_silent_while_paused_and_expires_after_the_timeout,
    tasks_finished_while_paused_settle_the_request_when_it_resumes,
);

/// The caller's free text, which must stay off every event.
const REASON: &str = "copy of passport for account 4411";
const QUESTION: &str = "which of your three accounts do you mean?";

/// Monday 9 March 2026, 09:00 in Berlin.
fn monday() -> Timestamp {
    "2026-03-09T08:00:00Z".parse().expect("valid")
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn proto_time(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn time_of(t: Option<prost_types::Timestamp>) -> Timestamp {
    let t = t.expect("a time");
    Timestamp::new(t.seconds, t.nanos).expect("valid")
}

/// A fresh app on `backend` with a clock at `start` and a watchdog that
/// sweeps often; `None` without PostgreSQL.
async fn spawn(
    backend: Backend,
    start: Timestamp,
) -> Option<(TestApp, StoreConfig, Arc<ManualClock>)> {
    let clock = Arc::new(ManualClock::new(start));
    let (app, config) = spawn_configured(backend, clock.clone(), |s| {
        s.watchdog.interval = Duration::from_millis(50);
    })
    .await?;
    Some((app, config, clock))
}

fn subject(country: &str, birth_year: i32) -> v1::Subject {
    v1::Subject {
        country: country.to_owned(),
        date_of_birth: Some(Date {
            year: birth_year,
            month: 1,
            day: 1,
        }),
        ..adult_subject()
    }
}

async fn submit(app: &TestApp, m: v1::SubmitDataSubjectRequestRequest) -> v1::DataSubjectRequest {
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), m))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
}

async fn ask_identity(app: &TestApp, name: &str) -> Result<v1::DataSubjectRequest, tonic::Status> {
    app.dsr()
        .request_identity_verification(authed(
            &app.token(Role::Controller, "acme"),
            v1::RequestIdentityVerificationRequest {
                name: name.to_owned(),
                reason: REASON.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().data_subject_request.expect("request"))
}

async fn record_identity(
    app: &TestApp,
    name: &str,
    received_at: Option<Timestamp>,
) -> Result<v1::DataSubjectRequest, tonic::Status> {
    app.dsr()
        .record_identity_verification(authed(
            &app.token(Role::Controller, "acme"),
            v1::RecordIdentityVerificationRequest {
                name: name.to_owned(),
                method: "id-document-check:case-4411".to_owned(),
                received_at: received_at.map(proto_time),
            },
        ))
        .await
        .map(|r| r.into_inner().data_subject_request.expect("request"))
}

async fn ask_clarification(
    app: &TestApp,
    name: &str,
) -> Result<v1::DataSubjectRequest, tonic::Status> {
    app.dsr()
        .request_clarification(authed(
            &app.token(Role::Controller, "acme"),
            v1::RequestClarificationRequest {
                name: name.to_owned(),
                question: QUESTION.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().data_subject_request.expect("request"))
}

async fn record_clarification(
    app: &TestApp,
    name: &str,
    received_at: Option<Timestamp>,
) -> Result<v1::DataSubjectRequest, tonic::Status> {
    app.dsr()
        .record_clarification(authed(
            &app.token(Role::Controller, "acme"),
            v1::RecordClarificationRequest {
                name: name.to_owned(),
                received_at: received_at.map(proto_time),
            },
        ))
        .await
        .map(|r| r.into_inner().data_subject_request.expect("request"))
}

async fn events(app: &TestApp, name: &str) -> Vec<v1::RequestEvent> {
    request_events(app, "acme", name).await
}

fn types(events: &[v1::RequestEvent]) -> Vec<E> {
    events.iter().map(v1::RequestEvent::r#type).collect()
}

/// The deadline `domain::pause` gives for the request's pauses as the
/// server returned them, and each pause's counted days.
fn arithmetic(r: &v1::DataSubjectRequest) -> (Timestamp, Vec<u32>) {
    let subject = r.subject.as_ref().expect("subject");
    let j = Jurisdiction::parse(&subject.country, &subject.subdivision).expect("jurisdiction");
    let pauses: Vec<Pause> = r
        .clock_pauses
        .iter()
        .map(|p| Pause {
            kind: match p.kind() {
                v1::ClockPauseKind::Clarification => PauseKind::Clarification,
                _ => PauseKind::IdentityVerification,
            },
            start: time_of(p.start_time),
            end: p.end_time.map(|t| time_of(Some(t))),
        })
        .collect();
    let clock = pause::clock(&j, time_of(r.received_at), &pauses);
    (clock.due.due_time, clock.counted_days)
}

/// No event repeats what the caller wrote about the subject.
fn no_free_text(events: &[v1::RequestEvent]) {
    for e in events {
        assert!(!e.reason.contains(REASON), "{e:?}");
        assert!(!e.reason.contains(QUESTION), "{e:?}");
        assert!(!e.reason.contains("ada@example.org"), "{e:?}");
    }
}

async fn an_identity_pause_moves_the_deadline_by_its_days(backend: Backend) {
    let Some((app, config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    let created = submit(&app, submission()).await;
    let name = created.name.clone();
    clock.advance(days(2));
    let asked_at = monday() + days(2);
    let paused = ask_identity(&app, &name).await.expect("asked");
    assert_eq!(paused.state(), State::AwaitingIdentityVerification);
    assert_eq!(paused.due_time, created.due_time, "unchanged while open");
    let [pause] = paused.clock_pauses.as_slice() else {
        panic!("one pause: {paused:?}");
    };
    assert_eq!(pause.kind(), v1::ClockPauseKind::IdentityVerification);
    assert_eq!(pause.reason, REASON);
    assert_eq!(time_of(pause.start_time), asked_at);
    assert_eq!((pause.end_time, pause.counted_days), (None, 0));

    // Not while waiting: another pause, an extension.
    let again = ask_identity(&app, &name)
        .await
        .expect_err("already waiting");
    assert_status(
        &again,
        Code::FailedPrecondition,
        Some("REQUEST_NOT_PAUSABLE"),
    );
    let extend = app
        .dsr()
        .extend_deadline(authed(
            &app.token(Role::Controller, "acme"),
            v1::ExtendDeadlineRequest {
                name: name.clone(),
                reason: "complex".into(),
            },
        ))
        .await
        .expect_err("paused");
    assert_status(
        &extend,
        Code::FailedPrecondition,
        Some("REQUEST_AWAITING_SUBJECT"),
    );

    clock.advance(days(7));
    let answered = asked_at + days(5);
    let resumed = record_identity(&app, &name, Some(answered))
        .await
        .expect("recorded");
    assert_eq!(resumed.state(), State::InProgress);
    let (due, counted) = arithmetic(&resumed);
    assert_eq!(time_of(resumed.due_time), due);
    assert!(
        due > time_of(created.due_time),
        "an EU identity pause adds its days"
    );
    assert_eq!(resumed.original_due_time, created.original_due_time);
    assert_eq!(
        time_of(resumed.clock_start_time),
        time_of(created.received_at)
    );
    let [pause] = resumed.clock_pauses.as_slice() else {
        panic!("one pause: {resumed:?}");
    };
    assert_eq!(time_of(pause.end_time), answered);
    assert_eq!(counted, vec![5]);
    assert_eq!(pause.counted_days, 5);

    // Read back as stored.
    let got = app
        .dsr()
        .get_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::GetDataSubjectRequestRequest { name: name.clone() },
        ))
        .await
        .expect("get")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(got, resumed);

    let trail = events(&app, &name).await;
    assert_eq!(
        types(&trail),
        [
            E::Submitted,
            E::IdentityVerificationRequested,
            E::IdentityVerificationRecorded
        ]
    );
    assert_eq!(trail[1].to_state(), State::AwaitingIdentityVerification);
    assert_eq!(trail[2].from_state(), State::AwaitingIdentityVerification);
    assert_eq!(trail[2].to_state(), State::InProgress);
    no_free_text(&trail);

    // The evidence bundle holds the clock, and not the caller's text.
    let bundle = app
        .dsr()
        .export_request_evidence(authed(
            &app.token(Role::Auditor, "acme"),
            v1::ExportRequestEvidenceRequest {
                name: name.clone(),
                include_personal_data: false,
            },
        ))
        .await
        .expect("exported")
        .into_inner()
        .bundle;
    let bundle = String::from_utf8(bundle).expect("json");
    assert!(bundle.contains("clock_pauses") && bundle.contains("counted_days"));
    assert!(!bundle.contains(REASON));

    // Cancel works while waiting.
    let other = submit(&app, submission()).await;
    ask_identity(&app, &other.name).await.expect("asked");
    let cancelled = app
        .dsr()
        .cancel_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::CancelDataSubjectRequestRequest {
                name: other.name.clone(),
                reason: "withdrawn".into(),
            },
        ))
        .await
        .expect("cancel while awaiting")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(cancelled.state(), State::Cancelled);

    trails_verify(&config).await;
    app.stop().await;
}

async fn recording_is_refused_without_a_pause_or_outside_it(backend: Backend) {
    let Some((app, _config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    let created = submit(&app, submission()).await;
    let name = created.name.clone();
    let none = record_identity(&app, &name, Some(monday()))
        .await
        .expect_err("nothing asked");
    assert_status(
        &none,
        Code::FailedPrecondition,
        Some("NO_PENDING_IDENTITY_VERIFICATION"),
    );
    let none = record_clarification(&app, &name, Some(monday()))
        .await
        .expect_err("nothing asked");
    assert_status(
        &none,
        Code::FailedPrecondition,
        Some("NO_PENDING_CLARIFICATION"),
    );

    clock.advance(days(1));
    let asked_at = monday() + days(1);
    ask_identity(&app, &name).await.expect("asked");
    clock.advance(days(2));
    let now = asked_at + days(2);
    for (received_at, why) in [
        (Some(now + SignedDuration::from_secs(3600)), "in the future"),
        (
            Some(asked_at - SignedDuration::from_secs(1)),
            "before the pause",
        ),
        (None, "missing"),
    ] {
        let refused = record_identity(&app, &name, received_at)
            .await
            .expect_err(why);
        assert_eq!(bad_fields(&refused), vec!["received_at"], "{why}");
    }
    let wrong_kind = record_clarification(&app, &name, Some(now))
        .await
        .expect_err("an identity pause is open");
    assert_status(
        &wrong_kind,
        Code::FailedPrecondition,
        Some("NO_PENDING_CLARIFICATION"),
    );
    let resumed = record_identity(&app, &name, Some(asked_at))
        .await
        .expect("answered the day it was asked");
    assert_eq!(resumed.due_time, created.due_time, "no day counted");
    let closed = record_identity(&app, &name, Some(now))
        .await
        .expect_err("closed already");
    assert_status(
        &closed,
        Code::FailedPrecondition,
        Some("NO_PENDING_IDENTITY_VERIFICATION"),
    );
    let missing = ask_identity(
        &app,
        "dataSubjectRequests/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
    )
    .await
    .expect_err("no such request");
    assert_eq!(missing.code(), Code::NotFound);
    app.stop().await;
}

async fn clarification_stops_the_clock_only_for_uk_access_requests(backend: Backend) {
    let Some((app, config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    for (country, request_type) in [
        ("DE", v1::RequestType::Access),
        ("GB", v1::RequestType::Erasure),
    ] {
        let r = submit(
            &app,
            v1::SubmitDataSubjectRequestRequest {
                subject: Some(subject(country, 1980)),
                r#type: request_type.into(),
                ..submission()
            },
        )
        .await;
        let refused = ask_clarification(&app, &r.name)
            .await
            .expect_err("no clock stop");
        assert_status(
            &refused,
            Code::FailedPrecondition,
            Some("CLOCK_STOP_NOT_ALLOWED"),
        );
    }
    let uk = submit(
        &app,
        v1::SubmitDataSubjectRequestRequest {
            subject: Some(subject("GB", 1980)),
            ..submission()
        },
    )
    .await;
    clock.advance(days(3));
    let asked_at = monday() + days(3);
    let paused = ask_clarification(&app, &uk.name).await.expect("asked");
    assert_eq!(paused.state(), State::AwaitingClarification);
    assert_eq!(
        paused.clock_pauses[0].kind(),
        v1::ClockPauseKind::Clarification
    );
    assert_eq!(paused.clock_pauses[0].reason, QUESTION);
    clock.advance(days(4));
    let resumed = record_clarification(&app, &uk.name, Some(asked_at + days(4)))
        .await
        .expect("recorded");
    assert_eq!(resumed.state(), State::InProgress);
    let (due, counted) = arithmetic(&resumed);
    assert_eq!(time_of(resumed.due_time), due);
    assert_eq!(counted, vec![5], "both the day asked and the day answered");
    assert_eq!(resumed.clock_pauses[0].counted_days, 5);
    assert!(due > time_of(uk.due_time));
    let trail = events(&app, &uk.name).await;
    assert_eq!(
        types(&trail),
        [
            E::Submitted,
            E::ClarificationRequested,
            E::ClarificationRecorded
        ]
    );
    no_free_text(&trail);
    trails_verify(&config).await;
    app.stop().await;
}

async fn a_submission_requiring_identity_fans_out_only_once_it_is_recorded(backend: Backend) {
    let Some((app, config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    app.route("acme", "crm", &[], 72).await;
    let processor = app.token(Role::Processor, "crm");
    let open_tasks = || async {
        app.tasks()
            .list_tasks(authed(&processor, v1::ListTasksRequest::default()))
            .await
            .expect("tasks")
            .into_inner()
            .tasks
    };
    let waiting = submit(
        &app,
        v1::SubmitDataSubjectRequestRequest {
            identity_verification_required: true,
            ..submission()
        },
    )
    .await;
    assert_eq!(waiting.state(), State::AwaitingIdentityVerification);
    let [pause] = waiting.clock_pauses.as_slice() else {
        panic!("one pause: {waiting:?}");
    };
    assert_eq!(pause.start_time, waiting.received_at, "opened at receipt");
    assert!(open_tasks().await.is_empty(), "no processor told yet");
    assert_eq!(types(&events(&app, &waiting.name).await), [E::Submitted]);

    // A retry is a replay; the flag is part of the content.
    let m = v1::SubmitDataSubjectRequestRequest {
        identity_verification_required: true,
        received_at: Some(proto_time(monday())),
        ..submission()
    };
    submit(&app, m.clone()).await;
    let replay = app
        .dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), m.clone()))
        .await
        .expect("replayed")
        .into_inner();
    assert!(replay.replayed);
    let reused = app
        .dsr()
        .submit_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::SubmitDataSubjectRequestRequest {
                identity_verification_required: false,
                ..m
            },
        ))
        .await
        .expect_err("other content");
    assert_status(&reused, Code::AlreadyExists, Some("REQUEST_ID_REUSED"));

    clock.advance(days(3));
    let recorded = record_identity(&app, &waiting.name, Some(monday() + days(2)))
        .await
        .expect("recorded");
    assert_eq!(recorded.state(), State::InProgress);
    assert_eq!(
        types(&events(&app, &waiting.name).await),
        [
            E::Submitted,
            E::IdentityVerificationRecorded,
            E::TaskCreated
        ]
    );
    let tasks = open_tasks().await;
    assert!(
        tasks.iter().any(|t| t.data_subject_request == waiting.name),
        "{tasks:?}"
    );

    // A minor goes on to wait for a guardian, still without tasks.
    let minor = submit(
        &app,
        v1::SubmitDataSubjectRequestRequest {
            subject: Some(subject("DE", 2010)),
            identity_verification_required: true,
            ..submission()
        },
    )
    .await;
    assert_eq!(minor.state(), State::AwaitingIdentityVerification);
    let minor = record_identity(&app, &minor.name, Some(monday() + days(3)))
        .await
        .expect("recorded");
    assert_eq!(
        minor.state(),
        State::AwaitingGuardianConsent,
        "the age rule decides"
    );
    assert_eq!(
        types(&events(&app, &minor.name).await),
        [E::Submitted, E::IdentityVerificationRecorded]
    );
    trails_verify(&config).await;
    app.stop().await;
}

async fn tasks_finished_while_paused_settle_the_request_when_it_resumes(backend: Backend) {
    let Some((app, config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    app.route("acme", "crm", &[], 72).await;
    let done = submit(&app, submission()).await;
    let failing = submit(&app, submission()).await;
    for request in [&done, &failing] {
        ask_identity(&app, &request.name).await.expect("asked");
    }
    clock.advance(days(1));
    // Processors go on with their tasks while the controller waits.
    let tasks = crate::processor::claim(&app, "crm", 10, 600).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for task in &tasks {
        let outcome = if task.data_subject_request == done.name {
            v1::TaskOutcome::Done
        } else {
            v1::TaskOutcome::Failed
        };
        crate::processor::complete(&app, "crm", task, outcome, "the export job failed")
            .await
            .expect("completed");
    }
    // A task settles only a request in progress: these wait.
    for request in read_all(&app, &[done.name.clone(), failing.name.clone()]).await {
        assert_eq!(request.state(), State::AwaitingIdentityVerification);
    }

    let completed = record_identity(&app, &done.name, Some(monday() + days(1)))
        .await
        .expect("recorded");
    assert_eq!(completed.state(), State::Completed, "nothing left to do");
    assert_eq!(completed.deadline_met, Some(true));
    let flagged = record_identity(&app, &failing.name, Some(monday() + days(1)))
        .await
        .expect("recorded");
    assert_eq!(flagged.state(), State::NeedsAttention, "its task failed");
    assert_eq!(
        types(&events(&app, &done.name).await),
        [
            E::Submitted,
            E::TaskCreated,
            E::IdentityVerificationRequested,
            E::TaskClaimed,
            E::TaskCompleted,
            E::IdentityVerificationRecorded,
            E::Closed,
        ]
    );
    assert_eq!(
        types(&events(&app, &failing.name).await).last().copied(),
        Some(E::NeedsAttention)
    );
    // As read back, not only as answered.
    let stored = read_all(&app, &[done.name.clone(), failing.name.clone()]).await;
    assert_eq!(stored[0].state(), State::Completed);
    assert_eq!(stored[1].state(), State::NeedsAttention);
    trails_verify(&config).await;
    app.stop().await;
}

async fn the_watchdog_is_silent_while_paused_and_expires_after_the_timeout(backend: Backend) {
    let Some((app, config, clock)) = spawn(backend, monday()).await else {
        return;
    };
    let paused = submit(&app, submission()).await;
    let running = submit(&app, submission()).await;
    clock.advance(days(5));
    let asked_at = monday() + days(5);
    ask_identity(&app, &paused.name).await.expect("asked");
    // Just before the deadline, well within the wait's timeout: the
    // running request is at risk, the paused one is not.
    clock.set(time_of(paused.due_time) - SignedDuration::from_hours(1));
    app.sweeps_after(2).await;
    assert!(types(&events(&app, &running.name).await).contains(&E::SlaAtRisk));
    let trail = events(&app, &paused.name).await;
    assert!(!types(&trail).contains(&E::SlaAtRisk), "{trail:?}");
    assert!(!types(&trail).contains(&E::SlaBreached), "{trail:?}");

    // After the timeout since the question, it expires, saying why.
    clock.set(asked_at + days(30));
    app.sweeps_after(2).await;
    let trail = events(&app, &paused.name).await;
    let last = trail.last().expect("events");
    assert_eq!(last.r#type(), E::Expired);
    assert_eq!(last.from_state(), State::AwaitingIdentityVerification);
    assert_eq!(last.to_state(), State::Expired);
    assert!(last.reason.contains("awaiting-subject timeout"), "{last:?}");
    assert!(!types(&trail).contains(&E::SlaBreached), "{trail:?}");
    let expired = app
        .dsr()
        .get_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::GetDataSubjectRequestRequest {
                name: paused.name.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(expired.state(), State::Expired);
    trails_verify(&config).await;
    app.stop().await;
}

/// A SQLite database written before the clock existed (migrated to 0005,
/// holding a history the real server wrote) is upgraded by the server's
/// own migration: every request reads back as it was, its clock starting
/// at receipt with no pause, every trail is whole and verifies, nothing
/// references a missing row, and the upgraded requests can pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_from_before_the_clock_upgrades_with_its_history() {
    let (app, written) = spawn_configured(Backend::Sqlite, Arc::new(SystemClock), |_| {})
        .await
        .expect("sqlite");
    let names = crate::feed::history(&app, "acme").await;
    let before = read_all(&app, &names).await;
    let trails = crate::feed::trails(&app, "acme", &names).await;
    let keys = crate::feed::stop_keeping_keys(app).await;
    let dir = tempfile::tempdir().expect("a directory");
    let mut config = written.clone();
    config.data_dir = dir.path().join("data");
    crate::db::sqlite_before(&written, &config, "0006").await;
    let clock_columns = || {
        crate::db::fetch_count(
            &config,
            "SELECT count(*) FROM pragma_table_info('data_subject_requests') \
             WHERE name = 'clock_start_time'"
                .to_owned(),
        )
    };
    assert_eq!(clock_columns().await, 0, "written before the clock");

    let again = crate::feed::reopen(&config, keys).await;
    assert_eq!(clock_columns().await, 1, "upgraded");
    let after = read_all(&again, &names).await;
    assert_eq!(after, before);
    for r in &after {
        assert_eq!(r.clock_start_time, r.received_at);
        assert!(r.clock_pauses.is_empty());
    }
    assert_eq!(crate::feed::trails(&again, "acme", &names).await, trails);
    let dangling = crate::db::fetch_count(
        &config,
        "SELECT count(*) FROM pragma_foreign_key_check".to_owned(),
    )
    .await;
    assert_eq!(dangling, 0);
    trails_verify(&config).await;
    let open = after
        .iter()
        .find(|r| r.state() == State::InProgress)
        .expect("a request in progress");
    let paused = ask_identity(&again, &open.name).await.expect("asked");
    assert_eq!(paused.state(), State::AwaitingIdentityVerification);
    again.stop().await;
}

/// The same on PostgreSQL: a database migrated to 0007 holding a history
/// the real server wrote is upgraded by the server's own migration, every
/// request reading back as it was, its trails whole and verifying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_before_the_clock_upgrades_with_its_history() {
    let Some((app, written)) =
        spawn_configured(Backend::Postgres, Arc::new(SystemClock), |_| {}).await
    else {
        return;
    };
    let names = crate::feed::history(&app, "acme").await;
    let before = read_all(&app, &names).await;
    let trails = crate::feed::trails(&app, "acme", &names).await;
    let keys = crate::feed::stop_keeping_keys(app).await;
    let mut config = written.clone();
    config.database_url = crate::db::postgres_config()
        .await
        .expect("postgres")
        .database_url;
    crate::db::postgres_before(&written, &config, "0008").await;

    let (again, _) = spawn_configured(Backend::Postgres, Arc::new(SystemClock), |s| {
        s.store = config.clone();
        s.keys = gdpr_intake::startup::KeySource::DevKeys {
            data_dir: keys.path().to_path_buf(),
        };
    })
    .await
    .expect("postgres");
    // Its tokens are signed with the keys the history was written under.
    let again = TestApp {
        data_dir: keys,
        ..again
    };
    let after = read_all(&again, &names).await;
    assert_eq!(after, before);
    assert_eq!(crate::feed::trails(&again, "acme", &names).await, trails);
    trails_verify(&config).await;
    let open = after
        .iter()
        .find(|r| r.state() == State::InProgress)
        .expect("a request in progress");
    let paused = ask_identity(&again, &open.name).await.expect("asked");
    assert_eq!(paused.state(), State::AwaitingIdentityVerification);
    again.stop().await;
}

async fn read_all(app: &TestApp, names: &[String]) -> Vec<v1::DataSubjectRequest> {
    let mut all = Vec::new();
    for name in names {
        all.push(
            app.dsr()
                .get_data_subject_request(authed(
                    &app.token(Role::Controller, "acme"),
                    v1::GetDataSubjectRequestRequest { name: name.clone() },
                ))
                .await
                .expect("get")
                .into_inner()
                .data_subject_request
                .expect("request"),
        );
    }
    all
}
