//! `GET /v1/nodes/{id}/phi`: a node's detector level over its recent past, as the monitor
//! computes it: `rollcall_detect::curve::replay` rebuilds it from what the detector
//! remembers, through a fresh detector built from the monitor's own configuration.

use super::{ApiError, AppState};
use crate::clock::{Clock, rfc3339_ms};
use crate::monitor::owner::Command;
use axum::Json;
use axum::extract::{Path, State};
use rollcall_core::{Instant, Monitor};
use rollcall_detect::curve;
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
    let fresh = config.build(view.interval);
    let curve = curve::replay(fresh, &facts.recent_intervals, view.last_heartbeat, now, PHI_SPAN, SAMPLES);
    let points = curve
        .points
        .into_iter()
        .map(|(at, level)| PhiPoint { age_ms: (now - at).as_millis() as u64, level: level.min(LEVEL_CAP) })
        .collect();
    Some(PhiCurve {
        node: id.to_string(),
        detector: config.name(),
        suspect_level: facts.suspect_level,
        down_level: facts.down_level,
        now: rfc3339_ms(clock.wall_ms(now)),
        span_ms: (now - curve.from).as_millis() as u64,
        points,
    })
}
