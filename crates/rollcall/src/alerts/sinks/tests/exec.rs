//! The exec sink, running real shell scripts written to a temporary directory.

use super::*;
use std::path::{Path, PathBuf};

/// Writes `script` into `dir` and returns an exec sink running it as `/bin/sh script args...`.
fn script_sink(dir: &Path, script: &str, args: &[&Path], timeout: &str) -> Sink {
    let path = dir.join("sink.sh");
    std::fs::write(&path, script).expect("write the script");
    let mut command = vec![format!("{:?}", "/bin/sh"), format!("{:?}", path.display().to_string())];
    command.extend(args.iter().map(|arg| format!("{:?}", arg.display().to_string())));
    sink(&format!(
        "[[sink]]\nname = \"pager\"\nkind = \"exec\"\ncommand = [{}]\ntimeout = \"{timeout}\"",
        command.join(", ")
    ))
}

/// The NUL-separated environment dump at `path`, as a map.
fn read_environment(path: &Path) -> BTreeMap<String, String> {
    let dump = std::fs::read(path).expect("the script dumped its environment");
    dump.split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8(entry.to_vec()).expect("UTF-8 environment");
            let (key, value) = entry.split_once('=').expect("KEY=value");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// `variable` must be in `environment` with `expected` as its value.
fn check(environment: &BTreeMap<String, String>, variable: &str, expected: &str) {
    assert_eq!(environment.get(variable).map(String::as_str), Some(expected), "{variable}");
}

#[tokio::test]
async fn the_command_gets_every_documented_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dump = dir.path().join("environment");
    let sink = script_sink(dir.path(), "cat /proc/$$/environ > \"$1\"\n", &[&dump], "10s");
    let mut alert = alert(AlertKind::Resolved, 42);
    alert.nodes = vec!["web-1".to_owned(), "web-2".to_owned()];
    alert.node_count = 2;
    alert.summary = "web-1 is back: it's \"up\"\nsecond line".to_owned();
    sink.deliver(&stored(&alert)).await.expect("exit 0 is delivered");

    let environment = read_environment(&dump);
    check(&environment, "ROLLCALL_KIND", "resolved");
    check(&environment, "ROLLCALL_SEVERITY", "critical");
    check(&environment, "ROLLCALL_SUBJECT_KIND", "node");
    check(&environment, "ROLLCALL_SUBJECT", "web-1");
    check(&environment, "ROLLCALL_NODES", "web-1,web-2");
    check(&environment, "ROLLCALL_NODE_COUNT", "2");
    check(&environment, "ROLLCALL_INCIDENT", "42");
    check(&environment, "ROLLCALL_IDEMPOTENCY_KEY", "rollcall-42-3");
    check(&environment, "ROLLCALL_FROM", "down");
    check(&environment, "ROLLCALL_TO", "up");
    check(&environment, "ROLLCALL_REASON", "heartbeat");
    check(&environment, "ROLLCALL_AT", "2026-03-01T12:05:30Z");
    check(&environment, "ROLLCALL_STARTED_AT", "2026-03-01T12:00:00Z");
    check(&environment, "ROLLCALL_RESOLVED_AT", "2026-03-01T12:05:30Z");
    check(&environment, "ROLLCALL_SUMMARY", "web-1 is back: it's \"up\"\nsecond line");
    check(&environment, "ROLLCALL_LABEL_GROUP", "web");
    check(&environment, "ROLLCALL_LABEL_DC_NAME", "eu 1");
    let json = environment.get("ROLLCALL_ALERT_JSON").expect("ROLLCALL_ALERT_JSON");
    assert_eq!(serde_json::from_str::<Alert>(json).expect("the alert document"), alert);
    // Inherited variables such as PATH stay; nothing else of ours is there.
    assert!(environment.contains_key("PATH"));
    let ours: Vec<_> = environment.keys().filter(|key| key.starts_with("ROLLCALL_")).collect();
    assert_eq!(ours.len(), 18, "unexpected ROLLCALL_ variables: {ours:?}");
}

#[tokio::test]
async fn a_reminder_has_empty_transition_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dump = dir.path().join("environment");
    let sink = script_sink(dir.path(), "cat /proc/$$/environ > \"$1\"\n", &[&dump], "10s");
    sink.deliver(&stored(&alert(AlertKind::Reminder, 5))).await.expect("delivered");
    let environment = read_environment(&dump);
    check(&environment, "ROLLCALL_KIND", "reminder");
    for variable in ["ROLLCALL_FROM", "ROLLCALL_TO", "ROLLCALL_REASON", "ROLLCALL_AT", "ROLLCALL_RESOLVED_AT"]
    {
        check(&environment, variable, "");
    }
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error_with_the_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = script_sink(dir.path(), "echo paging failed >&2\necho some output\nexit 1\n", &[], "10s");
    let error = sink.deliver(&stored(&alert(AlertKind::Firing, 1))).await.expect_err("exit 1 fails");
    match error {
        DeliveryError::ExitStatus(1, output) => {
            assert!(output.contains("paging failed") && output.contains("some output"), "output: {output}");
        }
        other => panic!("expected ExitStatus(1, ..), got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let sink = sink("[[sink]]\nname = \"pager\"\nkind = \"exec\"\ncommand = [\"/nonexistent/page\"]");
    let error = sink.deliver(&stored(&alert(AlertKind::Firing, 1))).await.expect_err("cannot start");
    assert!(
        matches!(&error, DeliveryError::Spawn(message) if message.contains("/nonexistent/page")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_hung_command_is_killed_and_reaped_at_its_timeout() {
    // The shell starts a child of its own, which must die too (the whole process group is killed).
    let script = "sleep 60 &\necho $! > \"$2\"\necho $$ > \"$1\"\nwait\n";
    // On a loaded machine the shell may not even reach its first line within a short timeout; then
    // there is nothing to check yet, so the same run is repeated with a longer one.
    for timeout in [Duration::from_millis(300), Duration::from_secs(2), Duration::from_secs(10)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (shell_pid, sleep_pid) = (dir.path().join("shell.pid"), dir.path().join("sleep.pid"));
        let sink =
            script_sink(dir.path(), script, &[&shell_pid, &sleep_pid], &format!("{}ms", timeout.as_millis()));
        let error = sink.deliver(&stored(&alert(AlertKind::Firing, 1))).await.expect_err("it hangs");
        assert_eq!(error, DeliveryError::Timeout(timeout));

        let (Some(shell), Some(sleep)) = (read_pid(&shell_pid), read_pid(&sleep_pid)) else {
            continue;
        };
        // The shell was our child: killed and reaped, so not even a zombie is left.
        wait_for("the shell to be gone", Duration::from_secs(5), || (!proc_exists(shell)).then_some(()))
            .await;
        // The sleep was the shell's child; once orphaned it is init's to reap, so a zombie is fine.
        wait_for("the sleep to be dead", Duration::from_secs(5), || (!alive(sleep)).then_some(())).await;
        return;
    }
    panic!("the script never wrote its pids, even with a 10 s timeout");
}

/// The pid the script wrote at `path`, if it got that far before being killed.
fn read_pid(path: &PathBuf) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    // A kill between creating the file and writing the number leaves it empty.
    text.trim().parse().ok()
}

fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
