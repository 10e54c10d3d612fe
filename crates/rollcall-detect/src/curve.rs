//! A detector's level over its recent past, rebuilt from what it remembers.
//!
//! No history is kept per node (a million-node monitor must not pay for curves nobody looks
//! at): the curve is rebuilt on request from what the detector already holds, its window of
//! recent inter-arrival times and the last arrival. Replaying those arrivals through a fresh
//! detector with the same settings (the same code that judged the node) gives the level at
//! every past instant. Before the oldest remembered interval the window is unknown: a young
//! node's starts from the detector's seeds (as the real one did); a full window is primed
//! with the intervals it holds now, which are the best evidence of what came before.

use crate::{Detector, Instant, PHI_WINDOW};
use core::time::Duration;

/// The replayed curve: where it starts, and its points, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The first instant the curve covers (at most `span` before `now`, never before the
    /// oldest remembered arrival).
    pub from: Instant,
    /// `(instant, level)`, oldest first. At each arrival two points share the instant: the
    /// level just before the heartbeat, then just after.
    pub points: Vec<(Instant, f64)>,
}

/// Replays a detector's remembered past through `fresh` (a new detector with the judged
/// one's settings and declared interval), sampling its level `samples + 1` times evenly
/// between the start and `now`, plus two points at each arrival. `intervals` are the judged
/// detector's recent inter-arrival times, oldest first, as [`crate::PhiAccrual`] reports them
/// (a window that is not full starts with the two seeds every new detector holds).
pub fn replay<D: Detector>(
    mut fresh: D,
    intervals: &[Duration],
    last_arrival: Option<Instant>,
    now: Instant,
    span: Duration,
    samples: u32,
) -> Curve {
    let full = intervals.len() >= PHI_WINDOW;
    // A window that is not full still holds the two seeds a new detector starts with.
    let real: &[Duration] = if full { intervals } else { intervals.get(2..).unwrap_or(&[]) };
    let mut arrivals = Vec::with_capacity(real.len() + 1);
    if let Some(last) = last_arrival {
        let mut at = last;
        arrivals.push(at);
        for interval in real.iter().rev() {
            at = Instant::from_nanos(at.as_nanos().saturating_sub(interval.as_nanos() as u64));
            arrivals.push(at);
        }
        arrivals.reverse();
    }
    if full && let Some(&first) = arrivals.first() {
        // Prime: the window as it is now, ending at the first arrival replayed below.
        let total: u64 = real.iter().map(|interval| interval.as_nanos() as u64).sum();
        let mut at = Instant::from_nanos(first.as_nanos().saturating_sub(total));
        fresh.heartbeat(at);
        for interval in real {
            at = at + *interval;
            fresh.heartbeat(at);
        }
    }
    let known_from = arrivals.first().copied().unwrap_or(now);
    let from =
        Instant::from_nanos(known_from.as_nanos().max(now.as_nanos().saturating_sub(span.as_nanos() as u64)));
    let length = now.saturating_duration_since(from);
    let samples = samples.max(1);
    let mut points = Vec::with_capacity(samples as usize + 2 * arrivals.len() + 1);
    let mut pending = arrivals.iter().copied().peekable();
    for step in 0..=samples {
        let sample = from + length * step / samples;
        while let Some(arrival) = pending.next_if(|&arrival| arrival <= sample) {
            if arrival >= from && (!full || arrival > known_from) {
                points.push((arrival, fresh.level(arrival)));
            }
            if !(full && arrival == known_from) {
                fresh.heartbeat(arrival);
            }
            if arrival >= from {
                points.push((arrival, fresh.level(arrival)));
            }
        }
        points.push((sample, fresh.level(sample)));
    }
    Curve { from, points }
}
