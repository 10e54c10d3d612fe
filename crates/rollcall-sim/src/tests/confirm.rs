//! Confirmation in the simulator: the shipped scenarios at a reduced size, with the same
//! eager detector with and without probes. The full-size figures are in docs/DETECTION.md
//! (`cargo run --release -p rollcall-sim --example detection`); here only the direction of
//! the result is checked, and every promise of the checkers.

use super::super::*;
use super::runs::outcome;
use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::monitor::ConfirmConfig;
use rollcall_detect::PhiAccrualConfig;
use std::sync::Arc;

const SHIPPED: [&str; 5] = [
    include_str!("../../../../scenarios/lan.toml"),
    include_str!("../../../../scenarios/wan.toml"),
    include_str!("../../../../scenarios/gc-pauses.toml"),
    include_str!("../../../../scenarios/lossy.toml"),
    include_str!("../../../../scenarios/partition.toml"),
];

/// Suspect early (no acceptable pause): the probes decide.
fn eager() -> DetectorConfig {
    DetectorConfig::Phi(Arc::new(PhiAccrualConfig {
        acceptable_pause: Duration::ZERO,
        ..PhiAccrualConfig::default()
    }))
}

#[test]
fn confirmation_never_adds_false_downs_and_keeps_every_promise() {
    for text in SHIPPED {
        let scenario = Scenario::from_toml(text).unwrap();
        let small = Scenario { nodes: 60, duration: Duration::from_secs(150), detector: eager(), ..scenario };
        let alone = outcome(&small);
        let confirmed = outcome(&Scenario { confirm: Some(ConfirmConfig::default()), ..small.clone() });
        let name = &small.name;
        if let Err(message) = confirmed.findings.verdict(confirmed.report.seed, false) {
            panic!("{name} with confirmation:\n{}\n{message}", confirmed.report.table());
        }
        let (before, after) = (alone.findings.false_downs.len(), confirmed.findings.false_downs.len());
        assert!(after <= before, "{name}: {before} false downs without confirmation, {after} with");
        assert!(confirmed.report.detected > 0, "{name}: crashes are still detected");
        // Probes only go to suspects: traffic stays close to one heartbeat per node per
        // second, except where loss keeps many nodes suspect.
        let budget = if *name == "lossy" { 1.2 } else { 1.1 };
        assert!(
            confirmed.report.messages_per_node_s <= budget,
            "{name}: {} messages per node per second",
            confirmed.report.messages_per_node_s
        );
    }
}

#[test]
fn on_a_lossy_network_confirmation_removes_the_false_downs_of_an_eager_detector() {
    let lossy = Scenario::from_toml(SHIPPED[3]).unwrap();
    let small = Scenario { nodes: 100, duration: Duration::from_secs(180), detector: eager(), ..lossy };
    let alone = outcome(&small);
    let confirmed = outcome(&Scenario { confirm: Some(ConfirmConfig::default()), ..small });
    assert!(alone.findings.false_downs.len() >= 5, "an eager detector alone pages on 5 % loss");
    assert_eq!(confirmed.findings.false_downs.len(), 0, "{}", confirmed.report.table());
}

#[test]
fn a_partitioned_monitor_reports_reachability_not_deaths() {
    let partition = Scenario::from_toml(SHIPPED[4]).unwrap();
    let small = Scenario {
        nodes: 60,
        duration: Duration::from_secs(360),
        detector: eager(),
        confirm: Some(ConfirmConfig::default()),
        ..partition
    };
    let out = outcome(&small);
    let unreachable = out
        .trace
        .transitions
        .iter()
        .filter(|o| o.transition.reason == rollcall_core::monitor::Reason::Unreachable)
        .count();
    // A third of the fleet is cut off for a minute: each of them is suspect, unreachable.
    assert!(unreachable >= 15, "{unreachable} nodes reported unreachable");
    assert_eq!(out.findings.false_downs.len(), 0);
    assert!(out.findings.verdict(out.report.seed, false).is_ok(), "{}", out.report.table());
}
