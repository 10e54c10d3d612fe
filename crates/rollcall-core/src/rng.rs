//! The core's one pseudo-random generator: xoshiro256** (Blackman and Vigna 2018) seeded
//! through SplitMix64, from a seed the caller passes in. SWIM peers draw from it (the daemon
//! logs their seed, so a run can be replayed), and the simulator builds its streams on it.
//! Written here rather than taken from a crate so that a seed's sequence never changes with
//! a dependency upgrade.

/// SplitMix64's step: spreads seeds; not a stream of its own.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

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

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-40 for the
    /// sizes used here).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "callers never draw from an empty range");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
