//! Mistakes a monitor must refuse at start, with one clear sentence and a non-zero exit,
//! before it touches anything: bad configuration and a data dir holding someone else's file.

mod support;

use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Agent, Exited, Monitor, PATIENT, Sandbox};

#[test]
fn unknown_top_level_key_is_named() {
    check_config_refused("colour = \"blue\"\n", &["unknown field", "colour"]);
}

#[test]
fn unknown_key_in_a_table_is_named() {
    check_config_refused("[phi]\ntreshold = 9.0\n", &["unknown field", "treshold"]);
}

#[test]
fn receive_threads_out_of_bounds_are_named() {
    for value in [0, 65] {
        check_config_refused(
            &format!("[monitor]\nreceive_threads = {value}\n"),
            &["monitor.receive_threads must be between 1 and 64"],
        );
    }
}

#[test]
fn bad_duration_is_named_with_its_value() {
    check_config_refused("[monitor]\ntick = \"fast\"\n", &["monitor.tick", "fast", "not a duration"]);
    check_config_refused("[phi]\nacceptable_pause = \"3 parsecs\"\n", &["phi.acceptable_pause", "3 parsecs"]);
}

#[test]
fn missing_key_file_is_named() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_file("monitor", "toml", "");
    let missing = sandbox.path().join("missing.key");
    let exited = sandbox.run_to_exit(&monitor_args(&sandbox, &config, &missing));
    assert_refused(&exited, &["cannot read key file", "missing.key"]);
    assert!(!sandbox.data_dir().exists(), "a refused start creates no data dir");
}

#[test]
fn foreign_sqlite_database_is_refused_and_left_alone() {
    let sandbox = Sandbox::new();
    let path = plant(&sandbox, |path| {
        let connection = rusqlite::Connection::open(path).expect("create a SQLite file");
        connection
            .execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO accounts (owner) VALUES ('someone');")
            .expect("fill the foreign database");
    });
    check_store_refused(&sandbox, &path, &["not a rollcall store", "refusing to touch it"]);
}

#[test]
fn sqlite_database_of_another_application_is_refused_even_when_empty() {
    let sandbox = Sandbox::new();
    let path = plant(&sandbox, |path| {
        let connection = rusqlite::Connection::open(path).expect("create a SQLite file");
        connection.pragma_update(None, "application_id", 0x1234_5678).expect("set application_id");
    });
    check_store_refused(&sandbox, &path, &["not a rollcall store", "0x12345678"]);
}

#[test]
fn garbage_store_file_is_refused_and_left_alone() {
    let sandbox = Sandbox::new();
    let path = plant(&sandbox, |path| {
        std::fs::write(path, "this is not a database, it is a shopping list\n".repeat(100)).expect("write")
    });
    check_store_refused(&sandbox, &path, &["not a database"]);
}

#[test]
fn short_garbage_store_file_is_refused_and_left_alone() {
    let sandbox = Sandbox::new();
    let path = plant(&sandbox, |path| std::fs::write(path, "hello").expect("write"));
    check_store_refused(&sandbox, &path, &["not a database"]);
}

#[test]
fn a_second_monitor_on_a_live_data_dir_is_refused_and_the_first_is_untouched() {
    let sandbox = Sandbox::new();
    let first = Monitor::start(&sandbox, PATIENT);
    let _agent = Agent::start(&sandbox, "web-1", first.udp, Duration::from_millis(200), &[]);
    first.wait_for_state("web-1", "up");
    // The state shows before its transition is committed: wait for the row, so that what
    // is compared below is the store at rest, not a commit still on its way.
    first.wait_for_events("web-1", 1);
    let events_before = first.all_events();

    let config = sandbox.write_file("second", "toml", "");
    let exited = sandbox.run_to_exit(&monitor_args(&sandbox, &config, &sandbox.key_file()));
    let pid = first.pid().to_string();
    assert_refused(&exited, &["is in use by another rollcall process", &pid, "choose another data dir"]);

    // The first monitor goes on as if nothing happened: same events, its node still up.
    assert_eq!(first.all_events(), events_before, "the refused monitor wrote nothing");
    assert_eq!(first.wait_for_state("web-1", "up").state, "up");
    // The lock dies with its holder, even by SIGKILL: the next monitor starts.
    let udp = first.udp;
    first.crash();
    let next = Monitor::start_on(&sandbox, PATIENT, udp);
    next.wait_for_state("web-1", "up");
    next.stop(Signal::SIGTERM);
}

#[test]
fn a_damaged_store_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, "");
    monitor.stop(Signal::SIGTERM);
    let path = sandbox.data_dir().join("rollcall.db");
    // Enough history for the transitions index to span many pages.
    let root_page: i64 = {
        let db = rusqlite::Connection::open(&path).expect("open the store");
        db.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO transitions (node, generation, from_state, to_state, reason, at_ms, noticed_at_ms, subject_kind)
             SELECT 'node-' || i, 1, 'new', 'up', 'heartbeat', i, i, 'node' FROM n;",
        )
        .expect("fill the history");
        db.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'transitions_by_node'", [], |row| {
            row.get(0)
        })
        .expect("find the index")
    };
    // 4,096 bytes of noise over the index's root page, as a stray write or a bad sector would.
    let mut bytes = std::fs::read(&path).expect("read the store");
    let start = ((root_page - 1) * 4096) as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut bytes[start..start + 4096] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    std::fs::write(&path, &bytes).expect("damage the store");
    let name = path.display().to_string();
    check_store_refused(&sandbox, &path, &["is damaged", &name, "restore it from a backup"]);
}

#[test]
fn an_emptied_store_is_refused_rather_than_started_anew() {
    let sandbox = Sandbox::new();
    let monitor = Monitor::start(&sandbox, "");
    monitor.stop(Signal::SIGTERM);
    let path = sandbox.data_dir().join("rollcall.db");
    std::fs::write(&path, b"").expect("truncate the store");
    let name = path.display().to_string();
    check_store_refused(&sandbox, &path, &["is empty (0 bytes)", &name, "delete the file to start a new"]);
}

/// Starts a monitor with `config` and the sandbox's key file, and checks it is refused with
/// every fragment in its one sentence, before creating its data dir.
fn check_config_refused(config: &str, fragments: &[&str]) {
    let sandbox = Sandbox::new();
    let config = sandbox.write_file("monitor", "toml", config);
    let exited = sandbox.run_to_exit(&monitor_args(&sandbox, &config, &sandbox.key_file()));
    assert_refused(&exited, fragments);
    assert!(!sandbox.data_dir().exists(), "a refused start creates no data dir");
}

/// Starts a monitor on a data dir holding `path` (planted there), and checks it is refused
/// and the data dir is exactly as it was.
fn check_store_refused(sandbox: &Sandbox, path: &Path, fragments: &[&str]) {
    let before = snapshot(&sandbox.data_dir());
    let config = sandbox.write_file("monitor", "toml", "");
    let exited = sandbox.run_to_exit(&monitor_args(sandbox, &config, &sandbox.key_file()));
    let mut fragments = fragments.to_vec();
    let name = path.display().to_string();
    if fragments.iter().any(|fragment| fragment.starts_with("not a rollcall store")) {
        // The refusal names the file.
        fragments.push(&name);
    }
    assert_refused(&exited, &fragments);
    assert_eq!(snapshot(&sandbox.data_dir()), before, "the data dir was changed");
}

/// Creates the data dir and lets `make` write a file where the store belongs.
fn plant(sandbox: &Sandbox, make: impl FnOnce(&Path)) -> PathBuf {
    std::fs::create_dir_all(sandbox.data_dir()).expect("create the data dir");
    let path = sandbox.data_dir().join("rollcall.db");
    make(&path);
    path
}

/// Every file of a directory with its contents, sorted by name, but the lock file: the
/// refused monitor took the directory's lock before looking at the store (its pid is in it).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read the data dir")
        .filter(|entry| entry.as_ref().map_or(true, |entry| entry.file_name() != "rollcall.lock"))
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let contents = std::fs::read(entry.path()).expect("read a file");
            (entry.file_name().to_string_lossy().into_owned(), contents)
        })
        .collect();
    files.sort();
    files
}

fn monitor_args(sandbox: &Sandbox, config: &Path, key_file: &Path) -> Vec<String> {
    support::monitor_args(&sandbox.data_dir(), key_file, config)
}

/// A refused start: a non-zero exit code (not a signal), no listening line, and one line on
/// stderr starting `rollcall: ` that contains every fragment.
fn assert_refused(exited: &Exited, fragments: &[&str]) {
    assert!(
        exited.status.code().is_some_and(|code| code != 0),
        "expected a non-zero exit code, got {}: {exited:?}",
        exited.status
    );
    assert_eq!(exited.stdout, "", "a refused monitor prints no listening line");
    let message = exited.stderr.trim_end();
    assert_eq!(message.lines().count(), 1, "one sentence on one line, got:\n{message}");
    assert!(message.starts_with("rollcall: "), "{message}");
    for fragment in fragments {
        assert!(message.contains(fragment), "{message:?} does not mention {fragment:?}");
    }
}
