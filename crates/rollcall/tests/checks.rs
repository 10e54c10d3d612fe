//! Checks end to end: the real monitor on loopback, pinged and administered through its real
//! HTTP port in Healthchecks.io's grammar (docs/CHECKS.md), with its alerts caught by a
//! webhook receiver in the test (`support/receiver.rs`). Each test has its own sandbox, ports
//! and data dir.
//!
//! Timing: schedules are short ("2s" + "1s") and every wait is for a condition, with
//! [`WAIT`] as its deadline. The only sleeps stand for a job running (a duration under
//! test) or for a client honouring `Retry-After`, never for letting the monitor settle.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use receiver::Receiver;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Monitor, Sandbox};

/// Deadline of every wait: generous, a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(30);
const API_TOKEN: &str = "0123456789abcdef0123";
/// How long a simulated job runs between its `/start` and its finish.
const JOB_RUNS: Duration = Duration::from_millis(150);

#[test]
fn every_signal_moves_the_state_and_lands_in_the_history() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("job", "1h", "1h"), ""));
    let api = Api::new(&monitor);
    let url = |suffix: &str| format!("/ping/{}{suffix}", token_of("job"));

    assert_eq!(api.check("job")["state"], "new");
    expect_state(&api.ping("POST", &url("/log"), b"step 1 of 2"), "new");
    let start = api.ping("GET", &url("/start"), b"");
    expect_state(&start, "new");
    std::thread::sleep(JOB_RUNS);
    let success = api.ping("POST", &url(""), b"backup done");
    expect_state(&success, "up");
    expect_state(&api.ping("GET", &url("/fail"), b""), "down");
    expect_state(&api.ping("GET", &url("/0"), b""), "up");
    expect_state(&api.ping("GET", &url("/1"), b""), "down");
    expect_state(&api.ping("GET", &url("/255"), b""), "down");
    expect_state(&api.ping("HEAD", &url(""), b""), "up");
    expect_state(&api.ping("HEAD", &url("/fail"), b""), "down");
    expect_state(&api.ping("POST", &url("/0"), b"exit zero"), "up");

    let check = api.check("job");
    assert_eq!(
        (&check["state"], &check["last_outcome"], &check["open_runs"]),
        (&json!("up"), &json!("success"), &json!(0))
    );
    let pings = pings_of(&check);
    let signals: Vec<&str> = pings.iter().map(|p| p["signal"].as_str().expect("a signal")).collect();
    assert_eq!(
        signals,
        [
            "exit-code:0",
            "fail",
            "success",
            "exit-code:255",
            "exit-code:1",
            "exit-code:0",
            "fail",
            "success",
            "start",
            "log",
        ],
        "the history, newest first"
    );
    let bodies: Vec<&str> = pings.iter().map(|p| p["body"].as_str().expect("a body")).collect();
    assert_eq!(bodies, ["exit zero", "", "", "", "", "", "", "backup done", "", "step 1 of 2"]);
    for ping in &pings {
        assert_eq!(ping["rid"], Value::Null, "{ping}");
        assert_eq!(ping["body_truncated"], false, "{ping}");
        assert_eq!(ping["body_len"], ping["body"].as_str().expect("a body").len(), "{ping}");
    }
    let durations: Vec<Option<u64>> = pings.iter().map(|p| p["duration_ms"].as_u64()).collect();
    assert!(
        durations.iter().enumerate().all(|(i, d)| d.is_some() == (i == 7)),
        "only the finish after the start has a duration: {durations:?}"
    );
    expect_duration(&pings[7], &start, &success);

    let events = wait_for_check_events(&monitor, &api, "job", 7);
    assert_eq!(
        summaries(&events),
        [
            "new -> up (ping)",
            "up -> down (fail-signal)",
            "down -> up (ping)",
            "up -> down (fail-signal)",
            "down -> up (ping)",
            "up -> down (fail-signal)",
            "down -> up (ping)",
        ]
    );
    assert!(events.iter().all(|e| e["kind"] == "check" && e["node"] == "job"), "{events:?}");

    let metrics = monitor.metrics();
    for (signal, count) in [("success", 2), ("start", 1), ("fail", 2), ("log", 1), ("exit-code", 4)] {
        assert_eq!(
            metrics.get(&format!("rollcall_pings_received_total{{signal=\"{signal}\"}}")),
            count as f64,
            "{signal}"
        );
    }
    assert_eq!(metrics.get("rollcall_checks{state=\"up\"}"), 1.0);
}

#[test]
fn rid_pairs_each_finish_with_its_own_start() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("overlap", "1h", "1h"), ""));
    let api = Api::new(&monitor);
    let url = |suffix: &str| format!("/ping/{}{suffix}", token_of("overlap"));

    let start_a = api.ping("GET", &url("/start?rid=run-a"), b"");
    expect_state(&start_a, "new");
    std::thread::sleep(2 * JOB_RUNS);
    let start_b = api.ping("POST", &url("/start?rid=run-b"), b"");
    expect_state(&start_b, "new");
    assert_eq!(api.check("overlap")["open_runs"], 2);
    std::thread::sleep(JOB_RUNS);
    let end_a = api.ping("GET", &url("?rid=run-a"), b"");
    expect_state(&end_a, "up");
    assert_eq!(api.check("overlap")["open_runs"], 1);
    std::thread::sleep(JOB_RUNS);
    let end_b = api.ping("GET", &url("/0?rid=run-b"), b"");
    expect_state(&end_b, "up");
    // A finish whose rid matches no start still counts, without a duration.
    expect_state(&api.ping("GET", &url("/0?rid=nobody-started-me"), b""), "up");

    let check = api.check("overlap");
    assert_eq!(check["open_runs"], 0);
    let pings = pings_of(&check);
    let seen: Vec<(&str, &str)> =
        pings.iter().map(|p| (p["signal"].as_str().unwrap(), p["rid"].as_str().unwrap_or("-"))).collect();
    assert_eq!(
        seen,
        [
            ("exit-code:0", "nobody-started-me"),
            ("exit-code:0", "run-b"),
            ("success", "run-a"),
            ("start", "run-b"),
            ("start", "run-a"),
        ]
    );
    assert_eq!(pings[0]["duration_ms"], Value::Null);
    let a = expect_duration(&pings[2], &start_a, &end_a);
    let b = expect_duration(&pings[1], &start_b, &end_b);
    // Measured from A's start, B's run would have lasted at least this long.
    let from_a = ms(end_b.sent - start_a.answered);
    assert!(b < from_a, "run-b's duration {b} ms is measured from its own start, not run-a's ({from_a} ms)");
    assert!(a > b, "run-a ran longer ({a} ms) than run-b ({b} ms)");
}

#[test]
fn silence_past_period_and_grace_goes_down_and_a_success_brings_it_up() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("cron-job", "2s", "1s"), ""));
    let api = Api::new(&monitor);
    let url = format!("/ping/{}", token_of("cron-job"));

    let ping = api.ping("GET", &url, b"");
    expect_state(&ping, "up");
    let deadline_in_ms =
        api.check("cron-job")["deadline_in_ms"].as_i64().expect("an up check has a deadline");
    assert!((1_000..=3_000).contains(&deadline_in_ms), "deadline_in_ms = {deadline_in_ms}");
    wait_for_check_state(&monitor, &api, "cron-job", "down");
    assert!(ping.sent.elapsed() >= Duration::from_secs(3), "down only after period + grace");
    assert_eq!(monitor.metrics().get("rollcall_checks{state=\"down\"}"), 1.0);

    let events = wait_for_check_events(&monitor, &api, "cron-job", 2);
    assert_eq!(summaries(&events), ["new -> up (ping)", "up -> down (timeout)"]);
    let success_at = wall_ms(&pings_of(&api.check("cron-job"))[0]["at"]);
    let late = wall_ms(&events[1]["at"]) - success_at;
    assert!(
        (2_995..=3_005).contains(&late),
        "the timeout is dated at last success + period + grace, got +{late} ms"
    );
    assert!(wall_ms(&events[1]["noticed_at"]) >= wall_ms(&events[1]["at"]));

    expect_state(&api.ping("POST", &url, b"back"), "up");
    let events = wait_for_check_events(&monitor, &api, "cron-job", 3);
    assert_eq!(summaries(&events)[2], "down -> up (ping)");
}

#[test]
fn bad_pings_are_refused_counted_and_change_nothing() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("guarded", "1h", "1h"), ""));
    let api = Api::new(&monitor);
    let url = |suffix: &str| format!("/ping/{}{suffix}", token_of("guarded"));
    expect_state(&api.ping("GET", &url(""), b""), "up");
    let before = api.check("guarded");
    let metrics_before = monitor.metrics();

    let stranger = api.ping("GET", "/ping/nobody-has-this-token-0123456789", b"");
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    assert_eq!(api.ping("POST", "/ping/nobody-has-this-token-0123456789/start", b"x").status, 404);
    assert_eq!(check_ids(&api), ["guarded"], "an unknown token creates nothing");
    for bad in ["/256", "/abc", "/-1"] {
        let reply = api.ping("GET", &url(bad), b"");
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    let long_rid = "r".repeat(100);
    for rid in [long_rid.as_str(), "a%20b"] {
        let reply = api.ping("GET", &url(&format!("?rid={rid}")), b"");
        assert_eq!(reply.status, 400, "rid {rid}: {}", reply.body);
    }

    let metrics = monitor.metrics();
    let moved = |series: &str| metrics.get(series) - metrics_before.get(series);
    for (reason, count) in
        [("unknown_token", 2.0), ("bad_signal", 3.0), ("bad_rid", 2.0), ("rate_limited", 0.0)]
    {
        assert_eq!(
            moved(&format!("rollcall_pings_rejected_total{{reason=\"{reason}\"}}")),
            count,
            "{reason}"
        );
    }
    for signal in ["success", "start", "fail", "log", "exit-code"] {
        assert_eq!(moved(&format!("rollcall_pings_received_total{{signal=\"{signal}\"}}")), 0.0, "{signal}");
    }
    let after = api.check("guarded");
    for field in ["state", "last_ping_at", "last_success_at", "last_outcome", "pings", "open_runs"] {
        assert_eq!(after[field], before[field], "{field} changed");
    }
}

#[test]
fn long_bodies_are_truncated_and_flagged() {
    let sandbox = Sandbox::new();
    let monitor =
        Monitor::start(&sandbox, &config(&check_toml("chatty", "1h", "1h"), "[pings]\nbody_limit = 100\n"));
    let api = Api::new(&monitor);
    let url = |suffix: &str| format!("/ping/{}{suffix}", token_of("chatty"));

    let fits = "f".repeat(100);
    let reply = api.ping("POST", &url("/log"), fits.as_bytes());
    expect_state(&reply, "new");
    assert_eq!(reply.header("x-rollcall-body-truncated"), None);

    let long: String = (0..5_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let reply = api.ping("POST", &url(""), long.as_bytes());
    expect_state(&reply, "up");
    assert_eq!(reply.header("x-rollcall-body-truncated"), Some("1"));

    // A body over 1 MiB is refused before it is read: tests/checks_pings.rs.
    let check = api.check("chatty");
    assert_eq!(check["state"], "up");
    let pings = pings_of(&check);
    assert_eq!(pings.len(), 2, "{pings:?}");
    assert_eq!((&pings[0]["body_len"], &pings[0]["body_truncated"]), (&json!(5_000), &json!(true)));
    assert_eq!(pings[0]["body"], long[..100]);
    assert_eq!((&pings[1]["body_len"], &pings[1]["body_truncated"]), (&json!(100), &json!(false)));
    assert_eq!(pings[1]["body"], fits);
    assert_eq!(monitor.metrics().get("rollcall_ping_bodies_truncated_total"), 1.0);
}

#[test]
fn pings_over_the_token_rate_get_429_with_retry_after() {
    let sandbox = Sandbox::new();
    let pings = "[pings]\nper_token_rate = 1.0\nper_token_burst = 3\n";
    let monitor = Monitor::start(&sandbox, &config(&check_toml("eager", "1h", "1h"), pings));
    let api = Api::new(&monitor);
    let url = format!("/ping/{}", token_of("eager"));

    let started = Instant::now();
    let replies: Vec<Reply> = (0..10).map(|_| api.ping("GET", &url, b"")).collect();
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let accepted = statuses.iter().filter(|&&s| s == 200).count();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(accepted + limited.len(), 10, "only 200 or 429: {statuses:?}");
    assert_eq!(&statuses[..3], [200, 200, 200], "the burst passes");
    let refill = elapsed.as_secs_f64().ceil() as usize;
    assert!(accepted <= 3 + refill, "{accepted} accepted in {elapsed:?} at 1/s, burst 3: {statuses:?}");
    assert!(!limited.is_empty(), "{statuses:?}");
    let mut retry_after = 0;
    for reply in &limited {
        let header = reply.header("retry-after").expect("a 429 says when to retry");
        retry_after =
            header.parse::<u64>().unwrap_or_else(|_| panic!("Retry-After {header:?} is whole seconds"));
        assert!(retry_after >= 1, "Retry-After {retry_after}");
    }

    let metrics = monitor.metrics();
    assert_eq!(metrics.get("rollcall_pings_rejected_total{reason=\"rate_limited\"}"), limited.len() as f64);
    assert_eq!(metrics.get("rollcall_pings_received_total{signal=\"success\"}"), accepted as f64);
    assert_eq!(pings_of(&api.check("eager")).len(), accepted);

    // A client that honours Retry-After gets through.
    std::thread::sleep(Duration::from_secs(retry_after));
    expect_state(&api.ping("GET", &url, b""), "up");
}

#[test]
fn checks_api_creates_lists_patches_pauses_and_deletes() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config("", ""));
    let api = Api::new(&monitor);
    let input = json!({
        "id": "nightly", "period": "1h", "grace": "10m", "labels": {"team": "data"}, "description": "ETL",
    });

    for (auth, status) in [(Auth::None, 401), (Auth::Wrong, 403)] {
        let reply = api.json("POST", "/v1/checks", auth, &input);
        assert_eq!(reply.status, status, "{}", reply.body);
    }
    assert!(check_ids(&api).is_empty(), "refused writes change nothing");

    let created = api.json("POST", "/v1/checks", Auth::Good, &input);
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    assert_eq!((&created["id"], &created["state"]), (&json!("nightly"), &json!("new")));
    assert_eq!(
        (&created["schedule"]["period"], &created["schedule"]["grace"]),
        (&json!("1h"), &json!("10m"))
    );
    assert_eq!((&created["labels"], &created["description"]), (&json!({"team": "data"}), &json!("ETL")));
    let ping_path = created["ping_path"].as_str().expect("the creator sees the ping path").to_string();
    let token = ping_path.strip_prefix("/ping/").expect("/ping/TOKEN");
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "generated token {token:?}");
    expect_state(&api.ping("GET", &ping_path, b""), "up");

    for auth in [Auth::None, Auth::Wrong] {
        assert_eq!(api.get("/v1/checks/nightly", auth).json()["ping_path"], Value::Null);
        assert_eq!(api.get("/v1/checks", auth).json()[0]["ping_path"], Value::Null);
    }
    assert_eq!(api.get("/v1/checks", Auth::Good).json()[0]["ping_path"], ping_path);
    assert_eq!(api.check("nightly")["ping_path"], ping_path);
    assert_eq!(api.check("nightly")["state"], "up");

    let patched = api.json("PATCH", "/v1/checks/nightly", Auth::Good, &json!({"period": "2h"}));
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (&patched.json()["schedule"]["period"], &patched.json()["state"]),
        (&json!("2h"), &json!("up"))
    );
    let renamed = api.json("PATCH", "/v1/checks/nightly", Auth::Good, &json!({"id": "daily"}));
    assert_eq!(renamed.status, 400, "{}", renamed.body);
    assert!(renamed.json()["message"].as_str().unwrap_or("").contains("id"), "{}", renamed.body);
    assert_eq!(api.json("PATCH", "/v1/checks/nightly", Auth::Wrong, &json!({"period": "5h"})).status, 403);
    assert_eq!(check_ids(&api), ["nightly"]);
    assert_eq!(api.check("nightly")["schedule"]["period"], "2h");

    let typo = api.json("POST", "/v1/checks", Auth::Good, &json!({"id": "x", "perio": "1h"}));
    assert_eq!(typo.status, 400, "{}", typo.body);
    assert!(
        typo.json()["message"].as_str().unwrap_or("").contains("perio"),
        "names the bad field: {}",
        typo.body
    );
    let duplicate = api.json("POST", "/v1/checks", Auth::Good, &input);
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(check_ids(&api), ["nightly"]);

    // Paused: pings are recorded, nothing is judged; the resume takes the last run's outcome.
    assert_eq!(api.send("POST", "/v1/checks/nightly/pause", Auth::None, None, b"").status, 401);
    assert_eq!(api.check("nightly")["state"], "up");
    let paused = api.send("POST", "/v1/checks/nightly/pause", Auth::Good, None, b"");
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!((&paused.json()["state"], &paused.json()["paused_until"]), (&json!("paused"), &Value::Null));
    expect_state(&api.ping("GET", &format!("{ping_path}/fail"), b""), "paused");
    let check = api.check("nightly");
    assert_eq!((&check["state"], &check["last_outcome"]), (&json!("paused"), &json!("failure")));
    assert_eq!(pings_of(&check)[0]["signal"], "fail");
    let resumed = api.send("POST", "/v1/checks/nightly/resume", Auth::Good, None, b"");
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.json()["state"], "down", "docs/CHECKS.md: the state its last finished run reported");
    let events = wait_for_check_events(&monitor, &api, "nightly", 3);
    assert_eq!(summaries(&events), ["new -> up (ping)", "up -> paused (pause)", "paused -> down (resume)"]);

    assert_eq!(api.send("DELETE", "/v1/checks/nightly", Auth::None, None, b"").status, 401);
    assert_eq!(check_ids(&api), ["nightly"]);
    assert_eq!(api.send("DELETE", "/v1/checks/nightly", Auth::Good, None, b"").status, 204);
    assert_eq!(api.get("/v1/checks/nightly", Auth::Good).status, 404);
    assert_eq!(api.ping("GET", &ping_path, b"").status, 404);
    assert_eq!(api.send("DELETE", "/v1/checks/nightly", Auth::Good, None, b"").status, 404);
    assert!(check_ids(&api).is_empty());
}

#[test]
fn checks_survive_a_crash_and_config_checks_removed_from_the_file_are_forgotten() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("from-config", "1h", "1h"), ""));
    let api = Api::new(&monitor);
    let created =
        api.json("POST", "/v1/checks", Auth::Good, &json!({"id": "api-job", "period": "1h", "grace": "1h"}));
    assert_eq!(created.status, 201, "{}", created.body);
    let ping_path = created.json()["ping_path"].as_str().expect("a ping path").to_string();
    expect_state(&api.ping("GET", &format!("{ping_path}/start"), b""), "new");
    expect_state(&api.ping("POST", &ping_path, b"run 1"), "up");
    // Run 2 is in flight when the monitor crashes.
    expect_state(&api.ping("GET", &format!("{ping_path}/start"), b""), "up");
    let before = api.check("api-job");
    assert_eq!(before["open_runs"], 1);
    expect_state(&api.ping("GET", &format!("/ping/{}", token_of("from-config")), b""), "up");
    // The transitions are committed with the pings that caused them, and batches in order:
    // once the last one is readable, every ping before it is durable too.
    wait_for_check_events(&monitor, &api, "api-job", 1);
    wait_for_check_events(&monitor, &api, "from-config", 1);
    monitor.crash();

    let monitor = Monitor::start(&sandbox, &config("", ""));
    let api = Api::new(&monitor);
    assert_eq!(check_ids(&api), ["api-job"], "the config check left the file, so the monitor forgot it");
    assert_eq!(api.get("/v1/checks/from-config", Auth::Good).status, 404);
    assert_eq!(api.ping("GET", &format!("/ping/{}", token_of("from-config")), b"").status, 404);

    let after = api.check("api-job");
    for field in ["state", "last_success_at", "last_ping_at", "last_outcome", "ping_path", "schedule"] {
        assert_eq!(after[field], before[field], "{field} after the restart");
    }
    assert_eq!(summaries(&check_events(&api, "api-job")), ["new -> up (ping)"], "transitions survive");
    assert_eq!(after["open_runs"], 0, "open runs are not stored");
    expect_state(&api.ping("POST", &ping_path, b"run 2"), "up");
    let run_2 = pings_of(&api.check("api-job"))[0].clone();
    assert_eq!(
        (&run_2["body"], &run_2["duration_ms"]),
        (&json!("run 2"), &Value::Null),
        "a run in flight across the restart finishes without a duration"
    );

    let history: Vec<(String, String)> = pings_of(&api.check("api-job"))
        .iter()
        .map(|p| (p["signal"].as_str().unwrap().to_string(), p["body"].as_str().unwrap().to_string()))
        .collect();
    let expected = [("success", "run 2"), ("start", ""), ("success", "run 1"), ("start", "")];
    assert_eq!(
        history,
        expected.map(|(s, b)| (s.to_string(), b.to_string())),
        "the ping history (stored in the pings table) survives the restart"
    );
}

#[test]
fn a_maintenance_window_ends_with_a_full_deadline_from_its_end() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, &config(&check_toml("window", "2s", "1s"), ""));
    let api = Api::new(&monitor);
    let url = format!("/ping/{}", token_of("window"));
    expect_state(&api.ping("GET", &url, b""), "up");
    let success_at = wall_ms(&pings_of(&api.check("window"))[0]["at"]);
    // Pause late enough that the window covers the schedule deadline (success + 3 s).
    monitor.wait_until(WAIT, "the deadline is under 1.5 s away", || {
        let left = api.check("window")["deadline_in_ms"].as_i64().unwrap_or(i64::MAX);
        if left <= 1_500 { Ok(()) } else { Err(format!("deadline_in_ms = {left}")) }
    });
    let paused = api.json("POST", "/v1/checks/window/pause", Auth::Good, &json!({"for": "2s"}));
    assert_eq!(paused.status, 200, "{}", paused.body);
    let paused = paused.json();
    assert_eq!(paused["state"], "paused");
    let until = wall_ms(&paused["paused_until"]);
    assert!(until > success_at + 3_000, "the window ends after the old deadline");

    monitor.wait_until(WAIT, "the old deadline has passed while paused", || {
        let asked_at = now_ms();
        let state = api.check("window")["state"].clone();
        // Only a look that began well inside the window must find the check paused.
        if asked_at < until - 100 {
            assert_eq!(state, "paused", "a paused check is never judged");
        }
        if asked_at > success_at + 3_000 + 200 { Ok(()) } else { Err(format!("{state}")) }
    });
    let resumed = monitor.wait_until(WAIT, "the window ends", || {
        let check = api.check("window");
        if check["state"] != "paused" { Ok(check) } else { Err(format!("{}", check["state"])) }
    });
    assert_eq!(resumed["state"], "up", "a check is never down at the very end of its maintenance");
    assert_eq!(resumed["paused_until"], Value::Null);

    wait_for_check_state(&monitor, &api, "window", "down");
    let events = wait_for_check_events(&monitor, &api, "window", 4);
    assert_eq!(
        summaries(&events),
        ["new -> up (ping)", "up -> paused (pause)", "paused -> up (resume)", "up -> down (timeout)"]
    );
    let end = wall_ms(&events[2]["at"]);
    assert!((end - until).abs() <= 5, "the resume is dated at the window's end: {end} vs {until}");
    let late = wall_ms(&events[3]["at"]) - end;
    assert!((2_995..=3_005).contains(&late), "down at period + grace after the window, got +{late} ms");
}

#[test]
fn a_failing_check_fires_and_resolves_an_alert_at_a_webhook() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let sink = format!(
        "[[sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"5s\"\n",
        receiver.url()
    );
    let check = format!("{}labels = {{ team = \"ops\" }}\n", check_toml("nightly", "1h", "1h"));
    let monitor = Monitor::start(&sandbox, &config(&check, &sink));
    let api = Api::new(&monitor);
    let url = format!("/ping/{}", token_of("nightly"));

    expect_state(&api.ping("POST", &format!("{url}/fail"), b"disk full"), "down");
    let firing = wait_for_alert(&monitor, &receiver, "firing");
    assert_eq!(firing["subject"], json!({"kind": "check", "id": "nightly"}), "{firing}");
    assert_eq!(firing["nodes"], json!(["nightly"]));
    assert_eq!(
        (&firing["transition"]["to"], &firing["transition"]["reason"]),
        (&json!("down"), &json!("fail-signal"))
    );

    expect_state(&api.ping("GET", &url, b""), "up");
    let resolved = wait_for_alert(&monitor, &receiver, "resolved");
    assert_eq!(resolved["subject"], firing["subject"]);
    assert_eq!(resolved["incident"]["id"], firing["incident"]["id"], "the same incident closes");
    assert_eq!(
        (&resolved["transition"]["to"], &resolved["transition"]["reason"]),
        (&json!("up"), &json!("ping"))
    );
    assert_eq!(kinds(&receiver.unique_alerts()), ["firing", "resolved"]);
    // docs/CHECKS.md: "Labels ... travel with the check's alerts."
    assert_eq!(
        firing["labels"],
        json!({"team": "ops"}),
        "the check's labels travel with its alert: {firing}"
    );
    assert_eq!(resolved["labels"], json!({"team": "ops"}), "{resolved}");
}

/// The store holds a run of pings open for a few milliseconds to commit them together
/// (docs/STORE.md); a page never waits behind it. One job pings without pause while another
/// fails: the failure pages while the pings go on, and its down is in the store file by then.
#[test]
fn a_failing_check_pages_while_another_is_pinged_without_pause() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let extra = format!(
        "[pings]\nper_token_rate = 100000.0\nper_token_burst = 100000\nper_source_rate = 100000.0\n\
         per_source_burst = 100000\n\n[[sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n\
         timeout = \"5s\"\n",
        receiver.url()
    );
    let checks = format!("{}{}", check_toml("busy", "1h", "1h"), check_toml("nightly", "1h", "1h"));
    let monitor = Monitor::start(&sandbox, &config(&checks, &extra));
    let api = Api::new(&monitor);
    expect_state(&api.ping("GET", &format!("/ping/{}", token_of("nightly")), b""), "up");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let pinged = std::thread::scope(|scope| {
        let pinger = scope.spawn(|| {
            let busy = format!("/ping/{}", token_of("busy"));
            let mut answered = 0u32;
            // Bounded in count as well as by the flag.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && answered < 200_000 {
                assert_eq!(api.ping("GET", &busy, b"").status, 200);
                answered += 1;
            }
            answered
        });
        expect_state(&api.ping("POST", &format!("/ping/{}/fail", token_of("nightly")), b"disk full"), "down");
        let firing = wait_for_alert(&monitor, &receiver, "firing");
        let still_pinging = !pinger.is_finished();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(still_pinging, "the pings went on while the page was made");
        assert_eq!(firing["subject"], json!({"kind": "check", "id": "nightly"}), "{firing}");
        pinger.join().expect("the pinger ran")
    });
    assert!(pinged > 0);
    let path = sandbox.data_dir().join("rollcall.db");
    let store = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    let downs: i64 = store
        .query_row(
            "SELECT count(*) FROM transitions WHERE node = 'nightly' AND to_state = 'down'",
            [],
            |row| row.get(0),
        )
        .expect("the transitions table");
    assert_eq!(downs, 1, "the down is committed (the page is sent only from committed rows)");
}

// ---- helpers ----

/// A monitor config with the API token, `checks` (`[[check]]` tables) and `extra` tables.
fn config(checks: &str, extra: &str) -> String {
    format!("[api]\ntoken = \"{API_TOKEN}\"\n\n{checks}\n{extra}")
}

/// A `[[check]]` table with the token [`token_of`] gives `id`.
fn check_toml(id: &str, period: &str, grace: &str) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntoken = \"{}\"\nperiod = \"{period}\"\ngrace = \"{grace}\"\n",
        token_of(id)
    )
}

/// A valid, distinct token per check id.
fn token_of(id: &str) -> String {
    format!("tok_{id}_0123456789abcdefghij")
}

#[derive(Clone, Copy, Debug)]
enum Auth {
    None,
    Good,
    Wrong,
}

/// An HTTP answer, with when the request went out and when the answer came back.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
    sent: Instant,
    answered: Instant,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("bad JSON ({error}): {}", self.body))
    }
}

/// The monitor's HTTP port, through a client that reads error statuses too.
struct Api {
    agent: ureq::Agent,
    base: String,
}

impl Api {
    fn new(monitor: &Monitor) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Api { agent, base: format!("http://{}", monitor.http) }
    }

    fn send(&self, method: &str, path: &str, auth: Auth, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        match auth {
            Auth::None => {}
            Auth::Good => request = request.header("authorization", format!("Bearer {API_TOKEN}")),
            Auth::Wrong => request = request.header("authorization", "Bearer not-the-api-token-at-all"),
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(body.to_vec()).expect("a valid request");
        let sent = Instant::now();
        let mut response = self.agent.run(request).unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if method == "HEAD" {
            String::new()
        } else {
            response
                .body_mut()
                .read_to_string()
                .unwrap_or_else(|error| panic!("{method} {path}: body: {error}"))
        };
        Reply { status, headers, body, sent, answered: Instant::now() }
    }

    fn ping(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        self.send(method, path, Auth::None, None, body)
    }

    fn json(&self, method: &str, path: &str, auth: Auth, body: &Value) -> Reply {
        self.send(method, path, auth, Some("application/json"), body.to_string().as_bytes())
    }

    fn get(&self, path: &str, auth: Auth) -> Reply {
        self.send("GET", path, auth, None, b"")
    }

    /// `GET /v1/checks/{id}` with the API token.
    fn check(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/checks/{id}"), Auth::Good);
        assert_eq!(reply.status, 200, "GET /v1/checks/{id}: {}", reply.body);
        reply.json()
    }
}

/// Asserts a ping counted, and the check's state after it.
fn expect_state(reply: &Reply, state: &str) {
    assert_eq!(reply.status, 200, "ping refused: {}", reply.body);
    assert_eq!(reply.header("x-rollcall-check-state"), Some(state), "state after the ping");
}

/// Asserts a finish's duration lies within what the client saw of the run, and returns it.
fn expect_duration(finish: &Value, start: &Reply, end: &Reply) -> u64 {
    let duration = finish["duration_ms"].as_u64().unwrap_or_else(|| panic!("no duration: {finish}"));
    let (least, most) = (ms(end.sent - start.answered), ms(end.answered - start.sent));
    assert!(
        duration > 0 && least <= duration && duration <= most + 1,
        "duration {duration} ms outside [{least}, {most}]"
    );
    duration
}

fn ms(span: Duration) -> u64 {
    span.as_millis() as u64
}

fn pings_of(check: &Value) -> Vec<Value> {
    check["pings"].as_array().unwrap_or_else(|| panic!("no pings: {check}")).clone()
}

fn check_ids(api: &Api) -> Vec<String> {
    let reply = api.get("/v1/checks", Auth::Good);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let checks = reply.json();
    checks.as_array().expect("a list").iter().map(|c| c["id"].as_str().expect("an id").to_string()).collect()
}

/// `GET /v1/events?kind=check&node=ID`, oldest first.
fn check_events(api: &Api, id: &str) -> Vec<Value> {
    let reply = api.get(&format!("/v1/events?kind=check&node={id}&limit=1000"), Auth::None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json().as_array().expect("a list").clone()
}

/// Waits until `count` transitions of check `id` are stored (the store lags the state a little).
fn wait_for_check_events(monitor: &Monitor, api: &Api, id: &str, count: usize) -> Vec<Value> {
    monitor.wait_until(WAIT, &format!("check {id} has {count} transitions stored"), || {
        let events = check_events(api, id);
        if events.len() >= count { Ok(events) } else { Err(format!("{:?}", summaries(&events))) }
    })
}

fn wait_for_check_state(monitor: &Monitor, api: &Api, id: &str, state: &str) -> Value {
    monitor.wait_until(WAIT, &format!("check {id} is {state}"), || {
        let check = api.check(id);
        if check["state"] == state { Ok(check) } else { Err(format!("{}", check["state"])) }
    })
}

/// `from -> to (reason)` of each event.
fn summaries(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} -> {} ({})", str_of(&e["from"]), str_of(&e["to"]), str_of(&e["reason"])))
        .collect()
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn wall_ms(value: &Value) -> i64 {
    let at = humantime::parse_rfc3339(str_of(value)).unwrap_or_else(|error| panic!("{value}: {error}"));
    at.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// Waits until the receiver got an alert of `kind` (for check alerts: no grouping wait).
fn wait_for_alert(monitor: &Monitor, receiver: &Receiver, kind: &str) -> Value {
    monitor.wait_until(WAIT, &format!("a {kind} alert reaches the webhook"), || {
        let alerts = receiver.unique_alerts();
        alerts
            .iter()
            .find(|a| a["kind"] == kind)
            .cloned()
            .ok_or_else(|| format!("received {:?}", kinds(&alerts)))
    })
}

fn kinds(alerts: &[Value]) -> Vec<&str> {
    alerts.iter().map(|a| a["kind"].as_str().unwrap_or("?")).collect()
}
