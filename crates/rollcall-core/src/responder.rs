//! The agent's side of confirmation: answer probes, and probe others when asked.
//!
//! An agent feeds every datagram that arrives on its heartbeat socket to
//! [`Responder::handle_datagram`] and sends what [`Responder::poll_transmit`] returns from
//! the same socket, so that answers take the path the heartbeats take (through NAT and
//! firewalls that let the heartbeats out).
//!
//! - A probe naming this node gets an ack at once, echoing the prober's epoch and nonce.
//! - A probe request (from a monitor that cannot reach a node) makes this agent probe that
//!   node at the address given, remember the request for `relay_timeout`, and relay the
//!   node's ack to the monitor as an indirect ack.
//!
//! - Interval advice from a monitor (`Kind::Advice`, when the agent flags its heartbeats as
//!   following advice) is taken when it echoes this agent's current generation and a
//!   sequence it has sent, newer than the last advice taken; the agent reads it with
//!   [`Responder::poll_advice`]. A replayed or foreign advice is dropped (`stale_advice`).
//!
//! Everything is authenticated with the key ring, and everything this agent sends is paid
//! from a token bucket: a flood of (replayed) probes cannot turn an agent into an amplifier.
//! A probe whose nonce is older than one already answered for the same epoch is a replay
//! and gets nothing; the same nonce again (a round's retry) is answered, since the earlier
//! ack may have been lost.

use crate::Instant;
use crate::Transmit;
use crate::keyring::KeyRing;
use crate::wire::{self, Kind, Message, Outgoing};
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Limits of a [`Responder`].
#[derive(Clone, Debug, PartialEq)]
pub struct ResponderConfig {
    /// Most datagrams per second the responder sends (acks, probes for others, relays).
    pub max_sends_per_sec: u32,
    /// Datagrams that may go out at once, above the steady rate.
    pub burst: u32,
    /// How long a probe request is remembered while waiting for the node's ack.
    pub relay_timeout: Duration,
    /// Most probe requests remembered at once (the oldest is dropped first).
    pub max_relays: usize,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            max_sends_per_sec: 100,
            burst: 50,
            relay_timeout: Duration::from_secs(2),
            max_relays: 64,
        }
    }
}

/// Counters of a [`Responder`], by what happened to each datagram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// Probes answered with an ack.
    pub acks: u64,
    /// Probe requests served (a probe sent to the node named).
    pub probes_for_others: u64,
    /// Acks relayed to the prober that asked.
    pub relayed: u64,
    /// Interval advice taken.
    pub advice: u64,
    /// Dropped, by reason (`bad_tag`, `replay`, `misaddressed`, `rate_limited`, ...).
    pub dropped: BTreeMap<&'static str, u64>,
}

/// A probe request this agent is serving.
#[derive(Clone, Debug)]
struct Relay {
    target: String,
    epoch: u64,
    nonce: u64,
    requester: SocketAddr,
    expires: Instant,
}

/// The agent's probe responder (sans-IO).
pub struct Responder {
    node: String,
    interval_ms: u32,
    ring: KeyRing,
    config: ResponderConfig,
    tokens: f64,
    refilled: Instant,
    /// Newest nonce answered, per prober epoch (a few epochs: monitors restart, or run as a
    /// pair).
    answered: VecDeque<(u64, u64)>,
    relays: VecDeque<Relay>,
    transmits: VecDeque<Transmit>,
    stats: ResponderStats,
    scratch: Vec<u8>,
    /// The generation and newest sequence of the heartbeats this agent has sent: advice
    /// must echo them (see [`Responder::heartbeat_sent`]).
    generation: u64,
    sent_sequence: u64,
    /// The sequence the last advice taken echoed: older advice is a replay.
    advice_sequence: u64,
    advised: Option<Duration>,
}

const EPOCHS_KEPT: usize = 4;

impl Responder {
    /// A responder for the agent of `node`, which sends heartbeats every `interval_ms`.
    pub fn new(
        node: &str,
        interval_ms: u32,
        ring: KeyRing,
        config: ResponderConfig,
        now: Instant,
    ) -> Responder {
        Responder {
            node: node.to_owned(),
            interval_ms: interval_ms.max(1),
            ring,
            tokens: f64::from(config.burst),
            config,
            refilled: now,
            answered: VecDeque::new(),
            relays: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: ResponderStats::default(),
            scratch: Vec::new(),
            generation: 0,
            sent_sequence: 0,
            advice_sequence: 0,
            advised: None,
        }
    }

    /// Tells the responder that the agent sent a heartbeat: advice is accepted only if it
    /// answers one of these (same generation, a sequence sent, newer than the last taken).
    pub fn heartbeat_sent(&mut self, generation: u64, sequence: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.advice_sequence = 0;
        }
        self.sent_sequence = sequence;
    }

    /// The interval a monitor advised since the last call, if any.
    pub fn poll_advice(&mut self) -> Option<Duration> {
        self.advised.take()
    }

    /// The interval the agent now sends at (acks declare it).
    pub fn set_interval(&mut self, interval_ms: u32) {
        self.interval_ms = interval_ms.max(1);
    }

    pub fn stats(&self) -> &ResponderStats {
        &self.stats
    }

    /// Handles one datagram received on the agent's socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        while self.relays.front().is_some_and(|relay| relay.expires <= now) {
            self.relays.pop_front();
        }
        let message = match wire::decode(datagram, &self.ring) {
            Ok(message) => message,
            Err(error) => return self.drop(error.as_str()),
        };
        match message.kind {
            Kind::Probe => self.on_probe(&message, from, now),
            Kind::ProbeRequest => self.on_probe_request(&message, from, now),
            Kind::Ack => self.on_ack(&message, now),
            Kind::Advice => self.on_advice(&message),
            Kind::Heartbeat | Kind::Goodbye | Kind::IndirectAck | Kind::Exit => self.drop("unexpected_kind"),
        }
    }

    /// The next datagram to send, oldest first.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn on_advice(&mut self, advice: &Message<'_>) {
        if advice.node != self.node {
            return self.drop("misaddressed");
        }
        let fresh = advice.generation == self.generation
            && advice.sequence > self.advice_sequence
            && advice.sequence <= self.sent_sequence;
        if !fresh {
            return self.drop("stale_advice");
        }
        self.advice_sequence = advice.sequence;
        self.stats.advice += 1;
        self.advised = Some(Duration::from_millis(u64::from(advice.interval_ms)));
    }

    fn on_probe(&mut self, probe: &Message<'_>, from: SocketAddr, now: Instant) {
        if probe.node != self.node {
            return self.drop("misaddressed");
        }
        let epoch = probe.generation;
        let newest = self.answered.iter().find(|(e, _)| *e == epoch).map(|&(_, nonce)| nonce);
        if newest.is_some_and(|newest| probe.sequence < newest) {
            return self.drop("replay");
        }
        if !self.pay(now) {
            return self.drop("rate_limited");
        }
        self.answered.retain(|(e, _)| *e != epoch);
        if self.answered.len() == EPOCHS_KEPT {
            self.answered.pop_front();
        }
        self.answered.push_back((epoch, probe.sequence));
        self.stats.acks += 1;
        let ack = Outgoing {
            follows_advice: false,
            kind: Kind::Ack,
            node: &self.node,
            generation: epoch,
            sequence: probe.sequence,
            interval_ms: self.interval_ms,
            labels: &[],
        };
        let payload = encode(&ack, &self.ring, &mut self.scratch);
        self.transmits.extend(payload.map(|payload| Transmit { to: from, payload }));
    }

    fn on_probe_request(&mut self, request: &Message<'_>, from: SocketAddr, now: Instant) {
        let Some(addr) = request.labels.get("addr").and_then(|addr| addr.parse::<SocketAddr>().ok()) else {
            return self.drop("malformed_request");
        };
        if request.node == self.node {
            return self.drop("misaddressed");
        }
        if !self.pay(now) {
            return self.drop("rate_limited");
        }
        if self.relays.len() == self.config.max_relays {
            self.relays.pop_front();
        }
        self.relays.push_back(Relay {
            target: request.node.to_owned(),
            epoch: request.generation,
            nonce: request.sequence,
            requester: from,
            expires: now + self.config.relay_timeout,
        });
        self.stats.probes_for_others += 1;
        let probe = Outgoing {
            follows_advice: false,
            kind: Kind::Probe,
            node: request.node,
            generation: request.generation,
            sequence: request.sequence,
            interval_ms: request.interval_ms,
            labels: &[],
        };
        let payload = encode(&probe, &self.ring, &mut self.scratch);
        self.transmits.extend(payload.map(|payload| Transmit { to: addr, payload }));
    }

    fn on_ack(&mut self, ack: &Message<'_>, now: Instant) {
        let position = self.relays.iter().position(|relay| {
            relay.target == ack.node && relay.epoch == ack.generation && relay.nonce == ack.sequence
        });
        let Some(relay) = position.and_then(|position| self.relays.remove(position)) else {
            return self.drop("stale_ack");
        };
        if !self.pay(now) {
            return self.drop("rate_limited");
        }
        self.stats.relayed += 1;
        let via = [("via", self.node.as_str())];
        let relayed = Outgoing {
            follows_advice: false,
            kind: Kind::IndirectAck,
            node: &relay.target,
            generation: relay.epoch,
            sequence: relay.nonce,
            interval_ms: ack.interval_ms,
            labels: &via,
        };
        let payload = encode(&relayed, &self.ring, &mut self.scratch);
        self.transmits.extend(payload.map(|payload| Transmit { to: relay.requester, payload }));
    }

    fn pay(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        let rate = f64::from(self.config.max_sends_per_sec);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.config.burst));
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn drop(&mut self, reason: &'static str) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }
}

/// Encodes an answer. Every field comes from an authenticated datagram or from the agent's
/// own validated id, so encoding cannot fail; if it somehow did, nothing is sent.
fn encode(message: &Outgoing<'_>, ring: &KeyRing, scratch: &mut Vec<u8>) -> Option<Vec<u8>> {
    wire::encode(message, ring, scratch).ok().map(|()| scratch.clone())
}

#[cfg(test)]
mod tests;
