//! The discrete-event loop: agents that send real authenticated heartbeats, the simulated
//! network, and the unchanged core [`Monitor`], all on one virtual clock.
//!
//! Events sit in a queue ordered by (instant, insertion number), so two events due at the
//! same instant always run in the order they were scheduled: a run is a pure function of
//! its scenario. The monitor is stepped at every datagram arrival and at the instant its
//! [`Monitor::poll_timeout`] asks for; a datagram due at the same instant as a deadline is
//! delivered first, as the monitor's documentation asks of a shell.

use crate::net::{Fate, Path};
use crate::plan::{Action, Plan, instant, plan};
use crate::scenario::Scenario;
use crate::trace::{Arrivals, Cause, Crash, NetStats, Observed, Trace, span_at};
use core::cmp::Reverse;
use core::time::Duration;
use rollcall_core::monitor::MonitorEvent;
use rollcall_core::responder::{Responder, ResponderConfig};
use rollcall_core::wire::{Kind, Outgoing, encode};
use rollcall_core::{Instant, KeyRing, Monitor};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

/// The key every simulated agent and the monitor share. Real HMAC over every datagram: the
/// simulator pays the same authentication cost per heartbeat as the daemon.
const KEY_FILE: &str = "1:73696d756c61746f722d6b65792d6e6f742d666f722d70726f64756374696f6e\n";

/// The monitor's address, for the agents' answers to its probes.
const MONITOR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 7400));

/// How the run is going, for a shell's progress display (which may read the wall clock; the
/// simulator does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Virtual time reached.
    pub now: Duration,
    /// Virtual time the run ends at.
    pub end: Duration,
    /// Events processed so far.
    pub events: u64,
}

/// When a node's agent sends its exit report, counted from the crash of the process it
/// watches: the real agent's schedule (`EXIT_REPORTS` in `crates/rollcall/src/agent.rs`).
const EXIT_REPORTS: [Duration; 3] = [Duration::ZERO, Duration::from_millis(20), Duration::from_millis(100)];

/// How many events pass between two calls of the progress callback (a power of two).
const PROGRESS_EVERY: u64 = 1 << 16;

enum Event {
    /// A node's next heartbeat is due; stale once the node crashed or restarted since it
    /// was scheduled (`epoch` no longer matches).
    Send { node: u32, epoch: u32 },
    /// A datagram reaches the monitor.
    Deliver { node: u32, sent: Instant, generation: u64, sequence: u64, bytes: Vec<u8> },
    /// A node's agent sends an exit report for its crashed process; stale once the node
    /// restarted since (`epoch` no longer matches).
    ReportExit { node: u32, epoch: u32 },
    /// An exit report reaches the monitor.
    DeliverExit { node: u32, sent: Instant, generation: u64, sequence: u64, bytes: Vec<u8> },
    /// A crash or restart of the plan.
    Act { node: u32, action: Action },
    /// A probe (from the monitor) or a probe request, probe or ack (from another agent)
    /// reaches a node's agent.
    ToAgent { node: u32, from: SocketAddr, bytes: Vec<u8> },
    /// An agent's answer (an ack, or a relayed indirect ack) reaches the monitor.
    Answer { node: u32, sent: Instant, bytes: Vec<u8> },
}

type Queued = crate::trace::Queued<Event>;

/// One simulated node: its agent's state, and what the monitor has received from it.
struct Agent {
    addr: SocketAddr,
    alive: bool,
    epoch: u32,
    generation: u64,
    sequence: u64,
    jitter: crate::rng::Rng,
    path: Path,
    /// Probes and answers travel here, with their own random stream.
    control: Path,
    /// Made at the first probe the node receives; dropped when it crashes.
    responder: Option<Box<Responder>>,
    /// The newest (generation, sequence) delivered to the monitor.
    delivered: (u64, u64),
    arrivals: Arrivals,
    /// The monitor declared the node down and no datagram of it has arrived since: the
    /// monitor starts the node's history over at the next one, and so does the model.
    declared_down: bool,
    /// The crash whose generation is still the newest delivered, if the node is dead.
    open_crash: Option<usize>,
    /// When the monitor last received an answer to a probe from this node.
    last_answer: Option<Instant>,
}

struct Engine<'a> {
    scenario: &'a Scenario,
    monitor: Monitor,
    ring: KeyRing,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    agents: Vec<Agent>,
    index: BTreeMap<Arc<str>, u32>,
    trace: Trace,
    /// Spent datagram buffers, reused so that a steady run allocates nothing per heartbeat.
    spare: Vec<Vec<u8>>,
    interval_ms: u32,
}

/// Runs `scenario` to its end and returns its trace. `progress` is called now and then
/// with the virtual time reached.
pub fn run(scenario: &Scenario, progress: &mut dyn FnMut(Progress)) -> Result<Trace, String> {
    scenario.validate()?;
    let ring = KeyRing::parse(KEY_FILE).map_err(|e| format!("the simulator's key: {e}"))?;
    let config = scenario.monitor_config();
    let tick = config.tick;
    let mut monitor = Monitor::new(config, ring.clone(), Instant::ZERO).map_err(|error| error.to_string())?;
    monitor.set_probe_epoch(scenario.seed);
    let Plan { nodes, actions } = plan(scenario);
    let interval_ms = u32::try_from(scenario.interval.as_millis()).map_err(|_| "interval too long")?;
    let mut engine = Engine {
        scenario,
        monitor,
        ring,
        queue: BinaryHeap::with_capacity(scenario.nodes as usize * 2),
        order: 0,
        agents: Vec::with_capacity(scenario.nodes as usize),
        index: nodes.iter().enumerate().map(|(i, truth)| (truth.id.clone(), i as u32)).collect(),
        trace: Trace {
            seed: scenario.seed,
            end: instant(scenario.duration),
            interval: scenario.interval,
            nodes,
            crashes: Vec::new(),
            transitions: Vec::new(),
            net: NetStats::default(),
            max_latency: Duration::ZERO,
            events: 0,
            self_pauses: 0,
            rejected: Default::default(),
            tick,
            confirm: scenario.confirm.clone(),
        },
        spare: Vec::new(),
        interval_ms,
    };
    engine.start(actions);
    engine.run(progress);
    engine.trace.rejected = engine.monitor.stats().rejected.clone();
    Ok(engine.trace)
}

impl Engine<'_> {
    fn start(&mut self, actions: Vec<(Instant, u32, Action)>) {
        for node in 0..self.scenario.nodes {
            let mut jitter =
                crate::rng::Rng::derive(self.scenario.seed, crate::rng::Purpose::Jitter, node.into());
            // Agents start at a random point of their first interval, like the real agent.
            let first = instant(self.scenario.interval.mul_f64(jitter.f64()));
            let octets = (node + 1).to_be_bytes();
            self.agents.push(Agent {
                addr: SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(10, octets[1], octets[2], octets[3]),
                    7400,
                )),
                alive: true,
                epoch: 0,
                generation: 1,
                sequence: 0,
                jitter,
                path: Path::new(self.scenario.seed, node, &self.scenario.network),
                control: Path::control(self.scenario.seed, node, &self.scenario.network),
                responder: None,
                delivered: (0, 0),
                arrivals: Arrivals::new(self.scenario.interval),
                declared_down: false,
                open_crash: None,
                last_answer: None,
            });
            self.push(first, Event::Send { node, epoch: 0 });
        }
        for (at, node, action) in actions {
            self.push(at, Event::Act { node, action });
        }
    }

    fn push(&mut self, at: Instant, event: Event) {
        self.order += 1;
        self.queue.push(Reverse(Queued { at, order: self.order, event }));
    }

    fn run(&mut self, progress: &mut dyn FnMut(Progress)) {
        let end = self.trace.end;
        let mut now = Instant::ZERO;
        let report = |now: Instant, events: u64, progress: &mut dyn FnMut(Progress)| {
            progress(Progress {
                now: Duration::from_nanos(now.as_nanos()),
                end: Duration::from_nanos(end.as_nanos()),
                events,
            })
        };
        loop {
            let wake = self.monitor.poll_timeout().map_or(now, |at| at.max(now));
            let next = self.queue.peek().map(|Reverse(queued)| queued.at);
            match next {
                // Datagrams (and every other event) due by the monitor's wake-up go first.
                Some(at) if at <= wake && at <= end => {
                    let Reverse(queued) = self.queue.pop().expect("peeked just now");
                    now = queued.at;
                    self.handle(queued.event, now);
                }
                _ if wake <= end => {
                    now = wake;
                    self.monitor.handle_timeout(now);
                    self.drain(None, now);
                }
                _ => break,
            }
            self.trace.events += 1;
            if self.trace.events & (PROGRESS_EVERY - 1) == 0 {
                report(now, self.trace.events, progress);
            }
        }
        report(end, self.trace.events, progress);
    }

    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Send { node, epoch } => self.send(node, epoch, now),
            Event::Deliver { node, sent, generation, sequence, bytes } => {
                self.deliver(node, sent, (generation, sequence), &bytes, now);
                self.spare.push(bytes);
            }
            Event::ReportExit { node, epoch } => self.report_exit(node, epoch, now),
            Event::DeliverExit { node, sent, generation, sequence, bytes } => {
                self.deliver_exit(node, sent, (generation, sequence), &bytes, now);
                self.spare.push(bytes);
            }
            Event::Act { node, action } => self.act(node, action, now),
            Event::ToAgent { node, from, bytes } => self.reach_agent(node, from, bytes, now),
            Event::Answer { node, sent, bytes } => {
                self.trace.net.delivered += 1;
                let agent = &mut self.agents[node as usize];
                agent.last_answer = Some(now);
                if let Some(crash) = agent.open_crash {
                    self.trace.crashes[crash].answered = Some(now);
                }
                let silence_from = agent.arrivals.last;
                self.monitor.handle_datagram(now, agent.addr, &bytes);
                self.drain(Some((Cause::Datagram { sent, new: false }, silence_from)), now);
            }
        }
    }

    /// A node's heartbeat is due: send it (unless stalled), and schedule the next one.
    fn send(&mut self, node: u32, epoch: u32, now: Instant) {
        let agent = &self.agents[node as usize];
        if !agent.alive || agent.epoch != epoch {
            return;
        }
        let truth = &self.trace.nodes[node as usize];
        // A stalled sender sends nothing; when it wakes, the heartbeat that fell due is sent
        // once and the rhythm resumes from there (the real agent does not burst).
        if let Some(pause) = span_at(&truth.paused, now) {
            return self.push(pause.to, Event::Send { node, epoch });
        }
        let cut = span_at(&truth.cut, now).is_some();
        let slow = truth.slow.iter().find(|(span, _)| span.contains(now)).map(|(_, delay)| *delay);
        let drift = truth.drift;
        let (mut bytes, generation, sequence) = self.sign(node, Kind::Heartbeat, &[]);
        let agent = &mut self.agents[node as usize];
        let network = &self.scenario.network;
        let copies = agent.path.copies(network);
        self.trace.net.duplicated += u64::from(copies - 1);
        for copy in 0..copies {
            if cut {
                self.trace.net.cut += 1;
                continue;
            }
            let agent = &mut self.agents[node as usize];
            match agent.path.carry(network, now) {
                Fate::Lost => self.trace.net.lost += 1,
                Fate::Delivered(latency) => {
                    let latency = latency + slow.map_or(Duration::ZERO, |delay| agent.path.slow_delay(delay));
                    self.trace.max_latency = self.trace.max_latency.max(latency);
                    let bytes = if copy + 1 == copies { std::mem::take(&mut bytes) } else { bytes.clone() };
                    self.push(now + latency, Event::Deliver { node, sent: now, generation, sequence, bytes });
                }
            }
        }
        // Every copy lost or cut: the buffer is still ours to reuse.
        if bytes.capacity() > 0 {
            self.spare.push(bytes);
        }
        let agent = &mut self.agents[node as usize];
        let stray = 1.0 + self.scenario.jitter * (2.0 * agent.jitter.f64() - 1.0);
        let next = now + self.scenario.interval.mul_f64(drift * stray);
        self.push(next, Event::Send { node, epoch });
    }

    /// A datagram reaches the monitor.
    fn deliver(&mut self, node: u32, sent: Instant, id: (u64, u64), bytes: &[u8], now: Instant) {
        self.trace.net.delivered += 1;
        let agent = &mut self.agents[node as usize];
        let silence_from = agent.arrivals.last;
        let new = id > agent.delivered;
        if new {
            if id.0 != agent.delivered.0 || agent.declared_down {
                // A new generation, or the first datagram after the node was declared down:
                // the monitor starts its history over, and so do we.
                agent.arrivals = Arrivals::new(self.scenario.interval);
                agent.declared_down = false;
            }
            agent.delivered = id;
            agent.arrivals.record(now);
            if let Some(crash) = agent.open_crash {
                // Still the crashed generation (the restart's datagrams have not arrived):
                // a datagram that was in flight at the crash.
                self.trace.crashes[crash].arrivals = agent.arrivals.clone();
            }
        }
        self.monitor.handle_datagram(now, agent.addr, bytes);
        self.drain(Some((Cause::Datagram { sent, new }, silence_from)), now);
    }

    /// The node's next datagram of `kind`, signed, with the agent's next sequence number,
    /// counted as sent: what a heartbeat and an exit report share.
    fn sign(&mut self, node: u32, kind: Kind, labels: &[(&str, &str)]) -> (Vec<u8>, u64, u64) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        let agent = &mut self.agents[node as usize];
        agent.sequence += 1;
        let (generation, sequence) = (agent.generation, agent.sequence);
        let message = Outgoing {
            follows_advice: false,
            kind,
            node: &self.trace.nodes[node as usize].id,
            generation,
            sequence,
            interval_ms: self.interval_ms,
            labels,
        };
        encode(&message, &self.ring, &mut bytes)
            .expect("simulated node ids and labels are within the codec's bounds");
        self.trace.net.sent += 1;
        self.trace.net.bytes += bytes.len() as u64;
        (bytes, generation, sequence)
    }

    /// A node's agent reports that the process it watched died (killed by SIGKILL): an exit
    /// report with the next sequence, on the node's path like a heartbeat (lost, delayed or
    /// cut alike; not duplicated: a copy would be refused as a replay anyway).
    fn report_exit(&mut self, node: u32, epoch: u32, now: Instant) {
        let agent = &self.agents[node as usize];
        if agent.alive || agent.epoch != epoch {
            return;
        }
        let cut = span_at(&self.trace.nodes[node as usize].cut, now).is_some();
        let (bytes, generation, sequence) = self.sign(node, Kind::Exit, &[("signal", "9")]);
        let agent = &mut self.agents[node as usize];
        if cut {
            self.trace.net.cut += 1;
            return self.spare.push(bytes);
        }
        match agent.path.carry(&self.scenario.network, now) {
            Fate::Lost => {
                self.trace.net.lost += 1;
                self.spare.push(bytes);
            }
            Fate::Delivered(latency) => {
                self.trace.max_latency = self.trace.max_latency.max(latency);
                self.push(now + latency, Event::DeliverExit { node, sent: now, generation, sequence, bytes });
            }
        }
    }

    /// An exit report reaches the monitor. Not a heartbeat: nothing for the model's window of
    /// arrivals; but the monitor refuses anything older from now on, and so does the model.
    fn deliver_exit(&mut self, node: u32, sent: Instant, id: (u64, u64), bytes: &[u8], now: Instant) {
        self.trace.net.delivered += 1;
        let agent = &mut self.agents[node as usize];
        let silence_from = agent.arrivals.last;
        let new = id > agent.delivered;
        agent.delivered = agent.delivered.max(id);
        self.monitor.handle_datagram(now, agent.addr, bytes);
        self.drain(Some((Cause::Datagram { sent, new }, silence_from)), now);
    }

    fn act(&mut self, node: u32, action: Action, now: Instant) {
        let agent = &mut self.agents[node as usize];
        agent.epoch += 1;
        match action {
            Action::Crash => {
                agent.alive = false;
                agent.responder = None;
                agent.open_crash = Some(self.trace.crashes.len());
                self.trace.crashes.push(Crash {
                    node,
                    at: now,
                    restart: None,
                    arrivals: agent.arrivals.clone(),
                    answered: agent.last_answer,
                });
                if self.trace.nodes[node as usize].reports_crash_at(now) {
                    let epoch = agent.epoch;
                    for after in EXIT_REPORTS {
                        self.push(now + after, Event::ReportExit { node, epoch });
                    }
                }
            }
            Action::Restart => {
                if let Some(crash) = agent.open_crash.take() {
                    self.trace.crashes[crash].restart = Some(now);
                }
                agent.alive = true;
                // Like the agent's start time in microseconds: larger after every restart.
                agent.generation = (agent.generation + 1).max(now.as_nanos() / 1_000);
                agent.sequence = 0;
                let first = now + self.scenario.interval.mul_f64(agent.jitter.f64());
                let epoch = agent.epoch;
                self.push(first, Event::Send { node, epoch });
            }
        }
    }

    /// Takes every event the monitor has, recording transitions with their cause: the
    /// datagram just delivered, or (`None`) a deadline.
    fn drain(&mut self, delivered: Option<(Cause, Option<Instant>)>, now: Instant) {
        self.send_probes(now);
        while let Some(event) = self.monitor.poll_event() {
            match event {
                MonitorEvent::Transition { transition, .. } => {
                    let node =
                        *self.index.get(&transition.node).expect("the monitor only knows simulated nodes");
                    let (cause, silence_from) = match delivered {
                        Some(found) => found,
                        None => (Cause::Timeout, self.agents[node as usize].arrivals.last),
                    };
                    if transition.to == rollcall_core::monitor::NodeState::Down {
                        self.agents[node as usize].declared_down = true;
                    }
                    self.trace.transitions.push(Observed { node, transition, cause, silence_from });
                }
                MonitorEvent::SelfPause { .. } => self.trace.self_pauses += 1,
                // The simulator never forgets nodes; records are the daemon's business.
                MonitorEvent::NodeChanged { .. } | MonitorEvent::Forgotten { .. } => {}
                // Events the core may add later: the simulator's checkers judge transitions.
                _ => {}
            }
        }
    }

    /// The node at `addr`, if it is one of ours (the inverse of the addresses in `start`).
    fn node_of(&self, addr: SocketAddr) -> Option<u32> {
        let SocketAddr::V4(v4) = addr else { return None };
        let [ten, a, b, c] = v4.ip().octets();
        let node = u32::from_be_bytes([0, a, b, c]).checked_sub(1)?;
        (ten == 10 && node < self.scenario.nodes).then_some(node)
    }

    /// Puts the monitor's probes on the wire, from the monitor to each node.
    fn send_probes(&mut self, now: Instant) {
        while let Some(transmit) = self.monitor.poll_transmit() {
            let Some(node) = self.node_of(transmit.to) else { continue };
            self.trace.net.sent += 1;
            self.trace.net.bytes += transmit.payload.len() as u64;
            if span_at(&self.trace.nodes[node as usize].cut_from_monitor, now).is_some() {
                self.trace.net.cut += 1;
                continue;
            }
            match self.agents[node as usize].control.carry(&self.scenario.network, now) {
                Fate::Lost => self.trace.net.lost += 1,
                Fate::Delivered(latency) => {
                    self.trace.max_latency = self.trace.max_latency.max(latency);
                    self.push(now + latency, Event::ToAgent { node, from: MONITOR, bytes: transmit.payload });
                }
            }
        }
    }

    /// A datagram reaches a node's agent: its responder answers (unless the node is dead;
    /// a stalled node answers when it wakes), and the answers go out on the node's control
    /// path: to the monitor, which only the node's own cut stops, or to another agent.
    fn reach_agent(&mut self, node: u32, from: SocketAddr, bytes: Vec<u8>, now: Instant) {
        if !self.agents[node as usize].alive {
            return;
        }
        let truth = &self.trace.nodes[node as usize];
        if let Some(pause) = span_at(&truth.paused, now) {
            return self.push(pause.to, Event::ToAgent { node, from, bytes });
        }
        self.trace.net.delivered += 1;
        let cut = span_at(&truth.cut, now).is_some();
        let slow = truth.slow.iter().find(|(span, _)| span.contains(now)).map(|(_, delay)| *delay);
        let (id, interval_ms, ring) = (truth.id.clone(), self.interval_ms, &self.ring);
        let agent = &mut self.agents[node as usize];
        let responder = agent.responder.get_or_insert_with(|| {
            Box::new(Responder::new(&id, interval_ms, ring.clone(), ResponderConfig::default(), now))
        });
        responder.handle_datagram(now, from, &bytes);
        let mut answers = Vec::new();
        while let Some(transmit) = responder.poll_transmit() {
            answers.push(transmit);
        }
        for transmit in answers {
            self.trace.net.sent += 1;
            self.trace.net.bytes += transmit.payload.len() as u64;
            let to_monitor = transmit.to == MONITOR;
            let target = if to_monitor { Some(node) } else { self.node_of(transmit.to) };
            let Some(target) = target else { continue };
            if to_monitor && cut {
                self.trace.net.cut += 1;
                continue;
            }
            let agent = &mut self.agents[node as usize];
            match agent.control.carry(&self.scenario.network, now) {
                Fate::Lost => self.trace.net.lost += 1,
                Fate::Delivered(latency) => {
                    let latency =
                        latency + slow.map_or(Duration::ZERO, |delay| agent.control.slow_delay(delay));
                    let event = if to_monitor {
                        Event::Answer { node, sent: now, bytes: transmit.payload }
                    } else {
                        Event::ToAgent { node: target, from: agent.addr, bytes: transmit.payload }
                    };
                    self.push(now + latency, event);
                }
            }
        }
    }
}
