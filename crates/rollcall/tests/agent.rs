//! The agent as a fake monitor sees it: the test's own UDP socket, with the kernel's receive
//! timestamps, so that what is asserted is what the agent sent, not when the test read it.

mod support;

use nix::sys::signal::Signal;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeVal;
use rollcall_core::KeyRing;
use rollcall_core::wire::{Kind, decode};
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use support::{Agent, DEADLINE, Sandbox};

const INTERVAL: Duration = Duration::from_millis(200);

#[test]
fn heartbeats_are_authenticated_and_numbered_from_1() {
    let sandbox = Sandbox::new();
    let fake = FakeMonitor::bind(sandbox.key_ring());
    let mut agent = Agent::start(&sandbox, "web-1", fake.addr(), INTERVAL, &[("group", "web")]);

    let beats: Vec<Heartbeat> = (0..3).map(|_| fake.receive()).collect();
    for (index, beat) in beats.iter().enumerate() {
        assert_eq!(beat.kind, Kind::Heartbeat);
        assert_eq!(beat.node, "web-1");
        assert_eq!(beat.sequence, index as u64 + 1, "sequences start at 1 and grow by 1");
        assert_eq!(beat.generation, beats[0].generation, "one generation per start");
        assert_eq!(beat.interval_ms, 200);
        assert_eq!(beat.labels, [("group".to_string(), "web".to_string())]);
    }

    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit();
    assert!(status.success(), "an agent stopped with SIGTERM exits 0, got {status}");
    let goodbye = fake.receive_until(|beat| beat.kind == Kind::Goodbye);
    assert_eq!(goodbye.generation, beats[0].generation);
    assert!(goodbye.sequence > beats[2].sequence, "the goodbye is newer than every heartbeat");
}

#[test]
fn agent_resumed_after_sigstop_does_not_burst_missed_heartbeats() {
    let sandbox = Sandbox::new();
    let fake = FakeMonitor::bind(sandbox.key_ring());
    let agent = Agent::start(&sandbox, "sleepy", fake.addr(), INTERVAL, &[]);
    for _ in 0..2 {
        fake.receive();
    }

    // The stop is the fault under test: the agent must miss several intervals (five here).
    // Nothing can be polled while it is stopped, so the test measures the time itself.
    agent.signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    while stopped.elapsed() < 5 * INTERVAL {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever is queued now was sent before the stop.
    fake.drain();
    agent.signal(Signal::SIGCONT);

    let resumed: Vec<Heartbeat> = (0..4).map(|_| fake.receive()).collect();
    let gaps: Vec<Duration> = resumed.windows(2).map(|pair| pair[1].received - pair[0].received).collect();
    // An agent that keeps its rhythm sends one heartbeat on waking and the next about an
    // interval later; a quarter of an interval leaves room for any scheduling noise.
    assert!(
        gaps.iter().all(|&gap| gap >= INTERVAL / 4),
        "after SIGCONT the agent sent heartbeats {:?} with gaps {gaps:?} (by kernel receive \
         time): it caught up on the intervals it missed in one burst instead of resuming its \
         rhythm",
        resumed.iter().map(|beat| beat.sequence).collect::<Vec<_>>()
    );
}

#[test]
fn a_watched_commands_exit_is_reported_three_times_with_its_status() {
    let sandbox = Sandbox::new();
    let fake = FakeMonitor::bind(sandbox.key_ring());
    let mut agent =
        Agent::start_with(&sandbox, "job-1", fake.addr(), INTERVAL, &[], &["--", "sh", "-c", "exit 7"]);
    let first = fake.receive();
    assert_eq!((first.kind, first.sequence), (Kind::Heartbeat, 1), "a watching agent registers at once");
    let reports: Vec<Heartbeat> =
        (0..3).map(|_| fake.receive_until(|beat| beat.kind == Kind::Exit)).collect();
    for (index, report) in reports.iter().enumerate() {
        assert_eq!(report.generation, first.generation, "the report names the generation that died");
        assert_eq!(report.sequence, first.sequence + 1 + index as u64, "each copy has the next sequence");
        assert_eq!(report.labels, [("code".to_string(), "7".to_string())]);
    }
    assert_eq!(agent.wait_exit().code(), Some(7), "the agent exits with its command's code");
}

/// A decoded datagram and when the kernel received it.
#[derive(Debug)]
struct Heartbeat {
    kind: Kind,
    node: String,
    generation: u64,
    sequence: u64,
    interval_ms: u32,
    labels: Vec<(String, String)>,
    /// Kernel receive time (SO_TIMESTAMP), since the Unix epoch.
    received: Duration,
}

/// A UDP socket standing in for a monitor: it authenticates what it receives with the
/// shared key and stamps it with the kernel's receive time.
struct FakeMonitor {
    socket: UdpSocket,
    ring: KeyRing,
}

impl FakeMonitor {
    fn bind(ring: KeyRing) -> FakeMonitor {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        setsockopt(&socket, sockopt::ReceiveTimestamp, &true).expect("enable SO_TIMESTAMP");
        socket.set_read_timeout(Some(DEADLINE)).expect("set a read timeout");
        FakeMonitor { socket, ring }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("a bound socket has an address")
    }

    /// The next datagram, within [`DEADLINE`]; it must be authentic.
    fn receive(&self) -> Heartbeat {
        self.try_receive(MsgFlags::empty())
            .unwrap_or_else(|error| panic!("no datagram from the agent within {DEADLINE:?}: {error}"))
    }

    /// Receives until `wanted` holds for a datagram, and returns that one.
    fn receive_until(&self, wanted: impl Fn(&Heartbeat) -> bool) -> Heartbeat {
        loop {
            let beat = self.receive();
            if wanted(&beat) {
                return beat;
            }
        }
    }

    /// Reads and drops every datagram already queued.
    fn drain(&self) {
        while self.try_receive(MsgFlags::MSG_DONTWAIT).is_ok() {}
    }

    fn try_receive(&self, flags: MsgFlags) -> nix::Result<Heartbeat> {
        let mut buffer = [0u8; 2048];
        let mut control = nix::cmsg_space!(TimeVal);
        let (length, stamp) = {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let message =
                recvmsg::<SockaddrIn>(self.socket.as_raw_fd(), &mut iov, Some(&mut control), flags)?;
            let stamp = message.cmsgs()?.find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmTimestamp(stamp) => Some(stamp),
                _ => None,
            });
            (message.bytes, stamp.expect("SO_TIMESTAMP is on, so every datagram is stamped"))
        };
        let message = decode(&buffer[..length], &self.ring).expect("the agent sends valid datagrams");
        Ok(Heartbeat {
            kind: message.kind,
            node: message.node.to_string(),
            generation: message.generation,
            sequence: message.sequence,
            interval_ms: message.interval_ms,
            labels: message.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            received: Duration::new(stamp.tv_sec() as u64, stamp.tv_usec() as u32 * 1000),
        })
    }
}
