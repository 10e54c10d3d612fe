//! A monitor driven on a virtual clock: an hour of a 100-node fleet in milliseconds of CPU,
//! exactly reproducible. Every node beats once a second with up to 50 ms of jitter; node
//! `node-42` crashes at minute 20. The run prints when the monitor declared it down, and
//! checks that nobody else went down: the same kind of test a shell would write around
//! the core, without sockets or sleeping.
//!
//! `cargo run -p rollcall-core --example virtual_clock` (its test runs with `cargo test`).

use rollcall_core::monitor::{MonitorEvent, NodeState};
use rollcall_core::rng::Rng;
use rollcall_core::wire::Labels;
use rollcall_core::{Instant, Key, KeyRing, Monitor, MonitorConfig};
use std::time::Duration;

const NODES: u64 = 100;
const CRASHED: u64 = 42;

/// What an hour looked like: when the crashed node went down, and every other down.
struct Run {
    crash: Instant,
    crashed_down: Option<Instant>,
    other_downs: Vec<String>,
}

fn run(seed: u64) -> Run {
    let ring = KeyRing::new(&[Key::new(1, [9; 32])]).expect("one key");
    let mut monitor =
        Monitor::new(MonitorConfig::default(), ring, Instant::ZERO).expect("the defaults are valid");
    let mut rng = Rng::new(seed);
    let second = Duration::from_secs(1);
    let crash = Instant::from_millis(20 * 60_000);
    let end = Instant::from_millis(60 * 60_000);
    // The next send of each node: a random phase, then every second plus jitter.
    let mut next: Vec<Instant> =
        (0..NODES).map(|_| Instant::from_millis((rng.f64() * 1000.0) as u64)).collect();
    let mut sequence = vec![0u64; NODES as usize];
    let (mut crashed_down, mut other_downs) = (None, Vec::new());
    loop {
        // The earliest of: a node's next heartbeat, the monitor's next deadline.
        let (node, beat) = next.iter().copied().enumerate().min_by_key(|&(_, at)| at).expect("nodes");
        let deadline = monitor.poll_timeout().unwrap_or(Instant::MAX);
        let now = beat.min(deadline);
        if now >= end {
            break;
        }
        if beat <= deadline {
            let alive = node as u64 != CRASHED || beat < crash;
            sequence[node] += 1;
            if alive {
                let id = format!("node-{node}");
                // A shell with its own transport hands over what it authenticated itself.
                let _ = monitor.handle_heartbeat(now, &id, 1, sequence[node], second, Labels::EMPTY);
            }
            next[node] = now + second + Duration::from_millis((rng.f64() * 50.0) as u64);
        } else {
            monitor.handle_timeout(now);
        }
        while let Some(event) = monitor.poll_event() {
            let MonitorEvent::Transition { transition, .. } = event else { continue };
            if transition.to != NodeState::Down {
                continue;
            }
            if *transition.node == *format!("node-{CRASHED}") {
                crashed_down.get_or_insert(transition.at);
            } else {
                other_downs.push(transition.node.to_string());
            }
        }
    }
    Run { crash, crashed_down, other_downs }
}

fn main() {
    let run = run(1);
    match run.crashed_down {
        Some(at) => println!(
            "node-{CRASHED} crashed at minute 20 and was declared down {:.2} s later",
            at.saturating_duration_since(run.crash).as_secs_f64()
        ),
        None => println!("node-{CRASHED} was never declared down"),
    }
    println!("other nodes declared down in the hour: {}", run.other_downs.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_is_found_and_nobody_else_goes_down() {
        for seed in 1..=3 {
            let run = run(seed);
            let down = run.crashed_down.expect("the crashed node is declared down");
            // phi with Akka's defaults at a 1 s interval: seconds, never a minute.
            let after = down.saturating_duration_since(run.crash);
            assert!(
                after > Duration::from_secs(1) && after < Duration::from_secs(30),
                "seed {seed}: {after:?}"
            );
            assert_eq!(run.other_downs, Vec::<String>::new(), "seed {seed}");
        }
    }
}
