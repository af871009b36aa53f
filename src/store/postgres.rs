//! The PostgreSQL backend.
//!
//! Transactions run at the default READ COMMITTED level, which is enough
//! here: a duplicate insert waits on the unique index for the first one to
//! finish and then sees its row; an update locks its row, so a concurrent
//! update with the same expected version finds the new version and changes
//! nothing. `synchronous_commit` is left at the server's setting (on by
//! default): a response is sent only after its commit is durable.
//!
//! Tasks need row locks on top. Every transaction that writes a task event
//! holds its request's row, because the event takes the request's next
//! sequence. Locks are taken in one order, so that no two transactions
//! wait for each other in a circle: task rows first, then request rows,
//! several requests in id order. Claimers lock their tasks with `SKIP
//! LOCKED`, so they never wait for a task, only for a request; a task
//! operation waits for its task, then its request; cancelling a request's
//! open tasks locks them before it writes the request. Task and request
//! rows are locked `FOR NO KEY UPDATE` (see [`sql::SELECT_REQUEST_LOCKED`]).

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::audit::{self, AuditKey, AuditTrail};
use super::batch::Group;
use super::codec::{
    self, EventColumns, LeaseColumns, ProcessorColumns, RequestColumns, RevocationColumns,
    RouteColumns, StateCountColumns, TaskColumns, TaskViewColumns,
};
use super::crypt::DataKey;
use super::sql::TaskFilterValue;
use super::steps::{self, Applied};
use super::{
    Created, Cursor, Deleted, Effects, InsertOutcome, Lease, RequestFilter, RouteFilter, Store,
    StoreConfig, StoreError, SweepCursor, TaskOp, TaskOpResult, error, sql,
};
use crate::auth::revocation::{NewRevocation, Revocation};
use crate::domain::request::{DataSubjectRequest, NewEvent, RequestEvent, State};
use crate::domain::routing::{Processor, Route, Task, TaskState, TaskView};
use crate::domain::sla::{Finding, SlaMarks};

/// PostgreSQL keeps ids as UUID.
type Id = Uuid;

/// A pool of connections to one PostgreSQL database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Keys the events' hash chain.
    audit_key: AuditKey,
    /// Seals personal data.
    data_key: DataKey,
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

fn request_from_row(key: &DataKey, row: &PgRow) -> Result<DataSubjectRequest, StoreError> {
    RequestColumns::read::<_, Id>(row)
        .map_err(map)?
        .open(key)?
        .into_domain()
}

fn task_from_row(row: &PgRow) -> Result<Task, StoreError> {
    TaskColumns::read::<_, Id>(row).map_err(map)?.into_domain()
}

fn task_view_from_row(key: &DataKey, row: &PgRow) -> Result<TaskView, StoreError> {
    TaskViewColumns::read::<_, Id>(row)
        .map_err(map)?
        .open(key)?
        .into_domain()
}

fn processor_from_row(row: &PgRow) -> Result<Processor, StoreError> {
    ProcessorColumns::read(row).map_err(map)?.into_domain()
}

fn route_from_row(row: &PgRow) -> Result<Route, StoreError> {
    RouteColumns::read::<_, Id>(row).map_err(map)?.into_domain()
}

/// Appends `event` to the trail of request `id`. Every caller holds the
/// request row's lock (it wrote or locked the row), so no other transaction
/// takes a sequence meanwhile; if one did, it would be a concurrent change.
async fn insert_event(
    conn: &mut PgConnection,
    key: &AuditKey,
    id: Uuid,
    controller_id: &str,
    event: &NewEvent,
) -> Result<(), StoreError> {
    let last = match sqlx::query(sql::LAST_EVENT)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
    {
        Some(row) => Some(EventColumns::read_last(&row)?),
        None => None,
    };
    let chained = steps::chain(key, id, controller_id, last, event);
    EventColumns::bind_insert::<Postgres, Id>(
        sqlx::query(sql::INSERT_EVENT),
        id,
        controller_id,
        event,
        &chained,
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if error::is_unique_violation(&e) {
            StoreError::Conflict
        } else {
            map(e)
        }
    })?;
    sqlx::query(sql::SET_AUDIT_HEAD)
        .bind(id)
        .bind(controller_id)
        .bind(audit::to_hex(&chained.head))
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(map)
}

async fn insert_task(conn: &mut PgConnection, task: &Task) -> Result<(), StoreError> {
    TaskColumns::from_domain(task)
        .bind_insert::<Postgres, Id>(sqlx::query(sql::INSERT_TASK))
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(map)
}

async fn update_task(conn: &mut PgConnection, task: &Task) -> Result<(), StoreError> {
    TaskColumns::from_domain(task)
        .bind_update::<Postgres, Id>(sqlx::query(sql::UPDATE_TASK))
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(map)
}

/// Writes a changed request if its stored version is still `expected`;
/// `false` if it is not.
async fn update_request_row(
    conn: &mut PgConnection,
    data_key: &DataKey,
    request: &DataSubjectRequest,
    expected_version: i64,
) -> Result<bool, StoreError> {
    let updated = RequestColumns::from_domain(request)?
        .seal(data_key)?
        .bind_update::<Postgres, Id>(sqlx::query(sql::UPDATE_REQUEST), expected_version)
        .execute(&mut *conn)
        .await
        .map_err(map)?
        .rows_affected();
    Ok(updated == 1)
}

/// Ends a transaction that must write nothing, at once. Dropping it would
/// roll it back too, but only once a background task returns its
/// connection to the pool; until then its row locks would stay, and the
/// caller's next call could find its own task still locked (a claim would
/// pass over it).
async fn roll_back(tx: Transaction<'static, Postgres>) -> Result<(), StoreError> {
    tx.rollback().await.map_err(map)
}

/// The request a task belongs to, read with `statement`
/// ([`sql::SELECT_REQUEST`] or [`sql::SELECT_REQUEST_LOCKED`]); the foreign
/// key says it exists.
async fn task_request(
    conn: &mut PgConnection,
    data_key: &DataKey,
    statement: &'static str,
    task: &Task,
) -> Result<DataSubjectRequest, StoreError> {
    let row = sqlx::query(statement)
        .bind(task.request)
        .bind(task.controller_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .ok_or_else(|| StoreError::Corrupt("a task's request is missing".to_owned()))?;
    request_from_row(data_key, &row)
}

/// The tasks of one request that `statement` (`$1` request, `$2`
/// controller) selects.
async fn tasks_of(
    conn: &mut PgConnection,
    statement: &'static str,
    controller_id: &str,
    id: Uuid,
) -> Result<Vec<Task>, StoreError> {
    sqlx::query(statement)
        .bind(id)
        .bind(controller_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?
        .iter()
        .map(task_from_row)
        .collect()
}

/// Inserts one request with its effects inside `tx`, or reads the request
/// that already holds its `(controller_id, request_id)`.
async fn insert_one(
    tx: &mut Transaction<'static, Postgres>,
    key: &AuditKey,
    data_key: &DataKey,
    request: &DataSubjectRequest,
    columns: RequestColumns,
    effects: &Effects,
) -> Result<InsertOutcome, StoreError> {
    let inserted = columns
        .bind_insert::<Postgres, Id>(sqlx::query(sql::INSERT_REQUEST))
        .execute(&mut **tx)
        .await
        .map_err(map)?
        .rows_affected();
    if inserted == 1 {
        // A new request has no tasks yet, so none to cancel; no other
        // transaction sees the row before the commit.
        write_effects(tx, key, request, effects, Vec::new()).await?;
        return Ok(InsertOutcome::Created);
    }
    existing(tx, data_key, request).await
}

/// The stored request that holds `request`'s `request_id`, found by an
/// insert that did nothing.
async fn existing(
    tx: &mut Transaction<'static, Postgres>,
    data_key: &DataKey,
    request: &DataSubjectRequest,
) -> Result<InsertOutcome, StoreError> {
    // DO NOTHING fired, so the conflicting row was committed before this
    // statement finished (or written earlier in this transaction); READ
    // COMMITTED gives the next statement a snapshot that sees it.
    let row = sqlx::query(sql::SELECT_REQUEST_BY_REQUEST_ID)
        .bind(request.controller_id.as_str())
        .bind(request.request_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map)?
        .ok_or_else(|| {
            StoreError::Internal("a conflicting request vanished during insert".to_owned())
        })?;
    Ok(InsertOutcome::Existing(Box::new(request_from_row(
        data_key, &row,
    )?)))
}

/// Writes what a request's change brings besides its row, in this order:
/// the new tasks (which its events may name), its events, then the
/// cancellation of `open`, the tasks that were open before the change.
async fn write_effects(
    conn: &mut PgConnection,
    key: &AuditKey,
    request: &DataSubjectRequest,
    effects: &Effects,
    open: Vec<Task>,
) -> Result<(), StoreError> {
    for task in &effects.new_tasks {
        insert_task(conn, task).await?;
    }
    for event in &effects.events {
        insert_event(conn, key, request.id, &request.controller_id, event).await?;
    }
    for (task, event) in steps::cancel_open(request, open) {
        update_task(conn, &task).await?;
        insert_event(conn, key, request.id, &request.controller_id, &event).await?;
    }
    Ok(())
}

/// Empties the personal-data columns of `purged` (as
/// [`DataSubjectRequest::purge`] left it) if it is still at `expected`
/// and not purged; `false` if not.
async fn purge_row(
    conn: &mut PgConnection,
    purged: &DataSubjectRequest,
    expected: i64,
) -> Result<bool, StoreError> {
    let updated =
        codec::bind_purge::<Postgres, Id>(sqlx::query(sql::PURGE_REQUEST), purged, expected)
            .execute(&mut *conn)
            .await
            .map_err(map)?
            .rows_affected();
    Ok(updated == 1)
}

/// Sets the SLA marks of `request` (as read) to `marks`, if its version and
/// marks are still those read; `false` if not. Locks the row.
async fn mark_request(
    conn: &mut PgConnection,
    request: &DataSubjectRequest,
    marks: SlaMarks,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(sql::MARK_REQUEST_SLA)
        .bind(request.id)
        .bind(request.controller_id.as_str())
        .bind(request.version)
        .bind(marks.at_risk.map(codec::micros))
        .bind(marks.breached.map(codec::micros))
        .bind(request.sla.at_risk.map(codec::micros))
        .bind(request.sla.breached.map(codec::micros))
        .execute(&mut *conn)
        .await
        .map_err(map)?
        .rows_affected();
    Ok(updated == 1)
}

/// Sets the SLA marks of `task` (as read) to `marks`, if it is still open
/// with the marks read; `false` if not. Locks the row.
async fn mark_task(
    conn: &mut PgConnection,
    task: &Task,
    marks: SlaMarks,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(sql::MARK_TASK_SLA)
        .bind(task.id)
        .bind(marks.at_risk.map(codec::micros))
        .bind(marks.breached.map(codec::micros))
        .bind(task.sla.at_risk.map(codec::micros))
        .bind(task.sla.breached.map(codec::micros))
        .execute(&mut *conn)
        .await
        .map_err(map)?
        .rows_affected();
    Ok(updated == 1)
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
        Ok(Self {
            pool,
            audit_key: config.audit_key.clone(),
            data_key: config.data_key.clone(),
        })
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

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.ping",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(sql::PING)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.insert_request",
        skip_all,
        fields(backend = "postgres", controller_id = %request.controller_id, id = %request.id)
    )]
    async fn insert_request(
        &self,
        request: &DataSubjectRequest,
        effects: &Effects,
    ) -> Result<InsertOutcome, StoreError> {
        let columns = RequestColumns::from_domain(request)?.seal(&self.data_key)?;
        let mut tx = self.begin().await?;
        let outcome = insert_one(
            &mut tx,
            &self.audit_key,
            &self.data_key,
            request,
            columns,
            effects,
        )
        .await?;
        tx.commit().await.map_err(map)?;
        Ok(outcome)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.insert_requests",
        skip_all,
        fields(backend = "postgres", batch = batch.len())
    )]
    async fn insert_requests(
        &self,
        batch: &[(DataSubjectRequest, Effects)],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        // Rows in key order: two groups that share request ids then wait
        // on each other in the same order and never deadlock.
        let mut ordered: Vec<&(DataSubjectRequest, Effects)> = batch.iter().collect();
        ordered.sort_by(|(a, _), (b, _)| {
            (a.controller_id.as_str(), a.request_id).cmp(&(b.controller_id.as_str(), b.request_id))
        });
        let mut group = Group::plan(&self.audit_key, &self.data_key, ordered)?;
        let mut tx = self.begin().await?;
        let mut inserted = HashSet::with_capacity(batch.len());
        for query in group.request_inserts::<Postgres, Id>() {
            for row in query.fetch_all(&mut *tx).await.map_err(map)? {
                inserted.insert(row.try_get::<Id, _>(0).map_err(map)?);
            }
        }
        for query in group.effect_inserts::<Postgres, Id>(&inserted) {
            query.execute(&mut *tx).await.map_err(map)?;
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for (request, _) in batch {
            outcomes.push(if inserted.contains(&request.id) {
                InsertOutcome::Created
            } else {
                existing(&mut tx, &self.data_key, request).await?
            });
        }
        // One commit, one WAL flush, for the whole group.
        tx.commit().await.map_err(map)?;
        Ok(outcomes)
    }

    #[tracing::instrument(
        name = "gdpr.store.get_request",
        level = "debug",
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
            .map(|row| request_from_row(&self.data_key, &row))
            .transpose()
    }

    #[tracing::instrument(
        name = "gdpr.store.list_requests",
        level = "debug",
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
            .map(|row| request_from_row(&self.data_key, row))
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
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
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // The open tasks are locked before the request row, the order every
        // task transaction takes (task, then request): a claim holding one
        // of these tasks while it waits for the request row would otherwise
        // deadlock with us. A task finished meanwhile drops out of the set
        // when its lock is granted (the condition is checked again).
        let open = if effects.cancel_open_tasks {
            tasks_of(
                &mut tx,
                sql::OPEN_REQUEST_TASKS_LOCKED,
                &request.controller_id,
                request.id,
            )
            .await?
        } else {
            Vec::new()
        };
        if !update_request_row(&mut tx, &self.data_key, request, expected_version).await? {
            roll_back(tx).await?;
            return Err(StoreError::Conflict);
        }
        write_effects(&mut tx, &self.audit_key, request, effects, open).await?;
        tx.commit().await.map_err(map)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.request_tasks",
        skip_all,
        fields(backend = "postgres", controller_id = %controller_id, id = %id)
    )]
    async fn request_tasks(&self, controller_id: &str, id: Uuid) -> Result<Vec<Task>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map)?;
        tasks_of(&mut conn, sql::REQUEST_TASKS, controller_id, id).await
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.create_processor",
        skip_all,
        fields(backend = "postgres", processor_id = %processor.id)
    )]
    async fn create_processor(&self, processor: &Processor) -> Result<Created, StoreError> {
        let inserted = ProcessorColumns::from_domain(processor)
            .bind_insert::<Postgres>(sqlx::query(sql::INSERT_PROCESSOR))
            .execute(&self.pool)
            .await
            .map_err(map)?
            .rows_affected();
        Ok(if inserted == 1 {
            Created::Created
        } else {
            Created::Duplicate
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_processors",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn list_processors(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Processor>, StoreError> {
        // Every processor id is longer than the empty string.
        sqlx::query(sql::LIST_PROCESSORS)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(processor_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.delete_processor",
        skip_all,
        fields(backend = "postgres", processor_id = %processor_id)
    )]
    async fn delete_processor(&self, processor_id: &str) -> Result<Deleted, StoreError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query(sql::SELECT_PROCESSOR_ID_LOCKED)
            .bind(processor_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?
            .is_some();
        if !exists {
            roll_back(tx).await?;
            return Ok(Deleted::NotFound);
        }
        let busy = sqlx::query(sql::PROCESSOR_HAS_OPEN_TASKS)
            .bind(processor_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?
            .is_some();
        if busy {
            roll_back(tx).await?;
            return Ok(Deleted::HasOpenTasks);
        }
        sqlx::query(sql::DELETE_PROCESSOR)
            .bind(processor_id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(Deleted::Deleted)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.create_route",
        skip_all,
        fields(
            backend = "postgres",
            id = %route.id,
            controller_id = %route.controller_id,
            processor_id = %route.processor_id
        )
    )]
    async fn create_route(&self, route: &Route) -> Result<Created, StoreError> {
        let inserted = RouteColumns::from_domain(route)
            .bind_insert::<Postgres, Id>(sqlx::query(sql::INSERT_ROUTE))
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(done) if done.rows_affected() == 1 => Ok(Created::Created),
            // The (controller, processor) pair is taken, or, far less
            // likely, the route's id.
            Ok(_) => Ok(Created::Duplicate),
            Err(e) if error::is_unique_violation(&e) => Ok(Created::Duplicate),
            Err(e) if error::is_foreign_key_violation(&e) => Ok(Created::Missing),
            Err(e) => Err(map(e)),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_routes",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn list_routes(
        &self,
        filter: &RouteFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Route>, StoreError> {
        let (after_time, after_id) = codec::cursor_values(after);
        let mut query = sqlx::query(sql::list_routes(filter))
            .bind(after_time)
            .bind(after_id)
            .bind(i64::from(limit));
        if let Some(controller_id) = &filter.controller_id {
            query = query.bind(controller_id.as_str());
        }
        if let Some(processor_id) = &filter.processor_id {
            query = query.bind(processor_id.as_str());
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(route_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.delete_route",
        skip_all,
        fields(backend = "postgres", id = %id)
    )]
    async fn delete_route(&self, id: Uuid) -> Result<Deleted, StoreError> {
        let deleted = sqlx::query(sql::DELETE_ROUTE)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map)?
            .rows_affected();
        Ok(if deleted == 1 {
            Deleted::Deleted
        } else {
            Deleted::NotFound
        })
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.controller_routes",
        skip_all,
        fields(backend = "postgres", controller_id = %controller_id)
    )]
    async fn controller_routes(&self, controller_id: &str) -> Result<Vec<Route>, StoreError> {
        sqlx::query(sql::CONTROLLER_ROUTES)
            .bind(controller_id)
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(route_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.claim_tasks",
        skip_all,
        fields(backend = "postgres", processor_id = %processor_id, max = max, claimed)
    )]
    async fn claim_tasks(
        &self,
        processor_id: &str,
        max: u32,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        // Concurrent claimers lock disjoint tasks (SKIP LOCKED) and never
        // wait for a task.
        let claimable: Vec<Task> = sqlx::query(sql::CLAIMABLE_TASKS_LOCKED)
            .bind(processor_id)
            .bind(codec::micros(now))
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?
            .iter()
            .map(task_from_row)
            .collect::<Result<_, _>>()?;
        // Each task event takes the next sequence of its request, so the
        // requests are locked too: one at a time in id order (the map's
        // order), so that two claimers whose tasks share requests take
        // their locks in the same order and cannot deadlock.
        let mut owners = BTreeMap::new();
        for task in &claimable {
            owners.entry(task.request).or_insert(task);
        }
        let mut requests = BTreeMap::new();
        for (id, task) in owners {
            let request =
                task_request(&mut tx, &self.data_key, sql::SELECT_REQUEST_LOCKED, task).await?;
            requests.insert(id, request);
        }
        let mut claimed = Vec::with_capacity(claimable.len());
        for mut task in claimable {
            let Some(request) = requests.get(&task.request) else {
                continue;
            };
            // The query chose by the same rule; the domain has the last word.
            if !task.is_claimable(now) {
                continue;
            }
            let event = steps::claim(&mut task, request, lease, now);
            update_task(&mut tx, &task).await?;
            insert_event(
                &mut tx,
                &self.audit_key,
                task.request,
                &task.controller_id,
                &event,
            )
            .await?;
            claimed.push(steps::task_view(task, request));
        }
        tx.commit().await.map_err(map)?;
        tracing::Span::current().record("claimed", claimed.len());
        Ok(claimed)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.task_operation",
        skip_all,
        fields(backend = "postgres", processor_id = %processor_id, id = %id)
    )]
    async fn task_operation(
        &self,
        processor_id: &str,
        id: Uuid,
        op: &TaskOp,
        now: Timestamp,
    ) -> Result<TaskOpResult, StoreError> {
        let mut tx = self.begin().await?;
        // A refusal, a replay or a missing task writes nothing.
        let Some(row) = sqlx::query(sql::SELECT_TASK_LOCKED)
            .bind(id)
            .bind(processor_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?
        else {
            roll_back(tx).await?;
            return Ok(TaskOpResult::NotFound);
        };
        let mut task = task_from_row(&row)?;
        // Task first, then request, as everywhere. The request row is
        // locked whenever an event may follow, for its sequence; and before
        // a completion aggregates, so that of two completions finishing a
        // request's last two tasks at once, the second waits here and then
        // sees the first one's task finished. A renewal writes no event and
        // leaves the request row alone.
        let statement = match op {
            TaskOp::Renew { .. } => sql::SELECT_REQUEST,
            TaskOp::Release { .. } | TaskOp::Complete { .. } => sql::SELECT_REQUEST_LOCKED,
        };
        let mut request = task_request(&mut tx, &self.data_key, statement, &task).await?;
        let (event, completed) = match steps::apply(&mut task, &request, op, now) {
            Err(refused) => {
                roll_back(tx).await?;
                return Ok(TaskOpResult::Refused(refused));
            }
            Ok(Applied::Unchanged) => {
                roll_back(tx).await?;
                return Ok(TaskOpResult::Done(
                    Box::new(steps::task_view(task, &request)),
                    None,
                ));
            }
            Ok(Applied::Changed { event, completed }) => (event, completed),
        };
        update_task(&mut tx, &task).await?;
        if let Some(event) = &event {
            insert_event(
                &mut tx,
                &self.audit_key,
                task.request,
                &task.controller_id,
                event,
            )
            .await?;
        }
        let mut moved = None;
        if completed {
            let tasks = tasks_of(
                &mut tx,
                sql::REQUEST_TASKS,
                &task.controller_id,
                task.request,
            )
            .await?;
            let expected_version = request.version;
            if let Some(event) = steps::settle(&mut request, &task, &tasks, now)? {
                // The request row is locked (PostgreSQL) or the database
                // is (SQLite): its version cannot have moved since it was
                // read, so a conflict here would be a bug; it writes
                // nothing all the same.
                if !update_request_row(&mut tx, &self.data_key, &request, expected_version).await? {
                    roll_back(tx).await?;
                    return Err(StoreError::Conflict);
                }
                insert_event(
                    &mut tx,
                    &self.audit_key,
                    request.id,
                    &request.controller_id,
                    &event,
                )
                .await?;
                moved = Some(Box::new(request.clone()));
            }
        }
        tx.commit().await.map_err(map)?;
        Ok(TaskOpResult::Done(
            Box::new(steps::task_view(task, &request)),
            moved,
        ))
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.get_task",
        skip_all,
        fields(backend = "postgres", processor_id = %processor_id, id = %id)
    )]
    async fn get_task(&self, processor_id: &str, id: Uuid) -> Result<Option<TaskView>, StoreError> {
        sqlx::query(sql::SELECT_TASK_VIEW)
            .bind(id)
            .bind(processor_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?
            .map(|row| task_view_from_row(&self.data_key, &row))
            .transpose()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_tasks",
        skip_all,
        fields(backend = "postgres", processor_id = %processor_id, limit = limit)
    )]
    async fn list_tasks(
        &self,
        processor_id: &str,
        state: Option<TaskState>,
        after: Option<&Cursor>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, StoreError> {
        let (statement, filter) = sql::list_tasks(state);
        let (after_time, after_id) = codec::cursor_values(after);
        let mut query = sqlx::query(statement)
            .bind(processor_id)
            .bind(after_time)
            .bind(after_id)
            .bind(i64::from(limit));
        match filter {
            TaskFilterValue::None => {}
            TaskFilterValue::Now => query = query.bind(codec::micros(now)),
            TaskFilterValue::State(state) => query = query.bind(state),
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| task_view_from_row(&self.data_key, row))
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
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

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.count_open_requests_by_state",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn count_open_requests_by_state(&self) -> Result<Vec<(State, u64)>, StoreError> {
        sqlx::query(sql::COUNT_OPEN_REQUESTS_BY_STATE)
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| StateCountColumns::read(row).map_err(map)?.into_domain())
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.sla_requests",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn sla_requests(
        &self,
        due_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        self.sweep_requests(sql::SLA_REQUESTS, due_by, after, limit)
            .await
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.awaiting_consent_since",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn awaiting_consent_since(
        &self,
        received_before: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        self.sweep_requests(sql::AWAITING_CONSENT_SINCE, received_before, after, limit)
            .await
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.sla_tasks",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn sla_tasks(
        &self,
        due_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let (after_time, after_id) = codec::sweep_cursor_values(after);
        sqlx::query(sql::SLA_TASKS)
            .bind(codec::micros(due_by))
            .bind(after_time)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(task_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.record_request_finding",
        skip_all,
        fields(
            backend = "postgres",
            controller_id = %request.controller_id,
            id = %request.id,
            finding = finding.as_str()
        )
    )]
    async fn record_request_finding(
        &self,
        request: &DataSubjectRequest,
        finding: Finding,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (marks, event) = steps::request_finding(request, finding, now);
        let mut tx = self.begin().await?;
        // The update locks the request row, which the event's sequence
        // needs; a concurrent sweeper waits here, then finds the marks
        // changed and writes nothing.
        if !mark_request(&mut tx, request, marks).await? {
            roll_back(tx).await?;
            return Ok(false);
        }
        insert_event(
            &mut tx,
            &self.audit_key,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.record_task_finding",
        skip_all,
        fields(
            backend = "postgres",
            processor_id = %task.processor_id,
            id = %task.id,
            finding = finding.as_str()
        )
    )]
    async fn record_task_finding(
        &self,
        task: &Task,
        finding: Finding,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // Task first (the update locks it), then its request, as in every
        // task transaction; the request's row for the event's sequence and
        // state.
        if !mark_task(&mut tx, task, steps::task_marks(task, finding, now)).await? {
            roll_back(tx).await?;
            return Ok(false);
        }
        let request =
            task_request(&mut tx, &self.data_key, sql::SELECT_REQUEST_LOCKED, task).await?;
        let event = steps::task_finding_event(task, &request, finding, now);
        insert_event(
            &mut tx,
            &self.audit_key,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.purge_due",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn purge_due(
        &self,
        closed_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        self.sweep_requests(sql::PURGE_DUE, closed_by, after, limit)
            .await
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.purge_request",
        skip_all,
        fields(backend = "postgres", controller_id = %request.controller_id, id = %request.id)
    )]
    async fn purge_request(
        &self,
        request: &DataSubjectRequest,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some((purged, event)) = steps::purge(request, now) else {
            return Ok(false);
        };
        let mut tx = self.begin().await?;
        if !purge_row(&mut tx, &purged, request.version).await? {
            roll_back(tx).await?;
            return Ok(false);
        }
        insert_event(
            &mut tx,
            &self.audit_key,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.audit_trails",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn audit_trails(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditTrail>, StoreError> {
        // The nil id sorts before every request's (v4 and v7 ids are never
        // nil), so it stands for "from the start".
        let mut trails = sqlx::query(sql::AUDIT_REQUESTS)
            .bind(after.unwrap_or(Uuid::nil()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| codec::read_audit_request::<_, Id>(row).map_err(map))
            .collect::<Result<Vec<_>, _>>()?;
        for trail in &mut trails {
            trail.events = sqlx::query(sql::AUDIT_EVENTS)
                .bind(trail.id)
                .fetch_all(&self.pool)
                .await
                .map_err(map)?
                .iter()
                .map(|row| EventColumns::read_stored::<_, Id>(row).map_err(map))
                .collect::<Result<_, _>>()?;
        }
        Ok(trails)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.acquire_lease",
        skip_all,
        fields(backend = "postgres", name = %name, holder = %holder)
    )]
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<bool, StoreError> {
        let until = now.saturating_add(ttl).unwrap_or(now);
        let taken = sqlx::query(sql::ACQUIRE_LEASE)
            .bind(name)
            .bind(holder)
            .bind(codec::micros(until))
            .bind(codec::micros(now))
            .execute(&self.pool)
            .await
            .map_err(map)?
            .rows_affected();
        Ok(taken == 1)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.revoke",
        skip_all,
        fields(backend = "postgres", kind = revocation.target.kind())
    )]
    async fn revoke(&self, revocation: &NewRevocation) -> Result<Revocation, StoreError> {
        let target = &revocation.target;
        let mut tx = self.begin().await?;
        sqlx::query(sql::LOCK_REVOCATIONS)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query(sql::INSERT_REVOCATION)
            .bind(target.kind())
            .bind(target.value())
            .bind(revocation.reason.as_str())
            .bind(revocation.revoked_by.as_str())
            .bind(codec::micros(revocation.create_time))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let row = sqlx::query(sql::SELECT_REVOCATION)
            .bind(target.kind())
            .bind(target.value())
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        RevocationColumns::read(&row).map_err(map)?.into_domain()
    }

    #[tracing::instrument(
        name = "gdpr.store.list_revocations",
        level = "debug",
        skip_all,
        fields(backend = "postgres", limit = limit)
    )]
    async fn list_revocations(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        sqlx::query(sql::LIST_REVOCATIONS)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| RevocationColumns::read(row).map_err(map)?.into_domain())
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.release_lease",
        skip_all,
        fields(backend = "postgres", name = %name, holder = %holder)
    )]
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query(sql::RELEASE_LEASE)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.lease",
        skip_all,
        fields(backend = "postgres", name = %name)
    )]
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        sqlx::query(sql::SELECT_LEASE)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?
            .map(|row| LeaseColumns::read(&row).map_err(map)?.into_domain())
            .transpose()
    }
}

impl PostgresStore {
    /// One page of a watchdog sweep over requests: `statement` takes the
    /// bound time, the cursor and the limit, in that order.
    async fn sweep_requests(
        &self,
        statement: &'static str,
        bound: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        let (after_time, after_id) = codec::sweep_cursor_values(after);
        sqlx::query(statement)
            .bind(codec::micros(bound))
            .bind(after_time)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map)?
            .iter()
            .map(|row| request_from_row(&self.data_key, row))
            .collect()
    }
}
