//! The sweep of issue #15: every cluster size and loss rate, several seeds per cell, runs
//! pooled per (implementation, cell), and rollcall's defaults judged against each anchor
//! (foca's `new_lan`, and rollcall's peer with memberlist's profile) on two criteria: no
//! more false downs, and a faster median detection.
//!
//! A cell's seeds differ in everything drawn: which nodes crash, the network's losses and
//! latencies, the peers' own choices. Small clusters get more seeds, so that every cell
//! judges about the same healthy-node time and a zero means as much in one as in another.

use crate::Summary;
use core::time::Duration;
use serde::Serialize;

/// Cluster sizes of the sweep.
pub const SIZES: [u32; 7] = [5, 10, 20, 50, 100, 200, 1000];
/// Independent datagram loss rates of the sweep (fractions).
pub const LOSSES: [f64; 4] = [0.0, 0.01, 0.05, 0.10];
/// Fewest seeds per cell: one seed's crash plan is a small sample of detections.
pub const MIN_SEEDS: u32 = 3;

/// How long each run of an N-node cell lasts and how many seeds it gets, aiming at
/// `node_hours` of judged healthy-node time per cell: runs of 10 to 60 virtual minutes, at
/// least [`MIN_SEEDS`] seeds, and a quarter more than the naive count because crashed nodes
/// and the warm-up are not judged.
pub fn budget(nodes: u32, node_hours: f64) -> (Duration, u32) {
    let margin = 1.25 * node_hours;
    let minutes = (margin * 60.0 / (f64::from(MIN_SEEDS) * f64::from(nodes))).ceil().clamp(10.0, 60.0);
    let per_seed = f64::from(nodes) * minutes / 60.0;
    let seeds = ((margin / per_seed).ceil() as u32).max(MIN_SEEDS);
    (Duration::from_secs_f64(minutes * 60.0), seeds)
}

/// One implementation's runs over one cell's seeds, pooled.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pooled {
    pub implementation: String,
    pub nodes: u32,
    pub loss: f64,
    pub seeds: u32,
    pub minutes: f64,
    /// Judged healthy-node time, summed over seeds.
    pub node_hours: f64,
    pub crashes: usize,
    pub pairs: usize,
    pub detected: usize,
    /// Quantiles of every (crash, observer) detection of every seed together.
    pub detection_p50_s: f64,
    pub detection_p99_s: f64,
    pub detection_max_s: f64,
    pub false_down_verdicts: u64,
    /// Distinct (node, episode) per seed, summed over seeds.
    pub false_down_episodes: u64,
    pub false_suspicion_episodes: u64,
    /// Means over seeds.
    pub messages_per_node_s: f64,
    pub bytes_per_node_s: f64,
    pub wall_s: f64,
}

impl Pooled {
    /// Pools `runs` (one summary and its wall time per seed) of `implementation` over the
    /// cell (`nodes`, `loss`), each `minutes` long.
    pub fn new(implementation: &str, nodes: u32, loss: f64, minutes: f64, runs: &[(Summary, f64)]) -> Pooled {
        let mut pooled = Pooled {
            implementation: implementation.to_string(),
            nodes,
            loss,
            seeds: runs.len() as u32,
            minutes,
            ..Pooled::default()
        };
        let mut detections = Vec::new();
        for (summary, wall_s) in runs {
            pooled.node_hours += summary.node_hours;
            pooled.crashes += summary.crashes;
            pooled.pairs += summary.pairs;
            pooled.detected += summary.detected;
            pooled.false_down_verdicts += summary.false_down_verdicts;
            pooled.false_down_episodes += summary.false_down_episodes;
            pooled.false_suspicion_episodes += summary.false_suspicion_episodes;
            pooled.messages_per_node_s += summary.messages_per_node_s / runs.len() as f64;
            pooled.bytes_per_node_s += summary.bytes_per_node_s / runs.len() as f64;
            pooled.wall_s += wall_s;
            detections.extend_from_slice(&summary.detections);
        }
        detections.sort_by(f64::total_cmp);
        pooled.detection_p50_s = crate::metrics::quantile(&detections, 0.5);
        pooled.detection_p99_s = crate::metrics::quantile(&detections, 0.99);
        pooled.detection_max_s = detections.last().copied().unwrap_or(f64::NAN);
        pooled
    }
}

/// How a candidate fares against an anchor on the two criteria.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// No more false-down episodes and no more false-down verdicts than the anchor.
    pub no_more_false_downs: bool,
    /// A strictly smaller median detection than the anchor's (a cell where either detected
    /// nothing fails).
    pub faster: bool,
}

impl Verdict {
    pub fn judge(candidate: &Pooled, anchor: &Pooled) -> Verdict {
        Verdict {
            no_more_false_downs: candidate.false_down_episodes <= anchor.false_down_episodes
                && candidate.false_down_verdicts <= anchor.false_down_verdicts,
            faster: candidate.detection_p50_s < anchor.detection_p50_s,
        }
    }

    pub fn pass(&self) -> bool {
        self.no_more_false_downs && self.faster
    }

    fn cell(&self) -> &'static str {
        match (self.no_more_false_downs, self.faster) {
            (true, true) => "pass",
            (false, true) => "FAIL: downs",
            (true, false) => "FAIL: slower",
            (false, false) => "FAIL: both",
        }
    }
}

/// The sweep table's header, for implementations `names` in the order of each row.
pub fn header(names: &[String]) -> String {
    let names = names.join(" / ");
    format!(
        "| N | loss | seeds × min | node-hours | detection p50 ({names}) | p99 | false downs, episodes / verdicts ({names}) | false suspicions, episodes | msgs/node/s | rollcall vs foca | rollcall vs memberlist |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    )
}

/// One cell of the sweep table: every implementation's figures side by side (in the
/// header's order), then rollcall's verdicts against each anchor.
pub fn markdown(cell: &[Pooled], vs_foca: Option<Verdict>, vs_memberlist: Option<Verdict>) -> String {
    let time = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{x:.1} s") };
    let each = |f: &dyn Fn(&Pooled) -> String, sep: &str| cell.iter().map(f).collect::<Vec<_>>().join(sep);
    let verdict = |v: Option<Verdict>| v.map_or("-", |v| v.cell());
    let first = cell.first().cloned().unwrap_or_default();
    format!(
        "| {} | {}% | {} × {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
        first.nodes,
        first.loss * 100.0,
        first.seeds,
        first.minutes,
        first.node_hours,
        each(&|p| time(p.detection_p50_s), " / "),
        each(&|p| time(p.detection_p99_s), " / "),
        each(&|p| format!("{} / {}", p.false_down_episodes, p.false_down_verdicts), "; "),
        each(&|p| p.false_suspicion_episodes.to_string(), " / "),
        each(&|p| format!("{:.2}", p.messages_per_node_s), " / "),
        verdict(vs_foca),
        verdict(vs_memberlist),
    )
}
