//! How long the simulator takes for a large fleet: 10,000 nodes for 10 minutes of virtual
//! time on the LAN scenario, with phi accrual. A benchmark, not a test: it prints the wall
//! time and the events per second, and asserts nothing about them.
//!
//! `cargo bench -p rollcall-sim --bench scale` (add `-- NODES MINUTES` to change the size).

// Wall time is what a benchmark measures; the simulator itself never reads it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use core::time::Duration;
use rollcall_sim::{Scenario, simulate};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let nodes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let text = include_str!("../../../scenarios/lan.toml");
    let scenario = Scenario {
        nodes,
        duration: Duration::from_secs(minutes * 60),
        ..Scenario::from_toml(text).expect("scenarios/lan.toml is valid")
    };
    let started = Instant::now();
    let outcome = simulate(&scenario, &mut |_| {}).expect("the scenario runs");
    let wall = started.elapsed();
    let report = &outcome.report;
    println!(
        "scale: {} nodes x {} min virtual ({} detector): {:.2} s wall, {} events, {:.2} M events/s, {} datagrams sent, {:.0}x real time",
        nodes,
        minutes,
        report.detector_kind,
        wall.as_secs_f64(),
        report.events,
        report.events as f64 / wall.as_secs_f64() / 1e6,
        report.datagrams_sent,
        scenario.duration.as_secs_f64() / wall.as_secs_f64(),
    );
    print!("{}", report.table());
}
