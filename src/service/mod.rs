//! The use cases, once each, for the gRPC handlers and the SLA watchdog
//! alike: read from the store, apply the domain's rules, write back with
//! the effects a change has (events, tasks, cancellations), retry a lost
//! versioned update, and record what happened on the current span and in
//! the counters. No proto and no gRPC here: handlers convert and map
//! [`ServiceError`] to a status; the watchdog decides when to sweep.

pub mod access;
mod error;
pub mod evidence;
pub mod reporting;
pub mod requests;
pub mod routing;
pub mod sweep;
pub mod tasks;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::auth::{AuthError, Authenticator, Caller, Role};
use crate::clock::Clock;
use crate::domain::age::AgePolicy;
use crate::domain::jurisdiction::Jurisdiction;
use crate::domain::request::DataSubjectRequest;
use crate::domain::routing::Task;
use crate::domain::sla;
use crate::store::{GroupCommitter, ReadGroup, RouteReads, Store};

pub use error::ServiceError;
// The store's value types that callers pass in or get back (page
// positions, filters, task operations, the store's failures inside
// `ServiceError`): callers above the service name them through it and
// never import the store.
pub use crate::store::keys::Resealed;
pub use crate::store::{
    Cursor, FeedEntry, FeedPosition, RequestFilter, RouteFilter, StoreError, SweepCursor, TaskOp,
};

/// What every handler and the watchdog share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub clock: Arc<dyn Clock>,
    pub age_policy: AgePolicy,
    /// The service's instruments (submitted, blocked, open requests).
    pub metrics: crate::telemetry::Metrics,
    /// Each controller's country, whose public holidays processor SLAs skip.
    pub controller_calendars: Arc<HashMap<String, Jurisdiction>>,
    /// Groups concurrent submissions into shared commits.
    pub committer: GroupCommitter,
    /// Groups concurrent reads of single requests into shared statements.
    pub reader: ReadGroup,
    /// Groups concurrent reads of a controller's routes (fan-out).
    pub routes: RouteReads,
    /// Processor ids with newly claimable tasks, for `WatchTasks`.
    pub task_announcements: broadcast::Sender<String>,
    /// The keys that sign evidence bundles.
    pub evidence_key: crate::evidence::EvidenceKey,
    /// How far back an open request of the same subject and type makes a
    /// submission its duplicate (`--duplicate-window`); `None`: never.
    pub duplicate_window: Option<jiff::SignedDuration>,
}

/// One page of a listing: the rows asked for, and whether more follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<T> {
    pub rows: Vec<T>,
    pub more: bool,
}

impl<T> Listed<T> {
    /// `rows` read with one row beyond `size`, which tells whether another
    /// page exists.
    fn of(mut rows: Vec<T>, size: u32) -> Self {
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        Self { rows, more }
    }

    /// The last row of a page that has a next one: where the next starts.
    pub fn next_after(&self) -> Option<&T> {
        self.rows.last().filter(|_| self.more)
    }
}

impl AppState {
    /// The calendar a controller's processor SLAs are counted on: its
    /// configured country, or else the subject's.
    pub fn work_calendar<'a>(
        &'a self,
        controller_id: &str,
        subject: &'a Jurisdiction,
    ) -> &'a Jurisdiction {
        self.controller_calendars
            .get(controller_id)
            .unwrap_or(subject)
    }

    /// Tells watchers which processors have new tasks. Nobody listening is
    /// fine: a watcher also polls.
    pub fn announce_tasks(&self, tasks: &[Task]) {
        for t in tasks {
            let _ = self.task_announcements.send(t.processor_id.clone());
        }
    }

    /// Measures a request a call has just closed (completed or refused):
    /// the share of the time allowed it took. Anything else is not timed.
    pub fn record_close(&self, request: &DataSubjectRequest) {
        if let Some(used) = sla::time_used(request) {
            self.metrics
                .request_closed(request.request_type, request.regime, request.state, used);
        }
    }

    /// Checks the caller's token and role. A refusal is logged (its reason,
    /// never the token) and counted by reason.
    pub fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        allowed: &[Role],
    ) -> Result<Caller, AuthError> {
        self.auth.authorize(metadata, allowed).inspect_err(|e| {
            tracing::warn!(reason = e.reason(), error = %e, "call refused: authentication or role");
            self.metrics.auth_failed(e.reason());
        })
    }

    /// Tells watchers that `processor_id` has a task claimable again.
    pub fn announce_processor(&self, processor_id: &str) {
        let _ = self.task_announcements.send(processor_id.to_owned());
    }
}
