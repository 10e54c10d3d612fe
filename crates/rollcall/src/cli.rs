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
        rollcall agent --node db-1 --monitor mon-a:7400 --monitor mon-b:7400 --key-file rollcall.key\n  \
        rollcall agent --node api-1 --monitor 10.0.0.2:7400 --key-file rollcall.key --restart -- ./api-server --port 8080\n  \
        rollcall agent --node db-1 --monitor 10.0.0.2:7400 --key-file rollcall.key --watch-pid \"$(pidof -s postgres)\"\n\n\
        Ctrl-C (SIGINT) or SIGTERM sends a goodbye: the node becomes 'left' and nobody is paged.\n\
        A watched process (-- COMMAND, --watch-pid) that exits is reported at once: the node becomes 'down (process-exited)'.")]
    Agent(AgentArgs),
    /// Run a peer: members watch each other (SWIM + Lifeguard), no monitor needed.
    #[command(after_help = "Examples:\n  \
        rollcall peer --name a --bind 127.0.0.1:7946 --key-file rollcall.key\n  \
        rollcall peer --name b --bind 127.0.0.1:7956 --http 127.0.0.1:7957 --key-file rollcall.key \\\n      \
        --join 127.0.0.1:7946\n  \
        rollcall peer --name web-1 --bind 0.0.0.0:7946 --advertise 10.0.0.5:7946 --cluster prod \\\n      \
        --join 10.0.0.2:7946 --key-file /etc/rollcall/rollcall.key\n  \
        curl -s 127.0.0.1:7947/v1/nodes\n\n\
        The peer prints one line 'rollcall peer listening udp=ADDR http=ADDR' on stdout once ready.\n\
        Ctrl-C (SIGINT) or SIGTERM leaves gracefully: the others see it 'left', not 'down'.\n\
        See docs/PEER-SHELL.md for a walk-through.")]
    Peer(PeerArgs),
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
    /// Explain one node: its observed heartbeat statistics, when it would be declared, the
    /// expected time to declare a crash and false-down rate, and the goals (docs/DETECTION.md).
    #[command(after_help = "Examples:\n  rollcall explain web-1\n  rollcall explain web-1 --json")]
    Explain(ExplainArgs),
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
    /// Several monitors (`[cluster]`, docs/HA.md): who leads, the fencing token, etcd's health.
    #[command(
        after_help = "Examples:\n  rollcall cluster status\n  rollcall cluster status --api http://m2:7401 --json"
    )]
    Cluster(ClusterArgs),
    /// Hold the alerts of matching nodes or checks for a while (transitions are still recorded).
    #[command(after_help = "Examples:\n  rollcall silence add group=web --for 2h --reason 'deploy'\n  \
        rollcall silence add node=db-1 --until 2026-12-01T08:00:00Z\n  rollcall silence list\n  rollcall silence rm 3\n\n\
        Matchers: node=ID, check=ID, or any label (group=web); all must match.\n\
        When a silence ends while an incident it held is still open, its alert is sent then.\n\
        Writes need the API token: --token or ROLLCALL_TOKEN.")]
    Silence(SilenceArgs),
    /// List held leases: holder, node, fencing token, time left (docs/LEASES.md).
    #[command(after_help = "Examples:\n  rollcall leases\n  rollcall leases --json")]
    Leases(ClientArgs),
    /// Leases with fencing tokens: run a command only while holding one (docs/LEASES.md).
    Lease(LeaseArgs),
    /// Internal: runs a `lease run` command and kills it if `lease run` dies (even by SIGKILL).
    #[command(hide = true)]
    LeaseGuard(LeaseGuardArgs),
    /// Keep a proxy's upstream list current: render a group's up members into a config file
    /// and reload the proxy whenever the list changes.
    #[command(after_help = "Examples:\n  \
        rollcall upstreams --group web --format nginx --output /etc/nginx/conf.d/web.conf --reload 'nginx -s reload'\n  \
        rollcall upstreams --group web --format haproxy --output /etc/haproxy/web.cfg --reload 'systemctl reload haproxy'\n  \
        rollcall upstreams --group web --format lines --once   # print the addresses and exit\n\n\
        Members are nodes with the label group=GROUP; their address is their addr=HOST:PORT label.")]
    Upstreams(UpstreamsArgs),
    /// Load benchmark: N impersonated nodes against a raw receiver and a real monitor
    /// (throughput ratio, CPU, memory, detection lag, alert latency, restart time).
    #[command(after_help = "Examples:\n  \
        rollcall bench --nodes 100000\n  \
        rollcall bench --nodes 1000000 --json > bench.json\n  \
        rollcall bench --nodes 1000 --wrk 10s --etcd 10s --redis 10s\n\n\
        See docs/BENCHMARKS.md for what each figure means.")]
    Bench(crate::bench::BenchArgs),
    /// The benchmark's generator alone, against monitors running elsewhere (for the figures of
    /// docs/HA.md); reads `stop N` commands on stdin.
    #[command(hide = true)]
    Loadgen(crate::bench::loadgen::LoadgenArgs),
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
pub struct ExplainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub id: String,
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
    #[arg(long = "for", value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration)]
    pub duration: Option<Duration>,
    /// ID is a check, not a node.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct SilenceArgs {
    #[command(subcommand)]
    pub action: SilenceAction,
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// This monitor's view of its cluster: role, leader, fencing token, members, etcd.
    Status(ClientArgs),
}

#[derive(Subcommand, Debug)]
pub enum SilenceAction {
    /// Add a silence: KEY=VALUE matchers, and --for or --until.
    Add(SilenceAddArgs),
    /// List active silences.
    List(ClientArgs),
    /// End a silence now.
    Rm(SilenceRmArgs),
}

#[derive(Args, Debug)]
pub struct SilenceAddArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// node=ID, check=ID, or LABEL=VALUE; all must match.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub matchers: Vec<String>,
    /// How long (2h, 30m).
    #[arg(
        long = "for",
        value_name = "DURATION",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    pub duration: Option<String>,
    /// Until when (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Why (shown in the list).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub action: LeaseAction,
}

#[derive(Subcommand, Debug)]
pub enum LeaseAction {
    /// Campaign for a lease and run COMMAND only while holding it, with
    /// ROLLCALL_FENCING_TOKEN set; stop it when the lease is lost, then campaign again.
    #[command(after_help = "Examples:\n  \
        rollcall lease run --name billing-leader --node billing-1 --ttl 10s -- ./billing-worker\n  \
        rollcall lease run --name cron-leader --node web-2 --ttl 30s --grace 5s -- sh -c 'run-cron-jobs'\n\n\
        The node must be registered with the monitor and up: run `rollcall agent --node billing-1` on this host.\n\
        The lease is renewed every TTL/3. Measured on this process's own monotonic clock, the tenure ends at\n\
        (when the last acknowledged renewal was sent) + TTL - drift margin (TTL/1000 + 50 ms): COMMAND gets\n\
        SIGTERM --grace before that end and SIGKILL at it, whatever happens to the network. A renewal the\n\
        monitor refuses (the node was declared down, the lease expired) stops COMMAND at once.\n\
        COMMAND runs in its own process group; the whole group is signalled.\n\
        When COMMAND exits by itself, the lease is released and `lease run` exits with its code.\n\
        Writes need the API token: --token or ROLLCALL_TOKEN.")]
    Run(LeaseRunArgs),
}

#[derive(Args, Debug)]
pub struct LeaseGuardArgs {
    /// The `lease run` process: when it is gone, the command is killed.
    #[arg(long)]
    pub parent: u32,
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LeaseRunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The lease's name.
    #[arg(long)]
    pub name: String,
    /// The node this runs on, as its agent calls it: the lease is released as soon as the
    /// monitor declares it down.
    #[arg(long)]
    pub node: String,
    /// Who holds the lease (default: NODE-PID); unique among the contenders.
    #[arg(long)]
    pub holder: Option<String>,
    /// How long a tenure lasts without renewal (1s to 1h).
    #[arg(long, default_value = "10s", value_parser = rollcall_core::settings::parse_duration)]
    pub ttl: Duration,
    /// Time COMMAND gets between SIGTERM and SIGKILL (default: TTL/4, at most 5 s); under TTL/2.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration)]
    pub grace: Option<Duration>,
    /// With `[cluster]`: another monitor of the cluster, asked when the current one cannot
    /// be reached (repeatable; etcd holds the lease, so any monitor renews it).
    #[arg(long = "also-api", value_name = "URL")]
    pub also_api: Vec<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SilenceRmArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub id: u64,
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
    /// Probe a suspect node before declaring it down (the `[confirm]` section's settings).
    #[arg(long)]
    pub confirm: bool,
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
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "1s")]
    pub interval: Duration,
    /// A label to send with every heartbeat, as key=value; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Take the heartbeat interval the monitor advises (derived from its `[goals]`), within
    /// --min-interval and --max-interval; --interval is where it starts.
    #[arg(long)]
    pub follow_advice: bool,
    /// With --follow-advice: the shortest interval to accept.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "100ms", requires = "follow_advice")]
    pub min_interval: Duration,
    /// With --follow-advice: the longest interval to accept.
    #[arg(long, value_parser = rollcall_core::settings::parse_duration, default_value = "1m", requires = "follow_advice")]
    pub max_interval: Duration,
    /// Testing: lose this fraction (0 to 1) of heartbeats before they leave (all but the
    /// first), while probes are still answered: a path that drops heartbeats, or a dying
    /// heartbeat loop.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, hide = true)]
    pub drop_heartbeats: f64,
    /// Watch this process (through a pidfd, so a reused pid cannot fool it): when it exits,
    /// tell the monitors at once (the node goes down without waiting for silence) and stop.
    #[arg(long, value_name = "PID", conflicts_with = "command")]
    pub watch_pid: Option<i32>,
    /// With a command: start it again when it exits, as a new generation (at most one start
    /// a second), instead of stopping.
    #[arg(long, requires = "command")]
    pub restart: bool,
    /// A command to start and watch, after `--`: its exit is reported to the monitors at once,
    /// with its exit code or signal, and the agent exits with the same status.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
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
    #[arg(long, value_parser = rollcall_core::settings::parse_duration)]
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
    /// Probe suspects before declaring them down (the monitor's `--confirm`, default
    /// settings; a scenario's `[confirm]` section sets them).
    #[arg(long)]
    pub confirm: bool,
    /// Also run the scenario at a range of thresholds and plot the trade-off curve.
    #[arg(long)]
    pub sweep: bool,
    /// Directory for report.json and the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "sim-out")]
    pub out: PathBuf,
    /// Central (agents and one monitor) or peer (SWIM + Lifeguard peers watching each other).
    #[arg(long, default_value = "central", value_parser = ["central", "peer"])]
    pub mode: String,
}

/// `rollcall peer`: one member of a cluster whose members watch each other.
#[derive(Args, Debug, Clone)]
pub struct PeerArgs {
    /// This member's name, unique in the cluster (1-64 bytes, no spaces).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// UDP address to probe and gossip on (port 0: the OS picks one).
    #[arg(long, value_name = "ADDR")]
    pub bind: SocketAddr,
    /// The address other members reach this one at; needed when --bind is a wildcard
    /// (0.0.0.0, or :: for IPv6). Port 0 means the bound port.
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<SocketAddr>,
    /// A member to join through (HOST:PORT); repeatable. Omit it on the first member.
    #[arg(long = "join", value_name = "ADDR")]
    pub join: Vec<String>,
    /// Key file: one `ID:HEX` line per key; the last one is used to send. Every member of
    /// the cluster needs the same keys.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// HTTP address for the read API and metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7947")]
    pub http: SocketAddr,
    /// The cluster's name: members of another cluster are rejected even with the same key.
    #[arg(long, value_name = "NAME", default_value = "rollcall")]
    pub cluster: String,
    /// SWIM's protocol period: one member is probed per period.
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "1s")]
    pub probe_interval: Duration,
    /// How long a direct ping waits before others are asked to probe (default: half the
    /// probe interval).
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration)]
    pub probe_timeout: Option<Duration>,
    /// Members asked to probe indirectly when a direct ping goes unanswered.
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub indirect_probes: u32,
    /// Lifeguard's suspicion multiplier: the shortest suspicion lasts this many probe
    /// intervals (times log10 of the cluster size, at least 1); the longest, 12 times that.
    /// memberlist uses 4 (docs/PEER.md says why rollcall can use 1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub suspicion_mult: u32,
    /// While there is news to spread, send it to two random members this often, besides
    /// piggybacking it on pings and acks; `0s` turns these gossip rounds off.
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "500ms")]
    pub gossip_interval: Duration,
    /// How often a page of the member table is exchanged with a random member.
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "30s")]
    pub sync_interval: Duration,
    /// How often one member believed down is contacted, so that healed partitions are noticed.
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "2s")]
    pub reconnect_interval: Duration,
    /// Seed of the peer's random choices (default: random, logged at start), to replay an
    /// incident in the simulator.
    #[arg(long)]
    pub seed: Option<u64>,
    /// TOML file with the alerting settings: the monitor's `[[sink]]` and `[alerts]`
    /// sections, and `data_dir`; nothing else. With sinks, this peer alerts on its own view.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the peer's store of incidents and alerts (created if missing); needed
    /// when the config file has sinks, unless it sets data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most HTTP connections open at once; more are closed at once with a 503 (default:
    /// 1024, or fewer if the open files limit is low). The monitor's api.max_connections.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// An HTTP request's head must arrive within this (idle keep-alive connections close
    /// after it too).
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "10s")]
    pub header_timeout: Duration,
    /// An HTTP connection on which no byte moves either way for this long is closed.
    #[arg(long, value_name = "DURATION", value_parser = rollcall_core::settings::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("label {text:?} is not KEY=VALUE")),
    }
}
