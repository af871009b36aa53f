//! DataSubjectRequestService through the real server.

use gdpr_intake::auth::Role;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request::State;
use tonic::Code;

use crate::helpers::*;

async fn submit(
    app: &TestApp,
    token: &str,
    m: v1::SubmitDataSubjectRequestRequest,
) -> v1::DataSubjectRequest {
    app.dsr()
        .submit_data_subject_request(authed(token, m))
        .await
        .expect("submit succeeds")
        .into_inner()
        .data_subject_request
        .expect("request returned")
}

fn ts_days_ago(days: i64) -> prost_types::Timestamp {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: 0,
    }
}

#[tokio::test]
async fn submit_then_get_returns_the_stored_request() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let m = submission();
    let created = submit(&app, &token, m.clone()).await;

    assert!(created.name.starts_with("dataSubjectRequests/"));
    assert_eq!(created.request_id, m.request_id);
    assert_eq!(created.state(), State::InProgress);
    assert_eq!(created.regime(), v1::Regime::Gdpr);
    assert_eq!(created.controller_id, "acme");
    assert_eq!(created.due_time, created.original_due_time);
    let received = created.received_at.expect("received_at defaults to now");
    let due = created.due_time.expect("due_time set");
    // One calendar month, rolled to a working day: 28 to 34 days later.
    let days = (due.seconds - received.seconds) / 86_400;
    assert!((27..=34).contains(&days), "due in {days} days");
    assert_eq!(created.deadline_met, None);

    let got = app
        .dsr()
        .get_data_subject_request(authed(
            &token,
            v1::GetDataSubjectRequestRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .expect("get succeeds")
        .into_inner()
        .data_subject_request
        .expect("request returned");
    assert_eq!(got, created);
    assert_eq!(
        got.subject.as_ref().map(|s| s.email.as_str()),
        Some("ada@example.org")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_fixed_receipt_date_gets_the_legal_deadline() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    // Received on a Sunday three weeks ago at noon UTC (a valid past date).
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let mut day = today - jiff::Span::new().days(21);
    while day.weekday() != jiff::civil::Weekday::Sunday {
        day = day.yesterday().expect("in range");
    }
    let received = day
        .at(12, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .expect("valid")
        .timestamp();
    let mut m = submission();
    m.received_at = Some(prost_types::Timestamp {
        seconds: received.as_second(),
        nanos: 0,
    });
    let r = submit(&app, &token, m).await;
    let due = jiff::Timestamp::new(r.due_time.expect("due").seconds, 0).expect("valid");
    let j = gdpr_intake::domain::jurisdiction::Jurisdiction::parse("DE", "").expect("DE");
    let expected = gdpr_intake::domain::deadline::statutory_deadline(&j, received);
    assert_eq!(due.as_second(), expected.due_time.as_second());
    app.stop().await;
}

#[tokio::test]
async fn under_fifteen_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let mut m = submission();
    m.subject.as_mut().expect("subject").date_of_birth = Some(Date {
        year: i32::from(today.year()) - 14,
        month: 1,
        day: 1,
    });
    let err = app
        .dsr()
        .submit_data_subject_request(authed(&token, m))
        .await
        .expect_err("blocked");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("SUBJECT_UNDER_MINIMUM_AGE"),
    );
    assert!(
        !err.message().contains("ada"),
        "no personal data in the message"
    );
    let list = app
        .dsr()
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(list.data_subject_requests.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_minor_waits_for_guardian_consent() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let mut m = submission();
    m.subject = Some(minor_subject());
    let r = submit(&app, &token, m).await;
    assert_eq!(r.state(), State::AwaitingGuardianConsent);

    let guardian = v1::Guardian {
        full_name: "Grace Hopper".to_owned(),
        relationship: v1::GuardianRelationship::Parent.into(),
        email: "grace@example.org".to_owned(),
        verification_method: "id-document-check:case-4411".to_owned(),
        consented_at: Some(ts_days_ago(0)),
    };
    // Consent before receipt is refused, naming the field.
    let mut early = guardian.clone();
    early.consented_at = Some(ts_days_ago(3));
    let err = app
        .dsr()
        .record_guardian_consent(authed(
            &token,
            v1::RecordGuardianConsentRequest {
                name: r.name.clone(),
                guardian: Some(early),
            },
        ))
        .await
        .expect_err("consent before receipt");
    assert_eq!(bad_fields(&err), vec!["guardian.consented_at"]);

    let mut now = guardian.clone();
    now.consented_at = Some(prost_types::Timestamp {
        seconds: r.received_at.as_ref().expect("received").seconds + 1,
        nanos: 0,
    });
    let done = app
        .dsr()
        .record_guardian_consent(authed(
            &token,
            v1::RecordGuardianConsentRequest {
                name: r.name.clone(),
                guardian: Some(now.clone()),
            },
        ))
        .await
        .expect("consent recorded")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(done.state(), State::InProgress);
    let consent = done.guardian_consent.expect("consent on the resource");
    assert_eq!(
        consent.guardian.expect("guardian").full_name,
        "Grace Hopper"
    );
    // Waiting for the guardian never moves the deadline.
    assert_eq!(done.due_time, r.due_time);

    let err = app
        .dsr()
        .record_guardian_consent(authed(
            &token,
            v1::RecordGuardianConsentRequest {
                name: r.name.clone(),
                guardian: Some(now),
            },
        ))
        .await
        .expect_err("not awaiting any more");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("REQUEST_NOT_AWAITING_GUARDIAN_CONSENT"),
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_returns_the_original_and_a_reuse_is_refused() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let m = submission();
    let first = app
        .dsr()
        .submit_data_subject_request(authed(&token, m.clone()))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.replayed);
    let again = app
        .dsr()
        .submit_data_subject_request(authed(&token, m.clone()))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.data_subject_request, first.data_subject_request);

    let mut other = m.clone();
    other.r#type = v1::RequestType::Erasure.into();
    let err = app
        .dsr()
        .submit_data_subject_request(authed(&token, other))
        .await
        .expect_err("reuse");
    assert_status(&err, Code::AlreadyExists, Some("REQUEST_ID_REUSED"));

    // The same request_id is free for another tenant.
    let beta = app.token(Role::Controller, "beta");
    let theirs = submit(&app, &beta, m).await;
    assert_ne!(
        Some(theirs.name),
        first.data_subject_request.map(|r| r.name)
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_identical_submissions_store_exactly_one() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let m = submission();
    let mut calls = Vec::new();
    for _ in 0..24 {
        let mut client = app.dsr();
        let req = authed(&token, m.clone());
        calls.push(tokio::spawn(async move {
            client.submit_data_subject_request(req).await
        }));
    }
    let mut names = std::collections::BTreeSet::new();
    for c in calls {
        let r = c
            .await
            .expect("task")
            .expect("every call succeeds")
            .into_inner();
        names.insert(r.data_subject_request.expect("request").name);
    }
    assert_eq!(names.len(), 1);
    let list = app
        .dsr()
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.data_subject_requests.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn invalid_submissions_name_every_bad_field() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    type Edit = fn(&mut v1::SubmitDataSubjectRequestRequest);
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "no request_id",
            |m| m.request_id.clear(),
            vec!["request_id"],
        ),
        (
            "request_id not a uuid",
            |m| m.request_id = "abc".into(),
            vec!["request_id"],
        ),
        ("type unspecified", |m| m.r#type = 0, vec!["type"]),
        ("type unknown", |m| m.r#type = 99, vec!["type"]),
        ("no subject", |m| m.subject = None, vec!["subject"]),
        (
            "no external id",
            |m| m.subject.as_mut().unwrap().external_id.clear(),
            vec!["subject.external_id"],
        ),
        (
            "bad email",
            |m| m.subject.as_mut().unwrap().email = "not-an-email".into(),
            vec!["subject.email"],
        ),
        (
            "no birth date",
            |m| m.subject.as_mut().unwrap().date_of_birth = None,
            vec!["subject.date_of_birth"],
        ),
        (
            "30 February",
            |m| {
                m.subject.as_mut().unwrap().date_of_birth = Some(Date {
                    year: 1990,
                    month: 2,
                    day: 30,
                })
            },
            vec!["subject.date_of_birth"],
        ),
        (
            "born before 1900",
            |m| {
                m.subject.as_mut().unwrap().date_of_birth = Some(Date {
                    year: 1899,
                    month: 12,
                    day: 31,
                })
            },
            vec!["subject.date_of_birth"],
        ),
        (
            "born in the future",
            |m| {
                m.subject.as_mut().unwrap().date_of_birth = Some(Date {
                    year: 2999,
                    month: 1,
                    day: 1,
                })
            },
            vec!["subject.date_of_birth"],
        ),
        (
            "no country",
            |m| m.subject.as_mut().unwrap().country.clear(),
            vec!["subject.country"],
        ),
        (
            "unknown country",
            |m| m.subject.as_mut().unwrap().country = "XX".into(),
            vec!["subject.country"],
        ),
        (
            "lower-case country",
            |m| m.subject.as_mut().unwrap().country = "de".into(),
            vec!["subject.country"],
        ),
        (
            "subdivision of another country",
            |m| m.subject.as_mut().unwrap().subdivision = "US-CA".into(),
            vec!["subject.subdivision"],
        ),
        (
            "received in the future",
            |m| {
                m.received_at = Some(prost_types::Timestamp {
                    seconds: jiff::Timestamp::now().as_second() + 86_400,
                    nanos: 0,
                })
            },
            vec!["received_at"],
        ),
        (
            "received before 1970",
            |m| {
                m.received_at = Some(prost_types::Timestamp {
                    seconds: -10,
                    nanos: 0,
                })
            },
            vec!["received_at"],
        ),
        (
            "received 14 months ago",
            |m| m.received_at = Some(ts_days_ago(430)),
            vec!["received_at"],
        ),
        (
            "details too long",
            |m| m.details = "x".repeat(4097),
            vec!["details"],
        ),
        (
            "rectification without corrections",
            |m| m.r#type = v1::RequestType::Rectification.into(),
            vec!["corrections"],
        ),
        (
            "corrections on access",
            |m| {
                m.corrections.insert("name".into(), "Ada".into());
            },
            vec!["corrections"],
        ),
        (
            "everything wrong",
            |m| {
                m.request_id.clear();
                m.r#type = 0;
                m.subject = None;
            },
            vec!["request_id", "type", "subject"],
        ),
    ];
    for (what, edit, fields) in cases {
        let mut m = submission();
        edit(&mut m);
        let err = app
            .dsr()
            .submit_data_subject_request(authed(&token, m))
            .await
            .expect_err(what);
        assert_eq!(bad_fields(&err), fields, "{what}");
        assert!(
            !err.message().contains("ada@example.org"),
            "{what}: personal data echoed"
        );
    }
    // 10,000 corrections are refused with a clear error, not a crash.
    let mut m = submission();
    m.r#type = v1::RequestType::Rectification.into();
    m.corrections = (0..10_000)
        .map(|i| (format!("f{i}"), "v".to_owned()))
        .collect();
    let err = app
        .dsr()
        .submit_data_subject_request(authed(&token, m))
        .await
        .expect_err("too many corrections");
    assert_eq!(bad_fields(&err), vec!["corrections"]);
    app.stop().await;
}

#[tokio::test]
async fn rectification_keeps_its_corrections() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let mut m = submission();
    m.r#type = v1::RequestType::Rectification.into();
    m.corrections.insert("last_name".into(), "Lovelace".into());
    let r = submit(&app, &token, m).await;
    assert_eq!(
        r.corrections.get("last_name").map(String::as_str),
        Some("Lovelace")
    );
    app.stop().await;
}

#[tokio::test]
async fn list_filters_and_pages_in_a_stable_order() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let mut names = Vec::new();
    for i in 0..7 {
        let mut m = submission();
        if i % 2 == 1 {
            m.r#type = v1::RequestType::Erasure.into();
        }
        names.push(submit(&app, &token, m).await.name);
    }
    // Another tenant's requests never show up.
    submit(&app, &app.token(Role::Controller, "beta"), submission()).await;

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .dsr()
            .list_data_subject_requests(authed(
                &token,
                v1::ListDataSubjectRequestsRequest {
                    page_size: 3,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.data_subject_requests.len() <= 3);
        seen.extend(page.data_subject_requests.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, names);

    let erasures = app
        .dsr()
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest {
                r#type: v1::RequestType::Erasure.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(erasures.data_subject_requests.len(), 3);
    let awaiting = app
        .dsr()
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest {
                state: State::AwaitingGuardianConsent.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("filtered")
        .into_inner();
    assert!(awaiting.data_subject_requests.is_empty());

    for (what, req) in [
        (
            "malformed token",
            v1::ListDataSubjectRequestsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
        ),
        (
            "page too large",
            v1::ListDataSubjectRequestsRequest {
                page_size: 1001,
                ..Default::default()
            },
        ),
        (
            "negative page",
            v1::ListDataSubjectRequestsRequest {
                page_size: -1,
                ..Default::default()
            },
        ),
        (
            "unknown state",
            v1::ListDataSubjectRequestsRequest {
                state: 42,
                ..Default::default()
            },
        ),
    ] {
        let err = app
            .dsr()
            .list_data_subject_requests(authed(&token, req))
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_deadline_extends_once_and_only_in_time() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let r = submit(&app, &token, submission()).await;
    let extend = |name: &str, reason: &str| {
        let mut client = app.dsr();
        let req = authed(
            &token,
            v1::ExtendDeadlineRequest {
                name: name.to_owned(),
                reason: reason.to_owned(),
            },
        );
        async move { client.extend_deadline(req).await }
    };
    let err = extend(&r.name, "").await.expect_err("reason required");
    assert_eq!(bad_fields(&err), vec!["reason"]);

    let extended = extend(&r.name, "complex request spanning several systems")
        .await
        .expect("first extension")
        .into_inner()
        .data_subject_request
        .expect("request");
    let before = r.due_time.as_ref().expect("due").seconds;
    let after = extended.due_time.as_ref().expect("due").seconds;
    let extra_days = (after - before) / 86_400;
    assert!(
        (55..=65).contains(&extra_days),
        "two more months, got {extra_days} days"
    );
    assert_eq!(extended.original_due_time, r.due_time);
    assert_eq!(
        extended.extension.as_ref().map(|e| e.reason.as_str()),
        Some("complex request spanning several systems")
    );

    let err = extend(&r.name, "again").await.expect_err("only once");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("DEADLINE_ALREADY_EXTENDED"),
    );

    // Received two months ago: the deadline has passed.
    let mut late = submission();
    late.received_at = Some(ts_days_ago(62));
    let late = submit(&app, &token, late).await;
    let err = extend(&late.name, "too late")
        .await
        .expect_err("deadline passed");
    assert_status(&err, Code::FailedPrecondition, Some("DEADLINE_PASSED"));

    // LGPD has no extension.
    let mut br = submission();
    br.subject.as_mut().expect("subject").country = "BR".into();
    let br = submit(&app, &token, br).await;
    assert_eq!(br.regime(), v1::Regime::Lgpd);
    let err = extend(&br.name, "need time")
        .await
        .expect_err("no extension under LGPD");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("EXTENSION_NOT_ALLOWED"),
    );

    // CCPA: 45 days, extendable by 45.
    let mut ca = submission();
    ca.subject.as_mut().expect("subject").country = "US".into();
    ca.subject.as_mut().expect("subject").subdivision = "US-CA".into();
    let ca = submit(&app, &token, ca).await;
    assert_eq!(ca.regime(), v1::Regime::Ccpa);
    let ca_ext = extend(&ca.name, "need time")
        .await
        .expect("ccpa extension")
        .into_inner()
        .data_subject_request
        .expect("request");
    let diff = (ca_ext.due_time.expect("due").seconds - ca.due_time.expect("due").seconds) / 86_400;
    assert_eq!(diff, 45);
    app.stop().await;
}

#[tokio::test]
async fn cancel_and_close_are_final() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let r = submit(&app, &token, submission()).await;
    let cancelled = app
        .dsr()
        .cancel_data_subject_request(authed(
            &token,
            v1::CancelDataSubjectRequestRequest {
                name: r.name.clone(),
                reason: "subject withdrew by email".into(),
            },
        ))
        .await
        .expect("cancel")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(cancelled.state(), State::Cancelled);
    assert_eq!(cancelled.cancellation_reason, "subject withdrew by email");
    assert!(cancelled.close_time.is_some());
    assert_eq!(cancelled.deadline_met, None);

    let err = app
        .dsr()
        .close_data_subject_request(authed(
            &token,
            v1::CloseDataSubjectRequestRequest {
                name: r.name.clone(),
                outcome: v1::Outcome::Completed.into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("closed already");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("REQUEST_ALREADY_CLOSED"),
    );
    let err = app
        .dsr()
        .cancel_data_subject_request(authed(
            &token,
            v1::CancelDataSubjectRequestRequest {
                name: r.name.clone(),
                reason: "again".into(),
            },
        ))
        .await
        .expect_err("closed already");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("REQUEST_ALREADY_CLOSED"),
    );
    app.stop().await;
}

#[tokio::test]
async fn closing_records_the_outcome_and_whether_the_deadline_was_met() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let close = |m: v1::CloseDataSubjectRequestRequest| {
        let mut client = app.dsr();
        let req = authed(&token, m);
        async move { client.close_data_subject_request(req).await }
    };

    let r = submit(&app, &token, submission()).await;
    let err = close(v1::CloseDataSubjectRequestRequest {
        name: r.name.clone(),
        outcome: v1::Outcome::Refused.into(),
        ..Default::default()
    })
    .await
    .expect_err("refusal needs a reason");
    assert_eq!(bad_fields(&err), vec!["refusal_reason", "explanation"]);
    let err = close(v1::CloseDataSubjectRequestRequest {
        name: "nope".into(),
        ..Default::default()
    })
    .await
    .expect_err("bad name and no outcome");
    assert_eq!(bad_fields(&err), vec!["name", "outcome"]);

    let done = close(v1::CloseDataSubjectRequestRequest {
        name: r.name.clone(),
        outcome: v1::Outcome::Completed.into(),
        explanation: "export sent".into(),
        ..Default::default()
    })
    .await
    .expect("completed")
    .into_inner()
    .data_subject_request
    .expect("request");
    assert_eq!(done.state(), State::Completed);
    assert_eq!(done.outcome(), v1::Outcome::Completed);
    assert_eq!(done.deadline_met, Some(true));

    // A request received two months ago and closed now missed its deadline.
    let mut late = submission();
    late.received_at = Some(ts_days_ago(62));
    let late = submit(&app, &token, late).await;
    let refused = close(v1::CloseDataSubjectRequestRequest {
        name: late.name.clone(),
        outcome: v1::Outcome::Refused.into(),
        refusal_reason: v1::RefusalReason::IdentityNotVerified.into(),
        explanation: "the requester could not prove their identity".into(),
    })
    .await
    .expect("refused")
    .into_inner()
    .data_subject_request
    .expect("request");
    assert_eq!(refused.state(), State::Refused);
    assert_eq!(
        refused.refusal_reason(),
        v1::RefusalReason::IdentityNotVerified
    );
    assert_eq!(refused.deadline_met, Some(false));

    // A minor's request cannot be completed before consent, but can be refused.
    let mut minor = submission();
    minor.subject = Some(minor_subject());
    let minor = submit(&app, &token, minor).await;
    let err = close(v1::CloseDataSubjectRequestRequest {
        name: minor.name.clone(),
        outcome: v1::Outcome::Completed.into(),
        ..Default::default()
    })
    .await
    .expect_err("awaiting consent");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("REQUEST_AWAITING_GUARDIAN_CONSENT"),
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_shows_who_did_what() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let mut m = submission();
    m.subject = Some(minor_subject());
    let r = submit(&app, &token, m).await;
    let received = r.received_at.expect("received");
    app.dsr()
        .record_guardian_consent(authed(
            &token,
            v1::RecordGuardianConsentRequest {
                name: r.name.clone(),
                guardian: Some(v1::Guardian {
                    full_name: "Grace Hopper".into(),
                    relationship: v1::GuardianRelationship::LegalGuardian.into(),
                    email: "grace@example.org".into(),
                    verification_method: "court-order:2026-17".into(),
                    consented_at: Some(received),
                }),
            },
        ))
        .await
        .expect("consent");
    app.dsr()
        .extend_deadline(authed(
            &token,
            v1::ExtendDeadlineRequest {
                name: r.name.clone(),
                reason: "backlog".into(),
            },
        ))
        .await
        .expect("extend");
    app.dsr()
        .close_data_subject_request(authed(
            &token,
            v1::CloseDataSubjectRequestRequest {
                name: r.name.clone(),
                outcome: v1::Outcome::Completed.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("close");

    let first = app
        .dsr()
        .list_request_events(authed(
            &token,
            v1::ListRequestEventsRequest {
                name: r.name.clone(),
                page_size: 2,
                page_token: String::new(),
            },
        ))
        .await
        .expect("events")
        .into_inner();
    assert_eq!(first.events.len(), 2);
    let rest = app
        .dsr()
        .list_request_events(authed(
            &token,
            v1::ListRequestEventsRequest {
                name: r.name.clone(),
                page_size: 2,
                page_token: first.next_page_token.clone(),
            },
        ))
        .await
        .expect("events")
        .into_inner();
    assert!(rest.next_page_token.is_empty());
    let all: Vec<_> = first.events.into_iter().chain(rest.events).collect();
    let types: Vec<_> = all.iter().map(|e| e.r#type()).collect();
    use v1::RequestEventType as T;
    assert_eq!(
        types,
        vec![
            T::Submitted,
            T::GuardianConsentRecorded,
            T::DeadlineExtended,
            T::Closed
        ]
    );
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        all.iter()
            .all(|e| e.actor == "controller@acme" && e.actor_role == "controller")
    );
    assert_eq!(all[0].to_state(), State::AwaitingGuardianConsent);
    assert_eq!(all[1].from_state(), State::AwaitingGuardianConsent);
    assert_eq!(all[1].to_state(), State::InProgress);
    assert_eq!(all[2].reason, "backlog");
    assert_eq!(all[3].to_state(), State::Completed);
    assert_eq!(all[0].name, format!("{}/events/1", r.name));
    app.stop().await;
}

#[tokio::test]
async fn another_tenant_sees_exactly_what_a_missing_request_looks_like() {
    let app = spawn_app().await;
    let acme = app.token(Role::Controller, "acme");
    let beta = app.token(Role::Controller, "beta");
    let r = submit(&app, &acme, submission()).await;
    let missing = "dataSubjectRequests/00000000-0000-4000-8000-000000000000".to_owned();
    for name in [r.name.clone(), missing] {
        let mut c = app.dsr();
        let errs = vec![
            c.get_data_subject_request(authed(
                &beta,
                v1::GetDataSubjectRequestRequest { name: name.clone() },
            ))
            .await
            .expect_err("get"),
            c.record_guardian_consent(authed(
                &beta,
                v1::RecordGuardianConsentRequest {
                    name: name.clone(),
                    guardian: None,
                },
            ))
            .await
            .expect_err("consent"),
            c.extend_deadline(authed(
                &beta,
                v1::ExtendDeadlineRequest {
                    name: name.clone(),
                    reason: "x".into(),
                },
            ))
            .await
            .expect_err("extend"),
            c.cancel_data_subject_request(authed(
                &beta,
                v1::CancelDataSubjectRequestRequest {
                    name: name.clone(),
                    reason: "x".into(),
                },
            ))
            .await
            .expect_err("cancel"),
            c.close_data_subject_request(authed(
                &beta,
                v1::CloseDataSubjectRequestRequest {
                    name: name.clone(),
                    outcome: v1::Outcome::Completed.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("close"),
            c.list_request_events(authed(
                &beta,
                v1::ListRequestEventsRequest {
                    name: name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("events"),
        ];
        for e in errs {
            assert_status(&e, Code::NotFound, Some("NOT_FOUND"));
            assert_eq!(e.message(), "data subject request not found");
        }
    }
    // The owner still sees it, unchanged.
    let got = app
        .dsr()
        .get_data_subject_request(authed(
            &acme,
            v1::GetDataSubjectRequestRequest {
                name: r.name.clone(),
            },
        ))
        .await
        .expect("owner reads")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(got.state(), State::InProgress);
    let beta_list = app
        .dsr()
        .list_data_subject_requests(authed(&beta, v1::ListDataSubjectRequestsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(beta_list.data_subject_requests.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn every_call_needs_a_controller_token() {
    let app = spawn_app().await;
    let processor = app.token(Role::Processor, "acme");
    let admin = app.token(Role::Admin, "");
    let name = "dataSubjectRequests/00000000-0000-4000-8000-000000000000".to_owned();
    let mut c = app.dsr();
    // No token at all.
    let err = c
        .get_data_subject_request(v1::GetDataSubjectRequestRequest { name: name.clone() })
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .submit_data_subject_request(authed("not-a-jwt", submission()))
        .await
        .expect_err("garbage token");
    assert_eq!(err.code(), Code::Unauthenticated);
    for token in [&processor, &admin] {
        let errs = vec![
            c.submit_data_subject_request(authed(token, submission()))
                .await
                .expect_err("submit"),
            c.get_data_subject_request(authed(
                token,
                v1::GetDataSubjectRequestRequest { name: name.clone() },
            ))
            .await
            .expect_err("get"),
            c.list_data_subject_requests(authed(
                token,
                v1::ListDataSubjectRequestsRequest::default(),
            ))
            .await
            .expect_err("list"),
            c.record_guardian_consent(authed(
                token,
                v1::RecordGuardianConsentRequest {
                    name: name.clone(),
                    guardian: None,
                },
            ))
            .await
            .expect_err("consent"),
            c.extend_deadline(authed(
                token,
                v1::ExtendDeadlineRequest {
                    name: name.clone(),
                    reason: "x".into(),
                },
            ))
            .await
            .expect_err("extend"),
            c.cancel_data_subject_request(authed(
                token,
                v1::CancelDataSubjectRequestRequest {
                    name: name.clone(),
                    reason: "x".into(),
                },
            ))
            .await
            .expect_err("cancel"),
            c.close_data_subject_request(authed(
                token,
                v1::CloseDataSubjectRequestRequest {
                    name: name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("close"),
            c.list_request_events(authed(
                token,
                v1::ListRequestEventsRequest {
                    name: name.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("events"),
        ];
        for e in errs {
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn postgres_serves_the_same_api() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    let token = app.token(Role::Controller, "acme");
    let m = submission();
    let r = submit(&app, &token, m.clone()).await;
    let again = app
        .dsr()
        .submit_data_subject_request(authed(&token, m))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    let done = app
        .dsr()
        .close_data_subject_request(authed(
            &token,
            v1::CloseDataSubjectRequestRequest {
                name: r.name.clone(),
                outcome: v1::Outcome::Completed.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("close")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(done.deadline_met, Some(true));
    let events = app
        .dsr()
        .list_request_events(authed(
            &token,
            v1::ListRequestEventsRequest {
                name: r.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("events")
        .into_inner();
    assert_eq!(events.events.len(), 2);
    app.stop().await;
}
