//! What rollcall's settings files share (feature `serde`): the monitor's config file and the
//! simulator's scenario files read every duration, `[confirm]` and the detectors' sections
//! through this module, so that one setting means the same thing in both.
//!
//! It does not read files or know their layout: each shell deserializes its own file, takes
//! these sections from it, and words errors with the section's place in that file. Start at
//! [`parse_duration`] (the one duration grammar), then [`ConfirmSection`], [`PhiSection`] and
//! [`FixedSection`]. [`SwimConfig`](crate::swim::SwimConfig) deserializes directly, with the
//! `serde_*` helpers below for its durations (`gossip_interval` may also be `"off"`) and its
//! probe order (`"round-robin"` or `"uniform"`); unknown keys are refused.
//!
//! The sections are read in two stages, like the files around them: a raw form whose keys
//! are all optional, then `resolve`, which puts the keys given on top of the config type's
//! `Default` (the one source of defaults) and names the key in a duration's error. Checking
//! the result stays with the config type's `validate`, which the caller calls, so that it
//! can say where the section came from.

use crate::monitor::ConfirmConfig;
use crate::swim::ProbeOrder;
use core::fmt;
use core::time::Duration;
use rollcall_detect::{ConfigError, FixedTimeoutConfig, PhiAccrualConfig};
use serde::{Deserialize, Deserializer};

/// The one duration grammar of every settings file: a number (decimals allowed) and a unit,
/// or several of them summed (`"500ms"`, `"1.5s"`, `"1h 30m"`). Units are those of the
/// `humantime` crate: `ns`, `us` (`µs`), `ms`, `s` (`sec`), `m` (`min`), `h` (`hr`), `d`,
/// `w`, and their long names. Negative and unitless numbers are refused, and so are spans
/// of 10^9 seconds (about 31 years) or more, which no setting needs and which would
/// overflow instants.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let refuse = |why: String| DurationError { text: text.to_string(), why };
    let span = humantime::parse_duration(text.trim()).map_err(|error| refuse(error.to_string()))?;
    if span >= Duration::from_secs(1_000_000_000) {
        return Err(refuse("longer than 31 years".into()));
    }
    Ok(span)
}

/// [`parse_duration`] for the setting named `setting` (`monitor.tick`, `confirm.recheck`):
/// the error is one sentence that names it.
pub fn duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|error| error.naming(setting))
}

/// [`duration`] of a key that may be absent.
pub fn optional_duration(setting: &str, text: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    text.map(|text| duration(setting, text)).transpose()
}

/// A text that is not a duration. The writer's fault; nothing was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    why: String,
}

impl DurationError {
    /// The same error as a [`ConfigError`] of `setting`: `monitor.tick = "fast" is not a
    /// duration (...)`.
    pub fn naming(&self, setting: &str) -> ConfigError {
        ConfigError::new(setting.to_string(), format!("= {self}"))
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a duration ({}); write e.g. \"500ms\" or \"3s\"", self.text, self.why)
    }
}

impl std::error::Error for DurationError {}

/// `deserialize_with` for a duration field, in the grammar of [`parse_duration`]. Serde does
/// not tell a field its name, so the error names the text; the caller adds the key.
pub fn serde_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for a span that can be switched off: a duration, or `"off"` (`None`).
pub fn serde_duration_or_off<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim() == "off" {
        return Ok(None);
    }
    let span =
        parse_duration(&text).map_err(|error| serde::de::Error::custom(format!("{error}, or \"off\"")))?;
    Ok(Some(span))
}

/// `deserialize_with` for [`ProbeOrder`]: `"round-robin"` or `"uniform"`.
pub fn serde_probe_order<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ProbeOrder, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "round-robin" => Ok(ProbeOrder::RoundRobin),
        "uniform" => Ok(ProbeOrder::Uniform),
        other => Err(serde::de::Error::custom(format!("{other:?} is not \"round-robin\" or \"uniform\""))),
    }
}

/// `[confirm]` as written: the monitor's config file and its `[group.NAME.confirm]`
/// sections, and a scenario file's `[confirm]`. Unknown keys are refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmSection {
    /// Whether confirmation is on. Each file says what its absence means: the monitor's is
    /// off unless asked for, a scenario's `[confirm]` turns it on by being there.
    pub enabled: Option<bool>,
    pub probes: Option<u8>,
    pub probe_interval: Option<String>,
    pub indirect: Option<u8>,
    pub indirect_timeout: Option<String>,
    pub recheck: Option<String>,
    pub max_probes_per_sec: Option<u32>,
    pub probe_burst: Option<u32>,
}

impl ConfirmSection {
    /// The keys set here, and `base`'s where this leaves them out (a group's section over
    /// the fleet's).
    pub fn over(&self, base: &ConfirmSection) -> ConfirmSection {
        ConfirmSection {
            enabled: self.enabled.or(base.enabled),
            probes: self.probes.or(base.probes),
            probe_interval: self.probe_interval.clone().or_else(|| base.probe_interval.clone()),
            indirect: self.indirect.or(base.indirect),
            indirect_timeout: self.indirect_timeout.clone().or_else(|| base.indirect_timeout.clone()),
            recheck: self.recheck.clone().or_else(|| base.recheck.clone()),
            max_probes_per_sec: self.max_probes_per_sec.or(base.max_probes_per_sec),
            probe_burst: self.probe_burst.or(base.probe_burst),
        }
    }

    /// The keys given on top of [`ConfirmConfig::default`], not yet validated. `section`
    /// names the section in a duration's error (`confirm`, `group.db.confirm`).
    pub fn resolve(&self, section: &str) -> Result<ConfirmConfig, ConfigError> {
        let d = ConfirmConfig::default();
        let span = |key: &str, text: &Option<String>, default: Duration| {
            Ok::<_, ConfigError>(
                optional_duration(&format!("{section}.{key}"), text.as_deref())?.unwrap_or(default),
            )
        };
        Ok(ConfirmConfig {
            probes: self.probes.unwrap_or(d.probes),
            probe_interval: span("probe_interval", &self.probe_interval, d.probe_interval)?,
            indirect: self.indirect.unwrap_or(d.indirect),
            indirect_timeout: span("indirect_timeout", &self.indirect_timeout, d.indirect_timeout)?,
            recheck: span("recheck", &self.recheck, d.recheck)?,
            max_probes_per_sec: self.max_probes_per_sec.unwrap_or(d.max_probes_per_sec),
            probe_burst: self.probe_burst.unwrap_or(d.probe_burst),
        })
    }
}

/// Phi accrual's settings as written: the monitor's `[phi]` and `[group.NAME.phi]`, a
/// scenario's `[detector]` with `kind = "phi"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhiSection {
    pub threshold: Option<f64>,
    pub suspect_threshold: Option<f64>,
    pub min_std_deviation: Option<String>,
    pub acceptable_pause: Option<String>,
    pub first_heartbeat_estimate: Option<String>,
}

impl PhiSection {
    /// The keys set here, and `base`'s where this leaves them out.
    pub fn over(&self, base: &PhiSection) -> PhiSection {
        PhiSection {
            threshold: self.threshold.or(base.threshold),
            suspect_threshold: self.suspect_threshold.or(base.suspect_threshold),
            min_std_deviation: self.min_std_deviation.clone().or_else(|| base.min_std_deviation.clone()),
            acceptable_pause: self.acceptable_pause.clone().or_else(|| base.acceptable_pause.clone()),
            first_heartbeat_estimate: self
                .first_heartbeat_estimate
                .clone()
                .or_else(|| base.first_heartbeat_estimate.clone()),
        }
    }

    /// The keys given on top of [`PhiAccrualConfig::default`], not yet validated. `section`
    /// names the section in a duration's error.
    pub fn resolve(&self, section: &str) -> Result<PhiAccrualConfig, ConfigError> {
        let d = PhiAccrualConfig::default();
        let span = |key: &str, text: &Option<String>| {
            optional_duration(&format!("{section}.{key}"), text.as_deref())
        };
        Ok(PhiAccrualConfig {
            threshold: self.threshold.unwrap_or(d.threshold),
            suspect_threshold: self.suspect_threshold.unwrap_or(d.suspect_threshold),
            min_std_deviation: span("min_std_deviation", &self.min_std_deviation)?
                .unwrap_or(d.min_std_deviation),
            acceptable_pause: span("acceptable_pause", &self.acceptable_pause)?.unwrap_or(d.acceptable_pause),
            first_heartbeat_estimate: span("first_heartbeat_estimate", &self.first_heartbeat_estimate)?
                .or(d.first_heartbeat_estimate),
        })
    }
}

/// The fixed timeout's settings as written: the monitor's `[fixed]` and
/// `[group.NAME.fixed]`, a scenario's `[detector]` with `kind = "fixed"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedSection {
    pub multiplier: Option<f64>,
    pub grace: Option<String>,
}

impl FixedSection {
    /// The keys set here, and `base`'s where this leaves them out.
    pub fn over(&self, base: &FixedSection) -> FixedSection {
        FixedSection {
            multiplier: self.multiplier.or(base.multiplier),
            grace: self.grace.clone().or_else(|| base.grace.clone()),
        }
    }

    /// The keys given on top of [`FixedTimeoutConfig::default`], not yet validated.
    /// `section` names the section in a duration's error.
    pub fn resolve(&self, section: &str) -> Result<FixedTimeoutConfig, ConfigError> {
        let d = FixedTimeoutConfig::default();
        Ok(FixedTimeoutConfig {
            multiplier: self.multiplier.unwrap_or(d.multiplier),
            grace: optional_duration(&format!("{section}.grace"), self.grace.as_deref())?.unwrap_or(d.grace),
        })
    }
}

#[cfg(test)]
mod tests;
