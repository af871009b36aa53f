//! Builds the application from checked settings and runs it until a
//! shutdown signal, draining in-flight calls. Tests build the very same
//! application on port 0.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::instrument::WithSubscriber as _;

use crate::api::access::AccessApi;
use crate::api::dsr::DsrService;
use crate::api::reporting::ReportingApi;
use crate::api::routing::RoutingApi;
use crate::api::tasks::TaskApi;
use crate::auth::{self, AuthConfig, Authenticator, dev};
use crate::clock::Clock;
use crate::domain::age::AgePolicy;
use crate::domain::jurisdiction::Jurisdiction;
use crate::evidence::EvidenceKey;
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::data_subject_request_service_server::DataSubjectRequestServiceServer;
use crate::proto::v1::processor_task_service_server::ProcessorTaskServiceServer;
use crate::proto::v1::reporting_service_server::ReportingServiceServer;
use crate::proto::v1::routing_service_server::RoutingServiceServer;
use crate::service::{AppState, access};
use crate::store::{
    self, GroupCommitConfig, GroupCommitter, ReadGroup, RouteReads, Store, StoreConfig,
};
use crate::telemetry::{self, Metrics, Telemetry};
use crate::transport::{
    self, CallLimitLayer, CallLimits, ConnectionLimits, GuardedIncoming, TlsSettings,
};
use crate::watchdog::{Progress, Watchdog, WatchdogConfig};

/// Longest wait, at shutdown, for the SLA watchdog to finish its sweep and
/// give up its lease.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Groups of single-request reads in flight at once ([`ReadGroup`]). One:
/// the reads that arrive while a group is read all go in the next, and
/// the tenants of a group are read at once. At 16 reads in flight on two
/// cores, one worker served ~21,500-22,500 Gets/s on PostgreSQL where four
/// served ~18,700-19,800 (docs/performance.md).
const READ_WORKERS: usize = 1;
/// How often readiness re-checks the database.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// The gRPC services whose health tracks readiness (database reachable and
/// not draining). The empty name tracks liveness only.
pub const READINESS_SERVICES: &[&str] = &[
    "gdpr.intake.v1.DataSubjectRequestService",
    "gdpr.intake.v1.RoutingService",
    "gdpr.intake.v1.ProcessorTaskService",
    "gdpr.intake.v1.AccessService",
    "gdpr.intake.v1.ReportingService",
];

/// The tonic server with this service's transport settings. The application
/// is built on it, and so is the load generator's echo server, so that the
/// gRPC ceiling it measures is that of the transport the service runs on:
/// a setting added here changes both.
pub fn grpc_server(connections: &ConnectionLimits) -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(connections.keepalive_interval))
        .http2_keepalive_timeout(Some(connections.keepalive_timeout))
}

/// The connections a gRPC server accepts from `listener`, with this
/// service's socket options. TCP_NODELAY is set here because tonic applies
/// its own `tcp_nodelay` only to listeners it binds itself; without it a
/// small response waits for the client's delayed ACK (about 40 ms on Linux).
/// The connections are held under `connections` ([`GuardedIncoming`]).
pub fn grpc_incoming(
    listener: TcpListener,
    connections: ConnectionLimits,
    metrics: Metrics,
) -> GuardedIncoming {
    GuardedIncoming::new(
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        connections,
        metrics,
    )
}

/// Where caller keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A JWKS file and the issuer its tokens carry.
    Jwks { path: PathBuf, issuer: String },
    /// Development keys created in this directory.
    DevKeys { data_dir: PathBuf },
}

/// Everything needed to build the application, already checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub keys: KeySource,
    pub jwt_audience: String,
    pub jwt_leeway: Duration,
    pub drain_timeout: Duration,
    pub migrate_on_start: bool,
    pub age_policy: AgePolicy,
    /// Each controller's country, for its processors' working hours.
    pub controller_countries: HashMap<String, Jurisdiction>,
    /// TLS on the gRPC listener; plaintext when `None`.
    pub tls: Option<TlsSettings>,
    /// Concurrent calls and message size.
    pub limits: CallLimits,
    /// How many connections are held, and how long.
    pub connections: ConnectionLimits,
    /// The SLA watchdog's interval and thresholds.
    pub watchdog: WatchdogConfig,
    /// How often the revoked callers and tokens are reloaded.
    pub revocation_refresh: Duration,
    /// How often the JWKS file is read again.
    pub jwks_refresh: Duration,
    /// How often a change-feed watcher that has caught up reads again.
    pub feed_poll_interval: Duration,
    /// The Ed25519 keys that sign evidence bundles; required to serve.
    pub evidence_key: Option<EvidenceKey>,
    /// How far back an open request of the same subject and type makes a
    /// submission its duplicate; `None` turns duplicates off.
    pub duplicate_window: Option<jiff::SignedDuration>,
}

/// Why the application could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("authentication keys: {0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(#[from] transport::TlsError),
    #[error("key rings: {0}")]
    Keys(#[from] store::keys::RingError),
    #[error("no evidence key (set --evidence-key-file)")]
    NoEvidenceKey,
}

/// A built application, bound to its port and ready to run.
pub struct Application {
    /// The tonic server, with TLS when configured.
    grpc: Server,
    tls: bool,
    limits: CallLimits,
    connections: ConnectionLimits,
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    drain_timeout: Duration,
    telemetry: Telemetry,
    metrics_listener: Option<TcpListener>,
    watchdog: WatchdogConfig,
    watchdog_progress: Progress,
    revocation_refresh: Duration,
    /// The JWKS file the keys come from, and how often it is read again.
    jwks: (PathBuf, Duration),
    feed_poll_interval: Duration,
}

impl Application {
    /// Connects to the database (migrating if asked), loads the keys and
    /// binds the listener; no traces, metrics in memory only.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        Self::build_with_telemetry(settings, clock, Telemetry::disabled()).await
    }

    /// [`Application::build`] with `telemetry`: its spans, metrics and, if
    /// it has one, its scrape endpoint, bound here too.
    pub async fn build_with_telemetry(
        settings: Settings,
        clock: Arc<dyn Clock>,
        telemetry: Telemetry,
    ) -> Result<Self, StartupError> {
        let grpc = match &settings.tls {
            Some(tls) => {
                transport::with_tls(
                    grpc_server(&settings.connections),
                    tls,
                    settings.connections.handshake_timeout,
                )
                .await?
            }
            None => grpc_server(&settings.connections),
        };
        let (auth, jwks_path) = authenticator(&settings)?;
        // A serving store never runs on keys that would be gone with the
        // process: `serve` loads them from files, tests make their own.
        settings.store.require_keys()?;
        let evidence_key = settings
            .evidence_key
            .clone()
            .ok_or(StartupError::NoEvidenceKey)?;
        let store = store::connect(&settings.store, settings.migrate_on_start).await?;
        // No replica writes with keys another cannot read, nor starts
        // without a key some trail needs.
        store::keys::check_rings(store.as_ref(), clock.now()).await?;
        // No call is answered before the revocations are known.
        access::reload_revocations(store.as_ref(), auth.revocations()).await?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
        let metrics_listener = match telemetry.metrics_listen() {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        Ok(Self {
            grpc,
            tls: settings.tls.is_some(),
            limits: settings.limits,
            connections: settings.connections,
            listener,
            local_addr,
            state: AppState {
                // Its workers' store spans belong to this application.
                committer: GroupCommitter::start_with(
                    store.clone(),
                    GroupCommitConfig::default(),
                    |worker| {
                        tokio::spawn(telemetry.bind(worker));
                    },
                ),
                reader: ReadGroup::start_with(store.clone(), READ_WORKERS, |worker| {
                    tokio::spawn(telemetry.bind(worker));
                }),
                routes: RouteReads::start_with(store.clone(), READ_WORKERS, |worker| {
                    tokio::spawn(telemetry.bind(worker));
                }),
                store,
                auth,
                clock,
                age_policy: settings.age_policy,
                metrics: telemetry.metrics(),
                controller_calendars: Arc::new(settings.controller_countries),
                task_announcements: broadcast::channel(1024).0,
                evidence_key,
                duplicate_window: settings.duplicate_window,
            },
            drain_timeout: settings.drain_timeout,
            telemetry,
            metrics_listener,
            watchdog: settings.watchdog,
            watchdog_progress: Progress::default(),
            revocation_refresh: settings.revocation_refresh,
            jwks: (jwks_path, settings.jwks_refresh),
            feed_poll_interval: settings.feed_poll_interval,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the metrics endpoint, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state, for tests that look behind the API.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The number of sweeps the SLA watchdog has run to the end while this
    /// replica held the lease, once it runs: what a test waits on rather
    /// than sleeping.
    pub fn watchdog_sweeps(&self) -> watch::Receiver<u64> {
        self.watchdog_progress.sweeps()
    }

    /// Serves until `shutdown` resolves, then turns health to NOT_SERVING,
    /// stops accepting, ends server-streaming calls (they would never end
    /// by themselves) and lets in-flight calls finish for at most the drain
    /// timeout. Meanwhile the SLA watchdog sweeps whenever this replica
    /// holds its lease, and the backlog gauges are refreshed, both
    /// every `--sla-check-interval` until shutdown begins. Last, flushes
    /// the telemetry.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let max_message = self.limits.max_message_bytes;
        let dsr = DataSubjectRequestServiceServer::new(DsrService::new(
            self.state.clone(),
            self.feed_poll_interval,
        ))
        .max_decoding_message_size(max_message);
        let routing = RoutingServiceServer::new(RoutingApi::new(self.state.clone()))
            .max_decoding_message_size(max_message);
        let tasks = ProcessorTaskServiceServer::new(TaskApi::new(self.state.clone()))
            .max_decoding_message_size(max_message);
        let access = AccessServiceServer::new(AccessApi::new(self.state.clone()))
            .max_decoding_message_size(max_message);
        let reporting = ReportingServiceServer::new(ReportingApi::new(self.state.clone()))
            .max_decoding_message_size(max_message);

        let (draining_tx, draining_rx) = watch::channel(false);
        let limits = CallLimitLayer::new(
            &self.limits,
            draining_rx.clone(),
            &[
                crate::proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ],
        );
        let readiness = tokio::spawn(readiness_loop(
            self.state.store.clone(),
            reporter.clone(),
            draining_rx.clone(),
            self.state.metrics.clone(),
        ));

        // The SLA watchdog and the backlog gauges run until shutdown
        // begins: the watchdog then gives up its lease, so that another
        // replica takes over while this one drains.
        let (background_tx, background_rx) = watch::channel(false);
        let background_stop = move || {
            let mut rx = background_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let revocations = tokio::spawn(self.telemetry.bind(access::refresh_revocations(
            self.state.store.clone(),
            self.state.auth.revocations().clone(),
            self.revocation_refresh,
            background_stop(),
        )));
        let jwks = {
            let metrics = self.state.metrics.clone();
            tokio::spawn(self.telemetry.bind(auth::reload::watch_jwks_file(
                self.state.auth.clone(),
                self.jwks.0.clone(),
                self.jwks.1,
                move || metrics.jwks_reload_failed(),
                background_stop(),
            )))
        };
        let watchdog = Watchdog::new(self.state.clone(), self.watchdog)
            .with_progress(self.watchdog_progress.clone());
        let watchdog = tokio::spawn(self.telemetry.bind(watchdog.run(background_stop())));
        let gauge = {
            let store = self.state.store.clone();
            let clock = self.state.clock.clone();
            let at_risk = self.watchdog.thresholds.request_at_risk;
            let read = move || {
                let store = store.clone();
                let now = clock.now();
                // The queries are not traced: a trace every interval is
                // noise. A failure is still logged by the loop.
                async move { store.backlog(now, at_risk).await }
                    .with_subscriber(tracing::Dispatch::none())
            };
            tokio::spawn(telemetry::refresh_backlog(
                self.state.metrics.clone(),
                self.watchdog.interval,
                read,
                background_stop(),
            ))
        };

        let signal = {
            let reporter = reporter.clone();
            let background_tx = background_tx.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: draining in-flight calls");
                let _ = draining_tx.send(true);
                let _ = background_tx.send(true);
                set_all(&reporter, ServingStatus::NotServing).await;
            }
        };

        tracing::info!(
            addr = %self.local_addr,
            backend = self.state.store.backend(),
            tls = self.tls,
            max_concurrent_calls = self.limits.max_concurrent_calls,
            max_connections = self.connections.max_connections,
            "gdpr-intake listening"
        );
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = self.metrics_listener.map(|listener| {
            tokio::spawn(telemetry::serve_metrics(
                listener,
                self.telemetry.clone(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        // Telemetry outermost, so that what the limits answer (shed calls,
        // deadlines) is traced and counted like any other status.
        let server = self
            .grpc
            .layer(
                self.telemetry
                    .grpc_layer(&[crate::proto::FILE_DESCRIPTOR_SET]),
            )
            .layer(limits)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(dsr)
            .add_service(routing)
            .add_service(tasks)
            .add_service(access)
            .add_service(reporting)
            .serve_with_incoming_shutdown(
                grpc_incoming(self.listener, self.connections, self.telemetry.metrics()),
                signal,
            );

        let drain_timeout = self.drain_timeout;
        let mut draining = draining_rx;
        let deadline = async move {
            // Start the drain clock only once shutdown has begun.
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(drain_timeout).await;
        };
        let result = tokio::select! {
            r = server => r.map_err(StartupError::from),
            () = deadline => {
                tracing::warn!(?drain_timeout, "drain timeout reached; stopping with calls still in flight");
                Ok(())
            }
        };
        readiness.abort();
        let _ = background_tx.send(true);
        for task in [watchdog, gauge, revocations, jwks] {
            if tokio::time::timeout(BACKGROUND_STOP_TIMEOUT, task)
                .await
                .is_err()
            {
                tracing::warn!("a background task did not stop in time");
            }
        }
        let _ = metrics_stop.send(());
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        self.telemetry.shutdown().await;
        tracing::info!("gdpr-intake stopped");
        result
    }
}

/// The authenticator, and the JWKS file its keys came from.
fn authenticator(settings: &Settings) -> Result<(Authenticator, PathBuf), StartupError> {
    let (path, issuer) = match &settings.keys {
        KeySource::Jwks { path, issuer } => (path.clone(), issuer.clone()),
        KeySource::DevKeys { data_dir } => {
            let path = dev::ensure_dev_keys(data_dir)?;
            tracing::warn!(
                jwks = %path.display(),
                "RUNNING WITH DEVELOPMENT KEYS: any holder of the key in the data directory can mint tokens; set --jwks-file in production"
            );
            (path, dev::DEV_ISSUER.to_owned())
        }
    };
    let auth = Authenticator::from_jwks_file(
        &path,
        AuthConfig {
            issuer,
            audience: settings.jwt_audience.clone(),
            leeway_secs: settings.jwt_leeway.as_secs(),
        },
    )?;
    Ok((auth, path))
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in READINESS_SERVICES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Keeps the readiness services' health in step with the database.
async fn readiness_loop(
    store: Arc<dyn Store>,
    reporter: HealthReporter,
    draining: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let mut last = None;
    loop {
        if *draining.borrow() {
            metrics.set_ready(false);
            return;
        }
        let ok = matches!(
            tokio::time::timeout(READINESS_INTERVAL, store.ping()).await,
            Ok(Ok(()))
        );
        let status = if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(ok) {
            if !ok {
                tracing::warn!("database unreachable: readiness NOT_SERVING");
            }
            for name in READINESS_SERVICES {
                reporter.set_service_status(*name, status).await;
            }
            last = Some(ok);
        }
        metrics.set_ready(ok);
        tokio::time::sleep(READINESS_INTERVAL).await;
    }
}
