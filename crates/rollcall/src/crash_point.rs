//! Crash points, for the tests that kill the monitor between two steps no signal can be
//! timed to fall between: with `ROLLCALL_CRASH_AT=NAME` in its environment, the process
//! aborts (as abruptly as kill -9: no destructor runs, nothing is flushed) the first time
//! it reaches the point named NAME. Without the variable a point costs one read of a
//! value set once.
//!
//! Points: `cluster-incident-committed` (the leader's incident write committed in etcd, its
//! outbox rows not yet written to the local store).

use std::sync::OnceLock;

/// Aborts the process here if `ROLLCALL_CRASH_AT` names `point`.
pub fn crash_at(point: &str) {
    static CONFIGURED: OnceLock<Option<String>> = OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| std::env::var("ROLLCALL_CRASH_AT").ok());
    if configured.as_deref() == Some(point) {
        eprintln!("ROLLCALL_CRASH_AT={point}: aborting here, as a crash would");
        std::process::abort();
    }
}
