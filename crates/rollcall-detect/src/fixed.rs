//! The fixed timeout: down after `interval x multiplier + grace` without a heartbeat.
//!
//! This is the seed's detector (a heartbeat every 2 s, an alert after 5 s of silence) and
//! the default for jobs, whose intervals are too irregular or too rare for phi accrual to
//! learn anything useful.

use crate::{ConfigError, Detector, Instant, earliest_crossing, nanos_u64};
use core::time::Duration;
use std::sync::Arc;

/// The shortest interval a detector assumes, so that a sender declaring a zero interval
/// cannot make every deadline fall on its last heartbeat.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Settings of [`FixedTimeout`], shared by every node of a class through an [`Arc`].
#[derive(Clone, Debug, PartialEq)]
pub struct FixedTimeoutConfig {
    /// How many declared intervals may pass without a heartbeat before the node is
    /// suspect. Finite and at least 1.
    pub multiplier: f64,
    /// Extra silence, after the node became suspect, before it is down.
    pub grace: Duration,
}

impl Default for FixedTimeoutConfig {
    /// Multiplier 2 and grace 1 s: with the seed's 2 s interval, suspect after 4 s of
    /// silence and down after 5 s, as in the seed article.
    fn default() -> Self {
        FixedTimeoutConfig { multiplier: 2.0, grace: Duration::from_secs(1) }
    }
}

impl FixedTimeoutConfig {
    /// Checks the settings, returning one sentence that names the bad field as the struct
    /// spells it; callers add where the settings came from ("invalid configuration: phi: ...").
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::new(
                "multiplier",
                format!("must be a finite number >= 1, got {}", self.multiplier),
            ));
        }
        Ok(())
    }
}

/// The fixed timeout detector for one node.
///
/// The node is suspect after `interval x multiplier` without a heartbeat and down after
/// `interval x multiplier + grace`, where `interval` is the interval the sender declares
/// in its heartbeats. The level is the silence divided by the down timeout, so it reaches
/// 1.0 exactly when the node is down.
#[derive(Clone, Debug)]
pub struct FixedTimeout {
    config: Arc<FixedTimeoutConfig>,
    interval: Duration,
    last: Option<Instant>,
}

impl FixedTimeout {
    /// A detector that has seen no heartbeat, for a sender that declares
    /// `declared_interval` (a zero interval is taken as 1 ms).
    pub fn new(config: Arc<FixedTimeoutConfig>, declared_interval: Duration) -> Self {
        debug_assert!(config.validate().is_ok(), "the shell validates settings at start");
        FixedTimeout { config, interval: declared_interval.max(MIN_INTERVAL), last: None }
    }

    /// Takes a new declared interval (senders may change theirs); a zero interval is
    /// taken as 1 ms. Deadlines computed from now on use it.
    pub fn set_declared_interval(&mut self, declared_interval: Duration) {
        self.interval = declared_interval.max(MIN_INTERVAL);
    }

    /// Takes new settings (a group's multiplier changed at run time); the last arrival is
    /// kept, so deadlines computed from now on count from it.
    pub fn set_config(&mut self, config: Arc<FixedTimeoutConfig>) {
        debug_assert!(config.validate().is_ok(), "the shell validates settings at start");
        self.config = config;
    }

    /// The settings this detector judges by.
    pub fn config(&self) -> &Arc<FixedTimeoutConfig> {
        &self.config
    }

    /// The silence after which the node is suspect: `interval x multiplier`.
    pub fn suspect_timeout(&self) -> Duration {
        Duration::from_nanos(self.suspect_nanos())
    }

    /// The silence after which the node is down: `interval x multiplier + grace`.
    pub fn down_timeout(&self) -> Duration {
        Duration::from_nanos(self.down_nanos())
    }

    /// `interval x multiplier` in whole nanoseconds, so that the suspect deadline is an
    /// exact instant rather than the product of two rounded floats.
    fn suspect_nanos(&self) -> u64 {
        nanos_u64(self.interval.as_nanos() as f64 * self.config.multiplier)
    }

    /// The down timeout in whole nanoseconds, at least one so that levels stay finite
    /// even under a configuration that skipped validation.
    fn down_nanos(&self) -> u64 {
        let grace = u64::try_from(self.config.grace.as_nanos()).unwrap_or(u64::MAX);
        self.suspect_nanos().saturating_add(grace).max(1)
    }
}

impl Detector for FixedTimeout {
    fn heartbeat(&mut self, now: Instant) {
        // The receive clock is monotonic, so an earlier `now` is a caller bug: keep the
        // later arrival rather than move the deadline backwards.
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
    }

    fn level(&self, now: Instant) -> f64 {
        match self.last {
            None => 0.0,
            Some(last) => (now - last).as_nanos() as f64 / self.down_nanos() as f64,
        }
    }

    fn crossing(&self, threshold: f64) -> Option<Instant> {
        let last = self.last?;
        if threshold.is_nan() {
            return Some(Instant::MAX);
        }
        let estimate_ns = self.down_nanos() as f64 * threshold;
        Some(earliest_crossing(last, estimate_ns, |at| self.level(at) >= threshold))
    }

    fn suspect_level(&self) -> f64 {
        self.suspect_nanos() as f64 / self.down_nanos() as f64
    }

    fn down_level(&self) -> f64 {
        1.0
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.last
    }

    fn mean_interval(&self) -> Duration {
        self.interval
    }
}
