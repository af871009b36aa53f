//! Duplicate requests through the real server, on both backends: a
//! subject who asks again for what an open request already asks gets a
//! request in `STATE_DUPLICATE` naming the open one, without tasks, with an
//! event on both trails; the window, the switch, rectifications with other
//! corrections, and submissions racing for the same subject (on
//! PostgreSQL across two replicas) leaving exactly one open.

use std::sync::Arc;

use gdpr_intake::auth::Role;
use gdpr_intake::domain::duplicate::DEFAULT_WINDOW;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::RequestEventType as E;
use gdpr_intake::proto::v1::data_subject_request::State;
use gdpr_intake::store::StoreConfig;
use jiff::{SignedDuration, Timestamp};
use tonic::Code;

use crate::db;
use crate::helpers::*;

on_both_backends!(
    a_repeat_is_stored_as_a_duplicate_without_tasks,
    the_window_looks_back_from_the_receipt,
    a_window_of_zero_turns_duplicates_off,
    a_rectification_repeats_only_the_same_corrections,
    racing_submissions_leave_exactly_one_open,
);

/// An app on `backend` with duplicates on (the default window) and one
/// processor for every type of acme's requests.
async fn spawn(backend: Backend) -> Option<(TestApp, StoreConfig)> {
    let (app, config) = spawn_configured(backend, Arc::new(gdpr_intake::clock::SystemClock), |s| {
        s.duplicate_window = Some(DEFAULT_WINDOW);
    })
    .await?;
    app.route("acme", "crm", &[], 72).await;
    Some((app, config))
}

fn about(subject: &str) -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        subject: Some(v1::Subject {
            external_id: subject.to_owned(),
            ..adult_subject()
        }),
        ..submission()
    }
}

fn received(
    m: v1::SubmitDataSubjectRequestRequest,
    at: Timestamp,
) -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        received_at: Some(prost_types::Timestamp {
            seconds: at.as_second(),
            nanos: 0,
        }),
        ..m
    }
}

async fn submit_to(
    app: &TestApp,
    m: v1::SubmitDataSubjectRequestRequest,
) -> v1::SubmitDataSubjectRequestResponse {
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), m))
        .await
        .expect("submitted")
        .into_inner()
}

async fn submit(app: &TestApp, m: v1::SubmitDataSubjectRequestRequest) -> v1::DataSubjectRequest {
    submit_to(app, m)
        .await
        .data_subject_request
        .expect("request")
}

async fn get(app: &TestApp, name: &str) -> v1::DataSubjectRequest {
    app.dsr()
        .get_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::GetDataSubjectRequestRequest {
                name: name.to_owned(),
            },
        ))
        .await
        .expect("found")
        .into_inner()
        .data_subject_request
        .expect("request")
}

async fn cancel(app: &TestApp, name: &str) -> Result<v1::DataSubjectRequest, tonic::Status> {
    app.dsr()
        .cancel_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::CancelDataSubjectRequestRequest {
                name: name.to_owned(),
                reason: "the subject withdrew".into(),
            },
        ))
        .await
        .map(|r| r.into_inner().data_subject_request.expect("request"))
}

fn types(events: &[v1::RequestEvent]) -> Vec<E> {
    events.iter().map(v1::RequestEvent::r#type).collect()
}

fn id_of(name: &str) -> &str {
    name.trim_start_matches("dataSubjectRequests/")
}

/// The tasks stored for request `name`.
async fn tasks_of(config: &StoreConfig, name: &str) -> i64 {
    db::fetch_count(
        config,
        format!(
            "SELECT COUNT(*) FROM tasks WHERE CAST(data_subject_request_id AS TEXT) = '{}'",
            id_of(name)
        ),
    )
    .await
}

async fn a_repeat_is_stored_as_a_duplicate_without_tasks(backend: Backend) {
    let Some((app, config)) = spawn(backend).await else {
        return;
    };
    let first = submit(&app, about("cust-7")).await;
    assert_eq!(first.state(), State::InProgress);
    assert_eq!(tasks_of(&config, &first.name).await, 1);

    let again = about("cust-7");
    let answer = submit_to(&app, again.clone()).await;
    assert!(!answer.replayed);
    let duplicate = answer.data_subject_request.expect("request");
    assert_eq!(duplicate.state(), State::Duplicate);
    assert_eq!(duplicate.duplicate_of, first.name);
    assert_ne!(duplicate.name, first.name);
    assert!(duplicate.close_time.is_some(), "final at once");
    assert_eq!(tasks_of(&config, &duplicate.name).await, 0);

    // One event on each trail, naming the other request and nobody else.
    let own = request_events(&app, "acme", &duplicate.name).await;
    assert_eq!(types(&own), [E::DuplicateStored]);
    assert_eq!(own[0].to_state(), State::Duplicate);
    assert!(own[0].reason.contains(&first.name), "{:?}", own[0]);
    let original = request_events(&app, "acme", &first.name).await;
    assert_eq!(
        types(&original),
        [E::Submitted, E::TaskCreated, E::DuplicateReceived]
    );
    let received = original.last().expect("an event");
    assert!(received.reason.contains(&duplicate.name), "{received:?}");
    assert_eq!(
        (received.from_state(), received.to_state()),
        (State::InProgress, State::InProgress)
    );
    for e in own.iter().chain(&original) {
        assert!(
            !e.reason.contains("cust-7") && !e.reason.contains("ada@"),
            "{e:?}"
        );
    }
    let still = get(&app, &first.name).await;
    assert_eq!(still.state(), State::InProgress);
    assert_eq!(still.duplicate_of, "");

    // The request_id keeps its meaning: the same message is a replay of
    // the duplicate, other content under it is refused.
    let replay = submit_to(&app, again.clone()).await;
    assert!(replay.replayed);
    assert_eq!(replay.data_subject_request.expect("request"), duplicate);
    let reuse = app
        .dsr()
        .submit_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::SubmitDataSubjectRequestRequest {
                details: "something else".into(),
                ..again
            },
        ))
        .await
        .expect_err("a reused request_id");
    assert_status(&reuse, Code::AlreadyExists, Some("REQUEST_ID_REUSED"));
    assert_eq!(request_events(&app, "acme", &first.name).await.len(), 3);

    // A duplicate is final.
    let refused = cancel(&app, &duplicate.name).await.expect_err("final");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Another type, another subject or another controller is another
    // request.
    let erasure = submit(
        &app,
        v1::SubmitDataSubjectRequestRequest {
            r#type: v1::RequestType::Erasure.into(),
            ..about("cust-7")
        },
    )
    .await;
    assert_eq!(erasure.state(), State::InProgress);
    assert_eq!(
        submit(&app, about("cust-8")).await.state(),
        State::InProgress
    );
    let elsewhere = app
        .dsr()
        .submit_data_subject_request(authed(
            &app.token(Role::Controller, "globex"),
            about("cust-7"),
        ))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_ne!(elsewhere.state(), State::Duplicate);

    // Once the open one is closed, asking again is a new request.
    cancel(&app, &first.name).await.expect("cancelled");
    let after = submit(&app, about("cust-7")).await;
    assert_eq!(after.state(), State::InProgress);
    assert_eq!(tasks_of(&config, &after.name).await, 1);
    // And a request waiting for its subject is open too.
    let waiting = submit(
        &app,
        v1::SubmitDataSubjectRequestRequest {
            identity_verification_required: true,
            ..about("cust-9")
        },
    )
    .await;
    assert_eq!(waiting.state(), State::AwaitingIdentityVerification);
    let repeat = submit(&app, about("cust-9")).await;
    assert_eq!(repeat.state(), State::Duplicate);
    assert_eq!(repeat.duplicate_of, waiting.name);
    assert!(repeat.clock_pauses.is_empty());

    trails_verify(&config).await;
    app.stop().await;
}

async fn the_window_looks_back_from_the_receipt(backend: Backend) {
    let Some((app, config)) = spawn(backend).await else {
        return;
    };
    let now = Timestamp::now();
    let days = |n: i64| SignedDuration::from_hours(24 * n);

    // Received 31 days before: out of the 30-day window.
    let old = submit(&app, received(about("w-1"), now - days(31))).await;
    assert_eq!(old.state(), State::InProgress);
    let later = submit(&app, received(about("w-1"), now)).await;
    assert_eq!(later.state(), State::InProgress);
    assert_eq!(later.duplicate_of, "");

    // Received 29 days before: in it.
    let recent = submit(&app, received(about("w-2"), now - days(29))).await;
    let repeat = submit(&app, received(about("w-2"), now)).await;
    assert_eq!(repeat.state(), State::Duplicate);
    assert_eq!(repeat.duplicate_of, recent.name);

    // Received before the open one, submitted late: within the window it
    // repeats it all the same, out of it not.
    let late = submit(&app, received(about("w-2"), now - days(35))).await;
    assert_eq!(late.state(), State::Duplicate);
    assert_eq!(late.duplicate_of, recent.name);
    let very_late = submit(&app, received(about("w-2"), now - days(60))).await;
    assert_eq!(very_late.state(), State::InProgress);

    // Of two open ones in the window, the latest received is repeated.
    let a = submit(&app, received(about("w-3"), now - days(5))).await;
    let b = submit(&app, received(about("w-3"), now - days(40))).await;
    assert_eq!(
        (a.state(), b.state()),
        (State::InProgress, State::InProgress)
    );
    let c = submit(&app, received(about("w-3"), now - days(20))).await;
    assert_eq!(c.duplicate_of, a.name);
    let d = submit(&app, received(about("w-3"), now - days(45))).await;
    assert_eq!(d.duplicate_of, b.name, "the only one within 30 days of it");

    trails_verify(&config).await;
    app.stop().await;
}

async fn a_window_of_zero_turns_duplicates_off(backend: Backend) {
    // The test settings leave duplicates off, as `--duplicate-window 0`.
    let Some((app, config)) =
        spawn_configured(backend, Arc::new(gdpr_intake::clock::SystemClock), |s| {
            assert_eq!(s.duplicate_window, None)
        })
        .await
    else {
        return;
    };
    app.route("acme", "crm", &[], 72).await;
    let a = submit(&app, about("cust-7")).await;
    let b = submit(&app, about("cust-7")).await;
    for r in [&a, &b] {
        assert_eq!(r.state(), State::InProgress);
        assert_eq!(r.duplicate_of, "");
        assert_eq!(tasks_of(&config, &r.name).await, 1);
    }
    let events = request_events(&app, "acme", &a.name).await;
    assert!(!types(&events).contains(&E::DuplicateReceived));
    app.stop().await;
}

async fn a_rectification_repeats_only_the_same_corrections(backend: Backend) {
    let Some((app, config)) = spawn(backend).await else {
        return;
    };
    let rectify = |address: &str| v1::SubmitDataSubjectRequestRequest {
        r#type: v1::RequestType::Rectification.into(),
        corrections: [("address".to_owned(), address.to_owned())].into(),
        ..about("cust-7")
    };
    let first = submit(&app, rectify("1 Main St")).await;
    assert_eq!(first.state(), State::InProgress);
    let other = submit(&app, rectify("2 High St")).await;
    assert_eq!(other.state(), State::InProgress, "other corrections");
    let same = submit(&app, rectify("2 High St")).await;
    assert_eq!(same.state(), State::Duplicate);
    assert_eq!(same.duplicate_of, other.name);
    let same_as_first = submit(&app, rectify("1 Main St")).await;
    assert_eq!(same_as_first.duplicate_of, first.name);
    trails_verify(&config).await;
    app.stop().await;
}

/// Many submissions about one subject, each under its own request_id and
/// some sent twice, all at once (on PostgreSQL half of them to a second
/// replica): exactly one is open, every other names it, and it alone has
/// tasks.
async fn racing_submissions_leave_exactly_one_open(backend: Backend) {
    let Some((app, config)) = spawn(backend).await else {
        return;
    };
    let second = match backend {
        Backend::Postgres => Some(
            spawn_replica(&app, &config, |s| {
                s.duplicate_window = Some(DEFAULT_WINDOW);
            })
            .await,
        ),
        Backend::Sqlite => None,
    };
    let replicas: Arc<Vec<TestApp>> = Arc::new([Some(app), second].into_iter().flatten().collect());
    let messages: Vec<_> = (0..24).map(|_| about("racer")).collect();
    let mut calls = Vec::new();
    for (n, m) in messages.iter().chain(&messages[..6]).enumerate() {
        let replicas = replicas.clone();
        let m = m.clone();
        calls.push(tokio::spawn(async move {
            let app = &replicas[n % replicas.len()];
            (m.request_id.clone(), submit_to(app, m).await)
        }));
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.expect("joined"));
    }
    let open: Vec<_> = answers
        .iter()
        .filter_map(|(_, a)| a.data_subject_request.as_ref())
        .filter(|r| r.state() != State::Duplicate)
        .map(|r| r.name.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let [open] = open.as_slice() else {
        panic!("exactly one open: {open:?}");
    };
    // Each request_id is one request, however many times it was sent.
    let mut by_id = std::collections::BTreeMap::new();
    for (request_id, a) in &answers {
        let r = a.data_subject_request.clone().expect("request");
        if r.name != *open {
            assert_eq!(r.state(), State::Duplicate);
            assert_eq!(&r.duplicate_of, open);
        }
        let name = by_id
            .entry(request_id.clone())
            .or_insert_with(|| r.name.clone());
        assert_eq!(*name, r.name, "one request per request_id");
    }
    assert_eq!(by_id.len(), 24);
    assert_eq!(answers.iter().filter(|(_, a)| a.replayed).count(), 6);
    let app = &replicas[0];
    let events = request_events(app, "acme", open).await;
    assert_eq!(
        types(&events)
            .iter()
            .filter(|t| **t == E::DuplicateReceived)
            .count(),
        23
    );
    assert_eq!(
        db::fetch_count(&config, "SELECT COUNT(*) FROM tasks".to_owned()).await,
        1
    );
    assert_eq!(
        db::fetch_count(
            &config,
            "SELECT COUNT(*) FROM data_subject_requests WHERE state <> 'duplicate'".to_owned()
        )
        .await,
        1
    );
    trails_verify(&config).await;
    if let Ok(replicas) = Arc::try_unwrap(replicas) {
        for r in replicas {
            r.stop().await;
        }
    }
}
