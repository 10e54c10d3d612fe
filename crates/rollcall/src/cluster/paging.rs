//! The leader's incident records in etcd, under `/{prefix}/{name}/incidents/{id}`.
//!
//! Every write that opens, changes or closes an incident is an etcd transaction that
//! compares the leader's election key (its create revision is the fencing token): a monitor
//! that lost its leadership (its lease expired while it was paused or cut off) has its
//! writes refused, and steps down. Only after etcd took a notification are its outbox rows
//! queued in the local store, so nothing is delivered that etcd does not record; a new
//! leader re-sends what its records say was not delivered, with the same idempotency key.

use super::ClusterSettings;
use super::link::{FencedWrite, INCIDENT_ID_BASE, IncidentDoc, Link};
use crate::store_thread::PersistHandle;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

/// Incident writes per transaction: each is one operation, plus the id counter.
const WRITES_PER_TXN: usize = super::verdicts::MAX_OPS - 1;

fn incidents_prefix(settings: &ClusterSettings) -> String {
    format!("{}/incidents/", settings.root())
}

fn incident_key(settings: &ClusterSettings, id: u64) -> String {
    format!("{}{id:020}", incidents_prefix(settings))
}

fn counter_key(settings: &ClusterSettings) -> String {
    format!("{}/last-incident", settings.root())
}

/// What a new leader reads before it pages.
pub struct Inherited {
    pub docs: Vec<IncidentDoc>,
    /// The highest incident id ever allocated in the cluster.
    pub last_id: u64,
}

/// One tenure's incident bookkeeping.
pub struct Leading {
    pub token: i64,
    /// Which takeover of this monitor this is ([`FencedWrite::epoch`]).
    pub epoch: u64,
    /// The election key whose create revision is `token`.
    key: Vec<u8>,
    /// Every open (or not yet delivered) incident's record, as last written.
    docs: BTreeMap<u64, IncidentDoc>,
    /// Notifications with outbox rows not yet delivered: key -> (incident, sequence, rows left).
    awaiting: HashMap<String, (u64, u32, usize)>,
    last_id: u64,
}

/// Why the leader must step down.
pub struct Refused;

impl Leading {
    /// Reads the cluster's incidents for a new leader.
    pub async fn take_over(
        client: &mut Client,
        settings: &ClusterSettings,
        (token, epoch): (i64, u64),
        key: Vec<u8>,
    ) -> Result<(Leading, Inherited), etcd_client::Error> {
        let stored = client.get(incidents_prefix(settings), Some(GetOptions::new().with_prefix())).await?;
        let docs: Vec<IncidentDoc> = stored
            .kvs()
            .iter()
            .filter_map(|kv| match serde_json::from_slice(kv.value()) {
                Ok(doc) => Some(doc),
                Err(error) => {
                    // Another version's record, or a damaged one: not this leader's to page
                    // or to overwrite; said, so that an operator can look at it.
                    let key = String::from_utf8_lossy(kv.key());
                    tracing::warn!(%key, %error, "unreadable incident record in etcd; left as it is");
                    None
                }
            })
            .collect();
        let counter = client.get(counter_key(settings), None).await?;
        let counted =
            counter.kvs().first().and_then(|kv| kv.value_str().ok()?.parse::<u64>().ok()).unwrap_or(0);
        let last_id = docs.iter().map(|doc| doc.id).chain([counted, INCIDENT_ID_BASE]).max().unwrap_or(0);
        let leading = Leading {
            token,
            epoch,
            key,
            docs: docs.iter().map(|doc| (doc.id, doc.clone())).collect(),
            awaiting: HashMap::new(),
            last_id,
        };
        Ok((leading, Inherited { docs, last_id }))
    }

    /// Commits the writes in `queue` to etcd under the fence, in order, then queues their
    /// local writes; on an etcd error, what was not committed stays in `queue` for the next
    /// session. Writes made under another leadership are refused (counted) without asking.
    pub async fn commit(
        &mut self,
        client: &mut Client,
        settings: &ClusterSettings,
        queue: &mut Vec<FencedWrite>,
        (persist, link): (&PersistHandle, &Link),
    ) -> Result<Result<(), Refused>, etcd_client::Error> {
        let current = |write: &FencedWrite| write.token == self.token && write.epoch == self.epoch;
        let stale = queue.iter().filter(|write| !current(write)).count();
        queue.retain(current);
        link.count_refused(stale as u64);
        while !queue.is_empty() {
            let count = queue.len().min(WRITES_PER_TXN);
            let mut ops = Vec::new();
            let mut docs = Vec::new();
            for write in &queue[..count] {
                let mut doc = write.doc.clone();
                doc.token = self.token;
                doc.delivered_sequence = if write.rows == 0 {
                    Some(doc.notified_sequence)
                } else {
                    self.docs.get(&doc.id).and_then(|old| old.delivered_sequence)
                };
                ops.push(self.put_or_delete(settings, &doc));
                docs.push((doc, write.rows));
            }
            let highest = docs.iter().map(|(doc, _)| doc.id).max().unwrap_or(0);
            if highest > self.last_id {
                ops.push(TxnOp::put(counter_key(settings), highest.to_string(), None));
            }
            if !self.fenced(client, ops, link).await? {
                link.count_refused(queue.len() as u64);
                queue.clear();
                return Ok(Err(Refused));
            }
            self.last_id = self.last_id.max(highest);
            crate::crash_point::crash_at("cluster-incident-committed");
            let mut local = Vec::new();
            for (write, (doc, rows)) in queue.drain(..count).zip(docs) {
                if rows > 0
                    && let Some(alert) = &doc.last_alert
                {
                    self.awaiting
                        .insert(alert.idempotency_key.clone(), (doc.id, doc.notified_sequence, rows));
                }
                self.remember(doc);
                local.extend(write.local);
            }
            if !local.is_empty() {
                persist.write(local);
            }
        }
        Ok(Ok(()))
    }

    /// Records deliveries: a notification every sink took is marked delivered in its
    /// incident's record (a resolved incident's record is then deleted).
    pub async fn delivered(
        &mut self,
        client: &mut Client,
        settings: &ClusterSettings,
        keys: Vec<String>,
        link: &Link,
    ) -> Result<Result<(), Refused>, etcd_client::Error> {
        let mut done = BTreeMap::new();
        for key in keys {
            let Some((id, sequence, rows)) = self.awaiting.get_mut(&key) else { continue };
            *rows -= 1;
            if *rows == 0 {
                let (id, sequence) = (*id, *sequence);
                self.awaiting.remove(&key);
                let entry = done.entry(id).or_insert(sequence);
                *entry = (*entry).max(sequence);
            }
        }
        let mut ops = Vec::new();
        let mut docs = Vec::new();
        for (id, sequence) in done {
            let Some(mut doc) = self.docs.get(&id).cloned() else { continue };
            doc.delivered_sequence = Some(doc.delivered_sequence.map_or(sequence, |old| old.max(sequence)));
            ops.push(self.put_or_delete(settings, &doc));
            docs.push(doc);
        }
        for chunk in ops.chunks(WRITES_PER_TXN) {
            if !self.fenced(client, chunk.to_vec(), link).await? {
                return Ok(Err(Refused));
            }
        }
        for doc in docs {
            self.remember(doc);
        }
        Ok(Ok(()))
    }

    /// A record that is resolved and delivered is done: deleted, not written.
    fn put_or_delete(&self, settings: &ClusterSettings, doc: &IncidentDoc) -> TxnOp {
        let key = incident_key(settings, doc.id);
        if doc.resolved && !doc.undelivered() {
            TxnOp::delete(key, None)
        } else {
            TxnOp::put(key, serde_json::to_string(doc).expect("a record always serializes"), None)
        }
    }

    fn remember(&mut self, doc: IncidentDoc) {
        if doc.resolved && !doc.undelivered() {
            self.docs.remove(&doc.id);
        } else {
            self.docs.insert(doc.id, doc);
        }
    }

    /// The compare every write of this tenure carries: the election key is still the one
    /// this leader won with.
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.token)
    }

    /// One transaction that succeeds only while this leader's election key is the one it
    /// won with; false when the compare failed (another monitor leads, or will).
    async fn fenced(
        &self,
        client: &mut Client,
        ops: Vec<TxnOp>,
        link: &Link,
    ) -> Result<bool, etcd_client::Error> {
        let txn = Txn::new().when([self.fence()]).and_then(ops);
        let answer = client.txn(txn).await?;
        link.etcd_writes.fetch_add(1, Ordering::Relaxed);
        Ok(answer.succeeded())
    }
}
