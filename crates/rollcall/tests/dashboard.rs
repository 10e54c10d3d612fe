//! The web dashboard, in a real browser: headless Chromium (Debian's `chromium` package,
//! which `cargo xtask test` installs) driven over the DevTools protocol against a running
//! monitor. An agent is SIGKILLed and its tile turns down without a reload; the page asks no
//! host but the monitor; a screenshot goes to `target/dashboard.png`.
//!
//! The DevTools client is a few dozen lines over `std::net::TcpStream` (the WebSocket
//! handshake and text frames), so the test needs no WebSocket or browser-automation crate.

#[path = "support/etcd.rs"]
mod etcd;
mod support;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Agent, DEADLINE, Monitor, Sandbox};

const CHROMIUM: &str = "/usr/bin/chromium";

const FAST: &str = r#"
[phi]
acceptable_pause = "300ms"
min_std_deviation = "50ms"
"#;

/// Adds 10,000 synthetic nodes (every 97th down, in 40 groups) to the page's node table,
/// renders the grid, and reports what it shows.
const TEN_THOUSAND: &str = r#"(async () => {
  const app = await import('/assets/app.js');
  for (let i = 0; i < 10000; i += 1) {
    const id = `synthetic-${String(i).padStart(5, '0')}`;
    app.store.nodes.set(id, { id, state: i % 97 === 0 ? 'down' : 'up', generation: 1, sequence: 1,
      labels: { group: `g${i % 40}` }, interval_ms: 1000, last_heartbeat_age_ms: 0, phi: 0, level: 0,
      deadline_in_ms: null, addr: null });
  }
  history.replaceState(null, '', '#/');
  const started = performance.now();
  window.dispatchEvent(new HashChangeEvent('hashchange'));
  return {
    render_ms: Math.round(performance.now() - started),
    tiles: document.querySelectorAll('.tile').length,
    groups: document.querySelectorAll('.group').length,
    summary: document.querySelector('.summary').textContent,
    pages: document.querySelector('.pager').textContent,
    down: document.querySelector('.tile').dataset.state === 'down',
  };
})()"#;

#[test]
fn a_killed_agents_tile_turns_down_live_in_a_real_browser() {
    let started = Instant::now();
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let interval = Duration::from_millis(200);
    let agents: Vec<Agent> = [("web-1", "web"), ("web-2", "web"), ("db-1", "db")]
        .into_iter()
        .map(|(name, group)| Agent::start(&sandbox, name, monitor.udp, interval, &[("group", group)]))
        .collect();
    for agent in &agents {
        monitor.wait_for_state(&agent.name, "up");
    }

    let mut browser = Browser::launch();
    let origin = format!("http://{}", monitor.http);
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.call("Page.navigate", json!({ "url": format!("{origin}/") }));
    browser.wait_for("three up tiles", "document.querySelectorAll('.tile[data-state=\"up\"]').length === 3");
    browser.wait_for("the live stream to connect", "document.getElementById('live').dataset.live === 'live'");
    // Without [cluster], /v1/cluster answers 404 and the cluster strip stays hidden.
    browser.wait_for(
        "the cluster strip to learn there is no cluster",
        "document.getElementById('cluster')?.dataset.cluster === 'off'",
    );
    assert_eq!(
        browser.evaluate("document.getElementById('cluster').hidden"),
        json!(true),
        "a strip without [cluster]"
    );
    // A marker in the page's global scope survives only if the page is never reloaded.
    browser.evaluate("window.rollcallTestMarker = 'same page'");

    agents[1].signal(Signal::SIGKILL);
    let tile = "document.querySelector('.tile[data-node=\"web-2\"]')?.dataset.state";
    browser.wait_for("web-2's tile to say down", &format!("{tile} === 'down'"));
    assert_eq!(browser.evaluate("window.rollcallTestMarker"), json!("same page"), "the page reloaded");
    let streamed = browser.evaluate("Number(document.getElementById('live').dataset.events || 0)");
    assert!(
        streamed.as_u64() >= Some(2),
        "the stream delivered {streamed} transitions, expected up->suspect->down"
    );
    assert_eq!(browser.evaluate("document.querySelectorAll('.tile[data-state=\"up\"]').length"), json!(2));
    // The counts at the top follow (re-rendered within half a second of the event).
    browser.wait_for(
        "the down count to be 1",
        "document.querySelector('.count[data-state=\"down\"]')?.dataset.count === '1'",
    );
    let screenshot = browser.screenshot("dashboard.png");
    println!("screenshot of the grid: {}", screenshot.display());
    // The same in the dark theme (prefers-color-scheme), for people to look at.
    let dark = json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] });
    browser.call("Emulation.setEmulatedMedia", dark);
    println!("screenshot in the dark theme: {}", browser.screenshot("dashboard-dark.png").display());
    browser.call("Emulation.setEmulatedMedia", json!({ "features": [] }));

    // The node page draws its charts as inline SVG; phi over time comes from the monitor
    // (rebuilt from the detector's window), so it has a history as soon as the page opens.
    browser.evaluate("location.hash = '#/node/web-1'");
    browser.wait_for("the phi chart", "document.querySelector('svg#phi-chart path.series') !== null");
    // The two numbers `rollcall explain` gives: time to declare a crash, false-down rate.
    browser.wait_for(
        "the expected detection time and false-down rate",
        "/^\\d+\\.\\d\\d s/.test(document.getElementById('expected-detection')?.textContent ?? '') \
         && /per node-year/.test(document.getElementById('expected-false-downs')?.textContent ?? '')",
    );
    browser.wait_for(
        "the monitor's phi curve on first open",
        "document.querySelector('svg#phi-chart')?.dataset.source === 'server' \
         && Number(document.querySelector('svg#phi-chart').dataset.points) > 20",
    );
    browser.wait_for(
        "the inter-arrival histogram to have bars",
        "document.querySelectorAll('svg#interarrival-chart rect.bin').length > 0",
    );
    browser
        .wait_for("the transition history", "document.querySelectorAll('table.events tbody tr').length >= 1");
    browser.wait_for(
        "ten inter-arrival samples (the detector's window, from the node detail)",
        "Number(/The (\\d+) inter-arrival times/.exec(document.querySelector('#interarrival-chart')?.parentElement.textContent)?.[1]) >= 10",
    );
    let screenshot = browser.screenshot("dashboard-node.png");
    println!("screenshot of the node page: {}", screenshot.display());

    // The other views render from the API without errors.
    browser.evaluate("location.hash = '#/events'");
    browser.wait_for("web-2's down in the timeline", "[...document.querySelectorAll('#events tbody tr')].some((row) => row.textContent.includes('web-2') && row.textContent.includes('down'))");
    for view in ["checks", "incidents"] {
        browser.evaluate(&format!("location.hash = '#/{view}'"));
        browser.wait_for(&format!("the {view} view"), "document.querySelector('main h1') && !document.querySelector('main p.muted')?.textContent.startsWith('Loading')");
    }
    assert_eq!(browser.evaluate("window.rollcallTestMarker"), json!("same page"), "the page reloaded");

    // The incidents view follows the stream: db-1's incident appears as an `incident` event
    // sets it, without a request.
    browser.evaluate("location.hash = '#/incidents'");
    browser.wait_for("web-2's incident", "document.querySelector('tr[data-subject=\"web-2\"]') !== null");
    agents[2].signal(Signal::SIGKILL);
    browser.wait_for(
        "db-1's open incident, from the stream",
        "document.querySelector('tr.open[data-subject=\"db-1\"]')?.dataset.source === 'stream'",
    );
    let incidents = browser.evaluate("Number(document.getElementById('live').dataset.incidents || 0)");
    assert!(incidents.as_u64() >= Some(1), "incident changes streamed: {incidents}");
    println!("screenshot of the incidents: {}", browser.screenshot("dashboard-incidents.png").display());

    // Readable with 10,000 nodes: the grid pages its tiles and aggregates groups. Synthetic
    // nodes go into the page's own table, and the grid is rendered at once (in the same task,
    // so the periodic refresh cannot replace them first).
    let big = browser.evaluate(TEN_THOUSAND);
    println!("grid with 10,003 nodes: {big}");
    assert_eq!(big["tiles"], json!(500), "one page of tiles: {big}");
    assert!(big["summary"].as_str().is_some_and(|text| text.contains("of 10,003 nodes")), "{big}");
    assert_eq!(big["down"], json!(true), "problems sort first: {big}");
    assert!(big["pages"].as_str().is_some_and(|text| text.contains("page 1 of 21")), "{big}");
    println!("screenshot with 10,003 nodes: {}", browser.screenshot("dashboard-10k.png").display());

    browser.drain();
    let foreign: Vec<&String> =
        browser.requests.iter().filter(|url| !url.starts_with(&format!("{origin}/"))).collect();
    assert!(foreign.is_empty(), "the page asked other hosts: {foreign:?}");
    assert!(
        browser.requests.iter().any(|url| url.contains("/v1/events/stream")),
        "no stream: {:?}",
        browser.requests
    );
    assert!(browser.errors.is_empty(), "the page logged errors: {:#?}", browser.errors);
    println!("browser test passed in {:?}", started.elapsed());
}

/// Renders a made-up status in which m2 is cut off, and reads the strip back.
const CUT_OFF: &str = r#"(async () => {
  const cluster = await import('/assets/cluster.js');
  const strip = document.getElementById('cluster');
  cluster.renderCluster(strip, { name: 'prod', monitor: 'm1', etcd: [], etcd_reachable: true, etcd_error: null,
    role: 'leader', leader: 'm1', fencing_token: 7, lease_ttl_seconds: 3, tenure_left_ms: 2000,
    members: ['m1', 'm2', 'm3'], etcd_errors: 0, elections_won: 1, views: {}, cut_off: ['m2'] });
  return {
    cut_off: [...strip.querySelectorAll('.member[data-cut-off]')].map((member) => member.textContent),
    named: strip.querySelector('.cluster-cut-off')?.textContent,
    colour: getComputedStyle(strip.querySelector('.member[data-cut-off]')).backgroundColor,
    plain: getComputedStyle(strip.querySelector('.member[data-member="m3"]')).backgroundColor,
  };
})()"#;

/// A monitor with `[cluster]` shows the cluster strip: which monitor this is and its role,
/// the leader and its fencing token, etcd reachable, the members, and who is cut off.
#[test]
fn the_cluster_strip_shows_this_monitors_role_and_the_leader() {
    let dir = Sandbox::new();
    let etcd = etcd::Etcd::start(dir.path());
    let endpoints = etcd.endpoints_toml();
    let config = |name: &str| {
        format!(
            "[cluster]\nname = \"prod\"\nmonitor = \"{name}\"\netcd = [{endpoints}]\nlease_ttl = \"3s\"\n"
        )
    };
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let monitors = [Monitor::start(&a, &config("m1")), Monitor::start(&b, &config("m2"))];
    // Both registered, one leads, and both name it.
    let mut views = Vec::new();
    monitors[0].wait_until(DEADLINE, "one leader both monitors name", || {
        views = monitors.iter().map(|monitor| monitor.get_json("/v1/cluster").1).collect();
        let leaders = views.iter().filter(|view| view["role"] == "leader").count();
        let agreed = views.iter().all(|view| {
            view["leader"] == views[0]["leader"]
                && view["fencing_token"] == views[0]["fencing_token"]
                && view["members"] == json!(["m1", "m2"])
        });
        if leaders == 1 && agreed { Ok(()) } else { Err(format!("{views:?}")) }
    });
    let leader = views[0]["leader"].as_str().expect("a leader's name").to_string();
    let token = views[0]["fencing_token"].as_i64().expect("a fencing token");
    // The follower's dashboard: its own role, and the other monitor as leader.
    let follower = usize::from(views[0]["role"] == "leader");
    let name = ["m1", "m2"][follower];

    let mut browser = Browser::launch();
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.call("Page.navigate", json!({ "url": format!("http://{}/", monitors[follower].http) }));
    browser
        .wait_for("the cluster strip", "document.getElementById('cluster')?.dataset.cluster === 'follower'");
    let strip = browser.evaluate(
        "(() => { const strip = document.getElementById('cluster'); return { hidden: strip.hidden, \
         text: strip.innerText, role: document.getElementById('cluster-role').textContent, \
         leader: document.getElementById('cluster-leader').textContent, \
         token: document.getElementById('cluster-token')?.textContent, \
         etcd: strip.querySelector('.cluster-etcd').dataset.reachable, \
         members: [...strip.querySelectorAll('.member')].map((member) => member.textContent), \
         me: strip.querySelector('.member[data-self]')?.textContent, \
         cut_off: strip.querySelectorAll('.member[data-cut-off]').length }; })()",
    );
    println!("cluster strip: {strip}");
    assert_eq!(strip["hidden"], json!(false), "{strip}");
    assert_eq!(strip["role"], json!("follower"), "{strip}");
    assert_eq!(strip["leader"], json!(leader), "{strip}");
    assert_eq!(strip["token"], json!(token.to_string()), "{strip}");
    assert!(strip["text"].as_str().is_some_and(|text| text.contains("prod")), "{strip}");
    assert_eq!(strip["etcd"], json!("true"), "{strip}");
    assert_eq!(strip["members"], json!(["m1", "m2"]), "{strip}");
    assert_eq!(strip["me"], json!(name), "{strip}");
    assert_eq!(strip["cut_off"], json!(0), "{strip}");
    println!("screenshot with the cluster strip: {}", browser.screenshot("dashboard-cluster.png").display());

    // A cut-off monitor is highlighted (a made-up status: cutting a monitor off for real
    // takes agents and is tests/cluster.rs's job).
    let shown = browser.evaluate(CUT_OFF);
    assert_eq!(shown["cut_off"], json!(["m2"]), "{shown}");
    assert_eq!(shown["named"], json!("m2"), "{shown}");
    assert_ne!(shown["colour"], shown["plain"], "the cut-off monitor stands out: {shown}");
    println!("screenshot with m2 cut off: {}", browser.screenshot("dashboard-cluster-cut-off.png").display());
    browser.drain();
    assert!(browser.errors.is_empty(), "the page logged errors: {:#?}", browser.errors);
}

/// The assets themselves: the policy header, content types, ETag revalidation, and no
/// absolute URL anywhere (so nothing can be fetched from a CDN).
#[test]
fn assets_are_embedded_with_a_strict_policy_and_no_foreign_urls() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, FAST);
    let client: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/views.js", "text/javascript"),
        ("/assets/charts.js", "text/javascript"),
        ("/assets/cluster.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let url = format!("http://{}{path}", monitor.http);
        let mut response = client.get(&url).call().expect("GET an asset");
        assert_eq!(response.status(), 200, "{path}");
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(header("content-type").starts_with(kind), "{path}: content-type {}", header("content-type"));
        assert!(header("content-security-policy").starts_with("default-src 'self'"), "{path}: CSP");
        let etag = header("etag");
        assert!(etag.len() == 18 && etag.starts_with('"'), "{path}: etag {etag:?}");
        let body = response.body_mut().read_to_string().expect("read an asset");
        // The SVG namespace is a name, not a request; nothing else may be absolute.
        let stripped = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !stripped.contains("http://") && !stripped.contains("https://"),
            "{path} has an absolute URL"
        );
        assert!(!path.ends_with(".html") || !body.contains("<script>"), "inline script in {path}");
        let again = client.get(&url).header("If-None-Match", &etag).call().expect("revalidate");
        assert_eq!(again.status(), 304, "{path}: If-None-Match with the current ETag");
    }
    let missing = client.get(format!("http://{}/assets/nope.js", monitor.http)).call().expect("GET");
    assert_eq!(missing.status(), 404);
}

// ---------------------------------------------------------------------------------------
// A headless Chromium and a minimal DevTools-protocol client.

/// A headless Chromium and a DevTools connection to its page.
struct Browser {
    socket: TcpStream,
    next_id: u64,
    /// Every URL the page requested (`Network.requestWillBeSent`).
    requests: Vec<String>,
    /// Exceptions and console errors (a CSP violation is one).
    errors: Vec<String>,
    // Dropped after the socket.
    _chromium: Chromium,
}

/// Chromium in its own process group, killed (with every helper process) and reaped on
/// drop, also when the test panics; its profile directory is removed after that.
struct Chromium {
    process: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: `cargo xtask test` installs it (Debian's chromium package), \
             or run `apt-get install --no-install-recommends chromium`"
        );
        let profile = tempfile::Builder::new().prefix("rollcall-chromium-").tempdir().expect("temp dir");
        let process = Command::new(CHROMIUM)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .args(["--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let mut chromium = Chromium { process, profile };
        let port = chromium.devtools_port();
        let socket = websocket_connect(port, &page_socket_path(port));
        let mut browser =
            Browser { socket, next_id: 0, requests: Vec::new(), errors: Vec::new(), _chromium: chromium };
        for domain in ["Page", "Network", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        browser
    }

    /// Sends one command and returns its result; events that arrive meanwhile are recorded.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        send_text(&mut self.socket, &message);
        loop {
            let reply: Value =
                serde_json::from_str(&read_message(&mut self.socket)).expect("DevTools sends JSON");
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {}", reply["error"]);
                return reply["result"].clone();
            }
            self.record(&reply);
        }
    }

    fn record(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                self.requests.push(params["request"]["url"].as_str().unwrap_or("?").to_string());
            }
            Some("Runtime.exceptionThrown") => self.errors.push(params["exceptionDetails"].to_string()),
            // A monitor without [cluster] answers /v1/cluster with 404, and that is how the
            // strip learns to stay hidden; the browser logs every 404 as an error.
            Some("Log.entryAdded")
                if params["entry"]["source"] == "network"
                    && params["entry"]["url"].as_str().is_some_and(|url| url.ends_with("/v1/cluster"))
                    && params["entry"]["text"].as_str().is_some_and(|text| text.contains("404")) => {}
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(params["entry"]["text"].as_str().unwrap_or("?").to_string());
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors.push(params.to_string())
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`, for at most [`DEADLINE`].
    fn wait_for(&mut self, what: &str, expression: &str) {
        let started = Instant::now();
        while self.evaluate(expression) != json!(true) {
            if started.elapsed() > DEADLINE {
                let text = self.evaluate("document.getElementById('view')?.innerText.slice(0, 2000)");
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}\npage shows: {text}\nerrors: {:#?}",
                    self.errors
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Records the events already sent (a cheap round trip flushes them).
    fn drain(&mut self) {
        self.evaluate("1");
    }

    /// Saves a PNG of the viewport to `target/NAME` and returns its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let result = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(result["data"].as_str().expect("a screenshot is base64"));
        let path = target_dir().join(name);
        std::fs::write(&path, png).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }
}

impl Chromium {
    /// Chromium writes its DevTools port to `DevToolsActivePort` in the profile once ready.
    fn devtools_port(&mut self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        loop {
            if let Some(port) =
                std::fs::read_to_string(&file).ok().and_then(|text| text.lines().next()?.parse().ok())
            {
                return port;
            }
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("chromium exited at start: {status}");
            }
            assert!(started.elapsed() < DEADLINE, "chromium wrote no DevToolsActivePort within {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Chromium starts helper processes (renderer, GPU, ...) in its group: kill them all.
        let group = Pid::from_raw(i32::try_from(self.process.id()).expect("a pid fits in i32"));
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.process.wait();
    }
}

/// The WebSocket path of the first page target (the `about:blank` Chromium opened).
fn page_socket_path(port: u16) -> String {
    let started = Instant::now();
    loop {
        let targets: Option<Value> = ureq::get(format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .ok()
            .and_then(|mut response| response.body_mut().read_to_string().ok())
            .and_then(|body| serde_json::from_str(&body).ok());
        let page = targets.as_ref().and_then(Value::as_array).and_then(|targets| {
            targets.iter().find(|target| target["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(String::from)
        });
        if let Some(url) = page {
            let path = url.splitn(4, '/').nth(3).expect("ws://host:port/path");
            return format!("/{path}");
        }
        assert!(started.elapsed() < DEADLINE, "chromium listed no page target: {targets:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&dir).expect("create the target dir");
    dir.canonicalize().expect("the target dir exists")
}

// ---------------------------------------------------------------------------------------
// WebSocket (RFC 6455), just enough for DevTools: client text frames, server frames.

fn websocket_connect(port: u16, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
    socket.set_read_timeout(Some(Duration::from_secs(30))).expect("set a read timeout");
    // The key is a fixed nonce: this client only talks to a local browser it started.
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("send the handshake");
    let mut reader = BufReader::new(socket.try_clone().expect("clone the socket"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("read the handshake");
    assert!(status.starts_with("HTTP/1.1 101"), "DevTools refused the WebSocket: {status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the handshake");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    // The server speaks only after our first command, so the reader has buffered nothing more.
    assert!(reader.buffer().is_empty(), "unexpected bytes after the handshake");
    socket
}

/// Sends one masked text frame (clients must mask; the mask itself need not be secret here).
fn send_text(socket: &mut TcpStream, text: &str) {
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x5a, 0x17, 0xc3, 0x8e];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    socket.write_all(&frame).expect("send to DevTools");
}

/// Reads one whole message (joining continuation frames), answering pings on the way.
fn read_message(socket: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).expect("read from DevTools (did chromium die?)");
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let length = match head[1] & 0x7f {
            126 => {
                let mut bytes = [0u8; 2];
                socket.read_exact(&mut bytes).expect("read a length");
                u64::from(u16::from_be_bytes(bytes))
            }
            127 => {
                let mut bytes = [0u8; 8];
                socket.read_exact(&mut bytes).expect("read a length");
                u64::from_be_bytes(bytes)
            }
            n => u64::from(n),
        };
        assert!(head[1] & 0x80 == 0, "servers do not mask frames");
        let mut payload = vec![0u8; usize::try_from(length).expect("a frame fits in memory")];
        socket.read_exact(&mut payload).expect("read a frame");
        match opcode {
            0x9 => {
                // Ping: answer with a pong carrying the same payload (masked, short).
                let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                socket.write_all(&pong).expect("send a pong");
            }
            0x8 => panic!("DevTools closed the connection"),
            0xa => {}
            _ => {
                message.extend_from_slice(&payload);
                if fin {
                    return String::from_utf8(message).expect("DevTools sends UTF-8 text");
                }
            }
        }
    }
}

/// Standard base64 (with padding), as `Page.captureScreenshot` returns.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let bits = data.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | (value(c) << (18 - 6 * i)));
        out.extend_from_slice(&bits.to_be_bytes()[1..data.len()]);
    }
    out
}
