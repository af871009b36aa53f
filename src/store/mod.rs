//! Durable storage: one trait, two backends (SQLite and PostgreSQL).
//!
//! Only this module issues SQL. Database errors become [`StoreError`] at its
//! edge; no SQL text or driver message leaves it towards a client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::domain::request::{DataSubjectRequest, NewEvent, RequestEvent, RequestType, State};
use crate::domain::revocation::{NewRevocation, Revocation};
use crate::domain::routing::{Completion, Processor, Route, Task, TaskError, TaskState, TaskView};
use crate::domain::sla::Finding;

pub mod audit;
pub mod backup;
mod batch;
mod codec;
pub mod crypt;
mod error;
pub mod feed;
mod gauges;
mod group;
pub use crate::keyfile::KeyFileError;
pub mod keys;
mod lend;
mod postgres;
mod queue;
mod reads;
pub mod report;
mod sql;
mod sql_store;
mod sqlite;
mod steps;
mod writes;

pub use crate::clock::to_stored_precision;
pub use audit::{AuditKey, AuditTrail};
pub use crypt::DataKey;
pub use feed::{FeedEntry, FeedPosition};
pub use group::{GroupCommitConfig, GroupCommitter, Inserted};
pub use postgres::PostgresStore;
pub use reads::{MAX_READ_GROUP, ReadGroup, RouteReads};
pub use sqlite::SqliteStore;

/// What can go wrong in the store, in the terms the API needs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time. Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The row changed since it was read (optimistic concurrency).
    #[error("the request was changed concurrently")]
    Conflict,
    /// A stored value could not be read back into the domain.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database failure. The text is for logs only.
    #[error("database error: {0}")]
    Internal(String),
}

/// What a request's change writes besides the request row, in the same
/// transaction.
#[derive(Clone, Debug, Default)]
pub struct Effects {
    /// Audit events, in this order (sequences are assigned by the store).
    pub events: Vec<NewEvent>,
    /// Tasks to create (the fan-out). The caller adds a `task_created`
    /// event for each to `events`.
    pub new_tasks: Vec<Task>,
    /// Cancel every open task of the request (it reached a final state),
    /// each with a `task_cancelled` event written by the store. "Open" is
    /// judged before this change: `new_tasks` are not cancelled, and a new
    /// request has nothing to cancel. The `task_cancelled` events follow
    /// `events`.
    pub cancel_open_tasks: bool,
    /// A new request only: how far back an open request of the same
    /// subject and type makes it a duplicate
    /// ([`crate::domain::duplicate`]); `None` never does. The store
    /// decides inside the request's commit, and a duplicate is stored
    /// without these effects' tasks and events, with its own event and one
    /// on the request it repeats.
    pub duplicate_window: Option<jiff::SignedDuration>,
}

impl Effects {
    /// Just one event.
    pub fn event(event: NewEvent) -> Self {
        Self {
            events: vec![event],
            ..Self::default()
        }
    }
}

/// Result of a create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// Something with the same key exists.
    Duplicate,
    /// Something it refers to does not exist.
    Missing,
}

/// Result of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// A processor with open tasks is not deleted.
    HasOpenTasks,
}

/// Filters of `list_routes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFilter {
    pub controller_id: Option<String>,
    pub processor_id: Option<String>,
}

/// A lease-holding operation on a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOp {
    Renew {
        token: String,
        lease: SignedDuration,
    },
    Release {
        token: String,
        reason: Option<String>,
    },
    Complete {
        token: String,
        completion: Completion,
    },
}

/// What a task operation did.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskOpResult {
    /// Applied (or a completion replayed): the task as it is now, and the
    /// request if this very operation moved it (its tasks completed it or
    /// a failure flagged it).
    Done(Box<TaskView>, Option<Box<DataSubjectRequest>>),
    /// No such task for this processor.
    NotFound,
    /// The domain refused it (lease not held, task cancelled…).
    Refused(TaskError),
}

/// Result of inserting a new request.
#[derive(Debug)]
pub enum InsertOutcome {
    /// The request was stored with its first event.
    Created,
    /// A request with the same `(controller_id, request_id)` already exists;
    /// nothing was written. The caller compares fingerprints.
    Existing(Box<DataSubjectRequest>),
    /// The request repeated an open one ([`Effects::duplicate_window`]) and
    /// was stored as its duplicate, as it is here, with its own event and
    /// a `duplicate_received` event on the open one; its tasks and events
    /// were not written.
    Duplicate(Box<DataSubjectRequest>),
}

/// Filters of `list_requests`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub state: Option<State>,
    pub request_type: Option<RequestType>,
}

/// Position after which a page starts: requests are listed by
/// `(create_time, id)` ascending, a total and stable order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub create_time: Timestamp,
    pub id: Uuid,
}

/// Position after which a sweep's page starts: rows in `(time, id)` order,
/// the time being what the listing orders by (a due time, a receipt time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepCursor {
    pub time: Timestamp,
    pub id: Uuid,
}

/// Who holds a lease, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expire_time: Timestamp,
}

/// Everything the service stores.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and telemetry.
    fn backend(&self) -> &'static str;

    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a new request with its effects (events, fan-out tasks) in one
    /// transaction. If the controller already has a request with this
    /// `request_id`, writes nothing and returns it (also under concurrency:
    /// many identical inserts at once store exactly one).
    async fn insert_request(
        &self,
        request: &DataSubjectRequest,
        effects: &Effects,
    ) -> Result<InsertOutcome, StoreError>;

    /// Inserts several new requests in ONE transaction (group commit): each
    /// outcome is what [`Store::insert_request`] would have answered for it,
    /// in the batch's order. All or nothing: on an error none is stored and
    /// every caller in the group gets the error. A batch may hold the same
    /// `(controller_id, request_id)` twice; the second is `Existing`.
    async fn insert_requests(
        &self,
        batch: &[(DataSubjectRequest, Effects)],
    ) -> Result<Vec<InsertOutcome>, StoreError>;

    /// One request of one controller; `None` if it does not exist or belongs
    /// to another controller.
    async fn get_request(
        &self,
        controller_id: &str,
        id: Uuid,
    ) -> Result<Option<DataSubjectRequest>, StoreError>;

    /// The requests among `ids` that exist and belong to `controller_id`,
    /// in no particular order, read in one round trip (the reads that
    /// [`ReadGroup`] gathers). At most [`MAX_READ_GROUP`] ids.
    async fn get_requests(
        &self,
        controller_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Up to `limit` requests of one controller after `after`, in
    /// `(create_time, id)` order.
    async fn list_requests(
        &self,
        controller_id: &str,
        filter: &RequestFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Writes a changed request and its effects in one transaction, if the
    /// stored version is still `expected_version`; otherwise
    /// [`StoreError::Conflict`] and nothing is written.
    async fn update_request(
        &self,
        request: &DataSubjectRequest,
        expected_version: i64,
        effects: &Effects,
    ) -> Result<(), StoreError>;

    /// Every task of one request of one controller, oldest first.
    async fn request_tasks(&self, controller_id: &str, id: Uuid) -> Result<Vec<Task>, StoreError>;

    // --- routing administration ---

    /// Registers a processor; `Duplicate` if the id is taken.
    async fn create_processor(&self, processor: &Processor) -> Result<Created, StoreError>;

    /// Up to `limit` processors with an id greater than `after`, by id.
    async fn list_processors(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Processor>, StoreError>;

    /// Removes a processor and its routes, unless it has open (pending or
    /// leased) tasks.
    async fn delete_processor(&self, processor_id: &str) -> Result<Deleted, StoreError>;

    /// Creates a route; `Duplicate` if the controller already has a route to
    /// this processor, `Missing` if the processor does not exist.
    async fn create_route(&self, route: &Route) -> Result<Created, StoreError>;

    /// Up to `limit` routes after `after` in `(create_time, id)` order.
    async fn list_routes(
        &self,
        filter: &RouteFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Route>, StoreError>;

    /// Deletes a route; `NotFound` if there is none with this id.
    async fn delete_route(&self, id: Uuid) -> Result<Deleted, StoreError>;

    /// Every route of one controller (for fan-out).
    async fn controller_routes(&self, controller_id: &str) -> Result<Vec<Route>, StoreError>;

    // --- processor tasks ---

    /// Leases up to `max` claimable tasks of one processor (pending, or
    /// leased with a lease ended at `now`), earliest `due_time` first, each
    /// with a fresh random lease token, via [`Task::claim`], and writes a
    /// `task_claimed` event on each task's request. Concurrent claimers of
    /// the same processor never receive the same task (PostgreSQL: row locks
    /// with SKIP LOCKED; SQLite: serialized writes).
    async fn claim_tasks(
        &self,
        processor_id: &str,
        max: u32,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, StoreError>;

    /// Runs one lease-holding operation on one task of one processor, in one
    /// transaction: locks the task, applies the domain method
    /// ([`Task::renew`], [`Task::release`] or [`Task::complete`]), writes it
    /// and its event (none for a renewal or a replayed completion). A
    /// completion then aggregates the request's tasks
    /// ([`routing::aggregate`](crate::domain::routing::aggregate)) and, if
    /// they decide it, completes the request
    /// ([`DataSubjectRequest::complete_by_processors`]) or flags it
    /// ([`DataSubjectRequest::flag_needs_attention`]) with its event, in the
    /// same transaction.
    async fn task_operation(
        &self,
        processor_id: &str,
        id: Uuid,
        op: &TaskOp,
        now: Timestamp,
    ) -> Result<TaskOpResult, StoreError>;

    /// One task of one processor.
    async fn get_task(&self, processor_id: &str, id: Uuid) -> Result<Option<TaskView>, StoreError>;

    /// Up to `limit` tasks of one processor after `after` in
    /// `(create_time, id)` order; a state filter uses the visible state
    /// ([`Task::visible_state`] at `now`).
    async fn list_tasks(
        &self,
        processor_id: &str,
        state: Option<TaskState>,
        after: Option<&Cursor>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, StoreError>;

    /// Up to `limit` events of one request of one controller with a sequence
    /// greater than `after_sequence`, oldest first. Empty if the request does
    /// not exist or belongs to another controller.
    async fn list_events(
        &self,
        controller_id: &str,
        id: Uuid,
        after_sequence: i64,
        limit: u32,
    ) -> Result<Vec<RequestEvent>, StoreError>;

    /// Up to `limit` events of every request of one controller after
    /// `after`, in feed order ([`feed`]): those that can no longer be
    /// preceded by an event still to commit.
    async fn feed_page(
        &self,
        controller_id: &str,
        after: FeedPosition,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, StoreError>;

    /// The place no cursor of this database's feed can be past: a cursor
    /// beyond it was issued by another database, or before this one was
    /// restored from a backup.
    async fn feed_end(&self) -> Result<FeedPosition, StoreError>;

    // --- SLA watchdog (across every controller) ---

    /// The backlog gauges' figures at `now` (see [`gauges`]): the open
    /// requests of every controller by state (states with none left out)
    /// and by deadline window (`at_risk` is the
    /// request at-risk threshold), and every processor's open tasks.
    async fn backlog(
        &self,
        now: Timestamp,
        at_risk: SignedDuration,
    ) -> Result<crate::domain::backlog::Backlog, StoreError>;

    /// Up to `limit` open requests of every controller due at or before
    /// `due_by` whose breach has not been reported, after `after` in
    /// `(due_time, id)` order: what the watchdog looks at, deciding with
    /// [`sla::request_finding`](crate::domain::sla::request_finding).
    async fn sla_requests(
        &self,
        due_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Up to `limit` requests of every controller awaiting guardian consent
    /// and received before `received_before`, after `after` in
    /// `(received_at, id)` order: those whose consent window has passed.
    async fn awaiting_consent_since(
        &self,
        received_before: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Up to `limit` requests of every controller waiting for their subject
    /// (identity information or a clarification) since `since` or before,
    /// after `after` in `(wait start, id)` order: those past the
    /// awaiting-subject timeout.
    async fn awaiting_subject_since(
        &self,
        since: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Up to `limit` open (pending or leased) tasks of every processor due
    /// at or before `due_by` whose breach has not been reported, after
    /// `after` in `(due_time, id)` order.
    async fn sla_tasks(
        &self,
        due_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// Records `finding` about `request` (as the watchdog read it) at
    /// `now`: sets its SLA mark and writes its `sla_at_risk` or
    /// `sla_breached` event
    /// ([`sla::request_event`](crate::domain::sla::request_event)) in one
    /// transaction, if the stored request still has the version and marks
    /// read. Otherwise writes nothing and returns `false`: a call changed
    /// it, or another sweeper reported the finding first; the next sweep
    /// decides again. The version does not change.
    async fn record_request_finding(
        &self,
        request: &DataSubjectRequest,
        finding: Finding,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Records `finding` about `task` (as the watchdog read it) at `now`:
    /// sets its SLA mark and writes the event on its request's trail
    /// ([`sla::task_event`](crate::domain::sla::task_event)) in one
    /// transaction, if the task is still open with the marks read;
    /// otherwise writes nothing and returns `false`.
    async fn record_task_finding(
        &self,
        task: &Task,
        finding: Finding,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    // --- retention purge (across every controller) ---

    /// Up to `limit` requests of every controller closed at or before
    /// `closed_by` and not purged yet, after `after` in `(close_time, id)`
    /// order: what the retention purge looks at, deciding with
    /// [`retention::purge_due`](crate::domain::retention::purge_due).
    async fn purge_due(
        &self,
        closed_by: Timestamp,
        after: Option<&SweepCursor>,
        limit: u32,
    ) -> Result<Vec<DataSubjectRequest>, StoreError>;

    /// Removes the personal data of `request` (as read) at `now`
    /// ([`DataSubjectRequest::purge`]): empties its personal-data columns,
    /// sets its purge time and writes its `purged` event through the
    /// chained audit trail, in one transaction, if the stored request still
    /// has the version read and was not purged. Otherwise (or if it is not
    /// closed) writes nothing and returns `false`: purging twice does
    /// nothing more.
    async fn purge_request(
        &self,
        request: &DataSubjectRequest,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    // --- audit trail ---

    /// Up to `limit` requests of every controller with an id greater than
    /// `after`, by id, each with its whole audit trail as stored (hashes
    /// included, nothing parsed), for [`audit::verify`].
    async fn audit_trails(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditTrail>, StoreError>;

    /// Request `id`'s trail (of whichever controller), checked against
    /// this store's audit ring: the trail and its first problem, if any;
    /// `None` if there is no such request.
    async fn checked_trail(
        &self,
        id: Uuid,
    ) -> Result<Option<(AuditTrail, Option<audit::Finding>)>, StoreError>;

    // --- reporting ---

    /// The compliance report's rows for `query`, computed in the database,
    /// ordered by group.
    async fn compliance_report(
        &self,
        query: &report::ReportQuery,
    ) -> Result<Vec<report::ReportRow>, StoreError>;

    // --- keys ---

    /// The sealed personal-data values and the requests holding them, per
    /// data key id, for `keys status`.
    async fn key_use(&self) -> Result<Vec<keys::KeyUse>, StoreError>;

    /// The ids of this store's ring of `purpose`, the primary first (none
    /// without keys).
    fn key_ids(&self, purpose: keys::KeyPurpose) -> Vec<String>;

    /// The keys of `purpose` made primary so far, the newest first.
    async fn registered_keys(
        &self,
        purpose: keys::KeyPurpose,
    ) -> Result<Vec<keys::RegisteredKey>, StoreError>;

    /// Records key `key_id` of `purpose` as made primary at `since`
    /// (covering what names no key if `covers_unnamed`), unless it was
    /// before.
    async fn register_key(
        &self,
        purpose: keys::KeyPurpose,
        key_id: &str,
        since: Timestamp,
        covers_unnamed: bool,
    ) -> Result<(), StoreError>;

    /// Retires key `key_id` of `purpose` at `now`, once nothing stored
    /// needs it: it is never made primary again.
    async fn retire_key(
        &self,
        purpose: keys::KeyPurpose,
        key_id: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Up to `limit` requests, by id, that need key `key`: a personal-data
    /// value sealed with it, or an event chained with it (or, if it covers
    /// them, one that names no key).
    async fn key_holders(
        &self,
        purpose: keys::KeyPurpose,
        key: &keys::RegisteredKey,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// One page of the re-seal: up to `limit` requests after `after` (by
    /// id) holding personal data sealed with another key than this store's
    /// primary, each opened with the ring and sealed with the primary, the
    /// page written in one transaction. A row changed meanwhile is left for
    /// the next pass; one the ring cannot open is counted, not written.
    async fn reseal_page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<keys::Resealed, StoreError>;

    // --- revocations ---

    /// Records `revocation` unless its target is revoked already; either
    /// way returns the revocation stored for the target.
    async fn revoke(&self, revocation: &NewRevocation) -> Result<Revocation, StoreError>;

    /// Up to `limit` revocations numbered after `after`, in order. Numbers
    /// are given in the order revocations commit, so asking after the last
    /// number seen returns exactly those recorded since.
    async fn list_revocations(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError>;

    // --- leases: one replica at a time ---

    /// Takes lease `name` for `holder` until `now + ttl`, or extends it,
    /// if nobody holds it, `holder` already does, or its holder let it
    /// lapse by `now`. Returns whether `holder` holds it now. Of several
    /// replicas asking at once, exactly one gets it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Result<bool, StoreError>;

    /// Gives lease `name` up if `holder` holds it, so that another replica
    /// may take it at once; does nothing otherwise.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Who holds lease `name` and until when (lapsed or not); `None` if
    /// nobody took it or it was given up.
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `postgres://…` for PostgreSQL; `None` for SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the SQLite file lives.
    pub data_dir: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// How long a call waits for a pooled connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run (PostgreSQL `statement_timeout`,
    /// SQLite busy timeout).
    pub statement_timeout: Duration,
    /// Keys the audit trail's hash chain ([`audit`]): the configured key
    /// file or the development one, never a key made up on the spot. A store
    /// without one reads its tables but refuses to write an event.
    pub audit_key: Option<AuditKey>,
    /// Seals personal data at rest ([`crypt`]), loaded like the audit key.
    /// A store without one refuses to read or write personal data (what
    /// `migrate` and `audit verify` open).
    pub data_key: Option<DataKey>,
}

impl StoreConfig {
    /// SQLite in `data_dir` with default limits.
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            audit_key: None,
            data_key: None,
        }
    }

    /// PostgreSQL at `url` with default limits.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            database_url: Some(url.into()),
            ..Self::sqlite("./data")
        }
    }

    /// The same configuration with both keys.
    pub fn with_keys(self, audit_key: AuditKey, data_key: DataKey) -> Self {
        Self {
            audit_key: Some(audit_key),
            data_key: Some(data_key),
            ..self
        }
    }

    /// Both keys, or which one is missing: what a serving store needs.
    pub fn require_keys(&self) -> Result<(), StoreError> {
        match (&self.audit_key, &self.data_key) {
            (Some(_), Some(_)) => Ok(()),
            (None, _) => Err(StoreError::Internal(
                "the store has no audit key (set --audit-key-file)".to_owned(),
            )),
            (_, None) => Err(StoreError::Internal(
                "the store has no data key (set --data-key-file)".to_owned(),
            )),
        }
    }
}

/// Connects to the configured backend. With `migrate`, applies pending
/// migrations first.
pub async fn connect(config: &StoreConfig, migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    match &config.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::connect(config).await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store))
        }
        Some(url) if url.starts_with("sqlite:") => Err(StoreError::Internal(
            "set --data-dir for SQLite instead of a sqlite: database url".to_owned(),
        )),
        Some(_) => Err(StoreError::Internal(
            "the database url must start with postgres:// or postgresql://".to_owned(),
        )),
        None => {
            let store = SqliteStore::connect(config).await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store))
        }
    }
}
