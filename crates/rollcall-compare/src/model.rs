//! What every implementation shares in a cell: the plan (which nodes crash when, which are
//! slow) and the network (one [`Path`] per sender from rollcall-sim, so a datagram's fate
//! is drawn the same way whoever sends it).

use core::time::Duration;
use rollcall_core::Instant;
use rollcall_sim::net::{Fate, Path};
use rollcall_sim::{Latency, Network, Rng};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The port every simulated node binds (memberlist's).
const PORT: u16 = 7946;
/// How late a slow node's datagrams leave and arrive, each way, at most (as in
/// scenarios/peer-slow.toml: a process starved of CPU).
pub const SLOW_DELAY: Duration = Duration::from_millis(800);
/// The smallest cluster a cell may have: one crash and slow nodes leave at least two
/// observers that can confirm each other's suspicions.
pub const MIN_NODES: u32 = 5;
/// Time left after the last crash for every observer to declare it down.
const TAIL: Duration = Duration::from_secs(60);

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub nodes: u32,
    /// Independent chance that a datagram is lost.
    pub loss: f64,
    /// Whether a few nodes are slow (see [`Plan::new`]).
    pub slow: bool,
    /// Virtual time simulated.
    pub duration: Duration,
    pub seed: u64,
}

impl Cell {
    /// The network of every cell: peer-lan's LAN latency, the cell's loss, no duplication,
    /// no bursts (loss is the variable under study, so it is kept independent).
    pub fn network(&self) -> Network {
        Network {
            latency: Latency::LogNormal { median: Duration::from_micros(250), sigma: 1.0 },
            loss: self.loss,
            duplicate: 0.0,
            burst: None,
        }
    }
}

/// The faults of a cell, decided from its seed before any implementation runs, so that
/// every implementation sees the same crashes at the same instants.
#[derive(Clone, Debug)]
pub struct Plan {
    /// (node, instant), in time order. A crashed node never comes back.
    pub crashes: Vec<(u32, Instant)>,
    /// Whether each node is slow for the whole run.
    pub slow: Vec<bool>,
    /// Verdicts before this are not judged: chitchat needs it to join and learn its
    /// heartbeat intervals; the SWIM implementations start warm and do not.
    pub warmup: Instant,
    pub end: Instant,
}

impl Plan {
    /// `max(3, N / 50)` crashes, but no more than a quarter of the nodes (at least one), so
    /// that a small cluster keeps most of its observers; spread evenly over
    /// `[warmup, end - 60 s]`, and, when the cell asks for them, `max(2, N / 100)` slow nodes;
    /// crashed and slow nodes are disjoint.
    pub fn new(cell: &Cell) -> Plan {
        let n = cell.nodes;
        assert!(n >= MIN_NODES, "a cell needs at least {MIN_NODES} nodes");
        let warmup = if cell.duration >= Duration::from_secs(240) { 60 } else { 30 };
        let warmup = Duration::from_secs(warmup);
        let last = cell.duration.saturating_sub(TAIL).max(warmup);
        let mut order: Vec<u32> = (0..n).collect();
        Rng::new(cell.seed ^ 0x00c0_ffee).shuffle(&mut order);
        let crashes = (n / 50).max(3).min((n / 4).max(1)) as usize;
        let slow = if cell.slow { (n / 100).max(2) as usize } else { 0 };
        let mut slow_flags = vec![false; n as usize];
        for &node in &order[crashes..crashes + slow] {
            slow_flags[node as usize] = true;
        }
        let step = if crashes > 1 { (last - warmup) / (crashes as u32 - 1) } else { Duration::ZERO };
        let crashes = order[..crashes]
            .iter()
            .enumerate()
            .map(|(i, &node)| (node, at(warmup + step * i as u32)))
            .collect();
        Plan { crashes, slow: slow_flags, warmup: at(warmup), end: at(cell.duration) }
    }

    /// When `node` crashes, if it does.
    pub fn crash_of(&self, node: u32) -> Option<Instant> {
        self.crashes.iter().find(|(n, _)| *n == node).map(|(_, at)| *at)
    }
}

/// The instant `d` after the start of the run.
pub fn at(d: Duration) -> Instant {
    Instant::ZERO + d
}

pub fn secs(instant: Instant) -> f64 {
    instant.as_nanos() as f64 / 1e9
}

/// The simulated address of node `index`: `10.x.y.z:7946` with `x.y.z` the index + 1
/// (rollcall-sim's scheme).
pub fn address(index: u32) -> SocketAddr {
    let o = (index + 1).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, o[1], o[2], o[3]), PORT))
}

pub fn index_of(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else { return None };
    let o = v4.ip().octets();
    let index = u32::from_be_bytes([0, o[1], o[2], o[3]]).checked_sub(1)?;
    (o[0] == 10 && v4.port() == PORT).then_some(index)
}

/// What the network carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams sent (lost ones included) and their bytes (payload only: no IP/UDP headers).
    pub sent: u64,
    pub bytes: u64,
    pub lost: u64,
}

/// The shared network: one loss/latency stream per sender, slow nodes' extra delays, and
/// crashed nodes that receive nothing.
pub struct Wire {
    network: Network,
    paths: Vec<Path>,
    slow: Vec<bool>,
    alive: Vec<bool>,
    pub traffic: Traffic,
}

impl Wire {
    pub fn new(cell: &Cell, plan: &Plan) -> Wire {
        let network = cell.network();
        let paths = (0..cell.nodes).map(|node| Path::new(cell.seed, node, &network)).collect();
        Wire {
            network,
            paths,
            slow: plan.slow.clone(),
            alive: vec![true; cell.nodes as usize],
            traffic: Traffic::default(),
        }
    }

    pub fn crash(&mut self, node: u32) {
        self.alive[node as usize] = false;
    }

    /// The latency of a datagram of `len` bytes from `from` to `to` sent at `now`, or `None`
    /// when it is lost (or its recipient is dead or unknown). Every datagram is counted.
    pub fn send(&mut self, from: u32, to: u32, len: usize, now: Instant) -> Option<Duration> {
        self.traffic.sent += 1;
        self.traffic.bytes += len as u64;
        if !self.alive.get(to as usize).copied().unwrap_or(false) {
            self.traffic.lost += 1;
            return None;
        }
        let path = &mut self.paths[from as usize];
        match path.carry(&self.network, now) {
            Fate::Lost => {
                self.traffic.lost += 1;
                None
            }
            Fate::Delivered(mut latency) => {
                // A slow sender's datagram leaves late, and a slow recipient reads it late.
                for node in [from, to] {
                    if self.slow[node as usize] {
                        latency += path.slow_delay(SLOW_DELAY);
                    }
                }
                Some(latency)
            }
        }
    }
}
