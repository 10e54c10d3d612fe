//! Measures Akka's logistic approximation of the normal CDF against the exact CDF, so that
//! the figures quoted in the documentation are checked rather than copied.

use crate::phi::{logistic_quantile, phi_of_score};

/// The integration step; Simpson's rule at this step is exact to about 1e-13 here.
const STEP: f64 = 1e-3;

/// The logistic CDF as the detector computes it: `1 - 10^-phi`.
fn logistic_cdf(y: f64) -> f64 {
    1.0 - 10f64.powf(-phi_of_score(y))
}

fn density(y: f64) -> f64 {
    (-y * y / 2.0).exp() / (2.0 * core::f64::consts::PI).sqrt()
}

/// The exact upper tail `P(Y > y)` of a standard normal at `y = end - k * STEP` for
/// `k = 0, 1, ..., steps`, by Simpson's rule integrated leftwards from `end`, where the
/// tail beyond is below 1e-30.
fn upper_tails(end: f64, steps: usize) -> Vec<(f64, f64)> {
    let mut tail = 0.0;
    let mut out = vec![(end, tail)];
    for k in 1..=steps {
        let (high, low) = (end - (k - 1) as f64 * STEP, end - k as f64 * STEP);
        tail += STEP / 6.0 * (density(low) + 4.0 * density((low + high) / 2.0) + density(high));
        out.push((low, tail));
    }
    out
}

#[test]
fn max_cdf_error_is_1_4e_4() {
    let (mut worst, mut worst_at) = (0.0f64, 0.0);
    for (y, tail) in upper_tails(12.0, 24_000) {
        let error = (logistic_cdf(y) - (1.0 - tail)).abs();
        if error > worst {
            (worst, worst_at) = (error, y);
        }
    }
    assert!((1.40e-4..1.41e-4).contains(&worst), "max error {worst:e} at {worst_at}");
    assert!((worst_at.abs() - 2.687).abs() < 0.01, "max error at {worst_at}");
}

#[test]
fn logistic_reaches_phi_8_before_the_exact_normal() {
    // Where the exact normal's upper tail falls to 1e-8 (phi = 8).
    let tails = upper_tails(12.0, 12_000);
    let (exact, _) = tails
        .iter()
        .rev()
        .find(|(_, tail)| *tail < 1e-8)
        .copied()
        .expect("the tail reaches 1e-8 before y = 0");
    assert!((exact - 5.612).abs() < 2e-3, "exact normal reaches phi 8 at y = {exact}");
    let logistic = logistic_quantile(8.0);
    assert!((logistic - 5.226).abs() < 1e-3, "logistic reaches phi 8 at y = {logistic}");
    // At the exact crossing the logistic already reports a phi above 9.
    assert!(phi_of_score(exact) > 9.0 && phi_of_score(exact) < 9.5, "{}", phi_of_score(exact));
}
