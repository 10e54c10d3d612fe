//! The monitor's core: authenticates heartbeats, judges every node with its detector,
//! and turns deadlines into state transitions.
//!
//! See [`Monitor`] for the order in which a shell drives it.

mod advice;
mod config;
mod confirm;
mod exit;
mod groups;
mod node;
mod receive;
mod types;

pub use advice::ADVICE_EVERY;
pub use config::{DetectorConfig, MonitorConfig};
pub use confirm::{ConfirmConfig, ConfirmStats};
pub use groups::GroupSettings;
pub use receive::VerifiedBatch;
pub use types::{
    MonitorEvent, MonitorStats, NodeRow, NodeState, Reason, Rejection, RestoreError, Transition,
};

use crate::Transmit;
use crate::keyring::KeyRing;
use crate::timer::{TimerStats, TimerWheel};
use crate::wire::{self, ExitStatus, Kind, Labels, Message};
use crate::{ConfigError, Instant};
use confirm::Confirmer;
use core::time::Duration;
use node::{Marks, Node, NodeTable};
use rollcall_detect::Detector;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// The monitor state machine (sans-IO).
///
/// A shell drives it like this, forever:
/// 1. feed every received datagram to [`Monitor::handle_datagram`] with the instant it was
///    received (the monitor's own monotonic clock, never a sender's timestamp), or, when
///    other threads authenticate and decode, each of their [`VerifiedBatch`]es to
///    [`Monitor::handle_verified`] with the instant it is handed over;
/// 2. when the instant returned by [`Monitor::poll_timeout`] has come, call
///    [`Monitor::handle_timeout`];
/// 3. after each `handle_*` call or command ([`Monitor::pause`], [`Monitor::resume`]),
///    drain [`Monitor::poll_event`] and act on each event in order (persist, then react).
///
/// Prefer draining received datagrams before handling a timeout that is due at the same
/// time: a heartbeat that already arrived must not lose a race against its own deadline.
///
/// Each node has at most one pending deadline in a timer wheel (its suspect deadline when
/// `up`, its down deadline when `suspect`), moved on every heartbeat in O(1): no step ever
/// scans all nodes.
///
/// Driven on a virtual clock, as a test would: a node heard every second for ten seconds,
/// then silent, is declared down a few seconds later, without any real time passing.
///
/// ```
/// use rollcall_core::monitor::{MonitorEvent, NodeState};
/// use rollcall_core::wire::{Kind, Outgoing, encode};
/// use rollcall_core::{Instant, Key, KeyRing, Monitor, MonitorConfig};
/// use std::time::Duration;
///
/// let ring = KeyRing::new(&[Key::new(1, [7; 32])]).unwrap();
/// let mut monitor = Monitor::new(MonitorConfig::default(), ring.clone(), Instant::ZERO).unwrap();
/// let from = "127.0.0.1:9000".parse().unwrap();
/// let mut datagram = Vec::new();
/// for second in 1..=10u64 {
///     let heartbeat = Outgoing {
///         kind: Kind::Heartbeat, node: "web-1", generation: 1, sequence: second,
///         interval_ms: 1000, labels: &[], follows_advice: false,
///     };
///     encode(&heartbeat, &ring, &mut datagram).unwrap();
///     monitor.handle_datagram(Instant::from_millis(second * 1000), from, &datagram);
/// }
/// // Silence: step from deadline to deadline, as a shell would sleep until each one.
/// let mut downs = Vec::new();
/// while downs.is_empty() {
///     let Some(now) = monitor.poll_timeout() else { break };
///     monitor.handle_timeout(now);
///     while let Some(event) = monitor.poll_event() {
///         if let MonitorEvent::Transition { transition, .. } = event
///             && transition.to == NodeState::Down
///         {
///             downs.push(transition.at);
///         }
///     }
/// }
/// let silence = downs[0].saturating_duration_since(Instant::from_millis(10_000));
/// assert!(silence > Duration::from_secs(1) && silence < Duration::from_secs(30), "{silence:?}");
/// ```
pub struct Monitor {
    config: MonitorConfig,
    ring: KeyRing,
    nodes: NodeTable,
    timers: TimerWheel,
    /// Scratch space for the keys a timer expiry returns, kept to avoid an allocation per
    /// tick.
    fired: Vec<u32>,
    events: VecDeque<MonitorEvent>,
    stats: MonitorStats,
    /// When the monitor expects to be called next at the latest.
    next_tick: Instant,
    /// The start of the current stretch of uninterrupted observation: the monitor's start
    /// or the end of its last stall. No node's silence is counted from before it.
    observed_from: Instant,
    /// Probing of suspects, when `config.confirm` is set.
    confirmer: Option<Confirmer>,
    /// The heartbeat intervals to advise agents to use (see `monitor/advice.rs`).
    advice: advice::AdviceTable,
    /// Advice datagrams waiting for the shell (probes wait in the confirmer's queue).
    transmits: VecDeque<Transmit>,
    /// Detector and confirmation settings per group (see `monitor/groups.rs`).
    groups: groups::GroupTable,
    /// The epoch probes carry, kept for a confirmer created when a group starts confirming.
    probe_epoch: u64,
}

/// A node as the monitor sees it at some instant: for APIs and persistence.
#[derive(Clone, Debug)]
pub struct NodeView<'a> {
    pub id: &'a str,
    pub state: NodeState,
    pub generation: u64,
    pub sequence: u64,
    /// The raw label block (see [`wire::Labels`]).
    pub labels_raw: &'a [u8],
    pub interval: Duration,
    pub last_heartbeat: Option<Instant>,
    /// The detector's level now: phi for phi accrual, elapsed / timeout for fixed.
    pub level: f64,
    /// The node's pending deadline (suspect when up, down when suspect), if any.
    pub deadline: Option<Instant>,
    pub addr: Option<SocketAddr>,
}

impl NodeView<'_> {
    /// The labels as `(key, value)` pairs (empty if the stored block is unreadable, which
    /// cannot happen for blocks that came through the codec).
    pub fn labels(&self) -> Vec<(&str, &str)> {
        Labels::from_bytes(self.labels_raw).map(|labels| labels.iter().collect()).unwrap_or_default()
    }
}

/// See [`Monitor::detector_facts`].
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorFacts {
    pub recent_intervals: Vec<Duration>,
    pub suspect_level: f64,
    pub down_level: f64,
    /// The silence after the last heartbeat at which the node becomes suspect, and down
    /// (`None` before the first heartbeat).
    pub suspect_silence: Option<Duration>,
    pub down_silence: Option<Duration>,
}

/// A node read back from durable storage at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredNode {
    pub id: String,
    pub generation: u64,
    pub sequence: u64,
    pub interval_ms: u32,
    pub state: NodeState,
    pub labels_raw: Vec<u8>,
}

impl Monitor {
    /// A monitor with no nodes, started at `now`. Fails if the configuration is invalid
    /// (one sentence naming the problem).
    pub fn new(config: MonitorConfig, ring: KeyRing, now: Instant) -> Result<Monitor, ConfigError> {
        config.validate()?;
        Ok(Monitor {
            next_tick: now + config.tick,
            observed_from: now,
            confirmer: groups::confirmer_for(&config, now),
            groups: groups::GroupTable::new(&config),
            probe_epoch: 0,
            advice: advice::AdviceTable::default(),
            transmits: VecDeque::new(),
            config,
            ring,
            nodes: NodeTable::default(),
            timers: TimerWheel::new(now),
            fired: Vec::new(),
            events: VecDeque::new(),
            stats: MonitorStats::default(),
        })
    }

    // ---- getters ----

    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    pub fn stats(&self) -> &MonitorStats {
        &self.stats
    }

    pub fn timer_stats(&self) -> &TimerStats {
        self.timers.stats()
    }

    /// Counters of the confirmation machinery (`None` when confirmation is off).
    pub fn confirm_stats(&self) -> Option<&ConfirmStats> {
        self.confirmer.as_ref().map(|confirmer| &confirmer.stats)
    }

    /// Nodes whose suspicion is being confirmed right now (probing or rechecking).
    pub fn confirmations_in_progress(&self) -> usize {
        self.confirmer.as_ref().map_or(0, Confirmer::in_progress)
    }

    /// Number of nodes tracked.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 0
    }

    pub fn node(&self, id: &str, now: Instant) -> Option<NodeView<'_>> {
        let index = self.nodes.index_of(id)?;
        Some(self.view(index, now))
    }

    /// What a node's detector is judging by: its recent inter-arrival times (oldest first)
    /// and the levels at which the node becomes suspect and down. For detail views; not
    /// on any hot path.
    pub fn detector_facts(&self, id: &str) -> Option<DetectorFacts> {
        let node = self.nodes.get(self.nodes.index_of(id)?);
        // The silence after the last heartbeat at which each level is reached, by the same
        // computation that sets the node's deadlines.
        let silence = |level: f64| {
            let last = node.detector.last_arrival()?;
            Some(node.detector.crossing(level)? - last)
        };
        Some(DetectorFacts {
            recent_intervals: node.detector.recent_intervals(),
            suspect_level: node.detector.suspect_level(),
            down_level: node.detector.down_level(),
            suspect_silence: silence(node.detector.suspect_level()),
            down_silence: silence(node.detector.down_level()),
        })
    }

    /// Every node, in registration order.
    pub fn nodes(&self, now: Instant) -> impl Iterator<Item = NodeView<'_>> {
        self.nodes_from(0, now)
    }

    /// The nodes from the `start`th in registration order (for work spread over calls).
    pub fn nodes_from(&self, start: usize, now: Instant) -> impl Iterator<Item = NodeView<'_>> {
        (start.min(self.nodes.len()) as u32..self.nodes.len() as u32).map(move |index| self.view(index, now))
    }

    // ---- inputs ----

    /// Sets the heartbeat interval advised to the nodes whose `group` label is `group`
    /// (`None`: every node not in an advised group), or stops advising them (`interval`
    /// `None`). The interval is kept within the configured `min_interval ..= max_interval`.
    /// Only agents that flag their heartbeats as following advice are told.
    pub fn set_advised_interval(&mut self, group: Option<&str>, interval: Option<Duration>) {
        let ms = interval.map(|interval| {
            let interval = interval.clamp(self.config.min_interval, self.config.max_interval);
            u32::try_from(interval.as_millis()).unwrap_or(u32::MAX).max(1)
        });
        self.advice.set(group, ms);
    }

    /// The interval advised to `group` (`None`: the fleet's), if any.
    pub fn advised_interval(&self, group: Option<&str>) -> Option<Duration> {
        self.advice.get(group).map(|ms| Duration::from_millis(u64::from(ms)))
    }

    /// Handles every deadline due at `now`. Call it when [`Monitor::poll_timeout`] says.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_clock(now);
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.timers.expire(now, &mut fired);
        for &index in &fired {
            self.on_deadline(index, now);
        }
        self.fired = fired;
    }

    /// Adds a node read from durable storage. It gets a fresh grace period from `now`, as if
    /// it had just sent a heartbeat: the monitor was not watching while it was down.
    pub fn restore(&mut self, restored: RestoredNode, now: Instant) -> Result<(), RestoreError> {
        if self.nodes.index_of(&restored.id).is_some() {
            return Err(RestoreError::Twice(restored.id));
        }
        if self.nodes.len() >= self.config.max_nodes {
            return Err(RestoreError::Capacity(self.config.max_nodes));
        }
        let Ok(labels) = Labels::from_bytes(&restored.labels_raw) else {
            return Err(RestoreError::UnreadableLabels(restored.id));
        };
        let group = self.groups.index_for(&labels);
        let interval = self.config.clamp_interval(restored.interval_ms);
        let index = self.nodes.insert(Node {
            id: Arc::from(restored.id),
            labels: restored.labels_raw.into_boxed_slice(),
            detector: self.groups.get(group).detector.build(interval),
            group,
            generation: restored.generation,
            sequence: restored.sequence,
            watch_from: now,
            addr: None,
            interval_ms: restored.interval_ms,
            state: restored.state,
            marks: Marks::default(),
        });
        self.stats.nodes_by_state[restored.state.index()] += 1;
        self.schedule(index);
        Ok(())
    }

    /// Sets the epoch every probe carries (its `generation`). Draw it at random, or from the
    /// start time, so that answers to an earlier run's probes never match this run's.
    pub fn set_probe_epoch(&mut self, epoch: u64) {
        self.probe_epoch = epoch;
        if let Some(confirmer) = self.confirmer.as_mut() {
            confirmer.set_epoch(epoch);
        }
    }

    /// The keys datagrams are authenticated with (and probes signed with).
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Replaces the key ring (key rotation). Takes effect for the next datagram.
    pub fn set_key_ring(&mut self, ring: KeyRing) {
        self.ring = ring;
    }

    // ---- commands ----

    /// Puts a node in maintenance: its heartbeats are still recorded, its deadlines are not
    /// judged. Returns false for an unknown node.
    pub fn pause(&mut self, id: &str, now: Instant) -> bool {
        self.pause_until(id, None, now)
    }

    /// Maintenance with an end: at `until` the node is resumed by itself, and its deadlines
    /// restart from then (they never fire at once). `None` pauses until [`Monitor::resume`].
    /// Pausing a paused node moves (or removes) its end. Returns false for an unknown node.
    pub fn pause_until(&mut self, id: &str, until: Option<Instant>, now: Instant) -> bool {
        self.observe_clock(now);
        let Some(index) = self.nodes.index_of(id) else { return false };
        if self.nodes.get(index).state != NodeState::Paused {
            self.transition(index, NodeState::Paused, Reason::Pause, now, now);
        }
        // While paused, `watch_from` holds the end of the maintenance (MAX: none): the node
        // is not judged, and `resume` sets it again.
        let node = self.nodes.get_mut(index);
        node.watch_from = until.map_or(Instant::MAX, |until| until.max(now));
        node.marks.set_answered(false);
        self.schedule(index);
        true
    }

    /// Ends maintenance: the node is judged again, with a fresh grace period from `now`.
    /// Returns false for an unknown node.
    pub fn resume(&mut self, id: &str, now: Instant) -> bool {
        self.observe_clock(now);
        let Some(index) = self.nodes.index_of(id) else { return false };
        self.end_pause(index, now, now);
        true
    }

    /// Removes a node (decommissioned): it goes to `left` with reason `forget` (so its
    /// incident, if any, resolves and the history says why), then out of the table. A later
    /// heartbeat registers it anew. Returns false for an unknown node.
    pub fn forget(&mut self, id: &str, now: Instant) -> bool {
        self.observe_clock(now);
        let Some(index) = self.nodes.index_of(id) else { return false };
        if self.nodes.get(index).state != NodeState::Left {
            self.transition(index, NodeState::Left, Reason::Forget, now, now);
        }
        self.timers.cancel(index);
        let (node, moved_from) = self.nodes.remove(index);
        self.stats.nodes_by_state[node.state.index()] -= 1;
        if let Some(confirmer) = self.confirmer.as_mut() {
            confirmer.forget(index);
            if let Some(from) = moved_from {
                confirmer.moved(from, index);
            }
        }
        if let Some(from) = moved_from {
            // The last node now lives at `index`: its deadline moves with it.
            if let Some(at) = self.timers.deadline(from) {
                self.timers.cancel(from);
                self.timers.insert(index, at);
            }
        }
        self.events.push_back(MonitorEvent::Forgotten { node: node.id });
        true
    }

    // ---- outputs ----

    /// The instant by which the shell must call [`Monitor::handle_timeout`]. Always `Some`:
    /// the monitor wants a regular tick to notice its own stalls. (An `Option` all the same,
    /// so that every state machine of this crate has the same shape.)
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.timers.next_expiry() {
            Some(at) => at.min(self.next_tick),
            None => self.next_tick,
        })
    }

    /// The next event to act on, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MonitorEvent> {
        self.events.pop_front()
    }

    /// The next datagram to send (probes and probe requests), oldest first. Drain it after
    /// every `handle_*` call; sending is best effort (a lost probe is what the round's
    /// retries are for).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(transmit) = self.transmits.pop_front() {
            return Some(transmit);
        }
        self.confirmer.as_mut()?.transmits.pop_front()
    }

    // ---- internals ----

    fn view(&self, index: u32, now: Instant) -> NodeView<'_> {
        let node = self.nodes.get(index);
        NodeView {
            id: &node.id,
            state: node.state,
            generation: node.generation,
            sequence: node.sequence,
            labels_raw: &node.labels,
            interval: Duration::from_millis(u64::from(node.interval_ms)),
            last_heartbeat: node.detector.last_arrival(),
            level: node.detector.level(now),
            deadline: self.timers.deadline(index),
            addr: node.addr,
        }
    }

    /// Ends a node's maintenance at `at` (its end, or a command's instant): it is judged
    /// again with a fresh grace period from then.
    fn end_pause(&mut self, index: u32, at: Instant, now: Instant) {
        let node = self.nodes.get_mut(index);
        if node.state == NodeState::Paused {
            node.watch_from = at;
            node.marks.set_answered(false);
            let to = if node.detector.last_arrival().is_some() { NodeState::Up } else { NodeState::New };
            self.transition(index, to, Reason::Resume, at, now);
            self.schedule(index);
        }
    }

    /// Notices when the monitor itself ran late: a wake-up long after the tick it asked
    /// for means the process was stopped or starved, so silences that span that gap prove
    /// nothing about the nodes.
    fn observe_clock(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        let late = now - self.next_tick;
        if late > self.config.self_pause_threshold {
            self.observed_from = now;
            self.stats.self_pauses += 1;
            self.events.push_back(MonitorEvent::SelfPause { stalled: late, resumed: now });
        }
        self.next_tick = now + self.config.tick;
    }

    fn reject(&mut self, rejection: Rejection) {
        *self.stats.rejected.entry(rejection).or_default() += 1;
    }

    fn register(&mut self, message: &Message<'_>, now: Instant) -> Result<u32, Rejection> {
        if let Some(allow) = &self.config.allow
            && !allow.contains(message.node)
        {
            return Err(Rejection::NotAllowed);
        }
        if self.nodes.len() >= self.config.max_nodes {
            return Err(Rejection::Capacity);
        }
        let interval = self.config.clamp_interval(message.interval_ms);
        let group = self.groups.index_for(&message.labels);
        let index = self.nodes.insert(Node {
            id: Arc::from(message.node),
            labels: message.labels.as_bytes().into(),
            detector: self.groups.get(group).detector.build(interval),
            group,
            generation: message.generation,
            sequence: message.sequence,
            watch_from: now,
            addr: None,
            interval_ms: message.interval_ms,
            state: NodeState::New,
            marks: Marks::default(),
        });
        self.stats.nodes_by_state[NodeState::New.index()] += 1;
        Ok(index)
    }

    /// Answers an accepted heartbeat with advice when its agent follows advice and declares
    /// another interval than the one advised for it (at most every `ADVICE_EVERY`th one).
    fn advise(&mut self, heartbeat: &Message<'_>, from: SocketAddr) {
        if !heartbeat.follows_advice || !advice::AdviceTable::due(heartbeat.sequence) {
            return;
        }
        let Some(interval_ms) = self.advice.for_labels(&heartbeat.labels) else { return };
        if interval_ms == heartbeat.interval_ms {
            return;
        }
        let advice = wire::Outgoing {
            kind: Kind::Advice,
            node: heartbeat.node,
            generation: heartbeat.generation,
            sequence: heartbeat.sequence,
            interval_ms,
            labels: &[],
            follows_advice: false,
        };
        let mut payload = Vec::new();
        if wire::encode(&advice, &self.ring, &mut payload).is_ok() {
            self.stats.advice_sent += 1;
            self.transmits.push_back(Transmit { to: from, payload });
        }
    }

    fn accept_heartbeat(
        &mut self,
        index: u32,
        message: &Message<'_>,
        from: Option<SocketAddr>,
        registered: bool,
        now: Instant,
    ) {
        self.stats.heartbeats += 1;
        let floor = self.observed_from;
        let interval = self.config.clamp_interval(message.interval_ms);
        let node = self.nodes.get_mut(index);
        let restart = !registered && message.generation > node.generation;
        if !registered && !restart {
            // Sequence numbers skipped within a generation: heartbeats lost on the way (the
            // fleet's loss rate, which `rollcall explain` needs and a window cannot see).
            self.stats.heartbeats_missed += message.sequence.saturating_sub(node.sequence + 1);
        }
        let mut changed = registered || restart;
        if from.is_some() {
            node.addr = from;
        }
        node.generation = message.generation;
        node.sequence = message.sequence;
        let labels = message.labels.as_bytes();
        // Lengths first: most heartbeats carry the labels they had, often none, and comparing
        // two empty slices still calls `memcmp` (7 % of a saturated monitor's profile with the
        // id's comparison, docs/BENCHMARKS.md).
        if node.labels.len() != labels.len() || (!labels.is_empty() && *node.labels != *labels) {
            node.labels = labels.into();
            changed = true;
            // Another group may mean other settings, taken like a change of the group's.
            node.group = self.groups.index_for(&message.labels);
        }
        // The detector follows its group's current settings (a reload may have changed them
        // since its last heartbeat). Borrowed field by field: no second lookup of the node.
        let detector_config = &self.groups.get(node.group).detector;
        groups::sync_detector(&mut node.detector, detector_config);
        // A silence that overlaps a gap in observation (a stall of the monitor, a restore,
        // a resume), a restart, or the first heartbeat after the node was declared down (a
        // crash, a partition) says nothing about the node's rhythm: start the history over.
        // Kept, such a gap would inflate the phi window for its next 32 heartbeats, and a
        // crash in that time would take many times longer to detect.
        let watched_from = if node.marks.answered() { floor } else { floor.max(node.watch_from) };
        let gap = node.detector.last_arrival().is_some_and(|last| last < watched_from)
            || (node.state == NodeState::Down && node.marks.rise_count() == 0);
        node.marks.set_answered(false);
        if node.interval_ms != message.interval_ms || restart || gap {
            changed |= node.interval_ms != message.interval_ms;
            node.interval_ms = message.interval_ms;
            node.detector = detector_config.build(interval);
        }
        node.detector.heartbeat(now);
        let recovered_reason = if restart { Reason::Restart } else { Reason::Heartbeat };
        if changed {
            let id = node.id.clone();
            self.events.push_back(MonitorEvent::NodeChanged { node: id });
        }
        match self.nodes.get(index).state {
            NodeState::New => self.transition(index, NodeState::Up, Reason::FirstHeartbeat, now, now),
            NodeState::Up if restart => self.transition(index, NodeState::Up, Reason::Restart, now, now),
            NodeState::Suspect | NodeState::Left => {
                self.transition(index, NodeState::Up, recovered_reason, now, now)
            }
            NodeState::Down => {
                let rise = self.config.rise;
                let node = self.nodes.get_mut(index);
                node.marks.count_rise(restart);
                if node.marks.rise_count() >= rise {
                    let reason = if node.marks.restarted() { Reason::Restart } else { Reason::Heartbeat };
                    node.marks.reset_rise();
                    self.transition(index, NodeState::Up, reason, now, now);
                }
            }
            NodeState::Up | NodeState::Paused => {}
        }
        self.schedule(index);
    }

    /// An ack for one of this monitor's probes, from the node itself or relayed by another
    /// agent. Matched by nonce against the node's round in progress; anything else is stale.
    fn accept_ack(&mut self, message: &Message<'_>, now: Instant) {
        let direct = message.kind == Kind::Ack;
        let matched = self.nodes.index_of(message.node).is_some_and(|index| {
            self.confirmer.as_ref().is_some_and(|confirmer| confirmer.epoch() == message.generation)
                && self.accept_answer(index, message.sequence, direct, now)
        });
        if !matched {
            self.reject(Rejection::StaleAck);
        }
    }

    fn accept_goodbye(&mut self, index: u32, message: &Message<'_>, from: SocketAddr, now: Instant) {
        self.stats.goodbyes += 1;
        let node = self.note_last_word(index, message, from);
        if node.state != NodeState::Left {
            self.transition(index, NodeState::Left, Reason::Goodbye, now, now);
        }
        self.timers.cancel(index);
    }

    /// A node's deadline fired: move it along up → suspect → down, unless its silence
    /// started before the current stretch of observation, in which case the deadline is
    /// pushed back to what it would be counted from that stretch's start.
    fn on_deadline(&mut self, index: u32, now: Instant) {
        // A node under confirmation: its timer is its round's next step.
        if self.nodes.get(index).state == NodeState::Suspect && self.step_round(index, now) {
            return;
        }
        // The deadline that fired is gone from the wheel; any later one is set below.
        let mut deferred = true;
        loop {
            let node = self.nodes.get(index);
            let (level, next) = match node.state {
                NodeState::Up => (node.detector.suspect_level(), NodeState::Suspect),
                NodeState::Suspect => (node.detector.down_level(), NodeState::Down),
                NodeState::Down => {
                    // A recovering node went quiet again: its rise starts over.
                    let node = self.nodes.get_mut(index);
                    node.marks.reset_rise();
                    return;
                }
                NodeState::Paused => {
                    let end = node.watch_from;
                    return self.end_pause(index, end, now);
                }
                // Stale: the state changed after the deadline was set.
                NodeState::New | NodeState::Left => return,
            };
            let Some(at) = self.deadline_for(node, level) else { return };
            if at > now {
                self.stats.deadlines_deferred += u64::from(deferred);
                self.timers.insert(index, at);
                return;
            }
            self.transition(index, next, groups::reason_of(&node.detector), at, now);
            deferred = false;
            if next == NodeState::Down || self.start_round(index, None, now) {
                return;
            }
        }
    }

    /// Sets the node's one pending deadline for its current state, or clears it.
    fn schedule(&mut self, index: u32) {
        let node = self.nodes.get(index);
        if node.state == NodeState::Suspect
            && let Some(at) = self.confirmer.as_ref().and_then(|confirmer| confirmer.next_step(index))
        {
            self.timers.insert(index, at);
            return;
        }
        let level = match node.state {
            NodeState::Up => Some(node.detector.suspect_level()),
            NodeState::Suspect => Some(node.detector.down_level()),
            NodeState::Down if node.marks.rise_count() > 0 => Some(node.detector.suspect_level()),
            // The end of maintenance, if it has one.
            NodeState::Paused if node.watch_from != Instant::MAX => {
                let end = node.watch_from;
                self.timers.insert(index, end);
                return;
            }
            _ => None,
        };
        match level.and_then(|level| self.deadline_for(node, level)) {
            Some(at) => self.timers.insert(index, at),
            None => {
                self.timers.cancel(index);
            }
        }
    }

    /// When `node` reaches `level` if nothing more arrives, counting its silence from its
    /// last heartbeat but never from before its own watch start or the current stretch of
    /// observation.
    fn deadline_for(&self, node: &Node, level: f64) -> Option<Instant> {
        let floor = self.observed_from.max(node.watch_from);
        match node.detector.last_arrival() {
            Some(last) if last >= floor => node.detector.crossing(level),
            Some(last) => node.detector.crossing(level).map(|at| floor + (at - last)),
            None => {
                // Never heard from (restored or allowed, not yet sending): judge it as if
                // a heartbeat had arrived at the floor.
                let mut fresh = node.detector.clone();
                fresh.heartbeat(floor);
                fresh.crossing(level)
            }
        }
    }

    fn transition(&mut self, index: u32, to: NodeState, reason: Reason, at: Instant, now: Instant) {
        self.transition_with(index, to, reason, at, now, None);
    }

    /// [`Monitor::transition`] with the exit status an exit report carried.
    fn transition_with(
        &mut self,
        index: u32,
        to: NodeState,
        reason: Reason,
        at: Instant,
        now: Instant,
        exit: Option<ExitStatus>,
    ) {
        debug_assert!(at <= now, "a transition is never dated in the future");
        if to != NodeState::Suspect
            && let Some(confirmer) = self.confirmer.as_mut()
        {
            confirmer.forget(index);
        }
        let node = self.nodes.get_mut(index);
        let from = node.state;
        node.state = to;
        let row = NodeRow {
            sequence: node.sequence,
            interval: Duration::from_millis(u64::from(node.interval_ms)),
            labels_raw: node.labels.clone(),
        };
        let transition = Transition {
            node: node.id.clone(),
            generation: node.generation,
            from,
            to,
            reason,
            at,
            noticed: now,
            exit,
        };
        self.stats.nodes_by_state[from.index()] -= 1;
        self.stats.nodes_by_state[to.index()] += 1;
        *self.stats.transitions.entry((from, to)).or_default() += 1;
        self.events.push_back(MonitorEvent::Transition { transition, row });
    }
}

#[cfg(test)]
mod tests;
