//! The one task that owns the core [`Peer`]. Datagrams, timeouts, HTTP commands and the
//! shutdown go through its loop, in the order `rollcall_core::swim` documents: an input
//! (`handle_datagram` or `handle_timeout`), then every `poll_transmit` sent and every
//! `poll_event` recorded, then `poll_timeout` for the next wake-up. With sinks configured,
//! the recorded transitions also go through the incident layer (`alerting.rs`), and are
//! committed with their incidents and outbox rows before anything is sent.

use super::alerting::{Alerts, AlertsSnapshot};
use crate::clock::{Clock, rfc3339_ms};
use rollcall_core::Instant;
use rollcall_core::swim::{MemberState, Peer, SwimEvent, SwimStats};
use rollcall_store::Write;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Datagrams handled per wake-up before the loop sends, looks at timers and commands again.
const RECV_BATCH: usize = 256;
/// Bound on queued HTTP commands; a full queue makes handlers wait, never the core.
const COMMAND_QUEUE: usize = 64;
/// Transitions kept for `GET /v1/events`; older ones are dropped (and counted).
pub const MAX_EVENTS: usize = 10_000;
/// How often the seeds are contacted again while no other member is live.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Receive buffer: larger than any datagram the core accepts, so that an oversized one
/// reaches it whole and is counted as oversized rather than as truncated.
const RECV_BUFFER: usize = 64 * 1024;

/// A request from an HTTP handler, answered on its `reply` channel.
pub enum Command {
    /// This peer first, then every member it has heard of.
    Members {
        reply: oneshot::Sender<Vec<MemberJson>>,
    },
    /// One member (this peer included) with its latest transitions, newest first.
    Member {
        id: String,
        reply: oneshot::Sender<Option<(MemberJson, Vec<EventJson>)>>,
    },
    /// Transitions with an id above `since`, oldest first.
    Events {
        since: u64,
        limit: usize,
        node: Option<String>,
        reply: oneshot::Sender<Vec<EventJson>>,
    },
    Stats {
        reply: oneshot::Sender<StatsSnapshot>,
    },
}

/// A member as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberJson {
    pub id: String,
    pub state: &'static str,
    pub incarnation: u32,
    pub addr: String,
    /// True for the peer serving the request.
    pub local: bool,
}

/// A transition this peer saw, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EventJson {
    pub id: u64,
    pub node: String,
    /// `new` when the member was heard of for the first time.
    pub from: &'static str,
    pub to: &'static str,
    /// The member's incarnation the transition happened at.
    pub incarnation: u32,
    /// When this peer noticed it, RFC 3339.
    pub at: String,
}

/// Everything `/v1/status` and `/metrics` show, copied out of the loop at once.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    pub name: String,
    pub cluster: String,
    pub addr: SocketAddr,
    pub incarnation: u32,
    pub seed: u64,
    pub core: SwimStats,
    /// Members (this peer included) by state, in `STATES` order.
    pub members: [u32; 4],
    pub health_score: u32,
    pub max_health: u32,
    pub queued_updates: usize,
    pub transitions: BTreeMap<(&'static str, &'static str), u64>,
    pub events_dropped: u64,
    pub send_errors: u64,
    pub receive_errors: u64,
    pub uptime: Duration,
    /// `None` when no sink is configured.
    pub alerts: Option<AlertsSnapshot>,
}

/// The member states, in the order of [`StatsSnapshot::members`].
pub const STATES: [MemberState; 4] =
    [MemberState::Up, MemberState::Suspect, MemberState::Down, MemberState::Left];

pub struct Owner {
    peer: Peer,
    socket: UdpSocket,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    seeds: Vec<SocketAddr>,
    next_join: Instant,
    seed: u64,
    events: VecDeque<EventJson>,
    next_event_id: u64,
    events_dropped: u64,
    transitions: BTreeMap<(&'static str, &'static str), u64>,
    send_errors: u64,
    receive_errors: u64,
    buffer: Vec<u8>,
    started: Instant,
    /// The incident layer and the store, when sinks are configured.
    alerts: Option<Alerts>,
}

impl Owner {
    pub fn new(
        peer: Peer,
        socket: UdpSocket,
        clock: Clock,
        seeds: Vec<SocketAddr>,
        seed: u64,
        alerts: Option<Alerts>,
    ) -> (Owner, mpsc::Sender<Command>) {
        let (sender, commands) = mpsc::channel(COMMAND_QUEUE);
        let now = clock.now();
        let owner = Owner {
            peer,
            socket,
            clock,
            commands,
            seeds,
            next_join: now,
            seed,
            events: VecDeque::new(),
            next_event_id: 1,
            events_dropped: 0,
            transitions: BTreeMap::new(),
            send_errors: 0,
            receive_errors: 0,
            buffer: vec![0; RECV_BUFFER],
            started: now,
            alerts,
        };
        (owner, sender)
    }

    /// Runs until `shutdown` completes, then leaves: the leave datagrams are sent (and the
    /// last writes queued) before this returns. Returns the alerting part, for its store to
    /// be closed once the delivery loops have stopped.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<Option<Alerts>> {
        tokio::pin!(shutdown);
        self.rejoin(self.clock.now());
        self.flush().await;
        loop {
            let wake = self.next_wake().map(|at| tokio::time::Instant::from_std(self.clock.std_instant(at)));
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.receive();
                    }
                }
                Some(command) = self.commands.recv() => self.answer(command),
                _ = sleep_until(wake) => {}
            }
            let now = self.clock.now();
            if self.peer.poll_timeout().is_some_and(|at| at <= now) {
                self.peer.handle_timeout(now);
            }
            if let Some(alerts) = &mut self.alerts
                && alerts.poll_timeout().is_some_and(|at| at <= now)
            {
                alerts.handle_timeout(now);
            }
            self.rejoin(now);
            self.flush().await;
        }
        let now = self.clock.now();
        self.peer.leave(now);
        self.flush().await;
        tracing::info!(name = self.peer.name(), incarnation = self.peer.incarnation(), "left the cluster");
        Ok(self.alerts)
    }

    /// The core's next deadline, or the next join attempt or alerting deadline if sooner.
    fn next_wake(&self) -> Option<Instant> {
        let join = self.joining().then_some(self.next_join);
        let alerts = self.alerts.as_ref().and_then(Alerts::poll_timeout);
        [self.peer.poll_timeout(), join, alerts].into_iter().flatten().min()
    }

    /// Whether the seeds should be contacted (again): there are some, and no other member
    /// is live (at start, or after everyone else was lost).
    fn joining(&self) -> bool {
        !self.seeds.is_empty() && self.peer.live_members() <= 1
    }

    fn rejoin(&mut self, now: Instant) {
        if self.joining() && now >= self.next_join {
            tracing::debug!(seeds = ?self.seeds, "contacting the seeds");
            self.peer.join(now, &self.seeds);
            self.next_join = now + JOIN_RETRY;
        }
    }

    /// Hands up to [`RECV_BATCH`] waiting datagrams to the core.
    fn receive(&mut self) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(&mut self.buffer) {
                Ok((len, from)) => self.peer.handle_datagram(self.clock.now(), from, &self.buffer[..len]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    // An ICMP error reported on the socket, or a signal: nothing is lost
                    // but this read.
                    self.receive_errors += 1;
                    tracing::debug!(%error, "receive failed");
                }
            }
        }
    }

    /// Sends what the core queued and records what it reports; with alerting, queues the
    /// transitions, incidents and outbox rows for one commit.
    async fn flush(&mut self) {
        while let Some(rollcall_core::Transmit { to, payload: bytes }) = self.peer.poll_transmit() {
            // A member that is gone (its port closed, its host unreachable) must not stop
            // the datagrams to the others: count and go on.
            if let Err(error) = self.socket.send_to(&bytes, to).await {
                self.send_errors += 1;
                tracing::debug!(%error, %to, "send failed");
            }
        }
        let mut batch = Vec::new();
        while let Some(event) = self.peer.poll_event() {
            self.record(event, &mut batch);
        }
        if let Some(alerts) = &mut self.alerts {
            let members = STATES.iter().map(|&state| self.peer.count(state) as usize).sum();
            alerts.commit(batch, members);
        }
    }

    fn record(&mut self, event: SwimEvent, batch: &mut Vec<Write>) {
        match event {
            SwimEvent::Member { member, from, to, incarnation, at } => {
                if let Some(alerts) = &mut self.alerts {
                    alerts.handle_member(&member.name, from, to, incarnation, at, batch);
                }
                let from = from.map_or("new", MemberState::as_str);
                let to = to.as_str();
                tracing::info!(member = %member.name, addr = %member.addr, from, to, incarnation, "member transition");
                *self.transitions.entry((from, to)).or_default() += 1;
                if self.events.len() == MAX_EVENTS {
                    self.events.pop_front();
                    self.events_dropped += 1;
                }
                self.events.push_back(EventJson {
                    id: self.next_event_id,
                    node: member.name.to_string(),
                    from,
                    to,
                    incarnation,
                    at: rfc3339_ms(self.clock.wall_ms(at)),
                });
                self.next_event_id += 1;
            }
            SwimEvent::Refuted { incarnation, .. } => {
                tracing::info!(incarnation, "refuted a suspicion of this peer");
            }
            // `#[non_exhaustive]` for embedders; one the core adds before this shell learns it.
            other => tracing::warn!(event = ?other, "an event of the peer this shell does not act on"),
        }
    }

    fn answer(&mut self, command: Command) {
        // A handler that gave up waiting dropped its receiver: nothing to do about it.
        match command {
            Command::Members { reply } => {
                let _ = reply.send(self.members());
            }
            Command::Member { id, reply } => {
                let found = self.members().into_iter().find(|member| member.id == id).map(|member| {
                    let history =
                        self.events.iter().rev().filter(|event| event.node == id).take(20).cloned().collect();
                    (member, history)
                });
                let _ = reply.send(found);
            }
            Command::Events { since, limit, node, reply } => {
                // Ids grow by one, so the first event above `since` is found by position.
                let first = self.events.front().map_or(0, |event| event.id);
                let skip = since.saturating_add(1).saturating_sub(first) as usize;
                let page = self
                    .events
                    .iter()
                    .skip(skip)
                    .filter(|event| node.as_deref().is_none_or(|node| event.node == node))
                    .take(limit)
                    .cloned()
                    .collect();
                let _ = reply.send(page);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn members(&self) -> Vec<MemberJson> {
        let me = MemberJson {
            id: self.peer.name().to_string(),
            state: "up",
            incarnation: self.peer.incarnation(),
            addr: self.peer.addr().to_string(),
            local: true,
        };
        let others = self.peer.members().map(|view| MemberJson {
            id: view.id.name.to_string(),
            state: view.state.as_str(),
            incarnation: view.incarnation,
            addr: view.id.addr.to_string(),
            local: false,
        });
        std::iter::once(me).chain(others).collect()
    }

    fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            name: self.peer.name().to_string(),
            cluster: self.peer.config().cluster.clone(),
            addr: self.peer.addr(),
            incarnation: self.peer.incarnation(),
            seed: self.seed,
            core: self.peer.stats().clone(),
            members: STATES.map(|state| self.peer.count(state)),
            health_score: self.peer.health(),
            max_health: self.peer.config().max_health,
            queued_updates: self.peer.queued_updates(),
            transitions: self.transitions.clone(),
            events_dropped: self.events_dropped,
            send_errors: self.send_errors,
            receive_errors: self.receive_errors,
            uptime: self.clock.now().saturating_duration_since(self.started),
            alerts: self.alerts.as_ref().map(Alerts::snapshot),
        }
    }
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
