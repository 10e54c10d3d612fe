//! `rollcall loadgen` (hidden): the benchmark's generator alone, pointed at monitors that run
//! elsewhere, for measurements `rollcall bench` cannot make with the one monitor it starts
//! (the figures of docs/HA.md: three monitors of a cluster, one fleet sending to each).
//!
//! It reads commands on stdin, one per line, so that a driver can act at a moment it chose:
//! `stop N` silences N nodes spread over the fleet and answers `stopped N at_ms=WALL_MS`;
//! `resume` lets them send again (same generation, the sequence going on) and answers
//! `resumed N at_ms=WALL_MS`. It ends after `--for`, printing what it sent.

use super::load::{Fleet, Pace};
use clap::Args;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// How often the senders pause to look for a command: a stop lands within this.
const COMMAND_POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// A monitor's UDP address; repeatable: every heartbeat goes to every target.
    #[arg(long = "target", value_name = "ADDR", required = true)]
    pub targets: Vec<SocketAddr>,
    /// The key file the monitors use.
    #[arg(long)]
    pub key_file: PathBuf,
    /// Nodes to impersonate (`bench-0000000`...).
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Each node's heartbeat interval (with `--saturate`, only what the nodes declare).
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// Send as fast as the sockets take them instead of once per interval per node.
    #[arg(long)]
    pub saturate: bool,
    /// Sending sockets (one thread each).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// The generation every node declares (default: the wall clock in milliseconds, as a
    /// freshly started agent would).
    #[arg(long)]
    pub generation: Option<u64>,
    /// How long to run.
    #[arg(long = "for", value_parser = rollcall_core::settings::parse_duration, default_value = "60s")]
    pub duration: Duration,
}

/// `rollcall loadgen`.
pub fn main(args: LoadgenArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    if args.targets.iter().any(SocketAddr::is_ipv6) {
        anyhow::bail!("--target must be an IPv4 address (the generator sends with IPv4 sockets)");
    }
    let ring = crate::settings::load_key_ring(&args.key_file)?;
    let generation = args.generation.unwrap_or_else(|| super::probe::wall_ms() as u64);
    let mut fleet = Fleet::new(ring, args.nodes, args.senders, args.interval, generation);
    let pace = if args.saturate { Pace::Saturate } else { Pace::Interval(args.interval) };
    let (commands, pending) = read_commands();
    let progress = AtomicU64::new(0);
    let started = Instant::now();
    let (mut datagrams, mut errors) = (0u64, 0u64);
    // Bounded by --for; each round by COMMAND_POLL.
    while let Some(left) = args.duration.checked_sub(started.elapsed()) {
        if left.is_zero() {
            break;
        }
        let sent = fleet.run_until(&args.targets, pace, left.min(COMMAND_POLL), &progress, &pending);
        datagrams += sent.datagrams;
        errors += sent.errors;
        pending.store(false, Ordering::Relaxed);
        while let Ok(line) = commands.try_recv() {
            handle(&mut fleet, &line)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("sent datagrams={datagrams} errors={errors} seconds={seconds:.3}");
    Ok(())
}

/// Starts a thread reading stdin's lines; the flag is raised when one arrives, so that the
/// senders return at once.
fn read_commands() -> (mpsc::Receiver<String>, Arc<AtomicBool>) {
    let (sender, receiver) = mpsc::channel();
    let pending = Arc::new(AtomicBool::new(false));
    let raised = pending.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
            raised.store(true, Ordering::Relaxed);
        }
    });
    (receiver, pending)
}

fn handle(fleet: &mut Fleet, line: &str) -> anyhow::Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["stop", count] => {
            let count: usize = count
                .parse()
                .map_err(|_| anyhow::anyhow!("`stop` takes a number of nodes, not {count:?}"))?;
            let stopped = fleet.stop(count).len();
            println!("stopped {stopped} at_ms={}", super::probe::wall_ms());
            Ok(())
        }
        ["resume"] => {
            let resumed = fleet.resume();
            println!("resumed {resumed} at_ms={}", super::probe::wall_ms());
            Ok(())
        }
        [] => Ok(()),
        _ => anyhow::bail!("unknown command {line:?}: the commands are `stop N` and `resume`"),
    }
}
