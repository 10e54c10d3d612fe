//! Turns a scenario's faults into each node's timeline, drawing every random choice (which
//! nodes, which instants) from streams derived from the seed: one per group, one per fault,
//! one per node's random pauses. Adding a fault therefore leaves every other fault's choices
//! as they were.

use crate::rng::{Purpose, Rng};
use crate::scenario::{Direction, Fault, Scenario, Selector, When};
use crate::trace::{NodeTruth, Span};
use core::time::Duration;
use rollcall_core::Instant;
use std::sync::Arc;

/// A change of a node's process the run loop carries out at its instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    /// Stop sending for good (until a restart).
    Crash,
    /// Start again as a new generation.
    Restart,
}

/// Every node's ground truth, and the crashes and restarts to carry out, in time order.
pub(crate) struct Plan {
    pub nodes: Vec<NodeTruth>,
    pub actions: Vec<(Instant, u32, Action)>,
}

pub(crate) fn instant(span: Duration) -> Instant {
    Instant::ZERO + span
}

/// The node id of index `index` among `nodes`: `node-0042`, zero-padded so that ids sort
/// like indices.
pub(crate) fn node_id(index: u32, nodes: u32) -> String {
    let width = nodes.saturating_sub(1).max(1).ilog10() as usize + 1;
    format!("node-{index:0width$}")
}

pub(crate) fn plan(scenario: &Scenario) -> Plan {
    let n = scenario.nodes;
    let end = instant(scenario.duration);
    let groups: Vec<(String, Vec<u32>)> = (scenario.groups.iter().enumerate())
        .map(|(i, (name, selector))| {
            let mut rng = Rng::derive(scenario.seed, Purpose::Group, i as u64);
            (name.clone(), select(selector, n, &[], &mut rng))
        })
        .collect();
    let mut nodes: Vec<NodeTruth> = (0..n)
        .map(|i| NodeTruth {
            id: Arc::from(node_id(i, n)),
            dead: Vec::new(),
            reported: Vec::new(),
            restarts: Vec::new(),
            paused: Vec::new(),
            cut: Vec::new(),
            cut_from_monitor: Vec::new(),
            slow: Vec::new(),
            drift: 1.0,
        })
        .collect();
    // Crashes and restarts as asked, per node; resolved into effective actions below.
    let mut asked: Vec<(Instant, u32, Action)> = Vec::new();
    for (index, fault) in scenario.faults.iter().enumerate() {
        let mut rng = Rng::derive(scenario.seed, Purpose::Fault, index as u64);
        let chosen = select(fault.nodes(), n, &groups, &mut rng);
        for node in chosen {
            let truth = &mut nodes[node as usize];
            match *fault {
                Fault::Crash { at, restart_after, .. } | Fault::ProcessCrash { at, restart_after, .. } => {
                    let at = draw(at, &mut rng);
                    asked.push((at, node, Action::Crash));
                    if matches!(fault, Fault::ProcessCrash { .. }) {
                        truth.reported.push(at);
                    }
                    if let Some(after) = restart_after {
                        asked.push((at + after, node, Action::Restart));
                    }
                }
                Fault::Restart { at, .. } => asked.push((draw(at, &mut rng), node, Action::Restart)),
                Fault::Pause { from, length, .. } => {
                    let from = draw(from, &mut rng);
                    truth.paused.push(Span { from, to: from + length });
                }
                Fault::Pauses { every, min, max, .. } => {
                    let subject = u64::from(node) | (index as u64) << 32;
                    let mut own = Rng::derive(scenario.seed, Purpose::Pauses, subject);
                    random_pauses(&mut truth.paused, &mut own, every, min, max, end);
                }
                Fault::Partition { from, to, direction, .. } => {
                    let span = Span { from: instant(from), to: instant(to) };
                    if direction != Direction::FromMonitor {
                        truth.cut.push(span);
                    }
                    // Only probes travel from the monitor to the nodes in central mode.
                    if direction != Direction::ToMonitor {
                        truth.cut_from_monitor.push(span);
                    }
                }
                Fault::Slow { from, to, delay, .. } => {
                    truth.slow.push((Span { from: instant(from), to: instant(to) }, delay));
                }
                Fault::Drift { factor, .. } => truth.drift = factor,
            }
        }
    }
    for truth in &mut nodes {
        truth.reported.sort_unstable();
        merge(&mut truth.paused);
        merge(&mut truth.cut);
        truth.slow.sort_by_key(|(span, _)| *span);
    }
    asked.retain(|(at, _, _)| *at < end);
    // By instant, then node, then crash before restart: a stable, seed-free order.
    asked.sort();
    let mut actions = Vec::new();
    for (at, node, action) in asked {
        let truth = &mut nodes[node as usize];
        let dead = truth.dead.last().is_some_and(|span| span.to == Instant::MAX);
        match (action, dead) {
            (Action::Crash, false) => truth.dead.push(Span { from: at, to: Instant::MAX }),
            (Action::Restart, true) => {
                truth.dead.last_mut().expect("dead means a last span").to = at;
                truth.restarts.push(at);
            }
            (Action::Restart, false) => truth.restarts.push(at),
            // Crashing a dead node changes nothing.
            (Action::Crash, true) => continue,
        }
        actions.push((at, node, action));
    }
    Plan { nodes, actions }
}

/// The nodes `selector` picks, sorted.
fn select(selector: &Selector, n: u32, groups: &[(String, Vec<u32>)], rng: &mut Rng) -> Vec<u32> {
    let pick = |count: u32, rng: &mut Rng| {
        let mut all: Vec<u32> = (0..n).collect();
        rng.shuffle(&mut all);
        all.truncate(count.min(n) as usize);
        all.sort_unstable();
        all
    };
    match selector {
        Selector::All => (0..n).collect(),
        Selector::Count(count) => pick(*count, rng),
        Selector::Percent(p) => pick((p / 100.0 * f64::from(n)).round() as u32, rng),
        Selector::Group(name) => {
            groups.iter().find(|(group, _)| group == name).map(|(_, nodes)| nodes.clone()).unwrap_or_default()
        }
        Selector::List(list) => {
            let mut list: Vec<u32> = list.iter().copied().filter(|&i| i < n).collect();
            list.sort_unstable();
            list.dedup();
            list
        }
    }
}

fn draw(when: When, rng: &mut Rng) -> Instant {
    match when {
        When::At(at) => instant(at),
        When::Between(from, to) => instant(from + (to - from).mul_f64(rng.f64())),
    }
}

/// Stalls at Poisson times of mean spacing `every`, each log-uniform in `[min, max]`.
fn random_pauses(
    out: &mut Vec<Span>,
    rng: &mut Rng,
    every: Duration,
    min: Duration,
    max: Duration,
    end: Instant,
) {
    let (low, high) = (min.as_secs_f64().ln(), max.as_secs_f64().ln());
    let mut at = instant(Duration::from_secs_f64(rng.exponential(every.as_secs_f64())));
    while at < end {
        let length = Duration::from_secs_f64((low + (high - low) * rng.f64()).exp());
        out.push(Span { from: at, to: at + length });
        at = at + length + Duration::from_secs_f64(rng.exponential(every.as_secs_f64()));
    }
}

/// Sorts spans and joins those that overlap or touch.
fn merge(spans: &mut Vec<Span>) {
    spans.sort();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans.drain(..) {
        match merged.last_mut() {
            Some(last) if span.from <= last.to => last.to = last.to.max(span.to),
            _ => merged.push(span),
        }
    }
    *spans = merged;
}
