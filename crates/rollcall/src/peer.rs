//! `rollcall peer`: the tokio shell around the core's SWIM + Lifeguard member
//! ([`rollcall_proto::swim::Peer`]), for clusters whose members watch each other.
//!
//! One current-thread runtime, one UDP socket, one task (the owner, in `peer/owner.rs`)
//! that holds the core and is the only code that touches it. HTTP handlers (`peer/http.rs`)
//! send it a command and await the reply; `/metrics` is rendered in `peer/metrics.rs`.
//!
//! Deliberately not here: alerts through sinks and the store. A peer's view lives in memory;
//! its transitions are logged and kept in a bounded list for `GET /v1/events`.
//!
//! Start reading at [`main`], then [`run`], then `owner::Owner::run`.

mod http;
mod metrics;
mod owner;
#[cfg(test)]
mod tests;

use crate::cli::PeerArgs;
use crate::clock::Clock;
use crate::settings::load_key_ring;
use anyhow::{Context, bail};
use rollcall_proto::KeyRing;
use rollcall_proto::swim::{Peer, SwimConfig, wire};
use std::future::Future;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long open HTTP requests may take to finish at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

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
        Ok(PeerSettings {
            name: args.name.clone(),
            bind: args.bind,
            advertise: args.advertise,
            join,
            http: args.http,
            swim,
            seed,
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
    let keys = load_key_ring(&args.key_file)?;
    let listeners = Listeners::bind(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(listeners, keys, settings, crate::monitor::shutdown_signal()))
}

/// Runs the peer on the given sockets until `shutdown` completes, then leaves gracefully
/// (the leave datagrams are sent before this returns).
pub async fn run(
    listeners: Listeners,
    keys: KeyRing,
    settings: PeerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let clock = Clock::start();
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
    let (owner, commands) = owner::Owner::new(peer, udp, clock, settings.join.clone(), settings.seed);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = tokio::spawn(http::serve(http, http::AppState::new(commands), stop_rx));

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
        "peer ready"
    );
    // A stable line for scripts and tests that bind port 0.
    println!("rollcall peer listening udp={udp_addr} http={http_addr}");
    let result = owner.run(shutdown).await;
    // The goodbye is sent; a client holding a connection open must not keep the process.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(HTTP_DRAIN, http_task).await;
    result
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
