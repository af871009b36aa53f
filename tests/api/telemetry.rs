//! Telemetry: the RPC span and its attributes, trace context from the
//! caller, no personal data in spans, the Prometheus endpoint, and spans
//! and metrics leaving the process over OTLP/gRPC — also from the real
//! binary configured only by `OTEL_*` variables, and on a one-worker
//! runtime at shutdown.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::clock::{Clock, ManualClock, SystemClock};
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::startup::{Application, Settings};
use gdpr_intake::store::StoreConfig;
use gdpr_intake::telemetry::{OtlpExport, Telemetry, TelemetryConfig};
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status as SpanStatus};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};

use crate::helpers::*;

const GET: &str = "gdpr.intake.v1.DataSubjectRequestService/GetDataSubjectRequest";
const SUBMIT: &str = "gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest";
const CONSENT: &str = "gdpr.intake.v1.DataSubjectRequestService/RecordGuardianConsent";
const CLOSE: &str = "gdpr.intake.v1.DataSubjectRequestService/CloseDataSubjectRequest";
const CLAIM: &str = "gdpr.intake.v1.ProcessorTaskService/ClaimTasks";
const COMPLETE: &str = "gdpr.intake.v1.ProcessorTaskService/CompleteTask";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn test_log_format() -> Option<gdpr_intake::config::LogFormat> {
    std::env::var_os("TEST_LOG").map(|_| gdpr_intake::config::LogFormat::Text)
}

/// An app on SQLite with `telemetry`; returns it with its metrics address.
async fn spawn_with(telemetry: Telemetry) -> (TestApp, Option<SocketAddr>) {
    spawn_with_clock(telemetry, Arc::new(SystemClock)).await
}

/// [`spawn_with`] on `clock`.
async fn spawn_with_clock(
    telemetry: Telemetry,
    clock: Arc<dyn Clock>,
) -> (TestApp, Option<SocketAddr>) {
    spawn_with_settings(telemetry, clock, |_| {}).await
}

/// [`spawn_with_clock`] with the test settings as `configure` leaves them.
async fn spawn_with_settings(
    telemetry: Telemetry,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, Option<SocketAddr>) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(
        crate::db::keyed(StoreConfig::sqlite(data_dir.path())),
        &data_dir,
    );
    configure(&mut settings);
    let app = Application::build_with_telemetry(settings, clock, telemetry)
        .await
        .expect("application builds");
    let addr = app.local_addr();
    let sweeps = app.watchdog_sweeps();
    let metrics = app.metrics_addr();
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
    (app, metrics)
}

/// An app whose spans go to an in-memory exporter. Several may run at once,
/// each with its own exporter.
async fn spawn_traced() -> (TestApp, InMemorySpanExporter) {
    spawn_traced_at(tracing::Level::INFO).await
}

/// [`spawn_traced`], exporting the service's spans from `level` up.
async fn spawn_traced_at(level: tracing::Level) -> (TestApp, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let telemetry = Telemetry::builder(TelemetryConfig {
        log_format: test_log_format(),
        trace_level: level,
        ..TelemetryConfig::quiet()
    })
    .with_span_exporter(exporter.clone())
    .build()
    .expect("telemetry builds");
    let (app, _) = spawn_with(telemetry).await;
    (app, exporter)
}

/// Waits for the spans `done` accepts, `what` they are: a call's span ends
/// when the server has sent its last frame, which may be just after the
/// client has it.
async fn spans_when(
    exporter: &InMemorySpanExporter,
    what: &str,
    done: impl Fn(&[SpanData]) -> bool,
) -> Vec<SpanData> {
    eventually(what, Duration::from_secs(10), || {
        let spans = exporter.get_finished_spans().expect("spans");
        std::future::ready(done(&spans).then_some(spans))
    })
    .await
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Option<&'a SpanData> {
    let found = spans.iter().find(|s| s.name == name);
    if found.is_none() {
        eprintln!(
            "no span {name} among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    found
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// A span carries each attribute key once, however often the handler
/// learnt it.
fn assert_each_key_once(span: &SpanData) {
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    let given = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), given, "{:?}", span.attributes);
}

fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

fn with_traceparent<T>(mut req: Request<T>) -> Request<T> {
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .expect("ascii"),
    );
    req
}

#[tokio::test]
async fn every_rpc_gets_a_server_span_named_after_its_method() {
    let (app, exporter) = spawn_traced().await;
    let token = app.token(Role::Controller, "acme");
    let name = format!("dataSubjectRequests/{}", uuid::Uuid::new_v4());
    let err = app
        .dsr()
        .get_data_subject_request(authed(
            &token,
            v1::GetDataSubjectRequestRequest { name: name.clone() },
        ))
        .await
        .expect_err("no such request");
    assert_eq!(err.code(), Code::NotFound);

    let spans = spans_when(&exporter, "the Get call's span", |s| {
        named(s, GET).is_some()
    })
    .await;
    let rpc = named(&spans, GET).expect("rpc span");
    assert_eq!(rpc.span_kind, SpanKind::Server);
    assert_eq!(attr_str(rpc, "rpc.system.name").as_deref(), Some("grpc"));
    assert_eq!(attr_str(rpc, "rpc.method").as_deref(), Some(GET));
    // A trailers-only answer: the status came in the response headers.
    assert_eq!(
        attr_str(rpc, "rpc.status_code").as_deref(),
        Some("NOT_FOUND")
    );
    // The caller's mistake is not the server's error.
    assert_eq!(attr(rpc, "error.type"), None);
    assert_eq!(rpc.status, SpanStatus::Unset);
    assert_eq!(
        attr_str(rpc, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert!(attr(rpc, "server.port").is_some());
    assert_eq!(
        attr_str(rpc, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );
    // No caller context: a new trace.
    assert_eq!(rpc.parent_span_id, opentelemetry::trace::SpanId::INVALID);

    // The handler's domain attributes are on the call's own span: one span
    // per call.
    assert_eq!(attr_str(rpc, "dsr.controller_id").as_deref(), Some("acme"));
    assert_eq!(spans.len(), 1, "{spans:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_read_request_carries_the_domain_attributes_and_status_from_trailers() {
    let (app, exporter) = spawn_traced().await;
    let token = app.token(Role::Controller, "acme");
    let created = app
        .dsr()
        .submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    app.dsr()
        .get_data_subject_request(authed(
            &token,
            v1::GetDataSubjectRequestRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .expect("found");

    let spans = spans_when(&exporter, "the Get call's span", |s| {
        named(s, GET).is_some()
    })
    .await;
    let rpc = named(&spans, GET).expect("rpc span");
    // A message, then the status in the trailers.
    assert_eq!(attr_str(rpc, "rpc.status_code").as_deref(), Some("OK"));
    assert_eq!(rpc.status, SpanStatus::Unset);

    let handler = rpc;
    assert_each_key_once(handler);
    assert_eq!(attr_str(handler, "dsr.name"), Some(created.name));
    assert_eq!(attr_str(handler, "dsr.type").as_deref(), Some("access"));
    assert_eq!(
        attr_str(handler, "dsr.state").as_deref(),
        Some("in_progress")
    );
    assert_eq!(attr_str(handler, "dsr.regime").as_deref(), Some("GDPR"));
    assert_eq!(
        attr_str(handler, "dsr.controller_id").as_deref(),
        Some("acme")
    );
    assert!(attr(handler, "dsr.due_time").is_some());
    match attr(handler, "dsr.sla.remaining_seconds") {
        // A month ahead, give or take the holidays.
        Some(Value::I64(s)) => assert!(s > 20 * 86_400 && s < 40 * 86_400, "{s}"),
        other => panic!("dsr.sla.remaining_seconds: {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_method_is_other_and_a_server_error() {
    let (app, exporter) = spawn_traced().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let path = "/gdpr.intake.v1.NoSuchService/Nothing";
    let err = grpc
        .unary::<(), (), _>(
            Request::new(()),
            http::uri::PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("not served");
    assert_eq!(err.code(), Code::Unimplemented);

    let spans = spans_when(&exporter, "the unknown method's span", |s| {
        named(s, "grpc").is_some()
    })
    .await;
    let rpc = named(&spans, "grpc").expect("span named after the system");
    assert_eq!(attr_str(rpc, "rpc.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        attr_str(rpc, "rpc.method_original").as_deref(),
        Some("gdpr.intake.v1.NoSuchService/Nothing")
    );
    assert_eq!(
        attr_str(rpc, "rpc.status_code").as_deref(),
        Some("UNIMPLEMENTED")
    );
    assert_eq!(
        attr_str(rpc, "error.type").as_deref(),
        Some("UNIMPLEMENTED")
    );
    assert!(matches!(rpc.status, SpanStatus::Error { .. }));
    app.stop().await;
}

#[tokio::test]
async fn the_callers_trace_continues_through_the_service() {
    let (app, exporter) = spawn_traced().await;
    let token = app.token(Role::Controller, "acme");
    let _ = app
        .dsr()
        .get_data_subject_request(with_traceparent(authed(
            &token,
            v1::GetDataSubjectRequestRequest {
                name: format!("dataSubjectRequests/{}", uuid::Uuid::new_v4()),
            },
        )))
        .await;
    let spans = spans_when(&exporter, "the Get call's span", |s| {
        named(s, GET).is_some()
    })
    .await;
    let rpc = named(&spans, GET).expect("rpc span");
    assert_eq!(rpc.span_context.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(rpc.parent_span_id.to_string(), CALLER_SPAN);
    app.stop().await;
}

#[tokio::test]
async fn health_checks_are_not_traced() {
    let (app, exporter) = spawn_traced().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("healthy");
    // A traced call after it, so there is something to wait for.
    let _ = app
        .dsr()
        .get_data_subject_request(v1::GetDataSubjectRequestRequest {
            name: String::new(),
        })
        .await;
    let spans = spans_when(&exporter, "the Get call's span", |s| {
        named(s, GET).is_some()
    })
    .await;
    assert!(named(&spans, GET).is_some());
    assert!(
        spans.iter().all(|s| !s.name.contains("Health")),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    app.stop().await;
}

#[tokio::test]
async fn no_span_attribute_holds_personal_data_or_the_token() {
    let (app, exporter) = spawn_traced().await;
    let token = app.token(Role::Controller, "acme");
    let mut dsr = app.dsr();
    let created = dsr
        .submit_data_subject_request(with_traceparent(authed(&token, submission())))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    dsr.get_data_subject_request(authed(
        &token,
        v1::GetDataSubjectRequestRequest {
            name: created.name.clone(),
        },
    ))
    .await
    .expect("found");
    let minor = v1::SubmitDataSubjectRequestRequest {
        subject: Some(minor_subject()),
        ..submission()
    };
    dsr.submit_data_subject_request(authed(&token, minor))
        .await
        .expect("minor accepted, awaiting consent");
    let _ = dsr
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest::default(),
        ))
        .await
        .expect("listed");

    let spans = spans_when(&exporter, "the four calls' spans", |s| {
        s.iter()
            .filter(|s| s.name.starts_with("gdpr.intake.v1."))
            .count()
            >= 4
    })
    .await;
    assert!(spans.len() >= 4, "rpc spans: {}", spans.len());
    let subject = adult_subject();
    let forbidden = [
        subject.email.as_str(),
        "1985-12-10",
        &token,
        "Bearer",
        "authorization",
    ];
    for span in &spans {
        let mut values: Vec<(String, String)> = span
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        for event in span.events.iter() {
            values.extend(
                event
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.to_string(), kv.value.to_string())),
            );
            values.push(("event".to_owned(), event.name.to_string()));
        }
        values.push(("name".to_owned(), span.name.to_string()));
        for (key, value) in &values {
            for secret in forbidden {
                assert!(
                    !key.contains(secret) && !value.contains(secret),
                    "span {} has {key} = {value}",
                    span.name
                );
            }
        }
    }
    app.stop().await;
}

/// Later calls about a request (consent, close, a processor's claim and
/// completion) start traces of their own, linked to the call that
/// submitted it; a task's spans say which task and request.
#[tokio::test]
async fn later_spans_link_to_the_submission() {
    let (app, exporter) = spawn_traced().await;
    let controller = app.token(Role::Controller, "acme");
    let processor = app.token(Role::Processor, "crm");
    app.route("acme", "crm", &[], 72).await;
    let mut dsr = app.dsr();
    let minor = v1::SubmitDataSubjectRequestRequest {
        subject: Some(minor_subject()),
        ..submission()
    };
    let minor = dsr
        .submit_data_subject_request(with_traceparent(authed(&controller, minor)))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    dsr.record_guardian_consent(authed(
        &controller,
        v1::RecordGuardianConsentRequest {
            name: minor.name.clone(),
            guardian: Some(v1::Guardian {
                full_name: "Grace Hopper".to_owned(),
                relationship: v1::GuardianRelationship::Parent.into(),
                email: "grace@example.org".to_owned(),
                verification_method: "video call with id".to_owned(),
                // After the receipt, not in the future.
                consented_at: Some(prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: now.subsec_nanos() as i32,
                }),
            }),
        },
    ))
    .await
    .expect("consent recorded: the task is created");
    let mut tasks = app.tasks();
    let claimed = tasks
        .claim_tasks(authed(&processor, v1::ClaimTasksRequest::default()))
        .await
        .expect("claimed")
        .into_inner()
        .tasks;
    assert_eq!(claimed.len(), 1);
    let task = &claimed[0];
    tasks
        .complete_task(authed(
            &processor,
            v1::CompleteTaskRequest {
                name: task.name.clone(),
                lease_token: task.lease_token.clone(),
                outcome: v1::TaskOutcome::NoDataHeld.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("completed: the request completes too");

    let adult = dsr
        .submit_data_subject_request(with_traceparent(authed(&controller, submission())))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    dsr.close_data_subject_request(authed(
        &controller,
        v1::CloseDataSubjectRequestRequest {
            name: adult.name.clone(),
            outcome: v1::Outcome::Refused.into(),
            refusal_reason: v1::RefusalReason::Excessive.into(),
            explanation: "the fifth identical request this week".to_owned(),
        },
    ))
    .await
    .expect("refused");

    let later = [CONSENT, CLAIM, "gdpr.tasks.claimed", COMPLETE, CLOSE];
    let spans = spans_when(&exporter, "the spans of the later calls", |s| {
        later.iter().all(|name| named(s, name).is_some())
    })
    .await;
    for name in later {
        let span = named(&spans, name).unwrap_or_else(|| panic!("{name} exported"));
        assert!(
            span.links
                .iter()
                .any(|l| l.span_context.trace_id().to_string() == CALLER_TRACE),
            "{name} links to the submission: {:?}",
            span.links
        );
        assert_ne!(
            span.span_context.trace_id().to_string(),
            CALLER_TRACE,
            "{name} is a trace of its own"
        );
    }
    let complete = named(&spans, COMPLETE).expect("exported");
    assert_each_key_once(complete);
    assert_eq!(attr_str(complete, "dsr.task.name"), Some(task.name.clone()));
    assert_eq!(
        attr_str(complete, "dsr.task.processor_id").as_deref(),
        Some("crm")
    );
    assert_eq!(attr(complete, "dsr.task.attempt"), Some(Value::I64(1)));
    assert!(attr(complete, "dsr.task.due_time").is_some());
    assert_eq!(attr_str(complete, "dsr.name"), Some(minor.name.clone()));
    assert_eq!(attr_str(complete, "dsr.type").as_deref(), Some("access"));
    assert_eq!(
        attr_str(complete, "dsr.state").as_deref(),
        Some("completed"),
        "the completion closed the request"
    );
    let claimed_span = named(&spans, "gdpr.tasks.claimed").expect("exported");
    let claim = named(&spans, CLAIM).expect("exported");
    assert_eq!(
        claimed_span.parent_span_id,
        claim.span_context.span_id(),
        "one span per claimed task, under the call that claimed it"
    );
    assert_eq!(attr(claim, "dsr.task.claimed"), Some(Value::I64(1)));
    assert_eq!(
        attr_str(claimed_span, "dsr.task.name"),
        Some(task.name.clone())
    );
    assert_eq!(
        attr_str(claimed_span, "dsr.controller_id").as_deref(),
        Some("acme")
    );
    app.stop().await;
}

/// `GET path` over plain HTTP/1.1; the status line and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an http answer");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// An app on SQLite serving its metrics on a port of its own; returns it
/// with that port's address.
pub(crate) async fn spawn_with_metrics_endpoint() -> (TestApp, SocketAddr) {
    spawn_with_metrics_endpoint_on(Arc::new(SystemClock)).await
}

/// [`spawn_with_metrics_endpoint`] on `clock`.
async fn spawn_with_metrics_endpoint_on(clock: Arc<dyn Clock>) -> (TestApp, SocketAddr) {
    spawn_with_metrics_endpoint_configured(clock, |_| {}).await
}

/// [`spawn_with_metrics_endpoint_on`] with the test settings as
/// `configure` leaves them.
pub(crate) async fn spawn_with_metrics_endpoint_configured(
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, SocketAddr) {
    let telemetry = Telemetry::builder(TelemetryConfig {
        metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
        log_format: test_log_format(),
        ..TelemetryConfig::quiet()
    })
    .build()
    .expect("telemetry builds");
    let (app, metrics) = spawn_with_settings(telemetry, clock, configure).await;
    (app, metrics.expect("metrics endpoint bound"))
}

/// The `gdpr_deadline_holidays_unverified_total` lines an app's metrics
/// endpoint serves.
async fn holidays_unverified_lines(metrics: SocketAddr) -> Vec<String> {
    let (status, text) = http_get(metrics, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    text.lines()
        .filter(|l| l.starts_with("gdpr_deadline_holidays_unverified_total"))
        .map(str::to_owned)
        .collect()
}

/// An app whose clock reads noon UTC on `month`/`day` of `year`.
async fn app_on(year: i16, month: i8, day: i8) -> (TestApp, SocketAddr) {
    let now = jiff::civil::date(year, month, day)
        .at(12, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .expect("representable")
        .timestamp();
    spawn_with_metrics_endpoint_on(Arc::new(ManualClock::new(now))).await
}

#[tokio::test]
async fn deadlines_past_the_verified_holiday_years_are_counted_by_country() {
    use gdpr_intake::domain::holidays::VERIFIED_THROUGH;

    // Received mid-December of the last verified year: a German deadline
    // in January after it.
    let (app, metrics) = app_on(VERIFIED_THROUGH, 12, 15).await;
    let token = app.token(Role::Controller, "acme");
    let created = app
        .dsr()
        .submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request returned");
    let lines = holidays_unverified_lines(metrics).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("country=\"DE\""), "{lines:?}");
    assert!(lines[0].ends_with(" 1"), "{lines:?}");
    // Only the country: no tenant or subject.
    assert!(!lines[0].contains("acme") && !lines[0].contains("ada"));

    app.dsr()
        .extend_deadline(authed(
            &token,
            v1::ExtendDeadlineRequest {
                name: created.name,
                reason: "many systems to search".to_owned(),
            },
        ))
        .await
        .expect("extended");
    let lines = holidays_unverified_lines(metrics).await;
    assert!(lines[0].ends_with(" 2"), "{lines:?}");
    app.stop().await;

    // Received mid-October of that year: due mid-November, within the
    // verified years, so nothing is counted.
    let (app, metrics) = app_on(VERIFIED_THROUGH, 10, 15).await;
    let token = app.token(Role::Controller, "acme");
    app.dsr()
        .submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("submitted");
    assert_eq!(
        holidays_unverified_lines(metrics).await,
        Vec::<String>::new()
    );
    app.stop().await;
}

#[tokio::test]
async fn prometheus_endpoint_serves_the_service_metrics() {
    let (app, metrics) = spawn_with_metrics_endpoint().await;
    let token = app.token(Role::Controller, "acme");
    let mut dsr = app.dsr();
    dsr.submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("submitted");
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let child = v1::SubmitDataSubjectRequestRequest {
        subject: Some(v1::Subject {
            date_of_birth: Some(Date {
                year: i32::from(today.year()) - 10,
                month: 1,
                day: 1,
            }),
            ..adult_subject()
        }),
        ..submission()
    };
    let refused = dsr
        .submit_data_subject_request(authed(&token, child))
        .await
        .expect_err("under the minimum age");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // The duration is recorded when the call's last frame is sent.
    let text = eventually(
        "the refused call's duration in the scrape",
        Duration::from_secs(10),
        || async {
            let (status, text) = http_get(metrics, "/metrics").await;
            assert!(status.contains("200"), "{status}");
            text.contains("rpc_status_code=\"FAILED_PRECONDITION\"")
                .then_some(text)
        },
    )
    .await;
    let has = |name: &str, labels: &[&str], value: &str| {
        text.lines().any(|l| {
            l.starts_with(name)
                && labels.iter().all(|label| l.contains(label))
                && l.ends_with(&format!(" {value}"))
        })
    };
    assert!(
        has(
            "gdpr_dsr_submitted_total{",
            &["dsr_type=\"access\"", "dsr_regime=\"GDPR\""],
            "1"
        ),
        "{text}"
    );
    assert!(
        has(
            "gdpr_dsr_blocked_total{",
            &["reason=\"SUBJECT_UNDER_MINIMUM_AGE\""],
            "1"
        ),
        "{text}"
    );
    assert!(
        has(
            "rpc_server_call_duration_seconds_count{",
            &[
                "rpc_method=\"gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest\"",
                "rpc_status_code=\"OK\"",
                "rpc_system_name=\"grpc\"",
            ],
            "1"
        ),
        "{text}"
    );
    // No tenant (or anything else about a caller or subject) as a label.
    assert!(!text.contains("acme"), "{text}");
    assert!(!text.contains("example.org"), "{text}");

    let (status, _) = http_get(metrics, "/other").await;
    assert!(status.contains("404"), "{status}");
    app.stop().await;
}

/// What a collector received.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<ResourceSpans>>>,
    metrics: Arc<Mutex<Vec<ResourceMetrics>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.spans
            .lock()
            .expect("lock")
            .extend(request.into_inner().resource_spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics
            .lock()
            .expect("lock")
            .extend(request.into_inner().resource_metrics);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A minimal OTLP/gRPC collector on loopback, on a thread and runtime of
/// its own, so it answers whatever the application's runtime is doing.
struct Collector {
    addr: SocketAddr,
    received: Received,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let received = Received::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = received.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                Server::builder()
                    .add_service(TraceServiceServer::new(service.clone()))
                    .add_service(MetricsServiceServer::new(service))
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("collector serves");
            });
        });
        Self {
            addr,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received: its name, trace id (hex), attributes and its
    /// resource's attributes, values as strings.
    fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for rs in self.received.spans.lock().expect("lock").iter() {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| string_attrs(&r.attributes))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(ReceivedSpan {
                        name: span.name.clone(),
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        attributes: string_attrs(&span.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
        out
    }

    fn metric_names(&self) -> Vec<String> {
        self.received
            .metrics
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| m.name.clone())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    attributes: Vec<(String, String)>,
    resource: Vec<(String, String)>,
}

impl ReceivedSpan {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn resource(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn string_attrs(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// Shutdown flushes the batch processor without blocking the runtime: on a
/// one-worker runtime (a 1-CPU pod) a blocking flush would wait on an export
/// that only this very thread could drive.
#[test]
fn spans_and_metrics_leave_over_otlp_and_shutdown_finishes_on_one_worker() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
    let collector = Collector::start();
    let endpoint = collector.endpoint();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let telemetry = Telemetry::builder(TelemetryConfig {
                otlp: Some(OtlpExport {
                    endpoint: Some(endpoint),
                }),
                log_format: test_log_format(),
                shutdown_timeout: SHUTDOWN_TIMEOUT,
                ..TelemetryConfig::quiet()
            })
            .build()
            .expect("telemetry builds");
            let (app, _) = spawn_with(telemetry).await;
            let token = app.token(Role::Controller, "acme");
            let _ = app
                .dsr()
                .get_data_subject_request(with_traceparent(authed(
                    &token,
                    v1::GetDataSubjectRequestRequest {
                        name: format!("dataSubjectRequests/{}", uuid::Uuid::new_v4()),
                    },
                )))
                .await;
            // Stops the server, which flushes its telemetry last.
            app.stop().await;
        });
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(SHUTDOWN_TIMEOUT * 3)
        .expect("the app stopped, flush included");
    // A flush that blocked the only worker would stall until the export
    // timed out, and only then let the export run.
    let took = started.elapsed();
    assert!(took < SHUTDOWN_TIMEOUT / 2, "took {took:?}");

    let spans = collector.spans();
    let rpc = spans
        .iter()
        .find(|s| s.name == GET)
        .unwrap_or_else(|| panic!("rpc span received: {spans:?}"));
    assert_eq!(rpc.trace_id, CALLER_TRACE);
    assert_eq!(rpc.attr("rpc.status_code"), Some("NOT_FOUND"));
    assert_eq!(rpc.resource("service.name"), Some("gdpr-intake"));
    // The handler's attributes are on the call's span.
    assert!(rpc.attr("dsr.controller_id").is_some(), "{rpc:?}");
    let metrics = collector.metric_names();
    assert!(
        metrics.iter().any(|m| m == "rpc.server.call.duration"),
        "{metrics:?}"
    );
}

/// The real binary, configured only by the standard variables: spans reach
/// the collector named by `OTEL_EXPORTER_OTLP_ENDPOINT`, the resource comes
/// from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, sampling is
/// parent-based as `OTEL_TRACES_SAMPLER` says, and the JSON log line
/// written inside a call carries the call's trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_to_the_endpoint_in_its_environment() {
    let collector = Collector::start();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gdpr-intake"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_SERVICE_NAME", "intake-e2e")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        )
        // Only traces a caller already samples are recorded.
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_off")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SDK_DISABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str(&line) {
                let _ = line_tx.send(json);
            }
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the binary logs that it listens");
        let listening = line["message"] == "gdpr-intake listening";
        lines.push(line);
        if listening {
            break lines[lines.len() - 1]["addr"]
                .as_str()
                .expect("addr")
                .to_owned();
        }
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let token = dev::mint_token(
        data_dir.path(),
        &TokenClaims {
            issuer: dev::DEV_ISSUER.to_owned(),
            audience: "gdpr-intake".to_owned(),
            subject: "controller@acme".to_owned(),
            role: Role::Controller,
            tenant: "acme".to_owned(),
            ttl_secs: 600,
            token_id: None,
        },
    )
    .expect("token");
    let mut dsr =
        v1::data_subject_request_service_client::DataSubjectRequestServiceClient::new(channel);
    // Refused by the age rule: the handler logs a line inside its span.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let child_subject = v1::SubmitDataSubjectRequestRequest {
        subject: Some(v1::Subject {
            date_of_birth: Some(Date {
                year: i32::from(today.year()) - 10,
                month: 1,
                day: 1,
            }),
            ..adult_subject()
        }),
        ..submission()
    };
    let refused = dsr
        .submit_data_subject_request(with_traceparent(authed(&token, child_subject)))
        .await
        .expect_err("under the minimum age");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // No caller context: the sampler drops it.
    let _ = dsr
        .get_data_subject_request(authed(
            &token,
            v1::GetDataSubjectRequestRequest {
                name: format!("dataSubjectRequests/{}", uuid::Uuid::new_v4()),
            },
        ))
        .await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = eventually(
        "the binary to stop after SIGTERM",
        Duration::from_secs(30),
        || std::future::ready(child.try_wait().expect("waits")),
    )
    .await;
    assert!(exit.success(), "{exit:?}");
    lines.extend(line_rx.try_iter());

    let spans = collector.spans();
    let rpc = spans
        .iter()
        .find(|s| s.name == SUBMIT)
        .unwrap_or_else(|| panic!("submit span received: {spans:?}"));
    assert_eq!(rpc.trace_id, CALLER_TRACE);
    assert_eq!(rpc.attr("rpc.status_code"), Some("FAILED_PRECONDITION"));
    assert_eq!(rpc.resource("service.name"), Some("intake-e2e"));
    assert_eq!(rpc.resource("deployment.environment.name"), Some("test"));
    assert!(
        spans.iter().all(|s| s.name != GET),
        "an unsampled call was exported: {spans:?}"
    );

    let refusal = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("submission refused by the age rule"))
        })
        .unwrap_or_else(|| panic!("refusal logged: {lines:?}"));
    assert_eq!(refusal["trace_id"], CALLER_TRACE);
    assert_eq!(refusal["span_id"].as_str().map(str::len), Some(16));
    for line in &lines {
        let text = line.to_string();
        assert!(!text.contains("ada@example.org"), "{text}");
        assert!(!text.contains(&token), "{text}");
    }
}

/// Submits and reads `n` requests with every store operation traced;
/// returns how many submit and get calls were exported.
async fn submit_and_get(n: usize) -> [usize; 2] {
    let (app, exporter) = spawn_traced_at(tracing::Level::DEBUG).await;
    let token = app.token(Role::Controller, "acme");
    for _ in 0..n {
        let created = app
            .dsr()
            .submit_data_subject_request(authed(&token, submission()))
            .await
            .expect("submitted")
            .into_inner()
            .data_subject_request
            .expect("request");
        app.dsr()
            .get_data_subject_request(authed(
                &token,
                v1::GetDataSubjectRequestRequest { name: created.name },
            ))
            .await
            .expect("found");
    }
    let count = |spans: &[SpanData]| {
        [SUBMIT, GET].map(|name| spans.iter().filter(|s| s.name == name).count())
    };
    let spans = spans_when(&exporter, "every submit and get span", |s| {
        count(s) == [n; 2]
    })
    .await;
    app.stop().await;
    count(&spans)
}

/// Store operations have spans of their own only at trace level DEBUG; at
/// the default (INFO) a call exports its own span and the lifecycle's.
#[tokio::test]
async fn store_spans_are_exported_at_trace_level_debug_only() {
    for (level, traced) in [(tracing::Level::INFO, false), (tracing::Level::DEBUG, true)] {
        let (app, exporter) = spawn_traced_at(level).await;
        let token = app.token(Role::Controller, "acme");
        app.dsr()
            .submit_data_subject_request(authed(&token, submission()))
            .await
            .expect("submitted");
        let spans = spans_when(&exporter, "the submission's spans", |s| {
            named(s, SUBMIT).is_some()
                && (!traced
                    || ["gdpr.store.insert_requests", "gdpr.store.controller_routes"]
                        .iter()
                        .all(|name| s.iter().any(|s| s.name == *name)))
        })
        .await;
        named(&spans, SUBMIT).expect("the call's span");
        let store: Vec<_> = spans
            .iter()
            .filter(|s| s.name.starts_with("gdpr.store."))
            .collect();
        if traced {
            // The routes are read, and the request written, by the workers
            // that serve the calls of a group together, in their own spans.
            assert!(named(&spans, "gdpr.store.controller_routes").is_some());
            assert!(named(&spans, "gdpr.store.insert_requests").is_some());
        } else {
            assert!(store.is_empty(), "{store:?}");
        }
        app.stop().await;
    }
}

/// Several traced apps at once, each on a runtime of its own, as parallel
/// tests run them: every call's spans close and reach the app's own
/// exporter. A store span that sqlx's SQLite worker thread dropped last
/// used to leave its handler span, and so the RPC span, open for good.
#[test]
fn every_span_closes_with_several_traced_apps_at_once() {
    let apps: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(submit_and_get(20))
            })
        })
        .collect();
    for app in apps {
        assert_eq!(app.join().expect("the app's thread"), [20; 2]);
    }
}

/// Calls the client gives up on half-way are dropped outside any poll;
/// their spans still close, each after its children: every exported span's
/// parent is exported too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_close_their_spans() {
    let (app, exporter) = spawn_traced().await;
    let token = app.token(Role::Controller, "acme");
    // Patience doubles from round to round, so that on a fast machine and on
    // a loaded one alike some calls are abandoned before the handler, some
    // in the middle of their commit; the last round waits for its calls, so
    // that some finish however busy the machine is.
    const ROUNDS: u32 = 9;
    let mut finished = 0;
    for round in 0..ROUNDS {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let mut dsr = app.dsr();
                let token = token.clone();
                tokio::spawn(async move {
                    let patience = if round + 1 == ROUNDS {
                        Duration::from_secs(10)
                    } else {
                        Duration::from_micros(500 * 2u64.pow(round))
                    };
                    let call = dsr.submit_data_subject_request(authed(&token, submission()));
                    tokio::time::timeout(patience, call)
                        .await
                        .is_ok_and(|answer| answer.is_ok())
                })
            })
            .collect();
        for call in calls {
            finished += usize::from(call.await.expect("the call task"));
        }
    }
    assert!(finished > 0, "some calls finish");
    let submits = |spans: &[SpanData]| spans.iter().filter(|s| s.name == SUBMIT).count();
    let orphans = |spans: &[SpanData]| {
        spans
            .iter()
            .filter(|s| s.parent_span_id != opentelemetry::trace::SpanId::INVALID)
            .filter(|s| {
                !spans
                    .iter()
                    .any(|p| p.span_context.span_id() == s.parent_span_id)
            })
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>()
    };
    let spans = spans_when(
        &exporter,
        "every finished call's span, and no orphan",
        |s| submits(s) >= finished && orphans(s).is_empty(),
    )
    .await;
    assert!(submits(&spans) >= finished, "every finished call's span");
    assert_eq!(orphans(&spans), Vec::<String>::new());
    // Each span was closed by the call it measures, abandoned or not, with
    // a status: CANCELLED for a call dropped while its handler ran, or what
    // the server answered (a request cut short while it was being read
    // ends in tonic's own error status).
    for span in spans.iter().filter(|s| s.name == SUBMIT) {
        assert!(attr(span, "rpc.status_code").is_some(), "{span:?}");
    }
    assert!(
        spans
            .iter()
            .filter(|s| s.name == SUBMIT)
            .filter(|s| attr_str(s, "rpc.status_code").as_deref() == Some("OK"))
            .count()
            >= finished,
        "every finished call answered OK"
    );
    app.stop().await;
}
