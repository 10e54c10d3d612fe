//! The webhook sink against a real HTTP server on a loopback port.

use super::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn webhook(url: &str, extra: &str) -> Sink {
    sink(&format!("[[sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}"))
}

#[tokio::test]
async fn posts_the_alert_with_idempotency_key_and_signature() {
    let receiver = Receiver::start().await;
    let sink = webhook(&format!("{}/hook", receiver.url), "secret = \"s3cret\"");
    let alert = alert(AlertKind::Firing, 7);
    sink.deliver(&stored(&alert)).await.expect("delivered");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.body, serde_json::to_vec(&alert).expect("serialises"));
    assert_eq!(serde_json::from_slice::<Alert>(&request.body).expect("an Alert"), alert);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-rollcall-idempotency-key"), Some("rollcall-7-1"));

    // The receiver's side of the contract, computed without the sink's code.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("any key length");
    mac.update(&request.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(request.header("x-rollcall-signature"), Some(format!("sha256={expected}").as_str()));
}

#[tokio::test]
async fn posts_and_signs_the_stored_bytes_as_they_are() {
    // A document as an older version queued it: other field order, spaces, no `node_count`.
    // Parsed and serialised again it would come out different, and the signature with it.
    let payload = r#"{"kind": "firing", "version": 1, "idempotency_key": "rollcall-9-0",
        "severity": "critical", "incident": {"id": 9, "started_at": "2026-03-01T12:00:00Z", "resolved_at": null},
        "subject": {"kind": "node", "id": "web-1"}, "nodes": ["web-1"], "labels": {},
        "transition": null, "summary": "node web-1 is down"}"#;
    let stored = StoredAlert::parse(payload.to_owned()).expect("an alert document");
    assert_ne!(
        serde_json::to_string(&stored.alert).expect("serialises"),
        payload,
        "a document that re-serialising changes"
    );
    let receiver = Receiver::start().await;
    let sink = webhook(&format!("{}/hook", receiver.url), "secret = \"s3cret\"");
    sink.deliver(&stored).await.expect("delivered");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body, payload.as_bytes());
    assert_eq!(requests[0].header("x-rollcall-idempotency-key"), Some("rollcall-9-0"));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("any key length");
    mac.update(payload.as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(requests[0].header("x-rollcall-signature"), Some(format!("sha256={expected}").as_str()));
}

#[tokio::test]
async fn without_a_secret_there_is_no_signature() {
    let receiver = Receiver::start().await;
    webhook(&receiver.url, "").deliver(&stored(&alert(AlertKind::Resolved, 7))).await.expect("delivered");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-rollcall-signature"), None);
    assert_eq!(requests[0].header("x-rollcall-idempotency-key"), Some("rollcall-7-3"));
}

#[tokio::test]
async fn a_server_error_is_a_status_error() {
    let receiver = Receiver::start().await;
    receiver.answer_with(500);
    let error = webhook(&receiver.url, "")
        .deliver(&stored(&alert(AlertKind::Firing, 1)))
        .await
        .expect_err("500 fails");
    match error {
        DeliveryError::Status(500, body) => assert_eq!(body, "test receiver says 500"),
        other => panic!("expected Status(500, ..), got {other:?}"),
    }
    // A redirect is not followed: a POST redirected is not a POST delivered.
    receiver.answer_with(307);
    let error = webhook(&receiver.url, "")
        .deliver(&stored(&alert(AlertKind::Firing, 1)))
        .await
        .expect_err("307 fails");
    assert!(matches!(error, DeliveryError::Status(307, _)), "got {error:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // The kernel accepts the connection into the backlog; nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}/hook", silent.local_addr().expect("bound"));
    let error = webhook(&url, "timeout = \"300ms\"")
        .deliver(&stored(&alert(AlertKind::Firing, 1)))
        .await
        .expect_err("no answer");
    assert_eq!(error, DeliveryError::Timeout(Duration::from_millis(300)));
    drop(silent);
}

#[tokio::test]
async fn a_refused_connection_is_an_io_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}/hook", closed.local_addr().expect("bound"));
    drop(closed);
    let error = webhook(&url, "").deliver(&stored(&alert(AlertKind::Firing, 1))).await.expect_err("refused");
    assert!(matches!(error, DeliveryError::Io(_)), "expected Io, got {error:?}");
}
