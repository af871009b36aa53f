//! `gdpr.intake.v1.DataSubjectRequestService`.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use opentelemetry::KeyValue;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;
use uuid::Uuid;

use super::convert::{self, request_to_proto};
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Role};
use crate::domain::request::NAME_PREFIX;
use crate::proto::v1;
use crate::proto::v1::data_subject_request_service_server::DataSubjectRequestService;
use crate::service::{AppState, Cursor};
use crate::telemetry;

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

/// Most events a feed watcher reads per round.
const FEED_BATCH: u32 = 500;

/// The handlers of the controller-facing service.
#[derive(Clone)]
pub struct DsrService {
    state: AppState,
    /// How often a feed watcher that has caught up reads the feed again.
    feed_poll: Duration,
}

impl DsrService {
    pub fn new(state: AppState, feed_poll: Duration) -> Self {
        Self { state, feed_poll }
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

    async fn submit(
        &self,
        req: Request<v1::SubmitDataSubjectRequestRequest>,
    ) -> Result<v1::SubmitDataSubjectRequestResponse, ApiError> {
        let caller = self.caller(&req)?;
        let now = self.state.clock.now();
        let submission = parse::submission(req.into_inner(), now)?;
        let submitted = self.state.submit(&caller, submission, now).await?;
        Ok(v1::SubmitDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&submitted.request)),
            replayed: submitted.replayed,
        })
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
        let listed = self
            .state
            .list_requests(&caller, &filter, after.as_ref(), size)
            .await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_requests_token(
                &Cursor {
                    create_time: last.create_time,
                    id: last.id,
                },
                &filter,
            ),
            None => String::new(),
        };
        Ok(v1::ListDataSubjectRequestsResponse {
            data_subject_requests: listed.rows.iter().map(request_to_proto).collect(),
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
        let listed = self.state.list_events(&caller, id, after, size).await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_events_token(id, last.sequence),
            None => String::new(),
        };
        Ok(v1::ListRequestEventsResponse {
            events: listed.rows.iter().map(convert::event_to_proto).collect(),
            next_page_token,
        })
    }

    async fn feed(
        &self,
        req: Request<v1::ListFeedEventsRequest>,
    ) -> Result<v1::ListFeedEventsResponse, ApiError> {
        let caller = self.reader(&req)?;
        let parse::FeedPage { after, size } = parse::feed_page(req.get_ref(), &caller.tenant)?;
        self.state.check_feed_cursor(after).await?;
        let listed = self.state.list_feed(&caller, after, size).await?;
        let cursors = page::FeedCursors::for_tenant(&caller.tenant);
        let events: Vec<_> = listed
            .rows
            .iter()
            .map(|e| convert::feed_event_to_proto(&cursors, e))
            .collect();
        self.state
            .metrics
            .feed_delivered("list", events.len() as u64);
        let next_cursor = match events.last() {
            Some(last) => last.cursor.clone(),
            None => req.into_inner().cursor,
        };
        Ok(v1::ListFeedEventsResponse {
            events,
            next_cursor,
        })
    }

    /// Streams the caller's feed after the cursor: a page at a time while
    /// there is more, then a read every `feed_poll`, until the caller hangs
    /// up, its token is revoked or expires (UNAUTHENTICATED), or the
    /// call-limit layer ends the stream at drain or deadline.
    async fn watch(
        &self,
        req: Request<v1::WatchRequestEventsRequest>,
    ) -> Result<FeedStream, ApiError> {
        let caller = self.reader(&req)?;
        let mut after = parse::feed_start(req.get_ref(), &caller.tenant)?;
        self.state.check_feed_cursor(after).await?;
        let (tx, rx) = mpsc::channel(FEED_BATCH as usize);
        let state = self.state.clone();
        let poll = self.feed_poll;
        let cursors = page::FeedCursors::for_tenant(&caller.tenant);
        let open = self.state.metrics.feed_watch_opened();
        let watcher = async move {
            let _open = open;
            loop {
                // A token revoked or expired since the stream began ends it.
                if let Err(e) = state.auth.still_valid(&caller) {
                    let _ = tx.send(Err(ApiError::from(e).into())).await;
                    return;
                }
                let page = match state.list_feed(&caller, after, FEED_BATCH).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let mut sent = 0;
                for entry in &page.rows {
                    let e = convert::feed_event_to_proto(&cursors, entry);
                    let msg = v1::WatchRequestEventsResponse {
                        cursor: e.cursor,
                        name: e.name,
                        event: e.event,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        state.metrics.feed_delivered("watch", sent);
                        return; // the consumer hung up
                    }
                    sent += 1;
                    after = entry.at;
                }
                state.metrics.feed_delivered("watch", sent);
                if page.more {
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = tx.closed() => return,
                }
            }
        };
        tokio::spawn(watcher.in_current_span());
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

type FeedStream =
    Pin<Box<dyn Stream<Item = Result<v1::WatchRequestEventsResponse, Status>> + Send>>;

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
        let found = self.state.get_request(&caller, id).await?;
        Ok(Response::new(v1::GetDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&found)),
        }))
    }

    async fn export_request_evidence(
        &self,
        request: Request<v1::ExportRequestEvidenceRequest>,
    ) -> Result<Response<v1::ExportRequestEvidenceResponse>, Status> {
        let caller = self.authorized(&request, &[Role::Auditor, Role::Admin])?;
        let m = request.get_ref();
        let id = parse_name(&m.name)?;
        let bundle = self
            .state
            .export_evidence(&caller, id, m.include_personal_data)
            .await?;
        Ok(Response::new(v1::ExportRequestEvidenceResponse {
            bundle: bundle.into_bytes(),
            key_id: self.state.evidence_key.signing_id().to_owned(),
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
        let updated = self
            .state
            .record_guardian_consent(&caller, id, raw, now)
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
        let updated = self.state.extend_deadline(&caller, id, reason, now).await?;
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
        let updated = self.state.cancel_request(&caller, id, reason, now).await?;
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
        let updated = self.state.close_request(&caller, id, closure, now).await?;
        Ok(Response::new(v1::CloseDataSubjectRequestResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn request_identity_verification(
        &self,
        request: Request<v1::RequestIdentityVerificationRequest>,
    ) -> Result<Response<v1::RequestIdentityVerificationResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let (id, reason) = parse::reasoned(&m.name, m.reason)?;
        let now = self.state.clock.now();
        let updated = self
            .state
            .request_identity_verification(&caller, id, reason, now)
            .await?;
        Ok(Response::new(v1::RequestIdentityVerificationResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn record_identity_verification(
        &self,
        request: Request<v1::RecordIdentityVerificationRequest>,
    ) -> Result<Response<v1::RecordIdentityVerificationResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let (id, method) = parse::named_text(&m.name, "method", m.method)?;
        let received_at = convert::raw_timestamp(m.received_at);
        let now = self.state.clock.now();
        let updated = self
            .state
            .record_identity_verification(&caller, id, method, received_at, now)
            .await?;
        Ok(Response::new(v1::RecordIdentityVerificationResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn request_clarification(
        &self,
        request: Request<v1::RequestClarificationRequest>,
    ) -> Result<Response<v1::RequestClarificationResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let (id, question) = parse::named_text(&m.name, "question", m.question)?;
        let now = self.state.clock.now();
        let updated = self
            .state
            .request_clarification(&caller, id, question, now)
            .await?;
        Ok(Response::new(v1::RequestClarificationResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    async fn record_clarification(
        &self,
        request: Request<v1::RecordClarificationRequest>,
    ) -> Result<Response<v1::RecordClarificationResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let id = parse_name(&m.name)?;
        let received_at = convert::raw_timestamp(m.received_at);
        let now = self.state.clock.now();
        let updated = self
            .state
            .record_clarification(&caller, id, received_at, now)
            .await?;
        Ok(Response::new(v1::RecordClarificationResponse {
            data_subject_request: Some(request_to_proto(&updated)),
        }))
    }

    type WatchRequestEventsStream = FeedStream;

    async fn watch_request_events(
        &self,
        request: Request<v1::WatchRequestEventsRequest>,
    ) -> Result<Response<Self::WatchRequestEventsStream>, Status> {
        Ok(Response::new(self.watch(request).await?))
    }

    async fn list_feed_events(
        &self,
        request: Request<v1::ListFeedEventsRequest>,
    ) -> Result<Response<v1::ListFeedEventsResponse>, Status> {
        Ok(Response::new(self.feed(request).await?))
    }

    async fn list_request_events(
        &self,
        request: Request<v1::ListRequestEventsRequest>,
    ) -> Result<Response<v1::ListRequestEventsResponse>, Status> {
        Ok(Response::new(self.events(request).await?))
    }
}
