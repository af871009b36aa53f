//! Spawning the real gdpr-intake binary for a run: a temporary data
//! directory, a free loopback port, a fresh PostgreSQL database when asked,
//! and the child's peak resident memory.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gdpr_intake::auth::{Role, TokenClaims, dev};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::Backend;

/// The health service that turns SERVING once the database answers.
const READINESS_SERVICE: &str = "gdpr.intake.v1.DataSubjectRequestService";
/// Start-up includes migrations and key generation; a slow CI machine may
/// take a while, a broken start-up is reported long before this.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SERVER_BIN: &str = "gdpr-intake";

/// Where the spawned server's binary is: `--server-bin`, else next to this
/// executable (both are built into the same target directory), else
/// `target/release/gdpr-intake`.
pub fn server_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("--server-bin {} is not a file", path.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SERVER_BIN)));
    let candidates = beside
        .into_iter()
        .chain([PathBuf::from("target/release").join(SERVER_BIN)]);
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "no {SERVER_BIN} binary next to loadgen nor in target/release: run `cargo build --release --workspace` or pass --server-bin"
    ))
}

/// A fresh PostgreSQL database, dropped by [`FreshDatabase::drop_now`].
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl FreshDatabase {
    /// Creates a database with a unique name on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> Result<Self, String> {
        // The prefix tells these apart from real databases on a shared
        // server, the suffix lets runs overlap.
        let name = format!("gdpr_intake_load_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .map_err(|e| format!("--database-url does not reach PostgreSQL: {e}"))?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = admin.close().await;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// Drops the database, even with connections still open.
    pub async fn drop_now(self) -> Result<(), String> {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .map_err(|e| format!("cannot reconnect to drop {}: {e}", self.name))?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("cannot drop database {}: {e}", self.name))?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// Gathers the planner's statistics of every table of the database at
/// `url`.
pub async fn analyze(url: &str) -> Result<(), String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect to analyze the preloaded tables: {e}"))?;
    sqlx::query("ANALYZE")
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot analyze the preloaded tables: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

/// `url` with its database (the path) replaced by `name`, keeping any query
/// parameters.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{authority}/{name}?{query}"),
        None => format!("{authority}/{name}"),
    }
}

/// A running gdpr-intake child process, killed when dropped.
pub struct SpawnedServer {
    child: Child,
    pub addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
}

impl SpawnedServer {
    /// Starts `binary` on `backend` (PostgreSQL at `database_url`) with
    /// `extra_args`, and waits until its readiness health is SERVING.
    pub async fn start(
        binary: &Path,
        backend: Backend,
        database_url: Option<&str>,
        extra_args: &[String],
        envs: &[(&str, String)],
    ) -> Result<Self, String> {
        let data_dir = std::env::temp_dir().join(format!(
            "gdpr-intake-loadgen-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let log_path = data_dir.join("server.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
        let addr = free_port()?;

        let mut command = Command::new(binary);
        // The child takes its settings from the command line and `envs`
        // only: a DATABASE_URL, GDPR_INTAKE_* or OTEL_* variable meant for
        // something else would silently change what is measured.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text == "DATABASE_URL"
                || key_text.starts_with("GDPR_INTAKE_")
                || key_text.starts_with("OTEL_")
            {
                command.env_remove(&key);
            }
        }
        command.envs(envs.iter().map(|(k, v)| (k, v)));
        command
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        match backend {
            Backend::Sqlite => {}
            Backend::Postgres => {
                let url = database_url.ok_or("--spawn postgres needs --database-url")?;
                // Through the environment rather than argv, where any local
                // user could read a password in it.
                command.env("DATABASE_URL", url);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = Self {
            child,
            addr,
            data_dir,
            log_path,
        };
        server.wait_until_serving().await?;
        Ok(server)
    }

    async fn wait_until_serving(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| format!("bad server address: {e}"))?
            .connect_timeout(Duration::from_secs(1));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "gdpr-intake exited during start-up ({status}); its log:\n{}",
                    self.log_tail()
                ));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "gdpr-intake not ready after {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok(channel) = endpoint.connect().await
                && serving(channel).await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A token of `role` for `tenant` (empty for an admin), signed with the
    /// child's development key (created by the child in its data
    /// directory).
    pub fn token(&self, role: Role, tenant: &str, ttl: Duration) -> Result<String, String> {
        dev::mint_token(
            &self.data_dir,
            &TokenClaims {
                issuer: dev::DEV_ISSUER.to_owned(),
                audience: "gdpr-intake".to_owned(),
                subject: token_subject(role, tenant),
                role,
                tenant: tenant.to_owned(),
                ttl_secs: ttl.as_secs().max(60),
                token_id: None,
            },
        )
        .map_err(|e| format!("cannot mint a token with the server's key: {e}"))
    }

    /// CPU time the child has used so far, user and system, all threads
    /// (Linux only).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_in(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The child's peak resident set size so far, in bytes (Linux only).
    pub fn peak_rss(&self) -> Option<u64> {
        peak_rss_of(self.child.id())
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the child and removes its data directory.
    pub fn stop(mut self) {
        self.kill();
    }

    /// Sends SIGTERM (with the system's `kill`, as an orchestrator would)
    /// and waits up to `grace` for the child to drain and flush its spans;
    /// kills it after that. Whether it exited by itself.
    pub async fn stop_gracefully(mut self, grace: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let started = Instant::now();
        let mut exited = false;
        while sent && started.elapsed() < grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        exited
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The subject of the tokens loadgen mints: the caller the service
/// records on what it writes.
pub fn token_subject(role: Role, tenant: &str) -> String {
    format!("loadgen-{role}@{tenant}")
}

async fn serving(channel: Channel) -> bool {
    let mut health = HealthClient::new(channel);
    let answer = health
        .check(HealthCheckRequest {
            service: READINESS_SERVICE.to_owned(),
        })
        .await;
    matches!(answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}

/// A loopback port free at the time of asking. Another process could take
/// it before the child binds it; the child then fails to start and says so.
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// `VmHWM` of `/proc/<pid>/status`: the peak resident set size.
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

/// The CPU time (user and system, all threads) this process has spent
/// (Linux only).
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time_in("/proc/self/stat")
}

/// The CPU time a `/proc/<pid>/stat` file gives.
fn cpu_time_in(stat_path: &str) -> Option<Duration> {
    let stat = fs::read_to_string(stat_path).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS))
}

/// `USER_HZ`, the unit of `/proc/<pid>/stat` times: 100 on every Linux
/// architecture this runs on.
const CLOCK_TICKS: f64 = 100.0;

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_is_read_from_proc_status() {
        let status =
            "Name:\tgdpr-intake\nVmPeak:\t  900000 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(41_236 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS:\t1 kB\n"), None);
        // This very process has a peak.
        assert!(peak_rss_of(std::process::id()).is_some_and(|b| b > 0));
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = own_cpu_time().expect("this process's /proc/self/stat");
        let started = Instant::now();
        let mut x: u64 = 1;
        // Busy for 200 ms of wall time: at least a few 10 ms ticks of CPU.
        while started.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let spent = own_cpu_time().expect("read again").saturating_sub(before);
        assert!(spent >= Duration::from_millis(50), "{spent:?}");
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat() {
        let stat = "4242 (gdpr intake (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 731 112 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(843));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn database_is_replaced_in_urls() {
        for (url, expected) in [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/test?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h", "postgres://h/x"),
        ] {
            assert_eq!(with_database(url, "x"), expected, "{url}");
        }
    }
}
