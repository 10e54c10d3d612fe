//! Configuration in two stages (as ripgrep does): the raw TOML file and the flags, then one
//! validated [`Settings`]. Every mistake fails at start with one sentence naming it.

use crate::alerts::sinks::{RawSink, SinkConfig, parse_sinks};
use crate::checks::CheckInput;
use crate::cli::{DetectorKind, MonitorArgs};
use crate::http_server::ConnectionLimits;
use crate::monitor::explain::{Goals, parse_rate};
use anyhow::{Context, bail};
use rollcall_core::KeyRing;
use rollcall_core::alerts::AlertConfig;
use rollcall_core::checks::{CheckSpec, ChecksConfig, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
use rollcall_core::monitor::{ConfirmConfig, DetectorConfig, MonitorConfig};
use rollcall_core::ratelimit::RateLimiter;
use rollcall_core::settings::{ConfirmSection, FixedSection, PhiSection};
use rollcall_detect::qos::Goal;
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The monitor's settings, validated.
#[derive(Debug)]
pub struct Settings {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub key_ring: KeyRing,
    pub core: MonitorConfig,
    /// How often every node's sequence is written to the store, bounding how many old
    /// datagrams a replay can slip in after a crash of the monitor.
    pub checkpoint_interval: Duration,
    /// The UDP socket's receive buffer (SO_RCVBUF) request, in bytes.
    pub recv_buffer_bytes: usize,
    /// Threads that read, authenticate and decode heartbeats, each on its own SO_REUSEPORT
    /// socket (1: the owner task reads the one socket itself).
    pub receive_threads: usize,
    pub alerts: AlertConfig,
    pub sinks: Vec<SinkConfig>,
    /// Bearer token for the API's write endpoints; without one they are refused.
    pub api_token: Option<String>,
    /// Whether reads of `/v1/...` need the token too.
    pub protect_reads: bool,
    /// The HTTP server's connection cap and timeouts.
    pub api_limits: ConnectionLimits,
    /// Per-node metric series are exported while the fleet has at most this many nodes
    /// (0 switches them off).
    pub per_node_series: usize,
    /// Checks defined in the config file (the file owns them).
    pub checks: Vec<CheckSpec>,
    /// Detection goals (`rollcall explain` judges the settings against them).
    pub goals: Goals,
    pub pings: PingSettings,
    /// `[cluster]`: several monitors electing a leader through etcd (`None`: one monitor).
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

/// Limits of the HTTP ping path.
#[derive(Debug, Clone)]
pub struct PingSettings {
    pub table: ChecksConfig,
    /// Token bucket per check token and per source address: pings per second and burst.
    pub per_token_rate: f64,
    pub per_token_burst: u32,
    pub per_source_rate: f64,
    pub per_source_burst: u32,
    /// The secret of Healthchecks' second URL form, `/ping/<ping-key>/<slug>`; without it,
    /// that form answers 404.
    pub ping_key: Option<String>,
    /// `/ping/<ping-key>/<slug>?create=1` makes a missing check (off by default).
    pub auto_create: bool,
}

/// The config file as written. Unknown keys are refused, naming the key.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    udp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    detector: Option<DetectorKind>,
    #[serde(default)]
    monitor: RawMonitor,
    #[serde(default)]
    phi: PhiSection,
    #[serde(default)]
    fixed: FixedSection,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    sink: Vec<RawSink>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    check: Vec<CheckInput>,
    #[serde(default)]
    pings: RawPings,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    confirm: ConfirmSection,
    #[serde(default)]
    goals: RawGoals,
    /// `[group.NAME]`: detector and confirmation settings of one group (`settings/groups.rs`).
    #[serde(default)]
    group: std::collections::BTreeMap<String, groups::RawGroup>,
    cluster: Option<crate::cluster::RawCluster>,
}

/// `[goals]`: what the user wants, for the whole fleet, and per group in `[goals.group.NAME]`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawGoals {
    detect_within: Option<String>,
    max_false_downs: Option<String>,
    advise_every: Option<String>,
    /// Apply the derived thresholds and confirmation to each goal's scope.
    apply: Option<bool>,
    #[serde(default)]
    group: std::collections::BTreeMap<String, RawGoal>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    detect_within: Option<String>,
    max_false_downs: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    per_node_series: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawPings {
    body_limit: Option<usize>,
    history: Option<usize>,
    max_checks: Option<usize>,
    per_token_rate: Option<f64>,
    per_token_burst: Option<u32>,
    per_source_rate: Option<f64>,
    per_source_burst: Option<u32>,
    ping_key: Option<String>,
    auto_create: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawApi {
    token: Option<String>,
    protect_reads: Option<bool>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    repeat_interval: Option<String>,
    flap_changes: Option<u32>,
    flap_window: Option<String>,
    group_share: Option<f64>,
    group_min_nodes: Option<usize>,
    group_wait: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    rise: Option<u8>,
    max_nodes: Option<usize>,
    allow: Option<Vec<String>>,
    min_interval: Option<String>,
    max_interval: Option<String>,
    tick: Option<String>,
    self_pause_threshold: Option<String>,
    checkpoint_interval: Option<String>,
    recv_buffer_bytes: Option<usize>,
    receive_threads: Option<usize>,
}

pub const DEFAULT_UDP: &str = "0.0.0.0:7400";
pub const DEFAULT_HTTP: &str = "127.0.0.1:7401";
pub const DEFAULT_DATA_DIR: &str = "./rollcall-data";
/// Bound on `monitor.receive_threads`: far more than the cores one owner can take heartbeats
/// from (docs/BENCHMARKS.md, session 9).
pub const MAX_RECEIVE_THREADS: usize = 64;

impl Settings {
    /// Reads the config file named by the flags (if any), lets the flags override it, and
    /// validates the result.
    pub fn from_args(args: &MonitorArgs) -> anyhow::Result<Settings> {
        let raw = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<RawConfig>(&text).map_err(|error| toml_error(path, &text, &error))?
            }
            None => RawConfig::default(),
        };
        Settings::resolve(raw, args)
    }

    fn resolve(raw: RawConfig, args: &MonitorArgs) -> anyhow::Result<Settings> {
        let key_file = args.key_file.clone().or(raw.key_file.clone()).context(
            "no key file: pass --key-file FILE or set key_file in the config (create one with `rollcall keygen > rollcall.key`)",
        )?;
        let key_ring = load_key_ring(&key_file)?;
        // Both sections are checked, even the one not in use: a mistake there is still a
        // mistake, and it would surface the day someone switches detectors.
        let (phi, fixed) = (phi_config(&raw.phi, "phi")?, fixed_config(&raw.fixed, "fixed")?);
        let detector = match args.detector.or(raw.detector).unwrap_or(DetectorKind::Phi) {
            DetectorKind::Phi => DetectorConfig::Phi(Arc::new(phi)),
            DetectorKind::Fixed => DetectorConfig::Fixed(Arc::new(fixed)),
        };
        let defaults = MonitorConfig::default();
        let m = &raw.monitor;
        let goals = goals(&raw.goals)?;
        let groups = groups::parse(&raw, &detector, args.confirm, &goals)?;
        let core = MonitorConfig {
            groups,
            detector,
            rise: m.rise.unwrap_or(defaults.rise),
            max_nodes: m.max_nodes.unwrap_or(defaults.max_nodes),
            allow: m.allow.clone().map(|ids| ids.into_iter().collect()),
            min_interval: duration("monitor.min_interval", &m.min_interval)?.unwrap_or(defaults.min_interval),
            max_interval: duration("monitor.max_interval", &m.max_interval)?.unwrap_or(defaults.max_interval),
            tick: duration("monitor.tick", &m.tick)?.unwrap_or(defaults.tick),
            self_pause_threshold: duration("monitor.self_pause_threshold", &m.self_pause_threshold)?
                .unwrap_or(defaults.self_pause_threshold),
            confirm: confirm_config(&raw.confirm, args.confirm, "confirm")?,
        };
        if let Err(problem) = core.validate() {
            bail!("invalid configuration: {problem}");
        }
        let checkpoint_interval = duration("monitor.checkpoint_interval", &m.checkpoint_interval)?
            .unwrap_or(Duration::from_secs(30));
        if checkpoint_interval < Duration::from_secs(1) {
            bail!("invalid configuration: monitor.checkpoint_interval must be at least 1s");
        }
        let receive_threads = m.receive_threads.unwrap_or(1);
        if !(1..=MAX_RECEIVE_THREADS).contains(&receive_threads) {
            bail!(
                "invalid configuration: monitor.receive_threads must be between 1 and {MAX_RECEIVE_THREADS}"
            );
        }
        let alerts = alert_config(&raw.alerts)?;
        let sinks =
            parse_sinks(raw.sink).map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
        if let Some(token) = &raw.api.token
            && token.len() < 16
        {
            bail!(
                "invalid configuration: api.token must be at least 16 characters (try `openssl rand -hex 16`)"
            );
        }
        let checks = raw
            .check
            .into_iter()
            .map(|input| input.into_spec(None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
        let mut ids = std::collections::BTreeSet::new();
        if let Some(duplicate) = checks.iter().find(|check| !ids.insert(check.id.as_str())) {
            bail!("invalid configuration: check {:?} is defined twice", duplicate.id);
        }
        let mut slugs = std::collections::BTreeSet::new();
        if let Some(slug) = checks.iter().filter_map(CheckSpec::slug).find(|slug| !slugs.insert(*slug)) {
            bail!("invalid configuration: two checks have the slug {slug:?}");
        }
        let pings = ping_settings(&raw.pings)?;
        if let Some(check) = checks.iter().find(|check| Some(&check.token) == pings.ping_key.as_ref()) {
            bail!(
                "invalid configuration: check {:?} has pings.ping_key as its token; give it another",
                check.id
            );
        }
        let protect_reads = raw.api.protect_reads.unwrap_or(false);
        if protect_reads && raw.api.token.is_none() {
            bail!("invalid configuration: api.protect_reads needs api.token (the token readers must send)");
        }
        let cluster = raw.cluster.as_ref().map(crate::cluster::parse).transpose()?;
        let api_limits = api_limits(&raw.api)?;
        Ok(Settings {
            cluster,
            api_limits,
            goals,
            per_node_series: raw.metrics.per_node_series.unwrap_or(10_000),
            protect_reads,
            checks,
            pings,
            api_token: raw.api.token,
            alerts,
            sinks,
            udp: args.udp.or(raw.udp).unwrap_or_else(|| DEFAULT_UDP.parse().expect("valid constant")),
            http: args.http.or(raw.http).unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid constant")),
            data_dir: args.data_dir.clone().or(raw.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            key_ring,
            core,
            checkpoint_interval,
            recv_buffer_bytes: m.recv_buffer_bytes.unwrap_or(8 << 20),
            receive_threads,
        })
    }
}

/// `api.max_connections`, `api.header_timeout`, `api.idle_timeout`. The cap is checked
/// against the descriptor limit at start (`ConnectionLimits::fit`), when that is known.
fn api_limits(raw: &RawApi) -> anyhow::Result<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let limits = ConnectionLimits {
        max_connections: raw.max_connections,
        header_timeout: duration("api.header_timeout", &raw.header_timeout)?
            .unwrap_or(defaults.header_timeout),
        idle_timeout: duration("api.idle_timeout", &raw.idle_timeout)?.unwrap_or(defaults.idle_timeout),
    };
    limits
        .validate(["api.max_connections", "api.header_timeout", "api.idle_timeout"])
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    Ok(limits)
}

/// The alerting part of a config file, for `rollcall peer --config FILE`: the monitor's
/// `[alerts]` and `[[sink]]` sections (parsed and checked by the same code as the
/// monitor's) and `data_dir`.
#[derive(Debug)]
pub struct AlertFile {
    pub data_dir: Option<PathBuf>,
    pub alerts: AlertConfig,
    pub sinks: Vec<SinkConfig>,
}

/// What a file read by [`alert_file`] may hold at its top level.
const ALERT_FILE_KEYS: [&str; 3] = ["data_dir", "alerts", "sink"];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawAlertFile {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    sink: Vec<RawSink>,
}

/// A config file's parse error as one sentence: the file, the line, what is wrong, and the
/// text it is about when that is short (the key of a duplicate key, a bad value), which
/// toml's message alone does not name.
pub fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> anyhow::Error {
    let message = error.message().trim_end_matches('\n').trim_end_matches('.');
    let Some(span) = error.span().filter(|span| span.end <= text.len() && span.start <= span.end) else {
        return anyhow::anyhow!("config file {}: {message}", path.display());
    };
    let line = text[..span.start].matches('\n').count() + 1;
    let at = text[span].trim();
    if at.is_empty() || at.len() > 60 || at.contains('\n') || message.contains(at) {
        anyhow::anyhow!("config file {}, line {line}: {message}", path.display())
    } else {
        anyhow::anyhow!("config file {}, line {line}: {message} `{at}`", path.display())
    }
}

/// Reads a config file that holds only `data_dir`, `[alerts]` and `[[sink]]`; any other
/// top-level key (a monitor setting included) is refused in one sentence naming it.
pub fn alert_file(path: &Path) -> anyhow::Result<AlertFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let bad = |error: toml::de::Error| toml_error(path, &text, &error);
    let table = toml::from_str::<toml::Table>(&text).map_err(bad)?;
    if let Some(key) = table.keys().find(|key| !ALERT_FILE_KEYS.contains(&key.as_str())) {
        bail!(
            "config file {}: `{key}` is not a peer setting (a peer's config file holds only data_dir, [alerts] and [[sink]])",
            path.display()
        );
    }
    let raw = toml::from_str::<RawAlertFile>(&text).map_err(bad)?;
    let alerts = alert_config(&raw.alerts)?;
    let sinks =
        parse_sinks(raw.sink).map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    Ok(AlertFile { data_dir: raw.data_dir, alerts, sinks })
}

/// Reads a key file, with a sentence naming the file when it is wrong.
pub fn load_key_ring(path: &Path) -> anyhow::Result<KeyRing> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    KeyRing::parse(&text).map_err(|error| anyhow::anyhow!("key file {}: {error}", path.display()))
}

/// A duration setting, in the one grammar of every settings file
/// ([`rollcall_core::settings::parse_duration`]).
fn duration(name: &str, value: &Option<String>) -> anyhow::Result<Option<Duration>> {
    rollcall_core::settings::optional_duration(name, value.as_deref())
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))
}

/// `[phi]`, or a group's `[group.NAME.phi]` (`section` names it in errors).
fn phi_config(raw: &PhiSection, section: &str) -> anyhow::Result<PhiAccrualConfig> {
    let config =
        raw.resolve(section).map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    config.validate().map_err(|problem| anyhow::anyhow!("invalid configuration: {section}: {problem}"))?;
    Ok(config)
}

fn alert_config(raw: &RawAlerts) -> anyhow::Result<AlertConfig> {
    let defaults = AlertConfig::default();
    let config = AlertConfig {
        repeat_interval: duration("alerts.repeat_interval", &raw.repeat_interval)?
            .unwrap_or(defaults.repeat_interval),
        flap_changes: raw.flap_changes.unwrap_or(defaults.flap_changes),
        flap_window: duration("alerts.flap_window", &raw.flap_window)?.unwrap_or(defaults.flap_window),
        group_share: raw.group_share.unwrap_or(defaults.group_share),
        group_min_nodes: raw.group_min_nodes.unwrap_or(defaults.group_min_nodes),
        group_wait: duration("alerts.group_wait", &raw.group_wait)?.unwrap_or(defaults.group_wait),
    };
    config.validate().map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    Ok(config)
}

fn ping_settings(raw: &RawPings) -> anyhow::Result<PingSettings> {
    let defaults = ChecksConfig::default();
    let table = ChecksConfig {
        body_limit: raw.body_limit.unwrap_or(defaults.body_limit),
        history: raw.history.unwrap_or(defaults.history),
        max_checks: raw.max_checks.unwrap_or(defaults.max_checks),
        ..defaults
    };
    table.validate().map_err(|problem| anyhow::anyhow!("invalid configuration: pings: {problem}"))?;
    let settings = PingSettings {
        table,
        per_token_rate: raw.per_token_rate.unwrap_or(5.0),
        per_token_burst: raw.per_token_burst.unwrap_or(20),
        per_source_rate: raw.per_source_rate.unwrap_or(50.0),
        per_source_burst: raw.per_source_burst.unwrap_or(200),
        ping_key: raw.ping_key.clone(),
        auto_create: raw.auto_create.unwrap_or(false),
    };
    if let Some(key) = &settings.ping_key {
        let (min, max) = (MIN_TOKEN_LEN, MAX_TOKEN_LEN);
        let fits = (min..=max).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !fits {
            bail!(
                "invalid configuration: pings.ping_key must be {min} to {max} characters of A-Z a-z 0-9 _ -"
            );
        }
    }
    if settings.auto_create && settings.ping_key.is_none() {
        bail!("invalid configuration: pings.auto_create needs pings.ping_key (the secret of the slug URLs)");
    }
    for (name, rate, burst) in [
        ("per_token", settings.per_token_rate, settings.per_token_burst),
        ("per_source", settings.per_source_rate, settings.per_source_burst),
    ] {
        RateLimiter::<u8>::new(rate, burst, 1)
            .map_err(|problem| anyhow::anyhow!("invalid configuration: pings.{name}: {problem}"))?;
    }
    Ok(settings)
}

/// The `[goals]` section: both keys or neither, for the fleet and for each group.
fn goals(raw: &RawGoals) -> anyhow::Result<Goals> {
    let goal =
        |scope: &str, within: &Option<String>, rate: &Option<String>| -> anyhow::Result<Option<Goal>> {
            match (within, rate) {
                (None, None) => Ok(None),
                (Some(within), Some(rate)) => {
                    let detect_within =
                        duration(&format!("{scope}.detect_within"), &Some(within.clone()))?.expect("given");
                    let false_downs_per_node_year = parse_rate(rate).map_err(|problem| {
                        anyhow::anyhow!("invalid configuration: {scope}.max_false_downs: {problem}")
                    })?;
                    Ok(Some(Goal { detect_within, false_downs_per_node_year }))
                }
                _ => bail!("invalid configuration: {scope} needs both detect_within and max_false_downs"),
            }
        };
    let mut groups = std::collections::BTreeMap::new();
    for (name, raw_goal) in &raw.group {
        let scope = format!("goals.group.{name}");
        let found = goal(&scope, &raw_goal.detect_within, &raw_goal.max_false_downs)?;
        groups
            .insert(name.clone(), found.with_context(|| format!("invalid configuration: {scope} is empty"))?);
    }
    let advise_every = duration("goals.advise_every", &raw.advise_every)?;
    if advise_every.is_some_and(|every| every < std::time::Duration::from_secs(1)) {
        bail!("invalid configuration: goals.advise_every must be at least 1s");
    }
    let fleet = goal("goals", &raw.detect_within, &raw.max_false_downs)?;
    let apply = raw.apply.unwrap_or(false);
    if apply && fleet.is_none() && groups.is_empty() {
        bail!(
            "invalid configuration: goals.apply needs a goal to apply (goals.detect_within and goals.max_false_downs, or a [goals.group.NAME])"
        );
    }
    Ok(Goals { fleet, groups, advise_every, apply })
}

/// The `[confirm]` section, or a group's `[group.NAME.confirm]` (`section` names it in
/// errors); `--confirm` on the command line turns it on.
fn confirm_config(raw: &ConfirmSection, flag: bool, section: &str) -> anyhow::Result<Option<ConfirmConfig>> {
    let config =
        raw.resolve(section).map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    // Checked even when off, like the detector sections: a mistake is still a mistake. The
    // core's sentences name the `[confirm]` keys; a group's section says which group.
    let prefix = section.strip_suffix(".confirm").map(|group| format!("{group}: ")).unwrap_or_default();
    config.validate().map_err(|problem| anyhow::anyhow!("invalid configuration: {prefix}{problem}"))?;
    Ok((flag || raw.enabled.unwrap_or(false)).then_some(config))
}

/// `[fixed]`, or a group's `[group.NAME.fixed]` (`section` names it in errors).
fn fixed_config(raw: &FixedSection, section: &str) -> anyhow::Result<FixedTimeoutConfig> {
    let config =
        raw.resolve(section).map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    config.validate().map_err(|problem| anyhow::anyhow!("invalid configuration: {section}: {problem}"))?;
    Ok(config)
}

mod groups;
#[cfg(test)]
mod tests;
