//! The detector's share of the heartbeat path: one arrival and the deadline it moves to.
//! A benchmark, not a test: divan prints the times and nothing is asserted about them.
//!
//! `cargo bench -p rollcall-detect --bench detector`

use core::time::Duration;
use rollcall_detect::{Detector, FixedTimeout, FixedTimeoutConfig, Instant, PhiAccrual, PhiAccrualConfig};
use std::sync::Arc;

fn main() {
    divan::main();
}

const INTERVAL: Duration = Duration::from_secs(1);

/// Feeds `detector` heartbeats one interval apart (with a little deterministic jitter) and
/// asks for its suspect deadline after each, as the monitor does.
fn run(bencher: divan::Bencher, mut detector: impl Detector) {
    let mut now = Instant::from_nanos(0);
    let mut step = 0u64;
    // Fill the window first, so the benchmark sees the steady state, not the warm-up.
    for _ in 0..2000 {
        step += 1;
        now = now + INTERVAL + Duration::from_micros(step % 97 * 100);
        detector.heartbeat(now);
    }
    bencher.bench_local(|| {
        step += 1;
        now = now + INTERVAL + Duration::from_micros(step % 97 * 100);
        detector.heartbeat(divan::black_box(now));
        divan::black_box(detector.suspect_at())
    });
}

#[divan::bench]
fn phi_heartbeat_and_deadline(bencher: divan::Bencher) {
    run(bencher, PhiAccrual::new(Arc::new(PhiAccrualConfig::default()), INTERVAL));
}

#[divan::bench]
fn fixed_heartbeat_and_deadline(bencher: divan::Bencher) {
    run(bencher, FixedTimeout::new(Arc::new(FixedTimeoutConfig::default()), INTERVAL));
}

/// phi itself at an instant (what the API and the node detail page compute).
#[divan::bench]
fn phi_level(bencher: divan::Bencher) {
    let mut detector = PhiAccrual::new(Arc::new(PhiAccrualConfig::default()), INTERVAL);
    let mut now = Instant::from_nanos(0);
    for step in 0..2000u64 {
        now = now + INTERVAL + Duration::from_micros(step % 97 * 100);
        detector.heartbeat(now);
    }
    let later = now + Duration::from_millis(1500);
    bencher.bench_local(|| divan::black_box(detector.level(divan::black_box(later))));
}
