//! `rollcall sim` as a user runs it: a scenario file (with confirmation), flags on top, the
//! report and the plots it writes, a sweep, and a mistake in the file.

mod support;

use serde_json::Value;
use support::Sandbox;

const SCENARIO: &str = r#"
name = "tiny-lan"
seed = 3
nodes = 40
duration = "3m"
interval = "1s"

[detector]
kind = "phi"
acceptable_pause = "0s"

[confirm]
probes = 3
probe_interval = "200ms"

[network]
latency = "lognormal 250us 1.0"
loss = 0.01

[[faults]]
kind = "crash"
nodes = 4
at = "30s..150s"
"#;

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

#[test]
fn a_scenario_file_runs_and_writes_its_report_and_plots() {
    let sandbox = Sandbox::new();
    let scenario = sandbox.write_file("scenario", "toml", SCENARIO);
    let out = sandbox.path().join("out");
    let run = sandbox.run_to_exit(&[
        "sim".into(),
        scenario.display().to_string(),
        "--nodes".into(),
        "30".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    assert!(run.status.success(), "rollcall sim failed:\n{}", run.stderr);
    // The summary names the scenario, the detector with its confirmation, and the figures.
    for words in ["tiny-lan", "confirm (3 probes", "detection"] {
        assert!(run.stdout.contains(words), "the summary lacks {words:?}:\n{}", run.stdout);
    }
    let report = read_json(&out.join("report.json"));
    let report = &report["report"];
    assert_eq!(report["nodes"], 30, "the flag wins over the file");
    assert_eq!(report["crashes"], 4);
    assert_eq!(report["detected"].as_u64(), Some(4), "{report}");
    assert_eq!(report["violations"].as_array().map(Vec::len), Some(0), "{report}");
    assert!(report["messages_per_node_s"].as_f64().unwrap() > 0.9);
    let svg = std::fs::read_to_string(out.join("detection.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");
}

#[test]
fn a_sweep_draws_the_trade_off_curve() {
    let sandbox = Sandbox::new();
    let out = sandbox.path().join("sweep");
    let run = sandbox.run_to_exit(&[
        "sim".into(),
        "--nodes".into(),
        "20".into(),
        "--duration".into(),
        "2m".into(),
        "--detector".into(),
        "fixed".into(),
        "--confirm".into(),
        "--sweep".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    assert!(run.status.success(), "rollcall sim --sweep failed:\n{}", run.stderr);
    let report = read_json(&out.join("report.json"));
    let detector = report["report"]["detector"].as_str().unwrap_or_default();
    assert!(
        detector.starts_with("fixed") && detector.contains("+ confirm"),
        "--confirm turns it on: {detector}"
    );
    let points = report["sweep"].as_array().expect("the sweep's points");
    assert!(points.len() >= 5, "{report}");
    let svg = std::fs::read_to_string(out.join("tradeoff.svg")).unwrap();
    assert_eq!(
        svg.matches(r#"class="point""#).count(),
        points.iter().filter(|p| !p["detection_p99_ms"].is_null()).count()
    );
}

#[test]
fn a_mistake_in_the_scenario_is_one_sentence_and_no_output() {
    let sandbox = Sandbox::new();
    let scenario = sandbox.write_file("bad", "toml", "nodes = 10\n[confirm]\nprobes = 0\n");
    let out = sandbox.path().join("never");
    let run = sandbox.run_to_exit(&[
        "sim".into(),
        scenario.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("confirm.probes must be at least 1"), "{}", run.stderr);
    assert!(!out.exists(), "nothing is written for a refused scenario");
}
