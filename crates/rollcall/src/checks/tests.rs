use super::*;
use rollcall_core::monitor::NodeState;

fn input(text: &str) -> CheckInput {
    toml::from_str(text).unwrap()
}

const TOKEN: &str = "abcdefghijklmnopqrstuv";

#[test]
fn period_and_cron_forms() {
    let spec = input(&format!("id = \"a\"\ntoken = \"{TOKEN}\"\nperiod = \"1h\"\ngrace = \"5m\""))
        .into_spec(None)
        .unwrap();
    assert_eq!(
        spec.schedule,
        Schedule::Period { period: Duration::from_secs(3600), grace: Duration::from_secs(300) }
    );
    let spec =
        input(&format!("id = \"b\"\ntoken = \"{TOKEN}\"\ncron = \"0 3 * * *\"")).into_spec(None).unwrap();
    assert_eq!(
        spec.schedule,
        Schedule::Cron { expression: "0 3 * * *".into(), timezone: "UTC".into(), grace: DEFAULT_GRACE }
    );
}

#[test]
fn mistakes_name_the_field() {
    for (text, expected) in [
        ("token = \"abcdefghijklmnopqrstuv\"\nperiod = \"1h\"", "`id`"),
        ("id = \"a\"\nperiod = \"1h\"", "`token`"),
        ("id = \"a\"\ntoken = \"abcdefghijklmnopqrstuv\"", "`period` or a `cron`"),
        ("id = \"a\"\ntoken = \"abcdefghijklmnopqrstuv\"\nperiod = \"1h\"\ncron = \"* * * * *\"", "not both"),
        ("id = \"a\"\ntoken = \"abcdefghijklmnopqrstuv\"\nperiod = \"soon\"", "`period`"),
        ("id = \"a\"\ntoken = \"abcdefghijklmnopqrstuv\"\nperiod = \"1h\"\ntimezone = \"UTC\"", "`timezone`"),
        ("id = \"a\"\ntoken = \"short\"\nperiod = \"1h\"", "token"),
        (
            "id = \"a\"\ntoken = \"abcdefghijklmnopqrstuv\"\ncron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"",
            "time zone",
        ),
    ] {
        let error = input(text).into_spec(None).err().unwrap_or_else(|| panic!("{text:?} was accepted"));
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn a_patch_overlays_and_switching_schedules_drops_the_other() {
    let spec = input(&format!(
        "id = \"a\"\ntoken = \"{TOKEN}\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\""
    ))
    .into_spec(None)
    .unwrap();
    let patched = CheckInput::from_spec(&spec)
        .patched(CheckInput { period: Some("2h".into()), ..CheckInput::default() })
        .into_spec(None)
        .unwrap();
    assert_eq!(
        patched.schedule,
        Schedule::Period { period: Duration::from_secs(7200), grace: DEFAULT_GRACE }
    );
    assert_eq!(patched.token, TOKEN, "the token stays unless the patch sets it");
    let described = CheckInput::from_spec(&patched)
        .patched(CheckInput { description: Some("nightly".into()), ..CheckInput::default() })
        .into_spec(None)
        .unwrap();
    assert_eq!((described.description.as_str(), &described.schedule), ("nightly", &patched.schedule));
}

#[test]
fn the_stored_form_round_trips() {
    let spec = input(&format!(
        "id = \"a\"\ntoken = \"{TOKEN}\"\ncron = \"*/5 * * * *\"\ntimezone = \"America/New_York\"\nlabels = {{ team = \"ops\" }}"
    ))
    .into_spec(None)
    .unwrap();
    let record = CheckRecord {
        spec,
        state: NodeState::Down,
        last_ping_wall_ms: Some(5),
        last_success_wall_ms: Some(4),
        last_outcome: Some(Outcome::Failure),
        paused_until_wall_ms: None,
    };
    let row = to_store(&record, SOURCE_CONFIG, 9);
    assert!(!row.spec_json.contains(TOKEN), "the token has its own column, not a copy in the JSON");
    assert_eq!(from_store(&row).unwrap(), record);
}

#[test]
fn generated_tokens_are_128_bits_of_hex() {
    let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}
