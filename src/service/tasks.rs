//! A processor's tasks: claim, the lease-holding operations (renew,
//! release, complete), and the listings a processor reads and watches.

use jiff::{SignedDuration, Timestamp};
use opentelemetry::KeyValue;
use uuid::Uuid;

use super::{AppState, Listed, ServiceError};
use crate::auth::Caller;
use crate::domain::routing::{TASK_PREFIX, TaskState, TaskView};
use crate::store::{Cursor, TaskOp, TaskOpResult};
use crate::telemetry;

/// One span per claimed task, under the claim's, with the task's and its
/// request's attributes and a link to the call that submitted the request;
/// the claim's span is linked to each of those calls too.
fn trace_claimed(tasks: &[TaskView]) {
    telemetry::record_attributes(|| {
        [KeyValue::new(
            "dsr.task.claimed",
            i64::try_from(tasks.len()).unwrap_or(i64::MAX),
        )]
    });
    for view in tasks {
        tracing::info_span!("gdpr.tasks.claimed").in_scope(|| telemetry::record_task_view(view));
        if let Some(origin) = &view.origin {
            telemetry::link_origin(origin);
        }
    }
}

impl AppState {
    /// Hands `caller` up to `max` claimable tasks, earliest deadline first,
    /// each under a fresh lease of `lease`.
    pub async fn claim_tasks(
        &self,
        caller: &Caller,
        max: u32,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, ServiceError> {
        let tasks = self
            .store
            .claim_tasks(&caller.tenant, max, lease, now)
            .await?;
        trace_claimed(&tasks);
        Ok(tasks)
    }

    /// Runs a lease-holding operation (renew, release, complete) and
    /// records on the call's span what it did: the task, its request (all
    /// of it when the operation moved the request), and a link to the call
    /// that submitted it. A completion that finishes the request's tasks
    /// completes or flags the request in the same transaction.
    pub async fn task_operation(
        &self,
        caller: &Caller,
        id: Uuid,
        op: TaskOp,
        now: Timestamp,
    ) -> Result<TaskView, ServiceError> {
        telemetry::record_attributes(|| {
            [
                KeyValue::new("dsr.task.name", format!("{TASK_PREFIX}{id}")),
                KeyValue::new("dsr.task.processor_id", caller.tenant.clone()),
            ]
        });
        match self
            .store
            .task_operation(&caller.tenant, id, &op, now)
            .await?
        {
            TaskOpResult::Done(view, moved) => {
                telemetry::record_task_view(&view);
                if let Some(request) = moved {
                    // Its tasks completed or flagged the request just now.
                    self.record_close(&request);
                    telemetry::record_request(&request, now);
                }
                if matches!(op, TaskOp::Release { .. }) {
                    self.announce_processor(&caller.tenant);
                }
                Ok(*view)
            }
            TaskOpResult::NotFound => Err(ServiceError::NotFound("task")),
            TaskOpResult::Refused(e) => Err(ServiceError::FailedPrecondition {
                reason: e.reason,
                message: e.message,
            }),
        }
    }

    /// A page of `processor_id`'s tasks, in `state` if given, after
    /// `after`.
    pub async fn list_tasks(
        &self,
        processor_id: &str,
        state: Option<TaskState>,
        after: Option<&Cursor>,
        size: u32,
        now: Timestamp,
    ) -> Result<Listed<TaskView>, ServiceError> {
        let rows = self
            .store
            .list_tasks(processor_id, state, after, size + 1, now)
            .await?;
        Ok(Listed::of(rows, size))
    }

    /// Up to `max` of `processor_id`'s claimable tasks, for a watcher.
    pub async fn claimable_tasks(
        &self,
        processor_id: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<Vec<TaskView>, ServiceError> {
        Ok(self
            .store
            .list_tasks(processor_id, Some(TaskState::Pending), None, max, now)
            .await?)
    }
}
