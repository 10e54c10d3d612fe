//! The monitor's core. STUB.
pub struct Monitor;
pub struct MonitorConfig;
