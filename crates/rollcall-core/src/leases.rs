//! Leases with fencing tokens: a named lock held by a holder (a process on a node the
//! monitor watches) for a TTL, renewed while the holder lives, released at once when its
//! node is declared down or leaves.
//!
//! Every grant of a free lease takes a new fencing token from one counter that only goes
//! up, shared by all leases; renewals keep the token. A resource that remembers the highest
//! token it has seen and refuses lower ones is safe even when a paused holder wakes up and
//! acts after its lease has gone to someone else (docs/LEASES.md).
//!
//! The table does no I/O and reads no clock. The shell calls it in this order:
//! [`Leases::restore`] once at start (the store's leases and its highest token), then
//! [`Leases::acquire`], [`Leases::renew`], [`Leases::release`] for API requests and
//! [`Leases::release_node`] when a node goes down or leaves; [`Leases::handle_timeout`] when
//! [`Leases::poll_timeout`] is due; and after each of those, [`Leases::poll_event`] until
//! `None`, making every [`LeaseEvent::Granted`] durable before it answers the request that
//! caused it (that is what keeps a token from ever being handed out twice across a crash).
//!
//! Deliberately not here: where tokens come from when several monitors share leases (the
//! `[cluster]` mode takes them from etcd's revision; see docs/LEASES.md), and which nodes
//! exist (the shell checks that before calling `acquire`).

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Shortest TTL a lease may ask for: below a second, renewals would be most of the traffic
/// and the holder's drift margin most of the tenure.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest TTL: past an hour a lost holder would keep a lease for too long to be useful.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Longest lease name and holder, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most leases held at once (a bound, like every table of the monitor).
pub const MAX_LEASES: usize = 10_000;

/// A lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    /// The node the holder runs on: the lease goes when that node goes down or leaves.
    pub node: String,
    /// Who holds it: a name the holder chose, unique among its contenders.
    pub holder: String,
    pub token: u64,
    pub ttl: Duration,
    /// When this holder was granted the lease.
    pub since: Instant,
    /// When it ends unless renewed.
    pub expires: Instant,
}

/// Why a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Its holder released it.
    Released,
    /// Its TTL ran out without a renewal.
    Expired,
    /// Its holder's node was declared down, or left, or was forgotten.
    NodeGone,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Released => "released",
            EndReason::Expired => "expired",
            EndReason::NodeGone => "node-gone",
        }
    }
}

/// What the shell must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A new holder (and a new token): make it durable before answering.
    Granted(Lease),
    /// A lease was renewed (its token is unchanged).
    Renewed(Lease),
    /// A holder's tenure ended.
    Ended { lease: Lease, reason: EndReason },
}

/// Why a request changed nothing. No variant changes the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The caller's fault: a name or holder that is empty, too long, or has characters
    /// outside `A-Z a-z 0-9 . _ - :`.
    #[error("the {what} must be 1 to {MAX_NAME_BYTES} characters of A-Z, a-z, 0-9, '.', '_', '-' or ':'")]
    BadName { what: &'static str },
    /// The caller's fault: a TTL under [`MIN_TTL`] or over [`MAX_TTL`].
    #[error("the TTL must be between 1 s and 1 h")]
    BadTtl,
    /// Someone else holds the lease (the current holder is in the error).
    #[error("the lease {name:?} is held by {holder:?} on node {node:?}")]
    Held { name: String, holder: String, node: String },
    /// The caller does not hold the lease (any more): it must stop acting as its holder.
    #[error("{holder:?} does not hold the lease {name:?} with token {token}")]
    NotHolder { name: String, holder: String, token: u64 },
    /// The table is at [`MAX_LEASES`].
    #[error("the monitor already holds {MAX_LEASES} leases")]
    Capacity,
}

/// Counters, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Grants (new holders, new tokens).
    pub granted: u64,
    /// Tenures ended, by reason: released, expired, node gone.
    pub released: u64,
    pub expired: u64,
    pub node_gone: u64,
    /// Acquires refused because the table was at [`MAX_LEASES`] (a bound that was hit).
    pub refused_capacity: u64,
}

/// The lease table and the token counter.
#[derive(Debug, Default)]
pub struct Leases {
    leases: BTreeMap<String, Lease>,
    /// Every lease's expiry, earliest first.
    expiries: BTreeSet<(Instant, String)>,
    /// The highest token ever handed out (or restored): the next grant takes one more.
    last_token: u64,
    events: VecDeque<LeaseEvent>,
    stats: LeaseStats,
}

impl Leases {
    pub fn new() -> Leases {
        Leases::default()
    }

    /// Puts back what the store held: its leases, each renewed for its full TTL from `now`
    /// (a holder that renewed just before the crash believes it holds for up to a TTL; the
    /// monitor cannot know when that was, so it assumes the latest), and the highest token
    /// ever made durable, which no later grant reuses.
    pub fn restore(&mut self, leases: impl IntoIterator<Item = Lease>, last_token: u64, now: Instant) {
        self.last_token = self.last_token.max(last_token);
        for mut lease in leases {
            self.last_token = self.last_token.max(lease.token);
            lease.expires = now + lease.ttl;
            self.insert(lease);
        }
    }

    /// The lease called `name`, if it is held.
    pub fn get(&self, name: &str) -> Option<&Lease> {
        self.leases.get(name)
    }

    /// Every held lease, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn stats(&self) -> &LeaseStats {
        &self.stats
    }

    /// The highest token handed out so far.
    pub fn last_token(&self) -> u64 {
        self.last_token
    }

    /// Grants `name` to `holder` on `node` for `ttl` if it is free (a new token), or renews
    /// it if `holder` on `node` already holds it (same token: an acquire retried after a lost
    /// answer must not look like a new tenure).
    pub fn acquire(
        &mut self,
        name: &str,
        node: &str,
        holder: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Lease, LeaseError> {
        validate_request(name, node, holder, ttl)?;
        if let Some(current) = self.leases.get(name) {
            if current.holder != holder || current.node != node {
                return Err(LeaseError::Held {
                    name: name.to_string(),
                    holder: current.holder.clone(),
                    node: current.node.clone(),
                });
            }
            let token = current.token;
            return self.extend(name, holder, token, Some(ttl), now);
        }
        if self.leases.len() >= MAX_LEASES {
            self.stats.refused_capacity += 1;
            return Err(LeaseError::Capacity);
        }
        self.last_token += 1;
        self.stats.granted += 1;
        let lease = Lease {
            name: name.to_string(),
            node: node.to_string(),
            holder: holder.to_string(),
            token: self.last_token,
            ttl,
            since: now,
            expires: now + ttl,
        };
        self.insert(lease.clone());
        self.events.push_back(LeaseEvent::Granted(lease.clone()));
        Ok(lease)
    }

    /// Extends `name` by its TTL from `now`, if `holder` holds it with `token`.
    pub fn renew(&mut self, name: &str, holder: &str, token: u64, now: Instant) -> Result<Lease, LeaseError> {
        self.extend(name, holder, token, None, now)
    }

    /// Ends `holder`'s tenure of `name`, if it holds it with `token`.
    pub fn release(&mut self, name: &str, holder: &str, token: u64) -> Result<Lease, LeaseError> {
        self.check_holder(name, holder, token)?;
        Ok(self.end(name, EndReason::Released).expect("check_holder found it"))
    }

    /// Ends every lease held on `node` (declared down, left, or forgotten). Returns how
    /// many ended.
    pub fn release_node(&mut self, node: &str) -> usize {
        let names: Vec<String> =
            self.leases.values().filter(|lease| lease.node == node).map(|lease| lease.name.clone()).collect();
        for name in &names {
            self.end(name, EndReason::NodeGone);
        }
        names.len()
    }

    /// When the next lease expires, if any is held.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Ends every lease whose TTL has run out by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, name)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.end(&name, EndReason::Expired);
        }
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    fn extend(
        &mut self,
        name: &str,
        holder: &str,
        token: u64,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<Lease, LeaseError> {
        self.check_holder(name, holder, token)?;
        let mut lease = self.remove(name).expect("check_holder found it");
        lease.ttl = ttl.unwrap_or(lease.ttl);
        // A renewal never shortens a tenure: the holder counts its own from when it sent
        // its last acknowledged request, so an earlier expiry here would still be safe, but
        // a later one is what it was promised.
        lease.expires = lease.expires.max(now + lease.ttl);
        self.insert(lease.clone());
        self.events.push_back(LeaseEvent::Renewed(lease.clone()));
        Ok(lease)
    }

    fn check_holder(&self, name: &str, holder: &str, token: u64) -> Result<(), LeaseError> {
        match self.leases.get(name) {
            Some(lease) if lease.holder == holder && lease.token == token => Ok(()),
            _ => Err(LeaseError::NotHolder { name: name.to_string(), holder: holder.to_string(), token }),
        }
    }

    fn end(&mut self, name: &str, reason: EndReason) -> Option<Lease> {
        let lease = self.remove(name)?;
        *match reason {
            EndReason::Released => &mut self.stats.released,
            EndReason::Expired => &mut self.stats.expired,
            EndReason::NodeGone => &mut self.stats.node_gone,
        } += 1;
        self.events.push_back(LeaseEvent::Ended { lease: lease.clone(), reason });
        Some(lease)
    }

    fn insert(&mut self, lease: Lease) {
        let expiry = (lease.expires, lease.name.clone());
        if let Some(old) = self.leases.insert(lease.name.clone(), lease) {
            self.expiries.remove(&(old.expires, old.name));
        }
        self.expiries.insert(expiry);
    }

    fn remove(&mut self, name: &str) -> Option<Lease> {
        let lease = self.leases.remove(name)?;
        let removed = self.expiries.remove(&(lease.expires, lease.name.clone()));
        debug_assert!(removed, "every held lease has exactly one expiry (insert and remove pair them)");
        Some(lease)
    }
}

/// Checks a lease name, holder or node id: 1 to [`MAX_NAME_BYTES`] characters that are
/// safe in a URL path and a log line.
/// Checks what an acquire names: the lease, the node, the holder and the TTL.
pub fn validate_request(name: &str, node: &str, holder: &str, ttl: Duration) -> Result<(), LeaseError> {
    validate_name("lease name", name)?;
    validate_name("holder", holder)?;
    if node.is_empty() || node.len() > MAX_NAME_BYTES {
        return Err(LeaseError::BadName { what: "node" });
    }
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(LeaseError::BadTtl);
    }
    Ok(())
}

pub fn validate_name(what: &'static str, name: &str) -> Result<(), LeaseError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok { Ok(()) } else { Err(LeaseError::BadName { what }) }
}

#[cfg(test)]
mod tests;
