//! `rollcall peer`: the tokio shell around the core's SWIM + Lifeguard member
//! ([`rollcall_core::swim::Peer`]), for clusters whose members watch each other.
//!
//! One current-thread runtime, one UDP socket, one task (the owner, in `peer/owner.rs`)
//! that holds the core and is the only code that touches it. HTTP handlers (`peer/http.rs`)
//! send it a command and await the reply; `/metrics` is rendered in `peer/metrics.rs`.
//!
//! A peer's view lives in memory; its transitions are logged and kept in a bounded list for
//! `GET /v1/events`. With sinks configured (`--config FILE`), they also go through the
//! monitor's incident layer, store thread and delivery loops (`peer/alerting.rs`): the peer
//! then keeps a store in its data dir, for its incidents and its alert outbox only.
//!
//! Start reading at [`main`], then [`run`], then `owner::Owner::run`.

mod alerting;
mod http;
mod metrics;
mod owner;
#[cfg(test)]
mod tests;

use crate::alerts::sinks::SinkConfig;
use crate::cli::PeerArgs;
use crate::clock::Clock;
use crate::http_server::{ConnectionLimits, ServerLimits};
use crate::settings::{alert_file, load_key_ring};
use anyhow::{Context, bail};
use rollcall_core::KeyRing;
use rollcall_core::alerts::AlertConfig;
use rollcall_core::swim::{Peer, SwimConfig, wire};
use rollcall_store::Store;
use std::future::Future;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything `rollcall peer` runs with, checked once at start.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub name: String,
    pub bind: SocketAddr,
    /// The address announced to others; `None` means the bound address.
    pub advertise: Option<SocketAddr>,
    pub join: Vec<SocketAddr>,
    pub http: SocketAddr,
    pub swim: SwimConfig,
    pub seed: u64,
    /// `None`: no sink is configured, and the peer keeps no store.
    pub alerting: Option<PeerAlerting>,
    /// The HTTP server's connection cap and timeouts.
    pub api_limits: ConnectionLimits,
}

/// Where and how a peer alerts: at least one sink, and the data dir of its store.
#[derive(Clone, Debug)]
pub struct PeerAlerting {
    pub data_dir: PathBuf,
    pub alerts: AlertConfig,
    pub sinks: Vec<SinkConfig>,
}

impl PeerSettings {
    /// Validates the flags: a mistake is one sentence naming the flag.
    pub fn from_args(args: &PeerArgs) -> anyhow::Result<PeerSettings> {
        if !wire::valid_name(&args.name) {
            bail!(
                "--name {:?} is not a valid member name: it must be 1 to {} bytes without spaces or control characters",
                args.name,
                wire::MAX_NAME
            );
        }
        if args.cluster.is_empty() {
            bail!("--cluster must not be empty");
        }
        if args.bind.ip().is_unspecified() && args.advertise.is_none() {
            bail!(
                "--bind {} is a wildcard address that other members cannot reach: add --advertise ADDR",
                args.bind
            );
        }
        if let Some(advertise) = args.advertise
            && advertise.ip().is_unspecified()
        {
            bail!("--advertise {advertise} must be an address other members can reach, not a wildcard");
        }
        let join =
            args.join.iter().map(|text| resolve(text, args.bind)).collect::<anyhow::Result<Vec<_>>>()?;
        let swim = swim_config(args)?;
        let seed = match args.seed {
            Some(seed) => seed,
            None => random_seed()?,
        };
        let alerting = alerting(args)?;
        let api_limits = ConnectionLimits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
        };
        api_limits
            .validate(["--max-connections", "--header-timeout", "--idle-timeout"])
            .map_err(|problem| anyhow::anyhow!(problem))?;
        Ok(PeerSettings {
            api_limits,
            name: args.name.clone(),
            bind: args.bind,
            advertise: args.advertise,
            join,
            http: args.http,
            swim,
            seed,
            alerting,
        })
    }
}

/// The sockets a peer serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub udp: UdpSocket,
    pub http: TcpListener,
}

impl Listeners {
    pub fn bind(settings: &PeerSettings) -> anyhow::Result<Listeners> {
        let udp =
            UdpSocket::bind(settings.bind).with_context(|| format!("cannot bind UDP {}", settings.bind))?;
        let http = TcpListener::bind(settings.http)
            .with_context(|| format!("cannot bind HTTP {}", settings.http))?;
        Ok(Listeners { udp, http })
    }
}

/// `rollcall peer`: settings, key ring, sockets, then [`run`] until Ctrl-C or SIGTERM.
pub fn main(args: PeerArgs) -> anyhow::Result<()> {
    let settings = PeerSettings::from_args(&args)?;
    crate::http_server::raise_fd_limit();
    // `run` checks it too; here a refusal comes before anything is created or bound.
    http_limits(&settings)?;
    let keys = load_key_ring(&args.key_file)?;
    let (_lock, store) = match &settings.alerting {
        Some(alerting) => {
            let (lock, store) = crate::store_thread::open_data_dir(&alerting.data_dir)?;
            (Some(lock), Some(store))
        }
        None => (None, None),
    };
    let listeners = Listeners::bind(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(listeners, keys, store, settings, crate::shutdown::signal()))
}

/// Runs the peer on the given sockets until `shutdown` completes, then leaves gracefully
/// (the leave datagrams are sent before this returns). `store` is the store in the data dir
/// of `settings.alerting`, given exactly when sinks are configured.
pub async fn run(
    listeners: Listeners,
    keys: KeyRing,
    store: Option<Store>,
    settings: PeerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let clock = Clock::start();
    let (http_limits, open_files) = http_limits(&settings)?;
    let udp_addr = listeners.udp.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let advertise = match settings.advertise {
        Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), udp_addr.port()),
        Some(addr) => addr,
        None => udp_addr,
    };
    listeners.udp.set_nonblocking(true)?;
    listeners.http.set_nonblocking(true)?;
    let udp = tokio::net::UdpSocket::from_std(listeners.udp)?;
    let http = tokio::net::TcpListener::from_std(listeners.http)?;

    let incarnation = start_incarnation()?;
    let now = clock.now();
    let peer =
        Peer::new(settings.swim.clone(), &settings.name, advertise, keys, incarnation, settings.seed, now)
            .map_err(|error| anyhow::anyhow!("invalid peer settings: {error}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = match (store, &settings.alerting) {
        (Some(store), Some(alerting)) => Some(alerting::start(
            store,
            alerting,
            &settings.name,
            &settings.swim.cluster,
            clock.clone(),
            stop_rx.clone(),
        )?),
        (None, None) => None,
        _ => bail!("a peer's store and its sinks go together: both or neither"),
    };
    let (alerts, delivery, view) = match started {
        Some(started) => (Some(started.alerts), Some(started.delivery), Some(started.view)),
        None => (None, None, None),
    };
    let (owner, commands) = owner::Owner::new(peer, udp, clock, settings.join.clone(), settings.seed, alerts);
    let state = http::AppState::new(commands, view);
    let http_task = tokio::spawn(http::serve(http, state, http_limits, stop_rx));

    tracing::info!(
        name = %settings.name,
        cluster = %settings.swim.cluster,
        %udp_addr,
        %advertise,
        %http_addr,
        incarnation,
        seed = settings.seed,
        join = ?settings.join,
        probe_interval = %humantime::format_duration(settings.swim.probe_interval),
        sinks = settings.alerting.as_ref().map_or(0, |alerting| alerting.sinks.len()),
        open_files,
        max_connections = http_limits.max_connections,
        "peer ready"
    );
    // A stable line for scripts and tests that bind port 0.
    println!("rollcall peer listening udp={udp_addr} http={http_addr}");
    let result = owner.run(shutdown).await;
    // The goodbye is sent; a client holding a connection open must not keep the process.
    // The same signal stops the delivery loops (an alert not yet delivered stays in the
    // outbox, for the next run).
    let _ = stop_tx.send(true);
    // The server lets open requests finish for a few seconds at most.
    let _ = http_task.await;
    if let Some(delivery) = delivery {
        delivery.join().await;
    }
    match result {
        Ok(Some(alerts)) => alerts.shutdown().await,
        Ok(None) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The HTTP server's limits under the open files limit in force, and that limit.
fn http_limits(settings: &PeerSettings) -> anyhow::Result<(ServerLimits, u64)> {
    let open_files = crate::http_server::fd_limit();
    let limits = settings
        .api_limits
        .fit(open_files, "--max-connections")
        .map_err(|problem| anyhow::anyhow!(problem))?;
    Ok((limits, open_files))
}

/// The alerting settings: from `--config FILE` (the monitor's `[alerts]` and `[[sink]]`),
/// with the data dir from `--data-dir` or the file. `None` without sinks.
fn alerting(args: &PeerArgs) -> anyhow::Result<Option<PeerAlerting>> {
    let Some(path) = &args.config else {
        if args.data_dir.is_some() {
            bail!(
                "--data-dir only holds the store of alerts: add --config FILE with the [[sink]]s to send them to"
            );
        }
        return Ok(None);
    };
    let file = alert_file(path)?;
    if file.sinks.is_empty() {
        return Ok(None);
    }
    let data_dir = args.data_dir.clone().or(file.data_dir).with_context(|| {
        format!(
            "config file {} has sinks, whose outbox needs a store: pass --data-dir DIR or set data_dir in the file",
            path.display()
        )
    })?;
    Ok(Some(PeerAlerting { data_dir, alerts: file.alerts, sinks: file.sinks }))
}

/// The incarnation a peer starts at: its start time in seconds since the Unix epoch, so
/// that a restarted peer speaks above the incarnation its previous life was suspected at
/// (no state file needed), until the year 2106.
fn start_incarnation() -> anyhow::Result<u32> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
    u32::try_from(since.as_secs()).context("the system clock is past 2106")
}

fn random_seed() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("cannot read the OS random source: {error}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The core's settings from the flags, with the flag named in any refusal.
fn swim_config(args: &PeerArgs) -> anyhow::Result<SwimConfig> {
    let ms = Duration::from_millis(1);
    for (flag, span) in [
        ("--probe-interval", args.probe_interval),
        ("--sync-interval", args.sync_interval),
        ("--reconnect-interval", args.reconnect_interval),
    ] {
        if span < ms || span > Duration::from_secs(3600) {
            bail!("{flag} must be between 1ms and 1h");
        }
    }
    // memberlist's ratio: the direct ping gets half the protocol period.
    let probe_timeout = args.probe_timeout.unwrap_or(args.probe_interval / 2);
    if probe_timeout.is_zero() || probe_timeout >= args.probe_interval {
        bail!(
            "--probe-timeout ({}) must be positive and shorter than --probe-interval ({})",
            humantime::format_duration(probe_timeout),
            humantime::format_duration(args.probe_interval)
        );
    }
    if args.suspicion_mult == 0 || args.suspicion_mult > 100 {
        bail!("--suspicion-mult must be between 1 and 100");
    }
    if args.indirect_probes > 16 {
        bail!("--indirect-probes must be at most 16");
    }
    Ok(SwimConfig {
        cluster: args.cluster.clone(),
        probe_interval: args.probe_interval,
        probe_timeout,
        indirect_probes: args.indirect_probes,
        suspicion_mult: args.suspicion_mult,
        gossip_interval: (!args.gossip_interval.is_zero()).then_some(args.gossip_interval),
        sync_interval: args.sync_interval,
        reconnect_interval: args.reconnect_interval,
        ..SwimConfig::default()
    })
}

/// A `--join` address: `HOST:PORT`, resolved now, in the family of `--bind`.
fn resolve(text: &str, bind: SocketAddr) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --join address {text:?} (expected HOST:PORT)"))?
        .collect();
    addrs.iter().copied().find(|addr| addr.is_ipv4() == bind.is_ipv4()).with_context(|| {
        let family = if bind.is_ipv4() { "IPv4" } else { "IPv6" };
        format!("--join address {text:?} has no {family} address, the family of --bind {bind}")
    })
}
