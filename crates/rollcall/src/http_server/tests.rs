use super::*;

const NAMES: [&str; 3] = ["api.max_connections", "api.header_timeout", "api.idle_timeout"];

fn limits(max_connections: Option<usize>) -> ConnectionLimits {
    ConnectionLimits { max_connections, ..ConnectionLimits::default() }
}

/// `fit` under `fd_limit`: the cap it runs with, or the start of its refusal.
fn check_fit(max_connections: Option<usize>, fd_limit: u64, expected: Result<usize, &str>) {
    let fitted = limits(max_connections).fit(fd_limit, "api.max_connections");
    match (fitted, expected) {
        (Ok(fitted), Ok(cap)) => assert_eq!(fitted.max_connections, cap),
        (Err(message), Err(start)) => assert!(message.starts_with(start), "{message}"),
        (got, wanted) => panic!("fit({max_connections:?}, {fd_limit}): got {got:?}, wanted {wanted:?}"),
    }
}

#[test]
fn a_configured_cap_must_leave_reserved_descriptors() {
    check_fit(Some(64), 1024, Ok(64));
    check_fit(Some(768), 1024, Ok(768));
    check_fit(Some(769), 1024, Err("api.max_connections = 769 leaves fewer than 256 of the 1024 file"));
    check_fit(Some(1), 100, Err("api.max_connections = 1 leaves fewer than 256"));
}

#[test]
fn the_default_cap_shrinks_to_the_descriptor_limit() {
    check_fit(None, 1_048_576, Ok(DEFAULT_MAX_CONNECTIONS));
    check_fit(None, 1024, Ok(768));
    check_fit(None, 272, Ok(16));
    check_fit(None, 271, Err("this process may open only 271 file descriptors"));
}

#[test]
fn limits_are_validated_naming_the_setting() {
    assert_eq!(ConnectionLimits::default().validate(NAMES), Ok(()));
    assert_eq!(limits(Some(0)).validate(NAMES), Err("api.max_connections must be at least 1".into()));
    let fast = ConnectionLimits { header_timeout: Duration::from_millis(500), ..ConnectionLimits::default() };
    assert_eq!(fast.validate(NAMES), Err("api.header_timeout must be between 1s and 1h".into()));
    let slow = ConnectionLimits { idle_timeout: Duration::from_secs(7200), ..ConnectionLimits::default() };
    assert_eq!(slow.validate(NAMES), Err("api.idle_timeout must be between 1s and 1h".into()));
}

#[test]
fn the_refusal_is_a_complete_response() {
    let (head, body) = REFUSAL.split_once("\r\n\r\n").expect("a head and a body");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|value| value.parse::<usize>().ok())
        .expect("a content-length");
    assert_eq!(length, body.len());
    let error: serde_json::Value = serde_json::from_str(body).expect("the body is JSON");
    assert_eq!(error["code"], "too_many_connections");
}
