//! The command line of the load generator, checked before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gdpr_intake::config::parse_duration;

/// Drives gdpr-intake with gRPC calls at a fixed concurrency or rate and
/// prints what ghz prints (count, time, requests/s, latency percentiles,
/// status codes), beside the gRPC ceiling of this machine measured in the
/// same run with an echo service on the same server settings.
///
/// Without --addr it spawns the gdpr-intake binary built next to it, on
/// SQLite unless --spawn postgres is given.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// What to drive; `all` runs submit, get, list, claim-complete and echo
    /// in turn.
    #[arg(long, value_enum, default_value_t = ScenarioArg::All)]
    pub scenario: ScenarioArg,
    /// Calls in flight at once (closed loop), or at most in flight with
    /// --rate.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// A fixed arrival rate such as `1000/s` instead of a closed loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub connections: u32,
    /// How long each scenario runs (ignored with --count).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Exactly this many calls per scenario instead of --duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Calls made and thrown away before each scenario is measured, for
    /// this long (warm connections, pools and caches).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Deadline of each call.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Address of a running gdpr-intake (host:port, plaintext) instead of
    /// spawning one.
    #[arg(long, conflicts_with = "spawn")]
    pub addr: Option<String>,
    /// Bearer token (role controller) for --addr.
    #[arg(long, conflicts_with = "token_env", requires = "addr")]
    pub token: Option<String>,
    /// Name of an environment variable holding the token for --addr.
    #[arg(long, requires = "addr")]
    pub token_env: Option<String>,
    /// Spawn gdpr-intake on this backend (the default when --addr is not
    /// given is sqlite).
    #[arg(long, value_enum)]
    pub spawn: Option<Backend>,
    /// PostgreSQL server URL: with --spawn postgres a fresh database is
    /// created on it for the run and dropped after; with --addr, the
    /// service's own database, for --pgbench.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The gdpr-intake binary to spawn (default: next to loadgen, else
    /// target/release/gdpr-intake).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// An extra argument for the spawned server, repeatable, e.g.
    /// `--server-arg=--db-max-connections=32`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// Size in bytes of the echo payload.
    #[arg(long, default_value_t = 256)]
    pub echo_payload: usize,
    /// Requests submitted before `get`, read back at random.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub get_preload: u64,
    /// Requests stored before `submit` is measured, so that it writes
    /// into tables and indexes of that size (0: none).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub submit_preload: u64,
    /// Share of `get` calls that ask for a request that does not exist, to
    /// measure the NOT_FOUND path (those answers are expected).
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    pub get_miss_ratio: f64,
    /// Tasks made before `claim-complete` (one per submitted request, once a
    /// route sends the loadgen controller's access requests to the loadgen
    /// processor). claim-complete claims and completes all of them (or
    /// --count of them), whatever --duration says, with no warm-up.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub task_preload: u64,
    /// `page_size` of each `list` call.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub list_page_size: i32,
    /// Also run pgbench's single-row INSERT into a table shaped like
    /// data_subject_requests, at the same client count, for comparison.
    #[arg(long)]
    pub pgbench: bool,
    /// Also measure the anchors: what the database engine itself does with
    /// each scenario's work, in the same run, printed as a table beside the
    /// service's rates with the ratio and the target. PostgreSQL: pgbench
    /// scripts (tools/loadgen/anchors/) on the spawned server's database,
    /// the single-row INSERT of --pgbench among them. SQLite: Submit's rows
    /// written through the engine into a fresh file. Needs a spawned server.
    #[arg(long)]
    pub anchors: bool,
    /// Span export of the spawned server: `off`; `on`, to an OTLP/gRPC
    /// receiver in this process, every span sampled; or `both`, the whole
    /// run with export off and then on (a fresh server and database each),
    /// compared side by side.
    #[arg(long, value_enum, default_value_t = TraceExport::Off)]
    pub trace_export: TraceExport,
    /// With --trace-export both: make the off/on pair this many times,
    /// alternating which goes first (off then on, on then off, ...) so that
    /// order effects cancel, then print the median of each side and the
    /// lowest and highest on/off ratio of a round (and with --json write
    /// every round and the medians). Refused with any other --trace-export.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Change-feed watchers (WatchRequestEvents streams of the load
    /// generator's tenant) held open for the whole run, beside the calls;
    /// the events they read are printed at the end.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub feed_watchers: u32,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Which calls to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    /// SubmitDataSubjectRequest with a new request_id each call.
    Submit,
    /// GetDataSubjectRequest of preloaded requests, at random.
    Get,
    /// ListDataSubjectRequests, first page.
    List,
    /// ListDataSubjectRequests, first page of the requests in progress
    /// (the state filter).
    ListByState,
    /// A processor's ClaimTasks (one task) then CompleteTask of what it
    /// claimed, as one timed step, on tasks fanned out beforehand; needs a
    /// spawned server (it sets up the processor and its route as admin).
    ClaimComplete,
    /// The bare echo service: the gRPC ceiling.
    Echo,
    /// submit, get, list, list-by-state, claim-complete and echo in turn.
    All,
}

/// Whether the spawned server exports spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceExport {
    Off,
    On,
    Both,
}

impl TraceExport {
    /// The settings round `round` (from 0) is made with, in order: `both`
    /// goes off then on in even rounds and on then off in odd ones.
    pub fn runs(self, round: u32) -> &'static [bool] {
        match self {
            TraceExport::Off => &[false],
            TraceExport::On => &[true],
            TraceExport::Both if round.is_multiple_of(2) => &[false, true],
            TraceExport::Both => &[true, false],
        }
    }
}

impl Args {
    /// What clap cannot check: only `both` has a pair to repeat.
    pub fn check_rounds(&self) -> Result<(), String> {
        if self.rounds > 1 && self.trace_export != TraceExport::Both {
            return Err(format!(
                "--rounds {} repeats the off/on pair of --trace-export both; it needs --trace-export both",
                self.rounds
            ));
        }
        Ok(())
    }
}

/// The database of a spawned server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `1000/s` or `1000` (per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let number = s.strip_suffix("/s").unwrap_or(s).trim();
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0 => Ok(rate),
        _ => Err(format!(
            "`{s}` is not a rate such as 1000/s (a positive number of calls per second)"
        )),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_or_without_unit() {
        assert_eq!(parse_rate("1000/s"), Ok(1000.0));
        assert_eq!(parse_rate("250"), Ok(250.0));
        assert_eq!(parse_rate("0.5/s"), Ok(0.5));
        for bad in ["", "fast", "0/s", "-3", "1000/m", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ratios_stay_between_zero_and_one() {
        assert_eq!(parse_ratio("0.1"), Ok(0.1));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
    }

    #[test]
    fn external_server_needs_no_spawn() {
        let args =
            Args::try_parse_from(["loadgen", "--addr", "127.0.0.1:50051", "--token-env", "T"])
                .expect("parses");
        assert_eq!(args.addr.as_deref(), Some("127.0.0.1:50051"));
        assert!(Args::try_parse_from(["loadgen", "--addr", "a:1", "--spawn", "sqlite"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--token", "t"]).is_err());
    }

    #[test]
    fn trace_export_both_alternates_off_on_and_on_off() {
        let args = Args::try_parse_from(["loadgen", "--trace-export", "both"]).expect("parses");
        assert_eq!(args.rounds, 1);
        assert_eq!(args.trace_export.runs(0), [false, true]);
        assert_eq!(args.trace_export.runs(1), [true, false]);
        assert_eq!(args.trace_export.runs(2), [false, true]);
        let args = Args::try_parse_from(["loadgen"]).expect("parses");
        assert_eq!(args.trace_export.runs(0), [false]);
        assert_eq!(args.trace_export.runs(1), [false]);
    }

    #[test]
    fn rounds_only_repeat_trace_export_both() {
        let parse =
            |extra: &[&str]| Args::try_parse_from(["loadgen"].iter().chain(extra)).expect("parses");
        assert_eq!(
            parse(&["--trace-export", "both", "--rounds", "3"]).check_rounds(),
            Ok(())
        );
        for export in ["off", "on"] {
            assert_eq!(parse(&["--trace-export", export]).check_rounds(), Ok(()));
            let refused = parse(&["--trace-export", export, "--rounds", "2"]).check_rounds();
            assert!(
                refused.is_err_and(|e| e.contains("--trace-export both")),
                "{export}"
            );
        }
        assert!(Args::try_parse_from(["loadgen", "--rounds", "0"]).is_err());
    }
}
