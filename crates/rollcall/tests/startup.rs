//! Mistakes a monitor must refuse at start, with one clear sentence and a non-zero exit,
//! before it touches anything: bad configuration and a data dir holding someone else's file.

mod support;

use std::path::{Path, PathBuf};
use support::{Exited, Sandbox};

#[test]
fn unknown_top_level_key_is_named() {
    check_config_refused("colour = \"blue\"\n", &["unknown field", "colour"]);
}

#[test]
fn unknown_key_in_a_table_is_named() {
    check_config_refused("[phi]\ntreshold = 9.0\n", &["unknown field", "treshold"]);
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

/// Every file of a directory with its contents, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read the data dir")
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
    let path = |p: &Path| p.display().to_string();
    vec![
        "monitor".into(),
        "--udp".into(),
        "127.0.0.1:0".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        path(&sandbox.data_dir()),
        "--key-file".into(),
        path(key_file),
        "--config".into(),
        path(config),
    ]
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
