//! A real etcd cluster of three members on loopback, for the tests of `[cluster]`.
//!
//! Each member is an `etcd` process (Debian's `etcd-server`) with its own data directory in
//! the sandbox and OS-chosen ports; dropping the cluster kills them all. A missing `etcd`
//! fails the test with a message naming the package.
//!
//! [`Etcd::start_tls`] serves clients over TLS and requires client certificates, with
//! [`Certs`] made by the `openssl` command-line tool (Debian's `openssl`, which `cargo xtask
//! test` installs); the members still talk to each other over plain HTTP on loopback.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";
const OPENSSL: &str = "/usr/bin/openssl";

pub struct Etcd {
    members: Vec<Member>,
    /// The members' data directories; removed when the cluster is dropped.
    _data: tempfile::TempDir,
}

/// How many times a cluster is started on fresh ports before the test fails.
const START_ATTEMPTS: usize = 3;
/// How long a started cluster has to report healthy.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(45);
/// How much of each member's log a failure message shows.
const LOG_TAIL_LINES: usize = 8;

struct Member {
    name: String,
    client: String,
    /// The `/health` URL: on the client URL, or (with TLS) on a plain-HTTP metrics URL, so
    /// that the harness needs no client certificate to ask.
    health: String,
    process: Option<Child>,
    command: Vec<String>,
    log: PathBuf,
}

/// A port the OS says is free now (the member binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

impl Etcd {
    /// Starts three members and waits until the cluster answers.
    pub fn start(dir: &Path) -> Etcd {
        Etcd::start_with(dir, None)
    }

    /// Starts three members that serve clients over TLS with `certs.server`, and accept only
    /// clients with a certificate signed by `certs.ca` (`--client-cert-auth`).
    pub fn start_tls(dir: &Path, certs: &Certs) -> Etcd {
        Etcd::start_with(dir, Some(certs))
    }

    fn start_with(dir: &Path, tls: Option<&Certs>) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (cargo xtask test does)"
        );
        // A member that cannot bind its port (another process took it between `free_port`
        // and the member's bind) or a cluster that does not elect within the deadline on a
        // loaded machine is started again, on fresh ports and fresh data directories.
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            let etcd = Etcd::launch(dir, tls, attempt);
            match etcd.healthy_within(&[0, 1, 2], HEALTHY_DEADLINE) {
                Ok(()) => return etcd,
                Err(failure) => failures.push(format!("attempt {}: {failure}", attempt + 1)),
            }
        }
        panic!("etcd did not start in {START_ATTEMPTS} attempts:\n{}", failures.join("\n"));
    }

    /// Spawns three members on fresh ports, without waiting for them.
    fn launch(dir: &Path, tls: Option<&Certs>, attempt: usize) -> Etcd {
        // The members' data lives on tmpfs when there is one: etcd fsyncs its log on every
        // write, and a shared CI disk can stall an fsync for seconds, long enough to lose
        // elections. What the tests kill and restart are processes; the data survives those.
        let data = tempfile::Builder::new()
            .prefix("rollcall-etcd-")
            .tempdir_in(if Path::new("/dev/shm").is_dir() { Path::new("/dev/shm") } else { dir })
            .expect("a directory for etcd's data");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
        let token = format!("rollcall-test-{}-{attempt}", std::process::id());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let client = format!("{scheme}://127.0.0.1:{client}");
                let peer = format!("http://127.0.0.1:{peer}");
                let log = dir.join(format!("etcd-{i}-attempt-{attempt}.log"));
                let mut command = vec![
                    format!("--name=e{i}"),
                    format!("--data-dir={}", data.path().join(format!("etcd-{i}")).display()),
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
                    format!("--log-outputs={}", log.display()),
                ];
                let health = match tls {
                    None => format!("{client}/health"),
                    Some(certs) => {
                        let metrics = format!("http://127.0.0.1:{}", free_port());
                        command.extend([
                            format!("--cert-file={}", certs.server.0.display()),
                            format!("--key-file={}", certs.server.1.display()),
                            format!("--trusted-ca-file={}", certs.ca.display()),
                            "--client-cert-auth".to_string(),
                            format!("--listen-metrics-urls={metrics}"),
                        ]);
                        format!("{metrics}/health")
                    }
                };
                Member { name: format!("e{i}"), client, health, process: None, command, log }
            })
            .collect();
        let mut etcd = Etcd { members, _data: data };
        for index in 0..3 {
            etcd.start_member(index);
        }
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
        // etcd's log goes to `--log-outputs`; what it says before its logger starts (a flag
        // it refuses, a port it cannot bind) goes to stderr, kept beside the log.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.log.with_extension("stderr"))
            .expect("a file for etcd's stderr");
        let process = Command::new(ETCD)
            .args(&member.command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("start etcd member {}: {error}", member.name));
        member.process = Some(process);
    }

    /// Waits until each of `members` answers `/health` with a healthy cluster.
    pub fn wait_healthy(&self, members: &[usize]) {
        if let Err(failure) = self.healthy_within(members, HEALTHY_DEADLINE) {
            panic!("{failure}");
        }
    }

    /// Polls `/health` of each of `members` until it reports a healthy cluster; fails early
    /// when a member's process has exited, with the end of each member's log.
    fn healthy_within(&self, members: &[usize], deadline: Duration) -> Result<(), String> {
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let started = Instant::now();
        for &index in members {
            let url = &self.members[index].health;
            loop {
                let healthy = client
                    .get(url)
                    .call()
                    .ok()
                    .and_then(|mut response| response.body_mut().read_to_string().ok())
                    .is_some_and(|body| body.contains("\"health\":\"true\""));
                if healthy {
                    break;
                }
                if let Some(exited) = self.exited_member() {
                    return Err(format!("etcd member {exited} exited\n{}", self.log_tails()));
                }
                if started.elapsed() >= deadline {
                    return Err(format!(
                        "etcd member {index} is not healthy after {} s\n{}",
                        deadline.as_secs(),
                        self.log_tails()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The index of a member whose process was started and has exited since.
    fn exited_member(&self) -> Option<usize> {
        self.members.iter().position(|member| {
            // `try_wait` needs `&mut`; a status read through `/proc` needs no lock.
            member.process.as_ref().is_some_and(|process| !process_alive(process.id()))
        })
    }

    /// The last lines of each member's log, for a failure message.
    fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|member| {
                let tail = |path: &Path| {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
                };
                let (log, stderr) = (tail(&member.log), tail(&member.log.with_extension("stderr")));
                format!("--- {} ({}):\n{stderr}\n{log}", member.name, member.log.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Whether a child process is still running (a zombie counts as exited).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        // The state is the field after the command name, which is in parentheses.
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(|c| c != 'Z')))
        .unwrap_or(false)
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// A test CA, a certificate for etcd (127.0.0.1 and localhost) and one for a client, signed
/// by it, and a second CA that signed nothing (a client trusting it must refuse etcd).
pub struct Certs {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
    pub other_ca: PathBuf,
}

/// The extensions each certificate needs (rustls checks them strictly: a CA marked as one,
/// the server's address as a subject alternative name, the right extended key usages). A
/// config of our own, so the system's openssl.cnf adds nothing.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

impl Certs {
    /// Generates everything in `dir` (P-256 keys in PKCS #8 PEM, valid for two days).
    pub fn generate(dir: &Path) -> Certs {
        assert!(
            Path::new(OPENSSL).exists(),
            "{OPENSSL} is missing: install Debian's openssl (cargo xtask test does)"
        );
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).expect("write openssl.cnf");
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        for ca in ["test-ca", "other-ca"] {
            openssl(
                dir,
                &format!(
                    "req -x509 -config openssl.cnf -extensions ca {key} -days 2 -subj /CN={ca} -keyout {ca}.key -out {ca}.pem"
                ),
            );
        }
        for (name, extensions, serial) in [("etcd", "server", 2), ("client", "client", 3)] {
            openssl(
                dir,
                &format!(
                    "req -new -config openssl.cnf {key} -subj /CN={name} -keyout {name}.key -out {name}.csr"
                ),
            );
            openssl(
                dir,
                &format!(
                    "x509 -req -in {name}.csr -CA test-ca.pem -CAkey test-ca.key -set_serial {serial} -days 2 \
                     -extfile openssl.cnf -extensions {extensions} -out {name}.pem"
                ),
            );
        }
        Certs {
            ca: dir.join("test-ca.pem"),
            server: (dir.join("etcd.pem"), dir.join("etcd.key")),
            client: (dir.join("client.pem"), dir.join("client.key")),
            other_ca: dir.join("other-ca.pem"),
        }
    }
}

/// Runs `openssl` in `dir` with `args`, split on whitespace (no argument has a space).
fn openssl(dir: &Path, args: &str) {
    let output = Command::new(OPENSSL)
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {OPENSSL}: {error}"));
    assert!(output.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&output.stderr));
}
