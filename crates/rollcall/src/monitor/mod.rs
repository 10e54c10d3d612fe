//! The monitor daemon: the tokio shell around the core's [`rollcall_core::Monitor`].
//!
//! One task (the owner, in `owner.rs`) holds the core and is the only code that touches it:
//! it selects over received datagrams, the core's next deadline, commands from HTTP
//! handlers, and shutdown. HTTP handlers never lock the core: they send a command and await
//! the reply. A store thread (in `persist.rs`) makes transitions durable in batches.

mod advice;
pub(crate) mod explain;
mod http;
mod metrics;
mod owner;
pub(crate) mod udp;

// `rollcall peer` commits its alerts through the same store thread (peer/alerting.rs).
// The cluster session talks to the owner (`[cluster]`).
pub(crate) use owner::{ClusterCommand, Command, LeaseChange, LeaseFailure, LeaseJson};

use crate::cli::MonitorArgs;
use crate::clock::Clock;
use crate::http_server::ServerLimits;
use crate::settings::Settings;
use anyhow::Context;
use rollcall_store::Store;
use std::future::Future;
use std::net::{TcpListener, UdpSocket};

/// The sockets the monitor serves on, bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    pub udp: UdpSocket,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both sockets, with a large receive buffer for synchronised bursts.
    pub fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let udp = udp::bind(settings.udp, settings.recv_buffer_bytes, settings.receive_threads > 1)
            .with_context(|| format!("cannot bind UDP {}", settings.udp))?;
        let http = TcpListener::bind(settings.http)
            .with_context(|| format!("cannot bind HTTP {}", settings.http))?;
        Ok(Listeners { udp, http })
    }
}

/// `rollcall monitor`: settings, store, sockets, then [`run`] until Ctrl-C or SIGTERM.
pub fn main(args: MonitorArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args(&args)?;
    crate::http_server::raise_fd_limit();
    // `run` checks it too; here a refusal comes before anything is created or bound.
    http_limits(&settings)?;
    let (_lock, store) = crate::store_thread::open_data_dir(&settings.data_dir)?;
    let listeners = Listeners::bind(&settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(listeners, store, settings, crate::shutdown::signal()))
}

/// Runs the monitor on the given sockets until `shutdown` completes.
pub async fn run(
    listeners: Listeners,
    store: Store,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clock = Clock::start();
    let (http_limits, open_files) = http_limits(&settings)?;
    let udp_addr = listeners.udp.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    // Started before the socket is handed to tokio: the first thread reads a duplicate of it.
    let threads = match settings.receive_threads {
        1 => None,
        count => Some(udp::ReceiveThreads::start(
            &listeners.udp,
            count,
            settings.recv_buffer_bytes,
            &settings.key_ring,
        )?),
    };
    listeners.udp.set_nonblocking(true)?;
    listeners.http.set_nonblocking(true)?;
    let udp = tokio::net::UdpSocket::from_std(listeners.udp)?;
    let http = tokio::net::TcpListener::from_std(listeners.http)?;

    let reader = Store::open(&settings.data_dir).context("cannot open a reader on the store")?;
    let checks = store.checks().context("cannot read checks from the store")?;
    let mut pings = std::collections::BTreeMap::new();
    for check in &checks {
        let history = store
            .pings(&check.id, settings.pings.table.history)
            .context("cannot read pings from the store")?;
        pings.insert(check.id.clone(), history);
    }
    let nodes = store.nodes().context("cannot read nodes from the store")?;
    // The latest transition of every node stored down: a down committed inside the
    // grouping window before a crash has no incident yet, and must still page.
    let mut downs = Vec::new();
    for node in nodes.iter().filter(|node| node.state == rollcall_core::monitor::NodeState::Down) {
        let latest = store
            .recent_transitions(rollcall_core::alerts::SubjectKind::Node, &node.id, 1)
            .context("cannot read transitions from the store")?;
        downs.push((node.id.clone(), node.generation, latest.into_iter().next()));
    }
    let restored = owner::Restored {
        nodes,
        downs,
        checks,
        pings,
        incidents: store.open_incidents().context("cannot read incidents from the store")?,
        max_incident_id: store
            .max_incident_id_below(crate::cluster::link::INCIDENT_ID_BASE)
            .context("cannot read incidents from the store")?,
        silences: store
            .active_silences(clock.wall_ms(clock.now()))
            .context("cannot read silences from the store")?,
        max_silence_id: store.max_silence_id().context("cannot read silences from the store")?,
        leases: store.leases().context("cannot read leases from the store")?,
        last_lease_token: store.last_lease_token().context("cannot read leases from the store")?,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // `[cluster]`: what the owner, the delivery loops and the cluster session share.
    let link = settings.cluster.as_ref().map(|_| crate::cluster::link::Link::new());
    let fencing = link.as_ref().map(|(link, _)| link.clone());
    let crate::alerts::Pipeline { persist, delivery } = crate::alerts::start_pipeline(
        store,
        &settings.sinks,
        &settings.data_dir,
        (clock.clone(), fencing),
        stop_rx.clone(),
    )?;
    let committed = persist.committed();
    let store_health = persist.health();
    let paging = settings.cluster.as_ref().zip(link.as_ref()).map(|(cluster, (link, _))| {
        owner::ClusterPaging::new(
            link.clone(),
            (cluster.name.clone(), cluster.monitor.clone()),
            settings.alerts.clone(),
        )
    });
    // Only with a cluster: the store's shutdown waits for every handle to be dropped.
    let persist_for_cluster = settings.cluster.as_ref().map(|_| persist.handle());
    let (owner, commands) =
        owner::Owner::new(&settings, clock.clone(), (udp, threads), persist, restored, paging)?;
    let mut lease_channels = http::LeaseChannels::new(owner.lease_channels());
    if let Some(cluster) = &settings.cluster {
        // etcd holds the cluster's leases; this monitor follows them for its watch streams.
        let leases =
            std::sync::Arc::new(crate::cluster::leases::ClusterLeases::new(cluster.clone(), clock.clone()));
        let changes = owner.lease_channels().0;
        tokio::spawn(crate::cluster::leases::follow(leases.clone(), changes, stop_rx.clone()));
        lease_channels = lease_channels.with_cluster(leases);
    }
    let commands_for_cluster = commands.clone();
    let state = http::AppState::new(
        commands,
        reader,
        clock,
        (delivery.health.clone(), store_health),
        committed,
        settings.api_token.clone(),
        settings.protect_reads,
    )
    .with_ping_key(settings.pings.ping_key.clone())
    .with_leases(lease_channels);
    let (state, cluster_task) = match settings.cluster.clone().zip(link).zip(persist_for_cluster) {
        Some(((cluster, (link, ends)), persist_for_cluster)) => {
            let (status_tx, status) =
                tokio::sync::watch::channel(crate::cluster::session::initial_status(&cluster));
            let wiring = crate::cluster::session::Wiring {
                link,
                ends,
                commands: commands_for_cluster,
                persist: persist_for_cluster,
            };
            let task = tokio::spawn(crate::cluster::session::run(
                cluster,
                http_addr,
                status_tx,
                wiring,
                stop_rx.clone(),
            ));
            (state.with_cluster(wait_for_registration(status).await?), Some(task))
        }
        None => (state, None),
    };
    let http_task = tokio::spawn(http::serve(http, state, http_limits, stop_rx.clone()));
    let owner_task = tokio::spawn(owner.run(stop_rx));

    tracing::info!(%udp_addr, %http_addr, data_dir = %settings.data_dir.display(), detector = settings.core.detector.name(), sinks = settings.sinks.len(), open_files, max_connections = http_limits.max_connections, "monitor ready");
    // A stable line for scripts and tests that bind port 0.
    println!("rollcall monitor listening udp={udp_addr} http={http_addr}");
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let persist = owner_task.await.context("monitor task failed")??;
    delivery.join().await;
    let _ = http_task.await;
    if let Some(task) = cluster_task {
        let _ = task.await;
    }
    // Every writer has stopped: flush what is queued and close the store.
    tokio::task::spawn_blocking(move || {
        let mut persist = persist;
        persist.shutdown();
    })
    .await?;
    Ok(())
}

/// Waits (a few seconds at most) until the cluster session has registered this monitor or
/// found etcd unreachable: a monitor whose name another live monitor holds is refused at
/// start, in one sentence; one that cannot reach etcd starts anyway and keeps trying.
async fn wait_for_registration(
    mut status: tokio::sync::watch::Receiver<crate::cluster::ClusterStatus>,
) -> anyhow::Result<tokio::sync::watch::Receiver<crate::cluster::ClusterStatus>> {
    let bound = std::time::Duration::from_secs(status.borrow().lease_ttl_seconds + 5);
    let settled = status.wait_for(|status| !matches!(status.role, "connecting" | "candidate"));
    let role = match tokio::time::timeout(bound, settled).await {
        Ok(Ok(status)) => (status.role, status.etcd_error.clone()),
        _ => ("candidate", None),
    };
    if let ("refused", Some(reason)) = role {
        anyhow::bail!("{reason}");
    }
    Ok(status)
}

/// The HTTP server's limits under the open files limit in force, and that limit.
fn http_limits(settings: &Settings) -> anyhow::Result<(ServerLimits, u64)> {
    let open_files = crate::http_server::fd_limit();
    let limits = settings
        .api_limits
        .fit(open_files, "api.max_connections")
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    Ok((limits, open_files))
}
