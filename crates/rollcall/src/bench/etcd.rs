//! The etcd anchor: lease keep-alives, the Kubernetes node-lease approach users would pick
//! instead of rollcall, measured two ways against one single-member etcd on loopback.
//!
//! - Through etcd's JSON gateway with wrk (`POST /v3/lease/keepalive`, one keep-alive per
//!   HTTP request): what a script or a curl loop gets.
//! - Over gRPC `LeaseKeepAlive` streams with the `etcd-client` crate, several streams and
//!   many requests in flight on each: etcd at its strongest, the way clients that keep many
//!   leases alive drive it. This is the figure the heartbeat rate is compared with.

use super::report::{GrpcKeepAlives, GrpcRun, HttpLoad};
use super::wrk::{self, KillOnDrop, free_port};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Leases granted: one per node, up to this many (granting is a Raft write each).
const MAX_LEASES: usize = 10_000;
/// The leases' TTL: long enough that none expires during the run.
const LEASE_TTL_S: i64 = 600;
/// Grants in flight at once (each is a Raft write; etcd batches concurrent ones).
const GRANTS_IN_FLIGHT: usize = 64;
/// Stream counts tried over gRPC; the best is the anchor.
const STREAMS: [usize; 3] = [1, 4, 16];
/// At most this many HTTP/2 connections carry the streams (round-robin), so that several
/// streams do not all queue behind one connection's reader on either side.
const MAX_CONNECTIONS: usize = 4;
/// Keep-alives sent and not yet answered, per stream.
const WINDOW: usize = 64;
/// Runs before counting starts (connections and streams open, the window fills).
const WARMUP: Duration = Duration::from_millis(500);
/// Longest wait for the leases to be granted, or for the streams to open.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Worker threads of the load generator's runtime (the machine's two cores, shared with etcd).
const WORKERS: usize = 2;

/// A single-member etcd on loopback with leases granted, killed on drop.
pub struct Etcd {
    process: KillOnDrop,
    client_port: u16,
    leases: Vec<i64>,
}

impl Etcd {
    /// Starts etcd with its data in `dir`, waits until it answers, and grants one lease per
    /// node (up to [`MAX_LEASES`]).
    pub fn start(dir: &Path, nodes: usize) -> anyhow::Result<Etcd> {
        let client_port = free_port()?;
        let peer = free_port()?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=bench=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start etcd (apt-get install etcd-server)")?;
        let process = KillOnDrop(child);
        let base = format!("http://127.0.0.1:{client_port}");
        let agent = crate::client::http_agent(Some(Duration::from_secs(10)));
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.get(format!("{base}/health")).call().is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not become healthy within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let count = nodes.min(MAX_LEASES);
        // The timer is made inside the runtime, which it needs.
        let granted =
            runtime()?.block_on(async { tokio::time::timeout(SETUP_TIMEOUT, grant(&base, count)).await });
        let leases = granted
            .map_err(|_| anyhow::anyhow!("etcd did not grant {count} leases within {SETUP_TIMEOUT:?}"))??;
        Ok(Etcd { process, client_port, leases })
    }

    /// Keep-alives through the JSON gateway with wrk, round-robin over the leases.
    pub fn gateway(&self, dir: &Path, duration: Duration) -> anyhow::Result<HttpLoad> {
        let script = dir.join("etcd-keepalive.lua");
        let list: Vec<String> = self.leases.iter().map(|id| format!("\"{id}\"")).collect();
        std::fs::write(
            &script,
            format!(
                "local ids = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  local id = ids[(i % #ids) + 1]\n  \
                 return wrk.format(\"POST\", \"/v3/lease/keepalive\", {{[\"Content-Type\"] = \"application/json\"}}, '{{\"ID\":\"' .. id .. '\"}}')\nend\n",
                list.join(",")
            ),
        )?;
        let url = format!("http://127.0.0.1:{}/v3/lease/keepalive", self.client_port);
        let pid = self.process.0.id();
        let mut load = wrk::measured(pid, duration, || wrk::run(&url, duration, Some(&script)))?;
        load.note = format!("{} leases, JSON gateway of etcd {}", self.leases.len(), version());
        Ok(load)
    }

    /// Keep-alives over gRPC streams, pipelined, for `duration` with each stream count of
    /// [`STREAMS`].
    pub fn grpc(&self, duration: Duration) -> anyhow::Result<GrpcKeepAlives> {
        let endpoint = format!("http://127.0.0.1:{}", self.client_port);
        let mut runs = Vec::new();
        for streams in STREAMS {
            let runtime = runtime()?;
            let cpu_before = super::probe::cpu_seconds(self.process.0.id());
            // Bounded: the run itself ends after `duration`; opening the streams may hang.
            let limit = SETUP_TIMEOUT + WARMUP + duration;
            let (answered, seconds) = runtime
                .block_on(async {
                    tokio::time::timeout(limit, keep_alive(&endpoint, &self.leases, streams, duration)).await
                })
                .map_err(|_| {
                    anyhow::anyhow!("etcd did not open {streams} keep-alive streams within {SETUP_TIMEOUT:?}")
                })??;
            let cpu = super::probe::cpu_seconds(self.process.0.id()).zip(cpu_before).map(|(a, b)| a - b);
            // Tasks still sending are dropped with the runtime, without waiting for them.
            runtime.shutdown_background();
            runs.push(GrpcRun {
                streams,
                connections: streams.min(MAX_CONNECTIONS),
                window: WINDOW,
                keep_alives: answered,
                per_second: answered as f64 / seconds,
                server_cpu_us_per_request: cpu
                    .filter(|_| answered > 0)
                    .map(|cpu| cpu * 1e6 / answered as f64),
            });
        }
        let best = runs.iter().map(|run| run.per_second).fold(0.0, f64::max);
        Ok(GrpcKeepAlives {
            leases: self.leases.len(),
            per_second: best,
            runs,
            note: format!("etcd {}, etcd-client over gRPC", version()),
        })
    }
}

/// The load generator's own runtime, apart from everything else in the benchmark.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .context("cannot start the etcd load generator's runtime")
}

/// Grants `count` leases, [`GRANTS_IN_FLIGHT`] at a time.
async fn grant(endpoint: &str, count: usize) -> anyhow::Result<Vec<i64>> {
    let client = etcd_client::Client::connect([endpoint], None).await.context("cannot connect to etcd")?;
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..GRANTS_IN_FLIGHT.min(count.max(1)) {
        let mut leases = client.lease_client();
        let share = (part..count).step_by(GRANTS_IN_FLIGHT).count();
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(share);
            for _ in 0..share {
                ids.push(leases.grant(LEASE_TTL_S, None).await?.id());
            }
            Ok::<_, etcd_client::Error>(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        ids.extend(joined.context("a lease grant task panicked")?.context("etcd refused a lease grant")?);
    }
    Ok(ids)
}

/// Opens `streams` keep-alive streams (each on its own lease: `etcd-client` binds a stream to
/// one lease) and keeps [`WINDOW`] requests in flight on each; returns the keep-alives etcd
/// answered for a live lease (TTL > 0) during `duration` after [`WARMUP`], and the seconds
/// counted.
async fn keep_alive(
    endpoint: &str,
    leases: &[i64],
    streams: usize,
    duration: Duration,
) -> anyhow::Result<(u64, f64)> {
    let mut clients = Vec::new();
    for _ in 0..streams.min(MAX_CONNECTIONS) {
        clients.push(etcd_client::Client::connect([endpoint], None).await.context("cannot connect to etcd")?);
    }
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    for stream in 0..streams {
        let id = leases[stream % leases.len()];
        let (mut keeper, mut responses) = clients[stream % clients.len()]
            .lease_client()
            .keep_alive(id)
            .await
            .with_context(|| format!("cannot open a keep-alive stream for lease {id}"))?;
        let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
        let permits = window.clone();
        // Both tasks end when the runtime is dropped, or at the first error.
        tokio::spawn(async move {
            while let Ok(permit) = permits.acquire().await {
                permit.forget();
                if keeper.keep_alive().await.is_err() {
                    break;
                }
            }
        });
        let (answered, refused) = (answered.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                let counter = if response.ttl() > 0 { &answered } else { &refused };
                counter.fetch_add(1, Ordering::Relaxed);
                window.add_permits(1);
            }
        });
    }
    tokio::time::sleep(WARMUP).await;
    let (before, started) = (answered.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(duration).await;
    let (after, seconds) = (answered.load(Ordering::Relaxed), started.elapsed().as_secs_f64());
    if refused.load(Ordering::Relaxed) > 0 {
        bail!("etcd answered {} keep-alives for a lease it no longer has", refused.load(Ordering::Relaxed));
    }
    if after == before {
        bail!("etcd answered no keep-alive over {streams} gRPC streams");
    }
    Ok((after - before, seconds))
}

fn version() -> String {
    Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.lines().next().and_then(|line| line.strip_prefix("etcd Version: ")).map(str::to_string)
        })
        .unwrap_or_else(|| "(unknown version)".into())
}
