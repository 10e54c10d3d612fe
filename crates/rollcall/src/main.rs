//! `rollcall`: heartbeat-based failure detection. This file only parses the command line and
//! hands over to the subcommand; see ARCHITECTURE.md for the map.

use clap::Parser;

mod agent;
mod checks;
mod alerts;
mod cli;
mod clock;
mod demo;
mod keygen;
mod monitor;
mod settings;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        cli::Command::Keygen(args) => keygen::run(&args),
        cli::Command::Monitor(args) => monitor::main(args),
        cli::Command::Agent(args) => agent::main(args),
        cli::Command::Demo(args) => demo::main(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rollcall: {error:#}");
            std::process::ExitCode::FAILURE
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
