//! The CLI client: `rollcall nodes`, `node`, `explain`, `events`, `checks`, `pause`, `resume`, `status`,
//! `completions`. It talks to a running monitor's HTTP API; tables for people (coloured on a
//! terminal), `--json` for scripts.

use crate::cli::{
    ClientArgs, CompletionsArgs, EventsArgs, ExplainArgs, NodeArgs, NodesArgs, PauseArgs, ResumeArgs,
    SilenceAction, SilenceArgs,
};
use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes scripts can rely on.
pub const EXIT_MISMATCH: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let nodes = api.get("/v1/nodes")?;
    let selected: Vec<&Value> = list(&nodes)
        .filter(|node| args.state.as_deref().is_none_or(|state| node["state"] == state))
        .filter(|node| args.labels.iter().all(|(k, v)| node["labels"][k] == v.as_str()))
        .collect();
    if args.client.json {
        print_json(&Value::Array(selected.into_iter().cloned().collect()));
        return Ok(ExitCode::SUCCESS);
    }
    let rows = selected
        .iter()
        .map(|node| {
            vec![
                text(&node["id"]),
                state_cell(&node["state"]),
                age(&node["last_heartbeat_age_ms"]),
                node["phi"].as_f64().map(|phi| format!("{phi:.1}")).unwrap_or_else(|| "-".into()),
                labels(&node["labels"]),
            ]
        })
        .collect();
    print_table(&["NODE", "STATE", "LAST BEAT", "PHI", "LABELS"], rows);
    Ok(ExitCode::SUCCESS)
}

pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let node = api.get(&format!("/v1/nodes/{}", args.id))?;
    if args.client.json {
        print_json(&node);
    } else {
        for (key, value) in [
            ("node", text(&node["id"])),
            ("state", state_cell(&node["state"])),
            ("generation", text(&node["generation"])),
            ("last heartbeat", age(&node["last_heartbeat_age_ms"])),
            ("interval", format!("{} ms", text(&node["interval_ms"]))),
            ("phi", node["phi"].as_f64().map(|phi| format!("{phi:.2}")).unwrap_or_else(|| "-".into())),
            (
                "next deadline",
                node["deadline_in_ms"].as_i64().map(|ms| format!("in {ms} ms")).unwrap_or_else(|| "-".into()),
            ),
            ("address", text(&node["addr"])),
            ("labels", labels(&node["labels"])),
        ] {
            println!("{key:>15}  {value}");
        }
    }
    match args.expect {
        Some(expected) if node["state"] != expected.as_str() => {
            eprintln!("{} is {}, not {expected}", args.id, text(&node["state"]));
            Ok(ExitCode::from(EXIT_MISMATCH))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let e = api.get(&format!("/v1/nodes/{}/explain", args.id))?;
    if args.client.json {
        print_json(&e);
        return Ok(ExitCode::SUCCESS);
    }
    let secs = |v: &Value| v.as_f64().map_or("-".into(), |ms| format!("{:.3} s", ms / 1e3));
    let rate = |v: &Value| v.as_f64().map_or("-".into(), |r| format!("{r:.3e} per node-year"));
    let o = &e["observed"];
    let mut lines = vec![
        ("node", format!("{} ({})", text(&e["node"]["id"]), state_cell(&e["node"]["state"]))),
        ("detector", text(&e["detector"])),
        (
            "observed",
            format!(
                "{} intervals: mean {:.1} ms, std dev {:.1} ms; loss assumed {:.3} % (measured over the fleet {:.3} %)",
                text(&o["samples"]),
                o["mean_ms"].as_f64().unwrap_or(0.0),
                o["std_dev_ms"].as_f64().unwrap_or(0.0),
                100.0 * o["loss"].as_f64().unwrap_or(0.0),
                100.0 * o["fleet_loss"].as_f64().unwrap_or(0.0),
            ),
        ),
        ("suspect after", format!("{} of silence", secs(&e["suspect_after_ms"]))),
        ("down after", format!("{} of silence", secs(&e["down_after_ms"]))),
        (
            "next deadline",
            e["node"]["deadline_in_ms"]
                .as_i64()
                .map(|ms| format!("in {ms} ms"))
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    let s = &e["settings"];
    let knobs = match s["phi_threshold"].as_f64() {
        Some(phi) => format!(
            "phi threshold {phi} (suspect {}), acceptable pause {}",
            text(&s["phi_suspect_threshold"]),
            secs(&s["phi_acceptable_pause_ms"])
        ),
        None => {
            format!("fixed multiplier {}, grace {}", text(&s["fixed_multiplier"]), secs(&s["fixed_grace_ms"]))
        }
    };
    let whose =
        s["group"].as_str().map_or_else(|| "the fleet's".to_string(), |group| format!("group {group}'s"));
    let source = if s["source"] == "goals" { "from goals ([goals] apply)" } else { "from the configuration" };
    lines.push((
        "settings",
        format!(
            "{whose}, {source}: {knobs}, confirmation {}",
            if s["confirm"] == true { "on" } else { "off" }
        ),
    ));
    if !e["confirm"].is_null() {
        let c = &e["confirm"];
        lines.push((
            "confirmation",
            format!(
                "{} probes, then {} other agents: {} per round",
                text(&c["probes"]),
                text(&c["indirect"]),
                secs(&c["round_ms"])
            ),
        ));
    }
    let x = &e["expected"];
    lines.push((
        "crash declared",
        format!("within {} (mean {})", secs(&x["detect_max_ms"]), secs(&x["detect_mean_ms"])),
    ));
    lines.push(("false downs", rate(&x["false_downs_per_node_year"])));
    // Chen, Toueg and Aguilera's terms, for comparing with the literature.
    let q = &e["qos"];
    lines.push((
        "qos",
        format!(
            "T_D {}, T_MR {}, T_M {}, P_A {}",
            secs(&q["detection_time_ms"]),
            q["mistake_recurrence_s"].as_f64().map_or("- (no mistakes expected)".into(), recurrence),
            secs(&q["mistake_duration_ms"]),
            q["query_accuracy"].as_f64().map_or("-".into(), |p| format!("{p:.9}")),
        ),
    ));
    let g = &e["goal"];
    if g.is_null() {
        lines.push(("goal", "none set ([goals] in the config)".into()));
    } else {
        lines.push((
            "goal",
            format!(
                "{}: within {}, at most {} — {}",
                text(&g["scope"]),
                secs(&g["detect_within_ms"]),
                rate(&g["max_false_downs_per_node_year"]),
                if g["met"] == true { paint("up", "kept") } else { paint("down", "missed") }
            ),
        ));
        let a = &g["advice"];
        let knob = match a["phi_threshold"].as_f64() {
            Some(phi) => format!(
                "phi {} {phi:.2} with acceptable_pause {}",
                if a["confirm"] == true { "suspect_threshold" } else { "threshold" },
                secs(&a["phi_acceptable_pause_ms"])
            ),
            None => format!("fixed multiplier {:.2}", a["fixed_multiplier"].as_f64().unwrap_or(0.0)),
        };
        lines.push((
            "advice",
            format!(
                "interval {}, {knob}, confirmation {}: within {}, {}",
                secs(&a["interval_ms"]),
                if a["confirm"] == true { "on" } else { "off" },
                secs(&a["expected"]["detect_max_ms"]),
                rate(&a["expected"]["false_downs_per_node_year"])
            ),
        ));
        lines.push(("", text(&g["summary"])));
    }
    for (key, value) in lines {
        println!("{key:>15}  {value}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let mut query = Vec::new();
    if let Some(kind) = &args.kind {
        query.push(format!("kind={kind}"));
    }
    if let Some(node) = &args.node {
        query.push(format!("node={node}"));
    }
    let mut after = args.since;
    // Print what is stored, page by page, then (with --follow) stream the rest.
    loop {
        let mut page_query = query.clone();
        page_query.push(format!("since={after}"));
        let page = api.get(&format!("/v1/events?{}", page_query.join("&")))?;
        let rows: Vec<&Value> = list(&page).collect();
        if rows.is_empty() {
            break;
        }
        for event in rows {
            after = event["id"].as_i64().unwrap_or(after);
            print_event(event, args.client.json);
        }
    }
    if args.follow {
        api.follow(&query, after, args.client.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checks(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args);
    let checks = api.get("/v1/checks")?;
    if args.json {
        print_json(&checks);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = list(&checks)
        .map(|check| {
            let schedule = &check["schedule"];
            let when = match schedule["cron"].as_str() {
                Some(cron) => format!("cron {cron} {}", schedule["timezone"].as_str().unwrap_or("UTC")),
                None => format!("every {}", text(&schedule["period"])),
            };
            let last_run = check["pings"]
                .as_array()
                .and_then(|pings| pings.iter().find_map(|ping| ping["duration_ms"].as_u64()))
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            vec![
                text(&check["id"]),
                state_cell(&check["state"]),
                when,
                format!("grace {}", text(&schedule["grace"])),
                text(&check["last_ping_at"]),
                last_run,
            ]
        })
        .collect();
    print_table(&["CHECK", "STATE", "SCHEDULE", "GRACE", "LAST PING", "LAST RUN"], rows);
    Ok(ExitCode::SUCCESS)
}

pub fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let what = if args.check { "checks" } else { "nodes" };
    let body = match args.duration {
        Some(span) => serde_json::json!({ "for": humantime::format_duration(span).to_string() }),
        None => serde_json::json!({}),
    };
    let answer = api.post(&format!("/v1/{what}/{}/pause", args.id), &body)?;
    report_write(&answer, &args.client)
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.client);
    let what = if args.check { "checks" } else { "nodes" };
    let answer = api.post(&format!("/v1/{what}/{}/resume", args.id), &serde_json::json!({}))?;
    report_write(&answer, &args.client)
}

/// `rollcall silence add|list|rm`.
pub fn silence(args: SilenceArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        SilenceAction::Add(add) => {
            let api = Api::new(&add.client);
            let mut body = serde_json::json!({ "matchers": add.matchers, "reason": add.reason });
            if let Some(span) = add.duration {
                body["for"] = span.into();
            }
            if let Some(until) = add.until {
                body["until"] = until.into();
            }
            let silence = api.post("/v1/silences", &body)?;
            if add.client.json {
                print_json(&silence);
            } else {
                println!("silence {} until {}", text(&silence["id"]), text(&silence["ends_at"]));
            }
        }
        SilenceAction::List(client) => {
            let silences = Api::new(&client).get("/v1/silences")?;
            if client.json {
                print_json(&silences);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = list(&silences)
                .map(|s| {
                    let matchers: Vec<String> = list(&s["matchers"]).map(text).collect();
                    vec![text(&s["id"]), matchers.join(" "), text(&s["ends_at"]), text(&s["reason"])]
                })
                .collect();
            print_table(&["ID", "MATCHERS", "ENDS", "REASON"], rows);
        }
        SilenceAction::Rm(rm) => {
            Api::new(&rm.client).delete(&format!("/v1/silences/{}", rm.id))?;
            if !rm.client.json {
                println!("silence {} ended", rm.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args);
    let status = api.get("/v1/status")?;
    if args.json {
        print_json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    println!("rollcall {} at {}, up {}", text(&status["version"]), args.api, text(&status["uptime"]));
    println!("detector {}, {} self-pause(s)", text(&status["detector"]), text(&status["self_pauses"]));
    let by_state = status["nodes"].as_object().map(|states| {
        states
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(s, n)| format!("{n} {}", paint(s, s)))
            .collect::<Vec<_>>()
    });
    println!(
        "nodes: {}",
        by_state
            .filter(|parts| !parts.is_empty())
            .map(|parts| parts.join(", "))
            .unwrap_or_else(|| "none".into())
    );
    println!("checks: {}, open incidents: {}", text(&status["checks"]), text(&status["open_incidents"]));
    for sink in list(&status["sinks"]) {
        let health = if sink["failing"] == true { paint("down", "failing") } else { paint("up", "ok") };
        println!("sink {}: {health}, {} pending", text(&sink["name"]), text(&sink["pending"]));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "rollcall", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

fn report_write(answer: &Value, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    if client.json {
        print_json(answer);
    } else {
        let until =
            answer["paused_until"].as_str().map(|until| format!(" until {until}")).unwrap_or_default();
        println!("{} is {}{until}", text(&answer["id"]), state_cell(&answer["state"]));
    }
    Ok(ExitCode::SUCCESS)
}

/// Longest a plain API request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for the monitor's API that hands every status to the caller (errors are
/// JSON worth reading). `None`: no overall timeout, for event streams that stay open.
pub fn http_agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(timeout).build().into()
}

/// A running monitor's API.
struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    fn new(args: &ClientArgs) -> Api {
        let agent = http_agent(Some(REQUEST_TIMEOUT));
        Api { base: args.api.trim_end_matches('/').to_string(), token: args.token.clone(), agent }
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        // Reads may be protected too (`api.protect_reads`).
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|error| unreachable(&url, error))?;
        answer(&url, response)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|error| unreachable(&url, error))?;
        answer(&url, response)
    }

    /// A DELETE with the token; a 204 has no body to read.
    fn delete(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.delete(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|error| unreachable(&url, error))?;
        if response.status().is_success() {
            return Ok(());
        }
        answer(&url, response).map(|_| ())
    }

    /// Streams transitions and incident changes, reconnecting from the last event seen when
    /// the connection drops.
    fn follow(&self, query: &[String], mut after: i64, json: bool) -> anyhow::Result<()> {
        let url = format!("{}/v1/events/stream?{}", self.base, query.join("&"));
        let streaming = http_agent(None);
        let mut failures = 0u32;
        loop {
            let response = streaming.get(&url).header("last-event-id", after.to_string()).call();
            match response {
                Ok(response) if response.status().is_success() => {
                    failures = 0;
                    let reader = BufReader::new(response.into_body().into_reader());
                    for line in reader.lines() {
                        let Ok(line) = line else { break };
                        if let Some(data) = line.strip_prefix("data:")
                            && let Ok(event) = serde_json::from_str::<Value>(data.trim())
                        {
                            after = event["id"].as_i64().unwrap_or(after);
                            print_event(&event, json);
                        }
                    }
                }
                Ok(response) => bail!("{url}: HTTP {}", response.status()),
                Err(error) if failures < 30 => {
                    failures += 1;
                    eprintln!("connection lost ({error}); reconnecting from event {after}");
                }
                Err(error) => return Err(unreachable(&url, error)),
            }
            std::thread::sleep(Duration::from_secs(1).min(Duration::from_millis(200) * failures.max(1)));
        }
    }
}

fn unreachable(url: &str, error: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot reach the monitor at {url} ({error}); is it running? (--api or ROLLCALL_API)")
}

fn answer(url: &str, mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.body_mut().read_to_string().with_context(|| format!("{url}: unreadable answer"))?;
    let value: Value =
        serde_json::from_str(&body).with_context(|| format!("{url}: HTTP {status}, not JSON"))?;
    if !status.is_success() {
        bail!(
            "{}",
            value["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"))
        );
    }
    Ok(value)
}

/// `rollcall cluster status`: exit 0 while etcd is reachable and a leader is known, 1 when
/// not (for scripts).
pub fn cluster_status(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args);
    let cluster = api.get("/v1/cluster")?;
    let healthy = cluster["etcd_reachable"] == true && cluster["leader"].is_string();
    if args.json {
        print_json(&cluster);
    } else {
        println!(
            "cluster {}: this monitor is {}, {}",
            text(&cluster["name"]),
            text(&cluster["monitor"]),
            text(&cluster["role"])
        );
        match cluster["leader"].as_str() {
            Some(leader) => println!("leader {leader}, fencing token {}", text(&cluster["fencing_token"])),
            None => println!("leader unknown"),
        }
        let members: Vec<String> = list(&cluster["members"]).map(text).collect();
        println!(
            "members: {}",
            if members.is_empty() { "none known".to_string() } else { members.join(", ") }
        );
        match cluster["etcd_error"].as_str() {
            Some(error) => println!("etcd: {} ({error})", paint("down", "unreachable")),
            None => println!(
                "etcd: {}, {} error(s) since start",
                paint("up", "reachable"),
                text(&cluster["etcd_errors"])
            ),
        }
        let voters: Vec<String> = list(&cluster["voters"]).map(text).collect();
        println!(
            "agreement: {} of {} voting monitor(s) must say down ({}); {} node(s) down, {} in doubt",
            text(&cluster["quorum"]),
            voters.len(),
            if voters.is_empty() { "none yet".to_string() } else { voters.join(", ") },
            text(&cluster["agreed_down"]),
            text(&cluster["in_doubt_total"])
        );
        for doubt in list(&cluster["in_doubt"]).take(10) {
            let from: Vec<String> = list(&doubt["unreachable_from"]).map(text).collect();
            println!("  {} suspect (unreachable from {})", text(&doubt["node"]), from.join(", "));
        }
        let cut_off: Vec<String> = list(&cluster["cut_off"]).map(text).collect();
        if !cut_off.is_empty() {
            println!("cut off (not counted): {}", paint("down", &cut_off.join(", ")));
        }
        if cluster["failing_open"] == true {
            println!(
                "{}: etcd is out of reach; this monitor pages on its own view",
                paint("down", "failing open")
            );
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn labels(value: &Value) -> String {
    value
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn age(value: &Value) -> String {
    value
        .as_u64()
        .map(|ms| if ms < 10_000 { format!("{ms} ms ago") } else { format!("{}s ago", ms / 1000) })
        .unwrap_or_else(|| "never".into())
}

fn state_cell(value: &Value) -> String {
    let state = value.as_str().unwrap_or("?");
    paint(state, state)
}

/// Colours a word by the state it stands for, on a terminal only.
fn paint(state: &str, word: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return word.to_string();
    }
    let code = match state {
        "up" => "32",
        "suspect" => "33",
        "down" => "31;1",
        "new" => "36",
        _ => "90",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

fn print_event(event: &Value, json: bool) {
    if json {
        println!("{event}");
        return;
    }
    if let Some(change) = event["change"].as_str() {
        // An incident change (`event: incident` on the stream).
        let held = if event["sent"] == false { " (held by a silence)" } else { "" };
        println!(
            "{:>6}  {}  incident {} {change}: {}{held}",
            text(&event["id"]),
            text(&event["at"]),
            text(&event["incident"]["id"]),
            text(&event["summary"]),
        );
        let _ = std::io::stdout().flush();
        return;
    }
    println!(
        "{:>6}  {}  {:<5} {:<20} {} -> {} ({}){}",
        text(&event["id"]),
        text(&event["at"]),
        text(&event["kind"]),
        text(&event["node"]),
        state_cell(&event["from"]),
        state_cell(&event["to"]),
        text(&event["reason"]),
        exit_detail(event),
    );
    let _ = std::io::stdout().flush();
}

/// " (signal 9, SIGKILL)" after a `process-exited` that carries its status, else nothing.
fn exit_detail(event: &Value) -> String {
    let read = |key: &str| event[key].as_i64().and_then(|n| i32::try_from(n).ok());
    let status = rollcall_core::wire::ExitStatus { code: read("exit_code"), signal: read("exit_signal") };
    crate::alerts::build::exit_detail(&status)
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialize"));
}

/// Prints rows under headers, each column as wide as its widest cell (colour codes aside).
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let visible = |cell: &str| {
        let mut width = 0;
        let mut in_escape = false;
        for c in cell.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, _) => width += 1,
                _ => {}
            }
        }
        width
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(visible(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width.saturating_sub(visible(cell)))))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for row in rows {
        line(row);
    }
}

/// A mean time between mistakes in the largest unit that keeps it readable.
fn recurrence(seconds: f64) -> String {
    match seconds {
        s if s >= 365.25 * 86_400.0 => format!("{:.1} years", s / (365.25 * 86_400.0)),
        s if s >= 86_400.0 => format!("{:.1} days", s / 86_400.0),
        s if s >= 3_600.0 => format!("{:.1} hours", s / 3_600.0),
        s => format!("{s:.1} s"),
    }
}
