//! Command line and environment. Everything is parsed and checked here,
//! before any port is bound or file written.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::age::AgePolicy;
use crate::domain::sla;
use crate::transport::{CallLimits, ConnectionLimits, TlsSettings};
use crate::watchdog::WatchdogConfig;

// The log format is telemetry's; the command line names it here too.
pub use crate::telemetry::LogFormat;

/// gdpr-intake: intake, deadlines and routing of GDPR data-subject requests.
#[derive(Debug, Parser)]
#[command(name = "gdpr-intake", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve`, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing would only move it"
)]
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print a development token signed with the key `serve` created in the
    /// data directory (only for a service running with development keys).
    Token(TokenArgs),
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Copy the SQLite database to a new file while the service runs
    /// (consistent as of one commit). For PostgreSQL use pg_dump.
    Backup(BackupArgs),
    /// Put a backup in place as the database of a data directory that has
    /// none yet; `serve` then opens it (with the same keys).
    Restore(RestoreArgs),
    /// Data key tools.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The compliance report, read from the database: per request type (or
    /// CCPA category), requests received in the period, how they ended,
    /// on-time share, days to close, extensions, open and overdue now.
    Report(ReportArgs),
}

/// What `keys` does.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Count the stored personal data under each data key id, and say
    /// which of those ids the ring of --data-key-file holds.
    Status(KeysStatusArgs),
}

/// Settings of `keys status`.
#[derive(Clone, Debug, Args)]
pub struct KeysStatusArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Settings of `backup`.
#[derive(Clone, Debug, Args)]
pub struct BackupArgs {
    /// The file to write; it must not exist.
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Settings of `restore`.
#[derive(Clone, Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (written by `backup`).
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// What `audit` does.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every request's hash-chained audit trail; name the first
    /// altered, removed, inserted or reordered event and exit non-zero.
    Verify(AuditVerifyArgs),
    /// Write one request's evidence bundle: its record and every event,
    /// signed with the evidence key, for a third party to verify with the
    /// public key alone.
    Export(AuditExportArgs),
    /// Check an evidence bundle with public keys alone; name the first
    /// altered, removed or inserted event and exit non-zero.
    VerifyBundle(VerifyBundleArgs),
    /// Print the evidence keys' public halves, a JWKS-shaped JSON document
    /// to publish for whoever verifies bundles.
    PublicKeys(PublicKeysArgs),
}

/// Settings of `report`.
#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// First day of the period (UTC), YYYY-MM-DD.
    #[arg(long)]
    pub from: jiff::civil::Date,
    /// Last day of the period (UTC), YYYY-MM-DD, included.
    #[arg(long)]
    pub to: jiff::civil::Date,
    /// Only this regime's requests: GDPR, CCPA or LGPD.
    #[arg(long)]
    pub regime: Option<String>,
    /// Only this controller's requests; every controller's without it.
    #[arg(long)]
    pub controller: Option<String>,
    /// Group by the categories of 11 CCR §7102 (to know, to delete, to
    /// correct, to opt out, to limit).
    #[arg(long = "ccpa-7102")]
    pub ccpa_7102: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub format: ReportFormat,
}

/// How `report` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
}

/// Settings of `audit export`.
#[derive(Clone, Debug, Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The request, `dataSubjectRequests/{id}`.
    #[arg(long)]
    pub request: String,
    /// Put the request's personal data in the bundle too (by default it
    /// holds none).
    #[arg(long)]
    pub include_personal_data: bool,
    /// Where to write the bundle; standard output without it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Settings of `audit verify-bundle`.
#[derive(Clone, Debug, Args)]
pub struct VerifyBundleArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The public keys (`audit public-keys` prints them).
    #[arg(long)]
    pub public_keys: PathBuf,
}

/// Settings of `audit public-keys`.
#[derive(Clone, Debug, Args)]
pub struct PublicKeysArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Settings of `audit verify`.
#[derive(Clone, Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Requests read per page.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
}

/// Where the data lives.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Directory for the SQLite database and development keys.
    #[arg(long, env = "GDPR_INTAKE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://…); without it, SQLite in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most pooled database connections.
    #[arg(long, env = "GDPR_INTAKE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a call waits for a database connection before UNAVAILABLE.
    #[arg(long, env = "GDPR_INTAKE_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
    /// Longest a database statement may run.
    #[arg(long, env = "GDPR_INTAKE_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
    /// File holding the audit trail's HMAC key (at least 32 random bytes,
    /// base64). Without it, `serve` creates a development key in
    /// --data-dir.
    #[arg(long, env = "GDPR_INTAKE_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// File holding the key that seals personal data at rest (32 random
    /// bytes, base64). Without it, `serve` creates a development key in
    /// --data-dir.
    #[arg(long, env = "GDPR_INTAKE_DATA_KEY_FILE")]
    pub data_key_file: Option<PathBuf>,
    /// File holding the Ed25519 keys that sign evidence bundles (one
    /// 32-byte seed per line, base64; the first signs). Without it, a
    /// development key in --data-dir.
    #[arg(long, env = "GDPR_INTAKE_EVIDENCE_KEY_FILE")]
    pub evidence_key_file: Option<PathBuf>,
}

/// Settings of `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address of the gRPC listener.
    #[arg(long, env = "GDPR_INTAKE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// JWKS file with the public keys that sign callers' tokens. Without it,
    /// development keys are created in --data-dir.
    #[arg(long, env = "GDPR_INTAKE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` of tokens (defaults to the development issuer).
    #[arg(long, env = "GDPR_INTAKE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, env = "GDPR_INTAKE_JWT_AUDIENCE", default_value = "gdpr-intake")]
    pub jwt_audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, at most 60 s.
    #[arg(long, env = "GDPR_INTAKE_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// Longest time in-flight calls may take to finish after SIGTERM.
    #[arg(long, env = "GDPR_INTAKE_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Apply pending migrations at start.
    #[arg(long, env = "GDPR_INTAKE_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Below this age a request is refused.
    #[arg(long, env = "GDPR_INTAKE_MINIMUM_AGE", default_value_t = 15)]
    pub minimum_age: u8,
    /// From this age a subject needs no guardian.
    #[arg(long, env = "GDPR_INTAKE_ADULT_AGE", default_value_t = 18)]
    pub adult_age: u8,
    /// A controller's country, as `TENANT=CC` (repeatable, or a
    /// comma-separated list in the environment): its processors' SLAs skip
    /// that country's public holidays. Unlisted controllers use the
    /// subject's country.
    #[arg(long = "controller-country", env = "GDPR_INTAKE_CONTROLLER_COUNTRIES", value_delimiter = ',', value_parser = parse_controller_country)]
    pub controller_countries: Vec<(String, String)>,
    /// Log format.
    #[arg(long, env = "GDPR_INTAKE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the Prometheus scrape endpoint (`GET /metrics`); none
    /// when unset.
    #[arg(long, env = "GDPR_INTAKE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Which of the service's own spans are exported with OTLP beside each
    /// call's span: `info`, the request and task lifecycle; `debug` adds a
    /// span for every store operation (its time inside the call), at a
    /// cost per call.
    #[arg(long, env = "GDPR_INTAKE_TRACE_LEVEL", default_value = "info", value_parser = parse_trace_level)]
    pub trace_level: tracing::Level,
    /// PEM certificate chain of the gRPC listener (leaf first). With
    /// --tls-key, the listener speaks TLS only.
    #[arg(long, env = "GDPR_INTAKE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GDPR_INTAKE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to: with
    /// it, every client must present one (mutual TLS).
    #[arg(long, env = "GDPR_INTAKE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Calls in progress at once, all connections together; one more is
    /// answered RESOURCE_EXHAUSTED at once. Health checks are not counted.
    #[arg(long, env = "GDPR_INTAKE_MAX_CONCURRENT_CALLS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_calls: u32,
    /// Largest request message in bytes; a larger one is answered
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "GDPR_INTAKE_MAX_MESSAGE_BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_message_bytes: u32,
    /// Client connections held at once; one more is closed as soon as it
    /// is accepted (counted in `gdpr.connections.refused`). Calls on the
    /// connections already open go on.
    #[arg(long, env = "GDPR_INTAKE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Longest a new connection may take to send the HTTP/2 preface (and,
    /// with TLS, to finish the TLS handshake) before it is closed.
    #[arg(long, env = "GDPR_INTAKE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// A connection that has sent nothing for this long is sent an HTTP/2
    /// ping (see --keepalive-timeout).
    #[arg(long, env = "GDPR_INTAKE_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,
    /// Longest wait for the answer to a keep-alive ping before the
    /// connection is closed. A connection from which nothing at all was
    /// read for --keepalive-interval plus twice this is closed too.
    #[arg(long, env = "GDPR_INTAKE_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// How often each replica reloads the revoked callers and tokens
    /// (`AccessService`); a revocation takes effect on every replica within
    /// this, on the one that records it at once.
    #[arg(long, env = "GDPR_INTAKE_REVOCATION_REFRESH", default_value = "2s", value_parser = parse_duration)]
    pub revocation_refresh: Duration,
    /// How often the JWKS file (`--jwks-file`, or the development key set)
    /// is read again: a key added to it is accepted, and one removed is
    /// refused, within this, without a restart. A file that does not load
    /// leaves the keys in force as they are (logged, and counted in
    /// `gdpr.auth.jwks_reload_failures`).
    #[arg(long, env = "GDPR_INTAKE_JWKS_REFRESH", default_value = "30s", value_parser = parse_duration)]
    pub jwks_refresh: Duration,
    /// How often a change-feed watcher (`WatchRequestEvents`) reads the
    /// feed again once it has caught up: an event, written by this replica
    /// or by another on the same database, reaches watchers within about
    /// this.
    #[arg(long, env = "GDPR_INTAKE_FEED_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub feed_poll_interval: Duration,
    /// How often the SLA watchdog looks for consent windows that ran out
    /// and for requests and tasks at risk of missing their deadline or past
    /// it (its lease lasts half of it, so a crashed sweeper is replaced
    /// within one interval); also how often the open-requests
    /// gauge is refreshed.
    #[arg(long, env = "GDPR_INTAKE_SLA_CHECK_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub sla_check_interval: Duration,
    /// How long before its deadline an open request is at risk, e.g. `7d`
    /// or `72h`.
    #[arg(long, env = "GDPR_INTAKE_SLA_REQUEST_AT_RISK", default_value = "7d", value_parser = parse_day_duration)]
    pub sla_request_at_risk: Duration,
    /// How many working hours (on the controller's calendar) before its due
    /// time an open processor task is at risk.
    #[arg(
        long,
        env = "GDPR_INTAKE_SLA_TASK_AT_RISK_WORKING_HOURS",
        default_value_t = 24
    )]
    pub sla_task_at_risk_working_hours: u32,
    /// How long after receipt a minor's request may wait for a guardian's
    /// consent before it expires, e.g. `30d`.
    #[arg(long, env = "GDPR_INTAKE_GUARDIAN_CONSENT_WINDOW", default_value = "30d", value_parser = parse_day_duration)]
    pub guardian_consent_window: Duration,
    /// How long a request may wait for its subject (identity information
    /// or a clarification the controller asked for) before the SLA
    /// watchdog's next sweep moves it to expired, e.g. `30d`.
    #[arg(long, env = "GDPR_INTAKE_AWAITING_SUBJECT_TIMEOUT", default_value = "30d", value_parser = parse_day_duration)]
    pub awaiting_subject_timeout: Duration,
    /// How far back an open request of the same controller, subject and
    /// type (a rectification: with the same corrections) makes a new
    /// submission its duplicate, stored in `STATE_DUPLICATE` without
    /// tasks, e.g. `30d`; `0` turns duplicates off.
    #[arg(long, env = "GDPR_INTAKE_DUPLICATE_WINDOW", default_value = "30d", value_parser = parse_window)]
    pub duplicate_window: Duration,
    /// How long a closed request (completed, refused, cancelled or expired)
    /// keeps its personal data after it closed, e.g. `1095d`; then the SLA
    /// watchdog's sweep removes it (the subject's email and date of birth,
    /// the guardian's name and email, details, corrections) and keeps the
    /// rest and the audit trail. Off unless set: nothing is ever purged.
    #[arg(long, env = "GDPR_INTAKE_RETENTION", value_parser = parse_day_duration)]
    pub retention: Option<Duration>,
}

/// Settings of `token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// Role claim: controller, processor, admin or auditor.
    #[arg(long)]
    pub role: String,
    /// Tenant claim: the controller's or processor's id.
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// Subject claim (defaults to `<role>@<tenant>`).
    #[arg(long)]
    pub subject: Option<String>,
    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Directory holding the development key.
    #[arg(long, env = "GDPR_INTAKE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `aud` claim.
    #[arg(long, env = "GDPR_INTAKE_JWT_AUDIENCE", default_value = "gdpr-intake")]
    pub jwt_audience: String,
}

/// Parses `1s`, `250ms`, `5m`, `1h 30m` (jiff's friendly format) into a
/// non-negative duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 500ms, 20s, 5m or 1h"))?;
    Duration::try_from(d).map_err(|_| format!("`{s}` must not be negative"))
}

/// [`parse_duration`], also in days (`7d`, `2w 3d`), a day being 24 hours.
pub fn parse_day_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).or_else(|_| {
        let span: jiff::Span = s
            .parse()
            .map_err(|_| format!("`{s}` is not a duration such as 30d, 72h or 90m"))?;
        let d = span
            .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(|_| format!("`{s}` is not a duration in days or smaller units"))?;
        Duration::try_from(d).map_err(|_| format!("`{s}` must not be negative"))
    })
}

/// Parses a window that `0` turns off: `0`, or a duration as
/// [`parse_day_duration`] reads it.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_day_duration(s)
}

/// Parses `info` or `debug`, the levels of the service's exported spans.
pub fn parse_trace_level(s: &str) -> Result<tracing::Level, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "info" => Ok(tracing::Level::INFO),
        "debug" => Ok(tracing::Level::DEBUG),
        _ => Err(format!(
            "`{s}` is not a trace level: info (the request and task lifecycle) or debug (also every store operation)"
        )),
    }
}

/// Parses `TENANT=CC`.
pub fn parse_controller_country(s: &str) -> Result<(String, String), String> {
    let (tenant, country) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not TENANT=COUNTRY, e.g. acme=DE"))?;
    let tenant = tenant.trim();
    if tenant.is_empty() {
        return Err(format!("`{s}` names no tenant"));
    }
    crate::domain::jurisdiction::Country::parse(country.trim())
        .map_err(|e| format!("`{s}`: {e}"))?;
    Ok((tenant.to_owned(), country.trim().to_owned()))
}

impl ServeArgs {
    /// The controllers' countries, checked.
    pub fn controller_countries(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::domain::jurisdiction::Jurisdiction>, String>
    {
        self.controller_countries
            .iter()
            .map(|(tenant, cc)| {
                crate::domain::jurisdiction::Jurisdiction::parse(cc, "")
                    .map(|j| (tenant.clone(), j))
                    .map_err(|e| format!("--controller-country {tenant}={cc}: {e}"))
            })
            .collect()
    }

    /// The age thresholds, checked.
    pub fn age_policy(&self) -> Result<AgePolicy, String> {
        AgePolicy::new(self.minimum_age, self.adult_age)
    }

    /// How often the JWKS file is read again, checked.
    pub fn jwks_refresh(&self) -> Result<Duration, String> {
        if self.jwks_refresh.is_zero() {
            return Err("--jwks-refresh must be longer than zero".to_owned());
        }
        Ok(self.jwks_refresh)
    }

    /// How often a feed watcher reads the feed again, checked.
    pub fn feed_poll_interval(&self) -> Result<Duration, String> {
        if self.feed_poll_interval.is_zero() {
            return Err("--feed-poll-interval must be longer than zero".to_owned());
        }
        Ok(self.feed_poll_interval)
    }

    /// How often revocations are reloaded, checked.
    pub fn revocation_refresh(&self) -> Result<Duration, String> {
        if self.revocation_refresh.is_zero() {
            return Err("--revocation-refresh must be longer than zero".to_owned());
        }
        Ok(self.revocation_refresh)
    }

    /// The SLA watchdog's settings, checked.
    pub fn watchdog(&self) -> Result<WatchdogConfig, String> {
        if self.sla_check_interval.is_zero() {
            return Err("--sla-check-interval must be longer than zero".to_owned());
        }
        let max = sla::MAX_TASK_AT_RISK_WORKING_HOURS;
        if self.sla_task_at_risk_working_hours > max {
            return Err(format!(
                "--sla-task-at-risk-working-hours must be at most {max}"
            ));
        }
        if self.guardian_consent_window.is_zero() {
            return Err("--guardian-consent-window must be longer than zero".to_owned());
        }
        if self.awaiting_subject_timeout.is_zero() {
            return Err("--awaiting-subject-timeout must be longer than zero".to_owned());
        }
        if self.retention.is_some_and(|r| r.is_zero()) {
            return Err("--retention must be longer than zero".to_owned());
        }
        let signed = |flag: &str, d: Duration| {
            jiff::SignedDuration::try_from(d).map_err(|_| format!("{flag} is too long"))
        };
        Ok(WatchdogConfig {
            interval: self.sla_check_interval,
            thresholds: sla::Thresholds {
                request_at_risk: signed("--sla-request-at-risk", self.sla_request_at_risk)?,
                task_at_risk_working_hours: self.sla_task_at_risk_working_hours,
                consent_window: signed("--guardian-consent-window", self.guardian_consent_window)?,
                awaiting_subject_timeout: signed(
                    "--awaiting-subject-timeout",
                    self.awaiting_subject_timeout,
                )?,
            },
            retention: self
                .retention
                .map(|r| signed("--retention", r))
                .transpose()?,
        })
    }

    /// The duplicate window, `None` when it is off (`0`).
    pub fn duplicate_window(&self) -> Result<Option<jiff::SignedDuration>, String> {
        if self.duplicate_window.is_zero() {
            return Ok(None);
        }
        jiff::SignedDuration::try_from(self.duplicate_window)
            .map(Some)
            .map_err(|_| "--duplicate-window is too long".to_owned())
    }

    /// The TLS files, checked to come as a pair.
    pub fn tls(&self) -> Result<Option<TlsSettings>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (Some(_), None) => {
                Err("--tls-key (GDPR_INTAKE_TLS_KEY) is required with --tls-cert".to_owned())
            }
            (None, Some(_)) => {
                Err("--tls-cert (GDPR_INTAKE_TLS_CERT) is required with --tls-key".to_owned())
            }
            (None, None) if self.tls_client_ca.is_some() => Err(
                "--tls-client-ca (GDPR_INTAKE_TLS_CLIENT_CA) needs --tls-cert and --tls-key"
                    .to_owned(),
            ),
            (None, None) => Ok(None),
        }
    }

    /// The connection limits, checked.
    pub fn connection_limits(&self) -> Result<ConnectionLimits, String> {
        for (flag, value) in [
            ("--handshake-timeout", self.handshake_timeout),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be longer than zero"));
            }
        }
        Ok(ConnectionLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: self.handshake_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
        })
    }

    /// The call limits.
    pub fn call_limits(&self) -> CallLimits {
        // u32 to usize is lossless on every platform the service runs on.
        CallLimits {
            max_concurrent_calls: usize::try_from(self.max_concurrent_calls).unwrap_or(usize::MAX),
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn trace_levels() {
        assert_eq!(parse_trace_level("info"), Ok(tracing::Level::INFO));
        assert_eq!(parse_trace_level(" DEBUG "), Ok(tracing::Level::DEBUG));
        for refused in ["", "trace", "warn", "verbose"] {
            let err = parse_trace_level(refused).expect_err(refused);
            assert!(err.contains("info") && err.contains("debug"), "{err}");
        }
    }

    #[test]
    fn day_durations() {
        assert_eq!(
            parse_day_duration("7d"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            parse_day_duration("1w 2d"),
            Ok(Duration::from_secs(9 * 86_400))
        );
        assert_eq!(
            parse_day_duration("72h"),
            Ok(Duration::from_secs(72 * 3600))
        );
        assert_eq!(parse_day_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_day_duration("1 month").is_err(), "months vary");
        assert!(parse_day_duration("-2d").is_err());
        assert!(parse_day_duration("soon").is_err());
    }

    #[test]
    fn the_watchdog_defaults_and_flags() {
        let cli = Cli::try_parse_from(["gdpr-intake"]).expect("defaults parse");
        assert_eq!(cli.serve.watchdog(), Ok(WatchdogConfig::default()));
        let cli = Cli::try_parse_from([
            "gdpr-intake",
            "--sla-check-interval",
            "5m",
            "--sla-request-at-risk",
            "3d",
            "--sla-task-at-risk-working-hours",
            "8",
            "--guardian-consent-window",
            "14d",
            "--awaiting-subject-timeout",
            "10d",
            "--retention",
            "1095d",
        ])
        .expect("flags parse");
        let w = cli.serve.watchdog().expect("valid");
        assert_eq!(w.interval, Duration::from_secs(300));
        assert_eq!(
            w.thresholds.request_at_risk,
            jiff::SignedDuration::from_hours(72)
        );
        assert_eq!(w.thresholds.task_at_risk_working_hours, 8);
        assert_eq!(
            w.thresholds.consent_window,
            jiff::SignedDuration::from_hours(14 * 24)
        );
        assert_eq!(
            w.thresholds.awaiting_subject_timeout,
            jiff::SignedDuration::from_hours(10 * 24)
        );
        assert_eq!(
            w.retention,
            Some(jiff::SignedDuration::from_hours(1095 * 24))
        );
        assert_eq!(WatchdogConfig::default().retention, None, "off unless set");
        for bad in [
            ["--retention", "0d"],
            ["--sla-check-interval", "0s"],
            ["--guardian-consent-window", "0s"],
            ["--awaiting-subject-timeout", "0d"],
            ["--sla-task-at-risk-working-hours", "5000"],
        ] {
            let cli = Cli::try_parse_from(["gdpr-intake", bad[0], bad[1]]).expect("parses");
            let err = cli.serve.watchdog().expect_err("refused");
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn the_duplicate_window_defaults_to_30_days_and_0_turns_it_off() {
        let cli = Cli::try_parse_from(["gdpr-intake"]).expect("defaults parse");
        assert_eq!(
            cli.serve.duplicate_window(),
            Ok(Some(crate::domain::duplicate::DEFAULT_WINDOW))
        );
        for (flag, expected) in [
            ("0", None),
            ("0d", None),
            ("7d", Some(jiff::SignedDuration::from_hours(7 * 24))),
            ("36h", Some(jiff::SignedDuration::from_hours(36))),
        ] {
            let cli =
                Cli::try_parse_from(["gdpr-intake", "--duplicate-window", flag]).expect("parses");
            assert_eq!(cli.serve.duplicate_window(), Ok(expected), "{flag}");
        }
        assert!(Cli::try_parse_from(["gdpr-intake", "--duplicate-window", "soon"]).is_err());
    }

    #[test]
    fn defaults_serve_on_loopback_with_sqlite() {
        let cli = Cli::try_parse_from(["gdpr-intake"]).expect("defaults parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(cli.serve.database.data_dir, PathBuf::from("./data"));
        assert_eq!(cli.serve.age_policy(), Ok(AgePolicy::default()));
        assert_eq!(cli.serve.metrics_listen, None);
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "gdpr-intake",
            "token",
            "--role",
            "controller",
            "--tenant",
            "acme",
        ])
        .expect("token parses");
        assert!(matches!(cli.command, Some(Command::Token(t)) if t.tenant == "acme"));
        let cli = Cli::try_parse_from(["gdpr-intake", "migrate"]).expect("migrate parses");
        assert!(matches!(cli.command, Some(Command::Migrate(_))));
        let cli = Cli::try_parse_from(["gdpr-intake", "audit", "verify", "--audit-key-file", "k"])
            .expect("audit verify parses");
        assert!(matches!(
            cli.command,
            Some(Command::Audit(AuditCommand::Verify(a)))
                if a.database.audit_key_file == Some(PathBuf::from("k"))
        ));
        assert!(Cli::try_parse_from(["gdpr-intake", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn tls_files_come_as_a_pair() {
        let parse = |args: &[&str]| {
            let mut all = vec!["gdpr-intake"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).expect("flags parse").serve.tls()
        };
        assert_eq!(parse(&[]), Ok(None));
        let both = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .expect("a pair")
            .expect("tls on");
        assert_eq!(both.cert, PathBuf::from("c.pem"));
        assert_eq!(both.client_ca, None);
        let mutual = parse(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ])
        .expect("a pair")
        .expect("tls on");
        assert_eq!(mutual.client_ca, Some(PathBuf::from("ca.pem")));
        for (args, flag) in [
            (&["--tls-cert", "c.pem"][..], "--tls-key"),
            (&["--tls-key", "k.pem"][..], "--tls-cert"),
            (&["--tls-client-ca", "ca.pem"][..], "--tls-client-ca"),
        ] {
            let error = parse(args).expect_err("refused");
            assert!(error.starts_with(flag), "{args:?}: {error}");
        }
    }

    #[test]
    fn call_limits_default_and_refuse_zero() {
        let cli = Cli::try_parse_from(["gdpr-intake"]).expect("defaults parse");
        assert_eq!(cli.serve.call_limits(), CallLimits::default());
        assert!(Cli::try_parse_from(["gdpr-intake", "--max-concurrent-calls", "0"]).is_err());
        assert!(Cli::try_parse_from(["gdpr-intake", "--max-message-bytes", "0"]).is_err());
    }

    #[test]
    fn connection_limits_default_and_refuse_zero() {
        assert_eq!(
            serve_args(&[]).connection_limits(),
            Ok(ConnectionLimits::default())
        );
        let set = serve_args(&[
            "--max-connections",
            "50",
            "--handshake-timeout",
            "2s",
            "--keepalive-interval",
            "5s",
            "--keepalive-timeout",
            "1s",
        ])
        .connection_limits()
        .expect("valid");
        assert_eq!(set.max_connections, 50);
        assert_eq!(set.handshake_timeout, Duration::from_secs(2));
        assert_eq!(set.read_idle_limit(), Duration::from_secs(7));
        assert!(Cli::try_parse_from(["gdpr-intake", "--max-connections", "0"]).is_err());
        for flag in [
            "--handshake-timeout",
            "--keepalive-interval",
            "--keepalive-timeout",
        ] {
            let error = serve_args(&[flag, "0s"])
                .connection_limits()
                .expect_err("refused");
            assert!(error.starts_with(flag), "{error}");
        }
    }

    /// The serve arguments of a command line holding `args`.
    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut all = vec!["gdpr-intake"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").serve
    }

    #[test]
    fn revocation_refresh_defaults_to_two_seconds_and_refuses_zero() {
        let refresh = |args: &[&str]| serve_args(args).revocation_refresh();
        assert_eq!(refresh(&[]), Ok(Duration::from_secs(2)));
        assert_eq!(
            refresh(&["--revocation-refresh", "500ms"]),
            Ok(Duration::from_millis(500))
        );
        let error = refresh(&["--revocation-refresh", "0s"]).expect_err("refused");
        assert!(error.starts_with("--revocation-refresh"), "{error}");
    }

    #[test]
    fn feed_poll_interval_defaults_to_one_second_and_refuses_zero() {
        let interval = |args: &[&str]| serve_args(args).feed_poll_interval();
        assert_eq!(interval(&[]), Ok(Duration::from_secs(1)));
        assert_eq!(
            interval(&["--feed-poll-interval", "50ms"]),
            Ok(Duration::from_millis(50))
        );
        let error = interval(&["--feed-poll-interval", "0s"]).expect_err("refused");
        assert!(error.starts_with("--feed-poll-interval"), "{error}");
    }

    #[test]
    fn jwks_refresh_defaults_to_thirty_seconds_and_refuses_zero() {
        let refresh = |args: &[&str]| serve_args(args).jwks_refresh();
        assert_eq!(refresh(&[]), Ok(Duration::from_secs(30)));
        assert_eq!(
            refresh(&["--jwks-refresh", "250ms"]),
            Ok(Duration::from_millis(250))
        );
        let error = refresh(&["--jwks-refresh", "0s"]).expect_err("refused");
        assert!(error.starts_with("--jwks-refresh"), "{error}");
    }
}
