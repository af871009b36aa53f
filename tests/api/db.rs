//! Fresh databases for tests: a temporary directory for SQLite, and, when
//! `TEST_DATABASE_URL` names a PostgreSQL server, a new database on it with
//! a unique name.

#![allow(
    clippy::expect_used,
    reason = "a test without its database cannot run; failing says why"
)]

use std::sync::Once;

use gdpr_intake::store::{AuditKey, DataKey, StoreConfig};
use rand_core::{OsRng, RngCore};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

/// The variable that names the PostgreSQL server of the tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Where the tests look for PostgreSQL when `TEST_DATABASE_URL` is unset:
/// the default local server, as a fresh machine with PostgreSQL has it.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every test that needs PostgreSQL has `postgres` in its path (a module
/// `postgres`, or the word in its name), so that a skipped run can say how
/// many it skipped.
const POSTGRES_TEST_MARK: &str = "postgres";

/// The server the PostgreSQL tests use, decided once per test binary.
static SERVER: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();

/// Said once per test binary: which server the PostgreSQL tests use, or how
/// many of them this run skips.
static NOTICE: Once = Once::new();

/// A fresh pair of keys (audit, data) for a test's store: a store is
/// only ever built with keys it is given.
pub fn test_keys() -> (AuditKey, DataKey) {
    let mut bytes = [0u8; 64];
    OsRng.fill_bytes(&mut bytes);
    (
        AuditKey::from_bytes(&bytes[..32]).expect("32 bytes make an audit key"),
        DataKey::from_bytes(&bytes[32..]).expect("32 bytes make a data key"),
    )
}

/// `config` with a fresh pair of [`test_keys`].
pub fn keyed(config: StoreConfig) -> StoreConfig {
    let (audit, data) = test_keys();
    config.with_keys(audit, data)
}

/// A configuration for SQLite in a fresh temporary directory, which lives
/// as long as the returned `TempDir`. The data directory inside it does not
/// exist yet, so opening the store also checks that it is created.
pub async fn sqlite_config() -> (StoreConfig, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    (keyed(StoreConfig::sqlite(dir.path().join("data"))), dir)
}

/// A configuration for a new, empty database on the PostgreSQL server of
/// the tests: `TEST_DATABASE_URL`, or else the default local server if one
/// answers. `None` when there is none; the first such test then prints how
/// many PostgreSQL tests the run skips and how to run them.
pub async fn postgres_config() -> Option<StoreConfig> {
    let Some(server) = SERVER.get_or_init(find_server).await.clone() else {
        NOTICE.call_once(|| {
            say(&format!(
                "postgres: {} PostgreSQL tests skipped: {TEST_DATABASE_URL} is unset or empty and \
                 no server answers at {DEFAULT_SERVER}; set \
                 {TEST_DATABASE_URL}=postgres://USER@HOST:PORT/DB to run them",
                postgres_tests_in_this_run()
            ));
        });
        return None;
    };
    // Unique per test, so tests run in parallel without seeing each other;
    // the prefix tells them apart from real databases on a shared server.
    let name = format!("gdpr_intake_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("the postgresql server of the tests answers");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("the test server lets us create a database");
    admin.close().await.expect("the admin connection closes");
    Some(keyed(StoreConfig::postgres(with_database(&server, &name))))
}

/// `TEST_DATABASE_URL` if set (a server that does not answer is then a
/// failure, not a skip; set but empty, none), else the default local
/// server if it answers.
async fn find_server() -> Option<String> {
    if let Ok(server) = std::env::var(TEST_DATABASE_URL) {
        // Set but empty: PostgreSQL is switched off for this run.
        return (!server.is_empty()).then_some(server);
    }
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        PgConnection::connect(DEFAULT_SERVER),
    )
    .await;
    match probe {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            NOTICE.call_once(|| {
                say(&format!(
                    "postgres: {TEST_DATABASE_URL} is not set; the PostgreSQL tests use the \
                     server at {DEFAULT_SERVER}"
                ));
            });
            Some(DEFAULT_SERVER.to_owned())
        }
        _ => None,
    }
}

/// Writes `line` to the real standard error: the test harness captures
/// what `eprintln!` prints inside a passing test and never shows it.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// How many tests of this run need PostgreSQL: the harness lists the
/// tests that the run's own filters select (`--list`), and those with
/// [`POSTGRES_TEST_MARK`] in their path are counted.
fn postgres_tests_in_this_run() -> usize {
    let Ok(exe) = std::env::current_exe() else {
        return 0;
    };
    let listed = std::process::Command::new(exe)
        .arg("--list")
        .arg("--format=terse")
        .args(selection_args(std::env::args().skip(1)))
        .output();
    let Ok(listed) = listed else {
        return 0;
    };
    postgres_tests_in_this_run_of(&String::from_utf8_lossy(&listed.stdout))
}

/// The PostgreSQL tests in a `--list --format=terse` listing.
fn postgres_tests_in_this_run_of(listing: &str) -> usize {
    listing
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .filter(|name| name.contains(POSTGRES_TEST_MARK))
        .count()
}

/// The arguments of a test run that decide which tests run (filters,
/// `--exact`, `--skip`), without those about how they run.
fn selection_args(args: impl Iterator<Item = String>) -> Vec<String> {
    /// Options of the harness that take a value as the next argument.
    const WITH_VALUE: [&str; 6] = [
        "--test-threads",
        "--format",
        "--color",
        "--logfile",
        "-Z",
        "--shuffle-seed",
    ];
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            kept.push(arg);
            kept.extend(args.next());
        } else if arg == "--exact" || arg.starts_with("--skip=") {
            kept.push(arg);
        } else if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            kept.push(arg);
        }
    }
    kept
}

/// `url` with its database (the path) replaced by `name`, keeping any
/// query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{authority}/{name}?{query}"),
        None => format!("{authority}/{name}"),
    }
}

/// Runs `statement` on the database of `config` directly, bypassing the
/// store, on a connection of its own.
async fn run_raw(config: &StoreConfig, statement: String) -> Result<(), sqlx::Error> {
    match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.expect("postgres connects");
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await?;
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(config.data_dir.join("gdpr-intake.db"));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite opens");
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await?;
        }
    }
    Ok(())
}

/// Runs `statement` on the database of `config` directly, bypassing the
/// store; for tests that damage a row on purpose.
pub async fn execute_raw(config: &StoreConfig, statement: &'static str) {
    execute_raw_owned(config, statement.to_owned()).await;
}

/// [`execute_raw`] for a statement built at run time (ids of rows a test
/// damages on purpose).
pub async fn execute_raw_owned(config: &StoreConfig, statement: String) {
    run_raw(config, statement)
        .await
        .expect("the raw statement runs");
}

/// The code of the database error `statement` fails with (a SQLSTATE on
/// PostgreSQL, SQLite's extended result code); panics if it succeeds.
pub async fn refusal_code(config: &StoreConfig, statement: &'static str) -> String {
    match run_raw(config, statement.to_owned()).await {
        Ok(()) => panic!("the database accepted {statement}"),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        Err(other) => panic!("{statement} failed with something else: {other}"),
    }
}

/// The one integer `statement` selects, read on a connection of its own,
/// bypassing the store.
pub async fn fetch_count(config: &StoreConfig, statement: String) -> i64 {
    match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.expect("postgres connects");
            sqlx::query_scalar(AssertSqlSafe(statement))
                .fetch_one(&mut conn)
                .await
                .expect("the raw query runs")
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(config.data_dir.join("gdpr-intake.db"));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite opens");
            sqlx::query_scalar(AssertSqlSafe(statement))
                .fetch_one(&mut conn)
                .await
                .expect("the raw query runs")
        }
    }
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
        ("postgres://h/", "postgres://h/x"),
    ] {
        assert_eq!(with_database(url, "x"), expected, "{url}");
    }
}

#[test]
fn a_run_is_listed_with_its_own_filters_only() {
    let args = |list: &[&str]| {
        selection_args(list.iter().map(|s| (*s).to_owned()))
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        args(&["store::", "--nocapture", "--test-threads", "2", "--exact"]),
        ["store::", "--exact"]
    );
    assert_eq!(
        args(&[
            "--skip",
            "tls",
            "--format=pretty",
            "--skip=crash",
            "-q",
            "dsr"
        ]),
        ["--skip", "tls", "--skip=crash", "dsr"]
    );
    assert!(args(&["--color", "never", "--show-output"]).is_empty());
}

/// The count reads the harness's own listing, with the run's filters.
#[test]
fn skipped_tests_are_counted_from_the_harness_list() {
    let list = |filter: &str| {
        let listed = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--list", "--format=terse", filter])
            .output()
            .expect("the harness lists its tests");
        String::from_utf8_lossy(&listed.stdout).into_owned()
    };
    let one = list("store::postgres::ping_answers");
    assert_eq!(postgres_tests_in_this_run_of(&one), 1, "{one}");
    let none = list("store::sqlite::");
    assert!(none.lines().count() > 10, "{none}");
    assert_eq!(postgres_tests_in_this_run_of(&none), 0, "{none}");
}

/// Makes the SQLite database of `config` as a release that shipped only the
/// migrations named below `before` left it, holding every row of the fully
/// migrated SQLite database of `from` in the columns that schema has (each
/// table's rows in their order): a database written before an upgrade,
/// whose history the current server wrote.
pub async fn sqlite_before(from: &StoreConfig, config: &StoreConfig, before: &str) {
    use sqlx::Row as _;
    std::fs::create_dir_all(&config.data_dir).expect("data directory");
    let old = tempfile::tempdir().expect("a directory");
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < before {
            std::fs::copy(&path, old.path().join(&name)).expect("copied");
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(config.data_dir.join("gdpr-intake.db"))
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("opens");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("the old migrations")
        .run(&mut conn)
        .await
        .expect("migrated");
    let newer = from.data_dir.join("gdpr-intake.db");
    sqlx::query(AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS newer",
        newer.display()
    )))
    .execute(&mut conn)
    .await
    .expect("attached");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY rowid",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut copy = String::from("PRAGMA foreign_keys = OFF; BEGIN;");
    for table in tables {
        let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info(?1)")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .expect("columns")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        let columns = columns.join(", ");
        copy.push_str(&format!(
            "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM newer.{table} ORDER BY rowid;"
        ));
    }
    copy.push_str("COMMIT; PRAGMA foreign_keys = ON;");
    sqlx::raw_sql(AssertSqlSafe(copy))
        .execute(&mut conn)
        .await
        .expect("rows copied");
    conn.close().await.expect("closes");
}

/// [`sqlite_before`] for PostgreSQL: makes the (new, empty) database of
/// `config` as the migrations named below `before` leave it and copies
/// into it every row of the fully migrated database of `from`, in the
/// columns that schema has.
pub async fn postgres_before(from: &StoreConfig, config: &StoreConfig, before: &str) {
    let old = tempfile::tempdir().expect("a directory");
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < before {
            std::fs::copy(&path, old.path().join(&name)).expect("copied");
        }
    }
    let url = |c: &StoreConfig| c.database_url.clone().expect("a postgres configuration");
    let mut target = PgConnection::connect(&url(config)).await.expect("connects");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("the old migrations")
        .run(&mut target)
        .await
        .expect("migrated");
    let mut source = PgConnection::connect(&url(from)).await.expect("connects");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .fetch_all(&mut target)
    .await
    .expect("tables");
    // Foreign keys are checked by triggers, which a replica session skips:
    // the tables go in whatever order.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut target)
        .await
        .expect("replica session");
    for table in tables {
        let rows: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COALESCE(json_agg(t), '[]')::text FROM {table} t"
        )))
        .fetch_one(&mut source)
        .await
        .expect("rows read");
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} OVERRIDING SYSTEM VALUE \
             SELECT * FROM json_populate_recordset(NULL::{table}, $1::json)"
        )))
        .bind(rows)
        .execute(&mut target)
        .await
        .expect("rows copied");
    }
    target.close().await.expect("closes");
    source.close().await.expect("closes");
}
