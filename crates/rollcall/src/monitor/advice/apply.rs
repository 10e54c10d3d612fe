//! `[goals] apply = true`: at each advice round, the detector thresholds and the
//! confirmation that keep a scope's goal (each `[goals.group.X]`, and `[goals]` for the
//! fleet's settings) at the interval its nodes use now are set on that scope, within bounds,
//! and logged old -> new. Without `apply` they are only shown (`rollcall explain`).
//!
//! The bounds, so that a short or odd window never sets something absurd:
//! - a phi threshold stays within [`PHI_MIN`] ..= [`PHI_MAX`]: below 3 a live node's
//!   heartbeat is late past it about once in a thousand, which makes false downs likely;
//!   a silence beyond what [`PHI_MAX`] reaches goes into the acceptable pause instead, and
//!   that pause is never longer than the goal's `detect_within`;
//! - a fixed multiplier stays within [`FIXED_MIN`] ..= [`FIXED_MAX`] intervals;
//! - values are rounded up (phi to a half, the pause to 100 ms, the multiplier to a
//!   quarter), so that the settings change, and the log speaks, only when the answer really
//!   moves, and rounding never buys speed with false downs.
//!
//! Settings a goal derives replace a group's `[group.X]` ones while goals are applied; the
//! probe budget stays the fleet's.

use super::super::explain::{self, Explanation, Goals};
use rollcall_core::monitor::{ConfirmConfig, DetectorConfig, GroupSettings};
use rollcall_core::{Instant, Monitor};
use rollcall_detect::qos::{self, Goal, Observed, Round};
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The lowest phi threshold goals may set.
pub const PHI_MIN: f64 = 3.0;
/// The highest phi threshold goals may set; longer silences come from the acceptable pause.
pub const PHI_MAX: f64 = 16.0;
/// The shortest and longest silence, in declared intervals, a fixed timeout may be given.
pub const FIXED_MIN: f64 = 1.5;
pub const FIXED_MAX: f64 = 20.0;

/// What one sampled node needs: the silence and confirmation that keep its goal at the
/// interval it uses, and its statistics.
#[derive(Clone, Copy, Debug)]
pub struct Derived {
    pub silence: Duration,
    pub confirm: bool,
    pub observed: Observed,
    /// The interval the node declares (the fixed timeout's unit).
    pub declared: Duration,
}

/// Where each scope's settings come from, for `explain` and the metrics.
#[derive(Debug, Default)]
pub struct Sources {
    /// Scopes whose settings goals have set (`None`: the fleet's).
    from_goals: BTreeSet<Option<String>>,
    /// Each scope's settings before goals first changed them (the configured down threshold
    /// and confirmation rounds are kept from there).
    before: BTreeMap<Option<String>, GroupSettings>,
}

impl Sources {
    /// `goals` when goals set the scope's settings, else `config` (the fleet's settings and
    /// `[group.NAME]` sections alike come from the configuration and its defaults).
    pub fn source(&self, scope: Option<&str>) -> &'static str {
        if self.from_goals.contains(&scope.map(str::to_owned)) { "goals" } else { "config" }
    }
}

/// What a sampled node's explanation says goals should set, when the node has a goal.
pub fn derive(explanation: &Explanation, goal: &Goal) -> Derived {
    let o = &explanation.observed;
    let observed = Observed {
        mean: Duration::from_secs_f64(o.mean_ms / 1e3),
        std_dev: Duration::from_secs_f64(o.std_dev_ms / 1e3),
        loss: o.loss,
    };
    // The node's rounds if its group confirms, else what confirming would cost by default.
    let round = match &explanation.confirm {
        Some(c) => Round {
            probes: c.probes,
            indirect: c.indirect,
            length: Duration::from_secs_f64(c.round_ms / 1e3),
        },
        None => explain::round_of(&ConfirmConfig::default()),
    };
    let advice = qos::advise_at(&observed, goal, round);
    Derived {
        silence: advice.silence,
        confirm: advice.confirm,
        observed,
        declared: Duration::from_millis(explanation.node.interval_ms.max(1)),
    }
}

/// Sets the settings that keep `goal` on `scope` (`None`: the fleet's) from the nodes
/// sampled there, if they differ from those in force.
pub fn apply(
    core: &mut Monitor,
    sources: &mut Sources,
    goals: &Goals,
    scope: Option<&str>,
    sampled: &[Derived],
    now: Instant,
) {
    let goal = match scope {
        None => goals.fleet,
        Some(group) => goals.groups.get(group).copied(),
    };
    let (Some(goal), Some(current)) = (goal, core.group_settings(scope).cloned()) else { return };
    let key = scope.map(str::to_owned);
    let before = sources.before.entry(key.clone()).or_insert_with(|| current.clone()).clone();
    let fleet_confirm = core.config().confirm.clone();
    let Some(wanted) = settings_for(&before, fleet_confirm.as_ref(), sampled, &goal) else { return };
    if wanted == current {
        return;
    }
    let (old, new) = (describe(&current), describe(&wanted));
    match core.set_group_settings(scope, wanted, now) {
        Ok(()) => {
            sources.from_goals.insert(key);
            tracing::info!(
                scope = scope.map_or_else(|| "fleet".to_string(), |group| format!("group {group}")),
                "goals applied: {old} -> {new}"
            );
        }
        // Settings are built from validated ones within bounds: a refusal is a bug here,
        // reported and otherwise harmless (the old settings stay).
        Err(problem) => tracing::warn!(?scope, "goals not applied: {problem}"),
    }
}

/// The settings for a scope whose sampled nodes say `sampled`: confirmation if most of them
/// need it, and the thresholds of the median node among those that agree.
fn settings_for(
    before: &GroupSettings,
    fleet_confirm: Option<&ConfirmConfig>,
    sampled: &[Derived],
    goal: &Goal,
) -> Option<GroupSettings> {
    let confirming = sampled.iter().filter(|d| d.confirm).count();
    let confirm = confirming * 2 > sampled.len();
    let mut agreeing: Vec<&Derived> = sampled.iter().filter(|d| d.confirm == confirm).collect();
    agreeing.sort_by_key(|d| d.silence);
    let median = *agreeing.get(agreeing.len() / 2)?;
    let detector = match &before.detector {
        DetectorConfig::Phi(phi) => DetectorConfig::Phi(Arc::new(phi_settings(phi, median, confirm, goal))),
        DetectorConfig::Fixed(fixed) => {
            DetectorConfig::Fixed(Arc::new(fixed_settings(fixed, median, confirm)))
        }
    };
    let rounds = before.confirm.clone().or_else(|| fleet_confirm.cloned()).unwrap_or_default();
    Some(GroupSettings { detector, confirm: confirm.then_some(rounds) })
}

fn phi_settings(before: &PhiAccrualConfig, node: &Derived, confirm: bool, goal: &Goal) -> PhiAccrualConfig {
    let (threshold, pause) = qos::phi_for_silence(node.silence, &node.observed, before, PHI_MIN, PHI_MAX);
    // Rounded up: a little more patience, never more false downs than the goal allows.
    let threshold = ((threshold * 2.0).ceil() / 2.0).clamp(PHI_MIN, PHI_MAX);
    let pause = Duration::from_millis((pause.as_millis() as u64).div_ceil(100) * 100).min(goal.detect_within);
    if confirm {
        // Probing starts at the suspect level; the down level (for nodes the budget cannot
        // probe) stays where the configuration put it, or at the suspect level if higher.
        PhiAccrualConfig {
            suspect_threshold: threshold,
            threshold: before.threshold.max(threshold),
            acceptable_pause: pause,
            ..before.clone()
        }
    } else {
        PhiAccrualConfig {
            threshold,
            suspect_threshold: before.suspect_threshold.min(threshold),
            acceptable_pause: pause,
            ..before.clone()
        }
    }
}

fn fixed_settings(before: &FixedTimeoutConfig, node: &Derived, confirm: bool) -> FixedTimeoutConfig {
    // Suspect after `interval x multiplier`, down a grace later: without confirmation the
    // silence is the down one.
    let suspect = if confirm { node.silence } else { node.silence.saturating_sub(before.grace) };
    let multiplier = suspect.as_secs_f64() / node.declared.as_secs_f64();
    let multiplier = ((multiplier * 4.0).ceil() / 4.0).clamp(FIXED_MIN, FIXED_MAX);
    FixedTimeoutConfig { multiplier, ..before.clone() }
}

/// Settings in a few words, for the log.
pub fn describe(settings: &GroupSettings) -> String {
    let detector = match &settings.detector {
        DetectorConfig::Phi(phi) => format!(
            "phi threshold {} (suspect {}), acceptable pause {}",
            phi.threshold,
            phi.suspect_threshold,
            humantime::format_duration(phi.acceptable_pause)
        ),
        DetectorConfig::Fixed(fixed) => {
            format!(
                "fixed multiplier {}, grace {}",
                fixed.multiplier,
                humantime::format_duration(fixed.grace)
            )
        }
    };
    let confirm = if settings.confirm.is_some() { "confirmation on" } else { "confirmation off" };
    format!("{detector}, {confirm}")
}

/// The settings in force per scope, for `/metrics`.
#[derive(Clone, Debug)]
pub struct ScopeSettings {
    /// `fleet`, or `group NAME`.
    pub scope: String,
    pub settings: GroupSettings,
    pub from_goals: bool,
}

/// Every scope's settings: the fleet's, and each group with its own.
pub fn rows(core: &Monitor, sources: &Sources) -> Vec<ScopeSettings> {
    let fleet = core.group_settings(None).cloned().map(|settings| ScopeSettings {
        scope: "fleet".into(),
        settings,
        from_goals: sources.source(None) == "goals",
    });
    let groups = core.groups().map(|(group, settings)| ScopeSettings {
        scope: format!("group {group}"),
        settings: settings.clone(),
        from_goals: sources.source(Some(group)) == "goals",
    });
    fleet.into_iter().chain(groups).collect()
}

/// `rollcall_group_*`: the settings in force per scope (`fleet`, `group NAME`), whether
/// from the configuration or from goals.
pub fn register_metrics(registry: &mut prometheus_client::registry::Registry, rows: &[ScopeSettings]) {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    type ByScope = Family<Vec<(&'static str, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>;
    let (threshold, suspect, pause, confirm, goals) =
        (ByScope::default(), ByScope::default(), ByScope::default(), ByScope::default(), ByScope::default());
    for row in rows {
        let labels = vec![("scope", row.scope.clone())];
        let (down, at_suspect, paused) = match &row.settings.detector {
            DetectorConfig::Phi(phi) => (phi.threshold, phi.suspect_threshold, phi.acceptable_pause),
            DetectorConfig::Fixed(fixed) => (fixed.multiplier, fixed.multiplier, Duration::ZERO),
        };
        threshold.get_or_create(&labels).set(down);
        suspect.get_or_create(&labels).set(at_suspect);
        pause.get_or_create(&labels).set(paused.as_secs_f64());
        confirm.get_or_create(&labels).set(if row.settings.confirm.is_some() { 1.0 } else { 0.0 });
        goals.get_or_create(&labels).set(if row.from_goals { 1.0 } else { 0.0 });
    }
    registry.register(
        "group_threshold",
        "The detector's down threshold in force per scope (phi, or the fixed timeout's multiplier)",
        threshold,
    );
    registry.register(
        "group_suspect_threshold",
        "The detector's suspect threshold in force per scope (phi, or the fixed timeout's multiplier)",
        suspect,
    );
    registry.register_with_unit(
        "group_acceptable_pause",
        "Phi accrual's acceptable pause in force per scope (0 for the fixed timeout)",
        prometheus_client::registry::Unit::Seconds,
        pause,
    );
    registry.register("group_confirm", "1 where suspects are probed before they are declared down", confirm);
    registry.register(
        "group_settings_from_goals",
        "1 where [goals] apply set the scope's settings, 0 where they are the configuration's",
        goals,
    );
}

#[cfg(test)]
mod tests;
