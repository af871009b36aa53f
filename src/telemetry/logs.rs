//! Log lines: `tracing-subscriber`'s text or JSON format, plus the trace
//! and span id of the span a line was written in, so a log search leads to
//! the trace and back.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{self, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::LogFormat;

/// The log layer for `format`, writing to stderr.
pub(super) fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(WithTraceIds {
                inner: format::format(),
                json: false,
            })
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds {
                inner: format::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
                json: true,
            })
            .boxed(),
    }
}

/// Adds `trace_id` and `span_id` to the line `inner` formats.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

/// The ids of the traced span the event is written in. The OpenTelemetry
/// layer makes an entered span's context the current one, so this is empty
/// exactly when no traced span is active (or tracing is off).
fn current_ids() -> Option<(TraceId, SpanId)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            // In front, so the rest of the line keeps its colours.
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        // The JSON formatter writes one object; the ids become its first
        // members.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let sep = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{sep}{rest}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::telemetry::captured::Captured;

    /// Lines written by a JSON log layer and the trace id of the one span.
    fn json_lines(f: impl FnOnce()) -> (Vec<serde_json::Value>, String) {
        let out = Captured::default();
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds {
                inner: format::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
                json: true,
            });
        let subscriber = Registry::default()
            .with(fmt)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        let text = out.text();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect();
        let spans = exporter.get_finished_spans().expect("spans");
        let trace_id = spans
            .first()
            .map(|s| s.span_context.trace_id().to_string())
            .unwrap_or_default();
        (lines, trace_id)
    }

    #[test]
    fn json_lines_in_a_span_carry_its_ids() {
        let (lines, trace_id) = json_lines(|| {
            tracing::info!("before");
            tracing::info_span!("work").in_scope(|| tracing::info!(answer = 42, "inside"));
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "before");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["answer"], 42);
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"].as_str().map(str::len), Some(16));
        assert_eq!(lines[1]["span"]["name"], "work");
    }
}
