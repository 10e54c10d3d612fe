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
mod queue;
mod report;

pub use check::{PeerFindings, PeerViolation, completeness_bound};
pub use engine::{PeerCrash, PeerTrace, Seen};
pub use report::PeerReport;

use crate::engine::Progress;
use crate::scenario::Scenario;
use core::time::Duration;
use rollcall_core::swim::{ProbeOrder, SwimConfig};

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

/// The settings of a peer-mode run: the core's [`SwimConfig`] (the `[peer]` table, read on
/// top of [`SwimConfig::default`]) and how the simulator starts the peers.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSettings {
    /// The peers' settings. [`PeerSettings::swim_config`] sets four of them per run: the
    /// protocol period is the scenario's `interval`, the probe timeout is
    /// [`PeerSettings::probe_timeout`], the table holds at least every node, and the
    /// cluster is `"sim"`.
    pub swim: SwimConfig,
    /// The direct ping's timeout; `None`: half the interval (memberlist: 500 ms at 1 s).
    pub probe_timeout: Option<Duration>,
    pub start: Start,
    /// Record every ping sent (instant, target) in [`PeerTrace::pings`]: for validating
    /// probe statistics against SWIM's formulas. Not a scenario-file setting.
    pub record_pings: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            swim: SwimConfig::default(),
            probe_timeout: None,
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
            max_members: (nodes as usize).max(self.swim.max_members),
            ..self.swim.clone()
        }
    }

    /// One line for the table: the knobs that shape detection.
    pub fn describe(&self, interval: Duration) -> String {
        let swim = &self.swim;
        let order = match swim.probe_order {
            ProbeOrder::RoundRobin => "round-robin",
            ProbeOrder::Uniform => "uniform",
        };
        let gossip = match swim.gossip_interval {
            Some(every) => {
                format!("gossip every {} to {}", crate::format_duration(every), swim.gossip_fanout)
            }
            None => "piggybacked gossip only".to_string(),
        };
        format!(
            "swim+lifeguard (period {}, probe timeout {}, K {}, suspicion {}x..{}x after {} confirmations, retransmit {}, {gossip}, {order})",
            crate::format_duration(interval),
            crate::format_duration(self.probe_timeout.unwrap_or(interval / 2)),
            swim.indirect_probes,
            swim.suspicion_mult,
            swim.suspicion_mult * swim.suspicion_max_mult,
            swim.suspicion_confirmations,
            swim.retransmit_mult,
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
        Some(toml::Value::Table(peer)) => Some(peer_settings(peer.clone())?),
        Some(_) => return Err("[peer] must be a table of SWIM settings".into()),
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

/// The `[peer]` table: `start` is the simulator's, every other key is read into a
/// [`SwimConfig`] on top of its defaults (unknown keys refused), except those the run sets.
fn peer_settings(mut table: toml::Table) -> Result<PeerSettings, String> {
    let start = match table.remove("start") {
        None => Start::Warm,
        Some(toml::Value::String(start)) if start == "warm" => Start::Warm,
        Some(toml::Value::String(start)) if start == "join" => Start::Join,
        Some(toml::Value::String(other)) => {
            return Err(format!("peer.start must be \"warm\" or \"join\", not {other:?}"));
        }
        Some(_) => return Err("peer.start must be \"warm\" or \"join\"".into()),
    };
    if let Some(key) =
        ["probe_interval", "cluster", "max_members"].into_iter().find(|key| table.contains_key(*key))
    {
        return Err(format!(
            "peer.{key} is set by the simulator (the protocol period is the scenario's interval, the table holds every node)"
        ));
    }
    let probe_timeout_given = table.contains_key("probe_timeout");
    let swim: SwimConfig = crate::format::section("peer", table)?;
    if swim.indirect_probes > 16 {
        return Err("peer.indirect_probes must be at most 16".into());
    }
    let probe_timeout = probe_timeout_given.then_some(swim.probe_timeout);
    Ok(PeerSettings { swim, probe_timeout, start, record_pings: false })
}
