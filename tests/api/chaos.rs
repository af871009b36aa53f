//! The three-replica chaos check: three servers (the real binary) on one
//! PostgreSQL database, under a load of submissions (adults and minors),
//! guardian consents, cancels, and processors (two workers each) that
//! claim, renew, complete and sometimes abandon tasks under short leases,
//! spread over all three;
//! every few seconds one replica is SIGKILLed and started again. Then the
//! processors drain what is left, and the check counts, and prints:
//!
//! - acknowledged submissions not stored, or stored more than once;
//! - requests whose tasks are not exactly their routes (a minor's request
//!   not yet consented to has none);
//! - tasks held under two live leases at once, from the lease intervals
//!   the server granted (its own clock: a lease of d granted until e ran
//!   from e − d, and renewals move e);
//! - tasks completed twice with different outcomes, or stored with
//!   another outcome than the one acknowledged;
//! - requests whose tasks all completed but that are not completed, and
//!   requests left open after the drain;
//! - `gdpr-intake audit verify` findings.
//!
//! Size from `GDPR_INTAKE_CHAOS_KILLS` (default 3), `GDPR_INTAKE_CHAOS_SUBMISSIONS`
//! (300) and `GDPR_INTAKE_CHAOS_KILL_EVERY_MS` (2000); docs/operations.md
//! gives the full-size command and its figures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request::State;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use gdpr_intake::proto::v1::task::State as TaskState;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::crash::{Server, env_or, free_port, route_acme, start, token, wait_ready};
use crate::db;
use crate::helpers::{adult_subject, minor_subject, submission};

const REPLICAS: usize = 3;
/// Processors and the request types routed to each (empty: all).
const PROCESSORS: [(&str, &[v1::RequestType]); 3] = [
    ("crm", &[]),
    ("billing", &[]),
    ("backups", &[v1::RequestType::Erasure]),
];
/// Short, so that abandoned leases expire and are claimed again often.
const LEASE: Duration = Duration::from_secs(2);
/// The stored precision of lease times, allowed between two leases.
const PRECISION: Duration = Duration::from_micros(1);

fn expected(t: v1::RequestType) -> BTreeSet<String> {
    PROCESSORS
        .iter()
        .filter(|(_, types)| types.is_empty() || types.contains(&t))
        .map(|(p, _)| (*p).to_owned())
        .collect()
}

/// Lazy channels to the replicas: each reconnects by itself after its
/// replica restarts. Calls go round the replicas, and move on to the next
/// when one is down.
#[derive(Clone)]
struct Replicas {
    channels: Arc<Vec<Channel>>,
    next: Arc<AtomicUsize>,
}

/// What a killed replica makes a call end with.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

impl Replicas {
    fn new(ports: &[u16]) -> Self {
        let channels = ports
            .iter()
            .map(|p| {
                Channel::from_shared(format!("http://127.0.0.1:{p}"))
                    .expect("uri")
                    .connect_timeout(Duration::from_secs(1))
                    .connect_lazy()
            })
            .collect();
        Self {
            channels: Arc::new(channels),
            next: Arc::default(),
        }
    }

    fn pick(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    /// `call` on one replica after another until it is answered by one
    /// that is up; how many attempts failed on a replica going down.
    async fn call<T, F, Fut>(&self, mut call: F) -> (Result<T, Status>, usize)
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut retries = 0;
        loop {
            match call(self.pick()).await {
                Err(status) if transient(&status) && retries < 200 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return (other.map(tonic::Response::into_inner), retries),
            }
        }
    }
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut request = crate::helpers::authed(token, msg);
    request.set_timeout(Duration::from_secs(5));
    request
}

/// One lease as granted: from `start` to `end` on the server's clock.
#[derive(Clone, Debug)]
struct Lease {
    task: String,
    token: String,
    start: prost_types::Timestamp,
    end: prost_types::Timestamp,
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

#[derive(Default)]
struct Record {
    /// request_id → (name, type, a minor's, to be cancelled).
    acked: BTreeMap<String, (String, v1::RequestType, bool, bool)>,
    submit_retries: usize,
    consents: BTreeSet<String>,
    cancels: BTreeSet<String>,
    leases: Vec<Lease>,
    renewals: usize,
    abandoned: usize,
    /// task → outcomes of its acknowledged completions.
    completions: BTreeMap<String, Vec<i32>>,
}

type Shared = Arc<Mutex<Record>>;

fn lease_of(task: &v1::Task) -> Lease {
    let end = task.lease_expire_time.expect("a leased task has an expiry");
    let start_micros = micros(&end) - i64::try_from(LEASE.as_micros()).expect("short");
    Lease {
        task: task.name.clone(),
        token: task.lease_token.clone(),
        start: prost_types::Timestamp {
            seconds: start_micros.div_euclid(1_000_000),
            nanos: i32::try_from(start_micros.rem_euclid(1_000_000) * 1_000).expect("nanos"),
        },
        end,
    }
}

fn lease_duration() -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: i64::try_from(LEASE.as_secs()).expect("short"),
        nanos: 0,
    })
}

async fn submitter(
    n: usize,
    replicas: Replicas,
    controller: String,
    record: Shared,
    enough: Arc<AtomicBool>,
) {
    let mut i = 0usize;
    while !enough.load(Ordering::Relaxed) {
        let mut m = submission();
        let t = [
            v1::RequestType::Access,
            v1::RequestType::Erasure,
            v1::RequestType::Portability,
        ][(i + n) % 3];
        m.r#type = t.into();
        let minor = (i + n).is_multiple_of(4);
        // Each about a subject of its own: the replicas run with the
        // default duplicate window, and a repeat would get no tasks.
        m.subject = Some(v1::Subject {
            external_id: format!("subject-{}", m.request_id),
            ..if minor {
                minor_subject()
            } else {
                adult_subject()
            }
        });
        // The same request_id on every attempt: a submission stored by a
        // replica that died before answering is answered by the next.
        let (answer, retries) = replicas
            .call(|ch| {
                let m = m.clone();
                let controller = controller.clone();
                async move {
                    DataSubjectRequestServiceClient::new(ch)
                        .submit_data_subject_request(authed(&controller, m))
                        .await
                }
            })
            .await;
        let name = answer
            .expect("a submission is answered")
            .data_subject_request
            .expect("request")
            .name;
        let mut record = record.lock().expect("lock");
        record.submit_retries += retries;
        // One adult's request in five is cancelled by the guardian task.
        let cancel = !minor && (i + n) % 5 == 2;
        record.acked.insert(m.request_id, (name, t, minor, cancel));
        i += 1;
    }
}

/// Consents to minors' requests and cancels the adults' marked for it.
async fn guardian(replicas: Replicas, controller: String, record: Shared, stop: Arc<AtomicBool>) {
    let mut done = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let todo: Vec<(String, bool)> = {
            let record = record.lock().expect("lock");
            record
                .acked
                .values()
                .filter(|(name, _, minor, cancel)| !done.contains(name) && (*minor || *cancel))
                .map(|(name, _, minor, _)| (name.clone(), *minor))
                .collect()
        };
        for (name, minor) in todo {
            done.insert(name.clone());
            let (answer, _) = if minor {
                replicas
                    .call(|ch| {
                        let consent = v1::RecordGuardianConsentRequest {
                            name: name.clone(),
                            guardian: Some(v1::Guardian {
                                full_name: "Grace Hopper".to_owned(),
                                relationship: v1::GuardianRelationship::Parent.into(),
                                email: "grace@example.org".to_owned(),
                                verification_method: "id-document-check".to_owned(),
                                // After receipt, and not ahead of the server.
                                consented_at: Some(prost_types::Timestamp::from(
                                    std::time::SystemTime::now(),
                                )),
                            }),
                        };
                        let controller = controller.clone();
                        async move {
                            DataSubjectRequestServiceClient::new(ch)
                                .record_guardian_consent(authed(&controller, consent))
                                .await
                                .map(|r| r.map(|_| ()))
                        }
                    })
                    .await
            } else {
                replicas
                    .call(|ch| {
                        let cancel = v1::CancelDataSubjectRequestRequest {
                            name: name.clone(),
                            reason: "withdrawn by the subject".to_owned(),
                        };
                        let controller = controller.clone();
                        async move {
                            DataSubjectRequestServiceClient::new(ch)
                                .cancel_data_subject_request(authed(&controller, cancel))
                                .await
                                .map(|r| r.map(|_| ()))
                        }
                    })
                    .await
            };
            match answer {
                Ok(()) => {
                    let mut record = record.lock().expect("lock");
                    if minor {
                        record.consents.insert(name);
                    } else {
                        record.cancels.insert(name);
                    }
                }
                // Already done by an attempt whose answer was lost, or (a
                // cancel) the request completed first.
                Err(status) if status.code() == Code::FailedPrecondition => {}
                Err(status) => panic!("{name}: {status:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Claims, renews every third task, abandons every seventh (while
/// `abandon`), and completes the rest. Returns when `stop` is set, or,
/// draining, when three claims in a row found nothing.
async fn processor(
    processor: &'static str,
    replicas: Replicas,
    token: String,
    record: Shared,
    stop: Arc<AtomicBool>,
    abandon: bool,
) {
    let mut n = 0usize;
    let mut empty = 0;
    while !stop.load(Ordering::Relaxed) {
        let (answer, _) = replicas
            .call(|ch| {
                let token = token.clone();
                async move {
                    ProcessorTaskServiceClient::new(ch)
                        .claim_tasks(authed(
                            &token,
                            v1::ClaimTasksRequest {
                                max_tasks: 4,
                                lease_duration: lease_duration(),
                            },
                        ))
                        .await
                }
            })
            .await;
        let tasks = answer.expect("a claim is answered").tasks;
        if tasks.is_empty() {
            empty += 1;
            if !abandon && empty >= 3 {
                return;
            }
            // Long enough for abandoned leases to run out.
            tokio::time::sleep(if abandon {
                Duration::from_millis(100)
            } else {
                LEASE
            })
            .await;
            continue;
        }
        empty = 0;
        for task in tasks {
            n += 1;
            record.lock().expect("lock").leases.push(lease_of(&task));
            if abandon && n.is_multiple_of(7) {
                record.lock().expect("lock").abandoned += 1;
                continue;
            }
            if n.is_multiple_of(3) {
                let mut tasks = ProcessorTaskServiceClient::new(replicas.pick());
                let renewed = tasks
                    .renew_task_lease(authed(
                        &token,
                        v1::RenewTaskLeaseRequest {
                            name: task.name.clone(),
                            lease_token: task.lease_token.clone(),
                            lease_duration: lease_duration(),
                        },
                    ))
                    .await;
                if let Ok(r) = renewed {
                    let task = r.into_inner().task.expect("task");
                    let mut record = record.lock().expect("lock");
                    record.renewals += 1;
                    let end = task.lease_expire_time.expect("expiry");
                    if let Some(lease) = record
                        .leases
                        .iter_mut()
                        .rev()
                        .find(|l| l.token == task.lease_token)
                    {
                        lease.end = end;
                    }
                }
            }
            let outcome = if n.is_multiple_of(2) {
                v1::TaskOutcome::Done
            } else {
                v1::TaskOutcome::NoDataHeld
            };
            // Not retried: an answer lost with its replica leaves the
            // lease to run out, and the task to be claimed again.
            let completed = ProcessorTaskServiceClient::new(replicas.pick())
                .complete_task(authed(
                    &token,
                    v1::CompleteTaskRequest {
                        name: task.name.clone(),
                        lease_token: task.lease_token.clone(),
                        outcome: outcome.into(),
                        reason: String::new(),
                        result_uri: if outcome == v1::TaskOutcome::Done {
                            format!("s3://exports/{processor}/{n}.zip")
                        } else {
                            String::new()
                        },
                        note: String::new(),
                    },
                ))
                .await;
            if completed.is_ok() {
                record
                    .lock()
                    .expect("lock")
                    .completions
                    .entry(task.name)
                    .or_default()
                    .push(outcome.into());
            }
        }
    }
}

/// Every page of `list`.
async fn all_pages<T, F, Fut>(mut list: F) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<T>, String)>,
{
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let (items, next) = list(page_token).await;
        all.extend(items);
        if next.is_empty() {
            return all;
        }
        page_token = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_killed_in_turn_lose_duplicate_and_double_lease_nothing() {
    let Some(config) = db::postgres_config().await else {
        return;
    };
    let url = config.database_url.expect("a postgres url");
    let kills = env_or("GDPR_INTAKE_CHAOS_KILLS", 3);
    let wanted = env_or("GDPR_INTAKE_CHAOS_SUBMISSIONS", 300);
    let kill_every = Duration::from_millis(
        u64::try_from(env_or("GDPR_INTAKE_CHAOS_KILL_EVERY_MS", 2000)).expect("small"),
    );
    // One data directory: the replicas share its development keys (token,
    // data and audit keys), as replicas share their Secrets.
    let data = tempfile::tempdir().expect("tmp");
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut servers: Vec<Server> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        servers.push(start(data.path(), Some(&url), *port));
        if i == 0 {
            // The first creates the keys and the schema.
            wait_ready(&servers[0].addr).await;
        }
    }
    for server in &servers {
        wait_ready(&server.addr).await;
    }

    let admin = token(data.path(), Role::Admin, "");
    let channel = wait_ready(&servers[0].addr).await;
    let routes: Vec<_> = PROCESSORS.iter().map(|(p, t)| (*p, t.to_vec())).collect();
    route_acme(channel, &admin, &routes).await;

    let replicas = Replicas::new(&ports);
    let controller = token(data.path(), Role::Controller, "acme");
    let record: Shared = Arc::default();
    let enough = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for n in 0..4 {
        load.push(tokio::spawn(submitter(
            n,
            replicas.clone(),
            controller.clone(),
            record.clone(),
            enough.clone(),
        )));
    }
    load.push(tokio::spawn(guardian(
        replicas.clone(),
        controller.clone(),
        record.clone(),
        stop.clone(),
    )));
    // Two workers per processor, claiming through different replicas at
    // once: leases are contested.
    for (p, _) in PROCESSORS.iter().chain(PROCESSORS.iter()) {
        load.push(tokio::spawn(processor(
            p,
            replicas.clone(),
            token(data.path(), Role::Processor, p),
            record.clone(),
            stop.clone(),
            true,
        )));
    }

    // One replica killed every `kill_every`, in turn, and started again;
    // at least `wanted` submissions acknowledged.
    for k in 0..kills {
        tokio::time::sleep(kill_every).await;
        let victim = &mut servers[k % REPLICAS];
        victim.child.kill().expect("SIGKILL");
        victim.child.wait().expect("reaped");
        *victim = start(data.path(), Some(&url), ports[k % REPLICAS]);
    }
    while record.lock().expect("lock").acked.len() < wanted {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    enough.store(true, Ordering::Relaxed);
    for server in &servers {
        wait_ready(&server.addr).await;
    }
    // The guardian answers what was acknowledged last.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("a load task ends cleanly");
    }

    // Drain: no more abandoning; abandoned leases run out and are taken.
    let drain: Vec<_> = PROCESSORS
        .iter()
        .map(|(p, _)| {
            tokio::spawn(processor(
                p,
                replicas.clone(),
                token(data.path(), Role::Processor, p),
                record.clone(),
                Arc::new(AtomicBool::new(false)),
                false,
            ))
        })
        .collect();
    for task in drain {
        task.await.expect("a drain ends cleanly");
    }

    // What is stored, through the API of one replica.
    let channel = wait_ready(&servers[0].addr).await;
    let dsr = DataSubjectRequestServiceClient::new(channel.clone());
    let stored = all_pages(|page_token| {
        let mut dsr = dsr.clone();
        let controller = controller.clone();
        async move {
            let page = dsr
                .list_data_subject_requests(authed(
                    &controller,
                    v1::ListDataSubjectRequestsRequest {
                        page_size: 1000,
                        page_token,
                        ..Default::default()
                    },
                ))
                .await
                .expect("list")
                .into_inner();
            (page.data_subject_requests, page.next_page_token)
        }
    })
    .await;
    let mut tasks: Vec<v1::Task> = Vec::new();
    for (p, _) in PROCESSORS {
        let client = ProcessorTaskServiceClient::new(channel.clone());
        let t = token(data.path(), Role::Processor, p);
        tasks.extend(
            all_pages(|page_token| {
                let mut client = client.clone();
                let t = t.clone();
                async move {
                    let page = client
                        .list_tasks(authed(
                            &t,
                            v1::ListTasksRequest {
                                page_size: 1000,
                                page_token,
                                ..Default::default()
                            },
                        ))
                        .await
                        .expect("tasks")
                        .into_inner();
                    (page.tasks, page.next_page_token)
                }
            })
            .await,
        );
    }
    let record = Arc::try_unwrap(record)
        .ok()
        .expect("every load task ended")
        .into_inner()
        .expect("lock");

    // 1. Every acknowledged submission stored exactly once.
    let mut by_request_id: BTreeMap<&str, Vec<&v1::DataSubjectRequest>> = BTreeMap::new();
    for r in &stored {
        by_request_id.entry(&r.request_id).or_default().push(r);
    }
    let lost = record
        .acked
        .iter()
        .filter(|(id, (name, _, _, _))| {
            !by_request_id
                .get(id.as_str())
                .is_some_and(|rs| rs.iter().any(|r| &r.name == name))
        })
        .count();
    let duplicated = by_request_id.values().filter(|rs| rs.len() > 1).count();
    let unknown = by_request_id
        .keys()
        .filter(|id| !record.acked.contains_key(**id))
        .count();

    // 2. Every request's tasks exactly its routes.
    let mut processors_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &tasks {
        processors_of
            .entry(&t.data_subject_request)
            .or_default()
            .push(&t.processor_id);
    }
    let wrong_fan_out = stored
        .iter()
        .filter(|r| {
            let got = processors_of
                .get(r.name.as_str())
                .cloned()
                .unwrap_or_default();
            let unique: BTreeSet<String> = got.iter().map(|p| (*p).to_owned()).collect();
            if got.is_empty() {
                // Never fanned out: only a minor's, never consented to.
                !matches!(
                    r.state(),
                    State::AwaitingGuardianConsent | State::Cancelled | State::Expired
                ) || record.consents.contains(&r.name)
            } else {
                got.len() != unique.len() || unique != expected(r.r#type())
            }
        })
        .count();

    // 3. No task under two live leases at once.
    let mut leases_of: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    for l in &record.leases {
        leases_of.entry(&l.task).or_default().push(l);
    }
    let tolerance = i64::try_from(PRECISION.as_micros()).expect("small");
    let mut overlapping = 0;
    for leases in leases_of.values_mut() {
        leases.sort_by_key(|l| micros(&l.start));
        let mut held_until: Option<i64> = None;
        for l in leases.iter() {
            if held_until.is_some_and(|end| micros(&l.start) + tolerance < end) {
                overlapping += 1;
            }
            held_until = Some(held_until.unwrap_or(i64::MIN).max(micros(&l.end)));
        }
    }

    // 4. No task completed twice with different outcomes, and each stored
    // with the outcome acknowledged.
    let stored_task: BTreeMap<&str, &v1::Task> =
        tasks.iter().map(|t| (t.name.as_str(), t)).collect();
    let conflicting = record
        .completions
        .iter()
        .filter(|(task, outcomes)| {
            let distinct: BTreeSet<&i32> = outcomes.iter().collect();
            distinct.len() > 1
                || stored_task
                    .get(task.as_str())
                    .is_none_or(|t| t.state() != TaskState::Completed || t.outcome != outcomes[0])
        })
        .count();

    // 5. Requests whose tasks all completed are completed; after the
    // drain, nothing is left open but minors' requests never consented to.
    let finished_but_open = stored
        .iter()
        .filter(|r| {
            let mine: Vec<&v1::Task> = tasks
                .iter()
                .filter(|t| t.data_subject_request == r.name)
                .collect();
            !mine.is_empty()
                && mine.iter().all(|t| t.state() == TaskState::Completed)
                && r.state() != State::Completed
        })
        .count();
    let left_open = stored
        .iter()
        .filter(|r| {
            !matches!(
                r.state(),
                State::Completed
                    | State::Cancelled
                    | State::AwaitingGuardianConsent
                    | State::Expired
            )
        })
        .count();

    // 6. The audit trail.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_gdpr-intake"))
        .args(["audit", "verify", "--database-url", &url, "--data-dir"])
        .arg(data.path())
        .env_remove("GDPR_INTAKE_AUDIT_KEY_FILE")
        .output()
        .expect("audit verify runs");
    let audit_broken = usize::from(!audit.status.success());

    let completed = stored
        .iter()
        .filter(|r| r.state() == State::Completed)
        .count();
    eprintln!(
        "chaos check: {REPLICAS} replicas, {kills} kills, {} processors (two workers each), {} submissions \
         acknowledged ({} calls retried on another replica), {} consents, {} cancels, \
         {} requests completed, {} tasks, {} leases granted ({} renewed, {} abandoned), \
         {} completions acknowledged",
        PROCESSORS.len(),
        record.acked.len(),
        record.submit_retries,
        record.consents.len(),
        record.cancels.len(),
        completed,
        tasks.len(),
        record.leases.len(),
        record.renewals,
        record.abandoned,
        record.completions.values().map(Vec::len).sum::<usize>(),
    );
    eprintln!(
        "chaos violations: lost {lost}, duplicated {duplicated}, unknown {unknown}, \
         wrong fan-out {wrong_fan_out}, overlapping leases {overlapping}, conflicting \
         completions {conflicting}, finished but open {finished_but_open}, left open \
         {left_open}, audit broken {audit_broken}"
    );
    assert_eq!(
        (
            lost,
            duplicated,
            unknown,
            wrong_fan_out,
            overlapping,
            conflicting,
            finished_but_open,
            left_open,
            audit_broken
        ),
        (0, 0, 0, 0, 0, 0, 0, 0, 0),
        "audit verify: {audit:?}"
    );
    assert!(record.acked.len() >= wanted);
    assert!(record.abandoned > 0, "no lease was left to run out");
    for mut server in servers {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}
