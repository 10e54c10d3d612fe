//! Leases with `[cluster]` (docs/LEASES.md, "Several monitors"): etcd holds every lease,
//! so any monitor answers for it and the fencing token is monotonic across monitors.
//!
//! A lease is the key `/{prefix}/{name}/leases/{lease}`, its value the holder, attached to
//! an etcd lease of the lease's TTL (rounded up to whole seconds, as etcd counts them: a
//! holder that stops renewing loses it no sooner than asked). The token is the key's create
//! revision: a new holder creates the key anew, so every change of holder gets a higher
//! token than any before it, from whichever monitor, and renewals keep it.
//! - expiry is etcd's: the key goes with its etcd lease;
//! - released at detection speed: the leader deletes the leases of the nodes the monitors
//!   agree are down ([`release_nodes`]), fenced like its incident writes;
//! - every monitor follows the keys with one watch ([`follow`]) and tells its own
//!   `/v1/leases/{name}/watch` streams. Why a lease ended is the marker
//!   `/{prefix}/{name}/lease-ends/{lease}` written in the same transaction as the delete
//!   (none: it expired).

use super::ClusterSettings;
use super::paging::Leading;
use crate::clock::{Clock, rfc3339_ms};
use crate::monitor::{LeaseChange, LeaseFailure, LeaseJson};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp, WatchOptions,
};
use rollcall_core::leases::{LeaseError, MAX_LEASES};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::{Mutex, broadcast, watch};

/// What the key of a lease holds.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Record {
    node: String,
    holder: String,
    ttl_ms: u64,
    since_ms: i64,
}

/// The leases of a cluster, as the HTTP handlers of one monitor reach them.
pub struct ClusterLeases {
    settings: ClusterSettings,
    clock: Clock,
    /// Connected on first use, dropped after an error so the next request tries the next
    /// member.
    client: Mutex<(Option<Client>, usize)>,
}

fn unavailable(error: impl std::fmt::Display) -> LeaseFailure {
    LeaseFailure {
        status: 503,
        code: "etcd_unavailable",
        message: format!("the cluster's leases are in etcd, which cannot be reached now ({error}); retry"),
    }
}

fn not_holder(name: &str, holder: &str, token: u64) -> LeaseFailure {
    LeaseError::NotHolder { name: name.to_string(), holder: holder.to_string(), token }.into()
}

fn parse(kv: &KeyValue) -> Option<Record> {
    serde_json::from_slice(kv.value()).ok()
}

impl ClusterLeases {
    pub fn new(settings: ClusterSettings, clock: Clock) -> ClusterLeases {
        ClusterLeases { settings, clock, client: Mutex::new((None, 0)) }
    }

    fn key(&self, name: &str) -> String {
        lease_key(&self.settings, name)
    }

    /// A client on a member that answers (cheap to clone: one channel).
    async fn client(&self) -> Result<Client, LeaseFailure> {
        let mut slot = self.client.lock().await;
        if let Some(client) = &slot.0 {
            return Ok(client.clone());
        }
        let endpoints = &self.settings.etcd;
        let mut last = String::new();
        for _ in 0..endpoints.len() {
            slot.1 = (slot.1 + 1) % endpoints.len();
            let options = super::session::connect_options(&self.settings);
            let attempt = Client::connect([endpoints[slot.1].as_str()], Some(options));
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(client)) => {
                    slot.0 = Some(client.clone());
                    return Ok(client);
                }
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => last = format!("{}: no answer within 2 s", endpoints[slot.1]),
            }
        }
        Err(unavailable(last))
    }

    /// After a failed request: the next one connects again (to the next member).
    async fn failed(&self, error: etcd_client::Error) -> LeaseFailure {
        self.client.lock().await.0 = None;
        unavailable(error)
    }

    fn json(&self, name: &str, kv: &KeyValue, record: &Record, remaining: Duration) -> LeaseJson {
        let now_ms = self.clock.wall_ms(self.clock.now());
        LeaseJson {
            name: name.to_string(),
            holder: record.holder.clone(),
            node: record.node.clone(),
            token: kv.create_revision() as u64,
            ttl_ms: record.ttl_ms,
            since: rfc3339_ms(record.since_ms),
            expires: rfc3339_ms(now_ms + remaining.as_millis() as i64),
            expires_in_ms: remaining.as_millis() as u64,
        }
    }

    /// The lease and its key, if someone holds it.
    async fn current(
        &self,
        client: &mut Client,
        name: &str,
    ) -> Result<Option<(KeyValue, Record)>, LeaseFailure> {
        let answer = match client.get(self.key(name), None).await {
            Ok(answer) => answer,
            Err(error) => return Err(self.failed(error).await),
        };
        Ok(answer.kvs().first().and_then(|kv| Some((kv.clone(), parse(kv)?))))
    }

    /// Renews the etcd lease under `kv` once; the TTL it now has, or `None` if it is gone.
    async fn keep_alive(&self, client: &mut Client, kv: &KeyValue) -> Result<Option<Duration>, LeaseFailure> {
        let attempt = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(kv.lease()).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match attempt.await {
            Ok(Some(answer)) if answer.ttl() > 0 => Ok(Some(Duration::from_secs(answer.ttl() as u64))),
            Ok(_) => Ok(None),
            Err(error) => Err(self.failed(error).await),
        }
    }

    /// Grants `name` to `holder` on `node` (node checked by the caller), or renews it for
    /// the same holder (same token).
    pub async fn acquire(
        &self,
        name: &str,
        node: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseJson, LeaseFailure> {
        let mut client = self.client().await?;
        // Twice at most: a grant lost to another monitor's at the same moment reads it back.
        for _ in 0..2 {
            if let Some((kv, record)) = self.current(&mut client, name).await? {
                if record.holder != holder || record.node != node {
                    let error =
                        LeaseError::Held { name: name.to_string(), holder: record.holder, node: record.node };
                    return Err(error.into());
                }
                // A retried acquire: the same tenure, renewed.
                return match self.keep_alive(&mut client, &kv).await? {
                    Some(remaining) => Ok(self.json(name, &kv, &record, remaining)),
                    None => continue,
                };
            }
            let prefix = format!("{}/leases/", self.settings.root());
            let count =
                match client.get(prefix, Some(GetOptions::new().with_prefix().with_count_only())).await {
                    Ok(answer) => answer.count() as usize,
                    Err(error) => return Err(self.failed(error).await),
                };
            if count >= MAX_LEASES {
                return Err(LeaseError::Capacity.into());
            }
            let seconds = ttl.as_millis().div_ceil(1000) as i64;
            let grant = match client.lease_grant(seconds, None).await {
                Ok(grant) => grant,
                Err(error) => return Err(self.failed(error).await),
            };
            let since_ms = self.clock.wall_ms(self.clock.now());
            let record = Record {
                node: node.to_string(),
                holder: holder.to_string(),
                ttl_ms: ttl.as_millis() as u64,
                since_ms,
            };
            let value = serde_json::to_vec(&record).expect("a record always serializes");
            let key = self.key(name);
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(grant.id())))]);
            match client.txn(txn).await {
                Ok(answer) if answer.succeeded() => {
                    let token = answer.header().map_or(0, |header| header.revision()) as u64;
                    tracing::info!(lease = %name, %holder, %node, token, "lease granted (cluster)");
                    let remaining = Duration::from_secs(grant.ttl().max(0) as u64);
                    let now_ms = self.clock.wall_ms(self.clock.now());
                    return Ok(LeaseJson {
                        name: name.to_string(),
                        holder: holder.to_string(),
                        node: node.to_string(),
                        token,
                        ttl_ms: record.ttl_ms,
                        since: rfc3339_ms(since_ms),
                        expires: rfc3339_ms(now_ms + remaining.as_millis() as i64),
                        expires_in_ms: remaining.as_millis() as u64,
                    });
                }
                Ok(_) => {
                    // Another grant came first: ours goes, and the loop reads theirs.
                    let _ = client.lease_revoke(grant.id()).await;
                }
                Err(error) => return Err(self.failed(error).await),
            }
        }
        Err(unavailable("the lease changed hands twice while it was being granted"))
    }

    /// Extends `name` by its TTL if `holder` holds it with `token`.
    pub async fn renew(&self, name: &str, holder: &str, token: u64) -> Result<LeaseJson, LeaseFailure> {
        let mut client = self.client().await?;
        let Some((kv, record)) = self.current(&mut client, name).await? else {
            return Err(not_holder(name, holder, token));
        };
        if kv.create_revision() as u64 != token || record.holder != holder {
            return Err(not_holder(name, holder, token));
        }
        // The etcd lease is this tenure's own: renewing it cannot extend anyone else's.
        match self.keep_alive(&mut client, &kv).await? {
            Some(remaining) => Ok(self.json(name, &kv, &record, remaining)),
            None => Err(not_holder(name, holder, token)),
        }
    }

    /// Ends `holder`'s tenure of `name`, if it holds it with `token`.
    pub async fn release(&self, name: &str, holder: &str, token: u64) -> Result<LeaseJson, LeaseFailure> {
        let mut client = self.client().await?;
        let Some((kv, record)) = self.current(&mut client, name).await? else {
            return Err(not_holder(name, holder, token));
        };
        if kv.create_revision() as u64 != token || record.holder != holder {
            return Err(not_holder(name, holder, token));
        }
        let key = self.key(name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, token as i64)])
            .and_then(end_ops(&self.settings, name, "released"));
        match client.txn(txn).await {
            Ok(answer) if answer.succeeded() => {
                tracing::info!(lease = %name, %holder, token, "lease released (cluster)");
                let _ = client.lease_revoke(kv.lease()).await;
                Ok(self.json(name, &kv, &record, Duration::ZERO))
            }
            Ok(_) => Err(not_holder(name, holder, token)),
            Err(error) => Err(self.failed(error).await),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<LeaseJson>, LeaseFailure> {
        let mut client = self.client().await?;
        let Some((kv, record)) = self.current(&mut client, name).await? else { return Ok(None) };
        let remaining = self.remaining(&mut client, &kv).await?;
        Ok(Some(self.json(name, &kv, &record, remaining)))
    }

    pub async fn list(&self) -> Result<Vec<LeaseJson>, LeaseFailure> {
        let mut client = self.client().await?;
        let prefix = format!("{}/leases/", self.settings.root());
        let answer = match client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await {
            Ok(answer) => answer,
            Err(error) => return Err(self.failed(error).await),
        };
        let mut leases = Vec::new();
        for kv in answer.kvs() {
            let (Some(name), Some(record)) =
                (kv.key_str().ok().and_then(|key| key.strip_prefix(&prefix)), parse(kv))
            else {
                continue;
            };
            let remaining = self.remaining(&mut client, kv).await?;
            leases.push(self.json(name, kv, &record, remaining));
        }
        Ok(leases)
    }

    /// What is left of the etcd lease under `kv`, in whole seconds as etcd tells it.
    async fn remaining(&self, client: &mut Client, kv: &KeyValue) -> Result<Duration, LeaseFailure> {
        match client.lease_time_to_live(kv.lease(), None).await {
            Ok(answer) => Ok(Duration::from_secs(answer.ttl().max(0) as u64)),
            Err(error) => Err(self.failed(error).await),
        }
    }
}

pub fn lease_key(settings: &ClusterSettings, name: &str) -> String {
    format!("{}/leases/{name}", settings.root())
}

fn end_key(settings: &ClusterSettings, name: &str) -> String {
    format!("{}/lease-ends/{name}", settings.root())
}

/// The operations that end a lease: its key goes, and the marker says why.
fn end_ops(settings: &ClusterSettings, name: &str, reason: &str) -> Vec<TxnOp> {
    vec![
        TxnOp::delete(lease_key(settings, name), None),
        TxnOp::put(end_key(settings, name), reason.as_bytes().to_vec(), None),
    ]
}

/// Run by the leader when the monitors agree `nodes` are down: ends their leases at once,
/// each in a transaction fenced by the leadership and by the lease's own token (a lease
/// granted again meanwhile stays). Returns how many ended.
pub async fn release_nodes(
    client: &mut Client,
    settings: &ClusterSettings,
    leading: &Leading,
    nodes: &[String],
) -> Result<usize, etcd_client::Error> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let prefix = format!("{}/leases/", settings.root());
    let answer = client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
    let mut ended = 0;
    for kv in answer.kvs() {
        let (Some(name), Some(record)) =
            (kv.key_str().ok().and_then(|key| key.strip_prefix(&prefix)), parse(kv))
        else {
            continue;
        };
        if !nodes.contains(&record.node) {
            continue;
        }
        let txn = Txn::new()
            .when([
                leading.fence(),
                Compare::create_revision(kv.key().to_vec(), CompareOp::Equal, kv.create_revision()),
            ])
            .and_then(end_ops(settings, name, "node-gone"));
        if client.txn(txn).await?.succeeded() {
            tracing::info!(lease = name, node = %record.node, token = kv.create_revision(), "the holder's node is down for the cluster: lease released");
            let _ = client.lease_revoke(kv.lease()).await;
            ended += 1;
        }
    }
    Ok(ended)
}

/// Follows every lease of the cluster with one etcd watch and tells this monitor's watch
/// streams each change of holder. Reconnects (resuming after the last revision seen) until
/// the monitor stops.
pub async fn follow(
    leases: std::sync::Arc<ClusterLeases>,
    changes: broadcast::Sender<LeaseChange>,
    mut stop: watch::Receiver<bool>,
) {
    let root = leases.settings.root();
    let (lease_prefix, end_prefix) = (format!("{root}/leases/"), format!("{root}/lease-ends/"));
    let mut next_revision = 0;
    while !*stop.borrow() {
        let attempt = async {
            let mut client = leases.client().await.map_err(|failure| failure.message)?;
            let mut options = WatchOptions::new().with_prefix().with_prev_key();
            if next_revision > 0 {
                options = options.with_start_revision(next_revision);
            }
            let mut stream = client
                .watch(format!("{root}/lease"), Some(options))
                .await
                .map_err(|error| error.to_string())?;
            loop {
                let Some(answer) = stream.message().await.map_err(|error| error.to_string())? else {
                    return Err("etcd ended the leases watch".to_string());
                };
                // Why each lease ended, by revision: the marker is written with the delete.
                let reasons: Vec<(i64, String, String)> = answer
                    .events()
                    .iter()
                    .filter_map(|event| event.kv())
                    .filter_map(|kv| {
                        let name = kv.key_str().ok()?.strip_prefix(&end_prefix)?;
                        Some((
                            kv.mod_revision(),
                            name.to_string(),
                            String::from_utf8_lossy(kv.value()).into_owned(),
                        ))
                    })
                    .collect();
                for event in answer.events() {
                    let Some(kv) = event.kv() else { continue };
                    next_revision = next_revision.max(kv.mod_revision() + 1);
                    let Some(name) = kv.key_str().ok().and_then(|key| key.strip_prefix(&lease_prefix)) else {
                        continue;
                    };
                    let change: &'static str = match event.event_type() {
                        EventType::Put if kv.create_revision() == kv.mod_revision() => "granted",
                        EventType::Put => continue,
                        EventType::Delete => {
                            let why = reasons
                                .iter()
                                .find(|(revision, ended, _)| *revision == kv.mod_revision() && ended == name);
                            match why.map(|(_, _, reason)| reason.as_str()) {
                                Some("released") => "released",
                                Some("node-gone") => "node-gone",
                                _ => "expired",
                            }
                        }
                    };
                    // A delete's value is empty: the lease as it was is the previous value.
                    let (shown, record) = match event.event_type() {
                        EventType::Delete => {
                            match event.prev_kv().and_then(|prev| Some((prev, parse(prev)?))) {
                                Some(pair) => pair,
                                None => continue,
                            }
                        }
                        EventType::Put => match parse(kv) {
                            Some(record) => (kv, record),
                            None => continue,
                        },
                    };
                    let remaining = if change == "granted" {
                        Duration::from_millis(record.ttl_ms)
                    } else {
                        Duration::ZERO
                    };
                    let lease = leases.json(name, shown, &record, remaining);
                    // Nobody watching is not an error.
                    let _ = changes.send(LeaseChange { change, lease });
                }
            }
        };
        let ended: Result<(), String> = tokio::select! {
            ended = attempt => ended,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if let Err(error) = ended {
            tracing::warn!(%error, "the leases watch stopped; following again in a second");
            leases.client.lock().await.0 = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}
