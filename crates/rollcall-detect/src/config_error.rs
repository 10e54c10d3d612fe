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
    setting: &'static str,
    requirement: Cow<'static, str>,
}

impl ConfigError {
    /// `requirement` continues the sentence after the setting's name ("must be at least 1").
    pub fn new(setting: &'static str, requirement: impl Into<Cow<'static, str>>) -> ConfigError {
        ConfigError { setting, requirement: requirement.into() }
    }

    /// The refused setting, as the configuration spells it (`rise`, `confirm.probes`).
    pub fn setting(&self) -> &'static str {
        self.setting
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
