//! The store's conformance suite, written once and run against both
//! backends: every `async fn` below that takes a store (or a configuration)
//! is a check, and `conformance!` turns each into a `sqlite::…` and a
//! `postgres::…` test. The PostgreSQL ones return early, after saying so
//! once, when `TEST_DATABASE_URL` is unset.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::domain::jurisdiction::Jurisdiction;
use gdpr_intake::domain::pii::{DateOfBirth, Email, PersonName};
use gdpr_intake::domain::request::{
    Actor, Closure, DataSubjectRequest, EventType, Extension, Guardian, GuardianConsent,
    GuardianRelationship, NewEvent, Outcome, RefusalReason, RequestEvent, RequestType, State,
    Subject,
};
use gdpr_intake::store::{
    self, Cursor, InsertOutcome, RequestFilter, Store, StoreConfig, StoreError,
};
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::db;

/// Generates one test per check and backend.
macro_rules! conformance {
    (
        stores: [$($check:ident),* $(,)?],
        configs: [$($config_check:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (config, _dir) = crate::db::sqlite_config().await;
                    super::$check(super::open(&config).await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $config_check() {
                    let (config, _dir) = crate::db::sqlite_config().await;
                    super::$config_check(config).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(config) = crate::db::postgres_config().await else {
                        return;
                    };
                    super::$check(super::open(&config).await).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $config_check() {
                    let Some(config) = crate::db::postgres_config().await else {
                        return;
                    };
                    super::$config_check(config).await;
                }
            )*
        }
    };
}

conformance! {
    stores: [
        ping_answers,
        insert_then_get_round_trips_every_field,
        sparse_request_round_trips,
        update_writes_every_mutable_column,
        another_controllers_request_is_invisible,
        repeated_insert_returns_the_original,
        concurrent_identical_inserts_store_one,
        list_pages_in_order_with_filters,
        update_appends_numbered_events,
        stale_update_conflicts_and_writes_nothing,
        events_are_tenant_scoped_and_paginated,
    ],
    configs: [
        data_survives_reconnecting,
        two_pools_write_concurrently,
        unreadable_row_is_corrupt,
    ],
}

// ---- fixtures ----

/// Connects and migrates, as the application does.
async fn open(config: &StoreConfig) -> Arc<dyn Store> {
    store::connect(config, true)
        .await
        .expect("the test database opens and migrates")
}

/// `seconds` after 2026-01-01T00:00:00.123457Z: microsecond precision, as
/// stored, and not on a whole second so truncation would show.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_microsecond(1_767_225_600_123_457).unwrap() + SignedDuration::from_secs(seconds)
}

fn actor() -> Actor {
    Actor {
        id: "operator-7".to_owned(),
        role: "controller".to_owned(),
    }
}

/// Builds requests from the domain's own constructors.
#[derive(Clone)]
struct Build {
    controller_id: String,
    request_id: Uuid,
    request_type: RequestType,
    state: State,
    created: i64,
    country: &'static str,
    subdivision: &'static str,
    email: Option<&'static str>,
    details: &'static str,
    corrections: BTreeMap<String, String>,
}

impl Build {
    fn request(controller_id: &str) -> Self {
        Self {
            controller_id: controller_id.to_owned(),
            request_id: Uuid::new_v4(),
            request_type: RequestType::Access,
            state: State::InProgress,
            created: 0,
            country: "DE",
            subdivision: "",
            email: Some("ada@example.org"),
            details: "all data you hold about me",
            corrections: BTreeMap::new(),
        }
    }

    fn of_type(mut self, request_type: RequestType) -> Self {
        self.request_type = request_type;
        self
    }

    fn in_state(mut self, state: State) -> Self {
        self.state = state;
        self
    }

    fn created(mut self, seconds: i64) -> Self {
        self.created = seconds;
        self
    }

    fn in_jurisdiction(mut self, country: &'static str, subdivision: &'static str) -> Self {
        self.country = country;
        self.subdivision = subdivision;
        self
    }

    fn email(mut self, email: Option<&'static str>) -> Self {
        self.email = email;
        self
    }

    fn details(mut self, details: &'static str) -> Self {
        self.details = details;
        self
    }

    fn correction(mut self, field: &str, value: &str) -> Self {
        self.corrections.insert(field.to_owned(), value.to_owned());
        self
    }

    /// A new request (with a fresh `id`) and its submission event.
    fn build(&self) -> (DataSubjectRequest, NewEvent) {
        let jurisdiction = Jurisdiction::parse(self.country, self.subdivision).unwrap();
        let created = at(self.created);
        let request = DataSubjectRequest {
            id: Uuid::new_v4(),
            controller_id: self.controller_id.clone(),
            request_id: self.request_id,
            request_type: self.request_type,
            subject: Subject {
                external_id: "customer-42".to_owned(),
                email: self.email.map(|e| Email::parse(e).unwrap()),
                date_of_birth: DateOfBirth::parse(1990, 12, 10, date(2026, 1, 1)).unwrap(),
                jurisdiction: jurisdiction.clone(),
            },
            details: self.details.to_owned(),
            corrections: self.corrections.clone(),
            state: self.state,
            regime: jurisdiction.regime(),
            received_at: created - SignedDuration::from_secs(3600),
            create_time: created,
            update_time: created,
            original_due_time: created + SignedDuration::from_hours(24 * 30),
            due_time: created + SignedDuration::from_hours(24 * 30),
            extension: None,
            guardian_consent: None,
            closure: None,
            close_time: None,
            cancellation_reason: None,
            fingerprint: format!("fingerprint-of-{}", self.request_id),
            version: 1,
        };
        let event = NewEvent {
            event_type: EventType::Submitted,
            time: created,
            actor: actor(),
            from_state: None,
            to_state: self.state,
            reason: "accepted".to_owned(),
        };
        (request, event)
    }
}

/// Moves `r` to `to` at `seconds` as a domain transition would (new state,
/// update time, version + 1) and returns the event describing it.
fn change(r: &mut DataSubjectRequest, to: State, event_type: EventType, seconds: i64) -> NewEvent {
    let from = r.state;
    r.state = to;
    r.update_time = at(seconds);
    r.version += 1;
    NewEvent {
        event_type,
        time: at(seconds),
        actor: actor(),
        from_state: Some(from),
        to_state: to,
        reason: format!("moved to {}", to.as_str()),
    }
}

/// Every optional part of a request, filled in.
fn fill_every_optional_field(r: &mut DataSubjectRequest) {
    r.due_time += SignedDuration::from_hours(24 * 60);
    r.extension = Some(Extension {
        reason: "complex request".to_owned(),
        extend_time: at(100),
        extended_by: "operator-7".to_owned(),
    });
    r.guardian_consent = Some(GuardianConsent {
        guardian: Guardian {
            full_name: PersonName::parse("Zoë O'Brien-Łukasz").unwrap(),
            relationship: GuardianRelationship::LegalGuardian,
            email: Email::parse("guardian@example.org").unwrap(),
            verification_method: "passport checked in person".to_owned(),
            consented_at: at(50),
        },
        record_time: at(60),
        recorded_by: "operator-8".to_owned(),
    });
    r.closure = Some(Closure {
        outcome: Outcome::Refused,
        refusal_reason: Some(RefusalReason::ManifestlyUnfounded),
        explanation: "the same request was answered last week".to_owned(),
    });
    r.close_time = Some(at(200));
    r.cancellation_reason = Some("no longer needed".to_owned());
}

async fn insert_new(store: &Arc<dyn Store>, build: &Build) -> DataSubjectRequest {
    let (request, event) = build.build();
    let outcome = store.insert_request(&request, &event).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    request
}

async fn get(store: &Arc<dyn Store>, r: &DataSubjectRequest) -> DataSubjectRequest {
    store
        .get_request(&r.controller_id, r.id)
        .await
        .unwrap()
        .expect("the request is stored")
}

async fn events(store: &Arc<dyn Store>, r: &DataSubjectRequest) -> Vec<RequestEvent> {
    store
        .list_events(&r.controller_id, r.id, 0, 1000)
        .await
        .unwrap()
}

/// Every request a listing yields, page by page with `page` per page.
async fn list_all(
    store: &Arc<dyn Store>,
    controller_id: &str,
    filter: &RequestFilter,
    page: u32,
) -> Vec<DataSubjectRequest> {
    let mut all: Vec<DataSubjectRequest> = Vec::new();
    loop {
        let after = all.last().map(|r| Cursor {
            create_time: r.create_time,
            id: r.id,
        });
        let got = store
            .list_requests(controller_id, filter, after.as_ref(), page)
            .await
            .unwrap();
        assert!(got.len() <= page as usize, "a page holds at most its limit");
        let last_page = got.len() < page as usize;
        all.extend(got);
        if last_page {
            return all;
        }
    }
}

fn ids(requests: &[DataSubjectRequest]) -> Vec<Uuid> {
    requests.iter().map(|r| r.id).collect()
}

// ---- checks ----

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

async fn insert_then_get_round_trips_every_field(store: Arc<dyn Store>) {
    let build = Build::request("acme")
        .of_type(RequestType::Rectification)
        .in_state(State::AwaitingGuardianConsent)
        .in_jurisdiction("US", "US-CA")
        .details("please fix my name; it's \"Zoë\", not Zoe ✓")
        .correction("surname", "Lovelace")
        .correction("given_name", "Ada 🙂");
    let (mut request, event) = build.build();

    let outcome = store.insert_request(&request, &event).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    assert_eq!(get(&store, &request).await, request);

    let expected = request.version;
    fill_every_optional_field(&mut request);
    let closed = change(&mut request, State::Refused, EventType::Closed, 200);
    store
        .update_request(&request, expected, &closed)
        .await
        .unwrap();

    assert_eq!(get(&store, &request).await, request);
    let trail = events(&store, &request).await;
    let expected_trail = vec![
        RequestEvent {
            request: request.id,
            sequence: 1,
            event,
        },
        RequestEvent {
            request: request.id,
            sequence: 2,
            event: closed,
        },
    ];
    assert_eq!(trail, expected_trail);
}

async fn sparse_request_round_trips(store: Arc<dyn Store>) {
    let build = Build::request("acme").email(None).details("");
    let request = insert_new(&store, &build).await;

    let stored = get(&store, &request).await;
    assert_eq!(stored, request);
    assert_eq!(stored.subject.email, None);
    assert_eq!(stored.subject.jurisdiction.subdivision(), None);
    assert!(stored.corrections.is_empty());
}

async fn update_writes_every_mutable_column(store: Arc<dyn Store>) {
    let mut request = insert_new(&store, &Build::request("acme")).await;

    // Set everything, then clear everything again: a column the update
    // forgot would keep its old value and fail one of the comparisons.
    let expected = request.version;
    fill_every_optional_field(&mut request);
    let event = change(&mut request, State::Completed, EventType::Closed, 300);
    store
        .update_request(&request, expected, &event)
        .await
        .unwrap();
    assert_eq!(get(&store, &request).await, request);

    let expected = request.version;
    request.due_time = request.original_due_time;
    request.extension = None;
    request.guardian_consent = None;
    request.closure = None;
    request.close_time = None;
    request.cancellation_reason = None;
    let event = change(&mut request, State::NeedsAttention, EventType::Expired, 400);
    store
        .update_request(&request, expected, &event)
        .await
        .unwrap();
    assert_eq!(get(&store, &request).await, request);
}

async fn another_controllers_request_is_invisible(store: Arc<dyn Store>) {
    let request = insert_new(&store, &Build::request("acme")).await;

    assert!(
        store
            .get_request("other", request.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_request("acme", Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
}

async fn repeated_insert_returns_the_original(store: Arc<dyn Store>) {
    let build = Build::request("acme");
    let original = insert_new(&store, &build).await;

    // A retry gets a new id from the API; the key is (controller, request_id).
    let (retry, retry_event) = build.clone().details("something else").build();
    let outcome = store.insert_request(&retry, &retry_event).await.unwrap();
    let InsertOutcome::Existing(existing) = outcome else {
        panic!("a repeated request_id is not created again: {outcome:?}");
    };
    assert_eq!(*existing, original);
    assert!(store.get_request("acme", retry.id).await.unwrap().is_none());
    assert_eq!(events(&store, &original).await.len(), 1);

    // The key is per controller: another controller may use the same one.
    insert_new(
        &store,
        &Build {
            controller_id: "other".to_owned(),
            ..build
        },
    )
    .await;
}

async fn concurrent_identical_inserts_store_one(store: Arc<dyn Store>) {
    let build = Build::request("acme");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&store);
            let (request, event) = build.build();
            tokio::spawn(async move {
                let outcome = store.insert_request(&request, &event).await;
                (request, outcome)
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for task in tasks {
        let (request, outcome) = task.await.unwrap();
        match outcome.unwrap() {
            InsertOutcome::Created => created.push(request),
            InsertOutcome::Existing(stored) => existing.push(*stored),
        }
    }

    assert_eq!(created.len(), 1);
    assert_eq!(existing.len(), 31);
    let winner = &created[0];
    assert!(existing.iter().all(|r| r == winner));
    let listed = list_all(&store, "acme", &RequestFilter::default(), 100).await;
    assert_eq!(listed, vec![winner.clone()]);
    assert_eq!(events(&store, winner).await.len(), 1);
}

async fn list_pages_in_order_with_filters(store: Arc<dyn Store>) {
    use RequestType::{Access, Erasure, Portability};
    use State::{AwaitingGuardianConsent as Awaiting, Completed, InProgress};
    // Inserted out of order; two share a create time, so the id decides.
    let specs = [
        (30, Erasure, InProgress),
        (10, Access, InProgress),
        (20, Erasure, Awaiting),
        (50, Access, Awaiting),
        (20, Access, Awaiting),
        (5, Portability, Completed),
        (40, Access, InProgress),
    ];
    let mut acme = Vec::new();
    for (seconds, request_type, state) in specs {
        let build = Build::request("acme")
            .created(seconds)
            .of_type(request_type)
            .in_state(state);
        acme.push(insert_new(&store, &build).await);
        // Another tenant's requests interleave in time and must never show.
        insert_new(&store, &Build::request("other").created(seconds + 1)).await;
    }
    acme.sort_by_key(|r| (r.create_time, r.id));

    for page in [1, 2, 3, 7, 100] {
        let listed = list_all(&store, "acme", &RequestFilter::default(), page).await;
        assert_eq!(listed, acme, "page size {page}");
    }

    let cases = [
        (Some(InProgress), None),
        (Some(Awaiting), None),
        (None, Some(Access)),
        (None, Some(Erasure)),
        (Some(Awaiting), Some(Access)),
        (Some(Completed), Some(Access)),
    ];
    for (state, request_type) in cases {
        let filter = RequestFilter {
            state,
            request_type,
        };
        let expected: Vec<_> = acme
            .iter()
            .filter(|r| state.is_none_or(|s| r.state == s))
            .filter(|r| request_type.is_none_or(|t| r.request_type == t))
            .cloned()
            .collect();
        let listed = list_all(&store, "acme", &filter, 2).await;
        assert_eq!(ids(&listed), ids(&expected), "{filter:?}");
    }

    let others = list_all(&store, "other", &RequestFilter::default(), 3).await;
    assert_eq!(others.len(), 7);
    assert!(others.iter().all(|r| r.controller_id == "other"));
    let nobody = list_all(&store, "nobody", &RequestFilter::default(), 3).await;
    assert!(nobody.is_empty());
}

async fn update_appends_numbered_events(store: Arc<dyn Store>) {
    let build = Build::request("acme").in_state(State::AwaitingGuardianConsent);
    let (mut request, submitted) = build.build();
    store.insert_request(&request, &submitted).await.unwrap();

    let mut expected_trail = vec![RequestEvent {
        request: request.id,
        sequence: 1,
        event: submitted,
    }];
    let steps = [
        (State::InProgress, EventType::GuardianConsentRecorded),
        (State::InProgress, EventType::DeadlineExtended),
        (State::Completed, EventType::Closed),
    ];
    for (i, (to, event_type)) in steps.into_iter().enumerate() {
        let expected = request.version;
        let event = change(&mut request, to, event_type, 10 * (i as i64 + 1));
        store
            .update_request(&request, expected, &event)
            .await
            .unwrap();
        expected_trail.push(RequestEvent {
            request: request.id,
            sequence: i as i64 + 2,
            event,
        });
        assert_eq!(events(&store, &request).await, expected_trail);
    }
    assert_eq!(get(&store, &request).await.version, 4);
}

async fn stale_update_conflicts_and_writes_nothing(store: Arc<dyn Store>) {
    let mut request = insert_new(&store, &Build::request("acme")).await;
    let first = request.version;
    let event = change(
        &mut request,
        State::NeedsAttention,
        EventType::Submitted,
        10,
    );
    store.update_request(&request, first, &event).await.unwrap();
    let stored = get(&store, &request).await;

    // Someone read version 1 and changes it after the update above.
    let mut stale = stored.clone();
    let event = change(&mut stale, State::Cancelled, EventType::Cancelled, 20);
    stale.cancellation_reason = Some("changed my mind".to_owned());
    let outcome = store.update_request(&stale, first, &event).await;
    assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");

    // Another controller cannot change it either, even with the right version.
    let mut foreign = stored.clone();
    foreign.controller_id = "other".to_owned();
    let current = foreign.version;
    let event = change(&mut foreign, State::Cancelled, EventType::Cancelled, 30);
    let outcome = store.update_request(&foreign, current, &event).await;
    assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");

    assert_eq!(get(&store, &request).await, stored);
    assert_eq!(events(&store, &request).await.len(), 2);
}

async fn events_are_tenant_scoped_and_paginated(store: Arc<dyn Store>) {
    let mut request = insert_new(&store, &Build::request("acme")).await;
    for seconds in 1..=4 {
        let expected = request.version;
        let event = change(
            &mut request,
            State::InProgress,
            EventType::DeadlineExtended,
            seconds,
        );
        store
            .update_request(&request, expected, &event)
            .await
            .unwrap();
    }
    let all = events(&store, &request).await;
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .list_events("acme", request.id, after, 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        after = last.sequence;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let tail = store.list_events("acme", request.id, 3, 10).await.unwrap();
    assert_eq!(tail, all[3..].to_vec());

    assert!(
        store
            .list_events("other", request.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_events("acme", Uuid::new_v4(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn data_survives_reconnecting(config: StoreConfig) {
    let build = Build::request("acme");
    let request = {
        let store = open(&config).await;
        insert_new(&store, &build).await
    };

    // Opening again re-runs the migrations, which must be a no-op.
    let store = open(&config).await;
    assert_eq!(get(&store, &request).await, request);
    let (retry, event) = build.build();
    let outcome = store.insert_request(&retry, &event).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Existing(_)), "{outcome:?}");
}

async fn two_pools_write_concurrently(config: StoreConfig) {
    // Two stores on one database stand for two processes: their writes are
    // not queued by an in-process lock, only by the database.
    let stores = [open(&config).await, open(&config).await];
    let same = Build::request("acme");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let build = if i % 4 == 0 {
                same.clone()
            } else {
                Build::request("acme")
            };
            tokio::spawn(async move {
                let (request, event) = build.build();
                store.insert_request(&request, &event).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        if matches!(task.await.unwrap().unwrap(), InsertOutcome::Created) {
            created += 1;
        }
    }

    // 24 distinct requests and one of the 8 identical ones.
    assert_eq!(created, 25);
    let listed = list_all(&stores[0], "acme", &RequestFilter::default(), 100).await;
    assert_eq!(listed.len(), 25);
}

async fn unreadable_row_is_corrupt(config: StoreConfig) {
    let store = open(&config).await;
    let request = insert_new(&store, &Build::request("acme")).await;

    db::execute_raw(
        &config,
        "UPDATE data_subject_requests SET corrections = '[\"not\", \"a map\"]'",
    )
    .await;

    let got = store.get_request("acme", request.id).await;
    let Err(StoreError::Corrupt(why)) = got else {
        panic!("an unreadable row is reported as corrupt: {got:?}");
    };
    assert!(why.contains("corrections"), "{why}");
    let listed = store
        .list_requests("acme", &RequestFilter::default(), None, 10)
        .await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
}

// ---- backend-independent ----

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on loopback: nothing listens, so the connection is refused.
    let config = StoreConfig {
        acquire_timeout: Duration::from_secs(1),
        ..StoreConfig::postgres("postgres://postgres@127.0.0.1:1/none")
    };
    let outcome = store::connect(&config, false).await;
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{:?}",
        outcome.err()
    );
}

#[test]
fn stored_precision_drops_what_is_finer_than_a_microsecond() {
    let t = Timestamp::new(1_767_225_600, 123_456_789).unwrap();
    assert_eq!(
        store::to_stored_precision(t),
        Timestamp::new(1_767_225_600, 123_456_000).unwrap()
    );
    assert_eq!(store::to_stored_precision(at(0)), at(0));
}
