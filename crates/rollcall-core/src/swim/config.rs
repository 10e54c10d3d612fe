//! A peer's settings ([`SwimConfig`], memberlist's LAN profile by default) and the check
//! [`Peer::new`](super::Peer::new) runs on them.

use super::members::ProbeOrder;
use super::wire;
use core::time::Duration;

/// A peer's settings. [`SwimConfig::default`] is memberlist's LAN profile where SWIM and
/// memberlist agree, and says so where it differs. With the feature `serde` it reads from a
/// settings file on top of its defaults (the simulator's `[peer]`; see the `settings` module).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize), serde(default, deny_unknown_fields))]
pub struct SwimConfig {
    /// The cluster's name: peers of another cluster are rejected (and counted) even if they
    /// share a key.
    pub cluster: String,
    /// SWIM's protocol period: one probe per period (memberlist: 1 s).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_duration"))]
    pub probe_interval: Duration,
    /// How long the direct ping waits before indirect probes are sent (memberlist: 500 ms).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_duration"))]
    pub probe_timeout: Duration,
    /// `K`: members asked to probe indirectly (memberlist: 3).
    pub indirect_probes: u32,
    /// `λ` in the retransmit limit `λ × ceil(log10(n + 1))` (memberlist: 4).
    pub retransmit_mult: u32,
    /// `α` in the suspicion timeout (rollcall: 1; memberlist's LAN profile: 4). See
    /// docs/PEER.md for why rollcall can afford a shorter one.
    pub suspicion_mult: u32,
    /// `β`: the longest suspicion timeout is `β × min` (rollcall: 24, so that a suspicion
    /// nobody confirms lasts as long as under memberlist's profile; memberlist: 6, on a minimum
    /// four times longer).
    pub suspicion_max_mult: u32,
    /// `k`: independent confirmations that shrink a suspicion to its minimum (rollcall: 2;
    /// memberlist: `α - 2`, which is 2 at its LAN profile).
    pub suspicion_confirmations: u32,
    /// The local health multiplier's ceiling: probe interval and timeout stretch up to this
    /// many times (memberlist: 8).
    pub max_health: u32,
    /// How often a page of the member table is exchanged with a random member (push-pull;
    /// memberlist exchanges its whole state over TCP every 30 s).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_duration"))]
    pub sync_interval: Duration,
    /// How often one random member believed down is contacted (a sync page that tells it
    /// what we believe, so that it refutes if it is alive: partitions heal).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_duration"))]
    pub reconnect_interval: Duration,
    /// Randomised round-robin (SWIM's improvement, the default) or uniform random targets.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_probe_order"))]
    pub probe_order: ProbeOrder,
    /// Most members the table holds; updates about further members are counted and dropped.
    pub max_members: usize,
    /// Most indirect probes this peer runs for others at once; further requests are dropped.
    pub max_forwards: usize,
    /// Largest datagram sent, in bytes (at most [`wire::MAX_DATAGRAM`]).
    pub max_datagram: usize,
    /// Dedicated gossip rounds: while updates are queued, send them to
    /// [`SwimConfig::gossip_fanout`] random members this often, on top of piggybacking them
    /// on pings and acks (rollcall: 500 ms; memberlist's `GossipInterval`: 200 ms). `None`:
    /// piggybacking only.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "crate::settings::serde_duration_or_off"))]
    pub gossip_interval: Option<Duration>,
    /// Members per gossip round (rollcall: 2; memberlist's `GossipNodes`: 3).
    pub gossip_fanout: u32,
}

impl Default for SwimConfig {
    fn default() -> Self {
        SwimConfig {
            cluster: "rollcall".into(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            retransmit_mult: 4,
            suspicion_mult: 1,
            suspicion_max_mult: 24,
            suspicion_confirmations: 2,
            max_health: 8,
            sync_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(2),
            probe_order: ProbeOrder::RoundRobin,
            max_members: 100_000,
            max_forwards: 1024,
            max_datagram: wire::MAX_DATAGRAM,
            gossip_interval: Some(Duration::from_millis(500)),
            gossip_fanout: 2,
        }
    }
}

/// Why [`Peer::new`](super::Peer::new) refused its settings. The caller's fault; no peer was built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SwimConfigError {
    #[error("the member name must be 1 to 64 bytes without spaces or control characters")]
    BadName,
    #[error("probe_timeout must be positive and shorter than probe_interval")]
    BadProbeTimeout,
    #[error("probe_interval, sync_interval, reconnect_interval and gossip_interval must be at least 1 ms")]
    BadInterval,
    #[error("max_datagram must be between 512 and {} bytes", wire::MAX_DATAGRAM)]
    BadDatagramSize,
    #[error(
        "suspicion_mult, suspicion_max_mult, retransmit_mult, max_health and gossip_fanout must be at least 1"
    )]
    BadMultiplier,
}

pub(super) fn validate(config: &SwimConfig, name: &str) -> Result<(), SwimConfigError> {
    if !wire::valid_name(name) {
        return Err(SwimConfigError::BadName);
    }
    let ms = Duration::from_millis(1);
    if config.probe_interval < ms
        || config.sync_interval < ms
        || config.reconnect_interval < ms
        || config.gossip_interval.is_some_and(|span| span < ms)
    {
        return Err(SwimConfigError::BadInterval);
    }
    if config.probe_timeout.is_zero() || config.probe_timeout >= config.probe_interval {
        return Err(SwimConfigError::BadProbeTimeout);
    }
    if !(512..=wire::MAX_DATAGRAM).contains(&config.max_datagram) {
        return Err(SwimConfigError::BadDatagramSize);
    }
    if config.suspicion_mult == 0
        || config.suspicion_max_mult == 0
        || config.retransmit_mult == 0
        || config.max_health == 0
        || config.gossip_fanout == 0
    {
        return Err(SwimConfigError::BadMultiplier);
    }
    Ok(())
}
