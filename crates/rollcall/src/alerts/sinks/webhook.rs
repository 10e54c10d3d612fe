//! The webhook sink: POST of the alert document as JSON, the bytes the outbox holds, optionally
//! signed with HMAC-SHA256.

use super::{DeliveryError, Secret, SinkConfig, SinkTarget, http};
use crate::alerts::model::StoredAlert;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const IDEMPOTENCY_HEADER: &str = "X-Rollcall-Idempotency-Key";
pub const SIGNATURE_HEADER: &str = "X-Rollcall-Signature";

#[derive(Debug, Clone)]
pub struct WebhookSink {
    config: SinkConfig,
    url: String,
    secret: Option<Secret>,
    agent: ureq::Agent,
}

impl WebhookSink {
    /// # Panics
    /// If `config` is not a webhook's ([`super::Sink::new`] dispatches on the kind).
    pub fn new(config: SinkConfig) -> WebhookSink {
        let SinkTarget::Webhook { url, secret } = &config.target else {
            panic!("WebhookSink::new called with a {} sink's config", config.kind());
        };
        let (url, secret) = (url.clone(), secret.clone());
        let agent = http::agent(config.timeout);
        WebhookSink { config, url, secret, agent }
    }

    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// POSTs the stored document, byte for byte as committed (and signs those bytes); a 2xx
    /// answer means delivered.
    pub async fn deliver(&self, stored: &StoredAlert) -> Result<(), DeliveryError> {
        let body = stored.payload.as_bytes().to_vec();
        let mut headers = vec![(IDEMPOTENCY_HEADER, stored.alert.idempotency_key.clone())];
        if let Some(Secret(secret)) = &self.secret {
            headers.push((SIGNATURE_HEADER, format!("sha256={}", signature(secret.as_bytes(), &body))));
        }
        http::post_json(&self.agent, &self.url, headers, body, self.config.timeout).await
    }
}

/// HMAC-SHA256 of `body` keyed with `secret`, in lowercase hex: the value after `sha256=` in the
/// signature header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}
