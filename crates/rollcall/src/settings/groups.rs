//! `[group.NAME]`: detector and confirmation settings for the nodes whose `group` label is
//! `NAME`. A group's section has the keys of the fleet's `[phi]` (or `[fixed]`) and
//! `[confirm]`, read by the same functions; each key it does not set is the fleet's.
//! The detector's kind and the probe budget stay fleet-wide.

use super::{RawConfig, confirm_config, fixed_config, phi_config};
use crate::cli::DetectorKind;
use crate::monitor::explain::Goals;
use anyhow::bail;
use rollcall_core::monitor::{DetectorConfig, GroupSettings};
use rollcall_core::settings::{ConfirmSection, FixedSection, PhiSection};
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
    phi: Option<PhiSection>,
    fixed: Option<FixedSection>,
    confirm: Option<ConfirmSection>,
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
                let merged = group.phi.as_ref().map_or_else(|| raw.phi.clone(), |own| own.over(&raw.phi));
                DetectorConfig::Phi(Arc::new(phi_config(&merged, &format!("{section}.phi"))?))
            }
            DetectorConfig::Fixed(_) => {
                if group.phi.is_some() {
                    bail!("invalid configuration: [{section}.phi] is set but the detector is fixed");
                }
                let merged =
                    group.fixed.as_ref().map_or_else(|| raw.fixed.clone(), |own| own.over(&raw.fixed));
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

/// A group's `[confirm]` keys over the fleet's; `enabled` defaults to whether the fleet
/// confirms (its section or `--confirm`), and the probe budget is the fleet's.
fn merge_confirm(own: &ConfirmSection, fleet: &ConfirmSection, fleet_enabled: bool) -> ConfirmSection {
    ConfirmSection {
        enabled: Some(own.enabled.unwrap_or(fleet_enabled)),
        max_probes_per_sec: fleet.max_probes_per_sec,
        probe_burst: fleet.probe_burst,
        ..own.over(fleet)
    }
}
