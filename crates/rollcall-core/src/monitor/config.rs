//! The monitor core's settings, validated once at start.

use super::confirm::ConfirmConfig;
use super::groups::{GroupSettings, GroupTable};
use super::node::MAX_RISE;
use core::time::Duration;
use rollcall_detect::ConfigError;
use rollcall_detect::{AnyDetector, FixedTimeout, FixedTimeoutConfig, PhiAccrual, PhiAccrualConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Which detector judges the nodes, with its settings (shared by every node).
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorConfig {
    Fixed(Arc<FixedTimeoutConfig>),
    Phi(Arc<PhiAccrualConfig>),
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::Phi(Arc::new(PhiAccrualConfig::default()))
    }
}

impl DetectorConfig {
    /// A fresh detector for a node that declares `interval`.
    pub fn build(&self, interval: Duration) -> AnyDetector {
        match self {
            DetectorConfig::Fixed(config) => AnyDetector::Fixed(FixedTimeout::new(config.clone(), interval)),
            DetectorConfig::Phi(config) => AnyDetector::Phi(PhiAccrual::new(config.clone(), interval)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DetectorConfig::Fixed(_) => "fixed",
            DetectorConfig::Phi(_) => "phi",
        }
    }
}

/// Settings of [`crate::Monitor`].
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorConfig {
    pub detector: DetectorConfig,
    /// Consecutive heartbeats needed to bring a `down` node back `up` (HAProxy's `rise`), 1 to
    /// 63 (the node record counts them in six bits).
    pub rise: u8,
    /// Most nodes the monitor tracks; registrations beyond it are refused and counted.
    pub max_nodes: usize,
    /// When set, only these node ids may register; others are refused and counted.
    pub allow: Option<BTreeSet<String>>,
    /// Declared intervals are clamped into this range, so that a sender cannot make itself
    /// unjudgeable (a huge interval) or make the monitor spin (a tiny one).
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// The monitor wants to run at least this often, even when idle; a wake-up later than
    /// `tick + self_pause_threshold` means the monitor itself stalled.
    pub tick: Duration,
    pub self_pause_threshold: Duration,
    /// Probe a suspect node before declaring it down (see `monitor::confirm`); `None`:
    /// the detector's down level alone decides.
    pub confirm: Option<ConfirmConfig>,
    /// Settings of their own for the nodes whose `group` label names them (the others are
    /// judged by `detector` and `confirm`). Groups whose settings may change at run time
    /// (goals applied) must be named here, with the fleet's settings if none of their own.
    /// These are the settings at start: `Monitor::group_settings` has those in force.
    pub groups: BTreeMap<String, GroupSettings>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            detector: DetectorConfig::default(),
            rise: 2,
            max_nodes: 1_000_000,
            allow: None,
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_secs(3600),
            tick: Duration::from_millis(100),
            self_pause_threshold: Duration::from_secs(1),
            confirm: None,
            groups: BTreeMap::new(),
        }
    }
}

impl MonitorConfig {
    /// Checks every setting; the error is one sentence naming the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.detector {
            DetectorConfig::Fixed(config) => config.validate()?,
            DetectorConfig::Phi(config) => config.validate()?,
        }
        if self.rise == 0 || self.rise > MAX_RISE {
            return Err(ConfigError::new("rise", format!("must be 1 to {MAX_RISE} heartbeats")));
        }
        if self.max_nodes == 0 || self.max_nodes > u32::MAX as usize - 1 {
            return Err(ConfigError::new("max_nodes", format!("must be between 1 and {}", u32::MAX - 1)));
        }
        if self.min_interval.is_zero() || self.min_interval > self.max_interval {
            return Err(ConfigError::new("min_interval", "must be positive and not above max_interval"));
        }
        if self.tick.is_zero() {
            return Err(ConfigError::new("tick", "must be positive"));
        }
        if self.self_pause_threshold < self.tick {
            return Err(ConfigError::new("self_pause_threshold", "must be at least one tick"));
        }
        if let Some(confirm) = &self.confirm {
            confirm.validate()?;
        }
        if self.groups.len() >= GroupTable::MAX_GROUPS {
            return Err(ConfigError::new(
                "group",
                format!(
                    "sections may be at most {} (groups with settings of their own)",
                    GroupTable::MAX_GROUPS - 1
                ),
            ));
        }
        for (name, settings) in &self.groups {
            if name.is_empty() {
                return Err(ConfigError::new("group", "sections need a non-empty group name"));
            }
            settings.validate(name, &self.detector)?;
        }
        Ok(())
    }

    pub(crate) fn clamp_interval(&self, interval_ms: u32) -> Duration {
        Duration::from_millis(u64::from(interval_ms)).clamp(self.min_interval, self.max_interval)
    }
}
