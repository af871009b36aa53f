//! Connections opened by a hostile client: ones that never speak, ones that
//! send only the HTTP/2 preface, and more than the server holds. They are
//! closed within the listener's timeouts, or refused at once, while a real
//! client's calls keep succeeding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::SystemClock;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use gdpr_intake::startup::Application;
use gdpr_intake::store::StoreConfig;
use gdpr_intake::telemetry::Telemetry;
use gdpr_intake::transport::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::watchdog::{sample, serve};

/// The client connection preface (RFC 9113 §3.4) and an empty SETTINGS
/// frame: all a preface-only client ever sends.
const PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// An app on SQLite with `connections`, its address and its telemetry (to
/// read its counters).
async fn app_with(connections: ConnectionLimits) -> (TestApp, SocketAddr, Telemetry) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(
        crate::db::keyed(StoreConfig::sqlite(data_dir.path())),
        &data_dir,
    );
    settings.connections = connections;
    let telemetry = Telemetry::disabled();
    let app = Application::build_with_telemetry(settings, Arc::new(SystemClock), telemetry.clone())
        .await
        .expect("application builds");
    let addr = app.local_addr();
    (serve(app, data_dir).await, addr, telemetry)
}

/// Reads `conn` (whatever the server sends) until the server closes it;
/// how long that took from `since`.
fn closed_after(mut conn: TcpStream, since: Instant) -> JoinHandle<Duration> {
    tokio::spawn(async move {
        let mut buf = [0u8; 256];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
}

/// Gets a stored request through `client` every 20 ms until `stop`; the
/// calls answered and the calls failed.
fn keep_calling(
    client: DataSubjectRequestServiceClient<Channel>,
    token: String,
    name: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut answered = 0u64;
        let mut failed = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let got = client
                .clone()
                .get_data_subject_request(authed(
                    &token,
                    v1::GetDataSubjectRequestRequest { name: name.clone() },
                ))
                .await;
            match got {
                Ok(_) => answered += 1,
                Err(status) => failed.push(format!("{status:?}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (answered, failed)
    })
}

async fn submitted(app: &TestApp, token: &str) -> String {
    app.dsr()
        .submit_data_subject_request(authed(token, submission()))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request returned")
        .name
}

#[tokio::test]
async fn silent_and_preface_only_connections_are_closed_within_the_timeouts_while_calls_go_on() {
    let limits = ConnectionLimits {
        max_connections: 1024,
        handshake_timeout: Duration::from_secs(1),
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
    };
    let (app, addr, telemetry) = app_with(limits).await;
    let token = app.token(Role::Controller, "acme");
    let name = submitted(&app, &token).await;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = keep_calling(app.dsr(), token.clone(), name, stop.clone());

    let start = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..300 {
        let conn = TcpStream::connect(addr).await.expect("connects");
        silent.push(closed_after(conn, start));
    }
    let mut preface_only = Vec::new();
    for _ in 0..200 {
        let mut conn = TcpStream::connect(addr).await.expect("connects");
        conn.write_all(PREFACE_AND_SETTINGS)
            .await
            .expect("preface sent");
        preface_only.push(closed_after(conn, start));
    }

    // Silent: closed at the handshake timeout. Preface only: the server
    // pings after a second of silence and closes a second later without
    // an answer. Each gets its timeouts and as much again in slack.
    let opened = start.elapsed();
    for (closes, within) in [
        (silent, limits.handshake_timeout * 2),
        (
            preface_only,
            (limits.keepalive_interval + limits.keepalive_timeout) * 2,
        ),
    ] {
        for close in closes {
            let after = tokio::time::timeout(Duration::from_secs(30), close)
                .await
                .expect("the server closes every such connection")
                .expect("reader runs");
            assert!(
                after <= opened + within,
                "closed after {after:?}, expected within {within:?} of the last opened at {opened:?}"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = calls.await.expect("caller runs");
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    assert!(answered >= 10, "only {answered} calls answered");

    let reaped = sample(
        &telemetry,
        "gdpr_connections_reaped_total",
        &["reason=\"handshake_timeout\""],
    );
    assert_eq!(reaped, Some(300.0));
    // Only the test's own client connection is left.
    let open = || sample(&telemetry, "gdpr_connections_open", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open() != Some(1.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open(), Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_calls_on_open_ones_go_on() {
    let limits = ConnectionLimits {
        max_connections: 20,
        handshake_timeout: Duration::from_secs(2),
        ..ConnectionLimits::default()
    };
    let (app, addr, telemetry) = app_with(limits).await;
    let token = app.token(Role::Controller, "acme");
    let name = submitted(&app, &token).await;

    // The test's client holds one place; 19 silent connections the rest.
    let start = Instant::now();
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(TcpStream::connect(addr).await.expect("connects"));
    }
    // Accepted by the kernel, then reset by the server at once: the reset
    // may come before the connect returns.
    for _ in 0..5 {
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            continue;
        };
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf))
            .await
            .expect("a refused connection is closed at once, not held");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(
        start.elapsed() < limits.handshake_timeout,
        "refusals came after the silent connections' timeout: {:?}",
        start.elapsed()
    );
    // The open connection still serves.
    app.dsr()
        .get_data_subject_request(authed(
            &token,
            v1::GetDataSubjectRequestRequest { name: name.clone() },
        ))
        .await
        .expect("a call on an open connection is answered");
    assert_eq!(
        sample(&telemetry, "gdpr_connections_refused_total", &[]),
        Some(5.0)
    );

    // Once the silent ones are closed, a new client gets in.
    let closes: Vec<_> = held.into_iter().map(|c| closed_after(c, start)).collect();
    for close in closes {
        tokio::time::timeout(Duration::from_secs(30), close)
            .await
            .expect("closed at the handshake timeout")
            .expect("reader runs");
    }
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("a new client connects once places are free");
    DataSubjectRequestServiceClient::new(channel)
        .get_data_subject_request(authed(&token, v1::GetDataSubjectRequestRequest { name }))
        .await
        .expect("and is answered");
    app.stop().await;
}
