//! Settings per group: the detector's thresholds and the confirmation a node is judged by
//! come from its `group` label's entry in a small table, or from the fleet's settings when
//! its group has none.
//!
//! The table's names are fixed at start (the groups the configuration names, in
//! [`MonitorConfig::groups`](super::MonitorConfig::groups)); what changes at run time is an
//! entry's settings ([`Monitor::set_group_settings`], when goals are applied). A node keeps
//! the index of its entry, found when it is admitted and when its labels change, and the
//! stamp of the settings its detector was built with. A change gives the entry a new stamp,
//! and each node takes the new settings at its next heartbeat, keeping its detector's
//! history: no step ever walks the group's nodes. A node that is silent when its group
//! changes keeps its pending deadline until then (it was set under the settings of its
//! last heartbeat).

use super::confirm::Confirmer;
use super::{ConfirmConfig, DetectorConfig, Monitor, MonitorConfig, Reason};
use crate::wire::Labels;
use crate::{ConfigError, Instant};
use rollcall_detect::{AnyDetector, Detector};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How the nodes of one group are judged.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    /// The detector's settings; its kind is the fleet's (only the knobs differ per group).
    pub detector: DetectorConfig,
    /// Probe a suspect before declaring it down, with these rounds (`None`: the detector's
    /// down level alone decides). The probe budget is the fleet's, whatever a group says.
    pub confirm: Option<ConfirmConfig>,
}

impl GroupSettings {
    /// Checks the settings of group `name`; the error is one sentence naming it.
    pub fn validate(&self, name: &str, fleet: &DetectorConfig) -> Result<(), ConfigError> {
        let section = format!("group.{name}");
        if self.detector.name() != fleet.name() {
            return Err(ConfigError::new(
                "detector",
                format!(
                    "is {} but the fleet uses {}; the detector kind is the same for every group",
                    self.detector.name(),
                    fleet.name()
                ),
            )
            .within(&section));
        }
        let detector = match &self.detector {
            DetectorConfig::Fixed(config) => config.validate(),
            DetectorConfig::Phi(config) => config.validate(),
        };
        detector.map_err(|problem| problem.within(&section))?;
        if let Some(confirm) = &self.confirm {
            confirm.validate().map_err(|problem| problem.within(&section))?;
        }
        Ok(())
    }
}

/// Groups with settings of their own, by index; index 0 is the fleet's settings.
///
/// Settings are replaced, never changed in place: a change is a new `Arc` of detector
/// settings, which is how a node's detector knows it is stale (`runs_on`).
pub(crate) struct GroupTable {
    entries: Vec<GroupSettings>,
    by_name: BTreeMap<Box<str>, u16>,
}

/// The index of the fleet's settings.
pub(crate) const FLEET: u16 = 0;

impl GroupTable {
    /// Most groups with settings of their own (the node record keeps the index in a `u16`).
    pub const MAX_GROUPS: usize = u16::MAX as usize;

    pub fn new(config: &MonitorConfig) -> GroupTable {
        debug_assert!(config.groups.len() < Self::MAX_GROUPS, "MonitorConfig::validate bounds the groups");
        let mut table = GroupTable { entries: Vec::new(), by_name: BTreeMap::new() };
        table.push(GroupSettings { detector: config.detector.clone(), confirm: config.confirm.clone() });
        for (name, settings) in &config.groups {
            let index = table.push(settings.clone());
            table.by_name.insert(name.as_str().into(), index);
        }
        table
    }

    fn push(&mut self, settings: GroupSettings) -> u16 {
        let index = u16::try_from(self.entries.len()).expect("bounded by MAX_GROUPS");
        self.entries.push(settings);
        index
    }

    /// The entry for a node with these labels: its group's, else the fleet's.
    pub fn index_for(&self, labels: &Labels<'_>) -> u16 {
        if self.by_name.is_empty() {
            return FLEET;
        }
        labels.get("group").and_then(|group| self.by_name.get(group).copied()).unwrap_or(FLEET)
    }

    pub fn index_of(&self, group: Option<&str>) -> Option<u16> {
        match group {
            None => Some(FLEET),
            Some(name) => self.by_name.get(name).copied(),
        }
    }

    pub fn get(&self, index: u16) -> &GroupSettings {
        &self.entries[usize::from(index)]
    }

    pub fn set(&mut self, index: u16, settings: GroupSettings) {
        self.entries[usize::from(index)] = settings;
    }

    /// The named groups, in name order.
    pub fn named(&self) -> impl Iterator<Item = (&str, &GroupSettings)> {
        self.by_name.iter().map(|(name, &index)| (&**name, self.get(index)))
    }
}

/// The confirmation machinery, if the fleet or any group confirms. Its probe budget is the
/// fleet's `[confirm]`, or the first confirming group's when only groups confirm.
pub(crate) fn confirmer_for(config: &MonitorConfig, now: Instant) -> Option<Confirmer> {
    let budget = config.confirm.clone().or_else(|| config.groups.values().find_map(|g| g.confirm.clone()));
    budget.map(|budget| Confirmer::new(budget, now))
}

/// The reason a node's detector gives for moving it along.
pub(crate) fn reason_of(detector: &AnyDetector) -> Reason {
    match detector {
        AnyDetector::Fixed(_) => Reason::Timeout,
        AnyDetector::Phi(_) => Reason::Phi,
    }
}

/// Brings `detector` to `current`, its group's settings, if they changed since it last ran.
#[inline]
pub(super) fn sync_detector(detector: &mut AnyDetector, current: &DetectorConfig) {
    if !runs_on(detector, current) {
        reconfigure(detector, current);
    }
}

/// Whether `detector` runs on exactly these settings: the same allocation. Settings are
/// replaced, never changed in place, and a detector keeps its own alive, so an equal
/// pointer cannot be a freed one reused.
fn runs_on(detector: &AnyDetector, config: &DetectorConfig) -> bool {
    match (detector, config) {
        (AnyDetector::Phi(detector), DetectorConfig::Phi(config)) => Arc::ptr_eq(detector.config(), config),
        (AnyDetector::Fixed(detector), DetectorConfig::Fixed(config)) => {
            Arc::ptr_eq(detector.config(), config)
        }
        _ => false,
    }
}

/// Gives `detector` new settings of the same kind, keeping what it has seen.
pub(crate) fn reconfigure(detector: &mut AnyDetector, config: &DetectorConfig) {
    match (detector, config) {
        (AnyDetector::Phi(detector), DetectorConfig::Phi(config)) => detector.set_config(config.clone()),
        (AnyDetector::Fixed(detector), DetectorConfig::Fixed(config)) => detector.set_config(config.clone()),
        (detector, config) => {
            // Validation keeps one kind for the fleet; were it ever to differ, a fresh
            // detector that remembers the last arrival is still a correct one.
            let mut fresh = config.build(detector.mean_interval());
            if let Some(last) = detector.last_arrival() {
                fresh.heartbeat(last);
            }
            *detector = fresh;
        }
    }
}

impl Monitor {
    /// The settings the nodes of `group` are judged by (`None`: the fleet's, which also
    /// judge every node whose group has none of its own). `None` for a group without an
    /// entry: such a group's nodes are judged by the fleet's settings.
    pub fn group_settings(&self, group: Option<&str>) -> Option<&GroupSettings> {
        self.groups.index_of(group).map(|index| self.groups.get(index))
    }

    /// The settings a node with these labels is judged by: its group's, else the fleet's.
    pub fn settings_for(&self, labels: &Labels<'_>) -> &GroupSettings {
        self.groups.get(self.groups.index_for(labels))
    }

    /// The groups with settings of their own, in name order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &GroupSettings)> {
        self.groups.named()
    }

    /// Replaces the settings of `group` (`None`: the fleet's) at run time. Each node of the
    /// group takes them at its next heartbeat, keeping its detector's history. A round in
    /// progress takes the new rounds' settings at its next step, or, if the group no longer
    /// confirms, ends there and leaves the node to its detector. Fails, changing nothing, for a group the configuration did not name (the
    /// table's names are fixed at start) or settings that do not validate.
    pub fn set_group_settings(
        &mut self,
        group: Option<&str>,
        settings: GroupSettings,
        now: Instant,
    ) -> Result<(), ConfigError> {
        let Some(index) = self.groups.index_of(group) else {
            let section = format!("group.{}", group.unwrap_or("fleet"));
            return Err(ConfigError::new(section, "has no settings entry; name it in the configuration"));
        };
        settings.validate(group.unwrap_or("fleet"), &self.config.detector)?;
        if self.confirmer.is_none()
            && let Some(confirm) = &settings.confirm
        {
            // The first group to confirm brings the probe machinery; its budget is the
            // fleet's `[confirm]` settings when they exist, else this group's.
            let budget = self.config.confirm.clone().unwrap_or_else(|| confirm.clone());
            let mut confirmer = Confirmer::new(budget, now);
            confirmer.set_epoch(self.probe_epoch);
            self.confirmer = Some(confirmer);
        }
        self.groups.set(index, settings);
        Ok(())
    }

    /// The settings node `index`'s confirmation rounds follow: its group's, else the
    /// settings the probe budget was made from (callers check [`Monitor::confirms`] first).
    pub(super) fn round_config(&self, index: u32) -> Option<ConfirmConfig> {
        let group = self.nodes.get(index).group;
        let confirmer = self.confirmer.as_ref()?;
        Some(self.groups.get(group).confirm.clone().unwrap_or_else(|| confirmer.config.clone()))
    }

    /// Whether node `index`'s group confirms suspicions.
    pub(super) fn confirms(&self, index: u32) -> bool {
        self.confirmer.is_some() && self.groups.get(self.nodes.get(index).group).confirm.is_some()
    }
}

#[cfg(test)]
mod tests;
