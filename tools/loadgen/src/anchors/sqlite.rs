//! The SQLite anchor: the rows of Submit written straight through the
//! engine, with no gRPC and no async hop, by one writer as the service has
//! one: the open requests of the batch's subjects looked up (the store's
//! check for duplicates, which finds none here), then each request row
//! with its `submitted` event (the no-route case, as in
//! `submit_write_set.sql`), 64 requests a transaction, in a fresh
//! database file that the project's store creates and migrates
//! (`migrations/sqlite/`), in WAL mode with `synchronous = FULL` as the
//! server runs it, for `--duration`.
//!
//! rusqlite shares `libsqlite3-sys` with sqlx (the same version, bundled),
//! so the same SQLite is measured as the server runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gdpr_intake::store::{self, StoreConfig};
use rusqlite::types::{Null, ToSql};
use rusqlite::{Connection, params_from_iter};

use super::{ANCHOR_CONTROLLER, Anchor};

pub const SUBMIT_WRITE_SET: &str = "submit-write-set";

/// Requests a transaction.
const BATCH: usize = 64;

/// The open requests about a group's keys, as the store reads them before
/// it writes the group (`OPEN_REQUESTS_ABOUT_SQLITE` in src/store/sql.rs).
const OPEN_REQUESTS_ABOUT: &str = "SELECT id FROM data_subject_requests \
     WHERE (controller_id, subject_external_id, request_type) IN \
     (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)) \
     AND state IN ('awaiting_guardian_consent', 'in_progress', 'needs_attention', \
     'awaiting_identity_verification', 'awaiting_clarification')";

/// The columns of a new request the store writes NULL into: what a
/// request gains later (an extension, a guardian's consent, a closure, SLA
/// marks, a purge, a pause of its clock), and what the submission had not
/// (a subdivision, a trace context: loadgen's calls are not traced; a
/// request it repeats).
const NULL_REQUEST_COLUMNS: &[&str] = &[
    "subject_subdivision",
    "extension_reason",
    "extension_time",
    "extended_by",
    "guardian_full_name",
    "guardian_relationship",
    "guardian_email",
    "guardian_verification_method",
    "guardian_consented_at",
    "guardian_consent_record_time",
    "guardian_consent_recorded_by",
    "closure_outcome",
    "closure_refusal_reason",
    "closure_explanation",
    "close_time",
    "cancellation_reason",
    "origin_traceparent",
    "origin_tracestate",
    "sla_at_risk_reported_at",
    "sla_breached_reported_at",
    "purge_time",
    "clock_paused_since",
    "duplicate_of",
];

/// The columns of a `submitted` event that are NULL: it starts the trail
/// and is about no task.
const NULL_EVENT_COLUMNS: &[&str] = &["from_state", "task_id"];

/// Column names and the values a row binds to them.
type Row<'a> = Vec<(&'static str, &'a dyn ToSql)>;

/// A month and a day, in microseconds: the due time of the row.
const DUE_AFTER_MICROS: i64 = 2_678_400_000_000;

/// The length of a sealed value of `plaintext` bytes as the store keeps it:
/// `v2.`, a 12-digit key id and a dot, and the base64 of a 24-byte nonce,
/// the ciphertext and a 16-byte tag (src/store/crypt.rs).
pub fn sealed_len(plaintext: usize) -> usize {
    3 + 13 + (24 + plaintext + 16).div_ceil(3) * 4
}

/// Writes requests for `duration` into a fresh migrated database and
/// reports the requests (two rows each) a second.
pub async fn submit_write_set(duration: Duration, actor: &str) -> Result<Anchor, String> {
    let dir = std::env::temp_dir().join(format!(
        "loadgen-sqlite-anchor-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = migrate_and_write(&dir, duration, actor.to_owned()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (requests, elapsed) = result?;
    Ok(Anchor {
        name: SUBMIT_WRITE_SET,
        per_second: requests as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        count: requests,
        how: format!(
            "SQLite through rusqlite, one writer, {BATCH} requests ({} rows) a transaction, \
             one look-up of their subjects' open requests, \
             one multi-row INSERT for the requests and one for their events, \
             WAL, synchronous FULL, {:.1} s",
            BATCH * 2,
            elapsed.as_secs_f64()
        ),
        warning: None,
    })
}

async fn migrate_and_write(
    dir: &Path,
    duration: Duration,
    actor: String,
) -> Result<(u64, Duration), String> {
    // The server's own store makes and migrates the file, so the anchor
    // writes to the tables the server would, whatever the migrations become.
    let migrated = store::connect(&StoreConfig::sqlite(dir), true)
        .await
        .map_err(|e| format!("cannot create and migrate a SQLite database: {e}"))?;
    drop(migrated);
    let file = database_file(dir)?;
    tokio::task::spawn_blocking(move || write(&file, duration, actor))
        .await
        .map_err(|e| format!("the SQLite writer failed: {e}"))?
        .map_err(|e| format!("SQLite: {e}"))
}

/// The one database file the store created in `dir`.
fn database_file(dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "db"))
        .ok_or_else(|| format!("the store made no .db file in {}", dir.display()))
}

/// What differs from one request to the next.
struct Fresh {
    id: String,
    request_id: String,
    external_id: String,
    now: i64,
    due: i64,
    fingerprint: String,
    audit_head: String,
    hash: String,
}

impl Fresh {
    fn new(n: u64) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            request_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            external_id: format!("loadgen-subject-{n}"),
            now,
            due: now + DUE_AFTER_MICROS,
            fingerprint: format!("{n:064x}"),
            // As stored: the audit key's id, a dot, the HMAC in hex.
            audit_head: format!("{n:012x}.{:064x}", u128::from(n) << 64),
            hash: format!("{n:012x}.{:064x}", u128::from(n) << 32),
        }
    }
}

/// What every request shares: the adult's access request in Germany of
/// loadgen's submissions, sealed values as long as the store's, and the
/// submitting caller.
struct Fixed {
    email: String,
    date_of_birth: String,
    actor: String,
}

impl Fixed {
    fn new(actor: String) -> Self {
        Self {
            email: format!(
                "v2.{}",
                "A".repeat(sealed_len("subject@example.org".len()) - 3)
            ),
            date_of_birth: format!("v2.{}", "A".repeat(sealed_len("1985-12-10".len()) - 3)),
            actor,
        }
    }

    /// A request row as the store writes a new one.
    fn request<'a>(&'a self, r: &'a Fresh) -> Row<'a> {
        let mut row: Row<'a> = vec![
            ("id", &r.id),
            ("controller_id", &ANCHOR_CONTROLLER),
            ("request_id", &r.request_id),
            ("request_type", &"access"),
            ("subject_external_id", &r.external_id),
            ("subject_email", &self.email),
            ("subject_date_of_birth", &self.date_of_birth),
            ("subject_country", &"DE"),
            ("details", &"please send me a copy of my data"),
            ("corrections", &"{}"),
            ("state", &"in_progress"),
            ("regime", &"GDPR"),
            ("received_at", &r.now),
            ("create_time", &r.now),
            ("update_time", &r.now),
            ("original_due_time", &r.due),
            ("due_time", &r.due),
            // No route: the request is stored unrouted.
            ("unrouted", &1_i64),
            ("fingerprint", &r.fingerprint),
            ("version", &1_i64),
            ("audit_head", &r.audit_head),
            // The tip of its chain: its `submitted` event.
            ("last_event_sequence", &1_i64),
            ("last_event_hash", &r.hash),
            // Its clock starts at receipt, with no pause.
            ("clock_start_time", &r.now),
            ("clock_pauses", &"[]"),
        ];
        row.extend(
            NULL_REQUEST_COLUMNS
                .iter()
                .map(|c| (*c, &Null as &dyn ToSql)),
        );
        row
    }

    /// Its `submitted` event, the first of its trail.
    fn event<'a>(&'a self, r: &'a Fresh) -> Row<'a> {
        let mut row: Row<'a> = vec![
            ("data_subject_request_id", &r.id),
            ("controller_id", &ANCHOR_CONTROLLER),
            ("event_type", &"submitted"),
            ("event_time", &r.now),
            ("actor_id", &self.actor),
            ("actor_role", &"controller"),
            ("to_state", &"in_progress"),
            ("reason", &"accepted"),
            ("sequence", &1_i64),
            ("hash", &r.hash),
        ];
        row.extend(NULL_EVENT_COLUMNS.iter().map(|c| (*c, &Null as &dyn ToSql)));
        row
    }
}

/// `INSERT INTO table (columns) VALUES (?, …), …` for `rows` rows of the
/// columns of `row`, then `tail`.
fn multi_row(table: &str, row: &Row<'_>, rows: usize, tail: &str) -> String {
    let columns: Vec<&str> = row.iter().map(|(name, _)| *name).collect();
    let places = format!("({})", vec!["?"; columns.len()].join(", "));
    format!(
        "INSERT INTO {table} ({}) VALUES {}{tail}",
        columns.join(", "),
        vec![places; rows].join(", ")
    )
}

/// The values of `rows`, one row after the other.
fn values<'a>(rows: impl Iterator<Item = Row<'a>>) -> impl Iterator<Item = &'a dyn ToSql> {
    rows.flat_map(|row| row.into_iter().map(|(_, value)| value))
}

/// The writer: batches until `duration` is up; the requests written and
/// the time taken.
fn write(file: &Path, duration: Duration, actor: String) -> rusqlite::Result<(u64, Duration)> {
    let conn = Connection::open(file)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // As the store writes a group: the rows inserted unless their
    // request_id was taken, their ids returned, then their events. One
    // multi-row statement of each a batch wrote about 10 % more requests a
    // second than a loop of single-row inserts in the same transaction
    // (five alternating 4 s runs on a 2-core machine), so that is the shape
    // measured.
    let fixed = Fixed::new(actor);
    let sample = Fresh::new(0);
    let mut requests = conn.prepare(&multi_row(
        "data_subject_requests",
        &fixed.request(&sample),
        BATCH,
        " ON CONFLICT (controller_id, request_id) DO NOTHING RETURNING id",
    ))?;
    let mut events = conn.prepare(&multi_row(
        "request_events",
        &fixed.event(&sample),
        BATCH,
        "",
    ))?;
    // The store's look-up of the open requests a group may repeat, all
    // its (controller, subject, type) keys in one JSON parameter.
    let mut open = conn.prepare(OPEN_REQUESTS_ABOUT)?;
    let mut written: u64 = 0;
    let started = Instant::now();
    while started.elapsed() < duration {
        let batch: Vec<Fresh> = (0..BATCH as u64).map(|i| Fresh::new(written + i)).collect();
        // As the store begins a write: the write lock up front.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let keys: Vec<serde_json::Value> = batch
            .iter()
            .map(|r| serde_json::json!([ANCHOR_CONTROLLER, r.external_id, "access"]))
            .collect();
        let mut found = open.query([serde_json::Value::Array(keys).to_string()])?;
        while found.next()?.is_some() {}
        drop(found);
        let mut ids = requests.query(params_from_iter(values(
            batch.iter().map(|r| fixed.request(r)),
        )))?;
        let mut inserted = 0;
        while ids.next()?.is_some() {
            inserted += 1;
        }
        drop(ids);
        if inserted != BATCH {
            conn.execute_batch("ROLLBACK")?;
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "{inserted} of {BATCH} requests inserted"
            )));
        }
        events.execute(params_from_iter(values(
            batch.iter().map(|r| fixed.event(r)),
        )))?;
        conn.execute_batch("COMMIT")?;
        written += BATCH as u64;
    }
    Ok((written, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::schema::Schema;

    #[test]
    fn sealed_values_are_as_long_as_the_stores() {
        // 24 + 19 + 16 = 59 bytes: 80 base64 characters, after `v2.`, the
        // key id and a dot.
        assert_eq!(sealed_len("subject@example.org".len()), 96);
        // 24 + 10 + 16 = 50 bytes: 68 characters, the last padded.
        assert_eq!(sealed_len("1985-12-10".len()), 84);
        // As the store seals them.
        let key = gdpr_intake::store::DataKey::from_bytes(&[7u8; 32]).expect("a key");
        for value in ["subject@example.org", "1985-12-10"] {
            let sealed = key
                .seal("acme", uuid::Uuid::nil(), "subject_email", value)
                .expect("sealed");
            assert_eq!(sealed.len(), sealed_len(value.len()), "{sealed}");
        }
    }

    #[test]
    fn the_rows_are_whole_rows_of_the_sqlite_schema() {
        let schema = Schema::of_migrations("sqlite");
        let fixed = Fixed::new("loadgen-controller@loadgen".to_owned());
        let fresh = Fresh::new(7);
        for (table, row) in [
            ("data_subject_requests", fixed.request(&fresh)),
            ("request_events", fixed.event(&fresh)),
        ] {
            let inserts = schema.inserts(&multi_row(table, &row, 2, ""));
            let (_, named) = &inserts[0];
            // An event's place in the change feed is its row number, which
            // SQLite gives it, as it does for the store's rows.
            let columns: Vec<String> = schema
                .columns(table)
                .iter()
                .filter(|c| *c != "feed_position")
                .cloned()
                .collect();
            assert_eq!(
                schema.sorted(named),
                schema.sorted(&columns),
                "{table}: every column once"
            );
        }
        assert_eq!(fresh.fingerprint.len(), 64);
        // As long as the store's own hashes, which name their key.
        let key = gdpr_intake::store::AuditKey::from_bytes(&[7u8; 32]).expect("a key");
        let stored = gdpr_intake::store::audit::stamp(key.primary_id(), &[0; 32]);
        assert_eq!(fresh.audit_head.len(), stored.len());
        assert_eq!(fresh.hash.len(), stored.len());
    }

    #[test]
    fn placeholders_come_in_rows() {
        let row: Row<'_> = vec![("a", &1_i64), ("b", &Null)];
        assert_eq!(
            multi_row("t", &row, 3, " RETURNING a"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) RETURNING a"
        );
    }

    #[tokio::test]
    async fn a_short_run_writes_whole_batches_into_a_migrated_file() {
        let anchor = submit_write_set(Duration::from_millis(50), "loadgen-controller@loadgen")
            .await
            .expect("the anchor runs");
        assert!(anchor.count >= BATCH as u64);
        assert_eq!(anchor.count % BATCH as u64, 0);
        assert!(anchor.per_second > 0.0);
    }
}
