//! `[group.NAME]`: detector and confirmation settings for the nodes whose `group` label is
//! `NAME`. A group's section has the keys of the fleet's `[phi]` (or `[fixed]`) and
//! `[confirm]`, read by the same functions; each key it does not set is the fleet's.
//! The detector's kind and the probe budget stay fleet-wide.

use super::{RawConfig, RawConfirm, RawFixed, RawPhi, confirm_config, fixed_config, phi_config};
use crate::cli::DetectorKind;
use crate::monitor::explain::Goals;
use anyhow::bail;
use rollcall_core::monitor::{DetectorConfig, GroupSettings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One `[group.NAME]` section as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    /// Refused with a sentence saying why (the kind is the fleet's), rather than as an
    /// unknown key.
    detector: Option<DetectorKind>,
    phi: Option<RawPhi>,
    fixed: Option<RawFixed>,
    confirm: Option<RawConfirm>,
}

/// The groups' settings, for `MonitorConfig::groups`: each `[group.NAME]`, and, when goals
/// are applied, each `[goals.group.NAME]` without a section (starting with the fleet's
/// settings, for goals to change).
pub(super) fn parse(
    raw: &RawConfig,
    fleet: &DetectorConfig,
    confirm_flag: bool,
    goals: &Goals,
) -> anyhow::Result<BTreeMap<String, GroupSettings>> {
    let fleet_confirm = confirm_config(&raw.confirm, confirm_flag, "confirm")?;
    let mut groups = BTreeMap::new();
    for (name, group) in &raw.group {
        let section = format!("group.{name}");
        let kind = fleet.name();
        if group.detector.is_some() {
            bail!(
                "invalid configuration: {section}.detector cannot be set: every group uses the fleet's detector ({kind}); set [{section}.{kind}] instead"
            );
        }
        if group.phi.is_none() && group.fixed.is_none() && group.confirm.is_none() {
            bail!(
                "invalid configuration: [{section}] sets nothing; give it [{section}.{kind}] or [{section}.confirm] settings, or remove it"
            );
        }
        let detector = match fleet {
            DetectorConfig::Phi(_) => {
                if group.fixed.is_some() {
                    bail!("invalid configuration: [{section}.fixed] is set but the detector is phi");
                }
                let merged = merge_phi(group.phi.as_ref(), &raw.phi);
                DetectorConfig::Phi(Arc::new(phi_config(&merged, &format!("{section}.phi"))?))
            }
            DetectorConfig::Fixed(_) => {
                if group.phi.is_some() {
                    bail!("invalid configuration: [{section}.phi] is set but the detector is fixed");
                }
                let merged = merge_fixed(group.fixed.as_ref(), &raw.fixed);
                DetectorConfig::Fixed(Arc::new(fixed_config(&merged, &format!("{section}.fixed"))?))
            }
        };
        let confirm = match &group.confirm {
            None => fleet_confirm.clone(),
            Some(own) => {
                if own.max_probes_per_sec.is_some() || own.probe_burst.is_some() {
                    bail!(
                        "invalid configuration: {section}.confirm cannot set max_probes_per_sec or probe_burst: the probe budget is the fleet's, in [confirm]"
                    );
                }
                let merged = merge_confirm(own, &raw.confirm, fleet_confirm.is_some());
                confirm_config(&merged, false, &format!("{section}.confirm"))?
            }
        };
        groups.insert(name.clone(), GroupSettings { detector, confirm });
    }
    if goals.apply {
        for name in goals.groups.keys() {
            groups
                .entry(name.clone())
                .or_insert_with(|| GroupSettings { detector: fleet.clone(), confirm: fleet_confirm.clone() });
        }
    }
    Ok(groups)
}

/// A group's `[phi]` keys over the fleet's.
fn merge_phi(own: Option<&RawPhi>, fleet: &RawPhi) -> RawPhi {
    let Some(own) = own else { return fleet.clone() };
    RawPhi {
        threshold: own.threshold.or(fleet.threshold),
        suspect_threshold: own.suspect_threshold.or(fleet.suspect_threshold),
        min_std_deviation: own.min_std_deviation.clone().or_else(|| fleet.min_std_deviation.clone()),
        acceptable_pause: own.acceptable_pause.clone().or_else(|| fleet.acceptable_pause.clone()),
        first_heartbeat_estimate: own
            .first_heartbeat_estimate
            .clone()
            .or_else(|| fleet.first_heartbeat_estimate.clone()),
    }
}

/// A group's `[fixed]` keys over the fleet's.
fn merge_fixed(own: Option<&RawFixed>, fleet: &RawFixed) -> RawFixed {
    let Some(own) = own else { return fleet.clone() };
    RawFixed {
        multiplier: own.multiplier.or(fleet.multiplier),
        grace: own.grace.clone().or_else(|| fleet.grace.clone()),
    }
}

/// A group's `[confirm]` keys over the fleet's; `enabled` defaults to whether the fleet
/// confirms (its section or `--confirm`).
fn merge_confirm(own: &RawConfirm, fleet: &RawConfirm, fleet_enabled: bool) -> RawConfirm {
    RawConfirm {
        enabled: Some(own.enabled.unwrap_or(fleet_enabled)),
        probes: own.probes.or(fleet.probes),
        probe_interval: own.probe_interval.clone().or_else(|| fleet.probe_interval.clone()),
        indirect: own.indirect.or(fleet.indirect),
        indirect_timeout: own.indirect_timeout.clone().or_else(|| fleet.indirect_timeout.clone()),
        recheck: own.recheck.clone().or_else(|| fleet.recheck.clone()),
        max_probes_per_sec: fleet.max_probes_per_sec,
        probe_burst: fleet.probe_burst,
    }
}
