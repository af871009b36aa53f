//! The connections the listener holds, and how long it holds them.
//!
//! A connection costs a descriptor and memory whether or not it ever
//! carries a call, so a client could exhaust the process without sending
//! one. Three rules bound that:
//!
//! - **A cap.** At most `max_connections` are open at once. One more is
//!   accepted and closed at once with a reset (the client sees its
//!   connection refused, not a call failed), and counted in
//!   `gdpr.connections.refused`. Connections already open are not touched.
//! - **The handshake.** A client must send the HTTP/2 connection preface
//!   (its first 24 bytes) within `handshake_timeout`, or the connection is
//!   closed (`gdpr.connections.reaped{reason="handshake_timeout"}`). Under
//!   TLS those bytes are the start of the TLS handshake, which tonic bounds
//!   by the same timeout.
//! - **Liveness.** Once HTTP/2 runs, the server pings a connection that has
//!   sent nothing for `keepalive_interval` and closes it when the answer
//!   does not come within `keepalive_timeout` (hyper's keep-alive). A peer
//!   that answers pings is alive and stays, idle or not. So that a
//!   connection that stopped before HTTP/2 ran (a TLS client silent after
//!   its handshake) cannot escape that rule, a connection from which
//!   nothing at all has been read for longer than a live peer ever goes
//!   (`keepalive_interval` + 2 × `keepalive_timeout`) is closed too
//!   (`reason="idle"`).
//!
//! The rules live in [`Guarded`], the connection type the server is given:
//! its reads look at one timer, the handshake deadline and then a watch
//! that ticks every quarter of the idle limit, so a busy connection pays a
//! flag and a check of the timer's state per read. A connection is idle
//! after four ticks in a row with nothing read: between the limit and a
//! quarter more after its last read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use futures::{FutureExt as _, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::telemetry::Metrics;

/// The HTTP/2 client connection preface (RFC 9113 §3.4) is this long.
const PREFACE_LEN: usize = 24;

/// How many connections the listener holds and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is refused.
    pub max_connections: usize,
    /// Longest a new connection may take to send the HTTP/2 preface (and,
    /// under TLS, to finish the TLS handshake).
    pub handshake_timeout: Duration,
    /// How long a connection may send nothing before the server pings it.
    pub keepalive_interval: Duration,
    /// How long the server waits for a ping's answer before closing.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// Longest a live HTTP/2 peer goes without sending a byte: a ping is
    /// sent after `keepalive_interval` of silence and answered within
    /// `keepalive_timeout`; the second timeout is margin.
    pub fn read_idle_limit(&self) -> Duration {
        self.keepalive_interval + self.keepalive_timeout * 2
    }
}

/// The connections accepted from a listener, under [`ConnectionLimits`].
pub struct GuardedIncoming {
    inner: TcpIncoming,
    permits: Arc<Semaphore>,
    limits: ConnectionLimits,
    metrics: Metrics,
    /// Whether the last connection was refused, so that reaching the cap
    /// is logged once, not once per refused connection.
    saturated: bool,
}

impl GuardedIncoming {
    pub fn new(inner: TcpIncoming, limits: ConnectionLimits, metrics: Metrics) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics,
            saturated: false,
        }
    }
}

impl Stream for GuardedIncoming {
    type Item = io::Result<Guarded>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let tcp = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(tcp)) => tcp,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            match Arc::clone(&this.permits).try_acquire_owned() {
                Ok(permit) => {
                    this.saturated = false;
                    return Poll::Ready(Some(Ok(Guarded::new(
                        tcp,
                        permit,
                        &this.limits,
                        this.metrics.clone(),
                    ))));
                }
                Err(_) => {
                    if !this.saturated {
                        tracing::warn!(
                            max_connections = this.limits.max_connections,
                            "connection limit reached; refusing new connections until one closes"
                        );
                        this.saturated = true;
                    }
                    this.metrics.connection_refused();
                    refuse(tcp);
                }
            }
        }
    }
}

/// Closes `tcp` with a reset: the client learns at once, and the socket
/// leaves no TIME_WAIT behind on this side.
fn refuse(tcp: TcpStream) {
    // Without SO_LINGER the close is an orderly FIN instead; still closed.
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

/// One accepted connection under the rules of the module: it holds its
/// place under the cap until dropped, and fails its reads and writes once
/// a deadline passed, which makes the server close it.
pub struct Guarded {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Bytes of the preface still to come; 0 once the handshake is done.
    preface_left: usize,
    /// Whether anything was read since the timer last fired.
    read_since_tick: bool,
    /// Ticks of the idle watch in a row with nothing read.
    quiet_ticks: u32,
    /// A quarter of the read idle limit: how often the idle watch looks.
    tick: Duration,
    handshake_timeout: Duration,
    idle_limit: Duration,
    /// The handshake deadline, then the idle watch's next tick.
    timer: Pin<Box<Sleep>>,
    /// The waker the timer holds: while it is the waker of the task
    /// reading, the timer need only be polled again once it has fired.
    /// (Under TLS the handshake reads in one task and HTTP/2 in another.)
    waker: Option<Waker>,
    /// Set once a deadline passed; every later operation fails too.
    expired: Option<Expiry>,
    metrics: Metrics,
}

/// Quiet ticks that make a connection idle: the read idle limit in
/// quarters, so a connection goes between the limit and a quarter more
/// after its last read.
const QUIET_TICKS: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Handshake,
    Idle,
}

impl Expiry {
    fn reason(self) -> &'static str {
        match self {
            Self::Handshake => "handshake_timeout",
            Self::Idle => "idle",
        }
    }
}

impl Guarded {
    fn new(
        tcp: TcpStream,
        permit: OwnedSemaphorePermit,
        limits: &ConnectionLimits,
        metrics: Metrics,
    ) -> Self {
        metrics.connection_opened();
        let idle_limit = limits.read_idle_limit();
        Self {
            tcp,
            _permit: permit,
            preface_left: PREFACE_LEN,
            read_since_tick: false,
            quiet_ticks: 0,
            tick: idle_limit / QUIET_TICKS,
            handshake_timeout: limits.handshake_timeout,
            idle_limit,
            timer: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            waker: None,
            expired: None,
            metrics,
        }
    }

    /// The error every operation returns once a deadline passed, if one
    /// has. Reads call it: a read is what a connection waits in, and the
    /// timer wakes it there. The timer is polled only when it has fired
    /// (or before it holds a waker), and then moved to the next tick of the
    /// idle watch when the connection is still within its rules: a busy
    /// connection pays one check of the timer's state per read.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(expiry) = self.expired {
            return Err(self.error(expiry));
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) && !self.timer.is_elapsed()
        {
            return Ok(());
        }
        loop {
            // Outside the task's cooperative budget: a timer refused for
            // want of budget would say "pending" without keeping the waker.
            if tokio::task::unconstrained(&mut self.timer)
                .poll_unpin(cx)
                .is_pending()
            {
                self.waker = Some(cx.waker().clone());
                return Ok(());
            }
            let expiry = if self.preface_left > 0 {
                Expiry::Handshake
            } else {
                if std::mem::take(&mut self.read_since_tick) {
                    self.quiet_ticks = 0;
                } else {
                    self.quiet_ticks += 1;
                }
                if self.quiet_ticks < QUIET_TICKS {
                    let next = Instant::now() + self.tick;
                    self.timer.as_mut().reset(next);
                    continue;
                }
                Expiry::Idle
            };
            self.expired = Some(expiry);
            self.metrics.connection_reaped(expiry.reason());
            tracing::debug!(reason = expiry.reason(), "closing connection");
            return Err(self.error(expiry));
        }
    }

    /// The error of a connection whose deadline passed, if it has.
    fn failed(&self) -> io::Result<()> {
        match self.expired {
            Some(expiry) => Err(self.error(expiry)),
            None => Ok(()),
        }
    }

    fn error(&self, expiry: Expiry) -> io::Error {
        let message = match expiry {
            Expiry::Handshake => format!(
                "no HTTP/2 preface within the handshake timeout ({:?})",
                self.handshake_timeout
            ),
            Expiry::Idle => format!("nothing received for {:?}", self.idle_limit),
        };
        io::Error::new(io::ErrorKind::TimedOut, message)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.failed()?;
        // Read first: what already arrived counts, however late the task
        // that reads it runs. The deadlines matter only to a read that
        // has to wait.
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.read_since_tick = true;
                    this.preface_left = this.preface_left.saturating_sub(read);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.check(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.failed()?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.failed()?;
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.failed()?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(200),
            keepalive_interval: Duration::from_millis(600),
            keepalive_timeout: Duration::from_millis(200),
        }
    }

    async fn incoming(limits: ConnectionLimits) -> (GuardedIncoming, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let metrics = crate::telemetry::Telemetry::disabled().metrics();
        (
            GuardedIncoming::new(TcpIncoming::from(listener), limits, metrics),
            addr,
        )
    }

    /// Reads from `conn` until it fails or ends; how it ended.
    async fn drain(conn: &mut Guarded) -> io::Error {
        let mut buf = [0u8; 64];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => return io::Error::from(io::ErrorKind::UnexpectedEof),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    #[tokio::test]
    async fn a_connection_without_the_preface_fails_at_the_handshake_timeout() {
        use futures::StreamExt;
        let (mut incoming, addr) = incoming(limits(4)).await;
        let mut client = TcpStream::connect(addr).await.expect("connects");
        let mut conn = incoming.next().await.expect("one").expect("accepted");
        // Part of the preface is not enough.
        client.write_all(&PREFACE[..10]).await.expect("writes");
        let start = Instant::now();
        let e = drain(&mut conn).await;
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("preface"), "{e}");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        // Every later operation fails the same way.
        assert!(conn.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn a_connection_that_keeps_sending_stays_and_a_silent_one_goes_after_the_idle_limit() {
        use futures::StreamExt;
        let (mut incoming, addr) = incoming(limits(4)).await;
        let mut client = TcpStream::connect(addr).await.expect("connects");
        let mut conn = incoming.next().await.expect("one").expect("accepted");
        client.write_all(PREFACE).await.expect("writes");
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await.expect("reads");
        assert_eq!(n, PREFACE_LEN);
        // A byte every 300 ms, under the one-second limit, for three
        // seconds: past the handshake timeout and past the limit.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"x").await.expect("writes");
            assert_eq!(conn.read(&mut buf).await.expect("still open"), 1);
        }
        let start = Instant::now();
        let e = drain(&mut conn).await;
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("nothing received"), "{e}");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    /// The handshake may be read by one task and the rest by another (TLS
    /// in tonic): the deadline still wakes the task that reads now.
    #[tokio::test]
    async fn the_deadline_wakes_whichever_task_reads() {
        use futures::StreamExt;
        let (mut incoming, addr) = incoming(limits(4)).await;
        let _client = TcpStream::connect(addr).await.expect("connects");
        let conn = incoming.next().await.expect("one").expect("accepted");
        let mut conn = tokio::spawn(async move {
            let mut conn = conn;
            let mut buf = [0u8; 8];
            let waited = tokio::time::timeout(Duration::from_millis(20), conn.read(&mut buf)).await;
            assert!(waited.is_err(), "nothing to read yet");
            conn
        })
        .await
        .expect("first task");
        // A timeout of its own would wake the reading task too; how long
        // it took tells whether the deadline did.
        let start = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(5), drain(&mut conn))
            .await
            .expect("closed");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_secs(2),
            "woken only after {waited:?}: the deadline woke a task no longer reading"
        );
    }

    #[tokio::test]
    async fn over_the_cap_a_connection_is_closed_at_once_and_a_freed_place_is_reused() {
        use futures::StreamExt;
        let (mut incoming, addr) = incoming(limits(2)).await;
        let _a = TcpStream::connect(addr).await.expect("connects");
        let _b = TcpStream::connect(addr).await.expect("connects");
        let first = incoming.next().await.expect("one").expect("accepted");
        let _second = incoming.next().await.expect("two").expect("accepted");

        // The third is refused: the client reads an end or a reset.
        let mut refused = TcpStream::connect(addr).await.expect("connects");
        let mut fourth = TcpStream::connect(addr).await.expect("connects");
        // The accept loop runs while waiting for a connection it may keep:
        // `fourth` is refused too, until a place is freed.
        let accepted = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(accepted.is_err(), "no place was free");
        let mut buf = [0u8; 1];
        for client in [&mut refused, &mut fourth] {
            match client.read(&mut buf).await {
                Ok(0) => {}
                Ok(n) => panic!("read {n} bytes from a refused connection"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            }
        }

        drop(first);
        let _c = TcpStream::connect(addr).await.expect("connects");
        let third = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("a freed place takes the next connection");
        assert!(third.expect("one").is_ok());
    }
}
