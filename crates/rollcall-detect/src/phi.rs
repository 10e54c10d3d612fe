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
        let n = window.len() as f64;
        let mean = window.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        // Two passes rather than `E[x^2] - E[x]^2`, which cancels catastrophically when the
        // intervals are large and nearly equal (the common, regular case).
        let variance = window.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum::<f64>() / n;
        (mean, variance.sqrt())
    }

    /// The normal model phi is computed against.
    fn model(&self) -> Model {
        let (mean_us, std_us) = self.window_moments();
        let min_us = self.config.min_std_deviation.as_nanos() as f64 / 1e3;
        Model {
            mean_us: mean_us + self.config.acceptable_pause.as_nanos() as f64 / 1e3,
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
            Some(last) => phi((now - last).as_nanos() as f64 / 1e3, self.model()),
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
        let elapsed_us = model.mean_us + remembered_quantile(threshold) * model.sigma_us;
        // The same arithmetic as `level`, with the model computed once for the whole walk.
        Some(earliest_crossing(last, elapsed_us * 1e3, |at| {
            phi((at - last).as_nanos() as f64 / 1e3, model) >= threshold
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
    phi_of_score((elapsed_us - model.mean_us) / model.sigma_us)
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

/// [`logistic_quantile`] of `threshold`, remembered on this thread for the last two
/// thresholds asked for.
///
/// A monitor asks every detector for the crossing of one of two configured thresholds (the
/// suspect level while a node is up, the down level while it is suspect) at every heartbeat,
/// and the quantile depends on the threshold alone; computed each time, its half a dozen
/// libm calls (`exp_m1`, `ln`, `asinh`, `sinh`) were about a quarter of the detector's cost
/// on the heartbeat path. The answer is bit for bit the one computed, so results do not
/// depend on what the memo held; a thread-local keeps detectors free of shared state.
pub(crate) fn remembered_quantile(threshold: f64) -> f64 {
    use std::cell::Cell;
    // Keyed by the threshold's bits; NaN's bits never match, because `crossing` answers a
    // NaN threshold before asking (and NaN is never equal to itself anyway).
    const EMPTY: (u64, f64) = (u64::MAX, f64::NAN);
    thread_local! {
        static MEMO: Cell<[(u64, f64); 2]> = const { Cell::new([EMPTY; 2]) };
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
        let quantile = logistic_quantile(threshold);
        memo.set([(key, quantile), latest]);
        quantile
    })
}

/// A non-negative count of microseconds as a [`Duration`], rounded to the nanosecond.
fn micros_to_duration(micros: f64) -> Duration {
    Duration::from_nanos(crate::nanos_u64(micros * 1e3))
}
