//! The retention purge through the real application, its clock moved by
//! hand: closed requests past `--retention` lose their personal data (the
//! API shows `purge_time` and empty personal fields, the raw rows hold
//! NULLs), each with one `purged` event, the audit trail still verifies,
//! and open requests and those closed too recently are left alone. Both
//! backends.

use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::ManualClock;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::RequestEventType as E;
use gdpr_intake::store::{self, StoreConfig, audit};
use jiff::{SignedDuration, Timestamp};

use crate::db;
use crate::helpers::*;

const RETENTION_DAYS: i64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_purges_closed_requests_past_retention() {
    purges_closed_requests_past_retention(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purges_closed_requests_past_retention() {
    purges_closed_requests_past_retention(Backend::Postgres).await;
}

/// Monday 9 March 2026, 08:00 UTC.
fn t0() -> Timestamp {
    "2026-03-09T08:00:00Z".parse().expect("valid")
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

fn timestamp_of(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    t.map(|t| Timestamp::new(t.seconds, t.nanos).expect("valid"))
}

struct Client<'a> {
    app: &'a TestApp,
    token: String,
}

impl Client<'_> {
    async fn submit(&self, m: v1::SubmitDataSubjectRequestRequest) -> String {
        self.app
            .dsr()
            .submit_data_subject_request(authed(&self.token, m))
            .await
            .expect("submitted")
            .into_inner()
            .data_subject_request
            .expect("request")
            .name
    }

    async fn get(&self, name: &str) -> v1::DataSubjectRequest {
        self.app
            .dsr()
            .get_data_subject_request(authed(
                &self.token,
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

    async fn list(&self) -> Vec<v1::DataSubjectRequest> {
        self.app
            .dsr()
            .list_data_subject_requests(authed(
                &self.token,
                v1::ListDataSubjectRequestsRequest {
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .expect("listed")
            .into_inner()
            .data_subject_requests
    }

    async fn events(&self, name: &str) -> Vec<i32> {
        self.app
            .dsr()
            .list_request_events(authed(
                &self.token,
                v1::ListRequestEventsRequest {
                    name: name.to_owned(),
                    page_size: 100,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("events")
            .into_inner()
            .events
            .iter()
            .map(|e| e.r#type)
            .collect()
    }

    async fn close(&self, name: &str) {
        self.app
            .dsr()
            .close_data_subject_request(authed(
                &self.token,
                v1::CloseDataSubjectRequestRequest {
                    name: name.to_owned(),
                    outcome: v1::Outcome::Completed.into(),
                    refusal_reason: v1::RefusalReason::Unspecified.into(),
                    explanation: "data sent".to_owned(),
                },
            ))
            .await
            .expect("closed");
    }

    async fn cancel(&self, name: &str) {
        self.app
            .dsr()
            .cancel_data_subject_request(authed(
                &self.token,
                v1::CancelDataSubjectRequestRequest {
                    name: name.to_owned(),
                    reason: "withdrawn by the subject".to_owned(),
                },
            ))
            .await
            .expect("cancelled");
    }

    async fn consent(&self, name: &str, at: Timestamp) {
        self.app
            .dsr()
            .record_guardian_consent(authed(
                &self.token,
                v1::RecordGuardianConsentRequest {
                    name: name.to_owned(),
                    guardian: Some(v1::Guardian {
                        full_name: "Grace Hopper".to_owned(),
                        relationship: v1::GuardianRelationship::Parent.into(),
                        email: "grace@example.org".to_owned(),
                        verification_method: "id-document-check".to_owned(),
                        consented_at: Some(gdpr_intake::api::convert::timestamp(at)),
                    }),
                },
            ))
            .await
            .expect("consent recorded");
    }
}

/// A rectification with details and corrections, for a subject born in
/// `birth_year`.
fn rectification(birth_year: i32) -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        r#type: v1::RequestType::Rectification.into(),
        subject: Some(v1::Subject {
            date_of_birth: Some(Date {
                year: birth_year,
                month: 1,
                day: 1,
            }),
            ..adult_subject()
        }),
        details: "my address changed".to_owned(),
        corrections: [("address".to_owned(), "1 Main St".to_owned())].into(),
        ..submission()
    }
}

fn purges(events: &[i32]) -> usize {
    events
        .iter()
        .filter(|t| **t == i32::from(E::Purged))
        .count()
}

/// Raw rows matching `condition`, read behind the store's back.
async fn rows(config: &StoreConfig, condition: &str) -> i64 {
    db::fetch_count(
        config,
        format!("SELECT COUNT(*) FROM data_subject_requests WHERE {condition}"),
    )
    .await
}

/// What a purged row holds in its personal-data columns: nothing.
const EMPTIED: &str = "purge_time IS NOT NULL AND subject_email IS NULL \
     AND subject_date_of_birth IS NULL AND guardian_full_name IS NULL \
     AND guardian_email IS NULL AND details = '' AND corrections = '{}'";

async fn purges_closed_requests_past_retention(backend: Backend) {
    let clock = Arc::new(ManualClock::new(t0()));
    let Some((app, config)) = spawn_configured(backend, clock.clone(), |s| {
        s.watchdog.interval = Duration::from_millis(50);
        s.watchdog.retention = Some(days(RETENTION_DAYS));
    })
    .await
    else {
        return;
    };
    let acme = Client {
        app: &app,
        token: app.token(Role::Controller, "acme"),
    };

    // Closed at t0: an adult's completed request, and a minor's with a
    // guardian's consent, cancelled.
    let completed = acme.submit(rectification(1985)).await;
    acme.close(&completed).await;
    let with_guardian = acme.submit(rectification(2010)).await;
    acme.consent(&with_guardian, t0()).await;
    acme.cancel(&with_guardian).await;
    // Closed later, and never closed.
    clock.set(t0() + days(20));
    let recent = acme.submit(rectification(1985)).await;
    acme.cancel(&recent).await;
    let open = acme.submit(rectification(1985)).await;
    let before = acme.get(&open).await;

    let sweep_time = t0() + days(RETENTION_DAYS) + SignedDuration::from_secs(1);
    clock.set(sweep_time);
    app.sweeps_after(1).await;
    for name in [&completed, &with_guardian] {
        assert!(
            acme.get(name).await.purge_time.is_some(),
            "{name}: purged by the first sweep at the new time"
        );
    }
    // A few more sweeps: nothing more happens.
    app.sweeps_after(3).await;

    for name in [&completed, &with_guardian] {
        let got = acme.get(name).await;
        assert_eq!(timestamp_of(got.purge_time.as_ref()), Some(sweep_time));
        let subject = got.subject.as_ref().expect("subject");
        assert_eq!(subject.email, "", "{name}");
        assert_eq!(subject.date_of_birth, None);
        assert_eq!(
            subject.external_id, "cust-1001",
            "the controller's id stays"
        );
        assert_eq!(subject.country, "DE");
        assert!(got.details.is_empty() && got.corrections.is_empty());
        assert!(got.close_time.is_some(), "the rest of the record stays");
        let events = acme.events(name).await;
        assert_eq!(purges(&events), 1, "{name}: one purged event");
        assert_eq!(events.last(), Some(&i32::from(E::Purged)));
    }
    let guardian = acme
        .get(&with_guardian)
        .await
        .guardian_consent
        .and_then(|c| c.guardian)
        .expect("the consent stays");
    assert_eq!(
        (guardian.full_name.as_str(), guardian.email.as_str()),
        ("", "")
    );
    assert_eq!(
        guardian.relationship,
        i32::from(v1::GuardianRelationship::Parent)
    );
    assert_eq!(
        acme.get(&completed).await.state,
        i32::from(v1::data_subject_request::State::Completed)
    );
    let listed = acme.list().await;
    let purged_listed = listed.iter().filter(|r| r.purge_time.is_some()).count();
    assert_eq!((listed.len(), purged_listed), (4, 2));

    // Not yet due, and open: untouched.
    let recent_now = acme.get(&recent).await;
    assert_eq!(recent_now.purge_time, None);
    assert_eq!(
        recent_now.subject.expect("subject").email,
        "ada@example.org"
    );
    assert_eq!(purges(&acme.events(&recent).await), 0);
    assert_eq!(acme.get(&open).await, before);

    // The raw rows: NULLs where the personal data was, sealed values elsewhere.
    assert_eq!(rows(&config, EMPTIED).await, 2);
    assert_eq!(
        rows(
            &config,
            "purge_time IS NULL AND subject_email LIKE 'v2.%' \
             AND subject_date_of_birth LIKE 'v2.%'"
        )
        .await,
        2
    );
    assert_eq!(rows(&config, "details LIKE '%address%'").await, 2);

    // The audit trail still verifies with the service's key.
    let store = store::connect(&config, false).await.expect("store opens");
    let report = audit::verify(store.as_ref(), config.audit_key.as_ref().expect("keyed"), 2)
        .await
        .expect("verifies");
    assert_eq!(report.finding, None, "the purge broke no trail");
    assert_eq!(report.requests, 4);

    // Once its retention has passed too, the later one goes; the open one
    // never does.
    clock.set(t0() + days(20 + RETENTION_DAYS));
    app.sweeps_after(1).await;
    assert!(
        acme.get(&recent).await.purge_time.is_some(),
        "the later request purged by the first sweep at the new time"
    );
    assert_eq!(rows(&config, EMPTIED).await, 3);
    assert_eq!(acme.get(&open).await, before);
    let report = audit::verify(store.as_ref(), config.audit_key.as_ref().expect("keyed"), 2)
        .await
        .expect("verifies");
    assert_eq!(report.finding, None);
    app.stop().await;
}
