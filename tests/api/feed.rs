//! The change feed (`WatchRequestEvents`, `ListFeedEvents`): every event of
//! a tenant in one order, resumable from any cursor, on both backends; on
//! PostgreSQL, two replicas and transactions that commit out of order lose
//! and repeat nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::SystemClock;
use gdpr_intake::proto::v1;
use gdpr_intake::startup::KeySource;
use gdpr_intake::store::{FeedPosition, StoreConfig};
use sqlx::{Connection, PgConnection};
use tokio_stream::StreamExt as _;
use tonic::{Code, Streaming};

use crate::helpers::{
    Backend, TestApp, assert_status, authed, bad_fields, eventually, minor_subject,
    spawn_configured, spawn_replica, submission,
};
use crate::{db, processor};

/// An event as a consumer identifies it: its request and its sequence.
type Key = (String, i64);

fn key(e: &v1::FeedEvent) -> Key {
    let event = e.event.as_ref().expect("event");
    (e.name.clone(), event.sequence)
}

async fn spawn(backend: Backend) -> Option<(TestApp, StoreConfig)> {
    spawn_configured(backend, Arc::new(SystemClock), |s| {
        s.feed_poll_interval = Duration::from_millis(50);
    })
    .await
}

async fn submit(app: &TestApp, tenant: &str, m: v1::SubmitDataSubjectRequestRequest) -> String {
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, tenant), m))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
        .name
}

/// One page of `tenant`'s feed after `cursor`, read as `role`.
async fn page(
    app: &TestApp,
    role: Role,
    tenant: &str,
    cursor: &str,
    size: i32,
) -> Result<v1::ListFeedEventsResponse, tonic::Status> {
    app.dsr()
        .list_feed_events(authed(
            &app.token(role, tenant),
            v1::ListFeedEventsRequest {
                cursor: cursor.to_owned(),
                page_size: size,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// `tenant`'s whole feed after `cursor`, in pages of `size`.
async fn read_all(app: &TestApp, tenant: &str, cursor: &str, size: i32) -> Vec<v1::FeedEvent> {
    let mut all = Vec::new();
    let mut cursor = cursor.to_owned();
    loop {
        let p = page(app, Role::Controller, tenant, &cursor, size)
            .await
            .expect("a page of the feed");
        let n = p.events.len();
        all.extend(p.events);
        assert!(
            n > 0 || p.next_cursor == cursor,
            "an empty page leaves the cursor where it was"
        );
        cursor = p.next_cursor;
        if n < usize::try_from(size).expect("positive") {
            return all;
        }
    }
}

/// `tenant`'s whole feed once it holds `n` events. On PostgreSQL an
/// event shows once every transaction older than its own has ended, in
/// any database of the server (other tests write there at the same time).
async fn settled(app: &TestApp, tenant: &str, n: usize) -> Vec<v1::FeedEvent> {
    eventually(
        "the feed to show every event",
        Duration::from_secs(20),
        || async {
            let feed = read_all(app, tenant, "", 100).await;
            assert!(feed.len() <= n, "{} events, {n} expected", feed.len());
            (feed.len() == n).then_some(feed)
        },
    )
    .await
}

async fn watch(
    app: &TestApp,
    tenant: &str,
    cursor: &str,
) -> Streaming<v1::WatchRequestEventsResponse> {
    app.dsr()
        .watch_request_events(authed(
            &app.token(Role::Controller, tenant),
            v1::WatchRequestEventsRequest {
                cursor: cursor.to_owned(),
            },
        ))
        .await
        .expect("watch starts")
        .into_inner()
}

fn as_feed_event(m: v1::WatchRequestEventsResponse) -> v1::FeedEvent {
    v1::FeedEvent {
        cursor: m.cursor,
        name: m.name,
        event: m.event,
    }
}

/// Reads `n` events from `stream`, failing after `timeout`.
async fn take(
    stream: &mut Streaming<v1::WatchRequestEventsResponse>,
    n: usize,
    timeout: Duration,
) -> Vec<v1::FeedEvent> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < n {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events within {timeout:?}", got.len()));
        got.push(as_feed_event(
            next.expect("the stream goes on").expect("an event"),
        ));
    }
    got
}

/// Every event of every request in `names`, by request, as
/// `ListRequestEvents` gives them.
pub(crate) async fn trails(
    app: &TestApp,
    tenant: &str,
    names: &[String],
) -> BTreeMap<String, Vec<i64>> {
    let mut all = BTreeMap::new();
    for name in names {
        let events = app
            .dsr()
            .list_request_events(authed(
                &app.token(Role::Controller, tenant),
                v1::ListRequestEventsRequest {
                    name: name.clone(),
                    page_size: 1000,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("events")
            .into_inner()
            .events;
        all.insert(name.clone(), events.iter().map(|e| e.sequence).collect());
    }
    all
}

/// The feed's events grouped by request, in feed order; fails on a repeat.
fn by_request(feed: &[v1::FeedEvent]) -> BTreeMap<String, Vec<i64>> {
    let mut seen = HashSet::new();
    let mut grouped: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in feed {
        assert!(seen.insert(key(e)), "{:?} delivered twice", key(e));
        grouped.entry(e.name.clone()).or_default().push(key(e).1);
    }
    grouped
}

on_both_backends!(
    every_cursor_resumes_to_the_same_suffix,
    a_cut_watcher_resumes_without_loss,
    tenants_see_only_their_own_feed,
);

/// A tenant's history with every kind of step: submissions, a minor's
/// consent, an extension, task claims and completions (which complete the
/// request), a cancellation. Returns the requests' names.
pub(crate) async fn history(app: &TestApp, tenant: &str) -> Vec<String> {
    app.route(tenant, &format!("{tenant}-crm"), &[], 72).await;
    let controller = app.token(Role::Controller, tenant);
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(submit(app, tenant, submission()).await);
    }
    let minor = submit(
        app,
        tenant,
        v1::SubmitDataSubjectRequestRequest {
            subject: Some(minor_subject()),
            ..submission()
        },
    )
    .await;
    app.dsr()
        .record_guardian_consent(authed(
            &controller,
            v1::RecordGuardianConsentRequest {
                name: minor.clone(),
                guardian: Some(v1::Guardian {
                    full_name: "Grace Hopper".into(),
                    relationship: v1::GuardianRelationship::Parent.into(),
                    email: "grace@example.org".into(),
                    verification_method: "signed form".into(),
                    consented_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                }),
            },
        ))
        .await
        .expect("consent recorded");
    names.push(minor);
    app.dsr()
        .extend_deadline(authed(
            &controller,
            v1::ExtendDeadlineRequest {
                name: names[0].clone(),
                reason: "complex request spanning archives".into(),
            },
        ))
        .await
        .expect("extended");
    app.dsr()
        .cancel_data_subject_request(authed(
            &controller,
            v1::CancelDataSubjectRequestRequest {
                name: names[1].clone(),
                reason: "withdrawn by the subject".into(),
            },
        ))
        .await
        .expect("cancelled");
    let crm = format!("{tenant}-crm");
    let claimed = processor::claim(app, &crm, 2, 60).await;
    assert_eq!(claimed.len(), 2);
    for task in &claimed {
        processor::complete(app, &crm, task, v1::TaskOutcome::NoDataHeld, "no account")
            .await
            .expect("completed");
    }
    names
}

async fn every_cursor_resumes_to_the_same_suffix(backend: Backend) {
    let Some((app, _)) = spawn(backend).await else {
        return;
    };
    let names = history(&app, "acme").await;
    let trails = trails(&app, "acme", &names).await;
    let total = trails.values().map(Vec::len).sum();
    settled(&app, "acme", total).await;
    let feed = read_all(&app, "acme", "", 4).await;
    // Every event of every request, once, each request's in its order.
    assert_eq!(by_request(&feed), trails);
    let kinds: HashSet<i32> = feed
        .iter()
        .map(|e| e.event.as_ref().expect("event").r#type)
        .collect();
    assert!(
        kinds.len() >= 7,
        "every kind of step is in the feed: {kinds:?}"
    );
    // The auditor reads the same feed, in one page.
    let audited = page(&app, Role::Auditor, "acme", "", 1000)
        .await
        .expect("auditors read the feed");
    assert_eq!(audited.events, feed);
    assert_eq!(audited.next_cursor, feed.last().expect("events").cursor);

    // From every cursor, the rest of the same feed, page by page and as a
    // stream.
    for (i, e) in feed.iter().enumerate() {
        let rest = read_all(&app, "acme", &e.cursor, 3).await;
        assert_eq!(rest, feed[i + 1..], "after event {i}");
    }
    for i in [0, feed.len() / 2, feed.len() - 2] {
        let mut stream = watch(&app, "acme", &feed[i].cursor).await;
        let rest = take(&mut stream, feed.len() - i - 1, Duration::from_secs(10)).await;
        assert_eq!(rest, feed[i + 1..], "streamed after event {i}");
    }
    // Nothing after the last event yet; then the next one.
    let last = &feed.last().expect("events").cursor;
    let empty = page(&app, Role::Controller, "acme", last, 10)
        .await
        .expect("page");
    assert!(empty.events.is_empty());
    assert_eq!(&empty.next_cursor, last);
    let later = submit(&app, "acme", submission()).await;
    // On PostgreSQL, once every transaction older than its own has ended.
    let next = eventually("the next event", Duration::from_secs(10), || async {
        let p = page(&app, Role::Controller, "acme", last, 10)
            .await
            .expect("page");
        (!p.events.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(next.events[0].name, later);
    assert_eq!(next.events[0].event.as_ref().expect("event").sequence, 1);
    app.stop().await;
}

async fn a_cut_watcher_resumes_without_loss(backend: Backend) {
    let Some((app, _)) = spawn(backend).await else {
        return;
    };
    app.route("acme", "acme-crm", &[], 72).await;
    let mut stream = watch(&app, "acme", "").await;
    // Events arrive while the watcher waits (each submission: submitted
    // and task_created).
    for _ in 0..5 {
        submit(&app, "acme", submission()).await;
    }
    let mut got = take(&mut stream, 7, Duration::from_secs(10)).await;
    drop(stream); // cut after the fourth submission's first event
    for _ in 0..5 {
        submit(&app, "acme", submission()).await;
    }
    let resume_from = got.last().expect("events").cursor.clone();
    let mut resumed = watch(&app, "acme", &resume_from).await;
    got.extend(take(&mut resumed, 13, Duration::from_secs(10)).await);
    // Nothing more than the twenty events, and exactly the feed's.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), resumed.next())
            .await
            .is_err(),
        "no event beyond the twenty"
    );
    assert_eq!(got, settled(&app, "acme", 20).await);
    app.stop().await;
}

async fn tenants_see_only_their_own_feed(backend: Backend) {
    let Some((app, _)) = spawn(backend).await else {
        return;
    };
    let ours = submit(&app, "acme", submission()).await;
    let theirs = submit(&app, "globex", submission()).await;
    let acme = settled(&app, "acme", 1).await;
    let globex = settled(&app, "globex", 1).await;
    assert!(acme.iter().all(|e| e.name == ours), "{acme:?}");
    assert!(globex.iter().all(|e| e.name == theirs), "{globex:?}");
    assert_eq!((acme.len(), globex.len()), (1, 1));

    // Another tenant's cursor, and a malformed one, are refused, for pages
    // and streams alike.
    for cursor in [acme[0].cursor.as_str(), "not-a-cursor", "ZjF8MXwyfDM"] {
        let status = page(&app, Role::Controller, "globex", cursor, 10)
            .await
            .expect_err("refused");
        assert_status(&status, Code::InvalidArgument, None);
        assert_eq!(bad_fields(&status), ["cursor"]);
        let status = app
            .dsr()
            .watch_request_events(authed(
                &app.token(Role::Controller, "globex"),
                v1::WatchRequestEventsRequest {
                    cursor: cursor.to_owned(),
                },
            ))
            .await
            .expect_err("refused");
        assert_eq!(bad_fields(&status), ["cursor"]);
    }
    // A cursor of this tenant that no event of this database has: another
    // database's, or from before a restore. Refused rather than followed
    // past events it would skip.
    let ahead = gdpr_intake::api::page::encode_feed_cursor(
        "globex",
        FeedPosition {
            transaction: 1 << 40,
            request: uuid::Uuid::nil(),
            number: 1 << 40,
        },
    );
    let status = page(&app, Role::Controller, "globex", &ahead, 10)
        .await
        .expect_err("refused");
    assert_status(&status, Code::InvalidArgument, None);
    assert_eq!(bad_fields(&status), ["cursor"]);
    let status = app
        .dsr()
        .watch_request_events(authed(
            &app.token(Role::Controller, "globex"),
            v1::WatchRequestEventsRequest { cursor: ahead },
        ))
        .await
        .expect_err("refused");
    assert_eq!(bad_fields(&status), ["cursor"]);
    let status = page(&app, Role::Controller, "acme", "", -1)
        .await
        .expect_err("refused");
    assert_eq!(bad_fields(&status), ["page_size"]);
    // Only the tenant's controllers and auditors read it.
    for role in [Role::Processor, Role::Admin] {
        let status = page(&app, role, "acme", "", 10).await.expect_err("refused");
        assert_status(&status, Code::PermissionDenied, None);
    }
    app.stop().await;
}

/// Stops `app` and keeps what it leaves on disk: its development keys
/// (whose directory is returned) and its database.
pub(crate) async fn stop_keeping_keys(mut app: TestApp) -> tempfile::TempDir {
    let keys = std::mem::replace(&mut app.data_dir, tempfile::tempdir().expect("a directory"));
    app.stop().await;
    keys
}

/// A server on the SQLite database of `config` with the development keys
/// in `keys` (a server stopped by [`stop_keeping_keys`]), migrating it.
pub(crate) async fn reopen(config: &StoreConfig, keys: tempfile::TempDir) -> TestApp {
    let (app, _) = spawn_configured(Backend::Sqlite, Arc::new(SystemClock), |s| {
        s.store = config.clone();
        s.keys = KeySource::DevKeys {
            data_dir: keys.path().to_path_buf(),
        };
    })
    .await
    .expect("sqlite");
    TestApp {
        data_dir: keys,
        ..app
    }
}

/// After the last event of `before`, exactly a new submission's two
/// events (submitted and its task) follow.
async fn new_events_follow(app: &TestApp, before: &[v1::FeedEvent]) {
    let later = submit(app, "acme", submission()).await;
    let next = read_all(app, "acme", &before.last().expect("events").cursor, 100).await;
    assert_eq!(next.len(), 2, "submitted and its task");
    assert!(next.iter().all(|e| e.name == later));
}

/// A SQLite database written before the feed existed (migrated to 0004,
/// holding a history the real server wrote) is upgraded by the server's own
/// migration: every event is in the feed, each request's in its order,
/// nothing references a missing row, and new events follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_from_before_the_feed_upgrades_with_its_history() {
    let (app, written) = spawn(Backend::Sqlite).await.expect("sqlite");
    let names = history(&app, "acme").await;
    let trails = trails(&app, "acme", &names).await;
    let keys = stop_keeping_keys(app).await;
    // The migrations before the feed, as a release before it shipped
    // them, holding that history (with the same keys).
    let dir = tempfile::tempdir().expect("a directory");
    let mut config = written.clone();
    config.data_dir = dir.path().join("data");
    db::sqlite_before(&written, &config, "0005").await;
    let numbered = || {
        db::fetch_count(
            &config,
            "SELECT count(*) FROM pragma_table_info('request_events') \
             WHERE name = 'feed_position'"
                .to_owned(),
        )
    };
    assert_eq!(numbered().await, 0, "written before the feed");

    let again = reopen(&config, keys).await;
    assert_eq!(numbered().await, 1, "upgraded");
    let total = trails.values().map(Vec::len).sum();
    let feed = settled(&again, "acme", total).await;
    assert_eq!(by_request(&feed), trails);
    let dangling = db::fetch_count(
        &config,
        "SELECT count(*) FROM pragma_foreign_key_check".to_owned(),
    )
    .await;
    assert_eq!(dangling, 0);
    new_events_follow(&again, &feed).await;
    again.stop().await;
}

/// The SQLite migration rebuilds `request_events` to number its events;
/// run again on a database with a history, it keeps every event, the
/// feed's order and its cursors, and new events follow the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_rebuild_keeps_events_order_and_cursors() {
    let (app, config) = spawn(Backend::Sqlite).await.expect("sqlite");
    let names = history(&app, "acme").await;
    let before = read_all(&app, "acme", "", 100).await;
    let trails_before = trails(&app, "acme", &names).await;
    let keys = stop_keeping_keys(app).await;
    let rebuild = include_str!("../../migrations/sqlite/0005_change_feed.sql");
    db::execute_raw_owned(&config, format!("BEGIN; {rebuild} COMMIT;")).await;

    let again = reopen(&config, keys).await;
    assert_eq!(read_all(&again, "acme", "", 100).await, before);
    assert_eq!(trails(&again, "acme", &names).await, trails_before);
    new_events_follow(&again, &before).await;
    again.stop().await;
}

/// Two replicas on one PostgreSQL database, four submitters spread over
/// both, and transactions that take their place in the feed and then
/// commit late, after many others: a watcher that is cut every 2,000
/// events and resumes on the other replica, and a reader that pages, get
/// the same events in the same order, every one of them exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_and_late_commits_lose_and_repeat_nothing() {
    let Some((first, database)) = spawn(Backend::Postgres).await else {
        return;
    };
    let second = spawn_replica(&first, &database, |s| {
        s.feed_poll_interval = Duration::from_millis(50);
    })
    .await;
    let replicas = Arc::new([first, second]);
    for processor in ["crm", "billing", "analytics"] {
        replicas[0]
            .route("acme", processor, &[v1::RequestType::Access], 72)
            .await;
    }
    // Requests that get no tasks (no route for erasure), whose trails the
    // late transactions extend.
    let mut quiet = Vec::new();
    for _ in 0..20 {
        quiet.push(
            submit(
                &replicas[1],
                "acme",
                v1::SubmitDataSubjectRequestRequest {
                    r#type: v1::RequestType::Erasure.into(),
                    ..submission()
                },
            )
            .await,
        );
    }

    // Each: submitted, three task_created, three claims and completions
    // (from processors working at once, on both replicas), completed.
    const SUBMISSIONS: usize = 1_000;
    let mut submitters = Vec::new();
    for s in 0..4 {
        let replicas = replicas.clone();
        submitters.push(tokio::spawn(async move {
            for i in 0..SUBMISSIONS / 4 {
                submit(&replicas[(s + i) % 2], "acme", submission()).await;
            }
        }));
    }
    let submitting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut processors = Vec::new();
    for (p, processor) in ["crm", "billing", "analytics"].into_iter().enumerate() {
        for worker in 0..2 {
            let replicas = replicas.clone();
            let submitting = submitting.clone();
            processors.push(tokio::spawn(async move {
                work_tasks(&replicas, processor, p + worker, &submitting).await
            }));
        }
    }
    let late = tokio::spawn(late_commits(database.clone(), quiet));

    // How many events the readers are to get, known once the writers are
    // done.
    let (target_tx, target) = tokio::sync::watch::channel(usize::MAX);
    // The watcher: cut every 2,000 events, resumed on the other replica.
    let watcher = {
        let replicas = replicas.clone();
        let mut target = target.clone();
        tokio::spawn(async move {
            let mut got: Vec<v1::FeedEvent> = Vec::new();
            let mut on = 0;
            let mut stream = watch(&replicas[on], "acme", "").await;
            while got.len() < *target.borrow_and_update() {
                tokio::select! {
                    next = stream.next() => {
                        got.push(as_feed_event(next.expect("goes on").expect("an event")));
                        if got.len().is_multiple_of(2_000) {
                            on = 1 - on;
                            let cursor = got.last().expect("events").cursor.clone();
                            stream = watch(&replicas[on], "acme", &cursor).await;
                        }
                    }
                    _ = target.changed() => {}
                }
            }
            got
        })
    };
    // The pager, meanwhile, on the first replica.
    let pager = {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            let mut got: Vec<v1::FeedEvent> = Vec::new();
            let mut cursor = String::new();
            while got.len() < *target.borrow() {
                let p = page(&replicas[0], Role::Controller, "acme", &cursor, 97)
                    .await
                    .expect("page");
                if p.events.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                got.extend(p.events);
                cursor = p.next_cursor;
            }
            got
        })
    };
    for s in submitters {
        s.await.expect("submitter");
    }
    submitting.store(false, std::sync::atomic::Ordering::SeqCst);
    let completed: usize = futures::future::join_all(processors)
        .await
        .into_iter()
        .map(|done| done.expect("processor"))
        .sum();
    assert_eq!(completed, SUBMISSIONS * 3, "every task completed");
    let late_events = late.await.expect("late commits");
    let stored = db::fetch_count(
        &database,
        "SELECT count(*) FROM request_events WHERE controller_id = 'acme'".to_owned(),
    )
    .await;
    let stored = usize::try_from(stored).expect("a count");
    assert!(stored >= 10_000, "{stored} events");
    target_tx.send(stored).expect("readers wait");
    let watched = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("the watcher gets every event")
        .expect("watcher");
    let paged = tokio::time::timeout(Duration::from_secs(60), pager)
        .await
        .expect("the pager gets every event")
        .expect("pager");
    assert_eq!(watched.len(), stored);
    assert_eq!(
        by_request(&watched).values().map(Vec::len).sum::<usize>(),
        stored
    );
    assert_eq!(watched, paged, "one order for every reader and replica");
    // The late events did commit out of order (events of later
    // transactions committed first), and they are in the feed.
    assert!(
        late_events.iter().any(|(_, _, overtaken)| *overtaken > 0),
        "{late_events:?}"
    );
    for (name, sequence, _) in &late_events {
        assert!(
            watched.iter().any(|e| key(e) == (name.clone(), *sequence)),
            "late event {name} #{sequence} delivered"
        );
    }
    // Every request's events in its own order.
    for (name, sequences) in by_request(&watched) {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "{name}: {sequences:?}"
        );
    }
    let [first, second] = Arc::into_inner(replicas).expect("no other owner");
    first.stop().await;
    second.stop().await;
}

/// Claims processor `name`'s tasks (up to five at a time) and completes them,
/// alternating replicas from `first`, until no submission is under way and
/// a claim finds nothing. Returns how many it completed.
async fn work_tasks(
    replicas: &[TestApp; 2],
    name: &str,
    first: usize,
    submitting: &std::sync::atomic::AtomicBool,
) -> usize {
    let mut done = 0;
    for round in first.. {
        let still_submitting = submitting.load(std::sync::atomic::Ordering::SeqCst);
        let tasks = processor::claim(&replicas[round % 2], name, 5, 60).await;
        if tasks.is_empty() {
            if !still_submitting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in &tasks {
            let other = &replicas[(round + 1) % 2];
            processor::complete(other, name, task, v1::TaskOutcome::Done, "")
                .await
                .expect("completed");
            done += 1;
        }
    }
    done
}

/// Twenty transactions that each append an event to a quiet request, then
/// wait 150 ms (while the submitters commit many events after it) before
/// committing. Returns each late event's request name and sequence, and
/// how many events of later transactions had committed before it did.
async fn late_commits(database: StoreConfig, quiet: Vec<String>) -> Vec<(String, i64, i64)> {
    let url = database.database_url.expect("postgres");
    let mut conn = PgConnection::connect(&url).await.expect("connects");
    let mut observer = PgConnection::connect(&url).await.expect("connects");
    let mut appended = Vec::new();
    for name in quiet {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = name.rsplit('/').next().expect("an id").to_owned();
        let mut tx = conn.begin().await.expect("begins");
        let (sequence, transaction): (i64, String) = sqlx::query_as(
            "INSERT INTO request_events (data_subject_request_id, controller_id, sequence, \
             event_type, event_time, actor_id, actor_role, from_state, to_state, reason, hash) \
             SELECT id, controller_id, last_event_sequence + 1, 'sla_at_risk', update_time, \
             'feed-test', 'system', state, state, 'committed late on purpose', 'unchained' \
             FROM data_subject_requests WHERE id = $1::uuid RETURNING sequence, feed_xid::text",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .expect("appends");
        sqlx::query(
            "UPDATE data_subject_requests SET last_event_sequence = $2 WHERE id = $1::uuid",
        )
        .bind(&id)
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .expect("moves the tip");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let overtaken: i64 =
            sqlx::query_scalar("SELECT count(*) FROM request_events WHERE feed_xid > $1::xid8")
                .bind(&transaction)
                .fetch_one(&mut observer)
                .await
                .expect("counts");
        tx.commit().await.expect("commits");
        appended.push((name, sequence, overtaken));
    }
    appended
}
