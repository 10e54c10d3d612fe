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
}

struct Member {
    name: String,
    client: String,
    /// The `/health` URL: on the client URL, or (with TLS) on a plain-HTTP metrics URL, so
    /// that the harness needs no client certificate to ask.
    health: String,
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
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
        let token = format!("rollcall-test-{}", std::process::id());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                let client = format!("{scheme}://127.0.0.1:{client}");
                let peer = format!("http://127.0.0.1:{peer}");
                let mut command = vec![
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
                Member { name: format!("e{i}"), client, health, process: None, command }
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
