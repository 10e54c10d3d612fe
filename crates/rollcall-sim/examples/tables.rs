//! Prints the summary of every shipped scenario with both detectors as a Markdown table:
//! the figures in docs/SIMULATOR.md.
//!
//! `cargo run --release -p rollcall-sim --example tables [NODES]` (default 1000 nodes).

use rollcall_core::DetectorConfig;
use rollcall_sim::{Report, Scenario, simulate};
use std::sync::Arc;

const SHIPPED: [&str; 5] = [
    include_str!("../../../scenarios/lan.toml"),
    include_str!("../../../scenarios/wan.toml"),
    include_str!("../../../scenarios/lossy.toml"),
    include_str!("../../../scenarios/gc-pauses.toml"),
    include_str!("../../../scenarios/partition.toml"),
];

fn main() -> Result<(), String> {
    let nodes: Option<u32> =
        std::env::args().nth(1).map(|a| a.parse().map_err(|_| "NODES is a number")).transpose()?;
    println!("{}", Report::MARKDOWN_HEADER);
    for text in SHIPPED {
        let scenario = Scenario::from_toml(text)?;
        let scenario = Scenario { nodes: nodes.unwrap_or(scenario.nodes), ..scenario };
        for detector in [scenario.detector.clone(), DetectorConfig::Fixed(Arc::new(Default::default()))] {
            let outcome = simulate(&Scenario { detector, ..scenario.clone() }, &mut |_| {})?;
            println!("{}", outcome.report.markdown_row());
        }
    }
    Ok(())
}
