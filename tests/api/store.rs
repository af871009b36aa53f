//! The store's conformance suite, written once and run against both
//! backends: every `async fn` below that takes a store (or a configuration)
//! is a check, and `conformance!` turns each into a `sqlite::…` and a
//! `postgres::…` test. The PostgreSQL ones return early when there is no
//! PostgreSQL server; the run then says how many it skipped
//! ([`crate::db::postgres_config`]).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed expectation is a failed test"
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gdpr_intake::domain::backlog::{DeadlineCounts, ProcessorBacklog};
use gdpr_intake::domain::jurisdiction::Jurisdiction;
use gdpr_intake::domain::pii::{DateOfBirth, Email, PersonName};
use gdpr_intake::domain::request::{
    Actor, Closure, DataSubjectRequest, EventType, Extension, Guardian, GuardianConsent,
    GuardianIdentity, GuardianRelationship, NewEvent, Outcome, Personal, RefusalReason,
    RequestEvent, RequestType, State, Subject, TraceOrigin,
};
use gdpr_intake::domain::routing::{
    Completion, Processor, Route, Task, TaskOutcome, TaskState, TaskView,
};
use gdpr_intake::domain::sla::{Finding, SlaMarks};
use gdpr_intake::store::{
    self, Created, Cursor, Deleted, Effects, GroupCommitConfig, GroupCommitter, InsertOutcome,
    RequestFilter, RouteFilter, Store, StoreConfig, StoreError, SweepCursor, TaskOp, TaskOpResult,
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
        grouped_reads_find_each_controllers_own_requests,
        reads_through_the_read_group_answer_each_caller,
        route_reads_answer_each_controller_and_keep_nothing,
        repeated_insert_returns_the_original,
        concurrent_identical_inserts_store_one,
        a_group_is_inserted_in_one_transaction,
        a_group_stores_repeats_as_duplicates_of_what_went_in,
        concurrent_groups_through_the_committer,
        list_pages_in_order_with_filters,
        update_appends_numbered_events,
        stale_update_conflicts_and_writes_nothing,
        events_are_tenant_scoped_and_paginated,
        fan_out_tasks_are_written_with_the_request,
        cancel_open_tasks_cancels_pending_and_leased_tasks_only,
        processors_and_routes_are_administered,
        claims_go_by_due_time,
        claim_respects_max_and_lease,
        expired_lease_is_reclaimed_with_a_new_token,
        lease_operations_need_the_current_token,
        completion_replay_returns_the_task_and_writes_nothing,
        completing_the_last_task_completes_the_request,
        a_failed_task_needs_attention,
        tasks_are_listed_by_visible_state_in_pages,
        updates_keep_the_origin_and_the_sla_marks,
        open_requests_are_counted_by_state_across_controllers,
        the_backlog_counts_deadline_windows_and_each_processors_open_tasks,
        the_sweep_lists_open_requests_by_deadline,
        a_request_finding_is_recorded_once_with_its_event,
        requests_past_the_consent_window_are_listed_by_receipt,
        the_sweep_lists_open_tasks_by_due_time,
        a_task_finding_is_recorded_once_on_its_requests_trail,
        a_lease_has_one_holder_until_it_lapses_or_is_released,
        closed_requests_past_retention_are_listed_by_close_time,
        revocations_are_recorded_once_and_listed_in_order,
        revocations_recorded_concurrently_are_all_loaded_past_the_cursor,
    ],
    configs: [
        data_survives_reconnecting,
        two_pools_write_concurrently,
        unreadable_row_is_corrupt,
        the_database_refuses_values_outside_their_lists,
        concurrent_claimers_never_share_a_lease,
        concurrent_lease_takers_get_it_once,
        concurrent_sweepers_record_a_finding_once,
        a_purge_empties_the_personal_data_once_and_keeps_the_trail,
        a_large_group_is_split_into_statements_and_its_trails_verify,
        a_store_without_keys_keeps_personal_data_and_events_out,
        task_writes_chain_on_from_the_tip_the_migration_carries,
        concurrent_task_operations_are_answered_each_on_its_own,
        claims_and_completions_at_once_see_each_others_writes,
        the_reseal_moves_personal_data_to_the_primary_page_by_page,
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
    /// Seconds after the epoch; by default 30 days after creation.
    due: Option<i64>,
    /// Seconds after the epoch; by default an hour before creation.
    received: Option<i64>,
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
            due: None,
            received: None,
        }
    }

    fn due(mut self, seconds: i64) -> Self {
        self.due = Some(seconds);
        self
    }

    fn received(mut self, seconds: i64) -> Self {
        self.received = Some(seconds);
        self
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
        let due = self
            .due
            .map_or(created + SignedDuration::from_hours(24 * 30), at);
        let request = DataSubjectRequest {
            id: Uuid::new_v4(),
            controller_id: self.controller_id.clone(),
            request_id: self.request_id,
            request_type: self.request_type,
            subject: Subject::new(
                "customer-42".to_owned(),
                jurisdiction.clone(),
                self.email.map(|e| Email::parse(e).unwrap()),
                DateOfBirth::parse(1990, 12, 10, date(2026, 1, 1)).unwrap(),
            ),
            details: self.details.to_owned(),
            corrections: self.corrections.clone(),
            state: self.state,
            regime: jurisdiction.regime(),
            received_at: self
                .received
                .map_or(created - SignedDuration::from_secs(3600), at),
            create_time: created,
            update_time: created,
            original_due_time: due,
            due_time: due,
            extension: None,
            guardian_consent: None,
            closure: None,
            close_time: None,
            cancellation_reason: None,
            unrouted: false,
            fingerprint: format!("fingerprint-of-{}", self.request_id),
            version: 1,
            origin: None,
            sla: SlaMarks::default(),
            clock_start_time: self
                .received
                .map_or(created - SignedDuration::from_secs(3600), at),
            clock_pauses: Vec::new(),
            duplicate_of: None,
        };
        let event = NewEvent {
            event_type: EventType::Submitted,
            time: created,
            actor: actor(),
            from_state: None,
            to_state: self.state,
            reason: "accepted".to_owned(),
            task: None,
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
        task: None,
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
            identity: Personal::Present(GuardianIdentity {
                full_name: PersonName::parse("Zoë O'Brien-Łukasz").unwrap(),
                email: Email::parse("guardian@example.org").unwrap(),
            }),
            relationship: GuardianRelationship::LegalGuardian,
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
    r.unrouted = true;
}

async fn insert_new(store: &Arc<dyn Store>, build: &Build) -> DataSubjectRequest {
    let (request, event) = build.build();
    let outcome = store
        .insert_request(&request, &Effects::event(event))
        .await
        .unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    request
}

/// `expected` reads back whole by id and in a listing of its tenant, the
/// only request the tenant has: every column goes through both decoders.
async fn reads_back(store: &Arc<dyn Store>, expected: &DataSubjectRequest) {
    assert_eq!(&get(store, expected).await, expected);
    let listed = list_all(
        store,
        &expected.controller_id,
        &RequestFilter::default(),
        10,
    )
    .await;
    assert_eq!(listed, std::slice::from_ref(expected));
    let filter = RequestFilter {
        state: Some(expected.state),
        request_type: Some(expected.request_type),
    };
    assert_eq!(
        list_all(store, &expected.controller_id, &filter, 10).await,
        listed
    );
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

// ---- task fixtures ----

/// The processor most task checks work for.
const P: &str = "crm-vendor";
/// Another processor, whose tasks must never show up for `P`.
const Q: &str = "mail-vendor";

/// A pending task of `request` for `processor`, due `due` seconds after the
/// fixtures' epoch.
fn new_task(request: &DataSubjectRequest, processor: &str, due: i64) -> Task {
    Task {
        id: Uuid::new_v4(),
        request: request.id,
        controller_id: request.controller_id.clone(),
        processor_id: processor.to_owned(),
        state: TaskState::Pending,
        attempt: 0,
        due_time: at(due),
        lease_token: None,
        lease_expire_time: None,
        outcome: None,
        reason: None,
        result_uri: None,
        note: None,
        create_time: request.create_time,
        update_time: request.create_time,
        complete_time: None,
        sla: SlaMarks::default(),
    }
}

/// A `task_created` event, as the fan-out writes it.
fn task_created(request: &DataSubjectRequest, task: &Task) -> NewEvent {
    request.task_event(
        EventType::TaskCreated,
        task.id,
        &Actor::system(),
        format!("routed to {}", task.processor_id),
        request.create_time,
    )
}

/// Inserts a new request with a pending task per `(processor, due)` and
/// their `task_created` events, as the fan-out at submission does.
async fn insert_with_tasks(
    store: &Arc<dyn Store>,
    build: &Build,
    tasks: &[(&str, i64)],
) -> (DataSubjectRequest, Vec<Task>) {
    let (request, submitted) = build.build();
    let tasks: Vec<Task> = tasks
        .iter()
        .map(|(processor, due)| new_task(&request, processor, *due))
        .collect();
    let mut events = vec![submitted];
    events.extend(tasks.iter().map(|t| task_created(&request, t)));
    let effects = Effects {
        events,
        new_tasks: tasks.clone(),
        cancel_open_tasks: false,
        duplicate_window: None,
    };
    let outcome = store.insert_request(&request, &effects).await.unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    (request, tasks)
}

/// What the processor of `task` is shown.
fn view_of(task: Task, request: &DataSubjectRequest) -> TaskView {
    TaskView {
        task,
        request_type: request.request_type,
        external_id: request.subject.external_id.clone(),
        email: request.subject.email().cloned(),
        country: request.subject.jurisdiction.country(),
        corrections: request.corrections.clone(),
        origin: request.origin.clone(),
    }
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

async fn claim(
    store: &Arc<dyn Store>,
    processor: &str,
    max: u32,
    lease: i64,
    now: Timestamp,
) -> Vec<TaskView> {
    store
        .claim_tasks(processor, max, secs(lease), now)
        .await
        .unwrap()
}

fn token(view: &TaskView) -> String {
    view.task
        .lease_token
        .clone()
        .expect("a claimed task has a token")
}

fn renew(token: &str, lease: i64) -> TaskOp {
    TaskOp::Renew {
        token: token.to_owned(),
        lease: secs(lease),
    }
}

fn release(token: &str, reason: Option<&str>) -> TaskOp {
    TaskOp::Release {
        token: token.to_owned(),
        reason: reason.map(str::to_owned),
    }
}

fn complete(token: &str, outcome: TaskOutcome) -> TaskOp {
    TaskOp::Complete {
        token: token.to_owned(),
        completion: Completion {
            outcome,
            reason: (outcome == TaskOutcome::Failed).then(|| "export job crashed".to_owned()),
            result_uri: Some("https://results.example.org/42".to_owned()),
            note: Some("two systems searched".to_owned()),
        },
    }
}

async fn operate(
    store: &Arc<dyn Store>,
    processor: &str,
    id: Uuid,
    op: &TaskOp,
    now: Timestamp,
) -> TaskOpResult {
    store.task_operation(processor, id, op, now).await.unwrap()
}

/// The task an operation left, or a panic saying what happened instead.
fn done(result: TaskOpResult) -> TaskView {
    match result {
        TaskOpResult::Done(view, _) => *view,
        other => panic!("the operation is applied: {other:?}"),
    }
}

/// The reason an operation was refused with.
fn refused(result: TaskOpResult) -> &'static str {
    match result {
        TaskOpResult::Refused(e) => e.reason,
        other => panic!("the operation is refused: {other:?}"),
    }
}

async fn stored_tasks(store: &Arc<dyn Store>, r: &DataSubjectRequest) -> Vec<Task> {
    store.request_tasks(&r.controller_id, r.id).await.unwrap()
}

async fn stored_task(store: &Arc<dyn Store>, task: &Task) -> Task {
    store
        .get_task(&task.processor_id, task.id)
        .await
        .unwrap()
        .expect("the task is stored")
        .task
}

/// Every task of `processor` a listing yields, page by page.
async fn list_all_tasks(
    store: &Arc<dyn Store>,
    processor: &str,
    state: Option<TaskState>,
    page: u32,
    now: Timestamp,
) -> Vec<TaskView> {
    let mut all: Vec<TaskView> = Vec::new();
    loop {
        let after = all.last().map(|v| Cursor {
            create_time: v.task.create_time,
            id: v.task.id,
        });
        let got = store
            .list_tasks(processor, state, after.as_ref(), page, now)
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

/// Every route a listing yields, page by page.
async fn list_all_routes(store: &Arc<dyn Store>, filter: &RouteFilter, page: u32) -> Vec<Route> {
    let mut all: Vec<Route> = Vec::new();
    loop {
        let after = all.last().map(|r| Cursor {
            create_time: r.create_time,
            id: r.id,
        });
        let got = store
            .list_routes(filter, after.as_ref(), page)
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

fn task_ids(views: &[TaskView]) -> Vec<Uuid> {
    views.iter().map(|v| v.task.id).collect()
}

/// The trail's events after the first `skip`, as (type, task).
fn kinds(trail: &[RequestEvent], skip: usize) -> Vec<(EventType, Option<Uuid>)> {
    trail[skip..]
        .iter()
        .map(|e| (e.event.event_type, e.event.task))
        .collect()
}

/// `audit verify` over every trail of `store`, `page` requests at a time.
async fn verify(store: &Arc<dyn Store>, config: &StoreConfig, page: u32) -> store::audit::Report {
    store::audit::verify(
        store.as_ref(),
        config.audit_key.as_ref().expect("keyed"),
        page,
    )
    .await
    .unwrap()
}

fn sequences(trail: &[RequestEvent]) -> Vec<i64> {
    trail.iter().map(|e| e.sequence).collect()
}

// ---- checks ----

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

/// A store opened without keys (as `migrate` opens it) migrates and
/// answers, but neither writes a request (its personal data would need the
/// data key, its event the audit key) nor reads one back; a store with
/// only the audit key writes no request either. Nothing is half-written.
async fn a_store_without_keys_keeps_personal_data_and_events_out(config: StoreConfig) {
    let keyed = open(&config).await;
    let (stored, event) = Build::request("acme").build();
    keyed
        .insert_request(&stored, &Effects::event(event))
        .await
        .unwrap();
    drop(keyed);

    let bare = StoreConfig {
        audit_key: None,
        data_key: None,
        ..config.clone()
    };
    assert!(bare.require_keys().is_err());
    let store = open(&bare).await;
    store.ping().await.unwrap();
    let (request, event) = Build::request("acme").build();
    let refused = store
        .insert_request(&request, &Effects::event(event.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Internal(why) if why.contains("no data key")),
        "{refused:?}"
    );
    let unread = store.get_request("acme", stored.id).await.unwrap_err();
    assert!(
        matches!(&unread, StoreError::Internal(why) if why.contains("no data key")),
        "{unread:?}"
    );

    let audit_only = StoreConfig {
        data_key: None,
        ..config.clone()
    };
    assert!(audit_only.require_keys().is_err());
    let store = open(&audit_only).await;
    assert!(
        store
            .insert_request(&request, &Effects::event(event))
            .await
            .is_err()
    );
    let reopened = open(&config).await;
    assert!(
        reopened
            .get_request("acme", request.id)
            .await
            .unwrap()
            .is_none(),
        "a refused insert wrote nothing"
    );
    assert!(
        reopened
            .get_request("acme", stored.id)
            .await
            .unwrap()
            .is_some()
    );
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
    request.origin = Some(origin());

    let outcome = store
        .insert_request(&request, &Effects::event(event.clone()))
        .await
        .unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    reads_back(&store, &request).await;

    let expected = request.version;
    fill_every_optional_field(&mut request);
    let closed = change(&mut request, State::Refused, EventType::Closed, 200);
    store
        .update_request(&request, expected, &Effects::event(closed.clone()))
        .await
        .unwrap();

    reads_back(&store, &request).await;
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

    reads_back(&store, &request).await;
    let stored = get(&store, &request).await;
    assert_eq!(stored.subject.email(), None);
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
        .update_request(&request, expected, &Effects::event(event))
        .await
        .unwrap();
    reads_back(&store, &request).await;

    let expected = request.version;
    request.due_time = request.original_due_time;
    request.extension = None;
    request.guardian_consent = None;
    request.closure = None;
    request.close_time = None;
    request.cancellation_reason = None;
    request.unrouted = false;
    let event = change(&mut request, State::NeedsAttention, EventType::Expired, 400);
    store
        .update_request(&request, expected, &Effects::event(event))
        .await
        .unwrap();
    reads_back(&store, &request).await;
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

async fn grouped_reads_find_each_controllers_own_requests(store: Arc<dyn Store>) {
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(insert_new(&store, &Build::request("acme")).await);
    }
    let theirs = insert_new(&store, &Build::request("other")).await;

    assert!(store.get_requests("acme", &[]).await.unwrap().is_empty());
    // Three of mine (one asked twice), one of another controller and one
    // that does not exist: three rows, each as a lone read returns it.
    let asked = [
        mine[0].id,
        mine[3].id,
        theirs.id,
        mine[0].id,
        Uuid::new_v4(),
        mine[4].id,
    ];
    let mut found = store.get_requests("acme", &asked).await.unwrap();
    found.sort_by_key(|r| r.id);
    let mut expected = vec![mine[0].clone(), mine[3].clone(), mine[4].clone()];
    expected.sort_by_key(|r| r.id);
    assert_eq!(found, expected);
    assert_eq!(
        store.get_requests("other", &asked).await.unwrap(),
        vec![theirs.clone()]
    );

    // Every statement size, the largest included; one more is refused.
    let ids: Vec<Uuid> = mine
        .iter()
        .map(|r| r.id)
        .cycle()
        .take(store::MAX_READ_GROUP)
        .collect();
    for n in 1..=store::MAX_READ_GROUP {
        let found = store.get_requests("acme", &ids[..n]).await.unwrap();
        assert_eq!(found.len(), n.min(mine.len()), "{n} ids");
    }
    let too_many: Vec<Uuid> = ids.iter().copied().chain([theirs.id]).collect();
    assert!(matches!(
        store.get_requests("acme", &too_many).await,
        Err(StoreError::Internal(_))
    ));
}

async fn reads_through_the_read_group_answer_each_caller(store: Arc<dyn Store>) {
    let mut stored = Vec::new();
    for tenant in ["acme", "other", "acme", "third"] {
        stored.push(insert_new(&store, &Build::request(tenant)).await);
    }
    let reader = store::ReadGroup::start_with(store.clone(), 2, |worker| {
        tokio::spawn(worker);
    });
    // Many callers at once, so that reads queue behind busy workers and
    // are answered in groups mixing tenants, repeated ids and misses.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..400_usize {
        let reader = reader.clone();
        let request = stored[i % stored.len()].clone();
        calls.spawn(async move {
            match i % 4 {
                0 | 1 => {
                    let found = reader
                        .get(&request.controller_id, request.id)
                        .await
                        .unwrap();
                    assert_eq!(found.as_ref(), Some(&request));
                }
                2 => {
                    let theirs = reader.get("nobody", request.id).await.unwrap();
                    assert_eq!(theirs, None, "another tenant's request");
                }
                _ => {
                    let missing = reader.get(&request.controller_id, Uuid::new_v4()).await;
                    assert_eq!(missing.unwrap(), None);
                }
            }
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
}

/// Many route reads at once, for several controllers: each caller gets its
/// own controller's routes, as the store lists them, and a route added
/// afterwards is in the next answer (a group reads, it keeps nothing).
async fn route_reads_answer_each_controller_and_keep_nothing(store: Arc<dyn Store>) {
    for (i, id) in ["p-one", "p-two"].into_iter().enumerate() {
        let processor = Processor {
            id: id.to_owned(),
            display_name: id.to_owned(),
            contact: None,
            create_time: at(i as i64),
        };
        assert_eq!(
            store.create_processor(&processor).await.unwrap(),
            Created::Created
        );
    }
    let route = |controller: &str, processor: &str, seconds: i64| Route {
        id: Uuid::new_v4(),
        controller_id: controller.to_owned(),
        processor_id: processor.to_owned(),
        request_types: vec![RequestType::Access],
        task_sla_working_hours: 72,
        create_time: at(seconds),
    };
    for r in [
        route("acme", "p-one", 10),
        route("acme", "p-two", 11),
        route("other", "p-two", 12),
    ] {
        assert_eq!(store.create_route(&r).await.unwrap(), Created::Created);
    }
    let mut expected = BTreeMap::new();
    for controller in ["acme", "other", "nobody"] {
        let routes = store.controller_routes(controller).await.unwrap();
        expected.insert(controller, routes);
    }
    assert_eq!(
        (
            expected["acme"].len(),
            expected["other"].len(),
            expected["nobody"].len()
        ),
        (2, 1, 0)
    );
    let reads = store::RouteReads::start_with(store.clone(), 1, |worker| {
        tokio::spawn(worker);
    });
    let expected = Arc::new(expected);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300_usize {
        let (reads, expected) = (reads.clone(), Arc::clone(&expected));
        calls.spawn(async move {
            let controller = ["acme", "other", "nobody"][i % 3];
            assert_eq!(
                reads.routes(controller).await.unwrap(),
                expected[controller]
            );
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
    let added = route("nobody", "p-one", 13);
    assert_eq!(store.create_route(&added).await.unwrap(), Created::Created);
    assert_eq!(reads.routes("nobody").await.unwrap(), vec![added]);
}

async fn repeated_insert_returns_the_original(store: Arc<dyn Store>) {
    let build = Build::request("acme");
    let original = insert_new(&store, &build).await;

    // A retry gets a new id from the API; the key is (controller, request_id).
    let (retry, retry_event) = build.clone().details("something else").build();
    let outcome = store
        .insert_request(&retry, &Effects::event(retry_event))
        .await
        .unwrap();
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
                let outcome = store.insert_request(&request, &Effects::event(event)).await;
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
            InsertOutcome::Duplicate(d) => panic!("no duplicate window, yet {d:?}"),
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
    store
        .insert_request(&request, &Effects::event(submitted.clone()))
        .await
        .unwrap();

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
            .update_request(&request, expected, &Effects::event(event.clone()))
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
    store
        .update_request(&request, first, &Effects::event(event))
        .await
        .unwrap();
    let stored = get(&store, &request).await;

    // Someone read version 1 and changes it after the update above.
    let mut stale = stored.clone();
    let event = change(&mut stale, State::Cancelled, EventType::Cancelled, 20);
    stale.cancellation_reason = Some("changed my mind".to_owned());
    let outcome = store
        .update_request(&stale, first, &Effects::event(event))
        .await;
    assert!(matches!(outcome, Err(StoreError::Conflict)), "{outcome:?}");

    // Another controller cannot change it either, even with the right version.
    let mut foreign = stored.clone();
    foreign.controller_id = "other".to_owned();
    let current = foreign.version;
    let event = change(&mut foreign, State::Cancelled, EventType::Cancelled, 30);
    let outcome = store
        .update_request(&foreign, current, &Effects::event(event))
        .await;
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
            .update_request(&request, expected, &Effects::event(event))
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
    let outcome = store
        .insert_request(&retry, &Effects::event(event))
        .await
        .unwrap();
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
                store.insert_request(&request, &Effects::event(event)).await
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

async fn the_database_refuses_values_outside_their_lists(config: StoreConfig) {
    let store = open(&config).await;
    let request = insert_new(&store, &Build::request("acme")).await;
    let task = new_task(&request, P, 100);
    store
        .update_request(
            &request,
            request.version,
            &Effects {
                events: vec![task_created(&request, &task)],
                new_tasks: vec![task],
                cancel_open_tasks: false,
                duplicate_window: None,
            },
        )
        .await
        .unwrap();

    // PostgreSQL's check_violation, SQLite's SQLITE_CONSTRAINT_CHECK.
    let check_violation = if config.database_url.is_some() {
        "23514"
    } else {
        "275"
    };
    for statement in [
        "UPDATE data_subject_requests SET state = 'lost'",
        "UPDATE data_subject_requests SET request_type = 'delete_everything'",
        "UPDATE data_subject_requests SET regime = 'HIPAA'",
        "UPDATE data_subject_requests SET version = 0",
        "UPDATE data_subject_requests SET closure_outcome = 'maybe', closure_explanation = 'x'",
        "UPDATE tasks SET state = 'lost'",
        "UPDATE tasks SET attempt = -1",
        "UPDATE request_events SET event_type = 'rewritten'",
        "UPDATE request_events SET to_state = 'lost'",
        "UPDATE request_events SET sequence = 0",
        // A rule across columns, left on its table.
        "UPDATE tasks SET state = 'leased', lease_token = NULL",
    ] {
        assert_eq!(
            db::refusal_code(&config, statement).await,
            check_violation,
            "{statement}"
        );
    }
}

// ---- routing and tasks ----

async fn a_group_is_inserted_in_one_transaction(store: Arc<dyn Store>) {
    let earlier = insert_new(&store, &Build::request("acme")).await;
    let fresh = Build::request("acme");
    let twice = Build::request("beta");
    let (a, a_event) = fresh.build();
    let (b1, b1_event) = twice.build();
    let (b2, b2_event) = twice.clone().details("same key, other content").build();
    let (retry, retry_event) = Build {
        request_id: earlier.request_id,
        ..Build::request("acme")
    }
    .build();
    let task = new_task(&a, P, 100);
    let a_effects = Effects {
        events: vec![a_event, task_created(&a, &task)],
        new_tasks: vec![task.clone()],
        cancel_open_tasks: false,
        duplicate_window: None,
    };
    let batch = vec![
        (a.clone(), a_effects),
        (b1.clone(), Effects::event(b1_event)),
        (b2.clone(), Effects::event(b2_event)),
        (retry.clone(), Effects::event(retry_event)),
    ];
    let outcomes = store.insert_requests(&batch).await.unwrap();
    assert!(matches!(outcomes[0], InsertOutcome::Created));
    assert!(matches!(outcomes[1], InsertOutcome::Created));
    match &outcomes[2] {
        InsertOutcome::Existing(e) => assert_eq!(**e, b1, "the group's own earlier insert"),
        other => panic!("same key twice in a group: {other:?}"),
    }
    match &outcomes[3] {
        InsertOutcome::Existing(e) => assert_eq!(**e, earlier),
        other => panic!("a retry of a stored request: {other:?}"),
    }
    assert_eq!(get(&store, &a).await, a);
    assert_eq!(stored_tasks(&store, &a).await, vec![task]);
    assert_eq!(sequences(&events(&store, &a).await), vec![1, 2]);
    assert!(store.get_request("beta", b2.id).await.unwrap().is_none());

    // All or nothing: one broken member fails the whole group.
    let (ok, ok_event) = Build::request("acme").build();
    let (broken, broken_event) = Build::request("acme").build();
    let stray = broken.task_event(
        EventType::TaskCreated,
        Uuid::new_v4(),
        &Actor::system(),
        "routed nowhere".to_owned(),
        broken.create_time,
    );
    let group = vec![
        (ok.clone(), Effects::event(ok_event)),
        (
            broken.clone(),
            Effects {
                events: vec![broken_event, stray],
                ..Effects::default()
            },
        ),
    ];
    assert!(store.insert_requests(&group).await.is_err());
    assert!(store.get_request("acme", ok.id).await.unwrap().is_none());
    assert!(
        store
            .get_request("acme", broken.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// With a duplicate window, a request repeating an open one is stored as
/// its duplicate, whether the open one was stored before or goes in with
/// the same group; one that repeats a request of its group that did not go
/// in (its request_id was taken) is decided again, and stays open.
async fn a_group_stores_repeats_as_duplicates_of_what_went_in(store: Arc<dyn Store>) {
    let window = Some(SignedDuration::from_hours(24 * 30));
    let with_window = |(request, event): (DataSubjectRequest, NewEvent)| {
        let effects = Effects {
            duplicate_window: window,
            ..Effects::event(event)
        };
        (request, effects)
    };
    let open = insert_new(&store, &Build::request("acme").received(0)).await;
    let closed = insert_new(
        &store,
        &Build::request("acme")
            .of_type(RequestType::Erasure)
            .in_state(State::Cancelled),
    )
    .await;
    // Stored under a request_id the group reuses for another subject's
    // type: its content differs, so the group's request is not inserted.
    let taken = insert_new(
        &store,
        &Build::request("acme").of_type(RequestType::Objection),
    )
    .await;

    let repeat = Build::request("acme").received(60).build();
    let erasure_a = Build::request("acme")
        .of_type(RequestType::Erasure)
        .received(10)
        .build();
    let erasure_b = Build::request("acme")
        .of_type(RequestType::Erasure)
        .received(20)
        .build();
    let reuse = Build {
        request_id: taken.request_id,
        ..Build::request("acme")
            .of_type(RequestType::Portability)
            .received(30)
    }
    .build();
    let after_reuse = Build::request("acme")
        .of_type(RequestType::Portability)
        .received(40)
        .build();
    let batch: Vec<_> = [repeat, erasure_b, erasure_a, after_reuse, reuse]
        .into_iter()
        .map(with_window)
        .collect();
    let outcomes = store.insert_requests(&batch).await.unwrap();

    // Repeats the stored open one.
    let InsertOutcome::Duplicate(d) = &outcomes[0] else {
        panic!("a repeat: {:?}", outcomes[0]);
    };
    assert_eq!((d.state, d.duplicate_of), (State::Duplicate, Some(open.id)));
    assert_eq!(get(&store, &batch[0].0).await, **d);
    // The cancelled erasure is repeated by nothing; of the two new ones,
    // the first received stays open and the other repeats it.
    assert!(
        matches!(outcomes[2], InsertOutcome::Created),
        "{:?}",
        outcomes[2]
    );
    let InsertOutcome::Duplicate(e) = &outcomes[1] else {
        panic!("the later erasure: {:?}", outcomes[1]);
    };
    assert_eq!(e.duplicate_of, Some(batch[2].0.id));
    assert_ne!(e.duplicate_of, Some(closed.id));
    // The reused request_id is the stored request's; the request that
    // would have repeated it goes in open.
    assert!(matches!(&outcomes[4], InsertOutcome::Existing(x) if x.id == taken.id));
    assert!(
        matches!(outcomes[3], InsertOutcome::Created),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(get(&store, &batch[3].0).await.duplicate_of, None);

    // Each duplicate's trail is its one event; each original's gains one.
    for (duplicate, original) in [(&batch[0].0, &open), (&batch[1].0, &batch[2].0)] {
        let own = events(&store, duplicate).await;
        assert_eq!(kinds(&own, 0), [(EventType::DuplicateStored, None)]);
        let theirs = events(&store, original).await;
        assert_eq!(
            theirs
                .last()
                .map(|e| (e.event.event_type, e.event.to_state)),
            Some((EventType::DuplicateReceived, original.state))
        );
        assert_eq!(
            sequences(&theirs),
            (1..=theirs.len() as i64).collect::<Vec<_>>()
        );
    }
    assert_eq!(events(&store, &taken).await.len(), 1, "nothing on a reuse");
    assert_eq!(events(&store, &batch[3].0).await.len(), 1);
}

async fn concurrent_groups_through_the_committer(store: Arc<dyn Store>) {
    let committer = GroupCommitter::start(
        Arc::clone(&store),
        GroupCommitConfig {
            workers: 3,
            max_batch: 16,
            queue: 64,
        },
    );
    // 200 distinct requests and 20 copies of one key, all at once.
    let shared = Build::request("acme");
    let mut calls = Vec::new();
    for i in 0..220 {
        let build = if i % 11 == 0 {
            shared.clone()
        } else {
            Build::request("acme")
        };
        let (request, event) = build.build();
        let committer = committer.clone();
        calls.push(tokio::spawn(async move {
            committer.insert(request, Effects::event(event)).await
        }));
    }
    let mut created = 0;
    let mut existing = 0;
    for c in calls {
        match c.await.unwrap().unwrap().0 {
            InsertOutcome::Created => created += 1,
            InsertOutcome::Existing(_) => existing += 1,
            InsertOutcome::Duplicate(d) => panic!("no duplicate window, yet {d:?}"),
        }
    }
    assert_eq!((created, existing), (201, 19));
    let listed = list_all(&store, "acme", &RequestFilter::default(), 1000).await;
    assert_eq!(listed.len(), 201);
}

async fn fan_out_tasks_are_written_with_the_request(store: Arc<dyn Store>) {
    let (request, tasks) = insert_with_tasks(
        &store,
        &Build::request("acme").correction("surname", "Lovelace"),
        &[(P, 100), (Q, 200), ("billing", 300)],
    )
    .await;

    let mut expected = tasks.clone();
    expected.sort_by_key(|t| (t.create_time, t.id));
    assert_eq!(stored_tasks(&store, &request).await, expected);
    assert!(
        store
            .request_tasks("other", request.id)
            .await
            .unwrap()
            .is_empty(),
        "another controller does not see the tasks"
    );
    let trail = events(&store, &request).await;
    assert_eq!(sequences(&trail), vec![1, 2, 3, 4]);
    let mut expected_kinds = vec![(EventType::Submitted, None)];
    expected_kinds.extend(tasks.iter().map(|t| (EventType::TaskCreated, Some(t.id))));
    assert_eq!(kinds(&trail, 0), expected_kinds);
    assert_eq!(trail[1].event, task_created(&request, &tasks[0]));

    // Each processor sees its task with what it may know of the request.
    for task in &tasks {
        let view = store.get_task(&task.processor_id, task.id).await.unwrap();
        assert_eq!(view, Some(view_of(task.clone(), &request)));
        assert_eq!(store.get_task("someone-else", task.id).await.unwrap(), None);
    }

    // All or nothing: an event naming a task that is not being created
    // fails the whole insert.
    let (broken, submitted) = Build::request("acme").build();
    let task = new_task(&broken, P, 100);
    let stray = broken.task_event(
        EventType::TaskCreated,
        Uuid::new_v4(),
        &Actor::system(),
        "routed nowhere".to_owned(),
        broken.create_time,
    );
    let effects = Effects {
        events: vec![submitted, task_created(&broken, &task), stray],
        new_tasks: vec![task],
        cancel_open_tasks: false,
        duplicate_window: None,
    };
    assert!(store.insert_request(&broken, &effects).await.is_err());
    assert!(
        store
            .get_request("acme", broken.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(stored_tasks(&store, &broken).await.is_empty());
    assert_eq!(
        claim(&store, P, 10, 60, at(0)).await.len(),
        1,
        "only the first request's task exists"
    );

    // A minor's request fans out when the guardian consents: tasks come
    // with the update.
    let (mut minor, submitted) = Build::request("acme")
        .in_state(State::AwaitingGuardianConsent)
        .build();
    store
        .insert_request(&minor, &Effects::event(submitted))
        .await
        .unwrap();
    let expected_version = minor.version;
    let consented = change(
        &mut minor,
        State::InProgress,
        EventType::GuardianConsentRecorded,
        50,
    );
    let task = Task {
        create_time: at(50),
        update_time: at(50),
        ..new_task(&minor, P, 500)
    };
    let created = minor.task_event(
        EventType::TaskCreated,
        task.id,
        &Actor::system(),
        "routed".to_owned(),
        at(50),
    );
    let effects = Effects {
        events: vec![consented, created],
        new_tasks: vec![task.clone()],
        cancel_open_tasks: false,
        duplicate_window: None,
    };
    store
        .update_request(&minor, expected_version, &effects)
        .await
        .unwrap();
    assert_eq!(stored_tasks(&store, &minor).await, vec![task.clone()]);
    assert_eq!(
        kinds(&events(&store, &minor).await, 0),
        vec![
            (EventType::Submitted, None),
            (EventType::GuardianConsentRecorded, None),
            (EventType::TaskCreated, Some(task.id)),
        ]
    );
}

async fn cancel_open_tasks_cancels_pending_and_leased_tasks_only(store: Arc<dyn Store>) {
    let (mut request, tasks) = insert_with_tasks(
        &store,
        &Build::request("acme"),
        &[(P, 10), (P, 20), (P, 30)],
    )
    .await;
    // The earliest two are claimed and the first of them completed.
    let claimed = claim(&store, P, 2, 300, at(60)).await;
    assert_eq!(task_ids(&claimed), vec![tasks[0].id, tasks[1].id]);
    done(
        operate(
            &store,
            P,
            tasks[0].id,
            &complete(&token(&claimed[0]), TaskOutcome::Done),
            at(70),
        )
        .await,
    );
    let before = events(&store, &request).await.len();

    let expected_version = request.version;
    let cancelled = request
        .cancel("withdrawn".to_owned(), &actor(), at(80))
        .unwrap();
    let effects = Effects {
        events: vec![cancelled.clone()],
        new_tasks: Vec::new(),
        cancel_open_tasks: true,
        duplicate_window: None,
    };
    store
        .update_request(&request, expected_version, &effects)
        .await
        .unwrap();

    let stored = stored_tasks(&store, &request).await;
    let state_of = |id: Uuid| stored.iter().find(|t| t.id == id).unwrap();
    assert_eq!(state_of(tasks[0].id).state, TaskState::Completed);
    for task in &tasks[1..] {
        let t = state_of(task.id);
        assert_eq!(t.state, TaskState::Cancelled, "{t:?}");
        assert_eq!(t.update_time, at(80));
        assert_eq!(t.lease_expire_time, None);
    }

    let trail = events(&store, &request).await;
    assert_eq!(
        sequences(&trail),
        (1..=trail.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(trail.len(), before + 3);
    assert_eq!(trail[before].event, cancelled);
    let mut cancelled_tasks: Vec<Uuid> = trail[before + 1..]
        .iter()
        .map(|e| {
            assert_eq!(e.event.event_type, EventType::TaskCancelled);
            assert_eq!(e.event.actor, Actor::system());
            assert_eq!(e.event.reason, "the request ended");
            assert_eq!(e.event.time, at(80));
            assert_eq!(
                (e.event.from_state, e.event.to_state),
                (Some(State::Cancelled), State::Cancelled)
            );
            e.event.task.unwrap()
        })
        .collect();
    cancelled_tasks.sort();
    let mut expected: Vec<Uuid> = tasks[1..].iter().map(|t| t.id).collect();
    expected.sort();
    assert_eq!(cancelled_tasks, expected);

    // The processor still holding a lease is told to stop; nothing is left
    // to claim.
    let result = operate(
        &store,
        P,
        tasks[1].id,
        &renew(&token(&claimed[1]), 60),
        at(90),
    )
    .await;
    assert_eq!(refused(result), "TASK_CANCELLED");
    let result = operate(
        &store,
        P,
        tasks[1].id,
        &complete(&token(&claimed[1]), TaskOutcome::Done),
        at(90),
    )
    .await;
    assert_eq!(refused(result), "TASK_CANCELLED");
    assert!(claim(&store, P, 10, 60, at(10_000)).await.is_empty());
}

async fn processors_and_routes_are_administered(store: Arc<dyn Store>) {
    let processor = |id: &str, seconds: i64| Processor {
        id: id.to_owned(),
        display_name: format!("Processor {id} ✓"),
        contact: (seconds % 2 == 0).then(|| "privacy@example.org".to_owned()),
        create_time: at(seconds),
    };
    let mut processors = vec![
        processor("b-crm", 1),
        processor("a-mail", 2),
        processor("c_pay", 3),
        processor("a-mail-2", 4),
        processor("a0", 5),
    ];
    for p in &processors {
        assert_eq!(store.create_processor(p).await.unwrap(), Created::Created);
    }
    let taken = processor("b-crm", 9);
    assert_eq!(
        store.create_processor(&taken).await.unwrap(),
        Created::Duplicate
    );
    processors.sort_by(|a, b| a.id.cmp(&b.id));
    for page in [1_u32, 2, 10] {
        let mut listed: Vec<Processor> = Vec::new();
        loop {
            let after = listed.last().map(|p| p.id.clone());
            let got = store.list_processors(after.as_deref(), page).await.unwrap();
            let last = got.len() < page as usize;
            listed.extend(got);
            if last {
                break;
            }
        }
        assert_eq!(listed, processors, "page size {page}");
    }

    let route = |controller: &str, processor: &str, types: &[RequestType], seconds: i64| Route {
        id: Uuid::new_v4(),
        controller_id: controller.to_owned(),
        processor_id: processor.to_owned(),
        request_types: types.to_vec(),
        task_sla_working_hours: 24 + seconds as u32,
        create_time: at(seconds),
    };
    use RequestType::{Access, Erasure, Rectification};
    // Two pairs share a create time, so the id decides between them.
    let mut routes = vec![
        route("acme", "a-mail", &[], 10),
        route("acme", "b-crm", &[Erasure, Access], 20),
        route("other", "a-mail", &[Erasure], 20),
        route("other", "b-crm", &[Rectification], 5),
        route("acme", "c_pay", &[Access], 30),
        route("other", "c_pay", &[], 30),
    ];
    for r in &routes {
        assert_eq!(store.create_route(r).await.unwrap(), Created::Created);
    }
    let again = route("acme", "a-mail", &[Access], 40);
    assert_eq!(
        store.create_route(&again).await.unwrap(),
        Created::Duplicate
    );
    let nowhere = route("acme", "nobody", &[], 40);
    assert_eq!(
        store.create_route(&nowhere).await.unwrap(),
        Created::Missing
    );
    routes.sort_by_key(|r| (r.create_time, r.id));

    let filters = [
        (None, None),
        (Some("acme"), None),
        (Some("other"), None),
        (None, Some("a-mail")),
        (Some("acme"), Some("b-crm")),
        (Some("nobody"), None),
    ];
    for (controller, processor) in filters {
        let filter = RouteFilter {
            controller_id: controller.map(str::to_owned),
            processor_id: processor.map(str::to_owned),
        };
        let expected: Vec<Route> = routes
            .iter()
            .filter(|r| controller.is_none_or(|c| r.controller_id == c))
            .filter(|r| processor.is_none_or(|p| r.processor_id == p))
            .cloned()
            .collect();
        for page in [1, 2, 100] {
            assert_eq!(
                list_all_routes(&store, &filter, page).await,
                expected,
                "{filter:?}, page size {page}"
            );
        }
    }
    let acme: Vec<Route> = routes
        .iter()
        .filter(|r| r.controller_id == "acme")
        .cloned()
        .collect();
    assert_eq!(store.controller_routes("acme").await.unwrap(), acme);
    assert!(store.controller_routes("nobody").await.unwrap().is_empty());

    let gone = routes
        .iter()
        .position(|r| r.processor_id == "c_pay")
        .unwrap();
    let gone = routes.remove(gone);
    assert_eq!(store.delete_route(gone.id).await.unwrap(), Deleted::Deleted);
    assert_eq!(
        store.delete_route(gone.id).await.unwrap(),
        Deleted::NotFound
    );
    assert_eq!(
        list_all_routes(&store, &RouteFilter::default(), 100).await,
        routes
    );

    // A processor that owes work stays; once its tasks are over it goes,
    // with its routes, and its finished tasks stay as history.
    let (mut request, tasks) =
        insert_with_tasks(&store, &Build::request("acme"), &[("b-crm", 100)]).await;
    assert_eq!(
        store.delete_processor("b-crm").await.unwrap(),
        Deleted::HasOpenTasks
    );
    claim(&store, "b-crm", 1, 60, at(10)).await;
    assert_eq!(
        store.delete_processor("b-crm").await.unwrap(),
        Deleted::HasOpenTasks,
        "a leased task is open too"
    );
    let expected_version = request.version;
    let cancelled = request
        .cancel("withdrawn".to_owned(), &actor(), at(20))
        .unwrap();
    let effects = Effects {
        events: vec![cancelled],
        new_tasks: Vec::new(),
        cancel_open_tasks: true,
        duplicate_window: None,
    };
    store
        .update_request(&request, expected_version, &effects)
        .await
        .unwrap();
    assert_eq!(
        store.delete_processor("b-crm").await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        store.delete_processor("b-crm").await.unwrap(),
        Deleted::NotFound
    );
    assert_eq!(
        store.delete_processor("nobody").await.unwrap(),
        Deleted::NotFound
    );
    routes.retain(|r| r.processor_id != "b-crm");
    assert_eq!(
        list_all_routes(&store, &RouteFilter::default(), 100).await,
        routes
    );
    assert!(
        store
            .list_processors(None, 100)
            .await
            .unwrap()
            .iter()
            .all(|p| p.id != "b-crm")
    );
    let history = stored_tasks(&store, &request).await;
    assert_eq!(task_ids_of(&history), task_ids_of(&tasks));
    assert_eq!(history[0].state, TaskState::Cancelled);
    // The id is free again.
    assert_eq!(
        store.create_processor(&taken).await.unwrap(),
        Created::Created
    );
}

fn task_ids_of(tasks: &[Task]) -> Vec<Uuid> {
    tasks.iter().map(|t| t.id).collect()
}

async fn claims_go_by_due_time(store: Arc<dyn Store>) {
    let (first, a) =
        insert_with_tasks(&store, &Build::request("acme"), &[(P, 50), (P, 10), (Q, 5)]).await;
    let (second, b) = insert_with_tasks(
        &store,
        &Build::request("other").created(1),
        &[(P, 40), (P, 20), (P, 30)],
    )
    .await;
    let in_order = [&a[1], &b[1], &b[2], &b[0], &a[0]];

    let mut claimed = Vec::new();
    for (round, expected) in in_order.chunks(2).enumerate() {
        let now = at(100 + round as i64);
        let got = claim(&store, P, 2, 60, now).await;
        assert_eq!(
            task_ids(&got),
            expected.iter().map(|t| t.id).collect::<Vec<_>>(),
            "round {round}"
        );
        for (view, task) in got.iter().zip(expected) {
            let request = if task.request == first.id {
                &first
            } else {
                &second
            };
            let leased = Task {
                state: TaskState::Leased,
                attempt: 1,
                lease_token: view.task.lease_token.clone(),
                lease_expire_time: Some(now + secs(60)),
                update_time: now,
                ..(*task).clone()
            };
            assert_eq!(*view, view_of(leased, request));
            assert_eq!(stored_task(&store, task).await, view.task);
        }
        claimed.extend(got);
    }
    assert!(claim(&store, P, 2, 60, at(110)).await.is_empty());
    let mut tokens: Vec<String> = claimed.iter().map(token).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 5, "every lease has its own token");

    // Each claim is in its request's trail, by the processor.
    let trail = events(&store, &first).await;
    assert_eq!(
        kinds(&trail, 4),
        vec![
            (EventType::TaskClaimed, Some(a[1].id)),
            (EventType::TaskClaimed, Some(a[0].id)),
        ]
    );
    let claimed_event = &trail[4].event;
    assert_eq!(
        claimed_event.actor,
        Actor {
            id: P.to_owned(),
            role: "processor".to_owned()
        }
    );
    assert_eq!(claimed_event.reason, "attempt 1");
    assert_eq!(claimed_event.time, at(100));
    assert_eq!(sequences(&trail), vec![1, 2, 3, 4, 5, 6]);

    // The other processor's task was never handed to P.
    let theirs = claim(&store, Q, 10, 60, at(120)).await;
    assert_eq!(task_ids(&theirs), vec![a[2].id]);
}

async fn claim_respects_max_and_lease(store: Arc<dyn Store>) {
    let dues: Vec<(&str, i64)> = (0..5).map(|i| (P, 100 + i)).collect();
    let (_, tasks) = insert_with_tasks(&store, &Build::request("acme"), &dues).await;

    assert!(claim(&store, P, 0, 60, at(10)).await.is_empty());
    let first = claim(&store, P, 3, 60, at(10)).await;
    assert_eq!(task_ids(&first), task_ids_of(&tasks[..3]));
    let rest = claim(&store, P, 3, 60, at(11)).await;
    assert_eq!(task_ids(&rest), task_ids_of(&tasks[3..]));
    // Every lease still runs one microsecond before the first ends.
    let just_before = at(70) - SignedDuration::from_micros(1);
    assert!(claim(&store, P, 10, 60, just_before).await.is_empty());
    let leased = list_all_tasks(&store, P, Some(TaskState::Leased), 10, just_before).await;
    assert_eq!(leased.len(), 5);
    // At its end the first three are claimable again, and only those.
    let again = claim(&store, P, 10, 60, at(70)).await;
    assert_eq!(task_ids(&again), task_ids_of(&tasks[..3]));
    assert!(again.iter().all(|v| v.task.attempt == 2));
}

async fn expired_lease_is_reclaimed_with_a_new_token(store: Arc<dyn Store>) {
    let (request, tasks) = insert_with_tasks(&store, &Build::request("acme"), &[(P, 100)]).await;
    let task = &tasks[0];
    let first = claim(&store, P, 5, 30, at(100)).await;
    assert_eq!(task_ids(&first), vec![task.id]);

    let visible = |now: Timestamp, state: TaskState| {
        let store = Arc::clone(&store);
        async move { task_ids(&list_all_tasks(&store, P, Some(state), 10, now).await) }
    };
    assert_eq!(visible(at(129), TaskState::Leased).await, vec![task.id]);
    assert!(visible(at(129), TaskState::Pending).await.is_empty());
    assert!(claim(&store, P, 5, 30, at(129)).await.is_empty());

    // The lease ends at 130: the task shows as pending and is handed out again.
    assert!(visible(at(130), TaskState::Leased).await.is_empty());
    assert_eq!(visible(at(130), TaskState::Pending).await, vec![task.id]);
    let second = claim(&store, P, 5, 30, at(130)).await;
    assert_eq!(task_ids(&second), vec![task.id]);
    assert_eq!(second[0].task.attempt, 2);
    assert_ne!(token(&second[0]), token(&first[0]));
    assert_eq!(second[0].task.lease_expire_time, Some(at(160)));

    let trail = events(&store, &request).await;
    let reasons: Vec<&str> = trail[2..].iter().map(|e| e.event.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec!["attempt 1", "attempt 2: redelivered after the lease ended"]
    );

    // The first holder has lost it.
    let late = complete(&token(&first[0]), TaskOutcome::Done);
    assert_eq!(
        refused(operate(&store, P, task.id, &late, at(131)).await),
        "LEASE_NOT_HELD"
    );
    let now_held = done(
        operate(
            &store,
            P,
            task.id,
            &complete(&token(&second[0]), TaskOutcome::Done),
            at(131),
        )
        .await,
    );
    assert_eq!(now_held.task.state, TaskState::Completed);
}

async fn lease_operations_need_the_current_token(store: Arc<dyn Store>) {
    let (request, tasks) =
        insert_with_tasks(&store, &Build::request("acme"), &[(P, 100), (P, 200)]).await;
    let task = &tasks[0];
    let first = claim(&store, P, 1, 60, at(100)).await;
    let held = token(&first[0]);
    let trail_len = events(&store, &request).await.len();

    // Renewal: only with the current token; no event.
    for wrong in ["", "not-the-token"] {
        let result = operate(&store, P, task.id, &renew(wrong, 60), at(150)).await;
        assert_eq!(refused(result), "LEASE_NOT_HELD");
    }
    let renewed = done(operate(&store, P, task.id, &renew(&held, 60), at(150)).await);
    assert_eq!(renewed.task.lease_expire_time, Some(at(210)));
    assert_eq!(renewed.task.update_time, at(150));
    assert_eq!(renewed, view_of(renewed.task.clone(), &request));
    assert_eq!(stored_task(&store, task).await, renewed.task);
    assert_eq!(events(&store, &request).await.len(), trail_len);
    let claimed = claim(&store, P, 5, 60, at(200)).await;
    assert_eq!(
        task_ids(&claimed),
        vec![tasks[1].id],
        "a renewed lease is not handed out"
    );

    // Release: back to pending, with its event.
    let released = done(
        operate(
            &store,
            P,
            task.id,
            &release(&held, Some("shutting down")),
            at(205),
        )
        .await,
    );
    assert_eq!(released.task.state, TaskState::Pending);
    assert_eq!(released.task.lease_token, None);
    assert_eq!(released.task.reason.as_deref(), Some("shutting down"));
    let trail = events(&store, &request).await;
    let last = &trail.last().unwrap().event;
    assert_eq!(
        (last.event_type, last.task, last.reason.as_str()),
        (
            EventType::TaskReleased,
            Some(task.id),
            "released: shutting down"
        )
    );
    let result = operate(&store, P, task.id, &release(&held, None), at(206)).await;
    assert_eq!(refused(result), "LEASE_NOT_HELD");

    // A new claim, not a redelivery; the old token no longer counts.
    let again = claim(&store, P, 1, 60, at(206)).await;
    assert_eq!(task_ids(&again), vec![task.id]);
    assert_eq!(again[0].task.attempt, 2);
    let trail = events(&store, &request).await;
    assert_eq!(trail.last().unwrap().event.reason, "attempt 2");
    let stale = complete(&held, TaskOutcome::Done);
    assert_eq!(
        refused(operate(&store, P, task.id, &stale, at(207)).await),
        "LEASE_NOT_HELD"
    );
    let completed = done(
        operate(
            &store,
            P,
            task.id,
            &complete(&token(&again[0]), TaskOutcome::Done),
            at(207),
        )
        .await,
    );
    assert_eq!(completed.task.state, TaskState::Completed);
    assert_eq!(completed.task.outcome, Some(TaskOutcome::Done));
    assert_eq!(completed.task.complete_time, Some(at(207)));
    assert_eq!(completed.task.lease_expire_time, None);
    assert_eq!(
        completed.task.result_uri.as_deref(),
        Some("https://results.example.org/42")
    );
    assert_eq!(stored_task(&store, task).await, completed.task);

    // Unknown tasks, and another processor's, are not found.
    let any = renew(&token(&again[0]), 60);
    assert_eq!(
        operate(&store, P, Uuid::new_v4(), &any, at(208)).await,
        TaskOpResult::NotFound
    );
    assert_eq!(
        operate(&store, Q, task.id, &any, at(208)).await,
        TaskOpResult::NotFound
    );
}

async fn completion_replay_returns_the_task_and_writes_nothing(store: Arc<dyn Store>) {
    let (request, tasks) =
        insert_with_tasks(&store, &Build::request("acme"), &[(P, 100), (Q, 100)]).await;
    let claimed = claim(&store, P, 1, 60, at(10)).await;
    let op = complete(&token(&claimed[0]), TaskOutcome::Done);
    let first = done(operate(&store, P, tasks[0].id, &op, at(20)).await);
    let trail = events(&store, &request).await;

    // The answer was lost; the processor calls again, later.
    let replay = done(operate(&store, P, tasks[0].id, &op, at(30)).await);
    assert_eq!(replay, first);
    assert_eq!(events(&store, &request).await, trail);
    assert_eq!(stored_task(&store, &tasks[0]).await, first.task);

    let different = complete(&token(&claimed[0]), TaskOutcome::NoDataHeld);
    assert_eq!(
        refused(operate(&store, P, tasks[0].id, &different, at(40)).await),
        "TASK_ALREADY_COMPLETED"
    );
    assert_eq!(events(&store, &request).await, trail);
}

async fn completing_the_last_task_completes_the_request(store: Arc<dyn Store>) {
    let (request, tasks) =
        insert_with_tasks(&store, &Build::request("acme"), &[(P, 100), (Q, 100)]).await;
    let p = claim(&store, P, 1, 600, at(10)).await;
    let q = claim(&store, Q, 1, 600, at(10)).await;

    let first = operate(
        &store,
        P,
        tasks[0].id,
        &complete(&token(&p[0]), TaskOutcome::Done),
        at(100),
    )
    .await;
    assert!(
        matches!(first, TaskOpResult::Done(_, None)),
        "one task is still open: {first:?}"
    );
    assert_eq!(get(&store, &request).await, request);

    let last = complete(&token(&q[0]), TaskOutcome::NoDataHeld);
    let TaskOpResult::Done(_, Some(moved)) = operate(&store, Q, tasks[1].id, &last, at(200)).await
    else {
        panic!("the last completion moves the request");
    };
    let completed = get(&store, &request).await;
    assert_eq!(*moved, completed, "the request as this operation left it");
    // Its replay changes nothing and moves nothing.
    assert!(matches!(
        operate(&store, Q, tasks[1].id, &last, at(201)).await,
        TaskOpResult::Done(_, None)
    ));
    assert_eq!(completed.state, State::Completed);
    assert_eq!(completed.version, request.version + 1);
    assert_eq!(completed.update_time, at(200));
    assert_eq!(completed.close_time, Some(at(200)));
    assert_eq!(
        completed.closure.as_ref().map(|c| c.outcome),
        Some(Outcome::Completed)
    );
    assert_eq!(completed.deadline_met(), Some(true));

    let trail = events(&store, &request).await;
    assert_eq!(
        sequences(&trail),
        (1..=trail.len() as i64).collect::<Vec<_>>()
    );
    let n = trail.len();
    assert_eq!(
        kinds(&trail, n - 3),
        vec![
            (EventType::TaskCompleted, Some(tasks[0].id)),
            (EventType::TaskCompleted, Some(tasks[1].id)),
            (EventType::Closed, None),
        ]
    );
    assert_eq!(trail[n - 2].event.reason, "completed: no_data_held");
    let closed = &trail[n - 1].event;
    assert_eq!(closed.actor, Actor::system());
    assert_eq!(
        (closed.from_state, closed.to_state, closed.time),
        (Some(State::InProgress), State::Completed, at(200))
    );
}

async fn a_failed_task_needs_attention(store: Arc<dyn Store>) {
    let (request, tasks) =
        insert_with_tasks(&store, &Build::request("acme"), &[(P, 100), (Q, 100)]).await;
    let p = claim(&store, P, 1, 600, at(10)).await;
    let q = claim(&store, Q, 1, 600, at(10)).await;

    let failed = done(
        operate(
            &store,
            P,
            tasks[0].id,
            &complete(&token(&p[0]), TaskOutcome::Failed),
            at(100),
        )
        .await,
    );
    assert_eq!(failed.task.state, TaskState::Failed);
    assert_eq!(failed.task.outcome, Some(TaskOutcome::Failed));
    assert_eq!(failed.task.reason.as_deref(), Some("export job crashed"));
    let flagged = get(&store, &request).await;
    assert_eq!(flagged.state, State::NeedsAttention);
    assert_eq!(flagged.version, request.version + 1);

    let trail = events(&store, &request).await;
    let n = trail.len();
    assert_eq!(
        kinds(&trail, n - 2),
        vec![
            (EventType::TaskFailed, Some(tasks[0].id)),
            (EventType::NeedsAttention, None),
        ]
    );
    assert_eq!(trail[n - 2].event.reason, "failed: export job crashed");
    let attention = &trail[n - 1].event;
    assert_eq!(
        attention.reason,
        format!("task tasks/{} failed", tasks[0].id)
    );
    assert_eq!(attention.actor, Actor::system());

    // The other processor finishes; the request waits for a person.
    done(
        operate(
            &store,
            Q,
            tasks[1].id,
            &complete(&token(&q[0]), TaskOutcome::Done),
            at(200),
        )
        .await,
    );
    assert_eq!(get(&store, &request).await, flagged);
    assert_eq!(events(&store, &request).await.len(), n + 1);
}

async fn tasks_are_listed_by_visible_state_in_pages(store: Arc<dyn Store>) {
    let mut requests = BTreeMap::new();
    let mut all = Vec::new();
    for (created, dues) in [(0, vec![10, 20]), (5, vec![30, 40, 50]), (5, vec![60])] {
        let plan: Vec<(&str, i64)> = dues.iter().map(|d| (P, *d)).chain([(Q, 1)]).collect();
        let (request, tasks) =
            insert_with_tasks(&store, &Build::request("acme").created(created), &plan).await;
        all.extend(tasks.into_iter().filter(|t| t.processor_id == P));
        requests.insert(request.id, request);
    }
    // Claimed by due time: the tasks due at 10, 20 and 30.
    let claimed = claim(&store, P, 3, 50, at(100)).await;
    done(
        operate(
            &store,
            P,
            claimed[0].task.id,
            &complete(&token(&claimed[0]), TaskOutcome::Done),
            at(110),
        )
        .await,
    );

    let mut stored = Vec::new();
    for task in &all {
        let request = &requests[&task.request];
        stored.push(view_of(stored_task(&store, task).await, request));
    }
    stored.sort_by_key(|v| (v.task.create_time, v.task.id));

    for now in [at(120), at(150)] {
        for page in [1, 2, 4, 100] {
            assert_eq!(
                list_all_tasks(&store, P, None, page, now).await,
                stored,
                "page size {page}"
            );
        }
        for state in TaskState::ALL {
            let expected: Vec<TaskView> = stored
                .iter()
                .filter(|v| v.task.visible_state(now) == state)
                .cloned()
                .collect();
            let listed = list_all_tasks(&store, P, Some(state), 2, now).await;
            assert_eq!(listed, expected, "{state:?} at {now}");
        }
    }
    // At 120 two leases run; at 150 they have ended.
    let leased = |now| list_all_tasks(&store, P, Some(TaskState::Leased), 10, now);
    assert_eq!(leased(at(120)).await.len(), 2);
    assert!(leased(at(150)).await.is_empty());
    let pending = list_all_tasks(&store, P, Some(TaskState::Pending), 10, at(150)).await;
    assert_eq!(pending.len(), 5);
    assert!(
        list_all_tasks(&store, "nobody", None, 10, at(150))
            .await
            .is_empty()
    );
    let theirs = list_all_tasks(&store, Q, None, 10, at(150)).await;
    assert_eq!(theirs.len(), 3);
    assert!(theirs.iter().all(|v| v.task.processor_id == Q));
}

/// One lease as a claimer received it.
#[derive(Clone, Debug)]
struct Lease {
    task: Uuid,
    token: String,
    attempt: i32,
    claimed_at: Timestamp,
    expires: Timestamp,
}

async fn concurrent_claimers_never_share_a_lease(config: StoreConfig) {
    const REQUESTS: usize = 50;
    const TASKS_PER_REQUEST: usize = 10;
    const TASKS: usize = REQUESTS * TASKS_PER_REQUEST;
    const CLAIMERS: usize = 8;
    // In ticks of the shared clock: every call reads it once and moves it
    // on by a millisecond, so leases end while the claimers are busy.
    const LEASE: SignedDuration = SignedDuration::from_millis(150);

    // Two stores on one database, as two instances of the service.
    let stores = [open(&config).await, open(&config).await];
    let mut requests = Vec::new();
    let mut index = BTreeMap::new();
    for r in 0..REQUESTS {
        let plan: Vec<(&str, i64)> = (0..TASKS_PER_REQUEST)
            .map(|t| (P, (t * REQUESTS + r) as i64))
            .collect();
        let (request, tasks) =
            insert_with_tasks(&stores[r % 2], &Build::request("acme"), &plan).await;
        for task in tasks {
            let i = index.len();
            index.insert(task.id, i);
        }
        requests.push(request);
    }
    let index = Arc::new(index);

    let clock = Arc::new(AtomicI64::new(at(1_000).as_microsecond()));
    let finished = Arc::new(AtomicUsize::new(0));
    let leases = Arc::new(Mutex::new(Vec::<Lease>::new()));
    let completions = Arc::new(Mutex::new(Vec::<(Uuid, String)>::new()));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|c| {
            let store = Arc::clone(&stores[c % 2]);
            let (clock, finished, leases, completions, index) = (
                Arc::clone(&clock),
                Arc::clone(&finished),
                Arc::clone(&leases),
                Arc::clone(&completions),
                Arc::clone(&index),
            );
            tokio::spawn(async move {
                let tick = || {
                    Timestamp::from_microsecond(clock.fetch_add(1_000, Ordering::SeqCst)).unwrap()
                };
                let started = std::time::Instant::now();
                while finished.load(Ordering::SeqCst) < TASKS {
                    assert!(
                        started.elapsed() < Duration::from_secs(240),
                        "the claimers are stuck"
                    );
                    let now = tick();
                    let got = store.claim_tasks(P, 5, LEASE, now).await.unwrap();
                    if got.is_empty() {
                        // A claimer's pause before it asks again, as a real
                        // processor's; not a wait for background work.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    for view in &got {
                        leases.lock().unwrap().push(Lease {
                            task: view.task.id,
                            token: token(view),
                            attempt: view.task.attempt,
                            claimed_at: now,
                            expires: view.task.lease_expire_time.unwrap(),
                        });
                    }
                    for view in got {
                        let i = index[&view.task.id];
                        let op = complete(&token(&view), TaskOutcome::Done);
                        let now = match (view.task.attempt, i % 10) {
                            // A claimer that crashed: the lease runs out.
                            (1, 0) => continue,
                            // One that answers just too late.
                            (1, 5) => view.task.lease_expire_time.unwrap(),
                            _ => tick(),
                        };
                        match store
                            .task_operation(P, view.task.id, &op, now)
                            .await
                            .unwrap()
                        {
                            TaskOpResult::Done(done, _) => {
                                assert_eq!(done.task.state, TaskState::Completed);
                                completions
                                    .lock()
                                    .unwrap()
                                    .push((view.task.id, token(&view)));
                                finished.fetch_add(1, Ordering::SeqCst);
                            }
                            TaskOpResult::Refused(e) if e.reason == "LEASE_NOT_HELD" => {}
                            other => panic!("unexpected completion result: {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.unwrap();
    }

    // Per task, in the order the leases were granted (their attempts):
    // attempts 1, 2, 3…, every token new, and each lease granted no
    // earlier than the previous one ended.
    let leases = leases.lock().unwrap().clone();
    let mut by_task: BTreeMap<Uuid, Vec<Lease>> = BTreeMap::new();
    for lease in leases {
        by_task.entry(lease.task).or_default().push(lease);
    }
    assert_eq!(by_task.len(), TASKS, "every task was delivered");
    let mut redelivered = 0;
    for (task, mut granted) in by_task.clone() {
        granted.sort_by_key(|l| l.attempt);
        let attempts: Vec<i32> = granted.iter().map(|l| l.attempt).collect();
        assert_eq!(
            attempts,
            (1..=granted.len() as i32).collect::<Vec<_>>(),
            "task {task}: no attempt handed out twice"
        );
        for pair in granted.windows(2) {
            assert!(
                pair[1].claimed_at >= pair[0].expires,
                "task {task}: two live leases at once: {pair:?}"
            );
            assert_ne!(pair[0].token, pair[1].token);
        }
        if granted.len() > 1 {
            redelivered += 1;
        }
    }
    assert!(
        redelivered >= TASKS / 10 * 2,
        "the abandoned and late leases were redelivered ({redelivered})"
    );

    // Each task was completed exactly once, under its last lease.
    let completions = completions.lock().unwrap().clone();
    assert_eq!(completions.len(), TASKS);
    let mut completed: BTreeMap<Uuid, String> = BTreeMap::new();
    for (task, token) in completions {
        assert!(
            completed.insert(task, token).is_none(),
            "{task} completed twice"
        );
    }
    for (task, granted) in &by_task {
        let last = granted.iter().max_by_key(|l| l.attempt).unwrap();
        assert_eq!(completed[task], last.token);
    }

    // The store agrees: every task completed once, every request
    // completed once, every trail numbered without a gap.
    for request in &requests {
        let tasks = stored_tasks(&stores[0], request).await;
        assert_eq!(tasks.len(), TASKS_PER_REQUEST);
        assert!(tasks.iter().all(|t| t.state == TaskState::Completed));
        assert_eq!(get(&stores[1], request).await.state, State::Completed);
        let trail = events(&stores[0], request).await;
        assert_eq!(
            sequences(&trail),
            (1..=trail.len() as i64).collect::<Vec<_>>()
        );
        for task in &tasks {
            let count = |event_type| {
                trail
                    .iter()
                    .filter(|e| e.event.event_type == event_type && e.event.task == Some(task.id))
                    .count()
            };
            assert_eq!(count(EventType::TaskCompleted), 1);
            assert_eq!(count(EventType::TaskClaimed), by_task[&task.id].len());
        }
        let closed = trail
            .iter()
            .filter(|e| e.event.event_type == EventType::Closed)
            .count();
        assert_eq!(closed, 1);
        assert_eq!(trail.last().unwrap().event.event_type, EventType::Closed);
    }
}

// ---- SLA watchdog and leases ----

/// The trace context of a submitting call, with vendor state.
fn origin() -> TraceOrigin {
    TraceOrigin {
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        tracestate: Some("vendor=opaque".to_owned()),
    }
}

fn marks(at_risk: Option<i64>, breached: Option<i64>) -> SlaMarks {
    SlaMarks {
        at_risk: at_risk.map(at),
        breached: breached.map(at),
    }
}

/// Every request a sweep listing yields, `page` per page.
async fn sweep_requests(store: &Arc<dyn Store>, due_by: i64, page: u32) -> Vec<DataSubjectRequest> {
    let mut all: Vec<DataSubjectRequest> = Vec::new();
    loop {
        let after = all.last().map(|r| SweepCursor {
            time: r.due_time,
            id: r.id,
        });
        let got = store
            .sla_requests(at(due_by), after.as_ref(), page)
            .await
            .unwrap();
        assert!(got.len() <= page as usize);
        let last_page = got.len() < page as usize;
        all.extend(got);
        if last_page {
            return all;
        }
    }
}

/// Every task a sweep listing yields, `page` per page.
async fn sweep_tasks(store: &Arc<dyn Store>, due_by: i64, page: u32) -> Vec<Task> {
    let mut all: Vec<Task> = Vec::new();
    loop {
        let after = all.last().map(|t| SweepCursor {
            time: t.due_time,
            id: t.id,
        });
        let got = store
            .sla_tasks(at(due_by), after.as_ref(), page)
            .await
            .unwrap();
        assert!(got.len() <= page as usize);
        let last_page = got.len() < page as usize;
        all.extend(got);
        if last_page {
            return all;
        }
    }
}

/// The ids of `requests` sorted by `(time, id)` as `time` says.
fn in_sweep_order(
    requests: &[&DataSubjectRequest],
    time: impl Fn(&DataSubjectRequest) -> Timestamp,
) -> Vec<Uuid> {
    let mut keyed: Vec<_> = requests.iter().map(|r| (time(r), r.id)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, id)| id).collect()
}

async fn updates_keep_the_origin_and_the_sla_marks(store: Arc<dyn Store>) {
    let (mut request, event) = Build::request("acme").due(1000).build();
    request.origin = Some(origin());
    store
        .insert_request(&request, &Effects::event(event))
        .await
        .unwrap();
    assert!(
        store
            .record_request_finding(&request, Finding::AtRisk, at(10))
            .await
            .unwrap()
    );
    let stored = get(&store, &request).await;
    assert_eq!(stored.sla, marks(Some(10), None));
    assert_eq!(stored.version, request.version, "a report is not a change");
    assert_eq!(stored.origin, Some(origin()));

    // A call's update, from a copy read before the report, writes neither.
    let expected = request.version;
    request.origin = None;
    let e = change(
        &mut request,
        State::NeedsAttention,
        EventType::NeedsAttention,
        20,
    );
    store
        .update_request(&request, expected, &Effects::event(e))
        .await
        .unwrap();
    let stored = get(&store, &request).await;
    assert_eq!(stored.state, State::NeedsAttention);
    assert_eq!(stored.origin, Some(origin()));
    assert_eq!(stored.sla, marks(Some(10), None));
}

async fn open_requests_are_counted_by_state_across_controllers(store: Arc<dyn Store>) {
    let open_by_state = |store: Arc<dyn Store>| async move {
        let mut counts = store
            .backlog(at(10_000), secs(500))
            .await
            .unwrap()
            .open_by_state;
        counts.sort_by_key(|(state, _)| state.as_str());
        counts
    };
    assert_eq!(open_by_state(store.clone()).await, vec![]);
    let states = [
        ("acme", State::InProgress),
        ("acme", State::InProgress),
        ("acme", State::AwaitingGuardianConsent),
        ("acme", State::Completed),
        ("acme", State::AwaitingIdentityVerification),
        ("other", State::InProgress),
        ("other", State::NeedsAttention),
        ("other", State::AwaitingClarification),
        ("other", State::AwaitingClarification),
        ("other", State::Cancelled),
        ("other", State::Refused),
        ("other", State::Expired),
    ];
    for (controller, state) in states {
        insert_new(&store, &Build::request(controller).in_state(state)).await;
    }
    assert_eq!(
        open_by_state(store).await,
        vec![
            (State::AwaitingClarification, 2),
            (State::AwaitingGuardianConsent, 1),
            (State::AwaitingIdentityVerification, 1),
            (State::InProgress, 3),
            (State::NeedsAttention, 1),
        ]
    );
}

async fn the_backlog_counts_deadline_windows_and_each_processors_open_tasks(store: Arc<dyn Store>) {
    let now = at(10_000);
    let week = 7 * 24 * 3_600;
    let empty = store.backlog(now, secs(500)).await.unwrap();
    assert_eq!(empty.at, now);
    assert_eq!(empty.deadlines, DeadlineCounts::default());
    assert!(empty.open_by_state.is_empty() && empty.processors.is_empty());

    // Overdue: due at or before now. At risk: within 500 s after now. Due
    // soon: within a week after now. Closed requests count nowhere.
    for (controller, due, state) in [
        ("acme", 9_000, State::InProgress),
        ("other", 10_000, State::NeedsAttention),
        ("acme", 10_001, State::AwaitingGuardianConsent),
        ("acme", 10_500, State::InProgress),
        ("other", 10_501, State::InProgress),
        ("acme", 10_000 + week, State::InProgress),
        ("acme", 10_001 + week, State::InProgress),
        ("acme", 9_000, State::Completed),
        ("acme", 10_100, State::Cancelled),
    ] {
        insert_new(&store, &Build::request(controller).due(due).in_state(state)).await;
    }
    // A registered processor without work; P with two pending tasks and
    // a leased one past its due time; Q with one finished task.
    let idle = Processor {
        id: "idle-vendor".to_owned(),
        display_name: "idle".to_owned(),
        contact: None,
        create_time: at(0),
    };
    assert_eq!(
        store.create_processor(&idle).await.unwrap(),
        Created::Created
    );
    let (_, tasks) = insert_with_tasks(
        &store,
        &Build::request("acme").created(100),
        &[(P, 9_999), (P, 20_000)],
    )
    .await;
    insert_with_tasks(
        &store,
        &Build::request("other").created(300),
        &[(P, 30_000), (Q, 15_000)],
    )
    .await;
    let claimed = claim(&store, P, 1, 60_000, at(400)).await;
    assert_eq!(claimed[0].task.id, tasks[0].id, "the earliest due");
    let claimed = claim(&store, Q, 1, 60, at(400)).await;
    done(
        operate(
            &store,
            Q,
            claimed[0].task.id,
            &complete(&token(&claimed[0]), TaskOutcome::Done),
            at(401),
        )
        .await,
    );

    let backlog = store.backlog(now, secs(500)).await.unwrap();
    assert_eq!(
        backlog.deadlines,
        DeadlineCounts {
            overdue: 2,
            at_risk: 2,
            due_soon: 4,
        }
    );
    let mut by_state = backlog.open_by_state.clone();
    by_state.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        by_state,
        vec![
            (State::AwaitingGuardianConsent, 1),
            (State::InProgress, 7),
            (State::NeedsAttention, 1),
        ]
    );
    let processor = |id: &str, pending, leased, overdue, oldest: Option<i64>| ProcessorBacklog {
        processor_id: id.to_owned(),
        pending,
        leased,
        overdue,
        oldest_create_time: oldest.map(at),
    };
    assert_eq!(
        backlog.processors,
        vec![
            processor(P, 2, 1, 1, Some(100)),
            processor("idle-vendor", 0, 0, 0, None),
        ],
        "Q, unregistered and without open tasks, has no row"
    );
}

async fn the_sweep_lists_open_requests_by_deadline(store: Arc<dyn Store>) {
    let acme = |due| Build::request("acme").due(due);
    let a = insert_new(&store, &acme(100)).await;
    let b = insert_new(&store, &Build::request("other").due(200)).await;
    let c = insert_new(&store, &acme(200).in_state(State::NeedsAttention)).await;
    let d = insert_new(&store, &acme(300).in_state(State::AwaitingGuardianConsent)).await;
    let at_risk = insert_new(&store, &acme(250)).await;
    // Not listed: due later, closed, or its breach already reported.
    insert_new(&store, &acme(501)).await;
    insert_new(&store, &acme(150).in_state(State::Completed)).await;
    insert_new(&store, &acme(150).in_state(State::Cancelled)).await;
    let breached = insert_new(&store, &acme(50)).await;
    assert!(
        store
            .record_request_finding(&breached, Finding::Breached, at(60))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_request_finding(&at_risk, Finding::AtRisk, at(60))
            .await
            .unwrap()
    );

    let expected = in_sweep_order(&[&a, &b, &c, &d, &at_risk], |r| r.due_time);
    for page in [1, 2, 10] {
        assert_eq!(ids(&sweep_requests(&store, 500, page).await), expected);
    }
    // The bound is inclusive.
    assert_eq!(ids(&sweep_requests(&store, 100, 10).await), vec![a.id]);
    let listed = sweep_requests(&store, 500, 10).await;
    let at_risk = listed.iter().find(|r| r.id == at_risk.id).unwrap();
    assert_eq!(at_risk.sla, marks(Some(60), None));
}

async fn a_request_finding_is_recorded_once_with_its_event(store: Arc<dyn Store>) {
    let request = insert_new(&store, &Build::request("acme").due(1000)).await;
    let read = get(&store, &request).await;
    assert!(
        store
            .record_request_finding(&read, Finding::AtRisk, at(900))
            .await
            .unwrap()
    );
    // A second sweeper with the same read: already reported, nothing written.
    assert!(
        !store
            .record_request_finding(&read, Finding::AtRisk, at(901))
            .await
            .unwrap()
    );
    let reported = get(&store, &request).await;
    assert_eq!(reported.sla, marks(Some(900), None));
    assert_eq!(reported.version, read.version);
    let trail = events(&store, &request).await;
    assert_eq!(trail.len(), 2);
    let at_risk = gdpr_intake::domain::sla::request_event(&read, Finding::AtRisk, at(900));
    assert_eq!(trail[1].event, at_risk);
    assert_eq!(trail[1].event.event_type, EventType::SlaAtRisk);
    assert_eq!(trail[1].event.actor, Actor::system());

    // A call changed the request since: the old read is stale.
    let mut changed = reported.clone();
    let e = change(
        &mut changed,
        State::NeedsAttention,
        EventType::NeedsAttention,
        950,
    );
    store
        .update_request(&changed, reported.version, &Effects::event(e))
        .await
        .unwrap();
    assert!(
        !store
            .record_request_finding(&reported, Finding::Breached, at(1001))
            .await
            .unwrap()
    );
    let fresh = get(&store, &request).await;
    assert!(
        store
            .record_request_finding(&fresh, Finding::Breached, at(1001))
            .await
            .unwrap()
    );
    let stored = get(&store, &request).await;
    assert_eq!(stored.sla, marks(Some(900), Some(1001)));
    let types: Vec<EventType> = events(&store, &request)
        .await
        .iter()
        .map(|e| e.event.event_type)
        .collect();
    assert_eq!(
        types,
        [
            EventType::Submitted,
            EventType::SlaAtRisk,
            EventType::NeedsAttention,
            EventType::SlaBreached
        ]
    );
    let breached = events(&store, &request).await.pop().unwrap().event;
    assert_eq!(
        (breached.from_state, breached.to_state),
        (Some(State::NeedsAttention), State::NeedsAttention)
    );
}

async fn requests_past_the_consent_window_are_listed_by_receipt(store: Arc<dyn Store>) {
    let waiting = |received| {
        Build::request("acme")
            .in_state(State::AwaitingGuardianConsent)
            .received(received)
    };
    let a = insert_new(&store, &waiting(10)).await;
    let b = insert_new(&store, &waiting(20)).await;
    let c = insert_new(
        &store,
        &Build::request("other")
            .in_state(State::AwaitingGuardianConsent)
            .received(20),
    )
    .await;
    let d = insert_new(&store, &waiting(30)).await;
    // Not listed: received at the bound or later, or not awaiting consent.
    insert_new(&store, &waiting(50)).await;
    insert_new(&store, &Build::request("acme").received(5)).await;
    insert_new(&store, &waiting(5).in_state(State::Expired)).await;

    let expected = in_sweep_order(&[&a, &b, &c, &d], |r| r.received_at);
    for page in [1, 3, 10] {
        let mut all: Vec<DataSubjectRequest> = Vec::new();
        loop {
            let after = all.last().map(|r| SweepCursor {
                time: r.received_at,
                id: r.id,
            });
            let got = store
                .awaiting_consent_since(at(50), after.as_ref(), page)
                .await
                .unwrap();
            let last_page = got.len() < page as usize;
            all.extend(got);
            if last_page {
                break;
            }
        }
        assert_eq!(ids(&all), expected, "{page} per page");
    }
}

async fn the_sweep_lists_open_tasks_by_due_time(store: Arc<dyn Store>) {
    let (_, tasks) = insert_with_tasks(
        &store,
        &Build::request("acme"),
        &[(P, 100), (Q, 200), (P, 900)],
    )
    .await;
    let (_, other) = insert_with_tasks(&store, &Build::request("other"), &[(P, 150)]).await;
    let (_, finished) = insert_with_tasks(&store, &Build::request("acme"), &[(Q, 120)]).await;
    let claimed = claim(&store, Q, 1, 60, at(1)).await;
    assert_eq!(claimed[0].task.id, finished[0].id);
    done(
        operate(
            &store,
            Q,
            finished[0].id,
            &complete(&token(&claimed[0]), TaskOutcome::Done),
            at(2),
        )
        .await,
    );
    assert!(
        store
            .record_task_finding(&tasks[0], Finding::Breached, at(101))
            .await
            .unwrap()
    );

    // Open, due by 500, breach not reported: the other controller's task and
    // the one to Q (leases do not matter).
    let expected = vec![other[0].id, tasks[1].id];
    for page in [1, 2, 10] {
        assert_eq!(task_ids_of(&sweep_tasks(&store, 500, page).await), expected);
    }
    let all = sweep_tasks(&store, 1000, 10).await;
    assert_eq!(
        task_ids_of(&all),
        vec![other[0].id, tasks[1].id, tasks[2].id]
    );
}

async fn a_task_finding_is_recorded_once_on_its_requests_trail(store: Arc<dyn Store>) {
    let (request, tasks) = insert_with_tasks(&store, &Build::request("acme"), &[(P, 1000)]).await;
    let task = &tasks[0];
    assert!(
        store
            .record_task_finding(task, Finding::AtRisk, at(900))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_task_finding(task, Finding::AtRisk, at(901))
            .await
            .unwrap(),
        "the same read again: already reported"
    );
    let trail = events(&store, &request).await;
    let at_risk = &trail.last().unwrap().event;
    assert_eq!(
        *at_risk,
        gdpr_intake::domain::sla::task_event(&request, task, Finding::AtRisk, at(900))
    );
    assert_eq!(at_risk.task, Some(task.id));
    assert_eq!(get(&store, &request).await.sla, SlaMarks::default());

    // A claim writes the task but keeps its marks.
    let claimed = claim(&store, P, 1, 600, at(950)).await;
    assert_eq!(claimed[0].task.sla, marks(Some(900), None));
    assert!(
        store
            .record_task_finding(&claimed[0].task, Finding::Breached, at(1001))
            .await
            .unwrap()
    );
    let listed = sweep_tasks(&store, 5000, 10).await;
    assert!(listed.is_empty(), "a reported breach is not swept again");

    // A finished task is no longer reported.
    let finished = done(
        operate(
            &store,
            P,
            task.id,
            &complete(&token(&claimed[0]), TaskOutcome::Done),
            at(1002),
        )
        .await,
    );
    assert!(
        !store
            .record_task_finding(&finished.task, Finding::AtRisk, at(1003))
            .await
            .unwrap()
    );
    let types: Vec<EventType> = events(&store, &request)
        .await
        .iter()
        .map(|e| e.event.event_type)
        .collect();
    assert_eq!(
        types,
        [
            EventType::Submitted,
            EventType::TaskCreated,
            EventType::SlaAtRisk,
            EventType::TaskClaimed,
            EventType::SlaBreached,
            EventType::TaskCompleted,
            EventType::Closed,
        ]
    );
}

async fn a_lease_has_one_holder_until_it_lapses_or_is_released(store: Arc<dyn Store>) {
    const L: &str = "sla-watchdog";
    let take = |holder: &'static str, now: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .acquire_lease(L, holder, at(now), secs(60))
                .await
                .unwrap()
        }
    };
    let held_by = |holder: &str, until: i64| {
        Some(store::Lease {
            holder: holder.to_owned(),
            expire_time: at(until),
        })
    };
    assert_eq!(store.lease(L).await.unwrap(), None);
    assert!(take("a", 0).await);
    assert_eq!(store.lease(L).await.unwrap(), held_by("a", 60));
    assert!(!take("b", 30).await);
    assert!(!take("b", 59).await);
    // The holder renews before it lapses.
    assert!(take("a", 50).await);
    assert_eq!(store.lease(L).await.unwrap(), held_by("a", 110));
    assert!(!take("b", 109).await);
    // Lapsed: anyone may take it.
    assert!(take("b", 110).await);
    assert_eq!(store.lease(L).await.unwrap(), held_by("b", 170));
    assert!(!take("a", 120).await);
    // Only the holder gives it up.
    store.release_lease(L, "a").await.unwrap();
    assert_eq!(store.lease(L).await.unwrap(), held_by("b", 170));
    store.release_lease(L, "b").await.unwrap();
    assert_eq!(store.lease(L).await.unwrap(), None);
    assert!(take("a", 121).await);
    // Another name is another lease.
    assert!(
        store
            .acquire_lease("another-job", "b", at(121), secs(60))
            .await
            .unwrap()
    );
    assert_eq!(store.lease(L).await.unwrap(), held_by("a", 181));
}

async fn concurrent_lease_takers_get_it_once(config: StoreConfig) {
    // Two pools stand for two replicas.
    let stores = [open(&config).await, open(&config).await];
    for round in 0..5 {
        let name = format!("job-{round}");
        let takers: Vec<_> = (0..16)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                let name = name.clone();
                tokio::spawn(async move {
                    let holder = format!("replica-{i}");
                    let got = store
                        .acquire_lease(&name, &holder, at(round), secs(60))
                        .await
                        .unwrap();
                    got.then_some(holder)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for taker in takers {
            winners.extend(taker.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let lease = stores[0].lease(&name).await.unwrap().unwrap();
        assert_eq!(lease.holder, winners[0]);
    }
}

async fn concurrent_sweepers_record_a_finding_once(config: StoreConfig) {
    let stores = [open(&config).await, open(&config).await];
    let mut requests = Vec::new();
    for _ in 0..6 {
        requests.push(
            insert_with_tasks(&stores[0], &Build::request("acme").due(1000), &[(P, 500)]).await,
        );
    }
    let mut reports = Vec::new();
    for (request, tasks) in &requests {
        for i in 0..4 {
            let store = Arc::clone(&stores[i % 2]);
            let request = request.clone();
            let task = tasks[0].clone();
            reports.push(tokio::spawn(async move {
                if i < 2 {
                    store
                        .record_request_finding(&request, Finding::AtRisk, at(900))
                        .await
                } else {
                    store
                        .record_task_finding(&task, Finding::Breached, at(900))
                        .await
                }
            }));
        }
    }
    let mut recorded = 0;
    for report in reports {
        if report.await.unwrap().unwrap() {
            recorded += 1;
        }
    }
    // One request and one task finding per request.
    assert_eq!(recorded, 2 * requests.len());
    for (request, _) in &requests {
        let trail = events(&stores[1], request).await;
        let count = |t: EventType| trail.iter().filter(|e| e.event.event_type == t).count();
        assert_eq!(
            (count(EventType::SlaAtRisk), count(EventType::SlaBreached)),
            (1, 1)
        );
    }
}

// ---- PostgreSQL's plans ----

/// The plan PostgreSQL keeps for `statement`, whose `$1` is a tenant or
/// processor (text) and `$2` an id (uuid), made as on an empty table: a
/// generic plan, the kind a foreign-key check or a prepared statement
/// keeps once made.
async fn generic_plan(conn: &mut sqlx::PgConnection, statement: &str) -> String {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE probe (text, uuid) AS {statement}"
    )))
    .execute(&mut *conn)
    .await
    .expect("the statement prepares");
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE probe ('acme', '0190a0d4-0000-7000-8000-000000000000')",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the plan is explained");
    sqlx::query("DEALLOCATE probe")
        .execute(&mut *conn)
        .await
        .expect("the statement is dropped");
    lines.join("\n")
}

/// On a table of a few rows every index that leads with the tenant costs
/// a lookup by key and tenant the same as the key; a kept plan that took a
/// listing index would walk all of a tenant's requests at each lookup as
/// the table grows. The listing indexes carry a predicate only listings
/// state, so lookups cannot take them, and listings still do.
#[tokio::test]
async fn postgres_lookups_by_key_never_plan_a_listing_index() {
    use sqlx::Connection;
    let Some(config) = db::postgres_config().await else {
        return;
    };
    let _store = open(&config).await;
    let url = config.database_url.as_deref().expect("a postgres url");
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("postgres connects");
    for setting in [
        "SET plan_cache_mode = force_generic_plan",
        "SET enable_seqscan = off",
        "SET enable_bitmapscan = off",
    ] {
        sqlx::query(setting)
            .execute(&mut conn)
            .await
            .expect("a setting");
    }
    let lookups = [
        // The check of the foreign keys of tasks and request_events, as
        // PostgreSQL words it.
        "SELECT 1 FROM ONLY data_subject_requests x WHERE id = $2 AND controller_id = $1 \
         FOR KEY SHARE OF x",
        "SELECT id FROM data_subject_requests WHERE id = $2 AND controller_id = $1",
        "SELECT id FROM tasks WHERE processor_id = $1 AND id = $2",
    ];
    for statement in lookups {
        let plan = generic_plan(&mut conn, statement).await;
        assert!(!plan.contains("_list"), "{statement}\n{plan}");
        assert!(plan.contains(" using "), "{statement}\n{plan}");
    }
    let listings = [
        (
            "data_subject_requests_list ",
            "SELECT id FROM data_subject_requests WHERE controller_id = $1 \
             AND controller_id <> '' AND (create_time, id) > (0, $2) \
             ORDER BY create_time, id LIMIT 20",
        ),
        (
            "data_subject_requests_list_by_state ",
            "SELECT id FROM data_subject_requests WHERE controller_id = $1 \
             AND controller_id <> '' AND (create_time, id) > (0, $2) \
             AND state = 'in_progress' ORDER BY create_time, id LIMIT 20",
        ),
        (
            "tasks_list ",
            "SELECT id FROM tasks WHERE processor_id = $1 \
             AND processor_id <> '' AND (create_time, id) > (0, $2) \
             ORDER BY create_time, id LIMIT 20",
        ),
    ];
    for (index, statement) in listings {
        let plan = generic_plan(&mut conn, statement).await;
        assert!(plan.contains(index), "{statement}\n{plan}");
    }
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

// ---- retention purge ----

/// Inserts the request `build` makes, with every optional part filled in,
/// and refuses it at `closed`; returns it as stored.
async fn insert_closed(store: &Arc<dyn Store>, build: &Build, closed: i64) -> DataSubjectRequest {
    let mut r = insert_new(store, &fresh(build)).await;
    let version = r.version;
    fill_every_optional_field(&mut r);
    r.close_time = Some(at(closed));
    let e = change(&mut r, State::Refused, EventType::Closed, closed);
    store
        .update_request(&r, version, &Effects::event(e))
        .await
        .unwrap();
    get(store, &r).await
}

/// `build` under a new `request_id`, so that it stores another request.
fn fresh(build: &Build) -> Build {
    Build {
        request_id: Uuid::new_v4(),
        ..build.clone()
    }
}

/// Every request the purge listing yields for `closed_by`, `page` per page.
async fn purge_sweep(store: &Arc<dyn Store>, closed_by: i64, page: u32) -> Vec<DataSubjectRequest> {
    let mut all: Vec<DataSubjectRequest> = Vec::new();
    loop {
        let after = all.last().map(|r| SweepCursor {
            time: r.close_time.unwrap(),
            id: r.id,
        });
        let got = store
            .purge_due(at(closed_by), after.as_ref(), page)
            .await
            .unwrap();
        assert!(got.len() <= page as usize);
        let last_page = got.len() < page as usize;
        all.extend(got);
        if last_page {
            return all;
        }
    }
}

async fn closed_requests_past_retention_are_listed_by_close_time(store: Arc<dyn Store>) {
    let acme = Build::request("acme");
    let first = insert_closed(&store, &acme, 300).await;
    let other_tenant = insert_closed(&store, &Build::request("globex"), 200).await;
    let same_time = insert_closed(&store, &acme, 300).await;
    let at_the_bound = insert_closed(&store, &acme, 400).await;
    let too_recent = insert_closed(&store, &acme, 401).await;
    let open = insert_new(&store, &fresh(&acme)).await;
    let purged = insert_closed(&store, &acme, 100).await;
    assert!(store.purge_request(&purged, at(150)).await.unwrap());

    for page in [1, 2, 10] {
        let listed = purge_sweep(&store, 400, page).await;
        assert_eq!(
            ids(&listed),
            in_sweep_order(&[&first, &other_tenant, &same_time, &at_the_bound], |r| r
                .close_time
                .unwrap()),
            "page of {page}"
        );
    }
    let listed = ids(&purge_sweep(&store, 10_000, 10).await);
    assert!(listed.contains(&too_recent.id));
    assert!(!listed.contains(&open.id) && !listed.contains(&purged.id));
}

async fn a_purge_empties_the_personal_data_once_and_keeps_the_trail(config: StoreConfig) {
    let store = open(&config).await;
    let build = Build::request("acme")
        .of_type(RequestType::Rectification)
        .details("my address changed")
        .correction("address", "1 Main St");
    let read = insert_closed(&store, &build, 200).await;
    assert!(read.guardian_consent.is_some() && !read.corrections.is_empty());
    let untouched = insert_closed(&store, &build, 200).await;
    let open_one = insert_new(&store, &fresh(&build)).await;

    assert!(store.purge_request(&read, at(1000)).await.unwrap());

    let purged = get(&store, &read).await;
    let mut expected = read.clone();
    let event = expected.purge(at(1000)).unwrap();
    assert_eq!(
        purged, expected,
        "what the domain's purge leaves, as stored"
    );
    assert_eq!(purged.purge_time(), Some(at(1000)));
    assert_eq!(
        (purged.subject.email(), purged.subject.date_of_birth()),
        (None, None)
    );
    assert_eq!(
        purged.guardian_consent.as_ref().unwrap().guardian.identity,
        Personal::Purged { at: at(1000) }
    );
    assert!(purged.details.is_empty() && purged.corrections.is_empty());
    assert_eq!(
        (purged.state, purged.close_time, &purged.closure),
        (read.state, read.close_time, &read.closure)
    );
    let trail = events(&store, &read).await;
    assert_eq!(trail.len(), 3);
    assert_eq!(trail[2].event, event);
    assert_eq!(trail[2].event.event_type, EventType::Purged);
    assert_eq!(trail[2].event.actor, Actor::system());

    // Purging again, from the old read or the new one, writes nothing.
    assert!(!store.purge_request(&read, at(1001)).await.unwrap());
    assert!(!store.purge_request(&purged, at(1002)).await.unwrap());
    assert_eq!(get(&store, &read).await, purged);
    assert_eq!(events(&store, &read).await.len(), 3);
    // An open request is not purged; another closed one is left as it was.
    assert!(!store.purge_request(&open_one, at(1003)).await.unwrap());
    assert_eq!(get(&store, &open_one).await, open_one);
    assert_eq!(get(&store, &untouched).await, untouched);

    let report = verify(&store, &config, 2).await;
    assert_eq!(report.finding, None, "the trail still verifies");
    assert_eq!((report.requests, report.events), (3, 3 + 2 + 1));
}

/// A group too large for one statement's bind parameters on SQLite (its
/// request rows are written there in several statements; PostgreSQL sends
/// the group as arrays in one), each request with a fan-out of two
/// tasks: every request, task and event is stored, and every audit trail,
/// chained before anything was written, verifies.
async fn a_large_group_is_split_into_statements_and_its_trails_verify(config: StoreConfig) {
    let store = open(&config).await;
    let mut batch = Vec::new();
    for i in 0..800 {
        let (request, submitted) = Build::request(if i % 2 == 0 { "acme" } else { "beta" }).build();
        let tasks = vec![
            new_task(&request, P, 100 + i),
            new_task(&request, P, 200 + i),
        ];
        let mut events = vec![submitted];
        events.extend(tasks.iter().map(|t| task_created(&request, t)));
        batch.push((
            request,
            Effects {
                events,
                new_tasks: tasks,
                cancel_open_tasks: false,
                duplicate_window: None,
            },
        ));
    }
    let outcomes = store.insert_requests(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, InsertOutcome::Created)));
    for (request, effects) in batch.iter().step_by(97) {
        assert_eq!(get(&store, request).await, *request);
        let mut stored = stored_tasks(&store, request).await;
        let mut expected = effects.new_tasks.clone();
        stored.sort_by_key(|t| t.id);
        expected.sort_by_key(|t| t.id);
        assert_eq!(stored, expected);
        assert_eq!(sequences(&events(&store, request).await), vec![1, 2, 3]);
    }
    let report = verify(&store, &config, 100).await;
    assert_eq!(report.finding, None, "every trail verifies");
    assert_eq!((report.requests, report.events), (800, 2400));
}

/// Claims and task operations chain their events from the tip of the
/// request's chain kept on its row (migration 0003), interleaved with the
/// writers that read the last event instead: the trail stays numbered
/// 1, 2, 3… and verifies. With the tip emptied and migration 0003's
/// backfill run again, as on a database migrated with events already
/// written, the next writes chain on from the right event.
async fn task_writes_chain_on_from_the_tip_the_migration_carries(config: StoreConfig) {
    let store = open(&config).await;
    let (request, tasks) = insert_with_tasks(
        &store,
        &Build::request("acme"),
        &[(P, 100), (Q, 100), (P, 200)],
    )
    .await;
    let p = claim(&store, P, 1, 600, at(10)).await;
    done(
        operate(
            &store,
            P,
            p[0].task.id,
            &release(&token(&p[0]), Some("busy")),
            at(11),
        )
        .await,
    );
    // A watchdog finding goes through the other writer, between the task
    // writes.
    let read = get(&store, &request).await;
    assert!(
        store
            .record_request_finding(&read, Finding::AtRisk, at(12))
            .await
            .unwrap()
    );

    let backfill = include_str!("../../migrations/sqlite/0003_chain_tip.sql");
    assert_eq!(
        backfill.split_once("UPDATE").map(|(_, update)| update),
        include_str!("../../migrations/postgres/0003_chain_tip.sql")
            .split_once("UPDATE")
            .map(|(_, update)| update),
        "both backends carry the tip alike"
    );
    db::execute_raw(
        &config,
        "UPDATE data_subject_requests SET last_event_sequence = NULL, last_event_hash = NULL",
    )
    .await;
    let update = backfill.split_once("UPDATE").expect("the backfill").1;
    db::execute_raw_owned(&config, format!("UPDATE{update}")).await;

    let again = claim(&store, P, 2, 600, at(20)).await;
    assert_eq!(again.len(), 2, "both of P's tasks");
    let q = claim(&store, Q, 1, 600, at(20)).await;
    for (processor, view, outcome) in [
        (P, &again[0], TaskOutcome::Done),
        (P, &again[1], TaskOutcome::NoDataHeld),
        (Q, &q[0], TaskOutcome::Done),
    ] {
        done(
            operate(
                &store,
                processor,
                view.task.id,
                &complete(&token(view), outcome),
                at(30),
            )
            .await,
        );
    }
    assert_eq!(get(&store, &request).await.state, State::Completed);
    assert!(
        stored_tasks(&store, &request)
            .await
            .iter()
            .all(|t| t.state == TaskState::Completed)
    );

    let trail = events(&store, &request).await;
    assert_eq!(
        sequences(&trail),
        (1..=trail.len() as i64).collect::<Vec<_>>()
    );
    // submitted, three task_created, claim, release, at risk, three claims,
    // three completions, closed.
    assert_eq!(trail.len(), 1 + tasks.len() + 2 + 1 + 3 + 3 + 1);
    let report = verify(&store, &config, 10).await;
    assert_eq!(report.finding, None, "the trail verifies");
    assert_eq!((report.requests, report.events), (1, trail.len() as u64));
}

/// Many task operations at once, as the processors of a busy service
/// send them: on SQLite they share write transactions (one savepoint
/// each), on PostgreSQL each has its own. Each is answered on its own: a
/// refusal or a missing task among them changes nothing of the others',
/// every accepted completion is stored, and the trails verify.
async fn concurrent_task_operations_are_answered_each_on_its_own(config: StoreConfig) {
    const REQUESTS: usize = 24;
    let store = open(&config).await;
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let (_, created) =
            insert_with_tasks(&store, &Build::request("acme"), &[(P, 100 + i as i64)]).await;
        tasks.extend(created);
    }
    let claimed = claim(&store, P, REQUESTS as u32, 600, at(10)).await;
    assert_eq!(claimed.len(), REQUESTS);

    // Even tasks are completed with their token, odd ones with a wrong
    // one; and as many operations name a task that does not exist.
    let mut calls = Vec::new();
    for (i, view) in claimed.iter().enumerate() {
        let (id, good) = (view.task.id, token(view));
        let completing = Arc::clone(&store);
        calls.push(tokio::spawn(async move {
            let token = if i % 2 == 0 {
                good
            } else {
                "not-the-lease".to_owned()
            };
            let result = completing
                .task_operation(P, id, &complete(&token, TaskOutcome::Done), at(20))
                .await
                .unwrap();
            (i, result)
        }));
        let missing = Arc::clone(&store);
        calls.push(tokio::spawn(async move {
            let result = missing
                .task_operation(
                    P,
                    Uuid::new_v4(),
                    &complete("any", TaskOutcome::Done),
                    at(20),
                )
                .await
                .unwrap();
            (usize::MAX, result)
        }));
    }
    for call in calls {
        let (i, result) = call.await.unwrap();
        match i {
            usize::MAX => assert!(matches!(result, TaskOpResult::NotFound), "{result:?}"),
            i if i % 2 == 0 => {
                let TaskOpResult::Done(view, Some(moved)) = result else {
                    panic!("the completion is stored and completes its request: {result:?}");
                };
                assert_eq!(view.task.state, TaskState::Completed);
                assert_eq!(moved.state, State::Completed);
            }
            _ => assert_eq!(refused(result), "LEASE_NOT_HELD"),
        }
    }
    for (i, view) in claimed.iter().enumerate() {
        let stored = stored_task(&store, &view.task).await;
        let expected = if i % 2 == 0 {
            TaskState::Completed
        } else {
            TaskState::Leased
        };
        assert_eq!(stored.state, expected, "task {i}");
    }
    let report = verify(&store, &config, 10).await;
    assert_eq!(report.finding, None, "every trail verifies");
    // submitted, task_created, claimed; and completed and closed for half.
    assert_eq!(
        (report.requests, report.events),
        (REQUESTS as u64, (REQUESTS * 3 + REQUESTS) as u64)
    );
}

/// Single-task claims and the completions of one request's tasks, all at
/// once: on SQLite they share write transactions, where each work's first
/// read goes with the writes of the work before it, so it must see them.
/// No task is claimed twice, and each request is completed once, by
/// whichever completion finished its last task.
async fn claims_and_completions_at_once_see_each_others_writes(config: StoreConfig) {
    const REQUESTS: usize = 12;
    const TASKS_PER_REQUEST: usize = 3;
    const TASKS: usize = REQUESTS * TASKS_PER_REQUEST;
    let store = open(&config).await;
    let mut requests = Vec::new();
    for r in 0..REQUESTS {
        let plan: Vec<(&str, i64)> = (0..TASKS_PER_REQUEST)
            .map(|t| (P, 100 + (r * TASKS_PER_REQUEST + t) as i64))
            .collect();
        let (request, _) = insert_with_tasks(&store, &Build::request("acme"), &plan).await;
        requests.push(request);
    }

    let claims: Vec<_> = (0..TASKS + 4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { claim(&store, P, 1, 600, at(10)).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for call in claims {
        claimed.extend(call.await.unwrap());
    }
    let ids: HashSet<Uuid> = claimed.iter().map(|view| view.task.id).collect();
    assert_eq!(
        claimed.len(),
        TASKS,
        "every task claimed, the extra claims empty"
    );
    assert_eq!(ids.len(), TASKS, "no task claimed twice");

    let completions: Vec<_> = claimed
        .iter()
        .map(|view| {
            let store = Arc::clone(&store);
            let (id, op) = (view.task.id, complete(&token(view), TaskOutcome::Done));
            tokio::spawn(async move { store.task_operation(P, id, &op, at(20)).await.unwrap() })
        })
        .collect();
    let mut completed_requests = Vec::new();
    for call in completions {
        let TaskOpResult::Done(view, moved) = call.await.unwrap() else {
            panic!("every completion is accepted");
        };
        assert_eq!(view.task.state, TaskState::Completed);
        if let Some(moved) = moved {
            assert_eq!(moved.state, State::Completed);
            completed_requests.push(moved.id);
        }
    }
    completed_requests.sort();
    let mut expected: Vec<Uuid> = requests.iter().map(|r| r.id).collect();
    expected.sort();
    assert_eq!(completed_requests, expected, "each request completed once");
    for request in &requests {
        let tasks = stored_tasks(&store, request).await;
        assert!(tasks.iter().all(|t| t.state == TaskState::Completed));
    }
    let report = verify(&store, &config, 10).await;
    assert_eq!(report.finding, None, "every trail verifies");
    // submitted, a task_created, claimed and completed per task, closed.
    assert_eq!(
        (report.requests, report.events),
        (
            REQUESTS as u64,
            (REQUESTS * (2 + 3 * TASKS_PER_REQUEST)) as u64
        )
    );
}

/// A target is revoked once, whoever asks again; revocations list in the
/// order they were recorded, page after page.
async fn revocations_are_recorded_once_and_listed_in_order(store: Arc<dyn Store>) {
    use gdpr_intake::domain::revocation::{NewRevocation, RevocationTarget};
    let new = |target: RevocationTarget, second: i64| NewRevocation {
        target,
        reason: "key leaked".to_owned(),
        revoked_by: "root".to_owned(),
        create_time: at(second),
    };
    let first = store
        .revoke(&new(RevocationTarget::Subject("svc-a".into()), 10))
        .await
        .unwrap();
    assert_eq!(first.target, RevocationTarget::Subject("svc-a".into()));
    assert_eq!(
        (first.reason.as_str(), first.revoked_by.as_str()),
        ("key leaked", "root")
    );
    assert_eq!(first.create_time, at(10));
    // The same target again: the stored one, unchanged.
    let again = store
        .revoke(&new(RevocationTarget::Subject("svc-a".into()), 20))
        .await
        .unwrap();
    assert_eq!(again, first);
    // The same value as a token id is another target.
    let token = store
        .revoke(&new(RevocationTarget::TokenId("svc-a".into()), 30))
        .await
        .unwrap();
    assert!(token.seq > first.seq);
    let third = store
        .revoke(&new(RevocationTarget::TokenId("jti-9".into()), 40))
        .await
        .unwrap();

    let all = store.list_revocations(None, 10).await.unwrap();
    assert_eq!(all, vec![first.clone(), token.clone(), third.clone()]);
    let page = store.list_revocations(None, 2).await.unwrap();
    assert_eq!(page, vec![first, token.clone()]);
    let rest = store.list_revocations(Some(token.seq), 2).await.unwrap();
    assert_eq!(rest, vec![third]);
}

/// A replica loads only revocations numbered after the last one it loaded:
/// while revocations are recorded concurrently, a lower number must never
/// become visible after a higher one, or the loader would skip it for good.
async fn revocations_recorded_concurrently_are_all_loaded_past_the_cursor(store: Arc<dyn Store>) {
    use gdpr_intake::auth::{Caller, Revocations, Role};
    use gdpr_intake::domain::revocation::{NewRevocation, RevocationTarget};
    use gdpr_intake::service::access::reload_revocations;
    const N: usize = 40;
    let revocations = Revocations::default();
    let done = Arc::new(AtomicUsize::new(0));
    let loader = {
        let (store, revocations, done) = (store.clone(), revocations.clone(), done.clone());
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < N {
                reload_revocations(store.as_ref(), &revocations)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..N)
        .map(|i| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                store
                    .revoke(&NewRevocation {
                        target: RevocationTarget::TokenId(format!("jti-{i}")),
                        reason: "key leaked".to_owned(),
                        revoked_by: "root".to_owned(),
                        create_time: at(10),
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    loader.await.unwrap();
    reload_revocations(store.as_ref(), &revocations)
        .await
        .unwrap();

    assert_eq!(revocations.len(), N, "every revocation loaded");
    let caller = |i: usize| Caller {
        subject: "svc".to_owned(),
        role: Role::Controller,
        tenant: "acme".to_owned(),
        token_id: Some(format!("jti-{i}")),
        expires_at: 0,
    };
    assert!((0..N).all(|i| revocations.refuses(&caller(i))));
}

// ---- data key rotation ----

/// A data key ring of `keys`, the first the primary.
fn data_ring(keys: &[&[u8; 32]]) -> store::DataKey {
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    store::DataKey::ring(&keys).expect("a ring")
}

fn random_data_key() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

async fn the_reseal_moves_personal_data_to_the_primary_page_by_page(config: StoreConfig) {
    use gdpr_intake::store::keys::{KeyPurpose, RegisteredKey};
    let (old, new, other) = (random_data_key(), random_data_key(), random_data_key());
    let with = |ring: store::DataKey| {
        let mut c = config.clone();
        c.data_key = Some(ring);
        c
    };
    let before = open(&with(data_ring(&[&old]))).await;
    let acme = Build::request("acme");
    let mut stored = vec![
        insert_closed(&before, &acme, 100).await,
        insert_new(&before, &fresh(&acme)).await,
        insert_new(&before, &fresh(&Build::request("globex"))).await,
    ];
    let purged = insert_closed(&before, &acme, 100).await;
    assert!(before.purge_request(&purged, at(200)).await.unwrap());
    for r in &mut stored {
        *r = get(&before, r).await;
    }
    let (old_id, new_id) = (
        data_ring(&[&old]).primary_id().to_owned(),
        data_ring(&[&new]).primary_id().to_owned(),
    );

    // A ring that opens none of them moves nothing and counts them.
    let stranger = open(&with(data_ring(&[&other]))).await;
    let page = stranger.reseal_page(None, 100).await.unwrap();
    assert_eq!((page.moved, page.unreadable, page.next), (0, 3, None));

    // Two pages of two under the new primary: three requests move, the
    // purged one holds nothing to move.
    let rotated = open(&with(data_ring(&[&new, &old]))).await;
    let first = rotated.reseal_page(None, 2).await.unwrap();
    assert_eq!((first.candidates, first.moved, first.unreadable), (2, 2, 0));
    let second = rotated.reseal_page(first.next, 2).await.unwrap();
    assert_eq!((second.moved, second.unreadable, second.next), (1, 0, None));
    let again = rotated.reseal_page(None, 100).await.unwrap();
    assert_eq!((again.moved, again.next), (0, None));

    let uses = rotated.key_use().await.unwrap();
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!(uses[0].key_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(uses[0].rows, 3);
    let key = |id: &str, unnamed| RegisteredKey {
        key_id: id.to_owned(),
        primary_since: at(0),
        retired_since: None,
        covers_unnamed: unnamed,
    };
    let mut holders = rotated
        .key_holders(KeyPurpose::Data, &key(&new_id, false), 10)
        .await
        .unwrap();
    holders.sort();
    let mut ids: Vec<Uuid> = stored.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(holders, ids);
    assert!(
        rotated
            .key_holders(KeyPurpose::Data, &key(&old_id, true), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Every value reads back as it was with the new key alone, versions
    // untouched.
    let after = open(&with(data_ring(&[&new]))).await;
    for r in &stored {
        assert_eq!(&get(&after, r).await, r);
    }

    // The registry: first record kept, newest first, retired once.
    for (id, t, unnamed) in [
        (&old_id, 10, true),
        (&new_id, 20, false),
        (&old_id, 30, false),
    ] {
        after
            .register_key(KeyPurpose::Data, id, at(t), unnamed)
            .await
            .unwrap();
    }
    let registered = |id: &str, t, retired: Option<i64>, unnamed| RegisteredKey {
        key_id: id.to_owned(),
        primary_since: at(t),
        retired_since: retired.map(at),
        covers_unnamed: unnamed,
    };
    assert_eq!(
        after.registered_keys(KeyPurpose::Data).await.unwrap(),
        vec![
            registered(&new_id, 20, None, false),
            registered(&old_id, 10, None, true)
        ]
    );
    assert!(
        after
            .registered_keys(KeyPurpose::Audit)
            .await
            .unwrap()
            .is_empty()
    );
    after
        .retire_key(KeyPurpose::Data, &old_id, at(40))
        .await
        .unwrap();
    after
        .retire_key(KeyPurpose::Data, &old_id, at(50))
        .await
        .unwrap();
    assert_eq!(
        after.registered_keys(KeyPurpose::Data).await.unwrap(),
        vec![
            registered(&new_id, 20, None, false),
            registered(&old_id, 10, Some(40), true)
        ]
    );
}
