//! The bare echo service: the gRPC ceiling of this machine.
//!
//! It runs on its own thread and tokio runtime, as gdpr-intake runs in its
//! own process, and is built on `startup::grpc_server()` and
//! `startup::grpc_incoming()`, the server and socket settings of the
//! application, so the only difference left is the work gdpr-intake does
//! per call.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::thread::JoinHandle;

use gdpr_intake::proto::gdpr::bench::v1::echo_service_server::{EchoService, EchoServiceServer};
use gdpr_intake::proto::gdpr::bench::v1::{EchoRequest, EchoResponse};
use gdpr_intake::startup::{grpc_incoming, grpc_server};
use gdpr_intake::telemetry::Telemetry;
use gdpr_intake::transport::ConnectionLimits;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }
}

/// A running echo server; stopped when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds a free loopback port and serves on a new thread.
    pub fn start() -> Result<Self, String> {
        let listener = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("echo server: cannot listen on loopback: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("echo server: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        // The runtime is built, run and dropped on its own thread: a tokio
        // runtime must not be dropped from inside another one.
        let thread = std::thread::Builder::new()
            .name("echo-server".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .thread_name("echo-server")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("cannot use its socket: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    // The service's own connection rules, at their defaults.
                    let connections = ConnectionLimits::default();
                    let metrics = Telemetry::disabled().metrics();
                    let served = grpc_server(&connections)
                        .add_service(EchoServiceServer::new(Echo))
                        .serve_with_incoming_shutdown(
                            grpc_incoming(listener, connections, metrics),
                            async {
                                let _ = stopped.await;
                            },
                        )
                        .await;
                    if let Err(e) = served {
                        eprintln!("loadgen: echo server stopped: {e}");
                    }
                });
            })
            .map_err(|e| format!("echo server: cannot start its thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("echo server: {e}")),
            Err(_) => return Err("echo server: its thread ended before serving".to_owned()),
        }
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
