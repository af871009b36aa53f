//! A small OTLP/gRPC trace receiver: the other end of the spawned server's
//! span export when a run measures the cost of tracing. It decodes what it
//! receives, as a collector would, and only counts it.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

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
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

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

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
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
        Ok(Response::new(ExportTraceServiceResponse::default()))
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
                        .add_service(
                            TraceServiceServer::new(receiver.clone())
                                .max_decoding_message_size(64 * 1024 * 1024),
                        )
                        .add_service(
                            MetricsServiceServer::new(receiver)
                                .max_decoding_message_size(64 * 1024 * 1024),
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
