//! The peer-mode event loop: N unchanged [`Peer`]s, the simulated network between them, and
//! the faults of the plan, on one virtual clock.
//!
//! Events sit in a queue ordered by (instant, insertion number), as in central mode. A peer
//! is stepped at every datagram delivered to it and at the instant its `poll_timeout` asks
//! for (one pending wake-up per peer; a stale one is recognised and skipped). After every
//! step its datagrams are routed and its events recorded.
//!
//! The network model is central mode's, applied per sender: each peer's outgoing datagrams
//! draw latency, loss, duplication and bursts from that peer's own path stream (one stream
//! per sender, not per pair: 10,000 peers would need 10^8 pair states). A partition cuts
//! every datagram between a node inside a cut span and a node outside it (both ways; all
//! partition faults active at once form one side). A paused peer handles nothing: datagrams
//! wait in its socket buffer (at most [`SOCKET_BUFFER`]) and are handled, with its timers,
//! when the pause ends. A slow peer's datagrams leave late and reach it late, each by up to
//! the fault's delay. Clock drift is not modelled in peer mode.

use crate::engine::Progress;
use crate::net::{Fate, Path};
use crate::peer::queue::Queue;
use crate::peer::{PeerSettings, Start};
use crate::plan::{Action, Plan, instant, plan};
use crate::rng::{Purpose, Rng};
use crate::scenario::Scenario;
use crate::trace::{NetStats, NodeTruth, span_at};
use core::time::Duration;
use rollcall_core::swim::wire::{self, Body};
use rollcall_core::swim::{MemberId, MemberState, Peer, Roster, SwimConfig, SwimEvent};
use rollcall_core::{Instant, KeyRing};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

/// The key every simulated peer shares: real HMAC-SHA256 over every datagram.
const KEY_FILE: &str = "1:73696d756c61746f722d6b65792d6e6f742d666f722d70726f64756374696f6e\n";
/// Datagrams a paused peer's socket holds; later ones are dropped (and counted as lost).
pub const SOCKET_BUFFER: usize = 1024;
/// The port every simulated peer binds.
const PORT: u16 = 7946;
const PROGRESS_EVERY: u64 = 1 << 16;

/// One change of a member's state in one peer's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub observer: u32,
    pub subject: u32,
    pub from: Option<MemberState>,
    pub to: MemberState,
    pub incarnation: u32,
    pub at: Instant,
}

/// A crash of a peer's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCrash {
    pub node: u32,
    pub at: Instant,
    pub restart: Option<Instant>,
}

/// What a peer-mode run leaves: the ground truth, every view change, the network's counts.
#[derive(Clone, Debug)]
pub struct PeerTrace {
    pub seed: u64,
    pub end: Instant,
    pub interval: Duration,
    pub nodes: Vec<NodeTruth>,
    pub crashes: Vec<PeerCrash>,
    /// Every view change, in the order the peers reported them.
    pub seen: Vec<Seen>,
    /// Each node's incarnations as it took them (start, restarts, refutations): the ground
    /// truth a resurrection is checked against.
    pub incarnations: Vec<Vec<(Instant, u32)>>,
    pub net: NetStats,
    pub events: u64,
    /// Datagrams the peers rejected (any reason; none are expected in a simulation).
    pub rejected: u64,
    pub probes: u64,
    pub failed_probes: u64,
    pub refutes: u64,
    /// Datagrams dropped because a paused peer's socket buffer was full.
    pub buffer_drops: u64,
    /// The sum of every live peer's health score at the end (Lifeguard's multiplier).
    pub health_at_end: u64,
    /// Every ping sent (instant, target), when the settings ask for it.
    pub pings: Vec<(Instant, u32)>,
}

impl PeerTrace {
    /// FNV-1a over the ordered view changes: the run's fingerprint.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut write = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for seen in &self.seen {
            write(&seen.observer.to_le_bytes());
            write(&seen.subject.to_le_bytes());
            write(seen.from.map_or("new", MemberState::as_str).as_bytes());
            write(seen.to.as_str().as_bytes());
            write(&seen.incarnation.to_le_bytes());
            write(&seen.at.as_nanos().to_le_bytes());
        }
        hash
    }

    pub fn node_hours(&self) -> f64 {
        self.nodes.len() as f64 * Duration::from_nanos(self.end.as_nanos()).as_secs_f64() / 3600.0
    }
}

enum Event {
    Deliver {
        to: u32,
        from: u32,
        bytes: Vec<u8>,
    },
    /// The peer asked to be woken at this instant (stale unless it still matches).
    Wake {
        node: u32,
    },
    /// A pause ended: handle what waited.
    Resume {
        node: u32,
    },
    Act {
        node: u32,
        action: Action,
    },
}

struct Node {
    peer: Option<Peer>,
    path: Path,
    /// The wake-up queued for this peer, if any.
    wake: Option<Instant>,
    /// Datagrams that arrived while the peer was paused, and whether a resume is queued.
    buffer: Vec<(u32, Vec<u8>)>,
    resume_queued: bool,
    /// The largest incarnation the node ever took: a restart starts above it.
    incarnation: u32,
    generation: u64,
}

struct Engine<'a> {
    scenario: &'a Scenario,
    config: SwimConfig,
    keys: KeyRing,
    ids: Vec<Arc<MemberId>>,
    /// Every node, shared by the peers' tables at a warm start (12 bytes per member each).
    roster: Arc<Roster>,
    nodes: Vec<Node>,
    queue: Queue<Event>,
    trace: PeerTrace,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    start: Start,
    /// The cluster id, when pings are recorded (they are recognised by decoding).
    record_pings: Option<u64>,
}

/// The simulated address of node `index`: `10.x.y.z:7946` with `x.y.z` the index + 1.
pub(crate) fn address(index: u32) -> SocketAddr {
    let octets = (index + 1).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, octets[1], octets[2], octets[3]), PORT))
}

fn index_of(addr: SocketAddr, nodes: usize) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else { return None };
    let o = v4.ip().octets();
    let index = u32::from_be_bytes([0, o[1], o[2], o[3]]).checked_sub(1)?;
    (o[0] == 10 && v4.port() == PORT && (index as usize) < nodes).then_some(index)
}

/// Runs `scenario` in peer mode to its end and returns its trace.
pub fn run(
    scenario: &Scenario,
    settings: &PeerSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<PeerTrace, String> {
    scenario.validate()?;
    let keys = KeyRing::parse(KEY_FILE).map_err(|e| format!("the simulator's key: {e}"))?;
    let config = settings.swim_config(scenario.interval, scenario.nodes);
    let config_cluster = config.cluster.clone();
    let Plan { nodes: truths, actions } = plan(scenario);
    let n = scenario.nodes;
    let ids: Vec<Arc<MemberId>> =
        truths.iter().enumerate().map(|(i, t)| MemberId::new(&t.id, address(i as u32))).collect();
    let roster = Roster::new(ids.iter().cloned());
    let mut engine = Engine {
        scenario,
        config,
        keys,
        ids,
        roster,
        nodes: Vec::with_capacity(n as usize),
        queue: Queue::with_capacity(n as usize * 4),
        trace: PeerTrace {
            seed: scenario.seed,
            end: instant(scenario.duration),
            interval: scenario.interval,
            crashes: Vec::new(),
            seen: Vec::new(),
            incarnations: vec![vec![(Instant::ZERO, 0)]; n as usize],
            net: NetStats::default(),
            events: 0,
            rejected: 0,
            probes: 0,
            failed_probes: 0,
            refutes: 0,
            buffer_drops: 0,
            health_at_end: 0,
            pings: Vec::new(),
            nodes: truths,
        },
        outgoing: Vec::new(),
        start: settings.start,
        record_pings: settings.record_pings.then(|| wire::cluster_id(&config_cluster)),
    };
    for node in 0..n {
        let path = Path::new(scenario.seed, node, &scenario.network);
        engine.nodes.push(Node {
            peer: None,
            path,
            wake: None,
            buffer: Vec::new(),
            resume_queued: false,
            incarnation: 0,
            generation: 0,
        });
        engine.boot(node, Instant::ZERO, 0)?;
    }
    for (at, node, action) in actions {
        engine.push(at, Event::Act { node, action });
    }
    engine.run(progress);
    engine.finish();
    Ok(engine.trace)
}

impl Engine<'_> {
    fn push(&mut self, at: Instant, event: Event) {
        self.queue.push(at, event);
    }

    /// Starts (or restarts) node `index`'s peer at `incarnation`.
    fn boot(&mut self, index: u32, now: Instant, incarnation: u32) -> Result<(), String> {
        let node = &mut self.nodes[index as usize];
        node.generation += 1;
        // The jitter purpose is not used in peer mode: it gives each peer (and each of its
        // generations) its own seed.
        let seed = Rng::derive(self.scenario.seed, Purpose::Jitter, u64::from(index) | node.generation << 32)
            .next_u64();
        let id = &self.ids[index as usize];
        let mut peer =
            Peer::new(self.config.clone(), &id.name, id.addr, self.keys.clone(), incarnation, seed, now)
                .map_err(|e| format!("peer settings: {e}"))?;
        let mut rng = Rng::new(seed);
        match self.start {
            Start::Warm => {
                // Every other node up at incarnation 0, as `add_known` would add them.
                peer.add_roster(&self.roster);
                if now > Instant::ZERO {
                    // A restarted peer also announces itself to a few random peers.
                    let seeds: Vec<SocketAddr> =
                        (0..3).map(|_| address(rng.below(u64::from(self.scenario.nodes)) as u32)).collect();
                    peer.join(now, &seeds);
                }
            }
            Start::Join => {
                if index != 0 || now > Instant::ZERO {
                    peer.join(now, &[address(0)]);
                }
            }
        }
        node.peer = Some(peer);
        node.incarnation = incarnation;
        node.wake = None;
        self.flush(index, now);
        Ok(())
    }

    fn run(&mut self, progress: &mut dyn FnMut(Progress)) {
        let end = self.trace.end;
        let report = |now: Instant, events: u64, progress: &mut dyn FnMut(Progress)| {
            progress(Progress {
                now: Duration::from_nanos(now.as_nanos()),
                end: Duration::from_nanos(end.as_nanos()),
                events,
            })
        };
        while let Some((now, event)) = self.queue.pop() {
            if now > end {
                break;
            }
            match event {
                Event::Deliver { to, from, bytes } => self.deliver(to, from, bytes, now),
                Event::Wake { node } => self.wake(node, now),
                Event::Resume { node } => self.resume(node, now),
                Event::Act { node, action } => self.act(node, action, now),
            }
            self.trace.events += 1;
            if self.trace.events & (PROGRESS_EVERY - 1) == 0 {
                report(now, self.trace.events, progress);
            }
        }
        report(end, self.trace.events, progress);
    }

    fn paused(&self, index: u32, now: Instant) -> Option<Instant> {
        span_at(&self.trace.nodes[index as usize].paused, now).map(|span| span.to)
    }

    fn deliver(&mut self, to: u32, from: u32, bytes: Vec<u8>, now: Instant) {
        if self.nodes[to as usize].peer.is_none() {
            return;
        }
        self.trace.net.delivered += 1;
        if let Some(until) = self.paused(to, now) {
            let node = &mut self.nodes[to as usize];
            if node.buffer.len() >= SOCKET_BUFFER {
                self.trace.buffer_drops += 1;
                return;
            }
            node.buffer.push((from, bytes));
            return self.queue_resume(to, until);
        }
        let peer = self.nodes[to as usize].peer.as_mut().expect("checked above");
        peer.handle_datagram(now, address(from), &bytes);
        peer.recycle(bytes);
        self.flush(to, now);
    }

    fn wake(&mut self, index: u32, now: Instant) {
        let node = &mut self.nodes[index as usize];
        if node.wake != Some(now) || node.peer.is_none() {
            return;
        }
        node.wake = None;
        if let Some(until) = self.paused(index, now) {
            return self.queue_resume(index, until);
        }
        let peer = self.nodes[index as usize].peer.as_mut().expect("checked above");
        peer.handle_timeout(now);
        self.flush(index, now);
    }

    fn queue_resume(&mut self, index: u32, at: Instant) {
        let node = &mut self.nodes[index as usize];
        if !node.resume_queued {
            node.resume_queued = true;
            self.push(at, Event::Resume { node: index });
        }
    }

    fn resume(&mut self, index: u32, now: Instant) {
        let node = &mut self.nodes[index as usize];
        node.resume_queued = false;
        let buffered = core::mem::take(&mut node.buffer);
        let Some(peer) = node.peer.as_mut() else { return };
        for (from, bytes) in buffered {
            peer.handle_datagram(now, address(from), &bytes);
            peer.recycle(bytes);
        }
        peer.handle_timeout(now);
        self.flush(index, now);
    }

    fn act(&mut self, index: u32, action: Action, now: Instant) {
        match action {
            Action::Crash => {
                if let Some(peer) = self.nodes[index as usize].peer.take() {
                    self.absorb_stats(&peer);
                }
                let node = &mut self.nodes[index as usize];
                node.buffer.clear();
                node.wake = None;
                self.trace.crashes.push(PeerCrash { node: index, at: now, restart: None });
            }
            Action::Restart => {
                if let Some(crash) =
                    self.trace.crashes.iter_mut().rev().find(|c| c.node == index && c.restart.is_none())
                {
                    crash.restart = Some(now);
                }
                if let Some(peer) = self.nodes[index as usize].peer.take() {
                    self.absorb_stats(&peer);
                }
                // A new process starts above every incarnation the node ever used, as the
                // daemon does with its start time.
                let incarnation = self.nodes[index as usize].incarnation + 1;
                self.trace.incarnations[index as usize].push((now, incarnation));
                self.boot(index, now, incarnation).expect("the settings were valid at the start");
            }
        }
    }

    fn absorb_stats(&mut self, peer: &Peer) {
        let stats = peer.stats();
        self.trace.rejected += stats.rejected.values().sum::<u64>();
        self.trace.probes += stats.probes;
        self.trace.failed_probes += stats.failed_probes;
        self.trace.refutes += stats.refutes;
    }

    /// Routes node `index`'s datagrams, records its events, and queues its next wake-up.
    fn flush(&mut self, index: u32, now: Instant) {
        let node = &mut self.nodes[index as usize];
        let Some(peer) = node.peer.as_mut() else { return };
        while let Some(transmit) = peer.poll_transmit() {
            self.outgoing.push((transmit.to, transmit.payload));
        }
        while let Some(event) = peer.poll_event() {
            match event {
                SwimEvent::Member { member, from, to, incarnation, at } => {
                    if let Some(subject) = index_of(member.addr, self.ids.len()) {
                        self.trace.seen.push(Seen { observer: index, subject, from, to, incarnation, at });
                    }
                }
                SwimEvent::Refuted { incarnation, at } => {
                    self.trace.incarnations[index as usize].push((at, incarnation));
                    node.incarnation = node.incarnation.max(incarnation);
                }
                // Events the core may add later: the checkers judge views and incarnations.
                _ => {}
            }
        }
        let wake = peer.poll_timeout();
        // A deadline already due (a datagram arrived at the instant of a timer) is woken
        // for at `now`, after the events already queued for this instant.
        if let Some(at) = wake.map(|at| at.max(now))
            && node.wake.is_none_or(|queued| at < queued)
        {
            node.wake = Some(at);
            self.push(at, Event::Wake { node: index });
        }
        let mut outgoing = core::mem::take(&mut self.outgoing);
        for (to, bytes) in outgoing.drain(..) {
            self.route(index, to, bytes, now);
        }
        self.outgoing = outgoing;
    }

    fn route(&mut self, from: u32, to: SocketAddr, bytes: Vec<u8>, now: Instant) {
        let Some(to) = index_of(to, self.ids.len()) else { return };
        if let Some(cluster) = self.record_pings
            && let Ok(datagram) = wire::decode(&bytes, cluster, &self.keys)
            && matches!(datagram.body, Body::Ping { .. })
        {
            self.trace.pings.push((now, to));
        }
        self.trace.net.sent += 1;
        self.trace.net.bytes += bytes.len() as u64;
        let truths = &self.trace.nodes;
        let cut = |node: u32| span_at(&truths[node as usize].cut, now).is_some();
        if cut(from) != cut(to) {
            self.trace.net.cut += 1;
            return;
        }
        let slow = |node: u32| {
            truths[node as usize].slow.iter().find(|(span, _)| span.contains(now)).map(|(_, d)| *d)
        };
        let delays = [slow(from), slow(to)];
        let network = &self.scenario.network;
        let path = &mut self.nodes[from as usize].path;
        let copies = path.copies(network);
        self.trace.net.duplicated += u64::from(copies - 1);
        let mut bytes = Some(bytes);
        for copy in 0..copies {
            match path.carry(network, now) {
                Fate::Lost => self.trace.net.lost += 1,
                Fate::Delivered(mut latency) => {
                    for delay in delays.into_iter().flatten() {
                        latency += path.slow_delay(delay);
                    }
                    let payload = if copy + 1 == copies {
                        bytes.take().unwrap_or_default()
                    } else {
                        bytes.clone().unwrap_or_default()
                    };
                    self.queue.push(now + latency, Event::Deliver { to, from, bytes: payload });
                }
            }
        }
    }

    fn finish(&mut self) {
        let peers: Vec<Peer> = self.nodes.iter_mut().filter_map(|node| node.peer.take()).collect();
        for peer in &peers {
            self.absorb_stats(peer);
            self.trace.health_at_end += u64::from(peer.health());
        }
    }
}
