//! Crash safety: the real binary is killed with SIGKILL while clients submit
//! requests, then restarted. Every acknowledged request must exist exactly
//! once, with exactly the tasks of its routes (no partial fan-out), and
//! nothing may appear twice.
//!
//! Size from `GDPR_INTAKE_CRASH_KILLS` and `GDPR_INTAKE_CRASH_REQUESTS`
//! (defaults 3 and 300; the README gives the full-size command).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::proto::v1::processor_task_service_client::ProcessorTaskServiceClient;
use gdpr_intake::proto::v1::routing_service_client::RoutingServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::db;
use crate::helpers::{authed, eventually, submission};

pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

/// A server is never left running: a check that fails (or a server that
/// is replaced) kills its process, which would otherwise outlive the test
/// run and load the machine.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub(crate) fn start(data_dir: &std::path::Path, database_url: Option<&str>, port: u16) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gdpr-intake"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    Server {
        child: cmd.spawn().expect("server starts"),
        addr: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn wait_ready(addr: &str) -> Channel {
    // Generous: a debug build restarting on a loaded CI machine (the rest of
    // the suite runs beside it) can take many seconds to migrate and bind.
    eventually(
        "the server's readiness",
        Duration::from_secs(60),
        || async {
            let ch = Channel::from_shared(addr.to_owned())
                .expect("uri")
                .connect()
                .await
                .ok()?;
            let ok = HealthClient::new(ch.clone())
                .check(HealthCheckRequest {
                    service: "gdpr.intake.v1.DataSubjectRequestService".into(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == 1);
            ok.then_some(ch)
        },
    )
    .await
}

pub(crate) fn token(data_dir: &std::path::Path, role: Role, tenant: &str) -> String {
    dev::mint_token(
        data_dir,
        &TokenClaims {
            issuer: dev::DEV_ISSUER.into(),
            audience: "gdpr-intake".into(),
            subject: format!("{}@{tenant}", role.as_str()),
            role,
            tenant: tenant.into(),
            ttl_secs: 3600,
            token_id: None,
        },
    )
    .expect("token")
}

/// Registers each processor and routes controller `acme`'s requests of
/// its types (empty: all) to it.
pub(crate) async fn route_acme(
    channel: Channel,
    admin: &str,
    processors: &[(&str, Vec<v1::RequestType>)],
) {
    let mut routing = RoutingServiceClient::new(channel);
    for (p, types) in processors {
        routing
            .create_processor(authed(
                admin,
                v1::CreateProcessorRequest {
                    processor_id: (*p).into(),
                    display_name: (*p).into(),
                    contact: String::new(),
                },
            ))
            .await
            .expect("processor");
        routing
            .create_route(authed(
                admin,
                v1::CreateRouteRequest {
                    controller_id: "acme".into(),
                    processor_id: (*p).into(),
                    request_types: types.iter().map(|t| (*t).into()).collect(),
                    task_sla_working_hours: 72,
                },
            ))
            .await
            .expect("route");
    }
}

/// Which processors a request of `type` must reach.
fn expected_processors(t: v1::RequestType) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = ["crm", "billing"].map(String::from).into();
    if t == v1::RequestType::Erasure {
        s.insert("backups".into());
    }
    s
}

async fn run(database_url: Option<String>) {
    let kills = env_or("GDPR_INTAKE_CRASH_KILLS", 3);
    let wanted = env_or("GDPR_INTAKE_CRASH_REQUESTS", 300);
    let data = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = start(data.path(), database_url.as_deref(), port);
    let channel = wait_ready(&server.addr).await;

    let admin = token(data.path(), Role::Admin, "");
    route_acme(
        channel.clone(),
        &admin,
        &[
            ("crm", vec![]),
            ("billing", vec![]),
            ("backups", vec![v1::RequestType::Erasure]),
        ],
    )
    .await;
    let controller = token(data.path(), Role::Controller, "acme");

    // name -> type of every acknowledged request.
    let acked: Arc<Mutex<BTreeMap<String, v1::RequestType>>> = Arc::default();
    let mut round = 0;
    while acked.lock().expect("lock").len() < wanted || round < kills {
        let channel = wait_ready(&server.addr).await;
        let acked_before = acked.lock().expect("lock").len();
        let per_round = wanted.div_ceil(kills.max(1) * 8).max(1);
        let mut clients = Vec::new();
        for c in 0..8 {
            let mut client = DataSubjectRequestServiceClient::new(channel.clone());
            let acked = acked.clone();
            let token = controller.clone();
            clients.push(tokio::spawn(async move {
                for i in 0..per_round {
                    let mut m = submission();
                    // Each about a subject of its own: the server runs with
                    // the default duplicate window, and a repeat would get
                    // no tasks.
                    if let Some(subject) = m.subject.as_mut() {
                        subject.external_id = format!("subject-{}", m.request_id);
                    }
                    let t = if (i + c) % 3 == 0 {
                        v1::RequestType::Erasure
                    } else {
                        v1::RequestType::Access
                    };
                    m.r#type = t.into();
                    match client.submit_data_subject_request(authed(&token, m)).await {
                        Ok(r) => {
                            let name = r.into_inner().data_subject_request.expect("request").name;
                            acked.lock().expect("lock").insert(name, t);
                        }
                        Err(_) => return, // the server died under us
                    }
                }
            }));
        }
        if round < kills {
            // Let the burst run a little (between an eighth and a half of
            // the round's submissions acknowledged, varying from round to
            // round), then kill the server mid-flight.
            let kill_after = acked_before + per_round * (1 + round % 4);
            eventually(
                &format!("{kill_after} submissions acknowledged before kill {round}"),
                Duration::from_secs(60),
                || async { acked.lock().expect("lock").len() >= kill_after },
            )
            .await;
            server.child.kill().expect("SIGKILL");
            server.child.wait().expect("reaped");
            for c in clients {
                let _ = c.await;
            }
            server = start(data.path(), database_url.as_deref(), port);
        } else {
            for c in clients {
                c.await.expect("client");
            }
        }
        round += 1;
    }
    let channel = wait_ready(&server.addr).await;

    // Every stored request, each once.
    let mut dsr = DataSubjectRequestServiceClient::new(channel.clone());
    let mut stored: BTreeMap<String, v1::DataSubjectRequest> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = dsr
            .list_data_subject_requests(authed(
                &controller,
                v1::ListDataSubjectRequestsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        for r in page.data_subject_requests {
            assert!(
                stored.insert(r.name.clone(), r).is_none(),
                "a request listed twice"
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let acked = acked.lock().expect("lock").clone();
    let lost: Vec<_> = acked.keys().filter(|n| !stored.contains_key(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // Every task, grouped by request: exactly the routes' processors, once.
    let mut tasks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in ["crm", "billing", "backups"] {
        let t = token(data.path(), Role::Processor, p);
        let mut client = ProcessorTaskServiceClient::new(channel.clone());
        let mut page_token = String::new();
        loop {
            let page = client
                .list_tasks(authed(
                    &t,
                    v1::ListTasksRequest {
                        page_size: 1000,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("tasks")
                .into_inner();
            for task in page.tasks {
                tasks
                    .entry(task.data_subject_request)
                    .or_default()
                    .push(task.processor_id);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    for (name, r) in &stored {
        let got = tasks.get(name).cloned().unwrap_or_default();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), unique.len(), "{name}: duplicated tasks {got:?}");
        assert_eq!(
            unique,
            expected_processors(r.r#type()),
            "{name}: partial fan-out"
        );
    }
    assert!(
        tasks.keys().all(|n| stored.contains_key(n)),
        "tasks of a request that does not exist"
    );
    eprintln!(
        "crash check ({}): {} kills, {} acknowledged, {} stored, lost 0, duplicates 0",
        if database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        kills,
        acked.len(),
        stored.len()
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_during_a_burst() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_during_a_burst() {
    let Some(config) = db::postgres_config().await else {
        return;
    };
    run(config.database_url).await;
}
