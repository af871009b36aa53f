//! Overload: the global limit on concurrent calls sheds with
//! RESOURCE_EXHAUSTED (and RetryInfo) while health keeps answering; an
//! oversized message is RESOURCE_EXHAUSTED, never INTERNAL; a caller's
//! deadline ends a slow call with DEADLINE_EXCEEDED on time; and a flood
//! of the real binary gets only OK or RESOURCE_EXHAUSTED in bounded memory.
//!
//! The flood's size from `GDPR_INTAKE_FLOOD_CALLS` (concurrent calls per
//! round, default 2,000) and `GDPR_INTAKE_FLOOD_ROUNDS` (default 2), its
//! limit from `GDPR_INTAKE_FLOOD_LIMIT` (default 16); the README gives the
//! full-size command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use gdpr_intake::auth::Role;
use gdpr_intake::clock::SystemClock;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use gdpr_intake::startup::{Application, Settings};
use gdpr_intake::store::StoreConfig;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use tokio::sync::{Barrier, oneshot, watch};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};

use crate::helpers::{TestApp, assert_status, authed, submission, test_settings};
use crate::lifecycle::{Binary, env_or, serving};

/// The application on `store`, with `edit` applied to the test settings,
/// and its address.
pub async fn spawn_with(
    store: StoreConfig,
    data_dir: TempDir,
    edit: impl FnOnce(&mut Settings),
) -> (TestApp, SocketAddr) {
    if std::env::var_os("TEST_LOG").is_some() {
        // A second initialisation is ignored.
        gdpr_intake::telemetry::init_logging(gdpr_intake::config::LogFormat::Text);
    }
    let mut settings = test_settings(store, &data_dir);
    edit(&mut settings);
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .expect("application builds");
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
    let app = TestApp {
        channel,
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
        sweeps,
    };
    (app, addr)
}

/// An app on SQLite with `edit` applied.
async fn sqlite_app(edit: impl FnOnce(&mut Settings)) -> TestApp {
    sqlite_app_at(edit).await.0
}

async fn sqlite_app_at(edit: impl FnOnce(&mut Settings)) -> (TestApp, SocketAddr) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_with(
        crate::db::keyed(StoreConfig::sqlite(data_dir.path())),
        data_dir,
        edit,
    )
    .await
}

/// Takes SQLite's write lock from outside the service, as another process
/// would: every write of the service then waits, which makes a slow path
/// on demand. The lock goes with the connection.
async fn hold_write_lock(app: &TestApp) -> SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.data_dir.path().join("gdpr-intake.db"));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("sqlite opens");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("write lock taken");
    conn
}

/// Counts the submissions the server has taken in, from the `rpc` span
/// its telemetry layer opens for each call. That layer calls the limit
/// layer inside it in the same step, and the limit layer takes the call's
/// permit (or sheds it) there and then: once a span is counted, its
/// call's permit is decided.
struct Arrivals(watch::Sender<usize>);

const SUBMIT: &str = "gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest";

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Arrivals {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: LayerContext<'_, S>,
    ) {
        struct Method(bool);
        impl Visit for Method {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0 |= field.name() == "rpc.method" && value == SUBMIT;
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        if attrs.metadata().name() != "rpc" {
            return;
        }
        let mut method = Method(false);
        attrs.record(&mut method);
        if method.0 {
            self.0.send_modify(|n| *n += 1);
        }
    }
}

async fn submit(
    client: &mut DataSubjectRequestServiceClient<Channel>,
    token: &str,
    timeout: Duration,
) -> Result<(), Status> {
    let mut request = authed(token, submission());
    request.set_timeout(timeout);
    client.submit_data_subject_request(request).await.map(drop)
}

// One thread: the server's tasks run under the subscriber this test sets.
#[tokio::test(flavor = "current_thread")]
async fn calls_beyond_the_limit_are_shed_at_once_and_health_still_answers() {
    // With one dispatcher registered, tracing-core would decide whether a
    // callsite is wanted by the default of the thread that reaches it first
    // (another test's, wanting nothing); a second one, wanting nothing,
    // makes it ask every registered dispatcher (src/telemetry/threads.rs).
    let _inert = tracing::Dispatch::new(
        tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF),
    );
    let (arrived, mut arrivals) = watch::channel(0);
    let _counting =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(Arrivals(arrived)));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut store = crate::db::keyed(StoreConfig::sqlite(data_dir.path()));
    // The blocked calls must outlast the test's probing.
    store.acquire_timeout = Duration::from_secs(20);
    store.statement_timeout = Duration::from_secs(20);
    let (app, _) = spawn_with(store, data_dir, |s| s.limits.max_concurrent_calls = 4).await;
    let token = app.token(Role::Controller, "acme");
    let mut lock = hold_write_lock(&app).await;

    // Four submissions wait for the lock and hold the four permits.
    let mut blocked = Vec::new();
    for _ in 0..4 {
        let (mut client, token) = (app.dsr(), token.clone());
        blocked.push(tokio::spawn(async move {
            submit(&mut client, &token, Duration::from_secs(20)).await
        }));
    }
    // They reach the server before any probe: a probe that found a permit
    // would hold it until its deadline, and a submission arriving then
    // would be shed.
    tokio::time::timeout(Duration::from_secs(10), arrivals.wait_for(|n| *n >= 4))
        .await
        .expect("the four submissions reach the server")
        .expect("the subscriber lives");
    let mut shed = None;
    for _ in 0..100 {
        let started = Instant::now();
        match submit(&mut app.dsr(), &token, Duration::from_millis(100)).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                shed = Some((status, started.elapsed()));
                break;
            }
            // The probe's deadline, told by the server or by tonic's own
            // client timer (CANCELLED), whichever came first.
            Err(status) => assert!(
                matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
                "{status:?}"
            ),
            Ok(()) => panic!("a submission went through a held write lock"),
        }
    }
    let (status, took) = shed.expect("a call beyond the limit is shed");
    assert_status(&status, Code::ResourceExhausted, Some("OVERLOADED"));
    let retry = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(retry > Duration::ZERO);
    assert!(took < Duration::from_millis(90), "shedding took {took:?}");

    // Probes answer while every permit is taken.
    assert!(serving(&app.channel, "").await, "liveness under load");
    assert!(
        serving(&app.channel, "gdpr.intake.v1.DataSubjectRequestService").await,
        "readiness under load"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("lock released");
    for call in blocked {
        call.await
            .expect("client")
            .expect("a call under the limit is served once the lock goes");
    }
    // The permits came back.
    submit(&mut app.dsr(), &token, Duration::from_secs(5))
        .await
        .expect("served after the burst");
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_never_internal() {
    let app = sqlite_app(|s| s.limits.max_message_bytes = 4096).await;
    let controller = app.token(Role::Controller, "acme");
    let admin = app.token(Role::Admin, "");

    let mut big = submission();
    big.details = "x".repeat(8 * 1024);
    let status = app
        .dsr()
        .submit_data_subject_request(authed(&controller, big))
        .await
        .expect_err("over the limit");
    assert_status(&status, Code::ResourceExhausted, Some("MESSAGE_TOO_LARGE"));
    assert!(status.message().contains("4096"), "{status:?}");
    assert!(status.get_error_details().retry_info().is_none());

    let status = app
        .routing()
        .create_processor(authed(
            &admin,
            v1::CreateProcessorRequest {
                processor_id: "crm".into(),
                display_name: "y".repeat(5000),
                contact: String::new(),
            },
        ))
        .await
        .expect_err("over the limit");
    assert_status(&status, Code::ResourceExhausted, Some("MESSAGE_TOO_LARGE"));

    // Just under the limit the message reaches the handler, which judges
    // its fields.
    let mut under = submission();
    under.details = "x".repeat(1000);
    app.dsr()
        .submit_data_subject_request(authed(&controller, under))
        .await
        .expect("a message under the limit is served");
    app.stop().await;
}

#[tokio::test]
async fn the_default_message_limit_is_256_kib() {
    let app = sqlite_app(|_| {}).await;
    let controller = app.token(Role::Controller, "acme");
    let mut big = submission();
    big.details = "x".repeat(300 * 1024);
    let status = app
        .dsr()
        .submit_data_subject_request(authed(&controller, big))
        .await
        .expect_err("over the limit");
    assert_status(&status, Code::ResourceExhausted, Some("MESSAGE_TOO_LARGE"));
    assert!(status.message().contains("262144"), "{status:?}");
    app.stop().await;
}

/// A gRPC client with no timer of its own: tonic's `Channel` enforces
/// `grpc-timeout` on the client side too (and reports CANCELLED), which
/// would hide what the server answers. This one sends the header and
/// waits for the server.
#[derive(Clone)]
struct RawH2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for RawH2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<
        Box<
            dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

async fn raw_client(addr: SocketAddr) -> DataSubjectRequestServiceClient<RawH2> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("tcp connects");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("http/2 handshake");
    tokio::spawn(conn);
    DataSubjectRequestServiceClient::with_origin(
        RawH2(send),
        format!("http://{addr}").parse().expect("origin"),
    )
}

#[tokio::test]
async fn a_deadline_ends_a_slow_call_with_deadline_exceeded_on_time() {
    let (app, addr) = sqlite_app_at(|_| {}).await;
    let token = app.token(Role::Controller, "acme");
    let processor = app.token(Role::Processor, "crm");
    let _lock = hold_write_lock(&app).await;
    let deadline = Duration::from_millis(300);

    // What the server answers, seen by a client without a timer.
    let mut raw = raw_client(addr).await;
    let mut request = authed(&token, submission());
    request.set_timeout(deadline);
    let started = Instant::now();
    let status = raw
        .submit_data_subject_request(request)
        .await
        .expect_err("the write lock is held");
    let took = started.elapsed();
    assert_status(&status, Code::DeadlineExceeded, Some("DEADLINE_EXCEEDED"));
    assert!(
        took >= deadline - Duration::from_millis(10)
            && took < deadline + Duration::from_millis(500),
        "answered after {took:?} for a {deadline:?} deadline"
    );

    // A tonic client runs its own timer alongside and reports CANCELLED
    // when it fires first; the server's answer usually beats it by the
    // margin. Either way the call ends on time.
    let started = Instant::now();
    let status = submit(&mut app.dsr(), &token, deadline)
        .await
        .expect_err("the write lock is held");
    let took = started.elapsed();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(took < deadline + Duration::from_millis(500), "{took:?}");

    // A response stream ends at the caller's deadline too.
    let mut request = authed(&processor, v1::WatchTasksRequest::default());
    request.set_timeout(deadline);
    let started = Instant::now();
    let mut stream = ProcessorTaskServiceClient::new(app.channel.clone())
        .watch_tasks(request)
        .await
        .expect("the watch opens")
        .into_inner();
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watch ended without a status"),
            Err(status) => break status,
        }
    };
    let took = started.elapsed();
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(
        took >= deadline - Duration::from_millis(10)
            && took < deadline + Duration::from_millis(500),
        "the stream ended after {took:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_only_ok_or_resource_exhausted_in_bounded_memory() {
    let calls = env_or("GDPR_INTAKE_FLOOD_CALLS", 2000);
    let rounds = env_or("GDPR_INTAKE_FLOOD_ROUNDS", 2);
    let limit = env_or("GDPR_INTAKE_FLOOD_LIMIT", 16);
    let server = Binary::start(&["--max-concurrent-calls", &limit.to_string()], None);
    let probe = server.ready().await;
    let token = server.token(Role::Controller, "acme");
    let idle_kib = server.memory_kib("VmRSS");
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(server.connect().await);
    }

    // Health checks all along, on their own connection.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut checks, mut failures, mut slowest) = (0, 0, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                if !serving(&probe, "").await {
                    failures += 1;
                }
                checks += 1;
                slowest = slowest.max(started.elapsed());
                // The prober's pace, not synchronisation: it samples health.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (checks, failures, slowest)
        })
    };

    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut retry_info_missing = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        let barrier = Arc::new(Barrier::new(calls));
        let mut tasks = Vec::with_capacity(calls);
        for i in 0..calls {
            let mut client =
                DataSubjectRequestServiceClient::new(channels[i % channels.len()].clone());
            let (barrier, token) = (barrier.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut request: Request<_> = authed(&token, submission());
                request.set_timeout(Duration::from_secs(60));
                client.submit_data_subject_request(request).await.map(drop)
            }));
        }
        for t in tasks {
            let (code, retry) = match t.await.expect("client") {
                Ok(()) => (Code::Ok, true),
                Err(status) => (
                    status.code(),
                    status.get_error_details().retry_info().is_some(),
                ),
            };
            if code == Code::ResourceExhausted && !retry {
                retry_info_missing += 1;
            }
            *codes.entry(format!("{code:?}")).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checks, health_failures, slowest_check) = prober.await.expect("prober");
    let peak_kib = server.memory_kib("VmHWM");
    let rss_kib = server.memory_kib("VmRSS");

    eprintln!(
        "flood: {rounds} rounds of {calls} concurrent calls, limit {limit}, in {elapsed:?}: {codes:?}; \
         server memory idle {} MiB, peak (VmHWM) {} MiB, after {} MiB; \
         {checks} health checks, {health_failures} failed, slowest {slowest_check:?}",
        idle_kib / 1024,
        peak_kib / 1024,
        rss_kib / 1024,
    );
    let others: Vec<_> = codes
        .iter()
        .filter(|(c, _)| *c != "Ok" && *c != "ResourceExhausted")
        .collect();
    assert!(
        others.is_empty(),
        "answers other than OK or RESOURCE_EXHAUSTED: {others:?}"
    );
    assert!(
        codes.get("Ok").copied().unwrap_or(0) > 0,
        "nothing was served"
    );
    assert!(
        codes.get("ResourceExhausted").copied().unwrap_or(0) > 0,
        "nothing was shed"
    );
    assert_eq!(retry_info_missing, 0, "a shed call without RetryInfo");
    assert_eq!(health_failures, 0, "a health check failed under the flood");
    // Shed calls cost a header block each and nothing queues, so the peak
    // stays within a small multiple of the idle footprint however large
    // the flood.
    assert!(
        peak_kib < 256 * 1024,
        "peak resident memory {} MiB",
        peak_kib / 1024
    );
}
