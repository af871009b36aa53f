//! The PostgreSQL backend.
//!
//! Transactions run at the default READ COMMITTED level, which is enough
//! here: a duplicate insert waits on the unique index for the first one to
//! finish and then sees its row; an update locks its row, so a concurrent
//! update with the same expected version finds the new version and changes
//! nothing. `synchronous_commit` is left at the server's setting (on by
//! default): a response is sent only after its commit is durable.

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::codec::{self, EventColumns, RequestColumns};
use super::{Cursor, InsertOutcome, RequestFilter, Store, StoreConfig, StoreError, error, sql};
use crate::domain::request::{DataSubjectRequest, NewEvent, RequestEvent};

/// PostgreSQL keeps ids as UUID.
type Id = Uuid;

/// A pool of connections to one PostgreSQL database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Classifies SQLSTATE codes: the server or the network going away, too
/// many connections or a statement running out of time are worth a retry;
/// anything else is a fault.
fn classify(e: &dyn DatabaseError) -> StoreError {
    let code = e.code().unwrap_or_default();
    // The message, never the detail: the detail may quote row values.
    let what = format!("sqlstate {code}: {}", e.message());
    match code.as_ref() {
        c if c.starts_with("08") => StoreError::Unavailable(what),
        // admin_shutdown, crash_shutdown, cannot_connect_now,
        // too_many_connections, query_canceled (statement_timeout).
        "57P01" | "57P02" | "57P03" | "53300" | "57014" => StoreError::Unavailable(what),
        _ => StoreError::Internal(what),
    }
}

fn map(e: sqlx::Error) -> StoreError {
    error::map(e, classify)
}

fn request_from_row(row: &PgRow) -> Result<DataSubjectRequest, StoreError> {
    RequestColumns::read::<_, Id>(row)
        .map_err(map)?
        .into_domain()
}

impl PostgresStore {
    /// Connects to `config.database_url` with a pool of
    /// `config.max_connections`; every connection runs with
    /// `statement_timeout` set from the configuration.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config.database_url.as_deref().ok_or_else(|| {
            StoreError::Internal("no database url is configured for postgresql".to_owned())
        })?;
        // The parse error never quotes the url, which may hold a password.
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("the database url is not valid: {e}")))?;
        let options = options.application_name("gdpr-intake").options([(
            "statement_timeout",
            format!("{}ms", config.statement_timeout.as_millis()),
        )]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(map)?;
        Ok(Self { pool })
    }

    /// Applies the migrations in `migrations/postgres` that are not applied
    /// yet. sqlx holds an advisory lock meanwhile, so instances starting
    /// together do not race.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| map(e.into()))
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map)
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(name = "gdpr.store.ping", skip_all, fields(backend = "postgres"))]
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
        fields(backend = "postgres", controller_id = %request.controller_id, id = %request.id)
    )]
    async fn insert_request(
        &self,
        request: &DataSubjectRequest,
        event: &NewEvent,
    ) -> Result<InsertOutcome, StoreError> {
        let columns = RequestColumns::from_domain(request)?;
        let mut tx = self.begin().await?;
        let inserted = columns
            .bind_insert::<Postgres, Id>(sqlx::query(sql::INSERT_REQUEST))
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if inserted == 1 {
            EventColumns::bind_insert::<Postgres, Id>(
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
        // DO NOTHING fired, so the conflicting row was committed before this
        // statement finished; READ COMMITTED gives the next statement a
        // snapshot that sees it.
        let row = sqlx::query(sql::SELECT_REQUEST_BY_REQUEST_ID)
            .bind(request.controller_id.as_str())
            .bind(request.request_id)
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
        fields(backend = "postgres", controller_id = %controller_id, id = %id)
    )]
    async fn get_request(
        &self,
        controller_id: &str,
        id: Uuid,
    ) -> Result<Option<DataSubjectRequest>, StoreError> {
        sqlx::query(sql::SELECT_REQUEST)
            .bind(id)
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
        fields(backend = "postgres", controller_id = %controller_id, limit = limit)
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
            .bind(after_id)
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
            backend = "postgres",
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
        let mut tx = self.begin().await?;
        let updated = columns
            .bind_update::<Postgres, Id>(sqlx::query(sql::UPDATE_REQUEST), expected_version)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if updated != 1 {
            // Dropping the transaction rolls it back; nothing was written.
            return Err(StoreError::Conflict);
        }
        EventColumns::bind_insert::<Postgres, Id>(
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
            backend = "postgres",
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
            .bind(id)
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
