//! The shell's side of interval advice (`rollcall_core::monitor`'s `advice` module has the
//! wire side): every [`REFRESH`], for each scope with a goal (each `[goals.group.X]`, and
//! `[goals]` for the rest of the fleet), the heartbeat interval that `qos::advise` derives
//! for a sample of that scope's `up` nodes, from what was observed of them. The median of
//! the sample is handed to the core, which tells agents that follow advice.
//!
//! The work per refresh is bounded: at most [`VISIT`] nodes are looked at, from where the
//! previous refresh stopped, so a million-node table is sampled over many refreshes and
//! never walked at once on the owner.
//!
//! The same pass judges the goals continuously: the share of sampled nodes whose current
//! settings keep their goal is exported per scope, and a scope whose goal no setting can
//! keep on the observed network is logged as a warning with the closest offer.
//!
//! With `[goals] apply = true`, the same sample also sets each scope's detector thresholds
//! and confirmation (`advice/apply.rs`).

pub mod apply;

use super::explain::{self, Goals};
use rollcall_core::monitor::NodeState;
use rollcall_core::{Instant, Monitor};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the advice is derived again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// The first derivation, after the start: enough for a few intervals per node.
pub const FIRST: Duration = Duration::from_secs(10);
/// Nodes sampled per scope.
const SAMPLE: usize = 64;
/// Nodes looked at per refresh, at most.
const VISIT: usize = 20_000;

/// Where the next refresh starts, and what the last one found (for the logs and metrics).
#[derive(Debug, Default)]
pub struct Advisor {
    cursor: usize,
    /// Per scope (`None` is the fleet, `Some(group)` a group): the interval advised, and
    /// the share of the sampled nodes whose current settings keep the goal.
    pub advised: BTreeMap<Option<String>, Duration>,
    pub kept: BTreeMap<Option<String>, f64>,
    /// The scopes whose goal no setting keeps, as last warned about.
    unachievable: BTreeMap<Option<String>, String>,
    /// Where each scope's detector settings come from (config, or goals applied).
    pub sources: apply::Sources,
}

/// What one refresh sampled of one scope.
#[derive(Default)]
struct Sample {
    intervals: Vec<Duration>,
    kept: usize,
    /// The closest offer, when the advice for some node cannot keep the goal.
    unachievable: Option<String>,
    /// With `[goals] apply`: what each sampled node says the scope's settings should be.
    derived: Vec<apply::Derived>,
}

impl Advisor {
    /// Derives the advice again and gives it to `core`. Does nothing without goals.
    pub fn refresh(&mut self, core: &mut Monitor, goals: &Goals, now: Instant) {
        if goals.fleet.is_none() && goals.groups.is_empty() {
            return;
        }
        if self.cursor >= core.len() {
            self.cursor = 0;
        }
        let mut samples: BTreeMap<Option<String>, Sample> = BTreeMap::new();
        let mut visited = 0;
        for view in core.nodes_from(self.cursor, now).take(VISIT) {
            visited += 1;
            if view.state != NodeState::Up {
                continue;
            }
            let group = view.labels().into_iter().find_map(|(key, value)| (key == "group").then_some(value));
            let scope = group.filter(|group| goals.groups.contains_key(*group)).map(str::to_owned);
            if scope.is_none() && goals.fleet.is_none() {
                continue;
            }
            let sample = samples.entry(scope).or_default();
            if sample.intervals.len() >= SAMPLE {
                continue;
            }
            let Some(explanation) = explain::explain(core, &view, now, goals, &self.sources) else {
                continue;
            };
            if goals.apply
                && let Some((_, wanted)) = goals.for_labels(&explanation.node.labels)
            {
                sample.derived.push(apply::derive(&explanation, &wanted));
            }
            let Some(goal) = explanation.goal else { continue };
            sample.intervals.push(Duration::from_secs_f64(goal.advice.interval_ms / 1000.0));
            sample.kept += usize::from(goal.met);
            if !goal.advice.achievable {
                sample.unachievable = Some(goal.summary);
            }
        }
        self.cursor += visited;
        for (scope, sample) in samples {
            let mut intervals = sample.intervals;
            if intervals.is_empty() {
                continue;
            }
            self.kept.insert(scope.clone(), sample.kept as f64 / intervals.len() as f64);
            match sample.unachievable {
                Some(summary) if self.unachievable.get(&scope) != Some(&summary) => {
                    tracing::warn!(
                        scope = scope.as_deref().unwrap_or("fleet"),
                        "goal out of reach: {summary}"
                    );
                    self.unachievable.insert(scope.clone(), summary);
                }
                Some(_) => {}
                None => {
                    self.unachievable.remove(&scope);
                }
            }
            if goals.apply {
                apply::apply(core, &mut self.sources, goals, scope.as_deref(), &sample.derived, now);
            }
            intervals.sort();
            let median = intervals[intervals.len() / 2];
            core.set_advised_interval(scope.as_deref(), Some(median));
            let advised = core.advised_interval(scope.as_deref()).unwrap_or(median);
            if self.advised.insert(scope.clone(), advised) != Some(advised) {
                tracing::info!(
                    scope = scope.as_deref().unwrap_or("fleet"),
                    interval = %humantime::format_duration(advised),
                    sampled = intervals.len(),
                    "advising agents that follow advice of a new heartbeat interval"
                );
            }
        }
    }
}
