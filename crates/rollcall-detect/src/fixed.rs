//! The fixed timeout: down after `interval x multiplier + grace` without a heartbeat.
// STUB: to be implemented.
use crate::{Detector, Instant};
use core::time::Duration;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct FixedTimeoutConfig {
    pub multiplier: f64,
    pub grace: Duration,
}

#[derive(Clone, Debug)]
pub struct FixedTimeout {
    config: Arc<FixedTimeoutConfig>,
    interval: Duration,
    last: Option<Instant>,
}

impl FixedTimeout {
    pub fn new(config: Arc<FixedTimeoutConfig>, declared_interval: Duration) -> Self {
        FixedTimeout { config, interval: declared_interval, last: None }
    }
}

impl Detector for FixedTimeout {
    fn heartbeat(&mut self, now: Instant) { self.last = Some(now); }
    fn level(&self, _now: Instant) -> f64 { todo!() }
    fn crossing(&self, _threshold: f64) -> Option<Instant> { todo!() }
    fn suspect_level(&self) -> f64 { todo!() }
    fn down_level(&self) -> f64 { 1.0 }
    fn last_arrival(&self) -> Option<Instant> { self.last }
    fn mean_interval(&self) -> Duration { self.interval }
}
