//! The simulator's only source of randomness: xoshiro256** seeded through SplitMix64.
//!
//! One root seed, and one derived stream per purpose and per subject (a node's jitter, a
//! node's network path, one fault's choice of nodes...), so that changing one part of a
//! scenario (say, the number of crashes) does not shift the random numbers every other part
//! draws. Written here rather than taken from a crate so that the sequence for a seed can
//! never change under us with a dependency upgrade.

/// SplitMix64's step: used to spread seeds, never as a stream of its own.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

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

/// xoshiro256** (Blackman and Vigna 2018): small, fast, and good enough for simulation.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A stream for `seed`, its state spread by SplitMix64 as the authors recommend.
    pub fn new(seed: u64) -> Rng {
        let mut state = seed;
        Rng { s: [0; 4].map(|_| splitmix64(&mut state)) }
    }

    /// The stream of `root` for `purpose` and `subject` (a node or fault index).
    pub(crate) fn derive(root: u64, purpose: Purpose, subject: u64) -> Rng {
        let mut state = root ^ (purpose as u64).wrapping_mul(0xa076_1d64_78bd_642f);
        let mixed = splitmix64(&mut state) ^ subject.wrapping_mul(0xe703_7ed1_a0b4_28db);
        Rng::new(mixed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (its bias is below 2^-40 for
    /// the sizes used here, far under anything a simulation can see).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "callers never ask for a number below zero");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
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
