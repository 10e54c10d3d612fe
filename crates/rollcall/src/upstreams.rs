//! `rollcall upstreams`: keeps a load balancer's list of backends current. It reads a group's
//! members that are up (`GET /v1/groups/{group}`), renders them for the proxy, writes the file
//! atomically, reloads the proxy when the list changed, and waits for the next transition of
//! that group on the event stream.

use crate::cli::{UpstreamFormat, UpstreamsArgs};
use crate::client::{REQUEST_TIMEOUT, http_agent};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn main(args: UpstreamsArgs) -> anyhow::Result<ExitCode> {
    let base = args.client.api.trim_end_matches('/').to_string();
    let agent = http_agent(Some(REQUEST_TIMEOUT));
    let streaming = http_agent(None);
    let mut current: Option<Vec<String>> = None;
    loop {
        let up = up_members(&agent, &base, &args.group)?;
        if current.as_ref() != Some(&up) {
            let text = render(args.format, &args.group, &up);
            match &args.output {
                Some(path) => write_atomically(path, &text)?,
                None => print!("{text}"),
            }
            eprintln!(
                "{}: {} up: {}",
                args.group,
                up.len(),
                if up.is_empty() { "-".into() } else { up.join(" ") }
            );
            // The first render reloads too: the file may differ from what the proxy runs.
            if let Some(command) = &args.reload {
                reload(command)?;
            }
            current = Some(up);
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        wait_for_change(&streaming, &base, &args.group);
    }
}

/// Addresses of the group's members that are up, sorted.
fn up_members(agent: &ureq::Agent, base: &str, group: &str) -> anyhow::Result<Vec<String>> {
    let url = format!("{base}/v1/groups/{group}");
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|error| anyhow::anyhow!("cannot reach the monitor at {url} ({error})"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string()?;
    if status == 404 {
        return Ok(Vec::new()); // no member known (yet): an empty list
    }
    if !status.is_success() {
        bail!("{url}: HTTP {status}: {body}");
    }
    let value: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("{url}: not JSON"))?;
    Ok(value["up"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect())
}

/// Blocks until the event stream reports a transition in the group (or drops, after which
/// the caller simply re-reads the list).
fn wait_for_change(agent: &ureq::Agent, base: &str, group: &str) {
    let url = format!("{base}/v1/events/stream?group={group}");
    match agent.get(&url).call() {
        Ok(response) if response.status().is_success() => {
            let reader = BufReader::new(response.into_body().into_reader());
            for line in reader.lines() {
                match line {
                    Ok(line) if line.starts_with("data:") => return,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        _ => {}
    }
    // The stream dropped or failed: wait a little, so a dead monitor is not hammered.
    std::thread::sleep(Duration::from_secs(1));
}

pub fn render(format: UpstreamFormat, group: &str, up: &[String]) -> String {
    match format {
        UpstreamFormat::Lines => up.iter().map(|addr| format!("{addr}\n")).collect(),
        UpstreamFormat::Nginx => {
            let mut text = format!("# written by rollcall upstreams; group {group}\nupstream {group} {{\n");
            for addr in up {
                text.push_str(&format!("    server {addr};\n"));
            }
            if up.is_empty() {
                // nginx refuses an empty upstream; a server marked down keeps the config valid.
                text.push_str("    server 127.0.0.1:9 down;\n");
            }
            text.push_str("}\n");
            text
        }
        UpstreamFormat::Haproxy => {
            let mut text = format!("# written by rollcall upstreams; group {group}\nbackend {group}\n");
            for (index, addr) in up.iter().enumerate() {
                text.push_str(&format!("    server {group}-{index} {addr}\n"));
            }
            text
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("rollcall-tmp");
    std::fs::write(&temporary, text).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn reload(command: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .with_context(|| format!("cannot run the reload command {command:?}"))?;
    if !status.success() {
        eprintln!("reload command {command:?} failed ({status}); will retry at the next change");
    }
    Ok(())
}
