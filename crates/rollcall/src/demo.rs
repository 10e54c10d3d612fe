//! `rollcall demo`: the whole story on loopback in one command: a monitor, five agents, a
//! crash, a restart, a goodbye, narrated as a timeline, then left running to look around.

use crate::cli::DemoArgs;
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENTS: [(&str, &str, &str); 5] = [
    ("web-1", "web", "127.0.0.1:8081"),
    ("web-2", "web", "127.0.0.1:8082"),
    ("web-3", "web", "127.0.0.1:8083"),
    ("db-1", "db", "127.0.0.1:5432"),
    ("db-2", "db", "127.0.0.1:5433"),
];
/// The node the story crashes and restarts, and the one it stops gracefully.
const CRASHED: &str = "web-2";
const LEAVING: &str = "db-2";
/// Every wait in the story gives up after this long, with a message saying what it waited for.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn main(args: DemoArgs) -> anyhow::Result<()> {
    let temp;
    let dir: PathBuf = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("rollcall-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let mut story = Story::start(&dir)?;
    story.tell()?;
    if args.exit {
        return Ok(());
    }
    println!();
    println!("Everything keeps running. Look around:");
    println!("  curl -s http://{}/v1/nodes", story.http);
    println!("  curl -s http://{}/v1/events", story.http);
    println!("  curl -s http://{}/metrics", story.http);
    println!(
        "  sqlite3 {} 'select * from transitions'",
        dir.join("data").join(rollcall_store::FILE_NAME).display()
    );
    println!("Press Ctrl-C to stop.");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // While we wait, keep narrating whatever happens (for example an agent killed by hand).
    runtime.block_on(async {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let shutdown = crate::shutdown::signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => { let _ = story.print_new_events(); }
            }
        }
    });
    println!("\nstopping: agents say goodbye, the monitor shuts down cleanly");
    Ok(())
}

/// The processes of the demo, and the timeline's clock. Dropping it stops every child.
struct Story {
    exe: PathBuf,
    dir: PathBuf,
    start: Instant,
    monitor: Child,
    udp: String,
    http: String,
    agents: Vec<(String, Child)>,
    last_event: i64,
    /// (node, new state) of every transition narrated so far.
    seen: Vec<(String, String)>,
}

impl Story {
    fn start(dir: &Path) -> anyhow::Result<Story> {
        let exe = std::env::current_exe().context("cannot find the rollcall executable")?;
        let start = Instant::now();
        let key_file = dir.join("rollcall.key");
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).context("reading the OS random source")?;
        std::fs::write(&key_file, format!("{}\n", rollcall_core::Key::generate_line(1, &secret)))?;
        let log = std::fs::File::create(dir.join("monitor.log"))?;
        let mut monitor = Command::new(&exe)
            .args(["monitor", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--key-file")
            .arg(&key_file)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start the monitor")?;
        let stdout = monitor.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let field =
            |name: &str| line.split_whitespace().find_map(|word| word.strip_prefix(name)).map(str::to_string);
        let (Some(udp), Some(http)) = (field("udp="), field("http=")) else {
            let _ = monitor.kill();
            bail!("the monitor did not start; see {}", dir.join("monitor.log").display());
        };
        let story = Story {
            exe,
            dir: dir.to_path_buf(),
            start,
            monitor,
            udp,
            http,
            agents: Vec::new(),
            last_event: 0,
            seen: Vec::new(),
        };
        story.say(&format!(
            "monitor listening: heartbeats on udp {}, API on http://{}",
            story.udp, story.http
        ));
        story.say(&format!("data and logs in {}", dir.display()));
        Ok(story)
    }

    fn tell(&mut self) -> anyhow::Result<()> {
        let mark = self.seen.len();
        for (node, _, _) in AGENTS {
            self.start_agent(node)?;
        }
        self.say("started 5 agents (1 s interval, phi accrual detector with Akka's defaults)");
        let all_up: Vec<(&str, &str)> = AGENTS.iter().map(|(node, _, _)| (*node, "up")).collect();
        self.wait_for_events(&all_up, mark)?;

        let mark = self.seen.len();
        self.say(&format!("kill -9 {CRASHED}: its heartbeats stop without a goodbye"));
        self.kill_agent(CRASHED, Signal::SIGKILL)?;
        self.wait_for_events(&[(CRASHED, "down")], mark)?;

        let mark = self.seen.len();
        self.say(&format!("restarting {CRASHED}: a new generation, so a restart, not a replay"));
        self.start_agent(CRASHED)?;
        self.wait_for_events(&[(CRASHED, "up")], mark)?;

        let mark = self.seen.len();
        self.say(&format!("Ctrl-C to {LEAVING}: it says goodbye, so it leaves and nobody is paged"));
        self.kill_agent(LEAVING, Signal::SIGINT)?;
        self.wait_for_events(&[(LEAVING, "left")], mark)?;

        let nodes = self.nodes()?;
        println!();
        println!("  {:<8} {:<8} {:<10} {:>14}  labels", "node", "state", "generation", "last beat (ms)");
        for node in nodes.as_array().into_iter().flatten() {
            println!(
                "  {:<8} {:<8} {:<10} {:>14}  {}",
                node["id"].as_str().unwrap_or("?"),
                node["state"].as_str().unwrap_or("?"),
                node["generation"].as_u64().map(|g| format!("…{}", g % 100_000)).unwrap_or_default(),
                node["last_heartbeat_age_ms"].as_u64().map(|age| age.to_string()).unwrap_or_default(),
                node["labels"]
                    .as_object()
                    .map(|labels| labels
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default(),
            );
        }
        Ok(())
    }

    fn start_agent(&mut self, node: &str) -> anyhow::Result<()> {
        let (_, group, addr) = AGENTS.iter().find(|(id, _, _)| *id == node).expect("a demo node");
        let log = std::fs::File::create(self.dir.join(format!("agent-{node}.log")))?;
        let child = Command::new(&self.exe)
            .args(["agent", "--node", node, "--monitor", &self.udp, "--interval", "1s"])
            .arg("--key-file")
            .arg(self.dir.join("rollcall.key"))
            .args(["--label", &format!("group={group}"), "--label", &format!("addr={addr}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start agent {node}"))?;
        self.agents.retain(|(id, _)| id != node);
        self.agents.push((node.to_string(), child));
        Ok(())
    }

    fn kill_agent(&mut self, node: &str, signal: Signal) -> anyhow::Result<()> {
        let (_, child) = self.agents.iter_mut().find(|(id, _)| id == node).context("no such agent")?;
        signal_child(child, signal).with_context(|| format!("cannot signal agent {node}"))?;
        let _ = child.wait();
        Ok(())
    }

    fn nodes(&self) -> anyhow::Result<Value> {
        get_json(&format!("http://{}/v1/nodes", self.http))
    }

    /// Narrates transitions until, among those since `mark`, each `(node, state)` wanted has
    /// happened (the story reads the history, not the live state, so every step it tells is
    /// already recorded).
    fn wait_for_events(&mut self, wanted: &[(&str, &str)], mark: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            self.print_new_events()?;
            let happened = |&(node, state): &(&str, &str)| {
                self.seen[mark..].iter().any(|(id, to)| id == node && to == state)
            };
            if wanted.iter().all(happened) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gave up waiting for {wanted:?}; see the logs in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn print_new_events(&mut self) -> anyhow::Result<()> {
        let events = get_json(&format!("http://{}/v1/events?since={}", self.http, self.last_event))?;
        for event in events.as_array().into_iter().flatten() {
            self.last_event = event["id"].as_i64().unwrap_or(self.last_event);
            let text = |key: &str| event[key].as_str().unwrap_or("?").to_string();
            self.seen.push((text("node"), text("to")));
            self.say(&format!(
                "  {:<6} {} -> {} ({})",
                text("node"),
                text("from"),
                text("to"),
                text("reason")
            ));
        }
        Ok(())
    }

    fn say(&self, text: &str) {
        println!("[{:>6.1}s] {text}", self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Story {
    fn drop(&mut self) {
        // Agents first, so they say goodbye to a monitor that is still listening.
        for (_, child) in &mut self.agents {
            let _ = signal_child(child, Signal::SIGTERM);
        }
        for (_, child) in &mut self.agents {
            let _ = child.wait();
        }
        let _ = signal_child(&self.monitor, Signal::SIGTERM);
        let _ = self.monitor.wait();
    }
}

/// Signals one of the demo's own children, by its PID.
fn signal_child(child: &Child, signal: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal)
}

fn get_json(url: &str) -> anyhow::Result<Value> {
    let mut response = ureq::get(url).call().with_context(|| format!("GET {url}"))?;
    let body = response.body_mut().read_to_string()?;
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))
}
