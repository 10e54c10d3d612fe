//! The command line: every subcommand, its flags and its help text.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "rollcall",
    version,
    about = "Heartbeat-based failure detection: know within seconds when a node dies.",
    long_about = "Heartbeat-based failure detection.\n\n\
        Agents send small authenticated UDP heartbeats; a monitor judges them with an adaptive \
        detector (phi accrual or a fixed timeout) and records every node's transitions \
        (new, up, suspect, down, left, paused).",
    after_help = "Examples:\n  \
        rollcall keygen > rollcall.key\n  \
        rollcall monitor --udp 127.0.0.1:7400 --http 127.0.0.1:7401 --data-dir ./data --key-file rollcall.key\n  \
        rollcall agent --node web-1 --monitor 127.0.0.1:7400 --key-file rollcall.key --interval 1s\n  \
        curl -s 127.0.0.1:7401/v1/nodes\n  \
        rollcall demo"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). ROLLCALL_LOG overrides (tracing filter syntax).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a new random key line (ID:HEX) for a key file.
    #[command(
        after_help = "Examples:\n  rollcall keygen > rollcall.key\n  rollcall keygen --id 2 >> rollcall.key   # rotation: the last key sends"
    )]
    Keygen(KeygenArgs),
    /// Run the monitor: receive heartbeats, judge nodes, serve the HTTP API.
    #[command(after_help = "Examples:\n  \
        rollcall monitor --udp 0.0.0.0:7400 --http 127.0.0.1:7401 --data-dir /var/lib/rollcall --key-file /etc/rollcall/rollcall.key\n  \
        rollcall monitor --config /etc/rollcall/rollcall.toml --detector fixed\n\n\
        The monitor prints one line 'rollcall monitor listening udp=ADDR http=ADDR' on stdout once ready.")]
    Monitor(MonitorArgs),
    /// Run an agent: send heartbeats for one node to one or more monitors.
    #[command(after_help = "Examples:\n  \
        rollcall agent --node web-1 --monitor 10.0.0.2:7400 --key-file rollcall.key --interval 1s --label group=web --label addr=10.0.0.5:8080\n  \
        rollcall agent --node db-1 --monitor mon-a:7400 --monitor mon-b:7400 --key-file rollcall.key\n\n\
        Ctrl-C (SIGINT) or SIGTERM sends a goodbye: the node becomes 'left' and nobody is paged.")]
    Agent(AgentArgs),
    /// Run the whole story on loopback: a monitor, five agents, a crash, a restart, a goodbye.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Key id (0-65535) to write before the key.
    #[arg(long, default_value_t = 1)]
    pub id: u16,
}

#[derive(Args, Debug, Clone)]
pub struct MonitorArgs {
    /// UDP address to receive heartbeats on.
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// HTTP address for the API and metrics.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Directory for the store (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key file: one `ID:HEX` line per key; the last one is used to send.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Failure detector.
    #[arg(long, value_enum)]
    pub detector: Option<DetectorKind>,
    /// TOML file with every other setting (see rollcall.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// Phi accrual (adaptive; Akka's defaults).
    Phi,
    /// Fixed timeout: down after interval x multiplier + grace.
    Fixed,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// This node's id (1-64 bytes, no spaces).
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Monitor address; repeat to send to several monitors.
    #[arg(long = "monitor", value_name = "ADDR", required = true)]
    pub monitors: Vec<String>,
    /// Key file: one `ID:HEX` line per key; the last one is used to send.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Heartbeat interval (200ms, 1s, 2s...).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// A label to send with every heartbeat, as key=value; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Exit after the story instead of running until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("label {text:?} is not KEY=VALUE")),
    }
}
