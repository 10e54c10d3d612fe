//! The scenario file: TOML in, a validated [`Scenario`] out (or one sentence saying what is
//! wrong). Two stages, as for the daemon's configuration: a raw form that mirrors the file,
//! then the checked data the simulator runs.

use crate::scenario::{Burst, Direction, Fault, Latency, Network, Scenario, Selector, When, parse_duration};
use core::time::Duration;
use rollcall_core::monitor::{ConfirmConfig, DetectorConfig};
use rollcall_core::settings::{ConfirmSection, FixedSection, PhiSection};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Scenario {
    /// Reads a scenario file's text. Anything left out takes [`Scenario::default`]'s value,
    /// except the faults: a file that lists none has none.
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        let raw: RawScenario = toml::from_str(text).map_err(|error| {
            // toml's message spans several lines with a caret diagram; the first line says it.
            let message = error.message().trim().to_string();
            match error.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            }
        })?;
        let scenario = raw.into_scenario()?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks every setting; the error is one sentence naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > 1_000_000 {
            return Err(format!("nodes must be between 1 and 1000000, got {}", self.nodes));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(30 * 86_400) {
            return Err("duration must be positive and at most 30 days".into());
        }
        if self.interval < Duration::from_millis(10) || self.interval > Duration::from_secs(3600) {
            return Err("interval must be between 10ms and 1h".into());
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(format!("jitter must be a fraction between 0 and 0.5, got {}", self.jitter));
        }
        if self.rise == 0 {
            return Err("rise must be at least 1".into());
        }
        match &self.detector {
            DetectorConfig::Phi(config) => config.validate().map_err(|e| format!("detector: {e}"))?,
            DetectorConfig::Fixed(config) => config.validate().map_err(|e| format!("detector: {e}"))?,
        }
        self.network.validate()?;
        for (name, selector) in &self.groups {
            if matches!(selector, Selector::Group(_)) {
                return Err(format!("group {name:?} must list nodes, not another group"));
            }
            self.check_selector(selector).map_err(|e| format!("group {name:?}: {e}"))?;
        }
        for (index, fault) in self.faults.iter().enumerate() {
            let context = |e: String| format!("fault {} ({}): {e}", index + 1, fault.kind());
            self.check_selector(fault.nodes()).map_err(context)?;
            check_fault(fault).map_err(context)?;
        }
        Ok(())
    }

    fn check_selector(&self, selector: &Selector) -> Result<(), String> {
        match selector {
            Selector::Group(name) if !self.groups.iter().any(|(group, _)| group == name) => {
                Err(format!("no group is named {name:?}"))
            }
            Selector::List(list) => match list.iter().find(|&&index| index >= self.nodes) {
                Some(index) => Err(format!("node index {index} is not below nodes ({})", self.nodes)),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl Network {
    fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("network.{name} must be a probability between 0 and 1, got {p}"));
            }
        }
        match self.latency {
            Latency::LogNormal { sigma, .. } if !(sigma > 0.0 && sigma <= 5.0) => {
                return Err("network.latency: a log-normal sigma must be in (0, 5]".into());
            }
            Latency::Pareto { shape, .. } if !(shape >= 0.5 && shape.is_finite()) => {
                return Err("network.latency: a Pareto shape must be at least 0.5".into());
            }
            _ => {}
        }
        if let Some(burst) = &self.burst {
            if burst.mean_good.is_zero() || burst.mean_bad.is_zero() {
                return Err("network.burst: mean_good and mean_bad must be positive".into());
            }
            if !(0.0..=1.0).contains(&burst.loss) {
                return Err("network.burst.loss must be a probability between 0 and 1".into());
            }
        }
        Ok(())
    }
}

fn check_fault(fault: &Fault) -> Result<(), String> {
    match *fault {
        Fault::Pauses { every, min, max, .. } if every.is_zero() || min.is_zero() || min > max => {
            Err("every and min must be positive, and min at most max".into())
        }
        Fault::Partition { from, to, .. } | Fault::Slow { from, to, .. } if from >= to => {
            Err("from must be before to".into())
        }
        Fault::Drift { factor, .. } if !(0.1..=10.0).contains(&factor) => {
            Err(format!("factor must be between 0.1 and 10, got {factor}"))
        }
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    seed: Option<u64>,
    nodes: Option<u32>,
    duration: Option<String>,
    interval: Option<String>,
    jitter: Option<f64>,
    rise: Option<u8>,
    /// `kind`, then the keys of the monitor's `[phi]` or `[fixed]` section.
    detector: Option<toml::Table>,
    confirm: Option<ConfirmSection>,
    network: Option<RawNetwork>,
    #[serde(default)]
    groups: BTreeMap<String, RawSelector>,
    #[serde(default)]
    faults: Vec<RawFault>,
}

/// `[confirm]`, as the monitor's config file reads it, except that here its presence turns
/// confirmation on (`enabled = false` turns it off again).
fn confirm_config(section: ConfirmSection) -> Result<Option<ConfirmConfig>, String> {
    let config = section.resolve("confirm").map_err(|error| error.to_string())?;
    config.validate().map_err(|error| error.to_string())?;
    Ok(section.enabled.unwrap_or(true).then_some(config))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<String>,
    loss: Option<f64>,
    duplicate: Option<f64>,
    burst: Option<RawBurst>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    mean_good: String,
    mean_bad: String,
    loss: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSelector {
    Count(u32),
    Text(String),
    List(Vec<u32>),
}

/// One `[[faults]]` entry: every field any kind takes; [`RawFault::into_fault`] refuses the
/// ones that do not apply to its kind, so a misspelt or misplaced field is never ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: String,
    nodes: Option<RawSelector>,
    at: Option<String>,
    restart_after: Option<String>,
    from: Option<String>,
    to: Option<String>,
    length: Option<String>,
    every: Option<String>,
    min: Option<String>,
    max: Option<String>,
    direction: Option<String>,
    delay: Option<String>,
    factor: Option<f64>,
}

fn duration_field(name: &str, value: Option<&String>) -> Result<Option<Duration>, String> {
    value.map(|text| parse_duration(text).map_err(|e| format!("{name}: {e}"))).transpose()
}

/// `table` (the section `name` of a file) read as a `T`. Serde does not tell a value's
/// deserializer its key, so when the table is refused its keys are read one at a time to
/// name the one at fault.
pub(crate) fn section<T: DeserializeOwned>(name: &str, table: toml::Table) -> Result<T, String> {
    let read = |table: toml::Table| toml::Value::Table(table).try_into::<T>();
    read(table.clone()).map_err(|error| {
        let alone =
            |key: &String, value: &toml::Value| read(toml::Table::from_iter([(key.clone(), value.clone())]));
        match table.iter().find(|(key, value)| alone(key, value).is_err()) {
            Some((key, _)) => format!("{name}.{key}: {}", error.message().trim()),
            None => format!("[{name}]: {}", error.message().trim()),
        }
    })
}

fn required<T>(name: &str, value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| format!("{name} is required"))
}

impl RawSelector {
    fn into_selector(self) -> Result<Selector, String> {
        match self {
            RawSelector::Count(count) => Ok(Selector::Count(count)),
            RawSelector::Text(text) => Selector::parse(&text),
            RawSelector::List(list) => Ok(Selector::List(list)),
        }
    }
}

impl RawScenario {
    fn into_scenario(self) -> Result<Scenario, String> {
        let defaults = Scenario::default();
        let mut groups = Vec::new();
        for (name, selector) in self.groups {
            let selector = selector.into_selector().map_err(|e| format!("group {name:?}: {e}"))?;
            groups.push((name, selector));
        }
        let mut faults = Vec::new();
        for (index, raw) in self.faults.into_iter().enumerate() {
            let kind = raw.kind.clone();
            faults.push(raw.into_fault().map_err(|e| format!("fault {} ({kind}): {e}", index + 1))?);
        }
        Ok(Scenario {
            name: self.name.unwrap_or_else(|| "unnamed".into()),
            description: self.description.unwrap_or_default(),
            seed: self.seed.unwrap_or(defaults.seed),
            nodes: self.nodes.unwrap_or(defaults.nodes),
            duration: duration_field("duration", self.duration.as_ref())?.unwrap_or(defaults.duration),
            interval: duration_field("interval", self.interval.as_ref())?.unwrap_or(defaults.interval),
            jitter: self.jitter.unwrap_or(defaults.jitter),
            rise: self.rise.unwrap_or(defaults.rise),
            detector: match self.detector {
                Some(table) => detector_config(table)?,
                None => defaults.detector,
            },
            confirm: self.confirm.map(confirm_config).transpose()?.flatten(),
            network: match self.network {
                Some(raw) => raw.into_network()?,
                None => defaults.network,
            },
            groups,
            faults,
        })
    }
}

/// `[detector]`: `kind = "phi"` or `"fixed"`, and that detector's keys, read by the same
/// sections as the monitor's `[phi]` and `[fixed]`.
fn detector_config(mut table: toml::Table) -> Result<DetectorConfig, String> {
    const PHI_ONLY: [&str; 5] = [
        "threshold",
        "suspect_threshold",
        "min_std_deviation",
        "acceptable_pause",
        "first_heartbeat_estimate",
    ];
    const FIXED_ONLY: [&str; 2] = ["multiplier", "grace"];
    let kind = match table.remove("kind") {
        Some(toml::Value::String(kind)) => kind,
        _ => return Err("detector.kind must be \"phi\" or \"fixed\"".into()),
    };
    let misplaced = |keys: &[&str]| keys.iter().any(|key| table.contains_key(*key));
    let spec = match kind.as_str() {
        "phi" if misplaced(&FIXED_ONLY) => {
            return Err("detector: multiplier and grace belong to kind = \"fixed\"".into());
        }
        "fixed" if misplaced(&PHI_ONLY) => {
            return Err(format!("detector: {} belong to kind = \"phi\"", PHI_ONLY.join(", ")));
        }
        "phi" => {
            let section: PhiSection = section("detector", table)?;
            DetectorConfig::Phi(Arc::new(section.resolve("detector").map_err(|e| e.to_string())?))
        }
        "fixed" => {
            let section: FixedSection = section("detector", table)?;
            DetectorConfig::Fixed(Arc::new(section.resolve("detector").map_err(|e| e.to_string())?))
        }
        other => return Err(format!("detector.kind must be \"phi\" or \"fixed\", got {other:?}")),
    };
    Ok(spec)
}

impl RawNetwork {
    fn into_network(self) -> Result<Network, String> {
        let defaults = Network::default();
        let latency = match &self.latency {
            Some(spec) => Latency::parse(spec).map_err(|e| format!("network.latency: {e}"))?,
            None => defaults.latency,
        };
        let burst = match self.burst {
            Some(raw) => Some(Burst {
                mean_good: parse_duration(&raw.mean_good)
                    .map_err(|e| format!("network.burst.mean_good: {e}"))?,
                mean_bad: parse_duration(&raw.mean_bad)
                    .map_err(|e| format!("network.burst.mean_bad: {e}"))?,
                loss: raw.loss,
            }),
            None => None,
        };
        Ok(Network {
            latency,
            loss: self.loss.unwrap_or(defaults.loss),
            duplicate: self.duplicate.unwrap_or(defaults.duplicate),
            burst,
        })
    }
}

impl RawFault {
    fn into_fault(self) -> Result<Fault, String> {
        let allowed: &[&str] = match self.kind.as_str() {
            "crash" | "process-crash" => &["at", "restart_after"],
            "restart" => &["at"],
            "pause" => &["from", "to", "length"],
            "pauses" => &["every", "min", "max"],
            "partition" => &["from", "to", "direction"],
            "slow" => &["from", "to", "delay"],
            "drift" => &["factor"],
            other => {
                return Err(format!(
                    "kind must be one of crash, process-crash, restart, pause, pauses, partition, slow, drift, got {other:?}"
                ));
            }
        };
        let present = [
            ("at", self.at.is_some()),
            ("restart_after", self.restart_after.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("length", self.length.is_some()),
            ("every", self.every.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("direction", self.direction.is_some()),
            ("delay", self.delay.is_some()),
            ("factor", self.factor.is_some()),
        ];
        if let Some((name, _)) = present.iter().find(|(name, set)| *set && !allowed.contains(name)) {
            return Err(format!("{name} does not apply to this kind"));
        }
        let nodes = required("nodes", self.nodes)?.into_selector()?;
        let when = |name: &str, value: Option<String>| -> Result<When, String> {
            When::parse(&required(name, value)?).map_err(|e| format!("{name}: {e}"))
        };
        let span = |name: &str, value: &Option<String>| duration_field(name, value.as_ref());
        let fault = match self.kind.as_str() {
            "crash" => Fault::Crash {
                nodes,
                at: when("at", self.at)?,
                restart_after: span("restart_after", &self.restart_after)?,
            },
            "process-crash" => Fault::ProcessCrash {
                nodes,
                at: when("at", self.at)?,
                restart_after: span("restart_after", &self.restart_after)?,
            },
            "restart" => Fault::Restart { nodes, at: when("at", self.at)? },
            "pause" => {
                let from = when("from", self.from)?;
                let length = match (span("length", &self.length)?, span("to", &self.to)?, from) {
                    (Some(length), None, _) => length,
                    (None, Some(to), When::At(from)) if to > from => to - from,
                    _ => return Err("give either length, or a fixed from and a later to".into()),
                };
                Fault::Pause { nodes, from, length }
            }
            "pauses" => Fault::Pauses {
                nodes,
                every: required("every", span("every", &self.every)?)?,
                min: required("min", span("min", &self.min)?)?,
                max: required("max", span("max", &self.max)?)?,
            },
            "partition" => Fault::Partition {
                nodes,
                from: required("from", span("from", &self.from)?)?,
                to: required("to", span("to", &self.to)?)?,
                direction: match self.direction.as_deref().unwrap_or("both") {
                    "both" => Direction::Both,
                    "to-monitor" => Direction::ToMonitor,
                    "from-monitor" => Direction::FromMonitor,
                    other => {
                        return Err(format!(
                            "direction must be both, to-monitor or from-monitor, got {other:?}"
                        ));
                    }
                },
            },
            "slow" => Fault::Slow {
                nodes,
                from: span("from", &self.from)?.unwrap_or(Duration::ZERO),
                to: span("to", &self.to)?.unwrap_or(Duration::MAX),
                delay: required("delay", span("delay", &self.delay)?)?,
            },
            _ => Fault::Drift { nodes, factor: required("factor", self.factor)? },
        };
        Ok(fault)
    }
}
