//! How long peer mode takes for a large cluster: 10,000 SWIM peers for 10 minutes of
//! virtual time on the `peer-lan` scenario. It prints the wall time, the events per second
//! and the summary table, and asserts nothing about them (a measurement, not a test).
//!
//! `cargo run --release -p rollcall-sim --example peer_scale` (add `-- NODES MINUTES`).
//! Memory grows with the square of the cluster: every peer holds every member, so 10,000
//! peers hold 10^8 member slots (12 bytes each: the peers share one `Roster` of identities).

// Wall time is what this measures; the simulator itself never reads it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use core::time::Duration;
use rollcall_sim::Scenario;
use rollcall_sim::peer::{simulate, split_scenario};
use std::time::Instant;

/// The allocator of the rollcall binary, whose `rollcall sim` runs the same simulator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let (text, settings) =
        split_scenario(include_str!("../../../scenarios/peer-lan.toml")).expect("peer-lan is valid");
    let scenario = Scenario {
        nodes,
        duration: Duration::from_secs(minutes * 60),
        ..Scenario::from_toml(&text).expect("peer-lan is valid")
    };
    let settings = settings.expect("peer-lan asks for peer mode");
    let started = Instant::now();
    let outcome = simulate(&scenario, &settings, &mut |_| {}).expect("the scenario runs");
    let wall = started.elapsed();
    let report = &outcome.report;
    println!(
        "peer scale: {nodes} peers x {minutes} min virtual: {:.1} s wall, {} events, {:.2} M events/s, {} datagrams, {:.1}x real time",
        wall.as_secs_f64(),
        report.events,
        report.events as f64 / wall.as_secs_f64() / 1e6,
        report.datagrams_sent,
        scenario.duration.as_secs_f64() / wall.as_secs_f64(),
    );
    print!("{}", report.table());
}
