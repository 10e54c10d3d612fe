//! The phantom-leadership guard against a real etcd (Debian's `etcd-server`, which `cargo
//! xtask test` installs): etcd 3.4's `Campaign` answers success to a candidate whose lease
//! expired while it waited, for a key that no longer exists.

use super::confirm_leadership;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

/// One etcd member on loopback, killed when dropped.
struct SingleEtcd {
    process: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for SingleEtcd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

fn start_etcd() -> SingleEtcd {
    assert!(std::path::Path::new(ETCD).exists(), "{ETCD} is missing: install Debian's etcd-server");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let process = Command::new(ETCD)
        .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
        .arg("--logger=zap")
        .arg(format!("--log-outputs={}", dir.path().join("etcd.log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    SingleEtcd { process, endpoint, _dir: dir }
}

async fn connect(etcd: &SingleEtcd) -> etcd_client::Client {
    let started = Instant::now();
    loop {
        if let Ok(mut client) = etcd_client::Client::connect([etcd.endpoint.as_str()], None).await
            && client.status().await.is_ok()
        {
            return client;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "etcd did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_campaign_won_on_an_expired_lease_is_refused() {
    let etcd = start_etcd();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let mut client = connect(&etcd).await;
        let election = "/rollcall/test/election";
        let first = client.lease_grant(60, None).await.expect("grant").id();
        let won = client.campaign(election, "m1", first).await.expect("the first candidate wins");
        let key = won.leader().expect("a leader key").clone();
        assert!(
            confirm_leadership(&mut client, first, key.key(), key.rev()).await.expect("etcd answers"),
            "a leader on a live lease is confirmed"
        );

        // The second candidate waits behind the first on a 2 s lease that nobody renews.
        let second = client.lease_grant(2, None).await.expect("grant").id();
        let mut other = connect(&etcd).await;
        let campaign = tokio::spawn(async move { other.campaign(election, "m2", second).await });
        let started = Instant::now();
        // -1: etcd no longer knows the lease (it expired and its keys were deleted).
        while client.lease_time_to_live(second, None).await.expect("etcd answers").ttl() >= 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "the lease did not expire within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The first leader goes: etcd now answers the second candidate's campaign.
        client.lease_revoke(first).await.expect("revoke");
        let answer = tokio::time::timeout(Duration::from_secs(20), campaign)
            .await
            .expect("the campaign is answered within 20 s")
            .expect("the campaign task ends");
        let won = answer.expect("etcd 3.4 answers success: the phantom leadership this test provokes");
        let phantom = won.leader().expect("a leader key").clone();
        let stored = client.get(phantom.key().to_vec(), None).await.expect("get");
        assert!(stored.kvs().is_empty(), "the winning key was deleted with its lease");
        assert!(
            !confirm_leadership(&mut client, second, phantom.key(), phantom.rev())
                .await
                .expect("etcd answers"),
            "a leadership won on an expired lease must be refused"
        );
    });
}
