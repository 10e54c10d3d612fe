//! The one way a test waits for a condition: poll it every [`POLL`] until it holds, for at
//! most a deadline, and on timeout fail with what was last seen. Never sleep and hope.

use std::time::{Duration, Instant};

/// How often every wait looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` every [`POLL`] until it returns `Ok`, for at most `deadline`. `probe`
/// returns `Err(what it saw)`; on timeout the panic shows that, followed by `context()`
/// (process logs, API views: whatever the caller knows that explains the failure).
pub fn wait_until<T>(
    deadline: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
    context: impl FnOnce() -> String,
) -> T {
    let started = Instant::now();
    loop {
        let seen = match probe() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}\nlast observed: {seen}\n{}", context());
        }
        std::thread::sleep(POLL);
    }
}
