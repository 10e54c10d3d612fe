//! `rollcall agent`: sends one node's heartbeats to one or more monitors, and a goodbye when
//! it is stopped with SIGINT or SIGTERM. It answers the monitors' probes (and serves their
//! probe requests) from the same socket, through the core's [`Responder`].

use crate::cli::AgentArgs;
use crate::clock::Clock;
use crate::settings::load_key_ring;
use anyhow::{Context, bail};
use rollcall_proto::KeyRing;
use rollcall_proto::responder::{Responder, ResponderConfig};
use rollcall_proto::wire::{Kind, Outgoing, encode};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far each send may stray from the interval, as a fraction of it, so that a thousand
/// agents started together drift apart instead of beating in step.
const JITTER: f64 = 0.05;

pub fn main(args: AgentArgs) -> anyhow::Result<()> {
    let ring = load_key_ring(&args.key_file)?;
    if args.interval < Duration::from_millis(10) || args.interval > Duration::from_secs(3600) {
        bail!("--interval must be between 10ms and 1h");
    }
    if args.follow_advice
        && !(Duration::from_millis(10) <= args.min_interval
            && args.min_interval <= args.interval
            && args.interval <= args.max_interval
            && args.max_interval <= Duration::from_secs(3600))
    {
        bail!("--min-interval, --interval and --max-interval must be in that order, between 10ms and 1h");
    }
    if !(0.0..=1.0).contains(&args.drop_heartbeats) {
        bail!("--drop-heartbeats must be a fraction between 0 and 1");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, ring, crate::monitor::shutdown_signal()))
}

/// Sends heartbeats until `shutdown` completes, then a goodbye.
pub async fn run(
    args: AgentArgs,
    ring: KeyRing,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let monitors = resolve(&args.monitors).await?;
    // The generation is the start time in microseconds: it grows across restarts without a
    // state file, which is what makes old datagrams replays.
    let generation =
        SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?.as_micros()
            as u64;
    let interval_ms = u32::try_from(args.interval.as_millis()).context("interval too long")?;
    let labels: Vec<(&str, &str)> = args.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut sender = Sender {
        ring,
        node: &args.node,
        generation,
        sequence: 0,
        interval_ms,
        labels: &labels,
        follows_advice: args.follow_advice,
        buffer: Vec::new(),
    };
    // Refuse a bad node id or label now, with the codec's sentence, rather than at every send.
    sender.encode(Kind::Heartbeat).map_err(|error| anyhow::anyhow!("{error}"))?;
    sender.sequence = 0;

    let bind: SocketAddr = if monitors[0].is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let socket = tokio::net::UdpSocket::bind(bind).await.context("cannot bind a UDP socket")?;
    tracing::info!(node = %args.node, generation, interval = %humantime::format_duration(args.interval), monitors = ?monitors, "agent started");
    let clock = Clock::start();
    let mut responder =
        Responder::new(&args.node, interval_ms, sender.ring.clone(), ResponderConfig::default(), clock.now());
    let mut datagram = vec![0u8; 2048];

    tokio::pin!(shutdown);
    // Start at a random point of the first interval, then jitter each interval a little.
    let mut interval = args.interval;
    let mut next = tokio::time::Instant::now() + interval.mul_f64(fastrand::f64());
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            received = socket.recv_from(&mut datagram) => {
                // Probes, probe requests, and the answers to probes sent for a monitor.
                let Ok((len, from)) = received else { continue };
                responder.handle_datagram(clock.now(), from, &datagram[..len]);
                while let Some(transmit) = responder.poll_transmit() {
                    if let Err(error) = socket.send_to(&transmit.payload, transmit.to).await {
                        tracing::debug!(%error, to = %transmit.to, "answer not sent");
                    }
                }
                if let Some(advised) = responder.poll_advice()
                    && args.follow_advice
                {
                    let advised = advised.clamp(args.min_interval, args.max_interval);
                    if advised != interval {
                        tracing::info!(
                            from = %humantime::format_duration(interval),
                            to = %humantime::format_duration(advised),
                            monitor = %from,
                            "heartbeat interval changed on the monitor's advice"
                        );
                        interval = advised;
                        sender.interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
                        responder.set_interval(sender.interval_ms);
                        // A shorter interval starts now rather than after the old one.
                        next = next.min(tokio::time::Instant::now() + interval);
                    }
                }
            }
            _ = tokio::time::sleep_until(next) => {
                if sender.sequence > 0 && fastrand::f64() < args.drop_heartbeats {
                    // The fault-injecting switch (`--drop-heartbeats`): the heartbeat is lost
                    // on its way out. The first one always goes, so the node registers.
                    sender.sequence += 1;
                } else {
                    sender.send(&socket, &monitors, Kind::Heartbeat).await;
                }
                responder.heartbeat_sent(sender.generation, sender.sequence);
                // After a stall (SIGSTOP, a starved VM) send one heartbeat and resume the
                // rhythm from now: a burst of the missed ones would look like a steady node.
                next = next.max(tokio::time::Instant::now())
                    + interval.mul_f64(1.0 + JITTER * (2.0 * fastrand::f64() - 1.0));
            }
        }
    }
    sender.send(&socket, &monitors, Kind::Goodbye).await;
    tracing::info!(node = %args.node, "said goodbye");
    Ok(())
}

struct Sender<'a> {
    ring: KeyRing,
    node: &'a str,
    generation: u64,
    sequence: u64,
    interval_ms: u32,
    labels: &'a [(&'a str, &'a str)],
    follows_advice: bool,
    buffer: Vec<u8>,
}

impl Sender<'_> {
    fn encode(&mut self, kind: Kind) -> Result<(), rollcall_proto::wire::EncodeError> {
        self.sequence += 1;
        let message = Outgoing {
            kind,
            node: self.node,
            generation: self.generation,
            sequence: self.sequence,
            interval_ms: self.interval_ms,
            labels: self.labels,
            follows_advice: self.follows_advice && kind == Kind::Heartbeat,
        };
        encode(&message, &self.ring, &mut self.buffer)
    }

    async fn send(&mut self, socket: &tokio::net::UdpSocket, monitors: &[SocketAddr], kind: Kind) {
        if let Err(error) = self.encode(kind) {
            tracing::error!(%error, "cannot encode a heartbeat");
            return;
        }
        for monitor in monitors {
            // A monitor that is down or unreachable must not stop heartbeats to the others.
            if let Err(error) = socket.send_to(&self.buffer, monitor).await {
                tracing::debug!(%error, %monitor, "send failed");
            }
        }
    }
}

async fn resolve(monitors: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for monitor in monitors {
        let addr = tokio::net::lookup_host(monitor)
            .await
            .with_context(|| format!("cannot resolve monitor address {monitor:?} (expected HOST:PORT)"))?
            .next()
            .with_context(|| format!("monitor address {monitor:?} resolves to nothing"))?;
        out.push(addr);
    }
    Ok(out)
}
