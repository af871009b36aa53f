//! pgbench, the yardstick of PostgreSQL: it runs a script of the
//! anchors (`tools/loadgen/anchors/`) with as many clients as the service
//! had calls in flight, for as long as a scenario ran, and reads its
//! report. Every script runs in pgbench's prepared mode: the extended
//! protocol with statements prepared once per connection, as sqlx runs the
//! service's.
//!
//! [`run`] is the single-row INSERT (`insert_one_row.sql`) into a scratch
//! copy of `data_subject_requests`, made with `LIKE … INCLUDING ALL` so
//! that it carries the same columns, checks and indexes as the migrated
//! table, whatever the migrations become; it is dropped afterwards.

use std::fs;
use std::process::Command;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

const SCRATCH_TABLE: &str = "loadgen_pgbench_requests";

/// One row per transaction into [`SCRATCH_TABLE`].
pub const INSERT_ONE_ROW: &str = include_str!("../anchors/insert_one_row.sql");

/// What pgbench reported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PgbenchResult {
    pub clients: u32,
    pub threads: u32,
    pub seconds: u64,
    pub transactions: u64,
    pub tps: f64,
}

/// A run whose report could be read.
#[derive(Clone, Debug)]
pub struct ScriptRun {
    pub result: PgbenchResult,
    /// Whether pgbench stopped clients on an error before the time was up
    /// (its report then counts what they did until then).
    pub aborted: bool,
    /// pgbench's error output: why clients were stopped.
    pub errors: String,
}

/// Whether `pgbench` can be run at all.
pub fn available() -> bool {
    Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the single-row INSERT for `duration` with `clients` connections
/// against the database at `url`, which must hold a migrated
/// `data_subject_requests`.
pub async fn run(url: &str, clients: u32, duration: Duration) -> Result<PgbenchResult, String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| format!("pgbench: cannot connect to the database: {e}"))?;
    sqlx::query("DROP TABLE IF EXISTS loadgen_pgbench_requests")
        .execute(&mut conn)
        .await
        .map_err(|e| format!("pgbench: cannot clear the scratch table: {e}"))?;
    sqlx::query("CREATE TABLE loadgen_pgbench_requests (LIKE data_subject_requests INCLUDING ALL)")
        .execute(&mut conn)
        .await
        .map_err(|e| {
            format!("pgbench: cannot copy data_subject_requests (is the database migrated?): {e}")
        })?;
    let run = run_script(url, INSERT_ONE_ROW, clients, duration, &[]).await;
    let cleanup = sqlx::query("DROP TABLE IF EXISTS loadgen_pgbench_requests")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    let run = run?;
    if run.aborted {
        return Err(format!(
            "pgbench stopped its clients: {}",
            run.errors.trim()
        ));
    }
    cleanup.map_err(|e| format!("pgbench: cannot drop {SCRATCH_TABLE}: {e}"))?;
    Ok(run.result)
}

/// Runs `script` with `clients` connections for `duration` (whole seconds,
/// at least one) against the database at `url`, each `(name, value)` of
/// `variables` given with `-D`. A run that pgbench aborted still counts
/// when its report can be read.
pub async fn run_script(
    url: &str,
    script: &str,
    clients: u32,
    duration: Duration,
    variables: &[(&str, String)],
) -> Result<ScriptRun, String> {
    let script_path = std::env::temp_dir().join(format!(
        "loadgen-pgbench-{}.sql",
        uuid::Uuid::new_v4().simple()
    ));
    fs::write(&script_path, script)
        .map_err(|e| format!("pgbench: cannot write its script: {e}"))?;
    // pgbench's worker threads: as many as cores, never more than clients.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = clients.min(u32::try_from(cores).unwrap_or(1)).max(1);
    let seconds = duration.as_secs().max(1);
    let mut command = Command::new("pgbench");
    command
        .arg("--no-vacuum")
        .arg("--protocol=prepared")
        .arg("--client")
        .arg(clients.to_string())
        .arg("--jobs")
        .arg(threads.to_string())
        .arg("--time")
        .arg(seconds.to_string())
        .arg("--file")
        .arg(&script_path);
    for (name, value) in variables {
        command.arg("--define").arg(format!("{name}={value}"));
    }
    command.arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| format!("pgbench: {e}"))?
        .map_err(|e| format!("pgbench: cannot run it ({e}); Debian ships it in postgresql-client"));
    let _ = fs::remove_file(&script_path);
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = parse(&stdout);
    let aborted = stderr.contains("Run was aborted");
    match report {
        Some((transactions, tps)) if output.status.success() || aborted => Ok(ScriptRun {
            result: PgbenchResult {
                clients,
                threads,
                seconds,
                transactions,
                tps,
            },
            aborted,
            errors: stderr,
        }),
        _ => Err(format!(
            "pgbench failed ({}): {stdout}{stderr}",
            output.status
        )),
    }
}

/// The committed transactions and the tps (without connection time) from
/// pgbench's report.
fn parse(report: &str) -> Option<(u64, f64)> {
    let transactions = report.lines().find_map(|line| {
        line.trim()
            .strip_prefix("number of transactions actually processed:")
            // "81234", or "500/500" when a count was asked for.
            .and_then(|rest| rest.trim().split(['/', ' ']).next())
            .and_then(|n| n.parse().ok())
    })?;
    // Newer pgbench prints one tps line (without initial connection time);
    // older ones print "including" and "excluding connections
    // establishing": prefer the one without connection time.
    let tps_lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("tps = "))
        .collect();
    let chosen = tps_lines
        .iter()
        .find(|l| l.contains("without") || l.contains("excluding"))
        .or_else(|| tps_lines.first())?;
    let tps = chosen
        .strip_prefix("tps = ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((transactions, tps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_current_and_older_pgbench_are_read() {
        let current = "transaction type: /tmp/x.sql\nscaling factor: 1\nquery mode: simple\nnumber of clients: 16\nnumber of threads: 2\nmaximum number of tries: 1\nduration: 10 s\nnumber of transactions actually processed: 81234\nnumber of failed transactions: 0 (0.000%)\nlatency average = 1.969 ms\ninitial connection time = 21.307 ms\ntps = 8123.456789 (without initial connection time)\n";
        assert_eq!(parse(current), Some((81234, 8123.456789)));
        let older = "number of transactions actually processed: 500/500\ntps = 99.1 (including connections establishing)\ntps = 101.5 (excluding connections establishing)\n";
        assert_eq!(parse(older), Some((500, 101.5)));
        assert_eq!(parse("pgbench: error"), None);
    }

    #[test]
    fn the_script_names_the_scratch_table() {
        assert!(INSERT_ONE_ROW.contains(SCRATCH_TABLE));
    }
}
