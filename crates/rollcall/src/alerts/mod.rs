//! Alerts: the canonical alert document ([`model`]) and the sinks that deliver it ([`sinks`]).

pub mod build;
pub mod delivery;
pub mod model;
pub mod sinks;
