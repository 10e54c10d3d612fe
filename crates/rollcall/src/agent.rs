//! `rollcall agent`: sends one node's heartbeats to one or more monitors, and a goodbye when
//! it is stopped with SIGINT or SIGTERM. It answers the monitors' probes (and serves their
//! probe requests) from the same socket, through the core's [`Responder`]. With a watched
//! process (`--watch-pid`, or a command after `--`; see `watch.rs`) it reports that
//! process's exit at once, then stops or (`--restart`) starts the command again as a new
//! generation.

use crate::cli::AgentArgs;
use crate::clock::Clock;
use crate::settings::load_key_ring;
use anyhow::{Context, bail};
use rollcall_core::KeyRing;
use rollcall_core::responder::{Responder, ResponderConfig};
use rollcall_core::wire::{Kind, Outgoing, encode};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use watch::Watch;

mod watch;

/// How far each send may stray from the interval, as a fraction of it, so that a thousand
/// agents started together drift apart instead of beating in step.
const JITTER: f64 = 0.05;

/// When an exit report is sent, counted from the exit: more than once because UDP may lose
/// a datagram, and spread out so that one burst of loss does not take every copy.
const EXIT_REPORTS: [Duration; 3] = [Duration::ZERO, Duration::from_millis(20), Duration::from_millis(100)];

/// The shortest time between two starts of a command under `--restart`, so that a command
/// that fails at once does not spin.
const RESTART_EVERY: Duration = Duration::from_secs(1);

pub fn main(args: AgentArgs) -> anyhow::Result<ExitCode> {
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
    if args.watch_pid.is_some_and(|pid| pid <= 0) {
        bail!("--watch-pid must be a positive process id");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, ring, crate::shutdown::signal()))
}

/// Sends heartbeats until `shutdown` completes, then a goodbye; or, with a watched process,
/// until that process exits (without `--restart`), then an exit report. Returns the agent's
/// exit code.
pub async fn run(
    args: AgentArgs,
    ring: KeyRing,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let monitors = resolve(&args.monitors).await?;
    // The generation is the start time in microseconds: it grows across restarts without a
    // state file, which is what makes old datagrams replays.
    let generation = new_generation(0)?;
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

    // Before anything is sent: a pid that is not there, or a command that cannot start, is
    // an error at start.
    let mut watch = match (args.watch_pid, args.command.is_empty()) {
        (Some(pid), _) => Some(Watch::pid(pid)?),
        (None, false) => Some(Watch::spawn(args.command.clone())?),
        (None, true) => None,
    };
    if let Some(pid) = watch.as_ref().and_then(Watch::id) {
        tracing::info!(pid, "watching the process");
    }
    let mut started = tokio::time::Instant::now();

    let bind: SocketAddr = if monitors[0].is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let socket = tokio::net::UdpSocket::bind(bind).await.context("cannot bind a UDP socket")?;
    tracing::info!(node = %args.node, generation, interval = %humantime::format_duration(args.interval), monitors = ?monitors, "agent started");
    let clock = Clock::start();
    let mut responder =
        Responder::new(&args.node, interval_ms, sender.ring.clone(), ResponderConfig::default(), clock.now());
    let mut datagram = vec![0u8; 2048];

    tokio::pin!(shutdown);
    // Start at a random point of the first interval, then jitter each interval a little. An
    // agent with a watched process registers its node at once instead, before it can see an
    // exit, so that a process that dies in its first interval is reported on a node the
    // monitor knows.
    let mut interval = args.interval;
    let mut next = tokio::time::Instant::now() + interval.mul_f64(fastrand::f64());
    if watch.is_some() {
        sender.send(&socket, &monitors, Kind::Heartbeat).await;
        responder.heartbeat_sent(sender.generation, sender.sequence);
        next = tokio::time::Instant::now() + interval;
    }
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            status = exited(&mut watch) => {
                tracing::warn!(node = %args.node, code = status.code, signal = status.signal, "the watched process exited");
                sender.report_exit(&socket, &monitors, &status).await;
                let Some(command) = watch.as_mut().filter(|_| args.restart) else {
                    let code = if args.command.is_empty() { 0 } else { watch::exit_code(&status) };
                    return Ok(ExitCode::from(code));
                };
                tokio::time::sleep_until(started + RESTART_EVERY).await;
                command.restart()?;
                started = tokio::time::Instant::now();
                // A new process is a new generation: the monitor takes its heartbeats as a
                // restart, and refuses anything left of the old one.
                sender.generation = new_generation(sender.generation)?;
                sender.sequence = 0;
                tracing::info!(generation = sender.generation, pid = command.id(), "restarted the command");
                next = started;
            }
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
    // Only after the goodbye: the command's exit must not read as a crash.
    if let Some(watch) = watch.as_mut() {
        watch.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes when the watched process exits; never without one.
async fn exited(watch: &mut Option<Watch>) -> rollcall_core::wire::ExitStatus {
    match watch {
        Some(watch) => watch.exited().await,
        None => std::future::pending().await,
    }
}

/// A generation for a new start: the time in microseconds, and always above `previous`.
fn new_generation(previous: u64) -> anyhow::Result<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
    Ok((now.as_micros() as u64).max(previous + 1))
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
    fn encode(&mut self, kind: Kind) -> Result<(), rollcall_core::wire::EncodeError> {
        let labels = self.labels;
        self.encode_with(kind, labels)
    }

    fn encode_with(
        &mut self,
        kind: Kind,
        labels: &[(&str, &str)],
    ) -> Result<(), rollcall_core::wire::EncodeError> {
        self.sequence += 1;
        let message = Outgoing {
            kind,
            node: self.node,
            generation: self.generation,
            sequence: self.sequence,
            interval_ms: self.interval_ms,
            labels,
            follows_advice: self.follows_advice && kind == Kind::Heartbeat,
        };
        encode(&message, &self.ring, &mut self.buffer)
    }

    async fn send(&mut self, socket: &tokio::net::UdpSocket, monitors: &[SocketAddr], kind: Kind) {
        if let Err(error) = self.encode(kind) {
            tracing::error!(%error, "cannot encode a heartbeat");
            return;
        }
        self.transmit(socket, monitors).await;
    }

    /// Sends the exit report at each of [`EXIT_REPORTS`], each copy with its own sequence (a
    /// copy with the same one would be refused as a replay).
    async fn report_exit(
        &mut self,
        socket: &tokio::net::UdpSocket,
        monitors: &[SocketAddr],
        status: &rollcall_core::wire::ExitStatus,
    ) {
        let owned = watch::status_labels(status);
        let labels: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let exited = tokio::time::Instant::now();
        for at in EXIT_REPORTS {
            tokio::time::sleep_until(exited + at).await;
            if let Err(error) = self.encode_with(Kind::Exit, &labels) {
                tracing::error!(%error, "cannot encode an exit report");
                return;
            }
            self.transmit(socket, monitors).await;
        }
    }

    async fn transmit(&mut self, socket: &tokio::net::UdpSocket, monitors: &[SocketAddr]) {
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
