//! The `rollcall` binary's code as a library: the monitor daemon, the agent, peer mode, the
//! alert pipeline, the store thread, the HTTP API and the command-line client.
//!
//! `src/main.rs` only parses the command line and calls into these modules; tests call them
//! in-process where a real process is not the point, for example
//! [`monitor::run`]`(listeners, store, settings, shutdown)` on sockets bound to
//! `127.0.0.1:0` (see `tests/in_process.rs`).
//! This is not a stable API: the crates meant for embedding are `rollcall-core` (the sans-IO
//! state machines), `rollcall-detect` (the detectors) and `rollcall-agent` (heartbeats from a
//! tokio service). ARCHITECTURE.md has the map.

pub mod agent;
pub mod alerts;
pub mod bench;
pub mod checks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod crash_point;
pub mod demo;
pub mod http_error;
pub mod http_server;
pub mod keygen;
pub mod lease;
pub mod monitor;
pub mod peer;
pub mod settings;
pub mod shutdown;
pub mod sim;
pub mod store_thread;
pub mod upstreams;
