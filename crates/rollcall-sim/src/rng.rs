//! The simulator's only source of randomness: the core's xoshiro256** (`rollcall_core::rng`).
//!
//! One root seed, and one derived stream per purpose and per subject (a node's jitter, a
//! node's network path, one fault's choice of nodes...), so that changing one part of a
//! scenario (say, the number of crashes) does not shift the random numbers every other part
//! draws.

use rollcall_core::rng::splitmix64;

/// What a stream is for; each purpose gets streams independent of every other purpose's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A node's send times: start phase and jitter.
    Jitter = 1,
    /// A node's path to the monitor: latency, loss, duplication, bursts.
    Path = 2,
    /// One fault's choice of nodes and times (subject: the fault's index).
    Fault = 3,
    /// A named group's choice of nodes (subject: the group's index).
    Group = 4,
    /// A node's random pauses (subject: the node's index).
    Pauses = 5,
    /// A node's path for confirmation traffic (probes and their answers), apart from its
    /// heartbeats' path so that turning confirmation on does not change which heartbeats
    /// are lost.
    ControlPath = 6,
}

/// The core's xoshiro256** (`rollcall_core::rng`), with the draws the simulator needs.
#[derive(Clone, Debug)]
pub struct Rng(rollcall_core::rng::Rng);

impl Rng {
    /// A stream for `seed`, its state spread by SplitMix64 as the authors recommend.
    pub fn new(seed: u64) -> Rng {
        Rng(rollcall_core::rng::Rng::new(seed))
    }

    /// The stream of `root` for `purpose` and `subject` (a node or fault index).
    pub(crate) fn derive(root: u64, purpose: Purpose, subject: u64) -> Rng {
        let mut state = root ^ (purpose as u64).wrapping_mul(0xa076_1d64_78bd_642f);
        let mixed = splitmix64(&mut state) ^ subject.wrapping_mul(0xe703_7ed1_a0b4_28db);
        Rng::new(mixed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn f64(&mut self) -> f64 {
        self.0.f64()
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// A standard normal deviate, by Box-Muller (one of the pair is dropped: simpler, and
    /// the cost is not where the simulator spends its time).
    pub fn normal(&mut self) -> f64 {
        // 1 - f64() is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
    }

    /// An exponential deviate with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
