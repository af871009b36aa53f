//! A small OTLP/gRPC trace receiver: the other end of the spawned server's
//! span export when a run measures the cost of tracing. It counts exports
//! and spans, and of each span decodes only its kind (prost skips every
//! other field without allocating it), so that on a shared machine the
//! receiver takes as little CPU from the measured server as it can. Metric
//! exports are only counted.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The largest export the receiver decodes.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What the receiver has taken in so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    /// Export calls.
    pub exports: u64,
    pub spans: u64,
    /// Spans of kind SERVER: one per RPC the service answered.
    pub server_spans: u64,
    /// Metric export calls (the service exports its metrics to the same
    /// endpoint).
    pub metric_exports: u64,
}

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
    server_spans: AtomicU64,
    metric_exports: AtomicU64,
}

#[derive(Clone)]
struct Receiver(Arc<Counts>);

/// What the receiver decodes of an
/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`:
/// the same field numbers, every field but these left undecoded.
#[derive(Clone, PartialEq, prost::Message)]
struct SlimExportRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<SlimResourceSpans>,
}

/// `opentelemetry.proto.trace.v1.ResourceSpans`: its `scope_spans`.
#[derive(Clone, PartialEq, prost::Message)]
struct SlimResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<SlimScopeSpans>,
}

/// `opentelemetry.proto.trace.v1.ScopeSpans`: its `spans`.
#[derive(Clone, PartialEq, prost::Message)]
struct SlimScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<SlimSpan>,
}

/// `opentelemetry.proto.trace.v1.Span`: its `kind` (a `SpanKind`).
#[derive(Clone, PartialEq, prost::Message)]
struct SlimSpan {
    #[prost(int32, tag = "6")]
    kind: i32,
}

impl UnaryService<SlimExportRequest> for Receiver {
    type Response = ExportTraceServiceResponse;
    type Future = Ready<Result<Response<ExportTraceServiceResponse>, Status>>;

    fn call(&mut self, request: Request<SlimExportRequest>) -> Self::Future {
        let mut spans = 0;
        let mut server = 0;
        for resource in &request.get_ref().resource_spans {
            for scope in &resource.scope_spans {
                spans += scope.spans.len() as u64;
                server += scope
                    .spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Server as i32)
                    .count() as u64;
            }
        }
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans, Ordering::Relaxed);
        self.0.server_spans.fetch_add(server, Ordering::Relaxed);
        ready(Ok(Response::new(ExportTraceServiceResponse::default())))
    }
}

/// The trace service, `Export` its one method, as tonic's generated server
/// would serve it but decoding a [`SlimExportRequest`].
#[derive(Clone)]
struct TraceReceiver(Receiver);

impl TraceReceiver {
    const EXPORT: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
}

impl NamedService for TraceReceiver {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for TraceReceiver {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != Self::EXPORT {
                return Ok(Status::unimplemented("").into_http());
            }
            let codec = ProstCodec::<ExportTraceServiceResponse, SlimExportRequest>::default();
            let mut grpc = Grpc::new(codec).apply_max_message_size_config(Some(MAX_MESSAGE), None);
            Ok(grpc.unary(receiver, request).await)
        })
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        _request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.0.metric_exports.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running receiver on a loopback port; stopped when dropped.
pub struct Collector {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Binds a free loopback port and serves on a thread and runtime of its
    /// own, as a collector would run apart from the service.
    pub fn start() -> Result<Self, String> {
        let listener = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("OTLP receiver: cannot listen on loopback: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("OTLP receiver: {e}"))?;
        let counts = Arc::new(Counts::default());
        let receiver = Receiver(Arc::clone(&counts));
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("loadgen: OTLP receiver: cannot start its runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("loadgen: OTLP receiver: cannot use its socket: {e}");
                            return;
                        }
                    };
                    let served = tonic::transport::Server::builder()
                        .add_service(TraceReceiver(receiver.clone()))
                        .add_service(
                            MetricsServiceServer::new(receiver)
                                .max_decoding_message_size(MAX_MESSAGE),
                        )
                        .serve_with_incoming_shutdown(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            async {
                                let _ = stopped.await;
                            },
                        )
                        .await;
                    if let Err(e) = served {
                        eprintln!("loadgen: OTLP receiver stopped: {e}");
                    }
                });
            })
            .map_err(|e| format!("OTLP receiver: cannot start its thread: {e}"))?;
        Ok(Self {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Received {
        Received {
            exports: self.counts.exports.load(Ordering::Relaxed),
            spans: self.counts.spans.load(Ordering::Relaxed),
            server_spans: self.counts.server_spans.load(Ordering::Relaxed),
            metric_exports: self.counts.metric_exports.load(Ordering::Relaxed),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    fn attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        }
    }

    fn span(name: &str, kind: SpanKind) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            name: name.to_owned(),
            kind: kind as i32,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![attribute("rpc.method", name)],
            ..Default::default()
        }
    }

    /// A full export as the service's SDK sends it: resource and scope
    /// attributes, spans of several kinds in two resources.
    fn export() -> ExportTraceServiceRequest {
        let resource = |spans: Vec<Span>| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "gdpr-intake")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "gdpr-intake".to_owned(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.37.0".to_owned(),
            }],
            schema_url: String::new(),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource(vec![
                    span("gdpr.intake.v1.X/Get", SpanKind::Server),
                    span("store.get", SpanKind::Internal),
                ]),
                resource(vec![span("gdpr.intake.v1.X/List", SpanKind::Server)]),
            ],
        }
    }

    #[test]
    fn the_slim_request_reads_the_span_kinds_of_a_full_one() {
        let bytes = export().encode_to_vec();
        let slim = SlimExportRequest::decode(bytes.as_slice()).expect("decodes");
        let kinds: Vec<Vec<i32>> = slim
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.iter().map(|s| s.kind).collect())
            .collect();
        let server = SpanKind::Server as i32;
        assert_eq!(
            kinds,
            [vec![server, SpanKind::Internal as i32], vec![server]]
        );
    }

    // The client's connection runs on a worker thread, so that it closes
    // while the test's thread waits for the receiver to shut down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_real_otlp_export_is_counted() {
        let collector = Collector::start().expect("starts");
        let channel = tonic::transport::Endpoint::from_shared(collector.endpoint())
            .expect("an endpoint")
            .connect()
            .await
            .expect("connects");
        let mut traces = TraceServiceClient::new(channel.clone());
        for _ in 0..2 {
            let answer = traces.export(export()).await.expect("exported");
            assert_eq!(answer.into_inner(), ExportTraceServiceResponse::default());
        }
        MetricsServiceClient::new(channel)
            .export(ExportMetricsServiceRequest::default())
            .await
            .expect("exported");
        assert_eq!(
            collector.received(),
            Received {
                exports: 2,
                spans: 6,
                server_spans: 4,
                metric_exports: 1,
            }
        );
    }
}
