//! The store's one implementation, written once for both backends:
//! [`SqlStore`] runs every transaction, retry and effect over a
//! [`Backend`], which says only what truly differs between SQLite and
//! PostgreSQL: the sqlx database and how it keeps ids, how its error codes
//! read, which statements take row locks, and how a write transaction
//! begins. Connecting and migrating live in the backend files.
//!
//! Writes on a backend without row locks (SQLite) are serialised twice
//! over, on purpose. Inside the process a fair async mutex (the write gate)
//! lets one write run at a time, so writers queue in order instead of
//! polling SQLite's busy handler, and hold at most one pooled connection
//! between them, leaving the rest to readers (which WAL never blocks). Each
//! write transaction also starts with the backend's own begin statement
//! (`BEGIN IMMEDIATE`), which takes the database's write lock up front.
//!
//! On a backend with row locks (PostgreSQL), transactions run at the
//! default READ COMMITTED level, which is enough here: a duplicate insert
//! waits on the unique index for the first one to finish and then sees its
//! row; an update locks its row, so a concurrent update with the same
//! expected version finds the new version and changes nothing.
//! `synchronous_commit` is left at the server's setting (on by default): a
//! response is sent only after its commit is durable.
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
//! Without row locks the same order is followed and costs nothing.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
use jiff::{SignedDuration, Timestamp};
use sqlx::AssertSqlSafe;
use sqlx::error::DatabaseError;
use sqlx::query::Query;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Either, Encode, Executor, IntoArguments, Row,
    Transaction, Type,
};
use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard, oneshot};
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;
use uuid::Uuid;

use super::audit::{AuditKey, AuditTrail};
use super::batch::Group;
use super::codec::{
    self, EventColumns, IdColumn, LeaseColumns, ProcessorColumns, RequestColumns,
    RevocationColumns, RouteColumns, TaskAndRequest, TaskColumns, TaskViewColumns,
};
use super::crypt::DataKey;
use super::feed::{FeedEntry, FeedPosition};
use super::keys::{KeyPurpose, RegisteredKey, Resealed, SealedRow};
use super::lend::{Connections, Lent};
use super::sql::{Locking, Placeholders, Siblings, TaskFilterValue};
use super::steps::{self, Applied};

mod duplicates;
use super::writes::{Tip, Together, Writes};
use super::{
    Created, Cursor, Deleted, Effects, InsertOutcome, Lease, RequestFilter, RouteFilter, Store,
    StoreConfig, StoreError, SweepCursor, TaskOp, TaskOpResult, error, sql,
};
use crate::domain::request::{DataSubjectRequest, NewEvent, RequestEvent};
use crate::domain::revocation::{NewRevocation, Revocation};
use crate::domain::routing::{Processor, Route, Task, TaskState, TaskView};
use crate::domain::sla::{Finding, SlaMarks};

/// The keys a task transaction seals and chains with.
struct Keys {
    audit: AuditKey,
    data: DataKey,
}

/// A task transaction's work: a claim or a lease-holding operation.
enum TaskWork {
    Claim {
        processor_id: String,
        max: u32,
        lease: SignedDuration,
        now: Timestamp,
    },
    Operate {
        processor_id: String,
        id: Uuid,
        op: TaskOp,
        now: Timestamp,
    },
}

/// What a task transaction answers.
enum TaskDone {
    Claimed(Vec<TaskView>),
    Operated(TaskOpResult),
}

/// What a transaction's work decided: keep what it wrote, or write
/// nothing; either way with its answer.
enum Decided<T> {
    Commit(T),
    RollBack(T),
}

/// Task work waiting for a write batch (SQLite), with where its answer
/// goes and a number to find it by.
struct TaskJob {
    number: u64,
    work: TaskWork,
    reply: oneshot::Sender<Result<TaskDone, StoreError>>,
}

/// Most task operations in one write batch.
const MAX_TASK_BATCH: usize = 64;

/// The savepoint of one work in a write batch of several (SQLite), so that
/// a work failing after it wrote undoes its own writes and no other's.
/// It is opened in the query of the work's writes, which also releases
/// the previous work's, rather than by statements of their own: a work
/// that writes nothing (a refusal, a replay, nothing to claim) has nothing
/// to undo, and each work spares the two hops to the connection's thread
/// that a savepoint and its release would cost.
#[derive(Debug, Default)]
struct StepPoint {
    /// The work shares its transaction with others: it needs a savepoint.
    needed: bool,
    /// The savepoint of an earlier work that kept its writes is still open.
    previous: bool,
    /// This work's writes were sent, after its savepoint.
    opened: bool,
}

impl StepPoint {
    /// What runs before the work's writes, in the same query.
    fn prelude(&self) -> &'static str {
        match (self.needed, self.previous) {
            (false, _) => "",
            (true, false) => sql::OPEN_STEP,
            (true, true) => sql::NEXT_STEP,
        }
    }
}

/// The first read of the works of a write batch (SQLite), sent ahead: the
/// query of a work's writes ends with the read of the work after it
/// ([`SqlStore::first_read`]), which then starts with its rows instead of
/// a hop of its own to the connection's thread. The statements of a query
/// run in order, so the read sees the writes before it, as it would if it
/// ran after them; rows read after writes that a work then undid are
/// dropped, and the next work reads again.
struct ReadAhead<'w, R> {
    /// This work's first read, if the previous work's writes fetched it.
    rows: Option<Vec<R>>,
    /// The next work in the batch, whose first read may go with this
    /// work's writes.
    next: Option<&'w TaskWork>,
    /// The next work's first read, fetched with this work's writes.
    fetched: Option<Vec<R>>,
}

/// Where a work of a write batch stands: its savepoint and its reads.
struct Step<'w, R> {
    point: StepPoint,
    ahead: ReadAhead<'w, R>,
}

/// What a claim may take: tasks, and their requests with their tips.
type Claimable = (Vec<Task>, BTreeMap<Uuid, (DataSubjectRequest, Tip)>);

/// The values of a work's first read ([`SqlStore::first_read`]).
#[derive(Clone, Copy)]
enum ReadArgs<'w> {
    /// A claim's: the processor and the time it claims at.
    Claim {
        processor_id: &'w str,
        now: Timestamp,
    },
    /// A task operation's: the task and the processor that holds it.
    Task { id: Uuid, processor_id: &'w str },
}

/// What differs between the backends, and nothing else.
pub trait Backend: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// How the database keeps a UUID (TEXT in SQLite, UUID in PostgreSQL).
    type Id: IdColumn + Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// `"sqlite"` or `"postgres"`, for logs and telemetry.
    const NAME: &'static str;
    /// The statements that lock rows, or their plain forms.
    const LOCKING: Locking;
    /// How a write transaction begins; `None` for the driver's `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;
    /// How the transaction of a claim or task operation (or of a write
    /// batch of them) begins.
    const BEGIN_TASK: Option<&'static str>;
    /// Whether writes in this process take turns through the write gate
    /// (a backend with a single writer).
    const SERIAL_WRITES: bool;
    /// How the placeholders of a built statement are written.
    const PLACEHOLDERS: Placeholders;
    /// How a transaction's writes go to the database in one round trip.
    const TOGETHER: Together;
    /// The statement that reads a page of requests as one JSON value
    /// ([`sql::page_of_requests`]), on a backend whose driver makes each
    /// row of a result dear; `None` reads the page's rows.
    const PAGE_OF_REQUESTS: Option<fn(&RequestFilter) -> &'static str> = None;
    /// A group of new requests as one statement that returns the ids of
    /// the requests it inserted, on a backend that writes it so; `None` on
    /// one that writes each kind of row with its own statements in a
    /// transaction.
    fn insert_all(
        _group: &mut Group<'_>,
    ) -> Option<Query<'static, Self::Db, <Self::Db as Database>::Arguments>> {
        None
    }
    /// The statement that reads the end of the change feed
    /// ([`super::Store::feed_end`]), as one row of a feed position.
    const FEED_END: &'static str;
    /// The statement that reads a page of `controller_id`'s change feed
    /// after `after`, at most `limit` events ([`super::feed`]): each row
    /// the event's columns, `feed_xid` (text) and `feed_position`.
    fn feed_page(
        controller_id: &str,
        after: FeedPosition,
        limit: u32,
    ) -> Query<'_, Self::Db, <Self::Db as Database>::Arguments>;
    /// The statement that holds, until the transaction ends, the
    /// submissions about each of `keys` (sorted) apart from those of other
    /// transactions, on a backend whose writers run at once; `None` where
    /// writes take turns.
    fn subject_locks(
        _keys: &[SubjectKey],
    ) -> Option<Query<'static, Self::Db, <Self::Db as Database>::Arguments>> {
        None
    }
    /// A group of new requests that may repeat open ones, as one
    /// statement that inserts it unless an open request about one of
    /// `keys` exists, on a backend that writes it so
    /// ([`sql::INSERT_GROUP_UNLESS_OPEN`]): each row an id and whether it
    /// is one found open (then nothing was inserted) or one inserted.
    /// `None` on a backend that checks in the group's transaction only.
    fn insert_all_unless_open(
        _group: &mut Group<'_>,
        _keys: &[SubjectKey],
    ) -> Option<Query<'static, Self::Db, <Self::Db as Database>::Arguments>> {
        None
    }
    /// The statement that reads the open requests about `keys`, each
    /// locked until the transaction ends where the backend locks rows
    /// ([`sql::OPEN_REQUESTS_ABOUT_SQLITE`]).
    fn open_requests_about(
        keys: &[SubjectKey],
    ) -> Query<'static, Self::Db, <Self::Db as Database>::Arguments>;
    /// Classifies the database's own error codes.
    fn classify(error: &dyn DatabaseError) -> StoreError;
    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
}

/// What a request that may be a duplicate is looked up by: its
/// controller, its subject's `external_id` and its type
/// ([`crate::domain::duplicate::repeats`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubjectKey {
    pub controller_id: String,
    pub external_id: String,
    pub request_type: &'static str,
}

impl SubjectKey {
    pub fn of(request: &DataSubjectRequest) -> Self {
        Self {
            controller_id: request.controller_id.clone(),
            external_id: request.subject.external_id.clone(),
            request_type: request.request_type.as_str(),
        }
    }
}

/// The connection type of a backend.
type Conn<B> = <<B as Backend>::Db as Database>::Connection;
/// The row type of a backend.
type DbRow<B> = <<B as Backend>::Db as Database>::Row;
/// A statement with its arguments, for a backend.
type Statement<'q, B> = Query<'q, <B as Backend>::Db, <<B as Backend>::Db as Database>::Arguments>;
/// What a backend reports of a statement that returns no rows.
type Done<B> = <<B as Backend>::Db as Database>::QueryResult;

/// A pool of connections to one database, with the keys that seal its
/// personal data and chain its audit trail.
pub struct SqlStore<B: Backend> {
    /// The connections calls borrow ([`super::lend`]).
    pool: Connections<B::Db>,
    /// Where write transactions run: the pool itself, or (SQLite) one
    /// connection of its own, whose page cache then stays valid from one
    /// write to the next (a connection drops its whole cache when it finds
    /// that another connection has written since its last transaction).
    writer: Connections<B::Db>,
    /// One write at a time in this process, for backends with a single
    /// writer ([`Backend::SERIAL_WRITES`]).
    write_gate: Arc<Mutex<()>>,
    /// Claims and task operations waiting for the next write batch, on a
    /// backend with a single writer: whoever gets the write turn runs
    /// every one waiting in one transaction, each in a savepoint, so that
    /// one commit (one WAL flush) serves them all.
    task_queue: std::sync::Mutex<Vec<TaskJob>>,
    /// Numbers the queued task work.
    task_numbers: AtomicU64,
    /// How long a writer waits for its turn, as for a pooled connection.
    acquire_timeout: Duration,
    /// Keys the events' hash chain; without it no event is written.
    audit_key: Option<AuditKey>,
    /// Seals personal data; without it none is read or written.
    data_key: Option<DataKey>,
    backend: PhantomData<B>,
}

impl<B: Backend> Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &B::NAME)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The queue of task work; a panic while it was held left it whole (every
/// change to it is one push or one drain).
fn lock(queue: &std::sync::Mutex<Vec<TaskJob>>) -> std::sync::MutexGuard<'_, Vec<TaskJob>> {
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Task work in the queue, taken back when its caller stops waiting.
struct Queued<'a> {
    queue: &'a std::sync::Mutex<Vec<TaskJob>>,
    number: u64,
}

impl Queued<'_> {
    /// Takes the work out of the queue; `false` if a batch has it.
    fn withdraw(&self) -> bool {
        let mut queue = lock(self.queue);
        queue
            .iter()
            .position(|job| job.number == self.number)
            .map(|at| queue.remove(at))
            .is_some()
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The answer a write batch sent, or why none came.
fn batch_answer(
    answer: Result<Result<TaskDone, StoreError>, oneshot::error::RecvError>,
) -> Result<TaskDone, StoreError> {
    answer.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(
            "the write batch holding this operation stopped".to_owned(),
        ))
    })
}

/// Maps a driver error to the store's terms, with the backend's codes.
fn map<B: Backend>(e: sqlx::Error) -> StoreError {
    error::map(e, B::classify)
}

impl<B: Backend> SqlStore<B> {
    /// The store over `pool`, writing through `writer` (or `pool`), with
    /// the keys and limits of `config`.
    pub(super) fn new(
        pool: Connections<B::Db>,
        writer: Option<Connections<B::Db>>,
        config: &StoreConfig,
    ) -> Self {
        Self {
            writer: writer.unwrap_or_else(|| pool.clone()),
            pool,
            write_gate: Arc::new(Mutex::new(())),
            task_queue: std::sync::Mutex::new(Vec::new()),
            task_numbers: AtomicU64::new(0),
            acquire_timeout: config.acquire_timeout,
            audit_key: config.audit_key.clone(),
            data_key: config.data_key.clone(),
            backend: PhantomData,
        }
    }

    /// The audit key, or why there is none.
    fn audit_key(&self) -> Result<&AuditKey, StoreError> {
        self.audit_key.as_ref().ok_or_else(|| {
            StoreError::Internal("this store has no audit key: it writes no event".to_owned())
        })
    }

    /// The data key, or why there is none.
    fn data_key(&self) -> Result<&DataKey, StoreError> {
        self.data_key.as_ref().ok_or_else(|| {
            StoreError::Internal("this store has no data key: it reads no personal data".to_owned())
        })
    }

    /// Both keys, for a task transaction (which may outlive the call in
    /// a write batch), or why one is missing.
    fn keys(&self) -> Result<Arc<Keys>, StoreError> {
        Ok(Arc::new(Keys {
            audit: self.audit_key()?.clone(),
            data: self.data_key()?.clone(),
        }))
    }

    /// A connection for one call; give it back when done.
    pub(super) async fn lend(&self) -> Result<Lent<B::Db>, StoreError> {
        self.pool.lend().await.map_err(map::<B>)
    }

    /// A connection of the writer (on SQLite, its one connection).
    pub(super) async fn lend_writer(&self) -> Result<Lent<B::Db>, StoreError> {
        self.writer.lend().await.map_err(map::<B>)
    }

    /// Waits for this process's write turn, on a backend that takes turns;
    /// `None` (no wait) on one that does not.
    pub(super) async fn write_turn(&self) -> Result<Option<MutexGuard<'_, ()>>, StoreError> {
        if !B::SERIAL_WRITES {
            return Ok(None);
        }
        tokio::time::timeout(self.acquire_timeout, self.write_gate.lock())
            .await
            .map(Some)
            .map_err(|_| {
                StoreError::Unavailable("timed out waiting for the database write lock".to_owned())
            })
    }

    /// Starts a write transaction on `conn` (on SQLite, one that already
    /// holds the database's write lock).
    async fn begin_write(conn: &mut Conn<B>) -> Result<Transaction<'_, B::Db>, StoreError> {
        Self::begin_with(conn, B::BEGIN_WRITE).await
    }

    /// Starts a transaction on `conn` with `statement`, or the driver's
    /// `BEGIN`.
    async fn begin_with<'c>(
        conn: &'c mut Conn<B>,
        statement: Option<&'static str>,
    ) -> Result<Transaction<'c, B::Db>, StoreError> {
        match statement {
            Some(statement) => conn.begin_with(statement).await,
            None => conn.begin().await,
        }
        .map_err(map::<B>)
    }

    /// The rows of one statement, on a lent connection.
    async fn rows(&self, query: Statement<'_, B>) -> Result<Vec<DbRow<B>>, StoreError>
    where
        for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
        <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    {
        let mut conn = self.lend().await?;
        let rows = query.fetch_all(&mut *conn).await;
        conn.settle(rows).map_err(map::<B>)
    }

    /// The row of one statement, if any, on a lent connection.
    async fn row(&self, query: Statement<'_, B>) -> Result<Option<DbRow<B>>, StoreError>
    where
        for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
        <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    {
        let mut conn = self.lend().await?;
        let row = query.fetch_optional(&mut *conn).await;
        conn.settle(row).map_err(map::<B>)
    }

    /// Runs one statement that returns no rows, on a lent connection; the
    /// driver's error as it is, for a caller that reads it (a unique
    /// violation).
    async fn exec(&self, query: Statement<'_, B>) -> Result<Done<B>, sqlx::Error>
    where
        for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
        <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    {
        let mut conn = self.pool.lend().await?;
        let done = query.execute(&mut *conn).await;
        conn.settle(done)
    }

    /// Closes the connections, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

impl<B> SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    B::Id: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    String: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    for<'s> &'s str: Encode<'s, B::Db> + Type<B::Db> + ColumnIndex<DbRow<B>>,
    i64: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    bool: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    usize: ColumnIndex<DbRow<B>>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    Option<B::Id>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<String>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<i64>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
{
    fn request_from_row(key: &DataKey, row: &DbRow<B>) -> Result<DataSubjectRequest, StoreError> {
        RequestColumns::read::<_, B::Id>(row)
            .map_err(map::<B>)?
            .open(key)?
            .into_domain()
    }

    fn task_from_row(row: &DbRow<B>) -> Result<Task, StoreError> {
        TaskColumns::read::<_, B::Id>(row)
            .map_err(map::<B>)?
            .into_domain()
    }

    /// A task, its request and the tip of the request's audit chain, from
    /// a row of [`sql`]'s `task_and_request_from!`.
    fn task_and_request_from_row(
        key: &DataKey,
        row: &DbRow<B>,
    ) -> Result<(Task, DataSubjectRequest, Tip), StoreError> {
        let mut read = TaskAndRequest::read::<_, B::Id>(row).map_err(map::<B>)?;
        let tip = read.tip()?;
        let request = read.request.open(key)?.into_domain()?;
        Ok((read.task.into_domain()?, request, tip))
    }

    fn task_view_from_row(key: &DataKey, row: &DbRow<B>) -> Result<TaskView, StoreError> {
        TaskViewColumns::read::<_, B::Id>(row)
            .map_err(map::<B>)?
            .open(key)?
            .into_domain()
    }

    fn processor_from_row(row: &DbRow<B>) -> Result<Processor, StoreError> {
        ProcessorColumns::read(row).map_err(map::<B>)?.into_domain()
    }

    fn route_from_row(row: &DbRow<B>) -> Result<Route, StoreError> {
        RouteColumns::read::<_, B::Id>(row)
            .map_err(map::<B>)?
            .into_domain()
    }

    /// Appends `event` to the trail of request `id`. Every caller holds the
    /// request row's lock (it wrote or locked the row), so no other transaction
    /// takes a sequence meanwhile; if one did, it would be a concurrent change.
    async fn insert_event(
        conn: &mut Conn<B>,
        key: &AuditKey,
        id: Uuid,
        controller_id: &str,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let last = match sqlx::query(sql::LAST_EVENT)
            .bind(B::Id::from_uuid(id))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map::<B>)?
        {
            Some(row) => Some(EventColumns::read_last(&row)?),
            None => None,
        };
        let chained = steps::chain(key, id, controller_id, last, event);
        EventColumns::bind_insert::<B::Db, B::Id>(
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
                map::<B>(e)
            }
        })?;
        sqlx::query(sql::SET_AUDIT_HEAD)
            .bind(B::Id::from_uuid(id))
            .bind(controller_id)
            .bind(chained.head_text())
            .bind(chained.sequence)
            .bind(chained.hash_text())
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(map::<B>)
    }

    async fn insert_task(conn: &mut Conn<B>, task: &Task) -> Result<(), StoreError> {
        TaskColumns::from_domain(task)
            .bind_insert::<B::Db, B::Id>(sqlx::query(sql::INSERT_TASK))
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(map::<B>)
    }

    async fn update_task(conn: &mut Conn<B>, task: &Task) -> Result<(), StoreError> {
        TaskColumns::from_domain(task)
            .bind_update::<B::Db, B::Id>(sqlx::query(sql::UPDATE_TASK))
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(map::<B>)
    }

    /// Writes a changed request if its stored version is still `expected`;
    /// `false` if it is not.
    async fn update_request_row(
        conn: &mut Conn<B>,
        data_key: &DataKey,
        request: &DataSubjectRequest,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        let updated = B::rows_affected(
            &RequestColumns::from_domain(request)?
                .seal(data_key)?
                .bind_update::<B::Db, B::Id>(sqlx::query(sql::UPDATE_REQUEST), expected_version)
                .execute(&mut *conn)
                .await
                .map_err(map::<B>)?,
        );
        Ok(updated == 1)
    }

    /// Ends a transaction that must write nothing, at once. Dropping it would
    /// roll it back too, but only once a background task returns its
    /// connection to the pool; until then its row locks would stay, and the
    /// caller's next call could find its own task still locked (a claim would
    /// pass over it).
    async fn roll_back(tx: Transaction<'_, B::Db>) -> Result<(), StoreError> {
        tx.rollback().await.map_err(map::<B>)
    }

    /// The row of the request a task belongs to, read with `statement`
    /// ([`sql::SELECT_REQUEST`] or [`B::LOCKING.request_for_update`]); the
    /// foreign key says it exists.
    async fn task_request_row(
        conn: &mut Conn<B>,
        statement: &'static str,
        task: &Task,
    ) -> Result<DbRow<B>, StoreError> {
        sqlx::query(statement)
            .bind(B::Id::from_uuid(task.request))
            .bind(task.controller_id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map::<B>)?
            .ok_or_else(|| StoreError::Corrupt("a task's request is missing".to_owned()))
    }

    /// The request a task belongs to, read with `statement` (as
    /// [`Self::task_request_row`]).
    async fn task_request(
        conn: &mut Conn<B>,
        data_key: &DataKey,
        statement: &'static str,
        task: &Task,
    ) -> Result<DataSubjectRequest, StoreError> {
        let row = Self::task_request_row(conn, statement, task).await?;
        Self::request_from_row(data_key, &row)
    }

    /// The request a task belongs to, locked against other writers of it
    /// and of its events ([`B::LOCKING.request_for_update`]), with the tip of
    /// its audit chain.
    async fn locked_request(
        conn: &mut Conn<B>,
        data_key: &DataKey,
        task: &Task,
    ) -> Result<(DataSubjectRequest, Tip), StoreError> {
        let row = Self::task_request_row(conn, B::LOCKING.request_for_update, task).await?;
        let tip = codec::read_tip(&row)?;
        Ok((Self::request_from_row(data_key, &row)?, tip))
    }

    /// Sends `writes` in one round trip ([`Backend::TOGETHER`]); `false`
    /// if a row they were to change was not there as read (nothing must
    /// then be committed).
    /// Within a batch of several works, the work's savepoint (`point`) is
    /// opened in the same query.
    async fn write(
        conn: &mut Conn<B>,
        writes: Writes,
        step: &mut Step<'_, DbRow<B>>,
    ) -> Result<bool, StoreError> {
        let then = step.ahead.next.and_then(Self::first_read);
        let Some((query, expected)) = writes.query::<B::Db, B::Id>(
            B::TOGETHER,
            step.point.prelude(),
            then.map(|(statement, _)| statement),
        )?
        else {
            return Ok(true);
        };
        step.point.opened = step.point.needed;
        let unique = |e: sqlx::Error| {
            if error::is_unique_violation(&e) {
                StoreError::Conflict
            } else {
                map::<B>(e)
            }
        };
        let Some((_, args)) = then else {
            let result = query.execute(&mut *conn).await.map_err(unique)?;
            return Ok(B::rows_affected(&result) == expected);
        };
        let query = Self::bind_read(query, args);
        let mut changed = 0;
        let mut rows = Vec::new();
        let mut results = conn.fetch_many(query);
        while let Some(result) = results.try_next().await.map_err(unique)? {
            match result {
                Either::Left(done) => changed += B::rows_affected(&done),
                Either::Right(row) => rows.push(row),
            }
        }
        step.ahead.fetched = Some(rows);
        Ok(changed == expected)
    }

    /// The statement a work reads first, with its values, where that is
    /// one statement whose rows the work can take from a batch's earlier
    /// query ([`ReadAhead`]): a claim of one task, and every task operation.
    fn first_read(work: &TaskWork) -> Option<(&'static str, ReadArgs<'_>)> {
        match work {
            TaskWork::Claim {
                processor_id,
                max: 1,
                now,
                ..
            } => Some((
                B::LOCKING.claimable_task_and_request,
                ReadArgs::Claim {
                    processor_id,
                    now: *now,
                },
            )),
            TaskWork::Claim { .. } => None,
            TaskWork::Operate {
                processor_id,
                id,
                op,
                ..
            } => {
                let statement = match op {
                    TaskOp::Complete { .. } => B::LOCKING.task_request_and_siblings.statement(),
                    TaskOp::Renew { .. } => B::LOCKING.task_for_update_and_request,
                    _ => B::LOCKING.task_and_request_for_update,
                };
                Some((
                    statement,
                    ReadArgs::Task {
                        id: *id,
                        processor_id,
                    },
                ))
            }
        }
    }

    /// `query` with the values of a first read bound after those it has.
    fn bind_read<'q>(query: Statement<'q, B>, args: ReadArgs<'_>) -> Statement<'q, B> {
        match args {
            ReadArgs::Claim { processor_id, now } => {
                query.bind(processor_id.to_owned()).bind(codec::micros(now))
            }
            ReadArgs::Task { id, processor_id } => query
                .bind(B::Id::from_uuid(id))
                .bind(processor_id.to_owned()),
        }
    }

    /// Reads `work`'s first read into `ahead`, unless it was read ahead.
    async fn read_first(
        conn: &mut Conn<B>,
        work: &TaskWork,
        ahead: &mut ReadAhead<'_, DbRow<B>>,
    ) -> Result<(), StoreError> {
        if ahead.rows.is_some() {
            return Ok(());
        }
        if let Some((statement, args)) = Self::first_read(work) {
            let rows = Self::bind_read(sqlx::query(statement), args)
                .fetch_all(&mut *conn)
                .await
                .map_err(map::<B>)?;
            ahead.rows = Some(rows);
        }
        Ok(())
    }

    /// The tasks of one request that `statement` (`$1` request, `$2`
    /// controller) selects.
    async fn tasks_of(
        conn: &mut Conn<B>,
        statement: &'static str,
        controller_id: &str,
        id: Uuid,
    ) -> Result<Vec<Task>, StoreError> {
        sqlx::query(statement)
            .bind(B::Id::from_uuid(id))
            .bind(controller_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(map::<B>)?
            .iter()
            .map(Self::task_from_row)
            .collect()
    }

    /// Inserts one request with its effects inside `tx`, or reads the request
    /// that already holds its `(controller_id, request_id)`.
    async fn insert_one(
        tx: &mut Transaction<'_, B::Db>,
        key: &AuditKey,
        data_key: &DataKey,
        request: &DataSubjectRequest,
        columns: RequestColumns,
        effects: &Effects,
    ) -> Result<InsertOutcome, StoreError> {
        let inserted = B::rows_affected(
            &columns
                .bind_insert::<B::Db, B::Id>(sqlx::query(sql::INSERT_REQUEST))
                .execute(&mut **tx)
                .await
                .map_err(map::<B>)?,
        );
        if inserted == 1 {
            // A new request has no tasks yet, so none to cancel; no other
            // transaction sees the row before the commit.
            Self::write_effects(tx, key, request, effects, Vec::new()).await?;
            return Ok(InsertOutcome::Created);
        }
        Self::existing(tx, data_key, request).await
    }

    /// Writes a planned group of new requests inside a transaction: as
    /// one statement where the backend writes it so, else each kind of row
    /// in its multi-row statements. Returns the ids of the requests it
    /// inserted (those whose `request_id` was free).
    async fn write_group(
        conn: &mut Conn<B>,
        mut group: Group<'_>,
    ) -> Result<HashSet<Uuid>, StoreError> {
        if let Some(query) = B::insert_all(&mut group) {
            let rows = query.fetch_all(&mut *conn).await.map_err(map::<B>)?;
            return Self::inserted_ids(&rows);
        }
        let mut inserted = HashSet::new();
        for (query, ids) in group.request_inserts::<B::Db, B::Id>(B::PLACEHOLDERS) {
            let done = query.execute(&mut *conn).await.map_err(map::<B>)?;
            if B::rows_affected(&done) == ids.len() as u64 {
                inserted.extend(ids);
            } else {
                let mut stored = sqlx::query(sqlx::AssertSqlSafe(sql::stored_request_ids(
                    ids.len(),
                    B::PLACEHOLDERS,
                )));
                for id in ids {
                    stored = stored.bind(B::Id::from_uuid(id));
                }
                let rows = stored.fetch_all(&mut *conn).await.map_err(map::<B>)?;
                inserted.extend(Self::inserted_ids(&rows)?);
            }
        }
        for query in group.effect_inserts::<B::Db, B::Id>(&inserted, B::PLACEHOLDERS) {
            query.execute(&mut *conn).await.map_err(map::<B>)?;
        }
        Ok(inserted)
    }

    /// The ids a group's insert returned: those of the requests it
    /// inserted.
    fn inserted_ids(rows: &[DbRow<B>]) -> Result<HashSet<Uuid>, StoreError> {
        rows.iter()
            .map(|row| {
                let id: B::Id = row.try_get(0).map_err(map::<B>)?;
                id.into_uuid("id")
            })
            .collect()
    }

    /// What each request of a group came to: created if its id is in
    /// `inserted`, else the request that already holds its `request_id`.
    async fn outcomes(
        &self,
        conn: &mut Conn<B>,
        batch: &[(DataSubjectRequest, Effects)],
        inserted: &HashSet<Uuid>,
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for (request, _) in batch {
            outcomes.push(if inserted.contains(&request.id) {
                InsertOutcome::Created
            } else {
                Self::existing(conn, self.data_key()?, request).await?
            });
        }
        Ok(outcomes)
    }

    /// The stored request that holds `request`'s `request_id`, found by an
    /// insert that did nothing.
    async fn existing(
        conn: &mut Conn<B>,
        data_key: &DataKey,
        request: &DataSubjectRequest,
    ) -> Result<InsertOutcome, StoreError> {
        // DO NOTHING fired, so the conflicting row was committed before this
        // statement finished (or written earlier in this transaction); READ
        // COMMITTED gives the next statement a snapshot that sees it.
        let row = sqlx::query(sql::SELECT_REQUEST_BY_REQUEST_ID)
            .bind(request.controller_id.as_str())
            .bind(B::Id::from_uuid(request.request_id))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map::<B>)?
            .ok_or_else(|| {
                StoreError::Internal("a conflicting request vanished during insert".to_owned())
            })?;
        Ok(InsertOutcome::Existing(Box::new(Self::request_from_row(
            data_key, &row,
        )?)))
    }

    /// Writes what a request's change brings besides its row, in this order:
    /// the new tasks (which its events may name), its events, then the
    /// cancellation of `open`, the tasks that were open before the change.
    async fn write_effects(
        conn: &mut Conn<B>,
        key: &AuditKey,
        request: &DataSubjectRequest,
        effects: &Effects,
        open: Vec<Task>,
    ) -> Result<(), StoreError> {
        for task in &effects.new_tasks {
            Self::insert_task(conn, task).await?;
        }
        for event in &effects.events {
            Self::insert_event(conn, key, request.id, &request.controller_id, event).await?;
        }
        for (task, event) in steps::cancel_open(request, open) {
            Self::update_task(conn, &task).await?;
            Self::insert_event(conn, key, request.id, &request.controller_id, &event).await?;
        }
        Ok(())
    }

    /// Empties the personal-data columns of `purged` (as
    /// [`DataSubjectRequest::purge`] left it) if it is still at `expected`
    /// and not purged; `false` if not.
    async fn purge_row(
        conn: &mut Conn<B>,
        purged: &DataSubjectRequest,
        expected: i64,
    ) -> Result<bool, StoreError> {
        let updated = B::rows_affected(
            &codec::bind_purge::<B::Db, B::Id>(sqlx::query(sql::PURGE_REQUEST), purged, expected)
                .execute(&mut *conn)
                .await
                .map_err(map::<B>)?,
        );
        Ok(updated == 1)
    }

    /// Every event of request `id` as stored, for `audit verify` and the
    /// evidence export.
    async fn trail_events(&self, id: Uuid) -> Result<Vec<super::audit::StoredEvent>, StoreError> {
        self.rows(sqlx::query(sql::AUDIT_EVENTS).bind(B::Id::from_uuid(id)))
            .await?
            .iter()
            .map(|row| EventColumns::read_stored::<_, B::Id>(row).map_err(map::<B>))
            .collect()
    }

    /// Sets the SLA marks of `request` (as read) to `marks`, if its version and
    /// marks are still those read; `false` if not. Locks the row.
    async fn mark_request(
        conn: &mut Conn<B>,
        request: &DataSubjectRequest,
        marks: SlaMarks,
    ) -> Result<bool, StoreError> {
        let updated = B::rows_affected(
            &sqlx::query(sql::MARK_REQUEST_SLA)
                .bind(B::Id::from_uuid(request.id))
                .bind(request.controller_id.as_str())
                .bind(request.version)
                .bind(marks.at_risk.map(codec::micros))
                .bind(marks.breached.map(codec::micros))
                .bind(request.sla.at_risk.map(codec::micros))
                .bind(request.sla.breached.map(codec::micros))
                .execute(&mut *conn)
                .await
                .map_err(map::<B>)?,
        );
        Ok(updated == 1)
    }

    /// Sets the SLA marks of `task` (as read) to `marks`, if it is still open
    /// with the marks read; `false` if not. Locks the row.
    async fn mark_task(
        conn: &mut Conn<B>,
        task: &Task,
        marks: SlaMarks,
    ) -> Result<bool, StoreError> {
        let updated = B::rows_affected(
            &sqlx::query(sql::MARK_TASK_SLA)
                .bind(B::Id::from_uuid(task.id))
                .bind(marks.at_risk.map(codec::micros))
                .bind(marks.breached.map(codec::micros))
                .bind(task.sla.at_risk.map(codec::micros))
                .bind(task.sla.breached.map(codec::micros))
                .execute(&mut *conn)
                .await
                .map_err(map::<B>)?,
        );
        Ok(updated == 1)
    }

    /// The task a claim of one task may take, with its request (locked
    /// after the task, as everywhere) and the request's tip, from the rows
    /// of its one statement ([`Locking::claimable_task_and_request`]).
    fn claimable_one(data_key: &DataKey, rows: Vec<DbRow<B>>) -> Result<Claimable, StoreError> {
        let Some(row) = rows.first() else {
            return Ok((Vec::new(), BTreeMap::new()));
        };
        let (task, request, tip) = Self::task_and_request_from_row(data_key, row)?;
        Ok((vec![task], BTreeMap::from([(request.id, (request, tip))])))
    }

    /// Up to `max` tasks a claim may take, then their requests.
    async fn claimable_many(
        conn: &mut Conn<B>,
        data_key: &DataKey,
        processor_id: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<Claimable, StoreError> {
        // Concurrent claimers lock disjoint tasks (SKIP LOCKED) and never
        // wait for a task.
        let claimable: Vec<Task> = sqlx::query(B::LOCKING.claimable_tasks)
            .bind(processor_id)
            .bind(codec::micros(now))
            .bind(i64::from(max))
            .fetch_all(&mut *conn)
            .await
            .map_err(map::<B>)?
            .iter()
            .map(Self::task_from_row)
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
            requests.insert(id, Self::locked_request(conn, data_key, task).await?);
        }
        Ok((claimable, requests))
    }

    /// A claim's reads and writes, inside the caller's transaction.
    async fn claim_in(
        conn: &mut Conn<B>,
        keys: &Keys,
        processor_id: &str,
        max: u32,
        lease: SignedDuration,
        now: Timestamp,
        step: &mut Step<'_, DbRow<B>>,
    ) -> Result<Decided<TaskDone>, StoreError> {
        // A claim of one task has read it ([`Self::first_read`]).
        let (claimable, mut requests) = match step.ahead.rows.take() {
            Some(rows) => Self::claimable_one(&keys.data, rows)?,
            None => Self::claimable_many(conn, &keys.data, processor_id, max, now).await?,
        };
        let mut writes = Writes::default();
        let mut claimed = Vec::with_capacity(claimable.len());
        for mut task in claimable {
            let Some((request, tip)) = requests.get_mut(&task.request) else {
                continue;
            };
            // The query chose by the same rule; the domain has the last word.
            if !task.is_claimable(now) {
                continue;
            }
            let event = steps::claim(&mut task, request, lease, now);
            writes.task(&task);
            writes.event(&keys.audit, request, tip, event);
            claimed.push(steps::task_view(task, request));
        }
        if !Self::write(conn, writes, step).await? {
            return Err(StoreError::Internal(
                "a claimed task or its request changed under its lock".to_owned(),
            ));
        }
        Ok(Decided::Commit(TaskDone::Claimed(claimed)))
    }

    /// A lease-holding operation's reads and writes, inside the caller's
    /// transaction.
    async fn operate_in(
        conn: &mut Conn<B>,
        keys: &Keys,
        id: Uuid,
        op: &TaskOp,
        now: Timestamp,
        step: &mut Step<'_, DbRow<B>>,
    ) -> Result<Decided<TaskDone>, StoreError> {
        let mut rows = step.ahead.rows.take().ok_or_else(|| {
            StoreError::Internal("a task operation without its first read".to_owned())
        })?;
        // `rows` are the work's first read ([`Self::first_read`]): the task
        // first, then its request, in one statement. The request row is
        // locked whenever an event may follow, for its sequence; and before
        // a completion aggregates, so that of two completions finishing a
        // request's last two tasks at once, the second waits there and then
        // sees the first one's task finished. A renewal writes no event and
        // leaves the request row alone. A completion has the request's
        // tasks too, one row each ([`Siblings`]).
        let renewal = matches!(op, TaskOp::Renew { .. });
        let completion = matches!(op, TaskOp::Complete { .. });
        let (row, mut siblings) = match B::LOCKING.task_request_and_siblings {
            Siblings::Current(_) if completion => {
                let tasks: Vec<Task> = rows
                    .iter()
                    .map(Self::task_from_row)
                    .collect::<Result<_, _>>()?;
                match tasks.iter().position(|task| task.id == id) {
                    Some(at) => (Some(rows.swap_remove(at)), Some(tasks)),
                    None => (None, None),
                }
            }
            Siblings::Checked(_) if completion => {
                let parts = rows
                    .iter()
                    .map(|row| row.try_get::<i64, _>("part"))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(map::<B>)?;
                let locked = parts
                    .iter()
                    .position(|part| *part == 0)
                    .map(|at| rows.swap_remove(at));
                let seen_tip = match rows.first() {
                    Some(row) => Some(codec::read_tip(row)?),
                    None => None,
                };
                let locked_tip = match &locked {
                    Some(row) => Some(codec::read_tip(row)?),
                    None => None,
                };
                // When an event was written on the request after the
                // snapshot the tasks were read in, they are read again,
                // under the lock.
                let tasks = if seen_tip == locked_tip {
                    Some(
                        rows.iter()
                            .map(Self::task_from_row)
                            .collect::<Result<Vec<Task>, _>>()?,
                    )
                } else {
                    None
                };
                (locked, tasks)
            }
            _ => (rows.into_iter().next(), None),
        };
        // A refusal, a replay or a missing task writes nothing.
        let Some(row) = row else {
            return Ok(Decided::RollBack(TaskDone::Operated(
                TaskOpResult::NotFound,
            )));
        };
        let (mut task, mut request, tip) = Self::task_and_request_from_row(&keys.data, &row)?;
        let mut tip = if renewal { None } else { tip };
        let (event, completed) = match steps::apply(&mut task, &request, op, now) {
            Err(refused) => {
                return Ok(Decided::RollBack(TaskDone::Operated(
                    TaskOpResult::Refused(refused),
                )));
            }
            Ok(Applied::Unchanged) => {
                return Ok(Decided::RollBack(TaskDone::Operated(TaskOpResult::Done(
                    Box::new(steps::task_view(task, &request)),
                    None,
                ))));
            }
            Ok(Applied::Changed { event, completed }) => (event, completed),
        };
        let mut writes = Writes::default();
        writes.task(&task);
        if let Some(event) = event {
            writes.event(&keys.audit, &request, &mut tip, event);
        }
        let mut moved = None;
        if completed {
            // The request's tasks as they will be once this one is written.
            let mut tasks = match siblings.take() {
                Some(tasks) => tasks,
                None => {
                    Self::tasks_of(conn, sql::REQUEST_TASKS, &task.controller_id, task.request)
                        .await?
                }
            };
            for stored in &mut tasks {
                if stored.id == task.id {
                    stored.clone_from(&task);
                }
            }
            let expected_version = request.version;
            if let Some(event) = steps::settle(&mut request, &task, &tasks, now)? {
                writes.request(
                    RequestColumns::from_domain(&request)?.seal(&keys.data)?,
                    expected_version,
                );
                writes.event(&keys.audit, &request, &mut tip, event);
                moved = Some(Box::new(request.clone()));
            }
        }
        // The request row is locked (PostgreSQL) or the database is
        // (SQLite): nothing written here can have moved since it was read,
        // so a miss would be a bug; it writes nothing all the same.
        if !Self::write(conn, writes, step).await? {
            return Err(StoreError::Conflict);
        }
        Ok(Decided::Commit(TaskDone::Operated(TaskOpResult::Done(
            Box::new(steps::task_view(task, &request)),
            moved,
        ))))
    }

    /// Runs a claim or a task operation in a transaction of its own
    /// (PostgreSQL, whose transactions commit side by side), or in the
    /// next write batch (SQLite, one writer).
    async fn task_transaction(&self, work: TaskWork) -> Result<TaskDone, StoreError> {
        let keys = self.keys()?;
        if B::SERIAL_WRITES {
            return self.in_write_batch(work, keys).await;
        }
        Self::batch_in(&self.writer, &keys, std::slice::from_ref(&work))
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Internal(
                    "a task transaction gave no answer".to_owned(),
                ))
            })
    }

    /// Queues `work` for a write batch and waits for its answer. Whoever
    /// gets the write turn takes every queued job (this one, or others
    /// too) and runs them in a task of their own, so that a caller that
    /// goes away never cuts a batch short; the others' answers come from
    /// that batch.
    async fn in_write_batch(
        &self,
        work: TaskWork,
        keys: Arc<Keys>,
    ) -> Result<TaskDone, StoreError> {
        let number = self.task_numbers.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        lock(&self.task_queue).push(TaskJob {
            number,
            work,
            reply,
        });
        // A caller that stops waiting (its call cancelled, or timed out
        // below) takes its work back if no batch has taken it yet, so that
        // it is never done later, at a time it no longer speaks for.
        let queued = Queued {
            queue: &self.task_queue,
            number,
        };
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        loop {
            tokio::select! {
                biased;
                done = &mut answer => return batch_answer(done),
                turn = tokio::time::timeout_at(deadline, self.write_gate.clone().lock_owned()) => {
                    let Ok(turn) = turn else {
                        if queued.withdraw() {
                            return Err(StoreError::Unavailable(
                                "timed out waiting for the database write lock".to_owned(),
                            ));
                        }
                        // A batch holds it already.
                        return batch_answer(answer.await);
                    };
                    let jobs: Vec<TaskJob> = {
                        let mut queue = lock(&self.task_queue);
                        let take = queue.len().min(MAX_TASK_BATCH);
                        queue.drain(..take).collect()
                    };
                    if jobs.is_empty() {
                        // Ours is in a batch that has finished: its
                        // answer is waiting.
                        continue;
                    }
                    let batch = Self::run_batch(self.writer.clone(), keys.clone(), jobs, turn);
                    tokio::spawn(batch.in_current_span().with_current_subscriber());
                }
            }
        }
    }

    /// Runs `jobs` in one transaction and answers each once it committed.
    async fn run_batch(
        writer: Connections<B::Db>,
        keys: Arc<Keys>,
        jobs: Vec<TaskJob>,
        _turn: OwnedMutexGuard<()>,
    ) {
        let (works, replies): (Vec<TaskWork>, Vec<_>) =
            jobs.into_iter().map(|job| (job.work, job.reply)).unzip();
        match Self::batch_in(&writer, &keys, &works).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                // Nothing of the batch was committed: everyone is told.
                let message = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                for reply in replies {
                    let _ = reply.send(Err(if unavailable {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Internal(message.clone())
                    }));
                }
            }
        }
    }

    /// `works` in one write transaction (begun with
    /// [`Backend::BEGIN_TASK`]), each in a savepoint of its own
    /// ([`StepPoint`]) when there are several, so that a refusal or an error
    /// undoes only its own writes; their answers once the transaction has
    /// committed, or rolled back if none wrote. Only a backend that sends
    /// its writes as separate statements ([`Together::Statements`]) takes
    /// several works at once.
    async fn batch_in(
        writer: &Connections<B::Db>,
        keys: &Keys,
        works: &[TaskWork],
    ) -> Result<Vec<Result<TaskDone, StoreError>>, StoreError> {
        let mut conn = writer.lend().await.map_err(map::<B>)?;
        let mut tx = Self::begin_with(&mut conn, B::BEGIN_TASK).await?;
        let mut answers = Vec::with_capacity(works.len());
        let mut keep = false;
        let several = works.len() > 1;
        let mut previous = false;
        let mut read_ahead = None;
        for (at, work) in works.iter().enumerate() {
            let mut step = Step {
                point: StepPoint {
                    needed: several,
                    previous,
                    opened: false,
                },
                ahead: ReadAhead {
                    rows: read_ahead.take(),
                    // Only a backend that runs several statements in a
                    // query can send a read with the writes.
                    next: works
                        .get(at + 1)
                        .filter(|_| B::TOGETHER == Together::Statements),
                    fetched: None,
                },
            };
            let outcome = Self::work_in(&mut tx, keys, work, &mut step).await;
            if matches!(outcome, Ok(Decided::Commit(_))) {
                // Read after writes that stay: what the next work would read.
                read_ahead = step.ahead.fetched;
            }
            if step.point.opened {
                // Its writes released the previous savepoint.
                previous = matches!(outcome, Ok(Decided::Commit(_)));
                if !previous {
                    sqlx::query(sql::UNDO_STEP)
                        .execute(&mut *tx)
                        .await
                        .map_err(map::<B>)?;
                }
            }
            match outcome {
                Ok(Decided::Commit(done)) => {
                    keep = true;
                    answers.push(Ok(done));
                }
                Ok(Decided::RollBack(done)) => answers.push(Ok(done)),
                Err(e) => answers.push(Err(e)),
            }
        }
        if keep {
            // The commit ends the savepoint still open with the rest.
            tx.commit().await.map_err(map::<B>)?;
        } else if let Err(e) = Self::roll_back(tx).await {
            // An answer that is already an error says more than this.
            if answers.iter().all(Result::is_ok) {
                return Err(e);
            }
            return Ok(answers);
        }
        conn.give_back();
        Ok(answers)
    }

    /// Does `work` inside the caller's transaction.
    async fn work_in(
        conn: &mut Conn<B>,
        keys: &Keys,
        work: &TaskWork,
        step: &mut Step<'_, DbRow<B>>,
    ) -> Result<Decided<TaskDone>, StoreError> {
        Self::read_first(conn, work, &mut step.ahead).await?;
        match work {
            TaskWork::Claim {
                processor_id,
                max,
                lease,
                now,
            } => Self::claim_in(conn, keys, processor_id, *max, *lease, *now, step).await,
            TaskWork::Operate { id, op, now, .. } => {
                Self::operate_in(conn, keys, *id, op, *now, step).await
            }
        }
    }

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
        self.rows(
            sqlx::query(statement)
                .bind(codec::micros(bound))
                .bind(after_time)
                .bind(B::Id::from_uuid(after_id))
                .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(|row| Self::request_from_row(self.data_key()?, row))
        .collect()
    }
}

#[async_trait]
impl<B> Store for SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    B::Id: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    String: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    for<'s> &'s str: Encode<'s, B::Db> + Type<B::Db> + ColumnIndex<DbRow<B>>,
    i64: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    bool: for<'t> Encode<'t, B::Db> + for<'r> Decode<'r, B::Db> + Type<B::Db>,
    usize: ColumnIndex<DbRow<B>>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    Option<B::Id>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<String>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
    Option<i64>: for<'t> Encode<'t, B::Db> + Type<B::Db>,
{
    fn backend(&self) -> &'static str {
        B::NAME
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.ping",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn ping(&self) -> Result<(), StoreError> {
        self.exec(sqlx::query(sql::PING))
            .await
            .map(drop)
            .map_err(map::<B>)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.insert_request",
        skip_all,
        fields(backend = B::NAME, controller_id = %request.controller_id, id = %request.id)
    )]
    async fn insert_request(
        &self,
        request: &DataSubjectRequest,
        effects: &Effects,
    ) -> Result<InsertOutcome, StoreError> {
        if effects.duplicate_window.is_some() {
            let batch = [(request.clone(), effects.clone())];
            return self
                .insert_checking_duplicates(&batch)
                .await?
                .pop()
                .ok_or_else(|| StoreError::Internal("an insert answered no outcome".to_owned()));
        }
        let columns = RequestColumns::from_domain(request)?.seal(self.data_key()?)?;
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let outcome = Self::insert_one(
            &mut tx,
            self.audit_key()?,
            self.data_key()?,
            request,
            columns,
            effects,
        )
        .await?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(outcome)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.insert_requests",
        skip_all,
        fields(backend = B::NAME, batch = batch.len())
    )]
    async fn insert_requests(
        &self,
        batch: &[(DataSubjectRequest, Effects)],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        if batch.iter().any(|(_, e)| e.duplicate_window.is_some()) {
            return self.insert_checking_duplicates(batch).await;
        }
        // Rows in key order: two groups that share request ids then wait
        // on each other in the same order and never deadlock.
        let mut ordered: Vec<&(DataSubjectRequest, Effects)> = batch.iter().collect();
        ordered.sort_by(|(a, _), (b, _)| {
            (a.controller_id.as_str(), a.request_id).cmp(&(b.controller_id.as_str(), b.request_id))
        });
        let mut group = Group::plan(self.audit_key()?, self.data_key()?, ordered)?;
        if let Some(query) = B::insert_all(&mut group) {
            // One statement, which commits or fails whole.
            let mut conn = self.lend_writer().await?;
            let rows = query.fetch_all(&mut *conn).await.map_err(map::<B>)?;
            let inserted = Self::inserted_ids(&rows)?;
            let outcomes = self.outcomes(&mut conn, batch, &inserted).await?;
            conn.give_back();
            return Ok(outcomes);
        }
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let inserted = Self::write_group(&mut tx, group).await?;
        let outcomes = self.outcomes(&mut tx, batch, &inserted).await?;
        // One commit, one WAL flush, for the whole group.
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(outcomes)
    }

    #[tracing::instrument(
        name = "gdpr.store.get_request",
        level = "debug",
        skip_all,
        fields(backend = B::NAME, controller_id = %controller_id, id = %id)
    )]
    async fn get_request(
        &self,
        controller_id: &str,
        id: Uuid,
    ) -> Result<Option<DataSubjectRequest>, StoreError> {
        self.row(
            sqlx::query(sql::SELECT_REQUEST)
                .bind(B::Id::from_uuid(id))
                .bind(controller_id),
        )
        .await?
        .map(|row| Self::request_from_row(self.data_key()?, &row))
        .transpose()
    }

    #[tracing::instrument(
        name = "gdpr.store.get_requests",
        level = "debug",
        skip_all,
        fields(backend = B::NAME, controller_id = %controller_id, ids = ids.len())
    )]
    async fn get_requests(
        &self,
        controller_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        let Some(last) = ids.last() else {
            return Ok(Vec::new());
        };
        if ids.len() > sql::SELECT_REQUESTS_MAX {
            return Err(StoreError::Internal(format!(
                "{} ids in one read, more than {}",
                ids.len(),
                sql::SELECT_REQUESTS_MAX
            )));
        }
        let (statement, room) = sql::select_requests(ids.len());
        let mut query = sqlx::query(statement).bind(controller_id);
        // The list is filled up by repeating the last id: `IN` reads it once.
        for id in ids.iter().chain(std::iter::repeat(last)).take(room) {
            query = query.bind(B::Id::from_uuid(*id));
        }
        let data_key = self.data_key()?;
        self.rows(query)
            .await?
            .iter()
            .map(|row| Self::request_from_row(data_key, row))
            .collect()
    }

    #[tracing::instrument(
        name = "gdpr.store.list_requests",
        level = "debug",
        skip_all,
        fields(backend = B::NAME, controller_id = %controller_id, limit = limit)
    )]
    async fn list_requests(
        &self,
        controller_id: &str,
        filter: &RequestFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        let (after_time, after_id) = codec::cursor_values(after);
        let (statement, as_one_value) = match B::PAGE_OF_REQUESTS {
            Some(page) => (page(filter), true),
            None => (sql::list_requests(filter), false),
        };
        let mut query = sqlx::query(statement)
            .bind(controller_id)
            .bind(after_time)
            .bind(B::Id::from_uuid(after_id))
            .bind(i64::from(limit));
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(request_type) = filter.request_type {
            query = query.bind(request_type.as_str());
        }
        if as_one_value {
            let page = self.row(query).await?.ok_or_else(|| {
                StoreError::Internal("a page of requests came back without its row".to_owned())
            })?;
            let page: String = page.try_get(0).map_err(map::<B>)?;
            let key = self.data_key()?;
            return RequestColumns::page(&page)?
                .into_iter()
                .map(|columns| columns.open(key)?.into_domain())
                .collect();
        }
        self.rows(query)
            .await?
            .iter()
            .map(|row| Self::request_from_row(self.data_key()?, row))
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.update_request",
        skip_all,
        fields(
            backend = B::NAME,
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
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The open tasks are locked before the request row, the order every
        // task transaction takes (task, then request): a claim holding one
        // of these tasks while it waits for the request row would otherwise
        // deadlock with us. A task finished meanwhile drops out of the set
        // when its lock is granted (the condition is checked again).
        let open = if effects.cancel_open_tasks {
            Self::tasks_of(
                &mut tx,
                B::LOCKING.open_tasks_for_update,
                &request.controller_id,
                request.id,
            )
            .await?
        } else {
            Vec::new()
        };
        if !Self::update_request_row(&mut tx, self.data_key()?, request, expected_version).await? {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Err(StoreError::Conflict);
        }
        Self::write_effects(&mut tx, self.audit_key()?, request, effects, open).await?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(())
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.request_tasks",
        skip_all,
        fields(backend = B::NAME, controller_id = %controller_id, id = %id)
    )]
    async fn request_tasks(&self, controller_id: &str, id: Uuid) -> Result<Vec<Task>, StoreError> {
        let mut conn = self.lend().await?;
        let tasks = Self::tasks_of(&mut conn, sql::REQUEST_TASKS, controller_id, id).await?;
        conn.give_back();
        Ok(tasks)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.create_processor",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor.id)
    )]
    async fn create_processor(&self, processor: &Processor) -> Result<Created, StoreError> {
        let _turn = self.write_turn().await?;
        let inserted = B::rows_affected(
            &self
                .exec(
                    ProcessorColumns::from_domain(processor)
                        .bind_insert::<B::Db>(sqlx::query(sql::INSERT_PROCESSOR)),
                )
                .await
                .map_err(map::<B>)?,
        );
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
        fields(backend = B::NAME, limit = limit)
    )]
    async fn list_processors(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Processor>, StoreError> {
        // Every processor id is longer than the empty string.
        self.rows(
            sqlx::query(sql::LIST_PROCESSORS)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(Self::processor_from_row)
        .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.delete_processor",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor_id)
    )]
    async fn delete_processor(&self, processor_id: &str) -> Result<Deleted, StoreError> {
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        let exists = sqlx::query(B::LOCKING.processor_for_delete)
            .bind(processor_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map::<B>)?
            .is_some();
        if !exists {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Ok(Deleted::NotFound);
        }
        let busy = sqlx::query(sql::PROCESSOR_HAS_OPEN_TASKS)
            .bind(processor_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map::<B>)?
            .is_some();
        if busy {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Ok(Deleted::HasOpenTasks);
        }
        sqlx::query(sql::DELETE_PROCESSOR)
            .bind(processor_id)
            .execute(&mut *tx)
            .await
            .map_err(map::<B>)?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(Deleted::Deleted)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.create_route",
        skip_all,
        fields(
            backend = B::NAME,
            id = %route.id,
            controller_id = %route.controller_id,
            processor_id = %route.processor_id
        )
    )]
    async fn create_route(&self, route: &Route) -> Result<Created, StoreError> {
        let _turn = self.write_turn().await?;
        let inserted = self
            .exec(
                RouteColumns::from_domain(route)
                    .bind_insert::<B::Db, B::Id>(sqlx::query(sql::INSERT_ROUTE)),
            )
            .await;
        match inserted {
            Ok(done) if B::rows_affected(&done) == 1 => Ok(Created::Created),
            // The (controller, processor) pair is taken, or, far less
            // likely, the route's id.
            Ok(_) => Ok(Created::Duplicate),
            Err(e) if error::is_unique_violation(&e) => Ok(Created::Duplicate),
            Err(e) if error::is_foreign_key_violation(&e) => Ok(Created::Missing),
            Err(e) => Err(map::<B>(e)),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_routes",
        skip_all,
        fields(backend = B::NAME, limit = limit)
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
            .bind(B::Id::from_uuid(after_id))
            .bind(i64::from(limit));
        if let Some(controller_id) = &filter.controller_id {
            query = query.bind(controller_id.as_str());
        }
        if let Some(processor_id) = &filter.processor_id {
            query = query.bind(processor_id.as_str());
        }
        self.rows(query)
            .await?
            .iter()
            .map(Self::route_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.delete_route",
        skip_all,
        fields(backend = B::NAME, id = %id)
    )]
    async fn delete_route(&self, id: Uuid) -> Result<Deleted, StoreError> {
        let _turn = self.write_turn().await?;
        let deleted = B::rows_affected(
            &self
                .exec(sqlx::query(sql::DELETE_ROUTE).bind(B::Id::from_uuid(id)))
                .await
                .map_err(map::<B>)?,
        );
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
        fields(backend = B::NAME, controller_id = %controller_id)
    )]
    async fn controller_routes(&self, controller_id: &str) -> Result<Vec<Route>, StoreError> {
        self.rows(sqlx::query(sql::CONTROLLER_ROUTES).bind(controller_id))
            .await?
            .iter()
            .map(Self::route_from_row)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.claim_tasks",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor_id, max = max, claimed)
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
        let work = TaskWork::Claim {
            processor_id: processor_id.to_owned(),
            max,
            lease,
            now,
        };
        let claimed = match self.task_transaction(work).await? {
            TaskDone::Claimed(claimed) => claimed,
            TaskDone::Operated(_) => {
                return Err(StoreError::Internal(
                    "a claim was answered as a task operation".to_owned(),
                ));
            }
        };
        tracing::Span::current().record("claimed", claimed.len());
        Ok(claimed)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.task_operation",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor_id, id = %id)
    )]
    async fn task_operation(
        &self,
        processor_id: &str,
        id: Uuid,
        op: &TaskOp,
        now: Timestamp,
    ) -> Result<TaskOpResult, StoreError> {
        let work = TaskWork::Operate {
            processor_id: processor_id.to_owned(),
            id,
            op: op.clone(),
            now,
        };
        match self.task_transaction(work).await? {
            TaskDone::Operated(result) => Ok(result),
            TaskDone::Claimed(_) => Err(StoreError::Internal(
                "a task operation was answered as a claim".to_owned(),
            )),
        }
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.get_task",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor_id, id = %id)
    )]
    async fn get_task(&self, processor_id: &str, id: Uuid) -> Result<Option<TaskView>, StoreError> {
        self.row(
            sqlx::query(sql::SELECT_TASK_VIEW)
                .bind(B::Id::from_uuid(id))
                .bind(processor_id),
        )
        .await?
        .map(|row| Self::task_view_from_row(self.data_key()?, &row))
        .transpose()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_tasks",
        skip_all,
        fields(backend = B::NAME, processor_id = %processor_id, limit = limit)
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
            .bind(B::Id::from_uuid(after_id))
            .bind(i64::from(limit));
        match filter {
            TaskFilterValue::None => {}
            TaskFilterValue::Now => query = query.bind(codec::micros(now)),
            TaskFilterValue::State(state) => query = query.bind(state),
        }
        self.rows(query)
            .await?
            .iter()
            .map(|row| Self::task_view_from_row(self.data_key()?, row))
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.list_events",
        skip_all,
        fields(
            backend = B::NAME,
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
        self.rows(
            sqlx::query(sql::LIST_EVENTS)
                .bind(B::Id::from_uuid(id))
                .bind(controller_id)
                .bind(after_sequence)
                .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(|row| {
            EventColumns::read::<_, B::Id>(row)
                .map_err(map::<B>)?
                .into_domain()
        })
        .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.feed_end",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn feed_end(&self) -> Result<FeedPosition, StoreError> {
        let row = self
            .row(sqlx::query(B::FEED_END))
            .await?
            .ok_or_else(|| StoreError::Internal("the feed's end read no row".to_owned()))?;
        codec::read_feed_position::<_, B::Id>(&row)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.feed_page",
        skip_all,
        fields(backend = B::NAME, limit = limit)
    )]
    async fn feed_page(
        &self,
        controller_id: &str,
        after: FeedPosition,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        self.rows(B::feed_page(controller_id, after, limit))
            .await?
            .iter()
            .map(|row| {
                let event = EventColumns::read::<_, B::Id>(row)
                    .map_err(map::<B>)?
                    .into_domain()?;
                let at = codec::read_feed_position::<_, B::Id>(row)?;
                Ok(FeedEntry { at, event })
            })
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.backlog",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn backlog(
        &self,
        now: Timestamp,
        at_risk: SignedDuration,
    ) -> Result<crate::domain::backlog::Backlog, StoreError> {
        let [at, risk, soon] = super::gauges::deadline_bounds(now, at_risk);
        let open = sqlx::query(super::gauges::OPEN_REQUESTS)
            .bind(at)
            .bind(risk)
            .bind(soon);
        let open = self.row(open).await?;
        let open_tasks = self
            .rows(sqlx::query(super::gauges::OPEN_TASKS).bind(at))
            .await?;
        let registered = self.rows(sqlx::query(super::gauges::PROCESSORS)).await?;
        super::gauges::backlog(now, open.as_ref(), &open_tasks, &registered).map_err(map::<B>)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.sla_requests",
        skip_all,
        fields(backend = B::NAME, limit = limit)
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
        fields(backend = B::NAME, limit = limit)
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
        name = "gdpr.store.awaiting_subject_since",
        skip_all,
        fields(backend = B::NAME, limit = limit)
    )]
    async fn awaiting_subject_since(
        &self,
        since: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError> {
        self.sweep_requests(sql::AWAITING_SUBJECT_SINCE, since, after, limit)
            .await
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.sla_tasks",
        skip_all,
        fields(backend = B::NAME, limit = limit)
    )]
    async fn sla_tasks(
        &self,
        due_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        let (after_time, after_id) = codec::sweep_cursor_values(after);
        self.rows(
            sqlx::query(sql::SLA_TASKS)
                .bind(codec::micros(due_by))
                .bind(after_time)
                .bind(B::Id::from_uuid(after_id))
                .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(Self::task_from_row)
        .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.record_request_finding",
        skip_all,
        fields(
            backend = B::NAME,
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
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // The update locks the request row, which the event's sequence
        // needs; a concurrent sweeper waits here, then finds the marks
        // changed and writes nothing.
        if !Self::mark_request(&mut tx, request, marks).await? {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Ok(false);
        }
        Self::insert_event(
            &mut tx,
            self.audit_key()?,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.record_task_finding",
        skip_all,
        fields(
            backend = B::NAME,
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
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        // Task first (the update locks it), then its request, as in every
        // task transaction; the request's row for the event's sequence and
        // state.
        if !Self::mark_task(&mut tx, task, steps::task_marks(task, finding, now)).await? {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Ok(false);
        }
        let request = Self::task_request(
            &mut tx,
            self.data_key()?,
            B::LOCKING.request_for_update,
            task,
        )
        .await?;
        let event = steps::task_finding_event(task, &request, finding, now);
        Self::insert_event(
            &mut tx,
            self.audit_key()?,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.purge_due",
        skip_all,
        fields(backend = B::NAME, limit = limit)
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
        fields(backend = B::NAME, controller_id = %request.controller_id, id = %request.id)
    )]
    async fn purge_request(
        &self,
        request: &DataSubjectRequest,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some((purged, event)) = steps::purge(request, now) else {
            return Ok(false);
        };
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        if !Self::purge_row(&mut tx, &purged, request.version).await? {
            Self::roll_back(tx).await?;
            conn.give_back();
            return Ok(false);
        }
        Self::insert_event(
            &mut tx,
            self.audit_key()?,
            request.id,
            &request.controller_id,
            &event,
        )
        .await?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        Ok(true)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.audit_trails",
        skip_all,
        fields(backend = B::NAME, limit = limit)
    )]
    async fn audit_trails(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditTrail>, StoreError> {
        // The nil id sorts before every request's (v4 and v7 ids are never
        // nil), so it stands for "from the start".
        let mut trails = self
            .rows(
                sqlx::query(sql::AUDIT_REQUESTS)
                    .bind(B::Id::from_uuid(after.unwrap_or(Uuid::nil())))
                    .bind(i64::from(limit)),
            )
            .await?
            .iter()
            .map(|row| codec::read_audit_request::<_, B::Id>(row).map_err(map::<B>))
            .collect::<Result<Vec<_>, _>>()?;
        for trail in &mut trails {
            trail.events = self.trail_events(trail.id).await?;
        }
        Ok(trails)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.checked_trail",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn checked_trail(
        &self,
        id: Uuid,
    ) -> Result<Option<(AuditTrail, Option<super::audit::Finding>)>, StoreError> {
        let key = self.audit_key()?;
        let Some(row) = self
            .row(sqlx::query(sql::AUDIT_REQUEST).bind(B::Id::from_uuid(id)))
            .await?
        else {
            return Ok(None);
        };
        let mut trail = codec::read_audit_request::<_, B::Id>(&row).map_err(map::<B>)?;
        trail.events = self.trail_events(trail.id).await?;
        let finding = super::audit::verify_trail(key, &trail);
        Ok(Some((trail, finding)))
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.compliance_report",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn compliance_report(
        &self,
        query: &super::report::ReportQuery,
    ) -> Result<Vec<super::report::ReportRow>, StoreError> {
        let sql = super::report::statements(query);
        let tenant = query.controller_id.clone().unwrap_or_default();
        let regime = query.regime.map(|r| r.as_str()).unwrap_or_default();
        let (from, until) = (codec::micros(query.from), codec::micros(query.until));
        // `$1` to `$4` of every statement of the report.
        let period = |text: &'static str| {
            sqlx::query(AssertSqlSafe(text))
                .bind(tenant.clone())
                .bind(from)
                .bind(until)
                .bind(regime)
        };
        let counts = self
            .rows(period(sql.counts.as_str()).bind(codec::micros(query.now)))
            .await?;
        let mut rows = Vec::with_capacity(counts.len());
        for row in &counts {
            let n = |i: usize| {
                row.try_get::<Option<i64>, _>(i)
                    .map_err(map::<B>)
                    .map(Option::unwrap_or_default)
            };
            let mut r = super::report::ReportRow {
                group: row.try_get(0).map_err(map::<B>)?,
                received: n(1)?,
                completed: n(2)?,
                refused: n(3)?,
                cancelled: n(4)?,
                expired: n(5)?,
                duplicates: n(6)?,
                closed_within_deadline: n(7)?,
                extensions_granted: n(8)?,
                open_now: n(9)?,
                overdue_now: n(10)?,
                ..Default::default()
            };
            // Column 11 sums the days to close of the closed requests.
            let closed = r.closed();
            if closed > 0 {
                r.mean_days_to_close = Some(n(11)? as f64 / closed as f64);
            }
            rows.push(r);
        }
        let medians = self.rows(period(sql.median.as_str())).await?;
        for row in &medians {
            let group: String = row.try_get(0).map_err(map::<B>)?;
            let sum: i64 = row.try_get(1).map_err(map::<B>)?;
            let middle: i64 = row.try_get(2).map_err(map::<B>)?;
            if let Some(r) = rows.iter_mut().find(|r| r.group == group)
                && middle > 0
            {
                r.median_days_to_close = Some(sum as f64 / middle as f64);
            }
        }
        let refused = self.rows(period(sql.refused.as_str())).await?;
        for row in &refused {
            let group: String = row.try_get(0).map_err(map::<B>)?;
            let reason: String = row.try_get(1).map_err(map::<B>)?;
            let count: i64 = row.try_get(2).map_err(map::<B>)?;
            if let Some(r) = rows.iter_mut().find(|r| r.group == group) {
                r.refused_by_reason.insert(reason, count);
            }
        }
        Ok(rows)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.key_use",
        skip_all,
        fields(backend = B::NAME)
    )]
    async fn key_use(&self) -> Result<Vec<super::keys::KeyUse>, StoreError> {
        self.rows(sqlx::query(sql::KEY_USE))
            .await?
            .iter()
            .map(|row| {
                Ok(super::keys::KeyUse {
                    key_id: row.try_get(0).map_err(map::<B>)?,
                    rows: row.try_get(1).map_err(map::<B>)?,
                    values: row.try_get(2).map_err(map::<B>)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.acquire_lease",
        skip_all,
        fields(backend = B::NAME, name = %name, holder = %holder)
    )]
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await?;
        let until = now.saturating_add(ttl).unwrap_or(now);
        let taken = B::rows_affected(
            &self
                .exec(
                    sqlx::query(sql::ACQUIRE_LEASE)
                        .bind(name)
                        .bind(holder)
                        .bind(codec::micros(until))
                        .bind(codec::micros(now)),
                )
                .await
                .map_err(map::<B>)?,
        );
        Ok(taken == 1)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.revoke",
        skip_all,
        fields(backend = B::NAME, kind = revocation.target.kind())
    )]
    async fn revoke(&self, revocation: &NewRevocation) -> Result<Revocation, StoreError> {
        let target = &revocation.target;
        let _turn = self.write_turn().await?;
        let mut conn = self.lend_writer().await?;
        let mut tx = Self::begin_write(&mut conn).await?;
        if let Some(lock) = B::LOCKING.revocations_lock {
            sqlx::query(lock)
                .execute(&mut *tx)
                .await
                .map_err(map::<B>)?;
        }
        sqlx::query(sql::INSERT_REVOCATION)
            .bind(target.kind())
            .bind(target.value())
            .bind(revocation.reason.as_str())
            .bind(revocation.revoked_by.as_str())
            .bind(codec::micros(revocation.create_time))
            .execute(&mut *tx)
            .await
            .map_err(map::<B>)?;
        let row = sqlx::query(sql::SELECT_REVOCATION)
            .bind(target.kind())
            .bind(target.value())
            .fetch_one(&mut *tx)
            .await
            .map_err(map::<B>)?;
        tx.commit().await.map_err(map::<B>)?;
        conn.give_back();
        RevocationColumns::read(&row)
            .map_err(map::<B>)?
            .into_domain()
    }

    #[tracing::instrument(
        name = "gdpr.store.list_revocations",
        level = "debug",
        skip_all,
        fields(backend = B::NAME, limit = limit)
    )]
    async fn list_revocations(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.rows(
            sqlx::query(sql::LIST_REVOCATIONS)
                .bind(after.unwrap_or(0))
                .bind(i64::from(limit)),
        )
        .await?
        .iter()
        .map(|row| {
            RevocationColumns::read(row)
                .map_err(map::<B>)?
                .into_domain()
        })
        .collect()
    }

    fn key_ids(&self, purpose: KeyPurpose) -> Vec<String> {
        let ids = match purpose {
            KeyPurpose::Data => self.data_key.as_ref().map(DataKey::ids),
            KeyPurpose::Audit => self.audit_key.as_ref().map(AuditKey::ids),
        };
        ids.unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.registered_keys",
        skip_all,
        fields(backend = B::NAME, purpose = purpose.as_str())
    )]
    async fn registered_keys(&self, purpose: KeyPurpose) -> Result<Vec<RegisteredKey>, StoreError> {
        self.rows(sqlx::query(sql::REGISTERED_KEYS).bind(purpose.as_str()))
            .await?
            .iter()
            .map(|row| {
                let key_id: String = row.try_get(0).map_err(map::<B>)?;
                let since: i64 = row.try_get(1).map_err(map::<B>)?;
                let retired: Option<i64> = row.try_get(2).map_err(map::<B>)?;
                Ok(RegisteredKey {
                    key_id,
                    primary_since: codec::timestamp_of("key_registry.primary_since", since)?,
                    retired_since: retired
                        .map(|t| codec::timestamp_of("key_registry.retired_since", t))
                        .transpose()?,
                    covers_unnamed: row.try_get(3).map_err(map::<B>)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.register_key",
        skip_all,
        fields(backend = B::NAME, purpose = purpose.as_str(), key_id = %key_id)
    )]
    async fn register_key(
        &self,
        purpose: KeyPurpose,
        key_id: &str,
        since: Timestamp,
        covers_unnamed: bool,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await?;
        self.exec(
            sqlx::query(sql::REGISTER_KEY)
                .bind(purpose.as_str())
                .bind(key_id)
                .bind(codec::micros(since))
                .bind(covers_unnamed),
        )
        .await
        .map(drop)
        .map_err(map::<B>)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.retire_key",
        skip_all,
        fields(backend = B::NAME, purpose = purpose.as_str(), key_id = %key_id)
    )]
    async fn retire_key(
        &self,
        purpose: KeyPurpose,
        key_id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await?;
        self.exec(
            sqlx::query(sql::RETIRE_KEY)
                .bind(purpose.as_str())
                .bind(key_id)
                .bind(codec::micros(now)),
        )
        .await
        .map(drop)
        .map_err(map::<B>)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.key_holders",
        skip_all,
        fields(backend = B::NAME, purpose = purpose.as_str(), key_id = %key.key_id)
    )]
    async fn key_holders(
        &self,
        purpose: KeyPurpose,
        key: &RegisteredKey,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let statement = match purpose {
            KeyPurpose::Data => sql::SEALED_WITH,
            KeyPurpose::Audit => sql::CHAINED_WITH,
        };
        // `''` matches no stored value: none is empty.
        let unnamed = if key.covers_unnamed {
            purpose.unnamed_pattern()
        } else {
            String::new()
        };
        self.rows(
            sqlx::query(statement)
                .bind(purpose.pattern(&key.key_id))
                .bind(unnamed)
                .bind(i64::from(limit)),
        )
        .await?
        .into_iter()
        .map(|row| {
            row.try_get::<B::Id, _>(0)
                .map_err(map::<B>)?
                .into_uuid("data_subject_requests.id")
        })
        .collect()
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.reseal_page",
        skip_all,
        fields(backend = B::NAME, limit = limit, moved = tracing::field::Empty, unreadable = tracing::field::Empty)
    )]
    async fn reseal_page(&self, after: Option<Uuid>, limit: u32) -> Result<Resealed, StoreError> {
        let key = self.data_key()?;
        let rows = self
            .rows(
                sqlx::query(sql::RESEAL_CANDIDATES)
                    .bind(B::Id::from_uuid(after.unwrap_or(Uuid::nil())))
                    .bind(KeyPurpose::Data.pattern(key.primary_id()))
                    .bind(i64::from(limit)),
            )
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = |i| row.try_get::<Option<String>, _>(i).map_err(map::<B>);
            found.push(SealedRow {
                id: row
                    .try_get::<B::Id, _>(0)
                    .map_err(map::<B>)?
                    .into_uuid("data_subject_requests.id")?,
                controller_id: row.try_get(1).map_err(map::<B>)?,
                version: row.try_get(2).map_err(map::<B>)?,
                values: [read(3)?, read(4)?, read(5)?, read(6)?],
            });
        }
        let next = match found.last() {
            Some(last) if found.len() == limit as usize => Some(last.id),
            _ => None,
        };
        let mut page = Resealed {
            candidates: found.len() as u64,
            next,
            ..Resealed::default()
        };
        let mut updates = Vec::with_capacity(found.len());
        for row in &found {
            match row.resealed(key) {
                Ok(values) => updates.push((row.id, row.version, values)),
                // A key the ring lacks, or a value that does not open: the
                // reads of that request already say so; the re-seal leaves
                // it as it is.
                Err(StoreError::Corrupt(_)) => page.unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        if !updates.is_empty() {
            let _turn = self.write_turn().await?;
            let mut conn = self.lend_writer().await?;
            let mut tx = Self::begin_write(&mut conn).await?;
            for (id, version, [dob, email, guardian_name, guardian_email]) in updates {
                let done = sqlx::query(sql::RESEAL_REQUEST)
                    .bind(B::Id::from_uuid(id))
                    .bind(version)
                    .bind(dob)
                    .bind(email)
                    .bind(guardian_name)
                    .bind(guardian_email)
                    .execute(&mut *tx)
                    .await
                    .map_err(map::<B>)?;
                page.moved += B::rows_affected(&done);
            }
            tx.commit().await.map_err(map::<B>)?;
            conn.give_back();
        }
        let span = tracing::Span::current();
        span.record("moved", page.moved);
        span.record("unreadable", page.unreadable);
        Ok(page)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.release_lease",
        skip_all,
        fields(backend = B::NAME, name = %name, holder = %holder)
    )]
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await?;
        self.exec(sqlx::query(sql::RELEASE_LEASE).bind(name).bind(holder))
            .await
            .map(drop)
            .map_err(map::<B>)
    }

    #[tracing::instrument(
        level = "debug",
        name = "gdpr.store.lease",
        skip_all,
        fields(backend = B::NAME, name = %name)
    )]
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.row(sqlx::query(sql::SELECT_LEASE).bind(name))
            .await?
            .map(|row| LeaseColumns::read(&row).map_err(map::<B>)?.into_domain())
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(number: u64) -> TaskJob {
        TaskJob {
            number,
            work: TaskWork::Claim {
                processor_id: "p".to_owned(),
                max: 1,
                lease: SignedDuration::from_secs(60),
                now: Timestamp::UNIX_EPOCH,
            },
            reply: oneshot::channel().0,
        }
    }

    /// The works of a batch in order, each writing one row, `true` for
    /// those that keep their writes: the rows the committed batch holds.
    async fn batch_of_steps(kept: &[bool]) -> Vec<i64> {
        use sqlx::SqliteConnection;
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        let mut previous = false;
        for (n, keep) in kept.iter().enumerate() {
            let point = StepPoint {
                needed: true,
                previous,
                opened: false,
            };
            let text = format!("{}; INSERT INTO t (n) VALUES ({n})", point.prelude());
            sqlx::query(sqlx::AssertSqlSafe(text))
                .execute(&mut *tx)
                .await
                .unwrap();
            previous = *keep;
            if !keep {
                sqlx::query(sql::UNDO_STEP).execute(&mut *tx).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_keeps_the_writes_of_the_works_that_kept_them_and_no_other() {
        assert_eq!(batch_of_steps(&[true, false, true]).await, [0, 2]);
        assert_eq!(batch_of_steps(&[false, true, true]).await, [1, 2]);
        assert_eq!(batch_of_steps(&[true, true, false]).await, [0, 1]);
        assert_eq!(batch_of_steps(&[false, false]).await, Vec::<i64>::new());
        assert_eq!(
            batch_of_steps(&[true, false, false, true, false]).await,
            [0, 3]
        );
    }

    #[test]
    fn a_lone_work_opens_no_savepoint() {
        let point = StepPoint::default();
        assert_eq!(point.prelude(), "");
    }

    #[test]
    fn work_whose_caller_stops_waiting_leaves_the_queue_unless_a_batch_took_it() {
        let queue = std::sync::Mutex::new(vec![job(1), job(2), job(3)]);
        drop(Queued {
            queue: &queue,
            number: 2,
        });
        let left: Vec<u64> = lock(&queue).iter().map(|j| j.number).collect();
        assert_eq!(
            left,
            [1, 3],
            "the dropped caller's work is gone, the others stay"
        );

        // Taken by a batch: nothing to take back.
        let taken: Vec<TaskJob> = lock(&queue).drain(..1).collect();
        let queued = Queued {
            queue: &queue,
            number: taken[0].number,
        };
        assert!(!queued.withdraw());
        drop(queued);
        assert_eq!(lock(&queue).len(), 1);
    }
}
