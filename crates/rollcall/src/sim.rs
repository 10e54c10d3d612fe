//! `rollcall sim`: runs a scenario in the deterministic simulator (`rollcall-sim`), prints
//! the summary, and writes `report.json` and the SVG plots.
//!
//! This shell only loads the file, applies the flags on top, shows progress (the one thing
//! here that reads the wall clock) and writes the outputs; the simulator does the rest.

use crate::cli::{DetectorKind, SimArgs};
use anyhow::{Context, bail};
use rollcall_core::DetectorConfig;
use rollcall_sim::peer::PeerSettings;
use rollcall_sim::{DetectorKnob, Fault, Latency, Progress, Scenario, Selector, SweepPoint, When, svg};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs longer than this (wall time) get a progress line on stderr.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

pub fn main(args: SimArgs) -> anyhow::Result<()> {
    let (scenario, peer) = scenario(&args)?;
    let mut progress = ProgressLine::new();
    if let Some(peer) = peer.or_else(|| (args.mode == "peer").then(Default::default)) {
        return peer_main(&args, &scenario, &peer, &mut progress);
    }
    let outcome = rollcall_sim::simulate(&scenario, &mut |p| progress.show("run", p))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    progress.clear();
    print!("{}", outcome.report.table());

    let sweep = if args.sweep {
        let thresholds = scenario.detector.default_sweep();
        let count = thresholds.len();
        let points = rollcall_sim::sweep(&scenario, &thresholds, &mut |index, p| {
            progress.show(&format!("sweep {}/{count}", index + 1), p)
        })
        .map_err(|error| anyhow::anyhow!("{error}"))?;
        progress.clear();
        print_sweep(&scenario, &points);
        Some(points)
    } else {
        None
    };

    write_outputs(&args.out, &scenario, &outcome.report, sweep.as_deref())?;
    println!("wrote {}", args.out.display());
    if !outcome.report.violations.is_empty() {
        bail!(
            "{} checks failed (listed above); rerun with ROLLCALL_SEED={}",
            outcome.report.violations.len(),
            scenario.seed
        );
    }
    Ok(())
}

/// Peer mode: runs SWIM peers instead of agents and a monitor (`rollcall_sim::peer`).
fn peer_main(
    args: &SimArgs,
    scenario: &Scenario,
    peer: &PeerSettings,
    progress: &mut ProgressLine,
) -> anyhow::Result<()> {
    if args.sweep {
        bail!("--sweep moves a detector's threshold: it applies to central mode only");
    }
    let outcome = rollcall_sim::peer::simulate(scenario, peer, &mut |p| progress.show("run", p))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    progress.clear();
    let report = &outcome.report;
    print!("{}", report.table());
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(report)?)?;
    let times: Vec<f64> = report.detection_times_ms.iter().map(|ms| ms / 1e3).collect();
    let title = format!("{}: detection time after a crash, per observer (peer mode)", scenario.name);
    std::fs::write(args.out.join("detection.svg"), svg::histogram(&times, 30, &title))?;
    println!("wrote {}", args.out.display());
    if !report.violations.is_empty() {
        bail!(
            "{} checks failed (listed above); rerun with ROLLCALL_SEED={}",
            report.violations.len(),
            scenario.seed
        );
    }
    Ok(())
}

/// The scenario file (or the default scenario), with the flags applied on top, and the peer
/// settings if the file asks for peer mode.
fn scenario(args: &SimArgs) -> anyhow::Result<(Scenario, Option<PeerSettings>)> {
    let mut peer = None;
    let mut scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scenario file {}", path.display()))?;
            let (text, settings) = rollcall_sim::peer::split_scenario(&text)
                .map_err(|error| anyhow::anyhow!("scenario file {}: {error}", path.display()))?;
            peer = settings;
            Scenario::from_toml(&text)
                .map_err(|error| anyhow::anyhow!("scenario file {}: {error}", path.display()))?
        }
        None => Scenario::default(),
    };
    if let Some(nodes) = args.nodes {
        scenario.nodes = nodes;
    }
    if let Some(duration) = args.duration {
        scenario.duration = duration;
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(loss) = &args.loss {
        scenario.network.loss = parse_fraction(loss).context("--loss")?;
    }
    if let Some(latency) = &args.latency {
        scenario.network.latency = Latency::parse(latency).map_err(|e| anyhow::anyhow!("--latency: {e}"))?;
    }
    if let Some(kind) = args.detector
        && kind_of(&scenario.detector) != kind
    {
        scenario.detector = match kind {
            DetectorKind::Phi => DetectorConfig::Phi(Arc::new(Default::default())),
            DetectorKind::Fixed => DetectorConfig::Fixed(Arc::new(Default::default())),
        };
    }
    if let Some(threshold) = args.threshold {
        scenario.detector = scenario.detector.with_threshold(threshold);
    }
    if args.confirm && scenario.confirm.is_none() {
        scenario.confirm = Some(rollcall_core::monitor::ConfirmConfig::default());
    }
    let span = |fraction: f64| scenario.duration.mul_f64(fraction);
    if let Some(crash) = &args.crash {
        let nodes = Selector::parse(crash).map_err(|e| anyhow::anyhow!("--crash: {e}"))?;
        let at = When::Between(span(0.1), span(0.9));
        scenario.faults.retain(|fault| !matches!(fault, Fault::Crash { .. }));
        scenario.faults.push(Fault::Crash { nodes, at, restart_after: None });
    }
    if let Some(partition) = &args.partition {
        let nodes = Selector::parse(partition).map_err(|e| anyhow::anyhow!("--partition: {e}"))?;
        let (from, to) = (span(0.4), span(0.6));
        scenario.faults.retain(|fault| !matches!(fault, Fault::Partition { .. }));
        scenario.faults.push(Fault::Partition { nodes, from, to, direction: rollcall_sim::Direction::Both });
    }
    scenario.validate().map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok((scenario, peer))
}

fn kind_of(detector: &DetectorConfig) -> DetectorKind {
    match detector {
        DetectorConfig::Phi(_) => DetectorKind::Phi,
        DetectorConfig::Fixed(_) => DetectorKind::Fixed,
    }
}

/// `0.01` or `1%`.
fn parse_fraction(text: &str) -> anyhow::Result<f64> {
    let value = match text.trim().strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    };
    match value {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => bail!("{text:?} is not a probability (0.01 or 1%)"),
    }
}

fn print_sweep(scenario: &Scenario, points: &[SweepPoint]) {
    let knob = match scenario.detector {
        DetectorConfig::Phi(_) => "threshold",
        DetectorConfig::Fixed(_) => "multiplier",
    };
    let seconds = |ms: Option<f64>| ms.map_or("-".to_string(), |ms| format!("{:.2}s", ms / 1e3));
    println!("\nsweep ({}, seed {}):", scenario.detector.name(), scenario.seed);
    println!("{knob:>10}  {:>9}  {:>9}  {:>11}  {:>19}", "p50", "p99", "false downs", "per 1,000 node-days");
    for p in points {
        println!(
            "{:>10}  {:>9}  {:>9}  {:>11}  {:>19.1}{}",
            p.threshold,
            seconds(p.detection_p50_ms),
            seconds(p.detection_p99_ms),
            p.false_downs,
            p.false_downs_per_1000_node_days,
            if p.violations > 0 { format!("  ({} checks failed)", p.violations) } else { String::new() }
        );
    }
}

fn write_outputs(
    dir: &Path,
    scenario: &Scenario,
    report: &rollcall_sim::Report,
    sweep: Option<&[SweepPoint]>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))
    };
    /// The file's shape: the run's figures, then the sweep's points if one ran.
    #[derive(serde::Serialize)]
    struct Output<'a> {
        report: &'a rollcall_sim::Report,
        sweep: Option<&'a [SweepPoint]>,
    }
    write("report.json", &serde_json::to_string_pretty(&Output { report, sweep })?)?;
    let times: Vec<f64> = report.detection_times_ms.iter().map(|ms| ms / 1e3).collect();
    let title = format!("{}: detection time after a crash, {}", scenario.name, scenario.detector.name());
    write("detection.svg", &svg::histogram(&times, 30, &title))?;
    if let Some(points) = sweep {
        let knob = match (&scenario.detector, &scenario.confirm) {
            // With confirmation the sweep moves where probing starts (see `rollcall_sim::sweep`).
            (DetectorConfig::Phi(_), Some(_)) => "phi suspect level (then probes)",
            (DetectorConfig::Phi(_), None) => "phi threshold",
            (DetectorConfig::Fixed(_), _) => "fixed multiplier",
        };
        let title = format!("{}: detection p99 vs false downs as the {knob} moves", scenario.name);
        write("tradeoff.svg", &svg::tradeoff(points, knob, &title))?;
    }
    Ok(())
}

/// A `\r`-updated line on stderr, shown only on a terminal and only once a run has taken
/// longer than [`PROGRESS_AFTER`].
struct ProgressLine {
    started: Instant,
    terminal: bool,
    shown: bool,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        ProgressLine { started: Instant::now(), terminal: std::io::stderr().is_terminal(), shown: false }
    }

    fn show(&mut self, label: &str, p: Progress) {
        if !self.terminal || self.started.elapsed() < PROGRESS_AFTER {
            return;
        }
        let fraction = (p.now.as_secs_f64() / p.end.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
        let filled = (fraction * 30.0) as usize;
        let bar: String = (0..30).map(|i| if i < filled { '=' } else { ' ' }).collect();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r{label} [{bar}] {:>3.0}%  {:.0}s of {:.0}s virtual, {:.1}M events",
            fraction * 100.0,
            p.now.as_secs_f64(),
            p.end.as_secs_f64(),
            p.events as f64 / 1e6
        );
        let _ = stderr.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{:80}\r", "");
            let _ = stderr.flush();
            self.shown = false;
        }
    }
}
