//! chitchat (crates.io, Quickwit's scuttlebutt + phi accrual) in the same network.
//!
//! chitchat cannot be stepped directly: the methods that make a syn and process a message
//! are `pub(crate)`, its failure detector reads `tokio::time::Instant::now()`, and its
//! server task (`spawn_chitchat`) owns the gossip loop. So it runs unchanged on a paused
//! current-thread tokio runtime (tokio's `test-util`: the clock jumps to the next timer
//! whenever every task is idle, which makes tokio time a virtual clock), with a custom
//! [`Transport`] that serialises each envelope (to count its bytes), draws its fate from
//! the same [`Wire`], and delivers it after the drawn latency.
//!
//! Not deterministic: chitchat's server seeds its gossip-target RNG from the OS
//! (`rand::rng()`), and its sets are `HashSet`s with random hashers. Runs differ by seed
//! noise; the plan and the network's draws per sender are still the cell's.

use crate::metrics::{Kind, Run, View};
use crate::model::{Cell, Plan, Wire, address, index_of};
use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{ChannelTransport, RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{
    ChitchatConfig, ChitchatEnvelope, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use core::time::Duration;
use rollcall_core::Instant;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant as TokioInstant;

/// The settings used: chitchat's defaults (`FailureDetectorConfig::default()`: phi
/// threshold 8, window 1,000, max interval 10 s, initial interval 5 s), a gossip round
/// every 1 s (the same period as the SWIM probes), the compressed-digest protocol (V1), and
/// three seed nodes.
///
/// One change that changes no behaviour: the sampling window is cut to the most heartbeat
/// intervals a run can hold (a node's heartbeat rises once per 1 s round, so a run of `d`
/// seconds gives an observer at most `d` intervals). chitchat preallocates the whole window
/// (8 bytes a slot) for every (observer, subject) pair: 8 GB at 1,000 nodes, which this
/// machine cannot spare; a window that never fills gives the same means, hence the same phi.
pub fn config(index: u32, duration: Duration) -> ChitchatConfig {
    let default = FailureDetectorConfig::default();
    let window = default.sampling_window_size.min(duration.as_secs() as usize + 2);
    let id = ChitchatId::new(format!("n{index}"), 0, address(index));
    ChitchatConfig {
        chitchat_id: id,
        cluster_id: "sim".into(),
        gossip_interval: Duration::from_secs(1),
        listen_addr: address(index),
        seed_nodes: (0..3).map(|i| address(i).to_string()).collect(),
        failure_detector_config: FailureDetectorConfig { sampling_window_size: window, ..default },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    }
}

/// The network and the run's log, shared by every socket and watcher task.
struct Shared {
    wire: Wire,
    start: TokioInstant,
    inboxes: Vec<Option<UnboundedSender<(u32, ChitchatEnvelope, usize)>>>,
    views: Vec<View>,
}

impl Shared {
    fn now(&self) -> Instant {
        Instant::ZERO + self.start.elapsed()
    }
}

/// The simulated network as chitchat's transport. chitchat's envelope codec is
/// `pub(crate)`, so each socket measures and copies an envelope the way chitchat's own
/// in-memory `ChannelTransport` does: it sends it through that transport (which serialises
/// it, counts the bytes and deserialises a copy) from a private "sizer" socket to a private
/// "sink" socket, and takes the copy and its size from the sink.
struct SimTransport {
    shared: Arc<Mutex<Shared>>,
    codec: ChannelTransport,
}

struct SimSocket {
    index: u32,
    shared: Arc<Mutex<Shared>>,
    inbox: UnboundedReceiver<(u32, ChitchatEnvelope, usize)>,
    sizer: Box<dyn Socket>,
    sink: Box<dyn Socket>,
}

/// The address of node `index`'s private codec socket `port` (1 sizer, 2 sink).
fn codec_addr(index: u32, port: u16) -> SocketAddr {
    let mut addr = address(index);
    addr.set_port(port);
    addr
}

#[async_trait]
impl Transport for SimTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let index = index_of(listen_addr).context("not a simulated address")?;
        let sizer = self.codec.open(codec_addr(index, 1)).await?;
        let sink = self.codec.open(codec_addr(index, 2)).await?;
        let (tx, inbox) = unbounded_channel();
        self.shared.lock().expect("no task panics holding the lock").inboxes[index as usize] = Some(tx);
        Ok(Box::new(SimSocket { index, shared: self.shared.clone(), inbox, sizer, sink }))
    }
}

#[async_trait]
impl Socket for SimSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(address(self.index))
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let SendOutcome { num_bytes_sent } = self.sizer.send(codec_addr(self.index, 2), envelope).await?;
        // The channel transport delivered the decoded copy at once: it is waiting.
        let copy = self.sink.recv().await?.envelope;
        let Some(to) = index_of(to) else { return Ok(SendOutcome { num_bytes_sent }) };
        let delivery = {
            let mut shared = self.shared.lock().expect("no task panics holding the lock");
            let now = shared.now();
            let latency = shared.wire.send(self.index, to, num_bytes_sent, now);
            latency.zip(shared.inboxes.get(to as usize).cloned().flatten())
        };
        if let Some((latency, inbox)) = delivery {
            let from = self.index;
            tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                // The recipient may have crashed meanwhile: then the datagram is lost.
                let _ = inbox.send((from, copy, num_bytes_sent));
            });
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let (from, envelope, num_bytes_received) =
            self.inbox.recv().await.context("the simulated network closed")?;
        Ok(RecvOutcome { from_addr: address(from), envelope, num_bytes_received })
    }
}

/// Runs `cell` with chitchat nodes, reporting the virtual time reached.
pub fn run(cell: &Cell, plan: &Plan, progress: &mut dyn FnMut(Duration)) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(drive(cell, plan, progress))
}

async fn drive(cell: &Cell, plan: &Plan, progress: &mut dyn FnMut(Duration)) -> Run {
    let n = cell.nodes;
    let shared = Arc::new(Mutex::new(Shared {
        wire: Wire::new(cell, plan),
        start: TokioInstant::now(),
        inboxes: vec![None; n as usize],
        views: Vec::new(),
    }));
    let start = shared.lock().expect("not poisoned").start;
    let transport = SimTransport { shared: shared.clone(), codec: ChannelTransport::default() };
    // Nodes start at random instants of the first second, so that gossip rounds are not in
    // lockstep (tokio's interval ticks at once, then every period).
    let mut phases: Vec<(Duration, u32)> = {
        let mut rng = rollcall_sim::Rng::new(cell.seed ^ 0x0c41_7c4a);
        (0..n).map(|i| (Duration::from_secs_f64(rng.f64()), i)).collect()
    };
    phases.sort();
    let mut handles: Vec<Option<(ChitchatHandle, tokio::task::JoinHandle<()>)>> =
        (0..n).map(|_| None).collect();
    for (phase, index) in phases {
        tokio::time::sleep_until(start + phase).await;
        let handle = spawn_chitchat(config(index, cell.duration), Vec::new(), &transport)
            .await
            .expect("the simulated transport opens");
        let watcher = tokio::spawn(watch(index, handle.chitchat(), shared.clone()));
        handles[index as usize] = Some((handle, watcher));
    }
    let end = Duration::from_nanos(plan.end.as_nanos());
    let mut crashes = plan.crashes.iter().peekable();
    let mut next_report = Duration::from_secs(10);
    loop {
        let crash = crashes.peek().map(|(_, at)| Duration::from_nanos(at.as_nanos()));
        let until = crash.unwrap_or(end).min(next_report).min(end);
        tokio::time::sleep_until(start + until).await;
        if until == end {
            break;
        }
        if crash == Some(until) {
            let &(node, _) = crashes.next().expect("peeked");
            if let Some((handle, watcher)) = handles[node as usize].take() {
                handle.abort();
                watcher.abort();
            }
            let mut shared = shared.lock().expect("not poisoned");
            shared.wire.crash(node);
            shared.inboxes[node as usize] = None;
        } else {
            progress(until);
            next_report += Duration::from_secs(10);
        }
    }
    for (handle, watcher) in handles.into_iter().flatten() {
        handle.abort();
        watcher.abort();
    }
    let mut shared = shared.lock().expect("not poisoned");
    Run { views: core::mem::take(&mut shared.views), traffic: shared.wire.traffic, events: 0 }
}

/// Records node `index`'s view changes: chitchat publishes its live set whenever it
/// changes (at the end of each gossip round); a node leaving it is a `down` verdict.
async fn watch(
    index: u32,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut receiver = chitchat.lock().await.live_nodes_watcher();
    let mut live = BTreeSet::new();
    while receiver.changed().await.is_ok() {
        let now: BTreeSet<u32> = receiver
            .borrow_and_update()
            .keys()
            .filter_map(|id| index_of(id.gossip_advertise_addr))
            .filter(|&subject| subject != index)
            .collect();
        let mut shared = shared.lock().expect("not poisoned");
        let at = shared.now();
        for &subject in live.difference(&now) {
            shared.views.push(View { observer: index, subject, kind: Kind::Down, episode: 0, at });
        }
        for &subject in now.difference(&live) {
            shared.views.push(View { observer: index, subject, kind: Kind::Up, episode: 0, at });
        }
        live = now;
    }
}
