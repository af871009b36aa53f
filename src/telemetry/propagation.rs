//! W3C trace context (`traceparent`, `tracestate`): read from a call's
//! metadata, written out as a string to store with a request, and turned
//! back into a span link to that origin.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::domain::request::TraceOrigin;

/// Lets the propagator read HTTP/2 headers (gRPC metadata). The propagator
/// asks only for `traceparent` and `tracestate`; no other header, and in
/// particular not `authorization`, is ever read through it.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The caller's trace context, when the call carries a valid `traceparent`.
pub(crate) fn remote_context(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    // Against an empty context: `extract` falls back to the current one,
    // which would make an unrelated active span look like the caller.
    let cx = TraceContextPropagator::new()
        .extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers));
    let valid = cx.span().span_context().is_valid();
    valid.then_some(cx)
}

/// The current span's trace context as a W3C `traceparent` string
/// (`00-{trace id}-{span id}-{flags}`), to be stored with a request so that
/// later spans about it can link back to the call that created it. `None`
/// outside a traced span, or when tracing is off.
pub fn current_traceparent() -> Option<String> {
    let cx = opentelemetry::Context::current();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The current span's trace context as stored with a new request: its
/// `traceparent` and, if the trace carries vendor entries, its
/// `tracestate`. `None` outside a traced span, or when tracing is off.
pub fn current_origin() -> Option<TraceOrigin> {
    let cx = opentelemetry::Context::current();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    Some(TraceOrigin {
        traceparent: carrier.remove("traceparent")?,
        tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
    })
}

/// Adds a span link from the current span to the span `traceparent` names
/// (a string from [`current_traceparent`]). Returns whether `traceparent`
/// was valid; an invalid one (an old row, a hand-edited value) adds nothing.
/// A link rather than a parent: the origin call ended long ago and belongs
/// to another trace.
pub fn link_to(traceparent: &str) -> bool {
    let origin = TraceOrigin {
        traceparent: traceparent.to_owned(),
        tracestate: None,
    };
    link_origin(&origin)
}

/// Adds a span link from the current span to the call `origin` describes
/// (from [`current_origin`]), its `tracestate` included. Returns whether
/// the origin was valid; an invalid one adds nothing.
pub fn link_origin(origin: &TraceOrigin) -> bool {
    let mut carrier = HashMap::from([("traceparent".to_owned(), origin.traceparent.clone())]);
    if let Some(state) = &origin.tracestate {
        carrier.insert("tracestate".to_owned(), state.clone());
    }
    let cx = TraceContextPropagator::new()
        .extract_with_context(&opentelemetry::Context::new(), &carrier);
    let linked = cx.span().span_context().clone();
    if !linked.is_valid() {
        return false;
    }
    opentelemetry::Context::map_current(|cx| cx.span().add_link(linked, Vec::new()));
    true
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Runs `f` under a subscriber that sends spans to an in-memory exporter.
    fn traced<R>(f: impl FnOnce() -> R) -> (R, Vec<SpanData>) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = Registry::default()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let out = tracing::subscriber::with_default(subscriber, f);
        let spans = exporter.get_finished_spans().expect("spans");
        (out, spans)
    }

    #[test]
    fn no_traceparent_outside_a_span_or_without_tracing() {
        let (outside, _) = traced(current_traceparent);
        assert_eq!(outside, None);
        let untraced = tracing::info_span!("untraced").in_scope(current_traceparent);
        assert_eq!(untraced, None);
    }

    #[test]
    fn traceparent_names_the_current_span() {
        let (tp, spans) = traced(|| tracing::info_span!("origin").in_scope(current_traceparent));
        let tp = tp.expect("inside a traced span");
        let span = spans.iter().find(|s| s.name == "origin").expect("exported");
        let sc = &span.span_context;
        assert_eq!(tp, format!("00-{}-{}-01", sc.trace_id(), sc.span_id()));
    }

    #[test]
    fn link_to_adds_a_link_to_the_origin() {
        let origin_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let origin_span = "00f067aa0ba902b7";
        let tp = format!("00-{origin_trace}-{origin_span}-01");
        let (linked, spans) = traced(|| tracing::info_span!("later").in_scope(|| link_to(&tp)));
        assert!(linked);
        let span = spans.iter().find(|s| s.name == "later").expect("exported");
        let link = span.links.iter().next().expect("one link");
        assert_eq!(link.span_context.trace_id().to_string(), origin_trace);
        assert_eq!(link.span_context.span_id().to_string(), origin_span);
        // A link, not a parent: the span starts its own trace.
        assert_ne!(span.span_context.trace_id().to_string(), origin_trace);
    }

    #[test]
    fn the_origin_keeps_the_trace_state_and_links_with_it() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", parent.parse().expect("ascii"));
        headers.insert("tracestate", "vendor=opaque".parse().expect("ascii"));
        let remote = remote_context(&headers).expect("valid");
        let (origin, spans) = traced(|| {
            let span = tracing::info_span!("submit");
            let _ = span.set_parent(remote);
            span.in_scope(current_origin)
        });
        let origin = origin.expect("inside a traced span");
        let submit = spans.iter().find(|s| s.name == "submit").expect("exported");
        assert_eq!(
            origin.traceparent,
            format!(
                "00-{}-{}-01",
                submit.span_context.trace_id(),
                submit.span_context.span_id()
            )
        );
        assert_eq!(origin.tracestate.as_deref(), Some("vendor=opaque"));

        let (linked, spans) =
            traced(|| tracing::info_span!("later").in_scope(|| link_origin(&origin)));
        assert!(linked);
        let later = spans.iter().find(|s| s.name == "later").expect("exported");
        let link = later.links.iter().next().expect("one link");
        assert_eq!(link.span_context.trace_id(), submit.span_context.trace_id());
        assert_eq!(link.span_context.span_id(), submit.span_context.span_id());
        assert_eq!(link.span_context.trace_state().header(), "vendor=opaque");
        let (untraced, _) = traced(current_origin);
        assert_eq!(untraced, None);
    }

    #[test]
    fn an_invalid_traceparent_adds_no_link() {
        let (linked, spans) = traced(|| {
            tracing::info_span!("later").in_scope(|| {
                link_to("not a traceparent")
                    || link_to("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
            })
        });
        assert!(!linked);
        let span = spans.iter().find(|s| s.name == "later").expect("exported");
        assert_eq!(span.links.iter().count(), 0);
    }

    #[test]
    fn remote_context_reads_only_a_valid_traceparent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().expect("ascii"));
        assert!(remote_context(&headers).is_none());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("ascii"),
        );
        let cx = remote_context(&headers).expect("valid");
        assert!(cx.span().span_context().is_remote());
    }
}
