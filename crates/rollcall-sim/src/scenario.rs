//! A scenario as data: the fleet, the detector, the network and the faults.
//!
//! Every field is plain data so that a shell can build one from a TOML file
//! ([`Scenario::from_toml`]), from flags, or both (a file, then flags on top). Nothing here
//! draws a random number: which nodes a `"10%"` picks, and when a `"60s..540s"` happens, is
//! decided when the run starts, from the seed (see `plan.rs`).

use crate::rng::Rng;
use core::fmt;
use core::time::Duration;
use rollcall_core::monitor::{ConfirmConfig, DetectorConfig, MonitorConfig};
use rollcall_detect::{FixedTimeoutConfig, PhiAccrualConfig};
use std::sync::Arc;

/// Everything a run needs. A run is a pure function of its scenario (seed included).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub nodes: u32,
    /// Virtual time simulated.
    pub duration: Duration,
    /// The interval every agent declares and aims at.
    pub interval: Duration,
    /// How far each send strays from the interval, as a fraction of it (the real agent
    /// uses 0.05), uniformly either way.
    pub jitter: f64,
    /// The monitor's detector: the core's own settings type.
    pub detector: DetectorConfig,
    /// Probe suspects before declaring them down (the monitor's `[confirm]`); `None`: the
    /// detector alone decides.
    pub confirm: Option<ConfirmConfig>,
    /// Consecutive heartbeats that bring a `down` node back `up`.
    pub rise: u8,
    pub network: Network,
    /// Named sets of nodes, in declaration order, for faults to refer to by name.
    pub groups: Vec<(String, Selector)>,
    pub faults: Vec<Fault>,
}

impl Default for Scenario {
    /// A hundred nodes on a LAN for ten minutes, phi accrual with Akka's defaults, and 2 % of
    /// the nodes crashing at random times between the second and the ninth minute.
    fn default() -> Self {
        Scenario {
            name: "default".into(),
            description: String::new(),
            seed: 1,
            nodes: 100,
            duration: Duration::from_secs(600),
            interval: Duration::from_secs(1),
            jitter: 0.05,
            detector: DetectorConfig::Phi(Arc::new(PhiAccrualConfig::default())),
            confirm: None,
            rise: 2,
            network: Network::default(),
            groups: Vec::new(),
            faults: vec![Fault::Crash {
                nodes: Selector::Percent(2.0),
                at: When::Between(Duration::from_secs(60), Duration::from_secs(540)),
                restart_after: None,
            }],
        }
    }
}

impl Scenario {
    /// The settings of the unchanged core monitor for this scenario.
    pub fn monitor_config(&self) -> MonitorConfig {
        MonitorConfig {
            detector: self.detector.clone(),
            rise: self.rise,
            max_nodes: (self.nodes as usize).max(1),
            confirm: self.confirm.clone(),
            ..MonitorConfig::default()
        }
    }
}

/// What the simulator does with the core's [`DetectorConfig`] besides running it: the knob a
/// sweep moves, and the line the report shows.
pub trait DetectorKnob {
    /// The knob a sweep moves: phi's down threshold, or the fixed timeout's multiplier.
    fn threshold(&self) -> f64;
    /// The same detector with its knob at `threshold`. For phi the suspect level follows
    /// when it would exceed the new threshold.
    fn with_threshold(&self, threshold: f64) -> DetectorConfig;
    /// The thresholds a sweep tries by default: phi 1 to 16, multipliers 1 to 5 by halves.
    fn default_sweep(&self) -> Vec<f64>;
    /// The detector and its settings in one line: `phi (threshold 8, suspect 3, ...)`.
    fn describe(&self) -> String;
}

impl DetectorKnob for DetectorConfig {
    fn threshold(&self) -> f64 {
        match self {
            DetectorConfig::Phi(config) => config.threshold,
            DetectorConfig::Fixed(config) => config.multiplier,
        }
    }

    fn with_threshold(&self, threshold: f64) -> DetectorConfig {
        match self {
            DetectorConfig::Phi(config) => DetectorConfig::Phi(Arc::new(PhiAccrualConfig {
                threshold,
                suspect_threshold: config.suspect_threshold.min(threshold),
                ..PhiAccrualConfig::clone(config)
            })),
            DetectorConfig::Fixed(config) => DetectorConfig::Fixed(Arc::new(FixedTimeoutConfig {
                multiplier: threshold,
                ..FixedTimeoutConfig::clone(config)
            })),
        }
    }

    fn default_sweep(&self) -> Vec<f64> {
        match self {
            DetectorConfig::Phi(_) => (1..=16).map(f64::from).collect(),
            DetectorConfig::Fixed(_) => (2..=10).map(|half| f64::from(half) / 2.0).collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            DetectorConfig::Phi(c) => format!(
                "phi (threshold {}, suspect {}, min std dev {}, acceptable pause {})",
                c.threshold,
                c.suspect_threshold,
                format_duration(c.min_std_deviation),
                format_duration(c.acceptable_pause)
            ),
            DetectorConfig::Fixed(c) => {
                format!("fixed (multiplier {}, grace {})", c.multiplier, format_duration(c.grace))
            }
        }
    }
}

/// The network between the agents and the monitor. Every node's path has its own random
/// stream and its own burst state.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub latency: Latency,
    /// Independent chance that a datagram is lost.
    pub loss: f64,
    /// Independent chance that a datagram arrives twice (the copy has its own latency).
    pub duplicate: f64,
    /// Bursts of loss, if any.
    pub burst: Option<Burst>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency: Latency::LogNormal { median: Duration::from_micros(200), sigma: 0.8 },
            loss: 0.001,
            duplicate: 0.0,
            burst: None,
        }
    }
}

/// One-way latency of a datagram. Reordering is not configured: it follows from latencies
/// that vary more than the gap between two sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    Constant(Duration),
    /// Normal with this mean and standard deviation, truncated at zero (drawn again while
    /// negative).
    Normal {
        mean: Duration,
        sd: Duration,
    },
    /// Log-normal: `median * exp(sigma * Z)`. The long tail of a LAN: sigma 1 puts the 99.99th
    /// percentile about 41 times above the median.
    LogNormal {
        median: Duration,
        sigma: f64,
    },
    /// Pareto with this scale (the minimum) and shape: a heavier tail than log-normal; the
    /// chance of exceeding `k * scale` is `k^-shape`.
    Pareto {
        scale: Duration,
        shape: f64,
    },
}

impl Latency {
    /// Parses `constant 1ms`, `normal 20ms 5ms`, `lognormal 300us 0.8`, `pareto 200us 1.5`,
    /// or a bare duration (constant).
    pub fn parse(spec: &str) -> Result<Latency, String> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let bad = || {
            format!(
                "latency {spec:?} is not one of \"constant 1ms\", \"normal 20ms 5ms\", \"lognormal 300us 0.8\", \"pareto 200us 1.5\""
            )
        };
        let number = |text: &str| text.parse::<f64>().ok().filter(|x| x.is_finite() && *x > 0.0);
        let latency = match words.as_slice() {
            [one] => Latency::Constant(parse_duration(one)?),
            ["constant", d] => Latency::Constant(parse_duration(d)?),
            ["normal", mean, sd] => Latency::Normal { mean: parse_duration(mean)?, sd: parse_duration(sd)? },
            ["lognormal", median, sigma] => {
                Latency::LogNormal { median: parse_duration(median)?, sigma: number(sigma).ok_or_else(bad)? }
            }
            ["pareto", scale, shape] => {
                Latency::Pareto { scale: parse_duration(scale)?, shape: number(shape).ok_or_else(bad)? }
            }
            _ => return Err(bad()),
        };
        Ok(latency)
    }

    /// One latency drawn from `rng`.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        let seconds = match *self {
            Latency::Constant(d) => return d,
            Latency::Normal { mean, sd } => {
                // Truncation by rejection keeps the shape; after a few misses (a mean far
                // below zero, which validation forbids) clamp rather than loop.
                let (mean, sd) = (mean.as_secs_f64(), sd.as_secs_f64());
                (0..8).map(|_| mean + sd * rng.normal()).find(|x| *x >= 0.0).unwrap_or(0.0)
            }
            Latency::LogNormal { median, sigma } => median.as_secs_f64() * (sigma * rng.normal()).exp(),
            Latency::Pareto { scale, shape } => scale.as_secs_f64() * (1.0 - rng.f64()).powf(-1.0 / shape),
        };
        // Cap at an hour: a tail draw beyond that is the same as a loss for any detector.
        Duration::from_secs_f64(seconds.min(3600.0))
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Latency::Constant(d) => write!(f, "constant {}", format_duration(d)),
            Latency::Normal { mean, sd } => {
                write!(f, "normal {} {}", format_duration(mean), format_duration(sd))
            }
            Latency::LogNormal { median, sigma } => {
                write!(f, "lognormal {} {sigma}", format_duration(median))
            }
            Latency::Pareto { scale, shape } => write!(f, "pareto {} {shape}", format_duration(scale)),
        }
    }
}

/// Bursts of loss on each path: a Gilbert-Elliott channel in continuous time. A path stays
/// good for an exponential time (mean `mean_good`), then bad for an exponential time (mean
/// `mean_bad`), and loses each datagram with chance `loss` while bad (on top of the
/// network's independent loss).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    pub mean_good: Duration,
    pub mean_bad: Duration,
    pub loss: f64,
}

/// Which nodes a fault or group applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    All,
    /// This many nodes, picked at random (from the fault's or group's own stream).
    Count(u32),
    /// This percentage of the nodes, rounded to the nearest node, picked at random.
    Percent(f64),
    /// The nodes of a named group.
    Group(String),
    /// These node indices (0-based).
    List(Vec<u32>),
}

impl Selector {
    /// Parses `all`, `12`, `10%`, or a group name.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text == "all" {
            return Ok(Selector::All);
        }
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Selector::Percent(p)),
                _ => Err(format!("{text:?} is not a percentage between 0% and 100%")),
            };
        }
        if let Ok(count) = text.parse::<u32>() {
            return Ok(Selector::Count(count));
        }
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(format!("{text:?} is not a node count, a percentage or a group name"));
        }
        Ok(Selector::Group(text.to_string()))
    }
}

/// An instant of the run, or a range within which each node draws its own instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    At(Duration),
    /// Uniformly between the two, independently for each node.
    Between(Duration, Duration),
}

impl When {
    /// Parses `60s` or `60s..540s`.
    pub fn parse(text: &str) -> Result<When, String> {
        match text.split_once("..") {
            Some((from, to)) => {
                let (from, to) = (parse_duration(from.trim())?, parse_duration(to.trim())?);
                if from > to {
                    return Err(format!("range {text:?} ends before it starts"));
                }
                Ok(When::Between(from, to))
            }
            None => Ok(When::At(parse_duration(text.trim())?)),
        }
    }
}

/// Which way a partition cuts. In central mode only agents send (heartbeats go to the
/// monitor), so `FromMonitor` changes nothing yet; it is kept for peer mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Both,
    ToMonitor,
    FromMonitor,
}

/// A fault, as data.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The nodes stop sending (their process dies), and start again as a new generation
    /// `restart_after` later if set.
    Crash { nodes: Selector, at: When, restart_after: Option<Duration> },
    /// The nodes' watched process dies while their agent lives on: the agent sends an exit
    /// report three times (at 0, 20 and 100 ms, like `rollcall agent`), each copy delayed or
    /// lost like any datagram, and the monitor declares the node down at the first that
    /// arrives. If every copy is lost, silence finds the node as after a `Crash`. Peer mode
    /// has no exit reports: there, this is a `Crash`.
    ProcessCrash { nodes: Selector, at: When, restart_after: Option<Duration> },
    /// The nodes restart: a new generation, the sequence starting over. A crashed node comes
    /// back; a running one restarts at once.
    Restart { nodes: Selector, at: When },
    /// The nodes send nothing from `from` for `length` (a GC pause, SIGSTOP), then send
    /// once and resume their rhythm (no burst of the missed heartbeats, like the agent).
    Pause { nodes: Selector, from: When, length: Duration },
    /// Random pauses: each node stalls at the times of a Poisson process of mean spacing
    /// `every`, for a length log-uniform between `min` and `max`.
    Pauses { nodes: Selector, every: Duration, min: Duration, max: Duration },
    /// The path between the nodes and the monitor is cut during `[from, to)`.
    Partition { nodes: Selector, from: Duration, to: Duration, direction: Direction },
    /// Each datagram the nodes send during `[from, to)` leaves up to `delay` late
    /// (uniformly): a sender starved of CPU.
    Slow { nodes: Selector, from: Duration, to: Duration, delay: Duration },
    /// The nodes' clocks run at `factor` times the real rate: they send every
    /// `interval * factor` while declaring `interval`.
    Drift { nodes: Selector, factor: f64 },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::ProcessCrash { .. } => "process-crash",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Pauses { .. } => "pauses",
            Fault::Partition { .. } => "partition",
            Fault::Slow { .. } => "slow",
            Fault::Drift { .. } => "drift",
        }
    }

    pub fn nodes(&self) -> &Selector {
        match self {
            Fault::Crash { nodes, .. }
            | Fault::ProcessCrash { nodes, .. }
            | Fault::Restart { nodes, .. }
            | Fault::Pause { nodes, .. }
            | Fault::Pauses { nodes, .. }
            | Fault::Partition { nodes, .. }
            | Fault::Slow { nodes, .. }
            | Fault::Drift { nodes, .. } => nodes,
        }
    }
}

/// Parses a span in the one grammar of every settings file
/// ([`rollcall_core::settings::parse_duration`]): `1.5s`, `250ms`, `10m`, `1h 30m`. Negative
/// and unitless numbers are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    rollcall_core::settings::parse_duration(text).map_err(|error| error.to_string())
}

/// A span in the largest unit that keeps it short: `1.5s`, `250ms`, `10m`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (value, unit) = if s == 0.0 {
        (0.0, "s")
    } else if s >= 3600.0 && s % 3600.0 == 0.0 {
        (s / 3600.0, "h")
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        (s / 60.0, "m")
    } else if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "us")
    };
    // Round to what a person would write; trailing zeros go.
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}
