//! The HTTP server under both APIs (the monitor's and a peer's): hyper's HTTP/1 connections
//! under a cap on how many are open, with timeouts that close idle and slow clients, so that
//! no client can take the file descriptors that alert delivery and the store need.
//!
//! Not here: routes and handlers (axum routers in `monitor/http` and `peer/http.rs`), TLS,
//! HTTP/2. Start reading at [`serve`]; [`raise_fd_limit`] and [`ConnectionLimits::fit`] are
//! what a command calls before it.
//!
//! At the cap a new connection is accepted and closed at once (with a `503` written if the
//! socket takes it), not left in the kernel's accept queue. Once idle connections time out,
//! the next client to connect is served at once; had the server stopped accepting instead,
//! the queue would still hold the attacker's surplus connections, which would be accepted
//! first and take the freed places for another round of timeouts, and a full queue makes the
//! kernel drop new clients' SYNs, which they retry only after 1 s, 3 s, 7 s.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service as _;

/// Open connections when `max_connections` is not set (and the descriptor limit allows).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Descriptors kept out of the connection cap's reach: the store's files, the UDP socket,
/// alert deliveries (a socket each, or an exec sink's pipes), the runtime's own.
pub const RESERVED_FDS: u64 = 256;
/// Most bytes hyper buffers per connection for a request's head (and per body read, and
/// queued for writing): a head larger than this is refused with 431.
const MAX_BUF: usize = 16 * 1024;
/// How long open requests may take to finish once the server stops; then they are dropped.
const DRAIN: Duration = Duration::from_secs(5);
/// The pause after an accept that failed for lack of resources, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// What a connection over the cap gets before it is closed (the APIs' JSON error).
const REFUSAL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "connection: close\r\n",
    "content-length: 84\r\n\r\n",
    r#"{"code":"too_many_connections","message":"the server has too many open connections"}"#,
);

/// The limits as configured; `max_connections: None` means the default that fits the
/// process's descriptor limit (see [`ConnectionLimits::fit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: Option<usize>,
    /// A request's head must be complete this long after its first byte arrives. An idle
    /// keep-alive connection (no byte of a next request yet) is the idle timeout's to end.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The limits a server runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// Checks the timeouts (each between 1 s and 1 h) and a configured cap (at least 1);
    /// `names` are the setting names for the message: cap, header timeout, idle timeout.
    pub fn validate(&self, names: [&str; 3]) -> Result<(), String> {
        if self.max_connections == Some(0) {
            return Err(format!("{} must be at least 1", names[0]));
        }
        let range = Duration::from_secs(1)..=Duration::from_secs(3600);
        for (name, span) in [(names[1], self.header_timeout), (names[2], self.idle_timeout)] {
            if !range.contains(&span) {
                return Err(format!("{name} must be between 1s and 1h"));
            }
        }
        Ok(())
    }

    /// The limits under a descriptor limit of `fd_limit`: a configured cap must leave
    /// [`RESERVED_FDS`] descriptors free (else one sentence naming `setting`); the default
    /// cap shrinks to fit.
    pub fn fit(&self, fd_limit: u64, setting: &str) -> Result<ServerLimits, String> {
        let room = fd_limit.saturating_sub(RESERVED_FDS);
        let max_connections = match self.max_connections {
            Some(cap) if cap as u64 > room => {
                return Err(format!(
                    "{setting} = {cap} leaves fewer than {RESERVED_FDS} of the {fd_limit} file descriptors this process may open (RLIMIT_NOFILE) for the store and alert delivery: lower it, or raise the limit (ulimit -n, LimitNOFILE=)"
                ));
            }
            Some(cap) => cap,
            None if room < 16 => {
                return Err(format!(
                    "this process may open only {fd_limit} file descriptors (RLIMIT_NOFILE), too few for {RESERVED_FDS} kept for the store and alert delivery and 16 HTTP connections: raise the limit (ulimit -n, LimitNOFILE=)"
                ));
            }
            None => DEFAULT_MAX_CONNECTIONS.min(usize::try_from(room).unwrap_or(usize::MAX)),
        };
        Ok(ServerLimits {
            max_connections,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
        })
    }
}

/// Raises this process's soft limit on open files to its hard limit (a failure is logged:
/// the limit in force is then checked as it is). The ready line logs the limit in force.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(%error, soft, hard, "cannot raise RLIMIT_NOFILE to its hard limit");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read RLIMIT_NOFILE"),
    }
}

/// The soft limit on open files in force now (1024, Linux's usual default, if it cannot be
/// read).
pub fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Counts kept by a server for `/metrics`; cheap to clone (the clones share them).
#[derive(Clone, Debug, Default)]
pub struct ConnectionCounters(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    max: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// A server's connections at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The cap.
    pub max: u64,
    pub open: u64,
    /// Served (under the cap), since start.
    pub accepted: u64,
    /// Closed at once because the cap was reached.
    pub refused: u64,
    /// Closed because a request's head did not arrive in time (idle keep-alive included).
    pub header_timeouts: u64,
    /// Closed because no byte moved for the idle timeout.
    pub idle_timeouts: u64,
}

impl ConnectionCounters {
    pub fn snapshot(&self) -> ConnectionStats {
        let count = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let counts = &self.0;
        ConnectionStats {
            max: count(&counts.max),
            open: count(&counts.open),
            accepted: count(&counts.accepted),
            refused: count(&counts.refused),
            header_timeouts: count(&counts.header_timeouts),
            idle_timeouts: count(&counts.idle_timeouts),
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true: then stops accepting, lets open
/// requests finish (at most `DRAIN`), and drops what is left. Handlers can extract
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    counters: ConnectionCounters,
    mut stop: watch::Receiver<bool>,
) {
    counters.0.max.store(limits.max_connections as u64, Ordering::Relaxed);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    // Each connection watches the same signal, to close gracefully.
    let stopping = stop.clone();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(error).await;
                        continue;
                    }
                };
                let Ok(place) = places.clone().try_acquire_owned() else {
                    counters.0.refused.fetch_add(1, Ordering::Relaxed);
                    // Best effort: a socket whose buffer is full is simply closed.
                    let _ = stream.try_write(REFUSAL.as_bytes());
                    continue;
                };
                let slot = Slot::new(place, &counters);
                let served = Served { router: router.clone(), limits, stop: stopping.clone() };
                connections.spawn(served.connection(stream, remote, slot));
            }
        }
    }
    // New clients are refused by the kernel from here on, not left waiting.
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::debug!(left = connections.len(), "HTTP connections still open after the drain: dropped");
        connections.shutdown().await;
    }
}

/// Completes when `stop` turns true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Connection errors are the client's (it went away before it was accepted); the others are
/// a lack of resources (descriptors, memory), which a pause may see through.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused => {
            tracing::debug!(%error, "HTTP accept failed");
        }
        _ => {
            tracing::warn!(%error, "HTTP accept failed; pausing before the next");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }
}

/// A place under the cap, held for as long as its connection lives.
struct Slot {
    _place: tokio::sync::OwnedSemaphorePermit,
    counters: ConnectionCounters,
}

impl Slot {
    fn new(place: tokio::sync::OwnedSemaphorePermit, counters: &ConnectionCounters) -> Slot {
        counters.0.open.fetch_add(1, Ordering::Relaxed);
        counters.0.accepted.fetch_add(1, Ordering::Relaxed);
        Slot { _place: place, counters: counters.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What each connection needs from its server.
struct Served {
    router: axum::Router,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
}

impl Served {
    async fn connection(mut self, stream: TcpStream, remote: SocketAddr, slot: Slot) {
        let counts = &slot.counters.0;
        let activity = Activity::new();
        let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
        let router = self.router;
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What axum's `into_make_service_with_connect_info` would insert.
            request.extensions_mut().insert(ConnectInfo(remote));
            let mut router = router.clone();
            let activity = requests.clone();
            activity.dispatched();
            async move {
                let response = router.call(request).await;
                activity.answered();
                response
            }
        });
        let mut builder = http1::Builder::new();
        // The header timeout is enforced below, from the head's first byte: hyper's own would
        // arm a timer for every request (7 % of a ping's cost) and would also end idle
        // keep-alive connections at the header timeout, racing clients that reuse them.
        builder.header_read_timeout(None).max_buf_size(MAX_BUF);
        let connection = builder.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let (idle, header) = (self.limits.idle_timeout, self.limits.header_timeout);
        // One look at the connection's clocks every LOOK_EVERY, not a timer per request.
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        let ended = loop {
            tokio::select! {
                ended = connection.as_mut() => break ended,
                () = stopped(&mut self.stop), if !stopping => {
                    // Idle connections close now, busy ones after their response.
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = look.tick() => {
                    let now = Instant::now();
                    if activity.head_since().is_some_and(|since| since + header <= now) {
                        counts.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%remote, "no complete request head in time: connection closed");
                        return;
                    }
                    if activity.last() + idle <= now {
                        counts.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%remote, "HTTP connection idle too long: closed");
                        return;
                    }
                }
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%remote, %error, "HTTP connection failed");
        }
    }
}

/// How often a connection's task looks at its idle and header clocks.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// When a connection last moved a byte, and when the head of a request not yet handed to
/// the service started arriving; shared by its IO, its service and its task.
#[derive(Clone)]
struct Activity {
    since: Instant,
    /// Nanoseconds from `since` to the last read or write that moved bytes.
    last_ns: Arc<AtomicU64>,
    /// Nanoseconds from `since` to the first byte read while no request was being handled,
    /// plus one (0: no head is arriving).
    head_ns: Arc<AtomicU64>,
    /// Whether a request is with the service (its body's bytes are not a head).
    in_request: Arc<std::sync::atomic::AtomicBool>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last_ns: Arc::new(AtomicU64::new(0)),
            head_ns: Arc::new(AtomicU64::new(0)),
            in_request: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ns.store(self.elapsed_ns(), Ordering::Relaxed);
    }

    /// Bytes were read: between requests, they are the start of the next head.
    fn read(&self) {
        let now = self.elapsed_ns();
        self.last_ns.store(now, Ordering::Relaxed);
        if !self.in_request.load(Ordering::Relaxed) && self.head_ns.load(Ordering::Relaxed) == 0 {
            self.head_ns.store(now.saturating_add(1), Ordering::Relaxed);
        }
    }

    /// A complete head was handed to the service.
    fn dispatched(&self) {
        self.in_request.store(true, Ordering::Relaxed);
        self.head_ns.store(0, Ordering::Relaxed);
    }

    /// The service answered (a streamed body may still be going out).
    fn answered(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }

    fn head_since(&self) -> Option<Instant> {
        match self.head_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.since + Duration::from_nanos(ns - 1)),
        }
    }
}

/// A stream that notes in its [`Activity`] every read and write that moves bytes.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
