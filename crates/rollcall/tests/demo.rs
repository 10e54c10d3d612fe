//! `rollcall demo --exit`: the story README promises, end to end.

use std::process::Command;

#[test]
fn the_demo_tells_the_whole_story() {
    let data = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["demo", "--exit", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Each step of the story, in order.
    let steps = [
        "started 5 agents",
        "web-2  up -> suspect (phi)",
        "web-2  suspect -> down (phi)",
        "web-2  down -> up (restart)",
        "db-2   up -> left (goodbye)",
    ];
    let mut from = 0;
    for step in steps {
        let found = stdout[from..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing or out of order in:\n{stdout}"));
        from += found + step.len();
    }
    assert!(!stdout.contains("db-2   left -> down") && !stdout.contains("db-2   up -> down"), "{stdout}");
    assert!(data.path().join("data").join("rollcall.db").exists(), "the demo keeps its store in --data-dir");
}
