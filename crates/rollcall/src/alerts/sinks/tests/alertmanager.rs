//! The Alertmanager sink: its payloads against Alertmanager's published API schema, its resend
//! set against a real HTTP server, and, where installed, the real Alertmanager.

mod real;

use super::*;
use serde_json::{Value, json};

/// Alertmanager's API v2 document, kept as a fixture in shared/ beside the checkout.
const OPENAPI: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/alertmanager-v2-openapi.yaml");

/// A validator for `postableAlerts`, the body of `POST /api/v2/alerts`, with every `$ref` resolved
/// inside the document's own `definitions` and formats (date-time, uri) checked.
fn postable_alerts_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(OPENAPI).unwrap_or_else(|error| {
        panic!("cannot read Alertmanager's API document {OPENAPI} ({error}); it is a fixture in shared/fixtures, which must sit beside the checkout")
    });
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the fixture is YAML");
    let definitions = serde_json::to_value(&document["definitions"]).expect("definitions convert to JSON");
    assert!(definitions.get("postableAlerts").is_some(), "{OPENAPI} has no definitions.postableAlerts");
    // Swagger 2.0 schemas are a subset of JSON Schema draft 4.
    let schema = json!({ "definitions": definitions, "allOf": [{ "$ref": "#/definitions/postableAlerts" }] });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

/// `payload` must be valid `postableAlerts`, with label names Alertmanager accepts.
fn check_postable(schema: &jsonschema::Validator, payload: &Value) {
    let errors: Vec<String> =
        schema.iter_errors(payload).map(|error| format!("{error} at {}", error.instance_path())).collect();
    assert!(errors.is_empty(), "not valid postableAlerts: {errors:?}\n{payload:#}");
    for alert in payload.as_array().expect("an array") {
        for name in alert["labels"].as_object().expect("labels").keys() {
            let mut chars = name.chars();
            let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            assert!(first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name {name:?}");
        }
    }
}

fn alertmanager(url: &str) -> Sink {
    sink(&format!("[[sink]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{url}\""))
}

/// The alerts in every POST the receiver got, one Vec per request.
fn posted(receiver: &Receiver) -> Vec<Vec<Value>> {
    receiver
        .requests()
        .iter()
        .map(|request| {
            assert_eq!(request.path, "/api/v2/alerts");
            assert_eq!(request.header("content-type"), Some("application/json"));
            request.json().as_array().expect("an array of alerts").clone()
        })
        .collect()
}

#[test]
fn the_schema_is_not_vacuous() {
    let schema = postable_alerts_schema();
    assert!(schema.is_valid(&json!([{ "labels": { "alertname": "x" } }])));
    assert!(!schema.is_valid(&json!([{ "annotations": {} }])), "labels are required");
    assert!(!schema.is_valid(&json!([{ "labels": { "a": 1 } }])), "label values are strings");
    assert!(!schema.is_valid(&json!([{ "labels": {}, "startsAt": "yesterday" }])), "startsAt is a date-time");
    assert!(!schema.is_valid(&json!({ "labels": {} })), "the body is an array");
}

#[tokio::test]
async fn every_posted_payload_matches_the_published_schema() {
    let schema = postable_alerts_schema();
    let receiver = Receiver::start().await;
    let sink = alertmanager(&receiver.url);
    let mut check = alert(AlertKind::Firing, 2);
    check.subject = Subject { kind: SubjectKind::Check, id: "nightly-backup".to_owned() };
    let mut group = alert(AlertKind::Firing, 3);
    group.subject = Subject { kind: SubjectKind::Group, id: "correlated-failure".to_owned() };
    group.nodes = vec!["web-1".to_owned(), "web-2".to_owned(), "web-3".to_owned()];
    group.labels.insert("3rd party".to_owned(), "yes".to_owned());
    let mut group_resolved = group.clone();
    group_resolved.kind = AlertKind::Resolved;
    group_resolved.incident.resolved_at = Some("2026-03-01T12:09:00Z".to_owned());
    let sequence = [
        alert(AlertKind::Firing, 1),
        alert(AlertKind::Reminder, 1),
        alert(AlertKind::Flapping, 1),
        alert(AlertKind::Resolved, 1),
        check,
        group,
        group_resolved,
    ];
    for alert in &sequence {
        sink.deliver(&stored(alert)).await.expect("delivered");
    }
    let posts = posted(&receiver);
    assert_eq!(posts.len(), sequence.len());
    for request in receiver.requests() {
        check_postable(&schema, &request.json());
    }

    let firing = &posts[0][0];
    assert_eq!(
        firing["labels"],
        json!({
            "alertname": "RollcallNodeDown", "node": "web-1", "severity": "critical", "incident": "1",
            "group": "web", "dc_name": "eu 1",
        })
    );
    assert_eq!(firing["annotations"]["summary"], "web-1: Firing");
    assert!(firing["annotations"]["description"].as_str().is_some_and(|text| text.contains("incident 1")));
    assert_eq!(firing["startsAt"], "2026-03-01T12:00:00Z");
    assert!(firing.get("endsAt").is_none(), "a firing alert has no endsAt");
    assert_eq!(posts[1][0]["labels"], firing["labels"], "a reminder is the same alert again");
    assert_eq!(posts[2][0]["labels"]["alertname"], "RollcallFlapping");
    assert_eq!(posts[2][0]["labels"]["severity"], "warning");
    // The resolution ends both alerts of incident 1, each with the labels it fired with.
    let resolved = &posts[3];
    let mut ended: Vec<&Value> = resolved.iter().map(|alert| &alert["labels"]).collect();
    ended.sort_by_key(|labels| labels["alertname"].as_str());
    assert_eq!(ended, [&posts[2][0]["labels"], &firing["labels"]]);
    assert!(resolved.iter().all(|alert| alert["endsAt"] == "2026-03-01T12:05:30Z"));
    assert_eq!(posts[4][0]["labels"]["alertname"], "RollcallCheckDown");
    assert_eq!(posts[4][0]["labels"]["check"], "nightly-backup");
    assert_eq!(posts[5][0]["labels"]["alertname"], "RollcallCorrelatedFailure");
    assert_eq!(posts[5][0]["labels"]["_3rd_party"], "yes");
    assert_eq!(posts[5][0]["annotations"]["nodes"], "web-1,web-2,web-3");
    assert_eq!(posts[6][0]["labels"], posts[5][0]["labels"]);
    assert_eq!(posts[6][0]["endsAt"], "2026-03-01T12:09:00Z");
}

#[tokio::test]
async fn firing_alerts_are_resent_until_resolved() {
    let receiver = Receiver::start().await;
    let Sink::Alertmanager(sink) = alertmanager(&receiver.url) else { unreachable!("an alertmanager sink") };

    sink.deliver(&alert(AlertKind::Firing, 1)).await.expect("delivered");
    assert_eq!(sink.firing_count(), 1);
    assert_eq!(sink.resend_firing().await, Ok(1));
    let posts = posted(&receiver);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1], posts[0], "the resend is the same alert, still firing");

    sink.deliver(&alert(AlertKind::Resolved, 1)).await.expect("delivered");
    assert_eq!(sink.firing_count(), 0);
    assert_eq!(sink.resend_firing().await, Ok(0));
    assert_eq!(posted(&receiver).len(), 3, "nothing is resent once resolved");
}

#[tokio::test]
async fn a_failed_post_keeps_nothing_and_a_failed_resolution_still_ends_the_alert() {
    let receiver = Receiver::start().await;
    let Sink::Alertmanager(sink) = alertmanager(&receiver.url) else { unreachable!("an alertmanager sink") };
    receiver.answer_with(503);
    let error = sink.deliver(&alert(AlertKind::Firing, 1)).await.expect_err("503");
    assert!(matches!(error, DeliveryError::Status(503, _)), "{error:?}");
    assert_eq!(sink.firing_count(), 0, "not delivered, not kept");

    receiver.answer_with(200);
    sink.deliver(&alert(AlertKind::Firing, 1)).await.expect("delivered");
    receiver.answer_with(503);
    sink.deliver(&alert(AlertKind::Resolved, 1)).await.expect_err("503");
    assert_eq!(sink.firing_count(), 0, "the retry of the resolution must not race a resend");
}

#[tokio::test]
async fn restored_alerts_are_resent() {
    let receiver = Receiver::start().await;
    let sink = alertmanager(&receiver.url);
    let mut check = alert(AlertKind::Reminder, 2);
    check.subject = Subject { kind: SubjectKind::Check, id: "backup".to_owned() };
    sink.restore_firing(vec![alert(AlertKind::Firing, 1), check, alert(AlertKind::Resolved, 3)]);
    assert_eq!(sink.resend_firing().await, Ok(2), "the resolved one is not restored");
    let posts = posted(&receiver);
    assert_eq!(posts.len(), 1, "one batch");
    let names: Vec<&Value> = posts[0].iter().map(|alert| &alert["labels"]["alertname"]).collect();
    assert_eq!(names, ["RollcallNodeDown", "RollcallCheckDown"]);
    assert!(posts[0].iter().all(|alert| alert.get("endsAt").is_none()));
}

#[tokio::test]
async fn a_failed_resend_is_an_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let sink = alertmanager(&format!("http://{}", closed.local_addr().expect("bound")));
    drop(closed);
    sink.restore_firing(vec![alert(AlertKind::Firing, 1)]);
    assert!(matches!(sink.resend_firing().await, Err(DeliveryError::Io(_))));
}

#[test]
fn a_crashed_process_has_its_exit_status_as_annotations() {
    let mut killed = alert(AlertKind::Firing, 1);
    let transition = killed.transition.as_mut().expect("a firing alert has its transition");
    transition.reason = Reason::ProcessExited;
    transition.exit_signal = Some(9);
    let posted = crate::alerts::sinks::alertmanager::postable(&killed, &killed, None);
    check_postable(&postable_alerts_schema(), &json!([posted]));
    assert_eq!(posted["annotations"]["exit_signal"], "9");
    assert!(posted["annotations"].get("exit_code").is_none(), "{posted:#}");
}
