//! A SWIM peer over tokio: three peers on loopback, each a task with its own UDP socket and
//! the same key. Once each sees the other two, peer `c` is stopped (its task aborted, like a
//! crash) and the loop prints how `a` and `b` suspect it and then declare it down.
//!
//! `cargo run -p rollcall-core --example swim_over_tokio`

// This file is a shell, not the core: it brings the sockets and the clock that the core's
// lints (clippy.toml) keep out of the crate itself.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use rollcall_core::swim::{MemberState, Peer, SwimConfig, SwimEvent};
use rollcall_core::{Instant, Key, KeyRing, Transmit};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What a peer's task reports: who noticed, and what.
type Report = (&'static str, SwimEvent);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In real use, every peer reads the same key file (`rollcall keygen`).
    let ring = KeyRing::new(&[Key::new(1, [7; 32])])?;
    // A short period so that the example ends within seconds (the default is 1 s).
    let config = SwimConfig {
        cluster: "example".into(),
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(100),
        ..SwimConfig::default()
    };
    // The core's clock is whatever the shell says: here, time since the example started.
    let origin = tokio::time::Instant::now();
    let (reports, mut heard) = mpsc::unbounded_channel::<Report>();
    let mut tasks = Vec::new();
    let mut first: Option<SocketAddr> = None;
    for (seed, name) in [(1, "a"), (2, "b"), (3, "c")] {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let now = clock(origin);
        let mut peer = Peer::new(config.clone(), name, addr, ring.clone(), 1, seed, now)?;
        // The first peer starts the cluster; the others join through it.
        peer.join(now, first.as_slice());
        first.get_or_insert(addr);
        tasks.push(tokio::spawn(drive(peer, socket, origin, name, reports.clone())));
    }

    let mut up = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        let (observer, event) = tokio::select! {
            report = heard.recv() => report.ok_or("every peer stopped")?,
            () = &mut deadline => return Err("c was not declared down within 30 s".into()),
        };
        let SwimEvent::Member { member, to, at, .. } = event else { continue };
        let at = at.saturating_duration_since(Instant::ZERO).as_secs_f64();
        println!("{at:>6.3} s  {observer} sees {} {to:?}", member.name);
        match to {
            MemberState::Up => {
                up += 1;
                // Each of three peers sees the two others: time for `c` to crash.
                if up == 6 {
                    tasks.pop().expect("three tasks").abort();
                    println!("{:>6.3} s  c stops", origin.elapsed().as_secs_f64());
                }
            }
            MemberState::Down if &*member.name == "c" => break,
            _ => {}
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// The core's `Instant` for the tokio clock's now.
fn clock(origin: tokio::time::Instant) -> Instant {
    Instant::from_nanos(origin.elapsed().as_nanos() as u64)
}

/// One peer's loop: a datagram or the peer's next deadline, whichever comes first; after
/// either, send what the peer queued and pass its events on.
async fn drive(
    mut peer: Peer,
    socket: UdpSocket,
    origin: tokio::time::Instant,
    name: &'static str,
    reports: mpsc::UnboundedSender<Report>,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 2048];
    loop {
        while let Some(Transmit { to, payload }) = peer.poll_transmit() {
            // Best effort, like UDP itself: the protocol's retries cover a lost datagram.
            let _ = socket.send_to(&payload, to).await;
        }
        while let Some(event) = peer.poll_event() {
            let _ = reports.send((name, event));
        }
        let wake = peer.poll_timeout().map(|at| origin + Duration::from_nanos(at.as_nanos()));
        let wake = wake.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buffer) => {
                let (len, from) = received?;
                peer.handle_datagram(clock(origin), from, &buffer[..len]);
            }
            () = tokio::time::sleep_until(wake) => peer.handle_timeout(clock(origin)),
        }
    }
}
