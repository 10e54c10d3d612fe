//! Peer mode: N SWIM + Lifeguard peers ([`rollcall_core::swim::Peer`], unchanged) watching
//! each other over the simulated network, with the same faults as central mode, judged by
//! checkers that read only the trace, and summarised in a table like central mode's.
//!
//! A scenario runs in peer mode when its file says `mode = "peer"` (with an optional
//! `[peer]` table of SWIM settings) or when the shell asks for it (`rollcall sim --mode
//! peer`). The central fields keep their meaning where they have one: `interval` is the
//! protocol period, the network and the faults are the same; `detector` and `rise` belong
//! to the monitor and are ignored. docs/PEER.md describes the model and its differences.
//!
//! Start reading at [`simulate`], then `peer/engine.rs` (the event loop), `peer/check.rs`
//! (the checkers) and `peer/report.rs` (the figures).

mod check;
mod engine;
mod report;

pub use check::{PeerFindings, PeerViolation, completeness_bound};
pub use engine::{PeerCrash, PeerTrace, Seen};
pub use report::PeerReport;

use crate::engine::Progress;
use crate::scenario::{Scenario, parse_duration};
use core::time::Duration;
use rollcall_core::swim::{ProbeOrder, SwimConfig};
use serde::Deserialize;

/// How peers start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Every peer knows every other from the start (a static cluster file): the run
    /// measures steady-state detection, not joining.
    #[default]
    Warm,
    /// Every peer knows nobody and joins through peer 0 at a random instant of the first
    /// interval; the table fills through gossip and sync pages.
    Join,
}

/// The SWIM settings of a peer-mode run (the `[peer]` table). The protocol period is the
/// scenario's `interval`.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSettings {
    /// Defaults to half the interval (memberlist: 500 ms at 1 s).
    pub probe_timeout: Option<Duration>,
    pub indirect_probes: u32,
    pub retransmit_mult: u32,
    pub suspicion_mult: u32,
    pub suspicion_max_mult: u32,
    pub suspicion_confirmations: u32,
    pub max_health: u32,
    /// `None`: piggybacked gossip only.
    pub gossip_interval: Option<Duration>,
    pub gossip_fanout: u32,
    pub sync_interval: Duration,
    pub reconnect_interval: Duration,
    pub probe_order: ProbeOrder,
    pub start: Start,
    /// Record every ping sent (instant, target) in [`PeerTrace::pings`]: for validating
    /// probe statistics against SWIM's formulas. Not a scenario-file setting.
    pub record_pings: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        let swim = SwimConfig::default();
        PeerSettings {
            probe_timeout: None,
            indirect_probes: swim.indirect_probes,
            retransmit_mult: swim.retransmit_mult,
            suspicion_mult: swim.suspicion_mult,
            suspicion_max_mult: swim.suspicion_max_mult,
            suspicion_confirmations: swim.suspicion_confirmations,
            max_health: swim.max_health,
            gossip_interval: swim.gossip_interval,
            gossip_fanout: swim.gossip_fanout,
            sync_interval: swim.sync_interval,
            reconnect_interval: swim.reconnect_interval,
            probe_order: swim.probe_order,
            start: Start::Warm,
            record_pings: false,
        }
    }
}

impl PeerSettings {
    /// The peers' configuration for a protocol period of `interval`.
    pub fn swim_config(&self, interval: Duration, nodes: u32) -> SwimConfig {
        SwimConfig {
            cluster: "sim".into(),
            probe_interval: interval,
            probe_timeout: self.probe_timeout.unwrap_or(interval / 2),
            indirect_probes: self.indirect_probes,
            retransmit_mult: self.retransmit_mult,
            suspicion_mult: self.suspicion_mult,
            suspicion_max_mult: self.suspicion_max_mult,
            suspicion_confirmations: self.suspicion_confirmations,
            max_health: self.max_health,
            gossip_interval: self.gossip_interval,
            gossip_fanout: self.gossip_fanout,
            sync_interval: self.sync_interval,
            reconnect_interval: self.reconnect_interval,
            probe_order: self.probe_order,
            max_members: (nodes as usize).max(SwimConfig::default().max_members),
            ..SwimConfig::default()
        }
    }

    /// One line for the table: the knobs that shape detection.
    pub fn describe(&self, interval: Duration) -> String {
        let order = match self.probe_order {
            ProbeOrder::RoundRobin => "round-robin",
            ProbeOrder::Uniform => "uniform",
        };
        let gossip = match self.gossip_interval {
            Some(every) => {
                format!("gossip every {} to {}", crate::format_duration(every), self.gossip_fanout)
            }
            None => "piggybacked gossip only".to_string(),
        };
        format!(
            "swim+lifeguard (period {}, probe timeout {}, K {}, suspicion {}x..{}x after {} confirmations, retransmit {}, {gossip}, {order})",
            crate::format_duration(interval),
            crate::format_duration(self.probe_timeout.unwrap_or(interval / 2)),
            self.indirect_probes,
            self.suspicion_mult,
            self.suspicion_mult * self.suspicion_max_mult,
            self.suspicion_confirmations,
            self.retransmit_mult,
        )
    }
}

/// A peer-mode run, checked and summarised.
pub struct PeerOutcome {
    pub trace: PeerTrace,
    pub findings: PeerFindings,
    pub report: PeerReport,
}

/// Runs `scenario` in peer mode, checks its trace and summarises it.
pub fn simulate(
    scenario: &Scenario,
    settings: &PeerSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<PeerOutcome, String> {
    let trace = engine::run(scenario, settings, progress)?;
    let findings = check::check(&trace, scenario, settings);
    let report = PeerReport::new(scenario, settings, &trace, &findings);
    Ok(PeerOutcome { trace, findings, report })
}

/// Splits a scenario file into the text central mode reads and the peer settings: the
/// top-level `mode` key and the `[peer]` table are taken out. Returns `Some` settings when
/// the file says `mode = "peer"` (or has a `[peer]` table without a `mode`).
///
/// `mode` must be a top-level key before any table, and `[peer]` a table of its own (the
/// documented layout); anything else is refused with one sentence.
pub fn split_scenario(text: &str) -> Result<(String, Option<PeerSettings>), String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    let mode = match table.get("mode") {
        None => None,
        Some(toml::Value::String(mode)) if mode == "peer" || mode == "central" => Some(mode.clone()),
        Some(_) => return Err("mode must be \"central\" or \"peer\"".into()),
    };
    let peer = match table.get("peer") {
        None => None,
        Some(value) => Some(
            value
                .clone()
                .try_into::<RawPeer>()
                .map_err(|e| format!("[peer]: {}", e.message().trim()))?
                .into_settings()?,
        ),
    };
    let mut kept = String::with_capacity(text.len());
    let (mut in_peer, mut before_tables) = (false, true);
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            before_tables = false;
            // A header may carry a comment: `[peer]  # ...`.
            in_peer = trimmed.split('#').next().is_some_and(|header| header.trim_end() == "[peer]");
        }
        let is_mode = before_tables
            && trimmed.strip_prefix("mode").is_some_and(|rest| rest.trim_start().starts_with('='));
        // Removed lines stay as blank lines, so central mode's errors keep their line numbers.
        if !in_peer && !is_mode {
            kept.push_str(line);
        }
        kept.push('\n');
    }
    let check: toml::Table = kept.parse().map_err(|e: toml::de::Error| e.message().trim().to_string())?;
    if check.contains_key("mode") || check.contains_key("peer") {
        return Err(
            "write `mode` as a top-level key before any table, and `[peer]` as a table of its own".into()
        );
    }
    match (mode.as_deref(), peer) {
        (Some("central"), Some(_)) => Err("a [peer] table needs mode = \"peer\"".into()),
        (Some("central"), None) => Ok((kept, None)),
        (Some(_), peer) => Ok((kept, Some(peer.unwrap_or_default()))),
        (None, peer) => Ok((kept, peer)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    probe_timeout: Option<String>,
    indirect_probes: Option<u32>,
    retransmit_mult: Option<u32>,
    suspicion_mult: Option<u32>,
    suspicion_max_mult: Option<u32>,
    suspicion_confirmations: Option<u32>,
    max_health: Option<u32>,
    gossip_interval: Option<String>,
    gossip_fanout: Option<u32>,
    sync_interval: Option<String>,
    reconnect_interval: Option<String>,
    probe_order: Option<String>,
    start: Option<String>,
}

impl RawPeer {
    fn into_settings(self) -> Result<PeerSettings, String> {
        let d = PeerSettings::default();
        let span = |name: &str, value: Option<String>| -> Result<Option<Duration>, String> {
            value.map(|text| parse_duration(&text).map_err(|e| format!("peer.{name}: {e}"))).transpose()
        };
        let probe_order = match self.probe_order.as_deref() {
            None | Some("round-robin") => ProbeOrder::RoundRobin,
            Some("uniform") => ProbeOrder::Uniform,
            Some(other) => {
                return Err(format!(
                    "peer.probe_order must be \"round-robin\" or \"uniform\", not {other:?}"
                ));
            }
        };
        let start = match self.start.as_deref() {
            None | Some("warm") => Start::Warm,
            Some("join") => Start::Join,
            Some(other) => return Err(format!("peer.start must be \"warm\" or \"join\", not {other:?}")),
        };
        let gossip_interval = match self.gossip_interval.as_deref() {
            None => d.gossip_interval,
            Some("off") => None,
            Some(text) => {
                Some(parse_duration(text).map_err(|e| format!("peer.gossip_interval: {e} (or \"off\")"))?)
            }
        };
        let settings = PeerSettings {
            probe_timeout: span("probe_timeout", self.probe_timeout)?,
            indirect_probes: self.indirect_probes.unwrap_or(d.indirect_probes),
            retransmit_mult: self.retransmit_mult.unwrap_or(d.retransmit_mult),
            suspicion_mult: self.suspicion_mult.unwrap_or(d.suspicion_mult),
            suspicion_max_mult: self.suspicion_max_mult.unwrap_or(d.suspicion_max_mult),
            suspicion_confirmations: self.suspicion_confirmations.unwrap_or(d.suspicion_confirmations),
            max_health: self.max_health.unwrap_or(d.max_health),
            gossip_interval,
            gossip_fanout: self.gossip_fanout.unwrap_or(d.gossip_fanout),
            sync_interval: span("sync_interval", self.sync_interval)?.unwrap_or(d.sync_interval),
            reconnect_interval: span("reconnect_interval", self.reconnect_interval)?
                .unwrap_or(d.reconnect_interval),
            probe_order,
            start,
            record_pings: false,
        };
        if settings.indirect_probes > 16 {
            return Err("peer.indirect_probes must be at most 16".into());
        }
        Ok(settings)
    }
}
