//! The webhook posts the outbox's bytes as they are: the body a receiver gets, and the
//! signature over it, are the document that was committed, not the document parsed and
//! serialised again (which would change a document queued by an older version).
//!
//! Nothing sleeps to let things settle: the receiver is waited on, with [`PATIENCE`].

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use hmac::{Hmac, Mac};
use nix::sys::signal::Signal;
use receiver::Receiver;
use std::time::Duration;
use support::{Monitor, Sandbox, quick_pages_to};

/// How long any condition may take here. Generous: a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

const SECRET: &str = "a secret shared with the receiver";

/// A document as an older version queued it: its own field order, spaces and a line break,
/// and no `node_count` (which documents lacked before it existed). Parsed and serialised
/// again, it would gain `"node_count":0` and lose its layout.
const QUEUED: &str = r#"{"kind": "firing", "version": 1, "idempotency_key": "rollcall-41-0",
  "severity": "critical", "incident": {"id": 41, "started_at": "2026-03-01T12:00:00.000Z", "resolved_at": null},
  "subject": {"kind": "node", "id": "old-node"}, "nodes": ["old-node"], "labels": {"role": "db"},
  "transition": {"from": "suspect", "to": "down", "reason": "phi", "at": "2026-03-01T12:00:00.000Z"},
  "summary": "node old-node is down (phi)"}"#;

#[test]
fn the_webhook_posts_the_stored_document_byte_for_byte() {
    let sandbox = Sandbox::new();
    let receiver = Receiver::start();
    let config = format!("{}secret = \"{SECRET}\"\n", quick_pages_to(&receiver.url()));
    // The first run creates the store; the row is queued while no monitor runs.
    Monitor::start(&sandbox, &config).stop(Signal::SIGTERM);
    let path = sandbox.data_dir().join("rollcall.db");
    let db =
        rusqlite::Connection::open(&path).unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    db.execute(
        "INSERT INTO outbox (sink, idempotency_key, incident, subject, payload, created_at_ms)
         VALUES ('hook', 'rollcall-41-0', 41, 'old-node', ?1, 0)",
        [QUEUED],
    )
    .expect("queue the old document");
    drop(db);

    let monitor = Monitor::start(&sandbox, &config);
    receiver.wait_for(1, PATIENCE);
    let requests = receiver.deliveries();
    assert_eq!(requests.len(), 1, "one delivery of the one queued row: {requests:?}");
    let request = &requests[0];
    assert_eq!(
        String::from_utf8_lossy(&request.body),
        QUEUED,
        "the body is the stored document, byte for byte"
    );
    assert_eq!(request.key(), Some("rollcall-41-0"));
    let signature = request.headers.get("x-rollcall-signature").expect("signed, since a secret is set");
    assert_eq!(*signature, format!("sha256={}", hmac_hex(SECRET.as_bytes(), QUEUED.as_bytes())));
    monitor.stop(Signal::SIGTERM);
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`, as a receiver computes it.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}
