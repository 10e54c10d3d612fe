//! `compare`: runs the matrix of cells for each implementation and prints a markdown table
//! (or JSON with `--json`). A progress line goes to stderr.
//!
//! `cargo run --release -p rollcall-compare -- --nodes 50,200,1000 --loss 0,1,5 --slow no,yes
//! --impl rollcall,foca,chitchat --minutes 10 --seed 1`
//!
//! `--sweep` runs issue #15's sweep instead (sizes 5 to 1,000, loss 0 to 10 %, several seeds
//! per cell, see `sweep.rs`) and prints one pooled row per implementation and cell, with
//! rollcall's verdict against each anchor.

#![forbid(unsafe_code)]

use core::time::Duration;
use rollcall_compare::model::MIN_NODES;
use rollcall_compare::sweep::{self, Pooled, Verdict};
use rollcall_compare::{Cell, Impl, Summary, compare};
use serde::Serialize;
use std::io::Write;
use std::time::Instant as WallInstant;

const USAGE: &str = "usage: compare [--nodes 50,200,1000] [--loss 0,1,5] [--slow no,yes] \
[--impl rollcall,foca,chitchat] [--minutes 10] [--seed 1] [--json] [--trace]
       compare --sweep [--node-hours 100] [--seeds N] [--minutes M] [--nodes ..] [--loss ..] [--impl ..] [--seed 1] [--json]
  --loss is in percent; --impl also takes rollcall-a<N> (suspicion multiplier N) and memberlist
  (rollcall's peer with memberlist's LAN profile). --sweep defaults to --nodes 5,10,20,50,100,200,1000
  --loss 0,1,5,10 --slow no --impl rollcall,foca,memberlist, and picks minutes and seeds per size
  for about --node-hours of judged time per cell unless --minutes or --seeds say otherwise.
  --trace (without --sweep) prints to stderr, for each false down, every view of its subject around it.";

struct Options {
    nodes: Vec<u32>,
    loss: Vec<f64>,
    slow: Vec<bool>,
    impls: Vec<Impl>,
    minutes: Option<f64>,
    seed: u64,
    json: bool,
    sweep: bool,
    trace: bool,
    seeds: Option<u32>,
    node_hours: f64,
}

#[derive(Serialize)]
struct Row {
    implementation: String,
    nodes: u32,
    loss: f64,
    slow: bool,
    minutes: f64,
    seed: u64,
    deterministic: bool,
    wall_s: f64,
    #[serde(flatten)]
    summary: Summary,
}

fn main() {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if options.sweep {
        return run_sweep(&options);
    }
    let mut rows = Vec::new();
    for &nodes in &options.nodes {
        for &loss in &options.loss {
            for &slow in &options.slow {
                let cell = Cell {
                    nodes,
                    loss,
                    slow,
                    duration: Duration::from_secs_f64(options.minutes.unwrap_or(10.0) * 60.0),
                    seed: options.seed,
                };
                for &implementation in &options.impls {
                    rows.push(one(implementation, &cell));
                    if options.trace {
                        for line in rollcall_compare::trace(implementation, &cell) {
                            eprintln!("{line}");
                        }
                    }
                    if !options.json {
                        // Print as we go: a long matrix shows its rows before it ends.
                        if rows.len() == 1 {
                            println!("{}", header());
                        }
                        println!("{}", markdown(rows.last().expect("just pushed")));
                    }
                }
            }
        }
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
    }
}

#[derive(Serialize)]
struct JudgedCell {
    #[serde(flatten)]
    pooled: Pooled,
    vs_foca: Option<Verdict>,
    vs_memberlist: Option<Verdict>,
}

/// `--sweep`: per cell, every seed of every implementation, then one pooled row each.
fn run_sweep(options: &Options) {
    let (mut runs, mut cells) = (Vec::new(), Vec::new());
    let names: Vec<String> = options.impls.iter().map(Impl::name).collect();
    println!("{}", sweep::header(&names));
    for &nodes in &options.nodes {
        let (duration, seeds) = sweep::budget(nodes, options.node_hours);
        let duration = options.minutes.map_or(duration, |m| Duration::from_secs_f64(m * 60.0));
        let seeds = options.seeds.unwrap_or(seeds);
        for &loss in &options.loss {
            let mut per_impl: Vec<Vec<(Summary, f64)>> = vec![Vec::new(); options.impls.len()];
            for seed in options.seed..options.seed + u64::from(seeds) {
                let cell = Cell { nodes, loss, slow: false, duration, seed };
                for (i, &implementation) in options.impls.iter().enumerate() {
                    let row = one(implementation, &cell);
                    per_impl[i].push((row.summary.clone(), row.wall_s));
                    runs.push(row);
                }
            }
            let minutes = duration.as_secs_f64() / 60.0;
            let pooled: Vec<Pooled> = options
                .impls
                .iter()
                .zip(&per_impl)
                .map(|(implementation, runs)| Pooled::new(&implementation.name(), nodes, loss, minutes, runs))
                .collect();
            let anchor = |name: &str| pooled.iter().find(|p| p.implementation == name).cloned();
            let (foca, memberlist) = (anchor("foca"), anchor("memberlist"));
            // Rollcall's defaults and its α variants are judged; the anchors are not. The
            // table shows the first judged implementation's verdicts, the JSON every one.
            let mut shown = None;
            for row in &pooled {
                let judged = row.implementation.starts_with("rollcall");
                let vs = |anchor: &Option<Pooled>| {
                    anchor.as_ref().filter(|_| judged).map(|anchor| Verdict::judge(row, anchor))
                };
                let (vs_foca, vs_memberlist) = (vs(&foca), vs(&memberlist));
                if judged && shown.is_none() {
                    shown = Some((vs_foca, vs_memberlist));
                }
                cells.push(JudgedCell { pooled: row.clone(), vs_foca, vs_memberlist });
            }
            let (vs_foca, vs_memberlist) = shown.unwrap_or((None, None));
            println!("{}", sweep::markdown(&pooled, vs_foca, vs_memberlist));
            let _ = std::io::stdout().flush();
        }
    }
    if options.json {
        let all = serde_json::json!({ "cells": cells, "runs": runs });
        println!("{}", serde_json::to_string_pretty(&all).expect("rows serialise"));
    }
}

fn one(implementation: Impl, cell: &Cell) -> Row {
    let name = implementation.name();
    let label = format!("{name} n={} loss={}% slow={}", cell.nodes, cell.loss * 100.0, cell.slow);
    let started = WallInstant::now();
    let total = cell.duration.as_secs_f64();
    let summary = compare(implementation, cell, &mut |reached| {
        eprint!(
            "\r{label}: {:.0}/{total:.0} s virtual, {:.0} s wall   ",
            reached.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    });
    let wall_s = started.elapsed().as_secs_f64();
    eprintln!("\r{label}: done in {wall_s:.1} s wall{:20}", "");
    Row {
        implementation: name,
        nodes: cell.nodes,
        loss: cell.loss,
        slow: cell.slow,
        minutes: total / 60.0,
        seed: cell.seed,
        deterministic: implementation.deterministic(),
        wall_s,
        summary,
    }
}

fn header() -> String {
    "| impl | N | loss | slow | min | crashes | detected | p50 | p99 | max | false downs (verdicts / nodes) | downs of slow nodes | false suspicions (episodes / views) | msgs/node/s | bytes/node/s | wall |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .into()
}

fn markdown(row: &Row) -> String {
    let s = &row.summary;
    let time = |x: f64| if x.is_nan() { "-".to_string() } else { format!("{x:.1} s") };
    let suspicions = if row.implementation == "chitchat" {
        "n/a".to_string()
    } else {
        format!("{} / {}", s.false_suspicion_episodes, s.false_suspicion_views)
    };
    format!(
        "| {} | {} | {}% | {} | {} | {} | {}/{} | {} | {} | {} | {} / {} | {} | {} | {:.2} | {:.0} | {:.0} s |",
        row.implementation,
        row.nodes,
        row.loss * 100.0,
        if row.slow { "yes" } else { "no" },
        row.minutes,
        s.crashes,
        s.detected,
        s.pairs,
        time(s.detection_p50_s),
        time(s.detection_p99_s),
        time(s.detection_max_s),
        s.false_down_verdicts,
        s.false_down_nodes,
        s.slow_down_verdicts,
        suspicions,
        s.messages_per_node_s,
        s.bytes_per_node_s,
        row.wall_s,
    )
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        nodes: vec![50, 200, 1000],
        loss: vec![0.0, 0.01, 0.05],
        slow: vec![false, true],
        impls: vec![Impl::Rollcall { alpha: None }, Impl::Foca, Impl::Chitchat],
        minutes: None,
        seed: 1,
        json: false,
        sweep: false,
        trace: false,
        seeds: None,
        node_hours: 100.0,
    };
    if args.iter().any(|a| a == "--sweep") {
        options.nodes = sweep::SIZES.to_vec();
        options.loss = sweep::LOSSES.to_vec();
        options.slow = vec![false];
        options.impls = vec![Impl::Rollcall { alpha: None }, Impl::Foca, Impl::Memberlist];
        options.sweep = true;
    }
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--json" || flag == "--sweep" || flag == "--trace" {
            options.json |= flag == "--json";
            options.trace |= flag == "--trace";
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
        match flag.as_str() {
            "--nodes" => {
                options.nodes = list()
                    .map(|s| {
                        s.parse()
                            .ok()
                            .filter(|&n| n >= MIN_NODES)
                            .ok_or(format!("--nodes: {s:?} is not {MIN_NODES} or more"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--loss" => {
                options.loss = list()
                    .map(|s| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|p| (0.0..100.0).contains(p))
                            .map(|p| p / 100.0)
                            .ok_or(format!("--loss: {s:?} is not a percentage"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--slow" => {
                options.slow = list()
                    .map(|s| match s {
                        "no" => Ok(false),
                        "yes" => Ok(true),
                        _ => Err(format!("--slow: {s:?} is not yes or no")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--impl" => options.impls = list().map(Impl::parse).collect::<Result<_, _>>()?,
            "--minutes" => {
                options.minutes = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&m: &f64| m >= 1.0)
                        .ok_or(format!("--minutes: {value:?} is not 1 or more"))?,
                )
            }
            "--seeds" => {
                options.seeds = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n: &u32| n >= 1)
                        .ok_or(format!("--seeds: {value:?} is not 1 or more"))?,
                )
            }
            "--node-hours" => {
                options.node_hours = value
                    .parse()
                    .ok()
                    .filter(|&h: &f64| h > 0.0)
                    .ok_or(format!("--node-hours: {value:?} is not a positive number"))?
            }
            "--seed" => {
                options.seed = value.parse().map_err(|_| format!("--seed: {value:?} is not a number"))?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}
