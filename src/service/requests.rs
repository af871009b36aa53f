//! Data-subject requests: submission, reads, and every change of state —
//! a controller's (guardian consent, extension, cancellation, closing) and
//! the watchdog's (consent expiry) — through one versioned update that is
//! retried when another change got there first.

use jiff::Timestamp;
use uuid::Uuid;

use super::{AppState, Listed, ServiceError};
use crate::auth::Caller;
use crate::domain::input::{self, FieldViolation, RawGuardian, Rejection, Submission};
use crate::domain::pause::PauseKind;
use crate::domain::request::{
    Actor, Closure, DataSubjectRequest, EventType, NewEvent, RequestEvent, State, TransitionError,
};
use crate::domain::routing::{self, Aggregate, TaskState};
use crate::store::{
    Cursor, Effects, FeedEntry, FeedPosition, InsertOutcome, RequestFilter, StoreError,
};
use crate::telemetry;

/// How often a change is retried when another one changed the request
/// between our read and our write.
const CONFLICT_RETRIES: usize = 3;

/// Who a change is made for, which decides where it is traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum On {
    /// A call: its span gets the request's `dsr.*` attributes as read and
    /// as written, and a link to the call that submitted it.
    Call,
    /// The watchdog's sweep, which reports each change in a span of its
    /// own afterwards; nothing goes on the sweep's span.
    Sweep,
}

/// What a submission came to.
#[derive(Debug)]
pub struct Submitted {
    pub request: DataSubjectRequest,
    /// The same `request_id` with the same content was submitted before:
    /// `request` is the stored one and nothing was written.
    pub replayed: bool,
}

/// The actor a caller's change is recorded as.
pub fn actor(caller: &Caller) -> Actor {
    Actor {
        id: caller.subject.clone(),
        role: caller.role.as_str().to_owned(),
    }
}

impl AppState {
    /// What a change writes with the request: its event; for a request that
    /// just entered in progress, one task per matching route (or the
    /// unrouted mark); for a request that reached a final state, the
    /// cancellation of its open tasks.
    async fn effects_of(
        &self,
        request: &mut DataSubjectRequest,
        event: NewEvent,
        now: Timestamp,
    ) -> Result<Effects, ServiceError> {
        let fan_out = request.needs_fan_out(&event);
        let mut effects = Effects::event(event);
        effects.cancel_open_tasks = request.state.is_final();
        if fan_out {
            let routes = self.routes.routes(&request.controller_id).await?;
            let calendar =
                self.work_calendar(&request.controller_id, &request.subject.jurisdiction);
            let tasks = routing::fan_out(request, &routes, calendar, now, Uuid::now_v7);
            request.unrouted = tasks.is_empty();
            for task in &tasks {
                effects.events.push(request.task_event(
                    EventType::TaskCreated,
                    task.id,
                    &Actor::system(),
                    format!("task for processor {}", task.processor_id),
                    now,
                ));
            }
            effects.new_tasks = tasks;
        }
        Ok(effects)
    }

    /// Accepts a valid submission for `caller`'s tenant: the age rule and
    /// the deadline on the day of receipt, the fan-out if it enters in
    /// progress, then one shared commit with concurrent submissions;
    /// answered only after that commit. The same `request_id` with the same
    /// content is a replay; with other content, ALREADY_EXISTS.
    pub async fn submit(
        &self,
        caller: &Caller,
        submission: Submission,
        now: Timestamp,
    ) -> Result<Submitted, ServiceError> {
        let request_id = submission.request_id;
        let fingerprint = submission.fingerprint();
        let (mut request, event) = match input::accept(
            submission,
            &caller.tenant,
            Uuid::now_v7(),
            fingerprint,
            &self.age_policy,
            &actor(caller),
            now,
        ) {
            Ok(accepted) => accepted,
            Err(Rejection::UnderMinimumAge) => {
                self.metrics.submission_blocked("SUBJECT_UNDER_MINIMUM_AGE");
                tracing::info!(
                    controller_id = %caller.tenant,
                    request_id = %request_id,
                    reason = "SUBJECT_UNDER_MINIMUM_AGE",
                    "submission refused by the age rule; nothing stored"
                );
                return Err(ServiceError::FailedPrecondition {
                    reason: "SUBJECT_UNDER_MINIMUM_AGE",
                    message: format!(
                        "the subject is under {} on the day the request was received; such a request cannot be accepted",
                        self.age_policy.minimum_age
                    ),
                });
            }
        };
        // Kept with the request, so that later spans about it link here.
        request.origin = telemetry::current_origin();
        let mut effects = self.effects_of(&mut request, event, now).await?;
        effects.duplicate_window = self.duplicate_window;
        // Grouped with concurrent submissions into one commit; answered only
        // after that commit.
        let (outcome, request, effects) = self.committer.insert(request, effects).await?;
        match outcome {
            InsertOutcome::Created => {
                self.announce_tasks(&effects.new_tasks);
                self.metrics
                    .request_submitted(request.request_type, request.regime);
                telemetry::check_deadline_holidays(
                    &self.metrics,
                    &request.subject.jurisdiction,
                    request.due_time,
                );
                telemetry::record_request(&request, now);
                Ok(Submitted {
                    request,
                    replayed: false,
                })
            }
            InsertOutcome::Duplicate(duplicate) => {
                self.metrics.request_duplicate(duplicate.request_type);
                tracing::info!(
                    controller_id = %duplicate.controller_id,
                    id = %duplicate.id,
                    duplicate_of = ?duplicate.duplicate_of,
                    "submission stored as the duplicate of an open request; no tasks"
                );
                telemetry::record_request(&duplicate, now);
                Ok(Submitted {
                    request: *duplicate,
                    replayed: false,
                })
            }
            InsertOutcome::Existing(existing) if existing.fingerprint == request.fingerprint => {
                telemetry::record_request(&existing, now);
                Ok(Submitted {
                    request: *existing,
                    replayed: true,
                })
            }
            InsertOutcome::Existing(_) => Err(ServiceError::AlreadyExists {
                reason: "REQUEST_ID_REUSED",
                message: "this request_id was already used for a request with different content; use a new request_id for a new request".to_owned(),
            }),
        }
    }

    /// `caller`'s request `id`, recorded on the call's span.
    pub async fn get_request(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<DataSubjectRequest, ServiceError> {
        self.read_request(&caller.tenant, id, On::Call).await
    }

    async fn read_request(
        &self,
        tenant: &str,
        id: Uuid,
        on: On,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let found = self
            .reader
            .get(tenant, id)
            .await?
            .ok_or(ServiceError::NotFound("data subject request"))?;
        if on == On::Call {
            telemetry::record_request(&found, self.clock.now());
        }
        Ok(found)
    }

    /// A page of `caller`'s requests, after `after`.
    pub async fn list_requests(
        &self,
        caller: &Caller,
        filter: &RequestFilter,
        after: Option<&Cursor>,
        size: u32,
    ) -> Result<Listed<DataSubjectRequest>, ServiceError> {
        let rows = self
            .store
            .list_requests(&caller.tenant, filter, after, size + 1)
            .await?;
        Ok(Listed::of(rows, size))
    }

    /// A page of the events of `caller`'s request `id`, after sequence
    /// `after`. The request must exist for this tenant, even when the page
    /// is empty.
    pub async fn list_events(
        &self,
        caller: &Caller,
        id: Uuid,
        after: i64,
        size: u32,
    ) -> Result<Listed<RequestEvent>, ServiceError> {
        self.get_request(caller, id).await?;
        let rows = self
            .store
            .list_events(&caller.tenant, id, after, size + 1)
            .await?;
        Ok(Listed::of(rows, size))
    }

    /// Refuses a cursor this database cannot have issued: one past the
    /// end of its feed (another database's, or one from before a restore
    /// from a backup), which would otherwise skip events without a word.
    /// Checked once per call, not per page.
    pub async fn check_feed_cursor(&self, after: FeedPosition) -> Result<(), ServiceError> {
        if after == FeedPosition::default() || after <= self.store.feed_end().await? {
            return Ok(());
        }
        Err(ServiceError::InvalidArgument(vec![FieldViolation {
            field: "cursor".to_owned(),
            description: "is past the end of this database's change feed: it was issued by \
                          another database, or before this one was restored from a backup; \
                          start again from an empty cursor"
                .to_owned(),
        }]))
    }

    /// A page of the caller's tenant's change feed: its events after
    /// `after`, in feed order.
    pub async fn list_feed(
        &self,
        caller: &Caller,
        after: FeedPosition,
        size: u32,
    ) -> Result<Listed<FeedEntry>, ServiceError> {
        let rows = self
            .store
            .feed_page(&caller.tenant, after, size + 1)
            .await?;
        Ok(Listed::of(rows, size))
    }

    /// Records the guardian's consent to a minor's request; the request
    /// enters in progress and fans out.
    pub async fn record_guardian_consent(
        &self,
        caller: &Caller,
        id: Uuid,
        guardian: Option<RawGuardian>,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        self.change_request(&caller.tenant, id, None, On::Call, now, |r| {
            let guardian = input::parse_guardian(guardian.clone(), r.received_at, now)?;
            Ok(r.record_guardian_consent(guardian, &who, now)?)
        })
        .await
    }

    /// Extends the request's deadline once, for `reason`.
    pub async fn extend_deadline(
        &self,
        caller: &Caller,
        id: Uuid,
        reason: String,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        let updated = self
            .change_request(&caller.tenant, id, None, On::Call, now, |r| {
                Ok(r.extend_deadline(reason.clone(), &who, now)?)
            })
            .await?;
        self.check_holidays(&updated);
        Ok(updated)
    }

    /// Records that the controller asked for the requester's identity: the
    /// clock pauses.
    pub async fn request_identity_verification(
        &self,
        caller: &Caller,
        id: Uuid,
        reason: String,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        self.change_request(&caller.tenant, id, None, On::Call, now, |r| {
            Ok(r.request_identity_verification(reason.clone(), &who, now)?)
        })
        .await
    }

    /// Records that the identity information arrived at `received_at`
    /// (checked against the open pause), confirmed by `method`: the
    /// deadline is computed again, and a request submitted awaiting its
    /// identity fans out.
    pub async fn record_identity_verification(
        &self,
        caller: &Caller,
        id: Uuid,
        method: String,
        received_at: Option<(i64, i32)>,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        self.record_answer(
            caller,
            id,
            PauseKind::IdentityVerification,
            received_at,
            now,
            |r, arrival, who| r.record_identity_verification(&method, arrival, who, now),
        )
        .await
    }

    /// Records that the controller asked the subject to clarify an access
    /// request (UK GDPR only): the clock pauses.
    pub async fn request_clarification(
        &self,
        caller: &Caller,
        id: Uuid,
        question: String,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        self.change_request(&caller.tenant, id, None, On::Call, now, |r| {
            Ok(r.request_clarification(question.clone(), &who, now)?)
        })
        .await
    }

    /// Records that the clarification arrived at `received_at`: the
    /// deadline moves by the days the pause counted.
    pub async fn record_clarification(
        &self,
        caller: &Caller,
        id: Uuid,
        received_at: Option<(i64, i32)>,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        self.record_answer(
            caller,
            id,
            PauseKind::Clarification,
            received_at,
            now,
            |r, arrival, who| r.record_clarification(arrival, who, now),
        )
        .await
    }

    /// Closes the open pause of `kind` with `close`, once `received_at` is
    /// checked against it: the pause must be pending (FAILED_PRECONDITION)
    /// before the time is looked at (INVALID_ARGUMENT).
    async fn record_answer<F>(
        &self,
        caller: &Caller,
        id: Uuid,
        kind: PauseKind,
        received_at: Option<(i64, i32)>,
        now: Timestamp,
        close: F,
    ) -> Result<DataSubjectRequest, ServiceError>
    where
        F: Fn(&mut DataSubjectRequest, Timestamp, &Actor) -> Result<NewEvent, TransitionError>,
    {
        let who = actor(caller);
        let updated = self
            .change_request(&caller.tenant, id, None, On::Call, now, |r| {
                let pause = r.pending_pause(kind)?;
                let arrival = input::parse_arrival(received_at, pause, now)?;
                Ok(close(r, arrival, &who)?)
            })
            .await?;
        self.check_holidays(&updated);
        self.settle_resumed(updated, now).await
    }

    /// A request whose processors finished their tasks while it waited for
    /// its subject comes back in progress with nothing left to do (a task
    /// settles only a request in progress): it settles now as that task's
    /// completion would have, completed or needing attention, in a
    /// transaction after the one that resumed it. A task that finishes
    /// meanwhile either committed before the tasks are read here and is
    /// counted, or found the request in progress and settled it itself;
    /// then this change finds the request no longer in progress and leaves
    /// it as it is.
    async fn settle_resumed(
        &self,
        request: DataSubjectRequest,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        if request.state != State::InProgress || request.unrouted {
            return Ok(request);
        }
        let tasks = self
            .store
            .request_tasks(&request.controller_id, request.id)
            .await?;
        let failed = tasks
            .iter()
            .find(|t| t.state == TaskState::Failed)
            .map(|t| t.name());
        let aggregate = routing::aggregate(request.state, &tasks);
        if aggregate == Aggregate::Unchanged {
            return Ok(request);
        }
        let (tenant, id) = (request.controller_id.clone(), request.id);
        let settled = self
            .change_request(&tenant, id, Some(request), On::Call, now, |r| {
                if r.state != State::InProgress {
                    return Err(ServiceError::FailedPrecondition {
                        reason: "REQUEST_NOT_IN_PROGRESS",
                        message: "settled meanwhile".to_owned(),
                    });
                }
                Ok(match (aggregate, &failed) {
                    (Aggregate::NeedsAttention, Some(task)) => r.flag_needs_attention(
                        format!("task {task} failed while the request waited for its subject"),
                        now,
                    )?,
                    _ => r.complete_by_processors(now)?,
                })
            })
            .await;
        match settled {
            Ok(request) => Ok(request),
            // Settled by a task's completion in the meantime.
            Err(ServiceError::FailedPrecondition { .. }) => {
                Ok(self.read_request(&tenant, id, On::Call).await?)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a deadline in force that falls beyond the verified holidays.
    fn check_holidays(&self, request: &DataSubjectRequest) {
        telemetry::check_deadline_holidays(
            &self.metrics,
            &request.subject.jurisdiction,
            request.due_time,
        );
    }

    /// Cancels the request, and its open tasks with it.
    pub async fn cancel_request(
        &self,
        caller: &Caller,
        id: Uuid,
        reason: String,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        self.change_request(&caller.tenant, id, None, On::Call, now, |r| {
            Ok(r.cancel(reason.clone(), &who, now)?)
        })
        .await
    }

    /// Closes the request (completed or refused), and its open tasks with
    /// it.
    pub async fn close_request(
        &self,
        caller: &Caller,
        id: Uuid,
        closure: Closure,
        now: Timestamp,
    ) -> Result<DataSubjectRequest, ServiceError> {
        let who = actor(caller);
        self.change_request(&caller.tenant, id, None, On::Call, now, |r| {
            Ok(r.close(closure.clone(), &who, now)?)
        })
        .await
    }

    /// The one way a stored request changes: read it (or start from `read`,
    /// a row the caller has just read), apply `change`, and write it back
    /// with its effects (event, fan-out, task cancellation) only if it is
    /// still the version read. Another change in between sends it round
    /// again, at most [`CONFLICT_RETRIES`] times, so the rule is always
    /// checked against what is stored. After the commit: watchers hear of
    /// new tasks, and a request this change closed is timed.
    pub(super) async fn change_request<F>(
        &self,
        tenant: &str,
        id: Uuid,
        mut read: Option<DataSubjectRequest>,
        on: On,
        now: Timestamp,
        change: F,
    ) -> Result<DataSubjectRequest, ServiceError>
    where
        F: Fn(&mut DataSubjectRequest) -> Result<NewEvent, ServiceError>,
    {
        let mut attempt = 0;
        loop {
            let mut request = match read.take() {
                Some(request) => request,
                None => self.read_request(tenant, id, on).await?,
            };
            if attempt == 0 && on == On::Call {
                // Later calls about a request lead back to its submission.
                telemetry::link_request(&request);
            }
            let expected = request.version;
            let was_open = !request.state.is_final();
            let event = change(&mut request)?;
            let effects = self.effects_of(&mut request, event, now).await?;
            match self
                .store
                .update_request(&request, expected, &effects)
                .await
            {
                Ok(()) => {
                    self.announce_tasks(&effects.new_tasks);
                    if was_open {
                        self.record_close(&request);
                    }
                    if on == On::Call {
                        telemetry::record_request(&request, now);
                    }
                    return Ok(request);
                }
                Err(StoreError::Conflict) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
