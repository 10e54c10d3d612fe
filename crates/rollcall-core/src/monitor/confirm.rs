//! Confirmation: before a suspect node is declared down, the monitor asks it directly.
//!
//! When a node crosses its suspect level and confirmation is on, the monitor starts a
//! *round*: `probes` authenticated probes to the address the node's heartbeats come from,
//! `probe_interval` apart, all carrying the round's nonce. If none is answered, it asks up
//! to `indirect` other agents to probe the node for it (SWIM's indirect probe) and waits
//! `indirect_timeout`. Then:
//!
//! - a direct ack while the node's silence is still short (its level below the down level)
//!   cancels the suspicion: back to `up` with reason `probe-answered`, no alert, and the
//!   ack counts as a sign of life for the next deadline;
//! - a direct ack after a long silence (level at or above the down level) means the agent
//!   lives but its heartbeats do not arrive: the node stays `suspect` with reason
//!   `heartbeats-missing`, and is asked again every `recheck`;
//! - only an indirect ack means the node lives but the monitor cannot reach it: `suspect`
//!   with reason `unreachable` (a path problem, not a failure), asked again every `recheck`;
//! - nothing means `down` with reason `probes-unanswered`.
//!
//! A round follows the settings of the node's group (`monitor/groups.rs`); a group without
//! confirmation has no rounds.
//!
//! Probes are paid from a token bucket shared by the whole fleet (`max_probes_per_sec`),
//! so a monitor never floods a fleet, even when a third of it goes quiet at once. A round
//! that cannot be paid for in full is not started: the node is then judged by its
//! detector's down level alone, as without confirmation, and the skip is counted.
//! A node whose address is unknown (restored, not heard from since) is judged the same way.
//!
//! Memory: one entry per node *being confirmed*, in a side table; the per-node record does
//! not grow.

use super::{Monitor, NodeState, Reason};
use crate::Instant;
use crate::Transmit;
use crate::wire::{self, Kind, Outgoing};
use core::time::Duration;
use rollcall_detect::{ConfigError, Detector};
use std::collections::HashMap;
use std::net::SocketAddr;

/// How the monitor confirms a suspicion before declaring a node down.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfirmConfig {
    /// Direct probes per round (at least 1).
    pub probes: u8,
    /// Time between two probes of a round, and the wait after the last one.
    pub probe_interval: Duration,
    /// Other agents asked to probe the node once the direct probes went unanswered (0: no
    /// indirect probes).
    pub indirect: u8,
    /// How long to wait for an indirect answer.
    pub indirect_timeout: Duration,
    /// How often a node that answers but sends no heartbeats, or that only others can reach,
    /// is asked again.
    pub recheck: Duration,
    /// Most probe datagrams per second for the whole fleet (direct and indirect).
    pub max_probes_per_sec: u32,
    /// Probe datagrams that may go out at once, above the steady rate.
    pub probe_burst: u32,
}

impl Default for ConfirmConfig {
    fn default() -> Self {
        ConfirmConfig {
            probes: 3,
            probe_interval: Duration::from_millis(200),
            indirect: 3,
            indirect_timeout: Duration::from_millis(500),
            recheck: Duration::from_secs(10),
            max_probes_per_sec: 1000,
            probe_burst: 2000,
        }
    }
}

impl ConfirmConfig {
    /// Checks every setting; the error is one sentence naming the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probes == 0 {
            return Err(ConfigError::new("confirm.probes", "must be at least 1"));
        }
        for (setting, span) in [
            ("confirm.probe_interval", self.probe_interval),
            ("confirm.indirect_timeout", self.indirect_timeout),
            ("confirm.recheck", self.recheck),
        ] {
            if span.is_zero() {
                return Err(ConfigError::new(setting, "must be positive"));
            }
        }
        if self.max_probes_per_sec == 0 {
            return Err(ConfigError::new("confirm.max_probes_per_sec", "must be at least 1"));
        }
        if self.probe_burst < u32::from(self.probes) + u32::from(self.indirect) {
            return Err(ConfigError::new(
                "confirm.probe_burst",
                "must pay for one whole round (probes + indirect)",
            ));
        }
        Ok(())
    }

    /// How long a round takes when nothing answers: from the first probe to `down`.
    pub fn round_length(&self) -> Duration {
        let direct = self.probe_interval * u32::from(self.probes);
        if self.indirect == 0 { direct } else { direct + self.indirect_timeout }
    }

    fn round_cost(&self) -> u32 {
        u32::from(self.probes) + u32::from(self.indirect)
    }
}

/// Counters of the confirmation machinery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfirmStats {
    /// Direct probes sent.
    pub probes: u64,
    /// Requests to other agents to probe a node.
    pub probe_requests: u64,
    /// Rounds not started because the probe budget was spent (judged by the detector).
    pub rounds_skipped: u64,
    /// Rounds started.
    pub rounds: u64,
    /// Rounds that ended with a direct answer.
    pub answered: u64,
    /// Rounds that ended with only an indirect answer.
    pub answered_indirectly: u64,
    /// Rounds that ended without any answer (the node went down).
    pub unanswered: u64,
}

/// Where a node under confirmation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `sent` direct probes are out.
    Direct { sent: u8 },
    /// Direct probes went unanswered; other agents were asked.
    Indirect,
    /// Answered, but still not healthy (`standing` says why): asked again at `next`.
    Recheck,
}

#[derive(Clone, Copy, Debug)]
struct Round {
    nonce: u64,
    phase: Phase,
    /// When the next step is due (the node's timer in the wheel).
    next: Instant,
    /// The suspect reason a previous round settled on, if any, so that a recheck with the
    /// same outcome adds no transition.
    standing: Option<Reason>,
}

/// The monitor's confirmation state: the rounds in progress and the probe budget.
pub(crate) struct Confirmer {
    pub config: ConfirmConfig,
    rounds: HashMap<u32, Round>,
    /// Prober epoch: the `generation` of every probe. The shell draws it at start, so that
    /// nonces of an earlier run of the monitor never match.
    epoch: u64,
    next_nonce: u64,
    tokens: f64,
    refilled: Instant,
    /// Where the search for indirect probers starts next (rotates over the table).
    helper_cursor: u32,
    pub transmits: std::collections::VecDeque<Transmit>,
    pub stats: ConfirmStats,
    scratch: Vec<u8>,
}

impl Confirmer {
    pub fn new(config: ConfirmConfig, now: Instant) -> Confirmer {
        Confirmer {
            tokens: f64::from(config.probe_burst),
            config,
            rounds: HashMap::new(),
            epoch: 0,
            next_nonce: 1,
            refilled: now,
            helper_cursor: 0,
            transmits: Default::default(),
            stats: ConfirmStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The pending step of the node's round, if it has one.
    pub fn next_step(&self, index: u32) -> Option<Instant> {
        self.rounds.get(&index).map(|round| round.next)
    }

    pub fn forget(&mut self, index: u32) {
        self.rounds.remove(&index);
    }

    /// The node at `from` now lives at `to` (the table stays dense after a removal).
    pub fn moved(&mut self, from: u32, to: u32) {
        if let Some(round) = self.rounds.remove(&from) {
            self.rounds.insert(to, round);
        }
    }

    pub fn in_progress(&self) -> usize {
        self.rounds.len()
    }

    /// Takes `cost` tokens if the bucket holds them.
    fn pay(&mut self, cost: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        let rate = f64::from(self.config.max_probes_per_sec);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.config.probe_burst));
        if self.tokens < f64::from(cost) {
            return false;
        }
        self.tokens -= f64::from(cost);
        true
    }

    fn send(&mut self, ring: &crate::KeyRing, to: SocketAddr, message: &Outgoing<'_>) {
        match wire::encode(message, ring, &mut self.scratch) {
            Ok(()) => self.transmits.push_back(Transmit { to, payload: self.scratch.clone() }),
            // Node ids and labels come from authenticated datagrams that passed the same
            // checks, so this cannot fail; dropping the probe is the harmless answer.
            Err(error) => debug_assert!(false, "probe for a valid node failed to encode: {error}"),
        }
    }
}

impl Monitor {
    /// Starts a confirmation round for a node that just became suspect (or whose recheck is
    /// due). Returns false when the node must be judged by its detector alone: confirmation
    /// is off, its address is unknown, or the probe budget is spent.
    pub(super) fn start_round(&mut self, index: u32, standing: Option<Reason>, now: Instant) -> bool {
        if !self.confirms(index) {
            return false;
        }
        let Some(config) = self.round_config(index) else { return false };
        let Some(confirmer) = self.confirmer.as_mut() else { return false };
        let Some(addr) = self.nodes.get(index).addr else { return false };
        if !confirmer.pay(config.round_cost(), now) {
            confirmer.stats.rounds_skipped += 1;
            confirmer.forget(index);
            return false;
        }
        let nonce = confirmer.next_nonce;
        confirmer.next_nonce += 1;
        confirmer.stats.rounds += 1;
        let next = now + config.probe_interval;
        confirmer.rounds.insert(index, Round { nonce, phase: Phase::Direct { sent: 1 }, next, standing });
        self.send_probe(index, addr, nonce);
        self.timers.insert(index, next);
        true
    }

    /// The node's round has a step due: the next probe, the indirect probes, or the verdict.
    /// Returns false if the node has no round (the caller judges it by its detector).
    pub(super) fn step_round(&mut self, index: u32, now: Instant) -> bool {
        if !self.confirms(index) {
            // The node's group stopped confirming (goals applied): its detector judges it
            // from here, as if the round had never started.
            if let Some(confirmer) = self.confirmer.as_mut() {
                confirmer.forget(index);
            }
            return false;
        }
        let Some(config) = self.round_config(index) else { return false };
        let Some(confirmer) = self.confirmer.as_mut() else { return false };
        let Some(round) = confirmer.rounds.get(&index).copied() else { return false };
        let due = round.next;
        let addr = self.nodes.get(index).addr;
        match (round.phase, addr) {
            (Phase::Recheck, _) => {
                if !self.start_round(index, round.standing, now) {
                    // No budget now: keep the node as it stands and try again later.
                    let confirmer = self.confirmer.as_mut().expect("checked above");
                    let next = now + config.recheck;
                    confirmer.rounds.insert(index, Round { next, ..round });
                    self.timers.insert(index, next);
                }
            }
            (Phase::Direct { sent }, Some(addr)) if sent < config.probes => {
                let next = due + config.probe_interval;
                confirmer
                    .rounds
                    .insert(index, Round { phase: Phase::Direct { sent: sent + 1 }, next, ..round });
                self.send_probe(index, addr, round.nonce);
                self.timers.insert(index, next.max(now));
            }
            (Phase::Direct { .. }, Some(addr))
                if config.indirect > 0 && self.ask_helpers(index, addr, round.nonce, config.indirect) =>
            {
                let confirmer = self.confirmer.as_mut().expect("checked above");
                let next = due + config.indirect_timeout;
                confirmer.rounds.insert(index, Round { phase: Phase::Indirect, next, ..round });
                self.timers.insert(index, next.max(now));
            }
            _ => {
                let confirmer = self.confirmer.as_mut().expect("checked above");
                confirmer.rounds.remove(&index);
                confirmer.stats.unanswered += 1;
                self.transition(index, NodeState::Down, Reason::ProbesUnanswered, due.min(now), now);
            }
        }
        true
    }

    /// An authenticated ack (direct, or relayed by another agent) for `node`'s round `nonce`.
    /// Returns false if no round of that node waits for that nonce: a late, replayed or
    /// forged-nonce answer, which changes nothing.
    pub(super) fn accept_answer(&mut self, index: u32, nonce: u64, direct: bool, now: Instant) -> bool {
        let Some(config) = self.round_config(index) else { return false };
        let Some(confirmer) = self.confirmer.as_mut() else { return false };
        let Some(round) = confirmer.rounds.get(&index).copied() else { return false };
        if round.nonce != nonce || round.phase == Phase::Recheck {
            return false;
        }
        let node = self.nodes.get(index);
        let long_silence = node.detector.level(now) >= node.detector.down_level();
        let verdict = match (direct, long_silence) {
            (true, false) => None,
            (true, true) => Some(Reason::HeartbeatsMissing),
            (false, _) => Some(Reason::Unreachable),
        };
        if direct {
            confirmer.stats.answered += 1;
        } else {
            confirmer.stats.answered_indirectly += 1;
        }
        match verdict {
            None => {
                confirmer.rounds.remove(&index);
                // The answer is a sign of life: the next deadline counts from it.
                let node = self.nodes.get_mut(index);
                node.watch_from = now;
                node.marks.set_answered(true);
                self.transition(index, NodeState::Up, Reason::ProbeAnswered, now, now);
                self.schedule(index);
            }
            Some(reason) => {
                let next = now + config.recheck;
                confirmer
                    .rounds
                    .insert(index, Round { phase: Phase::Recheck, next, standing: Some(reason), ..round });
                if round.standing != Some(reason) {
                    self.transition(index, NodeState::Suspect, reason, now, now);
                }
                self.timers.insert(index, next);
            }
        }
        true
    }

    fn send_probe(&mut self, index: u32, addr: SocketAddr, nonce: u64) {
        let node = self.nodes.get(index);
        let confirmer = self.confirmer.as_mut().expect("only called with confirmation on");
        let probe = Outgoing {
            follows_advice: false,
            kind: Kind::Probe,
            node: &node.id,
            generation: confirmer.epoch,
            sequence: nonce,
            interval_ms: node.interval_ms.max(1),
            labels: &[],
        };
        confirmer.stats.probes += 1;
        confirmer.send(&self.ring, addr, &probe);
    }

    /// Asks up to `indirect` other up nodes (at other addresses) to probe the node at `addr`.
    /// Looks at a bounded stretch of the table from a rotating cursor, so the cost does not
    /// grow with the fleet. Returns false if no helper was found.
    fn ask_helpers(&mut self, index: u32, addr: SocketAddr, nonce: u64, indirect: u8) -> bool {
        const LOOK_AT_MOST: u32 = 64;
        let len = self.nodes.len() as u32;
        let confirmer = self.confirmer.as_mut().expect("only called with confirmation on");
        let wanted = usize::from(indirect);
        let mut helpers = Vec::with_capacity(wanted);
        let start = confirmer.helper_cursor;
        for step in 0..LOOK_AT_MOST.min(len) {
            let candidate = (start + step) % len;
            let node = self.nodes.get(candidate);
            if candidate != index
                && node.state == NodeState::Up
                && let Some(helper) = node.addr
                && helper != addr
                && !helpers.contains(&helper)
            {
                helpers.push(helper);
                if helpers.len() == wanted {
                    break;
                }
            }
        }
        confirmer.helper_cursor = (start + LOOK_AT_MOST) % len.max(1);
        let target = self.nodes.get(index);
        let addr_text = addr.to_string();
        let labels = [("addr", addr_text.as_str())];
        let request = Outgoing {
            follows_advice: false,
            kind: Kind::ProbeRequest,
            node: &target.id,
            generation: confirmer.epoch,
            sequence: nonce,
            interval_ms: target.interval_ms.max(1),
            labels: &labels,
        };
        for &helper in &helpers {
            confirmer.stats.probe_requests += 1;
            confirmer.send(&self.ring, helper, &request);
        }
        !helpers.is_empty()
    }
}

#[cfg(test)]
mod tests;
