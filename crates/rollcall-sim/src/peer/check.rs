//! The peer-mode checkers. They read only a [`PeerTrace`]: the ground truth of what every
//! node did and every view change the peers reported; they never call into a peer. The
//! bound is recomputed here from the settings (see [`completeness_bound`]).
//!
//! - **Completeness**: every crashed node is declared down (or left) by every live observer
//!   within the bound, unless the observer had it down already.
//! - **Accuracy**: a down (or suspect) of a node that no fault touched within the bound
//!   before it, seen by an observer not cut off from it, is false. Counted, not refused.
//! - **No resurrection**: after an observer declared a node down or left at incarnation
//!   `i`, it sees it up again only at an incarnation above `i` that the node really took.
//! - **Convergence**: at the end, every observer sees up every node that is up, among those
//!   untouched by faults during the last bound of the run; and after a partition heals,
//!   the time until every observer sees the cut nodes up again is reported.

use super::PeerSettings;
use super::engine::{PeerTrace, Seen};
use crate::scenario::Scenario;
use crate::trace::{NodeTruth, Span};
use core::fmt;
use core::time::Duration;
use rollcall_core::Instant;
use rollcall_core::swim::{MemberState, suspicion_bounds};
use std::collections::{BTreeMap, BTreeSet};

/// Periods allowed for some peer to probe the crashed node (the chance that nobody does in
/// 10 periods is about `e^-10` with uniform targets).
const FIRST_PROBE_PERIODS: u32 = 10;

/// The latest a crashed node may be declared down by a live observer, after the crash:
/// `10 × T + β × α × max(1, log10 n) × T + λ × ceil(log10(n + 1)) × T`: ten periods for
/// someone to probe it, the longest suspicion timeout, and the retransmit limit in periods
/// for the verdict to spread.
pub fn completeness_bound(scenario: &Scenario, settings: &PeerSettings) -> Duration {
    let config = settings.swim_config(scenario.interval, scenario.nodes);
    let (_, max) = suspicion_bounds(&config, scenario.nodes);
    let spread = config.retransmit_mult * (f64::from(scenario.nodes) + 1.0).log10().ceil().max(1.0) as u32;
    scenario.interval * (FIRST_PROBE_PERIODS + spread) + max
}

/// A broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerViolation {
    /// A live observer never declared a crashed node down, or did so after the bound.
    Missed { observer: u32, node: u32, crash: Instant, bound: Instant, at: Option<Instant> },
    /// An observer saw a node up again without a newer incarnation the node really took.
    Resurrection { observer: u32, node: u32, at: Instant, incarnation: u32, down_at: u32 },
    /// At the end, an observer does not see up a node that is up and was left alone.
    NotConverged { observer: u32, node: u32, state: MemberState },
}

impl fmt::Display for PeerViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |at: &Instant| Duration::from_nanos(at.as_nanos()).as_secs_f64();
        match self {
            PeerViolation::Missed { observer, node, crash, bound, at: None } => write!(
                f,
                "completeness: node {node} crashed at {:.3}s and peer {observer} never declared it down (bound {:.3}s)",
                s(crash),
                s(bound)
            ),
            PeerViolation::Missed { observer, node, crash, bound, at: Some(at) } => write!(
                f,
                "completeness: node {node} crashed at {:.3}s and peer {observer} declared it down at {:.3}s, after the bound {:.3}s",
                s(crash),
                s(at),
                s(bound)
            ),
            PeerViolation::Resurrection { observer, node, at, incarnation, down_at } => write!(
                f,
                "no resurrection: peer {observer} saw node {node} up at {:.3}s with incarnation {incarnation}, not above {down_at} or never taken by the node",
                s(at)
            ),
            PeerViolation::NotConverged { observer, node, state } => {
                write!(f, "convergence: at the end peer {observer} still sees node {node} {}", state.as_str())
            }
        }
    }
}

/// What the checkers found in one peer-mode trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerFindings {
    pub bound: Duration,
    /// Crash to down, per (crash, live observer).
    pub detections: Vec<Duration>,
    /// Crash to the first suspicion by anyone, per judged crash.
    pub first_suspicions: Vec<Duration>,
    /// Crashes judged (the node stayed down and the run lasted past the bound).
    pub judged: usize,
    /// (crash, observer) pairs where the observer had the node down already.
    pub already_down: usize,
    /// Crashes not judged: restarted or too late in the run.
    pub not_judged: usize,
    /// Observer verdicts `down` on a node no fault explains.
    pub false_downs: usize,
    /// Distinct (node, incarnation) among the false downs: how many times a live node was
    /// declared down, whoever noticed.
    pub false_down_episodes: usize,
    /// Observer views `suspect` of a node no fault explains, and their distinct
    /// (node, incarnation) episodes (one failed probe, seen by many peers).
    pub false_suspects: usize,
    pub false_suspect_episodes: usize,
    /// Downs explained by a fault of the node or a cut between the two.
    pub excused_downs: usize,
    /// Partition heal to every observer seeing the cut node up, per (cut node, heal).
    pub convergence: Vec<Duration>,
    pub violations: Vec<PeerViolation>,
}

impl PeerFindings {
    /// `Ok` when every promise held (and, when `strict`, no false down happened).
    pub fn verdict(&self, seed: u64, strict: bool) -> Result<(), String> {
        let mut lines: Vec<String> = self.violations.iter().take(20).map(ToString::to_string).collect();
        if strict && self.false_downs > 0 {
            lines.push(format!("accuracy: {} false downs of live, reachable nodes", self.false_downs));
        }
        if lines.is_empty() {
            return Ok(());
        }
        lines.push(format!("rerun with ROLLCALL_SEED={seed}"));
        Err(lines.join("\n"))
    }
}

fn meets(spans: &[Span], from: Instant, to: Instant) -> bool {
    spans.iter().any(|span| span.meets(from, to))
}

/// Whether anything but a clean run touched `truth` during `[from, to]`.
fn disturbed(truth: &NodeTruth, from: Instant, to: Instant) -> bool {
    truth.faulty_during(from, to)
        || truth.restarts.iter().any(|&at| from <= at && at <= to)
        || truth.slow.iter().any(|(span, _)| span.meets(from, to))
}

pub(super) fn check(trace: &PeerTrace, scenario: &Scenario, settings: &PeerSettings) -> PeerFindings {
    let bound = completeness_bound(scenario, settings);
    let mut findings = PeerFindings { bound, ..PeerFindings::default() };
    let mut pairs: BTreeMap<(u32, u32), Vec<&Seen>> = BTreeMap::new();
    for seen in &trace.seen {
        pairs.entry((seen.observer, seen.subject)).or_default().push(seen);
    }
    completeness(trace, &pairs, bound, &mut findings);
    accuracy(trace, bound, &mut findings);
    resurrection(trace, &pairs, &mut findings);
    convergence(trace, &pairs, bound, &mut findings);
    findings
}

fn completeness(
    trace: &PeerTrace,
    pairs: &BTreeMap<(u32, u32), Vec<&Seen>>,
    bound: Duration,
    out: &mut PeerFindings,
) {
    let n = trace.nodes.len() as u32;
    // The first accusation (suspect, down or left) of each crashed node after its crash, in
    // one pass over the view changes.
    let mut crashes_of: BTreeMap<u32, Vec<(Instant, usize)>> = BTreeMap::new();
    for (index, crash) in trace.crashes.iter().enumerate() {
        crashes_of.entry(crash.node).or_default().push((crash.at, index));
    }
    let mut first_accusation: BTreeMap<usize, Instant> = BTreeMap::new();
    for seen in trace.seen.iter().filter(|s| s.to != MemberState::Up) {
        let Some(crashes) = crashes_of.get(&seen.subject) else { continue };
        let Some(&(_, index)) = crashes.iter().rev().find(|(at, _)| *at <= seen.at) else { continue };
        first_accusation.entry(index).or_insert(seen.at);
    }
    for (index, crash) in trace.crashes.iter().enumerate() {
        let deadline = crash.at + bound;
        if deadline > trace.end || crash.restart.is_some_and(|at| at <= deadline) {
            out.not_judged += 1;
            continue;
        }
        out.judged += 1;
        if let Some(&first) = first_accusation.get(&index) {
            out.first_suspicions.push(first - crash.at);
        }
        for observer in (0..n).filter(|&o| o != crash.node) {
            if disturbed(&trace.nodes[observer as usize], crash.at, deadline) {
                continue;
            }
            let seen = pairs.get(&(observer, crash.node)).map_or(&[][..], Vec::as_slice);
            let before = seen.iter().take_while(|s| s.at < crash.at).last().map(|s| s.to);
            if matches!(before, Some(MemberState::Down | MemberState::Left)) {
                out.already_down += 1;
                continue;
            }
            let down = seen
                .iter()
                .find(|s| s.at >= crash.at && matches!(s.to, MemberState::Down | MemberState::Left));
            match down {
                Some(s) if s.at <= deadline => out.detections.push(s.at - crash.at),
                other => out.violations.push(PeerViolation::Missed {
                    observer,
                    node: crash.node,
                    crash: crash.at,
                    bound: deadline,
                    at: other.map(|s| s.at),
                }),
            }
        }
    }
}

fn accuracy(trace: &PeerTrace, bound: Duration, out: &mut PeerFindings) {
    let mut down_episodes = BTreeSet::new();
    let mut suspect_episodes = BTreeSet::new();
    for seen in &trace.seen {
        if !matches!(seen.to, MemberState::Down | MemberState::Suspect) {
            continue;
        }
        let from = seen.at - bound;
        let subject = &trace.nodes[seen.subject as usize];
        let observer = &trace.nodes[seen.observer as usize];
        // A partition separates the two if either side was cut during the window.
        let explained = subject.faulty_during(from, seen.at)
            || meets(&observer.cut, from, seen.at)
            || subject.restarts.iter().any(|&at| from <= at && at <= seen.at);
        let episode = (seen.subject, seen.incarnation);
        match (seen.to, explained) {
            (MemberState::Down, true) => out.excused_downs += 1,
            (MemberState::Down, false) => {
                out.false_downs += 1;
                down_episodes.insert(episode);
            }
            (_, false) => {
                out.false_suspects += 1;
                suspect_episodes.insert(episode);
            }
            _ => {}
        }
    }
    out.false_down_episodes = down_episodes.len();
    out.false_suspect_episodes = suspect_episodes.len();
}

fn resurrection(trace: &PeerTrace, pairs: &BTreeMap<(u32, u32), Vec<&Seen>>, out: &mut PeerFindings) {
    for (&(observer, node), seen) in pairs {
        let restarts = &trace.nodes[observer as usize].restarts;
        let mut down_at: Option<u32> = None;
        let mut previous = Instant::ZERO;
        for s in seen {
            // The observer restarted since its last view change: it remembers nothing.
            if restarts.iter().any(|&at| previous < at && at <= s.at) {
                down_at = None;
            }
            previous = s.at;
            match s.to {
                MemberState::Down | MemberState::Left => down_at = Some(s.incarnation),
                MemberState::Up => {
                    if let Some(down) = down_at.take() {
                        let taken = trace.incarnations[node as usize]
                            .iter()
                            .any(|&(at, incarnation)| at <= s.at && incarnation == s.incarnation);
                        if s.incarnation <= down || !taken {
                            out.violations.push(PeerViolation::Resurrection {
                                observer,
                                node,
                                at: s.at,
                                incarnation: s.incarnation,
                                down_at: down,
                            });
                        }
                    }
                }
                MemberState::Suspect => {}
            }
        }
    }
}

fn convergence(
    trace: &PeerTrace,
    pairs: &BTreeMap<(u32, u32), Vec<&Seen>>,
    bound: Duration,
    out: &mut PeerFindings,
) {
    let settle = trace.end - bound;
    if trace.end < Instant::ZERO + bound {
        return;
    }
    let quiet = |node: u32| {
        let truth = &trace.nodes[node as usize];
        !disturbed(truth, settle, trace.end) && !truth.dead_at(settle)
    };
    // End state: only pairs with view changes can be anything but up (a warm start begins
    // with everyone up, a join with everyone learned as up).
    // A suspicion is a transient (it ends in a refutation or a down within the bound), so
    // only one older than the bound is stuck.
    for (&(observer, node), seen) in pairs {
        // A restarted observer starts over with a fresh table: its old life's views are gone.
        let reborn = trace.nodes[observer as usize].restarts.last().copied().unwrap_or(Instant::ZERO);
        let Some(last) = seen.last().filter(|s| s.at >= reborn) else { continue };
        let stuck = match last.to {
            MemberState::Up => false,
            MemberState::Suspect => last.at < settle,
            MemberState::Down | MemberState::Left => true,
        };
        if stuck && quiet(observer) && quiet(node) {
            out.violations.push(PeerViolation::NotConverged { observer, node, state: last.to });
        }
    }
    // Heal times: from the end of each cut span to the last observer seeing the node up.
    for (node, truth) in trace.nodes.iter().enumerate() {
        for span in truth.cut.iter().filter(|span| span.to < settle) {
            let mut worst = Duration::ZERO;
            for observer in 0..trace.nodes.len() as u32 {
                let Some(seen) = pairs.get(&(observer, node as u32)) else { continue };
                let at_heal = seen.iter().take_while(|s| s.at <= span.to).last().map(|s| s.to);
                if matches!(at_heal, Some(MemberState::Down | MemberState::Suspect))
                    && let Some(up) = seen.iter().find(|s| s.at > span.to && s.to == MemberState::Up)
                {
                    worst = worst.max(up.at - span.to);
                }
            }
            out.convergence.push(worst);
        }
    }
}
