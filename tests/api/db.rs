//! Fresh databases for tests: a temporary directory for SQLite, and, when
//! `TEST_DATABASE_URL` names a PostgreSQL server, a new database on it with
//! a unique name.

#![allow(
    clippy::expect_used,
    reason = "a test without its database cannot run; failing says why"
)]

use std::sync::Once;

use gdpr_intake::store::StoreConfig;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

/// The variable that enables the PostgreSQL tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

static SKIP_NOTICE: Once = Once::new();

/// A configuration for SQLite in a fresh temporary directory, which lives
/// as long as the returned `TempDir`. The data directory inside it does not
/// exist yet, so opening the store also checks that it is created.
pub async fn sqlite_config() -> (StoreConfig, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    (StoreConfig::sqlite(dir.path().join("data")), dir)
}

/// A configuration for a new, empty database on the server named by
/// `TEST_DATABASE_URL`, or `None` (said once on stderr) when it is unset.
pub async fn postgres_config() -> Option<StoreConfig> {
    let Ok(server) = std::env::var(TEST_DATABASE_URL) else {
        SKIP_NOTICE.call_once(|| {
            eprintln!("postgres tests skipped: {TEST_DATABASE_URL} is not set");
        });
        return None;
    };
    // Unique per test, so tests run in parallel without seeing each other;
    // the prefix tells them apart from real databases on a shared server.
    let name = format!("gdpr_intake_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("TEST_DATABASE_URL reaches a postgresql server");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("the test server lets us create a database");
    admin.close().await.expect("the admin connection closes");
    Some(StoreConfig::postgres(with_database(&server, &name)))
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
/// store; for tests that damage a row on purpose.
pub async fn execute_raw(config: &StoreConfig, statement: &'static str) {
    match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.expect("postgres connects");
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect("the raw statement runs");
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(config.data_dir.join("gdpr-intake.db"));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite opens");
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect("the raw statement runs");
        }
    }
}

/// [`execute_raw`] for a statement built at run time (ids of rows a test
/// damages on purpose).
pub async fn execute_raw_owned(config: &StoreConfig, statement: String) {
    match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.expect("postgres connects");
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("the raw statement runs");
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(config.data_dir.join("gdpr-intake.db"));
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite opens");
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("the raw statement runs");
        }
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
