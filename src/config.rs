//! Command line and environment. Everything is parsed and checked here,
//! before any port is bound or file written.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::age::AgePolicy;

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
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print a development token signed with the key `serve` created in the
    /// data directory (only for a service running with development keys).
    Token(TokenArgs),
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
}

/// Log output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
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
        assert!(Cli::try_parse_from(["gdpr-intake", "--listen", "nowhere"]).is_err());
    }
}
