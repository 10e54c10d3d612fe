//! The sans-IO core of rollcall: the monitor's per-node state machine, the wire codec and
//! its authentication, the deadline wheel, and the events the shells act on.
//!
//! Nothing here reads a clock, touches a socket or a file, or draws OS randomness: every
//! `now` is an argument and every effect is a value the caller polls. The daemon (tokio)
//! and the simulator drive the same types, so what the simulator measures is what users get.
//!
//! Start reading at [`Monitor`]: its doc comment says in which order a shell calls it.
//! The wire format lives in [`wire`] (documented in `docs/PROTOCOL.md`), keys in
//! [`keyring`], deadlines in [`timer`].

pub mod alerts;
#[cfg(feature = "checks")]
pub mod checks;
pub mod keyring;
pub mod leases;
pub mod monitor;
pub mod ratelimit;
pub mod responder;
pub mod rng;
#[cfg(feature = "serde")]
pub mod settings;
pub mod swim;
pub mod timer;
pub mod wire;

pub use keyring::{Key, KeyRing};
pub use monitor::DetectorConfig;
pub use monitor::{Monitor, MonitorConfig};
pub use rollcall_detect::{ConfigError, FixedTimeoutConfig, Instant, PhiAccrualConfig};

/// A datagram a state machine wants sent: the shell sends `payload` to `to` as it is.
///
/// [`Monitor::poll_transmit`], [`swim::Peer::poll_transmit`] and
/// [`responder::Responder::poll_transmit`] all return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: std::net::SocketAddr,
    pub payload: Vec<u8>,
}

/// The README's examples, run as doc tests so that they keep compiling.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
