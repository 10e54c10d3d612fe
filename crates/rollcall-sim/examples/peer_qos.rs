//! The two tables of docs/PEER.md, "Measured figures": every shipped peer scenario (their
//! own size, 1,000 peers for 10 minutes, seed 1), first as `rollcall sim` summarises it
//! (detection, false downs and suspicions, traffic, CPU time, checks), then in Chen, Toueg
//! and Aguilera's terms, as Markdown rows. Each peer's view of each other peer counts as
//! one detector.
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
    let mut reports = Vec::new();
    for text in SHIPPED {
        let (text, settings) = split_scenario(text)?;
        let settings = settings.ok_or("a shipped peer scenario says mode = \"peer\"")?;
        let scenario = Scenario::from_toml(&text)?;
        let scenario = Scenario {
            nodes: nodes.unwrap_or(scenario.nodes),
            duration: minutes.map_or(scenario.duration, |m| Duration::from_secs(m * 60)),
            ..scenario
        };
        let before = cpu_time();
        let outcome = simulate(&scenario, &settings, &mut |_| {})?;
        let cpu = cpu_time().zip(before).map(|(after, before)| after.saturating_sub(before));
        reports.push((outcome.report, cpu));
    }
    println!(
        "| scenario | crashes | detection p50 | p99 | max | false-down episodes | false suspicions (episodes / peer-views) | messages/node/s | bytes/node/s | CPU time | checks |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let s = |ms: Option<f64>| ms.map_or("-".into(), |ms| format!("{:.1} s", ms / 1e3));
    for (r, cpu) in &reports {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {:.2} | {:.0} | {} | {} |",
            r.scenario,
            r.crashes,
            s(r.detection_p50_ms),
            s(r.detection_p99_ms),
            s(r.detection_max_ms),
            r.false_down_episodes,
            r.false_suspect_episodes,
            r.false_suspects,
            r.messages_per_node_s,
            r.bytes_per_node_s,
            cpu.map_or("-".into(), |cpu| format!("{:.0} s", cpu.as_secs_f64())),
            if r.violations.is_empty() {
                "pass".to_string()
            } else {
                format!("FAIL ({})", r.violations.len())
            },
        );
    }
    println!();
    println!(
        "| scenario | T_D | down: mistakes | T_MR | T_M | P_A | suspect or down: mistakes | T_MR | T_M | P_A | peer-pair hours judged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let s = |ms: Option<f64>| ms.map_or("-".into(), |ms| format!("{:.2} s", ms / 1e3));
    for (r, _) in &reports {
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

/// This thread's CPU time so far (Linux's `/proc/thread-self/schedstat`, whose first field
/// is nanoseconds on a CPU), or `None` elsewhere: the simulator runs on this one thread.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
