//! The checkers: they read a [`Trace`] and judge the monitor's transitions against what
//! really happened. They never call into the monitor or the detectors: the bounds are
//! recomputed here from the detector's settings and the arrivals the network delivered.
//!
//! - **Completeness**: every crashed node is declared down, by the instant the documented
//!   formula gives from its last arrival (see [`silence_bound`]).
//! - **Accuracy**: a down whose silence no fault explains (the node was not dead, stalled or
//!   cut off at any instant of it) is a false down. They are counted, not refused: a lossy
//!   network makes some, and how many is the figure users want.
//! - **No resurrection**: a node declared down comes back up only on a datagram it really
//!   sent again (newer than anything delivered before), while alive.
//! - **Convergence**: a node cut off by a partition comes back up after the partition
//!   heals, unless it died or was cut off again first.

use crate::trace::{Cause, Observed, Trace, state_after, state_before};
use core::fmt;
use core::time::Duration;
use rollcall_core::DetectorConfig;
use rollcall_core::Instant;
use rollcall_core::monitor::{NodeState, Reason};
use rollcall_detect::PhiAccrualConfig;

/// The slack allowed on top of a computed deadline: the detector keeps its window in whole
/// microseconds and the timer wheel works in milliseconds.
pub const SLACK: Duration = Duration::from_millis(1);

/// One crash the monitor noticed in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    pub node: u32,
    pub crash: Instant,
    /// The transition's `at` (when it should have happened) and `noticed`.
    pub at: Instant,
    pub noticed: Instant,
    /// The latest instant the formula allows.
    pub bound: Instant,
    /// Why the monitor declared it down: `process-exited` when an exit report arrived.
    pub reason: Reason,
}

impl Detection {
    /// From the crash to the monitor noticing it.
    pub fn time(&self) -> Duration {
        self.noticed - self.crash
    }
}

/// A broken promise, with what a person needs to find it in the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Completeness: a crashed node was never declared down.
    Missed { node: u32, crash: Instant, bound: Instant },
    /// Completeness: declared down, but after its bound.
    Late { node: u32, crash: Instant, at: Instant, bound: Instant },
    /// A node came back up without having sent anything new while alive.
    Resurrection { node: u32, at: Instant },
    /// A partition healed but the node never came back up.
    NotConverged { node: u32, healed: Instant },
    /// A transition dated after it was noticed.
    FutureDated { node: u32, at: Instant, noticed: Instant },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |at: &Instant| Duration::from_nanos(at.as_nanos()).as_secs_f64();
        match self {
            Violation::Missed { node, crash, bound } => write!(
                f,
                "completeness: node {node} crashed at {:.3}s and was never declared down (bound {:.3}s)",
                s(crash),
                s(bound)
            ),
            Violation::Late { node, crash, at, bound } => write!(
                f,
                "completeness: node {node} crashed at {:.3}s and was declared down at {:.3}s, after its bound {:.3}s",
                s(crash),
                s(at),
                s(bound)
            ),
            Violation::Resurrection { node, at } => write!(
                f,
                "no resurrection: node {node} came back up at {:.3}s without sending anything new while alive",
                s(at)
            ),
            Violation::NotConverged { node, healed } => write!(
                f,
                "convergence: node {node} never came back up after its partition healed at {:.3}s",
                s(healed)
            ),
            Violation::FutureDated { node, at, noticed } => write!(
                f,
                "clock: a transition of node {node} is dated {:.3}s but was noticed at {:.3}s",
                s(at),
                s(noticed)
            ),
        }
    }
}

/// What the checkers found in one trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    pub detections: Vec<Detection>,
    /// Crashes of nodes the monitor had already declared down (a partition, a stall).
    pub already_down: usize,
    /// Crashes not judged: the node restarted, or the run ended, before the bound; or the
    /// monitor never heard from it.
    pub not_judged: usize,
    /// Indices into [`Trace::transitions`] of downs no fault explains.
    pub false_downs: Vec<usize>,
    /// Downs explained by a crash, a stall or a cut path.
    pub excused_downs: usize,
    /// Suspects no fault explains (they page nobody, but show how close the detector runs).
    pub false_suspects: usize,
    /// From a partition's end to the node being up again.
    pub convergence: Vec<Duration>,
    /// The longest gap between a transition's `at` and `noticed`.
    pub max_lag: Duration,
    pub violations: Vec<Violation>,
}

impl Findings {
    /// `Ok` when every promise held (and, when `strict`, no false down happened either);
    /// otherwise one line per finding, ending with how to replay the run.
    pub fn verdict(&self, seed: u64, strict: bool) -> Result<(), String> {
        let mut lines: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        if strict && !self.false_downs.is_empty() {
            lines.push(format!("accuracy: {} false downs of live, reachable nodes", self.false_downs.len()));
        }
        if lines.is_empty() {
            return Ok(());
        }
        lines.truncate(20);
        lines.push(format!("rerun with ROLLCALL_SEED={seed}"));
        Err(lines.join("\n"))
    }
}

/// The longest silence after its last arrival before a node must be down, by the formula
/// in docs/PROTOCOL.md: `interval * multiplier + grace` for the fixed timeout;
/// `mean + acceptable_pause + y(threshold) * max(std dev, min std dev)` for phi, with the
/// window's mean and standard deviation and `y` the inverse of Akka's logistic phi.
pub fn silence_bound(detector: &DetectorConfig, interval: Duration, window: (f64, f64)) -> Duration {
    match detector {
        DetectorConfig::Fixed(c) => interval.mul_f64(c.multiplier) + c.grace,
        DetectorConfig::Phi(c) => {
            let (mean, std) = window;
            let sigma = std.max(c.min_std_deviation.as_secs_f64());
            let seconds = mean + c.acceptable_pause.as_secs_f64() + logistic_y(c.threshold) * sigma;
            Duration::from_secs_f64(seconds.max(0.0))
        }
    }
}

/// The longest silence before a node must be suspect: [`silence_bound`] at the suspect
/// level (`interval * multiplier` for the fixed timeout, phi's `suspect_threshold`).
pub fn suspect_silence_bound(detector: &DetectorConfig, interval: Duration, window: (f64, f64)) -> Duration {
    match detector {
        DetectorConfig::Fixed(c) => interval.mul_f64(c.multiplier),
        DetectorConfig::Phi(c) => {
            let at_suspect =
                PhiAccrualConfig { threshold: c.suspect_threshold, ..PhiAccrualConfig::clone(c) };
            silence_bound(&DetectorConfig::Phi(at_suspect.into()), interval, window)
        }
    }
}

/// The score `y` at which `log10(1 + exp(y (1.5976 + 0.070566 y^2)))` equals `phi`, by
/// bisection (independent of the detector's closed form, on purpose).
pub fn logistic_y(phi: f64) -> f64 {
    let f = |y: f64| {
        let z = y * (1.5976 + 0.070566 * y * y);
        let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
        softplus / core::f64::consts::LN_10
    };
    let (mut low, mut high) = (-50.0, 50.0);
    for _ in 0..200 {
        let mid = (low + high) / 2.0;
        if f(mid) < phi { low = mid } else { high = mid }
    }
    high
}

/// Runs every checker over `trace`, for a monitor that ran `detector`.
pub fn check(trace: &Trace, detector: &DetectorConfig) -> Findings {
    let mut findings = Findings::default();
    let mut by_node: Vec<Vec<&Observed>> = vec![Vec::new(); trace.nodes.len()];
    for observed in &trace.transitions {
        by_node[observed.node as usize].push(observed);
    }
    completeness(trace, detector, &by_node, &mut findings);
    for (index, observed) in trace.transitions.iter().enumerate() {
        let t = &observed.transition;
        if t.at > t.noticed {
            findings.violations.push(Violation::FutureDated {
                node: observed.node,
                at: t.at,
                noticed: t.noticed,
            });
        }
        findings.max_lag = findings.max_lag.max(t.noticed - t.at);
        let truth = &trace.nodes[observed.node as usize];
        let explained = truth.faulty_during(observed.silence_from.unwrap_or(Instant::ZERO), t.at);
        match t.to {
            NodeState::Down if explained => findings.excused_downs += 1,
            NodeState::Down => findings.false_downs.push(index),
            NodeState::Suspect if !explained => findings.false_suspects += 1,
            _ => {}
        }
        if t.from == NodeState::Down && t.to == NodeState::Up {
            let honest = match observed.cause {
                Cause::Datagram { sent, new } => new && !truth.dead_at(sent),
                Cause::Timeout => false,
            };
            if !honest {
                findings.violations.push(Violation::Resurrection { node: observed.node, at: t.noticed });
            }
        }
    }
    convergence(trace, &by_node, &mut findings);
    findings
}

fn completeness(
    trace: &Trace,
    detector: &DetectorConfig,
    by_node: &[Vec<&Observed>],
    findings: &mut Findings,
) {
    for crash in &trace.crashes {
        let Some(last) = crash.arrivals.last else {
            // Never heard from: the monitor has nothing to declare down.
            findings.not_judged += 1;
            continue;
        };
        let window = crash.arrivals.moments();
        let mut bound = last + silence_bound(detector, trace.interval, window) + SLACK;
        if let Some(confirm) = &trace.confirm {
            // Suspect, then one round of unanswered probes; or, when the probe budget is
            // spent, the detector alone: whichever is later. An answered probe is a sign of
            // life the suspect deadline may count from.
            let alive_at = crash.answered.map_or(last, |answered| answered.max(last));
            let confirmed =
                alive_at + suspect_silence_bound(detector, trace.interval, window) + confirm.round_length();
            bound = bound.max(confirmed + SLACK);
            // Already suspect when it crashed (answering probes without heartbeats, or
            // reachable only through others): the next recheck finds it gone.
            let standing = by_node[crash.node as usize]
                .iter()
                .take_while(|o| o.transition.noticed <= crash.at)
                .last()
                .filter(|o| o.transition.to == NodeState::Suspect)
                .map(|o| o.transition.reason);
            if matches!(standing, Some(Reason::HeartbeatsMissing | Reason::Unreachable)) {
                bound = bound.max(crash.at + confirm.recheck + confirm.round_length() + SLACK);
            }
        }
        if crash.restart.is_some_and(|restart| restart <= bound) || bound > trace.end {
            findings.not_judged += 1;
            continue;
        }
        let transitions = &by_node[crash.node as usize];
        // Down already when the last datagram of the crashed generation arrived (a false
        // down not yet recovered, a partition): nothing is left to declare.
        if state_after(transitions, last) == NodeState::Down {
            findings.already_down += 1;
            continue;
        }
        // The first down of the silence that began at the last arrival, before the node
        // came back as a new generation.
        let until = crash.restart.unwrap_or(trace.end);
        let down = transitions.iter().find(|o| {
            o.transition.to == NodeState::Down && o.transition.at > last && o.transition.at <= until
        });
        match down {
            Some(down) if down.transition.at < crash.at => findings.already_down += 1,
            Some(down) if down.transition.at <= bound => findings.detections.push(Detection {
                node: crash.node,
                crash: crash.at,
                at: down.transition.at,
                noticed: down.transition.noticed,
                bound,
                reason: down.transition.reason,
            }),
            Some(down) => findings.violations.push(Violation::Late {
                node: crash.node,
                crash: crash.at,
                at: down.transition.at,
                bound,
            }),
            None => findings.violations.push(Violation::Missed { node: crash.node, crash: crash.at, bound }),
        }
    }
}

fn convergence(trace: &Trace, by_node: &[Vec<&Observed>], findings: &mut Findings) {
    for (node, truth) in trace.nodes.iter().enumerate() {
        for cut in &truth.cut {
            let healed = cut.to;
            // Too close to the end to tell a slow recovery from none.
            if healed + trace.interval * 10 >= trace.end || truth.dead_at(healed) {
                continue;
            }
            let transitions = &by_node[node];
            if state_before(transitions, healed) == NodeState::Up {
                continue;
            }
            // Anything that stops the node from coming back ends the wait: death, a new cut.
            let next_fault = (truth.dead.iter().chain(&truth.cut))
                .map(|span| span.from)
                .filter(|&from| from > healed)
                .min()
                .unwrap_or(trace.end);
            let up = transitions
                .iter()
                .find(|o| o.transition.noticed >= healed && o.transition.to == NodeState::Up)
                .filter(|o| o.transition.noticed <= next_fault);
            match up {
                Some(up) => findings.convergence.push(up.transition.noticed - healed),
                None if next_fault < trace.end => {}
                None => findings.violations.push(Violation::NotConverged { node: node as u32, healed }),
            }
        }
    }
}
