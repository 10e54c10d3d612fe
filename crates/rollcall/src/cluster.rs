//! `[cluster]`: several monitors, one leader, elected through etcd (docs/HA.md).
//!
//! Each monitor registers itself under `/{prefix}/{name}/members/{monitor}` on a session
//! lease and campaigns in the election `/{prefix}/{name}/election`; the winner's election key
//! revision is the fencing token. Every monitor judges every node and publishes the nodes
//! it cannot hear ([`verdicts`]); a node is down for the cluster when a quorum of the
//! monitors that count agree ([`agree`]); only the leader pages, and every incident write
//! it makes is fenced by its election key in etcd ([`paging`]). Heartbeats never touch etcd.
//!
//! Start reading at [`session::run`]; [`Tenure`] is the rule for how long a leader may act,
//! [`link`] what the session and the rest of the monitor hand each other.

pub mod agree;
pub mod leases;
pub mod link;
pub mod paging;
pub mod session;
pub mod tls;
pub mod verdicts;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `[cluster]` as written in the config file.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    name: Option<String>,
    monitor: Option<String>,
    #[serde(default)]
    etcd: Vec<String>,
    lease_ttl: Option<String>,
    quorum: Option<usize>,
    fail_open_after: Option<String>,
    prefix: Option<String>,
    user: Option<String>,
    password: Option<Password>,
    ca_file: Option<std::path::PathBuf>,
    cert_file: Option<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
}

/// etcd's password: kept out of every `Debug` print (settings are logged at start).
#[derive(Deserialize, Clone, Default)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[cluster]`, validated.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub name: String,
    pub monitor: String,
    pub etcd: Vec<String>,
    pub lease_ttl: Duration,
    /// Monitors that must agree a node is down; `None`: a majority of those that count.
    pub quorum: Option<usize>,
    /// How long etcd may be out of reach before this monitor pages on its own view.
    pub fail_open_after: Duration,
    pub prefix: String,
    pub user: Option<(String, Password)>,
    /// For `https://` endpoints: the CA and the client certificate, read at start.
    pub tls: Option<tls::TlsFiles>,
}

impl ClusterSettings {
    /// The key under which everything of this cluster lives: `/{prefix}/{name}`. Names and
    /// the prefix are single path segments, so no two clusters' keys can nest.
    pub fn root(&self) -> String {
        format!("/{}/{}", self.prefix, self.name)
    }

    pub fn member_key(&self) -> String {
        format!("{}/members/{}", self.root(), self.monitor)
    }

    pub fn election(&self) -> String {
        format!("{}/election", self.root())
    }
}

/// Checks `[cluster]`; the error is one sentence naming the bad setting.
pub fn parse(raw: &RawCluster) -> anyhow::Result<ClusterSettings> {
    let name = segment("cluster.name", raw.name.as_deref())?;
    let monitor = segment("cluster.monitor", raw.monitor.as_deref())?;
    let prefix = segment("cluster.prefix", Some(raw.prefix.as_deref().unwrap_or("rollcall")))?;
    if raw.etcd.is_empty() {
        bail!("cluster.etcd must list at least one etcd endpoint, e.g. [\"http://127.0.0.1:2379\"]");
    }
    for endpoint in &raw.etcd {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) || endpoint.len() < 10 {
            bail!("cluster.etcd: {endpoint:?} is not an endpoint URL like http://10.0.0.1:2379");
        }
    }
    let https = raw.etcd.iter().filter(|endpoint| endpoint.starts_with("https://")).count();
    if https != 0 && https != raw.etcd.len() {
        bail!("cluster.etcd mixes http:// and https:// endpoints: use https:// for all of them or for none");
    }
    let lease_ttl = match &raw.lease_ttl {
        None => Duration::from_secs(5),
        Some(text) => rollcall_core::settings::duration("cluster.lease_ttl", text)?,
    };
    if lease_ttl < Duration::from_secs(2)
        || lease_ttl > Duration::from_secs(60)
        || lease_ttl.subsec_nanos() != 0
    {
        bail!("cluster.lease_ttl must be whole seconds from 2s to 60s (etcd leases count in seconds)");
    }
    let user = match (&raw.user, &raw.password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        (None, None) => None,
        _ => bail!("cluster.user and cluster.password go together: set both or neither"),
    };
    let fail_open_after = match &raw.fail_open_after {
        None => Duration::from_secs(30),
        Some(text) => rollcall_core::settings::duration("cluster.fail_open_after", text)?,
    };
    if fail_open_after < Duration::from_secs(1) || fail_open_after > Duration::from_secs(3600) {
        bail!(
            "cluster.fail_open_after must be from 1s to 1h (how long etcd may be out of reach before each monitor pages on its own view)"
        );
    }
    if raw.quorum == Some(0) {
        bail!("cluster.quorum must be at least 1 (leave it out for a majority of the live monitors)");
    }
    let tls =
        tls::load(https != 0, raw.ca_file.as_deref(), raw.cert_file.as_deref(), raw.key_file.as_deref())?;
    Ok(ClusterSettings {
        name,
        monitor,
        etcd: raw.etcd.clone(),
        lease_ttl,
        quorum: raw.quorum,
        fail_open_after,
        prefix,
        user,
        tls,
    })
}

/// A name that becomes one segment of an etcd key: letters, digits, `.`, `_`, `-`.
fn segment(setting: &str, value: Option<&str>) -> anyhow::Result<String> {
    let Some(value) = value else { bail!("{setting} is missing: [cluster] needs name, monitor and etcd") };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) || value.starts_with('.') {
        bail!(
            "{setting} {value:?} must be 1 to 64 letters, digits, '.', '_' or '-' (it is one segment of an etcd key, so no '/')"
        );
    }
    Ok(value.to_string())
}

/// How long a leader may act: until its last acknowledged lease renewal plus the TTL, minus
/// a margin, all on its own monotonic clock. The renewal counts from when it was *sent*
/// (etcd restarted the lease's clock later than that, so this errs early), and the margin
/// covers a clock running up to 10 % faster on etcd's side than here, plus 100 ms. A leader
/// paused past this instant (SIGSTOP, a VM stall) finds it passed when it resumes, before it
/// does anything, and steps down; it never waits for a callback to learn it lost.
#[derive(Clone, Copy, Debug)]
pub struct Tenure {
    ttl: Duration,
    last_acknowledged: Option<Instant>,
}

impl Tenure {
    pub fn new(ttl: Duration) -> Tenure {
        Tenure { ttl, last_acknowledged: None }
    }

    pub fn margin(&self) -> Duration {
        self.ttl / 10 + Duration::from_millis(100)
    }

    /// A renewal sent at `sent` was acknowledged with a live lease.
    pub fn acknowledged(&mut self, sent: Instant) {
        self.last_acknowledged = Some(self.last_acknowledged.map_or(sent, |last| last.max(sent)));
    }

    /// A lease read at `sent` had `remaining` of its TTL left: as good as a renewal
    /// acknowledged `ttl - remaining` before `sent` (a session that reuses a live lease
    /// starts its tenure from what is left of it).
    pub fn acknowledged_remaining(&mut self, sent: Instant, remaining: Duration) {
        if let Some(at) = sent.checked_sub(self.ttl.saturating_sub(remaining)) {
            self.acknowledged(at);
        }
    }

    /// The last instant at which acting as leader is safe; `None` before any renewal.
    pub fn valid_until(&self) -> Option<Instant> {
        self.last_acknowledged.map(|sent| sent + self.ttl - self.margin())
    }

    pub fn is_valid(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|until| now < until)
    }
}

/// One monitor's view of the fleet, as it publishes it to etcd every [`VIEW_EVERY`]: counts
/// only (never per node, never per heartbeat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub nodes: u64,
    pub up: u64,
    pub suspect: u64,
    pub down: u64,
}

/// How often a monitor publishes its [`View`] and compares it with the others'.
pub const VIEW_EVERY: Duration = Duration::from_secs(2);

impl View {
    /// The share of its nodes a monitor cannot hear (suspect or down).
    pub fn lost_share(&self) -> f64 {
        if self.nodes == 0 { 0.0 } else { (self.suspect + self.down) as f64 / self.nodes as f64 }
    }
}

/// The monitors that are themselves the problem: each one that cannot hear at least half of
/// its (at least 3) nodes while the other monitors' median share is at most a quarter of its
/// own. Such a monitor is cut off (its network, or it is starved), not watching a mass
/// failure, which every monitor would see. With no other monitor to compare with, nobody is.
pub fn cut_off(views: &BTreeMap<String, View>) -> Vec<String> {
    let mut odd = Vec::new();
    for (name, view) in views {
        let share = view.lost_share();
        if view.nodes < 3 || share < 0.5 {
            continue;
        }
        let mut others: Vec<f64> = views
            .iter()
            .filter(|(other, view)| *other != name && view.nodes > 0)
            .map(|(_, view)| view.lost_share())
            .collect();
        if others.is_empty() {
            continue;
        }
        others.sort_by(f64::total_cmp);
        let median = others[others.len() / 2];
        if median <= share / 4.0 {
            odd.push(name.clone());
        }
    }
    odd
}

/// What `/v1/cluster` shows and metrics export.
#[derive(Clone, Debug, Serialize, Default)]
pub struct ClusterStatus {
    pub name: String,
    pub monitor: String,
    pub etcd: Vec<String>,
    /// Whether the last request to etcd succeeded.
    pub etcd_reachable: bool,
    /// The last etcd error, while unreachable.
    pub etcd_error: Option<String>,
    /// `connecting` (at start), `candidate` (registering), `leader`, `follower`,
    /// `disconnected` (etcd unreachable), or `refused` (another monitor has this one's name).
    pub role: &'static str,
    /// The leading monitor's name, when known.
    pub leader: Option<String>,
    /// The leader's fencing token: the revision of its election key, increasing with every
    /// change of leader.
    pub fencing_token: Option<i64>,
    pub lease_ttl_seconds: u64,
    /// While leading: milliseconds left of the tenure (see [`Tenure`]).
    pub tenure_left_ms: Option<u64>,
    /// Registered monitors (their keys live as long as their sessions).
    pub members: Vec<String>,
    /// Failed requests to etcd since start.
    pub etcd_errors: u64,
    /// The last lease renewal's round trip to etcd, in milliseconds.
    pub etcd_round_trip_ms: Option<f64>,
    /// Times this monitor became leader.
    pub elections_won: u64,
    /// Every live monitor's published view of the fleet, by monitor.
    pub views: BTreeMap<String, View>,
    /// The monitors that cannot hear most of the fleet while the others can ([`cut_off`]):
    /// their view is the problem, not the fleet.
    pub cut_off: Vec<String>,
    /// The monitors whose verdicts count (live, not cut off), and how many must say a node is
    /// down for the cluster to call it down.
    pub voters: Vec<String>,
    pub quorum: usize,
    /// Nodes agreed down.
    pub agreed_down: usize,
    /// Nodes some monitors cannot hear while fewer than the quorum say they are down
    /// (`suspect (unreachable from ...)`): the first [`IN_DOUBT_SHOWN`], and how many in all.
    pub in_doubt: Vec<InDoubt>,
    pub in_doubt_total: usize,
    /// Alerts and incident writes refused by the fence since start.
    pub fenced_refused: u64,
    /// True while etcd has been out of reach for longer than `fail_open_after`: this monitor
    /// pages on its own view, its alerts labelled `observer`.
    pub failing_open: bool,
    /// Transactions this monitor wrote to etcd for verdicts and incidents since start.
    pub etcd_writes: u64,
}

/// A node the monitors disagree about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct InDoubt {
    pub node: String,
    pub unreachable_from: Vec<String>,
}

/// How many nodes in doubt `/v1/cluster` names.
pub const IN_DOUBT_SHOWN: usize = 100;

/// Puts what the monitors agree on into the status.
pub fn publish_agreement(
    agreement: &agree::Agreement,
    status: &tokio::sync::watch::Sender<ClusterStatus>,
    link: &link::Link,
) {
    let (doubt, total) = agreement.in_doubt(IN_DOUBT_SHOWN);
    let refused = link.refused.load(std::sync::atomic::Ordering::Relaxed);
    let writes = link.etcd_writes.load(std::sync::atomic::Ordering::Relaxed);
    status.send_modify(|status| {
        status.voters = agreement.voters().iter().cloned().collect();
        status.quorum = agreement.needed();
        status.agreed_down = agreement.downs().len();
        status.in_doubt =
            doubt.into_iter().map(|(node, unreachable_from)| InDoubt { node, unreachable_from }).collect();
        status.in_doubt_total = total;
        status.fenced_refused = refused;
        status.etcd_writes = writes;
    });
}

#[cfg(test)]
mod tests;
