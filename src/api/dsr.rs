//! `gdpr.intake.v1.DataSubjectRequestService`.

use opentelemetry::KeyValue;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::AppState;
use super::convert::{self, request_to_proto};
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Role};
use crate::domain::input::{self, Rejection};
use crate::domain::request::{Actor, DataSubjectRequest, EventType, NAME_PREFIX, NewEvent};
use crate::domain::routing;
use crate::proto::v1;
use crate::proto::v1::data_subject_request_service_server::DataSubjectRequestService;
use crate::store::{Effects, InsertOutcome, StoreError};
use crate::telemetry;

/// How often a transition is retried when another call changed the request
/// between our read and our write.
const CONFLICT_RETRIES: usize = 3;

/// Parses `dataSubjectRequests/{uuid}`.
pub fn parse_name(name: &str) -> Result<Uuid, ApiError> {
    name.strip_prefix(NAME_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "name",
                "must be a request name such as dataSubjectRequests/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
            )
        })
}

fn actor(caller: &Caller) -> Actor {
    Actor {
        id: caller.subject.clone(),
        role: caller.role.as_str().to_owned(),
    }
}

/// What a change writes with the request: its event; for a request that
/// just entered in progress, one task per matching route (or the unrouted
/// mark); for a request that reached a final state, the cancellation of its
/// open tasks.
async fn effects_of(
    state: &AppState,
    request: &mut DataSubjectRequest,
    event: NewEvent,
    now: jiff::Timestamp,
) -> Result<Effects, ApiError> {
    let fan_out = request.needs_fan_out(&event);
    let mut effects = Effects::event(event);
    effects.cancel_open_tasks = request.state.is_final();
    if fan_out {
        let routes = state
            .store
            .controller_routes(&request.controller_id)
            .await?;
        let calendar = state.work_calendar(&request.controller_id, &request.subject.jurisdiction);
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

/// The handlers of the controller-facing service.
#[derive(Clone)]
pub struct DsrService {
    state: AppState,
}

impl DsrService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// A caller that may change its tenant's requests: a controller.
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        self.authorized(req, &[Role::Controller])
    }

    /// A caller that may read its tenant's requests: a controller, or an
    /// auditor, who reads what the controller reads and changes nothing.
    fn reader<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        self.authorized(req, &[Role::Controller, Role::Auditor])
    }

    fn authorized<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<Caller, ApiError> {
        let caller = self.state.authorize(req.metadata(), roles)?;
        telemetry::record_attributes(|| {
            [KeyValue::new("dsr.controller_id", caller.tenant.clone())]
        });
        Ok(caller)
    }

    async fn load(&self, caller: &Caller, id: Uuid) -> Result<DataSubjectRequest, ApiError> {
        let found = self
            .state
            .store
            .get_request(&caller.tenant, id)
            .await?
            .ok_or(ApiError::NotFound("data subject request"))?;
        telemetry::record_request(&found, self.state.clock.now());
        Ok(found)
    }

    /// Reads the request, applies `change` and writes it back with its
    /// effects (event, fan-out, task cancellation), retrying on a concurrent
    /// change so the rule is always checked against what is stored.
    async fn transition<F>(
        &self,
        caller: &Caller,
        id: Uuid,
        now: jiff::Timestamp,
        change: F,
    ) -> Result<DataSubjectRequest, ApiError>
    where
        F: Fn(&mut DataSubjectRequest) -> Result<NewEvent, ApiError>,
    {
        let mut attempt = 0;
        loop {
            let mut request = self.load(caller, id).await?;
            if attempt == 0 {
                // Later calls about a request lead back to its submission.
                telemetry::link_request(&request);
            }
            let expected = request.version;
            let was_open = !request.state.is_final();
            let event = change(&mut request)?;
            let effects = effects_of(&self.state, &mut request, event, now).await?;
            match self
                .state
                .store
                .update_request(&request, expected, &effects)
                .await
            {
                Ok(()) => {
                    self.state.announce_tasks(&effects.new_tasks);
                    if was_open {
                        self.state.record_close(&request);
                    }
                    telemetry::record_request(&request, now);
                    return Ok(request);
                }
                Err(StoreError::Conflict) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn submit(
        &self,
        req: Request<v1::SubmitDataSubjectRequestRequest>,
    ) -> Result<v1::SubmitDataSubjectRequestResponse, ApiError> {
        let caller = self.caller(&req)?;
        let now = self.state.clock.now();
        let submission = parse::submission(req.into_inner(), now)?;
        let request_id = submission.request_id;
        let fingerprint = submission.fingerprint();
        let (request, event) = match input::accept(
            submission,
            &caller.tenant,
            Uuid::now_v7(),
            fingerprint,
            &self.state.age_policy,
            &actor(&caller),
            now,
        ) {
            Ok(accepted) => accepted,
            Err(Rejection::UnderMinimumAge) => {
                self.state
                    .metrics
                    .submission_blocked("SUBJECT_UNDER_MINIMUM_AGE");
                tracing::info!(
                    controller_id = %caller.tenant,
                    request_id = %request_id,
                    reason = "SUBJECT_UNDER_MINIMUM_AGE",
                    "submission refused by the age rule; nothing stored"
                );
                return Err(ApiError::FailedPrecondition {
                    reason: "SUBJECT_UNDER_MINIMUM_AGE",
                    message: format!(
                        "the subject is under {} on the day the request was received; such a request cannot be accepted",
                        self.state.age_policy.minimum_age
                    ),
                });
            }
        };
        let mut request = request;
        // Kept with the request, so that later spans about it link here.
        request.origin = telemetry::current_origin();
        let effects = effects_of(&self.state, &mut request, event, now).await?;
        // Grouped with concurrent submissions into one commit; answered only
        // after that commit.
        let (outcome, request, effects) = self.state.committer.insert(request, effects).await?;
        match outcome {
            InsertOutcome::Created => {
                self.state.announce_tasks(&effects.new_tasks);
                self.state
                    .metrics
                    .request_submitted(request.request_type, request.regime);
                telemetry::check_deadline_holidays(
                    &self.state.metrics,
                    &request.subject.jurisdiction,
                    request.due_time,
                );
                telemetry::record_request(&request, now);
                Ok(v1::SubmitDataSubjectRequestResponse {
                    data_subject_request: Some(request_to_proto(&request)),
                    replayed: false,
                })
            }
            InsertOutcome::Existing(existing) if existing.fingerprint == request.fingerprint => {
                telemetry::record_request(&existing, now);
                Ok(v1::SubmitDataSubjectRequestResponse {
                    data_subject_request: Some(request_to_proto(&existing)),
                    replayed: true,
                })
            }
            InsertOutcome::Existing(_) => Err(ApiError::AlreadyExists {
                reason: "REQUEST_ID_REUSED",
                message: "this request_id was already used for a request with different content; use a new request_id for a new request".to_owned(),
            }),
        }
    }

    async fn list(
        &self,
        req: Request<v1::ListDataSubjectRequestsRequest>,
    ) -> Result<v1::ListDataSubjectRequestsResponse, ApiError> {
        let caller = self.reader(&req)?;
        let parse::RequestsPage {
            filter,
            size,
            after,
        } = parse::list_requests(req.get_ref())?;
        // One extra row tells whether another page exists.
        let mut rows = self
            .state
            .store
            .list_requests(&caller.tenant, &filter, after.as_ref(), size + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_requests_token(
                &crate::store::Cursor {
                    create_time: last.create_time,
                    id: last.id,
                },
                &filter,
            ),
            _ => String::new(),
        };
        Ok(v1::ListDataSubjectRequestsResponse {
            data_subject_requests: rows.iter().map(request_to_proto).collect(),
            next_page_token,
        })
    }

    async fn events(
        &self,
        req: Request<v1::ListRequestEventsRequest>,
    ) -> Result<v1::ListRequestEventsResponse, ApiError> {
        let caller = self.reader(&req)?;
        let parse::EventsPage {
            request: id,
            size,
            after,
        } = parse::list_events(req.get_ref())?;
        // The request must exist for this tenant, even when the page is empty.
        self.load(&caller, id).await?;
        let mut rows = self
            .state
            .store
            .list_events(&caller.tenant, id, after, size + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_events_token(id, last.sequence),
            _ => String::new(),
        };
        Ok(v1::ListRequestEventsResponse {
            events: rows.iter().map(convert::event_to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl DataSubjectRequestService for DsrService {
    async fn submit_data_subject_request(
        &self,
        request: Request<v1::SubmitDataSubjectRequestRequest>,
    ) -> Result<Response<v1::SubmitDataSubjectRequestResponse>, Status> {
        Ok(Response::new(self.submit(request).await?))
    }

    async fn get_data_subject_request(
        &self,
        request: Request<v1::GetDataSubjectRequestRequest>,
    ) -> Result<Response<v1::GetDataSubjectRequestResponse>, Status> {
        let caller = self.reader(&request)?;
        let id = parse_name(&request.get_ref().name)?;
        let found = self.load(&caller, id).await?;
        Ok(Response::new(v1::GetDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&found)),
        }))
    }

    async fn list_data_subject_requests(
        &self,
        request: Request<v1::ListDataSubjectRequestsRequest>,
    ) -> Result<Response<v1::ListDataSubjectRequestsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn record_guardian_consent(
        &self,
        request: Request<v1::RecordGuardianConsentRequest>,
    ) -> Result<Response<v1::RecordGuardianConsentResponse>, Status> {
        let caller = self.caller(&request)?;
        let (id, raw) = parse::guardian_consent(request.into_inner())?;
        let now = self.state.clock.now();
        let who = actor(&caller);
        let updated = self
            .transition(&caller, id, now, |r| {
                let guardian = input::parse_guardian(raw.clone(), r.received_at, now)?;
                Ok(r.record_guardian_consent(guardian, &who, now)?)
            })
            .await?;
        Ok(Response::new(v1::RecordGuardianConsentResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn extend_deadline(
        &self,
        request: Request<v1::ExtendDeadlineRequest>,
    ) -> Result<Response<v1::ExtendDeadlineResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let (id, reason) = parse::reasoned(&m.name, m.reason)?;
        let now = self.state.clock.now();
        let who = actor(&caller);
        let updated = self
            .transition(&caller, id, now, |r| {
                Ok(r.extend_deadline(reason.clone(), &who, now)?)
            })
            .await?;
        telemetry::check_deadline_holidays(
            &self.state.metrics,
            &updated.subject.jurisdiction,
            updated.due_time,
        );
        Ok(Response::new(v1::ExtendDeadlineResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn cancel_data_subject_request(
        &self,
        request: Request<v1::CancelDataSubjectRequestRequest>,
    ) -> Result<Response<v1::CancelDataSubjectRequestResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let (id, reason) = parse::reasoned(&m.name, m.reason)?;
        let now = self.state.clock.now();
        let who = actor(&caller);
        let updated = self
            .transition(&caller, id, now, |r| {
                Ok(r.cancel(reason.clone(), &who, now)?)
            })
            .await?;
        Ok(Response::new(v1::CancelDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn close_data_subject_request(
        &self,
        request: Request<v1::CloseDataSubjectRequestRequest>,
    ) -> Result<Response<v1::CloseDataSubjectRequestResponse>, Status> {
        let caller = self.caller(&request)?;
        let (id, closure) = parse::close(request.into_inner())?;
        let now = self.state.clock.now();
        let who = actor(&caller);
        let updated = self
            .transition(&caller, id, now, |r| {
                Ok(r.close(closure.clone(), &who, now)?)
            })
            .await?;
        Ok(Response::new(v1::CloseDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn list_request_events(
        &self,
        request: Request<v1::ListRequestEventsRequest>,
    ) -> Result<Response<v1::ListRequestEventsResponse>, Status> {
        Ok(Response::new(self.events(request).await?))
    }
}
