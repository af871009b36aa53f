//! The SQLite backend: one database file in the data directory, in WAL mode
//! with `synchronous = FULL`. What differs from PostgreSQL: ids are TEXT,
//! result codes are read as SQLite's, and writes take turns (the write gate
//! and `BEGIN IMMEDIATE`, see [`super::sql_store`]) instead of row locks.

use sqlx::error::DatabaseError;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteQueryResult, SqliteSynchronous,
};

use super::feed::FeedPosition;
use super::lend::Connections;
use super::sql_store::{Backend, SqlStore, SubjectKey};
use super::writes::Together;
use super::{RequestFilter, StoreConfig, StoreError, sql};

/// The database file's name inside the data directory.
pub(super) const DATABASE_FILE: &str = "gdpr-intake.db";
/// The writing connection's page cache, in KiB (SQLite's unit for a
/// negative `cache_size`): the index pages that new requests and claims
/// touch, beyond the 1 MiB every reading connection keeps.
const WRITER_CACHE_SIZE: &str = "-16384";
/// Each reading connection's page cache, in KiB: the pages of the indexes
/// a read descends. The rows themselves come from the operating system's
/// file cache, which all connections share, at the cost of a copy.
const READER_CACHE_SIZE: &str = "-1024";

/// The SQLite side of [`SqlStore`].
#[derive(Debug)]
pub struct Sqlite;

/// A pool of connections to `<data_dir>/gdpr-intake.db`.
pub type SqliteStore = SqlStore<Sqlite>;

impl Backend for Sqlite {
    type Db = sqlx::Sqlite;
    /// Lower-case hyphenated TEXT.
    type Id = String;
    const NAME: &'static str = "sqlite";
    const LOCKING: sql::Locking = sql::NO_ROW_LOCKS;
    /// Takes SQLite's write lock up front: a deferred transaction that reads
    /// first and writes later fails at once with SQLITE_BUSY when another
    /// connection (another process, a migration tool) wrote in between,
    /// while `BEGIN IMMEDIATE` waits for the lock under the busy timeout.
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const BEGIN_TASK: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const SERIAL_WRITES: bool = true;
    // SQLite looks a named parameter up by a linear search of the
    // statement's names, once per parameter when binding: with `$N`, a
    // statement of n parameters costs n² to bind.
    const PLACEHOLDERS: sql::Placeholders = sql::Placeholders::Anonymous;
    const TOGETHER: Together = Together::Statements;
    const PAGE_OF_REQUESTS: Option<fn(&RequestFilter) -> &'static str> =
        Some(sql::page_of_requests);

    /// The keys as one JSON parameter.
    fn open_requests_about(keys: &[SubjectKey]) -> Query<'static, sqlx::Sqlite, SqliteArguments> {
        use serde_json::Value;
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                Value::Array(vec![
                    k.controller_id.as_str().into(),
                    k.external_id.as_str().into(),
                    k.request_type.into(),
                ])
            })
            .collect();
        sqlx::query(sql::OPEN_REQUESTS_ABOUT_SQLITE).bind(Value::Array(keys).to_string())
    }

    const FEED_END: &'static str = sql::FEED_END_SQLITE;

    fn feed_page(
        controller_id: &str,
        after: FeedPosition,
        limit: u32,
    ) -> Query<'_, sqlx::Sqlite, SqliteArguments> {
        sqlx::query(sql::FEED_PAGE_SQLITE)
            .bind(controller_id)
            .bind(after.number)
            .bind(i64::from(limit))
    }

    /// Classifies SQLite result codes. Extended codes carry the primary code
    /// in their low byte.
    fn classify(e: &dyn DatabaseError) -> StoreError {
        const BUSY: i32 = 5;
        const LOCKED: i32 = 6;
        const IOERR: i32 = 10;
        const CORRUPT: i32 = 11;
        const FULL: i32 = 13;
        const CANTOPEN: i32 = 14;
        const NOTADB: i32 = 26;
        let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
        let what = format!("sqlite error {code}: {}", e.message());
        match code & 0xff {
            BUSY | LOCKED | IOERR | FULL | CANTOPEN => StoreError::Unavailable(what),
            CORRUPT | NOTADB => StoreError::Corrupt(what),
            _ => StoreError::Internal(what),
        }
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqlStore<Sqlite> {
    /// Opens (creating them if missing) the data directory and the database
    /// file, in WAL mode with `synchronous = FULL`, so that a commit has
    /// reached the disk before the call that made it returns.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the data directory {}: {e}",
                    config.data_dir.display()
                ))
            })?;
        let options = SqliteConnectOptions::new()
            .filename(config.data_dir.join(DATABASE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(config.statement_timeout)
            // Statement journals (a multi-row insert's, a savepoint's) and
            // temporary b-trees stay in memory: past 64 KiB SQLite would
            // otherwise move a statement journal into a temporary file,
            // created and deleted again by each large statement.
            .pragma("temp_store", "memory");
        let pool = Connections::open(
            options.clone().pragma("cache_size", READER_CACHE_SIZE),
            config.max_connections,
            config.acquire_timeout,
        )
        .await
        .map_err(|e| super::error::map(e, Sqlite::classify))?;
        // Writes take turns anyway (the write gate), so one connection
        // serves them all, and its page cache is never invalidated by
        // another writer: it keeps what the inserts and claims touch.
        let writer = Connections::open(
            options.pragma("cache_size", WRITER_CACHE_SIZE),
            1,
            config.acquire_timeout,
        )
        .await
        .map_err(|e| super::error::map(e, Sqlite::classify))?;
        Ok(Self::new(pool, Some(writer), config))
    }

    /// Applies the migrations in `migrations/sqlite` that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await?;
        let mut conn = self.lend().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut *conn)
            .await
            .map_err(|e| super::error::map(e.into(), Sqlite::classify))?;
        conn.give_back();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// `PRAGMA name` as the connection answers it, as text.
    async fn pragma(conn: &mut sqlx::SqliteConnection, name: &str) -> String {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        match row.try_get::<String, _>(0) {
            Ok(text) => text,
            Err(_) => row.try_get::<i64, _>(0).unwrap().to_string(),
        }
    }

    #[tokio::test]
    async fn reading_and_writing_connections_are_durable_and_keep_temporary_data_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&StoreConfig::sqlite(dir.path()))
            .await
            .unwrap();
        let reader = store.lend().await.unwrap();
        let writer = store.lend_writer().await.unwrap();
        for (which, mut conn) in [("reader", reader), ("writer", writer)] {
            assert_eq!(pragma(&mut conn, "journal_mode").await, "wal", "{which}");
            // FULL: a commit is on the disk before it returns.
            assert_eq!(pragma(&mut conn, "synchronous").await, "2", "{which}");
            assert_eq!(pragma(&mut conn, "foreign_keys").await, "1", "{which}");
            // MEMORY: no statement journal spills into a temporary file.
            assert_eq!(pragma(&mut conn, "temp_store").await, "2", "{which}");
            conn.give_back();
        }
    }
}
