//! The SQLite backend: one database file in the data directory.
//!
//! Writes are serialised twice over, on purpose. Inside the process a fair
//! async mutex lets one write transaction run at a time, so writers queue in
//! order instead of polling SQLite's busy handler, and they hold at most one
//! pooled connection between them, leaving the rest to readers (which WAL
//! never blocks). Each write transaction also starts with `BEGIN IMMEDIATE`,
//! which takes SQLite's write lock up front: a deferred transaction that
//! reads first and writes later fails at once with SQLITE_BUSY when another
//! connection (another process, a migration tool) wrote in between, while
//! `BEGIN IMMEDIATE` waits for the lock under the busy timeout.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::codec::{self, EventColumns, IdColumn, RequestColumns};
use super::{Cursor, InsertOutcome, RequestFilter, Store, StoreConfig, StoreError, error, sql};
use crate::domain::request::{DataSubjectRequest, NewEvent, RequestEvent};

/// The database file's name inside the data directory.
const DATABASE_FILE: &str = "gdpr-intake.db";

/// SQLite keeps ids as lower-case hyphenated TEXT.
type Id = String;

/// A pool of connections to `<data_dir>/gdpr-intake.db`.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One write transaction at a time in this process (see the module
    /// documentation).
    write_gate: Mutex<()>,
    /// How long a writer waits for its turn, as for a pooled connection.
    acquire_timeout: Duration,
}

/// Classifies SQLite result codes. Extended codes carry the primary code in
/// their low byte.
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

fn map(e: sqlx::Error) -> StoreError {
    error::map(e, classify)
}

fn request_from_row(row: &SqliteRow) -> Result<DataSubjectRequest, StoreError> {
    RequestColumns::read::<_, Id>(row)
        .map_err(map)?
        .into_domain()
}

impl SqliteStore {
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
            .busy_timeout(config.statement_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(map)?;
        Ok(Self {
            pool,
            write_gate: Mutex::new(()),
            acquire_timeout: config.acquire_timeout,
        })
    }

    /// Applies the migrations in `migrations/sqlite` that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| map(e.into()))
    }

    /// Waits for this process's write turn.
    async fn write_turn(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        tokio::time::timeout(self.acquire_timeout, self.write_gate.lock())
            .await
            .map_err(|_| {
                StoreError::Unavailable("timed out waiting for the database write lock".to_owned())
            })
    }

    /// Starts a write transaction that already holds SQLite's write lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map)
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(name = "gdpr.store.ping", skip_all, fields(backend = "sqlite"))]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map)
    }

    #[tracing::instrument(
        name = "gdpr.store.insert_request",
        skip_all,
        fields(backend = "sqlite", controller_id = %request.controller_id, id = %request.id)
    )]
    async fn insert_request(
        &self,
        request: &DataSubjectRequest,
        event: &NewEvent,
    ) -> Result<InsertOutcome, StoreError> {
        let columns = RequestColumns::from_domain(request)?;
        let _turn = self.write_turn().await?;
        let mut tx = self.begin_write().await?;
        let inserted = columns
            .bind_insert::<Sqlite, Id>(sqlx::query(sql::INSERT_REQUEST))
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if inserted == 1 {
            EventColumns::bind_insert::<Sqlite, Id>(
                sqlx::query(sql::INSERT_EVENT),
                request.id,
                &request.controller_id,
                event,
            )
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)?;
            return Ok(InsertOutcome::Created);
        }
        let row = sqlx::query(sql::SELECT_REQUEST_BY_REQUEST_ID)
            .bind(request.controller_id.as_str())
            .bind(Id::from_uuid(request.request_id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?
            .ok_or_else(|| {
                StoreError::Internal("a conflicting request vanished during insert".to_owned())
            })?;
        let existing = request_from_row(&row)?;
        tx.commit().await.map_err(map)?;
        Ok(InsertOutcome::Existing(Box::new(existing)))
    }

    #[tracing::instrument(
        name = "gdpr.store.get_request",
        skip_all,
        fields(backend = "sqlite", controller_id = %controller_id, id = %id)
    )]
    async fn get_request(
        &self,
        controller_id: &str,
        id: Uuid,
    ) -> Result<Option<DataSubjectRequest>, StoreError> {
        sqlx::query(sql::SELECT_REQUEST)
            .bind(Id::from_uuid(id))
            .bind(controller_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?
            .map(|row| request_from_row(&row))
            .transpose()
    }

    #[tracing::instrument(
        name = "gdpr.store.list_requests",
        skip_all,
        fields(backend = "sqlite", controller_id = %controller_id, limit = limit)
    )]
    async fn list_requests(
        &self,
        controller_id: &str,
        filter: &RequestFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        let (after_time, after_id) = codec::cursor_values(after);
        let mut query = sqlx::query(sql::list_requests(filter))
            .bind(controller_id)
            .bind(after_time)
            .bind(Id::from_uuid(after_id))
            .bind(i64::from(limit));
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(request_type) = filter.request_type {
            query = query.bind(request_type.as_str());
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(request_from_row)
            .collect()
    }

    #[tracing::instrument(
        name = "gdpr.store.update_request",
        skip_all,
        fields(
            backend = "sqlite",
            controller_id = %request.controller_id,
            id = %request.id,
            expected_version = expected_version
        )
    )]
    async fn update_request(
        &self,
        request: &DataSubjectRequest,
        expected_version: i64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let columns = RequestColumns::from_domain(request)?;
        let _turn = self.write_turn().await?;
        let mut tx = self.begin_write().await?;
        let updated = columns
            .bind_update::<Sqlite, Id>(sqlx::query(sql::UPDATE_REQUEST), expected_version)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if updated != 1 {
            // Dropping the transaction rolls it back; nothing was written.
            return Err(StoreError::Conflict);
        }
        EventColumns::bind_insert::<Sqlite, Id>(
            sqlx::query(sql::INSERT_EVENT),
            request.id,
            &request.controller_id,
            event,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if error::is_unique_violation(&e) {
                StoreError::Conflict
            } else {
                map(e)
            }
        })?;
        tx.commit().await.map_err(map)
    }

    #[tracing::instrument(
        name = "gdpr.store.list_events",
        skip_all,
        fields(
            backend = "sqlite",
            controller_id = %controller_id,
            id = %id,
            after_sequence = after_sequence
        )
    )]
    async fn list_events(
        &self,
        controller_id: &str,
        id: Uuid,
        after_sequence: i64,
        limit: u32,
    ) -> Result<Vec<RequestEvent>, StoreError> {
        sqlx::query(sql::LIST_EVENTS)
            .bind(Id::from_uuid(id))
            .bind(controller_id)
            .bind(after_sequence)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| EventColumns::read::<_, Id>(row).map_err(map)?.into_domain())
            .collect()
    }
}
