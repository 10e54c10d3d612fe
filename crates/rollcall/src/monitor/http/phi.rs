//! `GET /v1/nodes/{id}/phi`: a node's detector level over its recent past, as the monitor
//! computes it.
//!
//! No history is kept per node (a million-node monitor must not pay for curves nobody
//! looks at): the curve is rebuilt on request from what the detector already holds, its
//! window of recent inter-arrival times and the last arrival. Replaying those arrivals
//! through a fresh detector built from the monitor's own configuration (the same code that
//! judges the node) gives the level at every past instant. Before the oldest remembered
//! interval the window is unknown: a young node's starts from the detector's seeds (as the
//! real one did); a full window is primed with the intervals it holds now, which are the
//! best evidence of what came before.

use super::{ApiError, AppState};
use crate::clock::{Clock, rfc3339_ms};
use crate::monitor::owner::Command;
use axum::Json;
use axum::extract::{Path, State};
use rollcall_core::{Instant, Monitor};
use rollcall_detect::{Detector, PHI_WINDOW};
use serde::Serialize;
use std::time::Duration;

/// How far back the curve goes at most.
pub const PHI_SPAN: Duration = Duration::from_secs(300);
/// Evenly spaced samples over the span (arrivals add two points each).
const SAMPLES: u32 = 240;
/// Levels above this are shown as this (phi grows without bound during a long silence).
pub const LEVEL_CAP: f64 = 1000.0;

#[derive(Clone, Debug, Serialize)]
pub struct PhiCurve {
    node: String,
    /// `phi` or `fixed` (whose level is silence / down timeout).
    detector: &'static str,
    suspect_level: f64,
    down_level: f64,
    /// RFC 3339: the instant the curve ends at (`age_ms` counts back from it).
    now: String,
    /// How far back the curve goes, in milliseconds (at most 5 minutes; less when the
    /// detector remembers less).
    span_ms: u64,
    /// Oldest first. At each heartbeat two points share an age: the level just before it,
    /// then just after.
    points: Vec<PhiPoint>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PhiPoint {
    /// Milliseconds before `now`.
    age_ms: u64,
    level: f64,
}

pub async fn curve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PhiCurve>, ApiError> {
    let found = state.ask(|reply| Command::Phi { id: id.clone(), reply }).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("node", &id))
}

/// The curve of one node, computed by the owner task (which alone touches the core).
pub fn phi_curve(core: &Monitor, id: &str, now: Instant, clock: &Clock) -> Option<PhiCurve> {
    let view = core.node(id, now)?;
    let facts = core.detector_facts(id)?;
    // The node's group's settings, which may not be the fleet's.
    let labels = view.labels().into_iter().map(|(key, value)| (key.to_owned(), value.to_owned())).collect();
    let config = &crate::monitor::explain::settings_of(core, &labels).1.detector;
    let mut detector = config.build(view.interval);
    let intervals = facts.recent_intervals;
    let full = intervals.len() >= PHI_WINDOW;
    // A window that is not full still holds the two seeds a new detector starts with.
    let real: &[Duration] = if full { &intervals } else { intervals.get(2..).unwrap_or(&[]) };
    let mut arrivals = Vec::with_capacity(real.len() + 1);
    if let Some(last) = view.last_heartbeat {
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
        detector.heartbeat(at);
        for interval in real {
            at = at + *interval;
            detector.heartbeat(at);
        }
    }
    let known_from = arrivals.first().copied().unwrap_or(now);
    let from = Instant::from_nanos(
        known_from.as_nanos().max(now.as_nanos().saturating_sub(PHI_SPAN.as_nanos() as u64)),
    );
    let span = now - from;
    let mut points = Vec::with_capacity(SAMPLES as usize + 2 * arrivals.len() + 1);
    let mut point = |at: Instant, level: f64| {
        points.push(PhiPoint { age_ms: (now - at).as_millis() as u64, level: level.min(LEVEL_CAP) });
    };
    let mut pending = arrivals.iter().copied().peekable();
    for step in 0..=SAMPLES {
        let sample = from + span * step / SAMPLES;
        while let Some(arrival) = pending.next_if(|&arrival| arrival <= sample) {
            if arrival >= from && (!full || arrival > known_from) {
                point(arrival, detector.level(arrival));
            }
            if !(full && arrival == known_from) {
                detector.heartbeat(arrival);
            }
            if arrival >= from {
                point(arrival, detector.level(arrival));
            }
        }
        point(sample, detector.level(sample));
    }
    Some(PhiCurve {
        node: id.to_string(),
        detector: config.name(),
        suspect_level: facts.suspect_level,
        down_level: facts.down_level,
        now: rfc3339_ms(clock.wall_ms(now)),
        span_ms: span.as_millis() as u64,
        points,
    })
}
