//! `rollcall bench`: the load benchmark. A generator impersonates N nodes (real keys,
//! generations and sequences) and sends authenticated heartbeats with `sendmmsg` from several
//! sockets, first to a raw receiver that only counts datagrams (the same-run baseline), then
//! to a real monitor child process; it stops a subset mid-run to measure detection under
//! load, and restarts the monitor to time the restore of N nodes from the store.
//!
//! Phases, in order: baseline (saturate the raw receiver), register (every node beats until
//! the monitor tracks all of them), steady (every node at its interval: CPU, memory),
//! detection (a subset stops, the rest go on: lag, alert latency), throughput (saturate the
//! monitor: ratio to the baseline), HTTP pings and their ceilings (`wrk`, optional),
//! restart, then the anchors (optional): etcd lease keep-alives (JSON gateway and gRPC) and
//! Redis `SET PX`. See docs/BENCHMARKS.md for what each figure means and what limits it.

mod etcd;
mod load;
pub mod loadgen;
mod phases;
mod probe;
mod redis;
mod report;
mod wrk;

use clap::Args;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Nodes to impersonate.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Each node's heartbeat interval in the steady and detection phases.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Sending sockets (one thread each).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// How long each saturation phase (raw receiver, then monitor) lasts.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "5s")]
    pub saturate: Duration,
    /// Saturation rounds: after the first (raw receiver, then monitor), this many minus one
    /// more pairs, each the raw receiver then the monitor again (after the nodes, silent
    /// while the raw receiver is measured, are up again); the report gives every round's CPU
    /// ratio and their median (one round's ratio moves with what else runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// How long the steady phase lasts.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "10s")]
    pub steady: Duration,
    /// Nodes stopped mid-run to measure detection (default: 1% of the nodes, 1 to 1000).
    #[arg(long)]
    pub stop: Option<usize>,
    /// The monitor's failure detector.
    #[arg(long, value_enum, default_value = "phi")]
    pub detector: crate::cli::DetectorKind,
    /// New nodes per second in the registration phase (0: every node at once).
    #[arg(long, default_value_t = 20_000)]
    pub register_rate: u64,
    /// Before registration: this many of the nodes (at most --nodes) send their first
    /// heartbeat at the same instant, as a fleet of agents started together, and the
    /// kernel's drops at the monitor's socket are counted (0: no burst).
    #[arg(long, default_value_t = 10_000)]
    pub burst: usize,
    /// Longest wait for every node to be registered and up before the steady phase.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "300s")]
    pub register_timeout: Duration,
    /// Longest wait for the stopped nodes to be declared down.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "60s")]
    pub detection_timeout: Duration,
    /// Also measure HTTP pings with `wrk` (keep-alive) for this long, then, as long each, a
    /// minimal hyper server and rollcall's HTTP server with an empty handler (needs `wrk`).
    #[arg(long, value_parser = rollcall_core::settings::parse_duration)]
    pub wrk: Option<Duration>,
    /// Also measure etcd lease keep-alives for this long through its JSON gateway, then as
    /// long over 1, 4 and 16 gRPC streams each (needs `etcd` and `wrk`).
    #[arg(long, value_parser = rollcall_core::settings::parse_duration)]
    pub etcd: Option<Duration>,
    /// Also measure Redis `SET key 1 PX ttl` with `redis-benchmark` for about this long,
    /// without persistence, then with the append-only file (needs `redis-server`).
    #[arg(long, value_parser = rollcall_core::settings::parse_duration)]
    pub redis: Option<Duration>,
    /// SO_RCVBUF asked for by the monitor and the raw receiver.
    #[arg(long, default_value_t = 8 << 20)]
    pub recv_buffer_bytes: usize,
    /// The monitor's `monitor.receive_threads`: SO_REUSEPORT sockets, each read and verified
    /// by its own thread (1: the owner reads the one socket).
    #[arg(long, default_value_t = 1)]
    pub receive_threads: usize,
    /// Signs this many heartbeats ahead of each saturated phase (raw receiver and monitor),
    /// so that the generator only calls `sendmmsg` while it is measured; the phase ends when
    /// they are sent or at `--saturate`.
    #[arg(long, value_name = "DATAGRAMS")]
    pub presign: Option<usize>,
    /// Runs the monitor under `taskset -c CPUS` (e.g. `1`, or `0-1`); run the benchmark itself
    /// under `taskset` to pin the generator.
    #[arg(long, value_name = "CPUS")]
    pub monitor_cpus: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark's directory (store, logs) here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// `rollcall bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    if args.interval < Duration::from_millis(10) {
        anyhow::bail!("--interval must be at least 10ms");
    }
    let report = phases::run(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
