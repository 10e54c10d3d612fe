//! The deterministic simulator of rollcall: the unchanged sans-IO core driven on a virtual
//! clock by thousands of simulated agents over a simulated network, with faults as data,
//! checkers that judge the result, and the figures and plots users choose settings from.
//!
//! A run is a pure function of its [`Scenario`] (seed included): one thread, no wall clock,
//! no OS randomness, ordered collections, and an event queue ordered by (instant,
//! insertion number). Agents send real authenticated datagrams built by the real codec; the
//! monitor is [`rollcall_core::Monitor`] itself, stepped at every arrival and at every
//! instant it asks to be woken.
//!
//! Peer mode runs the core's SWIM `Peer`s the same way ([`peer`]). What it deliberately does
//! not do (yet): monitor-side stalls. It reads no files and draws no plots on screen: the
//! shell (`rollcall sim`) loads scenario files and writes the outputs.
//!
//! Start reading at [`simulate`] (run, check, summarise), then [`Scenario`] (the input),
//! `engine.rs` (the event loop), [`Trace`] (what a run leaves), [`check`](mod@check) (the checkers),
//! and [`Report`] (the figures). docs/SIMULATOR.md describes the model and its limits.

#![forbid(unsafe_code)]

pub mod check;
mod engine;
mod format;
pub mod net;
pub mod peer;
mod plan;
pub mod qos;
mod report;
mod rng;
mod scenario;
pub mod svg;
mod trace;

pub use check::{Detection, Findings, Violation, check};
pub use engine::{Progress, run};
pub use qos::{Qos, QosReport};
pub use report::{Outcome, Report, SweepPoint, quantile, simulate, sweep};
pub use rng::Rng;
pub use scenario::{
    Burst, DetectorKnob, Direction, Fault, Latency, Network, Scenario, Selector, When, format_duration,
    parse_duration,
};
pub use trace::{Arrivals, Cause, Crash, NetStats, NodeTruth, Observed, Span, Trace};

/// The seed to use: `ROLLCALL_SEED` from the environment when it is set (to replay a
/// failing run), `default` otherwise. A value that is not a number is an error, not a
/// silent fallback.
pub fn seed_from_env(default: u64) -> Result<u64, String> {
    match std::env::var("ROLLCALL_SEED") {
        Ok(text) => text.trim().parse().map_err(|_| format!("ROLLCALL_SEED={text:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

#[cfg(test)]
mod tests;
