//! HTTP load with `wrk` (keep-alive connections): the monitor's ping endpoint, and the anchor
//! users would pick instead of rollcall, etcd lease keep-alives (the Kubernetes node-lease
//! approach), driven through etcd's JSON gateway.

use super::report::HttpLoad;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Connections wrk keeps open (keep-alive), over two threads (the machine's cores).
const CONNECTIONS: u32 = 64;
/// Leases kept alive in etcd: one per node, up to this many (granting is a Raft write each).
const MAX_LEASES: usize = 10_000;

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

/// Starts a single-member etcd on loopback, grants one lease per node (up to
/// [`MAX_LEASES`]), and drives keep-alives round-robin over them with wrk through the JSON
/// gateway (`POST /v3/lease/keepalive`, one keep-alive per request).
pub fn etcd(dir: &Path, nodes: usize, duration: Duration) -> anyhow::Result<HttpLoad> {
    let client = free_port()?;
    let peer = free_port()?;
    let data = dir.join("etcd");
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(&data)
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster=bench=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start etcd (apt-get install etcd-server)")?;
    let etcd = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{client}");
    let agent = crate::client::http_agent(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.get(format!("{base}/health")).call().is_err() {
        if Instant::now() > deadline {
            bail!("etcd did not become healthy within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let leases = nodes.min(MAX_LEASES);
    let mut ids = Vec::with_capacity(leases);
    for _ in 0..leases {
        let mut response = agent.post(format!("{base}/v3/lease/grant")).send(r#"{"TTL":600}"#)?;
        let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
        ids.push(body["ID"].as_str().context("etcd granted no lease id")?.to_string());
    }
    let script = dir.join("etcd-keepalive.lua");
    let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    std::fs::write(
        &script,
        format!(
            "local ids = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  local id = ids[(i % #ids) + 1]\n  \
             return wrk.format(\"POST\", \"/v3/lease/keepalive\", {{[\"Content-Type\"] = \"application/json\"}}, '{{\"ID\":\"' .. id .. '\"}}')\nend\n",
            list.join(",")
        ),
    )?;
    let mut load = run(&format!("{base}/v3/lease/keepalive"), duration, Some(&script))?;
    load.note = format!("{leases} leases, JSON gateway of etcd {}", etcd_version());
    drop(etcd);
    Ok(load)
}

fn etcd_version() -> String {
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
