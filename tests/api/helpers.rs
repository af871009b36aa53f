//! `spawn_app()`: a fresh database, the real application on port 0, clients
//! and tokens signed with the application's own development key.

use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::clock::{Clock, SystemClock};
use gdpr_intake::domain::age::AgePolicy;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use gdpr_intake::proto::v1::routing_service_client::RoutingServiceClient;
use gdpr_intake::startup::{Application, KeySource, Settings};
use gdpr_intake::store::StoreConfig;
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::db;

/// Which database a test app runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub channel: Channel,
    pub data_dir: TempDir,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<()>>,
    /// The sweeps of its SLA watchdog ([`Application::watchdog_sweeps`]).
    pub sweeps: watch::Receiver<u64>,
}

static LOGS: Once = Once::new();

fn init_logs() {
    // Silent unless TEST_LOG is set, so failures are readable.
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            gdpr_intake::telemetry::init_logging(gdpr_intake::config::LogFormat::Text);
        }
    });
}

/// A second replica of `first` on the same PostgreSQL `database`, its
/// settings as `configure` leaves them, with `first`'s development keys
/// (so that tokens either mints are good on both).
pub async fn spawn_replica(
    first: &TestApp,
    database: &StoreConfig,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let keys = first.data_dir.path().to_path_buf();
    let (second, _) = spawn_configured(Backend::Postgres, Arc::new(SystemClock), |s| {
        s.store = database.clone();
        s.keys = KeySource::DevKeys {
            data_dir: keys.clone(),
        };
        configure(s);
    })
    .await
    .expect("postgres");
    // The second mints its test tokens with the same development key.
    for file in std::fs::read_dir(&keys).expect("key directory") {
        let file = file.expect("an entry");
        if file.file_type().expect("a type").is_file() {
            std::fs::copy(file.path(), second.data_dir.path().join(file.file_name()))
                .expect("copied");
        }
    }
    second
}

/// Settings for a test app on `store` with keys in `data_dir`.
pub fn test_settings(store: StoreConfig, data_dir: &TempDir) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        store,
        keys: KeySource::DevKeys {
            data_dir: data_dir.path().to_path_buf(),
        },
        jwt_audience: "gdpr-intake".to_owned(),
        jwt_leeway: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        migrate_on_start: true,
        age_policy: AgePolicy::default(),
        controller_countries: Default::default(),
        tls: None,
        limits: Default::default(),
        connections: Default::default(),
        watchdog: Default::default(),
        revocation_refresh: Duration::from_secs(2),
        jwks_refresh: Duration::from_secs(30),
        feed_poll_interval: Duration::from_millis(100),
        evidence_key: Some(
            gdpr_intake::evidence::EvidenceKey::ensure_dev(data_dir.path())
                .expect("an evidence key")
                .0,
        ),
        // The tests submit for one subject again and again; those about
        // duplicates turn the window on.
        duplicate_window: None,
    }
}

/// A fresh app on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::Sqlite)
        .await
        .expect("sqlite is always available")
}

/// A fresh app on `backend`; `None` when PostgreSQL is not configured.
pub async fn spawn_app_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Arc::new(SystemClock)).await
}

/// A fresh app on `backend` with `clock`.
pub async fn spawn_app_with(backend: Backend, clock: Arc<dyn Clock>) -> Option<TestApp> {
    spawn_configured(backend, clock, |_| {})
        .await
        .map(|(app, _)| app)
}

/// A fresh app on `backend` with `clock` and the test settings as
/// `configure` leaves them, and the configuration of its store (for raw
/// reads of its database and its keys).
pub async fn spawn_configured(
    backend: Backend,
    clock: Arc<dyn Clock>,
    configure: impl FnOnce(&mut Settings),
) -> Option<(TestApp, StoreConfig)> {
    init_logs();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let store = match backend {
        Backend::Sqlite => crate::db::keyed(StoreConfig::sqlite(data_dir.path())),
        Backend::Postgres => db::postgres_config().await?,
    };
    let mut settings = test_settings(store.clone(), &data_dir);
    configure(&mut settings);
    let app = Application::build(settings, clock)
        .await
        .expect("application builds");
    let addr = app.local_addr();
    let sweeps = app.watchdog_sweeps();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects");
    Some((
        TestApp {
            channel,
            data_dir,
            shutdown: Some(tx),
            server: Some(server),
            sweeps,
        },
        store,
    ))
}

impl TestApp {
    /// A token for `role` in `tenant`, signed with the app's key.
    pub fn token(&self, role: Role, tenant: &str) -> String {
        dev::mint_token(
            self.data_dir.path(),
            &TokenClaims {
                issuer: dev::DEV_ISSUER.to_owned(),
                audience: "gdpr-intake".to_owned(),
                subject: format!("{}@{tenant}", role.as_str()),
                role,
                tenant: tenant.to_owned(),
                ttl_secs: 600,
                token_id: None,
            },
        )
        .expect("dev token")
    }

    pub fn dsr(&self) -> DataSubjectRequestServiceClient<Channel> {
        DataSubjectRequestServiceClient::new(self.channel.clone())
    }

    pub fn routing(&self) -> RoutingServiceClient<Channel> {
        RoutingServiceClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> ProcessorTaskServiceClient<Channel> {
        ProcessorTaskServiceClient::new(self.channel.clone())
    }

    /// Registers `processor` and routes `controller`'s requests of `types`
    /// (empty: all) to it with `sla` working hours.
    pub async fn route(
        &self,
        controller: &str,
        processor: &str,
        types: &[v1::RequestType],
        sla: i32,
    ) -> v1::Route {
        let admin = self.token(Role::Admin, "");
        let created = self
            .routing()
            .create_processor(authed(
                &admin,
                v1::CreateProcessorRequest {
                    processor_id: processor.to_owned(),
                    display_name: format!("{processor} ltd"),
                    contact: format!("privacy@{processor}.example"),
                },
            ))
            .await;
        if let Err(e) = created {
            assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        }
        self.routing()
            .create_route(authed(
                &admin,
                v1::CreateRouteRequest {
                    controller_id: controller.to_owned(),
                    processor_id: processor.to_owned(),
                    request_types: types.iter().map(|t| (*t).into()).collect(),
                    task_sla_working_hours: sla,
                },
            ))
            .await
            .expect("route created")
            .into_inner()
            .route
            .expect("route")
    }

    /// Waits until `n` sweeps of the SLA watchdog that began after this
    /// call have finished: whatever the clock said before the call, these
    /// sweeps saw what it says now.
    pub async fn sweeps_after(&self, n: u64) {
        sweeps_after(std::slice::from_ref(&self.sweeps), n).await;
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

/// Wraps `msg` with a bearer token.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    r
}

/// An adult subject in Germany.
pub fn adult_subject() -> v1::Subject {
    v1::Subject {
        external_id: "cust-1001".to_owned(),
        email: "ada@example.org".to_owned(),
        date_of_birth: Some(Date {
            year: 1985,
            month: 12,
            day: 10,
        }),
        country: "DE".to_owned(),
        subdivision: String::new(),
    }
}

/// A subject aged 16 today.
pub fn minor_subject() -> v1::Subject {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    v1::Subject {
        date_of_birth: Some(Date {
            year: i32::from(today.year()) - 16,
            month: 1,
            day: 1,
        }),
        ..adult_subject()
    }
}

/// A valid access request for an adult.
pub fn submission() -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        r#type: v1::RequestType::Access.into(),
        subject: Some(adult_subject()),
        received_at: None,
        details: "please send me a copy of my data".to_owned(),
        corrections: Default::default(),
        identity_verification_required: false,
    }
}

/// The audit trail of `controller`'s request `name`, from its start.
pub async fn request_events(app: &TestApp, controller: &str, name: &str) -> Vec<v1::RequestEvent> {
    app.dsr()
        .list_request_events(authed(
            &app.token(Role::Controller, controller),
            v1::ListRequestEventsRequest {
                name: name.to_owned(),
                page_size: 1000,
                page_token: String::new(),
            },
        ))
        .await
        .expect("events")
        .into_inner()
        .events
}

/// The stored trails verify under the audit key.
pub async fn trails_verify(config: &StoreConfig) {
    let store = gdpr_intake::store::connect(config, false)
        .await
        .expect("connects");
    let report = gdpr_intake::store::audit::verify(
        store.as_ref(),
        config.audit_key.as_ref().expect("keyed"),
        2,
    )
    .await
    .expect("verifies");
    assert_eq!(report.finding, None, "{report:?}");
    assert!(report.events > 0);
}

/// Asserts the code and, when given, the ErrorInfo reason.
pub fn assert_status(status: &Status, code: Code, reason: Option<&str>) {
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    if let Some(reason) = reason {
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo attached");
        assert_eq!(info.reason, reason, "unexpected reason: {status:?}");
        assert_eq!(info.domain, "gdpr-intake");
    }
}

/// The fields named by a BadRequest detail.
pub fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .expect("BadRequest attached")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

/// How long a test waits for the sweeps it needs: far more than any sweep
/// takes, so only a watchdog that stopped sweeping reaches it.
const SWEEPS_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the watchdogs counting in `counters` have finished, between
/// them, `n` sweeps that began after this call. Each may have had one sweep
/// under way at the call, begun before it, so that one does not count.
pub async fn sweeps_after(counters: &[watch::Receiver<u64>], n: u64) {
    let mut counters = counters.to_vec();
    let total = |counters: &mut [watch::Receiver<u64>]| -> u64 {
        counters.iter_mut().map(|c| *c.borrow_and_update()).sum()
    };
    let needed = n + counters.len() as u64;
    let start = total(&mut counters);
    let deadline = Instant::now() + SWEEPS_TIMEOUT;
    loop {
        let done = total(&mut counters) - start;
        if done >= needed {
            return;
        }
        let changed =
            futures::future::select_all(counters.iter_mut().map(|c| Box::pin(c.changed())));
        match tokio::time::timeout_at(deadline, changed).await {
            Ok((Ok(()), _, _)) => {}
            Ok((Err(_), _, _)) => panic!("a watchdog stopped while the test waited for sweeps"),
            Err(_) => panic!(
                "timed out after {SWEEPS_TIMEOUT:?} waiting for {n} sweeps: {done} of the {needed} needed finished"
            ),
        }
    }
}

/// What a check of [`eventually`] answers: whether the awaited condition
/// holds, and with what value.
pub trait Outcome {
    type Value;
    fn value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn value(self) -> Option<T> {
        self
    }
}

/// Polls `check` until it answers `true` or `Some`, backing off from 1 ms
/// to 50 ms between tries, and returns its value; fails naming `what` if
/// it does not hold within `timeout`. For conditions that no event
/// announces (a row written by another process, a replica that refreshes
/// on its own schedule, a server coming up).
pub async fn eventually<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(outcome) => {
                if let Some(value) = outcome.value() {
                    return value;
                }
            }
            Err(_) => break,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
