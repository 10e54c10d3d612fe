//! A real HTTP webhook receiver for the alerting tests: an axum server on `127.0.0.1:0`, run by
//! its own single-threaded tokio runtime on a background thread, that records every request
//! (headers, raw body, parsed body) and answers as a test tells it to.
//!
//! Start with [`Receiver::start`] and point a `[[sink]]` at [`Receiver::url`]. Switches make it
//! misbehave: [`Receiver::set_status`] (a receiver answering 503), [`Receiver::set_delay`] (a
//! slow receiver), and [`Receiver::stop`] / [`Receiver::restart`] (nothing listening: the
//! connection is refused; then back on the same port). Read what arrived with
//! [`Receiver::keys`], [`Receiver::count`], [`Receiver::alerts`] and [`Receiver::requests`].
//!
//! A request counts as a *delivery* when the receiver answered it with a 2xx: that is what the
//! monitor counts as delivered. Every request is recorded, answered 2xx or not, so a test can
//! also see the failed attempts.

// Not every test uses every switch and reader.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often [`Receiver::wait_for`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lowercase; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    /// The body exactly as sent, for checking signatures over the raw bytes.
    pub body: Vec<u8>,
    /// The body parsed as JSON (`Value::Null` if it was not JSON).
    pub json: Value,
    /// The status the receiver answered (or was about to answer, if the connection went away
    /// during a delay).
    pub status: u16,
    /// When it arrived, on the test's clock.
    pub at: Instant,
}

impl Request {
    /// The `X-Rollcall-Idempotency-Key` header, if any.
    pub fn key(&self) -> Option<&str> {
        self.headers.get("x-rollcall-idempotency-key").map(String::as_str)
    }

    /// Whether the receiver accepted it (a 2xx answer: delivered).
    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the server tasks and the test share.
struct Shared {
    requests: Mutex<Vec<Request>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// One run of the server: its thread and the way to stop it.
struct Life {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Life {
    fn end(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the receiver thread does not panic");
        }
    }
}

/// A webhook receiver. Stops (closing every connection) when dropped.
pub struct Receiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    life: Option<Life>,
}

impl Receiver {
    /// Starts a receiver answering 200 at once, on a port chosen by the OS.
    pub fn start() -> Receiver {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
        });
        let (life, addr) = serve(shared.clone(), "127.0.0.1:0".parse().expect("valid address"));
        Receiver { shared, addr, life: Some(life) }
    }

    /// The address it listens on (kept across [`Receiver::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to configure a webhook sink with.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// From now on every request is answered with `status` (200 again to recover).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// From now on every request waits `delay` before it is answered (a slow receiver).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stops listening and closes every open connection (also kept-alive ones): from now on a
    /// connection to [`Receiver::addr`] is refused. What was recorded stays.
    pub fn stop(&mut self) {
        if let Some(life) = self.life.take() {
            life.end();
        }
    }

    /// Listens again on the same port after [`Receiver::stop`].
    pub fn restart(&mut self) {
        assert!(self.life.is_none(), "restart() needs a stopped receiver");
        let (life, addr) = serve(self.shared.clone(), self.addr);
        assert_eq!(addr, self.addr);
        self.life = Some(life);
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("not poisoned").clone()
    }

    /// The requests it accepted (answered 2xx), in order of arrival.
    pub fn deliveries(&self) -> Vec<Request> {
        self.requests().into_iter().filter(Request::delivered).collect()
    }

    /// The distinct idempotency keys delivered, in order of first delivery.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for request in self.deliveries() {
            if let Some(key) = request.key()
                && !keys.iter().any(|seen| seen == key)
            {
                keys.push(key.to_string());
            }
        }
        keys
    }

    /// How many times `key` was delivered (2 or more: duplicates, which at least once allows).
    pub fn count(&self, key: &str) -> usize {
        self.deliveries().iter().filter(|request| request.key() == Some(key)).count()
    }

    /// How many times each delivered key was delivered.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in self.deliveries() {
            if let Some(key) = request.key() {
                *counts.entry(key.to_string()).or_default() += 1;
            }
        }
        counts
    }

    /// The alert documents delivered, duplicates included, in order of arrival.
    pub fn alerts(&self) -> Vec<Value> {
        self.deliveries().into_iter().map(|request| request.json).collect()
    }

    /// The first delivery of each key, in order of first delivery (duplicates left out).
    pub fn unique_alerts(&self) -> Vec<Value> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for request in self.deliveries() {
            let Some(key) = request.key() else { continue };
            if !seen.iter().any(|k: &String| k == key) {
                seen.push(key.to_string());
                out.push(request.json);
            }
        }
        out
    }

    /// Waits until at least `n` distinct keys were delivered, for at most `deadline`, and
    /// returns them.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let keys = self.keys();
            if keys.len() >= n {
                return keys;
            }
            if started.elapsed() > deadline {
                panic!(
                    "the receiver got {} distinct keys within {deadline:?}, not {n}: {keys:?}\n\
                     ({} requests in all)",
                    keys.len(),
                    self.requests().len()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `addr` and serves on a new thread with its own runtime; returns once it listens.
/// Ending the [`Life`] drops the runtime, and with it the listener and every connection.
fn serve(shared: Arc<Shared>, addr: SocketAddr) -> (Life, SocketAddr) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("webhook-receiver".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build the receiver's runtime");
            runtime.block_on(async move {
                // tokio sets SO_REUSEADDR on listeners, so the port can be bound again at once
                // after a stop even with connections in TIME_WAIT.
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = bound_tx.send(Err(error.to_string()));
                        return;
                    }
                };
                let local = listener.local_addr().expect("a bound listener has an address");
                let app = axum::Router::new().fallback(record).with_state(shared);
                let server = tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                let _ = bound_tx.send(Ok(local));
                let _ = stop_rx.await;
                server.abort();
            });
            // Dropping the runtime drops every task: the connections it served close now.
            drop(runtime);
        })
        .expect("spawn the receiver thread");
    let addr = match bound_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(error)) => panic!("the receiver cannot bind {addr}: {error}"),
        Err(_) => panic!("the receiver thread ended before binding {addr}"),
    };
    (Life { stop: Some(stop_tx), thread: Some(thread) }, addr)
}

/// The one handler: records the request, waits the configured delay, answers the configured
/// status.
async fn record(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let status = shared.status.load(Ordering::SeqCst);
    let delay = Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
    let request = Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect(),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        status,
        at: Instant::now(),
    };
    shared.requests.lock().expect("not poisoned").push(request);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    axum::http::StatusCode::from_u16(status).expect("tests set valid statuses")
}
