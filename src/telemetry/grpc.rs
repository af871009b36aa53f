//! One SERVER span and one duration measurement per RPC, as a tower layer
//! on the tonic server (`Server::builder().layer(...)`).
//!
//! Names follow the OpenTelemetry RPC and gRPC semantic conventions as of
//! their latest revision (semantic-conventions `model/rpc/`, status Release
//! Candidate):
//!
//! - span name: the full method, `gdpr.intake.v1.DataSubjectRequestService/GetDataSubjectRequest`;
//!   kind SERVER;
//! - `rpc.system.name` = `grpc` (replaces the deprecated `rpc.system`);
//! - `rpc.method`: the fully-qualified method, as in the span name (the
//!   deprecated `rpc.service` is folded into it); `_OTHER` for a path the
//!   server does not know, with the path in `rpc.method_original` and
//!   `grpc` as the span name;
//! - `rpc.status_code`: the status as a string, `OK`, `NOT_FOUND`, …
//!   (semantic-conventions#3921 renamed `rpc.response.status_code` to it;
//!   both replace the deprecated integer `rpc.grpc.status_code`);
//! - `error.type` and span status ERROR only for the codes the gRPC
//!   conventions count as server errors: `UNKNOWN`, `DEADLINE_EXCEEDED`,
//!   `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`. A caller's
//!   mistake (`INVALID_ARGUMENT`, `NOT_FOUND`, …) is not the server's error;
//! - `server.address` and `server.port` from the `:authority` the client
//!   used; `network.peer.address` and `network.peer.port` from the socket.
//!
//! Request metadata is never recorded: only `traceparent` and `tracestate`
//! are read, to continue the caller's trace. Health checks and reflection
//! get neither span nor measurement: they are frequent and say nothing
//! about requests.
//!
//! The status of a call arrives in the response headers when the call fails
//! before any message (a "trailers-only" response) and in the trailers
//! otherwise, so the response body is wrapped to see the trailers; the span
//! ends when the body does.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use prost::Message as _;
use tonic::Code;
use tonic::transport::server::TcpConnectInfo;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Dispatch;
use tracing::instrument::Instrument as _;

use super::Metrics;
use super::dispatched::Dispatched;
use super::dsr::CallAttributes;
use super::propagation::remote_context;

/// `rpc.system.name` of every call.
const RPC_SYSTEM: &str = "grpc";
/// `rpc.method` of a method the server does not know.
const OTHER_METHOD: &str = "_OTHER";
/// The `tracing` target of a call's log-line span: not this crate's, so
/// that the OpenTelemetry layer leaves it alone (the call's span is made
/// here, directly).
const LOG_TARGET: &str = "rpc";
/// Paths that get no span and no measurement.
const UNTRACED_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// See the module documentation.
#[derive(Clone)]
pub struct GrpcTelemetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    /// The application's subscriber, when it traces: every call runs under
    /// it, so its spans reach this application's exporter even when the
    /// process-wide subscriber is another (tests run several applications).
    dispatch: Option<Dispatch>,
    /// The application's tracer, when it traces.
    tracer: Option<SdkTracer>,
    metrics: Metrics,
    /// `package.Service/Method` of every method the server knows.
    methods: HashSet<String>,
}

impl GrpcTelemetryLayer {
    pub(super) fn new(
        dispatch: Option<Dispatch>,
        tracer: Option<SdkTracer>,
        metrics: Metrics,
        descriptor_sets: &[&[u8]],
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                dispatch,
                tracer,
                metrics,
                methods: known_methods(descriptor_sets),
            }),
        }
    }
}

/// `package.Service/Method` for every method of every service in the
/// encoded descriptor sets. A set that does not decode names nothing.
fn known_methods(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut methods = HashSet::new();
    for bytes in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*bytes) else {
            continue;
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let qualified = if package.is_empty() {
                        format!("{}/{}", service.name(), method.name())
                    } else {
                        format!("{package}.{}/{}", service.name(), method.name())
                    };
                    methods.insert(qualified);
                }
            }
        }
    }
    methods
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`GrpcTelemetryLayer`] wraps around the server's routes.
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcTelemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let path = req.uri().path();
        if UNTRACED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            let call = inner.call(req);
            return Box::pin(async move { Ok(call.await?.map(TracedBody::untraced)) });
        }

        let shared = self.shared.clone();
        let started = Instant::now();
        let path = path.strip_prefix('/').unwrap_or_default();
        let method = if shared.methods.contains(path) {
            path.to_owned()
        } else {
            OTHER_METHOD.to_owned()
        };
        let otel_cx = shared
            .tracer
            .as_ref()
            .map(|tracer| server_span(tracer, &req, path, &method));
        // The log lines of the call say which method they belong to.
        let span = tracing::info_span!(target: LOG_TARGET, "rpc", "rpc.method" = method.as_str());
        let call = {
            let _entered = span.enter();
            let _attached = otel_cx.as_ref().map(|cx| cx.clone().attach());
            match &shared.dispatch {
                Some(d) => tracing::dispatcher::with_default(d, || inner.call(req)),
                None => inner.call(req),
            }
        };
        let record = CallRecord {
            otel_cx: otel_cx.clone(),
            started,
            method,
            metrics: shared.metrics.clone(),
            closed: false,
        };
        let response = async move {
            match call.await {
                Ok(response) => {
                    let header_code = grpc_status(response.headers());
                    Ok(response.map(|body| TracedBody {
                        inner: body,
                        record: Some(record),
                        header_code,
                    }))
                }
                Err(e) => {
                    // No response at all: the transport failed under us.
                    record.finish(Outcome::Failed);
                    Err(e)
                }
            }
        }
        .instrument(span);
        let Some(otel_cx) = otel_cx else {
            return Box::pin(response);
        };
        // Current while the call is polled: spans and log lines of the
        // handler belong to the call's span.
        let response = response.with_context(otel_cx);
        match shared.dispatch.clone() {
            // Dropped under it too: a call the client abandons is dropped
            // by the connection outside any poll, and the spans it drops
            // then must reach the same dispatcher (see `threads.rs`).
            Some(dispatch) => Box::pin(Dispatched::new(Some(dispatch), response)),
            None => Box::pin(response),
        }
    }
}

/// Starts the SERVER span of one call to `path` (without its leading
/// slash), with the caller's trace as its parent, and returns the context
/// that holds it.
///
/// The span is made with the OpenTelemetry API rather than as a `tracing`
/// span: it is the one span every call has, and this way it costs no
/// `tracing` registry entry, no field formatting and no per-poll enter and
/// exit through the layers, only what the SDK itself does.
fn server_span<B>(tracer: &SdkTracer, req: &Request<B>, path: &str, method: &str) -> OtelContext {
    let known = method != OTHER_METHOD;
    // The span keeps this vector: room for what the handler adds (up to
    // eleven `dsr.*` attributes) and the status, so none of it reallocates.
    let mut attributes = Vec::with_capacity(24);
    attributes.push(KeyValue::new("rpc.system.name", RPC_SYSTEM));
    attributes.push(KeyValue::new("rpc.method", method.to_owned()));
    if !known {
        attributes.push(KeyValue::new("rpc.method_original", path.to_owned()));
    }
    if let Some(authority) = req.uri().authority() {
        attributes.push(KeyValue::new("server.address", authority.host().to_owned()));
        if let Some(port) = authority.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(peer) = req
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
    {
        attributes.push(KeyValue::new("network.peer.address", peer.ip().to_string()));
        attributes.push(KeyValue::new("network.peer.port", i64::from(peer.port())));
    }
    // Without a caller's trace, a new one: never whatever context happens
    // to be current on this thread.
    let parent = remote_context(req.headers()).unwrap_or_default();
    let name = if known { method } else { RPC_SYSTEM };
    let span = tracer
        .span_builder(name.to_owned())
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    let span_id = span.span_context().span_id();
    parent
        .with_span(span)
        .with_value(CallAttributes::new(span_id))
}

/// The `grpc-status` of a header or trailer block, if it has one. A value
/// that is not a known code counts as UNKNOWN, as gRPC clients read it.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// How a call ended.
enum Outcome {
    /// With a gRPC status.
    Status(Code),
    /// Without one: the transport failed.
    Failed,
}

/// What is needed to close a call's span and measure it. A call dropped
/// before it has an answer (its client went away while the handler ran) is
/// closed as CANCELLED, as gRPC reports a call the client abandons.
struct CallRecord {
    /// The context holding the call's span, when tracing.
    otel_cx: Option<OtelContext>,
    started: Instant,
    method: String,
    metrics: Metrics,
    closed: bool,
}

impl CallRecord {
    fn finish(mut self, outcome: Outcome) {
        self.close(outcome);
    }

    fn close(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let mut attributes = vec![
            KeyValue::new("rpc.system.name", RPC_SYSTEM),
            KeyValue::new("rpc.method", std::mem::take(&mut self.method)),
        ];
        let (status_code, error_type) = match outcome {
            Outcome::Status(code) => {
                let name = code_name(code);
                attributes.push(KeyValue::new("rpc.status_code", name));
                (Some(name), is_server_error(code).then_some(name))
            }
            // No status code to name the error by: the conventions' fallback.
            Outcome::Failed => (None, Some("_OTHER")),
        };
        if let Some(error_type) = error_type {
            attributes.push(KeyValue::new("error.type", error_type));
        }
        if let Some(cx) = &self.otel_cx {
            let span = cx.span();
            if let Some(recorded) = cx.get::<CallAttributes>() {
                span.set_attributes(recorded.take());
            }
            if let Some(name) = status_code {
                span.set_attribute(KeyValue::new("rpc.status_code", name));
            }
            if let Some(error_type) = error_type {
                span.set_attribute(KeyValue::new("error.type", error_type));
                span.set_status(Status::error(error_type));
            }
            span.end();
        }
        self.metrics.record_rpc(seconds, &attributes);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.close(Outcome::Status(Code::Cancelled));
    }
}

/// Whether `code` marks a SERVER span as failed (gRPC semantic conventions).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The canonical name of `code`, as `rpc.status_code` and `error.type` take it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A response body that closes its call's span when it ends.
pub struct TracedBody<B> {
    inner: B,
    /// `None` for untraced calls and once finished.
    record: Option<CallRecord>,
    /// The status of a trailers-only response.
    header_code: Option<Code>,
}

impl<B> TracedBody<B> {
    fn untraced(inner: B) -> Self {
        Self {
            inner,
            record: None,
            header_code: None,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(record) = self.record.take() {
            record.finish(outcome);
        }
    }
}

impl<B: Body + Unpin> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish(Outcome::Status(code));
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(Outcome::Failed),
            Poll::Ready(None) => {
                // Ended without trailers: the status, if any, was in the
                // headers.
                let outcome = this.header_code.map_or(Outcome::Failed, Outcome::Status);
                this.finish(outcome);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TracedBody<B> {
    fn drop(&mut self) {
        // A trailers-only response may never be polled (its body is empty
        // from the start); otherwise the client went away before the end,
        // which gRPC reports as CANCELLED.
        let code = self.header_code.unwrap_or(Code::Cancelled);
        self.finish(Outcome::Status(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_six_server_error_codes_fail_a_server_span() {
        let all = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        let failing: Vec<_> = all
            .into_iter()
            .filter(|c| is_server_error(*c))
            .map(code_name)
            .collect();
        assert_eq!(
            failing,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "UNIMPLEMENTED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        // Names are the canonical ones, by number.
        for (n, code) in all.into_iter().enumerate() {
            assert_eq!(i32::from(code), n as i32);
        }
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }

    #[test]
    fn status_comes_from_grpc_status_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "5".parse().expect("ascii"));
        assert_eq!(grpc_status(&headers), Some(Code::NotFound));
        headers.insert("grpc-status", "99".parse().expect("ascii"));
        assert_eq!(grpc_status(&headers), Some(Code::Unknown));
    }

    #[test]
    fn known_methods_come_from_the_descriptor_sets() {
        let methods = known_methods(&[crate::proto::FILE_DESCRIPTOR_SET, b"not a descriptor"]);
        assert!(
            methods.contains("gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest")
        );
        assert!(!methods.contains("grpc.health.v1.Health/Check"));
    }
}
