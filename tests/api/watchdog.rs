//! The SLA watchdog through the real application, its clock moved by hand:
//! each finding reported once per threshold (audit trail, span event linked
//! to the submission, counters), a minor's request expiring after the
//! consent window, the open-requests gauge, and one sweeper at a time among
//! instances sharing a database, with the lease handed over when the
//! sweeper stops or dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gdpr_intake::auth::Role;
use gdpr_intake::clock::ManualClock;
use gdpr_intake::domain::sla::DEFAULT_REQUEST_AT_RISK;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::RequestEventType as E;
use gdpr_intake::startup::Application;
use gdpr_intake::store::{self, StoreConfig};
use gdpr_intake::telemetry::{Telemetry, TelemetryConfig};
use gdpr_intake::watchdog::{self, LEASE_NAME, Watchdog, WatchdogConfig};
use jiff::{SignedDuration, Timestamp};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tonic::Request;
use tonic::transport::Channel;

use crate::db;
use crate::helpers::*;

/// Short, so that a test sees several sweeps in a fraction of a second.
const INTERVAL: Duration = Duration::from_millis(50);
/// The trace of the client that submits.
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// Monday 9 March 2026, 09:00 in Berlin.
fn monday() -> Timestamp {
    "2026-03-09T08:00:00Z".parse().expect("valid")
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// An application under test and its telemetry.
struct Instance {
    app: TestApp,
    telemetry: Telemetry,
    exporter: Option<InMemorySpanExporter>,
}

/// Builds an application on `store` with `clock` and a watchdog every
/// `interval`, with its spans in memory if `traced`, and serves it.
async fn start(
    store: StoreConfig,
    data_dir: TempDir,
    clock: Arc<ManualClock>,
    traced: bool,
    interval: Duration,
) -> Instance {
    let (app, telemetry, exporter) = build(store, &data_dir, clock, traced, interval).await;
    Instance {
        app: serve(app, data_dir).await,
        telemetry,
        exporter,
    }
}

async fn build(
    store: StoreConfig,
    data_dir: &TempDir,
    clock: Arc<ManualClock>,
    traced: bool,
    interval: Duration,
) -> (Application, Telemetry, Option<InMemorySpanExporter>) {
    let exporter = traced.then(InMemorySpanExporter::default);
    let telemetry = match &exporter {
        Some(exporter) => Telemetry::builder(TelemetryConfig::quiet())
            .with_span_exporter(exporter.clone())
            .build()
            .expect("telemetry builds"),
        None => Telemetry::disabled(),
    };
    let mut settings = test_settings(store, data_dir);
    settings.watchdog.interval = interval;
    let app = Application::build_with_telemetry(settings, clock, telemetry.clone())
        .await
        .expect("application builds");
    (app, telemetry, exporter)
}

pub(crate) async fn serve(app: Application, data_dir: TempDir) -> TestApp {
    let addr = app.local_addr();
    let sweeps = app.watchdog_sweeps();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects");
    TestApp {
        channel,
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
        sweeps,
    }
}

async fn sqlite(clock: &Arc<ManualClock>, traced: bool) -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::db::keyed(StoreConfig::sqlite(dir.path()));
    start(store, dir, clock.clone(), traced, INTERVAL).await
}

fn with_traceparent<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-b7ad6b7169203331-01")
            .parse()
            .expect("ascii"),
    );
    req
}

/// Submits `m` for acme from a traced client.
pub(crate) async fn submit(
    app: &TestApp,
    m: v1::SubmitDataSubjectRequestRequest,
) -> v1::DataSubjectRequest {
    let token = app.token(Role::Controller, "acme");
    let mut req = with_traceparent(m);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    app.dsr()
        .submit_data_subject_request(req)
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
}

/// A subject aged 16 on the day `at`.
fn minor_at(at: Timestamp) -> v1::Subject {
    let year = at.to_zoned_datetime(jiff::tz::TimeZone::UTC).year();
    v1::Subject {
        date_of_birth: Some(Date {
            year: i32::from(year) - 16,
            month: 1,
            day: 1,
        }),
        ..adult_subject()
    }
}

pub(crate) fn due_of(r: &v1::DataSubjectRequest) -> Timestamp {
    let t = r.due_time.as_ref().expect("due time");
    Timestamp::new(t.seconds, t.nanos).expect("valid")
}

async fn trail(app: &TestApp, name: &str) -> Vec<v1::RequestEvent> {
    app.dsr()
        .list_request_events(authed(
            &app.token(Role::Controller, "acme"),
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
}

fn count(trail: &[v1::RequestEvent], kind: E) -> usize {
    trail.iter().filter(|e| e.r#type == i32::from(kind)).count()
}

/// How long a test waits for a condition that no event announces.
const PATIENCE: Duration = Duration::from_secs(10);

/// The value of the Prometheus sample `name` with all of `labels`.
pub(crate) fn sample(telemetry: &Telemetry, name: &str, labels: &[&str]) -> Option<f64> {
    let text = telemetry.prometheus_text().expect("encodes");
    text.lines()
        .find(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with('{')
                && labels.iter().all(|label| l.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        })
}

fn linked_to_caller(span: &SpanData) -> bool {
    span.links
        .iter()
        .any(|l| l.span_context.trace_id().to_string() == CALLER_TRACE)
}

#[tokio::test]
async fn a_request_is_reported_at_risk_then_breached_once_each() {
    let clock = Arc::new(ManualClock::new(monday()));
    let it = sqlite(&clock, true).await;
    let r = submit(&it.app, submission()).await;
    let due = due_of(&r);

    // A month ahead: sweeps come and go, nothing to report.
    it.app.sweeps_after(2).await;
    assert_eq!(trail(&it.app, &r.name).await.len(), 1);

    clock.set(due - days(3));
    it.app.sweeps_after(1).await;
    assert_eq!(
        count(&trail(&it.app, &r.name).await, E::SlaAtRisk),
        1,
        "reported by the first sweep at the new time"
    );
    it.app.sweeps_after(3).await;
    let events = trail(&it.app, &r.name).await;
    assert_eq!(
        count(&events, E::SlaAtRisk),
        1,
        "reported once, not per sweep"
    );
    assert_eq!(count(&events, E::SlaBreached), 0);
    let at_risk = events.last().expect("an event");
    assert_eq!(at_risk.actor, "gdpr-intake");
    assert_eq!(at_risk.actor_role, "system");
    assert_eq!(at_risk.from_state, at_risk.to_state);
    assert!(at_risk.task.is_empty());

    clock.set(due + SignedDuration::from_secs(1));
    it.app.sweeps_after(1).await;
    assert_eq!(
        count(&trail(&it.app, &r.name).await, E::SlaBreached),
        1,
        "reported by the first sweep at the new time"
    );
    it.app.sweeps_after(3).await;
    let events = trail(&it.app, &r.name).await;
    assert_eq!(
        (count(&events, E::SlaAtRisk), count(&events, E::SlaBreached)),
        (1, 1),
        "each reported once, not per sweep"
    );

    // One span per finding, under a sweep's span, linked to the submission
    // and carrying the request's attributes and the finding's event.
    let spans = it
        .exporter
        .as_ref()
        .expect("traced")
        .get_finished_spans()
        .expect("spans");
    let findings: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "dsr.sla.finding")
        .collect();
    assert_eq!(
        findings.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for (span, finding) in findings.iter().zip(["at_risk", "breached"]) {
        assert_eq!(attr(span, "dsr.sla.finding").as_deref(), Some(finding));
        assert_eq!(attr(span, "dsr.sla.item").as_deref(), Some("request"));
        assert_eq!(attr(span, "dsr.name"), Some(r.name.clone()));
        assert_eq!(attr(span, "dsr.state").as_deref(), Some("in_progress"));
        assert_eq!(attr(span, "dsr.controller_id").as_deref(), Some("acme"));
        assert!(attr(span, "dsr.due_time").is_some());
        assert!(linked_to_caller(span), "{:?}", span.links);
        let event = span.events.iter().next().expect("the finding's event");
        assert_eq!(event.name, format!("dsr.sla.{finding}"));
        let check = spans
            .iter()
            .find(|s| s.span_context.span_id() == span.parent_span_id)
            .expect("the sweep's span");
        assert_eq!(check.name, "dsr.sla.check");
    }
    let checks: Vec<&SpanData> = spans.iter().filter(|s| s.name == "dsr.sla.check").collect();
    assert!(checks.len() >= 5, "{}", checks.len());
    assert!(
        checks
            .iter()
            .any(|s| attr(s, "dsr.sla.requests_breached").as_deref() == Some("1"))
    );

    let item = ["dsr_sla_item=\"request\""];
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_at_risk_total", &item),
        Some(1.0)
    );
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_breached_total", &item),
        Some(1.0)
    );
    // The gauge has a loop of its own, on the same interval.
    eventually(
        "the open-requests gauge to count the request in progress",
        PATIENCE,
        || async {
            sample(
                &it.telemetry,
                "gdpr_dsr_open",
                &["dsr_state=\"in_progress\""],
            ) == Some(1.0)
        },
    )
    .await;
    it.app.stop().await;
}

#[tokio::test]
async fn a_task_is_reported_at_risk_in_working_hours_then_breached_once_each() {
    let clock = Arc::new(ManualClock::new(monday()));
    let it = sqlite(&clock, false).await;
    // 72 working hours from Monday 09:00 in Berlin: Thursday 09:00.
    it.app.route("acme", "crm", &[], 72).await;
    let r = submit(&it.app, submission()).await;
    let task = trail(&it.app, &r.name)
        .await
        .into_iter()
        .find(|e| e.r#type == i32::from(E::TaskCreated))
        .expect("a task was created")
        .task;
    let task_due: Timestamp = "2026-03-12T08:00:00Z".parse().expect("valid");

    // Tuesday evening: 33 working hours left, more than 24.
    clock.set("2026-03-10T20:00:00Z".parse().expect("valid"));
    it.app.sweeps_after(2).await;
    assert_eq!(count(&trail(&it.app, &r.name).await, E::SlaAtRisk), 0);

    // Wednesday 13:00 in Berlin: 20 working hours left.
    clock.set("2026-03-11T12:00:00Z".parse().expect("valid"));
    it.app.sweeps_after(1).await;
    assert_eq!(
        count(&trail(&it.app, &r.name).await, E::SlaAtRisk),
        1,
        "the task's at-risk report"
    );
    clock.set(task_due + SignedDuration::from_secs(1));
    it.app.sweeps_after(1).await;
    assert_eq!(
        count(&trail(&it.app, &r.name).await, E::SlaBreached),
        1,
        "the task's breach report"
    );
    it.app.sweeps_after(3).await;
    let events = trail(&it.app, &r.name).await;
    let findings: Vec<&v1::RequestEvent> = events
        .iter()
        .filter(|e| [i32::from(E::SlaAtRisk), i32::from(E::SlaBreached)].contains(&e.r#type))
        .collect();
    assert_eq!(
        findings.len(),
        2,
        "each once; the request itself is not at risk"
    );
    for finding in findings {
        assert_eq!(finding.task, task, "about the task");
        assert!(finding.reason.contains("crm"), "{}", finding.reason);
    }
    let item = ["dsr_sla_item=\"task\""];
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_at_risk_total", &item),
        Some(1.0)
    );
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_breached_total", &item),
        Some(1.0)
    );
    it.app.stop().await;
}

/// More open tasks than one page of a sweep, of two controllers, each with
/// more requests than one grouped read: every task is reported, once.
#[tokio::test]
async fn a_backlog_of_several_pages_and_controllers_is_reported_once_per_task() {
    // 600 tasks: three pages of about a hundred tasks of each controller,
    // each more than one grouped read.
    const PER_CONTROLLER: usize = 300;
    let clock = Arc::new(ManualClock::new(monday()));
    let it = sqlite(&clock, false).await;
    for controller in ["acme", "globex"] {
        it.app.route(controller, "crm", &[], 72).await;
        let token = it.app.token(Role::Controller, controller);
        for _ in 0..PER_CONTROLLER {
            it.app
                .dsr()
                .submit_data_subject_request(authed(&token, submission()))
                .await
                .expect("submitted");
        }
    }
    // Past every task's due time (Thursday 09:00 in Berlin).
    clock.set("2026-03-12T08:00:01Z".parse().expect("valid"));
    let item = ["dsr_sla_item=\"task\""];
    let everyone = Some((2 * PER_CONTROLLER) as f64);
    // One whole sweep that saw the new time reports every task ...
    it.app.sweeps_after(1).await;
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_breached_total", &item),
        everyone
    );
    // ... and later ones none again.
    it.app.sweeps_after(2).await;
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_sla_breached_total", &item),
        everyone
    );
    it.app.stop().await;
}

#[tokio::test]
async fn a_minors_request_expires_when_the_consent_window_ends() {
    let clock = Arc::new(ManualClock::new(monday()));
    let it = sqlite(&clock, false).await;
    let minor = v1::SubmitDataSubjectRequestRequest {
        subject: Some(minor_at(monday())),
        ..submission()
    };
    let r = submit(&it.app, minor).await;
    assert_eq!(
        r.state,
        i32::from(v1::data_subject_request::State::AwaitingGuardianConsent)
    );

    // The last instant of the window: still waiting.
    clock.set(monday() + days(30));
    it.app.sweeps_after(2).await;
    let events = trail(&it.app, &r.name).await;
    assert_eq!(count(&events, E::Expired), 0);

    clock.set(monday() + days(30) + SignedDuration::from_secs(1));
    it.app.sweeps_after(1).await;
    let events = trail(&it.app, &r.name).await;
    assert_eq!(count(&events, E::Expired), 1, "expired by the next sweep");
    let expired = events.last().expect("an event");
    assert_eq!(expired.r#type, i32::from(E::Expired));
    assert_eq!(
        (expired.from_state, expired.to_state),
        (
            i32::from(v1::data_subject_request::State::AwaitingGuardianConsent),
            i32::from(v1::data_subject_request::State::Expired)
        )
    );
    assert_eq!(expired.actor_role, "system");
    let stored = it
        .app
        .dsr()
        .get_data_subject_request(authed(
            &it.app.token(Role::Controller, "acme"),
            v1::GetDataSubjectRequestRequest {
                name: r.name.clone(),
            },
        ))
        .await
        .expect("found")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(
        stored.state,
        i32::from(v1::data_subject_request::State::Expired)
    );
    // Expired is final: nothing more is reported, however late it gets.
    clock.set(monday() + days(400));
    it.app.sweeps_after(2).await;
    assert_eq!(trail(&it.app, &r.name).await.len(), events.len());
    assert_eq!(
        sample(&it.telemetry, "gdpr_dsr_expired_total", &[]),
        Some(1.0)
    );
    it.app.stop().await;
}

/// Two instances on one PostgreSQL database: only the lease holder sweeps,
/// so each finding is reported once; when it stops, the other takes over
/// at its next tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_postgres_instances_sweeps_and_the_other_takes_over() {
    let Some(config) = db::postgres_config().await else {
        return;
    };
    let interval = Duration::from_millis(200);
    let clock = Arc::new(ManualClock::new(monday()));
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let mut instances = Vec::new();
    for dir in dirs {
        instances.push(start(config.clone(), dir, clock.clone(), false, interval).await);
    }
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(submit(&instances[0].app, submission()).await);
    }
    let due = names.iter().map(due_of).max().expect("submitted");

    // A jump of the clock past the lease's end lets the other instance take
    // the lease while the holder may be sweeping at the new time already
    // (a late holder, whose findings the store still writes once each). So
    // the clock jumps to just short of the at-risk window, where there is
    // nothing to find, and, once the lease has settled, moves into the
    // window by less than the lease's term: the holder keeps it.
    let ttl = SignedDuration::try_from(watchdog::lease_ttl(interval)).expect("short");
    let at_risk_from = due - DEFAULT_REQUEST_AT_RISK;
    let sweeps: Vec<_> = instances.iter().map(|i| i.app.sweeps.clone()).collect();
    clock.set(at_risk_from - ttl / 2);
    sweeps_after(&sweeps, 2).await;
    clock.advance(ttl / 2 + SignedDuration::from_millis(1));
    let reader = &instances[1].app;
    sweeps_after(&sweeps, 1).await;
    for r in &names {
        assert_eq!(
            count(&trail(reader, &r.name).await, E::SlaAtRisk),
            1,
            "every request reported at risk by the first sweep at the new time"
        );
    }
    sweeps_after(&sweeps, 3).await;
    for r in &names {
        assert_eq!(
            count(&trail(reader, &r.name).await, E::SlaAtRisk),
            1,
            "reported once, not per sweep"
        );
    }
    let item = ["dsr_sla_item=\"request\""];
    let found: Vec<f64> = instances
        .iter()
        .map(|i| sample(&i.telemetry, "gdpr_dsr_sla_at_risk_total", &item).unwrap_or(0.0))
        .collect();
    assert!(
        found == [5.0, 0.0] || found == [0.0, 5.0],
        "one sweeper did all the work: {found:?}"
    );
    let sweeper = usize::from(found[1] > 0.0);

    // The sweeper stops: it gives up its lease, the other takes it at its
    // next tick.
    let leases = store::connect(&config, false).await.expect("connects");
    let holder = leases
        .lease(LEASE_NAME)
        .await
        .expect("reads")
        .expect("held")
        .holder;
    let other = instances.remove(1 - sweeper);
    let stopped = instances.remove(0);
    stopped.app.stop().await;
    let stop_time = Instant::now();
    eventually("the other instance holding the lease", PATIENCE, || async {
        leases
            .lease(LEASE_NAME)
            .await
            .expect("reads")
            .is_some_and(|l| l.holder != holder)
    })
    .await;
    let took = stop_time.elapsed();
    assert!(
        took < interval + Duration::from_millis(500),
        "took over after {took:?}"
    );

    clock.set(due + SignedDuration::from_secs(1));
    other.app.sweeps_after(1).await;
    assert_eq!(
        sample(&other.telemetry, "gdpr_dsr_sla_breached_total", &item),
        Some(5.0),
        "every breach reported by the other instance"
    );
    for r in &names {
        let events = trail(&other.app, &r.name).await;
        assert_eq!(
            (count(&events, E::SlaAtRisk), count(&events, E::SlaBreached)),
            (1, 1)
        );
    }
    other.app.stop().await;
}

/// A sweeper that dies keeps its lease until it lapses, half an interval
/// after its last renewal; another replica takes it at its next tick, a
/// quarter of an interval later at most, and sweeps at once: within one
/// interval of the crash.
#[tokio::test]
async fn a_dead_sweepers_lease_lapses_and_another_takes_it() {
    let clock = Arc::new(ManualClock::new(monday()));
    let dir = tempfile::tempdir().expect("temp dir");
    // The application's own watchdog ticks every minute: out of the way.
    let (app, _, _) = build(
        crate::db::keyed(StoreConfig::sqlite(dir.path())),
        &dir,
        clock.clone(),
        false,
        Duration::from_secs(60),
    )
    .await;
    let state = app.state().clone();
    let store = state.store.clone();
    let config = WatchdogConfig {
        interval: Duration::from_millis(100),
        ..WatchdogConfig::default()
    };
    let holder_is = |name: String| {
        let store = store.clone();
        async move {
            store
                .lease(LEASE_NAME)
                .await
                .expect("reads")
                .is_some_and(|l| l.holder == name)
        }
    };

    let first = Watchdog::new(state.clone(), config);
    let first_name = first.holder().to_owned();
    let first_sweeps = first.progress().sweeps();
    let first = tokio::spawn(first.run(std::future::pending()));
    // Alone, it takes the lease at its first tick and sweeps at once.
    first_sweep(first_sweeps).await;
    assert!(
        holder_is(first_name.clone()).await,
        "the first sweeper holds the lease"
    );
    // It dies: no chance to give the lease up.
    first.abort();
    let _ = first.await;

    let second = Watchdog::new(state, config);
    let second_name = second.holder().to_owned();
    let second_rounds = second.progress().rounds();
    let second_sweeps = second.progress().sweeps();
    let second = tokio::spawn(second.run(std::future::pending()));
    // Each round, the second tries to take the lease.
    rounds_after(&second_rounds, 4).await;
    assert!(
        holder_is(first_name.clone()).await,
        "the lease has not lapsed: no time has passed on the clock"
    );

    // A moment short of half an interval: still held.
    let ttl = SignedDuration::try_from(watchdog::lease_ttl(config.interval)).expect("short");
    clock.advance(ttl - SignedDuration::from_millis(1));
    rounds_after(&second_rounds, 2).await;
    assert!(holder_is(first_name.clone()).await, "lapsed too early");

    clock.advance(SignedDuration::from_millis(1));
    let lapsed = Instant::now();
    // The second takes the lease at its next round and sweeps at once.
    first_sweep(second_sweeps).await;
    assert!(
        holder_is(second_name.clone()).await,
        "the second sweeper holds the lease"
    );
    let took = lapsed.elapsed();
    assert!(
        took < watchdog::lease_tick(config.interval) + Duration::from_millis(500),
        "took over {took:?} after the lease lapsed"
    );
    second.abort();
}

/// Waits for `n` rounds of a watchdog that began after this call (the
/// round under way, if any, read the clock before it).
async fn rounds_after(rounds: &watch::Receiver<u64>, n: u64) {
    let mut rounds = rounds.clone();
    let target = *rounds.borrow_and_update() + n + 1;
    tokio::time::timeout(PATIENCE, rounds.wait_for(|done| *done >= target))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {n} rounds of the watchdog"))
        .expect("the watchdog runs");
}

/// Waits for a watchdog's first sweep to finish.
async fn first_sweep(mut sweeps: watch::Receiver<u64>) {
    tokio::time::timeout(PATIENCE, sweeps.wait_for(|done| *done >= 1))
        .await
        .expect("timed out waiting for the watchdog's first sweep")
        .expect("the watchdog runs");
}
