//! Phi accrual (Hayashibara et al. 2004), as Akka implements it, with Akka's defaults.
//!
//! The detector keeps the last [`PHI_WINDOW`] inter-arrival times, models the next one as
//! a normal distribution with mean `window mean + acceptable pause` and standard deviation
//! `max(window std dev, min std dev)`, and reports `phi = -log10(P(no heartbeat yet))`.
//! Like Akka it approximates the normal CDF with a logistic curve, which has the useful
//! property that phi can be inverted in closed form: [`Detector::crossing`] gives the
//! deadline at which phi reaches a threshold without any search or periodic scan.

use crate::fixed::MIN_INTERVAL;
use crate::{ConfigError, Detector, Instant, earliest_crossing};
use core::f64::consts::LN_10;
use core::time::Duration;
use std::sync::Arc;

/// How many inter-arrival times a [`PhiAccrual`] remembers.
///
/// Akka keeps 1000; 32 keeps a detector at 176 bytes (a million nodes in 176 MB),
/// still estimates the standard deviation to within about 13 % (one standard error,
/// `1/sqrt(2(n-1))`), and forgets an old interval after 32 heartbeats, so a sender that
/// changes its interval is modelled correctly again about half a minute later at 1 s.
pub const PHI_WINDOW: usize = 32;

/// The linear coefficient of Akka's logistic approximation of the normal CDF.
const LOGISTIC_LINEAR: f64 = 1.5976;
/// The cubic coefficient of Akka's logistic approximation of the normal CDF.
const LOGISTIC_CUBIC: f64 = 0.070566;

/// The smallest standard deviation used in the arithmetic, in microseconds, so that phi
/// stays finite even under a configuration that skipped validation (min std dev zero).
const SIGMA_FLOOR_US: f64 = 1e-3;

/// Settings of [`PhiAccrual`], shared by every node of a class through an [`Arc`].
#[derive(Clone, Debug, PartialEq)]
pub struct PhiAccrualConfig {
    /// The phi at which the node is down (Akka: 8, the silence that a live sender
    /// following the model would reach with probability 10^-8).
    pub threshold: f64,
    /// The phi at which the node is suspect; at most `threshold`.
    pub suspect_threshold: f64,
    /// The smallest standard deviation assumed, so that a very regular sender is not
    /// declared down by the first slightly late heartbeat.
    pub min_std_deviation: Duration,
    /// Silence tolerated on top of the mean interval (a GC pause, a busy network), added to
    /// the mean of the model.
    pub acceptable_pause: Duration,
    /// The interval assumed before real intervals have been seen; `None` uses the interval
    /// the sender declares in its heartbeats.
    pub first_heartbeat_estimate: Option<Duration>,
}

impl Default for PhiAccrualConfig {
    /// Akka's defaults: threshold 8, min std dev 100 ms, acceptable pause 3 s; suspect at
    /// phi 3, a level Akka leaves to the user.
    fn default() -> Self {
        PhiAccrualConfig {
            threshold: 8.0,
            suspect_threshold: 3.0,
            min_std_deviation: Duration::from_millis(100),
            acceptable_pause: Duration::from_secs(3),
            first_heartbeat_estimate: None,
        }
    }
}

impl PhiAccrualConfig {
    /// Checks the settings, returning one sentence that names the bad field as the struct
    /// spells it; callers add where the settings came from ("invalid configuration: phi: ...").
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [("threshold", self.threshold), ("suspect_threshold", self.suspect_threshold)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(ConfigError::new(name, format!("must be a finite number > 0, got {value}")));
            }
        }
        if self.suspect_threshold > self.threshold {
            return Err(ConfigError::new(
                "suspect_threshold",
                format!("({}) must not exceed threshold ({})", self.suspect_threshold, self.threshold),
            ));
        }
        if self.min_std_deviation.is_zero() {
            return Err(ConfigError::new("min_std_deviation", "must be greater than zero"));
        }
        if self.first_heartbeat_estimate.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("first_heartbeat_estimate", "must be greater than zero when set"));
        }
        Ok(())
    }
}

/// Statistics of the inter-arrival times a [`PhiAccrual`] remembers, for display.
///
/// These are the raw window figures: the model adds the acceptable pause to the mean and
/// raises the standard deviation to at least the configured minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalStats {
    /// The mean of the remembered intervals.
    pub mean: Duration,
    /// Their population standard deviation.
    pub std_deviation: Duration,
    /// How many intervals are remembered, seeds included (at most [`PHI_WINDOW`]).
    pub samples: usize,
}

/// The phi accrual detector for one node.
///
/// Small on purpose (176 bytes on 64-bit targets, no heap allocation of its own): a monitor
/// holds one per node and must hold a million. Intervals are stored as `u32` microseconds,
/// clamped to `u32::MAX` (about 71 minutes), far beyond any interval this model is
/// meaningful for.
///
/// Like Akka, a new detector's window is seeded with two intervals, `estimate -
/// estimate/4` and `estimate + estimate/4` (mean `estimate`, standard deviation
/// `estimate/4`), so that phi is meaningful from the first heartbeat on. The first
/// heartbeat only records its arrival; each later one adds the interval since the
/// previous arrival, evicting the oldest when the window is full.
///
/// ```
/// use rollcall_detect::{Detector, Instant, PhiAccrual, PhiAccrualConfig};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// // Akka's defaults: down at phi 8, a 3 s acceptable pause. The node says it beats every 1 s.
/// let config = Arc::new(PhiAccrualConfig::default());
/// let mut phi = PhiAccrual::new(config, Duration::from_secs(1));
/// for second in 0..30 {
///     phi.heartbeat(Instant::from_millis(second * 1000));
/// }
/// // Right after a heartbeat, no suspicion; after long silence, certainty.
/// assert!(phi.level(Instant::from_millis(29_500)) < 1.0);
/// assert!(phi.level(Instant::from_millis(40_000)) > phi.down_level());
/// // The detector says when it will cross its down level if nothing more arrives: the
/// // instant a monitor puts in its timer wheel instead of polling every node.
/// let down = phi.down_at().expect("a node that has sent heartbeats has a deadline");
/// assert!(down > Instant::from_millis(29_000) && down < Instant::from_millis(40_000));
/// ```
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    config: Arc<PhiAccrualConfig>,
    declared_interval: Duration,
    last: Option<Instant>,
    /// A ring of inter-arrival times in microseconds; `samples[..len]` are valid.
    samples: [u32; PHI_WINDOW],
    /// How many samples are valid; never decreases, and is 2 only while the seeds are all
    /// the window holds (it starts at 2 and every heartbeat adds one).
    len: u8,
    /// Where the next sample goes: equal to `len` until the window fills, then the oldest.
    next: u8,
}

/// The normal model of the next inter-arrival time, in microseconds.
#[derive(Clone, Copy, Debug)]
struct Model {
    mean_us: f64,
    sigma_us: f64,
}

impl PhiAccrual {
    /// A detector that has seen no heartbeat, for a sender that declares
    /// `declared_interval` (a zero interval is taken as 1 ms).
    pub fn new(config: Arc<PhiAccrualConfig>, declared_interval: Duration) -> Self {
        debug_assert!(config.validate().is_ok(), "the shell validates settings at start");
        let mut detector = PhiAccrual {
            config,
            declared_interval: declared_interval.max(MIN_INTERVAL),
            last: None,
            samples: [0; PHI_WINDOW],
            len: 0,
            next: 0,
        };
        detector.seed();
        detector
    }

    /// Takes a new declared interval (senders may change theirs).
    ///
    /// It only matters while the window holds nothing but its seeds and the configuration
    /// sets no first-heartbeat estimate: then the seeds are redrawn from it. Once real
    /// intervals have arrived, they are better evidence than any declaration.
    pub fn set_declared_interval(&mut self, declared_interval: Duration) {
        self.declared_interval = declared_interval.max(MIN_INTERVAL);
        if usize::from(self.len) == 2 && self.config.first_heartbeat_estimate.is_none() {
            self.seed();
        }
    }

    /// Takes new settings (a group's thresholds changed at run time) and keeps the window:
    /// the intervals already seen say as much about the node under the new thresholds.
    /// While the window holds only its seeds, they are redrawn from the new settings.
    pub fn set_config(&mut self, config: Arc<PhiAccrualConfig>) {
        debug_assert!(config.validate().is_ok(), "the shell validates settings at start");
        self.config = config;
        if usize::from(self.len) == 2 {
            self.seed();
        }
    }

    /// The settings this detector judges by.
    pub fn config(&self) -> &Arc<PhiAccrualConfig> {
        &self.config
    }

    /// The mean, standard deviation and count of the remembered intervals.
    /// The inter-arrival times the detector is judging by, oldest first: its window, which
    /// starts with the two seeds drawn from the first-heartbeat estimate until real
    /// intervals push them out.
    pub fn recent_intervals(&self) -> Vec<Duration> {
        let len = usize::from(self.len);
        let start = if len < PHI_WINDOW { 0 } else { usize::from(self.next) % PHI_WINDOW };
        (0..len).map(|i| micros_to_duration(f64::from(self.samples[(start + i) % len]))).collect()
    }

    pub fn interval_stats(&self) -> IntervalStats {
        let (mean_us, std_us) = self.window_moments();
        IntervalStats {
            mean: micros_to_duration(mean_us),
            std_deviation: micros_to_duration(std_us),
            samples: usize::from(self.len),
        }
    }

    /// Resets the window to Akka's two seed intervals around the first-heartbeat estimate.
    fn seed(&mut self) {
        let estimate =
            self.config.first_heartbeat_estimate.unwrap_or(self.declared_interval).max(MIN_INTERVAL);
        let quarter = estimate / 4;
        self.len = 0;
        self.next = 0;
        self.push(estimate - quarter);
        self.push(estimate + quarter);
    }

    /// Adds one interval to the ring, evicting the oldest when full.
    fn push(&mut self, interval: Duration) {
        let micros = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
        self.samples[usize::from(self.next)] = micros;
        self.next = ((usize::from(self.next) + 1) % PHI_WINDOW) as u8;
        self.len = (usize::from(self.len) + 1).min(PHI_WINDOW) as u8;
        debug_assert!(
            usize::from(self.len) == PHI_WINDOW || self.next == self.len,
            "the ring only wraps once it is full"
        );
    }

    /// The window's mean and population standard deviation in microseconds.
    fn window_moments(&self) -> (f64, f64) {
        // The seeds put two samples in the window at creation and nothing removes samples,
        // so the window is never empty and the division is safe.
        let window = &self.samples[..usize::from(self.len)];
        debug_assert!(!window.is_empty(), "seeded at creation, never emptied");
        // Exact integer sums: a sample is below 2^32, so at most 32 of them sum below 2^37
        // and their squares below 2^69. The mean is the one a float sum gives (every partial
        // sum is exact in a double); the variance comes from `n sum(s^2) - sum(s)^2 =
        // n^2 var`, exact here, rounded once, so it has neither the cancellation of that form
        // in floats nor the 32 dependent float additions of a second pass over the window
        // (which were most of the detector's cost at a heartbeat).
        let n = window.len() as u64;
        let sum: u64 = window.iter().map(|&s| u64::from(s)).sum();
        let squares: u128 = window.iter().map(|&s| u128::from(u64::from(s) * u64::from(s))).sum();
        let spread = u128::from(n) * squares - u128::from(sum) * u128::from(sum);
        let mean = sum as f64 / n as f64;
        // `u128 as f64` is a library call; the spread of intervals under about 70 minutes
        // fits in 64 bits, whose conversion is one instruction and gives the same double.
        let spread = u64::try_from(spread).map_or_else(|_| spread as f64, |short| short as f64);
        let variance = spread / (n * n) as f64;
        (mean, variance.sqrt())
    }

    /// The normal model phi is computed against.
    fn model(&self) -> Model {
        let (mean_us, std_us) = self.window_moments();
        let min_us = micros(self.config.min_std_deviation);
        Model {
            mean_us: mean_us + micros(self.config.acceptable_pause),
            sigma_us: std_us.max(min_us).max(SIGMA_FLOOR_US),
        }
    }
}

impl Detector for PhiAccrual {
    fn heartbeat(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        // An arrival earlier than the previous one can only come from a caller bug; taking
        // it as a duplicate of the previous arrival keeps the window free of wrapped-around
        // intervals.
        let now = now.max(last);
        self.push(now - last);
        self.last = Some(now);
    }

    fn level(&self, now: Instant) -> f64 {
        match self.last {
            None => 0.0,
            Some(last) => phi(micros(now - last), self.model()),
        }
    }

    fn crossing(&self, threshold: f64) -> Option<Instant> {
        let last = self.last?;
        if threshold.is_nan() || threshold == f64::INFINITY {
            return Some(Instant::MAX);
        }
        if threshold <= 0.0 {
            return Some(last);
        }
        let model = self.model();
        let boundary = remembered_boundary(threshold);
        let elapsed_us = model.mean_us + boundary.quantile * model.sigma_us;
        // The same arithmetic as `level` (the score of `phi`), with the model computed once
        // for the whole walk and phi itself evaluated only next to its crossing.
        Some(earliest_crossing(last, elapsed_us * 1e3, |at| {
            boundary.reached(score(micros(at - last), model), threshold)
        }))
    }

    fn suspect_level(&self) -> f64 {
        self.config.suspect_threshold
    }

    fn down_level(&self) -> f64 {
        self.config.threshold
    }

    fn last_arrival(&self) -> Option<Instant> {
        self.last
    }

    fn mean_interval(&self) -> Duration {
        micros_to_duration(self.window_moments().0)
    }
}

/// Phi after `elapsed_us` microseconds of silence, under `model`.
fn phi(elapsed_us: f64, model: Model) -> f64 {
    phi_of_score(score(elapsed_us, model))
}

/// How many standard deviations past the model's mean `elapsed_us` of silence is.
fn score(elapsed_us: f64, model: Model) -> f64 {
    (elapsed_us - model.mean_us) / model.sigma_us
}

/// Phi at `y` standard deviations past the mean, by Akka's logistic approximation.
///
/// Akka computes `e = exp(-y (1.5976 + 0.070566 y^2))` and then `-log10(e / (1 + e))` when
/// `y > 0`, `-log10(1 - 1 / (1 + e))` otherwise. Both branches are the same function,
/// `log10(1 + exp(z))` with `z = y (1.5976 + 0.070566 y^2)`; Akka splits them for
/// rounding, but the first returns +inf once `exp(-z)` underflows to zero. Written as a
/// stable softplus it is finite for every `y` and non-decreasing in `y`, because every step
/// (`z` in `y`, softplus in `z`) is.
pub(crate) fn phi_of_score(y: f64) -> f64 {
    let z = y * (LOGISTIC_LINEAR + LOGISTIC_CUBIC * y * y);
    softplus(z) / LN_10
}

/// `ln(1 + e^z)` without overflow for large `z` or loss of the tail for small `z`.
fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// The `y` at which Akka's logistic phi equals `threshold` (> 0): the inverse of
/// [`phi_of_score`].
///
/// `log10(1 + e^z) = threshold` gives `z = ln(10^threshold - 1)`, valid for every positive
/// threshold, including those below `log10 2` whose crossing lies before the mean (negative
/// `z` and `y`): because both of Akka's branches are one function, no second branch, search
/// or Newton iteration on the other side is needed. Then `0.070566 y^3 + 1.5976 y = z` is a
/// depressed cubic with positive linear coefficient, hence one real root, given by
/// Cardano's formula. Cardano's usual sum of two cube roots cancels when `z` is near zero,
/// so it is written in its equivalent hyperbolic form, `y = 2 sqrt(p/3) sinh(asinh(x) / 3)`
/// with `a = 0.070566`, `p = 1.5976 / a` and `x = (3 z / (2 a p)) sqrt(3 / p)`, which has no
/// cancellation anywhere; one Newton step then removes the last rounding of `sinh` and
/// `asinh`.
pub(crate) fn logistic_quantile(threshold: f64) -> f64 {
    let w = threshold * LN_10;
    // ln(10^t - 1), without overflow of 10^t for large t or cancellation of `- 1` for
    // small t.
    let z = if w > 1.0 { w + (-(-w).exp()).ln_1p() } else { w.exp_m1().ln() };
    let a = LOGISTIC_CUBIC;
    let p = LOGISTIC_LINEAR / a;
    let x = 3.0 * z / (2.0 * a * p) * (3.0 / p).sqrt();
    let y = 2.0 * (p / 3.0).sqrt() * (x.asinh() / 3.0).sinh();
    let newton = y - (a * y * y * y + LOGISTIC_LINEAR * y - z) / (3.0 * a * y * y + LOGISTIC_LINEAR);
    if newton.is_finite() { newton } else { y }
}

/// Half the width of a [`Boundary`]'s band, relative to its score (absolute below 1).
///
/// `phi_of_score` is accurate to a few units in the last place, which moves its crossing by
/// about 10^-15 of the score; 10^-12 is a thousand times that, and still a hundred times
/// narrower than what one nanosecond of silence moves the score by (10^-3 / sigma_us) under
/// a standard deviation of up to a second, so the walk of `earliest_crossing` rarely lands
/// inside the band. Under longer deviations it lands there more often and computes phi, as
/// it always did.
const BAND: f64 = 1e-12;

/// Where [`phi_of_score`] reaches one threshold: the closed-form score and a narrow band
/// around it, outside of which comparing a score with the band answers "has phi reached the
/// threshold" without computing phi.
///
/// Phi is non-decreasing in the score (see [`phi_of_score`]), so below the band it is under
/// the threshold and above it at or over; inside the band, where rounding decides, phi is
/// computed as before. Answers are therefore the ones phi gives, and the crossing is the
/// same instant to the nanosecond; what is saved is the `exp` and `ln_1p` of each step of
/// the walk (two steps at every heartbeat, nearly half of the detector's cost there).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Boundary {
    /// [`logistic_quantile`] of the threshold, bit for bit.
    pub(crate) quantile: f64,
    /// Every score below this is short of the threshold.
    below: f64,
    /// Every score at or above this has reached it.
    reached_from: f64,
}

impl Boundary {
    pub(crate) fn new(threshold: f64) -> Boundary {
        let quantile = logistic_quantile(threshold);
        let half = BAND * quantile.abs().max(1.0);
        let (below, reached_from) = (quantile - half, quantile + half);
        // Checked at both ends, so that a threshold whose phi is too coarse for the band
        // (a subnormal one, or NaN) falls back to computing phi at every step.
        if phi_of_score(below) < threshold && phi_of_score(reached_from) >= threshold {
            Boundary { quantile, below, reached_from }
        } else {
            Boundary { quantile, below: f64::NEG_INFINITY, reached_from: f64::INFINITY }
        }
    }

    /// Whether phi at `score` has reached `threshold`, the one this boundary was made for:
    /// `phi_of_score(score) >= threshold`.
    pub(crate) fn reached(&self, score: f64, threshold: f64) -> bool {
        if score >= self.reached_from {
            true
        } else if score < self.below {
            false
        } else {
            phi_of_score(score) >= threshold
        }
    }
}

/// The [`Boundary`] of `threshold`, remembered on this thread for the last two thresholds
/// asked for.
///
/// A monitor asks every detector for the crossing of one of two configured thresholds (the
/// suspect level while a node is up, the down level while it is suspect) at every heartbeat,
/// and the boundary depends on the threshold alone; computed each time, the quantile's half
/// a dozen libm calls (`exp_m1`, `ln`, `asinh`, `sinh`) were about a quarter of the
/// detector's cost on the heartbeat path. The answer is bit for bit the one computed, so
/// results do not depend on what the memo held; a thread-local keeps detectors free of
/// shared state.
pub(crate) fn remembered_boundary(threshold: f64) -> Boundary {
    use std::cell::Cell;
    // Keyed by the threshold's bits; NaN's bits never match, because `crossing` answers a
    // NaN threshold before asking (and NaN is never equal to itself anyway).
    const EMPTY: (u64, Boundary) =
        (u64::MAX, Boundary { quantile: f64::NAN, below: f64::NAN, reached_from: f64::NAN });
    thread_local! {
        static MEMO: Cell<[(u64, Boundary); 2]> = const { Cell::new([EMPTY; 2]) };
    }
    let key = threshold.to_bits();
    MEMO.with(|memo| {
        let [latest, older] = memo.get();
        if latest.0 == key {
            return latest.1;
        }
        if older.0 == key {
            memo.set([older, latest]);
            return older.1;
        }
        let boundary = Boundary::new(threshold);
        memo.set([(key, boundary), latest]);
        boundary
    })
}

/// A [`Duration`] in microseconds, as `as_nanos() as f64 / 1e3` computes it.
///
/// A `u128` to `f64` conversion is a library call of a few dozen instructions; a span that
/// fits in 64 bits of nanoseconds (584 years) converts from `u64` to the same double.
fn micros(span: Duration) -> f64 {
    let nanos = span.as_nanos();
    let nanos = match u64::try_from(nanos) {
        Ok(short) => short as f64,
        Err(_) => nanos as f64,
    };
    nanos / 1e3
}

/// A non-negative count of microseconds as a [`Duration`], rounded to the nanosecond.
fn micros_to_duration(micros: f64) -> Duration {
    Duration::from_nanos(crate::nanos_u64(micros * 1e3))
}
