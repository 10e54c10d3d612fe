//! `rollcall`: heartbeat-based failure detection. This file only parses the command line and
//! hands over to the subcommand; see ARCHITECTURE.md for the map.

use clap::Parser;
use rollcall::{agent, bench, cli, client, demo, keygen, lease, monitor, peer, sim, upstreams};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the HTTP stack's allocations per request cost a
/// tenth of the monitor's CPU under pings with glibc (docs/BENCHMARKS.md, session 12).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        cli::Command::Keygen(args) => done(keygen::run(&args)),
        cli::Command::Monitor(args) => done(monitor::main(args)),
        cli::Command::Agent(args) => agent::main(args),
        cli::Command::Peer(args) => done(peer::main(args)),
        cli::Command::Demo(args) => done(demo::main(args)),
        cli::Command::Sim(args) => done(sim::main(args)),
        cli::Command::Bench(args) => done(bench::main(args)),
        cli::Command::Loadgen(args) => done(bench::loadgen::main(args)),
        cli::Command::Nodes(args) => client::nodes(args),
        cli::Command::Node(args) => client::node(args),
        cli::Command::Explain(args) => client::explain(args),
        cli::Command::Events(args) => client::events(args),
        cli::Command::Checks(args) => client::checks(args),
        cli::Command::Pause(args) => client::pause(args),
        cli::Command::Resume(args) => client::resume(args),
        cli::Command::Status(args) => client::status(args),
        cli::Command::Silence(args) => client::silence(args),
        cli::Command::Cluster(args) => match args.action {
            cli::ClusterAction::Status(args) => client::cluster_status(args),
        },
        cli::Command::Leases(args) => lease::list(args),
        cli::Command::LeaseGuard(args) => lease::guard(args),
        cli::Command::Lease(args) => match args.action {
            cli::LeaseAction::Run(args) => lease::run(args),
        },
        cli::Command::Completions(args) => client::completions(args),
        cli::Command::Upstreams(args) => upstreams::main(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rollcall: {error:#}");
            ExitCode::from(client::EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLCALL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
