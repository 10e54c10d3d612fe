//! Steps of the monitor's wall clock, end to end: the real monitor runs under libfaketime
//! (Debian's `faketime`), whose offset the test rewrites in a file while the monitor runs
//! (`FAKETIME_TIMESTAMP_FILE` + `FAKETIME_NO_CACHE`), with the monotonic clock left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC`), as NTP or a VM restored from a snapshot steps it.
//!
//! "True time" below is the test's clock plus an offset chosen so that pings fall well inside
//! a minute on both the true and the skewed clock, since cron ticks are whole minutes.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Monitor, Sandbox};

/// Deadline of every wait: generous, a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(30);
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const TOKEN: &str = "tok_minutely_0123456789abcdefghij";
const GRACE_S: i64 = 5;

#[test]
fn cron_checks_follow_the_wall_clock_when_it_is_stepped_back_then_forward() {
    let sandbox = Sandbox::new();
    let config = format!(
        "[[check]]\nid = \"minutely\"\ntoken = \"{TOKEN}\"\ncron = \"* * * * *\"\ngrace = \"{GRACE_S}s\"\n"
    );
    // True time reads about :10 in its minute now; the monitor's clock starts 40 s ahead (:50).
    let true_offset_s = (70 - (now_ms() / 1000) % 60) % 60;
    let clock = FakeClock::new(sandbox.path(), true_offset_s + 40);
    let monitor =
        Monitor::start_env(&sandbox, &config, "127.0.0.1:0".parse().expect("an address"), &clock.env());
    clock.preloaded_into(monitor.pid());
    let true_ms = || now_ms() + true_offset_s * 1000;

    // NTP steps the monitor's clock back to true time: pings are stamped with it at once.
    clock.set(true_offset_s);
    monitor.wait_until(WAIT, "a ping is stamped with the stepped-back clock", || {
        let (status, _) = monitor.get_text(&format!("/ping/{TOKEN}/log"));
        let newest = pings(&monitor).into_iter().next().ok_or("no ping yet")?;
        let skew_ms = wall_ms(&newest["at"]) - true_ms();
        if status == 200 && skew_ms.abs() < 2_000 {
            Ok(())
        } else {
            Err(format!("{status}, {skew_ms} ms off"))
        }
    });

    // An on-time ping counts for this minute's tick: the deadline is the next tick + grace.
    let (status, _) = monitor.get_text(&format!("/ping/{TOKEN}"));
    assert_eq!(status, 200, "{}", monitor.stderr_tail());
    let (_, check) = monitor.get_json("/v1/checks/minutely");
    let at = wall_ms(&pings(&monitor)[0]["at"]);
    let deadline = at + check["deadline_in_ms"].as_i64().expect("an up check has a deadline");
    let expected = (at / 60_000 + 1) * 60_000 + GRACE_S * 1000;
    assert!((deadline - expected).abs() < 2_000, "deadline {deadline}, expected {expected}: {check}");
    assert_eq!(check["state"], "up");

    // Then forward two hours: the tick has passed on the wall clock, and the check goes
    // down one grace after the step, not a minute later when the monotonic deadline comes.
    let before_step = true_ms();
    clock.set(true_offset_s + 7200);
    let last = monitor.wait_until(WAIT, "the check goes down after the step forward", || {
        let (_, events) = monitor.get_json("/v1/events?kind=check&node=minutely&limit=1000");
        let last = events.as_array().and_then(|events| events.last()).cloned().unwrap_or_default();
        if last["to"] == "down" { Ok(last) } else { Err(events.to_string()) }
    });
    assert_eq!(last["reason"], "timeout", "{last}");
    let dated = wall_ms(&last["at"]);
    assert!(
        dated >= before_step + 7_200_000 && dated <= true_ms() + 7_200_000,
        "the down is dated after the step, on the stepped clock: {last}"
    );
    let (_, metrics) = monitor.get_text("/metrics");
    assert!(metrics.contains("rollcall_wall_clock_steps_total 2"), "{metrics}");
}

/// libfaketime's offset file: `+N` seconds ahead of the real clock.
struct FakeClock {
    file: PathBuf,
    /// The process libfaketime was preloaded into: dropped after the monitor (declared
    /// before it), the clock removes the shared-memory files libfaketime made for it, which
    /// it removes itself only when the process exits normally (this one is killed).
    process: std::cell::Cell<Option<u32>>,
}

impl Drop for FakeClock {
    fn drop(&mut self) {
        if let Some(pid) = self.process.get() {
            for leftover in
                [format!("/dev/shm/faketime_shm_{pid}"), format!("/dev/shm/sem.faketime_sem_{pid}")]
            {
                let _ = std::fs::remove_file(leftover);
            }
        }
    }
}

impl FakeClock {
    fn new(dir: &Path, ahead_s: i64) -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: install the Debian package `faketime`"
        );
        let clock = FakeClock { file: dir.join("faketime"), process: std::cell::Cell::new(None) };
        clock.set(ahead_s);
        clock
    }

    fn preloaded_into(&self, pid: u32) {
        self.process.set(Some(pid));
    }

    fn set(&self, ahead_s: i64) {
        // Written whole then renamed, so the monitor never reads half a line.
        let partial = self.file.with_extension("partial");
        std::fs::write(&partial, format!("{ahead_s:+}\n")).expect("the sandbox is writable");
        std::fs::rename(&partial, &self.file).expect("the sandbox is writable");
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    }
}

/// The check's pings, newest first.
fn pings(monitor: &Monitor) -> Vec<Value> {
    let (_, check) = monitor.get_json("/v1/checks/minutely");
    check["pings"].as_array().cloned().unwrap_or_default()
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn wall_ms(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    let at = humantime::parse_rfc3339(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    at.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}
