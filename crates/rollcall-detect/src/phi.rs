//! Phi accrual (Hayashibara et al. 2004), with Akka's defaults.
// STUB: to be implemented.
use crate::{Detector, Instant};
use core::time::Duration;
use std::sync::Arc;

pub const PHI_WINDOW: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct PhiAccrualConfig {
    pub threshold: f64,
    pub suspect_threshold: f64,
    pub min_std_deviation: Duration,
    pub acceptable_pause: Duration,
    pub first_heartbeat_estimate: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct PhiAccrual {
    config: Arc<PhiAccrualConfig>,
    last: Option<Instant>,
}

impl PhiAccrual {
    pub fn new(config: Arc<PhiAccrualConfig>, _declared_interval: Duration) -> Self {
        PhiAccrual { config, last: None }
    }
}

impl Detector for PhiAccrual {
    fn heartbeat(&mut self, now: Instant) { self.last = Some(now); }
    fn level(&self, _now: Instant) -> f64 { todo!() }
    fn crossing(&self, _threshold: f64) -> Option<Instant> { todo!() }
    fn suspect_level(&self) -> f64 { self.config.suspect_threshold }
    fn down_level(&self) -> f64 { self.config.threshold }
    fn last_arrival(&self) -> Option<Instant> { self.last }
    fn mean_interval(&self) -> Duration { todo!() }
}
