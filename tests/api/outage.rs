//! A database outage under load, on PostgreSQL: the service reaches the
//! server through a TCP proxy written here, and the test cuts it (every
//! connection dropped, new ones refused) mid-load, then restores it. The
//! shared PostgreSQL server itself is never touched.
//!
//! Calls must fail fast with UNAVAILABLE, none past its deadline;
//! readiness must turn NOT_SERVING, then SERVING again once the proxy is
//! back, with no restart; every acknowledged write must be there at the end.
//!
//! Skipped when there is no PostgreSQL server ([`db::postgres_config`]).
//! Size from `GDPR_INTAKE_OUTAGE_SECS` (default 3) and
//! `GDPR_INTAKE_OUTAGE_CLIENTS` (default 4); docs/operations.md gives the
//! full-size command.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gdpr_intake::auth::Role;
use gdpr_intake::proto::v1;
use gdpr_intake::store::StoreConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tonic::Code;

use crate::db;
use crate::helpers::{authed, eventually, submission};
use crate::lifecycle::{env_or, serving};
use crate::overload::spawn_with;

/// How long a call waits for a database connection, as configured here.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Each client call's deadline.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// The readiness service.
const READINESS: &str = "gdpr.intake.v1.DataSubjectRequestService";

/// A loopback TCP proxy to `upstream` that can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    up: bool,
    /// The copying tasks of open connections.
    connections: Vec<AbortHandle>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ProxyState {
            up: true,
            connections: Vec::new(),
        }));
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    // Decided under the lock, so a cut never misses a
                    // connection accepted at the same moment.
                    let mut state = state.lock().expect("lock");
                    if !state.up {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    state.connections.retain(|c| !c.is_finished());
                    state.connections.push(task.abort_handle());
                }
            })
        };
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        let mut state = self.state.lock().expect("lock");
        state.up = false;
        for c in state.connections.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.state.lock().expect("lock").up = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `url`'s `host:port` (port 5432 when absent), and `url` with it replaced
/// by `addr`.
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let scheme_end = url.find("://").expect("a url") + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let upstream = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let proxied = format!(
        "{}{userinfo}{addr}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    );
    (upstream, proxied)
}

#[test]
fn urls_are_rerouted_through_the_proxy() {
    let addr: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
    assert_eq!(
        through("postgres://postgres@127.0.0.1:5432/db_x", addr),
        (
            "127.0.0.1:5432".to_owned(),
            "postgres://postgres@127.0.0.1:7000/db_x".to_owned()
        )
    );
    assert_eq!(
        through("postgresql://u:p@db.internal/x?sslmode=disable", addr),
        (
            "db.internal:5432".to_owned(),
            "postgresql://u:p@127.0.0.1:7000/x?sslmode=disable".to_owned()
        )
    );
}

/// One submission as a client saw it.
struct Call {
    started: Instant,
    ended: Instant,
    code: Code,
    name: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_fails_fast_and_heals_without_a_restart() {
    let Some(config) = db::postgres_config().await else {
        return;
    };
    let outage = Duration::from_secs(env_or("GDPR_INTAKE_OUTAGE_SECS", 3) as u64);
    let clients = env_or("GDPR_INTAKE_OUTAGE_CLIENTS", 4);
    let url = config.database_url.clone().expect("a postgres url");
    // The proxy's address is known only once it listens; the upstream is
    // read from the same url.
    let (upstream, _) = through(&url, "127.0.0.1:1".parse().expect("addr"));
    let proxy = Proxy::start(upstream).await;
    let (_, proxied) = through(&url, proxy.addr);
    let mut store = crate::db::keyed(StoreConfig::postgres(proxied));
    store.acquire_timeout = ACQUIRE_TIMEOUT;
    store.statement_timeout = Duration::from_secs(2);
    store.max_connections = 8;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (app, _) = spawn_with(store, data_dir, |_| {}).await;
    let token = app.token(Role::Controller, "acme");

    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let mut client = app.dsr();
        let (stop, calls, token) = (stop.clone(), calls.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut request = authed(&token, submission());
                request.set_timeout(CALL_DEADLINE);
                let started = Instant::now();
                let (code, name) = match client.submit_data_subject_request(request).await {
                    Ok(r) => (
                        Code::Ok,
                        r.into_inner().data_subject_request.map(|r| r.name),
                    ),
                    Err(status) => (status.code(), None),
                };
                calls.lock().expect("lock").push(Call {
                    started,
                    ended: Instant::now(),
                    code,
                    name,
                });
                if code != Code::Ok {
                    // Pacing, not synchronisation: no spinning on failures.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Readiness as a prober sees it: (when, serving).
    let readiness: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let prober = {
        let (stop, readiness, channel) = (stop.clone(), readiness.clone(), app.channel.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = serving(&channel, READINESS).await;
                readiness.lock().expect("lock").push((Instant::now(), ok));
                // The prober's pace, not synchronisation: it samples readiness.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Load before the cut: acknowledged writes, and readiness SERVING.
    eventually(
        "writes and readiness before the cut",
        Duration::from_secs(20),
        || async {
            let acked = calls
                .lock()
                .expect("lock")
                .iter()
                .filter(|c| c.code == Code::Ok)
                .count();
            let ready = readiness.lock().expect("lock").iter().any(|(_, ok)| *ok);
            acked >= clients && ready
        },
    )
    .await;
    let cut = Instant::now();
    proxy.cut();
    // The outage itself, not synchronisation: the database is away this long.
    tokio::time::sleep(outage).await;
    // And until the service has seen it: a call refused, readiness down.
    eventually(
        "an UNAVAILABLE call and readiness NOT_SERVING during the outage",
        Duration::from_secs(20),
        || async {
            let refused = calls
                .lock()
                .expect("lock")
                .iter()
                .any(|c| c.started > cut && c.code == Code::Unavailable);
            let not_ready = readiness
                .lock()
                .expect("lock")
                .iter()
                .any(|(t, ok)| *t > cut && !*ok);
            refused && not_ready
        },
    )
    .await;
    let restored = Instant::now();
    proxy.restore();
    // Recovered once submissions started after the restore succeeded (as
    // many as there are clients) and readiness is SERVING again.
    eventually(
        "recovery after the database came back",
        Duration::from_secs(20),
        || async {
            let ok_calls = calls
                .lock()
                .expect("lock")
                .iter()
                .filter(|c| c.started > restored && c.code == Code::Ok)
                .count();
            let ready = readiness
                .lock()
                .expect("lock")
                .iter()
                .any(|(t, ok)| *t > restored && *ok);
            ok_calls >= clients && ready
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("client");
    }
    prober.await.expect("prober");

    // Every writer has stopped: take the records out of their locks.
    let calls = std::mem::take(&mut *calls.lock().expect("lock"));
    let readiness = std::mem::take(&mut *readiness.lock().expect("lock"));
    let unexpected: Vec<Code> = calls
        .iter()
        .map(|c| c.code)
        .filter(|c| *c != Code::Ok && *c != Code::Unavailable)
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than OK or UNAVAILABLE: {unexpected:?}"
    );
    let slowest = calls
        .iter()
        .map(|c| c.ended - c.started)
        .max()
        .unwrap_or_default();
    let slowest_failure = calls
        .iter()
        .filter(|c| c.code != Code::Ok)
        .map(|c| c.ended - c.started)
        .max()
        .unwrap_or_default();
    assert!(slowest < CALL_DEADLINE, "a call took {slowest:?}");
    assert!(
        slowest_failure <= ACQUIRE_TIMEOUT + Duration::from_millis(1500),
        "a failure took {slowest_failure:?}: not fast"
    );
    let during: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started > cut && c.ended < restored)
        .collect();
    assert!(
        during.iter().all(|c| c.code == Code::Unavailable),
        "a call succeeded without a database"
    );
    let first_failure = calls
        .iter()
        .filter(|c| c.ended > cut && c.code == Code::Unavailable)
        .map(|c| c.ended - cut)
        .min()
        .expect("calls failed during the outage");
    let not_serving = readiness
        .iter()
        .find(|(t, ok)| *t > cut && !ok)
        .map(|(t, _)| *t - cut)
        .expect("readiness turned NOT_SERVING");
    assert!(
        not_serving < Duration::from_secs(6),
        "readiness noticed after {not_serving:?}"
    );
    let first_success = calls
        .iter()
        .filter(|c| c.started > restored && c.code == Code::Ok)
        .map(|c| c.ended - restored)
        .min()
        .expect("calls succeeded after the outage");
    let serving_again = readiness
        .iter()
        .find(|(t, ok)| *t > restored && *ok)
        .map(|(t, _)| *t - restored)
        .expect("readiness SERVING again");

    // Every acknowledged write is there.
    let acked: BTreeSet<String> = calls.iter().filter_map(|c| c.name.clone()).collect();
    let acked_before = calls
        .iter()
        .filter(|c| c.code == Code::Ok && c.ended < cut)
        .count();
    let acked_after = calls
        .iter()
        .filter(|c| c.code == Code::Ok && c.started > restored)
        .count();
    let mut stored = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .dsr()
            .list_data_subject_requests(authed(
                &token,
                v1::ListDataSubjectRequestsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list after recovery")
            .into_inner();
        stored.extend(page.data_subject_requests.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    let failures = calls.iter().filter(|c| c.code == Code::Unavailable).count();
    eprintln!(
        "outage: {clients} clients, database cut for {outage:?}; first UNAVAILABLE {first_failure:?} \
         after the cut, readiness NOT_SERVING after {not_serving:?}; {failures} calls UNAVAILABLE, \
         slowest failure {slowest_failure:?}, slowest call {slowest:?}; after the restore first OK \
         in {first_success:?}, readiness SERVING in {serving_again:?}; {} acknowledged \
         ({acked_before} before, {acked_after} after), all stored, no restart",
        acked.len(),
    );
    app.stop().await;
}
