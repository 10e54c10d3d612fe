//! `cargo xtask`: the project's entry points for tests and CI.
//!
//! `cargo xtask test` is the one command that runs every check, on a fresh machine with
//! nothing installed by hand: it installs what the tests need, then runs formatting, lints,
//! the core-purity check, every test suite, and a bounded fuzz run. `.ci/run` calls it.

use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test        every check CI runs: fmt, clippy, core purity, all tests, bounded fuzzing
  fuzz [SECS] run each decoder's fuzz target (heartbeat, peer) for SECS seconds (default 60)
  bench       the benchmark suite (not part of `test`): microbenchmarks, then `rollcall bench`
              at each scale, HTTP pings with wrk and etcd lease keep-alives; JSON reports go to
              target/bench/ (see docs/BENCHMARKS.md)

environment:
  ROLLCALL_FUZZ_SECS     seconds of fuzzing in `test` (default 60)
  ROLLCALL_BENCH_SCALES  node counts for `bench`, comma-separated (default 1000,100000,1000000)";

/// Crates that must never depend on an async runtime or do I/O.
const CORE_CRATES: [&str; 2] = ["rollcall-detect", "rollcall-core"];
const FORBIDDEN_IN_CORE: [&str; 4] = ["tokio", "mio", "socket2", "async-std"];
/// rollcall-core's examples (`crates/rollcall-core/examples/`): each runs in CI.
const CORE_EXAMPLES: [&str; 3] = ["own_udp_loop", "swim_over_tokio", "virtual_clock"];
/// What only job checks need (cron, time zones): behind rollcall-core's `checks` feature.
const CHECKS_ONLY: [&str; 3] = ["chrono", "chrono-tz", "croner"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(),
        Some("fuzz") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            ensure_cargo_fuzz().and_then(|()| fuzz(secs))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result = std::result::Result<(), String>;

/// Debian packages the tests run for real, installed when missing.
const PACKAGES: [(&str, &str); 14] = [
    // Peer and partition tests run in network namespaces of their own (`ip netns`).
    ("iproute2", "/bin/ip"),
    // The alert sink's end-to-end test posts to a real Alertmanager.
    ("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager"),
    // `promtool check metrics` lints the real /metrics output.
    ("prometheus", "/usr/bin/promtool"),
    // The load-balancer integration drives a real nginx.
    ("nginx", "/usr/sbin/nginx"),
    // The dashboard's test drives a real headless browser.
    ("chromium", "/usr/bin/chromium"),
    // The peer test partitions a network namespace with nftables drop rules.
    ("nftables", "/usr/sbin/nft"),
    // `[cluster]` talks to etcd over gRPC: etcd-client's build compiles etcd's protobuf files
    // (protoc, and the well-known types it imports), and tests/cluster.rs runs a real etcd.
    ("protobuf-compiler", "/usr/bin/protoc"),
    ("libprotobuf-dev", "/usr/include/google/protobuf/descriptor.proto"),
    ("etcd-server", "/usr/bin/etcd"),
    // tests/cluster_tls.rs makes a CA and the certificates of an etcd with TLS.
    ("openssl", "/usr/bin/openssl"),
    // The checks' wall-clock test steps the monitor's clock with libfaketime.
    ("faketime", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    // tests/process_exit.rs runs docs/PROTOCOL.md's reference sender.
    ("python3", "/usr/bin/python3"),
    // tests/bench.rs measures every anchor briefly: pings and the HTTP ceilings with wrk,
    // etcd (above), and Redis with its own redis-benchmark (from redis-tools, which
    // redis-server depends on).
    ("wrk", "/usr/bin/wrk"),
    ("redis-server", "/usr/bin/redis-benchmark"),
];

fn test() -> Result {
    let started = Instant::now();
    step("packages", ensure_packages)?;
    step("cargo fmt --check", || cargo(&["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy", || cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    step("core purity", core_purity)?;
    // Tests that need a real tool fail, naming its package, when it is missing: the
    // packages step above installs every one.
    step("cargo test", || cargo(&["test", "--workspace", "--all-targets"]))?;
    step("doc tests", || cargo(&["test", "--workspace", "--doc"]))?;
    step("cargo doc", || {
        run(Command::new(env!("CARGO"))
            .args(["doc", "--no-deps", "--workspace"])
            .env("RUSTDOCFLAGS", "-D warnings"))
    })?;
    // The core's examples run, not only compile: each ends by itself within seconds.
    step("examples", || {
        CORE_EXAMPLES
            .iter()
            .try_for_each(|example| cargo(&["run", "-q", "-p", "rollcall-core", "--example", example]))
    })?;
    let fuzz_secs = std::env::var("ROLLCALL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    step("fuzz (bounded)", || ensure_cargo_fuzz().and_then(|()| fuzz(fuzz_secs)))?;
    println!("xtask: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Debian packages the benchmark suite uses: the HTTP load tool and the anchors users
/// compare against (etcd lease keep-alives, Redis `SET PX` with its redis-benchmark).
const BENCH_PACKAGES: [(&str, &str); 3] =
    [("wrk", "/usr/bin/wrk"), ("etcd-server", "/usr/bin/etcd"), ("redis-server", "/usr/bin/redis-benchmark")];

/// `cargo xtask bench`: numbers, not verdicts. Nothing here fails on a slow figure.
fn bench() -> Result {
    let started = Instant::now();
    step("bench packages", || install_missing(&BENCH_PACKAGES))?;
    step("microbenchmarks: detector", || cargo(&["bench", "-p", "rollcall-detect", "--bench", "detector"]))?;
    step("microbenchmarks: hot path", || cargo(&["bench", "-p", "rollcall-core", "--bench", "hot_path"]))?;
    step("build (release)", || cargo(&["build", "--release", "-p", "rollcall"]))?;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = format!("{root}/target/bench");
    std::fs::create_dir_all(&out).map_err(|error| format!("cannot create {out}: {error}"))?;
    let scales = std::env::var("ROLLCALL_BENCH_SCALES").unwrap_or_else(|_| "1000,100000,1000000".into());
    for (index, nodes) in scales.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let mut args = vec!["bench", "--nodes", nodes, "--json"];
        // The HTTP figures do not depend on the node count: measure them once.
        if index == 0 {
            args.extend(["--wrk", "10s", "--etcd", "10s", "--redis", "10s"]);
        }
        step(&format!("rollcall bench --nodes {nodes}"), || {
            let output = Command::new(format!("{root}/target/release/rollcall"))
                .args(&args)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|error| format!("cannot run rollcall bench: {error}"))?;
            if !output.status.success() {
                return Err(format!("rollcall bench exited with {}", output.status));
            }
            let file = format!("{out}/bench-{nodes}.json");
            std::fs::write(&file, &output.stdout).map_err(|error| format!("cannot write {file}: {error}"))?;
            println!("{}", String::from_utf8_lossy(&output.stdout));
            println!("written to {file}");
            Ok(())
        })?;
    }
    println!("xtask: benchmarks done in {:.0?}", started.elapsed());
    Ok(())
}

fn ensure_packages() -> Result {
    install_missing(&PACKAGES)
}

fn install_missing(packages: &[(&str, &str)]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, path)| !std::path::Path::new(path).exists())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(name, _)| *name).collect();
        println!("all present: {}", names.join(", "));
        return Ok(());
    }
    println!("installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn step(name: &str, run: impl FnOnce() -> Result) -> Result {
    println!("\n==> {name}");
    let started = Instant::now();
    run().map_err(|error| format!("{name} failed: {error}"))?;
    println!("==> {name}: ok ({:.1?})", started.elapsed());
    Ok(())
}

fn cargo(args: &[&str]) -> Result {
    run(Command::new(env!("CARGO")).args(args))
}

fn run(command: &mut Command) -> Result {
    let status = command.status().map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} exited with {status}")) }
}

/// The sans-IO core must not pull in an async runtime or socket crate, even indirectly; and
/// without its `checks` feature it must neither need nor compile job checks' calendar crates.
fn core_purity() -> Result {
    for krate in CORE_CRATES {
        let tree = dependency_names(&["--package", krate])?;
        if let Some(name) = tree.iter().find(|name| FORBIDDEN_IN_CORE.contains(&name.as_str())) {
            return Err(format!("{krate} depends on {name}: the core must stay free of I/O and async"));
        }
        println!("{krate}: {} crates in its tree, none of {FORBIDDEN_IN_CORE:?}", tree.len());
    }
    let lean = dependency_names(&["--package", "rollcall-core", "--no-default-features"])?;
    if let Some(name) = lean.iter().find(|name| CHECKS_ONLY.contains(&name.as_str())) {
        return Err(format!("rollcall-core without `checks` still depends on {name}"));
    }
    println!("rollcall-core without `checks`: {} crates, none of {CHECKS_ONLY:?}", lean.len());
    cargo(&["check", "--package", "rollcall-core", "--no-default-features", "--lib", "--examples"])
}

/// The names of the crates in `cargo tree`'s normal dependency tree for `selection`.
fn dependency_names(selection: &[&str]) -> std::result::Result<Vec<String>, String> {
    let output = Command::new(env!("CARGO"))
        .arg("tree")
        .args(selection)
        .args(["--edges", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .map_err(|error| format!("cannot run cargo tree: {error}"))?;
    if !output.status.success() {
        return Err(format!("cargo tree {selection:?} failed"));
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    Ok(tree.lines().map(|line| line.split_whitespace().next().unwrap_or("").to_owned()).collect())
}

fn ensure_cargo_fuzz() -> Result {
    let installed =
        Command::new(env!("CARGO")).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    println!("installing cargo-fuzz (once per machine)");
    cargo(&["install", "cargo-fuzz", "--locked"])
}

/// Runs each decoder's fuzz target (the heartbeat datagram, the peer datagram) for a bounded
/// time. `-s none`: no sanitizer, so it runs on stable Rust.
fn fuzz(secs: u64) -> Result {
    for target in ["decode", "peer"] {
        run(Command::new(env!("CARGO"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"))
            .args(["fuzz", "run", target, "-s", "none", "--", &format!("-max_total_time={secs}")]))?;
    }
    Ok(())
}
