//! The service's instruments and the Prometheus scrape endpoint.
//!
//! | instrument | kind | attributes | Prometheus |
//! |---|---|---|---|
//! | `gdpr.dsr.submitted` | counter | `dsr.type`, `dsr.regime` | `gdpr_dsr_submitted_total` |
//! | `gdpr.dsr.blocked` | counter | `reason` | `gdpr_dsr_blocked_total` |
//! | `gdpr.dsr.duplicates` | counter | `dsr.type` | `gdpr_dsr_duplicates_total` |
//! | `gdpr.dsr.open` | gauge | `dsr.state` | `gdpr_dsr_open` |
//! | `gdpr.dsr.sla.at_risk` | counter | `dsr.sla.item` (`request`, `task`) | `gdpr_dsr_sla_at_risk_total` |
//! | `gdpr.dsr.sla.breached` | counter | `dsr.sla.item` | `gdpr_dsr_sla_breached_total` |
//! | `gdpr.dsr.expired` | counter | — | `gdpr_dsr_expired_total` |
//! | `gdpr.dsr.purged` | counter | — | `gdpr_dsr_purged_total` |
//! | `gdpr.dsr.resealed` | counter | — | `gdpr_dsr_resealed_total` |
//! | `gdpr.dsr.time_to_close` | histogram, share of the time allowed | `dsr.type`, `dsr.regime`, `dsr.state` (`completed`, `refused`) | `gdpr_dsr_time_to_close_ratio` |
//! | `gdpr.auth.jwks_reload_failures` | counter | — | `gdpr_auth_jwks_reload_failures_total` |
//! | `gdpr.connections.open` | up-down counter | — | `gdpr_connections_open` |
//! | `gdpr.connections.refused` | counter | — | `gdpr_connections_refused_total` |
//! | `gdpr.connections.reaped` | counter | `reason` (`handshake_timeout`, `idle`) | `gdpr_connections_reaped_total` |
//! | `gdpr.feed.watchers` | up-down counter | — | `gdpr_feed_watchers` |
//! | `gdpr.feed.delivered` | counter | `feed.call` (`watch`, `list`) | `gdpr_feed_delivered_total` |
//! | `gdpr.deadline.holidays_unverified` | counter | `country` (ISO 3166-1 alpha-2) | `gdpr_deadline_holidays_unverified_total` |
//! | `rpc.server.call.duration` | histogram, s | `rpc.system.name`, `rpc.method`, `rpc.status_code`, `error.type` | `rpc_server_call_duration_seconds` |
//!
//! The backlog, readiness and SLA watchdog gauges are in `gauges.rs`.
//!
//! No tenant, subject or request id is ever an attribute: their number is
//! unbounded, and a metric is no place to look up one request (the SLA
//! watchdog's spans and the audit trail name them).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Telemetry;
use crate::domain::jurisdiction::Regime;
use crate::domain::request::{RequestType, State};

mod gauges;
pub use gauges::{SweepOutcome, refresh_backlog};

/// Bucket boundaries of `rpc.server.call.duration`, in seconds: the ones
/// the RPC semantic conventions recommend for call durations.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket boundaries of `gdpr.dsr.time_to_close`: shares of the time the
/// law allows, dense around the deadline (1), where a late close shows.
const TIME_USED_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0,
];

/// What an SLA finding is about, as the `dsr.sla.item` attribute says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaItem {
    Request,
    Task,
}

impl SlaItem {
    /// `request` or `task`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Task => "task",
        }
    }
}

/// The instruments handlers and the gRPC layer record into. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    submitted: Counter<u64>,
    blocked: Counter<u64>,
    duplicates: Counter<u64>,
    open: Gauge<u64>,
    at_risk: Counter<u64>,
    breached: Counter<u64>,
    expired: Counter<u64>,
    purged: Counter<u64>,
    resealed: Counter<u64>,
    auth_failures: Counter<u64>,
    jwks_reload_failures: Counter<u64>,
    connections_open: UpDownCounter<i64>,
    connections_refused: Counter<u64>,
    connections_reaped: Counter<u64>,
    feed_watchers: UpDownCounter<i64>,
    feed_delivered: Counter<u64>,
    time_to_close: Histogram<f64>,
    holidays_unverified: Counter<u64>,
    rpc_duration: Histogram<f64>,
    gauges: gauges::Gauges,
}

impl Metrics {
    pub(super) fn new(meter: &Meter) -> Self {
        let metrics = Self {
            inner: Arc::new(Instruments {
                submitted: meter
                    .u64_counter("gdpr.dsr.submitted")
                    .with_description(
                        "Data-subject requests accepted and stored (replays not counted).",
                    )
                    .with_unit("{request}")
                    .build(),
                blocked: meter
                    .u64_counter("gdpr.dsr.blocked")
                    .with_description("Submissions refused before anything was stored, by reason.")
                    .with_unit("{request}")
                    .build(),
                duplicates: meter
                    .u64_counter("gdpr.dsr.duplicates")
                    .with_description(
                        "Submissions stored as duplicates of an open request, without tasks.",
                    )
                    .with_unit("{request}")
                    .build(),
                open: meter
                    .u64_gauge("gdpr.dsr.open")
                    .with_description(
                        "Requests not yet in a final state, by state, across all controllers.",
                    )
                    .with_unit("{request}")
                    .build(),
                at_risk: meter
                    .u64_counter("gdpr.dsr.sla.at_risk")
                    .with_description(
                        "Requests and tasks found at risk of missing their deadline (each once per deadline).",
                    )
                    .with_unit("{finding}")
                    .build(),
                breached: meter
                    .u64_counter("gdpr.dsr.sla.breached")
                    .with_description(
                        "Requests and tasks found past their deadline with the work not done (each once).",
                    )
                    .with_unit("{finding}")
                    .build(),
                expired: meter
                    .u64_counter("gdpr.dsr.expired")
                    .with_description(
                        "Requests that expired because no guardian consented within the consent window.",
                    )
                    .with_unit("{request}")
                    .build(),
                purged: meter
                    .u64_counter("gdpr.dsr.purged")
                    .with_description(
                        "Closed requests whose personal data was removed after the retention period.",
                    )
                    .with_unit("{request}")
                    .build(),
                resealed: meter
                    .u64_counter("gdpr.dsr.resealed")
                    .with_description(
                        "Requests whose personal data the re-seal moved to the primary data key.",
                    )
                    .with_unit("{request}")
                    .build(),
                auth_failures: meter
                    .u64_counter("gdpr.auth.failures")
                    .with_description(
                        "Calls refused for their credentials or role, by reason (token_expired, invalid_signature, token_revoked, permission_denied, ...).",
                    )
                    .with_unit("{call}")
                    .build(),
                jwks_reload_failures: meter
                    .u64_counter("gdpr.auth.jwks_reload_failures")
                    .with_description(
                        "Changes of the JWKS file that could not be loaded (unreadable, not a valid key set); the keys in force stayed.",
                    )
                    .with_unit("{reload}")
                    .build(),
                connections_open: meter
                    .i64_up_down_counter("gdpr.connections.open")
                    .with_description("Client connections the gRPC listener holds.")
                    .with_unit("{connection}")
                    .build(),
                feed_watchers: meter
                    .i64_up_down_counter("gdpr.feed.watchers")
                    .with_description("Change-feed streams (WatchRequestEvents) open on this replica.")
                    .with_unit("{stream}")
                    .build(),
                feed_delivered: meter
                    .u64_counter("gdpr.feed.delivered")
                    .with_description(
                        "Change-feed events sent to consumers, by call (a stream or a page).",
                    )
                    .with_unit("{event}")
                    .build(),
                connections_refused: meter
                    .u64_counter("gdpr.connections.refused")
                    .with_description(
                        "Connections closed as soon as accepted because --max-connections were open.",
                    )
                    .with_unit("{connection}")
                    .build(),
                connections_reaped: meter
                    .u64_counter("gdpr.connections.reaped")
                    .with_description(
                        "Connections closed for sending no HTTP/2 preface within the handshake timeout, or nothing for longer than a live peer does, by reason.",
                    )
                    .with_unit("{connection}")
                    .build(),
                time_to_close: meter
                    .f64_histogram("gdpr.dsr.time_to_close")
                    .with_description(
                        "Time from receipt to completion or refusal, as a share of the time allowed (1 = at the deadline).",
                    )
                    .with_unit("1")
                    .with_boundaries(TIME_USED_BUCKETS.to_vec())
                    .build(),
                holidays_unverified: meter
                    .u64_counter("gdpr.deadline.holidays_unverified")
                    .with_description(
                        "Deadlines computed with national holidays of a year after the one the holiday tables were last checked for (holidays::VERIFIED_THROUGH), by country.",
                    )
                    .with_unit("{deadline}")
                    .build(),
                // https://opentelemetry.io/docs/specs/semconv/rpc/rpc-metrics/
                // (`rpc.server.call.duration`, unit `s`).
                rpc_duration: meter
                    .f64_histogram("rpc.server.call.duration")
                    .with_description(
                        "Measures the duration of incoming remote procedure calls (RPC).",
                    )
                    .with_unit("s")
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build(),
                gauges: gauges::Gauges::new(meter),
            }),
        };
        metrics.start_alerted_counters_at_zero();
        metrics
    }

    /// A call was refused for its credentials or role: `reason` is the
    /// refusal's ErrorInfo reason (`TOKEN_EXPIRED`, …), counted in lower
    /// case. Nothing about the caller is kept.
    pub fn auth_failed(&self, reason: &'static str) {
        self.inner
            .auth_failures
            .add(1, &[KeyValue::new("reason", reason.to_ascii_lowercase())]);
    }

    /// A change of the JWKS file could not be loaded; the keys in force
    /// stayed.
    pub fn jwks_reload_failed(&self) {
        self.inner.jwks_reload_failures.add(1, &[]);
    }

    /// The listener took a connection in.
    pub fn connection_opened(&self) {
        self.inner.connections_open.add(1, &[]);
    }

    /// A connection the listener held was closed, for whatever reason.
    pub fn connection_closed(&self) {
        self.inner.connections_open.add(-1, &[]);
    }

    /// A connection was refused: the listener held its maximum.
    pub fn connection_refused(&self) {
        self.inner.connections_refused.add(1, &[]);
    }

    /// A connection was closed for a deadline it missed: `reason` is
    /// `handshake_timeout` or `idle`.
    pub fn connection_reaped(&self, reason: &'static str) {
        self.inner
            .connections_reaped
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// A change-feed stream opened; the returned guard counts it closed
    /// when dropped, however the stream ends.
    pub fn feed_watch_opened(&self) -> FeedWatchGuard {
        self.inner.feed_watchers.add(1, &[]);
        FeedWatchGuard {
            metrics: self.clone(),
        }
    }

    /// `count` change-feed events sent by a stream (`watch`) or a page
    /// (`list`).
    pub fn feed_delivered(&self, call: &'static str, count: u64) {
        if count > 0 {
            self.inner
                .feed_delivered
                .add(count, &[KeyValue::new("feed.call", call)]);
        }
    }

    /// A request was accepted and stored.
    pub fn request_submitted(&self, request_type: RequestType, regime: Regime) {
        self.inner.submitted.add(
            1,
            &[
                KeyValue::new("dsr.type", request_type.as_str()),
                KeyValue::new("dsr.regime", regime.as_str()),
            ],
        );
    }

    /// A submission was stored as the duplicate of an open request.
    pub fn request_duplicate(&self, request_type: RequestType) {
        self.inner
            .duplicates
            .add(1, &[KeyValue::new("dsr.type", request_type.as_str())]);
    }

    /// A submission was refused for `reason` (an ErrorInfo reason such as
    /// `SUBJECT_UNDER_MINIMUM_AGE`) and nothing was stored. Only the count
    /// is kept: nothing about the subject.
    pub fn submission_blocked(&self, reason: &'static str) {
        self.inner
            .blocked
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// Sets the open-request gauge from a count per state. Open states
    /// missing from `counts` are set to zero, so a state that emptied out
    /// does not keep reporting its last count.
    pub fn record_open_requests(&self, counts: &[(State, u64)]) {
        for state in State::ALL.into_iter().filter(|s| !s.is_final()) {
            let count = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .sum();
            self.inner
                .open
                .record(count, &[KeyValue::new("dsr.state", state.as_str())]);
        }
    }

    /// The SLA watchdog found `item` at risk of missing its deadline.
    pub fn sla_at_risk(&self, item: SlaItem) {
        self.inner
            .at_risk
            .add(1, &[KeyValue::new("dsr.sla.item", item.as_str())]);
    }

    /// The SLA watchdog found `item` past its deadline.
    pub fn sla_breached(&self, item: SlaItem) {
        self.inner
            .breached
            .add(1, &[KeyValue::new("dsr.sla.item", item.as_str())]);
    }

    /// A request waiting for a guardian's consent expired.
    pub fn request_expired(&self) {
        self.inner.expired.add(1, &[]);
    }

    /// The retention purge removed the personal data of `count` requests.
    pub fn requests_purged(&self, count: u64) {
        self.inner.purged.add(count, &[]);
    }

    /// The re-seal moved `count` requests' personal data to the primary
    /// data key.
    pub fn requests_resealed(&self, count: u64) {
        self.inner.resealed.add(count, &[]);
    }

    /// A request was closed (`state` completed or refused) after `used` of
    /// the time allowed (see [`crate::domain::sla::time_used`]).
    pub fn request_closed(
        &self,
        request_type: RequestType,
        regime: Regime,
        state: State,
        used: f64,
    ) {
        self.inner.time_to_close.record(
            used,
            &[
                KeyValue::new("dsr.type", request_type.as_str()),
                KeyValue::new("dsr.regime", regime.as_str()),
                KeyValue::new("dsr.state", state.as_str()),
            ],
        );
    }

    /// A deadline in `country` (its ISO code) was computed with holiday
    /// rules not checked for its year; see [`super::holidays_unverified`],
    /// which also logs it.
    pub(super) fn holidays_unverified(&self, country: &'static str) {
        self.inner
            .holidays_unverified
            .add(1, &[KeyValue::new("country", country)]);
    }

    /// One finished RPC (see `grpc.rs` for the attributes).
    pub(super) fn record_rpc(&self, seconds: f64, attributes: &[KeyValue]) {
        self.inner.rpc_duration.record(seconds, attributes);
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` until
/// `stop` resolves. HTTP/1.1 only, no TLS: it is meant for a scraper on
/// the pod network.
pub async fn serve_metrics(
    listener: TcpListener,
    telemetry: Telemetry,
    stop: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // A failed accept (out of descriptors, a reset
                        // handshake) concerns that one connection.
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                };
                let telemetry = telemetry.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let telemetry = telemetry.clone();
                        async move { Ok::<_, Infallible>(respond(&telemetry, &req)) }
                    });
                    // A scraper that hangs up mid-answer is not our error.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

fn respond(telemetry: &Telemetry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match telemetry.prometheus_text() {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
        }
    }
}

/// Counts a change-feed stream closed when dropped
/// ([`Metrics::feed_watch_opened`]).
pub struct FeedWatchGuard {
    metrics: Metrics,
}

impl Drop for FeedWatchGuard {
    fn drop(&mut self) {
        self.metrics.inner.feed_watchers.add(-1, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;

    pub(super) fn line<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
        text.lines().find(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with('{')
                && labels.iter().all(|label| l.contains(label))
        })
    }

    #[test]
    fn counters_carry_type_regime_and_reason_only() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        m.request_submitted(RequestType::Erasure, Regime::Gdpr);
        m.request_submitted(RequestType::Erasure, Regime::Gdpr);
        m.request_submitted(RequestType::Access, Regime::Ccpa);
        m.submission_blocked("SUBJECT_UNDER_MINIMUM_AGE");
        let text = t.prometheus_text().expect("encodes");
        let erasure = line(
            &text,
            "gdpr_dsr_submitted_total",
            &["dsr_type=\"erasure\"", "dsr_regime=\"GDPR\""],
        )
        .expect("erasure counted");
        assert!(erasure.ends_with(" 2"), "{erasure}");
        let access = line(
            &text,
            "gdpr_dsr_submitted_total",
            &["dsr_type=\"access\"", "dsr_regime=\"CCPA\""],
        )
        .expect("access counted");
        assert!(access.ends_with(" 1"), "{access}");
        let blocked = line(
            &text,
            "gdpr_dsr_blocked_total",
            &["reason=\"SUBJECT_UNDER_MINIMUM_AGE\""],
        )
        .expect("blocked counted");
        assert!(blocked.ends_with(" 1"), "{blocked}");
    }

    #[test]
    fn feed_streams_are_counted_open_and_their_events_by_call() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        let first = m.feed_watch_opened();
        let second = m.feed_watch_opened();
        m.feed_delivered("watch", 500);
        m.feed_delivered("watch", 3);
        m.feed_delivered("list", 0);
        m.feed_delivered("list", 20);
        drop(first);
        let text = t.prometheus_text().expect("encodes");
        let value = |name: &str, labels: &[&str]| {
            line(&text, name, labels)
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(value("gdpr_feed_watchers", &[]).as_deref(), Some("1"));
        assert_eq!(
            value("gdpr_feed_delivered_total", &["feed_call=\"watch\""]).as_deref(),
            Some("503")
        );
        assert_eq!(
            value("gdpr_feed_delivered_total", &["feed_call=\"list\""]).as_deref(),
            Some("20")
        );
        drop(second);
        let text = t.prometheus_text().expect("encodes");
        assert!(
            line(&text, "gdpr_feed_watchers", &[]).is_some_and(|l| l.ends_with(" 0")),
            "{text}"
        );
    }

    #[test]
    fn open_gauge_reports_every_open_state_and_never_final_ones() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        m.record_open_requests(&[(State::InProgress, 7), (State::AwaitingGuardianConsent, 2)]);
        m.record_open_requests(&[(State::InProgress, 5)]);
        let text = t.prometheus_text().expect("encodes");
        let value = |state: &str| {
            line(&text, "gdpr_dsr_open", &[&format!("dsr_state=\"{state}\"")])
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(value("in_progress").as_deref(), Some("5"));
        // Emptied out since the last refresh: zero, not the old 2.
        assert_eq!(value("awaiting_guardian_consent").as_deref(), Some("0"));
        assert_eq!(value("needs_attention").as_deref(), Some("0"));
        assert_eq!(value("completed"), None);
    }

    #[test]
    fn sla_findings_and_time_to_close_carry_no_ids() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        m.sla_at_risk(SlaItem::Request);
        m.sla_at_risk(SlaItem::Task);
        m.sla_at_risk(SlaItem::Task);
        m.sla_breached(SlaItem::Request);
        m.request_expired();
        m.requests_purged(3);
        m.request_closed(RequestType::Erasure, Regime::Gdpr, State::Completed, 0.4);
        m.request_closed(RequestType::Erasure, Regime::Gdpr, State::Completed, 1.2);
        let text = t.prometheus_text().expect("encodes");
        let value = |name: &str, labels: &[&str]| {
            line(&text, name, labels)
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(
            value("gdpr_dsr_sla_at_risk_total", &["dsr_sla_item=\"task\""]).as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            value("gdpr_dsr_sla_at_risk_total", &["dsr_sla_item=\"request\""]).as_deref(),
            Some("1")
        );
        assert_eq!(
            value("gdpr_dsr_sla_breached_total", &["dsr_sla_item=\"request\""]).as_deref(),
            Some("1")
        );
        assert!(text.contains("gdpr_dsr_expired_total"), "{text}");
        assert_eq!(
            value("gdpr_dsr_purged_total", &[]).as_deref(),
            Some("3"),
            "{text}"
        );
        let within = ["dsr_state=\"completed\"", "le=\"1\""];
        assert_eq!(
            value("gdpr_dsr_time_to_close_ratio_bucket", &within).as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            value(
                "gdpr_dsr_time_to_close_ratio_count",
                &["dsr_type=\"erasure\""]
            )
            .as_deref(),
            Some("2")
        );
    }
}
