//! HTTP load with `wrk` (keep-alive connections), and the ceilings the monitor's pings are
//! compared with: a minimal hyper server, and rollcall's own HTTP server with an empty
//! handler, both answering `200 OK` inside this process under the same wrk settings.

use super::report::HttpLoad;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// Connections wrk keeps open (keep-alive), over two threads (the machine's cores).
const CONNECTIONS: u32 = 64;
/// Worker threads of the ceilings' runtime: the monitor's (`monitor::main`).
const SERVER_WORKERS: usize = 2;

/// Runs wrk against `url` for `duration`, optionally with a Lua script.
pub fn run(url: &str, duration: Duration, script: Option<&Path>) -> anyhow::Result<HttpLoad> {
    let mut command = Command::new("wrk");
    command
        .arg("-t2")
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk (apt-get install wrk)")?;
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|line| line.trim_start().starts_with(prefix))?;
        line.trim_start().strip_prefix(prefix)?.split_whitespace().next()?.parse().ok()
    };
    let p99 = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("99%"))
        .and_then(|value| parse_wrk_duration_ms(value.trim()));
    Ok(HttpLoad {
        tool: "wrk".into(),
        connections: CONNECTIONS,
        requests_per_second: number("Requests/sec:").context("no Requests/sec in wrk's output")?,
        non_2xx: number("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64,
        latency_p99_ms: p99,
        server_cpu_us_per_request: None,
        note: String::new(),
    })
}

/// Runs `load` (wrk for `duration`) and fills in the CPU the server process `pid` spent per
/// request over it (user + system, from /proc).
pub fn measured(
    pid: u32,
    duration: Duration,
    load: impl FnOnce() -> anyhow::Result<HttpLoad>,
) -> anyhow::Result<HttpLoad> {
    let cpu_before = super::probe::cpu_seconds(pid);
    let mut load = load()?;
    let cpu = super::probe::cpu_seconds(pid).zip(cpu_before).map(|(after, before)| after - before);
    // wrk reports the rate over its whole run, so the requests are rate times duration.
    let requests = load.requests_per_second * duration.as_secs().max(1) as f64;
    load.server_cpu_us_per_request = cpu.filter(|_| requests > 0.0).map(|cpu| cpu * 1e6 / requests);
    Ok(load)
}

/// A server the monitor's pings are compared with.
#[derive(Clone, Copy, Debug)]
pub enum Ceiling {
    /// hyper's HTTP/1 connection with a service that answers `200 OK`, empty body: what
    /// hyper alone gets out of this machine under this load.
    Hyper,
    /// rollcall's own HTTP server (`http_server::serve`: the connection cap, the timeouts)
    /// with an axum route that answers `200 OK` and does nothing: what the ping path costs
    /// beyond the HTTP stack is the difference between this and the pings.
    EmptyHandler,
}

/// Serves `path` with `ceiling` in this process (a runtime with the monitor's worker count)
/// and measures it with the same wrk settings as the pings.
pub fn ceiling(ceiling: Ceiling, path: &str, duration: Duration) -> anyhow::Result<HttpLoad> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_WORKERS)
        .enable_all()
        .build()
        .context("cannot start the HTTP ceiling's runtime")?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    match ceiling {
        Ceiling::Hyper => runtime.spawn(bare_hyper(listener)),
        Ceiling::EmptyHandler => {
            let router = axum::Router::new().route(path, axum::routing::get(|| async {}));
            let limits = crate::http_server::ServerLimits {
                max_connections: crate::http_server::DEFAULT_MAX_CONNECTIONS,
                header_timeout: crate::http_server::DEFAULT_HEADER_TIMEOUT,
                idle_timeout: crate::http_server::DEFAULT_IDLE_TIMEOUT,
            };
            let counters = crate::http_server::ConnectionCounters::default();
            runtime.spawn(crate::http_server::serve(listener, router, limits, counters, stopped))
        }
    };
    // The path as the pings' (the route's parameter filled in), so routing is not free.
    let url = format!("http://{addr}{}", path.replace("{token}", "ceiling"));
    let load = measured(std::process::id(), duration, || run(&url, duration, None));
    let _ = stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut load = load?;
    load.note = match ceiling {
        Ceiling::Hyper => "minimal hyper server, 200 OK, empty body".into(),
        Ceiling::EmptyHandler => "rollcall's HTTP server, empty handler".into(),
    };
    Ok(load)
}

/// Accepts connections until the runtime is dropped; each answers every request `200 OK`.
async fn bare_hyper(listener: tokio::net::TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn parse_wrk_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (and reaped) when this is dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
