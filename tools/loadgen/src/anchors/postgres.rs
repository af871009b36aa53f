//! The PostgreSQL anchors: pgbench runs the scripts of
//! `tools/loadgen/anchors/` against the spawned server's own database,
//! after the scenarios, with as many clients as the service had calls in
//! flight and for as long as a scenario ran. The anchors write as their
//! own controller ([`ANCHOR_CONTROLLER`]) and processor and delete what
//! they added, so the database is left as the service left it.

use sqlx::{Connection, PgConnection};

use super::{ANCHOR_CONTROLLER, Anchor, Measured, Plan};
use crate::pgbench::{self, PgbenchResult, ScriptRun};

pub const SUBMIT_WRITE_SET: &str = "submit-write-set";
pub const INSERT_ONE_ROW: &str = "insert-one-row";
pub const POINT_SELECT: &str = "point-select";
pub const CLAIM_COMPLETE: &str = "claim-complete";

pub const SUBMIT_WRITE_SET_SCRIPT: &str = include_str!("../../anchors/submit_write_set.sql");
pub const POINT_SELECT_SCRIPT: &str = include_str!("../../anchors/point_select.sql");
pub const CLAIM_COMPLETE_SCRIPT: &str = include_str!("../../anchors/claim_complete.sql");

/// The processor whose queue `claim-complete` works through.
const ANCHOR_PROCESSOR: &str = "loadgen-anchor-processor";
/// The lease a claim takes, as loadgen's claim-complete scenario asks for.
const LEASE_MICROS: i64 = 60_000_000;

/// What the anchors added, children before parents; `$1` is the anchors'
/// controller.
const DELETE_ADDED_ROWS: &[&str] = &[
    "DELETE FROM request_events WHERE controller_id = $1",
    "DELETE FROM tasks WHERE controller_id = $1",
    "DELETE FROM data_subject_requests WHERE controller_id = $1",
];
const DELETE_PROCESSOR: &str = "DELETE FROM processors WHERE id = $1";

/// The ids `point-select` picks from: `k` from 1 to the number of the
/// service's requests.
const CREATE_IDS: &str =
    "CREATE TABLE loadgen_anchor_ids (k integer PRIMARY KEY, id uuid NOT NULL)";
const FILL_IDS: &str = "INSERT INTO loadgen_anchor_ids (k, id) \
     SELECT row_number() OVER (ORDER BY id), id FROM data_subject_requests \
     WHERE controller_id = $1";
const DROP_IDS: &str = "DROP TABLE IF EXISTS loadgen_anchor_ids";

const INSERT_PROCESSOR: &str = "INSERT INTO processors (id, display_name, contact, create_time) \
     VALUES ($1, 'loadgen anchor processor', 'loadgen@example.org', \
     (extract(epoch FROM now()) * 1000000)::bigint)";

/// `$2` requests of controller `$1`, in progress and routed, with the
/// values `submit_write_set.sql` writes; their times one microsecond apart,
/// so that their tasks fall due in order.
const QUEUE_REQUESTS: &str = "INSERT INTO data_subject_requests ( \
     id, controller_id, request_id, request_type, \
     subject_external_id, subject_email, subject_date_of_birth, \
     subject_country, details, corrections, \
     state, regime, received_at, create_time, update_time, \
     original_due_time, due_time, unrouted, fingerprint, version, audit_head, \
     clock_start_time) \
     SELECT (lpad(to_hex(t.ms + g), 12, '0') || substr(md5(g::text), 1, 20))::uuid, \
     $1, gen_random_uuid(), 'access', \
     'loadgen-subject-' || g, 'v2.' || repeat('A', 93), 'v2.' || repeat('A', 81), \
     'DE', 'please send me a copy of my data', '{}', \
     'in_progress', 'GDPR', t.us + g, t.us + g, t.us + g, \
     t.us + g + 2678400000000, t.us + g + 2678400000000, \
     FALSE, md5(g::text) || md5((g + 1)::text), 1, \
     substr(md5(g::text), 1, 12) || '.' || md5((g + 2)::text) || md5((g + 3)::text), \
     t.us + g \
     FROM generate_series(1, $2::bigint) AS g, \
     (SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms, \
     (extract(epoch FROM now()) * 1000000)::bigint AS us) AS t";

/// One pending task for processor `$2` per request of controller `$1`,
/// due 14 days after the request: far enough that the server's SLA
/// watchdog, still running, does not take any for at risk and write to it.
/// Each task id shares its request's time prefix, as UUIDv7 ids made at the
/// same moment would.
const QUEUE_TASKS: &str = "INSERT INTO tasks ( \
     id, data_subject_request_id, controller_id, processor_id, state, \
     attempt, due_time, create_time, update_time) \
     SELECT (substr(replace(id::text, '-', ''), 1, 12) \
     || substr(md5('task' || id::text), 1, 20))::uuid, \
     id, controller_id, $2, 'pending', 0, \
     create_time + 1209600000000, create_time, create_time \
     FROM data_subject_requests WHERE controller_id = $1";

/// Fresh statistics after the bulk insert, so that the claims are planned
/// as on a table that grew by itself.
const ANALYZE_QUEUE: &str = "ANALYZE tasks, data_subject_requests";

/// Rows of the anchors' controller (`$1`) or processor (`$2`), and tables
/// of theirs, still there.
const LEFT_BEHIND: &str = "SELECT \
     (SELECT count(*) FROM data_subject_requests WHERE controller_id = $1) \
     + (SELECT count(*) FROM request_events WHERE controller_id = $1) \
     + (SELECT count(*) FROM tasks WHERE controller_id = $1 OR processor_id = $2) \
     + (SELECT count(*) FROM processors WHERE id = $2) \
     + (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() \
        AND tablename IN ('loadgen_anchor_ids', 'loadgen_pgbench_requests'))";

const OPEN_TASKS: &str =
    "SELECT count(*) FROM tasks WHERE processor_id = $1 AND state IN ('pending', 'leased')";

/// Runs every PostgreSQL anchor in turn against the database at `url`.
pub async fn measure(url: &str, plan: &Plan<'_>) -> Measured {
    let mut measured = Measured::default();
    let mut conn = match PgConnection::connect(url).await {
        Ok(conn) => conn,
        Err(e) => {
            measured.record("all", Err(format!("cannot connect to the database: {e}")));
            return measured;
        }
    };

    eprintln!(
        "loadgen: anchor {INSERT_ONE_ROW}: pgbench with {} clients",
        plan.clients
    );
    let insert = pgbench::run(url, plan.clients, plan.duration).await;
    if let Ok(result) = &insert {
        measured.insert_one_row = Some(result.clone());
    }
    measured.record(
        INSERT_ONE_ROW,
        insert.map(|r| {
            anchor(
                INSERT_ONE_ROW,
                &r,
                "one row of a scratch copy of data_subject_requests a transaction",
            )
        }),
    );

    eprintln!(
        "loadgen: anchor {SUBMIT_WRITE_SET}: pgbench with {} clients",
        plan.clients
    );
    let submit = submit_write_set(&mut conn, url, plan).await;
    measured.record(SUBMIT_WRITE_SET, submit);

    eprintln!(
        "loadgen: anchor {POINT_SELECT}: pgbench with {} clients",
        plan.clients
    );
    let select = point_select(&mut conn, url, plan).await;
    measured.record(POINT_SELECT, select);

    eprintln!(
        "loadgen: anchor {CLAIM_COMPLETE}: queueing {} tasks, then pgbench with {} clients",
        plan.task_preload, plan.clients
    );
    let claim = claim_complete(&mut conn, url, plan).await;
    measured.record(CLAIM_COMPLETE, claim);

    if let Err(e) = left_behind(&mut conn).await {
        measured.record("cleanup", Err(e));
    }
    let _ = conn.close().await;
    measured
}

/// Checks that the anchors left the database as the service left it.
async fn left_behind(conn: &mut PgConnection) -> Result<(), String> {
    let left: i64 = sqlx::query_scalar(LEFT_BEHIND)
        .bind(ANCHOR_CONTROLLER)
        .bind(ANCHOR_PROCESSOR)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("cannot count what the anchors left: {e}"))?;
    if left == 0 {
        Ok(())
    } else {
        Err(format!(
            "the anchors left {left} rows or tables of theirs in the database"
        ))
    }
}

async fn submit_write_set(
    conn: &mut PgConnection,
    url: &str,
    plan: &Plan<'_>,
) -> Result<Anchor, String> {
    delete_added(conn).await?;
    let variables = [
        ("controller", ANCHOR_CONTROLLER.to_owned()),
        ("actor", plan.actor.to_owned()),
    ];
    let run = replay(url, plan, SUBMIT_WRITE_SET_SCRIPT, &variables).await;
    let cleanup = delete_added(conn).await;
    let run = completed(run?)?;
    cleanup?;
    Ok(anchor(
        SUBMIT_WRITE_SET,
        &run,
        "a request row and its submitted event a transaction",
    ))
}

async fn point_select(
    conn: &mut PgConnection,
    url: &str,
    plan: &Plan<'_>,
) -> Result<Anchor, String> {
    execute(conn, DROP_IDS, None).await?;
    let run = read_stored(conn, url, plan).await;
    let cleanup = execute(conn, DROP_IDS, None).await;
    let (run, n) = run?;
    let run = completed(run)?;
    cleanup?;
    Ok(anchor(
        POINT_SELECT,
        &run,
        &format!("one of the service's {n} requests a transaction, by id and controller"),
    ))
}

/// Lists the ids of the service's requests and reads them at random; also
/// returns how many there are.
async fn read_stored(
    conn: &mut PgConnection,
    url: &str,
    plan: &Plan<'_>,
) -> Result<(ScriptRun, u64), String> {
    execute(conn, CREATE_IDS, None).await?;
    let n = execute(conn, FILL_IDS, Some(plan.tenant)).await?;
    if n == 0 {
        return Err("the service stored no request to read: run submit or get first".to_owned());
    }
    execute(conn, "ANALYZE loadgen_anchor_ids", None).await?;
    let variables = [
        ("ids", n.to_string()),
        ("controller", plan.tenant.to_owned()),
    ];
    let run = replay(url, plan, POINT_SELECT_SCRIPT, &variables).await?;
    Ok((run, n))
}

async fn claim_complete(
    conn: &mut PgConnection,
    url: &str,
    plan: &Plan<'_>,
) -> Result<Anchor, String> {
    delete_added(conn).await?;
    execute(conn, DELETE_PROCESSOR, Some(ANCHOR_PROCESSOR)).await?;
    let run = queue_and_claim(conn, url, plan).await;
    let cleanup = match delete_added(conn).await {
        Ok(()) => execute(conn, DELETE_PROCESSOR, Some(ANCHOR_PROCESSOR))
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    let (run, open) = run?;
    cleanup?;
    let mut result = anchor(
        CLAIM_COMPLETE,
        &run.result,
        &format!(
            "a claim and a completion a step, {} tasks queued",
            plan.task_preload
        ),
    );
    if run.aborted {
        if open > 0 {
            return Err(format!(
                "pgbench stopped its clients with {open} tasks still open: {}",
                run.errors.trim()
            ));
        }
        let seconds = run.result.transactions as f64 / run.result.tps.max(f64::MIN_POSITIVE);
        result.warning = Some(format!(
            "the {} queued tasks ran out after about {seconds:.1} s of {} s: the rate counts the steps until then; raise --task-preload",
            plan.task_preload, run.result.seconds
        ));
    }
    Ok(result)
}

/// Queues the tasks and works through them; also returns how many were
/// still open at the end.
async fn queue_and_claim(
    conn: &mut PgConnection,
    url: &str,
    plan: &Plan<'_>,
) -> Result<(ScriptRun, i64), String> {
    execute(conn, INSERT_PROCESSOR, Some(ANCHOR_PROCESSOR)).await?;
    let count = i64::try_from(plan.task_preload).unwrap_or(i64::MAX);
    sqlx::query(QUEUE_REQUESTS)
        .bind(ANCHOR_CONTROLLER)
        .bind(count)
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("cannot queue the requests: {e}"))?;
    sqlx::query(QUEUE_TASKS)
        .bind(ANCHOR_CONTROLLER)
        .bind(ANCHOR_PROCESSOR)
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("cannot queue the tasks: {e}"))?;
    execute(conn, ANALYZE_QUEUE, None).await?;
    let variables = [
        ("processor", ANCHOR_PROCESSOR.to_owned()),
        ("lease_us", LEASE_MICROS.to_string()),
    ];
    let run = replay(url, plan, CLAIM_COMPLETE_SCRIPT, &variables).await?;
    let open: i64 = sqlx::query_scalar(OPEN_TASKS)
        .bind(ANCHOR_PROCESSOR)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("cannot count the open tasks: {e}"))?;
    Ok((run, open))
}

/// Runs `script` with the run's clients for its duration.
async fn replay(
    url: &str,
    plan: &Plan<'_>,
    script: &str,
    variables: &[(&str, String)],
) -> Result<ScriptRun, String> {
    pgbench::run_script(url, script, plan.clients, plan.duration, variables).await
}

/// A run in which no client was stopped.
fn completed(run: ScriptRun) -> Result<PgbenchResult, String> {
    if run.aborted {
        Err(format!(
            "pgbench stopped its clients: {}",
            run.errors.trim()
        ))
    } else {
        Ok(run.result)
    }
}

fn anchor(name: &'static str, result: &PgbenchResult, unit: &str) -> Anchor {
    Anchor {
        name,
        per_second: result.tps,
        count: result.transactions,
        how: format!(
            "pgbench, {unit}, {} clients, {} threads, {} s, prepared statements",
            result.clients, result.threads, result.seconds
        ),
        warning: None,
    }
}

async fn delete_added(conn: &mut PgConnection) -> Result<(), String> {
    for statement in DELETE_ADDED_ROWS {
        execute(conn, statement, Some(ANCHOR_CONTROLLER)).await?;
    }
    Ok(())
}

/// Runs `statement` with `value` as `$1`, if given; the rows it touched.
async fn execute(
    conn: &mut PgConnection,
    statement: &'static str,
    value: Option<&str>,
) -> Result<u64, String> {
    let query = sqlx::query(statement);
    let query = match value {
        Some(v) => query.bind(v.to_owned()),
        None => query,
    };
    query
        .execute(&mut *conn)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| format!("`{statement}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::schema::Schema;

    fn postgres() -> Schema {
        Schema::of_migrations("postgres")
    }

    #[test]
    fn the_submit_script_writes_every_column_of_a_request_and_an_event() {
        let schema = postgres();
        let insert = schema.inserts(SUBMIT_WRITE_SET_SCRIPT);
        assert_eq!(insert.len(), 2, "{insert:?}");
        let (table, columns) = &insert[0];
        assert_eq!(table, "data_subject_requests");
        assert_eq!(
            schema.sorted(columns),
            schema.sorted(schema.columns(table)),
            "the request row names every column once"
        );
        let (table, columns) = &insert[1];
        assert_eq!(table, "request_events");
        assert_eq!(schema.sorted(columns), schema.sorted(schema.columns(table)));
    }

    #[test]
    fn the_point_select_reads_what_the_store_reads() {
        let schema = postgres();
        let (table, columns) = schema.select(POINT_SELECT_SCRIPT);
        assert_eq!(table, "data_subject_requests");
        let mut expected: Vec<&str> = schema
            .columns(&table)
            .iter()
            .map(String::as_str)
            // The audit chain's head and tip are the writers' alone.
            .filter(|c| !["audit_head", "last_event_sequence", "last_event_hash"].contains(c))
            .collect();
        expected.sort_unstable();
        assert_eq!(schema.sorted(&columns), expected);
    }

    #[test]
    fn every_column_the_scripts_and_the_queue_name_exists() {
        let schema = postgres();
        for (name, text) in [
            ("insert_one_row.sql", pgbench::INSERT_ONE_ROW),
            ("submit_write_set.sql", SUBMIT_WRITE_SET_SCRIPT),
            ("point_select.sql", POINT_SELECT_SCRIPT),
            ("claim_complete.sql", CLAIM_COMPLETE_SCRIPT),
            ("QUEUE_REQUESTS", QUEUE_REQUESTS),
            ("QUEUE_TASKS", QUEUE_TASKS),
        ] {
            let unknown = schema.unknown_columns(text);
            assert!(unknown.is_empty(), "{name} names {unknown:?}");
        }
    }

    #[test]
    fn the_claim_is_the_services_claim_on_the_partial_index() {
        for part in [
            "WHERE processor_id = :processor",
            "AND state IN ('pending', 'leased')",
            "ORDER BY due_time, id LIMIT 1",
            "FOR NO KEY UPDATE SKIP LOCKED \\gset",
            "SET state = 'leased', attempt = attempt + 1",
            "SET state = 'completed', outcome = 'done'",
        ] {
            assert!(CLAIM_COMPLETE_SCRIPT.contains(part), "{part}");
        }
        // Two transactions a step.
        assert_eq!(CLAIM_COMPLETE_SCRIPT.matches("\nBEGIN;").count(), 2);
        assert_eq!(CLAIM_COMPLETE_SCRIPT.matches("\nCOMMIT;").count(), 2);
    }

    #[test]
    fn sealed_columns_are_as_long_as_the_services() {
        // The subject's email and date of birth of loadgen's submissions.
        let email = super::super::sqlite::sealed_len("subject@example.org".len());
        let birth = super::super::sqlite::sealed_len("1985-12-10".len());
        for text in [SUBMIT_WRITE_SET_SCRIPT, QUEUE_REQUESTS] {
            assert!(text.contains(&format!("'v2.' || repeat('A', {})", email - 3)));
            assert!(text.contains(&format!("'v2.' || repeat('A', {})", birth - 3)));
        }
    }

    #[test]
    fn scripts_say_what_they_replay_and_when_to_regenerate_them() {
        for text in [
            pgbench::INSERT_ONE_ROW,
            SUBMIT_WRITE_SET_SCRIPT,
            POINT_SELECT_SCRIPT,
            CLAIM_COMPLETE_SCRIPT,
        ] {
            let header = text.replace("\n-- ", " ");
            assert!(header.starts_with("-- Anchor `"));
            assert!(header.contains("Regenerate this script when the schema changes"));
        }
    }
}
