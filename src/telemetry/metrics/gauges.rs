//! The gauges the dashboard and the alerts read besides the counters: the
//! backlog (open requests by deadline window, each processor's open tasks
//! and how long the oldest waited), readiness, and the SLA watchdog's
//! health (its sweeps by outcome, the last complete one, whether this
//! replica holds the lease).
//!
//! | instrument | kind | attributes | Prometheus |
//! |---|---|---|---|
//! | `gdpr.dsr.open_by_deadline` | gauge | `dsr.deadline` (`overdue`, `at_risk`, `due_7d`) | `gdpr_dsr_open_by_deadline` |
//! | `gdpr.tasks.open` | gauge | `processor_id`, `task_state` (`pending`, `leased`) | `gdpr_tasks_open` |
//! | `gdpr.tasks.overdue` | gauge | `processor_id` | `gdpr_tasks_overdue` |
//! | `gdpr.tasks.oldest_age` | gauge, s | `processor_id` | `gdpr_tasks_oldest_age_seconds` |
//! | `gdpr.ready` | gauge, 1 or 0 | — | `gdpr_ready` |
//! | `gdpr.watchdog.sweeps` | counter | `outcome` (`complete`, `lease_lost`, `failed`) | `gdpr_watchdog_sweeps_total` |
//! | `gdpr.watchdog.last_sweep_timestamp` | gauge, s since the epoch | — | `gdpr_watchdog_last_sweep_timestamp_seconds` |
//! | `gdpr.watchdog.lease_held` | gauge, 1 or 0 | — | `gdpr_watchdog_lease_held` |
//!
//! Processor ids are labels: an administrator registers them, so there
//! are few, and they name companies, not people. A processor that leaves
//! the figures (deleted) is reported at zero, not at its last value.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Meter};

use super::{Metrics, SlaItem};
use crate::domain::backlog::{Backlog, DeadlineCounts, ProcessorBacklog};

/// How a sweep of the SLA watchdog ended, as the `outcome` attribute
/// says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepOutcome {
    /// Run to the end while holding the lease.
    Complete,
    /// Stopped half-way: another replica took the lease.
    LeaseLost,
    /// Stopped by an error (the database, most likely).
    Failed,
}

impl SweepOutcome {
    /// `complete`, `lease_lost` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::LeaseLost => "lease_lost",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug)]
pub(super) struct Gauges {
    open_by_deadline: Gauge<u64>,
    tasks_open: Gauge<u64>,
    tasks_overdue: Gauge<u64>,
    task_oldest_age: Gauge<f64>,
    ready: Gauge<u64>,
    sweeps: Counter<u64>,
    last_sweep: Gauge<f64>,
    lease_held: Gauge<u64>,
    /// The processors reported so far, to report at zero those that left.
    processors: Mutex<BTreeSet<String>>,
}

impl Gauges {
    pub(super) fn new(meter: &Meter) -> Self {
        Self {
            open_by_deadline: meter
                .u64_gauge("gdpr.dsr.open_by_deadline")
                .with_description(
                    "Open requests past their deadline (overdue), within the at-risk threshold of it (at_risk) and due within 7 days (due_7d), across all controllers; the windows overlap.",
                )
                .with_unit("{request}")
                .build(),
            tasks_open: meter
                .u64_gauge("gdpr.tasks.open")
                .with_description("Open processor tasks, pending or leased, per processor.")
                .with_unit("{task}")
                .build(),
            tasks_overdue: meter
                .u64_gauge("gdpr.tasks.overdue")
                .with_description("Open processor tasks past their due time, per processor.")
                .with_unit("{task}")
                .build(),
            task_oldest_age: meter
                .f64_gauge("gdpr.tasks.oldest_age")
                .with_description(
                    "How long the oldest open task of each processor has existed (0 without one).",
                )
                .with_unit("s")
                .build(),
            // The 1-or-0 gauges have no unit: the exporter would name a
            // unit of "1" with a `_ratio` suffix.
            ready: meter
                .u64_gauge("gdpr.ready")
                .with_description(
                    "1 while this replica is ready (database reachable, not draining), else 0.",
                )
                .build(),
            sweeps: meter
                .u64_counter("gdpr.watchdog.sweeps")
                .with_description(
                    "Sweeps of the SLA watchdog by this replica, by outcome (complete, lease_lost, failed).",
                )
                .with_unit("{sweep}")
                .build(),
            last_sweep: meter
                .f64_gauge("gdpr.watchdog.last_sweep_timestamp")
                .with_description(
                    "When this replica last finished an SLA sweep to the end, in seconds since the Unix epoch.",
                )
                .with_unit("s")
                .build(),
            lease_held: meter
                .u64_gauge("gdpr.watchdog.lease_held")
                .with_description("1 while this replica holds the SLA watchdog's lease, else 0.")
                .build(),
            processors: Mutex::new(BTreeSet::new()),
        }
    }
}

fn flag(on: bool) -> u64 {
    u64::from(on)
}

impl Metrics {
    /// Sets every backlog gauge from one reading of the store (see
    /// [`refresh_backlog`]).
    pub fn record_backlog(&self, backlog: &Backlog) {
        self.record_open_requests(&backlog.open_by_state);
        self.record_deadlines(backlog.deadlines);
        self.record_processors(&backlog.processors, backlog.at);
    }

    fn record_deadlines(&self, counts: DeadlineCounts) {
        let gauge = &self.inner.gauges.open_by_deadline;
        for (window, n) in [
            ("overdue", counts.overdue),
            ("at_risk", counts.at_risk),
            ("due_7d", counts.due_soon),
        ] {
            gauge.record(n, &[KeyValue::new("dsr.deadline", window)]);
        }
    }

    fn record_processors(&self, processors: &[ProcessorBacklog], now: Timestamp) {
        let g = &self.inner.gauges;
        let mut known = g
            .processors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone: Vec<String> = known
            .iter()
            .filter(|id| !processors.iter().any(|p| &p.processor_id == *id))
            .cloned()
            .collect();
        let idle = gone.into_iter().map(|processor_id| ProcessorBacklog {
            processor_id,
            pending: 0,
            leased: 0,
            overdue: 0,
            oldest_create_time: None,
        });
        for p in processors.iter().cloned().chain(idle) {
            let id = KeyValue::new("processor_id", p.processor_id.clone());
            let state = |s: &'static str| [id.clone(), KeyValue::new("task_state", s)];
            g.tasks_open.record(p.pending, &state("pending"));
            g.tasks_open.record(p.leased, &state("leased"));
            g.tasks_overdue.record(p.overdue, std::slice::from_ref(&id));
            let age = p.oldest_age(now).as_secs_f64();
            g.task_oldest_age.record(age, std::slice::from_ref(&id));
            known.insert(p.processor_id);
        }
    }

    /// Puts the counters an alert takes the increase of (SLA findings,
    /// sweeps) at zero for every attribute set: a series that first
    /// appears at 1 shows no increase to Prometheus, so the first breach
    /// of a replica's life would not alert.
    pub(super) fn start_alerted_counters_at_zero(&self) {
        for item in [SlaItem::Request, SlaItem::Task] {
            let attributes = [KeyValue::new("dsr.sla.item", item.as_str())];
            self.inner.at_risk.add(0, &attributes);
            self.inner.breached.add(0, &attributes);
        }
        for outcome in [
            SweepOutcome::Complete,
            SweepOutcome::LeaseLost,
            SweepOutcome::Failed,
        ] {
            self.inner
                .gauges
                .sweeps
                .add(0, &[KeyValue::new("outcome", outcome.as_str())]);
        }
    }

    /// Whether this replica is ready to serve (the readiness probe's
    /// answer).
    pub fn set_ready(&self, ready: bool) {
        self.inner.gauges.ready.record(flag(ready), &[]);
    }

    /// Whether this replica holds the SLA watchdog's lease.
    pub fn set_lease_held(&self, held: bool) {
        self.inner.gauges.lease_held.record(flag(held), &[]);
    }

    /// A sweep of the SLA watchdog ended, at `at` (the application's
    /// clock); a complete one moves the last-sweep time.
    pub fn sweep_ended(&self, outcome: SweepOutcome, at: Timestamp) {
        let g = &self.inner.gauges;
        g.sweeps
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
        if outcome == SweepOutcome::Complete {
            let seconds = at.as_microsecond() as f64 / 1e6;
            g.last_sweep.record(seconds, &[]);
        }
    }
}

/// Keeps the backlog gauges current: every `interval`, asks `read` for the
/// figures (the store's, across all tenants) and records them, until
/// `stop` resolves. A failed reading keeps the last values and is logged.
pub async fn refresh_backlog<R, F, E>(
    metrics: Metrics,
    interval: Duration,
    read: R,
    stop: impl Future<Output = ()>,
) where
    R: Fn() -> F,
    F: Future<Output = Result<Backlog, E>>,
    E: std::fmt::Display,
{
    let refresh = async {
        loop {
            match read().await {
                Ok(backlog) => metrics.record_backlog(&backlog),
                Err(e) => tracing::warn!(error = %e, "cannot read the backlog for the gauges"),
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = refresh => {}
        () = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::line;
    use super::*;
    use crate::domain::request::State;
    use crate::telemetry::Telemetry;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid")
    }

    fn value(text: &str, name: &str, labels: &[&str]) -> Option<String> {
        line(text, name, labels)
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    }

    fn backlog(processors: Vec<ProcessorBacklog>) -> Backlog {
        Backlog {
            at: at("2026-03-09T10:00:00Z"),
            open_by_state: vec![(State::InProgress, 4)],
            deadlines: DeadlineCounts {
                overdue: 1,
                at_risk: 2,
                due_soon: 3,
            },
            processors,
        }
    }

    fn mailer() -> ProcessorBacklog {
        ProcessorBacklog {
            processor_id: "mailer".to_owned(),
            pending: 5,
            leased: 2,
            overdue: 1,
            oldest_create_time: Some(at("2026-03-09T09:00:00Z")),
        }
    }

    #[test]
    fn backlog_gauges_carry_windows_and_processors_only() {
        let t = Telemetry::disabled();
        t.metrics().record_backlog(&backlog(vec![mailer()]));
        let text = t.prometheus_text().expect("encodes");
        let v = |name: &str, labels: &[&str]| value(&text, name, labels);
        assert_eq!(
            v("gdpr_dsr_open", &["dsr_state=\"in_progress\""]).as_deref(),
            Some("4")
        );
        for (window, n) in [("overdue", "1"), ("at_risk", "2"), ("due_7d", "3")] {
            let label = format!("dsr_deadline=\"{window}\"");
            assert_eq!(
                v("gdpr_dsr_open_by_deadline", &[&label]).as_deref(),
                Some(n),
                "{text}"
            );
        }
        let mailer = "processor_id=\"mailer\"";
        assert_eq!(
            v("gdpr_tasks_open", &[mailer, "task_state=\"pending\""]).as_deref(),
            Some("5")
        );
        assert_eq!(
            v("gdpr_tasks_open", &[mailer, "task_state=\"leased\""]).as_deref(),
            Some("2")
        );
        assert_eq!(v("gdpr_tasks_overdue", &[mailer]).as_deref(), Some("1"));
        assert_eq!(
            v("gdpr_tasks_oldest_age_seconds", &[mailer]).as_deref(),
            Some("3600"),
            "{text}"
        );
    }

    #[test]
    fn a_processor_that_left_the_figures_is_reported_at_zero() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        m.record_backlog(&backlog(vec![mailer()]));
        m.record_backlog(&backlog(vec![]));
        let text = t.prometheus_text().expect("encodes");
        let mailer = "processor_id=\"mailer\"";
        for (name, labels) in [
            ("gdpr_tasks_open", vec![mailer, "task_state=\"pending\""]),
            ("gdpr_tasks_overdue", vec![mailer]),
            ("gdpr_tasks_oldest_age_seconds", vec![mailer]),
        ] {
            assert_eq!(value(&text, name, &labels).as_deref(), Some("0"), "{name}");
        }
    }

    #[test]
    fn alerted_counters_start_at_zero() {
        let t = Telemetry::disabled();
        let text = t.prometheus_text().expect("encodes");
        for (name, label) in [
            ("gdpr_dsr_sla_breached_total", "dsr_sla_item=\"request\""),
            ("gdpr_dsr_sla_breached_total", "dsr_sla_item=\"task\""),
            ("gdpr_dsr_sla_at_risk_total", "dsr_sla_item=\"request\""),
            ("gdpr_watchdog_sweeps_total", "outcome=\"complete\""),
            ("gdpr_watchdog_sweeps_total", "outcome=\"failed\""),
        ] {
            assert_eq!(
                value(&text, name, &[label]).as_deref(),
                Some("0"),
                "{name} {label}: {text}"
            );
        }
    }

    #[test]
    fn readiness_lease_and_sweeps_are_recorded() {
        let t = Telemetry::disabled();
        let m = t.metrics();
        m.set_ready(true);
        m.set_ready(false);
        m.set_lease_held(true);
        let done = at("2026-03-09T10:00:00.5Z");
        m.sweep_ended(SweepOutcome::Complete, done);
        m.sweep_ended(SweepOutcome::Failed, at("2026-03-09T10:01:00Z"));
        m.sweep_ended(SweepOutcome::LeaseLost, at("2026-03-09T10:02:00Z"));
        let text = t.prometheus_text().expect("encodes");
        let plain = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(plain("gdpr_ready").as_deref(), Some("0"), "{text}");
        assert_eq!(plain("gdpr_watchdog_lease_held").as_deref(), Some("1"));
        // Only the complete sweep moves the time.
        let last =
            plain("gdpr_watchdog_last_sweep_timestamp_seconds").and_then(|v| v.parse::<f64>().ok());
        assert_eq!(last, Some(done.as_microsecond() as f64 / 1e6), "{text}");
        for outcome in ["complete", "failed", "lease_lost"] {
            let label = format!("outcome=\"{outcome}\"");
            assert_eq!(
                value(&text, "gdpr_watchdog_sweeps_total", &[&label]).as_deref(),
                Some("1"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn refresh_records_readings_and_survives_a_failed_one() {
        let t = Telemetry::disabled();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let read = || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 1 {
                    Err("database unavailable")
                } else {
                    Ok(backlog(vec![mailer()]))
                }
            }
        };
        refresh_backlog(
            t.metrics(),
            Duration::from_millis(1),
            read,
            tokio::time::sleep(Duration::from_millis(50)),
        )
        .await;
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
        let text = t.prometheus_text().expect("encodes");
        let l = line(&text, "gdpr_dsr_open", &["dsr_state=\"in_progress\""]).expect("set");
        assert!(l.ends_with(" 4"), "{l}");
        let l = line(
            &text,
            "gdpr_dsr_open_by_deadline",
            &["dsr_deadline=\"overdue\""],
        )
        .expect("set");
        assert!(l.ends_with(" 1"), "{l}");
    }
}
