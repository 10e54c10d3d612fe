//! `rollcall peer` as real processes: five members watching each other over UDP.
//!
//! The peers run inside a network namespace this test creates (and deletes, also on panic),
//! each on its own loopback address (`127.0.0.11` to `127.0.0.15`), so that a partition is
//! an nftables drop rule between two sets of addresses that touches nothing outside the
//! namespace. The test reads the peers' HTTP APIs through a tiny client (bash's `/dev/tcp`)
//! run with `ip netns exec`. Without namespaces (not root, no `ip`) the test fails with a
//! message naming what it needs, like every test that needs a tool.
//!
//! Every step waits for a condition with a deadline; nothing sleeps to let things settle.

mod support;

use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{DEADLINE, PeerProcess, Sandbox, bin, promtool_check};

/// SWIM timing for the test: a protocol period of 200 ms (memberlist's LAN default is 1 s),
/// so a crash is declared within a few seconds; sync and reconnect often, so a healed
/// partition is noticed within about a second.
const TIMING: [&str; 6] =
    ["--probe-interval", "200ms", "--sync-interval", "1s", "--reconnect-interval", "500ms"];
/// The nftables table holding the partition's rules (inside the namespace).
const PARTITION_TABLE: &str = "rollcall_partition";

#[test]
fn five_peers_detect_a_crash_a_partition_and_a_leave() {
    let sandbox = Sandbox::new();
    let mut cluster = Cluster::start(&sandbox, 5);
    let took = cluster.wait_until("all five see each other up", DEADLINE, |views| {
        expect(views, &EVERYONE, &EVERYONE, &["up"])
    });
    eprintln!("all five up after {took:?}");
    crash_and_restart(&mut cluster);
    partition_and_heal(&cluster);
    hostile_input(&sandbox, &cluster);
    // A graceful leave: exit 0, and the others see `left`, not `down`.
    let status = cluster.peers[0].take().expect("p1 runs").stop(Signal::SIGTERM);
    assert!(status.success(), "p1 exits 0 after SIGTERM: {status}");
    let rest = [1, 2, 3, 4];
    cluster.wait_until("everyone sees p1 left", DEADLINE, |views| expect(views, &rest, &[0], &["left"]));
}

/// Every peer, by index.
const EVERYONE: [usize; 5] = [0, 1, 2, 3, 4];

/// SIGKILL p5: every other peer declares it down (through a suspicion); restarted under
/// the same name and address, it comes back up at a newer incarnation.
fn crash_and_restart(cluster: &mut Cluster) {
    let before = cluster.incarnation_seen_by(0, 4);
    cluster.crash(4);
    let survivors = [0, 1, 2, 3];
    let took = cluster.wait_until("every survivor sees p5 down", DEADLINE, |views| {
        expect(views, &survivors, &[4], &["down"])?;
        expect(views, &survivors, &survivors, &["up", "suspect"])
    });
    eprintln!("p5 down everywhere {took:?} after SIGKILL");
    let events = cluster.events(0, "p5");
    assert!(
        events.iter().any(|(from, to)| from == "suspect" && to == "down"),
        "p1 declared p5 down through a suspicion: {events:?}"
    );

    cluster.restart(4);
    let took = cluster.wait_until("everyone sees the restarted p5 up", DEADLINE, |views| {
        expect(views, &EVERYONE, &EVERYONE, &["up"])
    });
    let after = cluster.incarnation_seen_by(0, 4);
    assert!(after > before, "the restarted p5 speaks at a newer incarnation ({after} > {before})");
    eprintln!("restarted p5 up everywhere after {took:?} (incarnation {before} -> {after})");
}

/// A partition between {p1, p2} and {p3, p4, p5}: each side declares the other down; once
/// healed, the cluster converges back to all up.
fn partition_and_heal(cluster: &Cluster) {
    let (left, right) = ([0, 1], [2, 3, 4]);
    cluster.partition(&left, &right);
    let took = cluster.wait_until("each side sees the other down", DEADLINE, |views| {
        expect(views, &left, &right, &["down"])?;
        expect(views, &right, &left, &["down"])?;
        // Nobody on either side is condemned by its own side.
        expect(views, &left, &left, &["up", "suspect"])?;
        expect(views, &right, &right, &["up", "suspect"])
    });
    eprintln!("partition: each side down in the other's view after {took:?}");
    cluster.heal();
    let took = cluster.wait_until("the healed cluster is all up again", DEADLINE, |views| {
        expect(views, &EVERYONE, &EVERYONE, &["up"])
    });
    eprintln!("healed: all up again after {took:?}");
}

/// Garbage, a peer with a foreign key and one of another cluster: counted by reason at p2,
/// never admitted to its view; and the metrics pass promtool's lint.
fn hostile_input(sandbox: &Sandbox, cluster: &Cluster) {
    cluster.net.send_udp(cluster.peer(1).udp, &[b'x'; 200]);
    let foreign = sandbox.write_file("foreign", "key", &sandbox.keygen(1));
    let join = cluster.peer(1).udp.to_string();
    let intruders = [
        cluster.spawn_peer(
            "intruder-key",
            "127.0.0.21:0".parse().unwrap(),
            &["--join", &join],
            Some(&foreign),
        ),
        cluster.spawn_peer(
            "intruder-cluster",
            "127.0.0.22:0".parse().unwrap(),
            &["--join", &join, "--cluster", "other"],
            None,
        ),
    ];
    let metrics = cluster.wait_for_metrics(1, |metrics| {
        for reason in ["malformed", "bad_tag", "wrong_cluster"] {
            let series = format!("rollcall_peer_datagrams_rejected_total{{reason=\"{reason}\"}}");
            if metrics.get(&series).copied().unwrap_or(0.0) < 1.0 {
                return Err(format!("{series} is still 0"));
            }
        }
        Ok(())
    });
    assert!(metrics["rollcall_peer_datagrams_received_total"] > 0.0, "{metrics:?}");
    assert!(metrics["rollcall_peer_probes_total"] > 0.0, "{metrics:?}");
    let views = cluster.views();
    for name in ["intruder-key", "intruder-cluster"] {
        assert!(!views[&1].contains_key(name), "p2 must not admit {name}: {:?}", views[&1]);
    }
    drop(intruders);
    promtool_check(&cluster.net.get(cluster.peer(2).http, "/metrics").1);
}

#[test]
fn peer_refuses_bad_configuration_in_one_sentence() {
    let sandbox = Sandbox::new();
    let key = sandbox.key_file().display().to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["--name", "a b", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"], "not a valid member name"),
        (
            &[
                "--name",
                "a",
                "--bind",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--key-file",
                "/nonexistent/k",
            ],
            "cannot read key file",
        ),
        (&["--name", "a", "--bind", "192.0.2.1:0", "--http", "127.0.0.1:0"], "cannot bind UDP 192.0.2.1:0"),
        (&["--name", "a", "--bind", "0.0.0.0:0", "--http", "127.0.0.1:0"], "add --advertise"),
        (
            &["--name", "a", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--probe-timeout", "2s"],
            "--probe-timeout",
        ),
    ];
    for (args, expected) in cases {
        let mut line = vec!["peer".to_string()];
        if !args.contains(&"--key-file") {
            line.extend(["--key-file".to_string(), key.clone()]);
        }
        line.extend(args.iter().map(|arg| arg.to_string()));
        let exited = sandbox.run_to_exit(&line);
        assert!(!exited.status.success(), "{line:?} must fail: {exited:?}");
        assert!(
            exited.stderr.contains(expected),
            "{line:?}: stderr {:?} does not say {expected:?}",
            exited.stderr
        );
        assert_eq!(exited.stderr.trim().lines().count(), 1, "one sentence: {:?}", exited.stderr);
        assert!(exited.stdout.is_empty(), "no listening line: {:?}", exited.stdout);
    }
    let help = sandbox.run_to_exit(&["peer".to_string(), "--help".to_string()]);
    assert!(help.status.success() && help.stdout.contains("Examples:"), "{help:?}");
}

/// Where the peers run: a network namespace of this test's own, or the host's.
struct Net {
    namespace: Option<String>,
}

impl Net {
    /// A new namespace with its loopback up.
    fn create() -> Net {
        let name = format!("rollcall-peer-{}", std::process::id());
        let added = Command::new("ip").args(["netns", "add", &name]).stderr(Stdio::null()).status();
        assert!(
            added.is_ok_and(|status| status.success()),
            "cannot create a network namespace with `ip netns add`: this test needs root and iproute2 (`apt-get install -y iproute2`)"
        );
        let net = Net { namespace: Some(name) };
        let up = net.command("ip").args(["link", "set", "lo", "up"]).status().expect("run ip link");
        assert!(up.success(), "cannot bring lo up in the namespace");
        net
    }

    /// `program` run inside the namespace (behind `ip netns exec`, which execs it).
    fn command(&self, program: &str) -> Command {
        match &self.namespace {
            Some(name) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", name, program]);
                command
            }
            None => Command::new(program),
        }
    }

    /// `GET path` from each of `targets` at once: the status and body of each, `None` for
    /// one that could not be reached.
    fn get_all(&self, targets: &[SocketAddr], path: &str) -> Vec<Option<(u16, String)>> {
        // HTTP/1.0 over bash's /dev/tcp: the server closes after its answer, so `cat` ends.
        const FETCH: &str = r#"
path=$1; shift
for target in "$@"; do
  { printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$target" >&3; cat <&3; } 2>/dev/null 3<>"/dev/tcp/${target%:*}/${target##*:}"
  printf '\036\n'
done
"#;
        let mut command = Command::new("timeout");
        command.arg("10");
        match &self.namespace {
            Some(name) => command.args(["ip", "netns", "exec", name, "bash"]),
            None => command.arg("bash"),
        };
        command.args(["-c", FETCH, "fetch", path]).args(targets.iter().map(SocketAddr::to_string));
        let output = command.stdin(Stdio::null()).output().expect("run the HTTP client");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut answers: Vec<Option<(u16, String)>> = text.split("\u{1e}\n").map(parse_response).collect();
        answers.truncate(targets.len());
        answers.resize(targets.len(), None);
        answers
    }

    fn get(&self, target: SocketAddr, path: &str) -> (u16, String) {
        self.get_all(&[target], path)
            .pop()
            .flatten()
            .unwrap_or_else(|| panic!("GET {path} from {target}: no answer"))
    }

    /// One datagram to `to`, from inside the namespace.
    fn send_udp(&self, to: SocketAddr, payload: &[u8]) {
        let script = format!("printf '%s' \"$1\" > /dev/udp/{}/{}", to.ip(), to.port());
        let text = String::from_utf8(payload.to_vec()).expect("an ASCII payload");
        let status = self.command("bash").args(["-c", &script, "send", &text]).status().expect("run bash");
        assert!(status.success(), "cannot send a datagram to {to}");
    }

    /// Applies an nftables script inside the namespace.
    fn nft(&self, script: &str) {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nft (Debian's nftables; `cargo xtask test` installs it)");
        use std::io::Write;
        child.stdin.take().expect("piped").write_all(script.as_bytes()).expect("write to nft");
        let status = child.wait().expect("wait for nft");
        assert!(status.success(), "nft refused:\n{script}");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The peers (killed before this, see `Cluster`'s field order) and any nftables rules
        // go with the namespace.
        if let Some(name) = &self.namespace {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// `HTTP/1.x CODE ...\r\n headers \r\n\r\n body`, or `None` for an empty answer.
fn parse_response(raw: &str) -> Option<(u16, String)> {
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Each observer's view: member name to (state, incarnation).
type Views = BTreeMap<usize, BTreeMap<String, (String, u64)>>;

/// Five peers named `p1`..`p5` on `127.0.0.11`..`127.0.0.15`.
struct Cluster {
    sandbox: Sandbox,
    /// By index; `None` while crashed or after leaving. Declared before `net`, so that the
    /// peers are killed before their namespace is deleted.
    peers: Vec<Option<PeerProcess>>,
    /// Each peer's UDP address, kept across a crash for its restart.
    addrs: Vec<SocketAddr>,
    net: Net,
}

impl Cluster {
    fn start(sandbox: &Sandbox, count: usize) -> Cluster {
        let net = Net::create();
        let mut cluster = Cluster { sandbox: sandbox.clone(), peers: Vec::new(), addrs: Vec::new(), net };
        for index in 0..count {
            let bind: SocketAddr = format!("127.0.0.{}:0", 11 + index).parse().expect("an address");
            let join: Vec<String> = cluster.addrs.first().map(|seed| seed.to_string()).into_iter().collect();
            let join: Vec<&str> = join.iter().flat_map(|seed| ["--join", seed.as_str()]).collect();
            let peer = cluster.spawn_peer(&format!("p{}", index + 1), bind, &join, None);
            cluster.addrs.push(peer.udp);
            cluster.peers.push(Some(peer));
        }
        cluster
    }

    /// Starts `rollcall peer` named `name` on `bind` (HTTP on the same address), with the
    /// sandbox's key file unless `key` is given.
    fn spawn_peer(&self, name: &str, bind: SocketAddr, extra: &[&str], key: Option<&PathBuf>) -> PeerProcess {
        let key = key.cloned().unwrap_or_else(|| self.sandbox.key_file());
        let mut command = self.net.command(bin());
        command
            .args(["peer", "--name", name, "--bind", &bind.to_string()])
            .args(["--http", &format!("{}:0", bind.ip())])
            .arg("--key-file")
            .arg(key)
            .args(TIMING)
            .args(extra);
        PeerProcess::spawn(&self.sandbox, name, command)
    }

    fn peer(&self, index: usize) -> &PeerProcess {
        self.peers[index].as_ref().unwrap_or_else(|| panic!("p{} is not running", index + 1))
    }

    fn crash(&mut self, index: usize) {
        self.peers[index].take().expect("the peer runs").crash();
    }

    /// Starts a crashed peer again, under its name and on its address.
    fn restart(&mut self, index: usize) {
        let seed = if index == 0 { self.addrs[1] } else { self.addrs[0] }.to_string();
        let peer = self.spawn_peer(&format!("p{}", index + 1), self.addrs[index], &["--join", &seed], None);
        self.peers[index] = Some(peer);
    }

    /// Drops every datagram between the addresses of `left` and those of `right`.
    fn partition(&self, left: &[usize], right: &[usize]) {
        let set = |side: &[usize]| {
            side.iter().map(|&i| self.addrs[i].ip().to_string()).collect::<Vec<_>>().join(", ")
        };
        let (a, b) = (set(left), set(right));
        self.net.nft(&format!(
            "table inet {PARTITION_TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n    ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n  }}\n}}\n"
        ));
    }

    fn heal(&self) {
        self.net.nft(&format!("delete table inet {PARTITION_TABLE}\n"));
    }

    /// Every running peer's view of the cluster (peers that did not answer are left out).
    fn views(&self) -> Views {
        let running: Vec<(usize, SocketAddr)> =
            self.peers.iter().enumerate().filter_map(|(i, peer)| Some((i, peer.as_ref()?.http))).collect();
        let targets: Vec<SocketAddr> = running.iter().map(|&(_, http)| http).collect();
        let answers = self.net.get_all(&targets, "/v1/nodes");
        let mut views = Views::new();
        for ((index, _), answer) in running.into_iter().zip(answers) {
            let Some((200, body)) = answer else { continue };
            let Ok(members) = serde_json::from_str::<Vec<serde_json::Value>>(&body) else { continue };
            let view = members
                .iter()
                .map(|member| {
                    let name = member["id"].as_str().unwrap_or_default().to_string();
                    let state = member["state"].as_str().unwrap_or_default().to_string();
                    (name, (state, member["incarnation"].as_u64().unwrap_or_default()))
                })
                .collect();
            views.insert(index, view);
        }
        views
    }

    /// Polls the views until `probe` accepts them, for at most `deadline`; returns how long
    /// it took. On timeout the panic shows the last views and every peer's stderr tail.
    fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        mut probe: impl FnMut(&Views) -> Result<(), String>,
    ) -> Duration {
        let started = Instant::now();
        support::wait_until(
            deadline,
            what,
            || probe(&self.views()),
            || {
                let tails: Vec<String> = self
                    .peers
                    .iter()
                    .flatten()
                    .map(|peer| format!("--- {} stderr ---\n{}", peer.name, peer.stderr_tail()))
                    .collect();
                format!("views: {:#?}\n{}", self.views(), tails.join("\n"))
            },
        );
        started.elapsed()
    }

    /// Polls peer `index`'s `/metrics` until `probe` accepts them; returns them.
    fn wait_for_metrics(
        &self,
        index: usize,
        mut probe: impl FnMut(&BTreeMap<String, f64>) -> Result<(), String>,
    ) -> BTreeMap<String, f64> {
        let what = format!("p{}'s metrics are as expected", index + 1);
        support::wait_until(
            DEADLINE,
            &what,
            || {
                let (status, body) = self.net.get(self.peer(index).http, "/metrics");
                assert_eq!(status, 200, "GET /metrics: {body}");
                let metrics = parse_metrics(&body);
                probe(&metrics).map(|()| metrics).map_err(|seen| format!("{seen}\n{body}"))
            },
            String::new,
        )
    }

    /// The incarnation at which `observer` sees `member`.
    fn incarnation_seen_by(&self, observer: usize, member: usize) -> u64 {
        let views = self.views();
        let name = format!("p{}", member + 1);
        views
            .get(&observer)
            .and_then(|view| view.get(&name))
            .map(|(_, inc)| *inc)
            .expect("the member is known")
    }

    /// `member`'s transitions in `observer`'s events, as (from, to), oldest first.
    fn events(&self, observer: usize, member: &str) -> Vec<(String, String)> {
        let (status, body) = self.net.get(self.peer(observer).http, &format!("/v1/events?node={member}"));
        assert_eq!(status, 200, "GET /v1/events: {body}");
        let events: Vec<serde_json::Value> = serde_json::from_str(&body).expect("events are JSON");
        let ids: Vec<u64> = events.iter().map(|event| event["id"].as_u64().unwrap_or_default()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "events come oldest first: {ids:?}");
        events
            .iter()
            .map(|event| {
                (event["from"].as_str().unwrap_or("").into(), event["to"].as_str().unwrap_or("").into())
            })
            .collect()
    }
}

/// Every observer in `observers` sees every member of `subjects` (other than itself) in one
/// of `states`.
fn expect(views: &Views, observers: &[usize], subjects: &[usize], states: &[&str]) -> Result<(), String> {
    for &observer in observers {
        let view = views.get(&observer).ok_or_else(|| format!("p{} did not answer", observer + 1))?;
        for &subject in subjects {
            if subject == observer {
                continue;
            }
            let name = format!("p{}", subject + 1);
            match view.get(&name) {
                Some((state, _)) if states.contains(&state.as_str()) => {}
                Some((state, _)) => return Err(format!("p{} sees {name} {state}", observer + 1)),
                None => return Err(format!("p{} does not know {name}", observer + 1)),
            }
        }
    }
    Ok(())
}

/// `/metrics` as a map from series (`name{labels}` as written) to value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}
