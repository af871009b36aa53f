//! The `dsr.*` span attributes: what a span about a data-subject request
//! says about it. Never the subject: no email, name or date of birth, and
//! not even the subject's `external_id`.
//!
//! Everything here acts on the *current* OpenTelemetry span: inside a call,
//! the call's SERVER span (`grpc.rs` makes it current while the call is
//! polled); inside an entered `tracing` span of this crate, that span (the
//! OpenTelemetry layer makes an entered span current). Outside any traced
//! span, or with tracing off, nothing is built and nothing is recorded.

use std::sync::Mutex;

use jiff::Timestamp;
use opentelemetry::trace::{SpanId, SpanRef, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

use crate::domain::request::{DataSubjectRequest, NAME_PREFIX};
use crate::domain::routing::{Task, TaskView};

/// What a handler records on its call's span, kept in the call's context
/// and set on the span once, when the call ends: a handler may learn the
/// same thing twice (the tenant from the token, then from the request it
/// read), and a span must carry each attribute key once.
pub(super) struct CallAttributes {
    /// The call's span: a child span opened inside the call inherits the
    /// call's context, and its attributes are its own.
    span_id: SpanId,
    attributes: Mutex<Vec<KeyValue>>,
}

impl CallAttributes {
    pub(super) fn new(span_id: SpanId) -> Self {
        Self {
            span_id,
            attributes: Mutex::new(Vec::with_capacity(16)),
        }
    }

    /// The attributes recorded, each key once with the last value given,
    /// in the order first given.
    pub(super) fn take(&self) -> Vec<KeyValue> {
        last_value_of_each_key(std::mem::take(&mut *lock(&self.attributes)))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can leave the vector half-changed.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Each key once, with the value given last, where it was first given.
/// (A handful of attributes: a linear search beats hashing.)
fn last_value_of_each_key(attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::with_capacity(attributes.len());
    for kv in attributes {
        match out.iter_mut().find(|o| o.key == kv.key) {
            Some(given) => given.value = kv.value,
            None => out.push(kv),
        }
    }
    out
}

/// Records what `attributes` builds on the current span, building it only
/// when that span records (traced and sampled): inside a call, in the
/// call's attributes; elsewhere, on the span itself.
pub fn record_attributes<I>(attributes: impl FnOnce() -> I)
where
    I: IntoIterator<Item = KeyValue>,
{
    Context::map_current(|cx| {
        let span: SpanRef<'_> = cx.span();
        if !span.is_recording() {
            return;
        }
        match cx.get::<CallAttributes>() {
            Some(call) if call.span_id == span.span_context().span_id() => {
                lock(&call.attributes).extend(attributes());
            }
            _ => span.set_attributes(attributes()),
        }
    });
}

/// Records the `dsr.*` attributes of `request` on the current span, as
/// they stand at `now`:
///
/// | attribute | value |
/// |---|---|
/// | `dsr.name` | `dataSubjectRequests/{uuid}` |
/// | `dsr.type` | `access`, `erasure`, … |
/// | `dsr.state` | `in_progress`, `completed`, … |
/// | `dsr.regime` | `GDPR`, `CCPA`, `LGPD` |
/// | `dsr.controller_id` | the tenant |
/// | `dsr.due_time` | RFC 3339 |
/// | `dsr.sla.remaining_seconds` | seconds from `now` to `due_time`, negative once past |
pub fn record_request(request: &DataSubjectRequest, now: Timestamp) {
    record_attributes(|| {
        [
            KeyValue::new("dsr.name", request.name()),
            KeyValue::new("dsr.type", request.request_type.as_str()),
            KeyValue::new("dsr.state", request.state.as_str()),
            KeyValue::new("dsr.regime", request.regime.as_str()),
            KeyValue::new("dsr.controller_id", request.controller_id.clone()),
            KeyValue::new("dsr.due_time", request.due_time.to_string()),
            KeyValue::new(
                "dsr.sla.remaining_seconds",
                request.due_time.as_second() - now.as_second(),
            ),
        ]
    });
}

/// Records the `dsr.task.*` attributes of `task` on the current span, and
/// the `dsr.*` ones the task knows of its request (name and controller):
///
/// | attribute | value |
/// |---|---|
/// | `dsr.task.name` | `tasks/{uuid}` |
/// | `dsr.task.processor_id` | the processor |
/// | `dsr.task.due_time` | RFC 3339 |
/// | `dsr.task.attempt` | how many times it was handed out |
pub fn record_task(task: &Task) {
    record_attributes(|| {
        [
            KeyValue::new("dsr.task.name", task.name()),
            KeyValue::new("dsr.task.processor_id", task.processor_id.clone()),
            KeyValue::new("dsr.task.due_time", task.due_time.to_string()),
            KeyValue::new("dsr.task.attempt", i64::from(task.attempt)),
            KeyValue::new("dsr.name", format!("{NAME_PREFIX}{}", task.request)),
            KeyValue::new("dsr.controller_id", task.controller_id.clone()),
        ]
    });
}

/// Records what a processor's view of a task says on the current span
/// (the task's `dsr.task.*` attributes, and the request's `dsr.name`,
/// `dsr.type` and `dsr.controller_id`) and links it to the call that
/// submitted the request. Returns whether a link was added.
pub fn record_task_view(view: &TaskView) -> bool {
    record_task(&view.task);
    record_attributes(|| [KeyValue::new("dsr.type", view.request_type.as_str())]);
    view.origin.as_ref().is_some_and(super::link_origin)
}

/// Links the current span to the call that submitted `request`, if that
/// call was traced: later spans about a request lead back to its origin.
/// Returns whether a link was added.
pub fn link_request(request: &DataSubjectRequest) -> bool {
    request.origin.as_ref().is_some_and(super::link_origin)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::{Key, Value};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::SubscriberExt as _;
    use uuid::Uuid;

    use super::*;
    use crate::domain::age::AgePolicy;
    use crate::domain::input::{RawSubject, RawSubmission, Submission, accept};
    use crate::domain::request::{Actor, RequestType};

    fn request(now: Timestamp) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(RequestType::Erasure),
            subject: Some(RawSubject {
                external_id: "cust-77".into(),
                email: "ada@example.org".into(),
                date_of_birth: Some((1985, 12, 10)),
                country: "DE".into(),
                subdivision: String::new(),
            }),
            received_at: Some((now.as_second(), 0)),
            ..Default::default()
        };
        let submission = Submission::parse(raw, now).expect("valid submission");
        let fingerprint = submission.fingerprint();
        let actor = Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        };
        accept(
            submission,
            "acme",
            Uuid::new_v4(),
            fingerprint,
            &AgePolicy::default(),
            &actor,
            now,
        )
        .expect("adult accepted")
        .0
    }

    fn recorded(request: &DataSubjectRequest, now: Timestamp) -> Vec<(Key, Value)> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = Registry::default()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("handler").in_scope(|| record_request(request, now));
        });
        let spans = exporter.get_finished_spans().expect("spans");
        let span = spans
            .iter()
            .find(|s| s.name == "handler")
            .expect("exported");
        span.attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    }

    fn get<'a>(attrs: &'a [(Key, Value)], key: &str) -> &'a Value {
        &attrs
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .unwrap_or_else(|| panic!("{key} missing from {attrs:?}"))
            .1
    }

    #[test]
    fn each_key_once_with_its_last_value_where_it_first_stood() {
        let given = vec![
            KeyValue::new("a", 1),
            KeyValue::new("b", "x"),
            KeyValue::new("a", 2),
            KeyValue::new("c", true),
            KeyValue::new("b", "y"),
            KeyValue::new("a", 3),
        ];
        let kept: Vec<(String, Value)> = last_value_of_each_key(given)
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value))
            .collect();
        assert_eq!(
            kept,
            [
                ("a".to_owned(), Value::I64(3)),
                ("b".to_owned(), Value::from("y")),
                ("c".to_owned(), Value::Bool(true)),
            ]
        );
        assert!(last_value_of_each_key(Vec::new()).is_empty());
    }

    #[test]
    fn records_the_request_and_the_time_left() {
        let received: Timestamp = "2026-02-01T10:00:00Z".parse().expect("valid");
        let r = request(received);
        // Received Sunday 1 February 2026 in Germany: due Monday 2 March,
        // end of day Berlin time.
        let attrs = recorded(&r, received);
        assert_eq!(get(&attrs, "dsr.name").as_str(), r.name().as_str());
        assert_eq!(get(&attrs, "dsr.type").as_str(), "erasure");
        assert_eq!(get(&attrs, "dsr.state").as_str(), "in_progress");
        assert_eq!(get(&attrs, "dsr.regime").as_str(), "GDPR");
        assert_eq!(get(&attrs, "dsr.controller_id").as_str(), "acme");
        assert_eq!(get(&attrs, "dsr.due_time").as_str(), r.due_time.to_string());
        let remaining = r.due_time.as_second() - received.as_second();
        assert!(remaining > 0);
        assert_eq!(
            get(&attrs, "dsr.sla.remaining_seconds"),
            &Value::I64(remaining)
        );
    }

    #[test]
    fn remaining_seconds_are_negative_once_the_deadline_passed() {
        let received: Timestamp = "2026-02-01T10:00:00Z".parse().expect("valid");
        let r = request(received);
        let later = r.due_time + jiff::SignedDuration::from_secs(90);
        let attrs = recorded(&r, later);
        assert_eq!(get(&attrs, "dsr.sla.remaining_seconds"), &Value::I64(-90));
    }

    #[test]
    fn no_personal_data_is_recorded() {
        let received: Timestamp = "2026-02-01T10:00:00Z".parse().expect("valid");
        let attrs = recorded(&request(received), received);
        for (key, value) in &attrs {
            let value = value.as_str();
            for secret in ["ada@example.org", "1985-12-10", "cust-77"] {
                assert!(!value.contains(secret), "{key} = {value}");
            }
        }
    }
}
