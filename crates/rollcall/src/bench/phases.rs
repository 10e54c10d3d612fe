//! The benchmark's phases, run in order against one generator; see `bench.rs`.

use super::BenchArgs;
use super::load::{Fleet, Pace, RawReceiver, Sent, node_id};
use super::probe::{self, Api, EventStream, MonitorProcess, WebhookReceiver};
use super::report::*;
use super::wrk::Ceiling;
use anyhow::Context;
use rollcall_core::KeyRing;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The ping token of the benchmark's check (fixed: the monitor is private to the run).
const PING_TOKEN: &str = "benchbenchbenchbenchbench01";
/// Most rounds of one interval each the registration phase waits for every node.
const REGISTER_ROUNDS: u32 = 120;

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let temp = tempfile::Builder::new().prefix("rollcall-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no OS randomness: {error}"))?;
    let key_line = rollcall_core::Key::generate_line(1, &secret);
    std::fs::write(dir.join("bench.key"), format!("{key_line}\n"))?;
    let ring = KeyRing::parse(&key_line).map_err(|error| anyhow::anyhow!("{error}"))?;
    let webhook = WebhookReceiver::start()?;
    let config = dir.join("monitor.toml");
    std::fs::write(&config, monitor_config(args, &dir, webhook.addr))?;

    let progress = Progress::start(true);
    let stopped_count = args.stop.unwrap_or((args.nodes / 100).clamp(1, 1000)).min(args.nodes);
    let generation = probe::wall_ms() as u64;
    let mut fleet = Fleet::new(ring, args.nodes, args.senders, args.interval, generation);
    let mut report = Report {
        machine: machine(),
        config: Config {
            nodes: args.nodes,
            interval_ms: args.interval.as_millis() as u64,
            senders: args.senders,
            detector: format!("{:?}", args.detector).to_lowercase(),
            saturate_s: args.saturate.as_secs_f64(),
            rounds: args.rounds,
            steady_s: args.steady.as_secs_f64(),
            stopped: stopped_count,
            datagram_bytes: rollcall_core::wire::encoded_len(node_id(0).len(), 0),
            receive_threads: args.receive_threads,
            presign: args.presign,
            monitor_cpus: args.monitor_cpus.clone(),
        },
        ..Report::default()
    };

    progress.phase("baseline: raw receiver");
    report.baseline = raw_saturated(args, &mut fleet, &progress)?;

    progress.phase("starting the monitor");
    let monitor = MonitorProcess::start(&config, &dir.join("monitor-1.log"), args.monitor_cpus.as_deref())?;
    let api = Api::new(monitor.http);
    let pid = monitor.pid();
    let (rss_empty, _) = probe::rss_bytes(pid).unwrap_or_default();
    let mut events = EventStream::follow(monitor.http)?;

    // Agents started together: each sends its first heartbeat at once, before the monitor
    // has read any of them; what the kernel's buffer cannot hold is dropped.
    let burst_agents = args.burst.min(args.nodes);
    if burst_agents > 0 {
        progress.phase("burst: agents started together");
        fleet.activate(burst_agents);
        let drops_before = probe::udp_drops_by_port(monitor.udp.port());
        let sent = fleet.run(monitor.udp, Pace::Once, Duration::from_secs(30), &progress.count);
        let registered = settle(|| api.metric("rollcall_nodes{state=\"up\"}").ok())? as u64;
        report.burst = Some(Burst {
            agents: burst_agents,
            sent: sent.datagrams,
            send_seconds: sent.elapsed.as_secs_f64(),
            kernel_drops: delta(drops_before, probe::udp_drops_by_port(monitor.udp.port())),
            registered,
            receive_buffer_bytes: api.metric("rollcall_udp_receive_buffer_bytes").ok().map(|b| b as u64),
        });
    }

    progress.phase("register");
    let started = Instant::now();
    let mut rounds = 0;
    // Until every node is tracked and up (a registration burst the monitor cannot absorb
    // leaves some down until their next heartbeats), bounded in rounds and time.
    // New nodes join at `--register-rate` per second (all at once when 0), so the steady
    // phase starts from a fleet that is up rather than from the wreck of a registration
    // storm; the storm itself is measured by running with `--register-rate 0`.
    let per_round = if args.register_rate == 0 {
        args.nodes
    } else {
        ((args.register_rate as f64 * args.interval.as_secs_f64()) as usize).max(1)
    };
    while rounds < REGISTER_ROUNDS && started.elapsed() < args.register_timeout {
        fleet.activate(per_round.saturating_mul(rounds as usize + 1).max(burst_agents));
        fleet.run(monitor.udp, Pace::Interval(args.interval), args.interval, &progress.count);
        rounds += 1;
        if api.metric("rollcall_nodes{state=\"up\"}")? as usize >= args.nodes {
            break;
        }
    }
    report.steady.register_seconds = started.elapsed().as_secs_f64();
    report.steady.up_after_register = api.metric("rollcall_nodes{state=\"up\"}")? as u64;

    progress.phase("steady");
    let accepted_before = accepted(&api)?;
    let cpu_before = probe::cpu_seconds(pid).unwrap_or(0.0);
    let drops_before = probe::udp_drops_by_port(monitor.udp.port());
    fleet.run(monitor.udp, Pace::Interval(args.interval), args.steady, &progress.count);
    let heartbeats = accepted(&api)? - accepted_before;
    let cpu = probe::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let (rss, peak) = probe::rss_bytes(pid).unwrap_or_default();
    report.steady = Steady {
        heartbeats,
        per_second: heartbeats as f64 / args.steady.as_secs_f64(),
        cpu_seconds: cpu,
        cpu_seconds_per_million: per_million(cpu, heartbeats),
        kernel_drops: delta(drops_before, probe::udp_drops_by_port(monitor.udp.port())),
        rss_empty_bytes: rss_empty,
        rss_bytes: rss,
        peak_rss_bytes: peak,
        rss_per_node_bytes: rss.saturating_sub(rss_empty) as f64 / args.nodes as f64,
        register_seconds: report.steady.register_seconds,
        up_after_register: report.steady.up_after_register,
    };

    progress.phase("detection: stopped nodes");
    let stopped: BTreeSet<String> = fleet.stop(stopped_count).into_iter().collect();
    let stopped_at_ms = probe::wall_ms();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Everyone else keeps beating, without a gap, while the stopped nodes are judged.
        let (udp, pace, progress_count) = (monitor.udp, Pace::Interval(args.interval), &*progress.count);
        let limit = args.detection_timeout + Duration::from_secs(15);
        let fleet = &mut fleet;
        let done = &done;
        scope.spawn(move || fleet.run_until(&[udp], pace, limit, progress_count, done));
        let deadline = Instant::now() + args.detection_timeout;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if events.count(|t| t.to == "down" && stopped.contains(&t.node)) >= stopped.len() {
                break;
            }
        }
        // Alerts are sent after the down is committed; give delivery a moment, bounded.
        let alert_deadline = Instant::now() + Duration::from_secs(10);
        let downs = events.count(|t| t.to == "down" && stopped.contains(&t.node));
        while webhook.len() < downs && Instant::now() < alert_deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, Ordering::Relaxed);
    });
    report.detection = detection(&events, &stopped, stopped_at_ms, args.interval);
    let alerts = webhook.snapshot();
    report.alerts = Alerts {
        received: alerts.len(),
        latency_ms: Percentiles::of(
            alerts
                .iter()
                .filter(|alert| alert.kind == "firing")
                .filter_map(|alert| Some((alert.received_ms - alert.at_ms?) as f64))
                .collect(),
        ),
    };

    progress.phase("throughput: saturated monitor");
    report.throughput = monitor_saturated(args, &mut fleet, &progress, &api, &monitor)?;
    report.ratio = report.throughput.per_second / report.baseline.per_second.max(1.0);
    report.cpu_rounds.extend(CpuRound::of(&report.baseline, &report.throughput));
    report.cpu_ratio = report.cpu_rounds.first().map(|round| round.ratio);
    for round in 2..=args.rounds {
        progress.phase(&format!("round {round} of {}: raw receiver, then the monitor", args.rounds));
        let raw = raw_saturated(args, &mut fleet, &progress)?;
        revive(args, &mut fleet, &progress, &api, monitor.udp, args.nodes - stopped_count)?;
        let saturated = monitor_saturated(args, &mut fleet, &progress, &api, &monitor)?;
        report.cpu_rounds.extend(CpuRound::of(&raw, &saturated));
    }
    report.cpu_ratio_median = median(report.cpu_rounds.iter().map(|round| round.ratio).collect());

    if let Some(duration) = args.wrk {
        progress.phase("HTTP pings (wrk)");
        let path = format!("/ping/{PING_TOKEN}");
        let url = format!("http://{}{path}", monitor.http);
        let mut pings = super::wrk::measured(pid, duration, || super::wrk::run(&url, duration, None))?;
        pings.note =
            "the monitor's /ping/TOKEN, each ping's row queued for the store before its reply".into();
        report.http_pings = Some(pings);
        // The ceilings run in this process while the monitor idles (no heartbeats are sent
        // in the HTTP phases), on the pings' path, so that routing is not free.
        progress.phase("HTTP ceilings (wrk)");
        report.http_ceiling = Some(super::wrk::ceiling(Ceiling::Hyper, "/ping/{token}", duration)?);
        report.http_empty_handler =
            Some(super::wrk::ceiling(Ceiling::EmptyHandler, "/ping/{token}", duration)?);
    }

    progress.phase("restart");
    events.close();
    report.restart.shutdown_s = monitor.stop()?.as_secs_f64();
    let started = Instant::now();
    let monitor = MonitorProcess::start(&config, &dir.join("monitor-2.log"), args.monitor_cpus.as_deref())?;
    report.restart.ready_s = monitor.ready_after.as_secs_f64();
    let api = Api::new(monitor.http);
    let serving_deadline = started + Duration::from_secs(120);
    while Instant::now() < serving_deadline {
        if api.serving() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    report.restart.serving_s = started.elapsed().as_secs_f64();
    report.restart.nodes_restored = api.metric("rollcall_nodes{")? as u64;
    drop(monitor);

    if let Some(duration) = args.etcd {
        progress.phase("etcd lease keep-alives");
        let etcd = super::etcd::Etcd::start(&dir, args.nodes)?;
        report.etcd_gateway = Some(etcd.gateway(&dir, duration)?);
        report.etcd_grpc = Some(etcd.grpc(duration)?);
    }
    if let Some(duration) = args.redis {
        progress.phase("Redis SET PX");
        report.redis = super::redis::measure(&dir, args.nodes, duration)?;
    }
    report.versus = Versus::of(&report);
    progress.finish();
    if args.dir.is_none() {
        drop(temp);
    }
    Ok(report)
}

/// The raw receiver saturated by the generator for `--saturate`: the kernel's receive path,
/// the floor the monitor's cost is compared with.
fn raw_saturated(args: &BenchArgs, fleet: &mut Fleet, progress: &Progress) -> anyhow::Result<Throughput> {
    let raw = RawReceiver::start(args.recv_buffer_bytes)?;
    if let Some(datagrams) = args.presign {
        fleet.presign(datagrams)?;
    }
    let raw_cpu_before = raw.cpu_seconds();
    let started = Instant::now();
    let mut sent = fleet.run(raw.addr, Pace::Saturate, args.saturate, &progress.count);
    let (received, drained) = settle_timed(|| Some(raw.received() as f64))?;
    let received = received as u64;
    stretch(&mut sent, args.presign, drained - started);
    let raw_cpu = raw.cpu_seconds().zip(raw_cpu_before).map(|(after, before)| after - before);
    let mut baseline = throughput(sent, received, raw.kernel_drops());
    baseline.cpu_seconds = raw_cpu;
    baseline.cpu_seconds_per_million = raw_cpu.map(|cpu| per_million(cpu, received));
    Ok(baseline)
}

/// Beats at `--interval` until the `running` nodes are up again and their alerts delivered.
/// A saturated phase ends with every node silent, so the monitor declares them all down
/// while the raw receiver is measured; without this, the next measured phase would pay for
/// their revival (a transition, an incident resolved and a webhook each: a fifth more CPU
/// per heartbeat at 1,000 nodes). Bounded like registration.
fn revive(
    args: &BenchArgs,
    fleet: &mut Fleet,
    progress: &Progress,
    api: &Api,
    udp: std::net::SocketAddr,
    running: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for _ in 0..REGISTER_ROUNDS {
        fleet.run(udp, Pace::Interval(args.interval), args.interval, &progress.count);
        let up = api.metric("rollcall_nodes{state=\"up\"}")? as usize;
        let pending = api.metric("rollcall_outbox_pending{")?;
        if (up >= running && pending == 0.0) || started.elapsed() >= args.register_timeout {
            break;
        }
    }
    Ok(())
}

/// The monitor saturated by the generator for `--saturate`: accepted heartbeats and the
/// process's CPU (all threads) per million of them.
fn monitor_saturated(
    args: &BenchArgs,
    fleet: &mut Fleet,
    progress: &Progress,
    api: &Api,
    monitor: &MonitorProcess,
) -> anyhow::Result<Throughput> {
    if let Some(datagrams) = args.presign {
        fleet.presign(datagrams)?;
    }
    let pid = monitor.pid();
    let accepted_before = accepted(api)?;
    let rejected_before = api.metric("rollcall_heartbeats_rejected_total{")?;
    const HANDOFF: &str = "rollcall_udp_thread_handoff_dropped_total{";
    let handoff_before = api.metric(HANDOFF)?;
    let cpu_before = probe::cpu_seconds(pid).unwrap_or(0.0);
    let threads_before = probe::cpu_seconds_by_thread(pid);
    let drops_before = probe::udp_drops_by_port(monitor.udp.port());
    let started = Instant::now();
    let mut sent = fleet.run(monitor.udp, Pace::Saturate, args.saturate, &progress.count);
    let (total, drained) = settle_timed(|| accepted(api).ok().map(|v| v as f64))?;
    let total = total as u64;
    stretch(&mut sent, args.presign, drained - started);
    let cpu = probe::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let threads = probe::cpu_used_by_thread_name(&threads_before, &probe::cpu_seconds_by_thread(pid), cpu);
    let drops = delta(drops_before, probe::udp_drops_by_port(monitor.udp.port()));
    let mut saturated = throughput(sent, total - accepted_before, drops);
    saturated.rejected = Some((api.metric("rollcall_heartbeats_rejected_total{")? - rejected_before) as u64);
    saturated.handoff_dropped =
        (args.receive_threads > 1).then(|| (api.metric(HANDOFF).unwrap_or(0.0) - handoff_before) as u64);
    saturated.cpu_seconds = Some(cpu);
    saturated.cpu_seconds_per_million = Some(per_million(cpu, total - accepted_before));
    saturated.cpu_seconds_per_million_by_thread = threads
        .into_iter()
        .map(|(name, used)| (name, per_million(used, total - accepted_before)))
        .filter(|(_, per)| *per > 0.0)
        .collect();
    Ok(saturated)
}

/// The monitor's configuration: loopback ports chosen by the OS, the benchmark's key, a
/// webhook sink to the local receiver with grouping off (so each down pages at once and the
/// alert latency is the delivery path's, not `group_wait`), and ping limits out of the way.
fn monitor_config(args: &BenchArgs, dir: &Path, webhook: std::net::SocketAddr) -> String {
    let detector = format!("{:?}", args.detector).to_lowercase();
    format!(
        r#"udp = "127.0.0.1:0"
http = "127.0.0.1:0"
data_dir = "{data}"
key_file = "{key}"
detector = "{detector}"

[monitor]
max_nodes = {max_nodes}
recv_buffer_bytes = {recv}
receive_threads = {threads}

[alerts]
group_wait = "0s"

[[sink]]
name = "bench"
kind = "webhook"
url = "http://{webhook}/hook"

[[check]]
id = "bench-ping"
token = "{PING_TOKEN}"
period = "1h"
grace = "1h"

[pings]
per_token_rate = 1000000000.0
per_token_burst = 1000000000
per_source_rate = 1000000000.0
per_source_burst = 1000000000

[metrics]
per_node_series = 0
"#,
        data = dir.join("data").display(),
        key = dir.join("bench.key").display(),
        max_nodes = args.nodes.max(1000),
        recv = args.recv_buffer_bytes,
        threads = args.receive_threads,
    )
}

fn accepted(api: &Api) -> anyhow::Result<u64> {
    Ok(api.metric("rollcall_heartbeats_received_total{kind=\"heartbeat\"}")? as u64)
}

/// Reads a growing counter until it stops growing (what was queued has been handled),
/// bounded in time.
fn settle(read: impl Fn() -> Option<f64>) -> anyhow::Result<f64> {
    settle_timed(read).map(|(value, _)| value)
}

/// [`settle`], and when the counter was last seen growing (within its 200 ms polls).
fn settle_timed(read: impl Fn() -> Option<f64>) -> anyhow::Result<(f64, Instant)> {
    let mut last = read().context("cannot read a counter")?;
    let mut grown = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = read().context("cannot read a counter")?;
        if now == last {
            return Ok((now, grown));
        }
        last = now;
        grown = Instant::now();
    }
    Ok((last, grown))
}

/// With `--presign`, the generator sends its pool faster than the receiver takes it, and
/// the receiver goes on reading its queue after the last send: the rate is then counted over
/// the time until the counter stopped growing (to within settle's 200 ms polls), not over
/// the sending alone.
fn stretch(sent: &mut Sent, presign: Option<usize>, until_drained: Duration) {
    if presign.is_some() {
        sent.elapsed = sent.elapsed.max(until_drained);
    }
}

fn throughput(sent: Sent, accepted: u64, kernel_drops: Option<u64>) -> Throughput {
    let seconds = sent.elapsed.as_secs_f64();
    Throughput {
        sent: sent.datagrams,
        send_errors: sent.errors,
        accepted,
        seconds,
        per_second: accepted as f64 / seconds.max(1e-9),
        kernel_drops,
        ..Throughput::default()
    }
}

fn per_million(cpu_seconds: f64, count: u64) -> f64 {
    cpu_seconds / (count.max(1) as f64 / 1e6)
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

fn detection(
    events: &EventStream,
    stopped: &BTreeSet<String>,
    stopped_at_ms: i64,
    interval: Duration,
) -> Detection {
    let seen = events.snapshot();
    let mut lag = Vec::new();
    let mut end_to_end = Vec::new();
    let mut to_down = Vec::new();
    let mut suspect = BTreeMap::new();
    let mut down = BTreeMap::new();
    for t in seen.iter().filter(|t| stopped.contains(&t.node) && t.at_ms >= stopped_at_ms) {
        if t.to != "suspect" && t.to != "down" {
            continue;
        }
        lag.push((t.noticed_ms - t.at_ms) as f64);
        end_to_end.push((t.received_ms - t.at_ms) as f64);
        if t.to == "down" && down.insert(t.node.clone(), ()).is_none() {
            // The node's last heartbeat went out at most one interval before the stop.
            let last_sent = stopped_at_ms - interval.as_millis() as i64 / 2;
            to_down.push((t.received_ms - last_sent) as f64);
        }
        if t.to == "suspect" {
            suspect.insert(t.node.clone(), ());
        }
    }
    Detection {
        stopped: stopped.len(),
        suspect: suspect.len(),
        down: down.len(),
        lag_ms: Percentiles::of(lag),
        end_to_end_ms: Percentiles::of(end_to_end),
        time_to_down_ms: Percentiles::of(to_down),
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        rmem_max: std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse().ok()),
    }
}

/// A progress line on stderr (rewritten in place on a terminal), updated twice a second.
struct Progress {
    count: Arc<AtomicU64>,
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(enabled: bool) -> Progress {
        let count = Arc::new(AtomicU64::new(0));
        let phase = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, name, stopping) = (count.clone(), phase.clone(), stop.clone());
        let thread = enabled.then(|| {
            std::thread::spawn(move || {
                use std::io::{IsTerminal, Write};
                let terminal = std::io::stderr().is_terminal();
                let started = Instant::now();
                let mut last = (0u64, Instant::now(), String::new());
                // Bounded by the stop flag.
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let sent = counter.load(Ordering::Relaxed);
                    let rate = (sent - last.0) as f64 / last.1.elapsed().as_secs_f64();
                    let phase = name.lock().map(|p| p.clone()).unwrap_or_default();
                    let line = format!(
                        "[{:>5.1}s] {phase}: {sent} datagrams sent, {rate:.0}/s",
                        started.elapsed().as_secs_f64()
                    );
                    if terminal {
                        eprint!("\r\x1b[2K{line}");
                    } else if phase != last.2 {
                        eprintln!("{line}");
                    }
                    let _ = std::io::stderr().flush();
                    last = (sent, Instant::now(), phase);
                }
                if terminal {
                    eprintln!();
                }
            })
        });
        Progress { count, phase, stop, thread }
    }

    fn phase(&self, name: &str) {
        if let Ok(mut phase) = self.phase.lock() {
            *phase = name.to_string();
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
