//! One node's path to the monitor: latency, independent loss, duplication, and a
//! Gilbert-Elliott burst state, all drawn from the path's own random stream.

use crate::rng::{Purpose, Rng};
use crate::scenario::{Burst, Network};
use core::time::Duration;
use rollcall_core::Instant;

/// What the network does with one copy of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lost,
    /// Delivered after this latency.
    Delivered(Duration),
}

pub struct Path {
    rng: Rng,
    /// Whether the burst channel is in its bad state, and when it next switches.
    bad: bool,
    switch_at: Instant,
}

impl Path {
    pub fn new(seed: u64, node: u32, network: &Network) -> Path {
        Path::with_purpose(seed, node, network, Purpose::Path)
    }

    /// The node's path for probes and answers, with its own random stream and burst state.
    pub fn control(seed: u64, node: u32, network: &Network) -> Path {
        Path::with_purpose(seed, node, network, Purpose::ControlPath)
    }

    fn with_purpose(seed: u64, node: u32, network: &Network, purpose: Purpose) -> Path {
        let mut rng = Rng::derive(seed, purpose, u64::from(node));
        let (bad, switch_at) = match &network.burst {
            // Start in the channel's stationary distribution, so that the first minutes of
            // a run look like any other minutes.
            Some(burst) => {
                let (good, bad) = (burst.mean_good.as_secs_f64(), burst.mean_bad.as_secs_f64());
                let is_bad = rng.chance(bad / (good + bad));
                let mean = if is_bad { bad } else { good };
                (is_bad, Instant::ZERO + Duration::from_secs_f64(rng.exponential(mean)))
            }
            None => (false, Instant::MAX),
        };
        Path { rng, bad, switch_at }
    }

    /// How many copies of a datagram sent now the network carries (2 when it duplicates).
    pub fn copies(&mut self, network: &Network) -> u32 {
        1 + u32::from(self.rng.chance(network.duplicate))
    }

    /// The fate of one copy sent at `now`.
    pub fn carry(&mut self, network: &Network, now: Instant) -> Fate {
        if let Some(burst) = &network.burst {
            self.advance(burst, now);
        }
        let lost_in_burst = self.bad && network.burst.is_some_and(|burst| self.rng.chance(burst.loss));
        if lost_in_burst || self.rng.chance(network.loss) {
            return Fate::Lost;
        }
        Fate::Delivered(network.latency.sample(&mut self.rng))
    }

    /// Whether an extra `delay`-bounded wait is added (a slow sender), uniformly.
    pub fn slow_delay(&mut self, delay: Duration) -> Duration {
        delay.mul_f64(self.rng.f64())
    }

    /// Moves the burst channel on to `now`: each state lasts an exponential time.
    fn advance(&mut self, burst: &Burst, now: Instant) {
        while self.switch_at <= now {
            self.bad = !self.bad;
            let mean = if self.bad { burst.mean_bad } else { burst.mean_good };
            self.switch_at =
                self.switch_at + Duration::from_secs_f64(self.rng.exponential(mean.as_secs_f64()));
        }
    }
}
