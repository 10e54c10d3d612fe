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
    /// Simulate a fleet, a network and its faults in virtual time: detection times, false
    /// downs and traffic before deploying (see docs/SIMULATOR.md).
    #[command(after_help = "Examples:\n  \
        rollcall sim scenarios/lan.toml\n  \
        rollcall sim scenarios/lossy.toml --detector fixed --sweep --out ./sim-out\n  \
        rollcall sim --nodes 1000 --loss 1% --latency 'lognormal 20ms 0.5' --crash 2% --duration 10m\n\n\
        The same seed gives the same run: a failed check prints the ROLLCALL_SEED to replay it.")]
    Sim(SimArgs),
    /// List nodes and their states (from a running monitor).
    #[command(
        after_help = "Examples:\n  rollcall nodes\n  rollcall nodes --state down --json\n  rollcall nodes --label group=web"
    )]
    Nodes(NodesArgs),
    /// Show one node; with --expect, exit 1 unless it is in that state (for scripts).
    #[command(
        after_help = "Examples:\n  rollcall node web-1\n  rollcall node web-1 --expect up && echo healthy\n\n\
        Exit codes: 0 ok (or the expected state), 1 another state, 2 error (unknown node, no monitor)."
    )]
    Node(NodeArgs),
    /// Show transitions; --follow streams them as they happen.
    #[command(
        after_help = "Examples:\n  rollcall events\n  rollcall events --follow\n  rollcall events --kind check --json"
    )]
    Events(EventsArgs),
    /// List checks (jobs that ping over HTTP).
    Checks(ClientArgs),
    /// Put a node (or with --check, a check) in maintenance: no alerts until resumed.
    #[command(
        after_help = "Examples:\n  rollcall pause web-1 --for 2h\n  rollcall pause nightly-backup --check\n\n\
        Needs the API token: --token or ROLLCALL_TOKEN."
    )]
    Pause(PauseArgs),
    /// End a node's (or check's) maintenance; its deadlines restart from now.
    Resume(ResumeArgs),
    /// The monitor's own status: version, uptime, nodes by state, incidents, sinks.
    Status(ClientArgs),
    /// Keep a proxy's upstream list current: render a group's up members into a config file
    /// and reload the proxy whenever the list changes.
    #[command(after_help = "Examples:\n  \
        rollcall upstreams --group web --format nginx --output /etc/nginx/conf.d/web.conf --reload 'nginx -s reload'\n  \
        rollcall upstreams --group web --format haproxy --output /etc/haproxy/web.cfg --reload 'systemctl reload haproxy'\n  \
        rollcall upstreams --group web --format lines --once   # print the addresses and exit\n\n\
        Members are nodes with the label group=GROUP; their address is their addr=HOST:PORT label.")]
    Upstreams(UpstreamsArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rollcall completions bash > /etc/bash_completion.d/rollcall\n  rollcall completions zsh > \"${fpath[1]}/_rollcall\"\n  rollcall completions fish > ~/.config/fish/completions/rollcall.fish"
    )]
    Completions(CompletionsArgs),
}

/// How to reach a running monitor.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The monitor's HTTP address.
    #[arg(long, env = "ROLLCALL_API", default_value = "http://127.0.0.1:7401", global = true)]
    pub api: String,
    /// Bearer token for writes (pause, resume).
    #[arg(long, env = "ROLLCALL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only nodes in this state.
    #[arg(long)]
    pub state: Option<String>,
    /// Only nodes with this label (KEY=VALUE); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub id: String,
    /// Exit 1 unless the node is in this state.
    #[arg(long, value_name = "STATE")]
    pub expect: Option<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Keep running and print transitions as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// Only events after this id.
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    /// Only `node` or `check` transitions.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this node's (or check's) transitions.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub id: String,
    /// End the maintenance after this long (2h, 30m); without it, until resumed.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// ID is a check, not a node.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub id: String,
    /// ID is a check, not a node.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct UpstreamsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The group (the nodes' `group` label).
    #[arg(long)]
    pub group: String,
    /// What to render.
    #[arg(long, value_enum, default_value = "lines")]
    pub format: UpstreamFormat,
    /// Write here (atomically: a temporary file, then a rename); default: standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Run this command (through sh -c) after each change of the file.
    #[arg(long, value_name = "COMMAND")]
    pub reload: Option<String>,
    /// Render once and exit instead of following changes.
    #[arg(long)]
    pub once: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFormat {
    /// One HOST:PORT per line.
    Lines,
    /// An nginx `upstream GROUP { server ...; }` block.
    Nginx,
    /// An HAProxy `backend GROUP` section.
    Haproxy,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
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

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scenario file (TOML, see scenarios/); without one: 100 nodes on a LAN for 10 minutes,
    /// 2% of them crashing.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Random loss on every path: 0.01 or 1%.
    #[arg(long, value_name = "P")]
    pub loss: Option<String>,
    /// Latency: "constant 1ms", "normal 20ms 5ms", "lognormal 300us 0.8", "pareto 200us 1.5".
    #[arg(long, value_name = "SPEC")]
    pub latency: Option<String>,
    /// Crash N nodes (or P% of them) at random times between 10% and 90% of the run;
    /// replaces the scenario's crashes.
    #[arg(long, value_name = "N|P%")]
    pub crash: Option<String>,
    /// Cut N nodes (or P%) off from the monitor from 40% to 60% of the run; replaces the
    /// scenario's partitions.
    #[arg(long, value_name = "N|P%")]
    pub partition: Option<String>,
    /// Virtual time to simulate (10m, 1h...).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Seed of every random choice (a run is a pure function of it).
    #[arg(long, env = "ROLLCALL_SEED")]
    pub seed: Option<u64>,
    /// Failure detector (the scenario's settings are kept when the kind is the same).
    #[arg(long, value_enum)]
    pub detector: Option<DetectorKind>,
    /// Phi's threshold, or the fixed timeout's multiplier.
    #[arg(long, value_name = "X")]
    pub threshold: Option<f64>,
    /// Also run the scenario at a range of thresholds and plot the trade-off curve.
    #[arg(long)]
    pub sweep: bool,
    /// Directory for report.json and the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "sim-out")]
    pub out: PathBuf,
    /// Central (agents and one monitor) or peer (SWIM; not built yet).
    #[arg(long, default_value = "central", value_parser = ["central", "peer"])]
    pub mode: String,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("label {text:?} is not KEY=VALUE")),
    }
}
