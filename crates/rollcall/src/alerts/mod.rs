//! Alerts: the canonical alert document ([`model`]) and the sinks that deliver it ([`sinks`]).

pub mod build;
pub mod delivery;
pub mod model;
pub mod sinks;

use crate::clock::Clock;
use crate::cluster::link::Link;
use crate::store_thread::Persist;
use delivery::Delivery;
use sinks::{Sink, SinkConfig};
use std::sync::Arc;
use tokio::sync::watch;

/// The alert pipeline as the monitor and the peer both run it: the store thread (group
/// commit of transitions, incidents and outbox rows) and one delivery loop per sink, which
/// reads only committed outbox rows.
pub struct Pipeline {
    pub persist: Persist,
    pub delivery: Delivery,
}

/// Starts the store thread on `store` and a delivery loop per sink (they end when `stop`
/// turns true). `cluster`: the link whose fencing gate a clustered monitor's loops pass.
pub fn start_pipeline(
    store: rollcall_store::Store,
    sinks: &[SinkConfig],
    data_dir: &std::path::Path,
    (clock, cluster): (Clock, Option<Arc<Link>>),
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Pipeline> {
    let persist = Persist::start(store);
    let sinks = sinks.iter().cloned().map(Sink::new).collect();
    let delivery = Delivery::start(
        sinks,
        data_dir.to_path_buf(),
        persist.handle(),
        persist.committed(),
        (clock, cluster),
        stop,
    )?;
    Ok(Pipeline { persist, delivery })
}
