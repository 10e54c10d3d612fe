//! A monitor fed by your own UDP loop: the core does no I/O and reads no clock, so a shell
//! is a socket, a clock and a loop. Here a thread plays an agent (five heartbeats, 100 ms
//! apart, then silence) and the loop prints what the monitor decides, until the node is
//! down.
//!
//! `cargo run -p rollcall-core --example own_udp_loop`

// This file is a shell, not the core: it brings the socket and the clock that the core's
// lints (clippy.toml) keep out of the crate itself.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use rollcall_core::monitor::{MonitorEvent, NodeState};
use rollcall_core::wire::{Kind, Outgoing, encode};
use rollcall_core::{Instant, Key, KeyRing, Monitor, MonitorConfig};
use std::net::UdpSocket;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In real use, both sides read the same key file (`rollcall keygen`).
    let ring = KeyRing::new(&[Key::new(1, [42; 32])])?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let address = socket.local_addr()?;

    let agent_ring = ring.clone();
    let agent = std::thread::spawn(move || -> std::io::Result<()> {
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        let mut datagram = Vec::new();
        for sequence in 1..=5 {
            let heartbeat = Outgoing {
                kind: Kind::Heartbeat,
                node: "example-1",
                generation: 1,
                sequence,
                interval_ms: 100,
                labels: &[("service", "example")],
                follows_advice: false,
            };
            encode(&heartbeat, &agent_ring, &mut datagram).expect("a valid heartbeat");
            sender.send_to(&datagram, address)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });

    // The core's clock is whatever the shell says: here, time since the loop started.
    let origin = std::time::Instant::now();
    let now = || Instant::from_nanos(origin.elapsed().as_nanos() as u64);
    let mut monitor = Monitor::new(MonitorConfig::default(), ring, now())?;
    let mut buffer = [0u8; 2048];
    // Bounded: a node that sends nothing for 30 s is long down.
    while origin.elapsed() < Duration::from_secs(30) {
        // Sleep in the socket until a datagram arrives or the monitor's next deadline.
        let wait = monitor.poll_timeout().map_or(Duration::ZERO, |at| at.saturating_duration_since(now()));
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match socket.recv_from(&mut buffer) {
            Ok((len, from)) => monitor.handle_datagram(now(), from, &buffer[..len]),
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(error) => return Err(error.into()),
        }
        if monitor.poll_timeout().is_some_and(|at| at <= now()) {
            monitor.handle_timeout(now());
        }
        while let Some(event) = monitor.poll_event() {
            if let MonitorEvent::Transition { transition, .. } = event {
                let at = transition.at.saturating_duration_since(Instant::ZERO);
                println!(
                    "{:>6.3} s  {} {} -> {} ({})",
                    at.as_secs_f64(),
                    transition.node,
                    transition.from.as_str(),
                    transition.to.as_str(),
                    transition.reason.as_str()
                );
                if transition.to == NodeState::Down {
                    agent.join().expect("the agent thread")?;
                    return Ok(());
                }
            }
        }
    }
    Err("the node was not declared down within 30 s".into())
}
