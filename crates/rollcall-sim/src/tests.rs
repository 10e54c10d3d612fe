//! Tests of the simulator: determinism, the shipped scenarios, the checkers, the plots.

mod checkers;
mod confirm;
mod peer;
mod process_crash;
mod qos;
mod runs;
mod scenarios;
mod svg;
