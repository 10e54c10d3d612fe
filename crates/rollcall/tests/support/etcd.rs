//! A real etcd cluster of three members on loopback, for the tests of `[cluster]`.
//!
//! Each member is an `etcd` process (Debian's `etcd-server`) with its own data directory in
//! the sandbox and OS-chosen ports; dropping the cluster kills them all. A missing `etcd`
//! fails the test with a message naming the package.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    members: Vec<Member>,
}

struct Member {
    name: String,
    client: String,
    process: Option<Child>,
    command: Vec<String>,
}

/// A port the OS says is free now (the member binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

impl Etcd {
    /// Starts three members and waits until the cluster answers.
    pub fn start(dir: &Path) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (cargo xtask test does)"
        );
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
        let token = format!("rollcall-test-{}", std::process::id());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client = format!("http://127.0.0.1:{client}");
                let peer = format!("http://127.0.0.1:{peer}");
                let command = vec![
                    format!("--name=e{i}"),
                    format!("--data-dir={}", dir.join(format!("etcd-{i}")).display()),
                    format!("--listen-client-urls={client}"),
                    format!("--advertise-client-urls={client}"),
                    format!("--listen-peer-urls={peer}"),
                    format!("--initial-advertise-peer-urls={peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".to_string(),
                    "--heartbeat-interval=100".to_string(),
                    "--election-timeout=1000".to_string(),
                    "--logger=zap".to_string(),
                    format!("--log-outputs={}", dir.join(format!("etcd-{i}.log")).display()),
                ];
                Member { name: format!("e{i}"), client, process: None, command }
            })
            .collect();
        let mut etcd = Etcd { members };
        for index in 0..3 {
            etcd.start_member(index);
        }
        etcd.wait_healthy(&[0, 1, 2]);
        etcd
    }

    /// The client URLs, as TOML array items.
    pub fn endpoints_toml(&self) -> String {
        self.members.iter().map(|member| format!("\"{}\"", member.client)).collect::<Vec<_>>().join(", ")
    }

    /// SIGKILLs one member.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut process) = self.members[index].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts a member again on its data directory.
    pub fn start_member(&mut self, index: usize) {
        let member = &mut self.members[index];
        let process = Command::new(ETCD)
            .args(&member.command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start etcd member {}: {error}", member.name));
        member.process = Some(process);
    }

    /// Waits until each of `members` answers `/health` with a healthy cluster.
    pub fn wait_healthy(&self, members: &[usize]) {
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let started = Instant::now();
        for &index in members {
            let url = format!("{}/health", self.members[index].client);
            loop {
                let healthy = client
                    .get(&url)
                    .call()
                    .ok()
                    .and_then(|mut response| response.body_mut().read_to_string().ok())
                    .is_some_and(|body| body.contains("\"health\":\"true\""));
                if healthy {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "etcd member {index} is not healthy after 30 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}
