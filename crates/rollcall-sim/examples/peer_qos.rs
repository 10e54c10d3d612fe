//! The quality-of-service table of docs/PEER.md: every shipped peer scenario (their own
//! size, 1,000 peers for 10 minutes, seed 1) in Chen, Toueg and Aguilera's terms, as
//! Markdown rows. Each peer's view of each other peer counts as one detector.
//!
//! `cargo run --release -p rollcall-sim --example peer_qos [NODES] [MINUTES]`.

use core::time::Duration;
use rollcall_sim::Scenario;
use rollcall_sim::peer::{simulate, split_scenario};
use rollcall_sim::qos::{format_accuracy, format_recurrence};

const SHIPPED: [&str; 5] = [
    include_str!("../../../scenarios/peer-lan.toml"),
    include_str!("../../../scenarios/peer-memberlist.toml"),
    include_str!("../../../scenarios/peer-lossy.toml"),
    include_str!("../../../scenarios/peer-partition.toml"),
    include_str!("../../../scenarios/peer-slow.toml"),
];

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let nodes: Option<u32> = args.next().map(|a| a.parse().map_err(|_| "NODES is a number")).transpose()?;
    let minutes: Option<u64> =
        args.next().map(|a| a.parse().map_err(|_| "MINUTES is a number")).transpose()?;
    println!(
        "| scenario | T_D | down: mistakes | T_MR | T_M | P_A | suspect or down: mistakes | T_MR | T_M | P_A | peer-pair hours judged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for text in SHIPPED {
        let (text, settings) = split_scenario(text)?;
        let settings = settings.ok_or("a shipped peer scenario says mode = \"peer\"")?;
        let scenario = Scenario::from_toml(&text)?;
        let scenario = Scenario {
            nodes: nodes.unwrap_or(scenario.nodes),
            duration: minutes.map_or(scenario.duration, |m| Duration::from_secs(m * 60)),
            ..scenario
        };
        let outcome = simulate(&scenario, &settings, &mut |_| {})?;
        let r = &outcome.report;
        let s = |ms: Option<f64>| ms.map_or("-".into(), |ms| format!("{:.2} s", ms / 1e3));
        let (down, either) = (&r.qos.down, &r.qos.suspect_or_down);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.scenario,
            s(down.detection_mean_ms),
            down.mistakes,
            down.mistake_recurrence_s.map_or("-".into(), format_recurrence),
            s(down.mistake_duration_mean_ms),
            format_accuracy(down.query_accuracy),
            either.mistakes,
            either.mistake_recurrence_s.map_or("-".into(), format_recurrence),
            s(either.mistake_duration_mean_ms),
            format_accuracy(either.query_accuracy),
            down.alive_node_hours,
        );
    }
    Ok(())
}
