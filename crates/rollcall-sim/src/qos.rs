//! The detector's quality of service in the standard terms of Chen, Toueg and Aguilera ("On
//! the quality of service of failure detectors", IEEE Transactions on Computers, 2002),
//! measured on a trace.
//!
//! - **T_D**, detection time: from a crash to the detector suspecting the crashed node for
//!   good. The checkers already measure it ([`crate::Detection::time`]); the report shows
//!   its mean and maximum with the figures below.
//! - A **mistake** is a transition of the detector's output to "suspects" while the node is
//!   alive.
//! - **T_MR**, mistake recurrence time: the mean time between two mistakes about one node.
//!   Measured as alive time divided by the number of mistakes, its reciprocal being the
//!   mistake rate λ_M (the paper's Theorem 1: λ_M = 1 / E(T_MR) in steady state); a run
//!   has too few mistakes per node to average the gaps node by node.
//! - **T_M**, mistake duration: from a mistake to its correction (the output back to "does
//!   not suspect"), averaged over the mistakes.
//! - **P_A**, query accuracy probability: the chance that the output is right about an alive
//!   node at a random instant, `1 - wrongly suspected time / alive time`. The sums are
//!   kept so that `P_A = 1 - T_M / T_MR` holds exactly, as the paper's Theorem 1 says.
//!
//! What counts as "suspects" is the caller's choice (the report gives the figures twice: for
//! `down` alone, what pages people, and for `suspect` or `down`). "Alive" is the ground
//! truth: not crashed. A stalled or cut-off node is alive, so its down counts as a mistake
//! here (the paper's definition), although the accuracy checker excuses it. Two edges are
//! explicit: the stretch after a restart during which the output still holds the node's
//! crash is the time to notice a return, neither a mistake nor alive time; a mistake still
//! open at the end of the run, or when the node crashes, ends there.

use crate::peer::PeerTrace;
use crate::trace::{Span, Trace};
use core::time::Duration;
use rollcall_core::Instant;
use rollcall_core::monitor::NodeState;
use rollcall_core::swim::MemberState;
use serde::Serialize;

/// Sums over any number of (detector output, node) histories: see [`Mistakes::add`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mistakes {
    /// Alive time judged, in seconds.
    pub alive_s: f64,
    /// Transitions to "suspects" of an alive node.
    pub count: usize,
    /// Time an alive node was wrongly suspected, in seconds.
    pub wrong_s: f64,
    /// The longest mistake, in seconds.
    pub longest_s: f64,
}

impl Mistakes {
    /// Adds one history: the stretches `alive` (sorted, disjoint) when the node was alive
    /// (in peer mode, when its observer was alive too) and `changes`, every change of the
    /// output in order as (instant, whether it suspects the node). The output does not
    /// suspect before the first change.
    pub fn add(&mut self, alive: &[Span], changes: &[(Instant, bool)]) {
        for span in alive {
            // The output as the span begins: the last change at or before its start.
            let before = changes.partition_point(|(at, _)| *at <= span.from);
            let mut suspects = before.checked_sub(1).is_some_and(|i| changes[i].1);
            // A node that comes back while still suspected from its crash: not a mistake.
            let mut judged_from = span.from;
            let mut wrong_from: Option<Instant> = None;
            let inside = changes[before..].iter().take_while(|(at, _)| *at < span.to);
            for &(at, now_suspects) in inside {
                match (suspects, now_suspects) {
                    (false, true) => {
                        self.count += 1;
                        wrong_from = Some(at);
                    }
                    (true, false) => match wrong_from.take() {
                        Some(from) => self.close(from, at),
                        None => judged_from = at,
                    },
                    _ => {}
                }
                suspects = now_suspects;
            }
            if suspects && wrong_from.is_none() {
                // Suspected all along since the span began: nothing judged.
                judged_from = span.to;
            }
            if let Some(from) = wrong_from {
                self.close(from, span.to);
            }
            self.alive_s += seconds(span.to - judged_from);
        }
    }

    fn close(&mut self, from: Instant, to: Instant) {
        let length = seconds(to - from);
        self.wrong_s += length;
        self.longest_s = self.longest_s.max(length);
    }

    /// The figures, with `T_D` from the detection times given (milliseconds).
    pub fn figures(&self, detection_times_ms: &[f64]) -> Qos {
        let n = detection_times_ms.len() as f64;
        let (count, alive) = (self.count as f64, self.alive_s);
        Qos {
            detection_mean_ms: (n > 0.0).then(|| detection_times_ms.iter().sum::<f64>() / n),
            detection_max_ms: detection_times_ms.iter().copied().reduce(f64::max),
            mistakes: self.count,
            alive_node_hours: alive / 3600.0,
            mistake_recurrence_s: (self.count > 0).then(|| alive / count),
            mistake_rate_per_node_hour: if alive > 0.0 { count / alive * 3600.0 } else { 0.0 },
            mistake_duration_mean_ms: (self.count > 0).then(|| self.wrong_s / count * 1e3),
            mistake_duration_max_ms: (self.count > 0).then_some(self.longest_s * 1e3),
            query_accuracy: if alive > 0.0 { 1.0 - self.wrong_s / alive } else { 1.0 },
        }
    }
}

/// Chen, Toueg and Aguilera's metrics for one meaning of "suspects". Times in
/// milliseconds except the recurrence time, in seconds (it is long).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Qos {
    /// T_D: mean time from a crash to the verdict, over the detected crashes.
    pub detection_mean_ms: Option<f64>,
    pub detection_max_ms: Option<f64>,
    /// Mistakes: transitions to "suspects" of an alive node.
    pub mistakes: usize,
    /// The alive time they were made in.
    pub alive_node_hours: f64,
    /// T_MR: alive time per mistake (`None` without a mistake: longer than the run).
    pub mistake_recurrence_s: Option<f64>,
    /// λ_M = 1 / T_MR.
    pub mistake_rate_per_node_hour: f64,
    /// T_M: mean time from a mistake to its correction.
    pub mistake_duration_mean_ms: Option<f64>,
    pub mistake_duration_max_ms: Option<f64>,
    /// P_A: the chance that the output is right about an alive node at a random instant.
    pub query_accuracy: f64,
}

/// The figures twice: counting only `down` as suspicion (what pages people), and counting
/// `suspect` too.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QosReport {
    pub down: Qos,
    pub suspect_or_down: Qos,
}

impl QosReport {
    /// One line per meaning, for the terminal table.
    pub fn lines(&self) -> [String; 2] {
        [("down", &self.down), ("suspect+down", &self.suspect_or_down)].map(|(label, q)| {
            format!(
                "{label:<12} T_D {}  T_MR {}  T_M {}  P_A {}  ({} mistakes in {:.1} node-hours alive)",
                ms_or_dash(q.detection_mean_ms),
                q.mistake_recurrence_s.map_or("-".to_string(), format_recurrence),
                ms_or_dash(q.mistake_duration_mean_ms),
                format_accuracy(q.query_accuracy),
                q.mistakes,
                q.alive_node_hours
            )
        })
    }
}

/// The complement of `dead` (sorted, disjoint) within `[ZERO, end)`.
pub fn alive_spans(dead: &[Span], end: Instant) -> Vec<Span> {
    let mut alive = Vec::with_capacity(dead.len() + 1);
    let mut from = Instant::ZERO;
    for span in dead {
        if span.from > from {
            alive.push(Span { from, to: span.from.min(end) });
        }
        from = from.max(span.to);
    }
    if from < end {
        alive.push(Span { from, to: end });
    }
    alive.retain(|span| span.from < span.to);
    alive
}

/// The stretches in both `a` and `b` (each sorted and disjoint).
pub fn intersect(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    intersect_into(a, b, &mut out);
    out
}

/// [`intersect`] into `out`, cleared first.
fn intersect_into(a: &[Span], b: &[Span], out: &mut Vec<Span>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let from = a[i].from.max(b[j].from);
        let to = a[i].to.min(b[j].to);
        if from < to {
            out.push(Span { from, to });
        }
        if a[i].to < b[j].to { i += 1 } else { j += 1 }
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms_or_dash(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |ms| format!("{:.2}s", ms / 1e3))
}

/// A recurrence time in the largest unit that keeps it readable.
pub fn format_recurrence(seconds: f64) -> String {
    match seconds {
        s if s >= 86_400.0 => format!("{:.1}d", s / 86_400.0),
        s if s >= 3_600.0 => format!("{:.1}h", s / 3_600.0),
        s => format!("{s:.0}s"),
    }
}

/// P_A with as many nines as it has (a table of 0.99999 and 0.99998 must tell them apart).
pub fn format_accuracy(p: f64) -> String {
    if p >= 1.0 {
        return "1".to_string();
    }
    let nines = (-(1.0 - p).log10()).floor().max(0.0) as usize;
    format!("{p:.prec$}", prec = (nines + 2).min(12))
}

/// The figures of a central-mode run: the monitor's output about each node, as it noticed
/// its transitions.
pub fn central(trace: &Trace, detection_times_ms: &[f64]) -> QosReport {
    let mut changes: Vec<Vec<(Instant, NodeState)>> = vec![Vec::new(); trace.nodes.len()];
    for observed in &trace.transitions {
        changes[observed.node as usize].push((observed.transition.noticed, observed.transition.to));
    }
    let (mut down, mut either) = (Mistakes::default(), Mistakes::default());
    for (truth, changes) in trace.nodes.iter().zip(&changes) {
        let alive = alive_spans(&truth.dead, trace.end);
        let as_down: Vec<_> = changes.iter().map(|&(at, to)| (at, to == NodeState::Down)).collect();
        let as_either: Vec<_> = changes
            .iter()
            .map(|&(at, to)| (at, matches!(to, NodeState::Down | NodeState::Suspect)))
            .collect();
        down.add(&alive, &as_down);
        either.add(&alive, &as_either);
    }
    QosReport { down: down.figures(detection_times_ms), suspect_or_down: either.figures(detection_times_ms) }
}

/// The figures of a peer-mode run: each live peer's view of each other peer is one
/// detector's output, judged while both are alive.
pub fn peer(trace: &PeerTrace, detection_times_ms: &[f64]) -> QosReport {
    let alive: Vec<Vec<Span>> = trace.nodes.iter().map(|truth| alive_spans(&truth.dead, trace.end)).collect();
    let views = Views::new(trace);
    let (mut down, mut either) = (Mistakes::default(), Mistakes::default());
    // Buffers reused for each of the n^2 views (10^8 at 10,000 peers).
    let (mut both, mut as_down, mut as_either) = (Vec::new(), Vec::new(), Vec::new());
    for (observer, observer_alive) in alive.iter().enumerate() {
        let mut changes = views.of(observer).iter().peekable();
        for (subject, subject_alive) in alive.iter().enumerate() {
            if observer == subject {
                continue;
            }
            intersect_into(observer_alive, subject_alive, &mut both);
            as_down.clear();
            as_either.clear();
            // Changes are sorted by subject: skip those about earlier subjects (itself).
            while changes.next_if(|&&(about, _)| about < subject as u32).is_some() {}
            while let Some(&(_, index)) = changes.next_if(|&&(about, _)| about == subject as u32) {
                let seen = &trace.seen[index as usize];
                as_down.push((seen.at, seen.to == MemberState::Down));
                as_either.push((seen.at, matches!(seen.to, MemberState::Down | MemberState::Suspect)));
            }
            down.add(&both, &as_down);
            either.add(&both, &as_either);
        }
    }
    QosReport { down: down.figures(detection_times_ms), suspect_or_down: either.figures(detection_times_ms) }
}

/// The trace's view changes grouped by observer, then by subject, each view's in the
/// trace's order: (subject, index in `trace.seen`). A counting sort by observer and a sort
/// of each observer's few changes, where a map keyed by pair cost a lookup per view.
struct Views {
    starts: Vec<usize>,
    changes: Vec<(u32, u32)>,
}

impl Views {
    fn new(trace: &PeerTrace) -> Views {
        let mut starts = vec![0; trace.nodes.len() + 1];
        for seen in &trace.seen {
            starts[seen.observer as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut changes = vec![(0, 0); trace.seen.len()];
        for (index, seen) in trace.seen.iter().enumerate() {
            let at = &mut next[seen.observer as usize];
            changes[*at] = (seen.subject, index as u32);
            *at += 1;
        }
        for observer in 0..trace.nodes.len() {
            // By subject, then by index: the trace's order within a view.
            changes[starts[observer]..starts[observer + 1]].sort_unstable();
        }
        Views { starts, changes }
    }

    fn of(&self, observer: usize) -> &[(u32, u32)] {
        &self.changes[self.starts[observer]..self.starts[observer + 1]]
    }
}
