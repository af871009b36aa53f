//! The calls each scenario makes, and the requests `get` and `list` need
//! to exist first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gdpr_intake::proto::gdpr::bench::v1::EchoRequest;
use gdpr_intake::proto::gdpr::bench::v1::echo_service_client::EchoServiceClient;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use gdpr_intake::proto::v1::routing_service_client::RoutingServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::drive::{Caller, Outcome};

/// One of the measured calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Submit,
    Get,
    List,
    ListByState,
    ClaimComplete,
    Echo,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Submit => "submit",
            Scenario::Get => "get",
            Scenario::List => "list",
            Scenario::ListByState => "list-by-state",
            Scenario::ClaimComplete => "claim-complete",
            Scenario::Echo => "echo",
        }
    }
}

/// What every caller of a run shares.
#[derive(Clone, Debug)]
pub struct Shared {
    /// `Bearer <token>` for the intake service.
    pub authorization: Option<MetadataValue<Ascii>>,
    /// `Bearer <token>` of the processor, for `claim-complete`.
    pub processor_authorization: Option<MetadataValue<Ascii>>,
    /// Names of existing requests, for `get`.
    pub names: Vec<String>,
    pub get_miss_ratio: f64,
    pub list_page_size: i32,
    pub echo_payload: Vec<u8>,
    pub timeout: Duration,
    /// Calls made to the intake service so far, warm-up and preloading
    /// included: what the spans a traced server exports are checked against.
    pub service_calls: Arc<AtomicU64>,
}

/// Makes the calls of one scenario over one channel.
pub struct ScenarioCaller {
    scenario: Scenario,
    dsr: DataSubjectRequestServiceClient<Channel>,
    tasks: ProcessorTaskServiceClient<Channel>,
    echo: EchoServiceClient<Channel>,
    shared: Arc<Shared>,
    rng: SplitMix64,
    subject_number: u64,
}

impl ScenarioCaller {
    pub fn new(scenario: Scenario, channel: Channel, shared: Arc<Shared>, seed: u64) -> Self {
        Self {
            scenario,
            dsr: DataSubjectRequestServiceClient::new(channel.clone()),
            tasks: ProcessorTaskServiceClient::new(channel.clone()),
            echo: EchoServiceClient::new(channel),
            shared,
            rng: SplitMix64(seed),
            subject_number: seed.wrapping_mul(1_000_000),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        authorized(
            message,
            self.shared.authorization.as_ref(),
            self.shared.timeout,
        )
    }

    fn processor_request<T>(&self, message: T) -> Request<T> {
        authorized(
            message,
            self.shared.processor_authorization.as_ref(),
            self.shared.timeout,
        )
    }

    async fn submit(&mut self) -> Result<(), Status> {
        self.subject_number += 1;
        let request = self.request(submission(self.subject_number));
        self.dsr.submit_data_subject_request(request).await?;
        Ok(())
    }

    /// Returns whether the call was a deliberate miss.
    async fn get(&mut self) -> (bool, Result<(), Status>) {
        let miss = self.rng.unit() < self.shared.get_miss_ratio;
        let name = if miss || self.shared.names.is_empty() {
            format!("dataSubjectRequests/{}", uuid::Uuid::new_v4())
        } else {
            let index = self.rng.below(self.shared.names.len());
            self.shared.names.get(index).cloned().unwrap_or_default()
        };
        let request = self.request(v1::GetDataSubjectRequestRequest { name });
        let result = self.dsr.get_data_subject_request(request).await;
        (miss, result.map(|_| ()))
    }

    /// The first page, of the requests in `state` if given.
    async fn list(&mut self, state: Option<v1::data_subject_request::State>) -> Result<(), Status> {
        let request = self.request(v1::ListDataSubjectRequestsRequest {
            page_size: self.shared.list_page_size,
            state: state.map_or(0, |s| s as i32),
            ..Default::default()
        });
        self.dsr.list_data_subject_requests(request).await?;
        Ok(())
    }

    /// Claims one task and completes it; NOT_FOUND when none was left.
    async fn claim_complete(&mut self) -> Result<(), Status> {
        let claim = self.processor_request(v1::ClaimTasksRequest {
            max_tasks: 1,
            lease_duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        });
        let task = self
            .tasks
            .claim_tasks(claim)
            .await?
            .into_inner()
            .tasks
            .into_iter()
            .next()
            .ok_or_else(|| Status::not_found("no task left to claim: raise --task-preload"))?;
        self.shared.service_calls.fetch_add(1, Ordering::Relaxed);
        let complete = self.processor_request(v1::CompleteTaskRequest {
            name: task.name,
            lease_token: task.lease_token,
            outcome: v1::TaskOutcome::Done.into(),
            ..Default::default()
        });
        self.tasks.complete_task(complete).await?;
        Ok(())
    }

    async fn echo(&mut self) -> Result<(), Status> {
        let mut request = Request::new(EchoRequest {
            payload: self.shared.echo_payload.clone(),
        });
        request.set_timeout(self.shared.timeout);
        self.echo.echo(request).await?;
        Ok(())
    }
}

impl Caller for ScenarioCaller {
    async fn call(&mut self) -> Outcome {
        if self.scenario != Scenario::Echo {
            self.shared.service_calls.fetch_add(1, Ordering::Relaxed);
        }
        let (miss, result) = match self.scenario {
            Scenario::Submit => (false, self.submit().await),
            Scenario::Get => self.get().await,
            Scenario::List => (false, self.list(None).await),
            Scenario::ListByState => (
                false,
                self.list(Some(v1::data_subject_request::State::InProgress))
                    .await,
            ),
            Scenario::ClaimComplete => (false, self.claim_complete().await),
            Scenario::Echo => (false, self.echo().await),
        };
        let code = match result {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        };
        let wanted = if miss { Code::NotFound } else { Code::Ok };
        Outcome {
            code,
            expected: code == wanted,
        }
    }
}

/// `message` with `timeout` and, when given, `authorization`.
fn authorized<T>(
    message: T,
    authorization: Option<&MetadataValue<Ascii>>,
    timeout: Duration,
) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// Registers `processor` and routes `controller`'s access requests to it,
/// as an admin: from then on each submitted access request fans out into
/// one task for it.
pub async fn route_to_processor(
    channel: Channel,
    admin: &MetadataValue<Ascii>,
    controller: &str,
    processor: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut routing = RoutingServiceClient::new(channel);
    let failed = |what: &str, s: Status| format!("{what}: {:?}: {}", s.code(), s.message());
    routing
        .create_processor(authorized(
            v1::CreateProcessorRequest {
                processor_id: processor.to_owned(),
                display_name: "loadgen processor".to_owned(),
                contact: "loadgen@example.org".to_owned(),
            },
            Some(admin),
            timeout,
        ))
        .await
        .map_err(|s| failed("creating the loadgen processor", s))?;
    routing
        .create_route(authorized(
            v1::CreateRouteRequest {
                controller_id: controller.to_owned(),
                processor_id: processor.to_owned(),
                request_types: vec![v1::RequestType::Access.into()],
                task_sla_working_hours: 72,
            },
            Some(admin),
            timeout,
        ))
        .await
        .map_err(|s| failed("routing the loadgen controller to it", s))?;
    Ok(())
}

/// A valid access request of an adult in Germany: the common case. The
/// personal data is made up; only the request_id and the subject's
/// identifier change from call to call.
pub fn submission(subject_number: u64) -> v1::SubmitDataSubjectRequestRequest {
    v1::SubmitDataSubjectRequestRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        r#type: v1::RequestType::Access.into(),
        subject: Some(v1::Subject {
            external_id: format!("loadgen-subject-{subject_number}"),
            email: "subject@example.org".to_owned(),
            date_of_birth: Some(Date {
                year: 1985,
                month: 12,
                day: 10,
            }),
            country: "DE".to_owned(),
            ..Default::default()
        }),
        details: "please send me a copy of my data".to_owned(),
        ..Default::default()
    }
}

/// Preloads begun so far.
static PRELOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Submits `count` requests over `channels` with `concurrency` calls in
/// flight and returns their names. Any failure stops the run: `get` and
/// `list` would measure nothing useful without their data.
pub async fn preload(
    channels: &[Channel],
    shared: Arc<Shared>,
    concurrency: usize,
    count: u64,
) -> Result<Vec<String>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    // Subjects of their own for each preload: the server stores a second
    // request about a subject whose first is open as its duplicate,
    // without a task.
    let base = u64::MAX / 2 + PRELOADS.fetch_add(1, Ordering::Relaxed) * (1 << 16);
    let workers = concurrency.clamp(1, usize::try_from(count).unwrap_or(usize::MAX));
    let per_worker = count / workers as u64;
    let extra = count % workers as u64;
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let channel = channels
            .get(worker % channels.len().max(1))
            .cloned()
            .ok_or("no channel to preload over")?;
        let mut caller = ScenarioCaller::new(
            Scenario::Submit,
            channel,
            Arc::clone(&shared),
            base + worker as u64,
        );
        let n = per_worker + u64::from((worker as u64) < extra);
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for _ in 0..n {
                caller.subject_number += 1;
                caller.shared.service_calls.fetch_add(1, Ordering::Relaxed);
                let request = caller.request(submission(caller.subject_number));
                let response = caller
                    .dsr
                    .submit_data_subject_request(request)
                    .await
                    .map_err(|s| format!("preloading requests: {:?}: {}", s.code(), s.message()))?;
                let name = response
                    .into_inner()
                    .data_subject_request
                    .map(|r| r.name)
                    .ok_or("preloading requests: an answer without the request")?;
                names.push(name);
            }
            Ok::<_, String>(names)
        }));
    }
    let mut names = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for task in tasks {
        names.extend(
            task.await
                .map_err(|e| format!("preloading requests: {e}"))??,
        );
    }
    Ok(names)
}

/// A small, fast generator for picking requests at random; the choice need
/// not be unpredictable, only spread evenly.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) for n > 0 (the bias of a modulo on 64 bits is
    /// far below what a benchmark can notice).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_choices_cover_the_range() {
        let mut rng = SplitMix64(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        let mean: f64 = (0..10_000).map(|_| rng.unit()).sum::<f64>() / 10_000.0;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }

    #[test]
    fn submissions_differ_only_in_their_identifiers() {
        let a = submission(1);
        let b = submission(2);
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.r#type, b.r#type);
        assert_eq!(a.details, b.details);
        assert!(uuid::Uuid::parse_str(&a.request_id).is_ok());
    }
}
