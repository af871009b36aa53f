//! The limits every call meets at the edge of the server, as one tower
//! layer inside the telemetry layer (so its answers are counted like any
//! other status):
//!
//! - **Concurrent calls.** One semaphore for the whole server, not tonic's
//!   per-connection `concurrency_limit`: a thousand connections would
//!   otherwise each get the full allowance. A call that finds no permit is
//!   answered RESOURCE_EXHAUSTED with RetryInfo at once; nothing queues, so
//!   memory stays bounded however many calls arrive. Health checks take no
//!   permit: a probe must answer when the server is busiest. A call holds
//!   its permit until its response body ends (a stream for its lifetime).
//! - **The caller's deadline** (`grpc-timeout`). tonic enforces it too, but
//!   answers CANCELLED ("Timeout expired"); gRPC says DEADLINE_EXCEEDED. So
//!   this layer answers first, a few milliseconds before tonic's own timer,
//!   and also ends a response stream at the deadline, which tonic does not.
//! - **Message size.** tonic refuses a request message over the limit with
//!   OUT_OF_RANGE; other gRPC implementations, and our clients' retry
//!   logic, expect RESOURCE_EXHAUSTED. The layer reads the length prefix of
//!   each request message as it passes and, when one was over the limit,
//!   rewrites tonic's OUT_OF_RANGE into RESOURCE_EXHAUSTED with an ErrorInfo.
//! - **Drain.** Server-streaming calls (WatchTasks, WatchRequestEvents,
//!   health Watch, reflection) never end by themselves and would hold the
//!   graceful shutdown open until its timeout; when the server starts draining they
//!   end with UNAVAILABLE, so their clients reconnect elsewhere. Unary calls
//!   are never cut.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower_layer::Layer;
use tower_service::Service;

use super::CallLimits;
use crate::errors::ERROR_DOMAIN;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Calls under this prefix take no permit.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// How much earlier than the caller's deadline the layer answers. tonic's
/// own timer starts a few microseconds before ours and its timer wheel
/// counts whole milliseconds; a margin of several ticks makes sure ours
/// fires first. The caller, whose clock started before the request
/// crossed the network, sees the answer at about its deadline.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);
/// The back-off an overloaded server asks for.
const OVERLOAD_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The bytes before each gRPC message: a compression flag and a
/// big-endian length.
const PREFIX_LEN: usize = 5;

/// Builds [`CallLimit`] around the server's routes.
#[derive(Clone)]
pub struct CallLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    permits: Arc<Semaphore>,
    max_message_bytes: usize,
    /// The paths of server-streaming methods, ended at drain.
    streaming: HashSet<String>,
    draining: watch::Receiver<bool>,
    /// The overload answer, built once: it is sent most when the server
    /// can least afford to build it.
    overloaded: HeaderMap,
}

impl CallLimitLayer {
    /// Limits from `limits`; `draining` turns true when the server starts
    /// its graceful shutdown; `descriptor_sets` (encoded
    /// `FileDescriptorSet`s) tell which methods stream their responses.
    pub fn new(
        limits: &CallLimits,
        draining: watch::Receiver<bool>,
        descriptor_sets: &[&[u8]],
    ) -> Self {
        let mut overloaded = HeaderMap::new();
        // Cannot fail: the message is ASCII and the details are base64.
        let _ = overloaded_status().add_header(&mut overloaded);
        overloaded.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        Self {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(limits.max_concurrent_calls)),
                max_message_bytes: limits.max_message_bytes,
                streaming: server_streaming_paths(descriptor_sets),
                draining,
                overloaded,
            }),
        }
    }
}

impl<S> Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// `/package.Service/Method` of every method that streams its responses.
fn server_streaming_paths(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut paths = HashSet::new();
    for bytes in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*bytes) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if method.server_streaming() {
                        paths.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
    }
    paths
}

/// The service [`CallLimitLayer`] wraps around the server's routes.
#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ResBody> Service<Request<Body>> for CallLimit<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let permit = if path.starts_with(HEALTH_PREFIX) {
            None
        } else {
            match self.shared.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let mut response = Response::new(Body::empty());
                    *response.headers_mut() = self.shared.overloaded.clone();
                    return Box::pin(std::future::ready(Ok(response)));
                }
            }
        };
        let drain = self.shared.streaming.contains(path).then(|| {
            let mut draining = self.shared.draining.clone();
            let drain: BoxFuture<()> = Box::pin(async move {
                // A closed channel means the server is gone: end too.
                let _ = draining.wait_for(|d| *d).await;
            });
            drain
        });
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .and_then(|timeout| Instant::now().checked_add(timeout));

        let limit = self.shared.max_message_bytes;
        let oversized = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            Body::new(SizeWatch {
                inner: body,
                prefix: [0; PREFIX_LEN],
                filled: 0,
                remaining: 0,
                limit,
                oversized: oversized.clone(),
            })
        });

        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = inner.call(req);
        Box::pin(async move {
            let response = match deadline {
                Some(at) => {
                    let early = at.checked_sub(DEADLINE_MARGIN).unwrap_or(at);
                    match tokio::time::timeout_at(early, call).await {
                        Ok(response) => response?,
                        // The handler is dropped here, mid-flight: its
                        // caller has given up, so its work is wasted.
                        Err(_) => return Ok(deadline_exceeded().into_http()),
                    }
                }
                None => call.await?,
            };
            if oversized.load(Ordering::Acquire)
                && response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|v| Code::from_bytes(v.as_bytes()) == Code::OutOfRange)
            {
                return Ok(message_too_large(limit).into_http());
            }
            Ok(response.map(|inner| {
                Body::new(CallBody {
                    inner,
                    permit,
                    deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
                    drain,
                    ended: false,
                })
            }))
        })
    }
}

/// The `grpc-timeout` header's duration: at most 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC HTTP/2 protocol defines it.
/// `None` for anything else, which the call then runs without a deadline,
/// as tonic does.
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

fn overloaded_status() -> Status {
    let mut details = ErrorDetails::with_error_info("OVERLOADED", ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(OVERLOAD_RETRY_DELAY));
    Status::with_error_details(
        Code::ResourceExhausted,
        "the server is at its limit of concurrent calls; retry with backoff",
        details,
    )
}

fn deadline_exceeded() -> Status {
    Status::with_error_details(
        Code::DeadlineExceeded,
        "the call did not finish before its deadline",
        ErrorDetails::with_error_info("DEADLINE_EXCEEDED", ERROR_DOMAIN, HashMap::new()),
    )
}

fn message_too_large(limit: usize) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the request message is larger than the limit of {limit} bytes"),
        ErrorDetails::with_error_info("MESSAGE_TOO_LARGE", ERROR_DOMAIN, HashMap::new()),
    )
}

fn draining() -> Status {
    Status::with_error_details(
        Code::Unavailable,
        "the server is shutting down; call again to reach another instance",
        ErrorDetails::with_error_info("SERVER_DRAINING", ERROR_DOMAIN, HashMap::new()),
    )
}

/// A request body that reads the length prefix of each message going
/// through it and notes one larger than the limit.
struct SizeWatch {
    inner: Body,
    prefix: [u8; PREFIX_LEN],
    /// Bytes of the current prefix seen so far.
    filled: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    limit: usize,
    oversized: Arc<AtomicBool>,
}

impl SizeWatch {
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (PREFIX_LEN - self.filled).min(data.len());
            self.prefix[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == PREFIX_LEN {
                self.filled = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                if usize::try_from(len).unwrap_or(usize::MAX) > self.limit {
                    self.oversized.store(true, Ordering::Release);
                }
                self.remaining = u64::from(len);
            }
        }
    }
}

impl HttpBody for SizeWatch {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let data = data.clone();
            self.observe(&data);
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

/// The response body of a limited call: keeps the call's permit until it
/// ends, and ends a stream early, with the status in trailers, at the
/// caller's deadline or (server-streaming methods only) when the server
/// drains. A frame the handler has ready always goes first.
pub struct CallBody<B> {
    inner: B,
    permit: Option<OwnedSemaphorePermit>,
    deadline: Option<Pin<Box<Sleep>>>,
    drain: Option<BoxFuture<()>>,
    ended: bool,
}

impl<B> CallBody<B> {
    fn finish(&mut self) {
        self.ended = true;
        self.permit = None;
        self.deadline = None;
        self.drain = None;
    }
}

impl<B> HttpBody for CallBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    this.finish();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Pending => {}
        }
        let stop = if this
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            Some(deadline_exceeded())
        } else if this
            .drain
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            Some(draining())
        } else {
            None
        };
        match stop {
            Some(status) => {
                this.finish();
                let mut trailers = HeaderMap::new();
                // Cannot fail: our messages are ASCII.
                let _ = status.add_header(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(limit: usize) -> SizeWatch {
        SizeWatch {
            inner: Body::empty(),
            prefix: [0; PREFIX_LEN],
            filled: 0,
            remaining: 0,
            limit,
            oversized: Arc::new(AtomicBool::new(false)),
        }
    }

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7, len as usize));
        m
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_defines_them() {
        for (text, expected) in [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789m", None),
            ("m", None),
            ("10", None),
            ("10x", None),
            ("-1S", None),
            ("1.5S", None),
            ("", None),
        ] {
            let value = HeaderValue::from_str(text).expect("ascii");
            assert_eq!(parse_grpc_timeout(&value), expected, "{text:?}");
        }
    }

    #[test]
    fn a_message_over_the_limit_is_noticed_wherever_the_frames_split_it() {
        let mut stream = message(10);
        stream.extend(message(100));
        for split in 1..stream.len() {
            let mut w = watch(50);
            w.observe(&stream[..split]);
            w.observe(&stream[split..]);
            assert!(w.oversized.load(Ordering::Acquire), "split at {split}");
        }
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_framing() {
        let mut stream = message(50);
        stream.extend(message(0));
        stream.extend(message(49));
        for chunk in 1..=stream.len() {
            let mut w = watch(50);
            for piece in stream.chunks(chunk) {
                w.observe(piece);
            }
            assert!(!w.oversized.load(Ordering::Acquire), "chunks of {chunk}");
        }
    }

    #[test]
    fn the_streaming_methods_are_read_from_the_descriptors() {
        let paths = server_streaming_paths(&[
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ]);
        assert!(paths.contains("/gdpr.intake.v1.ProcessorTaskService/WatchTasks"));
        assert!(paths.contains("/gdpr.intake.v1.DataSubjectRequestService/WatchRequestEvents"));
        assert!(paths.contains("/grpc.health.v1.Health/Watch"));
        assert!(paths.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!paths.contains("/grpc.health.v1.Health/Check"));
        assert!(
            !paths.contains("/gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest")
        );
    }

    #[test]
    fn the_overload_answer_is_resource_exhausted_with_a_retry_delay() {
        let mut headers = HeaderMap::new();
        overloaded_status().add_header(&mut headers).expect("ascii");
        let status = Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let retry = details.retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(OVERLOAD_RETRY_DELAY));
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("OVERLOADED")
        );
    }
}
