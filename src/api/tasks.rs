//! `gdpr.intake.v1.ProcessorTaskService`: processors claim, renew, release
//! and complete their tasks.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use jiff::SignedDuration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::AppState;
use super::convert::{self, task_to_proto};
use super::error::ApiError;
use super::page;
use crate::auth::{Caller, Role};
use crate::domain::input::Violations;
use crate::domain::routing::{
    Completion, DEFAULT_CLAIM, DEFAULT_LEASE, MAX_CLAIM, MAX_LEASE, TASK_PREFIX, TaskOutcome,
    TaskState,
};
use crate::proto::v1;
use crate::proto::v1::processor_task_service_server::ProcessorTaskService;
use crate::store::{Cursor, TaskOp, TaskOpResult};

/// Longest free text (reason, note).
const MAX_TEXT: usize = 2000;
/// Longest result URI.
const MAX_URI: usize = 2048;
/// How often a watcher looks for claimable tasks even without an
/// announcement (another replica created them, or a lease ended).
const WATCH_POLL: Duration = Duration::from_secs(2);
/// Most tasks a watcher looks at per round.
const WATCH_BATCH: u32 = 100;

/// The handlers of the processor service.
#[derive(Clone)]
pub struct TaskApi {
    state: AppState,
}

fn parse_task_name(name: &str) -> Result<Uuid, ApiError> {
    name.strip_prefix(TASK_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "name",
                "must be a task name such as tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        })
}

fn parse_lease(v: &mut Violations, d: Option<prost_types::Duration>) -> SignedDuration {
    let Some(d) = d else {
        return DEFAULT_LEASE;
    };
    let lease = SignedDuration::new(d.seconds, d.nanos);
    if lease < SignedDuration::from_secs(1) || lease > MAX_LEASE {
        v.add("lease_duration", "must be between 1 second and 10 minutes");
    }
    lease
}

fn check_text(v: &mut Violations, field: &str, s: &str, max: usize) {
    if s.chars().count() > max || s.contains('\0') {
        v.add(
            field,
            format!("must be at most {max} characters, without NUL"),
        );
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl TaskApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn processor<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        Ok(self
            .state
            .auth
            .authorize(req.metadata(), &[Role::Processor])?)
    }

    async fn operate(&self, caller: &Caller, id: Uuid, op: TaskOp) -> Result<v1::Task, ApiError> {
        let now = self.state.clock.now();
        match self
            .state
            .store
            .task_operation(&caller.tenant, id, &op, now)
            .await?
        {
            TaskOpResult::Done(view) => {
                if matches!(op, TaskOp::Release { .. }) {
                    self.state.announce_processor(&caller.tenant);
                }
                Ok(task_to_proto(&view, now, true))
            }
            TaskOpResult::NotFound => Err(ApiError::NotFound("task")),
            TaskOpResult::Refused(e) => Err(ApiError::FailedPrecondition {
                reason: e.reason,
                message: e.message,
            }),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchTasksResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ProcessorTaskService for TaskApi {
    async fn claim_tasks(
        &self,
        request: Request<v1::ClaimTasksRequest>,
    ) -> Result<Response<v1::ClaimTasksResponse>, Status> {
        let caller = self.processor(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        let max = match u32::try_from(m.max_tasks) {
            Ok(0) => DEFAULT_CLAIM,
            Ok(n) if n <= MAX_CLAIM => n,
            _ => {
                bad.add(
                    "max_tasks",
                    format!("must be between 1 and {MAX_CLAIM} (0 means {DEFAULT_CLAIM})"),
                );
                0
            }
        };
        let lease = parse_lease(&mut bad, m.lease_duration);
        if !bad.is_empty() {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        }
        let now = self.state.clock.now();
        let tasks = self
            .state
            .store
            .claim_tasks(&caller.tenant, max, lease, now)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::ClaimTasksResponse {
            tasks: tasks.iter().map(|t| task_to_proto(t, now, true)).collect(),
        }))
    }

    async fn renew_task_lease(
        &self,
        request: Request<v1::RenewTaskLeaseRequest>,
    ) -> Result<Response<v1::RenewTaskLeaseResponse>, Status> {
        let caller = self.processor(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        let id = parse_task_name(&m.name).map_err(|_| {
            bad.add(
                "name",
                "must be a task name such as tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        });
        if m.lease_token.is_empty() {
            bad.add("lease_token", "is required: the token ClaimTasks returned");
        }
        let lease = parse_lease(&mut bad, m.lease_duration);
        let (Ok(id), true) = (id, bad.is_empty()) else {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        };
        let task = self
            .operate(
                &caller,
                id,
                TaskOp::Renew {
                    token: m.lease_token,
                    lease,
                },
            )
            .await?;
        Ok(Response::new(v1::RenewTaskLeaseResponse {
            task: Some(task),
        }))
    }

    async fn complete_task(
        &self,
        request: Request<v1::CompleteTaskRequest>,
    ) -> Result<Response<v1::CompleteTaskResponse>, Status> {
        let caller = self.processor(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        let id = parse_task_name(&m.name).map_err(|_| {
            bad.add(
                "name",
                "must be a task name such as tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        });
        if m.lease_token.is_empty() {
            bad.add("lease_token", "is required: the token ClaimTasks returned");
        }
        let outcome = convert::task_outcome_from_proto(m.outcome);
        match outcome {
            None => bad.add(
                "outcome",
                "is required: TASK_OUTCOME_DONE, TASK_OUTCOME_NO_DATA_HELD or TASK_OUTCOME_FAILED",
            ),
            Some(TaskOutcome::Failed) if m.reason.trim().is_empty() => {
                bad.add("reason", "is required when the outcome is failed");
            }
            Some(_) => {}
        }
        check_text(&mut bad, "reason", &m.reason, MAX_TEXT);
        check_text(&mut bad, "result_uri", &m.result_uri, MAX_URI);
        check_text(&mut bad, "note", &m.note, MAX_TEXT);
        let (Ok(id), Some(outcome), true) = (id, outcome, bad.is_empty()) else {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        };
        let completion = Completion {
            outcome,
            reason: non_empty(m.reason),
            result_uri: non_empty(m.result_uri),
            note: non_empty(m.note),
        };
        let task = self
            .operate(
                &caller,
                id,
                TaskOp::Complete {
                    token: m.lease_token,
                    completion,
                },
            )
            .await?;
        Ok(Response::new(v1::CompleteTaskResponse { task: Some(task) }))
    }

    async fn release_task(
        &self,
        request: Request<v1::ReleaseTaskRequest>,
    ) -> Result<Response<v1::ReleaseTaskResponse>, Status> {
        let caller = self.processor(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        let id = parse_task_name(&m.name).map_err(|_| {
            bad.add(
                "name",
                "must be a task name such as tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        });
        if m.lease_token.is_empty() {
            bad.add("lease_token", "is required: the token ClaimTasks returned");
        }
        check_text(&mut bad, "reason", &m.reason, MAX_TEXT);
        let (Ok(id), true) = (id, bad.is_empty()) else {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        };
        let task = self
            .operate(
                &caller,
                id,
                TaskOp::Release {
                    token: m.lease_token,
                    reason: non_empty(m.reason),
                },
            )
            .await?;
        Ok(Response::new(v1::ReleaseTaskResponse { task: Some(task) }))
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        let caller = self.processor(&request)?;
        let m = request.into_inner();
        let state = if m.state == 0 {
            None
        } else {
            Some(
                convert::task_state_from_proto(m.state)
                    .ok_or_else(|| ApiError::invalid("state", "is not a known Task.State value"))?,
            )
        };
        let size = page::page_size(m.page_size, "page_size")?;
        let key = state.map_or("", TaskState::as_str);
        let after = page::decode_cursor("t1", &m.page_token, key)?;
        let now = self.state.clock.now();
        let mut rows = self
            .state
            .store
            .list_tasks(&caller.tenant, state, after.as_ref(), size + 1, now)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_cursor(
                "t1",
                &Cursor {
                    create_time: last.task.create_time,
                    id: last.task.id,
                },
                key,
            ),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListTasksResponse {
            tasks: rows.iter().map(|t| task_to_proto(t, now, false)).collect(),
            next_page_token,
        }))
    }

    type WatchTasksStream = WatchStream;

    async fn watch_tasks(
        &self,
        request: Request<v1::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        let caller = self.processor(&request)?;
        let (tx, rx) = mpsc::channel(64);
        let mut announcements = self.state.task_announcements.subscribe();
        let state = self.state.clone();
        tokio::spawn(async move {
            // Tasks already sent, with the attempt they were sent at: a task
            // becomes news again after a lease ended or it was released.
            let mut sent: HashMap<Uuid, i32> = HashMap::new();
            loop {
                let now = state.clock.now();
                let claimable = match state
                    .store
                    .list_tasks(
                        &caller.tenant,
                        Some(TaskState::Pending),
                        None,
                        WATCH_BATCH,
                        now,
                    )
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
                sent.retain(|id, _| claimable.iter().any(|v| v.task.id == *id));
                for view in &claimable {
                    if sent.get(&view.task.id) == Some(&view.task.attempt) {
                        continue;
                    }
                    sent.insert(view.task.id, view.task.attempt);
                    let msg = v1::WatchTasksResponse {
                        task: Some(task_to_proto(view, now, false)),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return; // the processor hung up
                    }
                }
                // Wait for news for this processor, or poll.
                let deadline = tokio::time::sleep(WATCH_POLL);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        () = tx.closed() => return,
                        got = announcements.recv() => match got {
                            Ok(p) if p == caller.tenant => break,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
