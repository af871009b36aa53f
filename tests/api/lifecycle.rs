//! Graceful shutdown under load: the real binary, clients busy submitting,
//! a processor watching its tasks, then SIGTERM. Every call sent before the
//! signal must succeed, calls after it must be refused or fail fast, the
//! long-lived stream must not hold the drain open, and the process must
//! exit with status 0 well within the drain timeout.
//!
//! Size from `GDPR_INTAKE_DRAIN_CLIENTS` and `GDPR_INTAKE_DRAIN_LOAD_SECS`
//! (defaults 8 and 1; the README gives the full-size command). Also holds
//! the helpers that run the real binary, shared with the flood test.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use tempfile::TempDir;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{authed, eventually, submission};

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The real binary, serving on a free loopback port with its own data
/// directory.
pub struct Binary {
    pub child: Child,
    pub url: String,
    pub data_dir: TempDir,
}

impl Binary {
    /// Starts `gdpr-intake serve` with `args` after the listen address and
    /// data directory; `database_url` for PostgreSQL, SQLite otherwise.
    pub fn start(args: &[&str], database_url: Option<&str>) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdpr-intake"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        Self {
            child: cmd.spawn().expect("server starts"),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
        }
    }

    /// A channel to the server once its readiness is SERVING.
    pub async fn ready(&self) -> Channel {
        eventually(
            "the server's readiness",
            Duration::from_secs(20),
            || async {
                let ch = Channel::from_shared(self.url.clone())
                    .expect("uri")
                    .connect()
                    .await
                    .ok()?;
                serving(&ch, "gdpr.intake.v1.DataSubjectRequestService")
                    .await
                    .then_some(ch)
            },
        )
        .await
    }

    /// A new connection to the server.
    pub async fn connect(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .expect("uri")
            .connect()
            .await
            .expect("connects")
    }

    pub fn token(&self, role: Role, tenant: &str) -> String {
        token(self.data_dir.path(), role, tenant)
    }

    /// A line of `/proc/<pid>/status` in KiB, e.g. `VmHWM` (peak resident
    /// memory) or `VmRSS`.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Sends SIGTERM with the system's `kill`: the test crate forbids
    /// `unsafe`, which `libc::kill` needs, and this is the only signal the
    /// tests send.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        eventually("the server's exit", limit, || {
            std::future::ready(child.try_wait().expect("wait"))
        })
        .await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token(data_dir: &Path, role: Role, tenant: &str) -> String {
    dev::mint_token(
        data_dir,
        &TokenClaims {
            issuer: dev::DEV_ISSUER.into(),
            audience: "gdpr-intake".into(),
            subject: format!("{}@{tenant}", role.as_str()),
            role,
            tenant: tenant.into(),
            ttl_secs: 3600,
            token_id: None,
        },
    )
    .expect("token")
}

/// Whether `service`'s health is SERVING (false on any failure).
pub async fn serving(channel: &Channel, service: &str) -> bool {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(Duration::from_secs(2));
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .map(|r| r.into_inner().status == 1)
        .unwrap_or(false)
}

/// One call as a client saw it.
struct Call {
    started: Instant,
    ended: Instant,
    code: Code,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_in_flight_and_exits_cleanly() {
    let clients = env_or("GDPR_INTAKE_DRAIN_CLIENTS", 8);
    let load = Duration::from_secs(env_or("GDPR_INTAKE_DRAIN_LOAD_SECS", 1) as u64);
    // The default drain timeout, as deployed.
    let drain_timeout = Duration::from_secs(20);
    let mut server = Binary::start(&[], None);
    let channel = server.ready().await;
    let controller = server.token(Role::Controller, "acme");

    // A processor watching its tasks: a stream that never ends by itself.
    let processor = server.token(Role::Processor, "crm");
    let mut watch = ProcessorTaskServiceClient::new(channel.clone())
        .watch_tasks(authed(&processor, v1::WatchTasksRequest::default()))
        .await
        .expect("watch opens")
        .into_inner();
    let watcher = tokio::spawn(async move {
        loop {
            match watch.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return (Instant::now(), Code::Ok),
                Err(status) => return (Instant::now(), status.code()),
            }
        }
    });

    // A controller following its change feed: another such stream.
    let mut feed = DataSubjectRequestServiceClient::new(channel.clone())
        .watch_request_events(authed(
            &controller,
            v1::WatchRequestEventsRequest::default(),
        ))
        .await
        .expect("feed opens")
        .into_inner();
    let feed_watcher = tokio::spawn(async move {
        loop {
            match feed.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Code::Ok,
                Err(status) => return status.code(),
            }
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut workers = Vec::new();
    for c in 0..clients {
        // Each client on its own connection, as separate callers would be.
        let channel = if c == 0 {
            channel.clone()
        } else {
            server.connect().await
        };
        let mut client = DataSubjectRequestServiceClient::new(channel);
        let (stop, calls, token) = (stop.clone(), calls.clone(), controller.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut request = authed(&token, submission());
                request.set_timeout(Duration::from_secs(30));
                let started = Instant::now();
                let code = match client.submit_data_subject_request(request).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                let failed = code != Code::Ok;
                calls.lock().expect("lock").push(Call {
                    started,
                    ended: Instant::now(),
                    code,
                });
                if failed {
                    // Pacing, not synchronisation: no spinning on a closed port.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // The load itself, not synchronisation: clients busy for this long.
    tokio::time::sleep(load).await;
    let signal_sent = Instant::now();
    server.terminate();
    let signal_delivered = Instant::now();
    let status = server
        .wait_exit(drain_timeout + Duration::from_secs(5))
        .await;
    let exited = Instant::now();
    // Keep calling after the exit, as many calls as there are clients:
    // those calls must fail fast.
    eventually(
        &format!("{clients} calls started after the exit"),
        Duration::from_secs(10),
        || async {
            calls
                .lock()
                .expect("lock")
                .iter()
                .filter(|c| c.started > exited)
                .count()
                >= clients
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("client");
    }
    let (watch_ended, watch_code) = watcher.await.expect("watcher");
    let feed_code = feed_watcher.await.expect("feed watcher");

    assert!(status.success(), "exit status {status:?}");
    let drain = exited - signal_delivered;
    // Without ending the watch stream, the drain lasts the whole timeout.
    assert!(
        drain < Duration::from_secs(5),
        "drain took {drain:?} of the {drain_timeout:?} drain timeout: a stream held it open"
    );
    assert_eq!(
        watch_code,
        Code::Unavailable,
        "the watch stream ends with UNAVAILABLE so its client reconnects"
    );
    assert_eq!(
        feed_code,
        Code::Unavailable,
        "the feed stream ends with UNAVAILABLE so its consumer resumes elsewhere"
    );

    let calls = calls.lock().expect("lock");
    let before: Vec<&Call> = calls.iter().filter(|c| c.started < signal_sent).collect();
    let after: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started > signal_delivered)
        .collect();
    let failed_before: Vec<Code> = before
        .iter()
        .filter(|c| c.code != Code::Ok)
        .map(|c| c.code)
        .collect();
    assert!(
        failed_before.is_empty(),
        "calls sent before the signal failed: {failed_before:?}"
    );
    assert!(!before.is_empty(), "no load before the signal");
    let refused_after = after.iter().filter(|c| c.code != Code::Ok).count();
    let slowest_after = after
        .iter()
        .map(|c| c.ended - c.started)
        .max()
        .unwrap_or_default();
    assert!(
        after
            .iter()
            .all(|c| c.ended - c.started < Duration::from_secs(2)),
        "a call after the signal took {slowest_after:?}"
    );
    assert!(refused_after > 0, "no call after the signal was refused");
    let in_flight = before.iter().filter(|c| c.ended > signal_sent).count();
    eprintln!(
        "drain: {clients} clients, {} calls before SIGTERM (all OK, {in_flight} in flight at the signal), \
         {} after ({refused_after} refused, slowest {slowest_after:?}), exit 0 in {drain:?} \
         (drain timeout {drain_timeout:?}), watch stream ended {:?} after `kill` started",
        before.len(),
        after.len(),
        watch_ended.saturating_duration_since(signal_sent),
    );
}
