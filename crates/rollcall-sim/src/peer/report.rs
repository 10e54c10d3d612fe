//! The figures of a peer-mode run, as a table for people and JSON for programs; the same
//! rows as central mode's table where they mean the same thing.

use super::PeerSettings;
use super::check::PeerFindings;
use super::engine::PeerTrace;
use crate::qos::{self, QosReport};
use crate::report::{quantile, write_checks};
use crate::scenario::{Scenario, format_duration};
use core::time::Duration;
use serde::Serialize;
use std::fmt::Write as _;

/// The summary of one peer-mode run. Times in milliseconds, rates per node and per second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerReport {
    pub mode: &'static str,
    pub scenario: String,
    pub seed: u64,
    pub nodes: u32,
    pub duration_s: f64,
    pub interval_s: f64,
    pub protocol: String,
    pub latency: String,
    pub loss: f64,
    /// The completeness bound: the latest a live observer may declare a crashed node down.
    pub bound_ms: f64,
    pub crashes: usize,
    pub judged: usize,
    pub not_judged: usize,
    /// (crash, observer) pairs detected, and those where the observer had it down already.
    pub detections: usize,
    pub already_down: usize,
    pub detection_p50_ms: Option<f64>,
    pub detection_p99_ms: Option<f64>,
    pub detection_max_ms: Option<f64>,
    /// Every (crash, observer) detection time (the histogram's data).
    pub detection_times_ms: Vec<f64>,
    /// Chen, Toueg and Aguilera's metrics (T_D, T_MR, T_M, P_A), each peer's view of each
    /// other peer being one detector: see `qos.rs`.
    pub qos: QosReport,
    /// Crash to the first suspicion by any peer: mean, in protocol periods.
    pub first_suspicion_mean_periods: Option<f64>,
    /// Observer verdicts, and distinct (node, incarnation) episodes.
    pub false_downs: usize,
    pub false_down_episodes: usize,
    /// Episodes per node-hour: how often a live node is declared down.
    pub false_downs_per_node_hour: f64,
    pub false_suspects: usize,
    pub false_suspect_episodes: usize,
    pub false_suspects_per_node_hour: f64,
    pub excused_downs: usize,
    pub convergence_p50_ms: Option<f64>,
    pub convergence_max_ms: Option<f64>,
    pub messages_per_node_s: f64,
    pub bytes_per_node_s: f64,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub datagrams_cut: u64,
    pub datagrams_rejected: u64,
    pub probes: u64,
    pub failed_probes: u64,
    /// Failed probes per probe: SWIM's "rounds without an ack".
    pub failed_probe_fraction: f64,
    pub refutes: u64,
    pub health_at_end: u64,
    pub events: u64,
    pub view_changes: usize,
    pub trace_hash: String,
    pub violations: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(values: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut values: Vec<f64> = values.map(ms).collect();
    values.sort_by(f64::total_cmp);
    values
}

impl PeerReport {
    pub fn new(
        scenario: &Scenario,
        settings: &PeerSettings,
        trace: &PeerTrace,
        findings: &PeerFindings,
    ) -> PeerReport {
        let times: Vec<f64> = findings.detections.iter().map(|d| ms(*d)).collect();
        let detections = sorted(findings.detections.iter().copied());
        let converge = sorted(findings.convergence.iter().copied());
        let node_seconds = f64::from(scenario.nodes) * scenario.duration.as_secs_f64();
        let node_hours = trace.node_hours();
        let period = scenario.interval.as_secs_f64();
        let first = &findings.first_suspicions;
        PeerReport {
            mode: "peer",
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            nodes: scenario.nodes,
            duration_s: scenario.duration.as_secs_f64(),
            interval_s: period,
            protocol: settings.describe(scenario.interval),
            latency: scenario.network.latency.to_string(),
            loss: scenario.network.loss,
            bound_ms: ms(findings.bound),
            crashes: trace.crashes.len(),
            judged: findings.judged,
            not_judged: findings.not_judged,
            detections: detections.len(),
            already_down: findings.already_down,
            detection_p50_ms: quantile(&detections, 0.5),
            detection_p99_ms: quantile(&detections, 0.99),
            detection_max_ms: detections.last().copied(),
            qos: qos::peer(trace, &times),
            detection_times_ms: times,
            first_suspicion_mean_periods: (!first.is_empty())
                .then(|| first.iter().map(|d| d.as_secs_f64() / period).sum::<f64>() / first.len() as f64),
            false_downs: findings.false_downs,
            false_down_episodes: findings.false_down_episodes,
            false_downs_per_node_hour: findings.false_down_episodes as f64 / node_hours,
            false_suspects: findings.false_suspects,
            false_suspect_episodes: findings.false_suspect_episodes,
            false_suspects_per_node_hour: findings.false_suspect_episodes as f64 / node_hours,
            excused_downs: findings.excused_downs,
            convergence_p50_ms: quantile(&converge, 0.5),
            convergence_max_ms: converge.last().copied(),
            messages_per_node_s: trace.net.sent as f64 / node_seconds,
            bytes_per_node_s: trace.net.bytes as f64 / node_seconds,
            datagrams_sent: trace.net.sent,
            datagrams_lost: trace.net.lost,
            datagrams_cut: trace.net.cut,
            datagrams_rejected: trace.rejected,
            probes: trace.probes,
            failed_probes: trace.failed_probes,
            failed_probe_fraction: trace.failed_probes as f64 / (trace.probes.max(1)) as f64,
            refutes: trace.refutes,
            health_at_end: trace.health_at_end,
            events: trace.events,
            view_changes: trace.seen.len(),
            trace_hash: format!("{:016x}", trace.hash()),
            violations: findings.violations.iter().map(ToString::to_string).collect(),
        }
    }

    /// The summary as an aligned table, for a terminal.
    pub fn table(&self) -> String {
        let seconds = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{:.2}s", ms / 1e3));
        let mut out = String::new();
        let mut row = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<13} {value}");
        };
        row(
            "scenario",
            format!(
                "{} (peer mode, {} peers, {}, seed {})",
                self.scenario,
                self.nodes,
                format_duration(Duration::from_secs_f64(self.duration_s)),
                self.seed
            ),
        );
        row("protocol", self.protocol.clone());
        row("network", format!("latency {}, loss {}%", self.latency, self.loss * 100.0));
        row(
            "crashes",
            format!(
                "{} ({} judged, {} not judged: restarted or too late in the run); {} observer verdicts, {} already down",
                self.crashes, self.judged, self.not_judged, self.detections, self.already_down
            ),
        );
        row(
            "detection",
            format!(
                "p50 {}  p99 {}  max {}  per observer (bound {:.2}s); first suspicion after {} periods on average",
                seconds(self.detection_p50_ms),
                seconds(self.detection_p99_ms),
                seconds(self.detection_max_ms),
                self.bound_ms / 1e3,
                self.first_suspicion_mean_periods.map_or("-".to_string(), |p| format!("{p:.2}")),
            ),
        );
        row(
            "false downs",
            format!(
                "{} episodes ({:.4} per node-hour; {} observer verdicts); false suspicions {} ({:.4} per node-hour; {} views); downs explained by faults {}",
                self.false_down_episodes,
                self.false_downs_per_node_hour,
                self.false_downs,
                self.false_suspect_episodes,
                self.false_suspects_per_node_hour,
                self.false_suspects,
                self.excused_downs
            ),
        );
        for (label, line) in ["QoS", ""].into_iter().zip(self.qos.lines()) {
            row(label, line);
        }
        if self.convergence_max_ms.is_some() {
            row(
                "convergence",
                format!(
                    "p50 {}  max {} from a partition's end to every peer seeing the node up",
                    seconds(self.convergence_p50_ms),
                    seconds(self.convergence_max_ms)
                ),
            );
        }
        row(
            "traffic",
            format!(
                "{:.3} messages and {:.1} bytes per node per second ({} lost, {} cut, {} rejected)",
                self.messages_per_node_s,
                self.bytes_per_node_s,
                self.datagrams_lost,
                self.datagrams_cut,
                self.datagrams_rejected
            ),
        );
        row(
            "probes",
            format!(
                "{} ({} without an ack: {:.3e}); {} refutations; health multipliers at the end sum to {}",
                self.probes, self.failed_probes, self.failed_probe_fraction, self.refutes, self.health_at_end
            ),
        );
        row(
            "events",
            format!(
                "{} processed, {} view changes, trace hash {}",
                self.events, self.view_changes, self.trace_hash
            ),
        );
        write_checks(&mut out, &self.violations, self.seed);
        out
    }
}
