//! The one error type for settings refused at configuration time, shared by every crate of
//! rollcall's core (the detectors here, the monitor, peer, alerter and checks in
//! `rollcall-core`).

use std::borrow::Cow;
use std::fmt;

/// A setting refused at configuration time: which one, and what it must be.
///
/// `Display` reads as one sentence that names the setting as the configuration spells it,
/// for example `threshold must be a finite number > 0, got -1`; a caller adds where the
/// settings came from ("invalid configuration: phi: ...").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: Cow<'static, str>,
    requirement: Cow<'static, str>,
}

impl ConfigError {
    /// `requirement` continues the sentence after the setting's name ("must be at least 1").
    pub fn new(
        setting: impl Into<Cow<'static, str>>,
        requirement: impl Into<Cow<'static, str>>,
    ) -> ConfigError {
        ConfigError { setting: setting.into(), requirement: requirement.into() }
    }

    /// The same error for the same setting inside `section` (`group.db`): the setting is
    /// then named `group.db.threshold`.
    pub fn within(self, section: &str) -> ConfigError {
        ConfigError { setting: format!("{section}.{}", self.setting).into(), ..self }
    }

    /// The refused setting, as the configuration spells it (`rise`, `confirm.probes`,
    /// `group.db.threshold`).
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What the setting must be: the rest of the sentence.
    pub fn requirement(&self) -> &str {
        &self.requirement
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.setting, self.requirement)
    }
}

impl std::error::Error for ConfigError {}
