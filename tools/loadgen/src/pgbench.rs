//! The yardstick for PostgreSQL: pgbench's single-row INSERT, one row per
//! transaction, into a scratch copy of `data_subject_requests`, at the same
//! client count as the service's run.
//!
//! The scratch table is made with `LIKE … INCLUDING ALL`, so it carries the
//! same columns, checks and indexes as the migrated table, whatever the
//! migrations become; it is dropped afterwards.

use std::fs;
use std::process::Command;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

const SCRATCH_TABLE: &str = "loadgen_pgbench_requests";

/// One transaction: one row, as a submission would store it (an adult's
/// access request in Germany, in progress, fingerprint and times filled).
/// The subject's date of birth and email are made up.
const SCRIPT: &str = r"\set n random(1, 1000000000)
INSERT INTO loadgen_pgbench_requests (
    id, controller_id, request_id, request_type, subject_external_id,
    subject_email, subject_date_of_birth, subject_country, subject_subdivision,
    details, corrections, state, regime, received_at, create_time, update_time,
    original_due_time, due_time, fingerprint, version)
VALUES (
    gen_random_uuid(), 'loadgen', gen_random_uuid(), 'access',
    'loadgen-subject-' || :n, 'subject@example.org', '1985-12-10', 'DE', NULL,
    'please send me a copy of my data', '{}', 'in_progress', 'GDPR',
    (extract(epoch from clock_timestamp()) * 1000000)::bigint,
    (extract(epoch from clock_timestamp()) * 1000000)::bigint,
    (extract(epoch from clock_timestamp()) * 1000000)::bigint,
    (extract(epoch from clock_timestamp()) * 1000000)::bigint + 2678400000000,
    (extract(epoch from clock_timestamp()) * 1000000)::bigint + 2678400000000,
    md5(:n::text) || md5((:n + 1)::text), 1);
";

/// What pgbench reported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PgbenchResult {
    pub clients: u32,
    pub threads: u32,
    pub seconds: u64,
    pub transactions: u64,
    pub tps: f64,
}

/// Whether `pgbench` can be run at all.
pub fn available() -> bool {
    Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the INSERT for `duration` with `clients` connections against the
/// database at `url`, which must hold a migrated `data_subject_requests`.
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

    let script_path = std::env::temp_dir().join(format!(
        "loadgen-pgbench-{}.sql",
        uuid::Uuid::new_v4().simple()
    ));
    fs::write(&script_path, SCRIPT)
        .map_err(|e| format!("pgbench: cannot write its script: {e}"))?;
    // pgbench's worker threads: as many as cores, never more than clients.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = clients.min(u32::try_from(cores).unwrap_or(1)).max(1);
    let seconds = duration.as_secs().max(1);
    let url_owned = url.to_owned();
    let script = script_path.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("pgbench")
            .arg("--no-vacuum")
            .arg("--client")
            .arg(clients.to_string())
            .arg("--jobs")
            .arg(threads.to_string())
            .arg("--time")
            .arg(seconds.to_string())
            .arg("--file")
            .arg(&script)
            .arg(&url_owned)
            .output()
    })
    .await
    .map_err(|e| format!("pgbench: {e}"))?
    .map_err(|e| format!("pgbench: cannot run it ({e}); Debian ships it in postgresql-client"));
    let _ = fs::remove_file(&script_path);
    let cleanup = sqlx::query("DROP TABLE IF EXISTS loadgen_pgbench_requests")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    cleanup.map_err(|e| format!("pgbench: cannot drop {SCRATCH_TABLE}: {e}"))?;
    let (transactions, tps) =
        parse(&stdout).ok_or_else(|| format!("pgbench: cannot read its report:\n{stdout}"))?;
    Ok(PgbenchResult {
        clients,
        threads,
        seconds,
        transactions,
        tps,
    })
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
        assert!(SCRIPT.contains(SCRATCH_TABLE));
    }
}
