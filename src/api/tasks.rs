//! `gdpr.intake.v1.ProcessorTaskService`: processors claim, renew, release
//! and complete their tasks.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use opentelemetry::KeyValue;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::task_to_proto;
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Role};
use crate::proto::v1;
use crate::proto::v1::processor_task_service_server::ProcessorTaskService;
use crate::service::{AppState, Cursor, TaskOp};
use crate::telemetry;

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

impl TaskApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn processor<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        Ok(self.state.authorize(req.metadata(), &[Role::Processor])?)
    }

    /// Runs a lease-holding operation; the task as it is after it.
    async fn operate(&self, caller: &Caller, id: Uuid, op: TaskOp) -> Result<v1::Task, ApiError> {
        let now = self.state.clock.now();
        let view = self.state.task_operation(caller, id, op, now).await?;
        Ok(task_to_proto(&view, now, true))
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
        telemetry::record_attributes(|| {
            [KeyValue::new(
                "dsr.task.processor_id",
                caller.tenant.clone(),
            )]
        });
        let (max, lease) = parse::claim(request.get_ref())?;
        let now = self.state.clock.now();
        let tasks = self.state.claim_tasks(&caller, max, lease, now).await?;
        Ok(Response::new(v1::ClaimTasksResponse {
            tasks: tasks.iter().map(|t| task_to_proto(t, now, true)).collect(),
        }))
    }

    async fn renew_task_lease(
        &self,
        request: Request<v1::RenewTaskLeaseRequest>,
    ) -> Result<Response<v1::RenewTaskLeaseResponse>, Status> {
        let caller = self.processor(&request)?;
        let (id, op) = parse::renew(request.into_inner())?;
        let task = self.operate(&caller, id, op).await?;
        Ok(Response::new(v1::RenewTaskLeaseResponse {
            task: Some(task),
        }))
    }

    async fn complete_task(
        &self,
        request: Request<v1::CompleteTaskRequest>,
    ) -> Result<Response<v1::CompleteTaskResponse>, Status> {
        let caller = self.processor(&request)?;
        let (id, op) = parse::complete(request.into_inner())?;
        let task = self.operate(&caller, id, op).await?;
        Ok(Response::new(v1::CompleteTaskResponse { task: Some(task) }))
    }

    async fn release_task(
        &self,
        request: Request<v1::ReleaseTaskRequest>,
    ) -> Result<Response<v1::ReleaseTaskResponse>, Status> {
        let caller = self.processor(&request)?;
        let (id, op) = parse::release(request.into_inner())?;
        let task = self.operate(&caller, id, op).await?;
        Ok(Response::new(v1::ReleaseTaskResponse { task: Some(task) }))
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        let caller = self.processor(&request)?;
        telemetry::record_attributes(|| {
            [KeyValue::new(
                "dsr.task.processor_id",
                caller.tenant.clone(),
            )]
        });
        let wanted = parse::list_tasks(request.get_ref())?;
        let key = wanted.key();
        let parse::TasksPage { state, size, after } = wanted;
        let now = self.state.clock.now();
        let listed = self
            .state
            .list_tasks(&caller.tenant, state, after.as_ref(), size, now)
            .await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_cursor(
                "t1",
                &Cursor {
                    create_time: last.task.create_time,
                    id: last.task.id,
                },
                key,
            ),
            None => String::new(),
        };
        Ok(Response::new(v1::ListTasksResponse {
            tasks: listed
                .rows
                .iter()
                .map(|t| task_to_proto(t, now, false))
                .collect(),
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
                // A token revoked or expired since the stream began ends it.
                if let Err(e) = state.auth.still_valid(&caller) {
                    let _ = tx.send(Err(ApiError::from(e).into())).await;
                    return;
                }
                let now = state.clock.now();
                let claimable = match state
                    .claimable_tasks(&caller.tenant, WATCH_BATCH, now)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
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
