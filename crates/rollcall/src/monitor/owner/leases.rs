//! The owner's side of leases: the API's commands, the store rows of each change, leases
//! released when their node goes down or leaves, and the stream of holder changes.
//!
//! Tokens come from the lease table's counter, restored from the store at start; a grant
//! is answered only once its row (and the counter) is committed (`Persist::write_acked`).
//! With `[cluster]`, etcd holds the leases instead (`cluster/leases.rs`): the owner is only
//! asked whether a node may hold one (`LeaseCommand::CheckNode`), and its table stays empty.

use super::Owner;
use crate::clock::{Clock, rfc3339_ms};
use rollcall_core::Instant;
use rollcall_core::leases::{EndReason, Lease, LeaseError, LeaseEvent, Leases};
use rollcall_core::monitor::NodeState;
use rollcall_store::{LeaseRecord, Write};
use serde::Serialize;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// Holder changes buffered for slow watchers; one that falls further behind is told to
/// read the lease again.
const CHANGES_BUFFER: usize = 1024;

/// Requests about leases, from HTTP handlers.
pub enum LeaseCommand {
    /// Answered with the lease and the store ticket to wait for before telling the client.
    Acquire {
        name: String,
        node: String,
        holder: String,
        ttl: Duration,
        reply: oneshot::Sender<Result<(LeaseJson, u64), LeaseFailure>>,
    },
    Renew {
        name: String,
        holder: String,
        token: u64,
        reply: oneshot::Sender<Result<LeaseJson, LeaseFailure>>,
    },
    Release {
        name: String,
        holder: String,
        token: u64,
        reply: oneshot::Sender<Result<LeaseJson, LeaseFailure>>,
    },
    Get {
        name: String,
        reply: oneshot::Sender<Option<LeaseJson>>,
    },
    List {
        reply: oneshot::Sender<Vec<LeaseJson>>,
    },
    /// With `[cluster]` (etcd holds the leases): may `node` hold one, as this monitor sees it?
    CheckNode {
        node: String,
        reply: oneshot::Sender<Result<(), LeaseFailure>>,
    },
}

/// A lease as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LeaseJson {
    pub name: String,
    pub holder: String,
    pub node: String,
    pub token: u64,
    pub ttl_ms: u64,
    pub since: String,
    pub expires: String,
    /// Milliseconds from now until it expires unless renewed, on the monitor's clock.
    pub expires_in_ms: u64,
}

/// A change of holder, for the watch stream.
#[derive(Clone, Debug, Serialize)]
pub struct LeaseChange {
    /// `granted`, `released`, `expired`, `node-gone`.
    pub change: &'static str,
    pub lease: LeaseJson,
}

/// Why a lease command did nothing: an HTTP status, a stable code, a sentence.
#[derive(Debug)]
pub struct LeaseFailure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl From<LeaseError> for LeaseFailure {
    fn from(error: LeaseError) -> LeaseFailure {
        let (status, code) = match &error {
            LeaseError::BadName { .. } | LeaseError::BadTtl => (400, "bad_request"),
            LeaseError::Held { .. } => (409, "held"),
            LeaseError::NotHolder { .. } => (409, "not_holder"),
            LeaseError::Capacity => (409, "capacity"),
        };
        LeaseFailure { status, code, message: error.to_string() }
    }
}

/// The lease table and where its changes go.
pub struct LeaseState {
    pub table: Leases,
    pub changes: broadcast::Sender<LeaseChange>,
}

impl LeaseState {
    /// The table with the store's leases and highest token put back.
    pub fn restore(records: &[LeaseRecord], last_token: u64, clock: &Clock, now: Instant) -> LeaseState {
        let mut table = Leases::new();
        let leases = records.iter().map(|record| {
            let ttl = Duration::from_millis(record.ttl_ms);
            Lease {
                name: record.name.clone(),
                node: record.node.clone(),
                holder: record.holder.clone(),
                token: record.token,
                ttl,
                since: clock.instant_at_wall_ms(record.since_ms),
                expires: now + ttl,
            }
        });
        table.restore(leases, last_token, now);
        if !table.is_empty() {
            tracing::info!(
                leases = table.len(),
                last_token = table.last_token(),
                "restored leases; each is held for its full TTL from now"
            );
        }
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        LeaseState { table, changes }
    }

    /// What makes a grant durable: its row, which also raises the stored token counter.
    fn grant_writes(lease: &Lease, clock: &Clock) -> Vec<Write> {
        vec![Write::Lease(LeaseRecord {
            name: lease.name.clone(),
            node: lease.node.clone(),
            holder: lease.holder.clone(),
            token: lease.token,
            ttl_ms: lease.ttl.as_millis() as u64,
            since_ms: clock.wall_ms(lease.since),
        })]
    }
}

pub fn lease_json(lease: &Lease, clock: &Clock, now: Instant) -> LeaseJson {
    LeaseJson {
        name: lease.name.clone(),
        holder: lease.holder.clone(),
        node: lease.node.clone(),
        token: lease.token,
        ttl_ms: lease.ttl.as_millis() as u64,
        since: rfc3339_ms(clock.wall_ms(lease.since)),
        expires: rfc3339_ms(clock.wall_ms(lease.expires)),
        expires_in_ms: lease.expires.saturating_duration_since(now).as_millis() as u64,
    }
}

impl Owner {
    pub(super) fn answer_lease(&mut self, command: LeaseCommand) {
        let now = self.clock.now();
        match command {
            LeaseCommand::Acquire { name, node, holder, ttl, reply } => {
                let result = self.acquire(&name, &node, &holder, ttl, now);
                let _ = reply.send(result);
            }
            LeaseCommand::Renew { name, holder, token, reply } => {
                let result = self.leases.table.renew(&name, &holder, token, now);
                self.drain_lease_events();
                let _ =
                    reply.send(result.map(|lease| lease_json(&lease, &self.clock, now)).map_err(Into::into));
            }
            LeaseCommand::Release { name, holder, token, reply } => {
                let result = self.leases.table.release(&name, &holder, token);
                if result.is_ok() {
                    tracing::info!(lease = %name, %holder, token, "lease released");
                }
                self.drain_lease_events();
                let _ =
                    reply.send(result.map(|lease| lease_json(&lease, &self.clock, now)).map_err(Into::into));
            }
            LeaseCommand::Get { name, reply } => {
                let _ =
                    reply.send(self.leases.table.get(&name).map(|lease| lease_json(lease, &self.clock, now)));
            }
            LeaseCommand::CheckNode { node, reply } => {
                let _ = reply.send(self.may_hold(&node, now));
            }
            LeaseCommand::List { reply } => {
                let list =
                    self.leases.table.iter().map(|lease| lease_json(lease, &self.clock, now)).collect();
                let _ = reply.send(list);
            }
        }
    }

    /// Grants or renews, for a node the monitor knows and sees up. The answer carries the
    /// ticket of the lease's row: the handler waits for its commit before answering.
    fn acquire(
        &mut self,
        name: &str,
        node: &str,
        holder: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<(LeaseJson, u64), LeaseFailure> {
        self.may_hold(node, now)?;
        let lease = self.leases.table.acquire(name, node, holder, ttl, now)?;
        // An acquire only grants or renews: nothing else to store.
        while let Some(event) = self.leases.table.poll_event() {
            if let LeaseEvent::Granted(lease) = &event {
                tracing::info!(lease = %lease.name, holder = %lease.holder, node = %lease.node, token = lease.token, "lease granted");
                self.publish("granted", lease, now);
            }
        }
        // A renewal by acquire writes the same row again: cheap, and the answer then waits
        // behind any grant of this lease still being committed.
        let ticket = self.persist.write_acked(LeaseState::grant_writes(&lease, &self.clock));
        Ok((lease_json(&lease, &self.clock, now), ticket))
    }

    /// Only a node this monitor knows and sees up may hold a lease.
    fn may_hold(&self, node: &str, now: Instant) -> Result<(), LeaseFailure> {
        let state = self.core.node(node, now).map(|view| view.state);
        match state {
            Some(NodeState::Up) => {}
            Some(other) => {
                return Err(LeaseFailure {
                    status: 409,
                    code: "node_not_up",
                    message: format!(
                        "node {node:?} is {}: only a node that is up may hold a lease",
                        other.as_str()
                    ),
                });
            }
            None => {
                return Err(LeaseFailure {
                    status: 404,
                    code: "unknown_node",
                    message: format!(
                        "node {node:?} is not registered with this monitor: run `rollcall agent --node {node}` on the holder's host first"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Ends the leases held on a node that went down, left, or was forgotten: at detection
    /// speed, not at their TTL.
    pub(super) fn release_node_leases(&mut self, node: &str) {
        let ended = self.leases.table.release_node(node);
        if ended > 0 {
            tracing::info!(node, leases = ended, "the holder's node is gone: its leases are released");
            self.drain_lease_events();
        }
    }

    /// At start: ends the restored leases whose node is unknown, down or left (its end may
    /// have been lost in a crash, or the node forgotten meanwhile).
    pub(super) fn release_leases_of_gone_nodes(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .leases
            .table
            .iter()
            .filter(|lease| {
                let state = self.core.node(&lease.node, now).map(|view| view.state);
                matches!(state, None | Some(NodeState::Down | NodeState::Left))
            })
            .map(|lease| lease.node.clone())
            .collect();
        for node in gone {
            self.release_node_leases(&node);
        }
    }

    /// Ends the leases whose TTL ran out.
    pub(super) fn handle_lease_timeout(&mut self, now: Instant) {
        if self.leases.table.poll_timeout().is_some_and(|due| due <= now) {
            self.leases.table.handle_timeout(now);
            self.drain_lease_events();
        }
    }

    /// Store rows and watch events for what the table did (grants are handled by `acquire`).
    fn drain_lease_events(&mut self) {
        let now = self.clock.now();
        let mut batch = Vec::new();
        while let Some(event) = self.leases.table.poll_event() {
            match event {
                LeaseEvent::Granted(lease) => {
                    // Only `acquire` grants, and it drains its own events.
                    debug_assert!(false, "grant of {} outside acquire", lease.name);
                }
                LeaseEvent::Renewed(_) => {}
                LeaseEvent::Ended { lease, reason } => {
                    if reason != EndReason::Released {
                        tracing::info!(lease = %lease.name, holder = %lease.holder, token = lease.token, reason = reason.as_str(), "lease ended");
                    }
                    batch.push(Write::EndLease { name: lease.name.clone(), token: lease.token });
                    self.publish(reason.as_str(), &lease, now);
                }
            }
        }
        if !batch.is_empty() {
            self.persist.write(batch);
        }
    }

    fn publish(&self, change: &'static str, lease: &Lease, now: Instant) {
        // Nobody watching is not an error.
        let _ = self.leases.changes.send(LeaseChange { change, lease: lease_json(lease, &self.clock, now) });
    }
}

impl Owner {
    /// What the HTTP layer needs beside commands: the stream of holder changes, and the
    /// store's durable ticket (a grant is answered once its ticket is reached).
    pub fn lease_channels(&self) -> (broadcast::Sender<LeaseChange>, tokio::sync::watch::Receiver<u64>) {
        (self.leases.changes.clone(), self.persist.durable())
    }
}
