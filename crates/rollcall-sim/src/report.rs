//! The figures a run produces, as a table for people and as JSON for programs, and the
//! sweep of a detector's threshold that draws the trade-off curve.

use crate::check::{Detection, Findings, check, silence_bound};
use crate::engine::{Progress, run};
use crate::qos::{self, QosReport};
use crate::scenario::{DetectorKnob, Scenario, format_duration};
use crate::trace::Trace;
use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::monitor::Reason;
use rollcall_detect::PhiAccrualConfig;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// The summary of one run. Times are in milliseconds, rates per node and per second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub nodes: u32,
    pub duration_s: f64,
    pub interval_s: f64,
    pub detector: String,
    pub detector_kind: &'static str,
    /// Phi's threshold, or the fixed timeout's multiplier.
    pub threshold: f64,
    pub latency: String,
    pub loss: f64,
    /// The silence after which a perfectly regular node is down, by the detector's formula.
    pub nominal_silence_ms: f64,
    pub crashes: usize,
    pub detected: usize,
    pub already_down: usize,
    pub not_judged: usize,
    /// Detection of silent crashes (every crash but those of `process-crash` faults).
    pub detection_p50_ms: Option<f64>,
    pub detection_p99_ms: Option<f64>,
    pub detection_max_ms: Option<f64>,
    pub detection_mean_ms: Option<f64>,
    /// Every detection time of a silent crash, in crash order (the histogram's data).
    pub detection_times_ms: Vec<f64>,
    /// Crashes of a watched process, which the node's agent reports (`process-crash`), among
    /// `crashes`.
    pub process_crashes: usize,
    /// Of those, detected, and detected by an exit report (the others: every copy was lost
    /// or cut, and silence found them).
    pub process_detected: usize,
    pub process_detected_by_report: usize,
    /// Detection of the crashes of watched processes, whichever way they were found.
    pub process_detection_p50_ms: Option<f64>,
    pub process_detection_p99_ms: Option<f64>,
    pub process_detection_max_ms: Option<f64>,
    /// Chen, Toueg and Aguilera's metrics (T_D, T_MR, T_M, P_A): see `qos.rs`.
    pub qos: QosReport,
    pub false_downs: usize,
    pub false_downs_per_node_hour: f64,
    pub false_downs_per_1000_node_days: f64,
    pub false_suspects: usize,
    pub excused_downs: usize,
    pub convergence_p50_ms: Option<f64>,
    pub convergence_max_ms: Option<f64>,
    pub messages_per_node_s: f64,
    pub bytes_per_node_s: f64,
    pub datagrams_sent: u64,
    pub datagrams_delivered: u64,
    pub datagrams_lost: u64,
    pub datagrams_cut: u64,
    pub datagrams_duplicated: u64,
    /// Datagrams the monitor refused (replays of duplicates and late copies, mostly).
    pub datagrams_rejected: u64,
    pub max_latency_ms: f64,
    pub max_lag_ms: f64,
    pub events: u64,
    pub transitions: usize,
    /// FNV-1a of the ordered transitions, in hex.
    pub trace_hash: String,
    /// Broken promises, one sentence each (empty when all checks passed).
    pub violations: Vec<String>,
}

/// A run, checked and summarised.
pub struct Outcome {
    pub trace: Trace,
    pub findings: Findings,
    pub report: Report,
}

/// Runs `scenario`, checks its trace and summarises it.
pub fn simulate(scenario: &Scenario, progress: &mut dyn FnMut(Progress)) -> Result<Outcome, String> {
    let trace = run(scenario, progress)?;
    let findings = check(&trace, &scenario.detector);
    let report = Report::new(scenario, &trace, &findings);
    Ok(Outcome { trace, findings, report })
}

/// The value at quantile `q` (nearest rank) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    pub fn new(scenario: &Scenario, trace: &Trace, findings: &Findings) -> Report {
        let reported = |d: &&Detection| trace.nodes[d.node as usize].reports_crash_at(d.crash);
        let (exits, silent): (Vec<&Detection>, Vec<&Detection>) =
            findings.detections.iter().partition(reported);
        let times: Vec<f64> = silent.iter().map(|d| ms(d.time())).collect();
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let mut exit_times: Vec<f64> = exits.iter().map(|d| ms(d.time())).collect();
        exit_times.sort_by(f64::total_cmp);
        let mut converge: Vec<f64> = findings.convergence.iter().map(|d| ms(*d)).collect();
        converge.sort_by(f64::total_cmp);
        let node_seconds = f64::from(scenario.nodes) * scenario.duration.as_secs_f64();
        let node_hours = trace.node_hours();
        let false_downs = findings.false_downs.len();
        let regular = scenario.interval.as_secs_f64();
        Report {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            nodes: scenario.nodes,
            duration_s: scenario.duration.as_secs_f64(),
            interval_s: regular,
            detector: match &scenario.confirm {
                None => scenario.detector.describe(),
                Some(c) => format!(
                    "{} + confirm ({} probes {} apart, {} indirect for {})",
                    scenario.detector.describe(),
                    c.probes,
                    format_duration(c.probe_interval),
                    c.indirect,
                    format_duration(c.indirect_timeout)
                ),
            },
            detector_kind: scenario.detector.name(),
            threshold: scenario.detector.threshold(),
            latency: scenario.network.latency.to_string(),
            loss: scenario.network.loss,
            nominal_silence_ms: ms(silence_bound(&scenario.detector, scenario.interval, (regular, 0.0))),
            crashes: trace.crashes.len(),
            detected: findings.detections.len(),
            already_down: findings.already_down,
            not_judged: findings.not_judged,
            detection_p50_ms: quantile(&sorted, 0.50),
            detection_p99_ms: quantile(&sorted, 0.99),
            detection_max_ms: sorted.last().copied(),
            detection_mean_ms: (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64),
            qos: qos::central(trace, &times),
            detection_times_ms: times,
            process_crashes: (trace.crashes.iter())
                .filter(|crash| trace.nodes[crash.node as usize].reports_crash_at(crash.at))
                .count(),
            process_detected: exits.len(),
            process_detected_by_report: exits.iter().filter(|d| d.reason == Reason::ProcessExited).count(),
            process_detection_p50_ms: quantile(&exit_times, 0.50),
            process_detection_p99_ms: quantile(&exit_times, 0.99),
            process_detection_max_ms: exit_times.last().copied(),
            false_downs,
            false_downs_per_node_hour: false_downs as f64 / node_hours,
            false_downs_per_1000_node_days: false_downs as f64 / node_hours * 24.0 * 1000.0,
            false_suspects: findings.false_suspects,
            excused_downs: findings.excused_downs,
            convergence_p50_ms: quantile(&converge, 0.5),
            convergence_max_ms: converge.last().copied(),
            messages_per_node_s: trace.net.sent as f64 / node_seconds,
            bytes_per_node_s: trace.net.bytes as f64 / node_seconds,
            datagrams_sent: trace.net.sent,
            datagrams_delivered: trace.net.delivered,
            datagrams_lost: trace.net.lost,
            datagrams_cut: trace.net.cut,
            datagrams_duplicated: trace.net.duplicated,
            datagrams_rejected: trace.rejected.values().sum(),
            max_latency_ms: ms(trace.max_latency),
            max_lag_ms: ms(findings.max_lag),
            events: trace.events,
            transitions: trace.transitions.len(),
            trace_hash: format!("{:016x}", trace.hash()),
            violations: findings.violations.iter().map(ToString::to_string).collect(),
        }
    }

    /// The summary as a small aligned table, for a terminal.
    pub fn table(&self) -> String {
        let seconds = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{:.2}s", ms / 1e3));
        // An exit report is a latency away: milliseconds, not hundredths of seconds.
        let ms3 = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{ms:.1}ms"));
        let mut out = String::new();
        let mut row = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<13} {value}");
        };
        row(
            "scenario",
            format!(
                "{} ({} nodes, {}, interval {}, seed {})",
                self.scenario,
                self.nodes,
                format_duration(Duration::from_secs_f64(self.duration_s)),
                format_duration(Duration::from_secs_f64(self.interval_s)),
                self.seed
            ),
        );
        row("detector", self.detector.clone());
        row("network", format!("latency {}, loss {}%", self.latency, self.loss * 100.0));
        row(
            "crashes",
            format!(
                "{} ({} detected, {} already down, {} not judged: restarted or too late in the run)",
                self.crashes, self.detected, self.already_down, self.not_judged
            ),
        );
        row(
            "detection",
            format!(
                "p50 {}  p99 {}  max {}  (nominal silence to down {:.2}s)",
                seconds(self.detection_p50_ms),
                seconds(self.detection_p99_ms),
                seconds(self.detection_max_ms),
                self.nominal_silence_ms / 1e3
            ),
        );
        if self.process_crashes > 0 {
            row(
                "process exits",
                format!(
                    "p50 {}  p99 {}  max {}  ({} reported crashes, {} detected: {} by the exit report, the rest by silence)",
                    ms3(self.process_detection_p50_ms),
                    ms3(self.process_detection_p99_ms),
                    ms3(self.process_detection_max_ms),
                    self.process_crashes,
                    self.process_detected,
                    self.process_detected_by_report
                ),
            );
        }
        row(
            "false downs",
            format!(
                "{} ({:.4} per node-hour, {:.1} per 1,000 node-days); false suspects {}; downs explained by faults {}",
                self.false_downs,
                self.false_downs_per_node_hour,
                self.false_downs_per_1000_node_days,
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
                    "p50 {}  max {} from a partition's end to up",
                    seconds(self.convergence_p50_ms),
                    seconds(self.convergence_max_ms)
                ),
            );
        }
        row(
            "traffic",
            format!(
                "{:.3} messages and {:.1} bytes per node per second ({} lost, {} cut, {} duplicated)",
                self.messages_per_node_s,
                self.bytes_per_node_s,
                self.datagrams_lost,
                self.datagrams_cut,
                self.datagrams_duplicated
            ),
        );
        row(
            "events",
            format!(
                "{} processed, {} transitions, trace hash {}",
                self.events, self.transitions, self.trace_hash
            ),
        );
        write_checks(&mut out, &self.violations, self.seed);
        out
    }

    /// The header of [`Report::markdown_row`]'s table.
    pub const MARKDOWN_HEADER: &'static str = "| scenario | detector | crashes | detection p50 | p99 | max | false downs | per 1,000 node-days | downs explained by faults | messages/node/s | checks |\n|---|---|---|---|---|---|---|---|---|---|---|";

    /// One line of a Markdown table, for docs.
    pub fn markdown_row(&self) -> String {
        let s = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{:.2} s", ms / 1e3));
        format!(
            "| {} | {} {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.3} | {} |",
            self.scenario,
            self.detector_kind,
            self.threshold,
            self.detected,
            s(self.detection_p50_ms),
            s(self.detection_p99_ms),
            s(self.detection_max_ms),
            self.false_downs,
            self.false_downs_per_1000_node_days,
            self.excused_downs,
            self.messages_per_node_s,
            if self.violations.is_empty() {
                "pass".to_string()
            } else {
                format!("{} failed", self.violations.len())
            }
        )
    }
}

/// One point of the trade-off curve: the same scenario and seed at one threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    pub threshold: f64,
    pub detection_p50_ms: Option<f64>,
    pub detection_p99_ms: Option<f64>,
    pub false_downs: usize,
    pub false_downs_per_1000_node_days: f64,
    pub violations: usize,
}

/// Runs `scenario` once per threshold (phi's threshold, or the fixed multiplier), with the
/// same seed each time, so that the points differ by the threshold alone.
pub fn sweep(
    scenario: &Scenario,
    thresholds: &[f64],
    progress: &mut dyn FnMut(usize, Progress),
) -> Result<Vec<SweepPoint>, String> {
    let mut points = Vec::with_capacity(thresholds.len());
    for (index, &threshold) in thresholds.iter().enumerate() {
        let detector = match (&scenario.detector, &scenario.confirm) {
            // With confirmation the knob is where probing starts: phi's suspect level.
            (DetectorConfig::Phi(config), Some(_)) => DetectorConfig::Phi(Arc::new(PhiAccrualConfig {
                suspect_threshold: threshold,
                threshold: config.threshold.max(threshold),
                ..PhiAccrualConfig::clone(config)
            })),
            (detector, _) => detector.with_threshold(threshold),
        };
        let scenario = Scenario { detector, ..scenario.clone() };
        let outcome = simulate(&scenario, &mut |p| progress(index, p))?;
        let report = outcome.report;
        points.push(SweepPoint {
            threshold,
            detection_p50_ms: report.detection_p50_ms,
            detection_p99_ms: report.detection_p99_ms,
            false_downs: report.false_downs,
            false_downs_per_1000_node_days: report.false_downs_per_1000_node_days,
            violations: report.violations.len(),
        });
    }
    Ok(points)
}

/// The table's last row: the checkers' verdict, and the first violations with the seed that
/// reproduces them (both modes' reports end with it).
pub(crate) fn write_checks(out: &mut String, violations: &[String], seed: u64) {
    if violations.is_empty() {
        let _ = writeln!(out, "{:<13} completeness, no resurrection, convergence: all passed", "checks");
        return;
    }
    let _ = writeln!(out, "{:<13} {} FAILED", "checks", violations.len());
    for violation in violations.iter().take(10) {
        let _ = writeln!(out, "  {violation}");
    }
    let _ = writeln!(out, "  rerun with ROLLCALL_SEED={seed}");
}
