//! `rollcall bench` at a tiny scale: it runs every phase against a real monitor, and every
//! anchor (wrk, a real etcd, a real redis-server), and prints a well-formed report whose
//! figures are sane. Timings are what the benchmark reports, not what this test judges:
//! nothing here compares a duration or a rate with a goal.

use serde_json::Value;
use std::process::Command;

#[test]
fn bench_reports_every_figure_at_a_tiny_scale() {
    let dir = tempfile::Builder::new().prefix("rollcall-bench-it-").tempdir().expect("create a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["bench", "--nodes", "200", "--interval", "100ms", "--saturate", "1s", "--steady", "1s"])
        .args(["--rounds", "2"])
        // The anchors and the HTTP ceilings, briefly: only that each is measured is checked.
        .args(["--wrk", "1s", "--etcd", "1s", "--redis", "1s"])
        .args(["--detector", "fixed", "--detection-timeout", "30s", "--json", "--dir"])
        .arg(dir.path())
        .env("ROLLCALL_LOG", "warn")
        .output()
        .expect("run rollcall bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rollcall bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("the report is not JSON ({error}): {}", String::from_utf8_lossy(&output.stdout))
    });

    let number = |path: &str| -> f64 {
        let value = path.split('.').fold(&report, |value, key| &value[key]);
        value.as_f64().unwrap_or_else(|| panic!("{path} is not a number in {report:#}"))
    };
    assert_eq!(number("config.nodes"), 200.0);
    assert!(number("baseline.accepted") > 0.0, "the raw receiver counted datagrams");
    assert!(number("baseline.per_second") > 0.0);
    assert!(number("throughput.accepted") > 0.0, "the monitor accepted heartbeats under saturation");
    assert_eq!(number("throughput.rejected"), 0.0, "fresh, authenticated heartbeats are never refused");
    let ratio = number("ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "ratio present: {ratio}");
    // CPU time per million, the monitor's and the raw receiver's, from the same run: present
    // and positive (how they compare is the benchmark's to report, not this test's to judge).
    for figure in ["throughput.cpu_seconds_per_million", "baseline.cpu_seconds_per_million", "cpu_ratio"] {
        let value = number(figure);
        assert!(value.is_finite() && value > 0.0, "{figure} present and positive: {value}");
    }
    // Two saturation rounds: the first is the one above, the median lies between them.
    let rounds = report["cpu_rounds"].as_array().expect("cpu_rounds is a list");
    assert_eq!(rounds.len(), 2, "one round per --rounds: {report:#}");
    let ratios: Vec<f64> = rounds.iter().map(|round| round["ratio"].as_f64().expect("a ratio")).collect();
    assert!(ratios.iter().all(|ratio| ratio.is_finite() && *ratio > 0.0), "{ratios:?}");
    assert_eq!(ratios[0], number("cpu_ratio"), "the first round is the baseline and throughput phases");
    assert!((number("cpu_ratio_median") - (ratios[0] + ratios[1]) / 2.0).abs() < 1e-9, "{ratios:?}");
    assert!(number("steady.heartbeats") > 0.0);
    assert!(number("steady.cpu_seconds") >= 0.0);
    assert!(number("steady.rss_bytes") > 0.0, "RSS read from /proc");
    assert!(number("steady.peak_rss_bytes") >= number("steady.rss_bytes"));
    assert_eq!(number("detection.stopped"), 2.0, "1% of the nodes are stopped");
    assert!(number("detection.down") >= 1.0, "a stopped node is declared down: {report:#}");
    assert!(number("detection.lag_ms.count") >= 1.0);
    assert!(number("detection.lag_ms.p50") >= 0.0, "a transition is never noticed before its deadline");
    assert_eq!(number("restart.nodes_restored"), 200.0, "every node is restored from the store");
    assert!(number("restart.ready_s") > 0.0);
    assert!(report["machine"]["cpus"].as_u64().is_some_and(|cpus| cpus >= 1));

    for load in ["http_pings", "http_ceiling", "http_empty_handler", "etcd_gateway"] {
        assert!(number(&format!("{load}.requests_per_second")) > 0.0, "{load} measured: {report:#}");
    }
    assert!(number("etcd_grpc.leases") >= 200.0, "one lease per node");
    let grpc_runs = report["etcd_grpc"]["runs"].as_array().expect("etcd_grpc.runs is a list");
    assert_eq!(grpc_runs.len(), 3, "1, 4 and 16 streams: {report:#}");
    for run in grpc_runs {
        assert!(run["keep_alives"].as_u64().is_some_and(|n| n > 0), "every stream count answered: {run:#}");
    }
    assert_eq!(
        number("etcd_grpc.per_second"),
        grpc_runs.iter().filter_map(|run| run["per_second"].as_f64()).fold(0.0, f64::max)
    );
    let redis = report["redis"].as_array().expect("redis is a list");
    assert_eq!(redis.len(), 2, "without persistence, then with the append-only file: {report:#}");
    for run in redis {
        assert!(run["per_second"].as_f64().is_some_and(|rate| rate > 0.0), "redis measured: {run:#}");
    }
    assert!(report["versus"]["strongest_anchor"].is_string());
    for ratio in ["heartbeats_per_strongest", "heartbeats_per_etcd_grpc", "pings_per_ceiling"] {
        let value = number(&format!("versus.{ratio}"));
        assert!(value.is_finite() && value > 0.0, "{ratio} present: {value}");
    }
}
