//! Verdicts in etcd: each monitor writes the nodes it cannot hear under
//! `/{prefix}/{name}/verdicts/{monitor}/{node}` (on its session's lease, so a dead monitor's
//! verdicts go with it), in transactions of at most [`MAX_OPS`] operations, and every monitor
//! follows the whole prefix with a watch to keep its [`Agreement`] current.
//!
//! Cost: one key write per change of a node's local state between heard and not heard (a
//! mass failure of 10,000 nodes costs 79 transactions per monitor), none per heartbeat.

use super::ClusterSettings;
use super::agree::{Agreement, Vote};
use super::link::Link;
use etcd_client::{
    Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream,
};
use std::sync::atomic::Ordering;

/// etcd 3.4's default limit of operations per transaction (`--max-txn-ops`).
pub const MAX_OPS: usize = 128;

fn prefix(settings: &ClusterSettings) -> String {
    format!("{}/verdicts/", settings.root())
}

/// Writes this monitor's pending verdict changes; with `everything`, all its current ones
/// (on a new lease). What could not be written is kept for the next session.
pub async fn publish(
    client: &mut Client,
    settings: &ClusterSettings,
    lease: i64,
    link: &Link,
    everything: bool,
) -> Result<(), etcd_client::Error> {
    let changes = link.take_pending(everything);
    let mine = format!("{}{}/", prefix(settings), settings.monitor);
    let mut written = 0;
    for chunk in changes.chunks(MAX_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(node, vote)| match vote {
                Some(vote) => TxnOp::put(
                    format!("{mine}{node}"),
                    serde_json::to_string(vote).expect("a vote always serializes"),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                None => TxnOp::delete(format!("{mine}{node}"), None),
            })
            .collect();
        if let Err(error) = client.txn(Txn::new().and_then(ops)).await {
            link.put_back(changes[written..].to_vec());
            return Err(error);
        }
        written += chunk.len();
        link.etcd_writes.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads every monitor's verdicts into `agreement` (replacing what it had) and starts
/// following them from just after that read.
pub async fn load_and_watch(
    client: &mut Client,
    settings: &ClusterSettings,
    agreement: &mut Agreement,
) -> Result<WatchStream, etcd_client::Error> {
    let prefix = prefix(settings);
    let stored = client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
    agreement.clear_votes();
    for kv in stored.kvs() {
        if let Some((monitor, node)) = kv.key_str().ok().and_then(|key| split(&prefix, key)) {
            agreement.vote(monitor, node, serde_json::from_slice::<Vote>(kv.value()).ok());
        }
    }
    let revision = stored.header().map_or(0, |header| header.revision());
    client.watch(prefix, Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1))).await
}

/// Applies one watch response; `Err` when etcd cancelled the watch (the session is made
/// again, and reads everything afresh).
pub fn apply(
    settings: &ClusterSettings,
    agreement: &mut Agreement,
    answer: &WatchResponse,
) -> Result<(), String> {
    if answer.canceled() {
        return Err(format!(
            "etcd cancelled the verdicts watch (compacted at {})",
            answer.compact_revision()
        ));
    }
    let prefix = prefix(settings);
    for event in answer.events() {
        let Some(kv) = event.kv() else { continue };
        let Some((monitor, node)) = kv.key_str().ok().and_then(|key| split(&prefix, key)) else { continue };
        let vote = match event.event_type() {
            EventType::Put => serde_json::from_slice::<Vote>(kv.value()).ok(),
            EventType::Delete => None,
        };
        agreement.vote(monitor, node, vote);
    }
    Ok(())
}

/// `{prefix}{monitor}/{node}` into its monitor and node (node ids may hold `/`).
fn split<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_split_at_the_first_slash_after_the_prefix() {
        let prefix = "/rollcall/prod/verdicts/";
        assert_eq!(super::split(prefix, "/rollcall/prod/verdicts/m1/web/1"), Some(("m1", "web/1")));
        assert_eq!(super::split(prefix, "/rollcall/prod/views/m1"), None);
    }
}
