//! The Redis anchor: `SET hb:<node> 1 PX <ttl>`, what home-made heartbeat tables are built
//! on, measured with Redis's own `redis-benchmark` (pipelined, one key per node) against a
//! `redis-server` on loopback, once without persistence and once with the append-only file
//! flushed every second (what a table that survives a crash needs).

use super::report::RedisLoad;
use super::wrk::{KillOnDrop, free_port};
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Connections `redis-benchmark` keeps open (as wrk's).
const CLIENTS: u32 = 64;
/// Commands each connection sends before reading the replies.
const PIPELINE: u32 = 16;
/// The keys' TTL: a heartbeat table's "down after" (the monitor's default, 10 s, rounded up).
const TTL_MS: u64 = 10_000;
/// Commands in the run that estimates the rate, so the measured run lasts about `duration`
/// (`redis-benchmark` counts commands, not time).
const CALIBRATION: u64 = 200_000;

/// The persistence settings measured, by name.
const MODES: [(&str, &[&str]); 2] = [
    ("appendonly no", &["--appendonly", "no"]),
    ("appendonly yes, appendfsync everysec", &["--appendonly", "yes", "--appendfsync", "everysec"]),
];

/// Measures each of [`MODES`] for about `duration`, with one key per node.
pub fn measure(dir: &Path, nodes: usize, duration: Duration) -> anyhow::Result<Vec<RedisLoad>> {
    let mut loads = Vec::new();
    for (index, (mode, flags)) in MODES.iter().enumerate() {
        let data = dir.join(format!("redis-{index}"));
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let server = start(&data, port, flags)?;
        let pid = server.0.id();
        let calibration = benchmark(port, nodes, CALIBRATION)?;
        let requests = ((calibration * duration.as_secs_f64()) as u64).max(CALIBRATION);
        let cpu_before = super::probe::cpu_seconds(pid);
        let per_second = benchmark(port, nodes, requests)?;
        let cpu = super::probe::cpu_seconds(pid).zip(cpu_before).map(|(after, before)| after - before);
        drop(server);
        loads.push(RedisLoad {
            persistence: mode.to_string(),
            clients: CLIENTS,
            pipeline: PIPELINE,
            keys: nodes,
            requests,
            per_second,
            server_cpu_us_per_request: cpu.map(|cpu| cpu * 1e6 / requests as f64),
            note: format!("redis-benchmark, redis-server {}", version()),
        });
    }
    Ok(loads)
}

/// Starts `redis-server` on `port` of loopback with `flags`, no snapshots, and waits until
/// it answers `PING`.
fn start(data: &Path, port: u16, flags: &[&str]) -> anyhow::Result<KillOnDrop> {
    let log = std::fs::File::create(data.join("redis.log"))?;
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--dir"])
        .arg(data)
        .args(flags)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start redis-server (apt-get install redis-server)")?;
    let server = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pong(port) {
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

fn pong(port: u16) -> bool {
    let answer = || -> std::io::Result<bool> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    answer().unwrap_or(false)
}

/// Runs `redis-benchmark` for `requests` SETs over `keys` keys and returns its requests per
/// second (from its CSV output).
fn benchmark(port: u16, keys: usize, requests: u64) -> anyhow::Result<f64> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-P", &PIPELINE.to_string()])
        .args(["-r", &keys.to_string(), "-n", &requests.to_string(), "--csv"])
        .args(["SET", "hb:__rand_int__", "1", "PX", &TTL_MS.to_string()])
        .output()
        .context("cannot run redis-benchmark (apt-get install redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("redis-benchmark failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    // A header line, then `"SET hb:__rand_int__ 1 PX 10000","123456.79",...`.
    text.lines()
        .filter(|line| line.starts_with("\"SET"))
        .find_map(|line| line.split("\",\"").nth(1)?.trim_matches('"').parse().ok())
        .with_context(|| format!("no SET rate in redis-benchmark's output: {text}"))
}

fn version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.split_whitespace().find_map(|word| word.strip_prefix("v=")).map(str::to_string)
        })
        .unwrap_or_else(|| "(unknown version)".into())
}
