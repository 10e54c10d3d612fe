//! The monitor run in-process through the binary's library: `rollcall::monitor::run` on
//! sockets the test binds, a store the test opens, and a shutdown future the test completes,
//! with an embedded `rollcall-agent` as the node. Where a real process is the point (signals,
//! crashes, restarts) the other test files run the binary; here it is not.

mod support;

use clap::Parser;
use rollcall::cli::{Cli, Command};
use rollcall::monitor::{Listeners, run};
use rollcall::settings::Settings;
use rollcall_agent::{Agent, AgentConfig};
use rollcall_core::monitor::NodeState;
use std::time::Duration;
use support::Sandbox;

/// Settings exactly as `rollcall monitor` would build them from its command line.
fn settings(sandbox: &Sandbox, config: &str) -> Settings {
    let config = sandbox.write_file("monitor", "toml", config);
    let path = |path: std::path::PathBuf| path.display().to_string();
    let cli = Cli::try_parse_from([
        "rollcall".to_string(),
        "monitor".to_string(),
        "--udp=127.0.0.1:0".to_string(),
        "--http=127.0.0.1:0".to_string(),
        format!("--data-dir={}", path(sandbox.data_dir())),
        format!("--key-file={}", path(sandbox.key_file())),
        format!("--config={}", path(config)),
    ])
    .expect("the command line parses");
    let Command::Monitor(args) = cli.command else { panic!("parsed as another subcommand") };
    Settings::from_args(&args).expect("valid settings")
}

/// `GET /v1/nodes/ID`'s `state`, or `None` while the node is unknown.
fn state(client: &ureq::Agent, http: std::net::SocketAddr, id: &str) -> Result<String, String> {
    let mut response =
        client.get(format!("http://{http}/v1/nodes/{id}")).call().map_err(|error| error.to_string())?;
    let body = response.body_mut().read_to_string().map_err(|error| error.to_string())?;
    let node: serde_json::Value = serde_json::from_str(&body).map_err(|error| format!("{error}: {body}"))?;
    node["state"].as_str().map(str::to_owned).ok_or_else(|| format!("no state in {body}"))
}

#[test]
fn the_monitor_runs_in_process_and_stops_when_its_shutdown_completes() {
    let sandbox = Sandbox::new();
    let settings = settings(&sandbox, support::QUICK);
    let (lock, store) =
        rollcall::store_thread::open_data_dir(&settings.data_dir).expect("the data dir opens");
    let listeners = Listeners::bind(&settings).expect("the sockets bind");
    let (udp, http) = (
        listeners.udp.local_addr().expect("a UDP address"),
        listeners.http.local_addr().expect("an HTTP address"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let monitor = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(run(listeners, store, settings, async {
            let _ = stopped.await;
        }))
    });

    // A node: the embedded agent on its own runtime, stopped (goodbye) by `leave`.
    let key = std::fs::read_to_string(sandbox.key_file()).expect("read the key file");
    let (leave, left) = tokio::sync::oneshot::channel::<()>();
    let node = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let config = AgentConfig::new("svc-1", vec![udp], &key)
                .expect("a valid config")
                .interval(Duration::from_millis(100));
            let agent = Agent::spawn(config).await.expect("the agent starts");
            let _ = left.await;
            agent.stop().await;
        });
    });

    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let wait_for = |wanted: &str| {
        support::wait_until(
            support::DEADLINE,
            &format!("svc-1 is {wanted}"),
            || match state(&client, http, "svc-1") {
                Ok(state) if state == wanted => Ok(()),
                Ok(state) => Err(format!("svc-1 is {state}")),
                Err(error) => Err(error),
            },
            String::new,
        )
    };
    wait_for("up");
    leave.send(()).expect("the node is running");
    node.join().expect("the node's thread ends");
    wait_for("left");

    // The shutdown future completes: `run` drains and returns, and releases the store.
    stop.send(()).expect("the monitor is running");
    monitor.join().expect("the monitor's thread ends").expect("the monitor stops cleanly");
    drop(lock);
    let (_lock, store) =
        rollcall::store_thread::open_data_dir(&sandbox.data_dir()).expect("the data dir opens again");
    let nodes = store.nodes().expect("read the nodes");
    let stored = nodes.iter().find(|node| node.id == "svc-1").expect("svc-1 is stored");
    assert_eq!(stored.state, NodeState::Left, "what `run` committed before it returned");
}
