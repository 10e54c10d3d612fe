//! From what each implementation told its application (view changes) and what the network
//! carried, to the figures: detection per (crash, observer), false positives, traffic.
//!
//! The judge reads only the plan (ground truth) and the views, never an implementation's
//! internals, so that the three are measured the same way.

use crate::model::{Plan, Traffic, secs};
use rollcall_core::Instant;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Up,
    /// The observer suspects the subject (rollcall: a `suspect` view; foca: a probe of it
    /// failed; chitchat has no such state).
    Suspect,
    /// The observer declared the subject down (rollcall `down` or `left`, foca
    /// `MemberDown`, chitchat: dropped from the live set).
    Down,
}

/// One change in one observer's view of one subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub observer: u32,
    pub subject: u32,
    pub kind: Kind,
    /// What tells one episode from the next for the same subject: rollcall's incarnation,
    /// foca's identity generation (suspicions: a running count, each failed probe being
    /// its own episode), chitchat's 0.
    pub episode: u64,
    pub at: Instant,
}

/// What a run of one implementation over one cell leaves.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub views: Vec<View>,
    pub traffic: Traffic,
    /// Inputs handled (datagrams and timers), for the progress line.
    pub events: u64,
}

/// The figures of one (implementation, cell).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub crashes: usize,
    /// (crash, live observer) pairs judged, and those with a `down` verdict by the end.
    pub pairs: usize,
    pub detected: usize,
    pub detection_p50_s: f64,
    pub detection_p99_s: f64,
    pub detection_max_s: f64,
    /// `down` verdicts on healthy nodes (neither crashed yet nor slow), after the warm-up,
    /// and the distinct healthy nodes they were about.
    pub false_down_verdicts: u64,
    pub false_down_nodes: u64,
    /// Distinct (healthy node, episode) among those verdicts: one false down that many
    /// observers took is one episode.
    pub false_down_episodes: u64,
    /// Time judged for false downs, summed over healthy nodes (not slow, from the warm-up
    /// to their crash or the end), in hours.
    pub node_hours: f64,
    /// `down` verdicts on slow nodes (faulted on purpose: not counted as false).
    pub slow_down_verdicts: u64,
    /// Suspicions of healthy nodes: distinct (node, episode), and observer views.
    pub false_suspicion_episodes: u64,
    pub false_suspicion_views: u64,
    pub messages_per_node_s: f64,
    pub bytes_per_node_s: f64,
    /// Every detection time (per crash and observer, seconds, sorted), so that runs over
    /// several seeds can be pooled before taking quantiles; not serialised (thousands).
    #[serde(skip)]
    pub detections: Vec<f64>,
}

/// Judges `run` against `plan`.
pub fn summarise(plan: &Plan, nodes: u32, run: &Run) -> Summary {
    let crash_at: BTreeMap<u32, Instant> = plan.crashes.iter().copied().collect();
    let healthy = |subject: u32, at: Instant| {
        !plan.slow[subject as usize] && crash_at.get(&subject).is_none_or(|crash| at < *crash)
    };
    // The first `down` of each crashed subject by each observer, after the crash.
    let mut first_down: BTreeMap<(u32, u32), Instant> = BTreeMap::new();
    let mut summary = Summary { crashes: plan.crashes.len(), ..Summary::default() };
    let (mut down_nodes, mut down_episodes) = (BTreeSet::new(), BTreeSet::new());
    let mut suspicion_episodes = BTreeSet::new();
    for view in &run.views {
        let judged = view.at >= plan.warmup && view.observer != view.subject;
        match view.kind {
            Kind::Down => {
                if let Some(&crash) = crash_at.get(&view.subject)
                    && view.at >= crash
                {
                    first_down.entry((view.subject, view.observer)).or_insert(view.at);
                } else if judged && plan.slow[view.subject as usize] {
                    summary.slow_down_verdicts += 1;
                } else if judged && healthy(view.subject, view.at) {
                    summary.false_down_verdicts += 1;
                    down_nodes.insert(view.subject);
                    down_episodes.insert((view.subject, view.episode));
                }
            }
            Kind::Suspect if judged && healthy(view.subject, view.at) => {
                summary.false_suspicion_views += 1;
                suspicion_episodes.insert((view.subject, view.episode));
            }
            _ => {}
        }
    }
    summary.false_down_nodes = down_nodes.len() as u64;
    summary.false_down_episodes = down_episodes.len() as u64;
    summary.node_hours = (0..nodes)
        .filter(|&node| !plan.slow[node as usize])
        .map(|node| {
            let until = plan.crash_of(node).unwrap_or(plan.end).min(plan.end);
            (secs(until) - secs(plan.warmup)).max(0.0) / 3600.0
        })
        .sum();
    summary.false_suspicion_episodes = suspicion_episodes.len() as u64;
    // Observers: every node alive at the end (a node that crashed later than the subject
    // still had its chance, but it is simpler and stricter to judge only survivors).
    let mut detections = Vec::new();
    for &(subject, crash) in &plan.crashes {
        for observer in (0..nodes).filter(|o| !crash_at.contains_key(o)) {
            summary.pairs += 1;
            if let Some(&down) = first_down.get(&(subject, observer)) {
                detections.push(secs(down) - secs(crash));
            }
        }
    }
    summary.detected = detections.len();
    detections.sort_by(f64::total_cmp);
    summary.detection_p50_s = quantile(&detections, 0.5);
    summary.detection_p99_s = quantile(&detections, 0.99);
    summary.detection_max_s = detections.last().copied().unwrap_or(f64::NAN);
    summary.detections = detections;
    let node_seconds = f64::from(nodes) * secs(plan.end);
    summary.messages_per_node_s = run.traffic.sent as f64 / node_seconds;
    summary.bytes_per_node_s = run.traffic.bytes as f64 / node_seconds;
    summary
}

/// The `q` quantile of sorted `values` (nearest rank), NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// For each false-down episode of `run` (as [`summarise`] counts them), the subject's
/// timeline: every view any observer took of it from 120 s before the first false `down`
/// (longer than the longest suspicion timeout of the sweep, 72 s at 1,000 peers) to 10 s
/// after the last, one line each, so that a false down can be traced (who
/// suspected first, who heard the refutation, who did not).
pub fn false_down_timelines(plan: &Plan, run: &Run) -> Vec<String> {
    let crash_at: BTreeMap<u32, Instant> = plan.crashes.iter().copied().collect();
    let healthy = |subject: u32, at: Instant| {
        !plan.slow[subject as usize] && crash_at.get(&subject).is_none_or(|crash| at < *crash)
    };
    // (subject, episode) → the first and last false `down` of it.
    let mut episodes: BTreeMap<(u32, u64), (Instant, Instant)> = BTreeMap::new();
    for view in &run.views {
        if view.kind == Kind::Down
            && view.at >= plan.warmup
            && view.observer != view.subject
            && healthy(view.subject, view.at)
        {
            let span = episodes.entry((view.subject, view.episode)).or_insert((view.at, view.at));
            span.1 = view.at;
        }
    }
    let mut out = Vec::new();
    for ((subject, episode), (first, last)) in episodes {
        let from = secs(first) - 120.0;
        let until = secs(last) + 10.0;
        out.push(format!("false down of n{subject} at episode {episode}, first at {:.3} s:", secs(first)));
        for view in run.views.iter().filter(|v| v.subject == subject) {
            let at = secs(view.at);
            if (from..=until).contains(&at) {
                out.push(format!("  {at:10.3} s  n{:<5} {:?} {}", view.observer, view.kind, view.episode));
            }
        }
    }
    out
}
