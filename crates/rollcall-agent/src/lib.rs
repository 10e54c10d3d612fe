//! Heartbeats for a Rust service, sent from the service's own tokio runtime (see README.md).
//!
//! [`Agent::spawn`] starts one task on the current runtime that sends a heartbeat every
//! interval to each monitor, authenticated with the monitors' key file like `rollcall
//! agent`'s. Because the task shares the service's runtime, the heartbeats stop when the
//! runtime stops making progress: the monitor then judges the application, not only its
//! host. [`Agent::stop`] sends a goodbye, so a planned shutdown pages nobody.
#![doc = include_str!("../README.md")]

use rollcall_core::KeyRing;
use rollcall_core::wire::{Kind, Outgoing, encode};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What can be wrong with an agent's configuration or start; each names the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("the key file is not valid: {0}")]
    KeyFile(String),
    #[error("the interval must be between 10ms and 1h")]
    Interval,
    #[error("at least one monitor address is needed")]
    NoMonitor,
    #[error("the node id or a label cannot be sent: {0}")]
    Encode(String),
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("the system clock is before 1970")]
    Clock,
}

/// Who the agent speaks for, and to whom.
#[derive(Clone)]
pub struct AgentConfig {
    node: String,
    monitors: Vec<SocketAddr>,
    ring: KeyRing,
    interval: Duration,
    labels: Vec<(String, String)>,
}

impl AgentConfig {
    /// `node` sending to `monitors` with the key file's text (the same file the monitors
    /// read); every second unless [`AgentConfig::interval`] says otherwise.
    pub fn new(node: &str, monitors: Vec<SocketAddr>, key_file: &str) -> Result<AgentConfig, AgentError> {
        let ring = KeyRing::parse(key_file).map_err(|error| AgentError::KeyFile(error.to_string()))?;
        if monitors.is_empty() {
            return Err(AgentError::NoMonitor);
        }
        Ok(AgentConfig {
            node: node.to_string(),
            monitors,
            ring,
            interval: Duration::from_secs(1),
            labels: Vec::new(),
        })
    }

    /// How often to send (10 ms to 1 h).
    #[must_use]
    pub fn interval(self, interval: Duration) -> AgentConfig {
        AgentConfig { interval, ..self }
    }

    /// A label the node's heartbeats carry (its group, its service...).
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> AgentConfig {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running in-process agent. Dropping it stops the heartbeats without a goodbye (the
/// monitor then sees the node go silent); [`Agent::stop`] says goodbye first.
#[must_use = "dropping the agent stops its heartbeats"]
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One node's datagrams: a generation for this start, a sequence that only goes up.
struct Sender {
    config: AgentConfig,
    generation: u64,
    sequence: u64,
    buffer: Vec<u8>,
}

impl Sender {
    fn datagram(&mut self, kind: Kind) -> Result<&[u8], AgentError> {
        self.sequence += 1;
        let labels: Vec<(&str, &str)> =
            self.config.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let message = Outgoing {
            kind,
            node: &self.config.node,
            generation: self.generation,
            sequence: self.sequence,
            interval_ms: self.config.interval.as_millis() as u32,
            labels: &labels,
            follows_advice: false,
        };
        encode(&message, &self.config.ring, &mut self.buffer)
            .map_err(|error| AgentError::Encode(error.to_string()))?;
        Ok(&self.buffer)
    }
}

impl Agent {
    /// Checks the configuration (by encoding a first heartbeat), binds a UDP socket and
    /// starts sending from a task on the current tokio runtime.
    pub async fn spawn(config: AgentConfig) -> Result<Agent, AgentError> {
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&config.interval) {
            return Err(AgentError::Interval);
        }
        // Microseconds since the epoch: larger at every start, so older datagrams are replays.
        let generation =
            SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| AgentError::Clock)?.as_micros() as u64;
        let bind: SocketAddr = if config.monitors[0].is_ipv6() {
            "[::]:0".parse().expect("an address")
        } else {
            "0.0.0.0:0".parse().expect("an address")
        };
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        let mut sender = Sender { config, generation, sequence: 0, buffer: Vec::new() };
        sender.datagram(Kind::Heartbeat)?;
        sender.sequence = 0;
        let (stop, mut stopping) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sender.config.interval);
            // A runtime that was stalled sends one heartbeat when it wakes, not a burst.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => send(&socket, &mut sender, Kind::Heartbeat).await,
                    _ = stopping.changed() => {
                        send(&socket, &mut sender, Kind::Goodbye).await;
                        return;
                    }
                }
            }
        });
        Ok(Agent { stop, task })
    }

    /// Sends a goodbye to every monitor (the node becomes `left`, nobody is paged) and
    /// stops.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One datagram to every monitor. A send that fails is skipped: the next interval retries,
/// and a monitor that misses heartbeats is what judges this node.
async fn send(socket: &tokio::net::UdpSocket, sender: &mut Sender, kind: Kind) {
    let monitors = sender.config.monitors.clone();
    let Ok(datagram) = sender.datagram(kind) else { return };
    for monitor in monitors {
        let _ = socket.send_to(datagram, monitor).await;
    }
}
