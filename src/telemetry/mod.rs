//! Telemetry: log lines, traces and metrics, all hung off one [`Telemetry`]
//! handle that each application owns.
//!
//! - **Logs**: `tracing-subscriber` text or JSON lines on stderr, level from
//!   `RUST_LOG` (default `info`); a line written inside a traced span carries
//!   its `trace_id` and `span_id` (`logs.rs`).
//! - **Traces**: the OpenTelemetry SDK, exporting OTLP over gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set. A tower layer opens one SERVER
//!   span per RPC, continuing the caller's W3C trace context (`grpc.rs`);
//!   handlers record the `dsr.*` attributes on it (`dsr.rs`).
//! - **Metrics**: OpenTelemetry instruments (`metrics.rs`), read by a
//!   Prometheus registry that `--metrics-listen` serves, and exported over
//!   OTLP next to the traces when the endpoint is set.
//!
//! Without an endpoint nothing is exported and no OpenTelemetry layer is
//! installed, so spans cost what logging costs and no more.
//!
//! The handle is built per application rather than installed only as a
//! global, so a test can run several applications in one process, each
//! with its own exporter: the gRPC layer runs every call under the
//! application's own `tracing` dispatcher.

#[cfg(test)]
mod captured;
mod dispatched;
mod dsr;
mod grpc;
mod holidays;
mod logs;
mod metrics;
mod propagation;
mod threads;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use dispatched::Dispatched;
pub use dsr::{link_request, record_attributes, record_request, record_task, record_task_view};
pub use grpc::GrpcTelemetryLayer;
pub use holidays::{check_deadline_holidays, holidays_unverified};
pub use metrics::{FeedWatchGuard, Metrics, SlaItem, SweepOutcome, refresh_backlog, serve_metrics};
pub use propagation::{current_origin, current_traceparent, link_origin, link_to};

/// Log output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `service.name` when neither `OTEL_SERVICE_NAME` nor a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` names the service.
pub const DEFAULT_SERVICE_NAME: &str = "gdpr-intake";

/// Longest wait for the last spans and metrics to leave at shutdown: long
/// enough for a collector on the same network, short enough to fit in a
/// pod's termination grace period after the drain.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The instrumentation scope of everything this crate emits.
const SCOPE_NAME: &str = "gdpr-intake";

/// The `tracing` target prefix whose spans go to OpenTelemetry. Spans of
/// dependencies (h2, hyper, sqlx) stay out: they add noise, and the
/// exporter's own transport spans would otherwise feed back into the
/// exporter.
const TRACED_TARGET: &str = "gdpr_intake";

/// Where OTLP goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpExport {
    /// `http://host:4317`. `None` lets the exporter read
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `_METRICS_ENDPOINT`) itself.
    pub endpoint: Option<String>,
}

/// What telemetry an application gets, decided before anything starts.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// `service.name` of the resource.
    pub service_name: String,
    /// OTLP/gRPC export of spans and metrics; `None`: nothing is exported.
    pub otlp: Option<OtlpExport>,
    /// Log lines from this application's subscriber; `None` writes none
    /// (tests, which log only with `TEST_LOG`).
    pub log_format: Option<LogFormat>,
    /// Address of the Prometheus scrape endpoint (`GET /metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// Longest wait for the final flush at shutdown.
    pub shutdown_timeout: Duration,
    /// The most detailed level of this crate's `tracing` spans that are
    /// exported beside the calls' spans: INFO (the default) takes the
    /// lifecycle spans, DEBUG adds a span for every store operation.
    pub trace_level: tracing::Level,
}

impl TelemetryConfig {
    /// Nothing exported, no log lines of its own, no scrape endpoint.
    pub fn quiet() -> Self {
        Self {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            otlp: None,
            log_format: None,
            metrics_listen: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            trace_level: tracing::Level::INFO,
        }
    }

    /// Reads the standard `OTEL_*` variables. The sampler
    /// (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the other resource
    /// attributes, the `OTEL_BSP_*` batch settings and the OTLP headers,
    /// timeout and compression are read by the SDK itself.
    pub fn from_env(
        log_format: LogFormat,
        metrics_listen: Option<SocketAddr>,
    ) -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok(), log_format, metrics_listen)
    }

    /// [`TelemetryConfig::from_env`] over any source of variables.
    fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        log_format: LogFormat,
        metrics_listen: Option<SocketAddr>,
    ) -> Result<Self, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true");
        let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"));
        let otlp = match endpoint {
            Some(_) if !disabled => {
                // Only the gRPC transport is built in; refuse the others
                // rather than send gRPC to an HTTP receiver.
                for name in [
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                ] {
                    if let Some(p) = set(name).filter(|p| p.trim() != "grpc") {
                        return Err(format!(
                            "{name}={p} is not supported: gdpr-intake exports OTLP over gRPC only; set it to grpc or unset it"
                        ));
                    }
                }
                Some(OtlpExport { endpoint: None })
            }
            _ => None,
        };
        Ok(Self {
            service_name: service_name(
                set("OTEL_SERVICE_NAME").as_deref(),
                set("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
            ),
            otlp,
            log_format: Some(log_format),
            metrics_listen,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            trace_level: tracing::Level::INFO,
        })
    }
}

/// `OTEL_SERVICE_NAME`, else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`,
/// else [`DEFAULT_SERVICE_NAME`]: the specification's precedence, with our
/// name instead of `unknown_service`.
fn service_name(otel_service_name: Option<&str>, resource_attributes: Option<&str>) -> String {
    if let Some(name) = otel_service_name.map(str::trim).filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    resource_attributes
        .into_iter()
        .flat_map(|attrs| attrs.split(','))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.trim() == "service.name")
        .map(|(_, value)| value.trim())
        .rfind(|value| !value.is_empty())
        .unwrap_or(DEFAULT_SERVICE_NAME)
        .to_owned()
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otlp exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("prometheus exporter: {0}")]
    Prometheus(String),
}

/// Builds a [`Telemetry`]; the extra exporters are for tests.
pub struct TelemetryBuilder {
    config: TelemetryConfig,
    tracer: Option<TracerProviderBuilder>,
}

impl TelemetryBuilder {
    /// Also sends every finished span to `exporter`, synchronously as each
    /// span ends (a test reads the SDK's in-memory exporter this way).
    pub fn with_span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        let builder = self
            .tracer
            .take()
            .unwrap_or_else(SdkTracerProvider::builder);
        self.tracer = Some(builder.with_simple_exporter(exporter));
        self
    }

    /// Builds the providers and this application's subscriber. Must run
    /// inside a tokio runtime when OTLP is on: the gRPC channel is created
    /// here and driven by that runtime.
    pub fn build(self) -> Result<Telemetry, TelemetryError> {
        let TelemetryBuilder { config, tracer } = self;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let scope = InstrumentationScope::builder(SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();

        let mut tracer = tracer;
        if let Some(otlp) = &config.otlp {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &otlp.endpoint {
                use opentelemetry_otlp::WithExportConfig as _;
                exporter = exporter.with_endpoint(endpoint.clone());
            }
            let builder = tracer.take().unwrap_or_else(SdkTracerProvider::builder);
            tracer = Some(builder.with_batch_exporter(exporter.build()?));
        }
        // The sampler is the SDK's default: parent-based, honouring
        // OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
        let tracer_provider = tracer.map(|b| b.with_resource(resource.clone()).build());

        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus_reader);
        if let Some(otlp) = &config.otlp {
            let mut exporter = opentelemetry_otlp::MetricExporter::builder().with_tonic();
            if let Some(endpoint) = &otlp.endpoint {
                use opentelemetry_otlp::WithExportConfig as _;
                exporter = exporter.with_endpoint(endpoint.clone());
            }
            // A periodic reader: every OTEL_METRIC_EXPORT_INTERVAL (60 s by
            // default) and once more at shutdown.
            meters = meters.with_periodic_exporter(exporter.build()?);
        }
        let meter_provider = meters.build();
        let metrics = Metrics::new(&meter_provider.meter_with_scope(scope.clone()));

        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
        if let Some(format) = config.log_format {
            layers.push(logs::layer(format).with_filter(env_filter()).boxed());
        }
        let tracer = tracer_provider
            .as_ref()
            .map(|provider| provider.tracer_with_scope(scope));
        if let Some(tracer) = &tracer {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                // Per span, only what the span is about: thread ids, the
                // `tracing` target, source locations and busy/idle times are
                // attributes every span would carry and every export would
                // encode. Busy/idle tracking also costs two clock reads per
                // poll of every traced future. (Each entered span stays the
                // current OpenTelemetry context: log lines take their ids
                // from it.)
                .with_threads(false)
                .with_target(false)
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_filter(traced_targets(config.trace_level));
            layers.push(otel.boxed());
        }
        let mut adopted = None;
        if tracer_provider.is_some() {
            let (adopt, cell) = threads::AdoptHelperThreads::new();
            layers.push(
                adopt
                    .with_filter(traced_targets(config.trace_level))
                    .boxed(),
            );
            adopted = Some(cell);
        }
        let dispatch = Dispatch::new(Registry::default().with(layers));
        if let Some(adoption) = &adopted {
            // Set once, here; the layer does nothing before.
            adoption.set(dispatch.downgrade());
        }

        Ok(Telemetry {
            inner: Arc::new(Inner {
                dispatch: Some(dispatch),
                adoption: adopted,
                global: AtomicBool::new(false),
                tracer,
                tracer_provider,
                meter_provider,
                metrics,
                registry,
                metrics_listen: config.metrics_listen,
                shutdown_timeout: config.shutdown_timeout,
            }),
        })
    }
}

/// One application's telemetry: its `tracing` dispatcher, its tracer and
/// meter providers, its instruments and its Prometheus registry. Cheap to
/// clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` leaves spans and log lines to whatever subscriber is the
    /// default (the disabled handle).
    dispatch: Option<Dispatch>,
    /// How helper threads are given the dispatcher, when it traces.
    adoption: Option<Arc<threads::Adoption>>,
    /// Whether the dispatcher is the process-wide default.
    global: AtomicBool,
    /// The tracer of the RPC server spans, which the gRPC layer starts
    /// with the OpenTelemetry API itself (`grpc.rs`).
    tracer: Option<SdkTracer>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: SdkMeterProvider,
    metrics: Metrics,
    registry: prometheus::Registry,
    metrics_listen: Option<SocketAddr>,
    shutdown_timeout: Duration,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.inner.tracer_provider.is_some())
            .field("metrics_listen", &self.inner.metrics_listen)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts from `config`.
    pub fn builder(config: TelemetryConfig) -> TelemetryBuilder {
        TelemetryBuilder {
            config,
            tracer: None,
        }
    }

    /// No traces, no log lines of its own (the default subscriber gets
    /// them), metrics kept in memory only. What an application built
    /// without telemetry gets.
    pub fn disabled() -> Self {
        let registry = prometheus::Registry::new();
        let meter_provider = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
        {
            Ok(reader) => SdkMeterProvider::builder().with_reader(reader).build(),
            // Only a name clash in a fresh registry fails, which cannot
            // happen; without a reader the instruments still work.
            Err(_) => SdkMeterProvider::builder().build(),
        };
        let metrics = Metrics::new(&meter_provider.meter(SCOPE_NAME));
        Self {
            inner: Arc::new(Inner {
                dispatch: None,
                adoption: None,
                global: AtomicBool::new(false),
                tracer: None,
                tracer_provider: None,
                meter_provider,
                metrics,
                registry,
                metrics_listen: None,
                shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            }),
        }
    }

    /// Makes this the process-wide subscriber too, so log lines from outside
    /// any call (start-up, readiness, shutdown) are written the same way.
    /// Call once, in `main`; a second call changes nothing.
    ///
    /// Calls and background work then run under the global default as
    /// they are, rather than each poll setting the application's
    /// dispatcher as the thread's default (which a process running several
    /// applications, as tests do, needs).
    pub fn install_global(&self) {
        if let Some(dispatch) = &self.inner.dispatch {
            // Fails only when a subscriber is already installed (tests).
            if dispatch.clone().try_init().is_ok() {
                self.inner.global.store(true, Ordering::Relaxed);
                if let Some(adoption) = &self.inner.adoption {
                    adoption.made_global();
                }
            }
        }
    }

    /// The dispatcher each call and background task must run under, when
    /// it traces and is not the global default already.
    fn scoped_dispatch(&self) -> Option<Dispatch> {
        if !self.is_tracing() || self.inner.global.load(Ordering::Relaxed) {
            return None;
        }
        // Scoped dispatchers need the inert one (see `threads.rs`).
        threads::register_inert_dispatcher();
        self.inner.dispatch.clone()
    }

    /// The application's instruments.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.clone()
    }

    /// Where the scrape endpoint should listen, if anywhere.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.inner.metrics_listen
    }

    /// Whether spans go to an OpenTelemetry exporter.
    pub fn is_tracing(&self) -> bool {
        self.inner.tracer_provider.is_some()
    }

    /// Runs `future` under this application's dispatcher, when it is
    /// polled and when it is dropped: for background work (the SLA
    /// watchdog) whose spans belong to this application. Without tracing,
    /// the future as it is.
    pub fn bind<F: std::future::Future>(&self, future: F) -> Dispatched<F> {
        Dispatched::new(self.scoped_dispatch(), future)
    }

    /// The tower layer that opens a server span per RPC. `descriptor_sets`
    /// (encoded `FileDescriptorSet`s) name the methods the server knows;
    /// any other path is recorded as `_OTHER`.
    pub fn grpc_layer(&self, descriptor_sets: &[&[u8]]) -> GrpcTelemetryLayer {
        GrpcTelemetryLayer::new(
            self.scoped_dispatch(),
            self.inner.tracer.clone(),
            self.inner.metrics.clone(),
            descriptor_sets,
        )
    }

    /// The metrics in the Prometheus text format.
    pub fn prometheus_text(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.inner.registry.gather(), &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Flushes and stops the providers: the last spans and metrics leave
    /// (or are given up) within the shutdown timeout.
    ///
    /// The SDK's batch processor and periodic reader block the calling
    /// thread while their own threads export through the gRPC channel, and
    /// that channel is driven by this tokio runtime. Blocking a runtime
    /// thread for it deadlocks a one-worker runtime (a 1-CPU pod) until the
    /// export times out, so the blocking part runs on a thread of its own
    /// while this future waits without blocking.
    pub async fn shutdown(&self) {
        let timeout = self.inner.shutdown_timeout;
        let tracer = self.inner.tracer_provider.clone();
        let meter = self.inner.meter_provider.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                if let Some(tracer) = tracer
                    && let Err(e) = tracer.shutdown_with_timeout(timeout)
                {
                    tracing::warn!(error = %e, "spans not flushed at shutdown");
                }
                // Already shut down is not worth a warning (a second call).
                let _ = meter.shutdown_with_timeout(timeout);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the telemetry shutdown thread");
            return;
        }
        // Both providers may each use their whole timeout; past that the
        // thread is left behind rather than holding up the exit.
        let wait = timeout * 2 + Duration::from_millis(500);
        if tokio::time::timeout(wait, done_rx).await.is_err() {
            tracing::warn!(
                ?wait,
                "telemetry shutdown did not finish in time; exiting without it"
            );
        }
    }
}

/// What goes to OpenTelemetry: this crate's spans from `level` up.
fn traced_targets(level: tracing::Level) -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target(TRACED_TARGET, level)
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs a global subscriber that writes log lines only (no traces).
/// For tests with `TEST_LOG` and for commands other than `serve`.
pub fn init_logging(format: LogFormat) {
    // A second initialisation (tests) is not an error worth stopping for.
    let _ = Registry::default()
        .with(logs::layer(format).with_filter(env_filter()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_follows_the_specification_precedence() {
        assert_eq!(service_name(None, None), "gdpr-intake");
        assert_eq!(service_name(Some("intake-eu"), None), "intake-eu");
        assert_eq!(
            service_name(
                None,
                Some("deployment.environment=prod, service.name = intake-us")
            ),
            "intake-us"
        );
        assert_eq!(
            service_name(Some("intake-eu"), Some("service.name=intake-us")),
            "intake-eu"
        );
        assert_eq!(
            service_name(Some("  "), Some("service.name=")),
            "gdpr-intake"
        );
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_on_only_with_an_endpoint() {
        let off = TelemetryConfig::from_vars(vars(&[]), LogFormat::Json, None).expect("valid");
        assert_eq!(off.otlp, None);
        assert_eq!(off.service_name, "gdpr-intake");
        assert_eq!(off.log_format, Some(LogFormat::Json));

        let on = TelemetryConfig::from_vars(
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_SERVICE_NAME", "intake-eu"),
            ]),
            LogFormat::Text,
            None,
        )
        .expect("valid");
        // The exporter reads the endpoint itself, per-signal ones included.
        assert_eq!(on.otlp, Some(OtlpExport { endpoint: None }));
        assert_eq!(on.service_name, "intake-eu");

        let disabled = TelemetryConfig::from_vars(
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
            LogFormat::Text,
            None,
        )
        .expect("valid");
        assert_eq!(disabled.otlp, None);
    }

    #[test]
    fn http_protocols_are_refused_with_the_variable_named() {
        let err = TelemetryConfig::from_vars(
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
            LogFormat::Text,
            None,
        )
        .expect_err("http is not built in");
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        assert!(
            TelemetryConfig::from_vars(
                vars(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ]),
                LogFormat::Text,
                None,
            )
            .is_ok()
        );
    }
}
