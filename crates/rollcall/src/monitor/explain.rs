//! `GET /v1/nodes/{id}/explain` and `rollcall explain NODE`: for one node, what the monitor
//! observed of its heartbeats, when it would declare it, and what that promises: the time
//! to declare a crash and the false-down rate, from the formulas of `rollcall_detect::qos`
//! (the same deadlines the core sets). With goals in the config (`[goals]`), also whether
//! they are kept on this node's network and, if not, what settings would keep them.

use super::advice::apply::Sources;
use crate::monitor::owner::{NodeJson, node_json};
use rollcall_core::monitor::{ConfirmConfig, DetectorConfig, GroupSettings, NodeView};
use rollcall_core::{Instant, Monitor};
use rollcall_detect::qos::{self, Goal, Observed, Round};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The user's goals: for the whole fleet, and per `group` label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goals {
    pub fleet: Option<Goal>,
    pub groups: BTreeMap<String, Goal>,
    /// How often the interval advised to agents is derived again (`None`: the default,
    /// `monitor::advice::REFRESH`).
    pub advise_every: Option<Duration>,
    /// `[goals] apply`: the thresholds and confirmation derived for each scope are applied
    /// to it (`monitor/advice/apply.rs`), not only shown.
    pub apply: bool,
}

impl Goals {
    /// The goal that applies to a node with these labels: its group's, else the fleet's.
    pub fn for_labels(&self, labels: &BTreeMap<String, String>) -> Option<(String, Goal)> {
        if let Some(group) = labels.get("group")
            && let Some(goal) = self.groups.get(group)
        {
            return Some((format!("group {group}"), *goal));
        }
        self.fleet.map(|goal| ("fleet".to_string(), goal))
    }
}

/// Parses `"1 per node-year"`, `"2 per 1000 node-days"`, `"0.5 per node-month"` into false
/// downs per node-year.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a rate like \"1 per node-year\" or \"1 per 1000 node-days\"");
    let (count, per) = text.split_once(" per ").ok_or_else(bad)?;
    let count: f64 = count.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let (scale, unit) = match per.split_once(' ') {
        Some((scale, unit)) => {
            (scale.replace(['_', ','], "").parse::<f64>().map_err(|_| bad())?, unit.trim())
        }
        None => (1.0, per),
    };
    let unit_years = match unit.trim_end_matches('s') {
        "node-year" => 1.0,
        "node-month" => 1.0 / 12.0,
        "node-week" => 7.0 / 365.25,
        "node-day" => 1.0 / 365.25,
        _ => return Err(bad()),
    };
    if !(count >= 0.0 && count.is_finite() && scale > 0.0 && scale.is_finite()) {
        return Err(bad());
    }
    Ok(count / (scale * unit_years))
}

#[derive(Serialize, Debug)]
pub struct Explanation {
    pub node: NodeJson,
    pub detector: &'static str,
    pub observed: ObservedJson,
    /// The silence after the last heartbeat at which the node becomes suspect, and down (or,
    /// with confirmation, at which probing starts), by the detector's current window.
    pub suspect_after_ms: Option<f64>,
    pub down_after_ms: Option<f64>,
    pub confirm: Option<RoundJson>,
    /// The settings in force for this node: whose, from where, and their values.
    pub settings: SettingsJson,
    /// What the current settings promise on this node's network.
    pub expected: PromiseJson,
    /// The same model in Chen, Toueg and Aguilera's terms, `down` counting as suspicion.
    pub qos: QosJson,
    /// The goal that applies (the node's group's, or the fleet's), and whether it is kept.
    pub goal: Option<GoalJson>,
}

#[derive(Serialize, Debug)]
pub struct ObservedJson {
    /// Inter-arrival times the statistics come from (the detector's window, without the
    /// intervals that span lost heartbeats).
    pub samples: usize,
    pub mean_ms: f64,
    pub std_dev_ms: f64,
    /// Loss used in the formulas: this node's window, or the fleet's loss from sequence
    /// gaps when larger (a window of 32 cannot see 0.1 %), and never less than `3 / n` for
    /// the `n` heartbeats the fleet has sent (no loss seen yet is not proof of none).
    pub loss: f64,
    pub fleet_loss: f64,
}

#[derive(Serialize, Debug)]
pub struct SettingsJson {
    /// The group whose settings judge the node (`null`: the fleet's, for a node whose group
    /// has none of its own).
    pub group: Option<String>,
    /// `config` (the configuration and its defaults) or `goals` (`[goals] apply`).
    pub source: &'static str,
    /// Phi accrual's down and suspect thresholds and acceptable pause (`null` for fixed).
    pub phi_threshold: Option<f64>,
    pub phi_suspect_threshold: Option<f64>,
    pub phi_acceptable_pause_ms: Option<f64>,
    /// The fixed timeout's multiplier and grace (`null` for phi).
    pub fixed_multiplier: Option<f64>,
    pub fixed_grace_ms: Option<f64>,
    /// Whether suspects are probed before they are declared down.
    pub confirm: bool,
}

#[derive(Serialize, Debug)]
pub struct RoundJson {
    pub probes: u8,
    pub indirect: u8,
    pub round_ms: f64,
}

#[derive(Serialize, Debug)]
pub struct PromiseJson {
    pub detect_max_ms: f64,
    pub detect_mean_ms: f64,
    pub false_downs_per_node_year: f64,
}

/// Chen, Toueg and Aguilera's quality-of-service metrics ("On the quality of service of
/// failure detectors", 2002), predicted by `rollcall_detect::qos` for a live node.
#[derive(Serialize, Debug)]
pub struct QosJson {
    /// T_D: the mean time from a crash to down (the promise's `detect_mean_ms`).
    pub detection_time_ms: f64,
    /// T_MR: the mean time between two false downs (`null` when the model gives none).
    pub mistake_recurrence_s: Option<f64>,
    /// λ_M = 1 / T_MR.
    pub mistake_rate_per_node_year: f64,
    /// T_M: the mean time from a false down to up again (the next heartbeat, and `rise`).
    pub mistake_duration_ms: f64,
    /// P_A: the chance that the node, alive, is not wrongly down at a random instant.
    pub query_accuracy: f64,
}

#[derive(Serialize, Debug)]
pub struct GoalJson {
    /// Where the goal comes from: `fleet` or `group NAME`.
    pub scope: String,
    pub detect_within_ms: f64,
    pub max_false_downs_per_node_year: f64,
    /// Whether the current settings keep it.
    pub met: bool,
    /// Settings that keep it (or the closest offer), and one sentence saying so.
    pub advice: AdviceJson,
    pub summary: String,
}

#[derive(Serialize, Debug)]
pub struct AdviceJson {
    pub interval_ms: f64,
    pub silence_ms: f64,
    pub confirm: bool,
    /// For phi accrual: the threshold at which the silence above is reached (the suspect
    /// threshold with confirmation, the down threshold without).
    pub phi_threshold: Option<f64>,
    /// The acceptable pause that threshold assumes (0 when the configured one is already
    /// longer than the advised silence).
    pub phi_acceptable_pause_ms: Option<f64>,
    /// For the fixed timeout: the multiplier of the interval.
    pub fixed_multiplier: f64,
    pub expected: PromiseJson,
    pub achievable: bool,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn promise_json(promise: qos::Promise) -> PromiseJson {
    PromiseJson {
        detect_max_ms: ms(promise.detect_max),
        detect_mean_ms: ms(promise.detect_mean),
        false_downs_per_node_year: promise.false_downs_per_node_year,
    }
}

/// The round a confirmation config runs, for the formulas.
pub fn round_of(config: &ConfirmConfig) -> Round {
    Round { probes: config.probes, indirect: config.indirect, length: config.round_length() }
}

/// The settings a node with these labels is judged by, and the group they belong to
/// (`None`: the fleet's).
pub fn settings_of<'a>(
    core: &'a Monitor,
    labels: &BTreeMap<String, String>,
) -> (Option<String>, &'a GroupSettings) {
    if let Some(group) = labels.get("group")
        && let Some(settings) = core.group_settings(Some(group))
    {
        return (Some(group.clone()), settings);
    }
    (None, core.group_settings(None).expect("the fleet always has settings"))
}

fn settings_json(group: Option<String>, settings: &GroupSettings, sources: &Sources) -> SettingsJson {
    let (phi, fixed) = match &settings.detector {
        DetectorConfig::Phi(phi) => (Some(phi), None),
        DetectorConfig::Fixed(fixed) => (None, Some(fixed)),
    };
    SettingsJson {
        source: sources.source(group.as_deref()),
        group,
        phi_threshold: phi.map(|phi| phi.threshold),
        phi_suspect_threshold: phi.map(|phi| phi.suspect_threshold),
        phi_acceptable_pause_ms: phi.map(|phi| ms(phi.acceptable_pause)),
        fixed_multiplier: fixed.map(|fixed| fixed.multiplier),
        fixed_grace_ms: fixed.map(|fixed| ms(fixed.grace)),
        confirm: settings.confirm.is_some(),
    }
}

/// Explains the node `view` shows, as the core sees it at `now` (`None` if the core has no
/// detector facts for it).
pub fn explain(
    core: &Monitor,
    view: &NodeView<'_>,
    now: Instant,
    goals: &Goals,
    sources: &Sources,
) -> Option<Explanation> {
    let facts = core.detector_facts(view.id)?;
    // The node as the API shows it, which the explanation carries.
    let node = node_json(view, now, core.config().detector.name());
    let (group, config) = settings_of(core, &node.labels);
    let rise = core.config().rise;
    let declared = Duration::from_millis(node.interval_ms.max(1));
    let stats = core.stats();
    let fleet_loss = stats.loss_estimate();
    // Until the fleet has sent enough heartbeats, no loss observed does not mean no loss:
    // assume the 95 % upper bound for zero events in n trials ("rule of three", 3 / n).
    let seen = (stats.heartbeats + stats.heartbeats_missed).max(1);
    let loss_floor = fleet_loss.max(3.0 / seen as f64);
    let usable: Vec<Duration> = facts.recent_intervals.clone();
    // The fixed timeout keeps no window: judge it by the interval it declares.
    let observed = Observed::from_intervals(&usable, declared, loss_floor).unwrap_or(Observed {
        mean: declared,
        std_dev: Duration::ZERO,
        loss: loss_floor,
    });
    let samples = usable.iter().filter(|x| (x.as_secs_f64() / declared.as_secs_f64()).round() < 2.0).count();
    let round = config.confirm.as_ref().map(round_of);
    let (suspect, down) = (facts.suspect_silence, facts.down_silence);
    // With confirmation the node is declared after the suspect silence and one round;
    // without, after the down silence.
    let deciding = if round.is_some() { suspect } else { down };
    let fallback = |d: Option<Duration>| d.unwrap_or_else(|| declared * 3);
    let expected = observed.promise(fallback(deciding), round);
    let accuracy = observed.accuracy(fallback(deciding), round, rise);
    let qos = QosJson {
        detection_time_ms: ms(expected.detect_mean),
        mistake_recurrence_s: accuracy.mistake_recurrence.map(|d| d.as_secs_f64()),
        mistake_rate_per_node_year: accuracy.mistake_rate * 365.25 * 86_400.0,
        mistake_duration_ms: ms(accuracy.mistake_duration),
        query_accuracy: accuracy.query_accuracy,
    };
    let goal = goals.for_labels(&node.labels).map(|(scope, goal)| {
        let round = round.unwrap_or_else(|| round_of(&ConfirmConfig::default()));
        let advice = qos::advise(&observed, &goal, round);
        let met = expected.detect_max <= goal.detect_within
            && expected.false_downs_per_node_year <= goal.false_downs_per_node_year;
        let at = observed.at_interval(advice.interval);
        // The phi threshold that fires after the advised silence; when the configured
        // acceptable pause alone is longer than that silence, none can: advise without it.
        let (phi_threshold, phi_acceptable_pause_ms) = match &config.detector {
            DetectorConfig::Phi(phi) if advice.silence <= at.mean + phi.acceptable_pause => {
                let without =
                    rollcall_detect::PhiAccrualConfig { acceptable_pause: Duration::ZERO, ..(**phi).clone() };
                (Some(qos::phi_at(advice.silence, &at, &without)), Some(0.0))
            }
            DetectorConfig::Phi(phi) => {
                (Some(qos::phi_at(advice.silence, &at, phi)), Some(ms(phi.acceptable_pause)))
            }
            DetectorConfig::Fixed(_) => (None, None),
        };
        let summary = summary(met, &goal, &advice);
        GoalJson {
            scope,
            detect_within_ms: ms(goal.detect_within),
            max_false_downs_per_node_year: goal.false_downs_per_node_year,
            met,
            advice: AdviceJson {
                interval_ms: ms(advice.interval),
                silence_ms: ms(advice.silence),
                confirm: advice.confirm,
                phi_threshold,
                phi_acceptable_pause_ms,
                fixed_multiplier: advice.silence.as_secs_f64() / advice.interval.as_secs_f64(),
                expected: promise_json(advice.promise),
                achievable: advice.met,
            },
            summary,
        }
    });
    Some(Explanation {
        detector: config.detector.name(),
        observed: ObservedJson {
            samples,
            mean_ms: ms(observed.mean),
            std_dev_ms: ms(observed.std_dev),
            loss: observed.loss,
            fleet_loss,
        },
        suspect_after_ms: suspect.map(ms),
        down_after_ms: down.map(ms),
        confirm: config.confirm.as_ref().map(|c| RoundJson {
            probes: c.probes,
            indirect: c.indirect,
            round_ms: ms(c.round_length()),
        }),
        settings: settings_json(group, config, sources),
        expected: promise_json(expected),
        qos,
        goal,
        node,
    })
}

fn summary(met: bool, goal: &Goal, advice: &qos::Advice) -> String {
    let within = humantime::format_duration(goal.detect_within);
    let how = format!(
        "heartbeats every {:.0} ms and {} after {:.0} ms of silence",
        ms(advice.interval),
        if advice.confirm { "probes" } else { "a verdict" },
        ms(advice.silence)
    );
    let offer = format!(
        "crash declared within {:.2} s, {:.2e} false downs per node-year",
        advice.promise.detect_max.as_secs_f64(),
        advice.promise.false_downs_per_node_year
    );
    match (met, advice.met) {
        (true, _) => {
            format!("the current settings keep the goal (declared within {within}); {how} would too")
        }
        (false, true) => format!("the current settings miss the goal; {how} would keep it ({offer})"),
        (false, false) => format!(
            "no setting keeps the goal on this network (declared within {within}); the closest offer is {how}: {offer}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_in_the_units_people_write() {
        assert_eq!(parse_rate("1 per node-year"), Ok(1.0));
        assert!((parse_rate("1 per 1000 node-days").unwrap() - 0.365_25).abs() < 1e-9);
        assert!((parse_rate("1 per 1,000 node-days").unwrap() - 0.365_25).abs() < 1e-9);
        assert!((parse_rate("2 per node-month").unwrap() - 24.0).abs() < 1e-9);
        for bad in
            ["", "1", "one per node-year", "1 per node-decade", "1 per 0 node-days", "-1 per node-year"]
        {
            assert!(parse_rate(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn a_groups_goal_wins_over_the_fleets() {
        let fleet = Goal { detect_within: Duration::from_secs(5), false_downs_per_node_year: 1.0 };
        let db = Goal { detect_within: Duration::from_secs(30), false_downs_per_node_year: 0.1 };
        let goals = Goals {
            fleet: Some(fleet),
            groups: [("db".to_string(), db)].into(),
            advise_every: None,
            apply: false,
        };
        let labels = |group: &str| [("group".to_string(), group.to_string())].into();
        assert_eq!(goals.for_labels(&labels("db")), Some(("group db".into(), db)));
        assert_eq!(goals.for_labels(&labels("web")), Some(("fleet".into(), fleet)));
        assert_eq!(Goals::default().for_labels(&labels("db")), None);
    }
}
