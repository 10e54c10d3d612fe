//! The detection tables of docs/DETECTION.md: every shipped scenario with three detectors
//! (a fixed timeout, phi accrual with Akka's defaults, phi accrual with confirmation), as
//! Markdown rows.
//!
//! `cargo run --release -p rollcall-sim --example detection [NODES] [MINUTES] [--svg FILE]`
//! (default: each scenario's own size, 1,000 nodes for 10 minutes). With `--svg`, also
//! sweeps each detector's knob on the `lan` scenario and draws the three trade-off curves.
//! `--only NAME` runs one scenario (for long runs: `--only lan 10000 360` simulates 2,500
//! node-days).

use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::monitor::ConfirmConfig;
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use rollcall_sim::qos::{format_accuracy, format_recurrence};
use rollcall_sim::{Scenario, simulate};
use std::sync::Arc;

const SHIPPED: [&str; 5] = [
    include_str!("../../../scenarios/lan.toml"),
    include_str!("../../../scenarios/wan.toml"),
    include_str!("../../../scenarios/gc-pauses.toml"),
    include_str!("../../../scenarios/lossy.toml"),
    include_str!("../../../scenarios/partition.toml"),
];

/// The three detectors compared, by name.
pub fn contenders() -> Vec<(&'static str, DetectorConfig, Option<ConfirmConfig>)> {
    // With confirmation the detector only decides when to start asking: suspect early (no
    // acceptable pause), and let the probes decide.
    let eager = PhiAccrualConfig { acceptable_pause: Duration::ZERO, ..PhiAccrualConfig::default() };
    vec![
        ("fixed (x2 + 1s)", DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig::default())), None),
        ("phi (Akka)", DetectorConfig::Phi(Arc::new(PhiAccrualConfig::default())), None),
        ("phi + confirm", DetectorConfig::Phi(Arc::new(eager)), Some(ConfirmConfig::default())),
    ]
}

fn main() -> Result<(), String> {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    let svg = all.iter().position(|a| a == "--svg").map(|at| {
        let path = all.get(at + 1).cloned();
        all.drain(at..(at + 2).min(all.len()));
        path
    });
    let svg = match svg {
        Some(None) => return Err("--svg needs a file name".into()),
        Some(Some(path)) => Some(path),
        None => None,
    };
    let only = all.iter().position(|a| a == "--only").map(|at| {
        let name = all.get(at + 1).cloned().unwrap_or_default();
        all.drain(at..(at + 2).min(all.len()));
        name
    });
    let mut args = all.into_iter();
    let nodes: Option<u32> = args.next().map(|a| a.parse().map_err(|_| "NODES is a number")).transpose()?;
    let minutes: Option<u64> =
        args.next().map(|a| a.parse().map_err(|_| "MINUTES is a number")).transpose()?;
    println!(
        "| scenario | detector | crashes detected | p50 | p99 | max | false downs per 1,000 node-days (count / node-days) | false suspects | messages per node per second | T_D | T_MR | T_M | P_A | P_A (suspect counted) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for text in SHIPPED {
        let scenario = Scenario::from_toml(text)?;
        if only.as_ref().is_some_and(|name| *name != scenario.name) {
            continue;
        }
        let scenario = Scenario {
            nodes: nodes.unwrap_or(scenario.nodes),
            duration: minutes.map_or(scenario.duration, |m| Duration::from_secs(m * 60)),
            ..scenario
        };
        for (name, detector, confirm) in contenders() {
            let outcome = simulate(&Scenario { detector, confirm, ..scenario.clone() }, &mut |_| {})?;
            let r = &outcome.report;
            let s = |ms: Option<f64>| ms.map_or("-".into(), |ms| format!("{:.2} s", ms / 1e3));
            let node_days = f64::from(r.nodes) * r.duration_s / 86_400.0;
            let q = &r.qos.down;
            println!(
                "| {} | {name} | {} of {} | {} | {} | {} | {:.1} ({} / {:.0}) | {} | {:.3} | {} | {} | {} | {} | {} |{}",
                r.scenario,
                r.detected,
                r.crashes,
                s(r.detection_p50_ms),
                s(r.detection_p99_ms),
                s(r.detection_max_ms),
                r.false_downs_per_1000_node_days,
                r.false_downs,
                node_days,
                r.false_suspects,
                r.messages_per_node_s,
                s(q.detection_mean_ms),
                q.mistake_recurrence_s.map_or("-".into(), format_recurrence),
                s(q.mistake_duration_mean_ms),
                format_accuracy(q.query_accuracy),
                format_accuracy(r.qos.suspect_or_down.query_accuracy),
                if r.violations.is_empty() {
                    String::new()
                } else {
                    format!(" {} violations: {}", r.violations.len(), r.violations[0])
                },
            );
        }
    }
    if let Some(path) = svg {
        let lan = Scenario::from_toml(SHIPPED[0])?;
        let lan = Scenario {
            nodes: nodes.unwrap_or(lan.nodes),
            duration: minutes.map_or(lan.duration, |m| Duration::from_secs(m * 60)),
            ..lan
        };
        let knobs: [(&str, Vec<f64>); 3] = [
            ("fixed multiplier", vec![1.5, 2.0, 2.5, 3.0, 4.0, 5.0]),
            ("phi threshold", vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]),
            ("phi suspect level, then probes", vec![0.5, 1.0, 2.0, 3.0, 4.0, 6.0]),
        ];
        let mut curves = Vec::new();
        for ((_, detector, confirm), (knob, thresholds)) in contenders().into_iter().zip(knobs) {
            let scenario = Scenario { detector, confirm, ..lan.clone() };
            curves.push((knob, rollcall_sim::sweep(&scenario, &thresholds, &mut |_, _| {})?));
        }
        let series: Vec<(&str, &[rollcall_sim::SweepPoint])> =
            curves.iter().map(|(knob, points)| (*knob, points.as_slice())).collect();
        let title =
            format!("lan: detection p99 against false downs ({} nodes, {:?})", lan.nodes, lan.duration);
        std::fs::write(&path, rollcall_sim::svg::tradeoffs(&series, &title))
            .map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {path}");
        for (knob, points) in &curves {
            for p in points {
                eprintln!(
                    "{knob} {}: p99 {:?} ms, {} false downs ({:.1} per 1,000 node-days)",
                    p.threshold, p.detection_p99_ms, p.false_downs, p.false_downs_per_1000_node_days
                );
            }
        }
    }
    Ok(())
}
