//! Peer mode: a sans-IO SWIM member (Das et al. 2002) with the Lifeguard extensions
//! (Dadgar et al. 2017) as HashiCorp memberlist implements them.
//!
//! A [`Peer`] probes one member per protocol period (randomised round-robin), asks `K`
//! others to probe indirectly when the direct ping goes unanswered, suspects a member whose
//! probe failed, declares it down when the suspicion is not refuted in time, and spreads
//! every change by piggybacking it on its pings and acks. Lifeguard adds local health (a
//! peer that misses its own deadlines probes less often and waits longer), suspicion
//! timeouts that start long and shrink as independent peers confirm them, the buddy rule
//! (a ping to a suspect carries the suspicion, so it refutes at once) and nacks from
//! indirect probers. Push-pull sync pages and rate-limited contact with members believed
//! down make partitions heal. Every datagram is authenticated with the [`KeyRing`] and
//! carries the cluster's id. `docs/PEER.md` documents the protocol, the wire format and the
//! exact timeout formulas.
//!
//! Deliberately not here: sockets, clocks, threads, OS randomness. `now` is an argument,
//! randomness comes from a seed the shell passes in, and every effect is polled.
//!
//! # How a shell drives a peer (one UDP socket per peer)
//!
//! 1. [`Peer::new`], then [`Peer::join`] with seed addresses (or none, for the first peer).
//! 2. Loop: on a datagram call [`Peer::handle_datagram`]; when the instant
//!    [`Peer::poll_timeout`] returned has come, call [`Peer::handle_timeout`]. After either,
//!    send everything [`Peer::poll_transmit`] yields and act on every [`Peer::poll_event`],
//!    then ask [`Peer::poll_timeout`] again (it may move earlier after a datagram).
//! 3. To stop: [`Peer::leave`], send what it queued, then drop the peer.

mod apply;
mod config;
mod gossip;
mod members;
mod names;
mod suspicion;
mod sync;
mod timers;
pub mod wire;

pub use config::{SwimConfig, SwimConfigError};
pub use members::{MemberId, ProbeOrder, Roster};
pub use suspicion::{expected_confirmations, suspicion_bounds, suspicion_timeout};
pub use wire::{MemberState, Rejection};

use crate::Transmit;
use crate::keyring::KeyRing;
use crate::rng::Rng;
use apply::Sender;
use config::validate;
use gossip::{Broadcasts, Owned};
use members::{Members, NameTag};
use rollcall_detect::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use suspicion::{Health, Suspicion};
use sync::Page;
use timers::Timers;
use wire::{Body, Datagram, Update, Writer};

/// Something the shell should know: a member changed state in this peer's view, or this
/// peer had to refute a suspicion of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwimEvent {
    Member {
        member: Arc<MemberId>,
        /// `None` for a member heard of for the first time.
        from: Option<MemberState>,
        to: MemberState,
        incarnation: u32,
        /// When the peer noticed (the `now` of the call that caused it).
        at: Instant,
    },
    /// Someone suspected (or declared down) this peer; it raised its incarnation to refute.
    Refuted { incarnation: u32, at: Instant },
}

/// Most buffers a peer keeps for reuse: see [`Peer::recycle`].
pub const SPARE_BUFFERS: usize = 2;

/// Counters, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwimStats {
    pub rejected: BTreeMap<Rejection, u64>,
    pub received: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    pub probes: u64,
    /// Probes that ended without any ack, direct or indirect.
    pub failed_probes: u64,
    /// Probes whose direct ping timed out (ping-reqs were sent).
    pub indirect_rounds: u64,
    pub refutes: u64,
    /// Acks for no open probe: late, duplicated by the network, or answering a recheck of a
    /// suspect (by its accuser, or by a peer that held the suspicion past its minimum
    /// timeout: those pings belong to no probe).
    pub late_acks: u64,
    /// Updates about new members dropped because the table was full.
    pub members_refused: u64,
    /// Ping-reqs dropped because `max_forwards` indirect probes were already running.
    pub forwards_refused: u64,
    /// Accusations (suspect, down, left) of others ignored because their sender was held
    /// down or left.
    pub distrusted: u64,
}

/// One member as this peer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: Arc<MemberId>,
    pub state: MemberState,
    pub incarnation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// End of the current probe period: judge the probe, start the next.
    Probe,
    /// The direct ping of probe `seq` went unanswered: ask others.
    ProbeTimeout(u32),
    /// A suspicion of table slot `member` may have run out.
    Suspicion(u32),
    /// An indirect probe we run for someone: send a nack if no ack came yet.
    Nack(u32),
    /// Forget an indirect probe we ran.
    Forget(u32),
    Sync,
    Reconnect,
    /// A dedicated gossip round, when `gossip_interval` is set.
    Gossip,
}

struct Probe {
    seq: u32,
    target: u32,
    acked: bool,
    expected_nacks: u32,
    nacks: u32,
}

struct Forward {
    origin: SocketAddr,
    origin_seq: u32,
    acked: bool,
}

/// A SWIM + Lifeguard member. See the module documentation for the calling order.
///
/// Three peers on a virtual network and a virtual clock: every datagram is delivered at
/// once, `c` crashes after a minute, and `a` declares it down.
///
/// ```
/// use rollcall_core::swim::{MemberState, Peer, SwimConfig, SwimEvent};
/// use rollcall_core::{Instant, Key, KeyRing, Transmit};
/// use std::net::SocketAddr;
/// use std::time::Duration;
///
/// let ring = KeyRing::new(&[Key::new(1, [7; 32])]).unwrap();
/// let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
/// let mut peers: Vec<Peer> = ["a", "b", "c"]
///     .into_iter()
///     .zip(1..)
///     .map(|(name, n)| {
///         let config = SwimConfig::default();
///         Peer::new(config, name, addr(7000 + n), ring.clone(), 1, n.into(), Instant::ZERO).unwrap()
///     })
///     .collect();
/// for peer in &mut peers[1..] {
///     peer.join(Instant::ZERO, &[addr(7001)]);
/// }
/// let (mut now, mut crashed, mut down_at) = (Instant::ZERO, false, None);
/// while down_at.is_none() && now < Instant::from_millis(300_000) {
///     // Deliver what every live peer wants sent, then step to the earliest deadline.
///     let mut in_flight = Vec::new();
///     for peer in &mut peers {
///         while let Some(Transmit { to, payload }) = peer.poll_transmit() {
///             in_flight.push((peer.addr(), to, payload));
///         }
///     }
///     for (from, to, payload) in in_flight {
///         if let Some(peer) = peers.iter_mut().find(|peer| peer.addr() == to) {
///             peer.handle_datagram(now, from, &payload);
///         }
///     }
///     while let Some(event) = peers[0].poll_event() {
///         if let SwimEvent::Member { member, to: MemberState::Down, at, .. } = event {
///             assert_eq!(&*member.name, "c");
///             down_at = Some(at);
///         }
///     }
///     if !crashed && now >= Instant::from_millis(60_000) {
///         peers.pop(); // `c` stops answering: it crashed.
///         crashed = true;
///     }
///     now = peers.iter().filter_map(|peer| peer.poll_timeout()).min().unwrap().max(now);
///     for peer in &mut peers {
///         if peer.poll_timeout().is_some_and(|at| at <= now) {
///             peer.handle_timeout(now);
///         }
///     }
/// }
/// // Found by probing, suspected, then declared: seconds, not minutes.
/// let after = down_at.expect("c is declared down").saturating_duration_since(Instant::from_millis(60_000));
/// assert!(after < Duration::from_secs(30), "{after:?}");
/// ```
pub struct Peer {
    config: SwimConfig,
    cluster: u64,
    keys: KeyRing,
    rng: Rng,
    members: Members,
    /// This peer's name, tagged: see [`Peer::is_me`].
    tag: NameTag,
    gossip: Broadcasts,
    suspicions: BTreeMap<u32, Suspicion>,
    timers: Timers,
    probe: Option<Probe>,
    forwards: BTreeMap<u32, Forward>,
    next_seq: u32,
    health: Health,
    /// Where the next sync page starts in the table.
    page_cursor: usize,
    leaving: bool,
    outbox: VecDeque<Transmit>,
    events: VecDeque<SwimEvent>,
    stats: SwimStats,
    /// Spent buffer reused for encoding.
    scratch: Vec<u8>,
    /// Buffers the shell gave back ([`Peer::recycle`]), written into before allocating.
    spare: Vec<Vec<u8>>,
}

impl Peer {
    /// A peer named `name`, reachable at `addr`, starting at `incarnation` (a restarted
    /// peer should start above any incarnation it used before: the daemon uses its start
    /// time in seconds). `seed` drives every random choice. Timers start at `now`.
    pub fn new(
        config: SwimConfig,
        name: &str,
        addr: SocketAddr,
        keys: KeyRing,
        incarnation: u32,
        seed: u64,
        now: Instant,
    ) -> Result<Peer, SwimConfigError> {
        validate(&config, name)?;
        let mut rng = Rng::new(seed);
        let mut timers = Timers::default();
        // Random phases so that peers started together do not probe and sync in lockstep.
        let gossip = config.gossip_interval.map(|span| (Timer::Gossip, span));
        for (timer, span) in [
            (Timer::Probe, config.probe_interval),
            (Timer::Sync, config.sync_interval),
            (Timer::Reconnect, config.reconnect_interval),
        ]
        .into_iter()
        .chain(gossip)
        {
            timers.insert((now + span.mul_f64(rng.f64()), timer));
        }
        Ok(Peer {
            cluster: wire::cluster_id(&config.cluster),
            health: Health { score: 0, max: config.max_health },
            config,
            keys,
            rng,
            members: Members::new(MemberId::new(name, addr), incarnation),
            tag: NameTag::new(name),
            gossip: Broadcasts::default(),
            suspicions: BTreeMap::new(),
            timers,
            probe: None,
            forwards: BTreeMap::new(),
            next_seq: 0,
            page_cursor: 0,
            leaving: false,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: SwimStats::default(),
            scratch: Vec::with_capacity(wire::MAX_DATAGRAM),
            spare: Vec::new(),
        })
    }

    // ----- getters -----

    pub fn name(&self) -> &str {
        &self.members.slot(0).id.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.members.slot(0).id.addr
    }

    pub fn incarnation(&self) -> u32 {
        self.members.slot(0).incarnation
    }

    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    pub fn stats(&self) -> &SwimStats {
        &self.stats
    }

    /// Lifeguard's local health score, `0..max_health`: probe interval and timeout are
    /// multiplied by `score + 1`.
    pub fn health(&self) -> u32 {
        self.health.score
    }

    /// Members up or suspect, this peer included.
    pub fn live_members(&self) -> u32 {
        self.members.live()
    }

    /// How many members (this peer included) are in `state` in this peer's view.
    pub fn count(&self, state: MemberState) -> u32 {
        self.members.count(state)
    }

    /// Every other member this peer has heard of, in the order it first heard of them.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        (1..self.members.len() as u32).map(|index| {
            let slot = self.members.slot(index);
            MemberView { id: slot.id.clone(), state: slot.state, incarnation: slot.incarnation }
        })
    }

    /// One member's view, by name.
    pub fn member(&self, name: &str) -> Option<MemberView> {
        let index = self.members.find(name)?;
        let slot = self.members.slot(index);
        Some(MemberView { id: slot.id.clone(), state: slot.state, incarnation: slot.incarnation })
    }

    /// Updates waiting to be piggybacked.
    pub fn queued_updates(&self) -> usize {
        self.gossip.len()
    }

    // ----- commands -----

    /// Contacts `seeds`: each gets a sync page (this peer, and what we know) and is asked for
    /// one back. Call again if no member shows up (seeds may not be up yet).
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        // `now` keeps every command's calling convention alike (and lets a later rate limit
        // on joins arrive without an API change); nothing here depends on it yet.
        let _ = now;
        for &seed in seeds {
            if seed != self.addr() {
                self.send_sync(seed, None, Page::Full { reply: true });
            }
        }
    }

    /// Adds members known from configuration (the simulator's warm start, or a static
    /// cluster file) as `up` at `incarnation`, without any event or gossip. Unknown names
    /// only; the table's bound applies.
    pub fn add_known(&mut self, members: impl IntoIterator<Item = (Arc<MemberId>, u32)>) {
        let members = members.into_iter();
        self.members.reserve(members.size_hint().0.min(self.config.max_members));
        for (id, incarnation) in members {
            if self.members.find(&id.name).is_none() && !self.members.full(self.config.max_members) {
                self.members.insert(id, incarnation, MemberState::Up, &mut self.rng);
            }
        }
    }

    /// [`Peer::add_known`] for every member of `roster` at incarnation 0, this peer's own
    /// name skipped: the same table, slots and random draws. Called first (on a table that
    /// holds only this peer), the table shares the roster's identities and finds its members
    /// through the roster's index, so it costs 12 bytes per member instead of about 50:
    /// what lets one process simulate 10,000 peers that all know each other. Called later,
    /// it is `add_known`.
    pub fn add_roster(&mut self, roster: &Arc<Roster>) {
        if self.members.len() == 1 && self.count(MemberState::Up) == 1 {
            let room = self.config.max_members.min(Roster::MAX).saturating_sub(1);
            self.members.seed(roster, room, &mut self.rng);
        } else {
            self.add_known(roster.ids().map(|id| (id.clone(), 0)));
        }
    }

    /// Leaves gracefully: tells up to `λ × ceil(log10(n + 1))` random members, keeps the
    /// statement queued for piggybacking on any ack still sent, and stops probing (no more
    /// timeouts). Idempotent.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let me = self.members.slot(0);
        let (id, incarnation) = (me.id.clone(), me.incarnation);
        self.members.set(0, MemberState::Left, incarnation, None, &mut self.rng);
        let update = Owned { state: MemberState::Left, incarnation, id, accuser: None, addr: false };
        self.gossip.push(0, update);
        self.timers.clear();
        self.probe = None;
        let fanout = self.retransmit_limit() as usize;
        for target in self.members.random_up(&mut self.rng, fanout, 0) {
            let addr = self.members.slot(target).id.addr;
            self.send(addr, &Body::Gossip, None);
        }
        // See `join` for why `now` is taken.
        let _ = now;
    }

    // ----- inputs -----

    /// One datagram from `from`. Hostile input is counted in [`SwimStats::rejected`] and
    /// changes nothing else.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let datagram = match wire::decode(bytes, self.cluster, &self.keys) {
            Ok(datagram) => datagram,
            Err(reason) => return self.reject(reason),
        };
        if self.is_me(datagram.sender) {
            return self.reject(Rejection::FromSelf);
        }
        self.stats.received += 1;
        self.receive(now, from, &datagram);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.fire(now, at, timer);
        }
    }

    // ----- outputs -----

    /// When [`Peer::handle_timeout`] should next be called; `None` after a leave.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next datagram to send, and where.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<SwimEvent> {
        self.events.pop_front()
    }

    /// Gives back a buffer the shell is done with (a sent [`Transmit`]'s payload, or a
    /// received datagram's): a later datagram is written into it instead of a new
    /// allocation. Optional; at most [`SPARE_BUFFERS`] are kept, the rest dropped. The
    /// simulator does it for every datagram it delivers: a freshly read buffer is cheap to
    /// reuse, and an old one expensive to free.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buffer);
        }
    }

    // ----- helpers -----

    /// Whether `name` is this peer's, mostly without reading the name (see [`NameTag`]).
    fn is_me(&self, name: &str) -> bool {
        self.tag.may_be(name) && name == self.name()
    }

    fn reject(&mut self, reason: Rejection) {
        *self.stats.rejected.entry(reason).or_default() += 1;
    }

    /// `λ × ceil(log10(n + 1))`, with `n` the live members.
    fn retransmit_limit(&self) -> u32 {
        let n = f64::from(self.members.live()) + 1.0;
        self.config.retransmit_mult * (n.log10().ceil() as u32).max(1)
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, datagram: &Datagram<'_>) {
        let at = self.apply_sender(now, from, datagram.sender, datagram.incarnation);
        // A sender we hold down or left has a view we cannot trust (it was cut off, or it
        // is a stale copy): its accusations of others are ignored until it refutes, but
        // what it says of itself and of us, and any `up`, still counts. Without this rule
        // a healed partition floods each side with suspicions of its own live members.
        let trusted = at
            .is_some_and(|index| matches!(self.members.state(index), MemberState::Up | MemberState::Suspect));
        let sender = Sender { name: datagram.sender, at, trusted };
        // Piggybacked news first, so that a refutation rides on the ack sent below.
        for update in datagram.updates.iter() {
            self.apply_from(now, &update, sender);
        }
        match datagram.body {
            Body::Ping { seq, target } => {
                if target != self.name() {
                    return self.reject(Rejection::NotForUs);
                }
                self.send(from, &Body::Ack { seq }, None);
            }
            Body::Ack { seq } => self.on_ack(seq),
            Body::Nack { seq } => match &mut self.probe {
                Some(probe) if probe.seq == seq => probe.nacks += 1,
                _ => self.stats.late_acks += 1,
            },
            Body::PingReq { seq, target, addr } => self.on_ping_req(now, from, seq, target, addr),
            Body::Sync { .. } => self.on_sync(now, from, datagram, sender),
            Body::Gossip => {}
        }
    }

    fn on_ack(&mut self, seq: u32) {
        if let Some(probe) = &mut self.probe
            && probe.seq == seq
        {
            probe.acked = true;
            return;
        }
        if let Some(forward) = self.forwards.get_mut(&seq) {
            if !forward.acked {
                forward.acked = true;
                let (origin, origin_seq) = (forward.origin, forward.origin_seq);
                self.send(origin, &Body::Ack { seq: origin_seq }, None);
            }
            return;
        }
        self.stats.late_acks += 1;
    }

    fn on_ping_req(&mut self, now: Instant, from: SocketAddr, seq: u32, target: &str, addr: SocketAddr) {
        if self.forwards.len() >= self.config.max_forwards {
            self.stats.forwards_refused += 1;
            return;
        }
        let own = self.take_seq();
        let buddy = self.members.find(target).and_then(|index| self.suspect_note(index));
        self.send(addr, &Body::Ping { seq: own, target }, buddy);
        self.forwards.insert(own, Forward { origin: from, origin_seq: seq, acked: false });
        // memberlist's nack deadline: 80 % of the probe timeout, so the nack reaches the
        // origin before its own probe period ends.
        self.timers.insert((now + self.config.probe_timeout.mul_f64(0.8), Timer::Nack(own)));
        self.timers.insert((now + self.config.probe_interval, Timer::Forget(own)));
    }

    fn fire(&mut self, now: Instant, at: Instant, timer: Timer) {
        match timer {
            Timer::Probe => self.probe_period(now),
            Timer::ProbeTimeout(seq) => self.probe_timeout(seq),
            Timer::Suspicion(member) => self.suspicion_expired(now, at, member),
            Timer::Nack(seq) => {
                if let Some(forward) = self.forwards.get(&seq)
                    && !forward.acked
                {
                    let (origin, origin_seq) = (forward.origin, forward.origin_seq);
                    self.send(origin, &Body::Nack { seq: origin_seq }, None);
                }
            }
            Timer::Forget(seq) => {
                self.forwards.remove(&seq);
            }
            Timer::Sync => {
                if let Some(target) = self.members.random_live(&mut self.rng, &[0]) {
                    let addr = self.members.slot(target).id.addr;
                    self.send_sync(addr, Some(target), Page::Digest);
                }
                self.timers.insert((now + self.config.sync_interval, Timer::Sync));
            }
            Timer::Reconnect => {
                if let Some(target) = self.members.random_down(&mut self.rng) {
                    let addr = self.members.slot(target).id.addr;
                    // Usually the member is dead, so the page is short: a live one answers
                    // with a full page, as it would to a join.
                    self.send_sync(addr, Some(target), Page::Hello);
                }
                self.timers.insert((now + self.config.reconnect_interval, Timer::Reconnect));
            }
            Timer::Gossip => {
                if self.gossip.len() > 0 {
                    let fanout = self.config.gossip_fanout as usize;
                    for target in self.members.random_up(&mut self.rng, fanout, 0) {
                        let addr = self.members.slot(target).id.addr;
                        self.send(addr, &Body::Gossip, None);
                    }
                }
                if let Some(span) = self.config.gossip_interval {
                    self.timers.insert((now + span, Timer::Gossip));
                }
            }
        }
    }

    /// The end of a protocol period: judge the probe that ran in it, start the next one.
    fn probe_period(&mut self, now: Instant) {
        // Before judging this period's probe: a suspicion it starts was just told.
        self.recheck_suspects(now);
        self.finish_probe(now);
        if let Some(target) = self.members.next_target(self.config.probe_order, &mut self.rng) {
            let seq = self.take_seq();
            let slot = self.members.slot(target);
            let (addr, name) = (slot.id.addr, slot.id.clone());
            let buddy = self.suspect_note(target);
            self.send(addr, &Body::Ping { seq, target: &name.name }, buddy);
            self.stats.probes += 1;
            self.probe = Some(Probe { seq, target, acked: false, expected_nacks: 0, nacks: 0 });
            let timeout = self.health.scale(self.config.probe_timeout);
            self.timers.insert((now + timeout, Timer::ProbeTimeout(seq)));
        }
        let period = self.health.scale(self.config.probe_interval);
        self.timers.insert((now + period, Timer::Probe));
    }

    fn probe_timeout(&mut self, seq: u32) {
        let Some(probe) = &self.probe else { return };
        if probe.seq != seq || probe.acked {
            return;
        }
        let target = probe.target;
        self.stats.indirect_rounds += 1;
        let slot = self.members.slot(target);
        let (addr, id) = (slot.id.addr, slot.id.clone());
        let helpers = self.members.random_up(&mut self.rng, self.config.indirect_probes as usize, target);
        for helper in &helpers {
            let via = self.members.slot(*helper).id.addr;
            self.send(via, &Body::PingReq { seq, target: &id.name, addr }, None);
        }
        if let Some(probe) = &mut self.probe {
            probe.expected_nacks = helpers.len() as u32;
        }
    }

    /// Lifeguard's health update for the probe that just ended, and SWIM's suspicion if
    /// nobody answered for its target.
    fn finish_probe(&mut self, now: Instant) {
        let Some(probe) = self.probe.take() else { return };
        if probe.acked {
            self.health.apply(-1);
            return;
        }
        self.stats.failed_probes += 1;
        // Missing nacks mean the helpers could not reach us either: our own fault, likely.
        let delta =
            if probe.expected_nacks > 0 { probe.expected_nacks.saturating_sub(probe.nacks) } else { 1 };
        self.health.apply(i64::from(delta));
        let slot = self.members.slot(probe.target);
        // Already suspect: our failed probe is an independent confirmation (Lifeguard),
        // which shortens the suspicion here and, gossiped, everywhere.
        if matches!(slot.state, MemberState::Up | MemberState::Suspect) {
            let was_up = slot.state == MemberState::Up;
            // Owned copies: `apply` needs the peer mutably.
            let (target, me) = (slot.id.clone(), self.members.slot(0).id.clone());
            let accuse = Update {
                state: MemberState::Suspect,
                incarnation: slot.incarnation,
                name: &target.name,
                addr: None,
                accuser: Some(&me.name),
            };
            self.apply(now, &accuse);
            // Tell the suspect at once (the buddy rule without waiting for our next ping to
            // it): if it lives, its refutation starts one round trip behind the suspicion
            // instead of whenever gossip happens to reach it.
            if was_up && self.members.state(probe.target) == MemberState::Suspect {
                let note = self.suspect_note(probe.target);
                self.send(target.addr, &Body::Gossip, note);
            }
        }
    }

    fn take_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Encodes and queues one datagram: the body, `first` if any, then queued gossip.
    fn send(&mut self, to: SocketAddr, body: &Body<'_>, first: Option<Owned>) {
        let mut out = core::mem::take(&mut self.scratch);
        let me = self.members.slot(0);
        let (name, inc) = (me.id.clone(), me.incarnation);
        let limit = self.retransmit_limit();
        let mut writer = Writer::new(
            &mut out,
            self.config.max_datagram,
            self.cluster,
            self.keys.send_key_id(),
            &name.name,
            inc,
            body,
        );
        writer.begin_updates();
        if let Some(first) = &first {
            writer.push(&first.view());
        }
        self.gossip.fill(&mut writer, limit);
        writer.finish(&self.keys);
        self.queue(to, out);
    }

    fn queue(&mut self, to: SocketAddr, out: Vec<u8>) {
        self.stats.sent += 1;
        self.stats.sent_bytes += out.len() as u64;
        self.scratch = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(wire::MAX_DATAGRAM));
        self.outbox.push_back(Transmit { to, payload: out });
    }
}

#[cfg(test)]
mod tests;
