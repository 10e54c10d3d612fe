//! Ping URLs end to end, called with curl as a crontab calls them: Healthchecks' slug form
//! (`/ping/<ping-key>/<slug>`, with every suffix, `?rid=` and `?create=1`) next to the token
//! form, and pings whose body is over the hard limit. The checks' own grammar and states are
//! in tests/checks.rs.

mod support;

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;
use support::{Monitor, Sandbox};

/// Deadline of every wait: generous, a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(30);
const API_TOKEN: &str = "0123456789abcdef0123";
const PING_KEY: &str = "pk_0123456789abcdefghijkl";
const WRONG_KEY: &str = "pk_0123456789abcdefghijkX";

/// Two checks: `backup` pinged by its id as slug, `NightlyDB` (not a slug) by its own slug.
fn config(auto_create: bool) -> String {
    format!(
        "[api]\ntoken = \"{API_TOKEN}\"\n\n[pings]\nping_key = \"{PING_KEY}\"\nauto_create = {auto_create}\n\n\
         [[check]]\nid = \"backup\"\ntoken = \"tok_backup_0123456789abcdefghij\"\nperiod = \"1h\"\ngrace = \"1h\"\n\n\
         [[check]]\nid = \"NightlyDB\"\nslug = \"nightly-db\"\ntoken = \"tok_nightly_0123456789abcdefghij\"\n\
         cron = \"0 3 * * *\"\n"
    )
}

#[test]
fn slug_urls_take_every_signal_rid_and_body_like_token_urls() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(false));
    let host = format!("http://{}", monitor.http);
    let url = |path: &str| format!("{host}/ping/{PING_KEY}/{path}");

    // The crontab line: the job ran and succeeded.
    cron_curl(&[&url("backup")]);
    assert_eq!(check(&monitor, "backup")["state"], "up");

    // Start and finish paired by rid, the exit code as the suffix, the output as the body.
    cron_curl(&[&url("backup/start?rid=run-1")]);
    cron_curl(&["--data-raw", "3 files copied", &url("backup/0?rid=run-1")]);
    cron_curl(&["--data-raw", "step 2 of 5", &url("backup/log")]);
    cron_curl(&[&url("backup/fail")]);
    assert_eq!(check(&monitor, "backup")["state"], "down");
    cron_curl(&[&url("backup/1")]);
    cron_curl(&["-X", "POST", &url("backup/0")]);
    cron_curl(&["-I", &url("backup")]);
    let backup = check(&monitor, "backup");
    assert_eq!((&backup["state"], &backup["slug"]), (&json!("up"), &json!("backup")));
    let pings: Vec<(String, Value, Value)> = backup["pings"]
        .as_array()
        .expect("pings")
        .iter()
        .map(|p| (p["signal"].as_str().unwrap_or("?").to_string(), p["rid"].clone(), p["body"].clone()))
        .collect();
    assert_eq!(
        pings,
        [
            ("success".into(), Value::Null, json!("")),
            ("exit-code:0".into(), Value::Null, json!("")),
            ("exit-code:1".into(), Value::Null, json!("")),
            ("fail".into(), Value::Null, json!("")),
            ("log".into(), Value::Null, json!("step 2 of 5")),
            ("exit-code:0".into(), json!("run-1"), json!("3 files copied")),
            ("start".into(), json!("run-1"), json!("")),
            ("success".into(), Value::Null, json!("")),
        ],
        "the history, newest first"
    );
    assert!(backup["pings"][5]["duration_ms"].is_u64(), "the rid paired the finish with its start");

    // A check whose id is not a slug answers to its own slug, and to its token as before.
    cron_curl(&[&url("nightly-db")]);
    cron_curl(&[&format!("{host}/ping/tok_nightly_0123456789abcdefghij/start")]);
    let nightly = check(&monitor, "NightlyDB");
    assert_eq!(
        (&nightly["state"], &nightly["slug"], &nightly["open_runs"]),
        (&json!("up"), &json!("nightly-db"), &json!(1))
    );

    // Refusals: 404 for a wrong key or an unknown slug (the same answer), 400 for a bad
    // signal, and nothing made by ?create=1 while auto-provisioning is off.
    let before = check(&monitor, "backup")["pings"].as_array().map(Vec::len);
    for (path, status) in [
        (format!("{host}/ping/{WRONG_KEY}/backup"), 404),
        (format!("{host}/ping/{WRONG_KEY}/backup/fail"), 404),
        (url("nobody"), 404),
        (url("nobody/fail"), 404),
        (url("NightlyDB"), 404),
        (url("backup/abc"), 400),
        (url("backup/256"), 400),
        (url("fresh?create=1"), 404),
    ] {
        assert_eq!(curl_status(&path), status, "{path}");
    }
    assert_eq!(check(&monitor, "backup")["pings"].as_array().map(Vec::len), before, "nothing was recorded");
    assert_eq!(monitor.get_json("/v1/checks/fresh").0, 404, "nothing was created");
    let rejected = monitor.wait_until(WAIT, "the refusals are counted", || {
        let seen = monitor.metrics().get("rollcall_pings_rejected_total{reason=\"unknown_slug\"}");
        if seen == 6.0 { Ok(seen) } else { Err(format!("{seen}")) }
    });
    assert_eq!(rejected, 6.0);
}

#[test]
fn create_1_makes_a_missing_check_only_when_auto_provisioning_is_on() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(true));
    let url = |path: &str| format!("http://{}/ping/{PING_KEY}/{path}", monitor.http);

    assert_eq!(curl_status(&url("fresh-job")), 404, "without ?create=1 nothing is made");
    cron_curl(&[&url("fresh-job?create=1")]);
    let fresh = check(&monitor, "fresh-job");
    assert_eq!(
        (&fresh["state"], &fresh["slug"], &fresh["schedule"]),
        (&json!("up"), &json!("fresh-job"), &json!({ "period": "1day", "grace": "1h" })),
        "{fresh}"
    );
    // Made once: the next ?create=1 pings the same check.
    cron_curl(&[&url("fresh-job/fail?create=1")]);
    assert_eq!(check(&monitor, "fresh-job")["state"], "down");
    assert_eq!(check(&monitor, "fresh-job")["pings"].as_array().map(Vec::len), Some(2));
    // A name outside the slug grammar is never made.
    assert_eq!(curl_status(&url("Bad.Slug?create=1")), 404);
    assert_eq!(monitor.get_json("/v1/checks/Bad.Slug").0, 404);

    // The made check is the API's: it survives a crash, and still answers to its slug.
    // Its transitions are read from the store, and were queued after its row: once they are
    // there, so is the row.
    monitor.wait_until(WAIT, "the made check is stored", || {
        let (_, events) = monitor.get_json("/v1/events?kind=check&node=fresh-job");
        let count = events.as_array().map_or(0, Vec::len);
        if count == 2 { Ok(()) } else { Err(events.to_string()) }
    });
    monitor.crash();
    let monitor = Monitor::start(&sandbox, &config(true));
    let url = |path: &str| format!("http://{}/ping/{PING_KEY}/{path}", monitor.http);
    cron_curl(&[&url("fresh-job")]);
    let fresh = check(&monitor, "fresh-job");
    assert_eq!((&fresh["state"], &fresh["slug"]), (&json!("up"), &json!("fresh-job")), "{fresh}");
    assert_eq!(fresh["pings"].as_array().map(Vec::len), Some(3), "{fresh}");
}

#[test]
fn the_api_keeps_slugs_valid_and_unique() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(false));
    let create = |body: Value| monitor.post("/v1/checks", Some(API_TOKEN), Some(&body.to_string()));

    let (status, body) = create(json!({ "id": "db", "slug": "db-dump", "period": "1d" }));
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(json!({ "id": "other", "slug": "backup", "period": "1d" }));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("another check already uses the slug \\\"backup\\\""), "{body}");
    let (status, body) = create(json!({ "id": "bad", "slug": "Not A Slug", "period": "1d" }));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("may only contain a-z, 0-9"), "{body}");
    let (status, body) = create(json!({ "id": "clash", "token": PING_KEY, "period": "1d" }));
    assert_eq!(status, 409, "{body}");
    cron_curl(&[&format!("http://{}/ping/{PING_KEY}/db-dump", monitor.http)]);
    assert_eq!(check(&monitor, "db")["state"], "up");
}

#[test]
fn guessing_the_ping_key_is_rate_limited_like_guessing_a_token() {
    let sandbox = Sandbox::new();
    let limited =
        config(false).replace("[pings]\n", "[pings]\nper_source_rate = 0.01\nper_source_burst = 3\n");
    let monitor = Monitor::start(&sandbox, &limited);
    let host = format!("http://{}", monitor.http);
    let guesses: Vec<u16> = (0..4)
        .map(|i| curl_status(&format!("{host}/ping/guess-{i}-0123456789abcdefghij/backup/fail")))
        .collect();
    assert_eq!(guesses, [404, 404, 404, 429], "the source's burst is 3");
    assert_eq!(curl_status(&format!("{host}/ping/{PING_KEY}/backup")), 429, "the source is limited now");
}

#[test]
fn a_ping_declaring_a_huge_body_is_refused_at_once_and_its_connection_closed() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(false));
    let mut stream = std::net::TcpStream::connect(monitor.http).expect("connect to the monitor");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let request = "POST /ping/tok_backup_0123456789abcdefghij HTTP/1.1\r\nHost: rollcall\r\n\
                   Content-Length: 99999999999999\r\n\r\nthe first bytes of a body that never ends";
    stream.write_all(request.as_bytes()).expect("send the request head");
    // Read to the end: the monitor answers without waiting for the body, then closes.
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|error| panic!("no answer and close within {WAIT:?}: {error}"));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    monitor.wait_until(WAIT, "the refusal is counted", || {
        let seen = monitor.metrics().get("rollcall_pings_rejected_total{reason=\"body_too_large\"}");
        if seen == 1.0 { Ok(()) } else { Err(format!("{seen}")) }
    });
    assert_eq!(check(&monitor, "backup")["state"], "new", "the refused ping changed nothing");
}

/// A ping is answered once its row is queued; the store holds a run of pings open for a few
/// milliseconds to commit them together (docs/STORE.md). The window closes on its own, with
/// nothing else written; a ping committed survives `kill -9`; a stop right after the answers
/// commits them first.
#[test]
fn acknowledged_pings_are_committed_by_the_window_and_kept_through_a_kill_and_a_stop() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(false));
    let url = format!("http://{}/ping/{PING_KEY}/backup", monitor.http);
    cron_curl(&["--data-raw", "first", &url]);
    monitor.wait_until(WAIT, "the ping's row is in the store file", || match stored_bodies(&sandbox) {
        bodies if bodies == ["first"] => Ok(()),
        bodies => Err(format!("stored: {bodies:?}")),
    });
    monitor.crash();

    let monitor = Monitor::start(&sandbox, &config(false));
    assert_eq!(ping_bodies(&check(&monitor, "backup")), ["first"], "kept through kill -9");
    let url = format!("http://{}/ping/{PING_KEY}/backup", monitor.http);
    cron_curl(&["--data-raw", "second", &url]);
    cron_curl(&["--data-raw", "third", &url]);
    let status = monitor.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "the monitor stops cleanly: {status}");
    assert_eq!(stored_bodies(&sandbox), ["first", "second", "third"], "committed before the exit");

    let monitor = Monitor::start(&sandbox, &config(false));
    let mut bodies = ping_bodies(&check(&monitor, "backup"));
    bodies.sort();
    assert_eq!(bodies, ["first", "second", "third"]);
}

/// The bodies of the pings stored in the monitor's SQLite file, oldest first.
fn stored_bodies(sandbox: &Sandbox) -> Vec<String> {
    let path = sandbox.data_dir().join("rollcall.db");
    let store = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    let mut query = store.prepare("SELECT body FROM pings ORDER BY id").expect("the pings table");
    let rows = query.query_map([], |row| row.get::<_, Vec<u8>>(0)).expect("read the pings");
    rows.map(|body| String::from_utf8_lossy(&body.expect("a body")).into_owned()).collect()
}

/// The bodies of a check's pings as the API shows them.
fn ping_bodies(check: &Value) -> Vec<String> {
    let pings = check["pings"].as_array().unwrap_or_else(|| panic!("no pings in {check}"));
    pings.iter().map(|ping| ping["body"].as_str().unwrap_or("?").to_string()).collect()
}

/// Runs curl as a crontab line does (`-fsS -m 10 --retry 5 -o /dev/null`) and asserts it
/// succeeded.
fn cron_curl(args: &[&str]) {
    let output = Command::new("curl")
        .args(["-fsS", "-m", "10", "--retry", "5", "-o", "/dev/null"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(output.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The HTTP status curl got for `url`.
fn curl_status(url: &str) -> u16 {
    let output = Command::new("curl")
        .args(["-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {output:?}"))
}

/// `GET /v1/checks/{id}`.
fn check(monitor: &Monitor, id: &str) -> Value {
    let (status, check) = monitor.get_json(&format!("/v1/checks/{id}"));
    assert_eq!(status, 200, "GET /v1/checks/{id}: {check}");
    check
}
