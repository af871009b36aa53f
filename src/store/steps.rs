//! The decisions inside the store's task and SLA transactions, written once
//! for both backends: each backend reads and locks the rows, calls these,
//! and writes what they changed. Nothing here touches the database; the
//! rules themselves are the domain's ([`Task`]'s lease methods,
//! [`routing::aggregate`], the request's transitions, [`sla`]).

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::audit::{self, AuditKey};
use super::codec::EventColumns;
use super::{StoreError, TaskOp};
use crate::domain::request::{Actor, DataSubjectRequest, EventType, NewEvent};
use crate::domain::routing::{self, Aggregate, Completed, Task, TaskError, TaskOutcome, TaskView};
use crate::domain::sla::{self, Finding, SlaMarks};

/// Who a processor's task events are attributed to.
pub(super) fn processor_actor(processor_id: &str) -> Actor {
    Actor {
        id: processor_id.to_owned(),
        role: "processor".to_owned(),
    }
}

/// A task as its processor sees it, with what it may know of the request.
pub(super) fn task_view(task: Task, request: &DataSubjectRequest) -> TaskView {
    TaskView {
        task,
        request_type: request.request_type,
        external_id: request.subject.external_id.clone(),
        email: request.subject.email().cloned(),
        country: request.subject.jurisdiction.country(),
        corrections: request.corrections.clone(),
        origin: request.origin.clone(),
    }
}

/// `request` (as read) purged of its personal data at `now`, with its
/// `purged` event; `None` if it is not closed or already purged.
pub(super) fn purge(
    request: &DataSubjectRequest,
    now: Timestamp,
) -> Option<(DataSubjectRequest, NewEvent)> {
    let mut purged = request.clone();
    let event = purged.purge(now).ok()?;
    Some((purged, event))
}

/// Leases a claimable task under a fresh random token and returns its
/// `task_claimed` event.
pub(super) fn claim(
    task: &mut Task,
    request: &DataSubjectRequest,
    lease: SignedDuration,
    now: Timestamp,
) -> NewEvent {
    let redelivered = task.claim(Uuid::new_v4().to_string(), lease, now);
    let reason = if redelivered {
        format!(
            "attempt {}: redelivered after the lease ended",
            task.attempt
        )
    } else {
        format!("attempt {}", task.attempt)
    };
    request.task_event(
        EventType::TaskClaimed,
        task.id,
        &processor_actor(&task.processor_id),
        reason,
        now,
    )
}

/// Cancels the open tasks of a request that has just ended (the request as
/// changed), each with its `task_cancelled` event, at the request's update
/// time. Tasks that are no longer open are left out.
pub(super) fn cancel_open(request: &DataSubjectRequest, open: Vec<Task>) -> Vec<(Task, NewEvent)> {
    let now = request.update_time;
    open.into_iter()
        .filter_map(|mut task| {
            if !task.cancel(now) {
                return None;
            }
            let event = request.task_event(
                EventType::TaskCancelled,
                task.id,
                &Actor::system(),
                "the request ended".to_owned(),
                now,
            );
            Some((task, event))
        })
        .collect()
}

/// What a lease-holding operation did to its task.
#[derive(Debug)]
pub(super) enum Applied {
    /// Nothing changed (a replayed completion): write nothing.
    Unchanged,
    /// The task changed: write it, and its event if there is one. After a
    /// completion the request's tasks are aggregated.
    Changed {
        event: Option<NewEvent>,
        completed: bool,
    },
}

/// Applies `op` to `task` (of `request`) with the domain's lease methods.
pub(super) fn apply(
    task: &mut Task,
    request: &DataSubjectRequest,
    op: &TaskOp,
    now: Timestamp,
) -> Result<Applied, TaskError> {
    let actor = processor_actor(&task.processor_id);
    match op {
        TaskOp::Renew { token, lease } => {
            task.renew(token, *lease, now)?;
            Ok(Applied::Changed {
                event: None,
                completed: false,
            })
        }
        TaskOp::Release { token, reason } => {
            task.release(token, reason.clone(), now)?;
            let why = match reason {
                Some(reason) => format!("released: {reason}"),
                None => "released".to_owned(),
            };
            let event = request.task_event(EventType::TaskReleased, task.id, &actor, why, now);
            Ok(Applied::Changed {
                event: Some(event),
                completed: false,
            })
        }
        TaskOp::Complete { token, completion } => {
            if task.complete(token, completion.clone(), now)? == Completed::Already {
                return Ok(Applied::Unchanged);
            }
            let (event_type, why) = match completion.outcome {
                TaskOutcome::Failed => (
                    EventType::TaskFailed,
                    format!(
                        "failed: {}",
                        completion.reason.as_deref().unwrap_or("no reason given")
                    ),
                ),
                outcome @ (TaskOutcome::Done | TaskOutcome::NoDataHeld) => (
                    EventType::TaskCompleted,
                    format!("completed: {}", outcome.as_str()),
                ),
            };
            let event = request.task_event(event_type, task.id, &actor, why, now);
            Ok(Applied::Changed {
                event: Some(event),
                completed: true,
            })
        }
    }
}

/// After `finished` was completed: what the request's tasks (`tasks`, as
/// written, `finished` among them) decide about it. Changes the request and
/// returns its event when they move it; the caller writes both.
pub(super) fn settle(
    request: &mut DataSubjectRequest,
    finished: &Task,
    tasks: &[Task],
    now: Timestamp,
) -> Result<Option<NewEvent>, StoreError> {
    let moved = match routing::aggregate(request.state, tasks) {
        Aggregate::Unchanged => return Ok(None),
        Aggregate::Completed => request.complete_by_processors(now),
        Aggregate::NeedsAttention => {
            request.flag_needs_attention(format!("task {} failed", finished.name()), now)
        }
    };
    // `aggregate` moves only a request in progress, which both transitions
    // accept: a refusal here is a bug, not a client's mistake.
    moved.map(Some).map_err(|e| {
        StoreError::Internal(format!(
            "the tasks' aggregate could not be applied: {}",
            e.reason
        ))
    })
}

/// A finding about `request` (as the watchdog read it): its marks once
/// reported, and its audit event.
pub(super) fn request_finding(
    request: &DataSubjectRequest,
    finding: Finding,
    now: Timestamp,
) -> (SlaMarks, NewEvent) {
    (
        request.sla.with(finding, now),
        sla::request_event(request, finding, now),
    )
}

/// The marks of `task` once `finding` about it is reported at `now`.
pub(super) fn task_marks(task: &Task, finding: Finding, now: Timestamp) -> SlaMarks {
    task.sla.with(finding, now)
}

/// The event of a finding about `task`, on the trail of `request` (the
/// request as it is now, locked).
pub(super) fn task_finding_event(
    task: &Task,
    request: &DataSubjectRequest,
    finding: Finding,
    now: Timestamp,
) -> NewEvent {
    sla::task_event(request, task, finding, now)
}

/// Where a new event goes in its request's audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Chained {
    /// One past the last event's.
    pub sequence: i64,
    /// The event's hash, following from the last event's.
    pub hash: [u8; 32],
    /// The request's new audit head.
    pub head: [u8; 32],
    /// The id of the audit key both were made with.
    pub key_id: std::sync::Arc<str>,
}

impl Chained {
    /// The event's hash as stored, naming its key.
    pub fn hash_text(&self) -> String {
        audit::stamp(&self.key_id, &self.hash)
    }

    /// The request's audit head as stored, naming its key.
    pub fn head_text(&self) -> String {
        audit::stamp(&self.key_id, &self.head)
    }
}

/// Chains `event` of request `id` onto `last`, its request's last event
/// (sequence and hash) as read in this transaction; `None` for the first.
pub(super) fn chain(
    key: &AuditKey,
    id: Uuid,
    controller_id: &str,
    last: Option<(i64, [u8; 32])>,
    event: &NewEvent,
) -> Chained {
    let (last_sequence, prev) = last.unwrap_or((0, audit::GENESIS));
    let sequence = last_sequence + 1;
    let fields = EventColumns::chain_fields(id, controller_id, sequence, event);
    let hash = audit::event_hash(key, &prev, &fields);
    Chained {
        sequence,
        hash,
        head: audit::head_hash(key, id, sequence, &hash),
        key_id: key.primary_key_id(),
    }
}
