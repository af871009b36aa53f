//! Routing of requests to processors and the life of a processor task:
//! which routes match, when a task is due, leases, completion, and how the
//! tasks of a request decide its outcome. Pure: time is an argument.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::deadline;
use super::jurisdiction::{Country, Jurisdiction};
use super::pii::Email;
use super::request::{DataSubjectRequest, RequestType, State, TraceOrigin};
use super::sla::SlaMarks;

/// Default processor SLA when a route does not say.
pub const DEFAULT_TASK_SLA_WORKING_HOURS: u32 = 72;
/// Longest SLA a route may carry (about a year of working hours), which
/// also bounds the working-hour arithmetic.
pub const MAX_TASK_SLA_WORKING_HOURS: u32 = 2000;
/// Longest lease a processor may take.
pub const MAX_LEASE: SignedDuration = SignedDuration::from_mins(10);
/// Lease when the processor does not ask for one.
pub const DEFAULT_LEASE: SignedDuration = SignedDuration::from_mins(5);
/// Most tasks one claim hands out.
pub const MAX_CLAIM: u32 = 100;
/// Claim size when the processor does not ask for one.
pub const DEFAULT_CLAIM: u32 = 10;

/// Checks a processor id: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
pub fn valid_processor_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A registered processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processor {
    pub id: String,
    pub display_name: String,
    pub contact: Option<String>,
    pub create_time: Timestamp,
}

/// Sends requests of some types from one controller to one processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub id: Uuid,
    pub controller_id: String,
    pub processor_id: String,
    /// Empty means every type.
    pub request_types: Vec<RequestType>,
    pub task_sla_working_hours: u32,
    pub create_time: Timestamp,
}

impl Route {
    /// Whether this route sends requests of type `t`.
    pub fn matches(&self, t: RequestType) -> bool {
        self.request_types.is_empty() || self.request_types.contains(&t)
    }

    /// `routes/{uuid}`.
    pub fn name(&self) -> String {
        format!("{ROUTE_PREFIX}{}", self.id)
    }
}

/// The route resource name prefix.
pub const ROUTE_PREFIX: &str = "routes/";
/// The task resource name prefix.
pub const TASK_PREFIX: &str = "tasks/";

/// Where a task is in its life, as stored. A leased task whose lease has
/// ended is claimable again: see [`Task::is_claimable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Leased,
    Completed,
    Failed,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        Self::Pending,
        Self::Leased,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Stable lower-case name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Leased => "leased",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Inverse of [`TaskState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Pending or leased: a processor still owes work.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Leased)
    }
}

/// How a processor finished a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    Done,
    NoDataHeld,
    Failed,
}

impl TaskOutcome {
    pub const ALL: [TaskOutcome; 3] = [Self::Done, Self::NoDataHeld, Self::Failed];

    /// Stable lower-case name, used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::NoDataHeld => "no_data_held",
            Self::Failed => "failed",
        }
    }

    /// Inverse of [`TaskOutcome::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A processor's share of a request. What the processor is told about the
/// subject (type, external id, email, country, corrections) is read from
/// the request when the task is shown, never copied: the date of birth is
/// never part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: Uuid,
    /// The request (`DataSubjectRequest::id`).
    pub request: Uuid,
    pub controller_id: String,
    pub processor_id: String,
    pub state: TaskState,
    /// How many times it was handed out.
    pub attempt: i32,
    pub due_time: Timestamp,
    pub lease_token: Option<String>,
    pub lease_expire_time: Option<Timestamp>,
    pub outcome: Option<TaskOutcome>,
    /// Why it failed or was last released.
    pub reason: Option<String>,
    pub result_uri: Option<String>,
    pub note: Option<String>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub complete_time: Option<Timestamp>,
    /// What the SLA watchdog has reported about it; only the watchdog
    /// writes these.
    pub sla: SlaMarks,
}

/// A task as its processor sees it: the task and what it needs to know of
/// the request (data minimisation: never the date of birth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    pub task: Task,
    pub request_type: RequestType,
    pub external_id: String,
    pub email: Option<Email>,
    pub country: Country,
    /// For rectification.
    pub corrections: BTreeMap<String, String>,
    /// The call that submitted the request, for span links; never shown
    /// to the processor.
    pub origin: Option<TraceOrigin>,
}

/// Why a task operation was refused; `reason` is the ErrorInfo reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub reason: &'static str,
    pub message: String,
}

impl TaskError {
    fn lease_not_held() -> Self {
        Self {
            reason: "LEASE_NOT_HELD",
            message: "the lease token is not the task's current lease, or the lease has ended; claim the task again".to_owned(),
        }
    }

    fn cancelled() -> Self {
        Self {
            reason: "TASK_CANCELLED",
            message: "the request was cancelled or closed; stop working on this task".to_owned(),
        }
    }
}

/// What a processor reports when it finishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub outcome: TaskOutcome,
    pub reason: Option<String>,
    pub result_uri: Option<String>,
    pub note: Option<String>,
}

/// What a completion call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The task was finished by this call.
    Now,
    /// The same completion had already been recorded: nothing changed.
    Already,
}

impl Task {
    /// `tasks/{uuid}`.
    pub fn name(&self) -> String {
        format!("{TASK_PREFIX}{}", self.id)
    }

    /// Whether a claim may hand it out at `now`.
    pub fn is_claimable(&self, now: Timestamp) -> bool {
        match self.state {
            TaskState::Pending => true,
            TaskState::Leased => self.lease_expire_time.is_none_or(|t| t <= now),
            _ => false,
        }
    }

    /// The state a client sees: a lease that has ended shows as pending.
    pub fn visible_state(&self, now: Timestamp) -> TaskState {
        if self.state == TaskState::Leased && self.is_claimable(now) {
            TaskState::Pending
        } else {
            self.state
        }
    }

    fn holds(&self, token: &str, now: Timestamp) -> Result<(), TaskError> {
        if self.state == TaskState::Cancelled {
            return Err(TaskError::cancelled());
        }
        let live = self.state == TaskState::Leased
            && self.lease_expire_time.is_some_and(|t| t > now)
            && self.lease_token.as_deref() == Some(token);
        if live {
            Ok(())
        } else {
            Err(TaskError::lease_not_held())
        }
    }

    /// Hands the task out under a new lease. Returns whether it was a
    /// redelivery after an earlier lease ended.
    pub fn claim(&mut self, token: String, lease: SignedDuration, now: Timestamp) -> bool {
        let redelivery = self.state == TaskState::Leased;
        self.state = TaskState::Leased;
        self.attempt += 1;
        self.lease_token = Some(token);
        self.lease_expire_time = Some(now.saturating_add(lease).unwrap_or(now));
        self.update_time = now;
        redelivery
    }

    /// Extends a lease the caller holds.
    pub fn renew(
        &mut self,
        token: &str,
        lease: SignedDuration,
        now: Timestamp,
    ) -> Result<(), TaskError> {
        self.holds(token, now)?;
        self.lease_expire_time = Some(now.saturating_add(lease).unwrap_or(now));
        self.update_time = now;
        Ok(())
    }

    /// Gives the task back for another attempt.
    pub fn release(
        &mut self,
        token: &str,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<(), TaskError> {
        self.holds(token, now)?;
        self.state = TaskState::Pending;
        self.lease_token = None;
        self.lease_expire_time = None;
        self.reason = reason;
        self.update_time = now;
        Ok(())
    }

    /// Finishes the task. The same completion with the same token again is
    /// answered with [`Completed::Already`] and changes nothing, so a
    /// processor may retry a call whose answer it lost.
    pub fn complete(
        &mut self,
        token: &str,
        completion: Completion,
        now: Timestamp,
    ) -> Result<Completed, TaskError> {
        if matches!(self.state, TaskState::Completed | TaskState::Failed)
            && self.lease_token.as_deref() == Some(token)
        {
            let same = self.outcome == Some(completion.outcome)
                && self.result_uri == completion.result_uri
                && self.note == completion.note
                && (completion.outcome != TaskOutcome::Failed || self.reason == completion.reason);
            return if same {
                Ok(Completed::Already)
            } else {
                Err(TaskError {
                    reason: "TASK_ALREADY_COMPLETED",
                    message: "the task was already completed with a different result".to_owned(),
                })
            };
        }
        self.holds(token, now)?;
        self.state = match completion.outcome {
            TaskOutcome::Failed => TaskState::Failed,
            TaskOutcome::Done | TaskOutcome::NoDataHeld => TaskState::Completed,
        };
        self.outcome = Some(completion.outcome);
        if completion.outcome == TaskOutcome::Failed {
            self.reason = completion.reason;
        }
        self.result_uri = completion.result_uri;
        self.note = completion.note;
        // The token stays, to recognise a retried completion.
        self.lease_expire_time = None;
        self.complete_time = Some(now);
        self.update_time = now;
        Ok(Completed::Now)
    }

    /// Stops an open task because its request ended. `false` if it was
    /// already finished.
    pub fn cancel(&mut self, now: Timestamp) -> bool {
        if !self.state.is_open() {
            return false;
        }
        self.state = TaskState::Cancelled;
        self.lease_expire_time = None;
        self.update_time = now;
        true
    }
}

/// When a task created at `now` on `route` is due: its SLA in working hours
/// on `calendar`, but never after the request's own deadline — a
/// processor's delay cannot stretch the controller's legal deadline.
pub fn task_due_time(
    calendar: &Jurisdiction,
    now: Timestamp,
    sla_working_hours: u32,
    request_due: Timestamp,
) -> Timestamp {
    let hours = sla_working_hours.min(MAX_TASK_SLA_WORKING_HOURS);
    deadline::add_working_hours(calendar, now, hours).min(request_due)
}

/// One new task per route that matches the request's type. `new_id` gives
/// each task its id.
pub fn fan_out(
    request: &DataSubjectRequest,
    routes: &[Route],
    calendar: &Jurisdiction,
    now: Timestamp,
    mut new_id: impl FnMut() -> Uuid,
) -> Vec<Task> {
    routes
        .iter()
        .filter(|r| r.controller_id == request.controller_id && r.matches(request.request_type))
        .map(|r| Task {
            id: new_id(),
            request: request.id,
            controller_id: request.controller_id.clone(),
            processor_id: r.processor_id.clone(),
            state: TaskState::Pending,
            attempt: 0,
            due_time: task_due_time(calendar, now, r.task_sla_working_hours, request.due_time),
            lease_token: None,
            lease_expire_time: None,
            outcome: None,
            reason: None,
            result_uri: None,
            note: None,
            create_time: now,
            update_time: now,
            complete_time: None,
            sla: SlaMarks::default(),
        })
        .collect()
}

/// What a request's tasks decide about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Nothing to do (still open tasks, or the request is not in progress).
    Unchanged,
    /// Every task is done or no data held: the request is completed.
    Completed,
    /// A task failed: a person must look.
    NeedsAttention,
}

/// Decides a request's state from its tasks. Only a request in progress is
/// moved: one already needing attention waits for the controller.
pub fn aggregate(state: State, tasks: &[Task]) -> Aggregate {
    if state != State::InProgress || tasks.is_empty() {
        return Aggregate::Unchanged;
    }
    if tasks.iter().any(|t| t.state == TaskState::Failed) {
        return Aggregate::NeedsAttention;
    }
    if tasks.iter().all(|t| t.state == TaskState::Completed) {
        return Aggregate::Completed;
    }
    Aggregate::Unchanged
}

/// Counts of a request's tasks by state, for display.
pub fn count_by_state(tasks: &[Task]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.state.as_str()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::ToSpan;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    fn de() -> Jurisdiction {
        Jurisdiction::parse("DE", "").expect("DE")
    }

    fn task(now: Timestamp) -> Task {
        Task {
            id: Uuid::new_v4(),
            request: Uuid::new_v4(),
            controller_id: "acme".into(),
            processor_id: "crm".into(),
            state: TaskState::Pending,
            attempt: 0,
            due_time: now + 72.hours(),
            lease_token: None,
            lease_expire_time: None,
            outcome: None,
            reason: None,
            result_uri: None,
            note: None,
            create_time: now,
            update_time: now,
            complete_time: None,
            sla: SlaMarks::default(),
        }
    }

    fn done() -> Completion {
        Completion {
            outcome: TaskOutcome::Done,
            reason: None,
            result_uri: Some("s3://x".into()),
            note: None,
        }
    }

    #[test]
    fn friday_afternoon_plus_72_working_hours_is_wednesday() {
        // Friday 6 March 2026, 15:00 in Berlin (14:00 UTC).
        let start = t("2026-03-06T14:00:00Z");
        let far = t("2026-12-31T00:00:00Z");
        assert_eq!(
            task_due_time(&de(), start, 72, far),
            t("2026-03-11T14:00:00Z")
        );
        assert_eq!(task_due_time(&de(), start, 0, far), start);
    }

    #[test]
    fn holidays_do_not_count() {
        // Thursday 2 April 2026 15:00 Berlin: Good Friday (3 April) and
        // Easter Monday (6 April) are holidays, so 24 working hours end on
        // Tuesday 7 April at 15:00 (9 h Thursday + 15 h Tuesday).
        let start = t("2026-04-02T13:00:00Z");
        let far = t("2026-12-31T00:00:00Z");
        assert_eq!(
            task_due_time(&de(), start, 24, far),
            t("2026-04-07T13:00:00Z")
        );
    }

    #[test]
    fn a_task_is_capped_at_the_request_deadline() {
        let start = t("2026-03-06T14:00:00Z");
        let request_due = t("2026-03-09T00:00:00Z");
        assert_eq!(task_due_time(&de(), start, 72, request_due), request_due);
        assert!(
            task_due_time(&de(), start, u32::MAX, t("2027-01-01T00:00:00Z"))
                <= t("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn routes_match_their_types() {
        let mut r = Route {
            id: Uuid::new_v4(),
            controller_id: "acme".into(),
            processor_id: "crm".into(),
            request_types: vec![],
            task_sla_working_hours: 72,
            create_time: Timestamp::UNIX_EPOCH,
        };
        for ty in RequestType::ALL {
            assert!(r.matches(ty), "empty means all");
        }
        r.request_types = vec![RequestType::Erasure];
        assert!(r.matches(RequestType::Erasure));
        assert!(!r.matches(RequestType::Access));
    }

    #[test]
    fn a_lease_is_exclusive_until_it_ends() {
        let now = t("2026-03-06T10:00:00Z");
        let mut task = task(now);
        assert!(task.is_claimable(now));
        assert!(!task.claim("a".into(), SignedDuration::from_secs(30), now));
        assert_eq!(task.attempt, 1);
        assert!(!task.is_claimable(now + 29.seconds()));
        assert_eq!(task.visible_state(now + 29.seconds()), TaskState::Leased);
        assert!(task.is_claimable(now + 30.seconds()));
        assert_eq!(task.visible_state(now + 31.seconds()), TaskState::Pending);
        // Redelivery after the lease ended.
        let later = now + 31.seconds();
        assert!(task.claim("b".into(), SignedDuration::from_secs(30), later));
        assert_eq!(task.attempt, 2);
        let stale = task.renew("a", SignedDuration::from_secs(30), later);
        assert_eq!(stale.map_err(|e| e.reason), Err("LEASE_NOT_HELD"));
        task.renew("b", SignedDuration::from_secs(60), later)
            .expect("holder renews");
        assert_eq!(task.lease_expire_time, Some(later + 60.seconds()));
    }

    #[test]
    fn completion_is_idempotent_and_needs_the_live_lease() {
        let now = t("2026-03-06T10:00:00Z");
        let mut task = task(now);
        assert_eq!(
            task.complete("x", done(), now).map_err(|e| e.reason),
            Err("LEASE_NOT_HELD"),
            "a pending task has no lease"
        );
        task.claim("a".into(), SignedDuration::from_secs(30), now);
        assert_eq!(
            task.complete("a", done(), now + 31.seconds())
                .map_err(|e| e.reason),
            Err("LEASE_NOT_HELD"),
            "the lease ended"
        );
        assert_eq!(
            task.complete("a", done(), now + 1.second()),
            Ok(Completed::Now)
        );
        let after = task.clone();
        assert_eq!(
            task.complete("a", done(), now + 5.seconds()),
            Ok(Completed::Already)
        );
        assert_eq!(task, after, "a replay changes nothing");
        let other = Completion {
            outcome: TaskOutcome::NoDataHeld,
            ..done()
        };
        assert_eq!(
            task.complete("a", other, now).map_err(|e| e.reason),
            Err("TASK_ALREADY_COMPLETED")
        );
        assert_eq!(
            task.complete("b", done(), now).map_err(|e| e.reason),
            Err("LEASE_NOT_HELD")
        );
    }

    #[test]
    fn release_and_cancel() {
        let now = t("2026-03-06T10:00:00Z");
        let mut task = task(now);
        task.claim("a".into(), SignedDuration::from_secs(30), now);
        task.release("a", Some("busy".into()), now)
            .expect("holder releases");
        assert_eq!(task.state, TaskState::Pending);
        assert!(task.is_claimable(now));
        task.claim("b".into(), SignedDuration::from_secs(30), now);
        assert!(task.cancel(now));
        assert!(!task.cancel(now), "already cancelled");
        for e in [
            task.renew("b", SignedDuration::from_secs(1), now),
            task.release("b", None, now),
            task.complete("b", done(), now).map(|_| ()),
        ] {
            assert_eq!(e.map_err(|e| e.reason), Err("TASK_CANCELLED"));
        }
        assert!(!task.is_claimable(now));
    }

    #[test]
    fn the_tasks_decide_the_request() {
        let now = t("2026-03-06T10:00:00Z");
        let with = |states: &[TaskState]| -> Vec<Task> {
            states
                .iter()
                .map(|s| Task {
                    state: *s,
                    ..task(now)
                })
                .collect()
        };
        use TaskState::*;
        assert_eq!(aggregate(State::InProgress, &[]), Aggregate::Unchanged);
        assert_eq!(
            aggregate(State::InProgress, &with(&[Completed, Completed])),
            Aggregate::Completed
        );
        assert_eq!(
            aggregate(State::InProgress, &with(&[Completed, Leased])),
            Aggregate::Unchanged
        );
        assert_eq!(
            aggregate(State::InProgress, &with(&[Pending, Failed])),
            Aggregate::NeedsAttention
        );
        assert_eq!(
            aggregate(State::NeedsAttention, &with(&[Completed, Completed])),
            Aggregate::Unchanged
        );
        assert_eq!(
            aggregate(State::Cancelled, &with(&[Completed])),
            Aggregate::Unchanged
        );
        // Exhaustive over every pair of task states.
        for a in TaskState::ALL {
            for b in TaskState::ALL {
                let got = aggregate(State::InProgress, &with(&[a, b]));
                let expected = if a == Failed || b == Failed {
                    Aggregate::NeedsAttention
                } else if a == Completed && b == Completed {
                    Aggregate::Completed
                } else {
                    Aggregate::Unchanged
                };
                assert_eq!(got, expected, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn processor_ids() {
        assert!(valid_processor_id("crm-eu_1"));
        for bad in ["", "CRM", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_processor_id(bad), "{bad:?}");
        }
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        for o in TaskOutcome::ALL {
            assert_eq!(TaskOutcome::parse(o.as_str()), Some(o));
        }
    }
}
