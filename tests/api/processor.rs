//! Fan-out and the processor task protocol, end to end through the server.

use std::sync::Arc;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::ManualClock;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request::State;
use gdpr_intake::proto::v1::task::State as TaskState;
use tonic::Code;

use crate::helpers::*;

async fn submit(
    app: &TestApp,
    controller: &str,
    m: v1::SubmitDataSubjectRequestRequest,
) -> v1::DataSubjectRequest {
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, controller), m))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
}

pub(crate) async fn claim(
    app: &TestApp,
    processor: &str,
    max: i32,
    lease_secs: i64,
) -> Vec<v1::Task> {
    app.tasks()
        .claim_tasks(authed(
            &app.token(Role::Processor, processor),
            v1::ClaimTasksRequest {
                max_tasks: max,
                lease_duration: Some(prost_types::Duration {
                    seconds: lease_secs,
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("claim")
        .into_inner()
        .tasks
}

pub(crate) async fn complete(
    app: &TestApp,
    processor: &str,
    task: &v1::Task,
    outcome: v1::TaskOutcome,
    reason: &str,
) -> Result<v1::Task, tonic::Status> {
    app.tasks()
        .complete_task(authed(
            &app.token(Role::Processor, processor),
            v1::CompleteTaskRequest {
                name: task.name.clone(),
                lease_token: task.lease_token.clone(),
                outcome: outcome.into(),
                reason: reason.into(),
                result_uri: if outcome == v1::TaskOutcome::Done {
                    "s3://exports/1.zip".into()
                } else {
                    String::new()
                },
                note: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().task.expect("task"))
}

async fn get(app: &TestApp, controller: &str, name: &str) -> v1::DataSubjectRequest {
    app.dsr()
        .get_data_subject_request(authed(
            &app.token(Role::Controller, controller),
            v1::GetDataSubjectRequestRequest { name: name.into() },
        ))
        .await
        .expect("get")
        .into_inner()
        .data_subject_request
        .expect("request")
}

#[tokio::test]
async fn a_request_completes_when_every_processor_has_finished() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    app.route("acme", "mailer", &[v1::RequestType::Erasure], 24)
        .await;

    let mut m = submission();
    m.r#type = v1::RequestType::Erasure.into();
    let r = submit(&app, "acme", m).await;
    assert_eq!(r.state(), State::InProgress);
    assert!(!r.unrouted);

    let crm = claim(&app, "crm", 10, 60).await;
    let mailer = claim(&app, "mailer", 10, 60).await;
    assert_eq!((crm.len(), mailer.len()), (1, 1));
    let t = &crm[0];
    assert_eq!(t.data_subject_request, r.name);
    assert_eq!(t.state(), TaskState::Leased);
    assert_eq!(t.attempt, 1);
    assert!(!t.lease_token.is_empty());
    assert_eq!(t.r#type(), v1::RequestType::Erasure);
    let subject = t.subject.as_ref().expect("subject");
    assert_eq!(
        (
            subject.external_id.as_str(),
            subject.email.as_str(),
            subject.country.as_str()
        ),
        ("cust-1001", "ada@example.org", "DE")
    );
    assert!(t.due_time.expect("due").seconds <= r.due_time.expect("due").seconds);
    assert!(
        mailer[0].due_time.expect("due").seconds < t.due_time.expect("due").seconds,
        "24 working hours before 72"
    );

    complete(&app, "crm", t, v1::TaskOutcome::Done, "")
        .await
        .expect("crm done");
    assert_eq!(
        get(&app, "acme", &r.name).await.state(),
        State::InProgress,
        "one task still open"
    );
    let done = complete(&app, "mailer", &mailer[0], v1::TaskOutcome::NoDataHeld, "")
        .await
        .expect("mailer done");
    assert_eq!(done.state(), TaskState::Completed);

    let finished = get(&app, "acme", &r.name).await;
    assert_eq!(finished.state(), State::Completed);
    assert_eq!(finished.deadline_met, Some(true));
    assert_eq!(finished.outcome(), v1::Outcome::Completed);

    let events = app
        .dsr()
        .list_request_events(authed(
            &app.token(Role::Controller, "acme"),
            v1::ListRequestEventsRequest {
                name: r.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("events")
        .into_inner()
        .events;
    use v1::RequestEventType as E;
    let kinds: Vec<_> = events.iter().map(|e| e.r#type()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == E::TaskCreated).count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == E::TaskClaimed).count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == E::TaskCompleted).count(), 2);
    assert_eq!(kinds.first(), Some(&E::Submitted));
    assert_eq!(kinds.last(), Some(&E::Closed));
    let claimed_by: Vec<_> = events
        .iter()
        .filter(|e| e.r#type() == E::TaskClaimed)
        .map(|e| e.actor.as_str())
        .collect();
    assert!(
        claimed_by.contains(&"crm") && claimed_by.contains(&"mailer"),
        "{claimed_by:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.r#type() != E::Submitted && e.r#type() != E::Closed)
            .all(|e| e.task.starts_with("tasks/"))
    );
    app.stop().await;
}

#[tokio::test]
async fn only_matching_routes_get_tasks_and_an_unrouted_request_says_so() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    app.route("acme", "mailer", &[v1::RequestType::Erasure], 24)
        .await;
    let access = submit(&app, "acme", submission()).await;
    assert_eq!(
        claim(&app, "mailer", 10, 60).await.len(),
        0,
        "mailer only handles erasure"
    );
    let crm = claim(&app, "crm", 10, 60).await;
    assert_eq!(crm.len(), 1);
    assert_eq!(crm[0].data_subject_request, access.name);

    let lonely = submit(&app, "beta", submission()).await;
    assert!(lonely.unrouted);
    assert_eq!(lonely.state(), State::InProgress);
    let closed = app
        .dsr()
        .close_data_subject_request(authed(
            &app.token(Role::Controller, "beta"),
            v1::CloseDataSubjectRequestRequest {
                name: lonely.name.clone(),
                outcome: v1::Outcome::Completed.into(),
                explanation: "handled by hand".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("an unrouted request can still be closed")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(closed.state(), State::Completed);
    app.stop().await;
}

#[tokio::test]
async fn a_minors_request_fans_out_only_after_consent() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    let mut m = submission();
    m.subject = Some(minor_subject());
    let r = submit(&app, "acme", m).await;
    assert_eq!(claim(&app, "crm", 10, 60).await.len(), 0);
    app.dsr()
        .record_guardian_consent(authed(
            &app.token(Role::Controller, "acme"),
            v1::RecordGuardianConsentRequest {
                name: r.name.clone(),
                guardian: Some(v1::Guardian {
                    full_name: "Grace Hopper".into(),
                    relationship: v1::GuardianRelationship::Parent.into(),
                    email: "grace@example.org".into(),
                    verification_method: "id-check".into(),
                    consented_at: r.received_at,
                }),
            },
        ))
        .await
        .expect("consent");
    let tasks = claim(&app, "crm", 10, 60).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].data_subject_request, r.name);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_lease_is_redelivered_and_stale_tokens_are_refused() {
    let clock = Arc::new(ManualClock::new(gdpr_intake::store::to_stored_precision(
        jiff::Timestamp::now(),
    )));
    let app = spawn_app_with(Backend::Sqlite, clock.clone())
        .await
        .expect("app");
    app.route("acme", "crm", &[], 72).await;
    let r = submit(&app, "acme", submission()).await;
    let first = claim(&app, "crm", 1, 30).await.remove(0);
    assert_eq!(
        claim(&app, "crm", 1, 30).await.len(),
        0,
        "leased: not claimable"
    );

    clock.advance(jiff::SignedDuration::from_secs(31));
    let second = claim(&app, "crm", 1, 30).await.remove(0);
    assert_eq!(second.name, first.name);
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease_token, first.lease_token);

    let err = complete(&app, "crm", &first, v1::TaskOutcome::Done, "")
        .await
        .expect_err("stale token");
    assert_status(&err, Code::FailedPrecondition, Some("LEASE_NOT_HELD"));
    let err = app
        .tasks()
        .renew_task_lease(authed(
            &app.token(Role::Processor, "crm"),
            v1::RenewTaskLeaseRequest {
                name: first.name.clone(),
                lease_token: first.lease_token.clone(),
                lease_duration: None,
            },
        ))
        .await
        .expect_err("stale renewal");
    assert_status(&err, Code::FailedPrecondition, Some("LEASE_NOT_HELD"));

    let renewed = app
        .tasks()
        .renew_task_lease(authed(
            &app.token(Role::Processor, "crm"),
            v1::RenewTaskLeaseRequest {
                name: second.name.clone(),
                lease_token: second.lease_token.clone(),
                lease_duration: Some(prost_types::Duration {
                    seconds: 120,
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("renewal")
        .into_inner()
        .task
        .expect("task");
    assert!(
        renewed.lease_expire_time.expect("lease").seconds
            > second.lease_expire_time.expect("lease").seconds
    );

    let done = complete(&app, "crm", &second, v1::TaskOutcome::Done, "")
        .await
        .expect("completed");
    let again = complete(&app, "crm", &second, v1::TaskOutcome::Done, "")
        .await
        .expect("idempotent");
    assert_eq!(again, done);
    let events = app
        .dsr()
        .list_request_events(authed(
            &app.token(Role::Controller, "acme"),
            v1::ListRequestEventsRequest {
                name: r.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("events")
        .into_inner()
        .events;
    let completions = events
        .iter()
        .filter(|e| e.r#type() == v1::RequestEventType::TaskCompleted)
        .count();
    assert_eq!(completions, 1, "a replayed completion writes nothing");
    assert!(events.iter().any(
        |e| e.r#type() == v1::RequestEventType::TaskClaimed && e.reason.contains("redelivered")
    ));
    app.stop().await;
}

#[tokio::test]
async fn released_failed_and_cancelled_tasks() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    let crm = app.token(Role::Processor, "crm");

    // Release gives the task back.
    let r = submit(&app, "acme", submission()).await;
    let t = claim(&app, "crm", 1, 60).await.remove(0);
    let released = app
        .tasks()
        .release_task(authed(
            &crm,
            v1::ReleaseTaskRequest {
                name: t.name.clone(),
                lease_token: t.lease_token.clone(),
                reason: "system busy".into(),
            },
        ))
        .await
        .expect("released")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(released.state(), TaskState::Pending);
    assert!(released.lease_token.is_empty());

    // A failure flags the request.
    let t = claim(&app, "crm", 1, 60).await.remove(0);
    assert_eq!(t.attempt, 2);
    let err = complete(&app, "crm", &t, v1::TaskOutcome::Failed, "")
        .await
        .expect_err("failure needs a reason");
    assert_eq!(bad_fields(&err), vec!["reason"]);
    complete(
        &app,
        "crm",
        &t,
        v1::TaskOutcome::Failed,
        "backup system offline",
    )
    .await
    .expect("failed");
    let flagged = get(&app, "acme", &r.name).await;
    assert_eq!(flagged.state(), State::NeedsAttention);

    // Cancelling a request cancels its open tasks; the processor learns it.
    let r2 = submit(&app, "acme", submission()).await;
    let t2 = claim(&app, "crm", 1, 60).await.remove(0);
    assert_eq!(t2.data_subject_request, r2.name);
    app.dsr()
        .cancel_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::CancelDataSubjectRequestRequest {
                name: r2.name.clone(),
                reason: "withdrawn".into(),
            },
        ))
        .await
        .expect("cancelled");
    let err = app
        .tasks()
        .renew_task_lease(authed(
            &crm,
            v1::RenewTaskLeaseRequest {
                name: t2.name.clone(),
                lease_token: t2.lease_token.clone(),
                lease_duration: None,
            },
        ))
        .await
        .expect_err("cancelled");
    assert_status(&err, Code::FailedPrecondition, Some("TASK_CANCELLED"));
    let err = complete(&app, "crm", &t2, v1::TaskOutcome::Done, "")
        .await
        .expect_err("cancelled");
    assert_status(&err, Code::FailedPrecondition, Some("TASK_CANCELLED"));
    let cancelled = app
        .tasks()
        .list_tasks(authed(
            &crm,
            v1::ListTasksRequest {
                state: TaskState::Cancelled.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert_eq!(cancelled.len(), 1);
    assert!(
        cancelled[0].lease_token.is_empty(),
        "listing never shows lease tokens"
    );
    app.stop().await;
}

#[tokio::test]
async fn processors_never_see_each_others_tasks() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    app.route("acme", "mailer", &[], 72).await;
    submit(&app, "acme", submission()).await;
    let crm_task = claim(&app, "crm", 1, 60).await.remove(0);
    let mailer = app.token(Role::Processor, "mailer");
    let missing = "tasks/00000000-0000-4000-8000-000000000000".to_owned();
    for name in [crm_task.name.clone(), missing] {
        let mut c = app.tasks();
        let errs = vec![
            c.renew_task_lease(authed(
                &mailer,
                v1::RenewTaskLeaseRequest {
                    name: name.clone(),
                    lease_token: crm_task.lease_token.clone(),
                    lease_duration: None,
                },
            ))
            .await
            .expect_err("renew"),
            c.complete_task(authed(
                &mailer,
                v1::CompleteTaskRequest {
                    name: name.clone(),
                    lease_token: crm_task.lease_token.clone(),
                    outcome: v1::TaskOutcome::Done.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("complete"),
            c.release_task(authed(
                &mailer,
                v1::ReleaseTaskRequest {
                    name: name.clone(),
                    lease_token: crm_task.lease_token.clone(),
                    reason: String::new(),
                },
            ))
            .await
            .expect_err("release"),
        ];
        for e in errs {
            assert_status(&e, Code::NotFound, Some("NOT_FOUND"));
            assert_eq!(e.message(), "task not found");
        }
    }
    let mine = app
        .tasks()
        .list_tasks(authed(&mailer, v1::ListTasksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert_eq!(mine.len(), 1);
    assert!(mine.iter().all(|t| t.processor_id == "mailer"));

    // Roles: a controller cannot use the processor API.
    let err = app
        .tasks()
        .claim_tasks(authed(
            &app.token(Role::Controller, "acme"),
            v1::ClaimTasksRequest::default(),
        ))
        .await
        .expect_err("wrong role");
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn claim_arguments_are_checked() {
    let app = spawn_app().await;
    let crm = app.token(Role::Processor, "crm");
    for (max, lease, field) in [
        (101, 60, "max_tasks"),
        (-1, 60, "max_tasks"),
        (1, 0, "lease_duration"),
        (1, 601, "lease_duration"),
    ] {
        let err = app
            .tasks()
            .claim_tasks(authed(
                &crm,
                v1::ClaimTasksRequest {
                    max_tasks: max,
                    lease_duration: Some(prost_types::Duration {
                        seconds: lease,
                        nanos: 0,
                    }),
                },
            ))
            .await
            .expect_err("invalid");
        assert_eq!(bad_fields(&err), vec![field]);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_task_is_never_due_after_its_request() {
    let app = spawn_app().await;
    app.route("acme", "slow", &[], 2000).await;
    let r = submit(&app, "acme", submission()).await;
    let t = claim(&app, "slow", 1, 60).await.remove(0);
    assert_eq!(t.due_time, r.due_time, "capped at the request's deadline");
    app.stop().await;
}

#[tokio::test]
async fn watch_pushes_new_tasks() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    let mut stream = app
        .tasks()
        .watch_tasks(authed(
            &app.token(Role::Processor, "crm"),
            v1::WatchTasksRequest {},
        ))
        .await
        .expect("watch")
        .into_inner();
    let r = submit(&app, "acme", submission()).await;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
        .await
        .expect("a task arrives in time")
        .expect("stream ok")
        .expect("a message");
    let task = msg.task.expect("task");
    assert_eq!(task.data_subject_request, r.name);
    assert_eq!(task.state(), TaskState::Pending);
    assert!(task.lease_token.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn postgres_runs_the_processor_protocol() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    app.route("acme", "crm", &[], 72).await;
    let r = submit(&app, "acme", submission()).await;
    let t = claim(&app, "crm", 5, 60).await;
    assert_eq!(t.len(), 1);
    complete(&app, "crm", &t[0], v1::TaskOutcome::Done, "")
        .await
        .expect("done");
    let done = get(&app, "acme", &r.name).await;
    assert_eq!(done.state(), State::Completed);
    assert_eq!(done.deadline_met, Some(true));
    app.stop().await;
}
