//! Network partitions on loopback, made with nftables (Debian's `nftables`, which `cargo
//! xtask test` installs; the tests run as root): a table of this test's own with one rule
//! that drops UDP datagrams to a port, optionally only from one source port. Dropping the
//! [`Partition`] deletes the table, healing the partition.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const NFT: &str = "/usr/sbin/nft";
const SS: &str = "/usr/bin/ss";

pub struct Partition {
    table: String,
}

fn nft(script: &str) {
    let output = Command::new(NFT).args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().and_then(
        |mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin is piped").write_all(script.as_bytes())?;
            child.wait_with_output()
        },
    );
    let output =
        output.unwrap_or_else(|error| panic!("{NFT} cannot run ({error}): install Debian's nftables"));
    assert!(output.status.success(), "nft refused {script:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl Partition {
    /// Drops UDP datagrams on loopback to port `to`, from every source or only from port
    /// `from`.
    pub fn udp(to: u16, from: Option<u16>) -> Partition {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let table = format!("rollcall_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let source = from.map(|port| format!("udp sport {port} ")).unwrap_or_default();
        nft(&format!(
            "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    iif lo {source}udp dport {to} drop\n  }}\n}}\n"
        ));
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new(NFT).args(["delete", "table", "inet", &self.table]).status();
    }
}

/// The local UDP port of the process `pid` (an agent: it sends from one socket), from `ss`.
pub fn udp_port_of(pid: u32) -> u16 {
    let output =
        Command::new(SS).args(["-H", "-u", "-a", "-n", "-p"]).output().expect("run ss (Debian's iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    let needle = format!("pid={pid},");
    let line = text
        .lines()
        .find(|line| line.contains(&needle))
        .unwrap_or_else(|| panic!("no UDP socket of pid {pid} in:\n{text}"));
    // State, Recv-Q, Send-Q, Local Address:Port, ...
    let local = line.split_whitespace().nth(3).expect("a local address");
    local
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line}"))
}
