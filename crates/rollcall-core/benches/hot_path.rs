//! The monitor core's heartbeat path, piece by piece: decode + verify, sign, deadline
//! insert / cancel / expire in the timer wheel, and the whole `Monitor::handle_datagram` of
//! an accepted heartbeat with 1,000, 100,000 and 1,000,000 nodes tracked (how the cost per
//! heartbeat grows with the table). A benchmark, not a test: divan prints the times and
//! nothing is asserted about them.
//!
//! `cargo bench -p rollcall-core --bench hot_path`

use core::time::Duration;
use rollcall_core::timer::TimerWheel;
use rollcall_core::wire::{self, Kind, Outgoing};
use rollcall_core::{Instant, KeyRing, Monitor, MonitorConfig};
use std::net::SocketAddr;

fn main() {
    divan::main();
}

fn ring() -> KeyRing {
    KeyRing::parse("1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        .expect("a valid key line")
}

fn heartbeat(ring: &KeyRing, node: &str, sequence: u64, out: &mut Vec<u8>) {
    let message = Outgoing {
        follows_advice: false,
        kind: Kind::Heartbeat,
        node,
        generation: 1,
        sequence,
        interval_ms: 1000,
        labels: &[],
    };
    wire::encode(&message, ring, out).expect("a valid heartbeat");
}

#[divan::bench]
fn decode_and_verify(bencher: divan::Bencher) {
    let ring = ring();
    let mut datagram = Vec::new();
    heartbeat(&ring, "bench-0000001", 7, &mut datagram);
    bencher.bench_local(|| divan::black_box(wire::decode(divan::black_box(&datagram), &ring).is_ok()));
}

#[divan::bench]
fn encode_and_sign(bencher: divan::Bencher) {
    let ring = ring();
    let mut out = Vec::with_capacity(128);
    let mut sequence = 0;
    bencher.bench_local(|| {
        sequence += 1;
        heartbeat(&ring, "bench-0000001", sequence, &mut out);
        divan::black_box(out.len())
    });
}

const NODES: &[u32] = &[1_000, 100_000, 1_000_000];

/// Moving one node's deadline (what every heartbeat does): an insert that replaces the
/// node's pending deadline, with `n` deadlines pending.
#[divan::bench(args = NODES)]
fn timer_move_deadline(bencher: divan::Bencher, n: u32) {
    let start = Instant::from_nanos(0);
    let mut wheel = TimerWheel::new(start);
    for key in 0..n {
        wheel.insert(key, start + Duration::from_millis(4000 + u64::from(key % 1000)));
    }
    let mut key = 0u32;
    let mut at = start + Duration::from_secs(5);
    bencher.bench_local(|| {
        key = (key + 7919) % n;
        at = at + Duration::from_micros(1);
        wheel.insert(divan::black_box(key), at);
    });
}

#[divan::bench(args = NODES)]
fn timer_cancel_and_insert(bencher: divan::Bencher, n: u32) {
    let start = Instant::from_nanos(0);
    let mut wheel = TimerWheel::new(start);
    for key in 0..n {
        wheel.insert(key, start + Duration::from_millis(4000 + u64::from(key % 1000)));
    }
    let mut key = 0u32;
    bencher.bench_local(|| {
        key = (key + 7919) % n;
        wheel.cancel(divan::black_box(key));
        wheel.insert(key, start + Duration::from_millis(4000 + u64::from(key % 1000)));
    });
}

/// Expiring deadlines: `n` deadlines spread over one second, expired one millisecond (one
/// wheel slot) at a time; the time is per expired deadline.
#[divan::bench(args = NODES, sample_count = 10, sample_size = 1)]
fn timer_expire(bencher: divan::Bencher, n: u32) {
    let start = Instant::from_nanos(0);
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .with_inputs(|| {
            let mut wheel = TimerWheel::new(start);
            for key in 0..n {
                let spread = u64::from(key) * 1_000_000 / u64::from(n);
                wheel.insert(key, start + Duration::from_micros(spread));
            }
            wheel
        })
        .bench_local_values(|mut wheel| {
            let mut fired = Vec::with_capacity(n as usize);
            for ms in 0..=1000u64 {
                wheel.expire(start + Duration::from_millis(ms), &mut fired);
            }
            divan::black_box(fired.len())
        });
}

/// A whole accepted heartbeat through `Monitor::handle_datagram` (decode, verify, lookup,
/// replay check, detector, deadline), with `n` nodes tracked and heartbeats round-robin
/// over all of them, as a fleet sends them. Time advances one microsecond per heartbeat;
/// the monitor's timeouts and events are handled every 1024 heartbeats, as the daemon does.
#[divan::bench(args = NODES, sample_count = 20)]
fn monitor_heartbeat(bencher: divan::Bencher, n: u32) {
    let ring = ring();
    let from: SocketAddr = "127.0.0.1:9".parse().expect("a valid address");
    let (mut monitor, ids, mut now) = fleet(&ring, n);
    let mut handled = 0u64;
    let mut step = |monitor: &mut Monitor, now: Instant| {
        handled += 1;
        if handled & 1023 == 0 {
            if monitor.poll_timeout().is_some_and(|at| at <= now) {
                monitor.handle_timeout(now);
            }
            while monitor.poll_event().is_some() {}
        }
    };
    let mut index = 0usize;
    let mut sequences = vec![1u64; ids.len()];
    bencher
        .with_inputs(|| {
            index = (index + 1) % ids.len();
            sequences[index] += 1;
            let mut out = Vec::with_capacity(128);
            heartbeat(&ring, &ids[index], sequences[index], &mut out);
            out
        })
        .bench_local_refs(|datagram| {
            now = now + Duration::from_micros(1);
            monitor.handle_datagram(now, from, datagram);
            step(&mut monitor, now);
        });
    let stats = monitor.stats();
    assert!(stats.heartbeats > u64::from(n), "heartbeats were accepted, not refused");
}

/// A monitor tracking `n` nodes, every one heard from once, and their ids.
fn fleet(ring: &KeyRing, n: u32) -> (Monitor, Vec<String>, Instant) {
    let from: SocketAddr = "127.0.0.1:9".parse().expect("a valid address");
    let mut now = Instant::from_nanos(0);
    let config = MonitorConfig { max_nodes: n as usize, ..MonitorConfig::default() };
    let mut monitor = Monitor::new(config, ring.clone(), now).expect("a valid configuration");
    let ids: Vec<String> = (0..n).map(|i| format!("bench-{i:07}")).collect();
    let mut datagram = Vec::with_capacity(128);
    for id in &ids {
        now = now + Duration::from_micros(1);
        heartbeat(ring, id, 1, &mut datagram);
        monitor.handle_datagram(now, from, &datagram);
    }
    while monitor.poll_event().is_some() {}
    (monitor, ids, now)
}

/// What a read of the socket hands over: 64 heartbeats of nodes spread over the table (a
/// stride of 7,919), first one by one through `handle_datagram`, then as one
/// `VerifiedBatch` through `handle_verified`, which looks the batch's ids up together
/// before handling them. Time per heartbeat.
#[divan::bench(args = NODES, sample_count = 20, consts = [false, true])]
fn monitor_read_of_64<const AS_BATCH: bool>(bencher: divan::Bencher, n: u32) {
    const READ: usize = 64;
    let ring = ring();
    let from: SocketAddr = "127.0.0.1:9".parse().expect("a valid address");
    let (mut monitor, ids, mut now) = fleet(&ring, n);
    let mut sequences = vec![1u64; ids.len()];
    let mut at = 0usize;
    let mut batch = rollcall_core::monitor::VerifiedBatch::new();
    bencher
        .counter(divan::counter::ItemsCount::new(READ))
        .with_inputs(|| {
            (0..READ)
                .map(|_| {
                    at = (at + 7919) % ids.len();
                    sequences[at] += 1;
                    let mut out = Vec::with_capacity(128);
                    heartbeat(&ring, &ids[at], sequences[at], &mut out);
                    out
                })
                .collect::<Vec<_>>()
        })
        .bench_local_refs(|read| {
            now = now + Duration::from_micros(64);
            if AS_BATCH {
                batch.clear();
                for datagram in read.iter() {
                    let _ = batch.push(from, datagram, &ring);
                }
                monitor.handle_verified(now, &batch);
            } else {
                for datagram in read.iter() {
                    monitor.handle_datagram(now, from, datagram);
                }
            }
            if monitor.poll_timeout().is_some_and(|due| due <= now) {
                monitor.handle_timeout(now);
            }
            while monitor.poll_event().is_some() {}
        });
    assert!(monitor.stats().heartbeats > u64::from(n), "heartbeats were accepted, not refused");
}
