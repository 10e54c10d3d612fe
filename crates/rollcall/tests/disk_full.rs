//! A full disk under the data dir: the monitor keeps detecting, says it is unhealthy, refuses
//! pings it could not make durable, keeps its memory bounded, and once space is freed sends
//! the alert it was holding within seconds. Stopping while the disk is still full ends within
//! a bound and says what was not written.
//!
//! The data dir is a small tmpfs that the test mounts (it needs root); where it cannot mount
//! one, the test says so and skips.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use nix::sys::signal::Signal;
use receiver::Receiver;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{Agent, Monitor, Sandbox};

const PATIENCE: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(200);
const TOKEN: &str = "0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f";

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status();
        match status {
            Ok(status) if status.success() => Some(Tmpfs { path: path.to_path_buf() }),
            other => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs at {} ({other:?}); this test needs root",
                    path.display()
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let block = vec![0x5a_u8; 64 * 1024];
    for _ in 0..100_000 {
        if file.write_all(&block).is_err() {
            break;
        }
    }
    // The last partial block may leave a few bytes; take them too.
    for _ in 0..64 * 1024 {
        if file.write_all(&[0x5a]).is_err() {
            return;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn ping(monitor: &Monitor, body: &[u8]) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .post(&format!("http://{}/ping/{TOKEN}", monitor.http))
        .send(body)
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

fn config(receiver: &Receiver) -> String {
    format!(
        r#"{pages}

[[check]]
id = "backup"
token = "{TOKEN}"
period = "1h"
grace = "1h"
"#,
        pages = support::quick_pages_to(&receiver.url())
    )
}

#[test]
fn a_full_disk_is_loud_bounded_and_loses_no_alert() {
    let sandbox = Sandbox::new();
    let Some(_tmpfs) = Tmpfs::mount(&sandbox.data_dir(), "4m") else { return };
    let receiver = Receiver::start();
    let monitor = Monitor::start(&sandbox, &config(&receiver));
    let mut victim = Agent::start(&sandbox, "victim", monitor.udp, INTERVAL, &[]);
    let _steady = Agent::start(&sandbox, "steady", monitor.udp, INTERVAL, &[]);
    monitor.wait_for_state("victim", "up");
    monitor.wait_for_state("steady", "up");
    assert_eq!(ping(&monitor, b"before"), 200);
    assert_eq!(monitor.get_text("/healthz"), (200, "ok\n".to_string()));

    let filler = sandbox.data_dir().join("filler");
    fill(&filler);
    victim.signal(Signal::SIGKILL);
    victim.wait_exit();
    // Detection goes on in memory; the store cannot write the down, and says so.
    monitor.wait_for_state("victim", "down");
    monitor.wait_until(PATIENCE, "/healthz says the store cannot commit", || {
        let (status, body) = monitor.get_text("/healthz");
        if status == 503 && body.contains("store cannot commit") {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    assert_eq!(monitor.metrics().get("rollcall_store_failing"), 1.0);
    assert!(receiver.alerts().is_empty(), "nothing can be sent before its outbox row is committed");

    // Pings are refused rather than acknowledged for nothing, and memory stays put: before
    // the fix, each of these 10 KB pings was answered 200 and queued in memory.
    let before = rss_kib(monitor.pid());
    let body = vec![b'x'; 10_000];
    for _ in 0..3_000 {
        assert_eq!(ping(&monitor, &body), 503, "a ping the store cannot keep is refused");
    }
    let grown_mib = rss_kib(monitor.pid()).saturating_sub(before) / 1024;
    eprintln!("RSS grew {grown_mib} MiB over 3,000 refused pings of 10 KB");
    assert!(grown_mib < 16, "memory grew by {grown_mib} MiB while the disk was full");
    assert!(monitor.metrics().get("rollcall_pings_refused_store_total") >= 3_000.0);

    // Space comes back: the held alert goes out within seconds, the monitor is healthy again.
    std::fs::remove_file(&filler).expect("free the space");
    monitor.wait_until(PATIENCE, "the victim's alert arrives once space is freed", || {
        let got = receiver.alerts();
        let paged = got.iter().any(|alert| alert["kind"] == "firing" && alert["subject"]["id"] == "victim");
        if paged { Ok(()) } else { Err(format!("{} alerts", got.len())) }
    });
    monitor.wait_until(PATIENCE, "/healthz is ok again", || {
        let (status, body) = monitor.get_text("/healthz");
        if status == 200 { Ok(()) } else { Err(format!("{status} {body}")) }
    });
    assert_eq!(ping(&monitor, b"after"), 200);
    let events = monitor.events("victim");
    assert!(events.iter().any(|event| event.to == "down"), "the down was committed: {events:?}");

    // Full again, then stopped: the stop ends within its bound and says what is lost.
    fill(&filler);
    assert_eq!(ping(&monitor, b"fills the queue"), 200, "the store has not failed yet");
    monitor.wait_until(PATIENCE, "the store fails again", || {
        let (status, body) = monitor.get_text("/healthz");
        if status == 503 { Ok(()) } else { Err(format!("{status} {body}")) }
    });
    let status = monitor.stop(Signal::SIGTERM);
    assert!(status.success(), "a stop with a failing store still exits cleanly: {status}");
    let log = std::fs::read_dir(sandbox.path())
        .expect("read the sandbox")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("monitor"))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with("stderr"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("these writes are lost"), "the stop says what was not written:\n{log}");
}

/// A kill -9 while the store cannot commit loses what was queued in memory, but no page: the
/// down that was never committed is detected again after the restart (the node is restored
/// as it was last committed, gets a fresh grace period, and stays silent).
#[test]
fn a_crash_while_the_disk_is_full_still_pages_after_the_restart() {
    let sandbox = Sandbox::new();
    let Some(_tmpfs) = Tmpfs::mount(&sandbox.data_dir(), "4m") else { return };
    let receiver = Receiver::start();
    let config = config(&receiver);
    let monitor = Monitor::start(&sandbox, &config);
    let mut victim = Agent::start(&sandbox, "victim", monitor.udp, INTERVAL, &[]);
    let _steady = Agent::start(&sandbox, "steady", monitor.udp, INTERVAL, &[]);
    monitor.wait_for_state("victim", "up");
    monitor.wait_for_state("steady", "up");

    let filler = sandbox.data_dir().join("filler");
    fill(&filler);
    victim.signal(Signal::SIGKILL);
    victim.wait_exit();
    monitor.wait_for_state("victim", "down");
    monitor.wait_until(PATIENCE, "the store fails", || {
        let (status, body) = monitor.get_text("/healthz");
        if status == 503 { Ok(()) } else { Err(format!("{status} {body}")) }
    });
    let udp = monitor.udp;
    monitor.crash();
    std::fs::remove_file(&filler).expect("free the space");

    let monitor = Monitor::start_on(&sandbox, &config, udp);
    monitor.wait_until(PATIENCE, "the victim is paged after the restart", || {
        let got = receiver.alerts();
        let paged = got.iter().any(|alert| alert["kind"] == "firing" && alert["subject"]["id"] == "victim");
        if paged { Ok(()) } else { Err(format!("{} alerts", got.len())) }
    });
    assert!(
        !receiver.alerts().iter().any(|alert| alert["subject"]["id"] == "steady"),
        "the node that stayed up was not paged"
    );
    monitor.stop(Signal::SIGTERM);
}
