//! The benchmark's report: what `--json` prints, and the table printed otherwise.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub machine: Machine,
    pub config: Config,
    /// The raw receiver: what the generator can get through the kernel to one socket.
    pub baseline: Throughput,
    /// The monitor, saturated by the same generator.
    pub throughput: Throughput,
    /// Accepted heartbeats per second, monitor over raw receiver.
    pub ratio: f64,
    /// CPU seconds per million, the saturated monitor's (per accepted heartbeat, the whole
    /// process) over the raw receiver's (per datagram, its one thread) in the same run: what
    /// the monitor costs over the kernel's receive path, whatever else runs on the machine.
    pub cpu_ratio: Option<f64>,
    /// Every saturation round (`--rounds`; the first is `baseline` and `throughput` above),
    /// each a raw receiver's phase then the monitor's.
    pub cpu_rounds: Vec<CpuRound>,
    /// The median of the rounds' CPU ratios: one round's moves with what else runs (±0.1
    /// at 1,000 nodes on two shared cores), a median of several much less.
    pub cpu_ratio_median: Option<f64>,
    pub steady: Steady,
    /// Agents started together (`--burst`), before registration.
    pub burst: Option<Burst>,
    pub detection: Detection,
    pub alerts: Alerts,
    pub restart: Restart,
    pub http_pings: Option<HttpLoad>,
    /// A minimal hyper server answering `200 OK` under the same wrk load (`--wrk`).
    pub http_ceiling: Option<HttpLoad>,
    /// rollcall's HTTP server with an empty handler under the same load (`--wrk`).
    pub http_empty_handler: Option<HttpLoad>,
    /// etcd lease keep-alives through the JSON gateway (`--etcd`).
    pub etcd_gateway: Option<HttpLoad>,
    /// etcd lease keep-alives over gRPC streams, pipelined (`--etcd`).
    pub etcd_grpc: Option<GrpcKeepAlives>,
    /// Redis `SET key 1 PX ttl`, pipelined, per persistence setting (`--redis`).
    pub redis: Vec<RedisLoad>,
    /// The figures above as ratios to their anchors.
    pub versus: Versus,
}

/// One saturation round: the raw receiver's CPU per million datagrams, then the monitor's
/// per million accepted heartbeats, and their ratio.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CpuRound {
    pub raw_cpu_seconds_per_million: f64,
    pub monitor_cpu_seconds_per_million: f64,
    pub ratio: f64,
    /// The monitor's figure by thread name (a store checkpoint that falls in one round
    /// shows in `rollcall-store`).
    pub monitor_by_thread: BTreeMap<String, f64>,
}

impl CpuRound {
    /// `None` when either CPU figure is missing, or the raw receiver's is zero.
    pub fn of(raw: &Throughput, monitor: &Throughput) -> Option<CpuRound> {
        let by_thread = &monitor.cpu_seconds_per_million_by_thread;
        let (raw, monitor) = (raw.cpu_seconds_per_million?, monitor.cpu_seconds_per_million?);
        (raw > 0.0).then(|| CpuRound {
            raw_cpu_seconds_per_million: raw,
            monitor_cpu_seconds_per_million: monitor,
            ratio: monitor / raw,
            monitor_by_thread: by_thread.clone(),
        })
    }
}

/// The median (the mean of the two middle values for an even count); `None` if empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

#[derive(Serialize, Debug, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub rmem_max: Option<u64>,
}

#[derive(Serialize, Debug, Default)]
pub struct Config {
    pub nodes: usize,
    pub interval_ms: u64,
    pub senders: usize,
    pub detector: String,
    pub saturate_s: f64,
    pub rounds: u32,
    pub steady_s: f64,
    pub stopped: usize,
    pub datagram_bytes: usize,
    pub receive_threads: usize,
    /// Heartbeats signed ahead of each saturated phase (`--presign`).
    pub presign: Option<usize>,
    /// The CPUs the monitor ran on (`--monitor-cpus`; `None`: any).
    pub monitor_cpus: Option<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct Throughput {
    pub sent: u64,
    pub send_errors: u64,
    /// Datagrams counted (raw receiver) or heartbeats accepted (monitor).
    pub accepted: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub kernel_drops: Option<u64>,
    /// Monitor only: datagrams refused (replays, ...).
    pub rejected: Option<u64>,
    /// Monitor with receive threads only: verified datagrams dropped because the owner's
    /// queue was full (the owner, not the receive path, was the limit).
    pub handoff_dropped: Option<u64>,
    /// CPU used (the monitor's process; the raw receiver's thread) and CPU per million
    /// (heartbeats accepted; datagrams counted).
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_per_million: Option<f64>,
    /// Monitor only: the same by thread name (tokio's workers carry the owner and the HTTP
    /// API; `rollcall-store` commits, checkpoints included), threads that used any; what threads
    /// that exited during the phase used is `(exited threads)`.
    pub cpu_seconds_per_million_by_thread: BTreeMap<String, f64>,
}

#[derive(Serialize, Debug, Default)]
pub struct Burst {
    pub agents: usize,
    pub sent: u64,
    pub send_seconds: f64,
    /// Dropped by the kernel at the monitor's socket during the burst.
    pub kernel_drops: Option<u64>,
    /// Nodes up once the monitor had read everything.
    pub registered: u64,
    /// What the kernel granted the monitor's socket (SO_RCVBUF, as reported by the monitor).
    pub receive_buffer_bytes: Option<u64>,
}

#[derive(Serialize, Debug, Default)]
pub struct Steady {
    pub heartbeats: u64,
    pub per_second: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million: f64,
    pub kernel_drops: Option<u64>,
    pub rss_empty_bytes: u64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// (RSS with N nodes - RSS with none) / N.
    pub rss_per_node_bytes: f64,
    pub register_seconds: f64,
    /// Nodes up when the registration phase ended (all of them, unless it timed out).
    pub up_after_register: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct Detection {
    pub stopped: usize,
    pub suspect: usize,
    pub down: usize,
    /// From each deadline to the monitor noticing it (its own stamps), for suspect and down.
    pub lag_ms: Percentiles,
    /// From each deadline to the transition arriving on the event stream (after its commit).
    pub end_to_end_ms: Percentiles,
    /// From the stopped nodes' last heartbeat (estimated as half an interval before the stop)
    /// to the down transition on the stream: what a user waits.
    pub time_to_down_ms: Percentiles,
}

#[derive(Serialize, Debug, Default)]
pub struct Alerts {
    pub received: usize,
    /// From the transition's deadline to the webhook receiving the alert.
    pub latency_ms: Percentiles,
}

#[derive(Serialize, Debug, Default)]
pub struct Restart {
    pub shutdown_s: f64,
    /// From spawning the monitor to its ready line (the store is restored before it).
    pub ready_s: f64,
    /// From spawning to the API answering with every node tracked.
    pub serving_s: f64,
    pub nodes_restored: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct HttpLoad {
    pub tool: String,
    pub connections: u32,
    pub requests_per_second: f64,
    pub non_2xx: u64,
    pub latency_p99_ms: Option<f64>,
    /// CPU microseconds the server process spent per request (user + system), when measured:
    /// steadier than requests per second on a shared machine.
    pub server_cpu_us_per_request: Option<f64>,
    pub note: String,
}

#[derive(Serialize, Debug, Default)]
pub struct GrpcKeepAlives {
    pub leases: usize,
    /// The best of the runs.
    pub per_second: f64,
    pub runs: Vec<GrpcRun>,
    pub note: String,
}

/// Keep-alives over `streams` gRPC streams (on `connections` HTTP/2 connections), `window`
/// in flight on each.
#[derive(Serialize, Debug, Default)]
pub struct GrpcRun {
    pub streams: usize,
    pub connections: usize,
    pub window: usize,
    /// Answered for a live lease during the counted seconds.
    pub keep_alives: u64,
    pub per_second: f64,
    pub server_cpu_us_per_request: Option<f64>,
}

#[derive(Serialize, Debug, Default)]
pub struct RedisLoad {
    pub persistence: String,
    pub clients: u32,
    /// Commands sent per connection before reading the replies.
    pub pipeline: u32,
    pub keys: usize,
    pub requests: u64,
    pub per_second: f64,
    pub server_cpu_us_per_request: Option<f64>,
    pub note: String,
}

/// The goals' ratios, from the figures measured in the same run.
#[derive(Serialize, Debug, Default)]
pub struct Versus {
    /// The fastest anchor measured (etcd gateway, etcd gRPC, Redis) and its rate.
    pub strongest_anchor: Option<String>,
    pub strongest_anchor_per_second: Option<f64>,
    /// Saturated monitor's accepted heartbeats per second over that rate (goal: 20).
    pub heartbeats_per_strongest: Option<f64>,
    /// The same over etcd's best gRPC keep-alive rate.
    pub heartbeats_per_etcd_grpc: Option<f64>,
    /// Pings per second over the minimal hyper server's requests per second (goal: 0.5).
    pub pings_per_ceiling: Option<f64>,
}

impl Versus {
    /// Ratios of what `report` measured.
    pub fn of(report: &Report) -> Versus {
        let mut anchors: Vec<(String, f64)> = Vec::new();
        if let Some(gateway) = &report.etcd_gateway {
            anchors.push(("etcd keep-alives, JSON gateway".into(), gateway.requests_per_second));
        }
        if let Some(grpc) = &report.etcd_grpc {
            anchors.push(("etcd keep-alives, gRPC".into(), grpc.per_second));
        }
        for redis in &report.redis {
            anchors.push((format!("Redis SET PX, {}", redis.persistence), redis.per_second));
        }
        let strongest = anchors.into_iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let heartbeats = report.throughput.per_second;
        let over = |rate: f64| (rate > 0.0).then(|| heartbeats / rate);
        let pings = report.http_pings.as_ref().map(|load| load.requests_per_second);
        let ceiling = report.http_ceiling.as_ref().map(|load| load.requests_per_second);
        Versus {
            heartbeats_per_strongest: strongest.as_ref().and_then(|(_, rate)| over(*rate)),
            heartbeats_per_etcd_grpc: report.etcd_grpc.as_ref().and_then(|grpc| over(grpc.per_second)),
            strongest_anchor_per_second: strongest.as_ref().map(|(_, rate)| *rate),
            strongest_anchor: strongest.map(|(name, _)| name),
            pings_per_ceiling: pings.zip(ceiling).filter(|(_, c)| *c > 0.0).map(|(p, c)| p / c),
        }
    }
}

#[derive(Serialize, Debug, Default, Clone, Copy)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| -> Option<f64> {
            let last = values.len().checked_sub(1)?;
            Some(values[((last as f64) * q).round() as usize])
        };
        Percentiles { count: values.len(), p50: at(0.5), p99: at(0.99), max: values.last().copied() }
    }

    fn show(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        format!("p50 {} / p99 {} / max {} ms (n={})", f(self.p50), f(self.p99), f(self.max), self.count)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

impl Report {
    /// A two-column table: figure, value.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let c = &self.config;
        rows.push((
            "setup".into(),
            format!(
                "{} nodes, {} ms interval, {} senders, {} detector, {} B datagrams, {} cpus",
                c.nodes, c.interval_ms, c.senders, c.detector, c.datagram_bytes, self.machine.cpus
            ),
        ));
        let b = &self.baseline;
        rows.push((
            "raw receiver (baseline)".into(),
            format!(
                "{:.0}/s ({} of {} sent, kernel drops {})",
                b.per_second,
                b.accepted,
                b.sent,
                opt(b.kernel_drops)
            ),
        ));
        let t = &self.throughput;
        rows.push((
            "monitor, saturated".into(),
            format!(
                "{:.0}/s accepted ({} of {} sent, kernel drops {}, rejected {})",
                t.per_second,
                t.accepted,
                t.sent,
                opt(t.kernel_drops),
                opt(t.rejected)
            ),
        ));
        rows.push(("ratio to raw receiver".into(), format!("{:.2} (goal >= 0.8)", self.ratio)));
        if let Some(cpu) = t.cpu_seconds_per_million {
            let threads: Vec<String> = t
                .cpu_seconds_per_million_by_thread
                .iter()
                .map(|(name, cpu)| format!("{name} {cpu:.2}"))
                .collect();
            rows.push(("CPU per million, saturated".into(), format!("{cpu:.2} s ({})", threads.join(", "))));
        }
        if let Some(cpu) = b.cpu_seconds_per_million {
            rows.push((
                "CPU per million, raw receiver".into(),
                format!("{cpu:.2} s (the kernel's receive path)"),
            ));
        }
        if let Some(ratio) = self.cpu_ratio {
            rows.push(("CPU ratio, monitor / raw receiver".into(), format!("{ratio:.2}x (goal <= 1.5x)")));
        }
        if let (Some(median), true) = (self.cpu_ratio_median, self.cpu_rounds.len() > 1) {
            let rounds: Vec<String> =
                self.cpu_rounds.iter().map(|round| format!("{:.2}", round.ratio)).collect();
            rows.push((
                format!("CPU ratio over {} rounds", self.cpu_rounds.len()),
                format!("median {median:.2}x (rounds {})", rounds.join(", ")),
            ));
        }
        let s = &self.steady;
        rows.push((
            "steady load".into(),
            format!(
                "{:.0} heartbeats/s, {:.2} CPU s per million, kernel drops {}",
                s.per_second,
                s.cpu_seconds_per_million,
                opt(s.kernel_drops)
            ),
        ));
        rows.push((
            "memory".into(),
            format!(
                "RSS {} (empty {}, peak {}), {:.0} B per node (goal <= 512)",
                mib(s.rss_bytes),
                mib(s.rss_empty_bytes),
                mib(s.peak_rss_bytes),
                s.rss_per_node_bytes
            ),
        ));
        if let Some(burst) = &self.burst {
            rows.push((
                "burst of agents started together".into(),
                format!(
                    "{} agents sent {} heartbeats in {:.0} ms: kernel drops {}, {} up (receive buffer {})",
                    burst.agents,
                    burst.sent,
                    burst.send_seconds * 1000.0,
                    opt(burst.kernel_drops),
                    burst.registered,
                    burst.receive_buffer_bytes.map_or_else(|| "?".to_string(), mib),
                ),
            ));
        }
        rows.push((
            "registration".into(),
            format!("{:.1} s, then {} of {} nodes up", s.register_seconds, s.up_after_register, c.nodes),
        ));
        let d = &self.detection;
        rows.push((
            "stopped nodes".into(),
            format!("{} stopped: {} suspect, {} down seen", d.stopped, d.suspect, d.down),
        ));
        rows.push(("detection lag (core)".into(), d.lag_ms.show()));
        rows.push(("detection lag (event stream)".into(), d.end_to_end_ms.show()));
        rows.push(("last heartbeat to down".into(), d.time_to_down_ms.show()));
        rows.push((
            "alert latency (webhook)".into(),
            format!("{} alerts: {}", self.alerts.received, self.alerts.latency_ms.show()),
        ));
        let r = &self.restart;
        rows.push((
            "restart".into(),
            format!(
                "{} nodes restored: ready {:.2} s, serving {:.2} s (shutdown {:.2} s)",
                r.nodes_restored, r.ready_s, r.serving_s, r.shutdown_s
            ),
        ));
        self.anchor_rows(&mut rows);
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<width$}  {value}");
        }
        out
    }

    /// The HTTP figures, the anchors and the ratios.
    fn anchor_rows(&self, rows: &mut Vec<(String, String)>) {
        let http = [
            ("HTTP pings (wrk)", &self.http_pings),
            ("HTTP ceiling: minimal hyper", &self.http_ceiling),
            ("HTTP: rollcall server, empty handler", &self.http_empty_handler),
            ("etcd keep-alives, JSON gateway", &self.etcd_gateway),
        ];
        for (name, load) in http {
            if let Some(load) = load {
                rows.push((
                    name.into(),
                    format!(
                        "{:.0}/s over {} connections, non-2xx {}, p99 {}, server CPU {} us per request; {}",
                        load.requests_per_second,
                        load.connections,
                        load.non_2xx,
                        load.latency_p99_ms.map_or("-".into(), |ms| format!("{ms:.1} ms")),
                        micros(load.server_cpu_us_per_request),
                        load.note
                    ),
                ));
            }
        }
        if let Some(grpc) = &self.etcd_grpc {
            for run in &grpc.runs {
                rows.push((
                    format!("etcd keep-alives, gRPC, {} stream{}", run.streams, if run.streams == 1 { "" } else { "s" }),
                    format!(
                        "{:.0}/s ({} connections, {} in flight per stream), server CPU {} us per request; {} leases, {}",
                        run.per_second,
                        run.connections,
                        run.window,
                        micros(run.server_cpu_us_per_request),
                        grpc.leases,
                        grpc.note
                    ),
                ));
            }
        }
        for redis in &self.redis {
            rows.push((
                format!("Redis SET PX, {}", redis.persistence),
                format!(
                    "{:.0}/s ({} connections, pipeline {}, {} keys), server CPU {} us per request; {}",
                    redis.per_second,
                    redis.clients,
                    redis.pipeline,
                    redis.keys,
                    micros(redis.server_cpu_us_per_request),
                    redis.note
                ),
            ));
        }
        let v = &self.versus;
        if let (Some(name), Some(rate), Some(ratio)) =
            (&v.strongest_anchor, v.strongest_anchor_per_second, v.heartbeats_per_strongest)
        {
            rows.push((
                "heartbeats vs strongest anchor".into(),
                format!(
                    "{ratio:.2}x ({:.0}/s saturated over {rate:.0}/s, {name}; goal >= 20)",
                    self.throughput.per_second
                ),
            ));
        }
        if let Some(ratio) = v.heartbeats_per_etcd_grpc {
            rows.push(("heartbeats vs etcd gRPC".into(), format!("{ratio:.2}x")));
        }
        if let Some(ratio) = v.pings_per_ceiling {
            rows.push(("pings vs hyper ceiling".into(), format!("{ratio:.2} (goal >= 0.5, and 50,000/s)")));
        }
    }
}

fn micros(value: Option<f64>) -> String {
    value.map_or("-".into(), |us| format!("{us:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![1.7]), Some(1.7));
        assert_eq!(median(vec![1.9, 1.5, 1.6]), Some(1.6));
        assert_eq!(median(vec![1.9, 1.5, 1.75, 1.25]), Some(1.625));
    }

    #[test]
    fn a_round_needs_both_cpu_figures_and_a_raw_floor_above_zero() {
        let with = |cpu: Option<f64>| Throughput { cpu_seconds_per_million: cpu, ..Throughput::default() };
        let round = CpuRound::of(&with(Some(0.6)), &with(Some(0.9))).expect("both figures");
        assert!((round.ratio - 1.5).abs() < 1e-12, "{round:?}");
        assert_eq!(CpuRound::of(&with(None), &with(Some(0.9))), None);
        assert_eq!(CpuRound::of(&with(Some(0.6)), &with(None)), None);
        assert_eq!(CpuRound::of(&with(Some(0.0)), &with(Some(0.9))), None);
    }
}
