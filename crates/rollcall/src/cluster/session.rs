//! The monitor's side of the cluster: one task that keeps a session with etcd (a lease it
//! renews), registers the monitor, campaigns for leadership, and publishes what it knows as a
//! [`ClusterStatus`]. It never blocks the owner or the heartbeat path; etcd being away only
//! changes the status (and the log says so every few seconds).
//!
//! Guards against what etcd 3.4 and etcd-client do under failure:
//! - the lease keep-alive stream does not reconnect by itself when etcd's leader dies: a
//!   renewal that fails or goes unanswered ends the session, and a new one is made;
//! - `Campaign` can return success to a candidate whose lease has already expired: after
//!   winning, the lease's remaining TTL and the election key are read back before leading;
//! - a leader stops leading at the end of its [`Tenure`], measured on its own clock, even if
//!   it hears nothing (a SIGSTOP, a VM stall, a partition).

use super::agree::Agreement;
use super::link::{Gate, Link, SessionEnds};
use super::paging::{Leading, Refused};
use super::{ClusterSettings, ClusterStatus, Tenure, VIEW_EVERY, View, cut_off, verdicts};
use crate::monitor::{ClusterCommand, Command};
use crate::store_thread::PersistHandle;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often a disconnected monitor tries etcd again, and says so in the log.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(5);
/// The pause before making a lost session again (enough to keep a failing etcd from being
/// hammered, short enough to keep the lease).
const RETRY_AFTER_LOSS: Duration = Duration::from_millis(50);
/// A campaign waits as long as another monitor leads: no request timeout to speak of.
const CAMPAIGN_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a session ended.
enum Ended {
    Stopped,
    /// Another live monitor holds this monitor's name: nothing more to do.
    Refused(String),
    /// etcd failed or the lease was lost: make a new session.
    Lost(String),
}

/// What the session is wired to in the monitor.
pub struct Wiring {
    pub link: Arc<Link>,
    pub ends: SessionEnds,
    /// The owner: asked for counts, told what was agreed and when this monitor leads.
    pub commands: mpsc::Sender<Command>,
    pub persist: PersistHandle,
}

/// What lives across sessions.
struct Shared {
    wiring: Wiring,
    agreement: Agreement,
    /// Since when no session could be made (etcd out of reach, or without a quorum).
    unreachable_since: Option<Instant>,
    failing_open: bool,
    /// Times this monitor took over (each takeover's writes are told apart by it).
    takeovers: u64,
}

/// Runs until `stop` turns true. `http` is this monitor's API address (stored with its
/// registration, for `rollcall cluster status`).
pub async fn run(
    settings: ClusterSettings,
    http: std::net::SocketAddr,
    status: watch::Sender<ClusterStatus>,
    wiring: Wiring,
    mut stop: watch::Receiver<bool>,
) {
    let mut shared = Shared {
        wiring,
        agreement: Agreement::new(settings.quorum),
        unreachable_since: Some(Instant::now()),
        failing_open: false,
        takeovers: 0,
    };
    let mut last_log: Option<Instant> = None;
    // The previous session's lease: its member key is this monitor's own, not a namesake's.
    let mut previous_lease = None;
    let mut next_endpoint = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let (ended, reached) = match connect(&settings, next_endpoint).await {
            Ok(clients) => {
                let mut leading = None;
                let ended = session(
                    clients,
                    &settings,
                    http,
                    (&status, &mut shared),
                    &mut stop,
                    (&mut previous_lease, &mut leading),
                )
                .await;
                if leading.is_some() {
                    step_down(&shared.wiring).await;
                }
                (ended, true)
            }
            Err(error) => (Ended::Lost(error), false),
        };
        next_endpoint += 1;
        match ended {
            Ended::Stopped => return,
            Ended::Refused(reason) => {
                tracing::error!(monitor = %settings.monitor, "{reason}");
                status.send_modify(|status| {
                    status.role = "refused";
                    status.etcd_error = Some(reason.clone());
                });
                let _ = stop.wait_for(|stopping| *stopping).await;
                return;
            }
            Ended::Lost(reason) => {
                status.send_modify(|status| {
                    status.etcd_reachable = false;
                    status.etcd_error = Some(reason.clone());
                    status.etcd_errors += 1;
                    status.role = "disconnected";
                    status.tenure_left_ms = None;
                });
                let since = *shared.unreachable_since.get_or_insert_with(Instant::now);
                if !shared.failing_open && since.elapsed() >= settings.fail_open_after {
                    shared.failing_open = true;
                    tracing::error!(
                        cluster = %settings.name, after = %humantime::format_duration(settings.fail_open_after),
                        "etcd is out of reach: failing open, this monitor pages on its own view (alerts labelled observer) until the cluster is back"
                    );
                    status.send_modify(|status| status.failing_open = true);
                    let _ = shared.wiring.commands.send(Command::Cluster(ClusterCommand::FailOpen)).await;
                }
                if last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    let paging = if shared.failing_open {
                        "failing open: paging on this monitor's own view".to_string()
                    } else {
                        format!(
                            "detecting and recording; nodes are paged on this monitor's own view if etcd stays out of reach for {}",
                            humantime::format_duration(settings.fail_open_after)
                        )
                    };
                    tracing::warn!(cluster = %settings.name, endpoints = ?settings.etcd, "{reason}; {paging}");
                    last_log = Some(Instant::now());
                }
                // A session that was made and then lost (its etcd member died) is made again
                // at once on the next member, while its lease may still be alive; only an
                // etcd that cannot be reached at all is retried every second.
                let pause = if reached { RETRY_AFTER_LOSS } else { RECONNECT_EVERY };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// Tells the owner and the delivery loops that this monitor no longer leads.
async fn step_down(wiring: &Wiring) {
    let _ = wiring.ends.gate.send(Gate::default());
    let _ = wiring.commands.send(Command::Cluster(ClusterCommand::StepDown)).await;
}

/// This monitor's counts of nodes by state, from the owner.
async fn view(commands: &mpsc::Sender<Command>) -> Option<View> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    commands.send(Command::Counts { reply }).await.ok()?;
    answer.await.ok()
}

/// The status a monitor starts with, before it has heard from etcd.
pub fn initial_status(settings: &ClusterSettings) -> ClusterStatus {
    ClusterStatus {
        name: settings.name.clone(),
        monitor: settings.monitor.clone(),
        etcd: settings.etcd.clone(),
        role: "connecting",
        lease_ttl_seconds: settings.lease_ttl.as_secs(),
        ..ClusterStatus::default()
    }
}

/// Connects to the first etcd member (from `start`, in turn) that answers. One member at a
/// time: the client's balanced channel sends each request to the next endpoint, dead ones
/// included, so with one member of three down every third request would fail. Any live
/// member serves every request (it forwards to etcd's leader); when it dies, the session
/// ends and the next member is tried.
///
/// Two clients on that member: one whose requests time out well within a lease, and one
/// for `Campaign`, which blocks until the campaign is won and must not time out (a loser
/// whose campaign timed out every third of a TTL would make its session again and again).
/// A dead member still ends a campaign: the connection's keep-alive notices within 3 s.
async fn connect(settings: &ClusterSettings, start: usize) -> Result<(Client, Client), String> {
    let mut errors = Vec::new();
    for offset in 0..settings.etcd.len() {
        let endpoint = &settings.etcd[(start + offset) % settings.etcd.len()];
        let options = connect_options(settings);
        let attempt = async {
            let mut client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            client.status().await?;
            let campaigns = options.with_timeout(CAMPAIGN_TIMEOUT);
            let campaigner = Client::connect([endpoint.as_str()], Some(campaigns)).await?;
            Ok::<(Client, Client), etcd_client::Error>((client, campaigner))
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(clients)) => return Ok(clients),
            Ok(Err(error)) => errors.push(format!("{endpoint}: {error}")),
            Err(_) => errors.push(format!("{endpoint}: no answer within 2 s")),
        }
    }
    Err(format!("cannot reach etcd ({})", errors.join("; ")))
}

/// How every client of this monitor connects: requests time out well within a lease, so a
/// dead member is noticed in time; the user or client certificate of `[cluster]`.
pub(super) fn connect_options(settings: &ClusterSettings) -> ConnectOptions {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(settings.lease_ttl / 3)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.expose().to_string());
    }
    if let Some(tls) = &settings.tls {
        options = options.with_tls(tls.options());
    }
    options
}

/// One session: a lease, the registration, then campaigning (or leading) until the lease
/// is lost or the monitor stops. Every etcd call is bounded by the client's timeout.
/// `leading` is set while this monitor leads (the caller steps down when it ends).
async fn session(
    (mut client, mut campaign_client): (Client, Client),
    settings: &ClusterSettings,
    http: std::net::SocketAddr,
    (status, shared): (&watch::Sender<ClusterStatus>, &mut Shared),
    stop: &mut watch::Receiver<bool>,
    (previous_lease, leading): (&mut Option<i64>, &mut Option<Leading>),
) -> Ended {
    let lost = |what: &str, error: etcd_client::Error| Ended::Lost(format!("{what}: {error}"));
    let ttl_secs = settings.lease_ttl.as_secs() as i64;
    let mut tenure = Tenure::new(settings.lease_ttl);
    // The previous session's lease, if still alive, is kept: the etcd member it talked to
    // died, not the session, so leadership and its fencing token carry over (campaigning
    // again on the same lease finds its own election key). Its tenure starts at the first
    // renewal this session gets acknowledged.
    let asked = Instant::now();
    let alive = match *previous_lease {
        Some(previous) => match client.lease_time_to_live(previous, None).await {
            Ok(answer) if answer.ttl() > 0 => {
                // etcd counts whole seconds, rounded up: one less errs on the safe side.
                let remaining = Duration::from_secs(answer.ttl().saturating_sub(1) as u64);
                tenure.acknowledged_remaining(asked, remaining);
                Some(previous)
            }
            Ok(_) => None,
            Err(error) => return lost("cannot read the lease", error),
        },
        None => None,
    };
    let lease = match alive {
        Some(lease) => lease,
        None => {
            let granted_at = Instant::now();
            match client.lease_grant(ttl_secs, None).await {
                Ok(lease) => {
                    tenure.acknowledged(granted_at);
                    lease.id()
                }
                Err(error) => return lost("cannot grant a lease", error),
            }
        }
    };
    status.send_modify(|status| {
        status.etcd_reachable = true;
        status.etcd_error = None;
        status.role = "candidate";
    });
    let previous = previous_lease.replace(lease);
    if let Err(ended) = register(&mut client, settings, http, (previous, lease), stop).await {
        if !matches!(ended, Ended::Lost(_)) {
            let _ = client.lease_revoke(lease).await;
        }
        return ended;
    }
    let Shared { wiring, agreement, unreachable_since, failing_open, takeovers } = shared;
    *unreachable_since = None;
    if *failing_open {
        *failing_open = false;
        tracing::info!(cluster = %settings.name, "etcd is back: no longer failing open; the cluster's leader pages again");
        status.send_modify(|status| status.failing_open = false);
        if wiring.commands.send(Command::Cluster(ClusterCommand::Rejoined)).await.is_err() {
            return Ended::Stopped;
        }
    }
    // A new lease took the old one's verdicts with it: write them all again.
    if let Err(error) = verdicts::publish(&mut client, settings, lease, &wiring.link, alive.is_none()).await {
        return lost("cannot publish this monitor's verdicts", error);
    }
    let mut watch = match verdicts::load_and_watch(&mut client, settings, agreement).await {
        Ok(watch) => watch,
        Err(error) => return lost("cannot follow the verdicts", error),
    };
    let (mut keeper, mut renewals) = match client.lease_keep_alive(lease).await {
        Ok(pair) => pair,
        Err(error) => return lost("cannot renew the lease", error),
    };
    // One renewal before anything else, so the tenure is fresh whatever wakes the loop
    // first: a session on a reused lease (its tenure from etcd's whole-second remaining
    // TTL) could otherwise end at its first turn, again and again (seen at a 2 s TTL).
    let sent = Instant::now();
    let answered = async {
        keeper.keep_alive().await?;
        renewals.message().await
    };
    match tokio::time::timeout(settings.lease_ttl / 3, answered).await {
        Ok(Ok(Some(answer))) if answer.ttl() > 0 => tenure.acknowledged(sent),
        Ok(Ok(_)) => return Ended::Lost("the session's lease expired".into()),
        Ok(Err(error)) => return lost("lease renewal failed", error),
        Err(_) => return Ended::Lost("lease renewal went unanswered".into()),
    }
    let election = settings.election();
    let monitor = settings.monitor.clone();
    let campaign = campaign_client.campaign(election.clone(), monitor, lease);
    tokio::pin!(campaign);
    let every = settings.lease_ttl / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut look = tokio::time::interval(Duration::from_millis(500));
    let mut compare = tokio::time::interval(VIEW_EVERY);
    loop {
        let mut refresh_now = false;
        tokio::select! {
            biased;
            _ = stop.changed() => {
                // Step down at once, so another monitor leads without waiting out the lease.
                let _ = client.lease_revoke(lease).await;
                return Ended::Stopped;
            }
            _ = renew.tick() => {
                let sent = Instant::now();
                let answered = async {
                    keeper.keep_alive().await?;
                    renewals.message().await
                };
                match tokio::time::timeout(settings.lease_ttl / 3, answered).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                        tenure.acknowledged(sent);
                        let round_trip = sent.elapsed().as_secs_f64() * 1000.0;
                        status.send_modify(|status| status.etcd_round_trip_ms = Some(round_trip));
                        if let Some(leading) = leading.as_ref() {
                            let _ = wiring.ends.gate.send(Gate { token: Some(leading.token), until: tenure.valid_until() });
                        }
                    }
                    Ok(Ok(_)) => return Ended::Lost("the session's lease expired".into()),
                    Ok(Err(error)) => return lost("lease renewal failed", error),
                    Err(_) => return Ended::Lost("lease renewal went unanswered".into()),
                }
            }
            won = &mut campaign, if leading.is_none() => {
                let key = match won {
                    Ok(answer) => answer.leader().cloned(),
                    Err(error) => return lost("campaign failed", error),
                };
                let Some(key) = key else { return Ended::Lost("campaign answered without a leader key".into()) };
                // Phantom leadership: Campaign may answer after the lease has expired.
                match confirm_leadership(&mut client, lease, key.key(), key.rev()).await {
                    Ok(true) if tenure.is_valid(Instant::now()) => {}
                    Ok(_) => return Ended::Lost("won an election on a lease that had expired (refused to lead)".into()),
                    Err(error) => return lost("cannot confirm leadership", error),
                }
                let (took, inherited) = match Leading::take_over(&mut client, settings, (key.rev(), *takeovers + 1), key.key().to_vec()).await {
                    Ok(pair) => pair,
                    Err(error) => return lost("cannot read the cluster's incidents", error),
                };
                tracing::info!(
                    cluster = %settings.name, fencing_token = key.rev(), open_incidents = inherited.docs.len(),
                    "this monitor leads"
                );
                let _ = wiring.ends.gate.send(Gate { token: Some(key.rev()), until: tenure.valid_until() });
                *takeovers += 1;
                let lead = ClusterCommand::Lead {
                    token: key.rev(),
                    epoch: *takeovers,
                    docs: inherited.docs,
                    last_id: inherited.last_id,
                    downs: agreement.downs(),
                };
                // Leases of nodes already down for the cluster (their release may have been
                // lost with the previous leader).
                let downs: Vec<String> = agreement.downs().into_iter().map(|(node, _, _)| node).collect();
                release_leases(&mut client, settings, &took, &downs).await;
                *leading = Some(took);
                if wiring.commands.send(Command::Cluster(lead)).await.is_err() {
                    return Ended::Stopped;
                }
                status.send_modify(|status| {
                    status.role = "leader";
                    status.leader = Some(settings.monitor.clone());
                    status.fencing_token = Some(key.rev());
                    status.elections_won += 1;
                });
                refresh_now = true;
            }
            answer = watch.message() => match answer {
                Ok(Some(answer)) => {
                    if let Err(reason) = verdicts::apply(settings, agreement, &answer) {
                        return Ended::Lost(reason);
                    }
                }
                Ok(None) => return Ended::Lost("etcd ended the verdicts watch".into()),
                Err(error) => return lost("the verdicts watch failed", error),
            },
            Some(write) = wiring.ends.fenced.recv() => {
                let mut queue = vec![write];
                while let Ok(write) = wiring.ends.fenced.try_recv() {
                    queue.push(write);
                }
                let Some(leading) = leading.as_mut() else {
                    // Made under a leadership this monitor no longer has: the new leader
                    // pages from what etcd records and what the monitors agree.
                    wiring.link.count_refused(queue.len() as u64);
                    continue;
                };
                match leading.commit(&mut client, settings, &mut queue, (&wiring.persist, &wiring.link)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(Refused)) => return refused_write(settings),
                    Err(error) => {
                        wiring.link.count_refused(queue.len() as u64);
                        return lost("cannot write an incident", error);
                    }
                }
            }
            Some(key) = wiring.ends.delivered.recv() => {
                let mut keys = vec![key];
                while let Ok(key) = wiring.ends.delivered.try_recv() {
                    keys.push(key);
                }
                if let Some(leading) = leading.as_mut() {
                    match leading.delivered(&mut client, settings, keys, &wiring.link).await {
                        Ok(Ok(())) => {}
                        Ok(Err(Refused)) => return refused_write(settings),
                        Err(error) => return lost("cannot record a delivery", error),
                    }
                }
            }
            _ = wiring.link.wait_published() => {
                if let Err(error) = verdicts::publish(&mut client, settings, lease, &wiring.link, false).await {
                    return lost("cannot publish this monitor's verdicts", error);
                }
            }
            _ = look.tick() => refresh_now = true,
            _ = compare.tick() => {
                if let Some(mine) = view(&wiring.commands).await
                    && let Err(error) = compare_views(&mut client, settings, lease, mine, status).await
                {
                    return lost("cannot publish this monitor's view", error);
                }
                refresh_now = true;
            }
        }
        let now = Instant::now();
        if !tenure.is_valid(now) {
            if leading.is_some() {
                tracing::warn!(cluster = %settings.name, "the leader's tenure ran out (paused or cut off): stepping down");
            }
            return Ended::Lost("the session's tenure ran out before a renewal was acknowledged".into());
        }
        if refresh_now {
            let token = leading.as_ref().map(|leading| leading.token);
            if let Err(error) = refresh(&mut client, settings, token, &tenure, status).await {
                return lost("cannot read the cluster", error);
            }
            let voters = {
                let status = status.borrow();
                status.members.iter().filter(|member| !status.cut_off.contains(member)).cloned().collect()
            };
            agreement.set_voters(voters);
        }
        let changes = agreement.changes();
        if refresh_now || !changes.is_empty() {
            super::publish_agreement(agreement, status, &wiring.link);
        }
        if let Some(leading) = leading.as_ref() {
            let downs: Vec<String> = changes
                .iter()
                .filter(|change| matches!(change.to, super::agree::Agreed::Down { .. }))
                .map(|change| change.node.clone())
                .collect();
            release_leases(&mut client, settings, leading, &downs).await;
        }
        if !changes.is_empty()
            && leading.is_some()
            && wiring.commands.send(Command::Cluster(ClusterCommand::Agreed(changes))).await.is_err()
        {
            return Ended::Stopped;
        }
    }
}

/// Ends the leases held on `downs`, the nodes the monitors agree are down. A failure is
/// logged, not fatal: the leases still expire at their TTL, and a new leader releases
/// what is down when it takes over.
async fn release_leases(
    client: &mut Client,
    settings: &ClusterSettings,
    leading: &Leading,
    downs: &[String],
) {
    if let Err(error) = super::leases::release_nodes(client, settings, leading, downs).await {
        tracing::warn!(%error, nodes = downs.len(), "cannot release the leases of nodes down for the cluster; they expire at their TTL");
    }
}

/// A fenced write was refused: another monitor leads (or will). Steps down.
fn refused_write(settings: &ClusterSettings) -> Ended {
    tracing::warn!(cluster = %settings.name, "an incident write was refused by the fence: another monitor leads; stepping down");
    Ended::Lost("a fenced incident write was refused: this monitor no longer leads".into())
}

/// Creates this monitor's member key on `lease`, unless another live session holds it. A
/// key left by this monitor's previous run (killed) vanishes when that run's lease expires,
/// so it is waited for up to one TTL and a second before the name is refused.
async fn register(
    client: &mut Client,
    settings: &ClusterSettings,
    http: std::net::SocketAddr,
    (previous, lease): (Option<i64>, i64),
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Ended> {
    let key = settings.member_key();
    let value = serde_json::json!({ "http": http.to_string(), "pid": std::process::id() }).to_string();
    // This monitor's own key from its previous session: kept (same lease) or moved to the
    // new lease at once, rather than waited out as a namesake's would be.
    if let Some(previous) = previous {
        let take_over = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, previous)])
            .and_then([TxnOp::put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease)))]);
        match client.txn(take_over).await {
            Ok(answer) if answer.succeeded() => {
                if previous != lease {
                    let _ = client.lease_revoke(previous).await;
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(error) => return Err(Ended::Lost(format!("cannot register: {error}"))),
        }
    }
    let deadline = Instant::now() + settings.lease_ttl + Duration::from_secs(1);
    loop {
        let create = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease)))]);
        match client.txn(create).await {
            Ok(answer) if answer.succeeded() => return Ok(()),
            Ok(_) if Instant::now() >= deadline => {
                return Err(Ended::Refused(format!(
                    "another live monitor is named {:?} in cluster {:?}; give each monitor its own [cluster] monitor name",
                    settings.monitor, settings.name
                )));
            }
            Ok(_) => {}
            Err(error) => return Err(Ended::Lost(format!("cannot register: {error}"))),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return Err(Ended::Stopped),
        }
    }
}

/// True when the lease is still alive and the election key is the one the campaign made.
async fn confirm_leadership(
    client: &mut Client,
    lease: i64,
    key: &[u8],
    rev: i64,
) -> Result<bool, etcd_client::Error> {
    let alive = client.lease_time_to_live(lease, None).await?.ttl() > 0;
    let stored = client.get(key.to_vec(), None).await?;
    let ours = stored.kvs().first().is_some_and(|kv| kv.create_revision() == rev && kv.lease() == lease);
    Ok(alive && ours)
}

/// Reads who leads and who is registered, and publishes it.
async fn refresh(
    client: &mut Client,
    settings: &ClusterSettings,
    leading: Option<i64>,
    tenure: &Tenure,
    status: &watch::Sender<ClusterStatus>,
) -> Result<(), etcd_client::Error> {
    let prefix = format!("{}/members/", settings.root());
    let members = client.get(prefix.clone(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    let members: Vec<String> = members
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let leader = match leading {
        Some(_) => None,
        None => match client.leader(settings.election()).await {
            Ok(answer) => {
                answer.kv().map(|kv| (kv.value_str().unwrap_or("?").to_string(), kv.create_revision()))
            }
            // No leader yet: etcd answers "election: no leader".
            Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("no leader") => None,
            Err(error) => return Err(error),
        },
    };
    let now = Instant::now();
    status.send_modify(|status| {
        status.etcd_reachable = true;
        status.etcd_error = None;
        status.members = members;
        match leading {
            Some(_) => {
                status.tenure_left_ms =
                    tenure.valid_until().map(|until| until.saturating_duration_since(now).as_millis() as u64);
            }
            None => {
                status.role = "follower";
                status.tenure_left_ms = None;
                status.leader = leader.as_ref().map(|(name, _)| name.clone());
                status.fencing_token = leader.map(|(_, token)| token);
            }
        }
    });
    Ok(())
}

/// Publishes this monitor's view (on its session's lease, so a dead monitor's view goes with
/// it), reads every live monitor's, and names the ones cut off. One small write per monitor
/// every [`VIEW_EVERY`], whatever the fleet's size.
async fn compare_views(
    client: &mut Client,
    settings: &ClusterSettings,
    lease: i64,
    mine: View,
    status: &watch::Sender<ClusterStatus>,
) -> Result<(), etcd_client::Error> {
    let prefix = format!("{}/views/", settings.root());
    let value = serde_json::to_string(&mine).expect("a view always serializes");
    client
        .put(format!("{prefix}{}", settings.monitor), value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    let stored = client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
    let views: std::collections::BTreeMap<String, View> = stored
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(&prefix)?.to_string();
            Some((name, serde_json::from_slice(kv.value()).ok()?))
        })
        .collect();
    let odd = cut_off(&views);
    let me = &settings.monitor;
    let was = status.borrow().cut_off.contains(me);
    let is = odd.contains(me);
    if is && !was {
        tracing::warn!(
            cluster = %settings.name, lost = mine.suspect + mine.down, nodes = mine.nodes,
            "this monitor cannot hear most of the fleet while the other monitors can: it is cut off (its network, or it is starved), not watching a mass failure"
        );
    } else if was && !is {
        tracing::info!(cluster = %settings.name, "this monitor hears the fleet like the others again");
    }
    status.send_modify(|status| {
        status.views = views;
        status.cut_off = odd;
    });
    Ok(())
}

#[cfg(test)]
mod tests;
